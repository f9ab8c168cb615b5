/*
 * Step processes: the runner side (pipes, capture, spill, lines, timers),
 * the spawner that keeps supervisors ready, and the supervisors that run
 * the commands and kill what they leave.  proc.h explains the design.
 * Never prints, never exits the runner, never blocks on a child's pipe.
 */
#include "proc.h"

#include <dirent.h>
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
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Supervisor -> runner, one SOCK_SEQPACKET message each. */
enum { MSG_STARTED = 1, MSG_EXITED, MSG_FAILED };
enum { PHASE_FORK = 1, PHASE_CHDIR, PHASE_FIND, PHASE_EXEC, PHASE_CANCEL };
struct msg {
	int32_t type;
	int32_t pid;            /* STARTED: the command's PID */
	int32_t has_status;     /* EXITED: 0 if the command's end was not seen */
	int32_t status;         /* EXITED: its wait status */
	int32_t err;            /* FAILED: errno */
	int32_t phase;          /* FAILED: PHASE_* */
};

/* Runner -> supervisor, one byte each on the same socket. */
#define CTL_TERM	'T'
#define CTL_KILL	'K'

/*
 * Runner -> an idle supervisor, one SOCK_SEQPACKET message: this header,
 * then len bytes of NUL-terminated strings (argv, the whole environment,
 * the cwd), with the step's fds attached: status socket, stdout, stderr,
 * then stdin (REQ_STDIN; else /dev/null), then a memfd holding the strings
 * when they do not fit in a message (REQ_MEMFD).
 */
#define REQ_MAGIC	0x72627032u
#define REQ_INLINE_MAX	(64 * 1024)
enum { REQ_STDIN = 1, REQ_MEMFD = 2, REQ_CWD = 4 };
struct req {
	uint32_t magic;
	uint32_t len;
	uint32_t argc, envc;
	uint32_t flags;
	uint32_t nfds;
	int64_t grace_ms;
};
#define REQ_MAX_FDS	5

/*
 * The spawner keeps at least POOL_MIN supervisors idle.  One serves up to
 * SUP_MAX_STEPS steps and retires after SUP_IDLE_S seconds without one.
 */
#define POOL_MIN	2
#define SUP_MAX_STEPS	10000
#define SUP_IDLE_S	30

/* How long the supervisor waits between SIGKILL rounds, and how many it makes. */
#define KILL_ROUND_MS	50
#define KILL_ROUNDS	100

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

/* ---- small helpers (all processes) ---- */

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p) {
		/* As everywhere in runbook: out of memory is not recoverable. */
		static const char m[] = "runbook: fatal: out of memory\n";
		if (write(2, m, sizeof m - 1) < 0) {
			/* nothing left to try */
		}
		abort();
	}
	return p;
}

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

static long long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---- process trees, from /proc (spawner and supervisor) ---- */

struct pp {
	pid_t pid, ppid;
	int mark;               /* 0 unknown, 1 in the tree, 2 not */
};

static int pp_cmp(const void *a, const void *b)
{
	pid_t x = ((const struct pp *)a)->pid, y = ((const struct pp *)b)->pid;

	return (x > y) - (x < y);
}

static struct pp *pp_find(struct pp *v, size_t n, pid_t pid)
{
	struct pp key = { .pid = pid };

	return bsearch(&key, v, n, sizeof *v, pp_cmp);
}

/* All processes and their parents; -1 without /proc. */
static int proc_list(struct pp **out, size_t *nout)
{
	DIR *d = opendir("/proc");
	struct pp *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[64], buf[512], *rp;
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		int fd, ppid;
		ssize_t r;

		if (*end || pid <= 0)
			continue;
		snprintf(path, sizeof path, "/proc/%ld/stat", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		r = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (r <= 0)
			continue;
		buf[r] = 0;
		/* The command name may hold spaces and parentheses: skip to the last ')'. */
		rp = strrchr(buf, ')');
		if (!rp || sscanf(rp + 1, " %*c %d", &ppid) != 1)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			v = xrealloc(v, cap * sizeof *v);
		}
		v[n++] = (struct pp){ (pid_t)pid, (pid_t)ppid, 0 };
	}
	closedir(d);
	qsort(v, n, sizeof *v, pp_cmp);
	*out = v;
	*nout = n;
	return 0;
}

