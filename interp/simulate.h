/*
 * replay --simulate (interp/simulate.c): run the runbook in file, as it is
 * now, with every action's result taken from a run's records instead of
 * running it, and report where it would take another path than the run did.
 */
#ifndef RB_SIMULATE_H
#define RB_SIMULATE_H

#include <stdio.h>

#include <jansson.h>

#include "diag.h"
#include "runbook.h"

/*
 * rb: the runbook as it is now (loaded and valid); records: the run's audit
 * records in order (verified by the caller).  Prints the differences to out
 * as format ("text", "markdown" or "json").  Returns 0 when the path is the
 * same, 1 when it differs, and -1 with errors in d when the recorded params
 * do not fit the runbook or the simulation cannot start.
 */
int rb_replay_simulate(struct rb_runbook *rb, const json_t *records, struct rb_diags *d,
		       const char *format, FILE *out);

/* The report: {"kind", "step", "text"} differences. */
void rb_simulate_print(FILE *out, const char *format, const char *run_id, const char *file,
		       size_t nsteps, const json_t *diffs);

#endif
