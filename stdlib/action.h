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
#include <stdatomic.h>
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
	/*
	 * A secret (a password, a URL or conninfo with one, a token, a webhook URL): the
	 * value must be an expression that reads one of the runbook's secrets, or the output
	 * of a step that is a secret (sensitive, or RB_ACT_SECRET_OUTPUT: validate refuses a
	 * literal), and the engine writes it as *** in the intent record.
	 */
	RB_ARG_SECRET = 1 << 1,
	/*
	 * A boolean that, written true, makes the call safe to run again after a
	 * crash (http.request's idempotency_key, pg.exec's exactly_once): the step
	 * is then idempotent, and resume runs it again without asking.
	 */
	RB_ARG_MAKES_IDEMPOTENT = 1 << 2,
	/*
	 * A list or map that rb_action.check takes known in part, at validate: with null
	 * for each value known only at run time (a Redis command [SELECT, "${{ x }}"] is
	 * refused by its name).  At run time a null is one an expression gave.
	 */
	RB_ARG_PARTIAL = 1 << 3,
};

struct rb_arg {
	const char *name;
	enum rb_type type;
	unsigned flags;
	const char *const *choices;     /* allowed string values, NULL-terminated */
	const char *summary;
};

enum {
	RB_ACT_SIDE_EFFECTS = 1 << 0,   /* changes something outside runbook (the default for
					   calls whose effect() cannot tell) */
	RB_ACT_IDEMPOTENT = 1 << 1,     /* safe to re-run after a crash */
	RB_ACT_INLINE = 1 << 2,         /* runs on the engine's thread, with Lua */
	RB_ACT_SYNC_FIRST = 1 << 3,     /* can make the engine's records durable itself, right
					   before its side effect (rb_call.sync) */
	RB_ACT_PURE = 1 << 4,           /* computes only, the same way each time: what fails once
					   fails again, so defaults.retry does not apply to it */
	RB_ACT_EXPLAINS = 1 << 5,       /* with side effects, it can say what a call would do
					   without doing it (rb_call.explain): --dry-run --probe
					   shows that */
	RB_ACT_SECRET_OUTPUT = 1 << 6,  /* its output holds a secret it made (rb_result.secrets):
					   an argument typed secret may read it */
	RB_ACT_PROCESSES = 1 << 7,      /* starts processes (rb_proc_start): a run forks its
					   process spawner only when a step may call it */
};

struct rb_luabox;
struct rb_runctx;

/*
 * How far a call is asked to stop.  The engine raises the level (never lowers
 * it) from its own thread; the action reads it from any thread.  fd is an
 * eventfd that becomes readable when the level is first raised, so an action
 * blocked in poll() on a library's socket (a worker's) wakes for it too; -1 for
 * inline calls, which the engine stops through Lua's hook, and for polled ones
 * (start/step), which the engine steps when it raises the level.
 */
enum rb_cancel_level {
	RB_CANCEL_NONE,
	RB_CANCEL_STOP,                 /* stop politely: SIGTERM, cancel the query, abort */
	RB_CANCEL_KILL,                 /* at once: SIGKILL, drop the connection */
};

struct rb_cancel {
	atomic_int level;
	int fd;
};

/* 0, or -1 with errno when no eventfd can be made. */
int rb_cancel_init(struct rb_cancel *c, int with_fd);
void rb_cancel_fini(struct rb_cancel *c);
/* Raise the level to at least level (async-signal-safe). */
void rb_cancel_set(struct rb_cancel *c, enum rb_cancel_level level);

static inline enum rb_cancel_level rb_cancelled(const struct rb_cancel *c)
{
	return (enum rb_cancel_level)atomic_load(&((struct rb_cancel *)c)->level);
}

/* For_each: rb_call.item of a step without. */
#define RB_NO_ITEM      ((size_t)-1)

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
	struct rb_runctx *run;          /* the run: its id, its connections (runctx.h) */
	const char *step;               /* the step's id, for messages */
	size_t item;                    /* for_each: the item's index, else RB_NO_ITEM */
	int attempt;                    /* 1, 2, ... (a resume goes on counting) */
	int check;                      /* this call is the step's check */
	int explain;                    /* --probe, RB_ACT_EXPLAINS: change nothing, and say in
					   the output what the call would do (pg.exec: EXPLAIN) */
	/*
	 * The run's audit log head as the call starts ("SEQ:SHA256 (key ID)"), or NULL
	 * with no log: notifications carry it, so that the log up to them can be
	 * checked against a copy kept elsewhere (runbook audit verify --head).
	 */
	const char *audit_head;
	json_t *args;                   /* the rendered arguments */
	/* The names of the arguments whose value reads a secret, NULL-terminated, or NULL. */
	const char *const *secret_args;
	const char *const *env;         /* extra NAME=value for child processes (secrets) */
	int64_t deadline_ms;            /* CLOCK_MONOTONIC ms, or 0 for none */
	const struct rb_cancel *cancel; /* raised when the step must stop */
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

/* How a call ended. */
enum rb_outcome {
	RB_OK,
	RB_FAILED,                      /* it did not succeed; for a check, "no" */
	RB_TIMED_OUT,                   /* it was stopped at its deadline */
	RB_CANCELLED,                   /* it was stopped by a cancel */
	RB_BROKEN,                      /* its own code failed (a check's Lua error, a command
					   that could not start): it gave no answer */
	RB_NOT_STARTED,                 /* call->sync: the fdatasync failed (sync_errno),
					   nothing was done */
};

