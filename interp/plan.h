/*
 * The dry-run plan: everything a run would do, with the values that can be
 * known before it starts resolved.  Each step becomes a JSON object (the
 * stable format of `plan --format json`) that a renderer writes as JSON,
 * text or markdown, one step at a time.  Never reads a secret and never runs
 * a step.
 */
#ifndef RB_PLAN_H
#define RB_PLAN_H

#include <jansson.h>
#include <stdio.h>

#include "diag.h"
#include "runbook.h"

struct rb_luabox;

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
int rb_plan_scope(struct rb_runbook *rb, json_t *params, struct rb_luabox *box,
		  struct rb_diags *d, json_t **vars_out);

/*
 * How a format is written.  begin gets the plan without its steps (the
 * documented JSON, "steps" and "on_failure.steps" left out); step gets each
 * step in order, with first_of_stage set for the first of each stage;
 * section comes before the on_failure steps, with their stages.
 */
struct rb_plan_renderer {
	void (*begin)(void *ctx, const json_t *header);
	void (*step)(void *ctx, const json_t *step, int first_of_stage);
	void (*section)(void *ctx, const json_t *stages);
	void (*end)(void *ctx);
};

/* Build the plan and hand it to out; -1 with errors in d (out may have
   received part of it). */
int rb_plan_write(struct rb_runbook *rb, json_t *params, const struct rb_plan_renderer *out,
		  void *ctx, struct rb_diags *d);
/*
 * The same with what a probe (--dry-run --probe) found: probed is
 * {"ID": {"status", "output", "outputs", "error"}} for the steps it ran; their
 * results are known to every expression, and each such step gets "probe".
 */
int rb_plan_write_probed(struct rb_runbook *rb, json_t *params, const json_t *probed,
			 const struct rb_plan_renderer *out, void *ctx, struct rb_diags *d);

/* The renderers; ctx is a struct rb_plan_out. */
struct rb_plan_out {
	FILE *f;
	int color;
	/* filled while writing */
	const json_t *header;
	const json_t *stages;           /* of the current section */
	size_t stage, steps, side, gates, undo, fail_steps;
	int in_failure;
};

extern const struct rb_plan_renderer rb_plan_text, rb_plan_markdown, rb_plan_json;

/*
 * Markdown that a value cannot leave (plan_render.c): s as a code span
 * delimited by more backticks than any run in it, and s as prose with every
 * character that formats escaped; both on one line, controls visible.
 */
void rb_md_code(FILE *f, const char *s);
void rb_md_text(FILE *f, const char *s);

#endif
