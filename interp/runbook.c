/*
 * The loader, top half: the runbook's own keys (name, params, secrets, vars,
 * schedule, window ...), the shared checking helpers, and source positions.
 * Steps are loaded by step.c, the graph by graph.c.  Reports every problem it
 * finds rather than stopping at the first.
 */
#include "runbook.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "lint.h"
#include "load.h"
#include "redact.h"
#include "util.h"

static const char *const top_keys[] = {
	"runbook", "version", "description", "tags", "params", "secrets", "vars",
	"defaults", "lock", "schedule", "window", "timeout", "rollback", "steps",
	"on_failure", "redact", "lint", NULL,
};
static const char *const param_keys[] = {
	"type", "description", "default", "required", "enum", "min", "max", "env", NULL,
};
static const char *const secret_keys[] = {"env", "file", "description", NULL};
static const char *const defaults_keys[] = {"timeout", "retry", NULL};
static const char *const retry_keys[] = {"attempts", "delay", "backoff", "max_delay", NULL};
static const char *const redact_keys[] = {"pii", "patterns", NULL};
static const char *const lua_keywords[] = {
	"and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto",
	"if", "in", "local", "nil", "not", "or", "repeat", "return", "then", "true",
	"until", "while", NULL,
};

/* --- checking helpers ------------------------------------------------------- */

int rb_load_key(struct loader *l, const struct rb_node *k, const char *const *keys,
		size_t nkeys, const char *what)
{
	if (k->type != RB_SCALAR)
		return -1;      /* reported by the YAML layer */
	for (size_t j = 0; j < nkeys; j++)
		if (!strcmp(k->str, keys[j]))
			return (int)j;
	const char *s = rb_suggest(k->str, keys, nkeys);
	if (s)
		return rb_error_at(l->d, k, "unknown %s key '%s' (did you mean '%s'?)", what,
				   k->str, s);
	return rb_error_at(l->d, k, "unknown %s key '%s'", what, k->str);
}

int rb_load_keys(struct loader *l, const struct rb_node *map, const char *const *keys,
		 const char *what)
{
	int rc = 0;
	size_t nkeys = 0;
	while (keys[nkeys])
		nkeys++;
	for (size_t i = 0; i < map->n; i++)
		if (map->items[2 * i]->type == RB_SCALAR &&
		    rb_load_key(l, map->items[2 * i], keys, nkeys, what) < 0)
			rc = -1;
	return rc;
}

int rb_load_string(struct loader *l, const struct rb_node *n, const char **out)
{
	if (n->type != RB_SCALAR || rb_scalar_kind(n) == RB_K_NULL)
		return rb_error_at(l->d, n, "expected a string, got %s", rb_node_kind_name(n));
	*out = n->str;
	return 0;
}

int rb_load_bool(struct loader *l, const struct rb_node *n, int *out)
{
	if (n->type != RB_SCALAR || rb_scalar_kind(n) != RB_K_BOOL)
		return rb_error_at(l->d, n, "expected true or false, got %s",
				   rb_node_kind_name(n));
	*out = n->str[0] == 't' || n->str[0] == 'T';
	return 0;
}

int rb_load_duration(struct loader *l, const struct rb_node *n, int64_t *out)
{
	char *why = NULL;
	if (!rb_value_fits(n, RB_T_DURATION, &why)) {
		rb_error_at(l->d, n, "%s", why);
		free(why);
		return -1;
	}
	const char *w;
	return rb_duration_parse(n->str, out, &w);
}

static int is_keyword(const char *s)
{
	for (const char *const *k = lua_keywords; *k; k++)
		if (!strcmp(s, *k))
			return 1;
	return 0;
}

