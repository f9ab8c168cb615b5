/*
 * runbook validate FILE...: load and check each file, report every problem,
 * and exit 0 when all are valid, 2 when one is invalid, 1 when one cannot be
 * read.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "render.h"
#include "runbook.h"
#include "util.h"

/* Where a command splices shell text (shell.raw): warnings, for review. */
static void print_splices(struct rb_runbook *rb)
{
	struct rb_diags d;
	rb_diags_init(&d, rb->file, rb->src, rb->srclen);
	for (size_t i = 0; i < rb->nsteps; i++) {
		rb_render_check_args(rb, rb->steps[i], &d, 1);
		if (rb->steps[i]->check)
			rb_render_check_args(rb, rb->steps[i]->check, &d, 1);
	}
	rb_diags_print(&d, stderr, rb_use_color(stderr));
	rb_diags_release(&d);
}

int cmd_validate(int argc, char **argv)
{
	static const struct rb_opt opts[] = {{'q', "quiet", 0}, {0, NULL, 0}};
	struct rb_optparse p;
	const char **files = rb_xcalloc((size_t)argc, sizeof(*files));
	int quiet = 0, nfiles = 0, worst = RB_EXIT_OK, k;

	rb_opt_init(&p, "validate", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		if (k == RB_OPT_ERROR) {
			free(files);
			return RB_EXIT_INVALID;
		}
		if (k == RB_OPT_HELP) {
			free(files);
			rb_print_usage("validate", stdout);
			return RB_EXIT_OK;
		}
		if (k == RB_OPT_ARG)
			files[nfiles++] = p.val;
		else
			quiet = 1;
	}
	if (!nfiles) {
		free(files);
		return rb_usage_error("validate: no file given (usage: runbook validate "
				      "FILE...)");
	}
	for (int i = 0; i < nfiles; i++) {
		struct rb_runbook *rb;
		int rc = rb_cli_load(files[i], &rb);
		if (rc == RB_EXIT_OK) {
			print_splices(rb);
			if (!quiet)
				printf("%s: ok (%zu step%s)\n", files[i], rb->nsteps,
				       rb->nsteps == 1 ? "" : "s");
			rb_runbook_free(rb);
		}
		/* An unreadable file outranks an invalid one. */
		if (rc == RB_EXIT_FAILED || (rc == RB_EXIT_INVALID && worst == RB_EXIT_OK))
			worst = rc;
	}
	free(files);
	return worst;
}
