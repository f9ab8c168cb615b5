/*
 * Child processes for `shell` and `run:` steps: start a command with extra
 * environment, cwd and stdin data, capture its stdout/stderr without ever
 * blocking the caller's poll() loop, and make sure that every process a step
 * creates ends with the step, or with the runner.  Knows nothing of runbooks.
 *
 * How a step's processes are kept on a leash
 *
 *   runner ──requests──▶ idle rb-step ◀──fork── rb-spawner (keeps >= 2 idle)
 *      └──── status/control socket ────▶ rb-step ──vfork+exec──▶ command ─▶ descendants
 *                                        (subreaper)
 * - rb_proc_init() forks a small spawner ("rb-spawner") while the runner is
 *   still small.  It keeps supervisors ("rb-step") forked ahead of need;
 *   they wait on the runner's request socket (SOCK_SEQPACKET: the kernel
 *   hands each request to exactly one of them) and, after a step, wait for
 *   the next one.  So a spawn costs neither a fork of the runner (whose
 *   page-table copy grows with its heap: +0.5 ms per 10 MiB of small blocks
 *   here) nor a fork and exit of a supervisor; the command itself is
 *   started with vfork+exec, as posix_spawn would.
 * - A supervisor is a child subreaper (PR_SET_CHILD_SUBREAPER) and starts
 *   the command in a new session (so its own process group, and no
 *   controlling terminal to hang on).  Whatever the command starts, even a
 *   double-forked or setsid daemon, stays below the supervisor: an orphan
 *   is reparented to its nearest subreaper ancestor, and nothing can leave
 *   that subtree.  The supervisor reaps all of them: no zombie outlives a
 *   step.  It goes back to waiting only when nothing of the step is left.
 * - Each step has a socketpair: the runner holds one end, the supervisor
 *   the other.  EOF on it means "the runner is gone" and the supervisor
 *   then SIGKILLs the step's whole subtree.  The kernel closes the runner's
 *   end however the runner dies (kill -9 included), so steps die with the
 *   runner.  PR_SET_PDEATHSIG would only cover a direct child and is cleared
 *   by a set-user-ID exec (sudo); the socket has neither limit.  It also
 *   carries the command's end, so the runner needs no SIGCHLD handler, no
 *   pidfd, and can never signal a reused PID.
 * - A timeout or rb_proc_terminate() asks the supervisor for SIGTERM to the
 *   command's process group and to every descendant; after the grace period,
 *   SIGKILL to every descendant, repeated until none is left.  When the
 *   command exits by itself, processes it left behind get the same
 *   treatment (SIGTERM, grace_ms, SIGKILL): a step cannot leave processes
 *   running.  Long-lived services must be started through the service
 *   manager (systemctl, systemd-run), which does not make them descendants.
 *
 * Why not a PID namespace per step (CLONE_NEWPID, the init of which takes
 * all of the namespace with it): it works here as root, and unprivileged
 * with a user namespace, but inside it the step sees host PIDs in /proc
 * while kill() takes namespace PIDs, so `kill $(cat /run/nginx.pid)`,
 * pkill and killall, the daily bread of runbooks, signal nothing or the
 * wrong process; a user namespace also stops sudo from gaining root.  A
 * cgroup per step needs root and a delegated cgroup v2 tree, and still needs
 * someone alive to kill it.  An environment token scanned in /proc is
 * bypassed by `env -i`; the subreaper keeps the tree exactly.
 *
 * Limits (the same as root and as an unprivileged user, except the first):
 * - An unprivileged runner cannot signal a descendant that gained other
 *   credentials (the command sudo runs).  The supervisor stops trying when
 *   only such processes are left, and the step ends without them.
 * - Descendants are found in /proc (PPID links).  Without /proc only the
 *   command's process group is signalled.
 * - If a supervisor itself is SIGKILLed while the runner lives, the spawner
 *   (also a subreaper) receives its orphans and SIGKILLs them.  If the runner,
 *   the spawner and the supervisors are all SIGKILLed at once (pkill -9 on
 *   their names, or on "rb-"), the commands survive.  The spawner and the
 *   supervisors rename themselves (comm "rb-spawner", "rb-step" or
 *   "rb-idle", and cmdline) so that `pkill -f runbook` does not take them
 *   with the runner.  Under systemd the service's cgroup is killed whole.
 *   A step whose request reaches a supervisor as it is being killed fails
 *   ("was not started: its spawner or supervisor died"); it is not retried,
 *   as the command may have started.
 *
 * Secrets: pass them in spec->env, never in argv.  The environment of a
 * process is readable only by its owner and root (/proc/PID/environ, mode
 * 0400); its command line is readable by every user (/proc/PID/cmdline,
 * ps).  The runner passes argv and env to a supervisor over a socketpair.
 *
 * Threads: call rb_proc_init() before starting threads, or at least from the
 * thread that lives as long as the runner (the spawner's PR_SET_PDEATHSIG
 * follows that thread).  The other functions must be called from one thread.
 */
