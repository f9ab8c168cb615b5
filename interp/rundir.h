/*
 * The run directory's names and places: the state directory, each run's
 * directory under runs/ and its id, the list of runs, and the run's copy of
 * its runbook.  Below the journal and the audit log (journal.h, audit.h),
 * which keep their files here; it knows nothing of what is in them but the
 * runbook's copy.  docs/state.md has the layout.
 */
#ifndef RB_RUNDIR_H
#define RB_RUNDIR_H

#include <stddef.h>
#include <time.h>

#include <jansson.h>

/* Names inside a run directory (docs/state.md). */
#define RB_RUN_JOURNAL          "audit.jsonl"   /* the signed audit log is the journal */
#define RB_RUN_SNAPSHOT         "snapshot.json"
#define RB_RUN_RUNBOOK          "runbook.yaml"
#define RB_RUN_RUNBOOK_SHA      "runbook.sha256"
#define RB_RUN_OUTPUT           "output"

#define RB_RUN_ID_MAX           32      /* "20261123-145012-7f3a" and its NUL fit */

/*
 * Errors: functions that take char **err return -1 and set *err to a message
 * (lower case, no final period; the caller frees it) when err is not NULL.
 */

/* The state directory: opt (--state-dir) if set, else $RUNBOOK_STATE_DIR, else ".runbook". */
const char *rb_state_dir(const char *opt);
/* STATE_DIR/runs/RUN_ID, malloc'd (NULL when out of memory). */
char *rb_run_dir(const char *state_dir, const char *run_id);

/*
 * A run id, YYYYMMDD-HHMMSS-xxxx: t in UTC and the low 16 bits of rand in hex,
 * so ids sort by start time.  The caller gives both, so tests are stable.
 * size should be RB_RUN_ID_MAX; a smaller buffer gets a truncated id.
 */
void rb_run_id(char *buf, size_t size, time_t t, unsigned rand);
/*
 * When a run started (run.started_at): the started_at of its state or
 * run_started record, st (NULL: none), else, for a run from before that was
 * recorded, the time in its id (the same clock); -1 when neither tells.
 */
time_t rb_run_started_at(const json_t *st, const char *id);

/* A run id becomes a directory name: 1 when it is one that cannot leave runs/. */
int rb_run_id_valid(const char *id);

/* Ids of the runs in state_dir, newest first; none when runs/ is missing. */
int rb_runs_list(const char *state_dir, char ***ids, size_t *n, char **err);
void rb_runs_free(char **ids, size_t n);

/* Keep the runbook's bytes in the run (runbook.yaml) and their SHA-256 (runbook.sha256). */
int rb_run_save_runbook(const char *run_dir, const void *buf, size_t len, char **err);
/* Read the run's copy of the runbook back, checking it against its SHA-256. */
int rb_run_load_runbook(const char *run_dir, char **buf, size_t *len, char **err);

#endif
