/*
 * Turns values with expressions into JSON.  An expression is evaluated only
 * when everything it reads is known; otherwise it becomes a placeholder that
 * says what it waits for.  Nothing here prints; failures are diagnostics at
 * the expression's position.
 */
#include "render.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "luaquote.h"
#include "redact.h"
#include "shscan.h"
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
		/*
		 * YAML 1.2's: 0x1F hex, 0o17 octal, and 01234 decimal (strtoll's base 0
		 * read it as octal, 668, and 0o17 as 0).  One that does not fit 64 bits
		 * stays its digits, as written, rather than clamped to the largest.
		 */
		int base = !strncmp(n->str, "0x", 2) ? 16 : !strncmp(n->str, "0o", 2) ? 8 : 10;
		char *end;
		errno = 0;
		long long v = strtoll(base == 10 ? n->str : n->str + 2, &end, base);
		if (*end == '\0' && errno != ERANGE)
			return json_integer(v);
		return json_stringn(n->str, n->len);
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

int rb_approve_gate(const json_t *v, const char *id, char **prompt, const char **what)
{
	*prompt = NULL;
	switch (json_typeof(v)) {
	case JSON_STRING:
		if (!json_string_length(v)) {
			*what = "an empty string";
			return -1;
		}
		*prompt = rb_xstrdup(json_string_value(v));
		return 1;
	case JSON_TRUE:
		*prompt = rb_xasprintf("Run step '%s'?", id);
		return 1;
	case JSON_FALSE:
	case JSON_NULL:
		return 0;
	case JSON_INTEGER:
	case JSON_REAL:
		*what = "a number";
		return -1;
	case JSON_ARRAY:
		*what = "a list";
		return -1;
	default:
		*what = "a table";
		return -1;
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
	int secret = 0, item = 0, output = 0, status = 0;
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
		case RB_SC_RUN:
			status |= r->run_status_unknown && ref->name && !strcmp(ref->name, "status");
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
	else if (status)
		ph = rb_xstrdup("<known during the run>");
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
	if (t->whole) {
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
		rb_buf_add(&b, s, len);
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

/* --- commands: values as data ------------------------------------------------------- */

static int check_command(struct rb_runbook *rb, const struct rb_node *n, struct rb_diags *d,
			 int splices);

/* Where part p of n's template starts ("${{"), for a message. */
static int part_error(struct rb_render *r, const struct rb_node *n, const struct rb_tmpl_part *p,
		      struct rb_diags *d, const char *fmt, const char *what)
{
	int l, c;
	rb_runbook_pos(r->rb, n, p->off >= 3 ? p->off - 3 : p->off, &l, &c);
	return rb_error_pos(d, l, c, fmt, what);
}

/*
 * The variable that carries a value: RUNBOOK_PARAMS_NAMESPACE for
 * ${{ params.namespace }}, so that the command reads well; RUNBOOK_EXPR_N for
 * other expressions, and for a name taken by another value.
 */
static char *env_name(const struct rb_tmpl_part *p, const json_t *env, const char *value,
		      size_t *nexpr)
{
	const char *a = p->text, *e = p->text + p->len;
	while (a < e && isspace((unsigned char)*a))
		a++;
	while (e > a && isspace((unsigned char)e[-1]))
		e--;
	int path = a < e && e - a <= 48 && (isalpha((unsigned char)*a) || *a == '_');
	for (const char *q = a; path && q < e; q++)
		path = isalnum((unsigned char)*q) || *q == '_' || (*q == '.' && q + 1 < e && q[1] != '.');
	if (path) {
		char *name = rb_xasprintf("RUNBOOK_%.*s", (int)(e - a), a);
		for (char *q = name; *q; q++)
			*q = *q == '.' ? '_' : (char)toupper((unsigned char)*q);
		const json_t *was = json_object_get(env, name);
		if (!was || !strcmp(json_string_value(was), value))
			return name;
		free(name);
	}
	return rb_xasprintf("RUNBOOK_EXPR_%zu", ++*nexpr);
}

/* A reference to variable name that the shell reads as one word of data where it stands. */
static void put_ref(struct rb_buf *b, struct rb_shscan *sc, enum rb_sh_place at, const char *name)
{
	size_t from = b->len;
	if (at == RB_SH_PLAIN)
		rb_buf_printf(b, "\"${%s}\"", name);
	else if (at == RB_SH_SQUOTE)
		rb_buf_printf(b, "'\"${%s}\"'", name);
	else
		rb_buf_printf(b, "${%s}", name);
	rb_shscan_feed(sc, b->s + from, b->len - from);
}

/* Whether s[0, len) is an integer: digits, with a sign before them or not. */
static int is_integer(const char *s, size_t len)
{
	size_t i = len && (s[0] == '-' || s[0] == '+');
	if (i == len)
		return 0;
	for (; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/* Whether the redactor finds a secret (or a sensitive output) in s. */
static int holds_secret(const struct rb_render *r, const char *s, size_t len)
{
	if (!r->redactor)
		return 0;
	size_t m;
	char *red = rb_redact(r->redactor, s, len, &m);
	int differs = m != len || memcmp(red, s, len);
	free(red);
	return differs;
}

json_t *rb_render_command(struct rb_render *r, const struct rb_node *n)
{
	const struct rb_tmpl *t = n->tmpl;
	if (!t)
		return json_pack("{s:s%}", "command", n->str, n->len);
	lua_State *L = rb_luabox_state(r->box);
	struct rb_strv plan_secrets = {0};
	struct rb_strv *senv = r->secret_env ? r->secret_env : &plan_secrets;
	struct rb_shscan sc;
	struct rb_buf b;
	json_t *env = json_object();
	size_t nexpr = 0;
	int rc = 0;
	rb_shscan_init(&sc);
	rb_buf_init(&b);
	for (size_t i = 0; rc == 0 && i < t->nparts; i++) {
		const struct rb_tmpl_part *p = &t->parts[i];
		if (!p->is_expr) {
			rb_buf_add(&b, p->text, p->len);
			rb_shscan_feed(&sc, p->text, p->len);
			continue;
		}
		const char *why;
		enum rb_sh_place at = rb_shscan_place(&sc, &why);
		if (at == RB_SH_REFUSED) {
			rc = part_error(r, n, p, r->d, "a ${{ }} value cannot stand here, %s", why);
			break;
		}
		int secret = range_reads_secret(r->rb, t, p->off, p->off + p->len);
		char *ph = placeholder(r, t, p->off, p->off + p->len), *s = NULL, *name;
		size_t len = 0;
		if (ph) {
			s = ph;
			len = strlen(s);
		} else {
			if (eval_part(r, n, t, p) < 0) {
				rc = -1;
				break;
			}
			const char *raw = rb_luaquote_raw(L, -1, &len);
			if (raw) {      /* shell.raw(): spliced as shell text, as asked */
				size_t from = b.len;
				rb_buf_add(&b, raw, len);
				rb_shscan_feed(&sc, b.s + from, len);
				lua_pop(L, 1);
				continue;
			}
			char *err = NULL;
			s = rb_luabox_tostring(r->box, -1, &len, &err);
			lua_pop(L, 1);
			if (!s) {
				rc = part_error(r, n, p, r->d, "expression failed: %s", err);
				free(err);
				break;
			}
			if (memchr(s, 0, len)) {
				free(s);
				rc = part_error(r, n, p, r->d, "%s", "NUL character (\\0) from an "
						"expression in the command, which would end there");
				break;
			}
			secret |= holds_secret(r, s, len);
			/* bash evaluates a value inside $(( )) as arithmetic, commands in it too */
			if (at == RB_SH_ARITH && !is_integer(s, len)) {
				free(s);
				rc = part_error(r, n, p, r->d, "%s", "a value inside $(( )) must be an "
						"integer, which this is not");
				break;
			}
		}
		if (secret) {
			name = rb_xasprintf("RUNBOOK_SECRET_%zu", senv->n);
			rb_strv_push(senv, rb_xasprintf("%s=%s", name, s));
		} else {
			name = env_name(p, env, s, &nexpr);
			json_object_set_new(env, name, json_stringn(s, len));
		}
		put_ref(&b, &sc, at, name);
		free(name);
		free(s);
	}
	rb_strv_release(&plan_secrets);
	json_t *cmd = rc == 0 ? json_stringn(b.s ? b.s : "", b.len) : NULL;
	rb_buf_release(&b);
	if (rc == 0 && !cmd)
		rb_error_at(r->d, n, "the command is not valid UTF-8");
	if (!cmd) {
		json_decref(env);
		return NULL;
	}
	json_t *o = json_pack("{s:o}", "command", cmd);
	if (json_object_size(env))
		json_object_set_new(o, "env", env);
	else
		json_decref(env);
	return o;
}

/* A shell action's command: a string is a command as run: is; a list is argv. */
static const struct rb_node *shell_command(const struct rb_step *s)
{
	if (!s->action || strcmp(s->action->name, "shell") || !s->with || s->run || s->lua)
		return NULL;
	return rb_map_get(s->with, "command");
}

static const char secret_arg[] = "a secret would be in the arguments of the command, which "
				 "every user can read (/proc/PID/cmdline): pass it in env: or stdin:";

/* A command list an expression gave: words, none of them a secret. */
static int argv_ok(struct rb_render *r, const struct rb_node *n, json_t *argv)
{
	if (!json_array_size(argv))
		return rb_error_at(r->d, n, "the command is an empty list");
	const struct rb_tmpl_part *p = &n->tmpl->parts[0];
	if (range_reads_secret(r->rb, n->tmpl, p->off, p->off + p->len))
		return rb_error_at(r->d, n, "%s", secret_arg);
	size_t i;
	json_t *a;
	json_array_foreach(argv, i, a) {
		if (json_is_integer(a))         /* [sleep, 5] as a list written says it */
			json_array_set_new(argv, i, json_sprintf("%" JSON_INTEGER_FORMAT,
								   json_integer_value(a)));
		else if (json_is_real(a))
			json_array_set_new(argv, i, json_sprintf("%.17g", json_real_value(a)));
		a = json_array_get(argv, i);
		if (!json_is_string(a))
			return rb_error_at(r->d, n, "command word %zu is %s, not a string", i + 1,
					   json_is_null(a) ? "nil" : json_is_object(a) ? "a table"
					   : json_is_number(a) ? "a number" : "not text");
		if (holds_secret(r, json_string_value(a), json_string_length(a)))
			return rb_error_at(r->d, n, "%s", secret_arg);
	}
	return 0;
}

/* run: with its env: (the command's own variables win) and its shell:. */
static json_t *run_args(struct rb_render *r, const struct rb_step *s)
{
	json_t *o = rb_render_command(r, s->run);
	if (o && s->env) {
		json_t *env = rb_render_node(r, s->env);
		if (!env) {
			json_decref(o);
			return NULL;
		}
		json_t *cmd_env = json_object_get(o, "env");
		if (cmd_env)
			json_object_update(env, cmd_env);
		json_object_set_new(o, "env", env);
	}
	if (o && s->shell && strcmp(s->shell, "bash"))
		json_object_set_new(o, "shell", json_string(s->shell));
	return o;
}

json_t *rb_render_args(struct rb_render *r, const struct rb_step *s)
{
	if (s->run)
		return run_args(r, s);
	if (s->lua)
		return json_pack("{s:s%}", "code", s->lua->str, s->lua->len);
	if (!s->with)
		return json_object();
	const struct rb_node *cmd = shell_command(s);
	json_t *o = json_object(), *cmd_env = NULL;
	for (size_t i = 0; i < s->with->n; i++) {
		const struct rb_node *k = s->with->items[2 * i], *v = s->with->items[2 * i + 1];
		if (k->type != RB_SCALAR)
			continue;
		if (v == cmd && v->type == RB_SCALAR && v->tmpl && v->tmpl->whole) {
			/* command: ${{ EXPR }}: a list it gives is the argv, as a list written is */
			json_t *x = rb_render_node(r, v);
			if (!x)
				goto fail;
			if (json_is_array(x)) {
				if (argv_ok(r, v, x) < 0) {
					json_decref(x);
					goto fail;
				}
				json_object_set_new(o, "command", x);
				continue;
			}
			json_decref(x);
		}
		if (v == cmd && v->type == RB_SCALAR) {
			json_t *c = rb_render_command(r, v);
			if (!c)
				goto fail;
			json_object_set(o, "command", json_object_get(c, "command"));
			cmd_env = json_incref(json_object_get(c, "env"));
			json_decref(c);
			continue;
		}
		json_t *x = rb_render_node(r, v);
		if (!x)
			goto fail;
		json_object_set_new(o, k->str, x);
		if (v != cmd || v->type != RB_SEQ)
			continue;
		for (size_t j = 0; j < json_array_size(x); j++) {
			json_t *a = json_array_get(x, j);
			if (json_is_string(a) && holds_secret(r, json_string_value(a), json_string_length(a))) {
				rb_error_at(r->d, v->items[j < v->n ? j : 0], "%s", secret_arg);
				goto fail;
			}
		}
	}
	if (cmd_env) {  /* the command's variables win: its text refers to them */
		json_t *env = json_object_get(o, "env");
		if (json_is_object(env))
			json_object_update(env, cmd_env);
		else
			json_object_set(o, "env", cmd_env);
		json_decref(cmd_env);
	}
	return o;
fail:
	json_decref(cmd_env);
	json_decref(o);
	return NULL;
}

int rb_render_check_args(struct rb_runbook *rb, const struct rb_step *s, struct rb_diags *d,
			 int splices)
{
	const struct rb_node *cmd = s->run ? s->run : shell_command(s);
	if (cmd && cmd->type == RB_SEQ && !splices) {
		int rc = 0;
		for (size_t j = 0; j < cmd->n; j++)
			if (cmd->items[j]->tmpl && rb_tmpl_reads_secret(rb, cmd->items[j]->tmpl))
				rc = rb_error_at(d, cmd->items[j], "%s", secret_arg);
		return rc;
	}
	return cmd && cmd->type == RB_SCALAR ? check_command(rb, cmd, d, splices) : 0;
}

static int check_command(struct rb_runbook *rb, const struct rb_node *n, struct rb_diags *d,
			 int splices)
{
	const struct rb_tmpl *t = n->tmpl;
	struct rb_shscan sc;
	struct rb_buf ref;
	int rc = 0;
	if (!t)
		return 0;
	rb_shscan_init(&sc);
	rb_buf_init(&ref);
	for (size_t i = 0; i < t->nparts; i++) {
		const struct rb_tmpl_part *p = &t->parts[i];
		int l, c;
		rb_runbook_pos(rb, n, p->off >= 3 ? p->off - 3 : p->off, &l, &c);
		if (!p->is_expr) {
			rb_shscan_feed(&sc, p->text, p->len);
			continue;
		}
		const char *why;
		enum rb_sh_place at = rb_shscan_place(&sc, &why);
		if (at == RB_SH_REFUSED) {
			if (!splices)
				rc = rb_error_pos(d, l, c, "a ${{ }} value cannot stand here, %s", why);
			continue;
		}
		/* A splice is shell text of unknown shape: what follows is read as it is. */
		if (memmem(p->text, p->len, "shell.raw", 9)) {
			if (splices)
				rb_warning_pos(d, l, c, "shell.raw splices a value into the command as "
					       "shell code: make sure it can only hold what you trust "
					       "(words made by shell.quote or shell.join)");
			continue;
		}
		put_ref(&ref, &sc, at, "V");     /* read on as the command will be */
	}
	rb_buf_release(&ref);
	return rc;
}
