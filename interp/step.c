/*
 * The loader, bottom half: steps and their keys, then every expression in
 * them, checked against what is in scope where it stands.  References to
 * steps.X become the implicit dependencies that graph.c orders.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"
#include "render.h"
#include "util.h"

/* Step keys; an undo step takes the first UNDO_KEYS of them. */
enum {
	K_ID, K_NAME, K_DESCRIPTION, K_ACTION, K_WITH, K_RUN, K_LUA, K_IF, K_RETRY, K_TIMEOUT,
	K_ENV, K_SHELL,
	UNDO_KEYS,
	K_NEEDS = UNDO_KEYS, K_FOR_EACH, K_CONTINUE_ON_ERROR, K_UNDO, K_APPROVE, K_IDEMPOTENT,
	K_OUTPUTS, K_SENSITIVE, K_CHECK, K_SIDE_EFFECTS, K_CONCURRENCY, K_QUIET, K_LINT, K_COUNT
};
static const char *const step_keys[K_COUNT + 1] = {
	"id", "name", "description", "action", "with", "run", "lua", "if", "retry", "timeout",
	"env", "shell", "needs", "for_each", "continue_on_error", "undo", "approve", "idempotent", "outputs",
	"sensitive", "check", "side_effects", "concurrency", "quiet", "lint", NULL,
};
/* The keys of a check, and where they go among a step's. */
static const char *const check_keys[] = {"action", "with", "run", "lua", "timeout", "env", "shell",
					 NULL};
static const int check_key_index[] = {K_ACTION, K_WITH, K_RUN, K_LUA, K_TIMEOUT, K_ENV, K_SHELL};
static const char *const shells[] = {"bash", "sh", NULL};
static const char *const approve_keys[] = {"prompt", "timeout", NULL};
static const char *const step_fields[] = {"output", "outputs", "status", "attempts", "error", NULL};
static const char *const run_fields[] = {"id", "dry_run", "started_at", "status", NULL};

static const char *const kind_names[] = {"step", "on_failure step", "undo step", "check of step"};

/* --- loading one step ----------------------------------------------------------- */

static struct rb_step *load_step(struct loader *l, const struct rb_node *n,
				 enum rb_step_kind kind, struct rb_step *parent);

/* env: and shell: of a run: command (an action takes its own in with:). */
static void load_run_options(struct loader *l, struct rb_step *s, const struct rb_node *run,
			     const struct rb_node *env, const struct rb_node *shell)
{
	const struct rb_node *k = env ? env : shell;
	if (k && !run) {
		rb_error_at(l->d, k, "'%s' goes only with 'run' (an action takes its own in 'with')",
			    k == env ? "env" : "shell");
		return;
	}
	if (env && env->type != RB_MAP)
		rb_error_at(l->d, env, "env must be a mapping of variable names to values, not %s",
			    rb_node_kind_name(env));
	else if (env)
		for (size_t i = 0; i < env->n; i++) {
			const struct rb_node *name = env->items[2 * i], *v = env->items[2 * i + 1];
			const char *p = name->type == RB_SCALAR ? name->str : "";
			int ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_';
			for (; ok && *p; p++)
				ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_' ||
				     (*p >= '0' && *p <= '9');
			if (!ok)
				rb_error_at(l->d, name, "env: '%s' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
					    name->type == RB_SCALAR ? name->str : "");
			else if (v->type != RB_SCALAR)
				rb_error_at(l->d, v, "env: the value of '%s' must be a string, not %s",
					    name->str, rb_node_kind_name(v));
		}
	s->env = env && env->type == RB_MAP ? env : NULL;
	s->shell = "bash";
	if (shell) {
		size_t i;
		for (i = 0; shells[i] && (shell->type != RB_SCALAR || strcmp(shell->str, shells[i])); i++)
			;
		if (!shells[i])
			rb_error_at(l->d, shell, "shell must be bash or sh");
		else
			s->shell = shells[i];
	}
}

static void add_step(struct loader *l, struct rb_step *s)
{
	struct rb_runbook *rb = l->rb;
	if (s->kind == RB_UNDO) {
		rb_grow(&l->undo, &l->undocap, l->nundo + 1, sizeof(*l->undo));
		l->undo[l->nundo++] = s;
		return;
	}
	rb_grow(&rb->steps, &l->stepcap, rb->nsteps + 1, sizeof(*rb->steps));
	s->index = rb->nsteps;
	rb->steps[rb->nsteps++] = s;
}

static void load_action(struct loader *l, struct rb_step *s, const struct rb_node *v)
{
	if (v->type != RB_SCALAR || rb_scalar_kind(v) != RB_K_STRING) {
		rb_error_at(l->d, v, "action must be an action name, not %s",
			    rb_node_kind_name(v));
		return;
	}
	s->action = rb_action_find(v->str);
	if (s->action)
		return;
	const char *names[64];
	size_t n = rb_nactions < 64 ? rb_nactions : 64;
	for (size_t i = 0; i < n; i++)
		names[i] = rb_actions[i]->name;
	const char *sug = rb_suggest(v->str, names, n);
	if (sug)
		rb_error_at(l->d, v, "unknown action '%s' (did you mean '%s'?)", v->str, sug);
	else
		rb_error_at(l->d, v, "unknown action '%s' (see 'runbook actions' or "
			    "docs/actions.md)", v->str);
}

/*
 * approve: a prompt (a string, with expressions or not), true (a gate with the
 * default prompt), false (no gate), or {prompt, timeout}.  An expression may
 * give a string, true, false or nil (no gate), which is known at run time;
 * anything else is an error, never a prompt.
 */
