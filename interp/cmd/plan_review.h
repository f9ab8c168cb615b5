/*
 * Apply only what was reviewed: plan --save writes the JSON plan with a
 * SHA-256 over it, and run --plan recomputes the plan and refuses to start
 * when it differs (docs/cli.md, "plan --save").  Command layer only.
 */
#ifndef RB_PLAN_REVIEW_H
#define RB_PLAN_REVIEW_H

#include <jansson.h>

struct rb_runbook;
struct rb_diags;

/* The largest saved plan read back: a plan file is untrusted input. */
enum { RB_REVIEW_MAX = 16 * 1024 * 1024 };

/*
 * The JSON plan of rb with params pj, as `plan --format json` prints it
 * (redacted by the runbook's patterns), parsed; NULL with errors in d.
 */
json_t *rb_review_plan(struct rb_runbook *rb, json_t *pj, struct rb_diags *d);
/* Write plan with its "review": {"sha256"} to path, durably: 0, or -1 with *err (malloc'd). */
int rb_review_save(json_t *plan, const char *path, char **err);
/*
 * Compare the plan saved at path with plan: RB_EXIT_OK with the reviewed
 * hash in hash[65]; RB_EXIT_PLAN_DIFFERS with what differs in msgs ("run:
 * ..." lines, for rb_cli_error); or RB_EXIT_INVALID with why the file is no
 * saved plan in msgs (whole "PATH:LINE:COL: error: ..." lines).  Nothing is
 * printed: the command does.
 */
struct rb_strv;
int rb_review_check(const json_t *plan, const char *path, char hash[65], struct rb_strv *msgs);

#endif