/* Names that expressions use after a dot: [a-z_][a-z0-9_]*, not a keyword. */
int rb_load_ident(struct loader *l, const struct rb_node *n, const char *what)
{
	const char *s = NULL;
	if (rb_load_string(l, n, &s) < 0)
		return -1;
	int ok = (islower((unsigned char)s[0]) || s[0] == '_') && strlen(s) <= RB_MAX_NAME;
	for (const char *p = s; ok && *p; p++)
		ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_';
	if (!ok) {
		char fix[RB_MAX_NAME + 1];
		size_t i;
		for (i = 0; s[i] && i < RB_MAX_NAME; i++)
			fix[i] = isalnum((unsigned char)s[i]) ? (char)tolower((unsigned char)s[i])
							      : '_';
		fix[i] = '\0';
		if (strlen(s) > RB_MAX_NAME)
			return rb_error_at(l->d, n, "%s '%.20s...' is longer than %d characters",
					   what, s, RB_MAX_NAME);
		if (isdigit((unsigned char)fix[0]) || !fix[0])
			return rb_error_at(l->d, n, "invalid %s '%s': start with a lower-case "
					   "letter or '_', then letters, digits and '_'", what, s);
		return rb_error_at(l->d, n, "invalid %s '%s': use lower-case letters, digits "
				   "and '_' (such as '%s')", what, s, fix);
	}
	if (is_keyword(s))
		return rb_error_at(l->d, n, "invalid %s '%s': it is a Lua keyword", what, s);
	return 0;
}

int rb_load_retry(struct loader *l, const struct rb_node *n, struct rb_retry *r)
{
	if (n->type != RB_MAP)
		return rb_error_at(l->d, n, "retry must be a mapping with 'attempts', 'delay', "
				   "'backoff' and 'max_delay', not %s", rb_node_kind_name(n));
	int rc = rb_load_keys(l, n, retry_keys, "retry");
	for (size_t i = 0; i < n->n; i++) {
		const struct rb_node *k = n->items[2 * i], *v = n->items[2 * i + 1];
		if (!strcmp(k->str, "attempts")) {
			if (v->type != RB_SCALAR || rb_scalar_kind(v) != RB_K_INT ||
			    strtol(v->str, NULL, 0) < 1 || strtol(v->str, NULL, 0) > 1000)
				rc = rb_error_at(l->d, v, "retry attempts must be an integer "
						 "from 1 to 1000");
			else
				r->attempts = strtol(v->str, NULL, 0);
		} else if (!strcmp(k->str, "delay")) {
			rc |= rb_load_duration(l, v, &r->delay_ms);
		} else if (!strcmp(k->str, "max_delay")) {
			rc |= rb_load_duration(l, v, &r->max_delay_ms);
		} else if (!strcmp(k->str, "backoff")) {
			if (v->type != RB_SCALAR || (strcmp(v->str, "fixed") &&
						     strcmp(v->str, "exponential")))
				rc = rb_error_at(l->d, v, "retry backoff must be 'fixed' or "
						 "'exponential'");
			else
				r->exponential = v->str[0] == 'e';
		}
	}
	return rc ? -1 : 0;
}

/* --- positions ---------------------------------------------------------------- */

static void build_lines(struct rb_runbook *rb)
{
	size_t cap = 0;
	rb_grow(&rb->lines, &cap, 1, sizeof(*rb->lines));
	rb->lines[rb->nlines++] = 0;
	for (size_t i = 0; i < rb->srclen; i++)
		if (rb->src[i] == '\n') {
			rb_grow(&rb->lines, &cap, rb->nlines + 1, sizeof(*rb->lines));
			rb->lines[rb->nlines++] = i + 1;
		}
}

static size_t byte_of(struct rb_runbook *rb, int line, int col)
{
	if (!rb->lines)
		build_lines(rb);
	if (line < 1 || (size_t)line > rb->nlines)
		return rb->srclen;
	size_t p = rb->lines[line - 1];
	for (int c = 1; c < col && p < rb->srclen; c++) {
		p++;
		while (p < rb->srclen && ((unsigned char)rb->src[p] & 0xC0) == 0x80)
			p++;
	}
	return p;
}

