/*
 * What the two sides of the step processes share, and nobody else: the
 * messages on their sockets, the spawner's entry point, and two helpers.
 * proc.c is the runner's side, spawner.c the spawner's and the supervisors';
 * after the fork, these messages are all that passes between them.
 * Callers outside these two files use proc.h.
 */
#ifndef RB_PROC_INT_H
#define RB_PROC_INT_H

#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Supervisor -> runner, one SOCK_SEQPACKET message each. */
enum { MSG_STARTED = 1, MSG_EXITED, MSG_FAILED };
enum { PHASE_FORK = 1, PHASE_CHDIR, PHASE_FIND, PHASE_EXEC, PHASE_CANCEL, PHASE_SYNC };
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
 * then stdin (REQ_STDIN; else /dev/null), then the file to fdatasync before
 * the exec (REQ_SYNC), then a memfd holding the strings when they do not fit
 * in a message (REQ_MEMFD).
 */
#define REQ_MAGIC	0x72627032u
#define REQ_INLINE_MAX	(64 * 1024)
enum { REQ_STDIN = 1, REQ_MEMFD = 2, REQ_CWD = 4, REQ_SYNC = 8 };
struct req {
	uint32_t magic;
	uint32_t len;
	uint32_t argc, envc;
	uint32_t flags;
	uint32_t nfds;
	int64_t grace_ms;
};
#define REQ_MAX_FDS	6

/*
 * The spawner's whole life, in the child of the runner's fork(): ctl is its
 * end of the request socket, runner the PID that must be its parent (if the
 * runner died before, it exits at once).  Ends with _exit(), never returns.
 */
void rb_spawner_main(int ctl, pid_t runner) __attribute__((noreturn));

/*
 * Helpers both sides need.  Here rather than in util.c because proc.c and
 * spawner.c build alone (bench/run, tests/unit/test_proc.c): they know
 * nothing of runbooks.
 */

static inline void *xrealloc(void *p, size_t n)
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

static inline long long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

#endif