/*
 * Sends sig (and SIGCONT after it, when cont, so that stopped processes act
 * on a SIGTERM) to every descendant of root, except the subtrees of the
 * processes in skip.  Returns how many were signalled, -1 without /proc.
 * A process forked meanwhile escapes this round; callers that must get
 * everything repeat until no child is left.
 */
static int tree_signal(pid_t root, const pid_t *skip, size_t nskip, int sig, int cont)
{
	enum { UNKNOWN, IN, OUT };
	struct pp *v;
	size_t n, i, k;
	int changed = 1, sent = 0;

	if (proc_list(&v, &n) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (v[i].pid == root)
			v[i].mark = OUT;
		for (k = 0; k < nskip; k++)
			if (v[i].pid == skip[k])
				v[i].mark = OUT;
	}
	/* Each pass settles at least one more level of the trees. */
	while (changed) {
		changed = 0;
		for (i = 0; i < n; i++) {
			struct pp *par;

			if (v[i].mark != UNKNOWN)
				continue;
			par = v[i].ppid == root ? NULL : pp_find(v, n, v[i].ppid);
			if (v[i].ppid == root)
				v[i].mark = IN;
			else if (!par)          /* ppid 0, or a parent that just exited */
				v[i].mark = OUT;
			else if (par->mark != UNKNOWN)
				v[i].mark = par->mark;
			else
				continue;
			changed = 1;
		}
	}
	for (i = 0; i < n; i++) {
		if (v[i].mark != IN)
			continue;
		if (kill(v[i].pid, sig) == 0) {
			sent++;
			if (cont)
				kill(v[i].pid, SIGCONT);
		}
	}
	free(v);
	return sent;
}

/*
 * Renames the calling process, in comm and in the argument area that
 * /proc/PID/cmdline shows, so that `pkill -f runbook` aimed at the runner
 * does not also kill the processes that clean up after it.
 */
static void name_self(const char *name)
{
	char buf[1024], *p;
	unsigned long long start = 0, end = 0;
	int fd, field;
	ssize_t r;

	prctl(PR_SET_NAME, name);
	fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	r = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (r <= 0)
		return;
	buf[r] = 0;
	p = strrchr(buf, ')');
	if (!p)
		return;
	/* Field 3 follows the ')'; arg_start and arg_end are fields 48 and 49. */
	p++;
	for (field = 3; field <= 49 && *p; field++) {
		char *e;
		unsigned long long v;

		while (*p == ' ')
			p++;
		v = strtoull(p, &e, 10);
		if (field == 48)
			start = v;
		if (field == 49)
			end = v;
		p = e;
		while (*p && *p != ' ')
			p++;
	}
	/*
	 * Only if our own argv[0] lives there: under valgrind, for one, the
	 * kernel's argument area is the tool's stack, not ours.
	 */
	if (!start || end <= start + 1 || (uintptr_t)program_invocation_name < start ||
	    (uintptr_t)program_invocation_name >= end)
		return;
	memset((char *)(uintptr_t)start, 0, end - start);
	memcpy((char *)(uintptr_t)start, name, strnlen(name, end - start - 1));
}

/* ---- the supervisors: forked ahead of need, used for step after step ---- */

/* Supervisor -> spawner on the report pipe, so that it keeps POOL_MIN idle. */
enum { SUP_BUSY = 1, SUP_IDLE };
struct report {
	pid_t pid;
	int32_t state;
};

struct spawner {
	int ctl;                /* the runner's requests; the idle supervisors read them */
	int sfd;                /* signalfd: SIGCHLD */
	int report[2];          /* pipe of struct report */
	struct child {
		pid_t pid;
		int state;      /* SUP_BUSY or SUP_IDLE */
	} *kid;                 /* live supervisors */
	size_t nkid, capkid;
	int nidle;
};

struct sup {
	int ctl, report;        /* from the spawner, kept from step to step */
	int devnull;            /* for fds 0-2 between steps */
	int sfd;                /* signalfd: SIGCHLD, SIGTERM */
	int st;                 /* this step's socket to the runner */
	int dir;                /* this step's cwd (O_PATH), or -1 */
	pid_t cmd;
	int cmd_done, cmd_status, busy;
	long grace_ms;
};

