/*
 * Step processes, the runner's side: what the engine's thread calls.  It
 * hands a command to a supervisor, reads the command's output (memory, spill
 * files, lines), writes its stdin, keeps its timers (timeout, grace, abandon)
 * and turns the supervisor's messages into a result; it also holds the
 * handle on the spawner, which it starts and restarts.  proc.h explains the
 * design.  Never prints, never exits the runner, never blocks on a child's
 * pipe.
 *
 * The split follows the process boundary: this file is the code that runs in
 * the runner; spawner.c is the code that runs in the spawner and the
 * supervisors after the fork.  proc_int.h holds the messages between them.
 */
#include "proc.h"
#include "proc_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "durable.h"

/*
 * The module's only state: this process's spawner.  A forked child inherits
 * it, sees that pid is not its own, and must call rb_proc_init() again.
 */
static struct {
	pid_t pid;              /* the process that called rb_proc_init(), 0: none */
	pid_t spawner;          /* -1: none */
	int ctl;                /* requests to the supervisors (SOCK_SEQPACKET), -1: none */
} S = { 0, -1, -1 };

extern char **environ;

/* ---- small helpers ---- */

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xrealloc(NULL, n), s, n);
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		s = xrealloc(NULL, 1);
		*s = 0;
	}
	va_end(ap);
	return s;
}

static int fail(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char **err, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		if (vasprintf(err, fmt, ap) < 0)
			*err = NULL;
		va_end(ap);
	}
	return -1;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* fd was just made: no status flag of it is set that F_SETFL would clear. */
static int set_nonblock(int fd)
{
	return fcntl(fd, F_SETFL, O_NONBLOCK);
}

/* ---- the spawner, seen from the runner ---- */

static int spawner_start(char **err)
{
	int sv[2];
	pid_t runner = getpid(), pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return fail(err, "cannot create a socket for the spawner: %s", strerror(errno));
	pid = fork();
	if (pid == 0)
		rb_spawner_main(sv[1], runner);
	close(sv[1]);
	if (pid < 0) {
		int e = errno;
		close(sv[0]);
		return fail(err, "cannot start the spawner: %s", strerror(e));
	}
	S.ctl = sv[0];
	S.spawner = pid;
	return 0;
}

/*
 * Forget the spawner: closing the socket ends it and its idle supervisors
 * (steps keep running); rb_proc_reap() collects them.
 */
static void spawner_drop(void)
{
	close_fd(&S.ctl);
	if (S.spawner > 0 && waitpid(S.spawner, NULL, WNOHANG) == S.spawner)
		S.spawner = -1;
}

/* ---- one step: its output, stdin, timers and result ---- */

struct stream {
	int fd;                 /* read end, -1 once at EOF */
	int no;                 /* 1 or 2 */
	char *mem;              /* the first mem_limit bytes, NUL-terminated */
	size_t mem_len, mem_cap;
	size_t total, spilled;
	int spill_fd;           /* -1 until the first byte past mem_limit */
	int spill_errno;        /* why the spill file failed, or 0 */
	int mem_full;           /* mem was closed: the rest goes to the spill */
	char *spill_file;       /* its path, as created */
	char *hold;             /* with a filter: spilled bytes after the last newline */
	size_t hold_len;
	char *line;             /* the unterminated line so far */
	size_t line_len, line_cap;
	int cont;               /* part of this line was handed over already */
};

struct rb_proc {
	struct stream out, err;
	int st;                 /* socket to the supervisor, -1 once it is gone */
	int in;                 /* stdin write end while data remains */
	char *in_data;
	size_t in_len, in_off;
	char *spill_path, *argv0, *cwd;
	size_t mem_limit;
	void (*on_line)(void *ud, int stream, const char *line, size_t len);
	void (*on_started)(void *ud);
	void *ud;
	char *(*filter)(void *ud, const char *d, size_t n, size_t *outn);
	size_t (*cut)(void *ud, const char *d, size_t n);
	long grace_ms;
	long long deadline, kill_at, abandon_at;        /* ms, 0: not armed */
	int term_sent, failed_phase, failed_err, got_status, status, abandoned, done;
	struct rb_proc_result res;
	char *error;
};