struct rb_result {
	enum rb_outcome outcome;
	json_t *output;                 /* the step's output (the result owns it) */
	/*
	 * What in output is a secret (a generated key or password), or NULL: every string
	 * in it is hidden wherever the run writes or prints, as a sensitive step's output
	 * is, without the runbook saying sensitive.  The result owns it.
	 */
	json_t *secrets;
	char *error;                    /* why it failed (malloc'd), or NULL */
	char *warning;                  /* what the user must know all the same (output that
					   could not be kept; malloc'd), or NULL */
	int chunk_line;                 /* lua: the line of its chunk that failed, or 0 */
	/*
	 * Where in an argument the error is, when the action knows (a SQL error's
	 * position): the argument, the item of a list or -1, and the character
	 * (1-based) in its text; err_arg NULL when not known.  The engine turns it
	 * into the runbook's FILE:LINE:COL.
	 */
	const char *err_arg;
	int err_index;
	long err_pos;
	int sync_errno;                 /* RB_NOT_STARTED: why the fdatasync failed */
};

/* A failure of rb_action.check: which argument (and item of a list, or -1), and why. */
struct rb_arg_error {
	const char *arg;
	int index;
	char *msg;                      /* malloc'd */
};

/* What a call will do, as rb_action.effect says. */
enum rb_effect {
	RB_EFFECT_UNKNOWN = -1,         /* it cannot tell (an argument is known only at run
					   time): the action's RB_ACT_SIDE_EFFECTS decides */
	RB_EFFECT_READS,                /* it changes nothing */
	RB_EFFECT_WRITES,               /* it can change something */
};

/* An output of an action, for the docs. */
struct rb_output {
	const char *name;
	const char *summary;
};

struct rb_action {
	const char *name;               /* "shell" */
	const char *summary;            /* one line for docs and --help */
	const struct rb_arg *args;      /* terminated by a NULL name */
	const struct rb_output *outputs;        /* its output's keys, NULL-terminated, or NULL */
	/*
	 * For the docs, when effect() decides: which calls write.  NULL when the flags
	 * decide and effect() only describes a call for the plan ("writes KEY.pem").
	 */
	const char *effects;
	const char *example;            /* a step using it, as YAML, for the docs, or NULL */
	unsigned flags;
	/*
	 * Optional.  The arguments' own rules beyond their types (a URL, a method, a
	 * statement's parameter count), given those known (validate: the literal ones,
	 * with in later the names of those known only at run time; the engine: all,
	 * rendered, before the call, and later NULL).  0, or -1 with *e filled in.
	 */
	int (*check)(const json_t *args, const json_t *later, struct rb_arg_error *e);
	/*
	 * Optional.  What a call with these arguments will do, decided from them where
	 * they say ("GET" reads, "POST" writes), given those known as check() is, and in
	 * later the names of those known only at run time.  A list or map known in part
	 * (a Redis command [GET, "${{ vars.key }}"]) is given too, with null for each
	 * value known only at run time, and its name is in later.  With what, a short
	 * description for the plan ("DELETE on db app"; malloc'd, no secret in it).
	 */
	enum rb_effect (*effect)(const json_t *args, const json_t *later, char **what);
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

/* The string argument name, or NULL when it is absent or not a string. */
static inline const char *rb_arg_str(const json_t *args, const char *name)
{
	return json_string_value(json_object_get(args, name));
}

/* Whether the JSON list holds the string s (a list of names). */
int rb_strlist_has(const json_t *list, const char *s);

/* For check(): fill e in (msg malloc'd: e takes it) and return -1. */
int rb_arg_fail(struct rb_arg_error *e, const char *arg, int index, char *msg);
/* For check(): whether argument name is known only at run time (in later). */
int rb_arg_later(const json_t *later, const char *name);
/* ... whether it is given at all, known now or later. */
int rb_arg_given(const json_t *args, const json_t *later, const char *name);

/*
 * jansson's message on e, without the text it quotes near the error ("invalid token
 * near 'Zq7s'"): a piece of a secret cut short, which the redactor, finding whole
 * values, would let through.  The line and column say where.  Cuts e->text in place.
 */
const char *rb_json_why(json_error_t *e);

/* Whether argument name of the call reads a secret: its value, whole or in part, is one. */
int rb_call_arg_secret(const struct rb_call *c, const char *name);

/* Milliseconds of CLOCK_MONOTONIC, the engine's clock. */
int64_t rb_now_ms(void);

/* The registry, sorted by name. */
extern const struct rb_action *const rb_actions[];
extern const size_t rb_nactions;

const struct rb_action *rb_action_find(const char *name);
const struct rb_arg *rb_action_arg(const struct rb_action *a, const char *name);

extern const struct rb_action act_assert, act_crypto_cert_info, act_crypto_fingerprint,
	act_crypto_keypair, act_crypto_random, act_crypto_verify_pair, act_http_request, act_lua,
	act_notify_channels, act_notify_pagerduty, act_notify_slack, act_notify_webhook,
	act_pg_exec, act_pg_query, act_pg_set_password, act_redis_command, act_shell, act_wait;

#endif
