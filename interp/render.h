/*
 * Rendering values: a YAML value with ${{ }} expressions becomes JSON, with
 * each expression evaluated in the sandbox when what it reads is known, and
 * a placeholder when not: <known after STEP>, *** for secrets, <each item>.
 * Plan renders with nothing known; the engine with finished steps known.
 */
#ifndef RB_RENDER_H
#define RB_RENDER_H

#include <jansson.h>

#include "diag.h"
#include "luabox.h"
#include "runbook.h"

struct rb_render {
	struct rb_runbook *rb;
	struct rb_luabox *box;
	int scope;                      /* absolute stack index of the scope table */
	int secrets_known;              /* else values reading secrets are *** */
	int item_known;                 /* else values reading item are <each item> */
	int output_known;               /* else values reading output are <output> */
	int (*step_known)(void *ud, size_t index);      /* NULL: none known */
	void *ud;
	long ms;                        /* deadline of one expression */
	struct rb_diags *d;
	/*
	 * For run: commands: an expression that reads a secret is not
	 * interpolated.  Its value goes to secret_env as RUNBOOK_SECRET_N=value
	 * and the text gets "${RUNBOOK_SECRET_N}", which the shell expands, so
	 * that a secret never reaches a command line.  NULL: interpolate.
	 */
	struct rb_strv *secret_env;
};

#define RB_SECRET_MASK "***"

/* NULL with an error in r->d when an expression fails. */
json_t *rb_render_node(struct rb_render *r, const struct rb_node *n);

/* The value of a literal node (expressions are kept as text). */
json_t *rb_node_to_json(const struct rb_node *n);

/* Whether a template reads a secret, directly or through a var. */
int rb_tmpl_reads_secret(const struct rb_runbook *rb, const struct rb_tmpl *t);

#endif
