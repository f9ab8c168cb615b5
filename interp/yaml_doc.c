/*
 * libyaml events -> node tree.  Checks what YAML itself cannot: one document,
 * valid UTF-8, bounded depth, duplicate keys, control characters made by
 * escapes, and aliases that would expand the document far past its written
 * size (the billion-laughs attack).
 * Aliased nodes are shared, not copied; the arena frees them all at once.
 */
#include "yaml_doc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "diag.h"

struct frame {
	struct rb_node *node;
	struct rb_node **items;
	size_t n, cap;
	const char *anchor;     /* pending anchor of this collection, or NULL */
};

struct anchor {
	char *name;             /* NULL: empty slot */
	struct rb_node *node;
};

struct builder {
	struct rb_doc *doc;
	struct rb_diags *d;
	const char *buf;
	size_t len;
	struct frame stack[RB_MAX_DEPTH + 1];
	int depth;
	struct anchor *anchors;
	size_t nanchors, acap;  /* acap is a power of two */
	size_t expanded;        /* nodes added by alias expansion */
	int docs;
};

/* Line and column (in characters) of byte offset off. */
static void offset_pos(const char *buf, size_t len, size_t off, int *line, int *col)
{
	int l = 1, c = 1;
	for (size_t i = 0; i < off && i < len; i++) {
		if (buf[i] == '\n') {
			l++;
			c = 1;
		} else if (((unsigned char)buf[i] & 0xC0) != 0x80) {
			c++;
		}
	}
	*line = l;
	*col = c;
}