static void sup_send(struct sup *x, const struct msg *m)
{
	/* Nobody reads when the runner is gone; there is nothing else to do then. */
	while (send(x->st, m, sizeof *m, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

static void sup_fail(struct sup *x, int phase, int err)
{
	struct msg m = { .type = MSG_FAILED, .err = err, .phase = phase };

	sup_send(x, &m);
}

static void sup_report(struct sup *x, int state)
{
	struct report r = { getpid(), state };

	/* Sent when the step no longer waits for it: waking the spawner costs. */
	while (write(x->report, &r, sizeof r) < 0 && errno == EINTR)
		;
	x->busy = state == SUP_BUSY;
}

/* Reaps what has exited; returns 1 while the supervisor has children. */
static int sup_reap(struct sup *x)
{
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);

		if (pid > 0) {
			if (pid == x->cmd) {
				x->cmd_done = 1;
				x->cmd_status = st;
			}
			continue;
		}
		if (pid == 0)
			return 1;
		if (errno == EINTR)
			continue;
		return 0;
	}
}

static void sup_drain_signals(struct sup *x, int *term)
{
	struct signalfd_siginfo si;

	while (read(x->sfd, &si, sizeof si) == (ssize_t)sizeof si)
		if (si.ssi_signo == SIGTERM)
			*term = 1;
}

static void sup_term(struct sup *x)
{
	/*
	 * The command leads its own session, so -cmd is its process group: it
	 * reaches the group even without /proc.  SIGCONT so that a stopped
	 * process acts on the SIGTERM.
	 */
	kill(-x->cmd, SIGTERM);
	kill(-x->cmd, SIGCONT);
	tree_signal(getpid(), NULL, 0, SIGTERM, 1);
}

/*
 * SIGKILL to every descendant, round after round, until none is left or
 * only processes we may not signal (they changed credentials) remain.
 */
static void sup_kill_all(struct sup *x)
{
	int round;

	for (round = 0; round < KILL_ROUNDS; round++) {
		struct pollfd pf = { x->sfd, POLLIN, 0 };
		int term, sent;

		if (!sup_reap(x))
			return;
		sent = tree_signal(getpid(), NULL, 0, SIGKILL, 0);
		if (sent < 0) {
			/* No /proc: the process group is all we can name. */
			kill(-x->cmd, SIGKILL);
		} else if (sent == 0) {
			return;
		}
		if (poll(&pf, 1, KILL_ROUND_MS) > 0)
			sup_drain_signals(x, &term);
	}
}

/*
 * Waits for the command, obeys the runner, and when the command has exited
 * gives what it left behind grace_ms after a SIGTERM.  Returns 0, or -1
 * when the runner has gone (then there is nobody to report to).
 */
static int sup_loop(struct sup *x)
{
	long long kill_at = 0;
	int leftovers = 0;

	for (;;) {
		struct pollfd pf[2] = { { x->st, POLLIN, 0 }, { x->sfd, POLLIN, 0 } };
		long long now;
		int timeout = -1, term = 0;

		if (!sup_reap(x))
			return 0;
		now = now_ms();
		if (x->cmd_done && !leftovers) {
			leftovers = 1;
			sup_term(x);
			kill_at = now + (x->grace_ms > 0 ? x->grace_ms : 0);
		}
		if (leftovers) {
			if (now >= kill_at) {
				sup_kill_all(x);
				return 0;
			}
			timeout = (int)(kill_at - now);
		}
		if (poll(pf, 2, timeout) < 0 && errno != EINTR)
			return 0;
		if (pf[0].revents) {
			char c[16];
			ssize_t n = recv(x->st, c, sizeof c, MSG_DONTWAIT);

			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				sup_kill_all(x);
				return -1;
			}
			for (ssize_t i = 0; i < n; i++) {
				if (c[i] == CTL_KILL) {
					sup_kill_all(x);
					return 0;
				}
				if (c[i] == CTL_TERM)
					term = 1;
			}
		}
		if (pf[1].revents)
			sup_drain_signals(x, &term);
		if (term)
			sup_term(x);
	}
}

/*
 * Finds name the way execvp does, in the PATH of the child's environment,
 * relative paths from the step's cwd (dir).  Returns 0 or an errno value.
 */
