/*
 * shell: run a command, as argv (a list) or through sh -c (a string), with
 * its output captured and streamed.  Its side effects are unknown, so it is
 * never assumed read-only.  Process lifetime (process groups, descendants,
 * dying with the runner) is the job of interp/proc.c and interp/spawner.c.
 * It runs in the scheduler's poll loop (start and step): a command holds no
 * thread, and its wake-ups reach the scheduler with no hand-off on the way.
 */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "action.h"
#include "proc.h"
#include "util.h"

enum {
	SHELL_MEM_LIMIT = 1024 * 1024,  /* bytes of each stream kept in memory */
	SHELL_GRACE_MS = 5000,          /* SIGTERM, then SIGKILL this much later */
};

static const char *const parse_choices[] = {"json", "lines", NULL};
static const char *const shell_choices[] = {"bash", "sh", NULL};

static const struct rb_arg shell_args[] = {
	{"command", RB_T_COMMAND, RB_ARG_REQUIRED, NULL,
	 "a string run by sh -c, or a list: the program and its arguments"},
	{"env", RB_T_STRING_MAP, 0, NULL, "extra environment variables"},
	{"cwd", RB_T_STRING, 0, NULL, "working directory"},
	{"stdin", RB_T_STRING, 0, NULL, "text written to the command's standard input"},
	{"parse", RB_T_STRING, 0, parse_choices,
	 "decode standard output: json, or lines (a list of lines)"},
	{"shell", RB_T_STRING, 0, shell_choices,
	 "what runs a command string: bash (the default, with -e and -o pipefail) or sh (-e)"},
	{NULL, 0, 0, NULL, NULL},
};

/* A scalar argument as text: strings as they are, numbers and booleans written out. */
static char *text_of(const json_t *v)
{
	if (json_is_string(v))
		return rb_xstrdup(json_string_value(v));
	if (json_is_null(v))
		return rb_xstrdup("");
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	return s ? s : rb_xstrdup("");
}

/*
 * A command string with no shell syntax at all (no quotes, variables,
 * globs, redirections, operators, comments, assignments) whose first word
 * is not a shell builtin or keyword means the same to sh as its words do to
 * execvp: run it directly and save starting a shell per step.
 */
static int split_simple(const char *cmd, struct rb_strv *argv)
{
	static const char *const shell_words[] = {
		"!", ".", ":", "[", "alias", "bg", "break", "case", "cd", "command", "continue",
		"do", "done", "echo", "elif", "else", "esac", "eval", "exec", "exit", "export",
		"false", "fc", "fg", "fi", "for", "getopts", "hash", "if", "jobs", "kill",
		"local", "printf", "pwd", "read", "readonly", "return", "set", "shift", "test",
		"then", "times", "trap", "true", "type", "ulimit", "umask", "unalias", "unset",
		"until", "wait", "while", NULL,
	};
	for (const char *p = cmd; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
			    "_./,:@%+=- \t", *p))
			return 0;
	struct rb_strv words = {0};
	const char *p = cmd;
	while (*p) {
		while (*p == ' ' || *p == '\t')
			p++;
		size_t n = strcspn(p, " \t");
		if (n)
			rb_strv_push(&words, rb_xstrndup(p, n));
		p += n;
	}
	int ok = words.n > 0 && !strchr(words.v[0], '=');
	for (size_t k = 0; ok && shell_words[k]; k++)
		ok = strcmp(words.v[0], shell_words[k]) != 0;
	if (!ok) {
		rb_strv_release(&words);
		return 0;
	}
	for (size_t k = 0; k < words.n; k++)
		rb_strv_push(argv, words.v[k]);
	free(words.v);
	return 1;
}

/*
 * A command string runs as GitHub Actions runs `shell: bash`: a failure stops the script
 * (-e) and a pipeline fails when any of its commands does (pipefail); `shell: sh` is
 * POSIX sh with -e (dash has no pipefail).
 */
static int build_argv(const json_t *cmd, const char *shell, struct rb_strv *argv, char **err)
{
	static const char *const bash[] = {"/bin/bash", "--noprofile", "--norc", "-eo", "pipefail",
					   "-c", NULL};
	static const char *const sh[] = {"/bin/sh", "-e", "-c", NULL};
	if (json_is_string(cmd) && split_simple(json_string_value(cmd), argv))
		return 0;
	if (json_is_string(cmd)) {
		for (const char *const *w = shell && !strcmp(shell, "sh") ? sh : bash; *w; w++)
			rb_strv_push(argv, rb_xstrdup(*w));
		rb_strv_push(argv, rb_xstrdup(json_string_value(cmd)));
		return 0;
	}
	if (!json_is_array(cmd) || !json_array_size(cmd)) {
		*err = rb_xstrdup("command: expected a string or a non-empty list");
		return -1;
	}
	size_t i;
	json_t *x;
	json_array_foreach(cmd, i, x) {
		if (json_is_object(x) || json_is_array(x)) {
			*err = rb_xasprintf("command: argument %zu is not a string", i + 1);
			return -1;
		}
		rb_strv_push(argv, text_of(x));
	}
	return 0;
}

