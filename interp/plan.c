/*
 * Builds the plan: params resolved and checked, vars evaluated, then every
 * step in stage order with its arguments rendered as far as they can be
 * before the run.  The JSON built here is the documented format; the
 * renderers in plan_render.c only read it.
 */
#include "plan.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cal.h"
#include "expr.h"
#include "graph.h"
#include "render.h"
#include "util.h"

/* --- params ------------------------------------------------------------------ */

static json_t *parse_param(const struct rb_param *p, const char *v, const char **why)
{
	char *end;
	switch (p->type) {
	case RB_T_INTEGER: {
		errno = 0;
		long long x = strtoll(v, &end, 10);
		if (!*v || *end || errno) {
			*why = "expected an integer";
			return NULL;
		}
		return json_integer(x);
	}
	case RB_T_NUMBER: {
		errno = 0;
		double x = strtod(v, &end);
		if (!*v || *end || errno || !isfinite(x)) {
			*why = "expected a number";
			return NULL;
		}
		return json_real(x);
	}
	case RB_T_BOOLEAN:
		if (!strcmp(v, "true"))
			return json_true();
		if (!strcmp(v, "false"))
			return json_false();
		*why = "expected true or false";
		return NULL;
	case RB_T_DURATION: {
		int64_t ms;
		if (rb_duration_parse(v, &ms, why) < 0)
			return NULL;
		return json_string(v);
	}
	case RB_T_LIST:
	case RB_T_MAP: {
		json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
		if (!j || (p->type == RB_T_LIST ? !json_is_array(j) : !json_is_object(j))) {
			json_decref(j);
			*why = p->type == RB_T_LIST ? "expected a JSON list such as [\"a\", \"b\"]"
						    : "expected a JSON object such as {\"a\": 1}";
			return NULL;
		}
		return j;
	}
	default: {
		json_t *j = json_string(v);
		if (!j)
			*why = "value is not valid UTF-8";
		return j;
	}
	}
}

static double number_of(const json_t *v, enum rb_type t)
{
	if (t == RB_T_DURATION) {
		int64_t ms = 0;
		const char *w;
		rb_duration_parse(json_string_value(v), &ms, &w);
		return (double)ms;
	}
	return json_number_value(v);
}

/* Check enum, min and max; report at the given value's declaration. */
static int check_param(const struct rb_param *p, const json_t *v, struct rb_diags *d)
{
	if (p->choices) {
		int found = 0;
		for (size_t i = 0; i < p->choices->n && !found; i++) {
			json_t *c = rb_node_to_json(p->choices->items[i]);
			found = json_equal(c, (json_t *)v) ||
				(json_is_number(c) && json_is_number(v) &&
				 json_number_value(c) == json_number_value(v));
			json_decref(c);
		}
		if (!found) {
			struct rb_buf b;
			rb_buf_init(&b);
			for (size_t i = 0; i < p->choices->n; i++)
				rb_buf_printf(&b, "%s%s", i ? ", " : "", p->choices->items[i]->str);
			rb_error_at(d, p->key, "param '%s' must be one of: %s", p->name, b.s);
			rb_buf_release(&b);
			return -1;
		}
	}
	json_t *lim[2] = {p->min ? rb_node_to_json(p->min) : NULL,
			  p->max ? rb_node_to_json(p->max) : NULL};
	int rc = 0;
	for (int i = 0; i < 2; i++) {
		if (!lim[i])
			continue;
		double x = number_of(v, p->type), b = number_of(lim[i], p->type);
		if (i == 0 ? x < b : x > b)
			rc = rb_error_at(d, p->key, "param '%s' must be %s %s", p->name,
					 i == 0 ? "at least" : "at most",
					 i == 0 ? p->min->str : p->max->str);
		json_decref(lim[i]);
	}
	return rc;
}

/* p's value read from text (given as from, for the error), checked, into out. */
static void set_param(const struct rb_param *p, const char *text, const char *from, json_t *out,
		      struct rb_diags *d)
{
	const char *why = NULL;
	json_t *v = parse_param(p, text, &why);
	if (!v)
		rb_error_at(d, p->key, "%s: %s", from, why);
	else if (check_param(p, v, d) < 0)
		json_decref(v);
	else
		json_object_set_new(out, p->name, v);
}

