/*
 * The step graph: stages (longest-path layers) of the main and the
 * on_failure steps, and dependency cycles, reported with the steps in them.
 */
#ifndef RB_GRAPH_H
#define RB_GRAPH_H

#include "diag.h"
#include "runbook.h"

/* Fill each step's stage and rb->nstages; -1 with errors in d on a cycle. */
int rb_graph_build(struct rb_runbook *rb, struct rb_diags *d);

/*
 * Steps of one kind in execution order: by stage, then by position in the
 * file.  Returns a malloc'd array of *n steps.
 */
struct rb_step **rb_graph_order(const struct rb_runbook *rb, enum rb_step_kind kind,
				size_t *n);

#endif
