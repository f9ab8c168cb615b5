/*
 * Tests interp/plandiff.c and interp/mdsplit.c below the command line: the
 * destructive statements found in SQL and commands, the matching of steps
 * (by id, renamed, moved) on plans written as JSON, and the split of long
 * markdown at every size from the least to past the whole, each part
 * checked and the parts put back together.
 *
 * Build and run from the repository root: make build/unit/test_plandiff &&
 * build/unit/test_plandiff (make test runs it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdsplit.h"
#include "plandiff.h"
#include "util.h"

#include "check.h"

/* --- destructive statements ---------------------------------------------------- */

static const struct {
	const char *text;
	const char *want;       /* "kind:statement[:no_where]|...", "" for none */
} sql_cases[] = {
	{"DELETE FROM sessions WHERE expires_at < now()", "deletes:DELETE FROM sessions WHERE expires_at < now()"},
	{"delete from sessions", "deletes:delete from sessions:no_where"},
	{"DELETE FROM t;\nTRUNCATE audit_log; DROP TABLE x;",
	 "deletes:DELETE FROM t:no_where|truncates:TRUNCATE audit_log|drops:DROP TABLE x"},
	{"psql -c \"DELETE FROM t\" && psql -c \"VACUUM\" WHERE", "deletes:DELETE FROM t:no_where"},
	{"ALTER TABLE users DROP COLUMN legacy", "drops:DROP COLUMN legacy"},
	{"SELECT deleted_at, dropped FROM t", ""},
	{"echo 'drop us a line'; truncate -s 0 /var/log/app.log", ""},
	{"UNDELETE FROM x; XDROP TABLE y", ""},
	{"DELETE\n  FROM audit\n  WHERE id = 1", "deletes:DELETE FROM audit WHERE id = 1"},
	{"FLUSHALL", "flushes:FLUSHALL"},
	{"redis-cli FLUSHDB ASYNC", "flushes:FLUSHDB ASYNC"},
	{"print('FLUSHDB done')", ""},
	{"", ""},
};

static void test_sql(void)
{
	for (size_t i = 0; i < sizeof(sql_cases) / sizeof(sql_cases[0]); i++) {
		json_t *out = json_array();
		rb_plandiff_sql(sql_cases[i].text, out);
		struct rb_buf b;
		rb_buf_init(&b);
		size_t k;
		json_t *x;
		json_array_foreach(out, k, x) {
			rb_buf_printf(&b, "%s%s:%s%s", k ? "|" : "",
				      json_string_value(json_object_get(x, "kind")),
				      json_string_value(json_object_get(x, "statement")),
				      json_is_true(json_object_get(x, "no_where")) ? ":no_where" : "");
		}
		const char *got = b.s ? b.s : "";
		CHECK(!strcmp(got, sql_cases[i].want), "sql %zu: '%s' gave '%s', expected '%s'", i,
		      sql_cases[i].text, got, sql_cases[i].want);
		rb_buf_release(&b);
		json_decref(out);
	}
	/* a long statement is cut at 80 characters, never inside one */
	char *long_sql = rb_xasprintf("DROP TABLE %s", "ééééééééééééééééééééééééééééééééééééééééééééééé");
	json_t *out = json_array();
	rb_plandiff_sql(long_sql, out);
	const char *st = json_string_value(json_object_get(json_array_get(out, 0), "statement"));
	CHECK(st && strlen(st) <= 84 && rb_utf8_check(st, strlen(st)) == strlen(st) &&
	      !strcmp(st + strlen(st) - 3, "..."), "a long statement: '%s'", st ? st : "(none)");
	json_decref(out);
	free(long_sql);
}

/* --- matching steps --------------------------------------------------------------- */

/* A plan of steps "id:action:arg" separated by spaces. */
static json_t *plan_of(const char *steps)
{
	json_t *p = json_pack("{s:{s:s, s:s, s:s}, s:{}, s:{}, s:[], s:[], s:{s:[], s:[]}}",
			      "runbook", "name", "t", "file", "t.yaml", "sha256", "0", "params",
			      "vars", "secrets", "steps", "on_failure", "stages", "steps");
	char *copy = rb_xstrdup(steps), *save = NULL;
	for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		char *id = t, *action = strchr(id, ':');
		*action++ = '\0';
		char *arg = strchr(action, ':');
		*arg++ = '\0';
		json_array_append_new(json_object_get(p, "steps"),
				      json_pack("{s:s, s:s, s:s, s:b, s:{s:s}, s:[]}", "id", id,
						"action", action, "form", "action", "side_effects", 0,
						"with", "x", arg, "needs"));
	}
	free(copy);
	return p;
}

