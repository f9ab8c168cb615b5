/*
 * The contract every action fills in.  validate, plan, the docs and the
 * engine all read the same table, so an action is described once.  Actions
 * never print, never exit and never read globals: they get a call and fill a
 * result.
 */
#ifndef RB_ACTION_H
#define RB_ACTION_H

#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* The types of action arguments and params. */
enum rb_type {
	RB_T_STRING, RB_T_INTEGER, RB_T_NUMBER, RB_T_BOOLEAN, RB_T_DURATION,
	RB_T_LIST, RB_T_MAP,
	RB_T_ANY,               /* any value */
	RB_T_COMMAND,           /* a string (sh -c) or a list of strings (argv) */
	RB_T_STRING_MAP,        /* a map of strings to strings */
};

enum {
	RB_ARG_REQUIRED = 1 << 0,
};

struct rb_arg {
	const char *name;
	enum rb_type type;
	unsigned flags;
	const char *const *choices;     /* allowed string values, NULL-terminated */
	const char *summary;
};

enum {
	RB_ACT_SIDE_EFFECTS = 1 << 0,   /* changes something outside runbook */
	RB_ACT_IDEMPOTENT = 1 << 1,     /* safe to re-run after a crash */
	RB_ACT_INLINE = 1 << 2,         /* runs on the engine's thread, with Lua */
	RB_ACT_SYNC_FIRST = 1 << 3,     /* can make the engine's records durable itself, right
					   before its side effect (rb_call.sync) */
	RB_ACT_PURE = 1 << 4,           /* computes only, the same way each time: what fails once
					   fails again, so defaults.retry does not apply to it */
};

struct rb_luabox;

/*
 * One execution of an action.  An action runs in one of three ways:
 * - run() on a worker thread: it may block, and must return soon after
 *   *cancel becomes set or the deadline passes;
 * - run() on the engine's thread (RB_ACT_INLINE), with the run's Lua sandbox:
 *   it must not block;
 * - start() and step() in the engine's poll loop, when all the call does is
 *   wait for file descriptors and time (a process, a timer): it holds no
 *   thread, and its wake-ups are the engine's, with no hand-off between
 *   threads on the way.
 */
struct rb_call {
	const char *step;               /* the step's id, for messages */
	json_t *args;                   /* the rendered arguments */
	const char *const *env;         /* extra NAME=value for child processes (secrets) */
	int64_t deadline_ms;            /* CLOCK_MONOTONIC ms, or 0 for none */
	volatile sig_atomic_t *cancel;  /* set when the step must stop */
	const char *spill_path;         /* prefix for output files, or NULL */
	/* What goes to those files passes through it (redaction; rb_proc_spec's filter), or NULL. */
	char *(*filter)(void *ud, const char *d, size_t n, size_t *outn);
	/* Where output may be cut without splitting a secret (rb_proc_spec's cut), or NULL. */
	size_t (*cut)(void *ud, const char *d, size_t n);
	void (*on_line)(void *ud, int stream, const char *line, size_t len);
	/* The side effect has started (with sync: after the fdatasync returned 0), or NULL. */
	void (*on_started)(void *ud);
	void *ud;
	struct rb_luabox *box;          /* inline actions only */
	int scope;                      /* inline actions only: the Lua scope's index */
	int sensitive;                  /* the output is a secret: keep it out of the error */
	/*
	 * RB_ACT_SYNC_FIRST actions: with sync set, the engine's records of this call
	 * are written to sync_fd's file but not yet durable.  fdatasync(sync_fd) right
	 * before the side effect; if that fails, do nothing and set res->sync_errno.
	 */
	int sync;
	int sync_fd;
};

struct rb_result {
	json_t *output;                 /* the step's output (the result owns it) */
	int failed;                     /* the action did not succeed */
	int timed_out;                  /* it was stopped at its deadline */
	char *error;                    /* why it failed (malloc'd), or NULL */
	char *warning;                  /* what the user must know all the same (output that
					   could not be kept; malloc'd), or NULL */
	int chunk_line;                 /* lua: the line of its chunk that failed, or 0 */
	int broken;                     /* its own code failed (not a timeout): it gave no answer,
					   where failed alone can be a check's "no" */
	int sync_errno;                 /* call->sync: the fdatasync failed, nothing was done */
};

struct rb_action {
	const char *name;               /* "shell" */
	const char *summary;            /* one line for docs and --help */
	const struct rb_arg *args;      /* terminated by a NULL name */
	unsigned flags;
	int (*run)(const struct rb_call *call, struct rb_result *res);
	/*
	 * Or, instead of run(): start() begins a call (call lives until the call is over)
	 * and returns its state, or NULL with res filled in when it is over already.
	 * step() advances it, on the engine's thread: it reads the revents of the fds it
	 * asked for last time (*nfds of them; none on the first call), acts on *cancel and
	 * the deadline, and returns 1 when the call is over (res filled in, state freed),
	 * or 0 with the fds to poll next in fds (at most RB_ACTION_MAX_FDS), their number in
	 * *nfds, and in *timeout_ms the longest the engine may wait before the next step()
	 * (-1: until an fd is ready).  The engine calls step() after each of its wake-ups and
	 * right after it sets *cancel.
	 */
	void *(*start)(const struct rb_call *call, struct rb_result *res);
	int (*step)(void *state, struct pollfd *fds, int *nfds, long *timeout_ms,
		    struct rb_result *res);
};

/* The most fds one call of an action polls at once (start and step). */
#define RB_ACTION_MAX_FDS	8

/* Milliseconds of CLOCK_MONOTONIC, the engine's clock. */
int64_t rb_now_ms(void);

/* The registry, sorted by name. */
extern const struct rb_action *const rb_actions[];
extern const size_t rb_nactions;

const struct rb_action *rb_action_find(const char *name);
const struct rb_arg *rb_action_arg(const struct rb_action *a, const char *name);

extern const struct rb_action act_assert, act_lua, act_shell, act_wait;

#endif
