/*
 * The engine's insides, shared by its three layers, each calling only the
 * ones below it: exec.c (the run: set-up, lock, vars, phases, rollback, end),
 * sched.c (the scheduler: steps through their conditions, checks, gates and
 * attempts, for_each units, workers) and exec_svc.c (the services: events,
 * journal, redaction, the Lua state of the run).  Only those three include it.
 */
#ifndef RB_EXEC_INT_H
#define RB_EXEC_INT_H

#include <pthread.h>
#include <signal.h>

#include "action.h"
#include "exec.h"
#include "journal.h"
#include "luabox.h"
#include "render.h"
#include "runctx.h"
#include "rundir.h"
#include "util.h"

enum sstatus {
	S_PENDING, S_RUNNING, S_SUCCEEDED, S_FAILED, S_SKIPPED, S_INTERRUPTED, S_WAITING,
	S_SATISFIED,
	S_UNPROBED,                     /* --probe: it would change something, so it did not run */
	S_COUNT
};

extern const char *const ex_status_names[S_COUNT];

struct exec;

/*
 * An attempt of a step (or its check): its rendered calls, one per for_each
 * item (one without for_each), run as units, up to the step's concurrency at
 * once.  Only the scheduling thread touches a job, except cancel; workers see
 * their unit and what the job holds read-only.
 */
struct job {
	struct exec *ex;
	size_t step;                    /* index in rb->steps */
	const struct rb_step *what;     /* the step, or its check */
	const struct rb_action *action;
	json_t *calls;                  /* array of rendered arguments */
	json_t *items;                  /* for_each: the items, or NULL */
	json_t *item_sha;               /* for_each: each item's SHA-256, to keep them apart */
	struct rb_strv env;             /* secrets for child processes, NULL-terminated */
	int64_t deadline_ms;
	size_t n, next, running, ndone, concurrency;
	json_t *outs;                   /* each call's output (null until it succeeded) */
	unsigned char *ok;              /* each call: it succeeded (in this or an earlier attempt) */
	json_t *output;                 /* the result: one output, or the list */
	int failed, timed_out;
	int broken;                     /* the failure was a check's broken code (unit's broken) */
	int explain;                    /* --probe: its calls explain, they do not run */
	char *error;
	struct rb_cancel cancel;
};

/* One call of a job: run by a worker, inline, or stepped in the scheduler's poll loop. */
struct unit {
	struct job *jb;
	size_t k;                       /* which call */
	int64_t started_ms;
	int64_t ended_ms;               /* it ended while Lua ran (sched.c: lua_poll), or 0 */
	struct rb_call call;
	char *spill;                    /* call.spill_path */
	char head[128];                 /* call.audit_head */
	void *state;                    /* the action's start() and step(): the call under way */
	struct pollfd fds[RB_ACTION_MAX_FDS];   /* ... the fds it waits for */
	int nfds;
	int64_t wake_at;                /* ... and when it must be stepped at the latest, or -1 */
	json_t *output;
	json_t *secrets;                /* the action's rb_result.secrets */
	int failed, timed_out;
	int broken;                     /* a check whose code failed: it gave no answer */
	char *error, *warning;
	struct unit *next;
};

struct srun {
	enum sstatus status;
	int attempts;
	json_t *output, *outputs;
	char *error;
	int64_t started_ms;
	int64_t duration_ms;            /* once it has finished (not skipped), else -1 */
	int64_t retry_at;               /* waiting to be retried at this time, or 0 */
	size_t waiting;                 /* dependencies not finished yet */
	int dep_skipped;
	int dep_unprobed;               /* --probe: a step it needs did not run */
	size_t *succ, nsucc;            /* the steps that depend on this one */
	size_t completed;               /* completion order, for rollback */
	int decided;                    /* its condition said it runs */
	int unrecorded;                 /* its end was shown as not recorded: not counted */
	int checked;                    /* its check said the effect is not in place */
	int approved;                   /* its gate is passed */
	char *prompt;                   /* its gate's rendered prompt, while it waits */
	int capped;                     /* the Lua memory limit kept item from being set: it
					   fails, and the run with it */
	int secret_output;              /* its output holds a secret (sensitive, or as its
					   action said): the log has it masked */
	int secret_lost;                /* ... and it is kept from before a resume: its value
					   is not known now */
	/* for_each: {"K": {"sha256", "output"}} for the items done, kept across attempts */
	json_t *items_done;
	struct job *job;
};

/* An event held until the journal has what it reports (ex_outcome). */
struct held_event {
	json_t *ev;                     /* NULL when no one reads events (ex_events_read) */
	char *text;
	int outcome;                    /* it reports a record; else it only keeps its place */
	int status;                     /* the enum sstatus of a step's end, or -1 */
	size_t step;                    /* that step's index */
};

