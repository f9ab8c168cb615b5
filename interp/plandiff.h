/*
 * Comparing two plans: what `runbook plan --diff OLD NEW` and `--base REV
 * FILE` show a reviewer.  Both sides are the JSON plan (plan.h, the stable
 * format of `plan --format json`), compared as trees, never as text: steps
 * are matched by id, then a removed and an added step with the same action
 * and arguments are one step renamed, and the steps that both plans hold
 * but in another order are found as those outside the longest run kept in
 * order.  The result is itself a JSON document (format "runbook-plan-diff",
 * documented in docs/cli.md) that plandiff_render.c writes as text or
 * markdown.  A plan holds no secret value, so neither does a diff; the
 * command layer still redacts what it prints, as for a plan.
 */
#ifndef RB_PLANDIFF_H
#define RB_PLANDIFF_H

#include <jansson.h>
#include <stdio.h>

#include "diag.h"
#include "runbook.h"

enum { RB_PLANDIFF_FORMAT_VERSION = 1 };

/*
 * The whole plan of rb with params as one JSON document (what `plan
 * --format json` prints), or NULL with errors in d.
 */
json_t *rb_plan_build(struct rb_runbook *rb, json_t *params, struct rb_diags *d);

/*
 * The diff of two plans; old or new may be NULL: a runbook that is not there
 * (a file added or removed in git), every step added or removed.  Borrowed
 * arguments; a new document, never NULL.  Its "changed" is false when the
 * plans do the same thing (their files may still differ: comments, layout).
 */
json_t *rb_plandiff(const json_t *old, const json_t *new);

/* The renderers (plandiff_render.c); color: ANSI colour in text. */
void rb_plandiff_text(const json_t *diff, FILE *f, int color);
void rb_plandiff_markdown(const json_t *diff, FILE *f);

/*
 * Destructive SQL (and Redis) statements in s, one per statement: DELETE
 * FROM, DROP ..., TRUNCATE, FLUSHALL, FLUSHDB, as {"kind": "deletes" |
 * "drops" | "truncates" | "flushes", "statement": the statement's first 80
 * characters on one line, "no_where": true for a DELETE without WHERE}
 * appended to out.  A word inside a longer word does not count.
 */
void rb_plandiff_sql(const char *s, json_t *out);

#endif
