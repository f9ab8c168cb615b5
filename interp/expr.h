/*
 * `${{ }}` templates: splitting a string into text and Lua expressions, and
 * the static references each expression makes (steps.X, params.Y, ...), found
 * with a small Lua lexer.  Compiling and evaluating is luabox's job.
 */
#ifndef RB_EXPR_H
#define RB_EXPR_H

#include <stddef.h>

struct rb_arena;

/* The names an expression can read. */
enum rb_scope {
	RB_SC_STEPS, RB_SC_PARAMS, RB_SC_VARS, RB_SC_SECRETS, RB_SC_ENV,
	RB_SC_ITEM, RB_SC_RUN, RB_SC_OUTPUT, RB_SC_COUNT
};

struct rb_ref {
	enum rb_scope scope;
	const char *name;       /* steps.NAME, params.NAME ...; NULL for item/output
				   or a whole-table use such as pairs(params) */
	const char *field;      /* steps.X.FIELD, or NULL */
	size_t off;             /* byte offset of the reference in the code */
	unsigned dynamic : 1;   /* steps[expr]: cannot be resolved statically */
};

struct rb_tmpl_part {
	const char *text;       /* literal text, or Lua expression code */
	size_t len;
	size_t off;             /* byte offset in the scalar's text */
	int is_expr;
};

struct rb_tmpl {
	struct rb_tmpl_part *parts;
	size_t nparts;
	int whole;              /* exactly one expression and nothing else */
	int chunk;              /* a lua: chunk rather than an expression */
	struct rb_ref *refs;
	size_t nrefs;
	unsigned uses;          /* bit (1 << scope) for each scope read */
};

/*
 * Split text (len bytes) into a template.  Returns 0 and *out (NULL when the
 * text has no ${{ and no $${{), or -1 with *err (malloc'd) and *erroff, the
 * byte offset of the problem.
 */
int rb_tmpl_parse(struct rb_arena *a, const char *text, size_t len,
		  struct rb_tmpl **out, char **err, size_t *erroff);

/* References made by a Lua chunk (a `lua:` step, or one expression). */
int rb_lua_refs(struct rb_arena *a, const char *code, size_t len,
		struct rb_ref **refs, size_t *nrefs, unsigned *uses);

const char *rb_scope_name(enum rb_scope s);

#endif
