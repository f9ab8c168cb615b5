#!/usr/bin/env bash
# The command layer (interp/cmd/) alone prints and exits: below it, the engine
# (interp/*.[ch]) and the actions (stdlib/*.[ch]) say things by events or
# errors returned, so that --output json gets them too.  Also: headers by
# name only, no ../ include, no engine file including the command layer's, and
# no call up the engine's own layers (exec.c over sched.c over exec_svc.c).
set -uo pipefail
: "${RUNBOOK:?}"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# An awk program's first part: each line of C source ($0, kept in src) as code,
# with comments and the insides of string and character literals blanked (newlines
# kept, so line numbers hold).  The parts after it read code.
blank='
	FNR == 1 { incom = 0 }
	{
		src = $0; code = ""; n = length(src); i = 1
		while (i <= n) {
			ch = substr(src, i, 1); two = substr(src, i, 2)
			if (incom) {
				if (two == "*/") { incom = 0; code = code "  "; i += 2 }
				else { code = code " "; i++ }
			} else if (two == "/*") { incom = 1; code = code "  "; i += 2
			} else if (two == "//") { break
			} else if (ch == "\"" || ch == "\047") {
				q = ch; code = code q; i++
				while (i <= n && substr(src, i, 1) != q) {
					if (substr(src, i, 1) == "\\") { code = code " "; i++ }
					code = code " "; i++
				}
				code = code q; i++
			} else { code = code ch; i++ }
		}
	}'

