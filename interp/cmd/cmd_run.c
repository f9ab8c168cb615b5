/*
 * runbook run FILE [-p NAME=VALUE]... [--jobs N] [--dry-run] [--state-dir DIR]
 * [--output text|json]: execute a runbook.  Maps the run's outcome to the
 * exit status and turns SIGINT, SIGTERM and SIGHUP into a clean stop.
 */
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cal.h"
#include "isotime.h"
#include "cli.h"
#include "exec.h"
#include "luabox.h"
#include "plan.h"
#include "plan_review.h"
#include "proc.h"
#include "rundir.h"
#include "slot.h"
#include "types.h"
#include "util.h"

static volatile sig_atomic_t signals_seen, last_signal;

static void on_signal(int sig)
{
	/*
	 * A hangup comes twice (from the shell and from the kernel when the
	 * session leader goes): only a second SIGINT or SIGTERM kills at once.
	 */
	if (sig == SIGHUP && signals_seen && last_signal == SIGHUP)
		return;
	signals_seen++;
	last_signal = sig;
}

static void catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);          /* no SA_RESTART: poll returns at once */
	sigaction(SIGTERM, &sa, NULL);
	/*
	 * A dropped SSH session is an interruption, not a crash; but a run
	 * started under nohup (SIGHUP ignored) is meant to outlive it.
	 */
	struct sigaction old;
	if (sigaction(SIGHUP, NULL, &old) == 0 && old.sa_handler != SIG_IGN)
		sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int rb_exec_option(const char *cmd, const char *name, const char *val, struct rb_exec_opts *o)
{
	const char *why;
	char *end;
	if (!strcmp(name, "jobs")) {
		long n = strtol(val, &end, 10);
		if (*end || n < 1 || n > RB_JOBS_MAX)
			return rb_usage_error("%s: --jobs takes a number from 1 to %d", cmd,
					      RB_JOBS_MAX), -1;
		o->jobs = (int)n;
	} else if (!strcmp(name, "state-dir")) {
		o->state_dir = val;
	} else if (!strcmp(name, "audit-key")) {
		o->audit_key = val;
	} else if (!strcmp(name, "audit-log")) {
		o->audit_log = val;
	} else if (!strcmp(name, "output")) {
		if (strcmp(val, "auto") && strcmp(val, "text") && strcmp(val, "json"))
			return rb_usage_error("%s: unknown output '%s' (expected auto, text or json)",
					      cmd, val), -1;
		o->json_events = !strcmp(val, "json");
		o->lines = !strcmp(val, "text");
	} else if (!strcmp(name, "approve")) {
		o->approve[o->napprove++] = val;
	} else if (!strcmp(name, "ignore-window")) {
		o->ignore_window = 1;
	} else if (!strcmp(name, "lock-timeout")) {
		if (rb_duration_parse(val, &o->lock_timeout_ms, &why) < 0)
			return rb_usage_error("%s: --lock-timeout: %s", cmd, why), -1;
	} else {
		return 0;
	}
	return 1;
}

/*
 * Ask at an approval gate on the terminal: "y" or "yes" approves, "n" or
 * "no" rejects, anything else asks again.  End of input, the gate's timeout
 * or a signal is no answer (-1): the run pauses.
 */
