/*
 * runbook schedule install --systemd|--cron [--dir UNITDIR] [--randomized-delay D]
 * [--catch-up D] [--state-dir S] [--print] DIR, and uninstall: the platform's
 * scheduler starts `runbook schedule due FILE`, which computes the slot and
 * claims it (cmd_schedule_due.c), so a unit or a crontab line never needs to
 * know a slot.  systemd: a .service and a .timer per scheduled runbook, and a
 * manifest of what was written with each file's SHA-256, so that uninstall
 * removes exactly those files, unchanged.  cron: a marked block in the
 * user's crontab (or printed).  Never writes a file it did not write before.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cal.h"
#include "cli.h"
#include "durable.h"
#include "runbook.h"
#include "rundir.h"
#include "slot.h"
#include "types.h"
#include "util.h"

extern char **environ;

#define MANIFEST "runbook-schedule.manifest"

struct inst {
	int systemd, cron, print;
	const char *dir, *delay, *catch_up, *state, *bin;
	char *abs_dir;
};

/* A word for a unit's ExecStart= or a crontab line: quoted when it needs to be. */
static void word(struct rb_buf *b, const char *s, int cron)
{
	int plain = *s != '\0';
	for (const char *p = s; *p; p++)
		plain &= strchr("/._-+:=@,", *p) || (*p >= 'a' && *p <= 'z') ||
			 (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9');
	rb_buf_putc(b, ' ');
	if (plain) {
		rb_buf_puts(b, s);
		return;
	}
	rb_buf_putc(b, cron ? '\'' : '"');
	for (const char *p = s; *p; p++) {
		if (cron && *p == '\'')
			rb_buf_puts(b, "'\\''");
		else if (cron && *p == '%')
			rb_buf_puts(b, "\\%");
		else if (!cron && (*p == '"' || *p == '\\'))
			rb_buf_printf(b, "\\%c", *p);
		else if (!cron && (*p == '%' || *p == '$'))
			rb_buf_printf(b, "%c%c", *p, *p);
		else
			rb_buf_putc(b, *p);
	}
	rb_buf_putc(b, cron ? '\'' : '"');
}

/*
 * Whether s can be written into a unit or a crontab: a control character (a
 * newline above all) would end the line and start a directive or a job of
 * whoever named the file.  0, or -1 after saying so.
 */
static int one_line(const char *cmd, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f) {
			char *shown = rb_visible(s, strlen(s), 0);
			rb_cli_error("%s: %s: a control character in a path cannot be written into "
				     "a unit or a crontab", cmd, shown);
			free(shown);
			return -1;
		}
	return 0;
}

/* s for a unit's setting: systemd expands %-specifiers in nearly all of them (malloc'd). */
static char *unit_text(const char *s)
{
	struct rb_buf b;
	rb_buf_init(&b);
	for (; *s; s++) {
		if (*s == '%')
			rb_buf_putc(&b, '%');
		rb_buf_putc(&b, *s);
	}
	return rb_buf_detach(&b);
}

/* "BIN schedule due [--state-dir S] [--catch-up D] FILE" */
static void due_command(struct rb_buf *b, const struct inst *in, const char *file, int cron)
{
	word(b, in->bin, cron);
	rb_buf_puts(b, " schedule due");
	if (in->state) {
		rb_buf_puts(b, " --state-dir");
		word(b, in->state, cron);
	}
	if (in->catch_up) {
		rb_buf_puts(b, " --catch-up");
		word(b, in->catch_up, cron);
	}
	rb_buf_puts(b, " --");
	word(b, file, cron);
}

/* The manifest: "SHA256  NAME" a line, as sha256sum writes (sha256sum -c checks it). */
static json_t *manifest_read(const char *dir)
{
	char *path = rb_xasprintf("%s/%s", dir, MANIFEST), *buf = NULL, *err = NULL;
	size_t len;
	json_t *m = json_object();
	if (rb_read_file(path, 1 << 20, &buf, &len, &err) == 0) {
		for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
			if (strlen(line) > 66 && line[64] == ' ' && line[65] == ' ')
				json_object_set_new(m, line + 66, json_stringn(line, 64));
	}
	free(err);
	free(buf);
	free(path);
	return m;
}