static int find_program(int dir, const char *name, char *const *envp, char *out, size_t outsz)
{
	const char *path = "/bin:/usr/bin";
	int saw_eacces = 0;
	struct stat sb;

	if (strchr(name, '/')) {
		if (snprintf(out, outsz, "%s", name) >= (int)outsz)
			return ENAMETOOLONG;
		return faccessat(dir, out, X_OK, 0) == 0 ? 0 : errno;
	}
	if (!*name)
		return ENOENT;
	for (char *const *e = envp; *e; e++)
		if (!strncmp(*e, "PATH=", 5))
			path = *e + 5;
	while (1) {
		const char *colon = strchrnul(path, ':');
		int dlen = (int)(colon - path);

		/* An empty element means the current directory, as for execvp. */
		if (snprintf(out, outsz, "%.*s%s%s", dlen, path, dlen ? "/" : "", name) < (int)outsz &&
		    fstatat(dir, out, &sb, 0) == 0 && S_ISREG(sb.st_mode)) {
			if (faccessat(dir, out, X_OK, 0) == 0)
				return 0;
			saw_eacces = 1;
		}
		if (!*colon)
			break;
		path = colon + 1;
	}
	return saw_eacces ? EACCES : ENOENT;
}

/*
 * The command's side of vfork(): the step's cwd, its own session (so its
 * own process group, and no controlling terminal to stop it on), all
 * signals unblocked, exec.  The supervisor's cwd stays as it is, for the
 * next step.  On failure it closes what it holds: vfork shares memory, not
 * fds, and under valgrind it is a fork whose fds are checked at exit.
 */
static void __attribute__((noreturn, noinline))
exec_child(const char *prog, char **argv, char **envp, int errfd, const struct sup *x)
{
	int32_t r[2] = { PHASE_CHDIR, 0 };
	sigset_t none;

	setsid();
	if (x->dir < 0 || fchdir(x->dir) == 0) {
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(prog, argv, envp);
		r[0] = PHASE_EXEC;
	}
	r[1] = errno;
	if (write(errfd, r, sizeof r) < 0) {
		/* the supervisor then sees EOF and reports exit status 127 */
	}
	close(errfd);
	close(x->st);
	close(x->sfd);
	close(x->ctl);
	close(x->report);
	close(x->devnull);
	if (x->dir >= 0)
		close(x->dir);
	_exit(127);
}

/*
 * Starts the command.  vfork+execve rather than posix_spawn: the error pipe
 * reports failures (which phase, which errno) exactly, even under valgrind,
 * which turns vfork into fork.  Returns 0, or an errno value and *phase.
 */
static int start_command(struct sup *x, const char *prog, char **argv, char **envp, int *phase)
{
	int ep[2];
	int32_t r[2] = { PHASE_EXEC, 0 };
	ssize_t n;

	if (pipe2(ep, O_CLOEXEC) < 0)
		return *phase = PHASE_EXEC, errno;
	x->cmd = vfork();
	if (x->cmd == 0)
		exec_child(prog, argv, envp, ep[1], x);
	if (x->cmd < 0)
		r[1] = errno;
	close(ep[1]);
	if (x->cmd > 0) {
		do
			n = read(ep[0], r, sizeof r);
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)sizeof r)
			r[1] = 0;
		else
			while (waitpid(x->cmd, NULL, 0) < 0 && errno == EINTR)
				;
	}
	close(ep[0]);
	*phase = r[0];
	return r[1];
}

/* Receives one request into buf (sizeof(struct req) + REQ_INLINE_MAX bytes). */
static ssize_t recv_request(int ctl, char *buf, int *fds, int *nfds, int flags)
{
	union {
		char b[CMSG_SPACE(REQ_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { buf, sizeof(struct req) + REQ_INLINE_MAX };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = u.b, .msg_controllen = sizeof u.b };
	ssize_t n;

	*nfds = 0;
	do
		n = recvmsg(ctl, &mh, MSG_CMSG_CLOEXEC | flags);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return n;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
			if (*nfds < REQ_MAX_FDS)
				fds[(*nfds)++] = fd;
			else
				close(fd);
		}
	}
	return (mh.msg_flags & MSG_TRUNC) ? -2 : n;
}