static void pos_of(struct rb_runbook *rb, size_t off, int *line, int *col)
{
	size_t lo = 0, hi = rb->nlines;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (rb->lines[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	*line = (int)lo + 1;
	int c = 1;
	for (size_t p = rb->lines[lo]; p < off; p++)
		if (((unsigned char)rb->src[p] & 0xC0) != 0x80)
			c++;
	*col = c;
}

/*
 * A scalar's text differs from its source (quotes, escapes, folding,
 * indentation), so find the source of text[off] by searching for the same
 * short needle, the same number of times, from the node's start.
 */
void rb_runbook_pos(struct rb_runbook *rb, const struct rb_node *n, size_t off, int *line,
		    int *col)
{
	*line = n->line;
	*col = n->col;
	if (n->type != RB_SCALAR || off > n->len)
		return;
	size_t nl = 0;
	while (off + nl < n->len && nl < 12 && n->str[off + nl] != '\n')
		nl++;
	if (nl == 0)
		return;
	const char *needle = n->str + off;
	size_t k = 0;
	for (const char *p = n->str; p < needle; p++)
		if (!memcmp(p, needle, nl))
			k++;
	size_t start = byte_of(rb, n->line, n->col);
	const char *s = rb->src + start, *end = rb->src + rb->srclen;
	for (;;) {
		const char *hit = memmem(s, (size_t)(end - s), needle, nl);
		if (!hit)
			return;
		if (k-- == 0) {
			pos_of(rb, (size_t)(hit - rb->src), line, col);
			return;
		}
		s = hit + 1;
	}
}

/* --- top-level sections ------------------------------------------------------- */

static int load_choices(struct loader *l, struct rb_param *p)
{
	const struct rb_node *e = p->choices;
	if (e->type != RB_SEQ || e->n == 0)
		return rb_error_at(l->d, e, "enum must be a non-empty list");
	int rc = 0;
	for (size_t i = 0; i < e->n; i++) {
		char *why = NULL;
		if (!rb_value_fits(e->items[i], p->type, &why)) {
			rc = rb_error_at(l->d, e->items[i], "enum value: %s", why);
			free(why);
		}
	}
	return rc;
}

static int scalar_in(const struct rb_node *v, const struct rb_node *list)
{
	for (size_t i = 0; i < list->n; i++)
		if (list->items[i]->type == RB_SCALAR && !strcmp(list->items[i]->str, v->str))
			return 1;
	return 0;
}

/* The numeric value of an integer, number or duration literal. */
static double numeric(const struct rb_node *n, enum rb_type t)
{
	if (t == RB_T_DURATION) {
		int64_t ms = 0;
		const char *w;
		rb_duration_parse(n->str, &ms, &w);
		return (double)ms;
	}
	return strtod(n->str, NULL);
}

static int env_name_ok(const char *s)
{
	if (!isalpha((unsigned char)*s) && *s != '_')
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return 0;
	return 1;
}

static int load_param(struct loader *l, const struct rb_node *key, const struct rb_node *v,
		      struct rb_param *p)
{
	static const char *const type_names[] = {
		"string", "integer", "number", "boolean", "duration", "list", "map", NULL,
	};
	p->key = key;
	p->name = key->str;
	int rc = rb_load_ident(l, key, "param name");
	if (v->type != RB_MAP)
		return rb_error_at(l->d, v, "param '%s' must be a mapping such as "
				   "{type: string}, not %s", p->name, rb_node_kind_name(v));
	rc |= rb_load_keys(l, v, param_keys, "param");
	const struct rb_node *t = rb_map_get(v, "type");
	if (!t)
		return rb_error_at(l->d, v, "param '%s' has no 'type' (string, integer, number, "
				   "boolean, duration, list or map)", p->name);
	size_t i;
	for (i = 0; type_names[i]; i++)
		if (t->type == RB_SCALAR && !strcmp(t->str, type_names[i]))
			break;
	if (!type_names[i]) {
		const char *s = t->type == RB_SCALAR ? rb_suggest(t->str, type_names, 7) : NULL;
		if (s)
			return rb_error_at(l->d, t, "unknown param type '%s' (did you mean '%s'?)",
					   t->str, s);
		return rb_error_at(l->d, t, "unknown param type%s%s%s: expected string, integer, "
				   "number, boolean, duration, list or map",
				   t->type == RB_SCALAR ? " '" : "",
				   t->type == RB_SCALAR ? t->str : "", t->type == RB_SCALAR ? "'" : "");
	}
	p->type = (enum rb_type)i;
	for (size_t j = 0; j < v->n; j++) {
		const struct rb_node *k = v->items[2 * j], *x = v->items[2 * j + 1];
		if (!strcmp(k->str, "description"))
			rc |= rb_load_string(l, x, &p->description);
		else if (!strcmp(k->str, "required"))
			rc |= rb_load_bool(l, x, &p->required);
		else if (!strcmp(k->str, "default"))
			p->def = x;
		else if (!strcmp(k->str, "enum"))
			p->choices = x;
		else if (!strcmp(k->str, "min"))
			p->min = x;
		else if (!strcmp(k->str, "max"))
			p->max = x;
		else if (!strcmp(k->str, "env") && rb_load_string(l, x, &p->env) == 0 &&
			 !env_name_ok(p->env))
			rc = rb_error_at(l->d, x, "invalid environment variable name '%s'",
					 p->env);
	}
	if (p->required && p->def)
		rc = rb_error_at(l->d, p->def, "param '%s' has a default, so it cannot be "
				 "required", p->name);
	char *why = NULL;
	if (p->def && !rb_value_fits(p->def, p->type, &why)) {
		rc = rb_error_at(l->d, p->def, "default of param '%s': %s", p->name, why);
		free(why);
		why = NULL;
		p->def = NULL;
	}
	if (p->choices && load_choices(l, p) < 0) {
		rc = -1;
		p->choices = NULL;
	}
	if (p->choices && p->def && p->def->type == RB_SCALAR && !scalar_in(p->def, p->choices))
		rc = rb_error_at(l->d, p->def, "default '%s' of param '%s' is not one of its "
				 "enum values", p->def->str, p->name);
	const struct rb_node *bounds[2] = {p->min, p->max};
	int numeric_type = p->type == RB_T_INTEGER || p->type == RB_T_NUMBER ||
			   p->type == RB_T_DURATION;
	for (int b = 0; b < 2; b++) {
		if (!bounds[b])
			continue;
		if (!numeric_type) {
			rc = rb_error_at(l->d, bounds[b], "%s applies only to integer, number and "
					 "duration params", b ? "max" : "min");
			bounds[b] = NULL;
		} else if (!rb_value_fits(bounds[b], p->type, &why)) {
			rc = rb_error_at(l->d, bounds[b], "%s of param '%s': %s", b ? "max" : "min",
					 p->name, why);
			free(why);
			why = NULL;
			bounds[b] = NULL;
		}
	}
	p->min = bounds[0];
	p->max = bounds[1];
	if (p->min && p->max && numeric(p->min, p->type) > numeric(p->max, p->type))
		rc = rb_error_at(l->d, p->max, "max of param '%s' is below its min", p->name);
	if (p->def && p->min && numeric(p->def, p->type) < numeric(p->min, p->type))
		rc = rb_error_at(l->d, p->def, "default of param '%s' is below its min %s",
				 p->name, p->min->str);
	if (p->def && p->max && numeric(p->def, p->type) > numeric(p->max, p->type))
		rc = rb_error_at(l->d, p->def, "default of param '%s' is above its max %s",
				 p->name, p->max->str);
	return rc;
}

static int load_params(struct loader *l, const struct rb_node *n)
{
	struct rb_runbook *rb = l->rb;
	if (n->type != RB_MAP)
		return rb_error_at(l->d, n, "params must be a mapping of names to params, not %s",
				   rb_node_kind_name(n));
	rb->params = rb_arena_alloc(&rb->doc.arena, (n->n ? n->n : 1) * sizeof(*rb->params));
	int rc = 0;
	for (size_t i = 0; i < n->n; i++) {
		if (n->items[2 * i]->type != RB_SCALAR)
			continue;
		rc |= load_param(l, n->items[2 * i], n->items[2 * i + 1],
				 &rb->params[rb->nparams++]);
	}
	return rc;
}

static int load_secrets(struct loader *l, const struct rb_node *n)
{
	struct rb_runbook *rb = l->rb;
	if (n->type != RB_MAP)
		return rb_error_at(l->d, n, "secrets must be a mapping of names to sources, "
				   "not %s", rb_node_kind_name(n));
	rb->secrets = rb_arena_alloc(&rb->doc.arena, (n->n ? n->n : 1) * sizeof(*rb->secrets));
	int rc = 0;
	for (size_t i = 0; i < n->n; i++) {
		const struct rb_node *k = n->items[2 * i], *v = n->items[2 * i + 1];
		if (k->type != RB_SCALAR)
			continue;
		struct rb_secret *s = &rb->secrets[rb->nsecrets++];
		s->key = k;
		s->name = k->str;
		rc |= rb_load_ident(l, k, "secret name");
		if (v->type != RB_MAP) {
			rc = rb_error_at(l->d, v, "secret '%s' must be {env: NAME} or "
					 "{file: PATH}, not %s", s->name, rb_node_kind_name(v));
			continue;
		}
		rc |= rb_load_keys(l, v, secret_keys, "secret");
		const struct rb_node *e = rb_map_get(v, "env"), *f = rb_map_get(v, "file"),
				     *d = rb_map_get(v, "description");
		if (e && f)
			rc = rb_error_at(l->d, f, "secret '%s' has both 'env' and 'file': give "
					 "one", s->name);
		else if (!e && !f)
			rc = rb_error_at(l->d, v, "secret '%s' needs 'env' or 'file'", s->name);
		if (e && rb_load_string(l, e, &s->env) == 0 && !env_name_ok(s->env))
			rc = rb_error_at(l->d, e, "invalid environment variable name '%s'",
					 s->env);
		if (f)
			rc |= rb_load_string(l, f, &s->file);
		if (d)
			rc |= rb_load_string(l, d, &s->description);
	}
	return rc;
}

static int load_vars(struct loader *l, const struct rb_node *n)
{
	struct rb_runbook *rb = l->rb;
	if (n->type != RB_MAP)
		return rb_error_at(l->d, n, "vars must be a mapping of names to values, not %s",
				   rb_node_kind_name(n));
	rb->vars = rb_arena_alloc(&rb->doc.arena, (n->n ? n->n : 1) * sizeof(*rb->vars));
	int rc = 0;
	/* All names first, so that using a later var says so. */
	for (size_t i = 0; i < n->n; i++) {
		const struct rb_node *k = n->items[2 * i];
		if (k->type != RB_SCALAR)
			continue;
		struct rb_var *var = &rb->vars[rb->nvars++];
		var->key = k;
		var->name = k->str;
		var->value = n->items[2 * i + 1];
		rc |= rb_load_ident(l, k, "var name");
	}
	for (size_t i = 0; i < rb->nvars; i++) {
		struct rb_var *var = &rb->vars[i];
		struct scope_rules sr = {
			.nvars = i,
			.allowed = 1u << RB_SC_PARAMS | 1u << RB_SC_VARS | 1u << RB_SC_SECRETS |
				   1u << RB_SC_ENV | 1u << RB_SC_RUN,
			.where = "in vars",
			.uses_secret = &var->secret,
		};
		rc |= rb_load_value(l, var->value, &sr);
	}
	return rc;
}

static int load_defaults(struct loader *l, const struct rb_node *n)
{
	if (n->type != RB_MAP)
		return rb_error_at(l->d, n, "defaults must be a mapping with 'timeout' and "
				   "'retry', not %s", rb_node_kind_name(n));
	int rc = rb_load_keys(l, n, defaults_keys, "defaults");
	const struct rb_node *t = rb_map_get(n, "timeout"), *r = rb_map_get(n, "retry");
	if (t)
		rc |= rb_load_duration(l, t, &l->rb->default_timeout_ms);
	if (r)
		rc |= rb_load_retry(l, r, &l->rb->default_retry);
	return rc;
}

/*
 * redact: {pii: BOOL, patterns: {NAME: ERE}}.  Each expression is compiled
 * here by the redactor that will use it, so a run never meets a bad one.
 */
static int load_redact(struct loader *l, const struct rb_node *n)
{
	struct rb_runbook *rb = l->rb;
	if (n->type != RB_MAP)
		return rb_error_at(l->d, n, "redact must be a mapping with 'pii' and 'patterns', "
				   "not %s", rb_node_kind_name(n));
	int rc = rb_load_keys(l, n, redact_keys, "redact");
	const struct rb_node *pii = rb_map_get(n, "pii"), *pats = rb_map_get(n, "patterns");
	if (pii)
		rc |= rb_load_bool(l, pii, &rb->redact_pii);
	if (!pats)
		return rc;
	if (pats->type != RB_MAP)
		return rb_error_at(l->d, pats, "redact patterns must be a mapping of names to "
				   "regular expressions, not %s", rb_node_kind_name(pats));
	rb->redact_patterns = rb_arena_alloc(&rb->doc.arena, (pats->n ? pats->n : 1) *
					     sizeof(*rb->redact_patterns));
	struct rb_redactor *check = rb_redactor_new();
	for (size_t i = 0; i < pats->n; i++) {
		const struct rb_node *k = pats->items[2 * i], *v = pats->items[2 * i + 1];
		const char *ere = NULL;
		if (k->type != RB_SCALAR)
			continue;
		size_t nl = strlen(k->str);
		if (!nl || nl > RB_REDACT_NAME_MAX ||
		    strspn(k->str, "abcdefghijklmnopqrstuvwxyz0123456789_-") != nl) {
			rc = rb_error_at(l->d, k, "invalid pattern name '%s': use 1 to %d of "
					 "a-z, 0-9, '_' and '-'", k->str, RB_REDACT_NAME_MAX);
			continue;
		}
		if (rb_load_string(l, v, &ere) < 0) {
			rc = -1;
			continue;
		}
		if (!*ere) {
			rc = rb_error_at(l->d, v, "pattern '%s' is empty", k->str);
			continue;
		}
		char *err = NULL;
		if (rb_redactor_add_pattern(check, k->str, ere, &err) < 0) {
			rc = rb_error_at(l->d, v, "invalid regular expression for %s", err);
			free(err);
			continue;
		}
		struct rb_redact_pattern *p = &rb->redact_patterns[rb->nredact_patterns++];
		p->name = k->str;
		p->ere = ere;
		p->key = k;
	}
	rb_redactor_free(check);
	return rc;
}

size_t rb_runbook_add_patterns(const struct rb_runbook *rb, struct rb_redactor *r)
{
	size_t n = 0;
	if (rb->redact_pii && rb_redactor_add_default_patterns(r) == 0)
		n += 2;
	for (size_t i = 0; i < rb->nredact_patterns; i++)
		n += rb_redactor_add_pattern(r, rb->redact_patterns[i].name,
					     rb->redact_patterns[i].ere, NULL) == 0;
	return n;
}

/* lint: {ignore: [ID...]}: the warnings of runbook lint it silences (docs/cli.md). */
int rb_load_lint(struct loader *l, const struct rb_node *n, const struct rb_node **out)
{
	static const char *const lint_keys[] = {"ignore", NULL};
	if (n->type != RB_MAP)
		return rb_error_at(l->d, n, "lint must be a mapping such as {ignore: [no-undo]}, "
				   "not %s", rb_node_kind_name(n));
	int rc = rb_load_keys(l, n, lint_keys, "lint");
	const struct rb_node *ig = rb_map_get(n, "ignore");
	if (ig && ig->type != RB_SEQ)
		return rb_error_at(l->d, ig, "lint ignore must be a list of warning ids such as "
				   "[no-undo], not %s", rb_node_kind_name(ig));
	for (size_t i = 0; ig && i < ig->n; i++) {
		const struct rb_node *id = ig->items[i];
		size_t k;
		for (k = 0; rb_lint_ids[k]; k++)
			if (id->type == RB_SCALAR && !strcmp(id->str, rb_lint_ids[k]))
				break;
		if (rb_lint_ids[k])
			continue;
		const char *s = id->type == RB_SCALAR ? rb_suggest(id->str, rb_lint_ids,
								   RB_LINT_COUNT) : NULL;
		if (s)
			rc = rb_error_at(l->d, id, "unknown lint warning '%s' (did you mean '%s'?)",
					 id->str, s);
		else
			rc = rb_error_at(l->d, id, "unknown lint warning%s%s%s (see 'runbook lint' "
					 "in docs/cli.md)", id->type == RB_SCALAR ? " '" : "",
					 id->type == RB_SCALAR ? id->str : "",
					 id->type == RB_SCALAR ? "'" : "");
	}
	*out = n;
	return rc;
}

static int load_name(struct loader *l, const struct rb_node *n)
{
	const char *s = NULL;
	if (rb_load_string(l, n, &s) < 0)
		return -1;
	int ok = (islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])) &&
		 strlen(s) <= RB_MAX_NAME;
	for (const char *p = s; ok && *p; p++)
		ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_' ||
		     *p == '-';
	if (!ok)
		return rb_error_at(l->d, n, "invalid runbook name '%s': use lower-case letters, "
				   "digits, '-' and '_', at most %d characters", s, RB_MAX_NAME);
	l->rb->name = s;
	return 0;
}