static size_t hash_str(const char *s)
{
	size_t h = 5381;
	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

static struct anchor *anchor_slot(struct builder *b, const char *name)
{
	size_t mask = b->acap - 1;
	for (size_t i = hash_str(name) & mask;; i = (i + 1) & mask) {
		struct anchor *a = &b->anchors[i];
		if (!a->name || strcmp(a->name, name) == 0)
			return a;
	}
}

static void anchor_set(struct builder *b, const char *name, struct rb_node *node)
{
	if ((b->nanchors + 1) * 2 > b->acap) {
		struct anchor *old = b->anchors;
		size_t oldcap = b->acap;
		b->acap = oldcap ? oldcap * 2 : 64;
		b->anchors = rb_xcalloc(b->acap, sizeof(*b->anchors));
		for (size_t i = 0; i < oldcap; i++)
			if (old[i].name)
				*anchor_slot(b, old[i].name) = old[i];
		free(old);
	}
	struct anchor *a = anchor_slot(b, name);
	if (!a->name) {
		a->name = rb_xstrdup(name);
		b->nanchors++;
	}
	a->node = node;         /* a later anchor of the same name wins */
}

static struct rb_node *anchor_get(struct builder *b, const char *name)
{
	if (!b->acap)
		return NULL;
	struct anchor *a = anchor_slot(b, name);
	return a->name ? a->node : NULL;
}

static struct rb_node *new_node(struct builder *b, enum rb_node_type t, yaml_mark_t m)
{
	struct rb_node *n = rb_arena_alloc(&b->doc->arena, sizeof(*n));
	n->type = t;
	n->line = (int)m.line + 1;
	n->col = (int)m.column + 1;
	n->weight = 1;
	b->doc->nodes++;
	return n;
}

static size_t sat_add(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static void add_child(struct builder *b, struct rb_node *child)
{
	if (b->depth == 0) {
		b->doc->root = child;
		return;
	}
	struct frame *f = &b->stack[b->depth - 1];
	rb_grow(&f->items, &f->cap, f->n + 1, sizeof(*f->items));
	f->items[f->n++] = child;
}

static int check_tag(struct builder *b, const yaml_char_t *tag, const char *allowed,
		     yaml_mark_t m)
{
	if (!tag || strcmp((const char *)tag, "!") == 0)
		return 0;
	if (strcmp((const char *)tag, allowed) == 0)
		return 1;
	return rb_error_pos(b->d, (int)m.line + 1, (int)m.column + 1,
			    "unsupported tag '%s'", (const char *)tag);
}

static int key_cmp(const void *pa, const void *pb)
{
	const struct rb_node *a = *(struct rb_node *const *)pa;
	const struct rb_node *b = *(struct rb_node *const *)pb;
	int c = strcmp(a->str, b->str);
	if (c)
		return c;
	return a->line != b->line ? (a->line < b->line ? -1 : 1) : (a->col < b->col ? -1 : 1);
}

/*
 * Keys must be scalars and unique.  Sorting a copy keeps this O(n log n) for
 * the very large mappings a generated runbook can have.
 */
static void check_keys(struct builder *b, struct rb_node *map)
{
	size_t n = map->n;
	struct rb_node **keys = rb_xmalloc(n * sizeof(*keys));
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		struct rb_node *key = map->items[2 * i];
		if (key->type != RB_SCALAR) {
			rb_error_at(b->d, key, "mapping keys must be scalars, not %s",
				    rb_node_kind_name(key));
			continue;
		}
		if (!key->quoted && strcmp(key->str, "<<") == 0) {
			rb_error_at(b->d, key, "merge keys ('<<') are not supported");
			continue;
		}
		keys[k++] = key;
	}
	qsort(keys, k, sizeof(*keys), key_cmp);
	for (size_t i = 1; i < k; i++)
		if (strcmp(keys[i]->str, keys[i - 1]->str) == 0)
			rb_error_at(b->d, keys[i], "duplicate key '%s' (first at line %d)",
				    keys[i]->str, keys[i - 1]->line);
	free(keys);
}

static int on_alias(struct builder *b, const yaml_event_t *e)
{
	const char *name = (const char *)e->data.alias.anchor;
	yaml_mark_t m = e->start_mark;
	for (int i = 0; i < b->depth; i++)
		if (b->stack[i].anchor && strcmp(b->stack[i].anchor, name) == 0)
			return rb_error_pos(b->d, (int)m.line + 1, (int)m.column + 1,
					    "alias '*%s' refers to a collection that contains it",
					    name);
	struct rb_node *target = anchor_get(b, name);
	if (!target)
		return rb_error_pos(b->d, (int)m.line + 1, (int)m.column + 1,
				    "undefined alias '*%s'", name);
	b->expanded = sat_add(b->expanded, target->weight);
	size_t limit = sat_add(b->doc->nodes * RB_ALIAS_FACTOR, RB_ALIAS_SLACK);
	if (b->expanded > limit)
		return rb_error_pos(b->d, (int)m.line + 1, (int)m.column + 1,
				    "alias '*%s' expands the document past %zu nodes "
				    "(the limit is %d times its %zu nodes plus %d)",
				    name, limit, RB_ALIAS_FACTOR, b->doc->nodes, RB_ALIAS_SLACK);
	add_child(b, target);
	return 0;
}

/*
 * libyaml refuses raw control characters, but a double-quoted scalar's
 * escapes ("\e", "\r", "\0", "\x9b") make them: refused the same way, at
 * the scalar, since a value that reaches a terminal or a command must hold
 * what it shows, and a NUL would end a command's C string where the signed
 * text goes on.  Tab and newline are text.  rb_doc_load fails when any was.
 */
static void check_controls(struct builder *b, const yaml_event_t *e)
{
	const unsigned char *p = e->data.scalar.value;
	size_t len = e->data.scalar.length;
	for (size_t i = 0; i < len; i++) {
		size_t n = p[i] < 0x20 || p[i] == 0x7f ? 1
			   : p[i] == 0xc2 && i + 1 < len && p[i + 1] < 0xa0 ? 2 : 0;
		if (!n || p[i] == '\t' || p[i] == '\n')
			continue;
		char *shown = rb_visible((const char *)p + i, n, 0);
		yaml_mark_t m = e->start_mark;
		rb_error_pos(b->d, (int)m.line + 1, (int)m.column + 1,
			     "%s characters are not allowed (%s, from an escape in this string)",
			     p[i] ? "control" : "NUL", shown);
		free(shown);
		return;         /* one message a string; the document goes on */
	}
}

static int on_scalar(struct builder *b, const yaml_event_t *e)
{
	check_controls(b, e);
	struct rb_node *n = new_node(b, RB_SCALAR, e->start_mark);
	int t = check_tag(b, e->data.scalar.tag, "tag:yaml.org,2002:str", e->start_mark);
	if (t < 0)
		return -1;
	yaml_scalar_style_t st = e->data.scalar.style;
	n->quoted = t == 1 || st != YAML_PLAIN_SCALAR_STYLE;
	n->block = st == YAML_LITERAL_SCALAR_STYLE || st == YAML_FOLDED_SCALAR_STYLE;
	n->len = e->data.scalar.length;
	n->str = rb_arena_strndup(&b->doc->arena, (const char *)e->data.scalar.value, n->len);
	if (e->data.scalar.anchor)
		anchor_set(b, (const char *)e->data.scalar.anchor, n);
	add_child(b, n);
	return 0;
}

static int on_start(struct builder *b, const yaml_event_t *e, enum rb_node_type t)
{
	yaml_mark_t m = e->start_mark;
	if (b->depth >= RB_MAX_DEPTH)
		return rb_error_pos(b->d, (int)m.line + 1, (int)m.column + 1,
				    "collections nested deeper than %d levels", RB_MAX_DEPTH);
	const yaml_char_t *tag = t == RB_SEQ ? e->data.sequence_start.tag
					     : e->data.mapping_start.tag;
	const yaml_char_t *anchor = t == RB_SEQ ? e->data.sequence_start.anchor
						: e->data.mapping_start.anchor;
	if (check_tag(b, tag, t == RB_SEQ ? "tag:yaml.org,2002:seq" : "tag:yaml.org,2002:map",
		      m) < 0)
		return -1;
	struct frame *f = &b->stack[b->depth++];
	memset(f, 0, sizeof(*f));
	f->node = new_node(b, t, m);
	if (anchor)
		f->anchor = rb_arena_strndup(&b->doc->arena, (const char *)anchor,
					     strlen((const char *)anchor));
	return 0;
}

static void on_end(struct builder *b)
{
	struct frame *f = &b->stack[--b->depth];
	struct rb_node *n = f->node;
	n->items = rb_arena_alloc(&b->doc->arena, (f->n ? f->n : 1) * sizeof(*n->items));
	if (f->n)
		memcpy(n->items, f->items, f->n * sizeof(*n->items));
	for (size_t i = 0; i < f->n; i++)
		n->weight = sat_add(n->weight, f->items[i]->weight);
	n->n = n->type == RB_MAP ? f->n / 2 : f->n;
	free(f->items);
	if (n->type == RB_MAP)
		check_keys(b, n);
	if (f->anchor)
		anchor_set(b, f->anchor, n);
	add_child(b, n);
}

static void parse_error(struct builder *b, yaml_parser_t *p)
{
	int line, col;
	if (p->error == YAML_READER_ERROR) {
		offset_pos(b->buf, b->len, p->problem_offset, &line, &col);
	} else {
		line = (int)p->problem_mark.line + 1;
		col = (int)p->problem_mark.column + 1;
	}
	const char *problem = p->problem ? p->problem : "invalid YAML";
	if (p->context)
		rb_error_pos(b->d, line, col, "%s (%s at line %d)", problem, p->context,
			     (int)p->context_mark.line + 1);
	else
		rb_error_pos(b->d, line, col, "%s", problem);
}

int rb_doc_load(struct rb_doc *doc, const char *buf, size_t len, struct rb_diags *d)
{
	memset(doc, 0, sizeof(*doc));
	rb_arena_init(&doc->arena);

	if (len > RB_MAX_INPUT)
		return rb_error_pos(d, 0, 0, "file is larger than the limit of %d MiB",
				    RB_MAX_INPUT / (1024 * 1024));
	size_t bad = rb_utf8_check(buf, len);
	if (bad < len) {
		int line, col;
		offset_pos(buf, len, bad, &line, &col);
		return rb_error_pos(d, line, col, "invalid UTF-8 (byte 0x%02x)",
				    (unsigned char)buf[bad]);
	}

	struct builder b = {.doc = doc, .d = d, .buf = buf, .len = len};
	yaml_parser_t p;
	if (!yaml_parser_initialize(&p))
		return rb_error_pos(d, 0, 0, "cannot initialise the YAML parser");
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);

	int rc = 0, done = 0;
	size_t errors0 = d->errors;
	while (!done && rc == 0) {
		yaml_event_t e;
		if (!yaml_parser_parse(&p, &e)) {
			parse_error(&b, &p);
			rc = -1;
			break;
		}
		switch (e.type) {
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++b.docs > 1)
				rc = rb_error_pos(d, (int)e.start_mark.line + 1,
						  (int)e.start_mark.column + 1,
						  "a runbook file holds one YAML document");
			break;
		case YAML_ALIAS_EVENT:
			rc = on_alias(&b, &e);
			break;
		case YAML_SCALAR_EVENT:
			rc = on_scalar(&b, &e);
			break;
		case YAML_SEQUENCE_START_EVENT:
			rc = on_start(&b, &e, RB_SEQ);
			break;
		case YAML_MAPPING_START_EVENT:
			rc = on_start(&b, &e, RB_MAP);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			on_end(&b);
			break;
		default:
			break;
		}
		yaml_event_delete(&e);
	}
	yaml_parser_delete(&p);
	while (b.depth > 0)
		free(b.stack[--b.depth].items);
	for (size_t i = 0; i < b.acap; i++)
		free(b.anchors[i].name);
	free(b.anchors);

	if (rc == 0 && d->errors == errors0 && !doc->root)
		rc = rb_error_pos(d, 1, 1, "empty runbook: expected a mapping with "
				  "'runbook', 'version' and 'steps'");
	return d->errors > errors0 ? -1 : rc;
}