json_t *rb_params_resolve(const struct rb_runbook *rb, char **given, size_t ngiven,
			  struct rb_diags *d)
{
	json_t *out = json_object();
	json_t *bad = json_object();    /* given, but invalid: not also "required" */
	size_t errors0 = d->errors;
	for (size_t i = 0; i < ngiven; i++) {
		const char *eq = strchr(given[i], '=');
		if (!eq) {
			rb_error_pos(d, 0, 0, "-p '%s': expected NAME=VALUE", given[i]);
			continue;
		}
		char *name = rb_xstrndup(given[i], (size_t)(eq - given[i]));
		const struct rb_param *p = rb_runbook_param(rb, name);
		if (!p) {
			const char **names = rb_xmalloc((rb->nparams + 1) * sizeof(*names));
			for (size_t j = 0; j < rb->nparams; j++)
				names[j] = rb->params[j].name;
			const char *s = rb_suggest(name, names, rb->nparams);
			if (s)
				rb_error_pos(d, 0, 0, "unknown param '%s' (did you mean '%s'?)", name, s);
			else
				rb_error_pos(d, 0, 0, "unknown param '%s'%s", name,
					     rb->nparams ? "" : " (this runbook takes no params)");
			free(names);
		} else if (json_object_get(out, name)) {
			rb_error_pos(d, 0, 0, "param '%s' is given more than once", name);
		} else {
			char *from = rb_xasprintf("-p %s", name);
			set_param(p, eq + 1, from, out, d);
			free(from);
			if (!json_object_get(out, name))
				json_object_set_new(bad, name, json_true());
		}
		free(name);
	}
	for (size_t i = 0; i < rb->nparams; i++) {
		const struct rb_param *p = &rb->params[i];
		if (json_object_get(out, p->name) || json_object_get(bad, p->name))
			continue;
		const char *from_env = p->env ? getenv(p->env) : NULL;
		if (from_env) {
			char *from = rb_xasprintf("param '%s' from $%s", p->name, p->env);
			set_param(p, from_env, from, out, d);
			free(from);
		} else if (p->def)
			json_object_set_new(out, p->name, rb_node_to_json(p->def));
		else if (p->required)
			rb_error_at(d, p->key, "param '%s' is required: give it with -p %s=VALUE",
				    p->name, p->name);
	}
	json_decref(bad);
	if (d->errors > errors0) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/* --- the plan ---------------------------------------------------------------- */

static json_t *duration_json(int64_t ms)
{
	char buf[64];
	if (ms < 0)
		return json_null();
	rb_duration_format(ms, buf, sizeof(buf));
	return json_string(buf);
}

static json_t *retry_json(const struct rb_retry *r)
{
	return json_pack("{s:I, s:o, s:s, s:o}", "attempts", (json_int_t)r->attempts, "delay",
			 duration_json(r->delay_ms), "backoff",
			 r->exponential ? "exponential" : "fixed", "max_delay",
			 r->max_delay_ms ? duration_json(r->max_delay_ms) : json_null());
}

static json_t *ids_json(const struct rb_runbook *rb, const size_t *idx, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(rb->steps[idx[i]]->id));
	return a;
}

/* The text of a condition as written, without ${{ }}. */
static json_t *expr_text(const struct rb_node *n)
{
	const char *s = n->str;
	size_t len = n->len;
	if (n->tmpl && n->tmpl->whole) {
		s = n->tmpl->parts[0].text;
		len = n->tmpl->parts[0].len;
	}
	while (len && (*s == ' ' || *s == '\t' || *s == '\n'))
		s++, len--;
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n'))
		len--;
	return json_stringn(s, len);
}

struct planner {
	struct rb_runbook *rb;
	struct rb_render r;
	json_t *skipped;        /* step id -> the step whose false condition skips it */
	const json_t *probed;   /* --probe: the steps that ran, by id, or NULL */
};