static json_t *text_json(const char *s, size_t len)
{
	size_t n;
	char *clean = rb_utf8_lossy(s ? s : "", s ? len : 0, &n);
	json_t *j = json_stringn(clean, n);
	free(clean);
	return j;
}

/* Decode stdout as asked; -1 with *err when it is not what was promised. */
static int parse_output(const char *how, const struct rb_proc_result *r, json_t *out,
			char **err)
{
	if (!strcmp(how, "json")) {
		json_error_t e;
		json_t *j = json_loadb(r->out ? r->out : "", r->out_len, JSON_DECODE_ANY, &e);
		if (!j) {
			*err = rb_xasprintf("parse: standard output is not JSON: %s (line %d)",
					    rb_json_why(&e), e.line);
			return -1;
		}
		json_object_set_new(out, "json", j);
		return 0;
	}
	json_t *lines = json_array();
	const char *p = r->out ? r->out : "", *end = p + r->out_len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		json_array_append_new(lines, text_json(p, n));
		p += n + (nl ? 1 : 0);
	}
	json_object_set_new(out, "lines", lines);
	return 0;
}

/* How much of a failed command's line of stderr its message takes. */
#define STDERR_LINE_MAX 200
/* How many of stderr's last lines are searched for one that says "error" or "fatal". */
#define STDERR_WHY_LINES 20

/*
 * A line that says nothing by itself: only punctuation (psql's caret under the
 * statement, a rule of dashes), or psql's "LINE n:" quoting the statement.
 */
static int says_nothing(const char *p, size_t n)
{
	if (n > 5 && !memcmp(p, "LINE ", 5)) {
		size_t i = 5;
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
		if (i > 5 && i < n && p[i] == ':')
			return 1;
	}
	for (size_t i = 0; i < n; i++)
		if (isalnum((unsigned char)p[i]) || (unsigned char)p[i] >= 0x80)
			return 0;
	return 1;
}

/* A line that says why: "error" or "fatal" in it, in any case ("ERROR:  relation ..."). */
static int says_why(const char *p, size_t n)
{
	static const char *const words[] = {"error", "fatal"};
	for (size_t w = 0; w < 2; w++)
		for (size_t i = 0; i + 5 <= n; i++)
			if (!strncasecmp(p + i, words[w], 5))
				return 1;
	return 0;
}

/*
 * The line of s[0..end) that says why a command failed, trimmed, in [*a, *b): among
 * the last STDERR_WHY_LINES lines, the last that says "error" or "fatal"; else the
 * last line that says something; else the last that is not blank.  0 when all are.
 */
static int why_line(const char *s, size_t end, size_t *a, size_t *b)
{
	int best = 0;
	size_t e = end;
	for (int seen = 0; seen < STDERR_WHY_LINES; e--) {
		size_t st = e, x, y = e;
		while (st > 0 && s[st - 1] != '\n')
			st--;
		for (x = st; x < y && strchr(" \t\r", s[x]); x++)
			;
		while (y > x && strchr(" \t\r", s[y - 1]))
			y--;
		if (x < y) {
			int rank = says_why(s + x, y - x) ? 3 : says_nothing(s + x, y - x) ? 1 : 2;
			if (rank > best) {
				best = rank;
				*a = x;
				*b = y;
			}
			if (rank == 3)
				break;
			seen++;
		}
		if (st == 0)
			break;
		e = st;         /* the loop's e-- steps over the line's '\n' */
	}
	return best > 0;
}

/*
 * why, then ": " and the line of s that says why (why_line), control characters as
 * spaces, redacted by c's filter and only then cut at STDERR_LINE_MAX bytes on a
 * character boundary: a secret at the cut is never left in part.
 */
