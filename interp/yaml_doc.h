/*
 * The YAML layer: libyaml events turned into a tree of nodes that keep their
 * line and column.  It enforces the input limits (size, UTF-8, depth, alias
 * expansion, one document) and knows nothing about runbooks.
 */
#ifndef RB_YAML_DOC_H
#define RB_YAML_DOC_H

#include <stddef.h>

#include "util.h"

struct rb_diags;
struct rb_tmpl;

enum {
	RB_MAX_INPUT = 16 * 1024 * 1024,
	RB_MAX_DEPTH = 64,
	RB_ALIAS_FACTOR = 10,           /* expanded nodes <= 10 x nodes + slack */
	RB_ALIAS_SLACK = 10000,
};

enum rb_node_type { RB_SCALAR = 1, RB_SEQ, RB_MAP };

/* How a plain scalar resolves under the YAML 1.2 core schema. */
enum rb_scalar_kind { RB_K_STRING, RB_K_NULL, RB_K_BOOL, RB_K_INT, RB_K_FLOAT };

struct rb_node {
	enum rb_node_type type;
	int line, col;                  /* 1-based, columns in characters */
	unsigned quoted : 1;            /* scalar was quoted, a block scalar or tagged !!str */
	unsigned block : 1;             /* scalar was a literal or folded block */
	char *str;                      /* scalar text, NUL-terminated */
	size_t len;
	size_t n;                       /* sequence items, or mapping pairs */
	struct rb_node **items;         /* seq: n nodes; map: 2n, key then value */
	struct rb_tmpl *tmpl;           /* parsed ${{ }} template, set by the loader */
	size_t weight;                  /* nodes in the subtree, aliases expanded */
};

struct rb_doc {
	struct rb_arena arena;          /* every node and string */
	struct rb_node *root;
	size_t nodes;                   /* nodes as written */
};

/*
 * Parse buf into doc.  Returns 0, or -1 with errors in d; the document must
 * be released either way.
 */
int rb_doc_load(struct rb_doc *doc, const char *buf, size_t len, struct rb_diags *d);
void rb_doc_release(struct rb_doc *doc);

enum rb_scalar_kind rb_scalar_kind(const struct rb_node *n);
const char *rb_node_kind_name(const struct rb_node *n);   /* "a string", "a mapping" ... */

/* Mapping lookup: the value for key, or NULL. */
struct rb_node *rb_map_get(const struct rb_node *map, const char *key);

#endif