/* A step a probe ran is known: expressions that read it get its real results. */
static int probed_known(void *ud, size_t index)
{
	const struct planner *pl = ud;
	return json_object_get(pl->probed, pl->rb->steps[index]->id) != NULL;
}

static json_t *render(struct planner *pl, const struct rb_node *n)
{
	return rb_render_node(&pl->r, n);       /* nothing known but params and vars */
}

/* A value the plan cannot know yet: what render gives for a whole expression that waits. */
static int placeholder(const struct rb_node *n, const json_t *v)
{
	const char *t = json_string_value(v);
	return n->tmpl && n->tmpl->whole && t &&
	       (!strncmp(t, "<known ", 7) || !strcmp(t, RB_SECRET_MASK) ||
		!strcmp(t, "<each item>") || !strcmp(t, "<output>"));
}

/*
 * A step's gate: {"prompt", "timeout", "gate", "expression" (when approve is
 * one expression)}.  gate is true
 * (a prompt, or true), false (approve gives false or nil: no gate) or null: a
 * conditional gate, whose approve is known only at run time (it reads a step,
 * a secret); then prompt is the placeholder.  NULL after an error.
 */
static json_t *approve_json(struct planner *pl, const struct rb_step *s)
{
	json_t *v = render(pl, s->approve);
	if (!v)
		return NULL;
	char *prompt = NULL;
	const char *what = NULL;
	int gate = placeholder(s->approve, v) ? 2 : rb_approve_gate(v, s->id, &prompt, &what);
	json_t *a = NULL;
	if (gate < 0)
		rb_error_at(pl->r.d, s->approve, "approve must give a prompt (a string), true, false "
			    "or nil, not %s", what);
	else
		a = json_pack("{s:o, s:o, s:o}", "prompt", gate == 2 ? json_incref(v)
			      : prompt ? json_string(prompt) : json_null(), "timeout",
			      duration_json(s->approve_timeout_ms), "gate",
			      gate == 2 ? json_null() : json_boolean(gate));
	if (a && s->approve->tmpl && s->approve->tmpl->whole)   /* it decides whether a gate */
		json_object_set_new(a, "expression", expr_text(s->approve));
	free(prompt);
	json_decref(v);
	return a;
}

static json_t *step_json(struct planner *pl, const struct rb_step *s);