static char *with_last_line(const struct rb_call *c, char *why, const char *s, size_t end)
{
	size_t start;
	if (!why_line(s, end, &start, &end))
		return why;
	size_t n;
	char *line = rb_utf8_lossy(s + start, end - start, &n), *cut = "";
	if (c->filter) {
		char *clean = c->filter(c->ud, line, n, &n);
		free(line);
		line = clean;
	}
	if (n > STDERR_LINE_MAX) {
		n = STDERR_LINE_MAX;
		while (n > 0 && ((unsigned char)line[n] & 0xc0) == 0x80)
			n--;            /* not inside a UTF-8 sequence */
		cut = "...";
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = ' ';
	char *r = rb_xasprintf("%s: %.*s%s", why, (int)n, line, cut);
	free(line);
	free(why);
	return r;
}

/*
 * Why a command failed: its exit status or signal, and the last line it wrote to stderr,
 * in its own words ("exit status 7: connection refused"); not when its output is a secret,
 * nor when stderr was too long to keep whole (its last line is in the spill file).
 */
static char *failure(const struct rb_call *c, const struct rb_proc_result *r)
{
	char *why;
	if (r->error)
		return rb_xstrdup(r->error);
	if (r->timed_out)
		return rb_xstrdup("timed out");
	if (r->killed)
		return rb_xstrdup("stopped");
	if (r->signal > 0)
		why = rb_xasprintf("killed by signal %d", r->signal);
	else
		why = rb_xasprintf("exit status %d", r->exit_code);
	if (c->sensitive || r->err_total != r->err_len)
		return why;
	return with_last_line(c, why, r->err, r->err_len);
}

/*
 * A stream longer than the step keeps in memory: where the rest went (the file in the run's
 * directory, "output/STEP.stdout"), how many bytes and their SHA-256, or how many were lost
 * and why (the file could not be written; the user is warned too).  In the output, so that
 * the audit log binds the file too.
 */
static void add_overflow(const struct rb_call *c, const struct rb_proc_result *r, int fd,
			 struct rb_result *res)
{
	const char *stream = fd == 1 ? "stdout" : "stderr";
	size_t total = fd == 1 ? r->out_total : r->err_total;
	size_t kept = fd == 1 ? r->out_len : r->err_len;
	size_t spilled = fd == 1 ? r->out_spilled : r->err_spilled;
	int why = fd == 1 ? r->out_spill_errno : r->err_spill_errno;
	if (total == kept)
		return;
	json_t *o = json_pack("{s:I}", "bytes", (json_int_t)(total - kept));
	/* The file as created: an earlier attempt's is never replaced (proc.h). */
	const char *made = fd == 1 ? r->out_spill_file : r->err_spill_file;
	char *path = made ? rb_xstrdup(made)
		     : c->spill_path ? rb_xasprintf("%s.%s", c->spill_path, stream) : NULL;
	/* Its name in the run's directory: the last two parts of the path. */
	const char *name = path ? path + strlen(path) : "";
	for (int parts = 0; path && name > path && parts < 2; parts += *name == '/')
		name--;
	name += *name == '/';
	if (spilled) {
		char hex[65];
		json_object_set_new(o, "file", json_string(name));
		if (rb_sha256_file(path, hex) == 0)
			json_object_set_new(o, "sha256", json_string(hex));
	}
	if (total - kept > spilled) {
		json_object_set_new(o, "lost", json_integer((json_int_t)(total - kept - spilled)));
		if (why) {
			/* A planted symlink: said plainly, not as "too many levels". */
			const char *e = why == ELOOP ? "a symbolic link is in its place, or in "
				"place of its directory: not followed" : strerror(why);
			json_object_set_new(o, "error", json_string(e));
			char *w = rb_xasprintf("%s%s%zu bytes of %s could not be written to %s (%s): "
					       "they are lost", res->warning ? res->warning : "",
					       res->warning ? "; " : "", total - kept - spilled,
					       stream, name, e);
			free(res->warning);
			res->warning = w;
		}
	}
	json_object_set_new(res->output, fd == 1 ? "stdout_rest" : "stderr_rest", o);
	free(path);
}

/* A command under way: the engine's poll loop steps it. */
struct shell {
	const struct rb_call *c;
	struct rb_proc *p;
	enum rb_cancel_level stopping;  /* the cancel acted on */
};

_Static_assert(RB_PROC_MAX_FDS <= RB_ACTION_MAX_FDS, "a process polls more fds than an action");

/* The call's command, started; NULL with *err when it cannot be. */
static struct rb_proc *start_command(const struct rb_call *c, char **err)
{
	struct rb_strv argv = {0}, env = {0};
	const json_t *a = c->args;
	if (build_argv(json_object_get(a, "command"), json_string_value(json_object_get(a, "shell")),
		       &argv, err) < 0) {
		rb_strv_release(&argv);
		return NULL;
	}
	for (const char *const *e = c->env; e && *e; e++)
		rb_strv_push(&env, rb_xstrdup(*e));
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(a, "env"), k, v) {
		char *t = text_of(v);
		rb_strv_push(&env, rb_xasprintf("%s=%s", k, t));
		free(t);
	}
	json_t *in = json_object_get(a, "stdin");
	char *stdin_text = in ? text_of(in) : NULL;
	json_t *cwd = json_object_get(a, "cwd");
	long timeout = 0;
	if (c->deadline_ms) {
		timeout = (long)(c->deadline_ms - rb_now_ms());
		if (timeout < 1)
			timeout = 1;
	}
	struct rb_proc_spec spec = {
		.argv = (const char *const *)rb_strv_terminated(&argv),
		.env = (const char *const *)rb_strv_terminated(&env),
		.cwd = json_is_string(cwd) ? json_string_value(cwd) : NULL,
		.stdin_data = stdin_text,
		.stdin_len = stdin_text ? strlen(stdin_text) : 0,
		.spill_path = c->spill_path,
		.mem_limit = SHELL_MEM_LIMIT,
		.timeout_ms = timeout,
		.grace_ms = SHELL_GRACE_MS,
		.on_line = c->on_line,
		.on_started = c->on_started,
		.ud = c->ud,
		.filter = c->filter,
		.cut = c->cut,
		.sync = c->sync,
		.sync_fd = c->sync_fd,
	};
	struct rb_proc *p = rb_proc_start(&spec, err);
	free(stdin_text);
	rb_strv_release(&argv);
	rb_strv_release(&env);
	return p;
}

