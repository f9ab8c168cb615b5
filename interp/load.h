/*
 * Private to the loader (runbook.c, step.c): the state of one load and the
 * helpers both halves use.  Nothing outside the loader includes this.
 */
#ifndef RB_LOAD_H
#define RB_LOAD_H

#include "expr.h"
#include "luabox.h"
#include "runbook.h"

struct loader {
	struct rb_runbook *rb;
	struct rb_diags *d;
	struct rb_luabox *lua;  /* compiles expressions; runs nothing */
	struct rb_step **undo;  /* undo steps, appended after on_failure */
	size_t nundo, undocap;
	size_t stepcap;
};

/* What an expression in a given place may read. */
struct scope_rules {
	struct rb_step *step;   /* the step it belongs to, or NULL */
	size_t nvars;           /* vars visible (those defined before) */
	unsigned allowed;       /* bits (1 << RB_SC_...) */
	const char *where;      /* "in vars", "in for_each" ... for messages */
	size_t **deps;          /* where implicit step dependencies go */
	size_t *ndeps, *depcap;
	int *uses_secret;       /* set when the value reads a secret */
	unsigned secret_use;    /* a step's: the RB_READS_* its secrets get in step->secrets */
};

/* The index of key k in keys[0..nkeys), or -1 after reporting it as unknown. */
int rb_load_key(struct loader *l, const struct rb_node *k, const char *const *keys,
		size_t nkeys, const char *what);
/* Report every key of map that is not in the NULL-terminated keys. */
int rb_load_keys(struct loader *l, const struct rb_node *map, const char *const *keys,
		 const char *what);
int rb_load_string(struct loader *l, const struct rb_node *n, const char **out);
int rb_load_bool(struct loader *l, const struct rb_node *n, int *out);
int rb_load_duration(struct loader *l, const struct rb_node *n, int64_t *out);
int rb_load_ident(struct loader *l, const struct rb_node *n, const char *what);
int rb_load_retry(struct loader *l, const struct rb_node *n, struct rb_retry *r);
/* lint: {ignore: [ID...]}, checked: the ids are lint.h's; *out is n. */
int rb_load_lint(struct loader *l, const struct rb_node *n, const struct rb_node **out);

/* Parse and check every ${{ }} in the value n (recursively). */
int rb_load_value(struct loader *l, const struct rb_node *n, const struct scope_rules *sr);
/* n is one Lua expression with or without ${{ }} (if:). */
int rb_load_cond(struct loader *l, const struct rb_node *n, const struct scope_rules *sr);
/* n is a Lua chunk (lua:). */
int rb_load_chunk(struct loader *l, const struct rb_node *n, const struct scope_rules *sr);

struct rb_step *rb_load_register(struct rb_runbook *rb, struct rb_step *s);
/* load_schedule.c: schedule: and window:, then (after both) whether the
 * schedule ever starts inside the window (a warning). */
int rb_load_schedule(struct loader *l, const struct rb_node *v);
int rb_load_window(struct loader *l, const struct rb_node *n);
void rb_load_schedule_check(struct loader *l, const struct rb_node *schedule);

int rb_load_steps(struct loader *l, const struct rb_node *list, enum rb_step_kind kind);
int rb_load_step_refs(struct loader *l);

#endif