#ifndef RB_PROC_H
#define RB_PROC_H

#include <poll.h>
#include <stddef.h>

/* The most pollfds one process needs (status socket, stdout, stderr, stdin). */
#define RB_PROC_MAX_FDS		4
/*
 * A line longer than this is handed to on_line (and to filter) in pieces of
 * about this size, cut where the cut callback says; a piece is cut where it
 * must when its line is RB_PROC_PIECE_MAX long.
 */
#define RB_PROC_LINE_MAX	65536
#define RB_PROC_PIECE_MAX	(4 * 1024 * 1024)
/* After SIGKILL, how long to wait for the processes before giving up on them. */
#define RB_PROC_ABANDON_MS	500
/* Names a spill file may take: spill_path.stdout, then .stdout.2 ... .stdout.N. */
#define RB_PROC_SPILL_NAMES	1000

struct rb_proc_spec {
	const char *const *argv;        /* argv[0] searched in PATH (the child's); NULL-terminated */
	const char *const *env;         /* extra "NAME=value" (added to or overriding the runner's
					   environment), or NULL; the place for secrets */
	const char *cwd;                /* or NULL: the runner's */
	const char *stdin_data;         /* NULL: /dev/null; copied, need not outlive the call */
	size_t stdin_len;
	const char *spill_path;         /* output past mem_limit goes to spill_path + ".stdout" /
					   ".stderr" (created 0600 on first use, never through a
					   symlink nor over a file there: then + ".2", ".3", ...;
					   the result names it), or NULL: dropped
					   (still counted) */
	size_t mem_limit;               /* bytes of each stream kept in memory */
	long timeout_ms;                /* > 0: terminate with grace_ms when it has run this long */
	long grace_ms;                  /* SIGTERM -> SIGKILL delay for the timeout, and for the
					   processes the command leaves behind when it exits */
	/*
	 * Called for each complete line (without its '\n') as it arrives, and
	 * for the last unterminated one at EOF; stream is 1 or 2.  May be NULL.
	 * It must not free the proc.
	 */
	void (*on_line)(void *ud, int stream, const char *line, size_t len);
	/*
	 * Called once, from rb_proc_handle(), when the supervisor reports the
	 * command started: with sync, its fdatasync of sync_fd returned 0 before.
	 * May be NULL.
	 */
	void (*on_started)(void *ud);
	void *ud;
	/*
	 * What goes to a spill file passes through filter first, whole lines
	 * at a time (a line longer than RB_PROC_LINE_MAX in pieces, see cut):
	 * it returns a malloc'd replacement of its n bytes and its
	 * length in *outn (the engine redacts secrets).  May be NULL.
	 */
	char *(*filter)(void *ud, const char *d, size_t n, size_t *outn);
	/*
	 * Where a piece of output may be cut so that filter and on_line never
	 * see a secret in two parts: how many leading bytes of d[0, n), the
	 * start of a line that goes on, can be handed over alone; 0 for none
	 * yet (rb_redact_cut).  With a filter, what is kept in memory also
	 * ends on a whole line, or at such a cut.  NULL: anywhere.
	 */
	size_t (*cut)(void *ud, const char *d, size_t n);
	/*
	 * With sync set, the supervisor fdatasync()s sync_fd right before it
	 * starts the command, and does not start it if that fails (sync_errno):
	 * the caller's records written to that file are durable before the
	 * command runs, and the request to the supervisor travels while the disk
	 * works.  Give a descriptor of the file of its own (an open() of it, not a
	 * dup()): a write-back error is reported once per open file description.
	 */
	int sync;
	int sync_fd;
};

