/*
 * runbook plan --diff OLD NEW | --base REV FILE [-p NAME=VALUE]...
 *              [--format text|json|markdown] [--split DIR [--max-bytes N]]
 *
 * The review of a change to a runbook: both versions planned as `runbook
 * plan` plans them, the plans compared (interp/plandiff.c), the difference
 * printed.  With --base the old version is read from git (`git show
 * REV:PATH`, spawned without a shell).  Exit status as kubectl diff's: 0 no
 * change, 1 changes, 2 an error, so that CI can branch on it.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_plandiff.h"
#include "diag.h"
#include "durable.h"
#include "mdsplit.h"
#include "plan.h"
#include "plandiff.h"
#include "redact.h"
#include "runbook.h"
#include "util.h"

extern char **environ;

enum { DIFF_SAME = 0, DIFF_CHANGED = 1, DIFF_ERROR = 2 };

/* --- git ---------------------------------------------------------------------- */

struct capture {
	char *out, *err;
	size_t outlen, errlen;
	int too_large;
};

/* Read fd into *buf (up to max bytes kept, the rest drained); 0 at EOF, 1 for more. */
static int drain(int fd, char **buf, size_t *len, size_t max, int *over)
{
	char chunk[65536];
	ssize_t r = read(fd, chunk, sizeof(chunk));
	if (r < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : 0;
	if (r == 0)
		return 0;
	size_t keep = *len >= max ? 0 : (size_t)r < max - *len ? (size_t)r : max - *len;
	if (keep < (size_t)r)
		*over = 1;
	*buf = rb_xrealloc(*buf, *len + keep + 1);
	memcpy(*buf + *len, chunk, keep);
	*len += keep;
	(*buf)[*len] = '\0';
	return 1;
}

/*
 * Run git with argv (argv[0] is "git"), its standard output and error
 * captured, standard input /dev/null, in a process group of its own.  Its
 * exit status, or -1 when it cannot be started (errno set).
 */
static int run_git(char *const argv[], struct capture *c)
{
	memset(c, 0, sizeof(*c));
	c->out = rb_xstrdup("");
	c->err = rb_xstrdup("");
	int po[2], pe[2];
	if (pipe2(po, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(pe, O_CLOEXEC) < 0) {
		close(po[0]);
		close(po[1]);
		return -1;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, po[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
	posix_spawnattr_init(&at);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
	posix_spawnattr_setpgroup(&at, 0);
	pid_t pid;
	int e = posix_spawnp(&pid, "git", &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(po[1]);
	close(pe[1]);
	if (e) {
		close(po[0]);
		close(pe[0]);
		errno = e;
		return -1;
	}
	struct pollfd pfd[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
	int open_fds = 2, over_err = 0;
	while (open_fds) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			int more = i ? drain(pfd[i].fd, &c->err, &c->errlen, 4096, &over_err)
				     : drain(pfd[i].fd, &c->out, &c->outlen, RB_MAX_INPUT, &c->too_large);
			if (!more) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				open_fds--;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void capture_release(struct capture *c)
{
	free(c->out);
	free(c->err);
}

/* git's first line of standard error, for a message. */
static char *git_said(const struct capture *c)
{
	size_t n = strcspn(c->err, "\n");
	return n ? rb_xasprintf(": %.*s", (int)n, c->err) : rb_xstrdup("");
}

/*
 * FILE as it was at rev: *buf and *len, *name "REV:PATH" (PATH from the
 * repository's top); *buf NULL when the file is not there at rev (added
 * since).  An exit status: DIFF_SAME when it was read.
 */
static int git_old(const char *rev, const char *file, char **name, char **buf, size_t *len)
{
	char *d = rb_xstrdup(file), *b = rb_xstrdup(file);
	char *dir = dirname(d), *base = basename(b);
	struct capture c;
	int rc = DIFF_ERROR;
	char *spec = NULL, *why;
	*buf = NULL;
	*name = NULL;

	char *prefix_argv[] = {"git", "-C", dir, "rev-parse", "--show-prefix", NULL};
	int st = run_git(prefix_argv, &c);
	if (st != 0) {
		why = st < 0 ? rb_xasprintf(": %s", strerror(errno)) : git_said(&c);
		rb_cli_error("plan: cannot find the git repository of %s%s", file, why);
		free(why);
		capture_release(&c);
		goto out;
	}
	c.out[strcspn(c.out, "\n")] = '\0';
	spec = rb_xasprintf("%s:%s%s", rev, c.out, base);
	capture_release(&c);

	char *commit = rb_xasprintf("%s^{commit}", rev);
	char *verify_argv[] = {"git", "-C", dir, "rev-parse", "--verify", "--quiet", commit, NULL};
	st = run_git(verify_argv, &c);
	free(commit);
	capture_release(&c);
	if (st != 0) {
		rb_cli_error("plan: --base: '%s' is not a commit of the repository of %s", rev, file);
		goto out;
	}
	char *exists_argv[] = {"git", "-C", dir, "cat-file", "-e", spec, NULL};
	st = run_git(exists_argv, &c);
	capture_release(&c);
	if (st != 0) {          /* not there at rev: the file is new */
		*name = spec;
		spec = NULL;
		rc = DIFF_SAME;
		goto out;
	}
	char *show_argv[] = {"git", "-C", dir, "show", spec, NULL};
	st = run_git(show_argv, &c);
	if (st != 0 || c.too_large) {
		why = st < 0 ? rb_xasprintf(": %s", strerror(errno))
		      : c.too_large ? rb_xasprintf(": larger than %d bytes", RB_MAX_INPUT)
				    : git_said(&c);
		rb_cli_error("plan: cannot read %s%s", spec, why);
		free(why);
		capture_release(&c);
		goto out;
	}
	*buf = c.out;
	*len = c.outlen;
	free(c.err);
	*name = spec;
	spec = NULL;
	rc = DIFF_SAME;
out:
	free(spec);
	free(d);
	free(b);
	return rc;
}

/* --- the two sides ----------------------------------------------------------- */

struct side {
	char *name;             /* as diagnostics and the plan name it */
	struct rb_runbook *rb;  /* NULL: not there (added or removed in git) */
	json_t *plan;
};

/* Load buf as the runbook name, printing its diagnostics; DIFF_SAME when valid. */
static int load(struct side *s, const char *buf, size_t len)
{
	struct rb_diags d;
	rb_diags_init(&d, s->name, NULL, 0);
	s->rb = rb_runbook_load(s->name, buf, len, &d);
	if (s->rb) {
		d.src = s->rb->src;
		d.srclen = s->rb->srclen;
	}
	rb_diags_print(&d, stderr, rb_use_color(stderr));
	int bad = d.errors != 0 || !s->rb;
	rb_diags_release(&d);
	if (bad) {
		rb_runbook_free(s->rb);
		s->rb = NULL;
		return DIFF_ERROR;
	}
	return DIFF_SAME;
}

static int load_file(struct side *s, const char *path)
{
	char *buf = NULL, *err = NULL;
	size_t len = 0;
	s->name = rb_xstrdup(path);
	if (rb_read_file(path, RB_MAX_INPUT, &buf, &len, &err) < 0) {
		fprintf(stderr, "%s: error: %s\n", path, err);
		free(err);
		return DIFF_ERROR;
	}
	int rc = load(s, buf, len);
	free(buf);
	return rc;
}

/*
 * The -p given for side s: those its runbook declares, and, on the new side,
 * those neither declares (so that they are reported as unknown there).
 */
static char **params_for(const struct rb_plandiff_opts *o, const struct side *s,
			 const struct side *other, int is_new, size_t *n)
{
	char **v = rb_xcalloc(o->nparams + 1, sizeof(*v));
	*n = 0;
	for (size_t i = 0; i < o->nparams; i++) {
		char *name = rb_xstrndup(o->params[i], strcspn(o->params[i], "="));
		int here = rb_runbook_param(s->rb, name) != NULL;
		int there = other->rb && rb_runbook_param(other->rb, name) != NULL;
		if (here || (is_new && !there))
			v[(*n)++] = o->params[i];
		free(name);
	}
	return v;
}

static int plan_side(const struct rb_plandiff_opts *o, struct side *s, const struct side *other,
		     int is_new)
{
	if (!s->rb)
		return DIFF_SAME;
	struct rb_diags d;
	rb_diags_init(&d, s->name, s->rb->src, s->rb->srclen);
	size_t n;
	char **given = params_for(o, s, other, is_new, &n);
	json_t *params = rb_params_resolve(s->rb, given, n, &d);
	if (params)
		s->plan = rb_plan_build(s->rb, params, &d);
	rb_diags_print(&d, stderr, rb_use_color(stderr));
	rb_diags_release(&d);
	json_decref(params);
	free(given);
	return s->plan ? DIFF_SAME : DIFF_ERROR;
}

/* --- output ---------------------------------------------------------------------- */

/* Every part to DIR/part-N.md, and the parts a longer diff left there before removed. */
static int write_parts(const char *dir, const struct rb_strv *parts)
{
	char *err = NULL;
	if (rb_mkdir_durable(dir, &err) < 0) {
		rb_cli_error("plan: --split: %s", err);
		free(err);
		return -1;
	}
	for (size_t i = 0; i < parts->n; i++) {
		char name[32];
		snprintf(name, sizeof(name), "part-%zu.md", i + 1);
		if (rb_write_durable(dir, name, parts->v[i], strlen(parts->v[i]), 0644, &err) < 0) {
			rb_cli_error("plan: --split: %s", err);
			free(err);
			return -1;
		}
		printf("%s/%s\n", dir, name);
	}
	for (size_t i = parts->n + 1;; i++) {
		char *stale = rb_xasprintf("%s/part-%zu.md", dir, i);
		int gone = unlink(stale);
		free(stale);
		if (gone < 0)
			break;
	}
	return fflush(stdout) == 0 ? 0 : -1;
}

static int output(const struct rb_plandiff_opts *o, const json_t *diff, const struct side *s,
		  size_t max)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	if (!mem) {
		rb_cli_error("out of memory");
		return -1;
	}
	if (!strcmp(o->format, "json")) {
		json_dumpf(diff, mem, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', mem);
	} else if (!strcmp(o->format, "markdown")) {
		rb_plandiff_markdown(diff, mem);
	} else {
		rb_plandiff_text(diff, mem, rb_use_color(stdout));
	}
	fclose(mem);
	/*
	 * Redacted whole, by both runbooks' patterns, before any cut: a part
	 * can then hold no piece of what a pattern hides.
	 */
	struct rb_redactor *r = rb_redactor_new();
	size_t npat = 0;
	for (int i = 0; i < 2; i++)
		if (s[i].rb)
			npat += rb_runbook_add_patterns(s[i].rb, r);
	if (npat) {
		char *clean = rb_redact(r, buf, len, &len);
		free(buf);
		buf = clean;
	}
	rb_redactor_free(r);
	int rc = 0;
	if (o->split) {
		struct rb_strv parts = {0};
		char *err = NULL;
		if (rb_md_split(buf, len, max, &parts, &err) < 0) {
			rb_cli_error("plan: --split: %s", err);
			free(err);
			rc = -1;
		} else {
			rc = write_parts(o->split, &parts);
		}
		rb_strv_release(&parts);
	} else if (fwrite(buf, 1, len, stdout) != len || fflush(stdout) != 0) {
		rb_cli_error("plan: cannot write the diff");
		rc = -1;
	}
	free(buf);
	return rc;
}

/* --- the command ---------------------------------------------------------------- */

static int check_options(const struct rb_plandiff_opts *o, size_t *max)
{
	if (o->diff && o->base)
		return rb_usage_error("plan: --diff and --base cannot go together");
	if (o->diff && o->nfiles != 2)
		return rb_usage_error("plan: --diff takes two files (usage: runbook plan --diff OLD "
				      "NEW)");
	if (o->base && o->nfiles != 1)
		return rb_usage_error("plan: --base takes one file (usage: runbook plan --base REV "
				      "FILE)");
	if (o->base && (!o->base[0] || o->base[0] == '-'))
		return rb_usage_error("plan: --base: '%s' is not a revision", o->base);
	if (strcmp(o->format, "text") && strcmp(o->format, "json") && strcmp(o->format, "markdown"))
		return rb_usage_error("plan: unknown format '%s' (expected text, json or markdown)",
				      o->format);
	if (o->split && strcmp(o->format, "markdown"))
		return rb_usage_error("plan: --split needs --format markdown");
	if (o->max_bytes && !o->split)
		return rb_usage_error("plan: --max-bytes needs --split DIR");
	*max = RB_MDSPLIT_DEFAULT;
	if (o->max_bytes) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(o->max_bytes, &end, 10);
		if (!*o->max_bytes || *end || errno || o->max_bytes[0] == '-' ||
		    v < RB_MDSPLIT_MIN || v > 1000000000)
			return rb_usage_error("plan: --max-bytes: '%s' is not a number of bytes from "
					      "%d to 1000000000", o->max_bytes, RB_MDSPLIT_MIN);
		*max = (size_t)v;
	}
	return DIFF_SAME;
}

int rb_cmd_plan_diff(const struct rb_plandiff_opts *o)
{
	size_t max;
	if (check_options(o, &max) != DIFF_SAME)
		return DIFF_ERROR;
	struct side s[2] = {{0}};       /* old, new */
	int rc = DIFF_ERROR;
	json_t *diff = NULL;
	if (o->diff) {
		if (load_file(&s[0], o->files[0]) != DIFF_SAME ||
		    load_file(&s[1], o->files[1]) != DIFF_SAME)
			goto out;
	} else {
		char *buf = NULL;
		size_t len = 0;
		if (git_old(o->base, o->files[0], &s[0].name, &buf, &len) != DIFF_SAME)
			goto out;
		int old_ok = buf ? load(&s[0], buf, len) : DIFF_SAME;
		free(buf);
		struct stat st;
		int gone = stat(o->files[0], &st) < 0 && errno == ENOENT;
		if (gone && !s[0].rb && old_ok == DIFF_SAME) {
			rb_cli_error("plan: %s is neither in the working tree nor at %s", o->files[0],
				     o->base);
			goto out;
		}
		if (old_ok != DIFF_SAME)
			goto out;
		if (gone)       /* removed since rev: every step removed */
			s[1].name = rb_xstrdup(o->files[0]);
		else if (load_file(&s[1], o->files[0]) != DIFF_SAME)
			goto out;
	}
	if (plan_side(o, &s[0], &s[1], 0) != DIFF_SAME || plan_side(o, &s[1], &s[0], 1) != DIFF_SAME)
		goto out;
	diff = rb_plandiff(s[0].plan, s[1].plan);
	if (output(o, diff, s, max) < 0)
		goto out;
	rc = json_is_true(json_object_get(diff, "changed")) ? DIFF_CHANGED : DIFF_SAME;
out:
	json_decref(diff);
	for (int i = 0; i < 2; i++) {
		json_decref(s[i].plan);
		rb_runbook_free(s[i].rb);
		free(s[i].name);
	}
	return rc;
}
