/*
 * runbook eval [-r FILE] [-p NAME=VALUE]... EXPRESSION: evaluate a Lua
 * expression in the sandbox, with a runbook's params and vars in scope, and
 * print its value as JSON.  --run-tests FILE checks a file of cases (as jq
 * does), which is how the expression and sandbox suites are written.
 */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "luabox.h"
#include "plan.h"
#include "runbook.h"
#include "util.h"

struct evaluator {
	struct rb_luabox *box;
	int scope;
	long ms;
};

/* Evaluate code; returns the compact JSON of the value, or NULL with *err. */
static char *eval(struct evaluator *e, const char *code, int chunk, char **err)
{
	lua_State *L = rb_luabox_state(e->box);
	int line = 0;
	if (rb_luabox_eval(e->box, e->scope, code, strlen(code), !chunk, e->ms, err, &line) < 0)
		return NULL;
	json_t *j = rb_lua_to_json(L, -1, err);
	lua_pop(L, 1);
	if (!j)
		return NULL;
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
	json_decref(j);
	return s;
}

/* Normalise expected JSON so that spacing and key order do not matter. */
static char *canonical(const char *text)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
	if (!j)
		return NULL;
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
	json_decref(j);
	return s;
}

/*
 * Case files: blank-line separated cases of two lines, the code (an
 * expression, or a chunk after "lua: ") and the expected value as JSON or
 * "error: TEXT" (a substring of the message).  "# " starts a comment line and
 * "%timeout MS" sets the deadline of the cases after it.
 */
static int run_tests(struct evaluator *e, const char *path)
{
	char *buf, *err = NULL;
	size_t len;
	if (rb_read_file(path, 1 << 24, &buf, &len, &err) < 0) {
		rb_cli_error("%s", err);
		free(err);
		return RB_EXIT_FAILED;
	}
	int pass = 0, fail = 0, lineno = 0, case_line = 0;
	char *code = NULL;
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		/* strtok_r skips empty lines; count them from the gap. */
		for (char *p = line - 2; p >= buf && *p == '\n'; p--)
			lineno++;
		if (line[0] == '#' && (line[1] == ' ' || line[1] == '\0'))
			continue;
		if (!strncmp(line, "%timeout ", 9)) {
			e->ms = atol(line + 9);
			continue;
		}
		if (!code) {
			code = line;
			case_line = lineno;
			continue;
		}
		int chunk = !strncmp(code, "lua: ", 5);
		const char *src = chunk ? code + 5 : code;
		char *got = eval(e, src, chunk, &err);
		int ok;
		if (!strncmp(line, "error: ", 7)) {
			ok = !got && strstr(err, line + 7);
		} else {
			char *want = canonical(line);
			ok = got && want && !strcmp(got, want);
			if (!want)
				fprintf(stderr, "%s:%d: error: expected value is not JSON: %s\n", path,
					lineno, line);
			free(want);
		}
		if (ok) {
			pass++;
		} else {
			fail++;
			printf("%s:%d: FAIL %s\n  expected: %s\n  got: %s%s\n", path, case_line, src,
			       line, got ? got : "error: ", got ? "" : err);
		}
		free(got);
		free(err);
		err = NULL;
		code = NULL;
	}
	if (code) {
		fprintf(stderr, "%s:%d: error: case without an expected value\n", path, case_line);
		fail++;
	}
	free(buf);
	printf("%s: %d passed, %d failed\n", path, pass, fail);
	return fail ? RB_EXIT_FAILED : RB_EXIT_OK;
}

int cmd_eval(int argc, char **argv)
{
	static const struct rb_opt opts[] = {
		{'r', "runbook", 1}, {'p', "param", 1}, {0, "timeout", 1}, {0, "run-tests", 1},
		{0, "lua", 0}, {0, NULL, 0},
	};
	struct rb_optparse p;
	const char *file = NULL, *expr = NULL, *tests = NULL;
	char **params = rb_xcalloc((size_t)argc, sizeof(*params));
	size_t nparams = 0;
	int k, rc = RB_EXIT_OK, chunk = 0;
	struct evaluator e = {.ms = RB_EXPR_MS_DEFAULT};
	struct rb_runbook *rb = NULL;
	json_t *pj = NULL, *vars = NULL;
	struct rb_diags d;
	rb_diags_init(&d, "runbook", NULL, 0);

	rb_opt_init(&p, "eval", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		switch (k) {
		case RB_OPT_ERROR:
			rc = RB_EXIT_INVALID;
			goto out;
		case RB_OPT_HELP:
			rb_print_usage("eval", stdout);
			goto out;
		case RB_OPT_ARG:
			if (expr) {
				rc = rb_usage_error("eval: one expression at a time");
				goto out;
			}
			expr = p.val;
			break;
		case 0:
			file = p.val;
			break;
		case 1:
			params[nparams++] = (char *)p.val;
			break;
		case 2:
			e.ms = atol(p.val);
			if (e.ms <= 0) {
				rc = rb_usage_error("eval: --timeout takes milliseconds > 0");
				goto out;
			}
			break;
		case 3:
			tests = p.val;
			break;
		case 4:
			chunk = 1;
			break;
		}
	}
	if (!expr && !tests) {
		rc = rb_usage_error("eval: no expression given (usage: runbook eval EXPRESSION)");
		goto out;
	}
	if (file && (rc = rb_cli_load(file, &rb)) != RB_EXIT_OK)
		goto out;
	if (rb) {
		d.file = file;
		d.src = rb->src;
		d.srclen = rb->srclen;
		pj = rb_params_resolve(rb, params, nparams, &d);
	} else if (nparams) {
		rc = rb_usage_error("eval: -p needs a runbook (-r FILE)");
		goto out;
	} else {
		pj = json_object();
	}
	e.box = pj ? rb_luabox_new(0) : NULL;
	if (e.box)
		e.scope = rb_plan_scope(rb, pj, e.box, &d, &vars);
	rb_diags_print(&d, stderr, rb_use_color(stderr));
	if (!e.box || !e.scope) {
		rc = RB_EXIT_INVALID;
		goto out;
	}
	if (tests) {
		rc = run_tests(&e, tests);
		goto out;
	}
	char *err = NULL;
	char *v = eval(&e, expr, chunk, &err);
	if (v) {
		puts(v);
		free(v);
	} else {
		rb_cli_error("%s", err);
		free(err);
		rc = RB_EXIT_FAILED;
	}
out:
	rb_luabox_free(e.box);
	json_decref(vars);
	json_decref(pj);
	rb_diags_release(&d);
	rb_runbook_free(rb);
	free(params);
	return rc;
}
