/*
 * Rendering values: a YAML value with ${{ }} expressions becomes JSON, with
 * each expression evaluated in the sandbox when what it reads is known, and
 * a placeholder when not: <known after STEP>, *** for secrets, <each item>,
 * <known during the run> for run.status where it is not "running".
 * Plan renders with nothing known; the engine with finished steps known.
 */
#ifndef RB_RENDER_H
#define RB_RENDER_H

#include <jansson.h>

#include "diag.h"
#include "luabox.h"
#include "redact.h"
#include "runbook.h"

struct rb_render {
	struct rb_runbook *rb;
	struct rb_luabox *box;
	int scope;                      /* absolute stack index of the scope table */
	int secrets_known;              /* else values reading secrets are *** */
	int item_known;                 /* else values reading item are <each item> */
	int output_known;               /* else values reading output are <output> */
	int (*step_known)(void *ud, size_t index);      /* NULL: none known */
	/*
	 * run.status is "running" but in on_failure and undo steps, where it says how
	 * the run ended (failed, interrupted): for them, the plan's <known during the run>.
	 */
	int run_status_unknown;
	void *ud;
	long ms;                        /* deadline of one expression */
	struct rb_diags *d;
	/*
	 * For rb_render_command, in a run: the values that hold a secret go to
	 * secret_env as RUNBOOK_SECRET_N=value (kept out of every record), those
	 * that read a secret and those in which redactor finds one (a
	 * sensitive output, a value made from a secret).  NULL in a plan.
	 */
	struct rb_strv *secret_env;
	const struct rb_redactor *redactor;
};

#define RB_SECRET_MASK "***"

/*
 * A shell command (a run:, a shell action's command string) as
 * {"command": TEXT, "env": {NAME: VALUE}}: each ${{ }} value reaches the shell
 * as data, never as shell syntax.  The text gets a reference to an
 * environment variable that holds the value, quoted for where it stands
 * ("${RUNBOOK_PARAMS_X}" unquoted, ${...} inside double quotes, '"${...}"'
 * inside single quotes); a secret's variable is RUNBOOK_SECRET_N, in
 * secret_env, not in env.  A shell.raw() value is spliced as shell text.
 * The text and env are exactly what runs.  NULL with an error in r->d.
 */
json_t *rb_render_command(struct rb_render *r, const struct rb_node *n);

/*
 * A step's (or check's) call arguments: run: as a command, lua: as its code,
 * with: rendered, a shell action's command string as a command too (its
 * variables added to env).  In a shell action's command list, an argument
 * that holds a secret is an error: argv is readable by every user.
 */
json_t *rb_render_args(struct rb_render *r, const struct rb_step *s);

/*
 * At load, for a step or check: errors where a ${{ }} value cannot stand in
 * a command (after a backslash, in a here-document that does not expand) and where a command list reads a secret; -1 when there were.
 * With splices (runbook validate): only a warning at each shell.raw splice.
 */
int rb_render_check_args(struct rb_runbook *rb, const struct rb_step *s, struct rb_diags *d,
			 int splices);

/* NULL with an error in r->d when an expression fails. */
json_t *rb_render_node(struct rb_render *r, const struct rb_node *n);

/* The value of a literal node (expressions are kept as text). */
json_t *rb_node_to_json(const struct rb_node *n);

/*
 * What a step's approve gives, rendered as v: 1 a gate, with *prompt (a
 * string as it is, or for true "Run step 'ID'?"; malloc'd); 0 no gate (false
 * or nil); -1 a value that is no prompt, *what naming it ("a number", "an
 * empty string"), which must never silently become one (docs/language.md).
 */
int rb_approve_gate(const json_t *v, const char *id, char **prompt, const char **what);

/* Whether a template reads a secret, directly or through a var. */
int rb_tmpl_reads_secret(const struct rb_runbook *rb, const struct rb_tmpl *t);

#endif