# The calls the engine may not make, in FILE:LINE: TEXT lines: a line is a hit
# when its code names stdout or stderr, calls a function that prints or ends the
# process, or writes to fd 1 or 2.  fprintf, fputs, fwrite and the like to a
# FILE * the caller passed in are not hits.
calls() {
	awk "$blank"'
	{
		if (code ~ /(^|[^A-Za-z0-9_])(stdout|stderr|STDOUT_FILENO|STDERR_FILENO)([^A-Za-z0-9_]|$)/ ||
		    code ~ /(^|[^A-Za-z0-9_.>])(printf|vprintf|puts|putchar|perror|exit|_exit|_Exit|quick_exit|abort|err|errx|verr|verrx|warn|warnx|vwarn|vwarnx)[ \t]*\(/ ||
		    code ~ /(^|[^A-Za-z0-9_.>])(write|dprintf|vdprintf)[ \t]*\([ \t]*[12][ \t]*,/) {
			t = src; sub(/^[ \t]+/, "", t)
			print FILENAME ":" FNR ": " t
		}
	}' "$@"
}

# The engine reads in one direction: exec.c (the run) calls into sched.c (the
# scheduler) and exec_svc.c (the services both use), sched.c into exec_svc.c, and
# none calls back up.  upcalls LOWER UPPER: LOWER's lines, as FILE:LINE: TEXT
# (NAME of UPPER), whose code names (calls, or takes as a pointer) a function that
# UPPER defines and exports (not static; a definition's first line starts at
# column 0).
upcalls() {
	local names
	names=$(awk "$blank"'
	code ~ /^[A-Za-z_]/ && code !~ /^(static|extern|typedef)[^A-Za-z0-9_]/ &&
	    match(code, /[A-Za-z_][A-Za-z0-9_]*[ \t]*\(/) {
		name = substr(code, RSTART, RLENGTH - 1); sub(/[ \t]+$/, "", name); print name
	}' "$2" | sort -u | paste -sd '|')
	[ -n "$names" ] || return 0
	N="$names" U="$2" awk "$blank"'
	match(code, "(^|[^A-Za-z0-9_.>])(" ENVIRON["N"] ")([^A-Za-z0-9_]|$)") {
		name = substr(code, RSTART, RLENGTH); sub(/^[^A-Za-z_]/, "", name)
		sub(/[^A-Za-z0-9_]$/, "", name)
		t = src; sub(/^[ \t]+/, "", t)
		print FILENAME ":" FNR ": " t " (" name " of " ENVIRON["U"] ")"
	}' "$1"
}

# The allowed hits, each as FILE, how many times, and the line's text (leading
# blanks dropped).  Exactly that many: one more is a new case to think about, one
# fewer leaves an entry to remove.
allow=(
	# Out of memory cannot be reported by an event or an error, which need memory
	# too: the process says so and aborts (git's xmalloc dies the same way).
	'interp/util.c|1|fputs("runbook: fatal: out of memory\n", stderr);'
	'interp/util.c|1|abort();'
	# The same for proc.c and spawner.c, which build without util.c (bench/run,
	# test_proc); write(2) because the spawner has no stdio to trust.
	'interp/proc_int.h|1|if (write(2, m, sizeof m - 1) < 0) {'
	'interp/proc_int.h|1|abort();'
	# Processes forked from the runner (the spawner, its supervisors, a step's
	# child after a failed exec) end by _exit, never by returning into the
	# runner's code or by exit(), which would run its atexit handlers.
	'interp/spawner.c|3|_exit(0);'
	'interp/spawner.c|1|_exit(127);'
)

# check_calls FILE...: every hit allowed, every allowed entry found as often as said.
check_calls() {
	local hits line file text entry afile acount atext found
	hits=$(calls "$@")
	while IFS= read -r line; do
		[ -n "$line" ] || continue
		file=${line%%:*}
		text=${line#*: }
		found=0
		for entry in "${allow[@]}"; do
			afile=${entry%%|*} atext=${entry#*|*|}
			if [ "$file" = "$afile" ] && [ "$text" = "$atext" ]; then
				found=1
				break
			fi
		done
		[ "$found" = 1 ] || echo "$line: prints or exits below the command layer: an event (ex_event) or an error returned instead"
	done <<<"$hits"
	for entry in "${allow[@]}"; do
		afile=${entry%%|*} acount=${entry#*|} atext=${entry#*|*|}
		acount=${acount%%|*}
		case " $* " in *" $afile "*) ;; *) continue ;; esac
		# (by ENVIRON: awk -v would turn the \n in a text into a newline)
		found=$(printf '%s\n' "$hits" | F="$afile" T="$atext" awk '{
			file = $0; sub(/:.*/, "", file); text = $0; sub(/^[^:]*:[0-9]+: /, "", text)
			if (file == ENVIRON["F"] && text == ENVIRON["T"]) n++ } END { print n + 0 }')
		[ "$found" = "$acount" ] || echo "$afile: allowed $acount of '$atext', found $found: update the allow-list in tests/layers.sh"
	done
}

# The checker itself, on a file with two real offences and look-alikes that are not.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/bad.c" <<'EOF'
/* exit(1) in a comment, and fprintf(stderr, ...)
   over two lines: printf("no") */
static void f(struct o *o, FILE *out)
{
	const char *s = "exit(1); puts(\"x\") stderr";   // printf(here) too
	char q = '"';
	fprintf(out, "%s%c", s, q);
	o->exit(2);
	fprintf(stderr,
		"real\n");
	exit(3);
}
EOF
got=$(calls "$tmp/bad.c" | sed "s|^$tmp/||")
want='bad.c:9: fprintf(stderr,
bad.c:11: exit(3);'
[ "$got" = "$want" ] && ok || bad "the checker on a planted file: got
$got
want
$want"

# The engine and the actions.
out=$(check_calls interp/*.c interp/*.h stdlib/*.c stdlib/*.h)
if [ -z "$out" ]; then
	ok
else
	while IFS= read -r line; do bad "$line"; done <<<"$out"
fi

# The checker of calls up, on planted files: a call, and look-alikes that are not.
cat >"$tmp/upper.c" <<'EOF'
/* up(): the one the lower file must not call */
struct pair up(void)
{
	return (struct pair){helper(), 0};
}

static int helper(void)
{
	return 1;
}
EOF
cat >"$tmp/lower.c" <<'EOF'
static int helper(void)     /* its own, with the upper's up() in a comment */
{
	const char *s = "up()";
	return o->up() + p.up() + (int)s[0];
}

int down(void)
{
	return helper() + up ();
}

int (*later)(void) = up;
EOF
got=$(upcalls "$tmp/lower.c" "$tmp/upper.c" | sed "s|$tmp/||g")
want='lower.c:9: return helper() + up (); (up of upper.c)
lower.c:12: int (*later)(void) = up; (up of upper.c)'
[ "$got" = "$want" ] && ok || bad "the checker of calls up on planted files: got
$got
want
$want"

# The engine's layers.
out=$(upcalls interp/exec_svc.c interp/sched.c; upcalls interp/exec_svc.c interp/exec.c
	upcalls interp/sched.c interp/exec.c)
if [ -z "$out" ]; then
	ok
else
	while IFS= read -r line; do
		bad "$line: a call up the engine's layers (exec.c over sched.c over exec_svc.c)"
	done <<<"$out"
fi

# Only the command layer includes its header; nothing includes by a ../ path.
out=$(grep -n '#[ \t]*include[ \t]*"cli\.h"' interp/*.[ch] stdlib/*.[ch])
[ -z "$out" ] && ok || bad "the engine includes the command layer's header: $out"
out=$(grep -rn --include='*.[ch]' '#[ \t]*include[ \t]*"[^"]*\.\./' interp stdlib tests bench)
[ -z "$out" ] && ok || bad "an include by a ../ path (the Makefile's -I flags find headers by name): $out"

# What the engine once printed on stderr, the host key it made, is an event: in
# JSON every line on stdout is an event, and stderr is empty.
cat >"$tmp/one.yaml" <<'EOF'
runbook: layers-one
version: 1
steps:
  - id: one
    lua: return 1
EOF
${RUNBOOK_WRAP:-} "$RUNBOOK" run --output json --state-dir "$tmp/state" "$tmp/one.yaml" \
	>"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && ok || bad "the run exited with $rc: $(cat "$tmp/err")"
[ ! -s "$tmp/err" ] && ok || bad "--output json wrote to stderr: $(cat "$tmp/err")"
jq -e 'has("event")' "$tmp/out" >/dev/null && ok || bad "a line on stdout is not an event: $(cat "$tmp/out")"
kid=$(openssl pkey -in "$tmp/state/keys/host.pem" -pubout -outform DER 2>/dev/null | tail -c 32 |
	sha256sum | cut -c 1-16)
ev=$(jq -c 'select(.event == "audit_key_created") | [.file, .public_file, .key_id]' "$tmp/out")
[ "$ev" = "[\"$tmp/state/keys/host.pem\",\"$tmp/state/keys/host.pem.pub\",\"$kid\"]" ] && ok ||
	bad "audit_key_created: got '$ev', key id $kid"
${RUNBOOK_WRAP:-} "$RUNBOOK" run --output json --state-dir "$tmp/state" "$tmp/one.yaml" \
	>"$tmp/out" 2>"$tmp/err"
! grep -q audit_key_created "$tmp/out" && ok || bad "the host key was announced again"

echo "layers: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
