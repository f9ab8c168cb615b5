/*
 * runbook schedule due [--catch-up DURATION] [--state-dir DIR] [DIR|FILE...]:
 * for hosts with only cron (`* * * * * runbook schedule due DIR`) and for the
 * units `schedule install` writes: each runbook whose latest slot is due and
 * not yet claimed is started as `runbook run --slot SLOT FILE`, a process of
 * its own, all at once; a slot older than the catch-up bound is recorded as
 * missed, never run.  Says nothing when nothing is due (cron mails output).
 */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cal.h"
#include "cli.h"
#include "isotime.h"
#include "luabox.h"
#include "runbook.h"
#include "rundir.h"
#include "slot.h"
#include "types.h"
#include "util.h"

extern char **environ;

enum { CATCH_UP_DEFAULT_MS = 3600 * 1000 };

time_t rb_cli_latest_slot(const struct rb_runbook *rb, time_t now)
{
	/* Forward only (rb_schedule_next): from ever further back until a slot shows. */
	static const time_t back[] = {3600, 86400, 32 * 86400, 367 * 86400, 5 * 366 * 86400L};
	const struct rb_window *w = rb->has_window ? &rb->window : NULL;
	const char *tz = rb->schedule_tz ? rb->schedule_tz : "UTC";
	for (size_t k = 0; k < sizeof(back) / sizeof(*back); k++) {
		time_t t = rb_schedule_next(&rb->cron, tz, w, now - back[k]), last = -1;
		while (t >= 0 && t <= now) {
			last = t;
			t = rb_schedule_next(&rb->cron, tz, w, t);
		}
		if (last >= 0)
			return last;
	}
	return -1;
}

char *rb_cli_params_file(const char *file)
{
	size_t n = strlen(file);
	if (n > 5 && !strcmp(file + n - 5, ".yaml"))
		n -= 5;
	else if (n > 4 && !strcmp(file + n - 4, ".yml"))
		n -= 4;
	return rb_xasprintf("%.*s.params", (int)n, file);
}

/*
 * The params of a scheduled run: FILE.params beside the runbook (its .yaml
 * or .yml dropped), NAME=VALUE a line, blank lines and # comments skipped;
 * none when it is missing.  -1 (printed) when it cannot be read or a line is
 * not NAME=VALUE.
 */
static int read_params(const char *file, struct rb_strv *argv)
{
	char *path = rb_cli_params_file(file), *buf = NULL, *err = NULL;
	size_t len;
	if (access(path, F_OK) < 0) {
		free(path);
		return 0;
	}
	if (rb_read_file(path, 1 << 20, &buf, &len, &err) < 0) {
		fprintf(stderr, "%s: error: %s\n", path, err);
		free(err);
		free(path);
		return -1;
	}
	int rc = 0, line = 0;
	for (char *p = buf, *nl; p && *p && rc == 0; p = nl ? nl + 1 : NULL) {
		nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		line++;
		size_t l = strlen(p);
		if (l && p[l - 1] == '\r')
			p[--l] = '\0';
		if (!*p || *p == '#')
			continue;
		if (!strchr(p, '=') || *p == '=') {
			fprintf(stderr, "%s:%d:1: error: expected NAME=VALUE (a param of the "
				"scheduled runs)\n", path, line);
			rc = -1;
			break;
		}
		rb_strv_push(argv, rb_xstrdup("-p"));
		rb_strv_push(argv, rb_xstrdup(p));
	}
	free(buf);
	free(path);
	return rc;
}

struct due {
	pid_t pid;
	char *what;
};

