/*
 * What a run did, read back from its directory (snapshot and journal): the
 * state `runbook runs` and `runbook status` show.  Read-only.
 */
#ifndef RB_RUNSTATE_H
#define RB_RUNSTATE_H

#include <jansson.h>

/*
 * {"run", "runbook", "file", "sha256", "params", "status" (succeeded,
 * failed, interrupted, or unfinished when the journal has no end), "torn"
 * (true when a torn tail was found), "steps": [{"step", "status" (running or
 * retrying for a step in flight when the journal ends), "attempts",
 * "duration_ms", "error", "output", "outputs", "items" (for_each items that
 * succeeded: {"K": {"sha256", "output"}})}] in the order they were first
 * journalled}.  Outputs are as journalled: secrets redacted.  NULL with *err.
 */
json_t *rb_run_state(const char *run_dir, char **err);

#endif