struct rb_proc_result {
	int exit_code;                  /* 0..255, or -1 when killed by a signal or unknown */
	int signal;                     /* the signal that ended the command, or -1 */
	int killed;                     /* rb_proc_terminate() or the timeout asked it to stop */
	int timed_out;                  /* ... and it was the timeout */
	int pid;                        /* the command's PID once started, else 0 */
	/*
	 * Why the command did not run or how its end is unknown, or NULL.  A
	 * command that cannot be started is reported here, not by
	 * rb_proc_start(): exit_code is 127 when it was not found, 126 when it
	 * could not be run (not executable, bad cwd, ...).
	 */
	const char *error;
	int sync_errno;                 /* the fdatasync of spec->sync_fd failed: not started */
	const char *out;                /* the first mem_limit bytes of stdout, NUL-terminated */
	size_t out_len;
	const char *err;                /* the same for stderr */
	size_t err_len;
	size_t out_total, err_total;    /* bytes produced, including spilled and dropped ones */
	size_t out_spilled, err_spilled; /* bytes in the spill files; the rest past out_len was
					   dropped (no spill_path, or the file could not be written) */
	int out_spill_errno, err_spill_errno; /* why a spill file could not be written, or 0
					   (ELOOP: a symbolic link in its place, not followed) */
	const char *out_spill_file, *err_spill_file; /* the spill files as created, or NULL */
};

struct rb_proc;

/*
 * Once per runner, early: makes the runner a child subreaper, ignores
 * SIGPIPE (children get it back at its default), and with spawner starts
 * the spawner (without, the first rb_proc_start does, from its thread: a
 * runner that may start no process forks nothing).  Call it again in a
 * forked child before using this module there.  Returns 0, or -1 with a
 * malloc'd message in *err.
 */
int rb_proc_init(int spawner, char **err);

/*
 * Stops the spawner and the idle supervisors.  A step still running goes on
 * until its proc is freed or the runner exits.
 */
void rb_proc_shutdown(void);

/*
 * Starts a command.  Fails (NULL, malloc'd message in *err) only for a bad
 * spec or when the runner cannot make pipes or reach the spawner; the caller
 * owns the proc and frees it with rb_proc_free().  It does not wait for the
 * command, only (briefly, in a burst of hundreds) for room in the queue of
 * requests.
 */
struct rb_proc *rb_proc_start(const struct rb_proc_spec *s, char **err);

/*
 * The fds to poll now: fills at most max entries (RB_PROC_MAX_FDS is
 * enough) and returns their number, 0 once done, -1 if max is too small.
 * Poll with a timeout no longer than rb_proc_timeout_ms(), then call
 * rb_proc_handle() with the same entries (and their revents); it may also
 * be called with n == 0 when only the timeout expired.  Both can be given
 * a larger array: entries are matched by fd.
 */
int rb_proc_pollfds(struct rb_proc *p, struct pollfd *fds, int max);
void rb_proc_handle(struct rb_proc *p, const struct pollfd *fds, int n);

/* Milliseconds until p needs rb_proc_handle() although no fd is ready, -1: none. */
long rb_proc_timeout_ms(const struct rb_proc *p);

/*
 * Cancel: SIGTERM to the command's process group and all its descendants
 * now, SIGKILL to all of them after grace_ms.  A second call can only
 * shorten the grace.  A command still waiting for a supervisor never starts
 * (error: "... was cancelled before it started").
 */
void rb_proc_terminate(struct rb_proc *p, long grace_ms);

/* The command and all its descendants are gone and the output is read (or abandoned). */
int rb_proc_done(const struct rb_proc *p);

/* Valid once rb_proc_done(); pid and the counters are also meaningful before. */
const struct rb_proc_result *rb_proc_result(const struct rb_proc *p);

/* Frees p; a running command and its descendants are SIGKILLed. */
void rb_proc_free(struct rb_proc *p);

/*
 * Reaps the runner's exited children: the runner is a subreaper, so
 * processes whose own supervisor died end up here.  Cheap; call it after
 * each command (the zombies wait until then).  It reaps any child, so the
 * runner must start its processes through this module only.
 */
void rb_proc_reap(void);

#endif