/* A well-formed request: the strings are where the header says, and NUL-terminated. */
static char *request_strings(const struct req *h, ssize_t n, char *buf, const int *fds, int nfds)
{
	int want = 3 + !!(h->flags & REQ_STDIN) + !!(h->flags & REQ_MEMFD);
	char *s;

	if (n < (ssize_t)sizeof *h || h->magic != REQ_MAGIC || nfds != want ||
	    h->nfds != (uint32_t)nfds || h->len == 0)
		return NULL;
	if (!(h->flags & REQ_MEMFD)) {
		if ((size_t)n != sizeof *h + h->len)
			return NULL;
		s = buf + sizeof *h;
	} else {
		size_t off = 0;

		s = xrealloc(NULL, h->len);
		while (off < h->len) {
			ssize_t r = pread(fds[nfds - 1], s + off, h->len - off, (off_t)off);

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				free(s);
				return NULL;
			}
			off += (size_t)r;
		}
	}
	if (s[h->len - 1] != 0) {
		if (s != buf + sizeof *h)
			free(s);
		return NULL;
	}
	return s;
}

/*
 * One step, from a received request to the EXITED message.  Returns 0 if
 * the supervisor can serve another step: nothing of this one is left.
 */
static int sup_step(struct sup *x, char *buf, ssize_t n, int *fds, int nfds)
{
	struct req h = { 0 };
	struct msg m = { .type = MSG_STARTED };
	char *strs, **argv = NULL, **envp = NULL, *cwd = NULL, *p, prog[4096], c;
	int e, phase, term = 0;

	/* A SIGTERM that was meant for the idle supervisor is not for this step. */
	sup_drain_signals(x, &term);
	x->st = fds[0];
	x->cmd = -1;
	x->cmd_done = 0;
	memcpy(&h, buf, n >= (ssize_t)sizeof h ? sizeof h : 0);
	strs = n > 0 ? request_strings(&h, n, buf, fds, nfds) : NULL;
	if (!strs) {
		sup_fail(x, PHASE_FORK, EPROTO);
		goto out;
	}
	x->grace_ms = (long)h.grace_ms;
	argv = xrealloc(NULL, (h.argc + 1) * sizeof *argv);
	envp = xrealloc(NULL, (h.envc + 1) * sizeof *envp);
	p = strs;
	for (uint32_t i = 0; i < h.argc; i++, p += strlen(p) + 1)
		argv[i] = p;
	argv[h.argc] = NULL;
	for (uint32_t i = 0; i < h.envc; i++, p += strlen(p) + 1)
		envp[i] = p;
	envp[h.envc] = NULL;
	if (h.flags & REQ_CWD)
		cwd = p;
	if (cwd && (x->dir = open(cwd, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
		sup_fail(x, PHASE_CHDIR, errno);
		goto out;
	}
	/* As execvp would, but in the PATH of the child's environment. */
	e = find_program(x->dir >= 0 ? x->dir : AT_FDCWD, argv[0], envp, prog, sizeof prog);
	if (e) {
		sup_fail(x, PHASE_FIND, e);
		goto out;
	}
	/*
	 * The request may have waited for a supervisor while the runner gave
	 * up on it: do not start what was cancelled already.
	 */
	if (recv(x->st, &c, 1, MSG_PEEK | MSG_DONTWAIT) >= 0) {
		sup_fail(x, PHASE_CANCEL, ECANCELED);
		goto out;
	}
	/* 0-2 hold /dev/null between steps, so the received fds are all above. */
	dup2(fds[1], 1);
	dup2(fds[2], 2);
	if (h.flags & REQ_STDIN)
		dup2(fds[3], 0);
	e = start_command(x, prog, argv, envp, &phase);
	/* The step's pipes must reach EOF when the step's processes are gone. */
	for (int fd = 0; fd < 3; fd++)
		dup2(x->devnull, fd);
	while (nfds > 1)
		close(fds[--nfds]);
	if (e) {
		sup_fail(x, phase, e);
		goto out;
	}
	m.pid = x->cmd;
	sup_send(x, &m);
	if (!x->busy)
		sup_report(x, SUP_BUSY);
	if (sup_loop(x) == 0) {
		m = (struct msg){ .type = MSG_EXITED, .has_status = x->cmd_done,
				  .status = x->cmd_status };
		sup_send(x, &m);
	}
out:
	/*
	 * The status socket last: its EOF tells the runner the step is over.
	 * Read what the runner sent first, or it gets ECONNRESET instead.
	 */
	while (nfds > 1)
		close(fds[--nfds]);
	while (nfds && recv(fds[0], &c, 1, MSG_DONTWAIT) > 0)
		;
	while (nfds > 0)
		close(fds[--nfds]);
	if (x->dir >= 0)
		close(x->dir);
	x->dir = x->st = -1;
	if (strs != buf + sizeof h)
		free(strs);
	free(argv);
	free(envp);
	/* Stragglers we may not kill stay our children: then retire, they go to the spawner. */
	return sup_reap(x) ? -1 : 0;
}

/*
 * A supervisor: forked ahead of need by the spawner, it does its setup and
 * waits on the runner's socket, where the kernel hands each request to one
 * waiting supervisor.  While it runs a step it holds only that step's fds:
 * another's would keep their pipes from reaching EOF.  It exists because a
 * subreaper must be our code, alive, above the command.  After the step it
 * waits again: a fork and an exit saved per step, and they are most of the
 * cost of a spawn.
 */
static void __attribute__((noreturn)) sup_main(struct spawner *z)
{
	struct sup x = { .ctl = z->ctl, .report = z->report[1], .sfd = -1, .st = -1, .dir = -1 };
	size_t size = sizeof(struct req) + REQ_INLINE_MAX;
	int fds[REQ_MAX_FDS], nfds;
	sigset_t set;
	char *buf;

	close(z->report[0]);
	close(z->sfd);
	free(z->kid);
	name_self("rb-step");
	prctl(PR_SET_NAME, "rb-idle");
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	/* Blocked since the spawner; read here rather than by handlers. */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	x.sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	x.devnull = fcntl(0, F_DUPFD_CLOEXEC, 3);
	/* Touch the memory now: after fork every first write is a copy-on-write fault. */
	buf = memset(xrealloc(NULL, size), 0, size);
	free(memset(xrealloc(NULL, 16384), 0, 16384));
	if (x.sfd < 0 || x.devnull < 0)
		goto out;
	for (int steps = 0; steps < SUP_MAX_STEPS; steps++) {
		/*
		 * The socket's SO_RCVTIMEO retires a supervisor idle for long;
		 * EOF means the runner is gone.
		 */
		ssize_t n = recv_request(x.ctl, buf, fds, &nfds, 0);
		struct pollfd more = { x.ctl, POLLIN, 0 };

		if ((n <= 0 && n != -2) || nfds == 0)
			break;
		/*
		 * Busy is reported once the command runs, so that waking the
		 * spawner does not delay it; but in a burst the spawner must
		 * fork now, or the queued steps wait.
		 */
		if (poll(&more, 1, 0) > 0)
			sup_report(&x, SUP_BUSY);
		prctl(PR_SET_NAME, "rb-step");
		if (sup_step(&x, buf, n, fds, nfds) < 0)
			break;
		prctl(PR_SET_NAME, "rb-idle");
		if (x.busy)
			sup_report(&x, SUP_IDLE);
	}
out:
	free(buf);
	close(x.ctl);
	close(x.report);
	close(x.sfd);
	close(x.devnull);
	_exit(0);
}

/* ---- the spawner: a small fork of the runner that forks supervisors ---- */

/* Closes every fd but keep; fds at or above RLIMIT_NOFILE belong to valgrind. */
static void close_all_but(int keep)
{
	DIR *d = opendir("/proc/self/fd");
	struct rlimit rl = { 1024, 1024 };
	struct dirent *e;
	int *v = NULL;
	size_t n = 0, cap = 0;

	getrlimit(RLIMIT_NOFILE, &rl);
	if (!d) {
		for (rlim_t fd = 3; fd < rl.rlim_cur && fd < 65536; fd++)
			if ((int)fd != keep)
				close((int)fd);
		return;
	}
	while ((e = readdir(d))) {
		char *end;
		long fd = strtol(e->d_name, &end, 10);

		if (*end || fd < 3 || fd == keep || fd == dirfd(d) || (rlim_t)fd >= rl.rlim_cur)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			v = xrealloc(v, cap * sizeof *v);
		}
		v[n++] = (int)fd;
	}
	closedir(d);
	/* One close() each, not close_range(): valgrind's fd tracking sees these. */
	for (size_t i = 0; i < n; i++)
		close(v[i]);
	free(v);
}

static struct child *kid_find(struct spawner *z, pid_t pid)
{
	for (size_t i = 0; i < z->nkid; i++)
		if (z->kid[i].pid == pid)
			return &z->kid[i];
	return NULL;
}

static int spawn_idle(struct spawner *z)
{
	pid_t pid = fork();

	if (pid == 0)
		sup_main(z);
	if (pid < 0)
		return -1;
	if (z->nkid == z->capkid) {
		z->capkid = z->capkid ? 2 * z->capkid : 16;
		z->kid = xrealloc(z->kid, z->capkid * sizeof *z->kid);
	}
	z->kid[z->nkid++] = (struct child){ pid, SUP_IDLE };
	z->nidle++;
	return 0;
}

/*
 * No supervisor can be forked and none is idle: fail the requests that
 * wait rather than leave their steps hanging.
 */
static void fail_waiting(struct spawner *z, int err)
{
	char *buf = xrealloc(NULL, sizeof(struct req) + REQ_INLINE_MAX);
	struct msg m = { .type = MSG_FAILED, .err = err, .phase = PHASE_FORK };
	int fds[REQ_MAX_FDS], nfds;

	while (recv_request(z->ctl, buf, fds, &nfds, MSG_DONTWAIT) != -1 && nfds > 0) {
		send(fds[0], &m, sizeof m, MSG_NOSIGNAL | MSG_DONTWAIT);
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	}
	free(buf);
}

static void spawner_reports(struct spawner *z)
{
	struct report r;

	while (read(z->report[0], &r, sizeof r) == (ssize_t)sizeof r) {
		struct child *k = kid_find(z, r.pid);

		if (!k || k->state == r.state)
			continue;
		k->state = r.state;
		z->nidle += r.state == SUP_IDLE ? 1 : -1;
	}
}

/*
 * Reaps.  Returns 1 if an orphan may be alive: a supervisor died
 * abnormally (killed), or an orphan one left behind was reaped here.
 */
static int spawner_reap(struct spawner *z)
{
	int orphans = 0;

	/* A supervisor that went idle and then exited: its report comes first. */
	spawner_reports(z);
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		struct child *k;

		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return orphans;
		k = kid_find(z, pid);
		if (!k) {
			orphans = 1;
			continue;
		}
		if (k->state == SUP_IDLE)
			z->nidle--;
		if (!WIFEXITED(st))
			orphans = 1;
		*k = z->kid[--z->nkid];
	}
}

