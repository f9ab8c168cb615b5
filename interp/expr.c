/*
 * Template splitting and static reference analysis.  The lexer knows just
 * enough Lua (names, strings, long brackets, comments) to find where an
 * expression ends and which of steps/params/vars/... it reads, so that the
 * graph and the checks are known before anything runs.
 */
#include "expr.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum tok { T_EOF, T_NAME, T_STRING, T_NUMBER, T_PUNCT, T_ERROR };

struct lexer {
	const char *s;
	size_t len, pos;
	/* the current token */
	enum tok t;
	size_t start, end;      /* token bytes; strings: content between quotes */
	int plain;              /* string without escapes */
	char c;                 /* punctuation character */
	const char *err;
};

static int at(const struct lexer *x, size_t i)
{
	return i < x->len ? (unsigned char)x->s[i] : -1;
}

/* Length of a long bracket opener "[==[" at i (its level in *level), or 0. */
static size_t long_open(const struct lexer *x, size_t i, size_t *level)
{
	if (at(x, i) != '[')
		return 0;
	size_t j = i + 1;
	while (at(x, j) == '=')
		j++;
	if (at(x, j) != '[')
		return 0;
	*level = j - i - 1;
	return j - i + 1;
}

/* Skip to after the matching "]==]"; returns the content end or len on error. */
static int long_close(struct lexer *x, size_t level, size_t *content_end)
{
	for (size_t i = x->pos; i < x->len; i++) {
		if (x->s[i] != ']')
			continue;
		size_t j = i + 1;
		while (j < x->len && x->s[j] == '=')
			j++;
		if (j - i - 1 == level && at(x, j) == ']') {
			*content_end = i;
			x->pos = j + 1;
			return 0;
		}
	}
	return -1;
}

static void next(struct lexer *x)
{
	for (;;) {
		while (x->pos < x->len && isspace((unsigned char)x->s[x->pos]))
			x->pos++;
		if (at(x, x->pos) == '-' && at(x, x->pos + 1) == '-') {
			size_t level, n;
			x->pos += 2;
			if ((n = long_open(x, x->pos, &level))) {
				size_t ce;
				x->pos += n;
				if (long_close(x, level, &ce) < 0) {
					x->t = T_ERROR;
					x->err = "unfinished long comment";
					return;
				}
			} else {
				while (x->pos < x->len && x->s[x->pos] != '\n')
					x->pos++;
			}
			continue;
		}
		break;
	}
	x->start = x->pos;
	int c = at(x, x->pos);
	if (c < 0) {
		x->t = T_EOF;
		return;
	}
	if (isalpha(c) || c == '_') {
		while (isalnum(at(x, x->pos)) || at(x, x->pos) == '_')
			x->pos++;
		x->t = T_NAME;
		x->end = x->pos;
		return;
	}
	if (isdigit(c) || (c == '.' && isdigit(at(x, x->pos + 1)))) {
		while (isalnum(at(x, x->pos)) || at(x, x->pos) == '.' ||
		       ((at(x, x->pos) == '+' || at(x, x->pos) == '-') &&
			strchr("eEpP", x->s[x->pos - 1])))
			x->pos++;
		x->t = T_NUMBER;
		x->end = x->pos;
		return;
	}
	if (c == '"' || c == '\'') {
		x->pos++;
		x->start = x->pos;
		x->plain = 1;
		for (;;) {
			int d = at(x, x->pos);
			if (d < 0 || d == '\n') {
				x->t = T_ERROR;
				x->err = "unfinished string";
				return;
			}
			if (d == '\\') {
				x->plain = 0;
				x->pos += 2;
				continue;
			}
			if (d == c)
				break;
			x->pos++;
		}
		x->end = x->pos++;
		x->t = T_STRING;
		return;
	}
	size_t level, n;
	if ((n = long_open(x, x->pos, &level))) {
		x->pos += n;
		x->start = x->pos;
		if (long_close(x, level, &x->end) < 0) {
			x->t = T_ERROR;
			x->err = "unfinished long string";
			return;
		}
		x->plain = 1;
		x->t = T_STRING;
		return;
	}
	x->t = T_PUNCT;
	x->c = (char)c;
	x->pos++;
	/* ".." and "..." are not field access. */
	if (c == '.' && at(x, x->pos) == '.') {
		x->c = 'C';
		while (at(x, x->pos) == '.')
			x->pos++;
	}
	x->end = x->pos;
}

