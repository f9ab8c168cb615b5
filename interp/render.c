/*
 * Turns values with expressions into JSON.  An expression is evaluated only
 * when everything it reads is known; otherwise it becomes a placeholder that
 * says what it waits for.  Nothing here prints; failures are diagnostics at
 * the expression's position.
 */
#include "render.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "util.h"

json_t *rb_node_to_json(const struct rb_node *n)
{
	switch (n->type) {
	case RB_SEQ: {
		json_t *a = json_array();
		for (size_t i = 0; i < n->n; i++)
			json_array_append_new(a, rb_node_to_json(n->items[i]));
		return a;
	}
	case RB_MAP: {
		json_t *o = json_object();
		for (size_t i = 0; i < n->n; i++)
			if (n->items[2 * i]->type == RB_SCALAR)
				json_object_set_new(o, n->items[2 * i]->str,
						    rb_node_to_json(n->items[2 * i + 1]));
		return o;
	}
	default:
		break;
	}
	switch (rb_scalar_kind(n)) {
	case RB_K_NULL:
		return json_null();
	case RB_K_BOOL:
		return json_boolean(n->str[0] == 't' || n->str[0] == 'T');
	case RB_K_INT: {
		char *end;
		long long v = strtoll(n->str, &end, 0);
		if (*end == '\0')
			return json_integer(v);
		return json_real(strtod(n->str, NULL));
	}
	case RB_K_FLOAT:
		if (strstr(n->str, "inf") || strstr(n->str, "Inf") || strstr(n->str, "INF") ||
		    strstr(n->str, "nan") || strstr(n->str, "NaN") || strstr(n->str, "NAN"))
			return json_string(n->str);     /* JSON has neither */
		return json_real(strtod(n->str, NULL));
	default:
		return json_stringn(n->str, n->len);
	}
}

int rb_tmpl_reads_secret(const struct rb_runbook *rb, const struct rb_tmpl *t)
{
	for (size_t i = 0; i < t->nrefs; i++) {
		const struct rb_ref *r = &t->refs[i];
		if (r->scope == RB_SC_SECRETS)
			return 1;
		if (r->scope == RB_SC_VARS) {
			if (!r->name)
				return 1;       /* the whole vars table */
			for (size_t j = 0; j < rb->nvars; j++)
				if (rb->vars[j].secret && !strcmp(rb->vars[j].name, r->name))
					return 1;
		}
	}
	return 0;
}

/* Whether the references inside [lo, hi) read a secret. */
static int range_reads_secret(const struct rb_runbook *rb, const struct rb_tmpl *t, size_t lo,
			      size_t hi)
{
	for (size_t i = 0; i < t->nrefs; i++) {
		const struct rb_ref *ref = &t->refs[i];
		struct rb_tmpl one = {.refs = (struct rb_ref *)ref, .nrefs = 1};
		if (ref->off >= lo && ref->off < hi && rb_tmpl_reads_secret(rb, &one))
			return 1;
	}
	return 0;
}

/*
 * The placeholder for code that cannot be evaluated yet, or NULL when it can.
 * refs are those of the whole template; only those inside [lo, hi) count.
 */
static char *placeholder(struct rb_render *r, const struct rb_tmpl *t, size_t lo, size_t hi)
{
	struct rb_buf steps;
	rb_buf_init(&steps);
	int secret = 0, item = 0, output = 0;
	for (size_t i = 0; i < t->nrefs; i++) {
		const struct rb_ref *ref = &t->refs[i];
		if (ref->off < lo || ref->off >= hi)
			continue;
		switch (ref->scope) {
		case RB_SC_STEPS: {
			struct rb_step *s = ref->name ? rb_runbook_step(r->rb, ref->name) : NULL;
			if (!s || (r->step_known && r->step_known(r->ud, s->index)))
				break;
			/* Each step once, in order of first mention. */
			size_t k;
			for (k = 0; k < i; k++)
				if (t->refs[k].scope == RB_SC_STEPS && t->refs[k].off >= lo &&
				    t->refs[k].off < hi && t->refs[k].name &&
				    !strcmp(t->refs[k].name, s->id))
					break;
			if (k == i)
				rb_buf_printf(&steps, "%s%s", steps.len ? ", " : "", s->id);
			break;
		}
		case RB_SC_SECRETS:
			secret |= !r->secrets_known;
			break;
		case RB_SC_VARS: {
			struct rb_tmpl one = {.refs = (struct rb_ref *)ref, .nrefs = 1};
			secret |= !r->secrets_known && rb_tmpl_reads_secret(r->rb, &one);
			break;
		}
		case RB_SC_ITEM:
			item |= !r->item_known;
			break;
		case RB_SC_OUTPUT:
			output |= !r->output_known;
			break;
		default:
			break;
		}
	}
	char *ph = NULL;
	if (steps.len)
		ph = rb_xasprintf("<known after %s>", steps.s);
	else if (secret)
		ph = rb_xstrdup(RB_SECRET_MASK);
	else if (output)
		ph = rb_xstrdup("<output>");
	else if (item)
		ph = rb_xstrdup("<each item>");
	rb_buf_release(&steps);
	return ph;
}

