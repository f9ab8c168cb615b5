/*
 * The engine: runs a validated runbook's step graph for real.  It schedules
 * steps as their dependencies finish, runs actions on worker threads (inline
 * ones, with Lua, on its own thread), journals every transition durably
 * before moving on, and reports events.  It never prints diagnostics or
 * exits; the run command does.
 */
#ifndef RB_EXEC_H
#define RB_EXEC_H

#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "diag.h"
#include "live.h"
#include "redact.h"
#include "runbook.h"

enum rb_run_status {
	RB_RUN_SUCCEEDED,
	RB_RUN_FAILED,
	RB_RUN_INTERRUPTED,
	RB_RUN_PAUSED,                  /* waiting at an approval gate */
	RB_RUN_STOPPED,                 /* its maintenance window closed: resumable */
};

enum { RB_JOBS_DEFAULT = 4, RB_JOBS_MAX = 256 };

struct rb_exec_opts {
	json_t *params;                 /* resolved (rb_params_resolve), borrowed */
	int jobs;                       /* steps at once, 1..RB_JOBS_MAX */
	const char *state_dir;          /* NULL: $RUNBOOK_STATE_DIR or ./.runbook */
	const char *audit_key;          /* --audit-key: the signing key's file, or NULL */
	const char *audit_log;          /* --audit-log: a log shared by runs, or NULL */
	const char *keyring;            /* resume --keyring: keys trusted besides audit_key's */
	FILE *out;                      /* events */
	int json_events;                /* one JSON object a line instead of text */
	struct rb_live *live;           /* the live view on a terminal instead of text, or NULL */
	int lines;                      /* --output text: lines even on a terminal (the CLI's) */
	/*
	 * --dry-run --probe: run only what cannot change anything (steps without
	 * side effects, and checks), with no run directory, journal or lock, and
	 * fill probed with {"ID": {"status", "output", "outputs", "error"}} for
	 * the steps that ran (redacted); the rest is left for the plan.
	 */
	int probe;
	json_t *probed;
	/*
	 * --probe: receives the run's redactor (its secrets, sensitive outputs
	 * and patterns) for the plan that shows what the probe found, which may
	 * quote a secret that reached a step another way (env.X, a param); the
	 * caller frees it.
	 */
	struct rb_redactor **redactor_out;
	/*
	 * replay --simulate: nothing runs.  Each call of an action gets the
	 * result the run recorded for it (inline actions, pure Lua, do run):
	 * recorded() returns 1 with *output (a new reference) when the call
	 * succeeded then, 0 with *error (malloc'd, or NULL) when it failed, -1
	 * when the run has no result for it (then it succeeds with no output,
	 * so that the simulation goes on).  Secrets read as ***.  simulated
	 * gets {"ID": {"status", "attempts", "error", "calls": [the rendered
	 * arguments of each call, by attempt]}} for the main steps; there is no
	 * run directory, journal or lock.
	 */
	int (*recorded)(void *ud, const char *step, int attempt, size_t index, int check,
			json_t **output, char **error);
	void *recorded_ud;
	json_t *simulated;
	int color;
	volatile sig_atomic_t *signals; /* count of SIGINT/SIGTERM received */
	volatile sig_atomic_t *signo;   /* the last one */
	time_t now;                     /* run.started_at, and the run id's time */
	unsigned rand;
	int64_t lock_timeout_ms;        /* how long to wait for the runbook's lock */
	/*
	 * Resume: the run's id (replay --simulate gives it too, for run.id) and
	 * the state each step keeps from before, as {"ID": {"status",
	 * "attempts", "output", "outputs"}} for the steps that are not run
	 * again (succeeded or skipped ones); NULL for a new run.
	 */
	const char *resume_id;
	/*
	 * Resume: what the run's first session fixed at its start, from its state
	 * (runstate.h): "vars" (the values it kept) and "vars_hmac" (the HMACs of
	 * those it kept out of the log, under the key "key_id" names); now is its
	 * "started_at".  The run's vars are those values; a var kept out is
	 * computed again and must give the same HMAC.  NULL: computed.
	 */
	const json_t *start;
	/*
	 * Resume: the run's hold (rb_journal_hold), taken before the state that
	 * kept and items come from was read; the engine opens the journal under
	 * it and sets *hold to -1 (the journal closes it).  NULL: none yet.
	 */
	int *hold;
	json_t *kept;
	/* The for_each items that steps run again finished before: {"ID": {"K": {"sha256", "output"}}} */
	json_t *items;
	json_t *resume_note;            /* added to the run_resumed record */
	json_t *before;                 /* every step's state before the resume, by id */
	/*
	 * Approval gates: the steps given with --approve (the word "all" passes
	 * every gate), who approves (for the journal), and how to ask when a
	 * gate is not passed in advance: ask returns 1 for approved, 0 for
	 * rejected and -1 for no answer (none can be given, the time ran out,
	 * a signal came).  Without ask, the run pauses at the gate.
	 */
	const char **approve;
	size_t napprove;
	const char *user;
	int (*ask)(void *ud, const char *step, const char *prompt, int64_t timeout_ms);
	void *ask_ud;
	/* run --plan: the reviewed plan's SHA-256 (hex), for run_started and gate_approved */
	const char *plan_sha256;
	/*
	 * The maintenance window (docs/schedule.md): when it closes, on the
	 * monotonic clock (rb_now_ms; 0: no close to keep), and that instant in
	 * seconds since the epoch, for the records.  At the close the run starts
	 * no more main steps, lets the running ones end, and stops (RB_RUN_STOPPED).
	 */
	int64_t window_close_ms;
	time_t window_close;
	/*
	 * --ignore-window: the record that says who overrode the window, and
	 * when ("by", "sudo_user", "inside", ...), journalled as window_ignored
	 * right after run_started or run_resumed; NULL when not given.
	 */
	const json_t *window_ignored;
	/* Set to 1 when the run did not start because its lock is held (a --slot run's status 5). */
	int *lock_held;
	/* The CLI's: --ignore-window was given; the window was checked already (rb_cli_window). */
	int ignore_window, window_checked;
	char *run_id_out;               /* the CLI's: receives the run's id, or NULL */
};

/*
 * Run rb.  Returns 0 with the outcome in *status and the run's id in run_id
 * (RB_RUN_ID_MAX bytes); or, with errors in d, -1 when the input keeps the
 * run from starting (a secret that cannot be read, a var that fails, a gate)
 * and -2 for anything else (the lock is held, the state directory).
 */
int rb_exec_run(struct rb_runbook *rb, const struct rb_exec_opts *o, struct rb_diags *d,
		enum rb_run_status *status, char *run_id);

#endif