static int load_top(struct loader *l, const struct rb_node *k, const struct rb_node *v)
{
	struct rb_runbook *rb = l->rb;
	const char *key = k->str;
	if (!strcmp(key, "runbook"))
		return load_name(l, v);
	if (!strcmp(key, "version")) {
		if (v->type != RB_SCALAR || rb_scalar_kind(v) != RB_K_INT)
			return rb_error_at(l->d, v, "version must be the integer 1, not %s",
					   rb_node_kind_name(v));
		rb->version = strtol(v->str, NULL, 10);
		if (rb->version != 1)
			return rb_error_at(l->d, v, "unsupported format version %s (this runbook "
					   "supports version 1)", v->str);
		return 0;
	}
	if (!strcmp(key, "description"))
		return rb_load_string(l, v, &rb->description);
	if (!strcmp(key, "tags")) {
		if (v->type != RB_SEQ)
			return rb_error_at(l->d, v, "tags must be a list of strings, not %s",
					   rb_node_kind_name(v));
		int rc = 0;
		for (size_t i = 0; i < v->n; i++) {
			const char *s;
			rc |= rb_load_string(l, v->items[i], &s);
		}
		rb->tags = v;
		return rc;
	}
	if (!strcmp(key, "params"))
		return load_params(l, v);
	if (!strcmp(key, "secrets"))
		return load_secrets(l, v);
	if (!strcmp(key, "defaults"))
		return load_defaults(l, v);
	if (!strcmp(key, "lock")) {
		if (rb_load_string(l, v, &rb->lock) < 0)
			return -1;
		for (const char *p = rb->lock; *p; p++)
			if (!isalnum((unsigned char)*p) && !strchr("_.-", *p))
				return rb_error_at(l->d, v, "invalid lock name '%s': use letters, "
						   "digits, '.', '-' and '_'", rb->lock);
		if (!*rb->lock || rb->lock[0] == '.')
			return rb_error_at(l->d, v, "invalid lock name '%s'", rb->lock);
		return 0;
	}
	if (!strcmp(key, "schedule"))
		return rb_load_schedule(l, v);
	if (!strcmp(key, "window"))
		return rb_load_window(l, v);
	if (!strcmp(key, "timeout"))
		return rb_load_duration(l, v, &rb->timeout_ms);
	if (!strcmp(key, "rollback"))
		return rb_load_bool(l, v, &rb->rollback);
	if (!strcmp(key, "redact"))
		return load_redact(l, v);
	if (!strcmp(key, "lint"))
		return rb_load_lint(l, v, &rb->lint);
	return 0;       /* vars, steps and on_failure are loaded in order below */
}