static int ask_tty(void *ud, const char *step, const char *prompt, int64_t timeout_ms)
{
	(void)ud;
	int seen = signals_seen;
	int64_t until = timeout_ms >= 0 ? rb_now_ms() + timeout_ms : -1;
	char line[64];
	size_t n = 0;
	/*
	 * The prompt comes from the runbook and from steps' output: its control
	 * characters are shown, not obeyed, and its lines after the first are
	 * indented, so that it can neither erase nor imitate what is asked.
	 */
	struct rb_buf b;
	rb_buf_init(&b);
	rb_visible_add(&b, step, strlen(step), 0);
	rb_buf_puts(&b, " needs approval: ");
	char *text = rb_visible(prompt, strlen(prompt), RB_VIS_TAB | RB_VIS_NL);
	for (const char *p = text, *nl; *p; p = nl ? nl + 1 : p + strlen(p)) {
		nl = strchr(p, '\n');
		rb_buf_add(&b, p, nl ? (size_t)(nl - p) : strlen(p));
		if (nl)
			rb_buf_puts(&b, "\n  ");
	}
	free(text);
	/*
	 * Keys typed before the question (a "y" meant for something else) are no
	 * answer to it: the terminal's input queue is dropped right before it is
	 * shown.  The answer is read with read(2), never through stdio, so no
	 * buffer of ours holds earlier keys either.
	 */
	tcflush(STDIN_FILENO, TCIFLUSH);
	fprintf(stderr, "\n%s\napprove? [y/n] ", b.s);
	rb_buf_release(&b);
	for (;;) {
		fflush(stderr);
		int64_t now = rb_now_ms();
		if (signals_seen != seen || (until >= 0 && now >= until)) {
			fputs(signals_seen != seen ? "\n" : "\nno answer in time\n", stderr);
			return -1;
		}
		struct pollfd p = {STDIN_FILENO, POLLIN, 0};
		if (poll(&p, 1, until >= 0 && until - now < 200 ? (int)(until - now) : 200) <= 0)
			continue;
		char c;
		ssize_t r = read(STDIN_FILENO, &c, 1);
		if (r < 0)
			continue;
		if (r == 0) {
			fputs("\nno answer (end of input)\n", stderr);
			return -1;
		}
		if (c != '\n') {
			if (n < sizeof(line) - 1)
				line[n++] = c;
			continue;
		}
		line[n] = '\0';
		n = 0;
		if (!strcmp(line, "y") || !strcmp(line, "yes"))
			return 1;
		if (!strcmp(line, "n") || !strcmp(line, "no"))
			return 0;
		fputs("please answer y or n: ", stderr);
	}
}

/* The names given with --approve: "all", or steps that have a gate. */
static int check_approvals(struct rb_runbook *rb, const struct rb_exec_opts *o)
{
	for (size_t k = 0; k < o->napprove; k++) {
		const char *id = o->approve[k];
		struct rb_step *s = rb_runbook_step(rb, id);
		if (strcmp(id, "all") && !s)
			return rb_usage_error("--approve: no step '%s' in the runbook", id);
		if (strcmp(id, "all") && !s->approve)
			return rb_usage_error("--approve: step '%s' has no approval gate", id);
	}
	return RB_EXIT_OK;
}

/* The user as the system knows them (getpwuid), never $USER: the audit log names them. */
static const char *user_name(void)
{
	struct passwd *pw = getpwuid(getuid());
	return pw ? pw->pw_name : "unknown";
}