static void load_approve(struct loader *l, struct rb_step *s, const struct rb_node *v)
{
	if (v->type == RB_SCALAR && (rb_scalar_kind(v) == RB_K_STRING ||
				     rb_scalar_kind(v) == RB_K_BOOL)) {
		if (rb_scalar_kind(v) == RB_K_STRING && v->len == 0)
			rb_error_at(l->d, v, "approve has an empty prompt (give a question, true "
				    "for the default one, or false for no gate)");
		else
			s->approve = v;
		return;
	}
	if (v->type != RB_MAP) {
		rb_error_at(l->d, v, "approve must be a prompt, true, false or a mapping with "
			    "'prompt' and 'timeout', not %s", rb_node_kind_name(v));
		return;
	}
	rb_load_keys(l, v, approve_keys, "approve");
	const struct rb_node *p = rb_map_get(v, "prompt"), *t = rb_map_get(v, "timeout");
	if (!p)
		rb_error_at(l->d, v, "approve has no 'prompt'");
	else if (p->type != RB_SCALAR || rb_scalar_kind(p) != RB_K_STRING)
		rb_error_at(l->d, p, "approve's prompt must be a string, not %s",
			    rb_node_kind_name(p));
	else if (!p->len)
		rb_error_at(l->d, p, "approve has an empty prompt");
	else
		s->approve = p;
	if (t)
		rb_load_duration(l, t, &s->approve_timeout_ms);
}

static void load_outputs(struct loader *l, struct rb_step *s, const struct rb_node *v)
{
	if (v->type != RB_MAP) {
		rb_error_at(l->d, v, "outputs must be a mapping of names to values, not %s",
			    rb_node_kind_name(v));
		return;
	}
	for (size_t i = 0; i < v->n; i++)
		if (v->items[2 * i]->type == RB_SCALAR)
			rb_load_ident(l, v->items[2 * i], "output name");
	s->outputs = v;
}

static void load_keys(struct loader *l, struct rb_step *s, const struct rb_node *const *v);

enum { MAX_CONCURRENCY = 256 };

static void load_concurrency(struct loader *l, struct rb_step *s, const struct rb_node *v,
			     const struct rb_node *for_each)
{
	if (v->type != RB_SCALAR || rb_scalar_kind(v) != RB_K_INT ||
	    strtol(v->str, NULL, 0) < 1 || strtol(v->str, NULL, 0) > MAX_CONCURRENCY)
		rb_error_at(l->d, v, "concurrency must be an integer from 1 to %d",
			    MAX_CONCURRENCY);
	else if (!for_each)
		rb_error_at(l->d, v, "concurrency goes only with for_each (how many items run "
			    "at once)");
	else
		s->concurrency = strtol(v->str, NULL, 0);
}

/*
 * check: a probe that says whether the step's effect is already in place.
 * It is a step of its own kind, with its parent's id, so that it renders and
 * runs as steps do; it must not change anything: run:, lua:, or an action
 * without side effects.
 */
static struct rb_step *load_check(struct loader *l, const struct rb_node *n,
				  struct rb_step *parent)
{
	if (n->type != RB_MAP) {
		rb_error_at(l->d, n, "check must be a mapping with 'run', 'lua' or 'action', not %s",
			    rb_node_kind_name(n));
		return NULL;
	}
	const struct rb_node *v[K_COUNT] = {NULL};
	for (size_t i = 0; i < n->n; i++) {
		int k = rb_load_key(l, n->items[2 * i], check_keys, 7, "check");
		if (k >= 0)
			v[check_key_index[k]] = n->items[2 * i + 1];
	}
	struct rb_step *c = rb_arena_alloc(&l->rb->doc.arena, sizeof(*c));
	c->node = n;
	c->kind = RB_CHECK;
	c->parent = parent;
	c->id = parent->id;
	c->retry.attempts = 1;
	c->timeout_ms = l->rb->default_timeout_ms;
	c->approve_timeout_ms = -1;
	c->side_effects = -1;
	c->idempotent = -1;
	load_keys(l, c, v);
	return c;
}

/* Load the keys found in v[] (indexed by K_...) into s. */
static void load_keys(struct loader *l, struct rb_step *s, const struct rb_node *const *v)
{
	const char *str;
	if (v[K_NAME])
		rb_load_string(l, v[K_NAME], &s->name);
	if (v[K_DESCRIPTION])
		rb_load_string(l, v[K_DESCRIPTION], &s->description);
	if (v[K_ACTION])
		load_action(l, s, v[K_ACTION]);
	if (v[K_WITH] && v[K_WITH]->type != RB_MAP)
		rb_error_at(l->d, v[K_WITH], "with must be a mapping of argument names to values, "
			    "not %s", rb_node_kind_name(v[K_WITH]));
	else
		s->with = v[K_WITH];
	if (v[K_RUN] && rb_load_string(l, v[K_RUN], &str) == 0)
		s->run = v[K_RUN];
	if (v[K_LUA] && rb_load_string(l, v[K_LUA], &str) == 0)
		s->lua = v[K_LUA];
	s->needs_node = v[K_NEEDS];
	s->cond = v[K_IF];
	s->for_each = v[K_FOR_EACH];
	if (v[K_RETRY])
		rb_load_retry(l, v[K_RETRY], &s->retry);
	if (v[K_TIMEOUT])
		rb_load_duration(l, v[K_TIMEOUT], &s->timeout_ms);
	if (v[K_CONTINUE_ON_ERROR])
		rb_load_bool(l, v[K_CONTINUE_ON_ERROR], &s->continue_on_error);
	if (v[K_IDEMPOTENT])
		rb_load_bool(l, v[K_IDEMPOTENT], &s->idempotent);
	if (v[K_SENSITIVE])
		rb_load_bool(l, v[K_SENSITIVE], &s->sensitive);
	if (v[K_QUIET])
		rb_load_bool(l, v[K_QUIET], &s->quiet);
	if (v[K_LINT])
		rb_load_lint(l, v[K_LINT], &s->lint);
	if (v[K_APPROVE])
		load_approve(l, s, v[K_APPROVE]);
	if (v[K_OUTPUTS])
		load_outputs(l, s, v[K_OUTPUTS]);
	if (v[K_UNDO])
		s->undo = load_step(l, v[K_UNDO], RB_UNDO, s);
	if (v[K_CHECK])
		s->check = load_check(l, v[K_CHECK], s);
	if (v[K_SIDE_EFFECTS])
		rb_load_bool(l, v[K_SIDE_EFFECTS], &s->side_effects);
	s->concurrency = 1;
	if (v[K_CONCURRENCY])
		load_concurrency(l, s, v[K_CONCURRENCY], v[K_FOR_EACH]);

	int count = !!v[K_ACTION] + !!v[K_RUN] + !!v[K_LUA];
	if (count == 0)
		rb_error_at(l->d, s->node, "%s '%s' needs one of 'action', 'run' or 'lua'",
			    kind_names[s->kind], s->id);
	else if (count > 1)
		rb_error_at(l->d, v[K_LUA] ? v[K_LUA] : v[K_RUN], "%s '%s' has more than one of "
			    "'action', 'run' and 'lua': give one", kind_names[s->kind], s->id);
	if (v[K_WITH] && !v[K_ACTION])
		rb_error_at(l->d, v[K_WITH], "'with' goes only with 'action'");
	load_run_options(l, s, v[K_RUN], v[K_ENV], v[K_SHELL]);
	if (v[K_RUN])
		s->action = &act_shell;
	else if (v[K_LUA])
		s->action = &act_lua;
}