static void load(struct loader *l)
{
	struct rb_runbook *rb = l->rb;
	const struct rb_node *root = rb->doc.root;
	if (root->type != RB_MAP) {
		rb_error_at(l->d, root, "a runbook must be a mapping with 'runbook', 'version' "
			    "and 'steps', not %s", rb_node_kind_name(root));
		return;
	}
	rb_load_keys(l, root, top_keys, "runbook");
	for (size_t i = 0; i < root->n; i++)
		if (root->items[2 * i]->type == RB_SCALAR)
			load_top(l, root->items[2 * i], root->items[2 * i + 1]);
	static const char *const required[] = {"runbook", "version", "steps"};
	for (int i = 0; i < 3; i++)
		if (!rb_map_get(root, required[i]))
			rb_error_pos(l->d, root->line, root->col, "missing required key '%s'",
				     required[i]);
	rb_load_schedule_check(l, rb_map_get(root, "schedule"));

	/* Vars need params; steps need vars; references need every step id. */
	const struct rb_node *vars = rb_map_get(root, "vars");
	if (vars)
		load_vars(l, vars);
	const struct rb_node *steps = rb_map_get(root, "steps");
	const struct rb_node *fail = rb_map_get(root, "on_failure");
	if (steps && rb_load_steps(l, steps, RB_MAIN) < 0)
		return;
	if (fail && rb_load_steps(l, fail, RB_ON_FAILURE) < 0)
		return;
	if (rb_load_step_refs(l) < 0)
		return;
	rb_graph_build(rb, l->d);
}