static const char *const scope_names[RB_SC_COUNT] = {
	"steps", "params", "vars", "secrets", "env", "item", "run", "output",
};

const char *rb_scope_name(enum rb_scope s)
{
	return scope_names[s];
}

static int scope_of(const struct lexer *x)
{
	size_t n = x->end - x->start;
	for (int i = 0; i < RB_SC_COUNT; i++)
		if (strlen(scope_names[i]) == n && !memcmp(scope_names[i], x->s + x->start, n))
			return i;
	return -1;
}

/*
 * After a scope name: ".NAME" or "['NAME']" gives a name; "[expr]" is
 * dynamic; anything else is a use of the whole table.  Consumes what it reads.
 */
static int member(struct lexer *x, struct rb_arena *a, const char **name, int *dynamic)
{
	struct lexer save = *x;
	next(x);
	if (x->t == T_PUNCT && x->c == '.') {
		next(x);
		if (x->t == T_NAME) {
			*name = rb_arena_strndup(a, x->s + x->start, x->end - x->start);
			return 1;
		}
	} else if (x->t == T_PUNCT && x->c == '[') {
		next(x);
		if (x->t == T_STRING && x->plain) {
			struct lexer s2 = *x;
			next(x);
			if (x->t == T_PUNCT && x->c == ']') {
				*name = rb_arena_strndup(a, s2.s + s2.start, s2.end - s2.start);
				return 1;
			}
		}
		*x = save;
		*dynamic = 1;
		return 0;
	}
	*x = save;
	return 0;
}

int rb_lua_refs(struct rb_arena *a, const char *code, size_t len,
		struct rb_ref **refs, size_t *nrefs, unsigned *uses)
{
	struct lexer x = {.s = code, .len = len};
	struct rb_ref *v = NULL;
	size_t n = 0, cap = 0;
	int prev_dot = 0;

	for (next(&x); x.t != T_EOF && x.t != T_ERROR; next(&x)) {
		int sc = x.t == T_NAME && !prev_dot ? scope_of(&x) : -1;
		prev_dot = x.t == T_PUNCT && (x.c == '.' || x.c == ':');
		if (sc < 0)
			continue;
		struct rb_ref r = {.scope = (enum rb_scope)sc, .off = x.start};
		int dynamic = 0;
		if (sc != RB_SC_ITEM && sc != RB_SC_OUTPUT &&
		    member(&x, a, &r.name, &dynamic) && sc == RB_SC_STEPS) {
			int d2 = 0;
			member(&x, a, &r.field, &d2);
		}
		r.dynamic = dynamic;
		rb_grow(&v, &cap, n + 1, sizeof(*v));
		v[n++] = r;
		*uses |= 1u << sc;
		prev_dot = 0;
	}
	*refs = NULL;
	if (n) {
		*refs = rb_arena_alloc(a, n * sizeof(*v));
		memcpy(*refs, v, n * sizeof(*v));
	}
	*nrefs = n;
	free(v);
	return x.t == T_ERROR ? -1 : 0;
}

/* Find the "}}" that closes an expression starting at code[0]. */
static int expr_end(const char *code, size_t len, size_t *end, const char **err)
{
	struct lexer x = {.s = code, .len = len};
	int depth = 0;
	for (next(&x); x.t != T_EOF; next(&x)) {
		if (x.t == T_ERROR) {
			*err = x.err;
			return -1;
		}
		if (x.t != T_PUNCT)
			continue;
		if (x.c == '{')
			depth++;
		else if (x.c == '}' && depth > 0)
			depth--;
		else if (x.c == '}' && at(&x, x.pos) == '}') {
			*end = x.start;
			return 0;
		}
	}
	*err = "unterminated expression: missing '}}'";
	return -1;
}