static struct rb_step *load_step(struct loader *l, const struct rb_node *n,
				 enum rb_step_kind kind, struct rb_step *parent)
{
	struct rb_runbook *rb = l->rb;
	if (n->type != RB_MAP) {
		rb_error_at(l->d, n, "%s must be a mapping with an 'id', not %s",
			    kind == RB_UNDO ? "undo" : "a step", rb_node_kind_name(n));
		return NULL;
	}
	/* One pass over the keys: each is looked up once. */
	const struct rb_node *v[K_COUNT] = {NULL};
	size_t nkeys = kind == RB_UNDO ? UNDO_KEYS : K_COUNT;
	for (size_t i = 0; i < n->n; i++) {
		int k = rb_load_key(l, n->items[2 * i], step_keys, nkeys, kind_names[kind]);
		if (k >= 0)
			v[k] = n->items[2 * i + 1];
	}

	struct rb_step *s = rb_arena_alloc(&rb->doc.arena, sizeof(*s));
	s->node = n;
	s->kind = kind;
	s->parent = parent;
	s->retry = rb->default_retry;
	s->timeout_ms = rb->default_timeout_ms;
	s->approve_timeout_ms = -1;
	s->idempotent = -1;
	s->side_effects = -1;

	const struct rb_node *id = v[K_ID];
	if (id) {
		if (rb_load_ident(l, id, "step id") < 0)
			return NULL;
		s->id = id->str;
	} else if (kind == RB_UNDO) {
		s->id = rb_arena_strndup(&rb->doc.arena, parent->id, strlen(parent->id) + 5);
		strcpy((char *)s->id + strlen(parent->id), "_undo");
		id = n;
	} else {
		rb_error_at(l->d, n, "%s has no 'id'", kind_names[kind]);
		return NULL;
	}
	if (rb->nsteps + l->nundo >= RB_MAX_STEPS) {
		rb_error_at(l->d, n, "more than %d steps", RB_MAX_STEPS);
		return NULL;
	}
	struct rb_step *old = rb_load_register(rb, s);
	if (old) {
		rb_error_at(l->d, id, "duplicate step id '%s' (first at line %d)", s->id,
			    old->node->line);
		return NULL;
	}
	add_step(l, s);
	load_keys(l, s, v);
	/*
	 * defaults.retry is for what can fail for a passing reason (a command, the
	 * network): a pure step (lua, assert) fails the same way again, so it is
	 * retried only when it says so itself.
	 */
	if (!v[K_RETRY] && s->action && (s->action->flags & RB_ACT_PURE))
		s->retry = (struct rb_retry){.attempts = 1};
	return s;
}

int rb_load_steps(struct loader *l, const struct rb_node *list, enum rb_step_kind kind)
{
	const char *what = kind == RB_MAIN ? "steps" : "on_failure";
	if (list->type != RB_SEQ)
		return rb_error_at(l->d, list, "%s must be a list of steps, not %s", what,
				   rb_node_kind_name(list));
	if (kind == RB_MAIN && list->n == 0)
		return rb_error_at(l->d, list, "steps must not be empty");
	if (list->n > RB_MAX_STEPS)
		return rb_error_at(l->d, list, "more than %d steps", RB_MAX_STEPS);
	for (size_t i = 0; i < list->n; i++)
		load_step(l, list->items[i], kind, NULL);
	if (kind == RB_MAIN)
		l->rb->nmain = l->rb->nsteps;
	else
		l->rb->non_failure = l->rb->nsteps - l->rb->nmain;
	return 0;
}

/* --- expressions ---------------------------------------------------------------- */

/*
 * The names of count records of size stride whose first member is their
 * name (params, secrets, vars, or a plain array of strings), for suggestions.
 */
static const char **names_of(const void *base, size_t count, size_t stride)
{
	const char **v = rb_xmalloc((count ? count : 1) * sizeof(*v));
	for (size_t i = 0; i < count; i++)
		v[i] = *(const char *const *)((const char *)base + i * stride);
	return v;
}

static const char **step_ids(const struct rb_runbook *rb)
{
	const char **v = rb_xmalloc((rb->nsteps + 1) * sizeof(*v));
	for (size_t i = 0; i < rb->nsteps; i++)
		v[i] = rb->steps[i]->id;
	return v;
}