/* t as "2026-01-04 02:00 Europe/Paris (+01:00)", or "... UTC", into buf. */
static void zone_text(const char *tz, time_t t, char *buf, size_t size)
{
	struct tm tm;
	char when[32];
	rb_tz_local(tz, t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
	if (!strcmp(tz, "UTC")) {
		snprintf(buf, size, "%s UTC", when);
		return;
	}
	long off = tm.tm_gmtoff / 60;
	snprintf(buf, size, "%s %s (%c%02ld:%02ld)", when, tz, off < 0 ? '-' : '+',
		 labs(off) / 60, labs(off) % 60);
}

int rb_cli_window(const struct rb_runbook *rb, struct rb_exec_opts *o, int ignore, json_t **note)
{
	o->window_checked = 1;
	if (!rb->has_window || o->probe || o->recorded)
		return RB_EXIT_OK;
	const struct rb_window *w = &rb->window;
	const char *tz = w->timezone ? w->timezone : "UTC";
	double nowd = rb_now();
	time_t now = (time_t)nowd;
	int inside = rb_window_contains(w, now);
	char desc[160], now_utc[32], next_utc[32] = "", next_local[96] = "";
	rb_window_text(w, desc, sizeof(desc));
	rb_utc_text(now, now_utc);
	time_t next = inside ? now : rb_window_next_open(w, now);
	if (next >= 0) {
		rb_utc_text(next, next_utc);
		zone_text(tz, next, next_local, sizeof(next_local));
	}
	if (ignore) {
		/* Who said so: the account, and whoever became it through sudo. */
		const char *sudo = getenv("SUDO_USER");
		*note = json_pack("{s:s, s:s, s:b, s:s}", "by", user_name(), "window", desc,
				  "inside", inside, "at", now_utc);
		if (sudo && *sudo)
			json_object_set_new(*note, "sudo_user", json_string(sudo));
		if (!inside && next >= 0)
			json_object_set_new(*note, "next_open", json_string(next_utc));
		o->window_ignored = *note;
		return RB_EXIT_OK;
	}
	if (inside) {
		o->window_close = rb_window_close(w, now);
		int64_t left = (int64_t)((double)o->window_close * 1000 - nowd * 1000);
		o->window_close_ms = rb_now_ms() + (left > 0 ? left : 0);
		if (!o->window_close_ms)
			o->window_close_ms = 1;
		return RB_EXIT_OK;
	}
	char now_local[96];
	zone_text(tz, now, now_local, sizeof(now_local));
	if (next < 0)
		rb_cli_error("%s: now (%s) is outside its maintenance window (%s), which does not "
			     "open in the next 5 years: not starting (--ignore-window to start "
			     "anyway)", rb->file, now_local, desc);
	else
		rb_cli_error("%s: now (%s) is outside its maintenance window (%s): not starting; "
			     "the next window opens %s, %s (--ignore-window to start anyway)",
			     rb->file, now_local, desc, next_local, next_utc);
	return RB_EXIT_WINDOW;
}

int rb_cli_execute(struct rb_runbook *rb, struct rb_exec_opts *o, struct rb_diags *d)
{
	enum rb_run_status st;
	char id[RB_RUN_ID_MAX] = "", *err = NULL;
	json_t *note = NULL;
	int rc;
	if ((rc = check_approvals(rb, o)) != RB_EXIT_OK)
		return rc;
	if (!o->window_checked &&
	    (rc = rb_cli_window(rb, o, o->ignore_window, &note)) != RB_EXIT_OK)
		return rc;
	o->user = user_name();
	if (isatty(STDIN_FILENO) && isatty(STDERR_FILENO))
		o->ask = ask_tty;
	o->signals = &signals_seen;
	o->signo = &last_signal;
	/* RUNBOOK_NOW when set, as for time.now(); a resume keeps the run's start (cmd_resume.c). */
	if (!o->resume_id)
		o->now = (time_t)rb_now();
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	o->rand = (unsigned)ts.tv_nsec ^ (unsigned)getpid() << 16;
	catch_signals();
	/* Before any thread: the process spawner must outlive only this one. */
	if (rb_proc_init(rb_runbook_starts_processes(rb), &err) < 0) {
		rb_cli_error("%s", err);
		free(err);
		json_decref(note);
		return RB_EXIT_FAILED;
	}
	/* --output auto (the default): the live view on a terminal, lines elsewhere. */
	struct winsize ws;
	if (!o->json_events && !o->lines && isatty(fileno(o->out)))
		o->live = rb_live_new(o->out, ioctl(fileno(o->out), TIOCGWINSZ, &ws) == 0 ?
				      ws.ws_col : 80, rb_use_color(o->out), rb->nmain);
	if ((rc = rb_exec_run(rb, o, d, &st, id)) < 0)
		rc = rc == -1 ? RB_EXIT_INVALID : RB_EXIT_FAILED;
	else if (st == RB_RUN_SUCCEEDED)
		rc = RB_EXIT_OK;
	else if (st == RB_RUN_FAILED)
		rc = RB_EXIT_FAILED;
	else if (st == RB_RUN_PAUSED)
		rc = RB_EXIT_PAUSED;
	else if (st == RB_RUN_STOPPED)
		rc = RB_EXIT_WINDOW;
	else
		rc = last_signal == SIGTERM ? RB_EXIT_SIGTERM : last_signal == SIGHUP
		     ? RB_EXIT_SIGHUP : RB_EXIT_SIGINT;
	if (o->run_id_out)
		memcpy(o->run_id_out, id, RB_RUN_ID_MAX);
	rb_proc_shutdown();
	rb_live_free(o->live);
	o->live = NULL;
	if (o->window_ignored == note)
		o->window_ignored = NULL;
	json_decref(note);
	return rc;
}

/*
 * --dry-run: the plan.  With --probe, first run what cannot change anything
 * (its events on stderr), so that the plan shows real values.
 */
static int dry_run(struct rb_runbook *rb, json_t *params, struct rb_exec_opts *o,
		   int probe, struct rb_diags *d)
{
	json_t *probed = NULL;
	struct rb_redactor *secrets = NULL;
	if (probe) {
		o->params = params;
		o->probe = 1;
		o->probed = probed = json_object();
		o->redactor_out = &secrets;
		o->out = stderr;
		o->lines = 1;
		o->json_events = 0;
		int rc = rb_cli_execute(rb, o, d);
		if (rc != RB_EXIT_OK && rc != RB_EXIT_FAILED) {  /* invalid, or interrupted */
			json_decref(probed);
			rb_redactor_free(secrets);
			return rc;
		}
	}
	/* To memory first, for the redact: patterns (as plan does). */
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	if (!mem) {
		json_decref(probed);
		rb_redactor_free(secrets);
		fprintf(stderr, "runbook: error: out of memory\n");
		return RB_EXIT_FAILED;
	}
	struct rb_plan_out po = {.f = mem, .color = rb_use_color(stdout)};
	int rc = rb_plan_write_probed(rb, params, probed, &rb_plan_text, &po, d) < 0
		 ? RB_EXIT_INVALID : RB_EXIT_OK;
	fclose(mem);
	if (rb_cli_write_redacted(rb, secrets, buf, len, stdout) < 0) {
		fprintf(stderr, "runbook: error: cannot write the plan\n");
		rc = RB_EXIT_FAILED;
	}
	free(buf);
	json_decref(probed);
	rb_redactor_free(secrets);
	return rc;
}

/* --plan FILE: the plan now must be the one reviewed in FILE (plan_review.h). */
static int check_reviewed(struct rb_runbook *rb, json_t *pj, const char *file, char hash[65],
			  struct rb_diags *d)
{
	json_t *plan = rb_review_plan(rb, pj, d);
	if (!plan)
		return RB_EXIT_INVALID;
	struct rb_strv msgs = {0};
	int rc = rb_review_check(plan, file, hash, &msgs);
	for (size_t i = 0; i < msgs.n; i++)
		if (rc == RB_EXIT_INVALID)
			fprintf(stderr, "%s\n", msgs.v[i]);
		else
			rb_cli_error("%s", msgs.v[i]);
	rb_strv_release(&msgs);
	json_decref(plan);
	return rc;
}

/* A run's exit status as the word a slot's record keeps. */
static const char *slot_outcome(int rc)
{
	switch (rc) {
	case RB_EXIT_OK: return "succeeded";
	case RB_EXIT_FAILED: return "failed";
	case RB_EXIT_INVALID: return "invalid";
	case RB_EXIT_PAUSED: return "paused";
	case RB_EXIT_WINDOW: return "stopped";
	case RB_EXIT_LOCKED: return "lock_held";
	default: return "interrupted";
	}
}

static const char *host_name(void)
{
	static char host[256];
	if (gethostname(host, sizeof(host) - 1) < 0)
		snprintf(host, sizeof(host), "unknown");
	return host;
}

/*
 * run --slot TIME: a scheduled start, keyed by the runbook's name and the
 * slot, claimed in the state directory before anything else, so that the
 * same slot never runs twice (docs/schedule.md).  A slot claimed before is
 * skipped with status 0, as cron users expect of a duplicate, and says so.
 */
static int run_slot(struct rb_runbook *rb, struct rb_exec_opts *o, const char *arg,
		    struct rb_diags *d)
{
	time_t slot = rb_slot_parse(arg);
	if (slot < 0)
		return rb_usage_error("run: --slot: '%s' is not a time YYYY-MM-DDTHH:MM:SSZ (UTC, "
				      "whole seconds)", arg);
	if (!rb->schedule)
		return rb_usage_error("run: --slot: %s has no schedule", rb->file);
	const struct rb_window *w = rb->has_window ? &rb->window : NULL;
	const char *tz = rb->schedule_tz ? rb->schedule_tz : "UTC";
	if (rb_schedule_next(&rb->cron, tz, w, slot - 1) != slot)
		return rb_usage_error("run: --slot: %s is not a start time of %s's schedule "
				      "('%s' in %s%s)", arg, rb->file, rb->schedule,
				      tz, w ? ", inside its window" : "");
	time_t now = (time_t)rb_now();
	char now_s[32], key[RB_SLOT_KEY_MAX];
	rb_utc_text(now, now_s);
	if (slot > now)
		return rb_usage_error("run: --slot: %s is not due yet (now is %s)", arg, now_s);
	const char *state = rb_state_dir(o->state_dir);
	rb_slot_key(rb->name, key);
	json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i}", "runbook", rb->name,
				"file", rb->file, "slot", arg, "status", "started", "claimed_at",
				now_s, "user", user_name(), "host", host_name(), "pid",
				(int)getpid()), *was = NULL, *note = NULL;
	char *err = NULL;
	int rc, r = rb_slot_claim(state, key, slot, rec, &was, &err);
	if (r < 0) {
		rb_cli_error("run: --slot: %s", err);
		free(err);
		json_decref(rec);
		return RB_EXIT_FAILED;
	}
	if (r == 0) {
		const char *st = json_string_value(json_object_get(was, "status"));
		const char *at = json_string_value(json_object_get(was, "claimed_at"));
		const char *run = json_string_value(json_object_get(was, "run_id"));
		if (o->json_events) {
			json_t *ev = json_pack("{s:s, s:s, s:s, s:O?}", "event", "slot_skipped",
					       "runbook", rb->name, "slot", arg, "claimed", was);
			char *t = json_dumps(ev, JSON_COMPACT);
			fprintf(o->out, "%s\n", t);
			free(t);
			json_decref(ev);
		} else {
			/* The record is a file of the state directory: shown, not obeyed. */
			struct rb_buf b;
			rb_buf_init(&b);
			rb_buf_printf(&b, "%s%s%s%s%s", st ? st : "claimed", at ? " at " : "",
				      at ? at : "", run ? ", run " : "", run ? run : "");
			char *was_text = rb_visible(b.s, b.len, RB_VIS_TAB);
			fprintf(o->out, "slot %s of %s was claimed before (%s): skipped, not run "
				"twice\n", arg, rb->name, was_text);
			free(was_text);
			rb_buf_release(&b);
		}
		json_decref(was);
		json_decref(rec);
		return RB_EXIT_OK;
	}
	if ((rc = rb_cli_window(rb, o, o->ignore_window, &note)) == RB_EXIT_OK) {
		int held = 0;
		char id[RB_RUN_ID_MAX] = "";
		o->lock_held = &held;
		o->run_id_out = id;
		rc = rb_cli_execute(rb, o, d);
		if (held)
			rc = RB_EXIT_LOCKED;
		if (*id && !held)
			json_object_set_new(rec, "run_id", json_string(id));
		json_object_set_new(rec, "status", json_string(slot_outcome(rc)));
		if (held)       /* no run directory: the slot's record is the record */
			json_object_set_new(rec, "lock", json_string(rb->lock));
	} else {
		json_object_set_new(rec, "status", json_string("outside_window"));
	}
	json_object_set_new(rec, "exit_status", json_integer(rc));
	if (rb_slot_update(state, key, slot, rec, &err) < 0) {
		rb_cli_error("run: --slot: %s", err);
		free(err);
		if (rc == RB_EXIT_OK)
			rc = RB_EXIT_FAILED;
	}
	if (rc == RB_EXIT_LOCKED)
		rb_cli_error("run: slot %s of %s not run: its lock '%s' is held by another run "
			     "(exit status 5)", arg, rb->name, rb->lock);
	if (o->window_ignored == note)
		o->window_ignored = NULL;
	json_decref(note);
	json_decref(rec);
	return rc;
}