/* One runbook: start its due slot (a child in *kids), record a missed one; 0 or an exit status. */
static int one(const char *file, const char *state_opt, int64_t catch_up_ms, time_t now,
	       int explicit, struct due *kids, size_t *nkids)
{
	struct rb_runbook *rb;
	int rc = rb_cli_load(file, &rb);
	if (rc != RB_EXIT_OK)
		return rc;
	if (!rb->schedule) {
		rb_runbook_free(rb);
		if (explicit)
			return rb_usage_error("schedule due: %s has no schedule", file);
		return RB_EXIT_OK;
	}
	time_t slot = rb_cli_latest_slot(rb, now);
	char key[RB_SLOT_KEY_MAX], when[32], *err = NULL;
	const char *state = rb_state_dir(state_opt);
	rb_slot_key(rb->name, key);
	json_t *rec = NULL;
	int r = slot < 0 ? 0 : rb_slot_get(state, key, slot, &rec, &err);
	json_decref(rec);
	if (r < 0) {
		rb_cli_error("schedule due: %s", err);
		free(err);
		rc = RB_EXIT_FAILED;
	}
	if (slot < 0 || r != 0)         /* nothing due, or started already: nothing to say */
		goto out;
	rb_utc_text(slot, when);
	if ((int64_t)(now - slot) * 1000 > catch_up_ms) {
		char d[32], now_s[32];
		rb_duration_format(catch_up_ms, d, sizeof(d));
		rb_utc_text(now, now_s);
		json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:s}", "runbook", rb->name, "file", file,
				      "slot", when, "status", "missed", "claimed_at", now_s);
		r = rb_slot_claim(state, key, slot, m, NULL, &err);
		json_decref(m);
		if (r < 0) {
			rb_cli_error("schedule due: %s", err);
			free(err);
			rc = RB_EXIT_FAILED;
		} else if (r == 1) {
			printf("schedule due: %s: slot %s missed: it is more than %s old "
			       "(--catch-up): not run\n", rb->name, when, d);
		}
		goto out;
	}
	struct rb_strv argv = {0};
	rb_strv_push(&argv, rb_xstrdup("runbook"));
	rb_strv_push(&argv, rb_xstrdup("run"));
	rb_strv_push(&argv, rb_xstrdup("--slot"));
	rb_strv_push(&argv, rb_xstrdup(when));
	rb_strv_push(&argv, rb_xstrdup("--output"));
	rb_strv_push(&argv, rb_xstrdup("text"));
	if (state_opt) {
		rb_strv_push(&argv, rb_xstrdup("--state-dir"));
		rb_strv_push(&argv, rb_xstrdup(state_opt));
	}
	if (read_params(file, &argv) < 0) {
		rb_strv_release(&argv);
		rc = RB_EXIT_INVALID;
		goto out;
	}
	rb_strv_push(&argv, rb_xstrdup("--"));
	rb_strv_push(&argv, rb_xstrdup(file));
	printf("schedule due: %s: starting slot %s (%s)\n", rb->name, when, file);
	fflush(stdout);
	pid_t pid;
	int e = posix_spawnp(&pid, rb_cli_self(), NULL, NULL, (char *const *)rb_strv_terminated(&argv),
			    environ);
	rb_strv_release(&argv);
	if (e) {
		rb_cli_error("schedule due: cannot start %s: %s", file, strerror(e));
		rc = RB_EXIT_FAILED;
		goto out;
	}
	kids[*nkids].pid = pid;
	kids[(*nkids)++].what = rb_xasprintf("%s slot %s", rb->name, when);
out:
	rb_runbook_free(rb);
	return rc;
}

int cmd_schedule_due(int argc, char **argv)
{
	static const struct rb_opt opts[] = {
		{0, "catch-up", 1}, {0, "state-dir", 1}, {0, NULL, 0},
	};
	struct rb_optparse p;
	struct rb_strv args = {0}, files = {0};
	const char *state = NULL, *why;
	int64_t catch_up = CATCH_UP_DEFAULT_MS;
	int k, rc = RB_EXIT_OK;
	rb_opt_init(&p, "schedule due", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		if (k == RB_OPT_ERROR) {
			rc = RB_EXIT_INVALID;
			goto out;
		} else if (k == RB_OPT_HELP) {
			rb_print_usage("schedule", stdout);
			goto out;
		} else if (k == RB_OPT_ARG) {
			rb_strv_push(&args, rb_xstrdup(p.val));
		} else if (k == 0) {
			if (rb_duration_parse(p.val, &catch_up, &why) < 0) {
				rc = rb_usage_error("schedule due: --catch-up: %s", why);
				goto out;
			}
		} else {
			state = p.val;
		}
	}
	if (!args.n)
		rb_strv_push(&args, rb_xstrdup("."));
	for (size_t i = 0; i < args.n; i++)
		if (rb_cli_schedule_files(args.v[i], &files) < 0) {
			rc = RB_EXIT_FAILED;
			goto out;
		}
	time_t now = (time_t)rb_now();
	struct due *kids = rb_xcalloc(files.n + 1, sizeof(*kids));
	size_t nkids = 0;
	for (size_t i = 0; i < files.n; i++) {
		int explicit = 0;
		for (size_t a = 0; a < args.n; a++)
			explicit |= !strcmp(args.v[a], files.v[i]);
		int r = one(files.v[i], state, catch_up, now, explicit, kids, &nkids);
		if (r > rc)
			rc = r;
	}
	/* Each run is its own process, with its own signals: wait for them all. */
	for (size_t i = 0; i < nkids; i++) {
		int status = 0;
		while (waitpid(kids[i].pid, &status, 0) < 0 && errno == EINTR)
			;
		int r = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (r)
			fprintf(stderr, "schedule due: %s: exit status %d\n", kids[i].what, r);
		if (r > rc)
			rc = r;
		free(kids[i].what);
	}
	free(kids);
out:
	rb_strv_release(&args);
	rb_strv_release(&files);
	return rc;
}