static json_t *step_json_of(struct planner *pl, const struct rb_step *s)
{
	struct rb_runbook *rb = pl->rb;
	json_t *j = json_object();
	if (s->kind != RB_CHECK)        /* a check is its step's */
		json_object_set_new(j, "id", json_string(s->id));
	if (s->name)
		json_object_set_new(j, "name", json_string(s->name));
	if (s->description)
		json_object_set_new(j, "description", json_string(s->description));
	int sub = s->kind == RB_UNDO || s->kind == RB_CHECK;    /* hangs off a step */
	if (!sub)
		json_object_set_new(j, "stage", json_integer(s->stage + 1));
	json_object_set_new(j, "action", json_string(s->action ? s->action->name : ""));
	json_object_set_new(j, "form", json_string(s->run ? "run" : s->lua ? "lua" : "action"));
	json_object_set_new(j, "side_effects", json_boolean(s->side_effects));
	if (s->does)
		json_object_set_new(j, "does", json_string(s->does));
	json_object_set_new(j, "idempotent", json_boolean(s->idempotent));
	if (!sub) {
		json_object_set_new(j, "needs", ids_json(rb, s->needs, s->nneeds));
		json_object_set_new(j, "after", ids_json(rb, s->deps, s->ndeps));
	}

	json_t *args = rb_render_args(&pl->r, s);
	if (!args)
		goto fail;
	json_object_set_new(j, "with", args);

	if (s->cond) {
		json_t *v = render(pl, s->cond);
		if (!v)
			goto fail;
		if (s->cond->tmpl &&
		    (!json_is_string(v) || strncmp(json_string_value(v), "<known", 6))) {
			/* Lua truth: only nil and false are false. */
			int truth = !json_is_null(v) && !json_is_false(v);
			json_decref(v);
			v = json_boolean(truth);
		}
		json_object_set_new(j, "if", json_pack("{s:o, s:o}", "expression",
						       expr_text(s->cond), "value", v));
		if (json_is_false(v))
			json_object_set_new(pl->skipped, s->id, json_string(s->id));
	}
	/*
	 * Skipping a step skips the steps that depend on it, unless they have
	 * an if of their own: then that condition alone decides.
	 */
	for (size_t i = 0; i < s->ndeps && s->kind != RB_UNDO && !s->cond; i++) {
		json_t *why = json_object_get(pl->skipped, rb->steps[s->deps[i]]->id);
		if (why && !json_object_get(pl->skipped, s->id))
			json_object_set(pl->skipped, s->id, why);
	}
	json_t *probe = sub ? NULL : json_object_get(pl->probed, s->id);
	if (probe)
		json_object_set(j, "probe", probe);
	json_t *sk = sub ? NULL : json_object_get(pl->skipped, s->id);
	if (sk)
		json_object_set_new(j, "skipped", json_pack("{s:O}", "because_of", sk));

	if (s->for_each) {
		json_t *items = render(pl, s->for_each);
		if (!items)
			goto fail;
		json_object_set_new(j, "for_each", items);
		json_object_set_new(j, "concurrency", json_integer(s->concurrency));
	}
	json_object_set_new(j, "retry", retry_json(&s->retry));
	json_object_set_new(j, "timeout", duration_json(s->timeout_ms));
	json_object_set_new(j, "continue_on_error", json_boolean(s->continue_on_error));
	if (s->approve) {
		json_t *a = approve_json(pl, s);
		if (!a)
			goto fail;
		json_object_set_new(j, "approve", a);
	}
	if (s->outputs) {
		json_t *o = json_object();
		for (size_t i = 0; i < s->outputs->n; i++) {
			const struct rb_node *v = s->outputs->items[2 * i + 1];
			json_object_set_new(o, s->outputs->items[2 * i]->str,
					    v->tmpl ? expr_text(v) : rb_node_to_json(v));
		}
		json_object_set_new(j, "outputs", o);
	}
	json_object_set_new(j, "sensitive", json_boolean(s->sensitive));
	const struct rb_step *subs[2] = {s->check, s->undo};
	for (int k = 0; k < 2; k++) {
		json_t *u = subs[k] ? step_json(pl, subs[k]) : NULL;
		if (subs[k] && !u)
			goto fail;
		if (u)
			json_object_set_new(j, k ? "undo" : "check", u);
	}
	return j;
fail:
	json_decref(j);
	return NULL;
}

/* A step as the plan shows it; run.status is known in main steps only ("running"). */
static json_t *step_json(struct planner *pl, const struct rb_step *s)
{
	int was = pl->r.run_status_unknown;
	pl->r.run_status_unknown |= s->kind == RB_ON_FAILURE || s->kind == RB_UNDO;
	json_t *j = step_json_of(pl, s);
	pl->r.run_status_unknown = was;
	return j;
}

