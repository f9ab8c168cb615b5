/*
 * The contract every action fills in.  validate, plan, the docs and (with the
 * engine) run all read the same table, so an action is described once.
 */
#ifndef RB_ACTION_H
#define RB_ACTION_H

#include <stddef.h>

/* The types of action arguments and params. */
enum rb_type {
	RB_T_STRING, RB_T_INTEGER, RB_T_NUMBER, RB_T_BOOLEAN, RB_T_DURATION,
	RB_T_LIST, RB_T_MAP,
	RB_T_ANY,               /* any value */
	RB_T_COMMAND,           /* a string (sh -c) or a list of strings (argv) */
	RB_T_STRING_MAP,        /* a map of strings to strings */
};

enum {
	RB_ARG_REQUIRED = 1 << 0,
};

struct rb_arg {
	const char *name;
	enum rb_type type;
	unsigned flags;
	const char *const *choices;     /* allowed string values, NULL-terminated */
	const char *summary;
};

enum {
	RB_ACT_SIDE_EFFECTS = 1 << 0,   /* changes something outside runbook */
	RB_ACT_IDEMPOTENT = 1 << 1,     /* safe to re-run after a crash */
};

struct rb_action {
	const char *name;               /* "shell" */
	const char *summary;            /* one line for docs and --help */
	const struct rb_arg *args;      /* terminated by a NULL name */
	unsigned flags;
};

/* The registry, sorted by name. */
extern const struct rb_action *const rb_actions[];
extern const size_t rb_nactions;

const struct rb_action *rb_action_find(const char *name);
const struct rb_arg *rb_action_arg(const struct rb_action *a, const char *name);

extern const struct rb_action act_assert, act_lua, act_shell, act_wait;

#endif