struct rb_runbook *rb_runbook_load(const char *file, const char *buf, size_t len,
				   struct rb_diags *d)
{
	struct rb_runbook *rb = rb_xcalloc(1, sizeof(*rb));
	rb->file = rb_xstrdup(file);
	rb->src = rb_xstrndup(buf, len);
	rb->srclen = len;
	rb->default_timeout_ms = -1;
	rb->timeout_ms = -1;
	rb->default_retry.attempts = 1;
	rb->redact_pii = 1;
	if (rb_doc_load(&rb->doc, rb->src, len, d) < 0)
		return rb;
	struct loader l = {.rb = rb, .d = d};
	l.lua = rb_luabox_new(0);
	if (!l.lua) {
		rb_error_pos(d, 0, 0, "cannot create a Lua state");
		return rb;
	}
	load(&l);
	free(l.undo);           /* still here when loading stopped early */
	rb->box = l.lua;
	return rb;
}

struct rb_luabox *rb_runbook_take_box(struct rb_runbook *rb)
{
	struct rb_luabox *b = rb->box;
	rb->box = NULL;
	if (!b)
		return rb_luabox_new(0);
	rb_luabox_rebase(b);
	return b;
}

void rb_runbook_free(struct rb_runbook *rb)
{
	if (!rb)
		return;
	for (size_t i = 0; i < rb->nsteps; i++) {
		free(rb->steps[i]->needs);
		free(rb->steps[i]->deps);
		free(rb->steps[i]->reads);
	}
	free(rb->steps);
	free(rb->byid);
	free(rb->lines);
	rb_doc_release(&rb->doc);
	rb_luabox_free(rb->box);
	free(rb->src);
	free(rb->file);
	free(rb);
}

