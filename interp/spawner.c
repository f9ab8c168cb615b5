/*
 * Step processes, the side that does not run in the runner: the spawner (a
 * small fork of the runner that keeps supervisors forked ahead of need), the
 * supervisors (subreapers that start each command, report its end, and kill
 * whatever it leaves behind), and the /proc walk that finds a process tree.
 * proc.h explains the design; proc.c is the runner's side.
 *
 * The split follows the process boundary: all of this code runs in the
 * spawner or in a supervisor, entered through rb_spawner_main() in a fresh
 * fork, and talks to the runner only through the sockets of proc_int.h.
 * Every process here ends with _exit(), never by returning into the runner's
 * code or by exit(): both would run the runner's atexit handlers and flush
 * its stdio buffers a second time, from a copy.
 */
#include "proc_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
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
#include <unistd.h>

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

/*
 * What the spawner needs to keep POOL_MIN supervisors idle, in memory it
 * shares with them (mapped before the forks): how many are idle, and the
 * state of each one's slot.  A supervisor wakes the spawner (a byte on the
 * report pipe) only when the steps it takes leave fewer than POOL_MIN idle,
 * so a step costs the spawner nothing once the pool is large enough.
 *
 * A supervisor takes a step by counting itself out of idle, then marking
 * its slot busy; it comes back by marking the slot idle, then counting
 * itself in.  The spawner counts out a supervisor it reaps whose slot says
 * idle (one that retired or died waiting).  So one killed between the two
 * steps is counted out twice, never kept in: the pool may then hold one
 * supervisor more than it needs, but never waits for one that is gone.
 */
#define SLOTS		1024    /* more than RB_JOBS_MAX + POOL_MIN */
enum { SLOT_FREE, SLOT_IDLE, SLOT_BUSY };
struct pool {
	atomic_int idle;
	atomic_uchar slot[SLOTS];
};

struct spawner {
	int ctl;                /* the runner's requests; the idle supervisors read them */
	int sfd;                /* signalfd: SIGCHLD */
	int report[2];          /* pipe: the pool is low */
	struct pool *pool;
	struct child {
		pid_t pid;
		int slot;
	} *kid;                 /* live supervisors */
	size_t nkid, capkid;
};

