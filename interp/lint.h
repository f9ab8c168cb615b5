/*
 * runbook lint: what a reviewer cares about beyond validity, found in a
 * valid runbook's model.  Each finding has an id (the names below, which the
 * loader checks in lint: {ignore: [...]}) and the position of the node that
 * causes it.  It reads; it never changes the runbook or runs anything.
 */
#ifndef RB_LINT_H
#define RB_LINT_H

#include <stddef.h>

struct rb_runbook;

enum rb_lint_id {
	RB_LINT_NO_UNDO,                /* a side effect without undo under rollback: true */
	RB_LINT_DESTRUCTIVE_SQL,        /* DELETE without WHERE, DROP, TRUNCATE, no gate */
	RB_LINT_REDIS_FLUSH,            /* FLUSHALL or FLUSHDB, no gate */
	RB_LINT_SECRET_ARGV,            /* a secret in a command's arguments */
	RB_LINT_NO_TIMEOUT,             /* a network step without a timeout */
	RB_LINT_UNUSED_PARAM,
	RB_LINT_UNUSED_VAR,
	RB_LINT_UNUSED_SECRET,
	RB_LINT_INSECURE,               /* insecure: true */
	RB_LINT_COUNT
};

/* The ids by enum rb_lint_id, NULL-terminated: "no-undo", "destructive-sql" ... */
extern const char *const rb_lint_ids[RB_LINT_COUNT + 1];

struct rb_lint {
	enum rb_lint_id id;
	int line, col;
	char *msg;              /* names things (a secret's name), never a secret's value */
};

/*
 * The findings of a valid runbook that its lint: ignore lists do not
 * silence, in order of position: *out (malloc'd, free with rb_lint_free)
 * and their count.
 */
size_t rb_lint_runbook(struct rb_runbook *rb, struct rb_lint **out);
void rb_lint_free(struct rb_lint *v, size_t n);

#endif
