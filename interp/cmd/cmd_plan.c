/*
 * runbook plan FILE [-p NAME=VALUE]... [--format text|json|markdown]: the
 * dry-run review.  Parses options, loads, resolves params, prints the plan.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_plandiff.h"
#include "plan.h"
#include "plan_review.h"
#include "util.h"

int cmd_plan(int argc, char **argv)
{
	static const struct rb_opt opts[] = {
		{'p', "param", 1}, {'f', "format", 1}, {0, "diff", 0}, {0, "base", 1},
		{0, "split", 1}, {0, "max-bytes", 1}, {0, "save", 1}, {0, NULL, 0},
	};
	struct rb_optparse p;
	struct rb_plandiff_opts diff = {0};     /* --diff, --base: cmd_plandiff.c */
	const char *file = NULL, *format = "text", *save = NULL;
	char **params = rb_xcalloc((size_t)argc, sizeof(*params));
	size_t nparams = 0;
	int k, rc = RB_EXIT_OK;

	rb_opt_init(&p, "plan", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		if (k == RB_OPT_ERROR) {
			rc = RB_EXIT_INVALID;
			goto out;
		}
		if (k == RB_OPT_HELP) {
			rb_print_usage("plan", stdout);
			goto out;
		}
		if (k == RB_OPT_ARG) {
			if (diff.nfiles < 2)
				diff.files[diff.nfiles] = p.val;
			diff.nfiles++;
			file = file ? file : p.val;
		} else if (k == 0) {
			params[nparams++] = (char *)p.val;
		} else if (k == 1) {
			format = p.val;
		} else if (k == 6) {
			save = p.val;
		} else {
			diff.diff |= k == 2;
			diff.base = k == 3 ? p.val : diff.base;
			diff.split = k == 4 ? p.val : diff.split;
			diff.max_bytes = k == 5 ? p.val : diff.max_bytes;
		}
	}
	if (diff.diff || diff.base || diff.split || diff.max_bytes) {
		if (!diff.diff && !diff.base) {
			rc = rb_usage_error("plan: --split and --max-bytes go with --diff or --base");
			goto out;
		}
		diff.format = format;
		diff.params = params;
		diff.nparams = nparams;
		rc = rb_cmd_plan_diff(&diff);
		goto out;
	}
	if (diff.nfiles > 1) {
		rc = rb_usage_error("plan: one file at a time");
		goto out;
	}
	if (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "markdown")) {
		rc = rb_usage_error("plan: unknown format '%s' (expected text, json or markdown)",
				    format);
		goto out;
	}
	if (!file) {
		rc = rb_usage_error("plan: no file given (usage: runbook plan FILE)");
		goto out;
	}

	struct rb_runbook *rb;
	rc = rb_cli_load(file, &rb);
	if (rc != RB_EXIT_OK)
		goto out;
	/*
	 * The plan goes to memory first: a plan that fails half-way (an
	 * expression error) prints only the errors, never half a document.
	 */
	struct rb_diags d;
	rb_diags_init(&d, file, rb->src, rb->srclen);
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	struct rb_plan_out po = {.f = mem, .color = rb_use_color(stdout)};
	const struct rb_plan_renderer *r = !strcmp(format, "json")       ? &rb_plan_json
					  : !strcmp(format, "markdown") ? &rb_plan_markdown
									: &rb_plan_text;
	json_t *pj = mem ? rb_params_resolve(rb, params, nparams, &d) : NULL;
	int ok = pj && rb_plan_write(rb, pj, r, &po, &d) == 0;
	if (mem)
		fclose(mem);
	rb_diags_print(&d, stderr, rb_use_color(stderr));
	if (!mem) {
		fprintf(stderr, "runbook: error: out of memory\n");
		rc = RB_EXIT_FAILED;
	} else if (!ok) {
		rc = RB_EXIT_INVALID;
	} else if (rb_cli_write_redacted(rb, NULL, buf, len, stdout) < 0) {
		fprintf(stderr, "runbook: error: cannot write the plan\n");
		rc = RB_EXIT_FAILED;
	} else if (save) {
		/* The reviewed plan: the JSON plan and its hash (plan_review.h). */
		json_t *plan = rb_review_plan(rb, pj, &d);
		char *err = NULL;
		if (!plan || rb_review_save(plan, save, &err) < 0) {
			if (err)
				rb_cli_error("plan: %s", err);
			rc = RB_EXIT_FAILED;
		}
		free(err);
		json_decref(plan);
	}
	free(buf);
	json_decref(pj);
	rb_diags_release(&d);
	rb_runbook_free(rb);
out:
	free(params);
	return rc;
}