struct exec {
	struct rb_runbook *rb;
	const struct rb_exec_opts *o;
	struct rb_diags *d;
	struct rb_luabox *box;
	int scope;
	int steps_ref;                  /* the table behind the scope's read-only steps */
	int secrets_ref;                /* ... and secrets: those read so far */
	unsigned char *secret_read;     /* per rb->secrets: it is read (read once, when needed) */
	int run_ref;                    /* ... and behind run (run.status changes) */
	struct srun *s;
	struct rb_journal *journal;
	char run_id[RB_RUN_ID_MAX];
	char *run_dir;
	struct rb_redactor *redactor;   /* the secrets' values, to redact */
	struct rb_runctx *ctx;          /* the run as its actions see it (runctx.h) */
	size_t nsecrets;                /* how many it has (secrets and patterns) */
	size_t *ready, rhead, nready, readycap;   /* FIFO: ready[rhead..nready) */
	size_t *retrying, nretrying, retrycap;
	size_t *gates, ngates, gatecap; /* steps waiting at their gate, in arrival order */
	size_t running, completed;
	int failed, interrupted, stop_on_failure;
	int64_t deadline_ms;            /* the run's timeout, while it applies; 0: none */
	int64_t deadline_len_ms;        /* ... how long it was set for */
	int timed_out;
	/*
	 * The on_failure steps of an interrupted run are running, within their bound
	 * (deadline_ms): a new signal kills them at once and skips the rest.
	 */
	int after_interrupt;
	int window_closed;              /* its window closed: no more main steps start */
	int lock_fd;                    /* the runbook's lock, held for the run, or -1 */
	pthread_t *threads;
	int nthreads;
	pthread_mutex_t mu;             /* guards queue, done and quit */
	pthread_cond_t cv;
	struct unit *queue, *done;
	struct job **active;            /* jobs with calls still to hand out or running */
	size_t nactive, activecap;
	struct unit **polled;           /* the calls under way in the poll loop, oldest first */
	size_t npolled, polledcap;
	struct unit **ended;            /* polled calls that ended while Lua ran, to finish */
	size_t nended, endedcap;
	struct job *lua_job;            /* the job whose inline call runs now, or NULL */
	int in_phase;                   /* in ex_run_phase: signals are acted on */
	enum rb_step_kind seeded;       /* the kind of steps the phase runs (ex_seed) */
	int serving;                    /* in lua_poll */
	int seen;                       /* the signals acted on (o->signals) */
	int64_t ended_ms;               /* finish_ended: when the call being finished ended */
	struct pollfd *pfds;            /* the poll loop's fds */
	size_t pfdcap;
	int quit;
	int wake[2];                    /* a worker writes a byte when a job is done */
	pthread_mutex_t out_mu;         /* one event line at a time */
	pthread_t sched;                /* the scheduling thread */
	int64_t t0;
	int journal_failed;
	char *journal_error;            /* why, once it failed */
	int journal_said;               /* and the run was told */
	/*
	 * Outcomes whose records are not durable yet (ex_outcome), and every event after
	 * them, in order; under out_mu.  The console never reports what the journal does
	 * not have: they are shown once it has them, or as not recorded.
	 */
	struct held_event *held;
	char clock[16];                 /* the time of day of text lines, */
	time_t clock_sec;               /* formatted at that second */
	size_t nheld, heldcap;
	size_t unrecorded;              /* outcomes shown as not recorded */
	/*
	 * A batch of one command: its records are written, and its supervisor syncs them
	 * right before the exec (schedule()).  gate_fd is the journal's descriptor for that
	 * while the unit is being started, else -1; gated is the unit until its end.
	 */
	int gate_fd;
	const struct unit *gated;
	/*
	 * The records of steps without side effects need not be durable before the
	 * next such step (a crash loses only what resume computes again): they are
	 * appended as a group, signed and synced once, before anything else
	 * starts, before the engine waits, or when the group is RB_GROUP_MS old or
	 * RB_GROUP_RECORDS long (docs/state.md).  group_ms: when the first record
	 * not yet written was appended, or 0; group_must_sync: a record of anything
	 * else is among them.
	 */
	int64_t group_ms;
	int group_must_sync;
	struct rb_audit_key *key;       /* signs the run's log */
	struct rb_audit_log *shared;    /* --audit-log, or NULL */
	json_t *secret_hmacs;           /* {"NAME": {"hmac_sha256"}} for run_started */
	/*
	 * The vars as the run's first session fixed them (run_started, and every
	 * snapshot): their values, or for a var whose value the log cannot hold (it
	 * uses a secret, or redaction would change it) its HMAC, under the key
	 * vars_key names.
	 */
	json_t *vars, *vars_hmac;
	char *vars_key;
	char sha[65];                   /* of the runbook's bytes */
	const char *outcome;            /* the run's status once run_finished is journalled */
	size_t compact_at;              /* compact when the journal holds this many records */
};

/* Whether what step st kept (sr) holds a secret, which its records mask. */
static inline int ex_secret_kept(const struct rb_step *st, const struct srun *sr)
{
	return (st->sensitive || sr->secret_output) && (sr->output || sr->outputs);
}

