/*
 * runbook plan FILE [-p NAME=VALUE]... [--format text|json|markdown]: the
 * dry-run review.  Parses options, loads, resolves params, prints the plan.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "plan.h"
#include "util.h"

int cmd_plan(int argc, char **argv)
{
	static const struct rb_opt opts[] = {
		{'p', "param", 1}, {'f', "format", 1}, {0, NULL, 0},
	};
	struct rb_optparse p;
	const char *file = NULL, *format = "text";
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
			if (file) {
				rc = rb_usage_error("plan: one file at a time");
				goto out;
			}
			file = p.val;
		} else if (k == 0) {
			params[nparams++] = (char *)p.val;
		} else {
			format = p.val;
		}
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
	struct rb_diags d;
	rb_diags_init(&d, file, rb->src, rb->srclen);
	json_t *pj = rb_params_resolve(rb, params, nparams, &d);
	json_t *plan = pj ? rb_plan_build(rb, pj, &d) : NULL;
	rb_diags_print(&d, stderr, rb_use_color(stderr));
	if (!plan) {
		rc = RB_EXIT_INVALID;
	} else if (!strcmp(format, "json")) {
		json_dumpf(plan, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
	} else if (!strcmp(format, "markdown")) {
		rb_plan_markdown(plan, stdout);
	} else {
		rb_plan_text(plan, stdout, rb_use_color(stdout));
	}
	json_decref(plan);
	json_decref(pj);
	rb_diags_release(&d);
	rb_runbook_free(rb);
out:
	free(params);
	return rc;
}
