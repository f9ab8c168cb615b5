/*
 * The dry-run plan: everything a run would do, with the values that can be
 * known before it starts resolved, built as one JSON document (the stable
 * format of `plan --format json`) that the text and markdown renderers read.
 * Never reads a secret and never runs a step.
 */
#ifndef RB_PLAN_H
#define RB_PLAN_H

#include <jansson.h>
#include <stdio.h>

#include "diag.h"
#include "runbook.h"

enum { RB_PLAN_FORMAT_VERSION = 1 };

/*
 * Resolve params given as "name=value" strings against the runbook.  Returns
 * a new JSON object, or NULL with errors in d.
 */
json_t *rb_params_resolve(const struct rb_runbook *rb, char **given, size_t ngiven,
			  struct rb_diags *d);

/*
 * Push the dry-run scope on box's stack: params, run (id "plan", dry_run
 * true) and the vars evaluated in order (rb may be NULL: no vars).  Returns
 * its stack index and the vars as JSON in *vars_out, or 0 with errors in d.
 */
struct rb_luabox;
int rb_plan_scope(struct rb_runbook *rb, json_t *params, struct rb_luabox *box,
		  struct rb_diags *d, json_t **vars_out);

/* Build the plan; NULL with errors in d (a failing expression, say). */
json_t *rb_plan_build(struct rb_runbook *rb, json_t *params, struct rb_diags *d);

void rb_plan_text(const json_t *plan, FILE *f, int color);
void rb_plan_markdown(const json_t *plan, FILE *f);

#endif
