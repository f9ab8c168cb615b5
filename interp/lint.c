/*
 * The checks of `runbook lint` (lint.h), over the loaded model: each reads
 * what the loader settled (side effects, gates, timeouts, the templates'
 * references) and never re-parses the YAML.  Shell text is read with
 * shscan.c, SQL with sqllex.c.
 */
#include "lint.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "expr.h"
#include "render.h"
#include "runbook.h"
#include "shscan.h"
#include "sqllex.h"
#include "util.h"

const char *const rb_lint_ids[RB_LINT_COUNT + 1] = {
	"no-undo", "destructive-sql", "redis-flush", "secret-argv", "no-timeout",
	"unused-param", "unused-var", "unused-secret", "insecure", NULL,
};

struct linter {
	struct rb_runbook *rb;
	struct rb_lint *v;
	size_t n, cap;
};

static int ignored(const struct rb_node *ignore, enum rb_lint_id id)
{
	const struct rb_node *list = ignore ? rb_map_get(ignore, "ignore") : NULL;
	for (size_t i = 0; list && list->type == RB_SEQ && i < list->n; i++)
		if (list->items[i]->type == RB_SCALAR && !strcmp(list->items[i]->str, rb_lint_ids[id]))
			return 1;
	return 0;
}

/* A finding of step s (NULL: of the runbook), unless an ignore list silences it. */
static void report(struct linter *x, const struct rb_step *s, enum rb_lint_id id, int line,
		   int col, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void report(struct linter *x, const struct rb_step *s, enum rb_lint_id id, int line,
		   int col, const char *fmt, ...)
{
	if (ignored(x->rb->lint, id))
		return;
	/* an undo step or a check is silenced by its step's list too */
	for (; s; s = s->parent)
		if (ignored(s->lint, id))
			return;
	va_list ap;
	va_start(ap, fmt);
	char *msg = rb_xvasprintf(fmt, ap);
	va_end(ap);
	rb_grow(&x->v, &x->cap, x->n + 1, sizeof(*x->v));
	x->v[x->n++] = (struct rb_lint){id, line, col, msg};
}

static void report_at(struct linter *x, const struct rb_step *s, enum rb_lint_id id,
		      const struct rb_node *n, const char *msg)
{
	report(x, s, id, n->line, n->col, "%s", msg);
}

/* The step's gate: approve: given, and not false. */
static int has_gate(const struct rb_step *s)
{
	const struct rb_node *a = s->approve;
	return a && !(a->type == RB_SCALAR && !a->quoted && rb_scalar_kind(a) == RB_K_BOOL &&
		      (a->str[0] == 'f' || a->str[0] == 'F'));
}

static const char *action_name(const struct rb_step *s)
{
	return s->action && !s->run && !s->lua ? s->action->name : "";
}

static int prefixed(const char *s, const char *p)
{
	return !strncmp(s, p, strlen(p));
}

/* --- no-undo ---------------------------------------------------------------------- */

static void lint_undo(struct linter *x, const struct rb_step *s)
{
	if (!x->rb->rollback || s->kind != RB_MAIN || !s->side_effects || s->undo)
		return;
	const struct rb_node *id = rb_map_get(s->node, "id");
	report(x, s, RB_LINT_NO_UNDO, id->line, id->col, "step '%s' has side effects and no "
	       "undo, and the runbook has rollback: true: a rollback cannot reverse it (add "
	       "undo:, or side_effects: false if it changes nothing)", s->id);
}

/* --- destructive-sql, redis-flush ----------------------------------------------- */

static void lint_sql_text(struct linter *x, const struct rb_step *s, const struct rb_node *n)
{
	if (n->type != RB_SCALAR)
		return;
	struct rb_sql_finding f[16];
	size_t k = rb_sql_destructive(n->str, n->len, f, 16);
	for (size_t i = 0; i < k && i < 16; i++) {
		int line, col;
		rb_runbook_pos(x->rb, n, f[i].off, &line, &col);
		report(x, s, RB_LINT_DESTRUCTIVE_SQL, line, col, "%s in step '%s', which has no "
		       "approval gate: add approve: so that a person confirms it",
		       rb_sql_what_name(f[i].what), s->id);
	}
}

static void lint_sql(struct linter *x, const struct rb_step *s)
{
	const char *a = action_name(s);
	if (s->kind == RB_UNDO || (strcmp(a, "pg.exec") && strcmp(a, "pg.query")) ||
	    has_gate(s) || !s->with)
		return;
	const struct rb_node *sql = rb_map_get(s->with, "sql");
	if (!sql)
		return;
	if (sql->type != RB_SEQ) {
		lint_sql_text(x, s, sql);
		return;
	}
	for (size_t i = 0; i < sql->n; i++) {       /* statements: strings or {sql, params} */
		const struct rb_node *one = sql->items[i];
		lint_sql_text(x, s, one->type == RB_MAP ? rb_map_get(one, "sql") : one);
	}
}

static void lint_redis_command(struct linter *x, const struct rb_step *s,
			       const struct rb_node *cmd)
{
	if (!cmd || cmd->type != RB_SEQ || !cmd->n || cmd->items[0]->type != RB_SCALAR)
		return;
	const struct rb_node *name = cmd->items[0];
	if (strcasecmp(name->str, "flushall") && strcasecmp(name->str, "flushdb"))
		return;
	report(x, s, RB_LINT_REDIS_FLUSH, name->line, name->col, "%s in step '%s', which has "
	       "no approval gate: add approve: so that a person confirms it", name->str, s->id);
}

static void lint_redis(struct linter *x, const struct rb_step *s)
{
	if (strcmp(action_name(s), "redis.command") || s->kind == RB_UNDO || has_gate(s) ||
	    !s->with)
		return;
	lint_redis_command(x, s, rb_map_get(s->with, "command"));
	const struct rb_node *cmds = rb_map_get(s->with, "commands");
	for (size_t i = 0; cmds && cmds->type == RB_SEQ && i < cmds->n; i++)
		lint_redis_command(x, s, cmds->items[i]);
}

/* --- secret-argv ------------------------------------------------------------------- */

/*
 * Commands that the shell runs itself, whose arguments no other user sees:
 * a secret given to them (export X=..., printf '%s' ... | cmd) is not on a
 * command line.
 */
static const char *const builtins[] = {
	"echo", "printf", "export", "local", "declare", "typeset", "readonly", "read", "test",
	"[", "[[", ":", "let", NULL,
};

enum { CMD_MAX = 32, NEST_MAX = 16 };

/* Where the script is: the simple command being read, its name and words. */
struct cmdline {
	char name[CMD_MAX + 1];
	size_t namelen;
	int in_word;
	int assign;             /* this word is NAME=... before the name: its environment */
	int redir, redir_next;  /* this word, the next word, is a redirection's target */
	int name_done;
};

struct shtrack {
	struct rb_shscan sc;
	struct cmdline cur, saved[NEST_MAX];
	int depth;
	char prev;
};

static void end_word(struct cmdline *c)
{
	if (c->in_word && !c->assign && !c->redir)
		c->name_done = 1;
	c->in_word = 0;
}

static void word_char(struct cmdline *c, char ch)
{
	if (!c->in_word) {
		c->in_word = 1;
		c->assign = 0;
		c->redir = c->redir_next;
		c->redir_next = 0;
		if (!c->name_done)
			c->namelen = 0;
	}
	if (c->name_done || c->redir || c->assign)
		return;
	if (ch == '=' && c->namelen) {
		c->assign = 1;
		return;
	}
	if (ch != '"' && ch != '\'' && c->namelen < CMD_MAX)
		c->name[c->namelen++] = ch;
	c->name[c->namelen] = '\0';
}

static void track_char(struct shtrack *t, char ch)
{
	const char *why;
	enum rb_sh_place at = rb_shscan_place(&t->sc, &why);
	struct cmdline *c = &t->cur;
	if (t->sc.in_doc || at == RB_SH_REFUSED || at == RB_SH_ARITH) {
		/* a here-document's body is standard input, not arguments */
	} else if (ch == '(' && (at == RB_SH_PLAIN || t->prev == '$')) {
		if (t->depth < NEST_MAX)        /* $( ) or ( ): a command of its own */
			t->saved[t->depth] = *c;
		t->depth++;
		memset(c, 0, sizeof(*c));
	} else if (at == RB_SH_COMMENT) {
		if (ch == '\n')
			memset(c, 0, sizeof(*c));
	} else if (at != RB_SH_PLAIN) {
		word_char(c, ch);       /* inside quotes: part of the word */
	} else if (t->sc.escaped) {
		if (ch != '\n')        /* backslash-newline continues the line */
			word_char(c, ch);
	} else if (ch == '\\') {
		/* decided by the next character: a continuation, or an escaped one */
	} else if (ch == ')' && t->depth > 0) {
		t->depth--;
		if (t->depth < NEST_MAX)
			*c = t->saved[t->depth];
		c->in_word = 1;         /* $( ... ) stood in a word */
	} else if (ch == ' ' || ch == '\t') {
		end_word(c);
	} else if (ch == '<' || ch == '>') {
		end_word(c);
		c->redir_next = 1;
	} else if (strchr("\n;|&`", ch) && !(ch == '&' && (t->prev == '>' || t->prev == '<'))) {
		memset(c, 0, sizeof(*c));
	} else if (!(ch == '#' && !c->in_word)) {
		word_char(c, ch);
	}
	rb_shscan_feed(&t->sc, &ch, 1);
	t->prev = ch;
}

/* The name a reference reads a secret by ("secrets.token", "vars.dsn"), or NULL. */
static char *secret_ref(const struct rb_runbook *rb, const struct rb_tmpl *t, size_t lo,
			size_t hi)
{
	for (size_t i = 0; i < t->nrefs; i++) {
		const struct rb_ref *r = &t->refs[i];
		if (r->off < lo || r->off >= hi)
			continue;
		struct rb_tmpl one = {.refs = (struct rb_ref *)r, .nrefs = 1};
		if (rb_tmpl_reads_secret(rb, &one))
			return rb_xasprintf("%s.%s", rb_scope_name(r->scope), r->name ? r->name : "*");
		if (r->scope != RB_SC_STEPS || !r->name || r->dynamic)
			continue;
		const struct rb_step *s = rb_runbook_step(rb, r->name);
		if (s && (s->sensitive || (s->action && (s->action->flags & RB_ACT_SECRET_OUTPUT))))
			return rb_xasprintf("steps.%s.%s", r->name, r->field ? r->field : "output");
	}
	return NULL;
}

static int is_builtin(const char *name)
{
	for (const char *const *b = builtins; *b; b++)
		if (!strcmp(name, *b))
			return 1;
	return 0;
}

static void lint_command(struct linter *x, const struct rb_step *s, const struct rb_node *n)
{
	if (!n || n->type != RB_SCALAR || !n->tmpl)
		return;
	struct shtrack *t = rb_xcalloc(1, sizeof(*t));
	rb_shscan_init(&t->sc);
	for (size_t i = 0; i < n->tmpl->nparts; i++) {
		const struct rb_tmpl_part *p = &n->tmpl->parts[i];
		if (!p->is_expr) {
			for (size_t k = 0; k < p->len; k++)
				track_char(t, p->text[k]);
			continue;
		}
		const char *why;
		enum rb_sh_place at = rb_shscan_place(&t->sc, &why);
		char *name = secret_ref(x->rb, n->tmpl, p->off, p->off + p->len);
		struct cmdline *c = &t->cur;
		int not_arg = c->in_word ? c->assign || c->redir : c->redir_next;
		if (name && !t->sc.in_doc && (at == RB_SH_PLAIN || at == RB_SH_DQUOTE ||
					     at == RB_SH_SQUOTE) && !not_arg &&
		    !(c->name_done && is_builtin(c->name))) {
			int line, col;
			rb_runbook_pos(x->rb, n, p->off >= 3 ? p->off - 3 : p->off, &line, &col);
			if (c->name_done)
				report(x, s, RB_LINT_SECRET_ARGV, line, col, "%s is passed on the "
				       "command line of '%s', which every user can read "
				       "(/proc/PID/cmdline): pass it in env: or on standard input",
				       name, c->name);
			else
				report(x, s, RB_LINT_SECRET_ARGV, line, col, "%s is run as a command "
				       "name, which every user can read (/proc/PID/cmdline)", name);
		}
		free(name);
		/* the value is part of a word, as the reference that replaces it is */
		if (at == RB_SH_PLAIN || at == RB_SH_DQUOTE || at == RB_SH_SQUOTE)
			word_char(&t->cur, 'V');
	}
	free(t);
}

static void lint_secret_argv(struct linter *x, const struct rb_step *s)
{
	if (s->run)
		lint_command(x, s, s->run);
	else if (!strcmp(action_name(s), "shell") && s->with)
		lint_command(x, s, rb_map_get(s->with, "command"));
}

/* --- no-timeout, insecure ----------------------------------------------------------- */

static int is_network(const struct rb_step *s)
{
	const char *a = action_name(s);
	if (prefixed(a, "http.") || prefixed(a, "pg.") || prefixed(a, "redis.") ||
	    prefixed(a, "notify."))
		return 1;
	return prefixed(a, "crypto.") && s->with && rb_map_get(s->with, "host");
}

static void lint_timeout(struct linter *x, const struct rb_step *s)
{
	if (!is_network(s) || s->timeout_ms >= 0 || rb_map_get(s->with, "timeout"))
		return;
	const struct rb_node *a = rb_map_get(s->node, "action");
	report(x, s, RB_LINT_NO_TIMEOUT, a->line, a->col, "network step '%s' (%s) has no "
	       "timeout: give it timeout:, or the runbook defaults: {timeout: ...}, so that a "
	       "server that does not answer cannot hold the run", s->id, s->action->name);
}

static void lint_insecure(struct linter *x, const struct rb_step *s)
{
	const struct rb_node *v = s->with && !s->run && !s->lua ? rb_map_get(s->with, "insecure")
								: NULL;
	if (!v || v->type != RB_SCALAR || rb_scalar_kind(v) != RB_K_BOOL ||
	    (v->str[0] != 't' && v->str[0] != 'T'))
		return;
	report_at(x, s, RB_LINT_INSECURE, v, "insecure: true: the server's certificate is not "
		  "verified, so anyone on the path can read and change the traffic (give "
		  "ca_file: instead)");
}

/* --- unused params, vars, secrets -------------------------------------------------- */

struct used {
	unsigned char *params, *vars, *secrets;
};

static void mark(const struct rb_runbook *rb, const struct rb_tmpl *t, struct used *u)
{
	for (size_t i = 0; i < t->nrefs; i++) {
		const struct rb_ref *r = &t->refs[i];
		size_t n = r->scope == RB_SC_PARAMS ? rb->nparams
			   : r->scope == RB_SC_VARS ? rb->nvars
			   : r->scope == RB_SC_SECRETS ? rb->nsecrets : 0;
		unsigned char *m = r->scope == RB_SC_PARAMS ? u->params
				   : r->scope == RB_SC_VARS ? u->vars : u->secrets;
		for (size_t k = 0; k < n; k++) {
			const char *name = r->scope == RB_SC_PARAMS ? rb->params[k].name
					   : r->scope == RB_SC_VARS ? rb->vars[k].name
								    : rb->secrets[k].name;
			if (!r->name || !strcmp(r->name, name))
				m[k] = 1;       /* a whole-table use (pairs(params)) reads all */
		}
	}
}

static void walk(const struct rb_runbook *rb, const struct rb_node *n, struct used *u, int depth)
{
	if (depth > RB_MAX_DEPTH + 2)
		return;
	if (n->type == RB_SCALAR) {
		if (n->tmpl)
			mark(rb, n->tmpl, u);
		return;
	}
	size_t m = n->type == RB_MAP ? 2 * n->n : n->n;
	for (size_t i = 0; i < m; i++)
		walk(rb, n->items[i], u, depth + 1);
}

static void lint_unused(struct linter *x)
{
	struct rb_runbook *rb = x->rb;
	struct used u = {
		rb_xcalloc(rb->nparams + 1, 1), rb_xcalloc(rb->nvars + 1, 1),
		rb_xcalloc(rb->nsecrets + 1, 1),
	};
	walk(rb, rb->doc.root, &u, 0);
	for (size_t i = 0; i < rb->nparams; i++)
		if (!u.params[i])
			report(x, NULL, RB_LINT_UNUSED_PARAM, rb->params[i].key->line,
			       rb->params[i].key->col, "param '%s' is not used by any expression",
			       rb->params[i].name);
	for (size_t i = 0; i < rb->nvars; i++)
		if (!u.vars[i])
			report(x, NULL, RB_LINT_UNUSED_VAR, rb->vars[i].key->line,
			       rb->vars[i].key->col, "var '%s' is not used by any expression",
			       rb->vars[i].name);
	for (size_t i = 0; i < rb->nsecrets; i++)
		if (!u.secrets[i])
			report(x, NULL, RB_LINT_UNUSED_SECRET, rb->secrets[i].key->line,
			       rb->secrets[i].key->col, "secret '%s' is not used by any expression",
			       rb->secrets[i].name);
	free(u.params);
	free(u.vars);
	free(u.secrets);
}

/* --- all ---------------------------------------------------------------------------- */

static void lint_step(struct linter *x, const struct rb_step *s)
{
	lint_undo(x, s);
	lint_sql(x, s);
	lint_redis(x, s);
	lint_secret_argv(x, s);
	lint_timeout(x, s);
	lint_insecure(x, s);
}

static int by_pos(const void *a, const void *b)
{
	const struct rb_lint *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

size_t rb_lint_runbook(struct rb_runbook *rb, struct rb_lint **out)
{
	struct linter x = {.rb = rb};
	for (size_t i = 0; i < rb->nsteps; i++) {
		lint_step(&x, rb->steps[i]);
		if (rb->steps[i]->check)
			lint_step(&x, rb->steps[i]->check);
	}
	lint_unused(&x);
	if (x.n)
		qsort(x.v, x.n, sizeof(*x.v), by_pos);
	*out = x.v;
	return x.n;
}

void rb_lint_free(struct rb_lint *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].msg);
	free(v);
}