static int file_sha(const char *path, char hex[65])
{
	char *buf = NULL, *err = NULL;
	size_t len;
	int r = rb_read_file(path, 1 << 20, &buf, &len, &err);
	if (r == 0)
		rb_sha256_hex(buf, len, hex);
	free(buf);
	free(err);
	return r;
}

/* Write the manifest, or remove it when it lists nothing.  0, or -1 (printed). */
static int write_manifest(const char *dir, const json_t *m)
{
	char *err = NULL;
	int r = 0;
	if (!json_object_size(m)) {
		char *path = rb_xasprintf("%s/%s", dir, MANIFEST);
		if (unlink(path) < 0 && errno != ENOENT)
			r = rb_fail(&err, "cannot remove %s: %s", path, strerror(errno));
		free(path);
	} else {
		struct rb_buf b;
		rb_buf_init(&b);
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)m, k, v)
			rb_buf_printf(&b, "%s  %s\n", json_string_value(v), k);
		r = rb_write_durable(dir, MANIFEST, b.s, b.len, 0644, &err);
		rb_buf_release(&b);
	}
	if (r < 0) {
		rb_cli_error("schedule: %s", err);
		free(err);
	}
	return r;
}

/* The units of one runbook into units ({"NAME": "TEXT"}); -1 (printed) when it cannot. */
static int units_of(const struct inst *in, const char *file, const struct rb_runbook *rb,
		    json_t *units)
{
	char key[RB_SLOT_KEY_MAX], cal[256];
	rb_slot_key(rb->name, key);
	const char *tz = rb->schedule_tz ? rb->schedule_tz : "UTC";
	struct rb_buf svc, tim, cmd;
	rb_buf_init(&svc);
	rb_buf_init(&tim);
	rb_buf_init(&cmd);
	due_command(&cmd, in, file, 0);
	/*
	 * One OnCalendar= line when it can say the schedule; else every minute, and
	 * schedule due starts only the true slots (sun#1 with other days, both day fields).
	 */
	int n = rb_cron_oncalendar(&rb->cron, cal, sizeof(cal));
	const char *head = "# Written by runbook schedule install; runbook schedule uninstall removes it.\n";
	char *params = rb_cli_params_file(file);
	params[strlen(params) - 6] = '\0';     /* FILE.params -> FILE. */
	char *f = unit_text(file), *wd = unit_text(in->abs_dir), *env = unit_text(params);
	/* The secrets' environment, when the runbook reads them from it: FILE.env, 0600. */
	rb_buf_printf(&svc, "%s[Unit]\nDescription=runbook %s (%s)\n\n[Service]\nType=oneshot\n"
		      "WorkingDirectory=%s\nEnvironmentFile=-%senv\nExecStart=%s\n", head,
		      rb->name, f, wd, env, cmd.s + 1);
	free(f);
	free(wd);
	free(env);
	free(params);
	rb_buf_printf(&tim, "%s[Unit]\nDescription=runbook %s: %s %s\n\n[Timer]\n", head, rb->name,
		      rb->schedule, tz);
	if (n >= 0)
		rb_buf_printf(&tim, "OnCalendar=%s %s\n", cal, tz);
	else
		rb_buf_printf(&tim, "# '%s' has no OnCalendar= form: every minute, and schedule "
			      "due starts only its slots\nOnCalendar=*-*-* *:*:00\n", rb->schedule);
	rb_buf_puts(&tim, "Persistent=true\nAccuracySec=1s\n");
	if (in->delay)
		rb_buf_printf(&tim, "RandomizedDelaySec=%s\n", in->delay);
	rb_buf_puts(&tim, "\n[Install]\nWantedBy=timers.target\n");
	char *s_name = rb_xasprintf("runbook-%s.service", key);
	char *t_name = rb_xasprintf("runbook-%s.timer", key);
	int rc = 0;
	if (json_object_get(units, s_name)) {
		rb_cli_error("schedule install: two runbooks named '%s' (%s): slots are keyed by "
			     "the runbook's name", rb->name, file);
		rc = -1;
	} else {
		json_object_set_new(units, s_name, json_string(svc.s));
		json_object_set_new(units, t_name, json_string(tim.s));
	}
	free(s_name);
	free(t_name);
	rb_buf_release(&svc);
	rb_buf_release(&tim);
	rb_buf_release(&cmd);
	return rc;
}