static json_t *utc_json(time_t t)
{
	char buf[32];
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

/*
 * Whether a run could start now (RUNBOOK_NOW, or the clock): {"at", "inside",
 * "closes_at"} inside the window, {"at", "inside", "next_open"} outside it
 * (null when it does not open in the next 5 years).
 */
static json_t *window_now(const struct rb_window *w)
{
	time_t now = (time_t)rb_now();
	int inside = rb_window_contains(w, now);
	time_t t = inside ? rb_window_close(w, now) : rb_window_next_open(w, now);
	return json_pack("{s:o, s:b, s:o}", "at", utc_json(now), "inside", inside,
			 inside ? "closes_at" : "next_open", t < 0 ? json_null() : utc_json(t));
}

static json_t *header_json(struct rb_runbook *rb)
{
	char hex[65];
	rb_sha256_hex(rb->src, rb->srclen, hex);
	json_t *h = json_pack("{s:s, s:s, s:I, s:s}", "name", rb->name, "file", rb->file,
			      "version", (json_int_t)rb->version, "sha256", hex);
	if (rb->description)
		json_object_set_new(h, "description", json_string(rb->description));
	if (rb->tags)
		json_object_set_new(h, "tags", rb_node_to_json(rb->tags));
	json_object_set_new(h, "lock", rb->lock ? json_string(rb->lock) : json_null());
	json_object_set_new(h, "schedule", rb->schedule ? json_string(rb->schedule) : json_null());
	if (rb->schedule)
		json_object_set_new(h, "schedule_timezone", json_string(rb->schedule_tz));
	if (rb->has_window) {
		char words[RB_WINDOW_DAY_WORDS][6];
		size_t nw = rb_window_day_words(&rb->window, words);
		json_t *d = json_array();
		for (size_t i = 0; i < nw; i++)
			json_array_append_new(d, json_string(words[i]));
		char start[24], end[24];
		snprintf(start, sizeof(start), "%02d:%02d", rb->window.start / 60,
			 rb->window.start % 60);
		snprintf(end, sizeof(end), "%02d:%02d", rb->window.end / 60, rb->window.end % 60);
		json_object_set_new(h, "window", json_pack("{s:s, s:s, s:o, s:s, s:o}", "start",
							   start, "end", end, "days", d, "timezone",
							   rb->window.timezone, "now",
							   window_now(&rb->window)));
	} else {
		json_object_set_new(h, "window", json_null());
	}
	json_object_set_new(h, "timeout", duration_json(rb->timeout_ms));
	json_object_set_new(h, "rollback", json_boolean(rb->rollback));
	return h;
}

/* Set name = value (JSON) on the table at idx, as Lua. */
static int set_field(lua_State *L, int idx, const char *name, const json_t *v)
{
	if (rb_lua_push_json(L, v) < 0)
		return -1;
	lua_setfield(L, idx, name);
	return 0;
}

int rb_plan_scope(struct rb_runbook *rb, json_t *params, struct rb_luabox *box,
		  struct rb_diags *d, json_t **vars_out)
{
	lua_State *L = rb_luabox_state(box);
	rb_luabox_push_scope(box);
	int scope = lua_gettop(L);

	if (rb_lua_push_json(L, params) < 0) {
		lua_settop(L, scope - 1);
		rb_error_pos(d, 0, 0, "params do not fit in the Lua memory limit");
		return 0;
	}
	rb_luabox_readonly(L);
	rb_luabox_set(L, scope, "params");
	lua_createtable(L, 0, 4);
	lua_pushliteral(L, "plan");
	lua_setfield(L, -2, "id");
	lua_pushliteral(L, "running");
	lua_setfield(L, -2, "status");
	lua_pushboolean(L, 1);
	lua_setfield(L, -2, "dry_run");
	lua_pushinteger(L, (lua_Integer)rb_now());
	lua_setfield(L, -2, "started_at");
	rb_luabox_readonly(L);
	rb_luabox_set(L, scope, "run");
	lua_newtable(L);
	int vars = lua_gettop(L);
	lua_pushvalue(L, vars);
	rb_luabox_readonly(L);
	rb_luabox_set(L, scope, "vars");

	struct rb_render r = {.rb = rb, .box = box, .scope = scope, .ms = RB_EXPR_MS_DEFAULT,
			      .d = d};
	json_t *vj = json_object();
	for (size_t i = 0; rb && i < rb->nvars; i++) {
		const struct rb_var *v = &rb->vars[i];
		json_t *x = v->secret ? json_string(RB_SECRET_MASK) : rb_render_node(&r, v->value);
		if (!x) {
			json_decref(vj);
			lua_settop(L, scope - 1);
			return 0;
		}
		/* A secret var stays unset in Lua: anything reading it shows ***. */
		if (!v->secret && set_field(L, vars, v->name, x) < 0) {
			rb_error_at(d, v->key, "var '%s' does not fit in the Lua memory limit",
				    v->name);
			json_decref(x);
			json_decref(vj);
			lua_settop(L, scope - 1);
			return 0;
		}
		json_object_set_new(vj, v->name, x);
	}
	lua_settop(L, scope);
	*vars_out = vj;
	return scope;
}

static json_t *stages_json(const struct rb_runbook *rb, enum rb_step_kind kind)
{
	size_t n;
	struct rb_step **order = rb_graph_order(rb, kind, &n);
	json_t *stages = json_array();
	for (size_t i = 0; i < n; i++) {
		while (json_array_size(stages) <= (size_t)order[i]->stage)
			json_array_append_new(stages, json_array());
		json_array_append_new(json_array_get(stages, (size_t)order[i]->stage),
				      json_string(order[i]->id));
	}
	free(order);
	return stages;
}

static json_t *plan_header(struct rb_runbook *rb, json_t *params, json_t *vars)
{
	json_t *h = json_object();
	json_object_set_new(h, "format", json_string("runbook-plan"));
	json_object_set_new(h, "format_version", json_integer(RB_PLAN_FORMAT_VERSION));
	json_object_set_new(h, "runbook", header_json(rb));
	json_object_set_new(h, "params", json_incref(params));
	json_object_set_new(h, "vars", json_incref(vars));
	json_t *secrets = json_array();
	for (size_t i = 0; i < rb->nsecrets; i++) {
		const struct rb_secret *s = &rb->secrets[i];
		json_array_append_new(secrets, json_pack("{s:s, s:s, s:s}", "name", s->name,
							 "from", s->env ? "env" : "file", "source",
							 s->env ? s->env : s->file));
	}
	json_object_set_new(h, "secrets", secrets);
	json_object_set_new(h, "stages", stages_json(rb, RB_MAIN));
	json_object_set_new(h, "on_failure", json_pack("{s:o}", "stages",
						       stages_json(rb, RB_ON_FAILURE)));
	return h;
}

/*
 * Steps are rendered one at a time and handed to the renderer, so that the
 * memory a plan takes does not grow with the number of steps.
 */
int rb_plan_write(struct rb_runbook *rb, json_t *params, const struct rb_plan_renderer *out,
		  void *ctx, struct rb_diags *d)
{
	return rb_plan_write_probed(rb, params, NULL, out, ctx, d);
}

int rb_plan_write_probed(struct rb_runbook *rb, json_t *params, const json_t *probed,
			 const struct rb_plan_renderer *out, void *ctx, struct rb_diags *d)
{
	int rc = -1;
	json_t *vars = NULL, *header = NULL;
	struct rb_luabox *box = rb_runbook_take_box(rb);
	if (!box)
		return rb_error_pos(d, 0, 0, "cannot create a Lua state");
	struct planner pl = {
		.rb = rb,
		.r = {.rb = rb, .box = box, .ms = RB_EXPR_MS_DEFAULT, .d = d},
		.skipped = json_object(),
		.probed = probed,
	};
	pl.r.scope = rb_plan_scope(rb, params, box, d, &vars);
	if (!pl.r.scope)
		goto out;
	if (probed) {
		lua_State *L = rb_luabox_state(box);
		if (rb_lua_push_json(L, probed) < 0) {
			rb_error_pos(d, 0, 0, "the probe's results do not fit in the Lua memory limit");
			goto out;
		}
		rb_luabox_readonly(L);
		rb_luabox_set(L, pl.r.scope, "steps");
		pl.r.step_known = probed_known;
		pl.r.ud = &pl;
	}
	header = plan_header(rb, params, vars);
	out->begin(ctx, header);
	for (int kind = RB_MAIN; kind <= RB_ON_FAILURE; kind++) {
		size_t n;
		struct rb_step **order = rb_graph_order(rb, (enum rb_step_kind)kind, &n);
		if (kind == RB_ON_FAILURE)
			out->section(ctx, json_object_get(json_object_get(header, "on_failure"),
							  "stages"));
		for (size_t i = 0; i < n; i++) {
			json_t *sj = step_json(&pl, order[i]);
			if (!sj) {
				free(order);
				goto out;
			}
			out->step(ctx, sj, i == 0 || order[i]->stage != order[i - 1]->stage);
			json_decref(sj);
		}
		free(order);
	}
	out->end(ctx);
	rc = 0;
out:
	json_decref(header);
	json_decref(vars);
	json_decref(pl.skipped);
	rb_luabox_free(box);
	return rc;
}