static void __attribute__((noreturn)) spawner_main(int ctl, pid_t runner)
{
	struct spawner z = { .ctl = ctl, .sfd = -1, .report = { -1, -1 } };
	struct timeval idle = { SUP_IDLE_S, 0 };
	sigset_t set;
	int devnull, sweep = 0;
	pid_t *busy = NULL;

	/* The runner's death kills the spawner; the steps have their own lifeline. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != runner)
		_exit(0);
	sigfillset(&set);
	sigprocmask(SIG_SETMASK, &set, NULL);
	/*
	 * Default dispositions, inherited by every command: the runner ignores
	 * SIGPIPE, and exec keeps what is ignored.  The mask (all blocked) is
	 * lifted in each command just before exec.
	 */
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction dfl = { .sa_handler = SIG_DFL };

		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL);
	}
	name_self("rb-spawner");
	/* Out of the runner's process group: `kill -9 %1` must not take us too. */
	setpgid(0, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (z.ctl < 3) {
		z.ctl = fcntl(ctl, F_DUPFD_CLOEXEC, 3);
		close(ctl);
	}
	close_all_but(z.ctl);
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	for (int fd = 0; fd < 3; fd++)
		if (devnull != fd)
			dup2(devnull, fd);
	if (devnull > 2)
		close(devnull);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	z.sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (z.ctl < 0 || z.sfd < 0 || pipe2(z.report, O_CLOEXEC | O_NONBLOCK) < 0)
		goto out;
	setsockopt(z.ctl, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof idle);

	for (;;) {
		/* events 0 on ctl: only its hangup; the requests are the supervisors'. */
		struct pollfd pf[3] = { { z.report[0], POLLIN, 0 }, { z.sfd, POLLIN, 0 },
					{ z.ctl, 0, 0 } };
		struct signalfd_siginfo si;

		while (z.nidle < POOL_MIN) {
			if (spawn_idle(&z) == 0)
				continue;
			if (z.nidle == 0)
				fail_waiting(&z, errno);
			break;
		}
		if (poll(pf, 3, sweep ? KILL_ROUND_MS : z.nidle < POOL_MIN ? 100 : -1) < 0 &&
		    errno != EINTR)
			break;
		if (pf[2].revents & (POLLHUP | POLLERR))
			break;
		spawner_reports(&z);
		while (read(z.sfd, &si, sizeof si) > 0)
			;
		if (spawner_reap(&z))
			sweep = 1;
		/*
		 * Orphans of a killed supervisor are ours now.  Kill them, but
		 * not the trees of the live supervisors, until none answers.
		 */
		if (sweep) {
			busy = xrealloc(busy, (z.nkid + 1) * sizeof *busy);
			for (size_t i = 0; i < z.nkid; i++)
				busy[i] = z.kid[i].pid;
			sweep = tree_signal(getpid(), busy, z.nkid, SIGKILL, 0) > 0;
		}
	}
out:
	/* The runner is gone or done: idle supervisors see the same EOF and exit. */
	spawner_reports(&z);
	for (size_t i = 0; i < z.nkid; i++)
		if (z.kid[i].state == SUP_IDLE)
			while (waitpid(z.kid[i].pid, NULL, 0) < 0 && errno == EINTR)
				;
	free(busy);
	free(z.kid);
	close(z.report[0]);
	close(z.report[1]);
	close(z.sfd);
	close(z.ctl);
	close(0);
	close(1);
	close(2);
	_exit(0);
}