static size_t id_hash(const char *s)
{
	size_t h = 14695981039346656037ull;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
}

struct rb_step *rb_runbook_step(const struct rb_runbook *rb, const char *id)
{
	if (!rb->byid_cap)
		return NULL;
	size_t mask = rb->byid_cap - 1;
	for (size_t i = id_hash(id) & mask; rb->byid[i]; i = (i + 1) & mask)
		if (!strcmp(rb->byid[i]->id, id))
			return rb->byid[i];
	return NULL;
}

static int starts_processes(const struct rb_step *s)
{
	return s && s->action && (s->action->flags & RB_ACT_PROCESSES);
}

int rb_runbook_starts_processes(const struct rb_runbook *rb)
{
	for (size_t i = 0; i < rb->nsteps; i++)
		if (starts_processes(rb->steps[i]) || starts_processes(rb->steps[i]->check))
			return 1;
	return 0;
}

const struct rb_param *rb_runbook_param(const struct rb_runbook *rb, const char *name)
{
	for (size_t i = 0; i < rb->nparams; i++)
		if (!strcmp(rb->params[i].name, name))
			return &rb->params[i];
	return NULL;
}

/* Add s to the id table; returns the step already holding its id, or NULL. */
struct rb_step *rb_load_register(struct rb_runbook *rb, struct rb_step *s)
{
	struct rb_step *old = rb_runbook_step(rb, s->id);
	if (old)
		return old;
	if ((rb->nsteps + 1) * 2 > rb->byid_cap) {
		size_t cap = rb->byid_cap ? rb->byid_cap * 2 : 64;
		struct rb_step **t = rb_xcalloc(cap, sizeof(*t));
		for (size_t i = 0; i < rb->byid_cap; i++) {
			struct rb_step *x = rb->byid[i];
			if (!x)
				continue;
			size_t j = id_hash(x->id) & (cap - 1);
			while (t[j])
				j = (j + 1) & (cap - 1);
			t[j] = x;
		}
		free(rb->byid);
		rb->byid = t;
		rb->byid_cap = cap;
	}
	size_t j = id_hash(s->id) & (rb->byid_cap - 1);
	while (rb->byid[j])
		j = (j + 1) & (rb->byid_cap - 1);
	rb->byid[j] = s;
	return NULL;
}