static void emit(struct rb_proc *p, struct stream *s, const char *line, size_t len)
{
	if (p->on_line)
		p->on_line(p->ud, s->no, line, len);
}

/*
 * How much of d[0, n), the start of a line that goes on, to hand over as a piece: nothing
 * below RB_PROC_LINE_MAX; past it, where the cut callback finds that no secret is split
 * between this piece and the next, or where it must (RB_PROC_PIECE_MAX).
 */
static size_t piece_len(const struct rb_proc *p, const char *d, size_t n)
{
	if (n < RB_PROC_LINE_MAX)
		return 0;
	if (!p->cut)
		return RB_PROC_LINE_MAX;
	size_t k = p->cut(p->ud, d, n);
	if (!k && n >= RB_PROC_PIECE_MAX)
		k = n - RB_PROC_LINE_MAX;
	return k;
}

static void line_add(struct rb_proc *p, struct stream *s, const char *d, size_t n)
{
	size_t k;

	if (s->line_len + n > s->line_cap) {
		s->line_cap = s->line_len + n > RB_PROC_LINE_MAX ? s->line_len + n : RB_PROC_LINE_MAX;
		s->line = xrealloc(s->line, s->line_cap);
	}
	memcpy(s->line + s->line_len, d, n);
	s->line_len += n;
	while ((k = piece_len(p, s->line, s->line_len)) > 0) {
		emit(p, s, s->line, k);
		memmove(s->line, s->line + k, s->line_len - k);
		s->line_len -= k;
		s->cont = 1;
	}
}

/* Hands complete lines over; whole lines inside one read need no copy. */
static void feed_lines(struct rb_proc *p, struct stream *s, const char *d, size_t n)
{
	while (n) {
		const char *nl = memchr(d, '\n', n);
		size_t k;

		if (!nl) {
			line_add(p, s, d, n);
			return;
		}
		k = (size_t)(nl - d);
		if (s->line_len == 0 && !s->cont && k <= RB_PROC_LINE_MAX) {
			emit(p, s, d, k);
		} else {
			line_add(p, s, d, k);
			/* A line of exactly N pieces has no empty last piece. */
			if (s->line_len || !s->cont)
				emit(p, s, s->line, s->line_len);
			s->line_len = 0;
		}
		s->cont = 0;
		d = nl + 1;
		n -= k + 1;
	}
}

/*
 * Creates the spill file prefix + suffix for this call alone (O_EXCL): never
 * through a symbolic link in its place or in place of its directory (someone
 * else's file would be written: ELOOP), and never over a file that is there:
 * an earlier attempt's, or a session's before a resume, which a record of the
 * audit log binds.  Its name is then taken: ".2", ".3", ... are tried after
 * it.  Returns the descriptor and the path in *path, or -1 with errno.
 */
static int spill_open(const char *prefix, const char *suffix, char **path)
{
	const char *slash = strrchr(prefix, '/');
	char *dir = slash ? xasprintf("%.*s", (int)(slash - prefix + (slash == prefix)), prefix)
		    : NULL;
	int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : AT_FDCWD;
	int fd = -1;
	struct stat st;
	/* O_DIRECTORY | O_NOFOLLOW says ENOTDIR for a link: say it is one. */
	if (dfd == -1 && errno == ENOTDIR && lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))
		errno = ELOOP;
	*path = NULL;
	for (int k = 1; dfd != -1 && k <= RB_PROC_SPILL_NAMES; k++) {
		free(*path);
		*path = k == 1 ? xasprintf("%s%s", prefix, suffix)
			       : xasprintf("%s%s.%d", prefix, suffix, k);
		const char *base = slash ? *path + (slash - prefix) + 1 : *path;
		fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			break;
		if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
			break;
		if (!S_ISREG(st.st_mode)) {
			errno = S_ISLNK(st.st_mode) ? ELOOP : EEXIST;
			break;
		}
	}
	int saved = errno;
	if (dfd >= 0)
		close(dfd);
	free(dir);
	if (fd < 0) {
		free(*path);
		*path = NULL;
	}
	errno = saved;
	return fd;
}

