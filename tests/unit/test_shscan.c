/*
 * Tests interp/shscan.c: where the end of a piece of sh script stands, for
 * the places a ${{ }} value can be put in a run: command (render.c).  Each
 * case is the script before the value and the place expected there.
 *
 * Build and run from the repository root: make build/unit/test_shscan &&
 * build/unit/test_shscan (make test runs it).
 */
#include <stdio.h>
#include <string.h>

#include "shscan.h"

#include "check.h"

static const struct {
	const char *before;
	enum rb_sh_place want;
} cases[] = {
	{"", RB_SH_PLAIN},
	{"echo ", RB_SH_PLAIN},
	{"echo \"in ", RB_SH_DQUOTE},
	{"echo 'in ", RB_SH_SQUOTE},
	{"echo 'a' \"b\" ", RB_SH_PLAIN},
	{"echo \"it's ", RB_SH_DQUOTE},
	{"echo 'say \"", RB_SH_SQUOTE},
	{"echo \"a\\\" ", RB_SH_DQUOTE},
	{"echo \\", RB_SH_REFUSED},
	{"echo \"\\", RB_SH_REFUSED},
	{"echo \\\\", RB_SH_PLAIN},
	{"echo $(date ", RB_SH_PLAIN},
	{"echo \"$(date ", RB_SH_PLAIN},
	{"echo \"$(date \"", RB_SH_DQUOTE},
	{"echo \"$(date) ", RB_SH_DQUOTE},
	{"echo ${X:-", RB_SH_DQUOTE},
	{"echo $(( ", RB_SH_ARITH},
	{"echo $(( 1 + 2 )) ", RB_SH_PLAIN},
	{"echo `date ", RB_SH_PLAIN},
	{"echo # a comment ", RB_SH_COMMENT},
	{"echo # a comment\necho ", RB_SH_PLAIN},
	{"echo a#b ", RB_SH_PLAIN},
	{"echo $# ", RB_SH_PLAIN},
	{"cat <<EOF\nbody ", RB_SH_DQUOTE},
	{"cat <<'EOF'\nbody ", RB_SH_REFUSED},
	{"cat <<\"EOF\"\nbody ", RB_SH_REFUSED},
	{"cat <<\\EOF\nbody ", RB_SH_REFUSED},
	{"cat <<EOF\nbody\nEOF\necho ", RB_SH_PLAIN},
	{"cat <<-EOF\n\tbody\n\tEOF\necho ", RB_SH_PLAIN},
	{"cat <<'EOF'\nit's 'quoted'\nEOF\necho 'x ", RB_SH_SQUOTE},
	{"cat <<A <<'B'\none\nA\ntwo ", RB_SH_REFUSED},
	{"cat <<A <<'B'\none\nA\ntwo\nB\necho ", RB_SH_PLAIN},
	{"cat <<", RB_SH_REFUSED},
	{"grep x <<< ", RB_SH_PLAIN},
	{"grep x <<< \"", RB_SH_DQUOTE},
	{"echo $((1 << 2)) ", RB_SH_PLAIN},
	{"psql -c \"DELETE FROM t WHERE d < now() - interval '", RB_SH_DQUOTE},
	{"echo $'a ", RB_SH_SQUOTE},
};

int main(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rb_shscan s;
		const char *why;
		rb_shscan_init(&s);
		rb_shscan_feed(&s, cases[i].before, strlen(cases[i].before));
		enum rb_sh_place got = rb_shscan_place(&s, &why);
		CHECK(got == cases[i].want, "case %zu (%s): place %d, expected %d", i,
		      cases[i].before, (int)got, (int)cases[i].want);
		CHECK((got == RB_SH_REFUSED) == (why != NULL), "case %zu: a reason iff refused", i);
	}
	/* Fed in pieces, as render.c feeds it: the same answer. */
	const char *script = "cat <<'EOF'\nbody\nEOF\necho \"x";
	struct rb_shscan s;
	const char *why;
	rb_shscan_init(&s);
	for (const char *p = script; *p; p++)
		rb_shscan_feed(&s, p, 1);
	CHECK(rb_shscan_place(&s, &why) == RB_SH_DQUOTE, "fed a byte at a time");
	printf("shscan: %d passed, %d failed\n", npass, nfail);
	return nfail ? 1 : 0;
}