static void *shell_start(const struct rb_call *c, struct rb_result *res)
{
	char *err = NULL;
	struct rb_proc *p = start_command(c, &err);
	if (!p) {
		res->outcome = RB_BROKEN;
		res->error = err ? err : rb_xstrdup("cannot start the command");
		return NULL;
	}
	struct shell *sh = rb_xcalloc(1, sizeof(*sh));
	sh->c = c;
	sh->p = p;
	return sh;
}

static int shell_step(void *state, struct pollfd *fds, int *nfds, long *timeout_ms,
		      struct rb_result *res)
{
	struct shell *sh = state;
	const struct rb_call *c = sh->c;
	rb_proc_handle(sh->p, fds, *nfds);
	/* A cancel asks politely; a second one (RB_CANCEL_KILL) kills at once. */
	if (rb_cancelled(c->cancel) > sh->stopping) {
		sh->stopping = rb_cancelled(c->cancel);
		rb_proc_terminate(sh->p, sh->stopping == RB_CANCEL_KILL ? 0 : SHELL_GRACE_MS);
	}
	if (!rb_proc_done(sh->p)) {
		*nfds = rb_proc_pollfds(sh->p, fds, RB_ACTION_MAX_FDS);
		*timeout_ms = rb_proc_timeout_ms(sh->p);
		return 0;
	}
	rb_proc_reap();
	const struct rb_proc_result *r = rb_proc_result(sh->p);
	res->output = json_pack("{s:o, s:o, s:i}", "stdout", text_json(r->out, r->out_len),
				"stderr", text_json(r->err, r->err_len), "exit_code", r->exit_code);
	add_overflow(c, r, 1, res);
	add_overflow(c, r, 2, res);
	res->sync_errno = r->sync_errno;
	if (r->exit_code != 0 || r->error || r->signal > 0) {
		res->error = failure(c, r);
		/*
		 * As a check, exit status 1 says "no" (test, grep, diff); anything else gave no
		 * answer: it could not start, was killed, or failed otherwise.
		 */
		res->outcome = r->sync_errno ? RB_NOT_STARTED : r->timed_out ? RB_TIMED_OUT
			       : rb_cancelled(c->cancel) ? RB_CANCELLED
			       : r->exit_code == 1 ? RB_FAILED : RB_BROKEN;
	} else {
		json_t *how = json_object_get(c->args, "parse");
		if (json_is_string(how) && parse_output(json_string_value(how), r, res->output,
							&res->error) < 0)
			res->outcome = RB_FAILED;
	}
	rb_proc_free(sh->p);
	free(sh);
	return 1;
}

const struct rb_action act_shell = {
	.name = "shell",
	.summary = "run a command and capture its output and exit code",
	.args = shell_args,
	.flags = RB_ACT_SIDE_EFFECTS | RB_ACT_SYNC_FIRST | RB_ACT_PROCESSES,
	.start = shell_start,
	.step = shell_step,
};