/* The steps of a diff as "change id[<renamed_from][^moved]" separated by spaces. */
static char *steps_of(const json_t *d)
{
	struct rb_buf b;
	rb_buf_init(&b);
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(d, "steps"), i, e) {
		rb_buf_printf(&b, "%s%c%s", i ? " " : "",
			      json_string_value(json_object_get(e, "change"))[0],
			      json_string_value(json_object_get(e, "id")));
		if (json_object_get(e, "renamed_from"))
			rb_buf_printf(&b, "<%s", json_string_value(json_object_get(e, "renamed_from")));
		if (json_object_get(e, "moved"))
			rb_buf_putc(&b, '^');
	}
	return b.s ? rb_buf_detach(&b) : rb_xstrdup("");
}

static const struct {
	const char *old, *new, *want, *summary;
} match_cases[] = {
	{"a:x:1 b:x:2", "a:x:1 b:x:2", "", "no changes"},
	{"a:x:1 b:x:2", "a:x:1 c:x:2", "cc<b", "0 steps changed, 0 added, 0 removed, 1 renamed; no destructive changes"},
	/* the same call twice: each removed step pairs with one added step, in order */
	{"a:x:1 b:x:1", "c:x:1 d:x:1", "cc<a cd<b", NULL},
	/* another argument: no rename */
	{"a:x:1", "b:x:2", "ab ra", "0 steps changed, 1 added, 1 removed; no destructive changes"},
	/* another action: no rename */
	{"a:x:1", "b:y:1", "ab ra", NULL},
	/* one step moved to the front: only it */
	{"a:x:1 b:x:2 c:x:3 d:x:4", "d:x:4 a:x:1 b:x:2 c:x:3", "cd^", NULL},
	/* reversed: all but one moved */
	{"a:x:1 b:x:2 c:x:3", "c:x:3 b:x:2 a:x:1", "cc^ cb^", NULL},
	/* removed steps are listed where they were */
	{"a:x:1 b:x:2 c:x:3", "a:x:1 c:x:3 d:x:4", "rb ad", NULL},
	{"", "a:x:1", "aa", NULL},
	{"a:x:1", "", "ra", NULL},
};

static void test_match(void)
{
	for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		json_t *o = plan_of(match_cases[i].old), *n = plan_of(match_cases[i].new);
		json_t *d = rb_plandiff(o, n);
		char *got = steps_of(d);
		CHECK(!strcmp(got, match_cases[i].want), "match %zu: '%s' -> '%s' gave '%s', expected '%s'",
		      i, match_cases[i].old, match_cases[i].new, got, match_cases[i].want);
		const char *text = json_string_value(json_object_get(json_object_get(d, "summary"), "text"));
		if (match_cases[i].summary)
			CHECK(!strcmp(text, match_cases[i].summary), "match %zu: summary '%s'", i, text);
		CHECK(json_is_true(json_object_get(d, "changed")) == (match_cases[i].want[0] != '\0'),
		      "match %zu: changed", i);
		free(got);
		json_decref(d);
		json_decref(o);
		json_decref(n);
	}
	/* a plan that is not there: every step added */
	json_t *n = plan_of("a:x:1 b:x:2");
	json_t *d = rb_plandiff(NULL, n);
	char *got = steps_of(d);
	CHECK(!strcmp(got, "aa ab") && json_is_null(json_object_get(d, "old")), "no old plan: '%s'", got);
	free(got);
	json_decref(d);
	json_decref(n);
}

/* --- the split ------------------------------------------------------------------- */

/* The markdown the split must take apart: details around fences, one line very long. */
static char *sample(void)
{
	struct rb_buf b;
	rb_buf_init(&b);
	rb_buf_puts(&b, "## Plan diff: `t`\n\n**3 steps changed**\n\n");
	for (int s = 0; s < 6; s++) {
		rb_buf_printf(&b, "<details><summary>Changed <code>step_%d</code> (shell)</summary>\n\n", s);
		/* a fence longer than the runs of backticks inside, as the renderer makes it */
		rb_buf_printf(&b, "- `command`:\n  %s\n", s % 2 ? "`````diff" : "````diff");
		for (int l = 0; l < 40 + 20 * s; l++)
			rb_buf_printf(&b, "  %c UPDATE t SET n = %d WHERE id = %d; -- é ``` step %d\n",
				      l % 3 ? '+' : '-', l, l, s);
		if (s == 3) {   /* one line longer than any part */
			rb_buf_puts(&b, "  + echo");
			for (int k = 0; k < 900; k++)
				rb_buf_puts(&b, " ë-token");
			rb_buf_putc(&b, '\n');
		}
		rb_buf_printf(&b, "  %s\n\n- `timeout`: `5m` → none\n\n</details>\n", s % 2 ? "`````" : "````");
	}
	return rb_buf_detach(&b);
}