static int eval_part(struct rb_render *r, const struct rb_node *n, const struct rb_tmpl *t,
		     const struct rb_tmpl_part *p)
{
	char *err = NULL;
	int line = 0;
	if (rb_luabox_eval(r->box, r->scope, p->text, p->len, !t->chunk, r->ms, &err, &line) == 0)
		return 0;
	int l, c;
	rb_runbook_pos(r->rb, n, t->chunk || p->off < 3 ? p->off : p->off - 3, &l, &c);
	rb_error_pos(r->d, l, c, "expression failed: %s", err);
	free(err);
	return -1;
}

static char *part_string(struct rb_render *r, const struct rb_node *n, const struct rb_tmpl *t,
			 const struct rb_tmpl_part *p, size_t *len);

static json_t *render_scalar(struct rb_render *r, const struct rb_node *n)
{
	const struct rb_tmpl *t = n->tmpl;
	lua_State *L = rb_luabox_state(r->box);
	/* A run: command is always text, its secrets moved out (render.h). */
	if (t->whole && !r->secret_env) {
		const struct rb_tmpl_part *p = &t->parts[0];
		char *ph = placeholder(r, t, 0, (size_t)-1);
		if (ph) {
			json_t *j = json_string(ph);
			free(ph);
			return j;
		}
		if (eval_part(r, n, t, p) < 0)
			return NULL;
		char *err = NULL;
		json_t *j = rb_lua_to_json(L, -1, &err);
		lua_pop(L, 1);
		if (!j) {
			int l, c;
			rb_runbook_pos(r->rb, n, p->off, &l, &c);
			rb_error_pos(r->d, l, c, "expression value: %s", err);
			free(err);
		}
		return j;
	}
	struct rb_buf b;
	rb_buf_init(&b);
	for (size_t i = 0; i < t->nparts; i++) {
		const struct rb_tmpl_part *p = &t->parts[i];
		if (!p->is_expr) {
			rb_buf_add(&b, p->text, p->len);
			continue;
		}
		char *ph = placeholder(r, t, p->off, p->off + p->len);
		if (ph) {
			rb_buf_puts(&b, ph);
			free(ph);
			continue;
		}
		size_t len;
		char *s = part_string(r, n, t, p, &len);
		if (!s) {
			rb_buf_release(&b);
			return NULL;
		}
		if (r->secret_env && range_reads_secret(r->rb, t, p->off, p->off + p->len)) {
			size_t k = r->secret_env->n;
			/* An environment variable ends at a NUL: the command would get part of it. */
			if (memchr(s, '\0', len)) {
				int l, c;
				rb_runbook_pos(r->rb, n, p->off >= 3 ? p->off - 3 : p->off, &l, &c);
				rb_error_pos(r->d, l, c, "a secret value holding a NUL byte cannot reach "
					     "a command (its environment would cut it there)");
				free(s);
				rb_buf_release(&b);
				return NULL;
			}
			rb_strv_push(r->secret_env, rb_xasprintf("RUNBOOK_SECRET_%zu=%s", k, s));
			rb_buf_printf(&b, "${RUNBOOK_SECRET_%zu}", k);
		} else {
			rb_buf_add(&b, s, len);
		}
		free(s);
	}
	json_t *j = json_stringn(b.s ? b.s : "", b.len);
	rb_buf_release(&b);
	if (!j)
		rb_error_at(r->d, n, "interpolated value is not valid UTF-8");
	return j;
}

/* Evaluate part p to a string (tostring), or NULL with an error reported. */
static char *part_string(struct rb_render *r, const struct rb_node *n, const struct rb_tmpl *t,
			 const struct rb_tmpl_part *p, size_t *len)
{
	if (eval_part(r, n, t, p) < 0)
		return NULL;
	char *err = NULL;
	char *s = rb_luabox_tostring(r->box, -1, len, &err);
	lua_pop(rb_luabox_state(r->box), 1);
	if (!s) {
		int l, c;
		rb_runbook_pos(r->rb, n, p->off >= 3 ? p->off - 3 : p->off, &l, &c);
		rb_error_pos(r->d, l, c, "expression failed: %s", err);
		free(err);
	}
	return s;
}

json_t *rb_render_node(struct rb_render *r, const struct rb_node *n)
{
	switch (n->type) {
	case RB_SEQ: {
		json_t *a = json_array();
		for (size_t i = 0; i < n->n; i++) {
			json_t *v = rb_render_node(r, n->items[i]);
			if (!v) {
				json_decref(a);
				return NULL;
			}
			json_array_append_new(a, v);
		}
		return a;
	}
	case RB_MAP: {
		json_t *o = json_object();
		for (size_t i = 0; i < n->n; i++) {
			if (n->items[2 * i]->type != RB_SCALAR)
				continue;
			json_t *v = rb_render_node(r, n->items[2 * i + 1]);
			if (!v) {
				json_decref(o);
				return NULL;
			}
			json_object_set_new(o, n->items[2 * i]->str, v);
		}
		return o;
	}
	default:
		return n->tmpl ? render_scalar(r, n) : rb_node_to_json(n);
	}
}