/* Writes d[0, n), which stands for raw bytes of output (n of them unless filtered). */
static void spill_write(struct rb_proc *p, struct stream *s, const char *d, size_t n, size_t raw)
{
	if (s->spill_fd < 0) {
		errno = 0;
		s->spill_fd = spill_open(p->spill_path, s->no == 1 ? ".stdout" : ".stderr",
					 &s->spill_file);
	}
	if (s->spill_fd < 0 || rb_write_all(s->spill_fd, d, n) < 0) {
		/* ENOSPC and friends: drop the rest, the counters tell how much. */
		s->spill_errno = errno ? errno : EIO;
		close_fd(&s->spill_fd);
		return;
	}
	s->spilled += raw;
}

/* Filter d and write it out: never a byte of it unfiltered to the disk. */
static void spill_filtered(struct rb_proc *p, struct stream *s, const char *d, size_t n)
{
	size_t m;
	char *f = p->filter(p->ud, d, n, &m);
	spill_write(p, s, f, m, n);
	free(f);
}

/*
 * Output past mem_limit goes to the spill file.  With a filter, whole lines
 * only: a secret is found whole on its line, not cut across two writes.
 */
static void spill(struct rb_proc *p, struct stream *s, const char *d, size_t n)
{
	if (!p->spill_path || s->spill_errno)
		return;
	if (!p->filter) {
		spill_write(p, s, d, n, n);
		return;
	}
	s->hold = xrealloc(s->hold, s->hold_len + n);
	memcpy(s->hold + s->hold_len, d, n);
	s->hold_len += n;
	const char *nl = memrchr(s->hold, '\n', s->hold_len);
	size_t done = nl ? (size_t)(nl - s->hold) + 1 : 0;
	if (!done)                              /* no end of line in sight: a piece at a time */
		done = piece_len(p, s->hold, s->hold_len);
	if (!done)
		return;
	spill_filtered(p, s, s->hold, done);
	memmove(s->hold, s->hold + done, s->hold_len - done);
	s->hold_len -= done;
}

/*
 * Where what a stream keeps in memory ends, once more comes than it keeps: with a filter,
 * after its last whole line, so that no line (and no secret on it) is cut between the
 * memory and the spill file, which are redacted apart; in a line longer than
 * RB_PROC_LINE_MAX, where the cut callback says.  The rest is spilled.
 */
static size_t mem_end(const struct rb_proc *p, const struct stream *s)
{
	if (!p->filter)
		return s->mem_len;
	const char *nl = memrchr(s->mem, '\n', s->mem_len);
	size_t b = nl ? (size_t)(nl - s->mem) + 1 : 0;
	if (s->mem_len - b >= RB_PROC_LINE_MAX && p->cut)
		b += p->cut(p->ud, s->mem + b, s->mem_len - b);
	return b;
}

static void feed(struct rb_proc *p, struct stream *s, const char *d, size_t n)
{
	size_t keep = s->mem_full ? 0 : p->mem_limit - s->mem_len;

	s->total += n;
	if (keep > n)
		keep = n;
	if (keep) {
		if (s->mem_len + keep + 1 > s->mem_cap) {
			size_t cap = s->mem_cap ? s->mem_cap : 4096;

			while (cap < s->mem_len + keep + 1)
				cap *= 2;
			if (cap > p->mem_limit + 1)
				cap = p->mem_limit + 1;
			s->mem = xrealloc(s->mem, cap);
			s->mem_cap = cap;
		}
		memcpy(s->mem + s->mem_len, d, keep);
		s->mem_len += keep;
		s->mem[s->mem_len] = 0;
	}
	if (keep < n) {
		if (!s->mem_full) {
			size_t b = mem_end(p, s);

			s->mem_full = 1;
			spill(p, s, s->mem + b, s->mem_len - b);
			s->mem_len = b;
			if (s->mem)
				s->mem[b] = 0;
		}
		spill(p, s, d + keep, n - keep);
	}
	if (p->on_line)
		feed_lines(p, s, d, n);
}