static int spawner_start(char **err)
{
	int sv[2];
	pid_t runner = getpid(), pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return fail(err, "cannot create a socket for the spawner: %s", strerror(errno));
	pid = fork();
	if (pid == 0)
		spawner_main(sv[1], runner);
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

/* ---- the runner side ---- */

struct stream {
	int fd;                 /* read end, -1 once at EOF */
	int no;                 /* 1 or 2 */
	char *mem;              /* the first mem_limit bytes, NUL-terminated */
	size_t mem_len, mem_cap;
	size_t total, spilled;
	int spill_fd;           /* -1 until the first byte past mem_limit */
	int spill_failed;
	char *line;             /* the unterminated line so far */
	size_t line_len;
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
	void *ud;
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

static void line_add(struct rb_proc *p, struct stream *s, const char *d, size_t n)
{
	while (n) {
		size_t room = RB_PROC_LINE_MAX - s->line_len, k = n < room ? n : room;

		if (!s->line)
			s->line = xrealloc(NULL, RB_PROC_LINE_MAX);
		memcpy(s->line + s->line_len, d, k);
		s->line_len += k;
		d += k;
		n -= k;
		if (s->line_len == RB_PROC_LINE_MAX) {
			emit(p, s, s->line, s->line_len);
			s->line_len = 0;
			s->cont = 1;
		}
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

static void spill(struct rb_proc *p, struct stream *s, const char *d, size_t n)
{
	if (!p->spill_path || s->spill_failed)
		return;
	if (s->spill_fd < 0) {
		char *path = xasprintf("%s%s", p->spill_path, s->no == 1 ? ".stdout" : ".stderr");

		s->spill_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		free(path);
	}
	if (s->spill_fd < 0 || write_all(s->spill_fd, d, n) < 0) {
		/* ENOSPC and friends: drop the rest, the counters tell how much. */
		s->spill_failed = 1;
		close_fd(&s->spill_fd);
		return;
	}
	s->spilled += n;
}

static void feed(struct rb_proc *p, struct stream *s, const char *d, size_t n)
{
	size_t keep = p->mem_limit - s->mem_len;

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
	if (keep < n)
		spill(p, s, d + keep, n - keep);
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
}

static void stream_eof(struct rb_proc *p, struct stream *s)
{
	close_fd(&s->fd);
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
		if (memfd < 0 || write_all(memfd, payload, h->len) < 0)
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
			       .on_line = s->on_line, .ud = s->ud, .grace_ms = s->grace_ms };
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
	h.flags = (s->cwd ? REQ_CWD : 0) | (in[0] >= 0 ? REQ_STDIN : 0);
	h.grace_ms = s->grace_ms;
	h.nfds = in[0] >= 0 ? 4 : 3;
	fds[0] = sp[1];
	fds[1] = out[1];
	fds[2] = errp[1];
	fds[3] = in[0];
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
	free(p->spill_path);
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

int rb_proc_init(char **err)
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
	return spawner_start(err);
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
