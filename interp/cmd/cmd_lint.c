/*
 * runbook lint FILE... [--output text|json]: validate each file, then report
 * what a reviewer cares about beyond validity (lint.h).  Exit 0 when no file
 * has a warning, 1 when one has, 2 when one is invalid or cannot be read.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "diag.h"
#include "lint.h"
#include "runbook.h"
#include "util.h"

static void print_text(struct rb_runbook *rb, const struct rb_lint *v, size_t n)
{
	struct rb_diags d;
	rb_diags_init(&d, rb->file, rb->src, rb->srclen);
	for (size_t i = 0; i < n; i++)
		rb_warning_pos(&d, v[i].line, v[i].col, "%s [%s]", v[i].msg, rb_lint_ids[v[i].id]);
	rb_diags_print(&d, stdout, rb_use_color(stdout));
	rb_diags_release(&d);
}

static void to_json(json_t *a, const char *file, const struct rb_lint *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:s, s:i, s:i, s:s, s:s}", "file", file,
						   "line", v[i].line, "col", v[i].col, "id",
						   rb_lint_ids[v[i].id], "message", v[i].msg));
}

int cmd_lint(int argc, char **argv)
{
	static const struct rb_opt opts[] = {{'o', "output", 1}, {0, NULL, 0}};
	struct rb_optparse p;
	const char **files = rb_xcalloc((size_t)argc, sizeof(*files));
	const char *output = "text";
	int nfiles = 0, k, rc = RB_EXIT_OK;

	rb_opt_init(&p, "lint", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		if (k == RB_OPT_ERROR) {
			free(files);
			return RB_EXIT_INVALID;
		}
		if (k == RB_OPT_HELP) {
			free(files);
			rb_print_usage("lint", stdout);
			return RB_EXIT_OK;
		}
		if (k == RB_OPT_ARG)
			files[nfiles++] = p.val;
		else
			output = p.val;
	}
	if (strcmp(output, "text") && strcmp(output, "json")) {
		free(files);
		return rb_usage_error("lint: unknown output '%s' (expected text or json)", output);
	}
	if (!nfiles) {
		free(files);
		return rb_usage_error("lint: no file given (usage: runbook lint FILE...)");
	}
	json_t *all = json_array(), *invalid = json_array();
	for (int i = 0; i < nfiles; i++) {
		struct rb_runbook *rb;
		if (rb_cli_load(files[i], &rb) != RB_EXIT_OK) {
			json_array_append_new(invalid, json_string(files[i]));
			rc = RB_EXIT_INVALID;
			continue;
		}
		struct rb_lint *v;
		size_t n = rb_lint_runbook(rb, &v);
		if (n && rc == RB_EXIT_OK)
			rc = RB_EXIT_FAILED;
		if (!strcmp(output, "json"))
			to_json(all, files[i], v, n);
		else
			print_text(rb, v, n);
		rb_lint_free(v, n);
		rb_runbook_free(rb);
	}
	if (!strcmp(output, "json")) {
		json_t *o = json_pack("{s:i, s:o, s:o}", "format_version", 1, "warnings", all,
				      "invalid", invalid);
		json_dumpf(o, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		putchar('\n');
		json_decref(o);
	} else {
		json_decref(all);
		json_decref(invalid);
	}
	free(files);
	return rc;
}