/* Run argv (a crontab command), its standard input in (or none), its output into *out. */
static int run_cmd(char *const *argv, const char *in, char **out)
{
	int ip[2], op[2];
	if (pipe(ip) < 0 || pipe(op) < 0)
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, ip[0], 0);
	posix_spawn_file_actions_adddup2(&fa, op[1], 1);
	posix_spawn_file_actions_addclose(&fa, ip[1]);
	posix_spawn_file_actions_addclose(&fa, op[0]);
	pid_t pid;
	int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(ip[0]);
	close(op[1]);
	if (e) {
		close(ip[1]);
		close(op[0]);
		errno = e;
		return -1;
	}
	if (in) {               /* a crontab that exits before reading is its error, not a SIGPIPE */
		void (*was)(int) = signal(SIGPIPE, SIG_IGN);
		rb_write_all(ip[1], in, strlen(in));
		signal(SIGPIPE, was);
	}
	close(ip[1]);
	struct rb_buf b;
	rb_buf_init(&b);
	char chunk[4096];
	ssize_t r;
	while ((r = read(op[0], chunk, sizeof(chunk))) > 0 || (r < 0 && errno == EINTR))
		if (r > 0)
			rb_buf_add(&b, chunk, (size_t)r);
	close(op[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (out)
		*out = b.s ? rb_buf_detach(&b) : rb_xstrdup("");
	rb_buf_release(&b);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The crontab without the block of dir (begin/end lines), into a new string. */
static char *without_block(const char *tab, const char *begin, const char *end)
{
	struct rb_buf b;
	rb_buf_init(&b);
	int in = 0;
	for (const char *p = tab, *nl; *p; p = nl ? nl + 1 : p + strlen(p)) {
		nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (!in && n == strlen(begin) && !strncmp(p, begin, n))
			in = 1;
		else if (in && n == strlen(end) && !strncmp(p, end, n))
			in = 0;
		else if (!in) {
			rb_buf_add(&b, p, n);
			rb_buf_putc(&b, '\n');
		}
	}
	return b.s ? rb_buf_detach(&b) : rb_xstrdup("");
}

/* $CRONTAB (for tests: a command that stands for crontab(1)), else crontab. */
static const char *crontab_cmd(void)
{
	const char *c = getenv("CRONTAB");
	return c && *c ? c : "crontab";
}

static int cron_apply(const struct inst *in, const char *block)
{
	char *begin = rb_xasprintf("# BEGIN runbook %s", in->abs_dir);
	char *end = rb_xasprintf("# END runbook %s", in->abs_dir);
	char *tab = NULL;
	char *l_argv[] = {(char *)crontab_cmd(), "-l", NULL};
	char *w_argv[] = {(char *)crontab_cmd(), "-", NULL};
	int rc = RB_EXIT_OK;
	if (run_cmd(l_argv, NULL, &tab) < 0) {      /* no crontab yet: exit 1, nothing read */
		rb_cli_error("schedule: cannot run %s: %s", crontab_cmd(), strerror(errno));
		rc = RB_EXIT_FAILED;
		goto out;
	}
	char *rest = without_block(tab, begin, end);
	struct rb_buf b;
	rb_buf_init(&b);
	rb_buf_puts(&b, rest);
	if (block)
		rb_buf_puts(&b, block);
	free(rest);
	if (run_cmd(w_argv, b.s ? b.s : "", NULL) != 0) {
		rb_cli_error("schedule: %s - failed", crontab_cmd());
		rc = RB_EXIT_FAILED;
	}
	rb_buf_release(&b);
out:
	free(tab);
	free(begin);
	free(end);
	return rc;
}

static int parse(const char *cmd, int argc, char **argv, struct inst *in, const char **dir)
{
	static const struct rb_opt opts[] = {
		{0, "systemd", 0}, {0, "cron", 0}, {0, "dir", 1}, {0, "randomized-delay", 1},
		{0, "catch-up", 1}, {0, "state-dir", 1}, {0, "print", 0}, {0, "runbook", 1},
		{0, NULL, 0},
	};
	struct rb_optparse p;
	int k;
	const char *why;
	int64_t ms;
	rb_opt_init(&p, cmd, argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		switch (k) {
		case RB_OPT_ERROR: return RB_EXIT_INVALID;
		case RB_OPT_HELP: rb_print_usage("schedule", stdout); return -1;
		case RB_OPT_ARG:
			if (*dir)
				return rb_usage_error("%s: one directory at a time", cmd);
			*dir = p.val;
			break;
		case 0: in->systemd = 1; break;
		case 1: in->cron = 1; break;
		case 2: in->dir = p.val; break;
		case 3: case 4:
			if (rb_duration_parse(p.val, &ms, &why) < 0)
				return rb_usage_error("%s: --%s: %s", cmd, opts[k].longname, why);
			if (k == 3)
				in->delay = p.val;
			else
				in->catch_up = p.val;
			break;
		case 5: in->state = p.val; break;
		case 6: in->print = 1; break;
		case 7: in->bin = p.val; break;
		}
	}
	if (in->systemd == in->cron)
		return rb_usage_error("%s: give --systemd or --cron", cmd);
	if (!*dir)
		return rb_usage_error("%s: no directory given (usage: runbook %s --systemd|--cron "
				      "DIR)", cmd, cmd);
	char real[PATH_MAX];
	if (!realpath(*dir, real))
		return rb_usage_error("%s: %s: %s", cmd, *dir, strerror(errno));
	in->abs_dir = rb_xstrdup(real);
	in->bin = rb_xstrdup(in->bin ? in->bin : rb_cli_self());
	if (in->state && in->state[0] != '/') {       /* units run elsewhere: an absolute path */
		char s[PATH_MAX];
		in->state = realpath(in->state, s) ? rb_xstrdup(s)
			    : rb_xasprintf("%s/%s", in->abs_dir, in->state);
	} else if (in->state) {
		in->state = rb_xstrdup(in->state);
	}
	if (one_line(cmd, in->abs_dir) < 0 || one_line(cmd, in->bin) < 0 ||
	    (in->state && one_line(cmd, in->state) < 0))
		return RB_EXIT_INVALID;
	return RB_EXIT_OK;
}

static void inst_release(struct inst *in)
{
	free(in->abs_dir);
	free((char *)in->bin);
	free((char *)in->state);
}

int cmd_schedule_install(int argc, char **argv)
{
	struct inst in = {0};
	const char *dir = NULL;
	int rc = parse("schedule install", argc, argv, &in, &dir);
	if (rc != RB_EXIT_OK) {
		inst_release(&in);
		return rc < 0 ? RB_EXIT_OK : rc;
	}
	struct rb_strv files = {0};
	json_t *units = json_object();
	struct rb_buf block;
	rb_buf_init(&block);
	rb_buf_printf(&block, "# BEGIN runbook %s\n# written by runbook schedule install --cron; "
		      "runbook schedule uninstall --cron %s removes it\n", in.abs_dir, in.abs_dir);
	if (rb_cli_schedule_files(in.abs_dir, &files) < 0) {
		rc = RB_EXIT_FAILED;
		goto out;
	}
	size_t scheduled = 0;
	for (size_t i = 0; i < files.n && rc == RB_EXIT_OK; i++) {
		struct rb_runbook *rb;
		if (one_line("schedule install", files.v[i]) < 0) {
			rc = RB_EXIT_INVALID;
			break;
		}
		if ((rc = rb_cli_load(files.v[i], &rb)) != RB_EXIT_OK)
			break;
		if (rb->schedule) {
			scheduled++;
			if (in.systemd && units_of(&in, files.v[i], rb, units) < 0)
				rc = RB_EXIT_INVALID;
			if (in.cron) {  /* every minute: schedule due starts the true slots only */
				rb_buf_printf(&block, "# %s: %s %s\n* * * * *", rb->name,
					      rb->schedule, rb->schedule_tz ? rb->schedule_tz : "UTC");
				due_command(&block, &in, files.v[i], 1);
				rb_buf_putc(&block, '\n');
			}
		}
		rb_runbook_free(rb);
	}
	if (rc != RB_EXIT_OK)
		goto out;
	rb_buf_printf(&block, "# END runbook %s\n", in.abs_dir);
	if (in.cron) {
		if (in.print)
			fputs(block.s, stdout);
		else
			rc = cron_apply(&in, block.s);
		goto out;
	}
	const char *udir = in.dir ? in.dir : "/etc/systemd/system";
	const char *name;
	json_t *text;
	if (in.print) {
		json_object_foreach(units, name, text)
			printf("# %s/%s\n%s\n", udir, name, json_string_value(text));
		goto out;
	}
	/* Never over a file this did not write (or that changed since). */
	json_t *m = manifest_read(udir);
	json_object_foreach(units, name, text) {
		char *path = rb_xasprintf("%s/%s", udir, name), hex[65];
		const char *was = json_string_value(json_object_get(m, name));
		if (file_sha(path, hex) == 0 && (!was || strcmp(was, hex))) {
			rb_cli_error("schedule install: %s is there already and %s: not replacing it",
				     path, was ? "changed since it was installed"
				     : "was not written by schedule install");
			rc = RB_EXIT_FAILED;
		}
		free(path);
	}
	json_object_foreach(units, name, text) {
		char *err = NULL, hex[65];
		const char *t = json_string_value(text);
		if (rc != RB_EXIT_OK)
			break;
		if (rb_write_durable(udir, name, t, strlen(t), 0644, &err) < 0) {
			rb_cli_error("schedule install: %s", err);
			free(err);
			rc = RB_EXIT_FAILED;
			break;
		}
		rb_sha256_hex(t, strlen(t), hex);
		json_object_set_new(m, name, json_string(hex));
		printf("wrote %s/%s\n", udir, name);
	}
	if (write_manifest(udir, m) < 0)
		rc = RB_EXIT_FAILED;
	json_decref(m);
	if (rc == RB_EXIT_OK && scheduled)
		printf("then: systemctl daemon-reload && systemctl enable --now runbook-*.timer\n");
out:
	rb_buf_release(&block);
	json_decref(units);
	rb_strv_release(&files);
	inst_release(&in);
	return rc;
}

int cmd_schedule_uninstall(int argc, char **argv)
{
	struct inst in = {0};
	const char *dir = NULL;
	int rc = parse("schedule uninstall", argc, argv, &in, &dir);
	if (rc != RB_EXIT_OK) {
		inst_release(&in);
		return rc < 0 ? RB_EXIT_OK : rc;
	}
	if (in.cron) {
		rc = cron_apply(&in, NULL);
		inst_release(&in);
		return rc;
	}
	/* The units of this DIR's runbooks that the manifest lists, unchanged since. */
	const char *udir = in.dir ? in.dir : "/etc/systemd/system";
	json_t *m = manifest_read(udir), *units = json_object();
	struct rb_strv files = {0};
	if (rb_cli_schedule_files(in.abs_dir, &files) < 0)
		rc = RB_EXIT_FAILED;
	for (size_t i = 0; i < files.n && rc == RB_EXIT_OK; i++) {
		struct rb_runbook *rb;
		if ((rc = rb_cli_load(files.v[i], &rb)) != RB_EXIT_OK)
			break;
		if (rb->schedule)
			units_of(&in, files.v[i], rb, units);
		rb_runbook_free(rb);
	}
	const char *name;
	json_t *text;
	json_object_foreach(units, name, text) {
		const char *was = json_string_value(json_object_get(m, name));
		char *path = rb_xasprintf("%s/%s", udir, name), hex[65];
		if (!was) {
			free(path);
			continue;
		}
		if (file_sha(path, hex) < 0) {
			json_object_del(m, name);       /* gone already */
		} else if (strcmp(hex, was)) {
			rb_cli_error("schedule uninstall: %s changed since it was installed: not "
				     "removing it", path);
			rc = RB_EXIT_FAILED;
		} else if (unlink(path) < 0) {
			rb_cli_error("schedule uninstall: cannot remove %s: %s", path, strerror(errno));
			rc = RB_EXIT_FAILED;
		} else {
			printf("removed %s\n", path);
			json_object_del(m, name);
		}
		free(path);
	}
	if (write_manifest(udir, m) < 0)
		rc = RB_EXIT_FAILED;
	json_decref(m);
	json_decref(units);
	rb_strv_release(&files);
	inst_release(&in);
	return rc;
}