void rb_doc_release(struct rb_doc *doc)
{
	rb_arena_release(&doc->arena);
	doc->root = NULL;
}

static int all_match(const char *s, const char *set)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!strchr(set, *s))
			return 0;
	return 1;
}

static int is_float(const char *s)
{
	if (*s == '+' || *s == '-')
		s++;
	if (!strcmp(s, ".inf") || !strcmp(s, ".Inf") || !strcmp(s, ".INF"))
		return 1;
	int digits = 0;
	while (*s >= '0' && *s <= '9')
		s++, digits++;
	if (*s == '.') {
		s++;
		while (*s >= '0' && *s <= '9')
			s++, digits++;
	}
	if (!digits)
		return 0;
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!(*s >= '0' && *s <= '9'))
			return 0;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == '\0';
}

enum rb_scalar_kind rb_scalar_kind(const struct rb_node *n)
{
	if (n->type != RB_SCALAR || n->quoted)
		return RB_K_STRING;
	const char *s = n->str;
	/* Most scalars are words: only these first characters can start
	   anything but a string. */
	if (*s && !strchr("~nNtTfF0123456789+-.", *s))
		return RB_K_STRING;
	if (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	    !strcmp(s, "NULL"))
		return RB_K_NULL;
	if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") ||
	    !strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
		return RB_K_BOOL;
	const char *d = (*s == '-' || *s == '+') ? s + 1 : s;
	if (all_match(d, "0123456789"))
		return RB_K_INT;
	if (!strncmp(s, "0x", 2) && all_match(s + 2, "0123456789abcdefABCDEF"))
		return RB_K_INT;
	if (!strncmp(s, "0o", 2) && all_match(s + 2, "01234567"))
		return RB_K_INT;
	if (is_float(s) || !strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN"))
		return RB_K_FLOAT;
	return RB_K_STRING;
}

const char *rb_node_kind_name(const struct rb_node *n)
{
	switch (n->type) {
	case RB_SEQ:
		return "a list";
	case RB_MAP:
		return "a mapping";
	default:
		break;
	}
	switch (rb_scalar_kind(n)) {
	case RB_K_NULL:
		return "null";
	case RB_K_BOOL:
		return "a boolean";
	case RB_K_INT:
		return "an integer";
	case RB_K_FLOAT:
		return "a number";
	default:
		return "a string";
	}
}

struct rb_node *rb_map_get(const struct rb_node *map, const char *key)
{
	if (!map || map->type != RB_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++) {
		const struct rb_node *k = map->items[2 * i];
		if (k->type == RB_SCALAR && strcmp(k->str, key) == 0)
			return map->items[2 * i + 1];
	}
	return NULL;
}