/* The text without what a split adds: fence and details lines, markers, blank lines, newlines. */
static char *content(const char *md)
{
	struct rb_buf b;
	rb_buf_init(&b);
	for (const char *p = md; *p;) {
		const char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		const char *q = p;
		while (q < p + n && *q == ' ')
			q++;
		size_t run = 0;
		while (q + run < p + n && q[run] == '`')
			run++;
		int fence = run >= 4 && (q + run == p + n || !strncmp(q + run, "diff\n", 5));
		int structural = n == 0 || fence || !strncmp(p, "<details>", 9) ||
				 !strncmp(p, "</details>", 10) || !strncmp(p, "<sub>", 5);
		if (!structural)
			rb_buf_add(&b, p, n);
		p += n + (e ? 1 : 0);
	}
	return b.s ? rb_buf_detach(&b) : rb_xstrdup("");
}

/* 0 when every fence and <details> of part is closed in it, and no character is cut. */
static int balanced(const char *part)
{
	size_t fence = 0;
	int details = 0;
	for (const char *p = part; *p;) {
		const char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		size_t ind = 0, run = 0;
		while (ind < n && p[ind] == ' ')
			ind++;
		while (ind + run < n && p[ind + run] == '`')
			run++;
		if (ind <= 3 && run >= 3) {
			if (!fence)
				fence = run;
			else if (run >= fence && ind + run == n)
				fence = 0;
		} else if (!fence && !strncmp(p, "<details>", 9)) {
			details++;
		} else if (!fence && !strncmp(p, "</details>", 10)) {
			details--;
		}
		p += n + (e ? 1 : 0);
	}
	return fence || details || rb_utf8_check(part, strlen(part)) != strlen(part);
}

static void test_split(void)
{
	char *md = sample();
	size_t len = strlen(md);
	char *want = content(md);
	size_t tried = 0;
	for (size_t max = RB_MDSPLIT_MIN; max < len + 2000; max += max < 4000 ? 7 : 997) {
		struct rb_strv parts = {0};
		char *err = NULL;
		int rc = rb_md_split(md, len, max, &parts, &err);
		CHECK(rc == 0, "split at %zu: %s", max, err ? err : "");
		if (rc) {
			free(err);
			break;
		}
		struct rb_buf all;
		rb_buf_init(&all);
		int ok = 1;
		for (size_t i = 0; i < parts.n && ok; i++) {
			const char *p = parts.v[i];
			if (strlen(p) > max || balanced(p)) {
				CHECK(0, "split at %zu: part %zu of %zu: %zu bytes, or something open",
				      max, i + 1, parts.n, strlen(p));
				ok = 0;
			}
			char head[64];
			snprintf(head, sizeof(head), "<sub>part %zu of %zu</sub>\n", i + 1, parts.n);
			if (i && strncmp(p, head, strlen(head))) {
				CHECK(0, "split at %zu: part %zu has no header", max, i + 1);
				ok = 0;
			}
			rb_buf_puts(&all, p);
		}
		char *got = content(all.s);
		CHECK(!strcmp(got, want), "split at %zu: the parts do not hold the text", max);
		CHECK((parts.n == 1) == (len <= max), "split at %zu: %zu parts of %zu bytes", max,
		      parts.n, len);
		if (parts.n == 1)
			CHECK(!strcmp(parts.v[0], md), "split at %zu: one part, not the text as it is", max);
		free(got);
		rb_buf_release(&all);
		rb_strv_release(&parts);
		tried++;
	}
	CHECK(tried > 100, "tried %zu sizes", tried);

	/* too small; a line outside a fence longer than a part */
	struct rb_strv parts = {0};
	char *err = NULL;
	CHECK(rb_md_split(md, len, 1023, &parts, &err) < 0 && strstr(err, "too small"),
	      "1023 bytes: %s", err ? err : "accepted");
	free(err);
	err = NULL;
	char *prose = rb_xmalloc(3001);
	memset(prose, 'a', 3000);
	prose[3000] = '\0';
	CHECK(rb_md_split(prose, 3000, 1500, &parts, &err) < 0 && strstr(err, "does not fit"),
	      "a long line of prose: %s", err ? err : "split");
	free(err);
	rb_strv_release(&parts);
	free(prose);
	free(want);
	free(md);
}

int main(void)
{
	test_sql();
	test_match();
	test_split();
	printf("test_plandiff: %d passed, %d failed\n", npass, nfail);
	return nfail != 0;
}