int rb_tmpl_parse(struct rb_arena *a, const char *text, size_t len,
		  struct rb_tmpl **out, char **err, size_t *erroff)
{
	*out = NULL;
	if (!memmem(text, len, "${{", 3))
		return 0;

	struct rb_tmpl_part *parts = NULL;
	size_t n = 0, cap = 0;
	struct rb_buf lit;
	rb_buf_init(&lit);
	size_t lit_off = 0, i = 0;
	int rc = 0;

	while (i < len) {
		if (text[i] == '$' && i + 3 < len && !memcmp(text + i, "$${{", 4)) {
			if (!lit.len)
				lit_off = i;
			rb_buf_puts(&lit, "${{");
			i += 4;
			continue;
		}
		if (text[i] != '$' || i + 2 >= len || memcmp(text + i, "${{", 3)) {
			/* Copy up to the next '$' in one go. */
			const char *dollar = memchr(text + i + 1, '$', len - i - 1);
			size_t span = dollar ? (size_t)(dollar - text) - i : len - i;
			if (!lit.len)
				lit_off = i;
			rb_buf_add(&lit, text + i, span);
			i += span;
			continue;
		}
		if (lit.len) {
			rb_grow(&parts, &cap, n + 1, sizeof(*parts));
			parts[n++] = (struct rb_tmpl_part){
				rb_arena_strndup(a, lit.s, lit.len), lit.len, lit_off, 0};
			lit.len = 0;
		}
		size_t start = i + 3, end;
		const char *e;
		if (expr_end(text + start, len - start, &end, &e) < 0) {
			*err = rb_xstrdup(e);
			*erroff = i;
			rc = -1;
			goto out;
		}
		const char *code = text + start;
		size_t k = 0;
		while (k < end && isspace((unsigned char)code[k]))
			k++;
		if (k == end) {
			*err = rb_xstrdup("empty expression");
			*erroff = i;
			rc = -1;
			goto out;
		}
		rb_grow(&parts, &cap, n + 1, sizeof(*parts));
		parts[n++] = (struct rb_tmpl_part){
			rb_arena_strndup(a, code, end), end, start, 1};
		i = start + end + 2;
	}
	if (lit.len) {
		rb_grow(&parts, &cap, n + 1, sizeof(*parts));
		parts[n++] = (struct rb_tmpl_part){
			rb_arena_strndup(a, lit.s, lit.len), lit.len, lit_off, 0};
	}

	struct rb_tmpl *t = rb_arena_alloc(a, sizeof(*t));
	t->parts = rb_arena_alloc(a, (n ? n : 1) * sizeof(*parts));
	memcpy(t->parts, parts, n * sizeof(*parts));
	t->nparts = n;
	t->whole = n == 1 && parts[0].is_expr;

	/* Gather the references of all expression parts, offsets in text. */
	struct rb_ref *all = NULL;
	size_t nall = 0, acap = 0;
	for (size_t p = 0; p < n; p++) {
		if (!parts[p].is_expr)
			continue;
		struct rb_ref *r;
		size_t nr;
		rb_lua_refs(a, parts[p].text, parts[p].len, &r, &nr, &t->uses);
		rb_grow(&all, &acap, nall + nr, sizeof(*all));
		for (size_t k2 = 0; k2 < nr; k2++) {
			all[nall] = r[k2];
			all[nall++].off += parts[p].off;
		}
	}
	if (nall) {
		t->refs = rb_arena_alloc(a, nall * sizeof(*all));
		memcpy(t->refs, all, nall * sizeof(*all));
	}
	t->nrefs = nall;
	free(all);
	*out = t;
out:
	free(parts);
	rb_buf_release(&lit);
	return rc;
}