/* Keeps the result's views of the buffers current (they move on realloc). */
static void sync_result(struct rb_proc *p)
{
	struct rb_proc_result *r = &p->res;

	r->out = p->out.mem ? p->out.mem : "";
	r->out_len = p->out.mem_len;
	r->err = p->err.mem ? p->err.mem : "";
	r->err_len = p->err.mem_len;
	r->out_total = p->out.total;
	r->err_total = p->err.total;
	r->out_spilled = p->out.spilled;
	r->err_spilled = p->err.spilled;
	r->out_spill_errno = p->out.spill_errno;
	r->err_spill_errno = p->err.spill_errno;
	r->out_spill_file = p->out.spill_file;
	r->err_spill_file = p->err.spill_file;
}

static void stream_eof(struct rb_proc *p, struct stream *s)
{
	close_fd(&s->fd);
	if (s->hold_len && !s->spill_errno)
		spill_filtered(p, s, s->hold, s->hold_len);
	s->hold_len = 0;
	close_fd(&s->spill_fd);
	if (s->line_len)
		emit(p, s, s->line, s->line_len);
	s->line_len = 0;
	s->cont = 0;
}

/* Reads what is there: a few reads per call, or everything when draining. */
static void stream_read(struct rb_proc *p, struct stream *s, int drain)
{
	char buf[65536];

	for (int i = 0; s->fd >= 0 && (drain || i < 4); i++) {
		ssize_t n = read(s->fd, buf, sizeof buf);

		if (n > 0) {
			feed(p, s, buf, (size_t)n);
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			/* Drained but open: after the step ended, a stranger holds it. */
			if (drain)
				stream_eof(p, s);
			break;
		} else {
			stream_eof(p, s);
		}
	}
	sync_result(p);
}

/* Writes what the pipe takes; 1 when finished (all written, or nobody reads). */
static int push(int fd, const char *d, size_t len, size_t *off)
{
	while (*off < len) {
		ssize_t n = write(fd, d + *off, len - *off);

		if (n > 0)
			*off += (size_t)n;
		else if (n < 0 && errno == EINTR)
			continue;
		else if (n < 0 && errno == EAGAIN)
			return 0;
		else
			return 1;       /* EPIPE: the command does not read it all */
	}
	return 1;
}

static void stdin_write(struct rb_proc *p)
{
	if (p->in >= 0 && push(p->in, p->in_data, p->in_len, &p->in_off)) {
		close_fd(&p->in);
		free(p->in_data);
		p->in_data = NULL;
	}
}

