/*
 * The validated model of a runbook: what the loader builds from the node tree
 * and what plan, graph and the engine read.  Nodes stay owned by the
 * document; the model points into it.
 */
#ifndef RB_RUNBOOK_H
#define RB_RUNBOOK_H

#include <stddef.h>
#include <stdint.h>

#include "action.h"
#include "diag.h"
#include "types.h"
#include "yaml_doc.h"

enum { RB_MAX_STEPS = 50000, RB_MAX_NAME = 64 };

struct rb_param {
	const char *name;
	const struct rb_node *key;      /* where it is declared */
	enum rb_type type;
	const char *description;
	const struct rb_node *def;      /* default, or NULL */
	int required;
	const struct rb_node *choices;  /* enum: a list, or NULL */
	const struct rb_node *min, *max;
	const char *env;                /* a variable that gives it when -p does not */
};

struct rb_secret {
	const char *name;
	const struct rb_node *key;
	const char *env, *file, *description;
	int at_start;                   /* a var reads it: read as the run starts */
};

struct rb_var {
	const char *name;
	const struct rb_node *key, *value;
	int secret;                     /* its value depends on a secret */
};

struct rb_retry {
	long attempts;                  /* 1: no retry */
	int64_t delay_ms, max_delay_ms;
	int exponential;
};

/* A check is not in rb_runbook.steps: it hangs off its step (rb_step.check). */
enum rb_step_kind { RB_MAIN, RB_ON_FAILURE, RB_UNDO, RB_CHECK };

struct rb_step {
	const char *id;
	const struct rb_node *node;     /* the step's mapping */
	enum rb_step_kind kind;
	size_t index;                   /* in rb_runbook.steps */
	const char *name, *description;
	const struct rb_action *action;
	const struct rb_node *with;     /* action arguments (a mapping), or NULL */
	const struct rb_node *run;      /* run: shorthand, or NULL */
	const struct rb_node *env;      /* run:'s env: a mapping, or NULL */
	const char *shell;              /* run:'s shell: "bash" (the default) or "sh" */
	const struct rb_node *lua;      /* lua: shorthand, or NULL */
	const struct rb_node *cond;     /* if, or NULL */
	const struct rb_node *for_each;
	long concurrency;               /* for_each items at once (1 unless set) */
	const struct rb_node *approve;  /* prompt, or NULL */
	int64_t approve_timeout_ms;     /* -1: none */
	const struct rb_node *outputs;
	struct rb_retry retry;
	int64_t timeout_ms;             /* -1: none */
	int continue_on_error;
	int idempotent;                 /* the action's default unless set */
	int side_effects;               /* the action's (or true for run:) unless set */
	const char **secret_args;       /* with: the names of the arguments that read a secret,
					   NULL-terminated, or NULL */
	const char *does;               /* what the call will do, as its action says (the plan's
					   "GET https://..."; rb_action.effect), or NULL */
	int sensitive;
	int quiet;                      /* its standard output is not shown as it comes */
	const struct rb_node *lint;     /* lint: {ignore: [ID...]} (lint.h), or NULL */
	struct rb_step *undo, *parent;  /* parent: for an undo step or a check */
	struct rb_step *check;          /* a read-only probe: is the effect in place? */
	const struct rb_node *needs_node;
	size_t *needs;                  /* explicit, as indices */
	size_t nneeds;
	size_t *deps;                   /* explicit and implicit, sorted, unique */
	size_t ndeps;
	size_t *reads;                  /* the implicit ones: the steps its expressions read */
	size_t nreads;
	int stage;                      /* 0-based stage among its kind */
	/*
	 * Per rb_runbook.secrets, where its expressions read that secret (RB_READS_*),
	 * or NULL when they read none: a run reads a secret only when a step needs it.
	 */
	unsigned char *secrets;
};

enum { RB_READS_IN_IF = 1, RB_READS_IN_STEP = 2 };     /* its if; the rest of the step */

/* redact: patterns: NAME: ERE, checked by the loader. */
struct rb_redact_pattern {
	const char *name, *ere;
	const struct rb_node *key;
};

struct rb_window {
	int start, end;                 /* minutes since midnight */
	unsigned days;                  /* bit 0 Monday .. bit 6 Sunday */
	/* days: [sun#1]: the window opens on day i (0 Monday) only when it is that
	 * weekday's n-th (bit n-1) or last (RB_NTH_LAST) in its month */
	unsigned char nth[7];
	const char *timezone;
};

struct rb_runbook {
	char *file;                     /* as given on the command line */
	char *src;                      /* the file's bytes */
	size_t srclen;
	struct rb_doc doc;
	size_t *lines;                  /* byte offset of each line, built on demand */
	size_t nlines;

	const char *name, *description;
	long version;
	const struct rb_node *tags;
	struct rb_param *params;
	size_t nparams;
	struct rb_secret *secrets;
	size_t nsecrets;
	struct rb_var *vars;
	size_t nvars;
	int64_t default_timeout_ms;     /* -1: none */
	struct rb_retry default_retry;
	const char *lock;
	const char *schedule;           /* the cron line */
	const char *schedule_tz;        /* its zone: UTC unless schedule: {timezone: } */
	struct rb_cron cron;
	int has_window;
	struct rb_window window;
	int64_t timeout_ms;
	int rollback;
	int redact_pii;                 /* redact: pii: the default e-mail and phone patterns (1) */
	struct rb_redact_pattern *redact_patterns;
	size_t nredact_patterns;
	const struct rb_node *lint;     /* lint: {ignore: [ID...]} (lint.h), or NULL */

	struct rb_step **steps;         /* main, then on_failure, then undo */
	size_t nsteps, nmain, non_failure;
	int nstages;                    /* stages of the main steps */
	int nfail_stages;
	struct rb_step **byid;          /* open-addressing table of steps by id */
	size_t byid_cap;
	struct rb_luabox *box;          /* the loader's Lua state: rb_runbook_take_box */
};

/* Read and validate a file; errors go to d.  Returns NULL on failure to read
   (with an error in d too) and a runbook otherwise: valid when d has none. */
struct rb_runbook *rb_runbook_load(const char *file, const char *buf, size_t len,
				   struct rb_diags *d);
void rb_runbook_free(struct rb_runbook *rb);

struct rb_luabox;
/*
 * The Lua state the loader checked the runbook's code in, its chunks compiled
 * and cached by text, for the caller to run them in and free; a new state if
 * it was taken already (or NULL when none can be made).
 */
struct rb_luabox *rb_runbook_take_box(struct rb_runbook *rb);

struct rb_redactor;
/*
 * Adds the runbook's redact: patterns (and the default e-mail and phone ones
 * unless pii: false) to r; returns how many were added.
 */
size_t rb_runbook_add_patterns(const struct rb_runbook *rb, struct rb_redactor *r);

struct rb_step *rb_runbook_step(const struct rb_runbook *rb, const char *id);
/* 1 when a step or a check of rb calls an action that starts processes (RB_ACT_PROCESSES). */
int rb_runbook_starts_processes(const struct rb_runbook *rb);
const struct rb_param *rb_runbook_param(const struct rb_runbook *rb, const char *name);

/* Source position of byte offset off inside scalar n's text. */
void rb_runbook_pos(struct rb_runbook *rb, const struct rb_node *n, size_t off, int *line,
		    int *col);

#endif
