/*
 * What a run did, read back from its directory (snapshot and journal): the
 * state `runbook runs` and `runbook status` show.  Read-only.
 */
#ifndef RB_RUNSTATE_H
#define RB_RUNSTATE_H

#include <jansson.h>

struct rb_audit_keyring;

/*
 * {"run", "runbook", "file", "sha256", "params", "started_at", "vars",
 * "vars_hmac", "vars_key" (what the run fixed at its start: run.started_at,
 * its vars' values, the HMACs of those kept out of the log and the key they
 * are under; absent in runs older than these), "plan_sha256" (the reviewed
 * plan's, with run --plan), "status" (succeeded,
 * failed, interrupted, or unfinished when the journal has no end), "torn"
 * (true when a torn tail was found), "steps": [{"step", "status" (running or
 * retrying for a step in flight when the journal ends), "kind" (on_failure or
 * undo; absent for a main step), "attempts",
 * "duration_ms", "error", "output", "outputs", "items" (for_each items that
 * succeeded: {"K": {"sha256", "output"}})}] in the order they were first
 * journalled}.  Outputs are as journalled: secrets redacted.  NULL with *err.
 * With trust, the run's signatures are checked too (rb_journal_load_trusted):
 * one that does not verify is an error, one that cannot be checked with trust
 * is said in *unverified (free it).
 */
json_t *rb_run_state(const char *run_dir, const struct rb_audit_keyring *trust,
		     char **unverified, char **err);

/*
 * How a run's main steps ended, as its last line counts them ("run ID failed
 * in 1.2s: ...") and runbook runs and status show them: the same function for
 * the three.  on_failure and undo steps are not counted.
 */
struct rb_run_counts {
	size_t succeeded;               /* succeeded, or satisfied (in place already) */
	size_t failed, interrupted, skipped;
	size_t not_run;                 /* pending, or awaiting approval */
	size_t running;                 /* in flight where the journal ends (crashed, or going) */
};
/* Count a main step that has status st (a step status name, as journalled). */
void rb_run_count(struct rb_run_counts *c, const char *st);
/* The main steps of a state (rb_run_state: a step with a "kind" is not one), counted. */
void rb_run_state_counts(const json_t *state, struct rb_run_counts *c);
/*
 * "N succeeded, N failed[, N interrupted], N skipped, N not run[, N running]",
 * the parts in brackets only when not 0; malloc'd.
 */
char *rb_run_counts_text(const struct rb_run_counts *c);

/*
 * The keys of journal records that hold a user's value (an output, params,
 * an action's arguments): recorded as its JSON text, since the audit log's
 * canonical form has no room for every JSON number (docs/audit-format.md).
 */
#define RB_RECORD_TEXT_KEYS     {"output", "outputs", "params", "args", "calls", "vars"}
/* v as that text: compact, keys sorted; malloc'd. */
char *rb_record_text(const json_t *v);
/* The value of rec's text key, decoded (a new reference), or NULL when absent or not text. */
json_t *rb_record_value(const json_t *rec, const char *key);

#endif