/* exec_svc.c: for sched.c and exec.c */
char *ex_redact(const struct exec *ex, const char *s, size_t len, size_t *outlen);
void ex_add_sensitive(struct exec *ex, const json_t *v);
json_t *ex_redact_json(const struct exec *ex, json_t *v);
/*
 * One event: a line of text, or a JSON object with "event" set (ev is taken).  The
 * objects are read by --output json and the live view only: without them, ev may be
 * NULL, and a caller need not build it (ex_events_read).
 */
void ex_event(struct exec *ex, json_t *ev, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int ex_events_read(const struct exec *ex);
/*
 * An event that reports records just journalled (a step's end, an item's, a retry, a
 * gate's answer): shown once they are durable (ex_recorded), or, when the journal
 * fails first, as not recorded ("not_recorded", its text saying so).  Events after
 * it wait with it.
 */
void ex_outcome(struct exec *ex, json_t *ev, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/*
 * The same for the end of step i (status: its enum sstatus, or -1 for an outcome
 * that ends no step; msg, its text, taken): a step's end shown as not recorded is
 * then not counted as it ended (srun.unrecorded).
 */
void ex_step_outcome(struct exec *ex, size_t i, json_t *ev, int status, char *msg);
/* What was journalled is durable (a sync, or a gated command's supervisor's): show what waited. */
void ex_recorded(struct exec *ex);
/* The journal failed (or the run ends): show what waited, its outcomes as not recorded. */
void ex_unrecorded(struct exec *ex);
/* Write out the events printed so far (before waiting). */
void ex_flush(struct exec *ex);
/*
 * Journal a record (rec is taken; an audit record with a "type"), redacted,
 * and its user data (AUDIT_TEXT_KEYS) as JSON text; durable at the next
 * ex_journal_sync.
 */
void ex_journal(struct exec *ex, json_t *rec);
/* The event of a journal record: the record without its outputs, "type" made "event". */
json_t *ex_record_event(const json_t *rec);
/* The SHA-256 of an output as the journal records it (step st's, redacted, as JSON text). */
void ex_output_sha256(const struct exec *ex, const struct rb_step *st, const json_t *out,
		      char hex[65]);
/*
 * A record of an on_failure or undo step says so ("kind"), so that what reads
 * the run (runstate.h) counts only the main steps, as the run's last line does.
 */
void ex_record_kind(json_t *rec, const struct rb_step *st);
/* Step i's state as the journal had it before a resume, while this session has not touched it. */
json_t *ex_kept_state(const struct exec *ex, size_t i);
/* Make what was journalled durable; a failure stops the run (-1). */
int ex_journal_sync(struct exec *ex);
/*
 * A step whose records may wait in a group: its action has no side effects,
 * and it is not a check and has none.
 */
int ex_groupable_step(const struct rb_step *st);
/* The group of records not yet written is old or long enough to be synced now. */
int ex_group_due(const struct exec *ex);
/* Only write it: durable at the next ex_journal_sync, or by a command's supervisor. */
int ex_journal_write(struct exec *ex);
/* The log cannot be kept (why): nothing more is recorded or runs, and the run is told once. */
void ex_journal_failed(struct exec *ex, const char *why);
/*
 * Replace the journal's replay by a snapshot when enough records came since the
 * last one.  Called once the steps that could start have started: the snapshot's
 * milliseconds then pass while they run, not before they start.
 */
void ex_compact(struct exec *ex);
/* A snapshot now, however few records came since the last (the run's end). */
void ex_compact_now(struct exec *ex);
struct rb_render ex_renderer(struct exec *ex, struct rb_diags *d);
/*
 * steps[id] in the Lua scope, from the step's state; -1 at the Lua memory limit
 * (then ex_publish_failed: the step failed, "while recording step 'ID'" and what).
 */
int ex_publish(struct exec *ex, size_t i);
void ex_publish_failed(struct exec *ex, size_t i, const char *what);
/*
 * Read the secrets that step i reads in what (RB_READS_IN_IF, RB_READS_IN_STEP)
 * and that are not read yet.  -1 with *err (malloc'd) at the secret's
 * declaration when one cannot be read: the step fails, it never runs without.
 */
int ex_read_secrets(struct exec *ex, size_t i, unsigned what, char **err);
/* Read secret i now, for step (NULL: at the start), into secrets_ref; -1 with an error in ex->d. */
int ex_take_secret(struct exec *ex, size_t i, const char *step);
/* The __index of that table (upvalue 1: ex): a secret no expression names is read when reached. */
int ex_secrets_index(lua_State *L);

/* sched.c: for exec.c */
int ex_start_workers(struct exec *ex);
void ex_stop_workers(struct exec *ex);
/* Queue the steps of a kind that need nothing. */
void ex_seed(struct exec *ex, enum rb_step_kind kind);
/* Run the ready steps and everything they unlock, until nothing can run. */
void ex_run_phase(struct exec *ex);
/* Keep signals, timeouts and the polled calls going while Lua runs (sched.c: lua_poll). */
void ex_lua_serve(struct exec *ex);

#define RB_GROUP_MS             100
#define RB_GROUP_RECORDS        4096

static inline double ex_secs_since(int64_t t)
{
	return (double)(rb_now_ms() - t) / 1000.0;
}

#endif
