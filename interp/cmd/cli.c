/*
 * Helpers for the subcommands: loading a file and turning its diagnostics
 * into output and an exit status, printing usage, and finding and verifying
 * audit logs.  Never called by the engine.
 */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "diag.h"
#include "journal.h"
#include "redact.h"
#include "runbook.h"
#include "rundir.h"
#include "util.h"

static void verror(const char *fmt, va_list ap)
{
	char *m = rb_xvasprintf(fmt, ap);
	char *shown = rb_visible(m, strlen(m), RB_VIS_TAB);
	fprintf(stderr, "runbook: error: %s\n", shown);
	free(shown);
	free(m);
}

void rb_cli_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(fmt, ap);
	va_end(ap);
}

int rb_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(fmt, ap);
	va_end(ap);
	return RB_EXIT_INVALID;
}

int rb_cli_load(const char *path, struct rb_runbook **out)
{
	char *buf = NULL, *err = NULL;
	size_t len = 0;
	*out = NULL;
	if (rb_read_file(path, RB_MAX_INPUT, &buf, &len, &err) < 0) {
		fprintf(stderr, "%s: error: %s\n", path, err);
		free(err);
		return RB_EXIT_FAILED;
	}
	struct rb_diags d;
	rb_diags_init(&d, path, NULL, 0);
	struct rb_runbook *rb = rb_runbook_load(path, buf, len, &d);
	free(buf);
	d.src = rb->src;
	d.srclen = rb->srclen;
	int color = rb_use_color(stderr);
	rb_diags_print(&d, stderr, color);
	int rc = d.errors ? RB_EXIT_INVALID : RB_EXIT_OK;
	rb_diags_release(&d);
	if (rc != RB_EXIT_OK) {
		rb_runbook_free(rb);
		return rc;
	}
	*out = rb;
	return RB_EXIT_OK;
}

void rb_opt_init(struct rb_optparse *p, const char *cmd, int argc, char **argv)
{
	memset(p, 0, sizeof(*p));
	p->argc = argc;
	p->argv = argv;
	p->i = 1;
	p->cmd = cmd;
}

int rb_opt_next(struct rb_optparse *p, const struct rb_opt *opts)
{
	if (p->i >= p->argc)
		return RB_OPT_END;
	char *a = p->argv[p->i++];
	if (p->dashdash || a[0] != '-' || a[1] == '\0') {
		p->val = a;
		return RB_OPT_ARG;
	}
	if (!strcmp(a, "--")) {
		p->dashdash = 1;
		return rb_opt_next(p, opts);
	}
	if (!strcmp(a, "-h") || !strcmp(a, "--help"))
		return RB_OPT_HELP;
	const char *inline_val = NULL;
	int k;
	for (k = 0; opts[k].longname || opts[k].name; k++) {
		const struct rb_opt *o = &opts[k];
		if (a[1] == '-' && o->longname) {
			size_t n = strlen(o->longname);
			if (!strncmp(a + 2, o->longname, n) && (a[2 + n] == '\0' || a[2 + n] == '=')) {
				inline_val = a[2 + n] == '=' ? a + 3 + n : NULL;
				break;
			}
		} else if (a[1] != '-' && o->name && a[1] == o->name) {
			inline_val = a[2] ? a + 2 : NULL;
			break;
		}
	}
	if (!opts[k].longname && !opts[k].name) {
		rb_usage_error("%s: unknown option '%s' (see 'runbook %s --help')", p->cmd, a,
			       p->cmd);
		return RB_OPT_ERROR;
	}
	if (!opts[k].has_arg) {
		if (inline_val && a[1] == '-') {
			rb_usage_error("%s: option '--%s' takes no value", p->cmd,
				       opts[k].longname);
			return RB_OPT_ERROR;
		}
		if (inline_val) {
			rb_usage_error("%s: unknown option '%s'", p->cmd, a);
			return RB_OPT_ERROR;
		}
		return k;
	}
	if (inline_val) {
		p->val = inline_val;
		return k;
	}
	if (p->i >= p->argc) {
		rb_usage_error("%s: option '%s' needs a value", p->cmd, a);
		return RB_OPT_ERROR;
	}
	p->val = p->argv[p->i++];
	return k;
}

int rb_cli_write_redacted(const struct rb_runbook *rb, const struct rb_redactor *with,
			  const char *buf, size_t len, FILE *f)
{
	struct rb_redactor *own = NULL;
	char *clean = NULL;
	if (!with) {
		own = rb_redactor_new();
		if (rb_runbook_add_patterns(rb, own))
			with = own;
	}
	if (with)
		buf = clean = rb_redact(with, buf, len, &len);
	int rc = fwrite(buf, 1, len, f) == len && fflush(f) == 0 ? 0 : -1;
	free(clean);
	rb_redactor_free(own);
	return rc;
}

/* --- audit logs: what `audit verify` and `replay` share ------------------------------ */

struct rb_audit_keyring *rb_cli_keyring(const char *opt, const char *state_opt)
{
	char *path = opt ? rb_xstrdup(opt) : rb_xasprintf("%s/keys", rb_state_dir(state_opt));
	struct rb_audit_keyring *kr = NULL;
	char *err = NULL;
	if (rb_audit_keyring_load(path, &kr, &err) < 0) {
		fprintf(stderr, "runbook: error: %s%s\n", err,
			opt ? "" : " (give the trusted public keys with --keyring DIR)");
		free(err);
	}
	free(path);
	return kr;
}

int rb_cli_run_log(const char *arg, const char *state, char **path, struct rb_audit_head *kept)
{
	struct stat st;
	char *dir = NULL;
	if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode))
		dir = rb_xstrdup(arg);
	else if (errno == ENOENT && !strchr(arg, '/') && arg[0] != '.')
		dir = rb_run_dir(rb_state_dir(state), arg);
	if (!dir || stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		free(dir);
		*path = rb_xstrdup(arg);
		return 0;
	}
	*path = rb_xasprintf("%s/%s", dir, RB_RUN_AUDIT);
	char *err = NULL;
	int r = rb_run_head(dir, &kept->seq, kept->sha256, &err);
	if (r < 0) {
		rb_cli_error("%s", err);
		free(err);
		free(*path);
	}
	free(dir);
	return r;
}

void rb_cli_verify_error(const char *path, const struct rb_audit_result *r)
{
	if (!r->bad_line)
		fprintf(stderr, "%s: error: %s\n", path, r->reason);
	else if (r->bad_seq)
		fprintf(stderr, "%s:%" PRIu64 ": error: seq %" PRIu64 ": %s\n", path, r->bad_line,
			r->bad_seq, r->reason);
	else
		fprintf(stderr, "%s:%" PRIu64 ": error: %s\n", path, r->bad_line, r->reason);
}

const char *rb_cli_self(void)
{
	/* The path, not /proc/self/exe itself: under valgrind that is valgrind's tool, and
	 * readlink answers with the program (make valgrind runs schedule due's children). */
	static char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return "runbook";
	self[n] = '\0';
	return self;
}
