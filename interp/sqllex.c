/*
 * A lexer for SQL's lexical layer (PostgreSQL's: comments nest, E'' strings
 * take backslash escapes, $tag$ quotes), and the few rules on its tokens that
 * say a statement destroys data (sqllex.h).  Words inside comments, strings,
 * quoted identifiers and dollar quotes are never keywords.
 */
#include "sqllex.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

enum { T_WORD, T_OPEN, T_CLOSE, T_SEMI, T_OTHER };

struct tok {
	int kind;
	size_t off, len;
	int depth;              /* parentheses open around it */
};

struct lexer {
	const char *s;
	size_t len, i;
	struct tok *v;
	size_t n, cap;
	int depth;
};

static int word_start(unsigned char c)
{
	return isalpha(c) || c == '_' || c >= 0x80;
}

static int word_char(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

static void emit(struct lexer *x, int kind, size_t off, size_t len)
{
	if (kind == T_CLOSE && x->depth > 0)
		x->depth--;
	rb_grow(&x->v, &x->cap, x->n + 1, sizeof(*x->v));
	x->v[x->n++] = (struct tok){kind, off, len, x->depth};
	if (kind == T_OPEN)
		x->depth++;
}

/* Past a quoted run that ends with q, where qq stands for q; backslash escapes when esc. */
static void skip_quoted(struct lexer *x, char q, int esc)
{
	x->i++;
	while (x->i < x->len) {
		char c = x->s[x->i++];
		if (esc && c == '\\' && x->i < x->len)
			x->i++;
		else if (c == q && x->i < x->len && x->s[x->i] == q)
			x->i++;
		else if (c == q)
			return;
	}
}

/* At '$': a dollar quote $tag$...$tag$ skipped (1), or not one (0). */
static int skip_dollar(struct lexer *x)
{
	size_t j = x->i + 1;
	if (j < x->len && word_start((unsigned char)x->s[j]))
		while (j < x->len && word_char((unsigned char)x->s[j]) && x->s[j] != '$')
			j++;
	if (j >= x->len || x->s[j] != '$')
		return 0;
	size_t taglen = j + 1 - x->i;
	const char *tag = x->s + x->i;
	const char *end = memmem(x->s + j + 1, x->len - j - 1, tag, taglen);
	x->i = end ? (size_t)(end - x->s) + taglen : x->len;
	return 1;
}

static void lex(struct lexer *x)
{
	while (x->i < x->len) {
		size_t at = x->i;
		unsigned char c = (unsigned char)x->s[at];
		char next = at + 1 < x->len ? x->s[at + 1] : '\0';
		if (isspace(c)) {
			x->i++;
		} else if (c == '-' && next == '-') {
			while (x->i < x->len && x->s[x->i] != '\n')
				x->i++;
		} else if (c == '/' && next == '*') {
			int nest = 0;   /* PostgreSQL's block comments nest */
			do {
				if (x->s[x->i] == '/' && x->i + 1 < x->len && x->s[x->i + 1] == '*') {
					nest++;
					x->i += 2;
				} else if (x->s[x->i] == '*' && x->i + 1 < x->len &&
					   x->s[x->i + 1] == '/') {
					nest--;
					x->i += 2;
				} else {
					x->i++;
				}
			} while (nest > 0 && x->i < x->len);
		} else if ((c == 'E' || c == 'e') && next == '\'') {
			x->i++;
			skip_quoted(x, '\'', 1);
			emit(x, T_OTHER, at, x->i - at);
		} else if (c == '\'' || c == '"') {
			skip_quoted(x, (char)c, 0);
			emit(x, T_OTHER, at, x->i - at);
		} else if (c == '$' && next == '{' && at + 2 < x->len && x->s[at + 2] == '{') {
			/* a ${{ }} expression of the runbook: a value, never a keyword */
			const char *end = memmem(x->s + at, x->len - at, "}}", 2);
			x->i = end ? (size_t)(end - x->s) + 2 : x->len;
			emit(x, T_OTHER, at, x->i - at);
		} else if (c == '$' && skip_dollar(x)) {
			emit(x, T_OTHER, at, x->i - at);
		} else if (word_start(c)) {
			while (x->i < x->len && word_char((unsigned char)x->s[x->i]))
				x->i++;
			emit(x, T_WORD, at, x->i - at);
		} else {
			x->i++;
			emit(x, c == '(' ? T_OPEN : c == ')' ? T_CLOSE : c == ';' ? T_SEMI : T_OTHER,
			     at, 1);
		}
	}
}

static int is_word(const struct lexer *x, size_t k, const char *w)
{
	const struct tok *t = &x->v[k];
	return t->kind == T_WORD && t->len == strlen(w) && !strncasecmp(x->s + t->off, w, t->len);
}

struct found {
	struct rb_sql_finding *out;
	size_t max, n;
};

static void add(struct found *f, enum rb_sql_what w, size_t off)
{
	if (f->n < f->max)
		f->out[f->n] = (struct rb_sql_finding){w, off};
	f->n++;
}

/* Whether the DELETE at token k has a WHERE at its own level before it ends. */
static int delete_has_where(const struct lexer *x, size_t k, size_t end)
{
	int d = x->v[k].depth;
	for (size_t j = k + 1; j < end && x->v[j].depth >= d; j++)
		if (x->v[j].depth == d && is_word(x, j, "where"))
			return 1;
	return 0;
}

/* ALTER ...'s DROP at token k drops a column, not CONSTRAINT, DEFAULT, NOT NULL ... */
static int alter_drops(const struct lexer *x, size_t k, size_t end)
{
	static const char *const keep[] = {"constraint", "default", "not", "identity",
					   "expression", NULL};
	if (k + 1 >= end || x->v[k].depth != 0 || !is_word(x, k, "drop"))
		return 0;
	for (const char *const *w = keep; *w; w++)
		if (is_word(x, k + 1, *w))
			return 0;
	return 1;
}

/* One statement: tokens [a, b), its findings in the order of their keywords. */
static void statement(const struct lexer *x, size_t a, size_t b, struct found *f)
{
	if (a >= b)
		return;
	if (is_word(x, a, "drop"))
		add(f, RB_SQL_DROP, x->v[a].off);
	else if (is_word(x, a, "truncate"))
		add(f, RB_SQL_TRUNCATE, x->v[a].off);
	int alter = is_word(x, a, "alter");
	for (size_t k = a; k < b; k++) {
		if (alter && k > a && alter_drops(x, k, b))
			add(f, RB_SQL_DROP, x->v[k].off);
		/*
		 * DELETE starts a statement first, inside a CTE's parentheses or
		 * after them, or after EXPLAIN [ANALYZE]; elsewhere (ON DELETE,
		 * GRANT DELETE, BEFORE DELETE) it is a word of another statement.
		 */
		if (!is_word(x, k, "delete"))
			continue;
		int starts = k == a || x->v[k - 1].kind == T_OPEN || x->v[k - 1].kind == T_CLOSE ||
			     is_word(x, k - 1, "explain") || is_word(x, k - 1, "analyze") ||
			     is_word(x, k - 1, "verbose");
		if (starts && !delete_has_where(x, k, b))
			add(f, RB_SQL_DELETE_ALL, x->v[k].off);
	}
}

size_t rb_sql_destructive(const char *text, size_t len, struct rb_sql_finding *out, size_t max)
{
	struct lexer x = {.s = text, .len = len};
	struct found f = {out, max, 0};
	lex(&x);
	size_t a = 0;
	for (size_t k = 0; k <= x.n; k++)
		if (k == x.n || x.v[k].kind == T_SEMI) {
			statement(&x, a, k, &f);
			a = k + 1;
		}
	free(x.v);
	return f.n;
}

const char *rb_sql_what_name(enum rb_sql_what w)
{
	switch (w) {
	case RB_SQL_DELETE_ALL:
		return "DELETE without WHERE";
	case RB_SQL_DROP:
		return "DROP";
	case RB_SQL_TRUNCATE:
		return "TRUNCATE";
	}
	return "?";
}