static void ctl_send(struct rb_proc *p, char c)
{
	if (p->st >= 0)
		send(p->st, &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void finish(struct rb_proc *p)
{
	struct rb_proc_result *r = &p->res;

	stream_read(p, &p->out, 1);
	stream_read(p, &p->err, 1);
	close_fd(&p->in);
	free(p->in_data);
	p->in_data = NULL;
	close_fd(&p->st);
	p->deadline = p->kill_at = p->abandon_at = 0;

	r->exit_code = -1;
	r->signal = -1;
	if (p->failed_phase == PHASE_CANCEL) {
		p->error = xasprintf("'%s' was cancelled before it started", p->argv0);
	} else if (p->failed_phase == PHASE_SYNC) {
		r->sync_errno = p->failed_err;
		p->error = xasprintf("'%s' was not started: fdatasync before it failed: %s",
				     p->argv0, strerror(p->failed_err));
	} else if (p->failed_phase) {
		int e = p->failed_err;

		r->exit_code = e == ENOENT && p->failed_phase != PHASE_CHDIR ? 127 : 126;
		if (p->failed_phase == PHASE_CHDIR)
			p->error = xasprintf("cannot change to directory '%s': %s", p->cwd, strerror(e));
		else if (p->failed_phase == PHASE_FORK)
			p->error = xasprintf("cannot start a supervisor for '%s': %s", p->argv0,
					     strerror(e));
		else if (e == ENOENT && !strchr(p->argv0, '/'))
			p->error = xasprintf("cannot run '%s': command not found in PATH", p->argv0);
		else
			p->error = xasprintf("cannot run '%s': %s", p->argv0, strerror(e));
	} else if (p->got_status && WIFEXITED(p->status)) {
		r->exit_code = WEXITSTATUS(p->status);
	} else if (p->got_status && WIFSIGNALED(p->status)) {
		r->signal = WTERMSIG(p->status);
	} else if (!p->res.pid) {
		/*
		 * Not retried: the runner cannot know that the command did not
		 * run, and running an operation twice is worse than failing.
		 */
		p->error = xasprintf("'%s' was not started: its spawner or supervisor died",
				     p->argv0);
	} else if (p->abandoned) {
		p->error = xasprintf("processes of '%s' still ran %d ms after SIGKILL; "
				     "left to the supervisor", p->argv0, RB_PROC_ABANDON_MS);
	} else {
		p->error = xasprintf("the supervisor of '%s' ended without reporting its end",
				     p->argv0);
	}
	r->error = p->error;
	p->done = 1;
}

static void status_read(struct rb_proc *p)
{
	for (;;) {
		struct msg m;
		ssize_t n = recv(p->st, &m, sizeof m, MSG_DONTWAIT);

		/*
		 * ECONNRESET: the supervisor closed with our control bytes
		 * unread.  The kernel reports that before the messages still
		 * queued (and clears it), so read on to them and then to EOF.
		 */
		if (n < 0 && (errno == EINTR || errno == ECONNRESET))
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n != (ssize_t)sizeof m) {
			/* EOF: the supervisor is gone, and with it the step's processes. */
			finish(p);
			return;
		}
		if (m.type == MSG_STARTED) {
			p->res.pid = m.pid;
			if (p->on_started)
				p->on_started(p->ud);
		} else if (m.type == MSG_EXITED) {
			p->got_status = m.has_status;
			p->status = m.status;
		} else if (m.type == MSG_FAILED) {
			p->failed_phase = m.phase;
			p->failed_err = m.err;
		}
	}
}

static void begin_term(struct rb_proc *p, long grace_ms, long long now)
{
	long long at = now + (grace_ms > 0 ? grace_ms : 0);

	if (!p->term_sent) {
		p->term_sent = 1;
		p->res.killed = 1;
		ctl_send(p, CTL_TERM);
	}
	if (!p->abandon_at && (!p->kill_at || at < p->kill_at))
		p->kill_at = at;
}

static void timers(struct rb_proc *p)
{
	long long now;

	if (p->done || !(p->deadline || p->kill_at || p->abandon_at))
		return;
	now = now_ms();
	if (p->deadline && now >= p->deadline) {
		p->deadline = 0;
		p->res.timed_out = 1;
		begin_term(p, p->grace_ms, now);
	}
	if (p->kill_at && now >= p->kill_at) {
		p->kill_at = 0;
		ctl_send(p, CTL_KILL);
		p->abandon_at = now + RB_PROC_ABANDON_MS;
	}
	if (p->abandon_at && now >= p->abandon_at) {
		p->abandoned = 1;
		finish(p);
	}
}

/* One message; strings that do not fit in one go through a memfd. */
static int send_request(struct req *h, const char *payload, int *fds)
{
	union {
		char buf[CMSG_SPACE(REQ_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov[2] = { { h, sizeof *h }, { (void *)payload, h->len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = u.buf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	int memfd = -1, rc = -1;
	ssize_t n;

	if (h->len > REQ_INLINE_MAX) {
		memfd = memfd_create("rb-request", MFD_CLOEXEC);
		if (memfd < 0 || rb_write_all(memfd, payload, h->len) < 0)
			goto out;
		h->flags |= REQ_MEMFD;
		fds[h->nfds++] = memfd;
		mh.msg_iovlen = 1;
	}
	mh.msg_controllen = CMSG_SPACE(h->nfds * sizeof(int));
	memset(u.buf, 0, sizeof u.buf);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(h->nfds * sizeof(int));
	memcpy(CMSG_DATA(c), fds, h->nfds * sizeof(int));
	do
		n = sendmsg(S.ctl, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	rc = n < 0 ? -1 : 0;
out:
	if (memfd >= 0) {
		int e = errno;

		close(memfd);
		h->flags &= ~(uint32_t)REQ_MEMFD;
		h->nfds--;
		errno = e;
	}
	return rc;
}

static size_t name_len(const char *e)
{
	const char *eq = strchr(e, '=');

	return eq ? (size_t)(eq - e) : strlen(e);
}

static int overridden(const char *e, const char *const *list)
{
	size_t n = name_len(e);

	for (; list && *list; list++)
		if (name_len(*list) == n && !strncmp(*list, e, n))
			return 1;
	return 0;
}

/*
 * argv, the runner's environment without the names in s->env, then s->env
 * (the last of duplicate names wins), then the cwd.  The environment is
 * sent whole because the spawner's copy is as old as the spawner.
 */
static char *build_payload(const struct rb_proc_spec *s, struct req *h)
{
	size_t len = 0, off = 0;
	char *buf = NULL;
	int pass;

	h->argc = h->envc = 0;
	for (pass = 0; pass < 2; pass++) {
#define PUT(str) do {							\
			size_t n_ = strlen(str) + 1;			\
			if (pass)					\
				memcpy(buf + off, (str), n_);		\
			off += n_;					\
		} while (0)
		off = 0;
		for (const char *const *a = s->argv; *a; a++) {
			PUT(*a);
			h->argc += !pass;
		}
		for (char **e = environ; e && *e; e++) {
			if (overridden(*e, s->env))
				continue;
			PUT(*e);
			h->envc += !pass;
		}
		for (const char *const *e = s->env; e && *e; e++) {
			if (overridden(*e, e + 1))
				continue;
			PUT(*e);
			h->envc += !pass;
		}
		if (s->cwd)
			PUT(s->cwd);
#undef PUT
		if (!pass) {
			len = off;
			buf = xrealloc(NULL, len);
		}
	}
	h->len = (uint32_t)len;
	return buf;
}

static int check_spec(const struct rb_proc_spec *s, char **err)
{
	if (!s || !s->argv || !s->argv[0])
		return fail(err, "no command to run");
	/* Do not quote an entry: a malformed one may well be a secret. */
	for (size_t i = 0; s->env && s->env[i]; i++)
		if (!strchr(s->env[i], '=') || s->env[i][0] == '=')
			return fail(err, "environment entry %zu is not NAME=value", i + 1);
	if (S.pid != getpid() || S.ctl < 0)
		return fail(err, "rb_proc_init() has not been called in this process");
	return 0;
}

struct rb_proc *rb_proc_start(const struct rb_proc_spec *s, char **err)
{
	struct rb_proc *p;
	struct req h = { .magic = REQ_MAGIC };
	int out[2] = { -1, -1 }, errp[2] = { -1, -1 }, in[2] = { -1, -1 }, sp[2] = { -1, -1 };
	int fds[REQ_MAX_FDS];
	char *payload = NULL;

	if (check_spec(s, err) < 0)
		return NULL;
	p = xrealloc(NULL, sizeof *p);
	/* Bounded so that mem_limit + 1 cannot wrap. */
	*p = (struct rb_proc){ .st = -1, .in = -1,
			       .mem_limit = s->mem_limit < SIZE_MAX / 4 ? s->mem_limit : SIZE_MAX / 4,
			       .on_line = s->on_line, .on_started = s->on_started, .ud = s->ud,
			       .filter = s->filter, .cut = s->cut,
			       .grace_ms = s->grace_ms };
	p->out = (struct stream){ .fd = -1, .no = 1, .spill_fd = -1 };
	p->err = (struct stream){ .fd = -1, .no = 2, .spill_fd = -1 };
	p->argv0 = xstrdup(s->argv[0]);
	p->cwd = s->cwd ? xstrdup(s->cwd) : NULL;
	p->spill_path = s->spill_path ? xstrdup(s->spill_path) : NULL;
	p->res.out = p->res.err = "";

	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
	    (s->stdin_data && pipe2(in, O_CLOEXEC) < 0) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		fail(err, "cannot create pipes for '%s': %s", s->argv[0], strerror(errno));
		goto fail;
	}
	/* Only the runner's ends: a child given a non-blocking stdout fails with EAGAIN. */
	if (set_nonblock(out[0]) < 0 || set_nonblock(errp[0]) < 0 || set_nonblock(sp[0]) < 0 ||
	    (in[1] >= 0 && set_nonblock(in[1]) < 0)) {
		fail(err, "cannot set up pipes for '%s': %s", s->argv[0], strerror(errno));
		goto fail;
	}
	payload = build_payload(s, &h);
	h.flags = (s->cwd ? REQ_CWD : 0) | (in[0] >= 0 ? REQ_STDIN : 0) | (s->sync ? REQ_SYNC : 0);
	h.grace_ms = s->grace_ms;
	h.nfds = 3;
	fds[0] = sp[1];
	fds[1] = out[1];
	fds[2] = errp[1];
	if (in[0] >= 0)
		fds[h.nfds++] = in[0];
	if (s->sync)
		fds[h.nfds++] = s->sync_fd;
	/*
	 * The spawner can be killed like any process.  Its idle supervisors
	 * would still take a request or two, but nobody would replace them:
	 * start another one.
	 */
	if (S.spawner < 0 || waitpid(S.spawner, NULL, WNOHANG) == S.spawner) {
		S.spawner = -1;
		spawner_drop();
		if (spawner_start(err) < 0)
			goto fail;
	}
	if (send_request(&h, payload, fds) < 0) {
		int e = errno;

		if (e != EPIPE && e != ECONNRESET && e != ENOTCONN && e != ECONNREFUSED) {
			fail(err, "cannot send '%s' to a supervisor: %s", s->argv[0], strerror(e));
			goto fail;
		}
		/* Nobody reads the requests any more: the spawner and its pool are gone. */
		spawner_drop();
		if (spawner_start(err) < 0)
			goto fail;
		if (send_request(&h, payload, fds) < 0) {
			fail(err, "cannot reach the spawner: %s", strerror(errno));
			spawner_drop();
			goto fail;
		}
	}
	free(payload);
	close(sp[1]);
	close(out[1]);
	close(errp[1]);
	close_fd(&in[0]);
	p->st = sp[0];
	p->out.fd = out[0];
	p->err.fd = errp[0];
	p->in = in[1];
	if (p->in >= 0) {
		size_t off = 0;

		/* Most stdin fits in the pipe now; copy only what it did not take. */
		if (push(p->in, s->stdin_data, s->stdin_len, &off)) {
			close_fd(&p->in);
		} else {
			p->in_len = s->stdin_len - off;
			p->in_data = memcpy(xrealloc(NULL, p->in_len), s->stdin_data + off, p->in_len);
		}
	}
	if (s->timeout_ms > 0)
		p->deadline = now_ms() + s->timeout_ms;
	return p;
fail:
	free(payload);
	for (int i = 0; i < 2; i++) {
		close_fd(&out[i]);
		close_fd(&errp[i]);
		close_fd(&in[i]);
		close_fd(&sp[i]);
	}
	rb_proc_free(p);
	return NULL;
}

int rb_proc_pollfds(struct rb_proc *p, struct pollfd *fds, int max)
{
	int n = 0;
	struct {
		int fd;
		short ev;
	} want[RB_PROC_MAX_FDS] = {
		{ p->st, POLLIN }, { p->out.fd, POLLIN }, { p->err.fd, POLLIN }, { p->in, POLLOUT },
	};

	if (p->done)
		return 0;
	for (int i = 0; i < RB_PROC_MAX_FDS; i++) {
		if (want[i].fd < 0)
			continue;
		if (n == max)
			return -1;
		fds[n++] = (struct pollfd){ want[i].fd, want[i].ev, 0 };
	}
	return n;
}

void rb_proc_handle(struct rb_proc *p, const struct pollfd *fds, int n)
{
	int st_ready = 0;

	for (int i = 0; i < n && !p->done; i++) {
		if (!fds[i].revents || fds[i].fd < 0)
			continue;
		if (fds[i].fd == p->out.fd)
			stream_read(p, &p->out, 0);
		else if (fds[i].fd == p->err.fd)
			stream_read(p, &p->err, 0);
		else if (fds[i].fd == p->in)
			stdin_write(p);
		else if (fds[i].fd == p->st)
			st_ready = 1;
	}
	/* Last: at EOF the status socket drains the pipes and ends the proc. */
	if (st_ready && !p->done)
		status_read(p);
	timers(p);
}

long rb_proc_timeout_ms(const struct rb_proc *p)
{
	long long at = 0, now;

	if (p->done)
		return -1;
	if (p->deadline)
		at = p->deadline;
	if (p->kill_at && (!at || p->kill_at < at))
		at = p->kill_at;
	if (p->abandon_at && (!at || p->abandon_at < at))
		at = p->abandon_at;
	if (!at)
		return -1;
	now = now_ms();
	return at > now ? (long)(at - now) : 0;
}

void rb_proc_terminate(struct rb_proc *p, long grace_ms)
{
	if (!p->done)
		begin_term(p, grace_ms, now_ms());
	timers(p);
}

int rb_proc_done(const struct rb_proc *p)
{
	return p->done;
}

const struct rb_proc_result *rb_proc_result(const struct rb_proc *p)
{
	return &p->res;
}

void rb_proc_free(struct rb_proc *p)
{
	if (!p)
		return;
	/* Closing the socket is the kill order: the supervisor SIGKILLs the tree on EOF. */
	if (!p->done)
		ctl_send(p, CTL_KILL);
	close_fd(&p->st);
	close_fd(&p->in);
	close_fd(&p->out.fd);
	close_fd(&p->err.fd);
	close_fd(&p->out.spill_fd);
	close_fd(&p->err.spill_fd);
	free(p->in_data);
	free(p->out.mem);
	free(p->err.mem);
	free(p->out.line);
	free(p->err.line);
	free(p->out.hold);
	free(p->err.hold);
	free(p->spill_path);
	free(p->out.spill_file);
	free(p->err.spill_file);
	free(p->argv0);
	free(p->cwd);
	free(p->error);
	free(p);
}

void rb_proc_reap(void)
{
	for (;;) {
		pid_t pid = waitpid(-1, NULL, WNOHANG);

		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return;
		if (pid == S.spawner)
			S.spawner = -1;
	}
}

int rb_proc_init(int spawner, char **err)
{
	struct sigaction sa = { .sa_handler = SIG_IGN }, old;
	pid_t self = getpid();

	if (S.pid == self && S.ctl >= 0)
		return 0;
	/* In a forked child the inherited socket leads to the parent's spawner. */
	close_fd(&S.ctl);
	S.spawner = -1;
	S.pid = self;
	/* EPIPE on a step's stdin is an event, not a reason to die. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
	/* With SIGCHLD ignored the kernel would reap for us and waitpid() would fail. */
	if (sigaction(SIGCHLD, NULL, &old) == 0 &&
	    (old.sa_handler == SIG_IGN || (old.sa_flags & SA_NOCLDWAIT))) {
		sa.sa_handler = SIG_DFL;
		sigaction(SIGCHLD, &sa, NULL);
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		return fail(err, "cannot become a child subreaper: %s", strerror(errno));
	return spawner ? spawner_start(err) : 0;
}

void rb_proc_shutdown(void)
{
	if (S.pid != getpid())
		return;
	close_fd(&S.ctl);
	/* The spawner exits on EOF at once; waiting leaves no zombie behind. */
	while (S.spawner > 0 && waitpid(S.spawner, NULL, 0) < 0 && errno == EINTR)
		;
	S.spawner = -1;
	S.pid = 0;
}