int cmd_run(int argc, char **argv)
{
	static const struct rb_opt opts[] = {
		{'p', "param", 1}, {'j', "jobs", 1}, {0, "dry-run", 0}, {0, "state-dir", 1},
		{0, "output", 1}, {0, "lock-timeout", 1}, {0, "approve", 1}, {0, "probe", 0},
		{0, "audit-key", 1}, {0, "audit-log", 1},
		{0, "ignore-window", 0}, {0, "slot", 1}, {0, "plan", 1},
		{0, NULL, 0},
	};
	enum { OPT_SLOT = 11, OPT_PLAN = 12 };
	struct rb_optparse p;
	const char *file = NULL, *reviewed = NULL, *slot = NULL;
	char plan_hash[65];
	char **params = rb_xcalloc((size_t)argc, sizeof(*params));
	size_t nparams = 0;
	int k, rc = RB_EXIT_OK, dry = 0, probe = 0;
	struct rb_exec_opts o = {.jobs = RB_JOBS_DEFAULT, .out = stdout,
				 .approve = rb_xcalloc((size_t)argc, sizeof(char *))};

	rb_opt_init(&p, "run", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		switch (k) {
		case RB_OPT_ERROR:
			rc = RB_EXIT_INVALID;
			goto out;
		case RB_OPT_HELP:
			rb_print_usage("run", stdout);
			goto out;
		case RB_OPT_ARG:
			if (file) {
				rc = rb_usage_error("run: one file at a time");
				goto out;
			}
			file = p.val;
			break;
		case 0:
			params[nparams++] = (char *)p.val;
			break;
		case 2:
			dry = 1;
			break;
		case 7:
			probe = 1;
			break;
		case OPT_SLOT:
			slot = p.val;
			break;
		case OPT_PLAN:
			reviewed = p.val;
			break;
		default:
			if (rb_exec_option("run", opts[k].longname, p.val, &o) < 0) {
				rc = RB_EXIT_INVALID;
				goto out;
			}
			break;
		}
	}
	if (!file) {
		rc = rb_usage_error("run: no file given (usage: runbook run FILE)");
		goto out;
	}
	if (probe && !dry) {
		rc = rb_usage_error("run: --probe goes with --dry-run");
		goto out;
	}
	if (slot && dry) {
		rc = rb_usage_error("run: --slot does not go with --dry-run");
		goto out;
	}
	o.color = !o.json_events && rb_use_color(stdout);

	struct rb_runbook *rb;
	if ((rc = rb_cli_load(file, &rb)) != RB_EXIT_OK)
		goto out;
	struct rb_diags d;
	rb_diags_init(&d, file, rb->src, rb->srclen);
	json_t *pj = rb_params_resolve(rb, params, nparams, &d);
	if (!pj) {
		rc = RB_EXIT_INVALID;
	} else if (reviewed && (rc = check_reviewed(rb, pj, reviewed, plan_hash, &d)) != 0) {
		/* not the plan that was reviewed: nothing starts */
	} else if (dry) {
		rc = dry_run(rb, pj, &o, probe, &d);
	} else {
		o.params = pj;
		o.plan_sha256 = reviewed ? plan_hash : NULL;
		rc = slot ? run_slot(rb, &o, slot, &d) : rb_cli_execute(rb, &o, &d);
	}
	rb_diags_print(&d, stderr, rb_use_color(stderr));
	json_decref(pj);
	rb_diags_release(&d);
	rb_runbook_free(rb);
out:
	free(params);
	free(o.approve);
	return rc;
}