/* An error at byte off of n's text; the position is computed only now. */
static int ref_error(struct loader *l, const struct rb_node *n, size_t off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int ref_error(struct loader *l, const struct rb_node *n, size_t off, const char *fmt, ...)
{
	int line, col;
	rb_runbook_pos(l->rb, n, off, &line, &col);
	va_list ap;
	va_start(ap, fmt);
	char *msg = rb_xvasprintf(fmt, ap);
	va_end(ap);
	rb_error_pos(l->d, line, col, "%s", msg);
	free(msg);
	return -1;
}

/* "unknown WHAT 'name'", with a suggestion from cands. */
static int unknown(struct loader *l, const struct rb_node *n, size_t off, const char *what,
		   const char *name, const char **cands, size_t ncands)
{
	const char *s = rb_suggest(name, cands, ncands);
	free(cands);
	if (s)
		return ref_error(l, n, off, "unknown %s '%s' (did you mean '%s'?)", what,
				    name, s);
	return ref_error(l, n, off, "unknown %s '%s'", what, name);
}

static void add_dep(const struct scope_rules *sr, size_t index)
{
	if (!sr->deps)
		return;
	rb_grow(sr->deps, sr->depcap, *sr->ndeps + 1, sizeof(**sr->deps));
	(*sr->deps)[(*sr->ndeps)++] = index;
}

static int check_step_ref(struct loader *l, const struct rb_node *n, const struct rb_ref *r,
			  const struct scope_rules *sr)
{
	struct rb_runbook *rb = l->rb;
	struct rb_step *self = sr->step, *t = rb_runbook_step(rb, r->name);
	if (!t) {
		return unknown(l, n, r->off, "step", r->name, step_ids(rb), rb->nsteps);
	}
	if (r->field) {
		size_t i;
		for (i = 0; step_fields[i]; i++)
			if (!strcmp(r->field, step_fields[i]))
				break;
		if (!step_fields[i])
			return unknown(l, n, r->off, "step field", r->field,
				       names_of(step_fields, 4, sizeof(*step_fields)), 4);
	}
	if (t == self)
		return ref_error(l, n, r->off, "step '%s' refers to itself", self->id);
	if (t->kind == RB_UNDO && !(self->kind == RB_UNDO && self->parent == t->parent))
		return ref_error(l, n, r->off, "%s '%s' cannot use undo step '%s': undo "
				    "steps run only during a rollback", kind_names[self->kind],
				    self->id, t->id);
	if (t->kind == RB_ON_FAILURE && self->kind != RB_ON_FAILURE)
		return ref_error(l, n, r->off, "%s '%s' cannot use on_failure step '%s', "
				    "which runs only after the run has failed",
				    kind_names[self->kind], self->id, t->id);
	/* Within a kind a reference orders the steps; across kinds the target
	   has already run (or never will), so there is nothing to wait for. */
	if (t->kind == self->kind && self->kind != RB_UNDO)
		add_dep(sr, t->index);
	return 0;
}

/* Secret i is read here: by a var (read as the run starts) or by a step (when it runs). */
static void mark_secret(struct loader *l, const struct scope_rules *sr, size_t i)
{
	struct rb_runbook *rb = l->rb;
	if (sr->uses_secret)
		*sr->uses_secret = 1;
	if (!sr->step) {
		rb->secrets[i].at_start = 1;
		return;
	}
	if (!sr->step->secrets)
		sr->step->secrets = rb_arena_alloc(&rb->doc.arena, rb->nsecrets);
	sr->step->secrets[i] |= sr->secret_use;
}

static int check_ref(struct loader *l, const struct rb_node *n, const struct rb_ref *r,
		     const struct scope_rules *sr)
{
	struct rb_runbook *rb = l->rb;
	size_t off = r->off;
	const char *scope = rb_scope_name(r->scope);

	if (!(sr->allowed & (1u << r->scope))) {
		switch (r->scope) {
		case RB_SC_STEPS:
			return ref_error(l, n, off, "'steps' cannot be used %s: they are "
					    "computed before any step runs", sr->where);
		case RB_SC_ITEM:
			return ref_error(l, n, off, "'item' can be used only in a step "
					    "with for_each (not %s)", sr->where);
		case RB_SC_OUTPUT:
			return ref_error(l, n, off, "'output' can be used only in "
					    "outputs (not %s)", sr->where);
		default:
			return ref_error(l, n, off, "'%s' cannot be used %s", scope,
					    sr->where);
		}
	}
	if (r->dynamic)
		return ref_error(l, n, off, "'%s' must be indexed with a name, as "
				    "%s.NAME or %s['NAME'], so that it can be checked before the "
				    "run", scope, scope, scope);
	if (!r->name) {
		if (r->scope == RB_SC_SECRETS)  /* the whole table: every secret */
			for (size_t i = 0; i < rb->nsecrets; i++)
				mark_secret(l, sr, i);
		return 0;
	}
	switch (r->scope) {
	case RB_SC_PARAMS:
		if (rb_runbook_param(rb, r->name))
			return 0;
		return unknown(l, n, off, "param", r->name,
			       names_of(rb->params, rb->nparams, sizeof(*rb->params)), rb->nparams);
	case RB_SC_SECRETS:
		for (size_t i = 0; i < rb->nsecrets; i++)
			if (!strcmp(rb->secrets[i].name, r->name)) {
				mark_secret(l, sr, i);
				return 0;
			}
		return unknown(l, n, off, "secret", r->name,
			       names_of(rb->secrets, rb->nsecrets, sizeof(*rb->secrets)),
			       rb->nsecrets);
	case RB_SC_VARS:
		for (size_t i = 0; i < rb->nvars; i++) {
			if (strcmp(rb->vars[i].name, r->name))
				continue;
			if (sr->step == NULL && i >= sr->nvars)
				return ref_error(l, n, off, "var '%s' is used before it "
						    "is defined (vars are computed in order)",
						    r->name);
			if (rb->vars[i].secret && sr->uses_secret)
				*sr->uses_secret = 1;
			return 0;
		}
		return unknown(l, n, off, "var", r->name,
			       names_of(rb->vars, rb->nvars, sizeof(*rb->vars)), rb->nvars);
	case RB_SC_RUN:
		for (size_t i = 0; run_fields[i]; i++)
			if (!strcmp(run_fields[i], r->name))
				return 0;
		return unknown(l, n, off, "run field", r->name, names_of(run_fields, 4, sizeof(*run_fields)), 4);
	case RB_SC_STEPS:
		return check_step_ref(l, n, r, sr);
	default:
		return 0;
	}
}

static int check_refs(struct loader *l, const struct rb_node *n, const struct rb_ref *refs,
		      size_t nrefs, const struct scope_rules *sr)
{
	int rc = 0;
	for (size_t i = 0; i < nrefs; i++)
		rc |= check_ref(l, n, &refs[i], sr);
	return rc;
}

/*
 * Report a Lua error at its place in the YAML file: line lualine of code,
 * which starts at byte off of n's text.  Lua's own "at line N" in the message
 * is translated to the file's line too.
 */
static int lua_error_at(struct loader *l, const struct rb_node *n, size_t off,
			const char *code, int lualine, const char *msg, const char *what)
{
	const char *start = code;
	for (int i = 1; i < lualine; i++) {
		const char *nl = strchr(code, '\n');
		if (!nl)
			break;
		code = nl + 1;
	}
	while (lualine > 1 && (*code == ' ' || *code == '\t'))
		code++;
	/* An error at the end (near <eof>) points at the last thing written. */
	while (code > start && (*code == '\0' || *code == '\n' || *code == ' '))
		code--;
	int line, col, first, c0;
	rb_runbook_pos(l->rb, n, off + (size_t)(code - start), &line, &col);
	rb_runbook_pos(l->rb, n, off, &first, &c0);
	struct rb_buf b;
	rb_buf_init(&b);
	const char *p = msg, *q;
	while ((q = strstr(p, "at line ")) != NULL) {
		char *end;
		long ln = strtol(q + 8, &end, 10);
		rb_buf_add(&b, p, (size_t)(q - p));
		if (end == q + 8) {
			rb_buf_puts(&b, "at line ");
		} else {
			rb_buf_printf(&b, "at line %ld", first + ln - 1);
		}
		p = end == q + 8 ? q + 8 : end;
	}
	rb_buf_puts(&b, p);
	rb_error_pos(l->d, line, col, "%s: %s", what, b.s);
	rb_buf_release(&b);
	return -1;
}

static int compile_part(struct loader *l, const struct rb_node *n,
			const struct rb_tmpl_part *p, int chunk)
{
	char *err = NULL;
	int line = 0;
	if (rb_luabox_check(l->lua, p->text, p->len, !chunk, &err, &line) == 0)
		return 0;
	/* An expression's position is its "${{", three bytes before the code. */
	size_t off = chunk || p->off < 3 ? p->off : p->off - 3;
	lua_error_at(l, n, line > 1 || chunk ? p->off : off, p->text, line, err,
		     chunk ? "Lua error" : "invalid expression");
	free(err);
	return -1;
}

static int load_scalar(struct loader *l, struct rb_node *n, const struct scope_rules *sr)
{
	if (!n->tmpl) {
		char *err = NULL;
		size_t off = 0;
		if (rb_tmpl_parse(&l->rb->doc.arena, n->str, n->len, &n->tmpl, &err, &off) < 0) {
			int line, col;
			rb_runbook_pos(l->rb, n, off, &line, &col);
			rb_error_pos(l->d, line, col, "%s", err);
			free(err);
			return -1;
		}
		if (!n->tmpl)
			return 0;
		for (size_t i = 0; i < n->tmpl->nparts; i++)
			if (n->tmpl->parts[i].is_expr && compile_part(l, n, &n->tmpl->parts[i], 0) < 0)
				return -1;
	}
	return check_refs(l, n, n->tmpl->refs, n->tmpl->nrefs, sr);
}

int rb_load_value(struct loader *l, const struct rb_node *n, const struct scope_rules *sr)
{
	int rc = 0;
	switch (n->type) {
	case RB_SCALAR:
		if (n->quoted || rb_scalar_kind(n) == RB_K_STRING)
			rc = load_scalar(l, (struct rb_node *)n, sr);
		break;
	case RB_SEQ:
		for (size_t i = 0; i < n->n; i++)
			rc |= rb_load_value(l, n->items[i], sr);
		break;
	case RB_MAP:
		for (size_t i = 0; i < n->n; i++)
			rc |= rb_load_value(l, n->items[2 * i + 1], sr);
		break;
	}
	return rc;
}

/* A template holding all of n's text as one expression or chunk. */
static struct rb_tmpl *whole_tmpl(struct loader *l, struct rb_node *n, int chunk)
{
	struct rb_arena *a = &l->rb->doc.arena;
	struct rb_tmpl *t = rb_arena_alloc(a, sizeof(*t));
	t->parts = rb_arena_alloc(a, sizeof(*t->parts));
	t->parts[0] = (struct rb_tmpl_part){n->str, n->len, 0, 1};
	t->nparts = 1;
	t->whole = 1;
	t->chunk = chunk;
	rb_lua_refs(a, n->str, n->len, &t->refs, &t->nrefs, &t->uses);
	return t;
}

int rb_load_cond(struct loader *l, const struct rb_node *cn, const struct scope_rules *sr)
{
	struct rb_node *n = (struct rb_node *)cn;
	if (n->type != RB_SCALAR || rb_scalar_kind(n) == RB_K_NULL)
		return rb_error_at(l->d, n, "if must be an expression or a boolean, not %s",
				   rb_node_kind_name(n));
	if (rb_scalar_kind(n) == RB_K_BOOL)
		return 0;
	if (!n->tmpl && !strstr(n->str, "${{")) {
		n->tmpl = whole_tmpl(l, n, 0);
		if (compile_part(l, n, &n->tmpl->parts[0], 0) < 0)
			return -1;
		return check_refs(l, n, n->tmpl->refs, n->tmpl->nrefs, sr);
	}
	if (load_scalar(l, n, sr) < 0)
		return -1;
	if (!n->tmpl->whole)
		return rb_error_at(l->d, n, "if must be a single expression, not text with "
				   "${{ }} inside it");
	return 0;
}

int rb_load_chunk(struct loader *l, const struct rb_node *cn, const struct scope_rules *sr)
{
	struct rb_node *n = (struct rb_node *)cn;
	if (!n->tmpl) {
		n->tmpl = whole_tmpl(l, n, 1);
		if (compile_part(l, n, &n->tmpl->parts[0], 1) < 0)
			return -1;
	}
	return check_refs(l, n, n->tmpl->refs, n->tmpl->nrefs, sr);
}

/* --- per step ----------------------------------------------------------------- */

/*
 * n holds an expression somewhere: its value is known only when the step runs;
 * with rb, one that reads a secret.
 */
static int has_expr(const struct rb_runbook *rb, const struct rb_node *n)
{
	if (n->type == RB_SCALAR)
		return n->tmpl && (!rb || rb_tmpl_reads_secret(rb, n->tmpl));
	size_t m = n->type == RB_MAP ? 2 * n->n : n->n;
	for (size_t i = 0; i < m; i++)
		if (has_expr(rb, n->items[i]))
			return 1;
	return 0;
}

/*
 * Whether t reads the output of a step whose output is a secret: a sensitive step's,
 * or one an action makes (crypto.random's value: RB_ACT_SECRET_OUTPUT).
 */
static int reads_secret_step(const struct rb_runbook *rb, const struct rb_tmpl *t)
{
	for (size_t i = 0; i < t->nrefs; i++) {
		const struct rb_ref *r = &t->refs[i];
		if (r->scope != RB_SC_STEPS || !r->name || r->dynamic)
			continue;
		const struct rb_step *s = rb_runbook_step(rb, r->name);
		if (s && (s->sensitive || (s->action && (s->action->flags & RB_ACT_SECRET_OUTPUT))))
			return 1;
	}
	return 0;
}

/*
 * An argument typed secret (RB_ARG_SECRET) must come from the runbook's secrets, or
 * from a step's secret output (a password crypto.random made).
 */
static void check_secret_arg(struct loader *l, const struct rb_action *a,
			     const struct rb_arg *g, const struct rb_node *v)
{
	if (v->type == RB_SCALAR && v->tmpl && (rb_tmpl_reads_secret(l->rb, v->tmpl) ||
						reads_secret_step(l->rb, v->tmpl)))
		return;
	rb_error_at(l->d, v, "argument '%s' of action '%s' is a secret: give it from secrets "
		    "(${{ secrets.NAME }}), not written in the runbook", g->name, a->name);
}

/* A list or map with expressions inside, for effect (and check: RB_ARG_PARTIAL): null for them. */
static json_t *known_part(const struct rb_node *n)
{
	if (n->type == RB_SCALAR)
		return n->tmpl ? json_null() : rb_node_to_json(n);
	json_t *v = n->type == RB_MAP ? json_object() : json_array();
	for (size_t i = 0; i < n->n; i++)
		if (n->type == RB_SEQ)
			json_array_append_new(v, known_part(n->items[i]));
		else if (n->items[2 * i]->type == RB_SCALAR)
			json_object_set_new(v, n->items[2 * i]->str, known_part(n->items[2 * i + 1]));
	return v;
}

/*
 * The action's own checks of the arguments known now, and what the call will do,
 * as its action tells from them (rb_action.check and .effect; for effect, known
 * holds the lists and maps known in part besides).
 */
static enum rb_effect check_literal_args(struct loader *l, struct rb_step *s, json_t *lit,
					 json_t *known, json_t *later)
{
	const struct rb_action *a = s->action;
	struct rb_arg_error e = {NULL, -1, NULL};
	if (a->check && a->check(lit, later, &e) < 0) {
		const struct rb_node *at = rb_map_get(s->with, e.arg ? e.arg : "");
		if (at && at->type == RB_SEQ && e.index >= 0 && (size_t)e.index < at->n)
			at = at->items[e.index];
		if (e.arg)
			rb_error_at(l->d, at ? at : s->with, "argument '%s' of action '%s': %s",
				    e.arg, a->name, e.msg);
		else
			rb_error_at(l->d, s->with ? s->with : s->node, "action '%s': %s", a->name,
				    e.msg);
		free(e.msg);
		return RB_EFFECT_UNKNOWN;
	}
	char *what = NULL;
	enum rb_effect eff = a->effect ? a->effect(known, later, &what) : RB_EFFECT_UNKNOWN;
	if (what) {
		s->does = rb_arena_strndup(&l->rb->doc.arena, what, strlen(what));
		free(what);
	}
	return eff;
}

/*
 * Whether the step can change anything, and may run again after a crash: as the
 * runbook says, else as its action's call says (eff), else the action's default.
 */
static void settle_effects(struct loader *l, struct rb_step *s, enum rb_effect eff, int idem)
{
	const struct rb_action *a = s->action;
	int writes = eff != RB_EFFECT_UNKNOWN ? eff == RB_EFFECT_WRITES
		     : s->run || (a && (a->flags & RB_ACT_SIDE_EFFECTS));
	if (s->kind == RB_CHECK) {
		if (writes && !s->run && a)
			rb_error_at(l->d, rb_map_get(s->node, "action"), "a check must not change "
				    "anything, and %saction '%s' has side effects (use 'run' or "
				    "'lua' for a command that only looks)",
				    eff == RB_EFFECT_WRITES ? "this call of " : "", a->name);
		s->side_effects = 0;
		s->idempotent = 1;
		return;
	}
	if (s->side_effects < 0)
		s->side_effects = writes;
	/* A step that changes nothing may run again after a crash. */
	if (s->idempotent < 0)
		s->idempotent = !s->side_effects || idem || (a && (a->flags & RB_ACT_IDEMPOTENT));
}

/*
 * The arguments of step s's action: their types, secrets, the action's own
 * rules; what the call will do, and in *idem whether an argument written true
 * makes it safe to run again (RB_ARG_MAKES_IDEMPOTENT).
 */
static enum rb_effect check_with(struct loader *l, struct rb_step *s, int *idem)
{
	const struct rb_action *a = s->action;
	const struct rb_node *w = s->with;
	json_t *lit = json_object();    /* the arguments known now */
	json_t *known = json_object();  /* ... with those known in part (lists, maps) */
	json_t *later = json_array();   /* ... and the names of the others */
	const char *secret[64];         /* those that read a secret */
	size_t nsecret = 0;
	int bad = 0;
	if (w) {
		for (size_t i = 0; i < w->n; i++) {
			const struct rb_node *k = w->items[2 * i], *v = w->items[2 * i + 1];
			if (k->type != RB_SCALAR)
				continue;
			const struct rb_arg *g = rb_action_arg(a, k->str);
			if (!g) {
				const char *names[32];
				size_t n = 0;
				for (const struct rb_arg *x = a->args; x->name && n < 32; x++)
					names[n++] = x->name;
				const char *sug = rb_suggest(k->str, names, n);
				if (sug)
					rb_error_at(l->d, k, "unknown argument '%s' for action '%s' "
						    "(did you mean '%s'?)", k->str, a->name, sug);
				else
					rb_error_at(l->d, k, "unknown argument '%s' for action '%s'",
						    k->str, a->name);
				continue;
			}
			if (has_expr(NULL, v))
				json_array_append_new(later, json_string(g->name));
			if (has_expr(l->rb, v) && nsecret < 63)
				secret[nsecret++] = g->name;
			if (g->flags & RB_ARG_SECRET) {
				check_secret_arg(l, a, g, v);
				continue;
			}
			/* A value computed by an expression is checked when known. */
			if (v->type == RB_SCALAR && v->tmpl)
				continue;
			char *why = NULL;
			if (!rb_value_fits(v, g->type, &why)) {
				rb_error_at(l->d, v, "argument '%s' of action '%s': %s", g->name,
					    a->name, why);
				free(why);
				bad = 1;
				continue;
			}
			if (g->choices && v->type == RB_SCALAR) {
				size_t j;
				for (j = 0; g->choices[j]; j++)
					if (!strcmp(v->str, g->choices[j]))
						break;
				if (!g->choices[j]) {
					struct rb_buf b;
					rb_buf_init(&b);
					for (j = 0; g->choices[j]; j++)
						rb_buf_printf(&b, "%s%s", j ? ", " : "", g->choices[j]);
					rb_error_at(l->d, v, "invalid value '%s' for argument '%s' "
						    "(expected %s)", v->str, g->name, b.s);
					rb_buf_release(&b);
					bad = 1;
					continue;
				}
			}
			if (!has_expr(NULL, v)) {
				/* As the call will get it: url: 123 is the text "123" */
				json_t *x = rb_node_to_json(v);
				char *ignored = NULL;
				if (g->type == RB_T_STRING || g->type == RB_T_STRING_MAP)
					rb_arg_fit(g, v, &x, &ignored);
				free(ignored);
				json_object_set_new(lit, g->name, json_incref(x));
				json_object_set_new(known, g->name, x);
			} else {        /* a list or map known in part */
				json_object_set_new(known, g->name, known_part(v));
				if (g->flags & RB_ARG_PARTIAL)
					json_object_set_new(lit, g->name, known_part(v));
			}
			if ((g->flags & RB_ARG_MAKES_IDEMPOTENT) &&
			    json_is_true(json_object_get(lit, g->name)))
				*idem = 1;
		}
	}
	for (const struct rb_arg *g = a->args; g->name; g++)
		if ((g->flags & RB_ARG_REQUIRED) && !rb_map_get(w, g->name)) {
			rb_error_at(l->d, w ? w : rb_map_get(s->node, "action"),
				    "action '%s' needs argument '%s'", a->name, g->name);
			bad = 1;
		}
	if (nsecret) {
		s->secret_args = rb_arena_alloc(&l->rb->doc.arena, (nsecret + 1) * sizeof(char *));
		memcpy(s->secret_args, secret, nsecret * sizeof(char *));
		s->secret_args[nsecret] = NULL;
	}
	enum rb_effect eff = bad ? RB_EFFECT_UNKNOWN : check_literal_args(l, s, lit, known, later);
	json_decref(lit);
	json_decref(known);
	json_decref(later);
	return eff;
}

static void resolve_needs(struct loader *l, struct rb_step *s, size_t **deps, size_t *ndeps,
			  size_t *cap)
{
	struct rb_runbook *rb = l->rb;
	const struct rb_node *nn = s->needs_node;
	const struct rb_node *one[1] = {nn};
	const struct rb_node *const *items = one;
	size_t count = 1;
	if (nn->type == RB_SEQ) {
		items = (const struct rb_node *const *)nn->items;
		count = nn->n;
	}
	s->needs = rb_xmalloc((count ? count : 1) * sizeof(*s->needs));
	for (size_t i = 0; i < count; i++) {
		const struct rb_node *v = items[i];
		if (v->type != RB_SCALAR || rb_scalar_kind(v) != RB_K_STRING) {
			rb_error_at(l->d, v, "needs must be a step id or a list of step ids, "
				    "not %s", rb_node_kind_name(v));
			continue;
		}
		struct rb_step *t = rb_runbook_step(rb, v->str);
		if (!t) {
			unknown(l, v, 0, "step", v->str, step_ids(rb), rb->nsteps);
			continue;
		}
		if (t == s) {
			rb_error_at(l->d, v, "step '%s' needs itself", s->id);
			continue;
		}
		if (t->kind != s->kind) {
			rb_error_at(l->d, v, "%s '%s' cannot need %s '%s'%s", kind_names[s->kind],
				    s->id, kind_names[t->kind], t->id,
				    t->kind == RB_ON_FAILURE ? ", which runs only after the run "
							       "has failed" : "");
			continue;
		}
		s->needs[s->nneeds++] = t->index;
		rb_grow(deps, cap, *ndeps + 1, sizeof(**deps));
		(*deps)[(*ndeps)++] = t->index;
	}
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

static void load_step_exprs(struct loader *l, struct rb_step *s)
{
	size_t *deps = NULL, ndeps = 0, cap = 0;
	unsigned common = 1u << RB_SC_PARAMS | 1u << RB_SC_VARS | 1u << RB_SC_SECRETS |
			  1u << RB_SC_ENV | 1u << RB_SC_RUN | 1u << RB_SC_STEPS;
	struct scope_rules sr = {
		.step = s, .allowed = common, .deps = &deps, .ndeps = &ndeps, .depcap = &cap,
	};
	if (s->needs_node)
		resolve_needs(l, s, &deps, &ndeps, &cap);
	size_t nexplicit = ndeps;       /* what follows, its expressions read */

	sr.where = "in if";
	sr.secret_use = RB_READS_IN_IF;
	if (s->cond)
		rb_load_cond(l, s->cond, &sr);
	sr.secret_use = RB_READS_IN_STEP;
	sr.where = "in for_each";
	if (s->for_each) {
		const struct rb_node *f = s->for_each;
		if (f->type == RB_SEQ)
			rb_load_value(l, f, &sr);
		else if (f->type != RB_SCALAR || rb_scalar_kind(f) != RB_K_STRING)
			rb_error_at(l->d, f, "for_each must be a list or an expression, not %s",
				    rb_node_kind_name(f));
		else if (load_scalar(l, (struct rb_node *)f, &sr) == 0 &&
			 (!f->tmpl || !f->tmpl->whole))
			rb_error_at(l->d, f, "for_each must be a list or a single ${{ }} "
				    "expression");
	}
	sr.where = "in approve";
	if (s->approve)
		rb_load_value(l, s->approve, &sr);

	if (s->for_each)
		sr.allowed |= 1u << RB_SC_ITEM;
	sr.where = "in with";
	if (s->with)
		rb_load_value(l, s->with, &sr);
	sr.where = "in run";
	if (s->run)
		rb_load_value(l, s->run, &sr);
	sr.where = "in env";
	if (s->env)
		rb_load_value(l, s->env, &sr);
	sr.where = "in lua";
	if (s->lua)
		rb_load_chunk(l, s->lua, &sr);
	enum rb_effect eff = RB_EFFECT_UNKNOWN;
	int idem = 0;
	if (s->action && !s->run && !s->lua)
		eff = check_with(l, s, &idem);
	settle_effects(l, s, eff, idem);
	rb_render_check_args(l->rb, s, l->d, 0);

	struct rb_step *c = s->check;
	sr.where = "in check";
	if (c && c->with)
		rb_load_value(l, c->with, &sr);
	if (c && c->run)
		rb_load_value(l, c->run, &sr);
	if (c && c->env)
		rb_load_value(l, c->env, &sr);
	if (c && c->lua)
		rb_load_chunk(l, c->lua, &sr);
	eff = RB_EFFECT_UNKNOWN;
	if (c && c->action && !c->run && !c->lua)
		eff = check_with(l, c, &idem);
	if (c)
		settle_effects(l, c, eff, 0);
	if (c)
		rb_render_check_args(l->rb, c, l->d, 0);

	sr.allowed &= ~(1u << RB_SC_ITEM);
	sr.allowed |= 1u << RB_SC_OUTPUT;
	sr.where = "in outputs";
	if (s->outputs)
		rb_load_value(l, s->outputs, &sr);

	if (ndeps > nexplicit) {
		s->nreads = ndeps - nexplicit;
		s->reads = rb_xmalloc(s->nreads * sizeof(*s->reads));
		memcpy(s->reads, deps + nexplicit, s->nreads * sizeof(*s->reads));
	}
	if (ndeps)
		qsort(deps, ndeps, sizeof(*deps), cmp_size);
	size_t u = 0;
	for (size_t i = 0; i < ndeps; i++)
		if (u == 0 || deps[u - 1] != deps[i])
			deps[u++] = deps[i];
	s->deps = deps;
	s->ndeps = u;
}

int rb_load_step_refs(struct loader *l)
{
	struct rb_runbook *rb = l->rb;
	for (size_t i = 0; i < l->nundo; i++) {
		rb_grow(&rb->steps, &l->stepcap, rb->nsteps + 1, sizeof(*rb->steps));
		l->undo[i]->index = rb->nsteps;
		rb->steps[rb->nsteps++] = l->undo[i];
	}
	free(l->undo);
	l->undo = NULL;
	l->nundo = 0;
	for (size_t i = 0; i < rb->nsteps; i++)
		load_step_exprs(l, rb->steps[i]);
	return 0;
}