struct sup {
	int ctl, report;        /* from the spawner, kept from step to step */
	struct pool *pool;
	int slot;               /* ours in pool */
	int low;                /* our step took the pool below POOL_MIN: wake the spawner */
	int devnull;            /* for fds 0-2 between steps */
	int sfd;                /* signalfd: SIGCHLD, SIGTERM */
	int st;                 /* this step's socket to the runner */
	int dir;                /* this step's cwd (O_PATH), or -1 */
	pid_t cmd;
	int cmd_done, cmd_status;
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

/* Sent when the step no longer waits for it, if it can: waking the spawner costs. */
static void sup_wake_spawner(struct sup *x)
{
	while (write(x->report, "", 1) < 0 && errno == EINTR)
		;
	x->low = 0;
}

/* Out of the idle count (see struct pool); returns 1 if that leaves too few. */
static int sup_take(struct sup *x)
{
	int low = atomic_fetch_sub(&x->pool->idle, 1) - 1 < POOL_MIN;

	atomic_store(&x->pool->slot[x->slot], SLOT_BUSY);
	return low;
}

static void sup_give_back(struct sup *x)
{
	atomic_store(&x->pool->slot[x->slot], SLOT_IDLE);
	atomic_fetch_add(&x->pool->idle, 1);
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

/* What a vforked child says of its exec, written into the supervisor's memory. */
struct exec_report {
	int shared;             /* set first: the child runs in our memory (not a fork) */
	int32_t phase, err;     /* where and why the exec failed; err 0: it did not */
};

/*
 * The command's side of vfork(): the step's cwd, its own session (so its
 * own process group, and no controlling terminal to stop it on), all
 * signals unblocked, exec.  The supervisor's cwd stays as it is, for the
 * next step.  On failure it closes what it holds: vfork shares memory, not
 * fds, and under valgrind it is a fork whose fds are checked at exit.
 */
static void __attribute__((noreturn, noinline))
exec_child(const char *prog, char **argv, char **envp, int errfd, const struct sup *x,
	   volatile struct exec_report *rep)
{
	int32_t r[2] = { PHASE_CHDIR, 0 };
	sigset_t none;

	rep->shared = 1;
	setsid();
	if (x->dir < 0 || fchdir(x->dir) == 0) {
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(prog, argv, envp);
		r[0] = PHASE_EXEC;
	}
	r[1] = errno;
	rep->phase = r[0];
	rep->err = r[1];
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
 * Starts the command.  vfork+execve rather than posix_spawn: failures are
 * reported exactly (which phase, which errno), also under valgrind, which
 * turns vfork into fork.  A real vfork returns once the child has exec'd or
 * exited, and the child wrote any failure into our memory (rep), as glibc's
 * posix_spawn does: nothing to wait for.  A fork (rep.shared still 0) says it
 * through the error pipe, which reaches EOF at the exec.  Returns 0, or an
 * errno value and *phase.
 */
static int start_command(struct sup *x, const char *prog, char **argv, char **envp, int *phase)
{
	int ep[2];
	int32_t r[2] = { PHASE_EXEC, 0 };
	volatile struct exec_report rep = { 0, PHASE_EXEC, 0 };
	ssize_t n;

	if (pipe2(ep, O_CLOEXEC) < 0)
		return *phase = PHASE_EXEC, errno;
	x->cmd = vfork();
	if (x->cmd == 0)
		exec_child(prog, argv, envp, ep[1], x, &rep);
	if (x->cmd < 0)
		r[1] = errno;
	close(ep[1]);
	if (x->cmd > 0 && rep.shared) {
		r[0] = rep.phase;
		r[1] = rep.err;
		if (r[1])
			while (waitpid(x->cmd, NULL, 0) < 0 && errno == EINTR)
				;
	} else if (x->cmd > 0) {
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
	int want = 3 + !!(h->flags & REQ_STDIN) + !!(h->flags & REQ_SYNC) + !!(h->flags & REQ_MEMFD);
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
	/* The runner's records the command must follow are durable first (proc.h). */
	if (h.flags & REQ_SYNC) {
		int fd = fds[3 + !!(h.flags & REQ_STDIN)];

		while ((e = fdatasync(fd) < 0 ? errno : 0) == EINTR)
			;
		if (e) {
			sup_fail(x, PHASE_SYNC, e);
			goto out;
		}
	}
	/*
	 * The request may have waited for a supervisor while the runner gave
	 * up on it, or the runner may have died while the disk synced: do not
	 * start what was cancelled already.
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
	if (x->low)
		sup_wake_spawner(x);
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
static void __attribute__((noreturn)) sup_main(struct spawner *z, int slot)
{
	struct sup x = { .ctl = z->ctl, .report = z->report[1], .pool = z->pool, .slot = slot,
			 .sfd = -1, .st = -1, .dir = -1 };
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
		 * A low pool is reported once the command runs, so that waking
		 * the spawner does not delay it; but in a burst the spawner
		 * must fork now, or the queued steps wait.
		 */
		x.low = sup_take(&x);
		if (x.low && poll(&more, 1, 0) > 0)
			sup_wake_spawner(&x);
		prctl(PR_SET_NAME, "rb-step");
		if (sup_step(&x, buf, n, fds, nfds) < 0)
			break;
		prctl(PR_SET_NAME, "rb-idle");
		sup_give_back(&x);
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

static int nidle(const struct spawner *z)
{
	return atomic_load(&z->pool->idle);
}

static int spawn_idle(struct spawner *z)
{
	int slot = 0;
	pid_t pid;

	while (slot < SLOTS && atomic_load(&z->pool->slot[slot]) != SLOT_FREE)
		slot++;
	if (slot == SLOTS)
		return errno = EAGAIN, -1;
	atomic_store(&z->pool->slot[slot], SLOT_IDLE);
	atomic_fetch_add(&z->pool->idle, 1);
	pid = fork();
	if (pid == 0)
		sup_main(z, slot);
	if (pid < 0) {
		atomic_fetch_sub(&z->pool->idle, 1);
		atomic_store(&z->pool->slot[slot], SLOT_FREE);
		return -1;
	}
	if (z->nkid == z->capkid) {
		z->capkid = z->capkid ? 2 * z->capkid : 16;
		z->kid = xrealloc(z->kid, z->capkid * sizeof *z->kid);
	}
	z->kid[z->nkid++] = (struct child){ pid, slot };
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

/*
 * Reaps.  Returns 1 if an orphan may be alive: a supervisor died
 * abnormally (killed), or an orphan one left behind was reaped here.
 */
static int spawner_reap(struct spawner *z)
{
	int orphans = 0;

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
		if (atomic_exchange(&z->pool->slot[k->slot], SLOT_FREE) == SLOT_IDLE)
			atomic_fetch_sub(&z->pool->idle, 1);
		if (!WIFEXITED(st))
			orphans = 1;
		*k = z->kid[--z->nkid];
	}
}

void __attribute__((noreturn)) rb_spawner_main(int ctl, pid_t runner)
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
	z.pool = mmap(NULL, sizeof *z.pool, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		      -1, 0);
	if (z.pool == MAP_FAILED)
		z.pool = NULL;
	if (z.ctl < 0 || z.sfd < 0 || !z.pool || pipe2(z.report, O_CLOEXEC | O_NONBLOCK) < 0)
		goto out;
	setsockopt(z.ctl, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof idle);

	for (;;) {
		/* events 0 on ctl: only its hangup; the requests are the supervisors'. */
		struct pollfd pf[3] = { { z.report[0], POLLIN, 0 }, { z.sfd, POLLIN, 0 },
					{ z.ctl, 0, 0 } };
		struct signalfd_siginfo si;
		char drain[64];

		while (nidle(&z) < POOL_MIN) {
			if (spawn_idle(&z) == 0)
				continue;
			if (nidle(&z) == 0)
				fail_waiting(&z, errno);
			break;
		}
		if (poll(pf, 3, sweep ? KILL_ROUND_MS : nidle(&z) < POOL_MIN ? 100 : -1) < 0 &&
		    errno != EINTR)
			break;
		if (pf[2].revents & (POLLHUP | POLLERR))
			break;
		while (read(z.report[0], drain, sizeof drain) > 0)
			;
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
	for (size_t i = 0; i < z.nkid; i++)
		if (atomic_load(&z.pool->slot[z.kid[i].slot]) == SLOT_IDLE)
			while (waitpid(z.kid[i].pid, NULL, 0) < 0 && errno == EINTR)
				;
	free(busy);
	free(z.kid);
	if (z.pool)
		munmap(z.pool, sizeof *z.pool);
	close(z.report[0]);
	close(z.report[1]);
	close(z.sfd);
	close(z.ctl);
	close(0);
	close(1);
	close(2);
	_exit(0);
}
