/*
 * The diff of two plans, as a tree: the steps matched by id (then a removed
 * and an added step with the same action and arguments as one step
 * renamed), the order compared through the longest run of matched steps
 * kept in order, each matched pair compared field by field, the runbook's
 * own settings (lock, schedule, window, params, vars, secrets' sources)
 * compared, and the changes a reviewer must not miss picked out as
 * destructive.  Reads only the plan's JSON; prints nothing.
 */
#include "plandiff.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "util.h"

/* --- the whole plan as one document ------------------------------------------ */

struct collect {
	json_t *plan;
	json_t *steps;          /* where the next step goes: "steps", then "on_failure.steps" */
};

static void collect_begin(void *ctx, const json_t *header)
{
	struct collect *c = ctx;
	c->plan = json_deep_copy(header);
	c->steps = json_array();
	json_object_set_new(c->plan, "steps", c->steps);
}

static void collect_step(void *ctx, const json_t *step, int first_of_stage)
{
	struct collect *c = ctx;
	(void)first_of_stage;
	json_array_append(c->steps, (json_t *)step);
}

static void collect_section(void *ctx, const json_t *stages)
{
	struct collect *c = ctx;
	(void)stages;
	c->steps = json_array();
	json_object_set_new(json_object_get(c->plan, "on_failure"), "steps", c->steps);
}

static void collect_end(void *ctx)
{
	(void)ctx;
}

json_t *rb_plan_build(struct rb_runbook *rb, json_t *params, struct rb_diags *d)
{
	static const struct rb_plan_renderer collector = {collect_begin, collect_step,
							  collect_section, collect_end};
	struct collect c = {NULL, NULL};
	if (rb_plan_write(rb, params, &collector, &c, d) < 0) {
		json_decref(c.plan);
		return NULL;
	}
	return c.plan;
}

/* --- destructive SQL ---------------------------------------------------------- */

static int word_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_';
}

/* The keyword kw (upper case) at s, as a whole word; its length, or 0. */
static size_t keyword(const char *s, const char *kw)
{
	size_t n = strlen(kw);
	if (strncasecmp(s, kw, n) || word_char(s[n]))
		return 0;
	return n;
}

static const char *skip_space(const char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	return s;
}

/* What DROP may drop: a statement, not the word in prose ("drop us a line"). */
static const char *const drop_objects[] = {
	"TABLE", "DATABASE", "SCHEMA", "INDEX", "VIEW", "MATERIALIZED", "COLUMN", "ROLE",
	"USER", "FUNCTION", "PROCEDURE", "SEQUENCE", "TYPE", "EXTENSION", "TRIGGER", "OWNED",
	"CONSTRAINT", "POLICY", "PUBLICATION", "SUBSCRIPTION", "TABLESPACE", "DOMAIN", NULL,
};

void rb_plandiff_sql(const char *s, json_t *out)
{
	for (const char *p = s; *p; p++) {
		if (p > s && word_char(p[-1]))
			continue;
		const char *kind = NULL, *after;
		size_t n;
		if ((n = keyword(p, "DELETE")) && keyword(skip_space(p + n), "FROM")) {
			kind = "deletes";
		} else if ((n = keyword(p, "DROP"))) {
			after = skip_space(p + n);
			for (int i = 0; drop_objects[i] && !kind; i++)
				if (after > p + n && keyword(after, drop_objects[i]))
					kind = "drops";
		} else if ((n = keyword(p, "TRUNCATE"))) {
			after = skip_space(p + n);
			if (after > p + n && (word_char(*after) || *after == '"'))
				kind = "truncates";
		} else if ((n = keyword(p, "FLUSHALL")) || (n = keyword(p, "FLUSHDB"))) {
			/* a command (alone, or with ASYNC or SYNC), not the word in a sentence */
			after = skip_space(p + n);
			if (!*after || strchr(";\"'", *after) || p[n] == '\n' ||
			    keyword(after, "ASYNC") || keyword(after, "SYNC"))
				kind = "flushes";
		}
		if (!kind)
			continue;
		/*
		 * The statement runs to its ';' (or the end), or to the quote that
		 * opens it (psql -c "DELETE ..."): shown on one line, cut at 80.
		 */
		const char *q0 = p;
		while (q0 > s && (q0[-1] == ' ' || q0[-1] == '\t'))
			q0--;
		const char *end = strchr(p, ';');
		if (!end)
			end = p + strlen(p);
		if (q0 > s && (q0[-1] == '"' || q0[-1] == '\'')) {
			const char *close = strchr(p, q0[-1]);
			end = close && close < end ? close : end;
		}
		struct rb_buf b;
		rb_buf_init(&b);
		int space = 0, cut = 0;
		for (const char *q = p; q < end; q++) {
			if (isspace((unsigned char)*q)) {
				space = 1;
				continue;
			}
			/* Cut before a character that would not fit, never inside one. */
			if (b.len >= 80 && ((unsigned char)*q & 0xC0) != 0x80) {
				cut = 1;
				break;
			}
			if (space && b.len)
				rb_buf_putc(&b, ' ');
			space = 0;
			rb_buf_putc(&b, *q);
		}
		if (cut)
			rb_buf_puts(&b, "...");
		json_t *st = json_pack("{s:s, s:s}", "kind", kind, "statement", b.s ? b.s : "");
		if (!strcmp(kind, "deletes")) {
			int where = 0;
			for (const char *q = p + n; q < end && !where; q++)
				where = !word_char(q[-1]) && keyword(q, "WHERE");
			if (!where)
				json_object_set_new(st, "no_where", json_true());
		}
		json_array_append_new(out, st);
		rb_buf_release(&b);
		p += n - 1;     /* a statement the end missed (a DROP after a DELETE) is found */
	}
}

/* The destructive statements in every string of v (an object, array or string). */
static void sql_of(const json_t *v, json_t *out)
{
	size_t i;
	const char *k;
	json_t *x;
	if (json_is_string(v))
		rb_plandiff_sql(json_string_value(v), out);
	else if (json_is_array(v))
		json_array_foreach(v, i, x)
			sql_of(x, out);
	else if (json_is_object(v))
		json_object_foreach((json_t *)v, k, x)
			sql_of(x, out);
}

/* --- comparing values ------------------------------------------------------- */

/* How an object is compared: a step (its known keys), a map (every key), or whole. */
enum mode { M_STEP, M_MAP };

/* Keys of a step that say where it is, not what it does (its order is compared apart). */
static int ignored_key(const char *k)
{
	return !strcmp(k, "id") || !strcmp(k, "stage") || !strcmp(k, "after") ||
	       !strcmp(k, "probe");
}

static json_t *path_with(const json_t *path, const char *key)
{
	json_t *p = json_copy((json_t *)path);
	json_array_append_new(p, json_string(key));
	return p;
}

static void add_change(json_t *out, const json_t *path, const json_t *a, const json_t *b)
{
	json_t *c = json_pack("{s:O}", "path", path);
	if (a)
		json_object_set(c, "old", (json_t *)a);
	if (b)
		json_object_set(c, "new", (json_t *)b);
	json_array_append_new(out, c);
}

static void compare(const json_t *a, const json_t *b, const json_t *path, enum mode mode,
		    int depth, json_t *out);

/* Every key of a, then the keys only b has, compared one by one. */
static void compare_keys(const json_t *a, const json_t *b, const json_t *path, enum mode mode,
			 int depth, json_t *out)
{
	const char *k;
	json_t *x;
	for (int side = 0; side < 2; side++) {
		json_object_foreach((json_t *)(side ? b : a), k, x) {
			if (side && json_object_get(a, k))
				continue;
			if (mode == M_STEP && ignored_key(k))
				continue;
			json_t *p = path_with(path, k);
			enum mode sub = mode;
			int whole = 0;
			if (mode == M_STEP) {
				/* with and outputs key by key, check and undo as steps, the rest whole */
				if (!strcmp(k, "with") || !strcmp(k, "outputs"))
					sub = M_MAP;
				else if (strcmp(k, "check") && strcmp(k, "undo"))
					whole = 1;
			}
			const json_t *va = json_object_get(a, k), *vb = json_object_get(b, k);
			if (mode == M_STEP && (!strcmp(k, "check") || !strcmp(k, "undo")))
				whole = !va || !vb;     /* added or removed whole, else field by field */
			if (whole) {
				if (!json_equal((json_t *)va, (json_t *)vb))
					add_change(out, p, va, vb);
			} else {
				compare(va, vb, p, sub, depth + 1, out);
			}
			json_decref(p);
		}
	}
}

/*
 * An object that is there on one side only is compared with an empty one,
 * so that an undo added shows its action and arguments one by one.
 */
static void compare(const json_t *a, const json_t *b, const json_t *path, enum mode mode,
		    int depth, json_t *out)
{
	if (!a && !b)
		return;
	if (a && b && json_equal((json_t *)a, (json_t *)b))
		return;
	if ((json_is_object(a) || !a) && (json_is_object(b) || !b) && depth < 8) {
		json_t *empty = json_object();
		compare_keys(a ? a : empty, b ? b : empty, path, mode, depth, out);
		json_decref(empty);
	} else {
		add_change(out, path, a, b);
	}
}

/* --- the steps --------------------------------------------------------------- */

struct side {
	json_t *steps;          /* every step, main then on_failure (references) */
	json_t *section;        /* "main" or "on_failure", per step */
	json_t *pos;            /* 1-based position in its section, per step */
	long *match;            /* the other side's index, or -1 */
	int *renamed;
	json_t *byid;           /* id -> index */
};

static void side_init(struct side *s, const json_t *plan)
{
	s->steps = json_array();
	s->section = json_array();
	s->pos = json_array();
	s->byid = json_object();
	const json_t *lists[2] = {json_object_get(plan, "steps"),
				  json_object_get(json_object_get(plan, "on_failure"), "steps")};
	for (int k = 0; k < 2; k++) {
		size_t i;
		json_t *st;
		json_array_foreach(lists[k], i, st) {
			const char *id = json_string_value(json_object_get(st, "id"));
			if (id)
				json_object_set_new(s->byid, id,
						    json_integer((json_int_t)json_array_size(s->steps)));
			json_array_append(s->steps, st);
			json_array_append_new(s->section, json_string(k ? "on_failure" : "main"));
			json_array_append_new(s->pos, json_integer((json_int_t)i + 1));
		}
	}
	size_t n = json_array_size(s->steps);
	s->match = rb_xmalloc((n + 1) * sizeof(*s->match));
	s->renamed = rb_xcalloc(n + 1, sizeof(*s->renamed));
	for (size_t i = 0; i < n; i++)
		s->match[i] = -1;
}

static void side_release(struct side *s)
{
	json_decref(s->steps);
	json_decref(s->section);
	json_decref(s->pos);
	json_decref(s->byid);
	free(s->match);
	free(s->renamed);
}

static const char *sstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* What a rename keeps: the section, the action, its form and the arguments, as one key. */
static char *call_key(const struct side *s, size_t i)
{
	const json_t *st = json_array_get(s->steps, i);
	json_t *k = json_pack("[O, O, O, O]", json_array_get(s->section, i),
			      json_object_get(st, "action"), json_object_get(st, "form"),
			      json_object_get(st, "with") ? json_object_get(st, "with") : json_null());
	char *text = json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(k);
	return text ? text : rb_xstrdup("");
}

/*
 * The matched steps that keep their order: the longest increasing run of
 * old indices in new order (patience sorting, n log n).  keep[k] is set for
 * the k-th of seq that is in it.
 */
static void longest_kept(const long *seq, size_t n, int *keep)
{
	size_t *tail = rb_xmalloc((n + 1) * sizeof(*tail));     /* index into seq */
	size_t *prev = rb_xmalloc((n + 1) * sizeof(*prev));
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		size_t lo = 0, hi = len;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (seq[tail[mid]] < seq[i])
				lo = mid + 1;
			else
				hi = mid;
		}
		prev[i] = lo ? tail[lo - 1] : (size_t)-1;
		tail[lo] = i;
		if (lo == len)
			len++;
	}
	for (size_t i = len ? tail[len - 1] : (size_t)-1; i != (size_t)-1; i = prev[i])
		keep[i] = 1;
	free(tail);
	free(prev);
}

enum gate { GATE_NO, GATE_YES, GATE_MAYBE };
static enum gate gate_of(const json_t *s)
{
	json_t *a = json_object_get(s, "approve");
	json_t *g = json_object_get(a, "gate");
	return !a || json_is_false(g) ? GATE_NO : json_is_null(g) ? GATE_MAYBE : GATE_YES;
}

struct differ {
	json_t *destructive;
	json_t *entries;
};

/* A destructive change: text is ours; value (from the runbook), when given, follows it. */
static void destroy(struct differ *df, const json_t *step, const char *what, const char *text,
		    json_t *value)
{
	json_t *e = json_pack("{s:o, s:s, s:s}", "step",
			      step ? json_incref(json_object_get(step, "id")) : json_null(), "what",
			      what, "text", text);
	if (value)
		json_object_set_new(e, "value", value);
	json_array_append_new(df->destructive, e);
}

static json_int_t attempts(const json_t *s)
{
	return json_integer_value(json_object_get(json_object_get(s, "retry"), "attempts"));
}

/* Items of the new for_each that the old one lacks; NULL when either is not known as a list. */
static json_t *wider_items(const json_t *a, const json_t *b)
{
	if (!json_is_array(a) || !json_is_array(b))
		return NULL;
	json_t *more = json_array(), *had = json_object();
	size_t i;
	json_t *x;
	json_array_foreach(a, i, x) {
		char *k = json_dumps(x, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
		if (k)
			json_object_set_new(had, k, json_true());
		free(k);
	}
	json_array_foreach(b, i, x) {
		char *k = json_dumps(x, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
		if (!k || !json_object_get(had, k))
			json_array_append(more, x);
		free(k);
	}
	json_decref(had);
	return more;
}

/* What makes the step o (NULL: added) -> n more dangerous, into df->destructive. */
static void judge(struct differ *df, const json_t *o, const json_t *n)
{
	const char *action = sstr(n, "form") && strcmp(sstr(n, "form"), "action")
				     ? sstr(n, "form") : sstr(n, "action");
	int side_n = json_is_true(json_object_get(n, "side_effects"));
	int side_o = o && json_is_true(json_object_get(o, "side_effects"));
	if (side_n && !side_o) {
		char *t = o ? rb_xasprintf("now has side effects (%s)", action)
			    : rb_xasprintf("a new step with side effects (%s%s)", action,
					   gate_of(n) == GATE_YES ? ", behind a gate" : "");
		destroy(df, n, "side_effects", t,
			sstr(n, "does") ? json_incref(json_object_get(n, "does")) : NULL);
		free(t);
	}
	if (o && gate_of(o) != GATE_NO && gate_of(n) == GATE_NO)
		destroy(df, n, "gate_removed", "its approval gate is removed", NULL);
	else if (o && gate_of(o) == GATE_YES && gate_of(n) == GATE_MAYBE)
		destroy(df, n, "gate_conditional", "its approval gate is now conditional",
			json_incref(json_object_get(json_object_get(n, "approve"), "expression")));
	if (o && json_object_get(o, "undo") && !json_object_get(n, "undo"))
		destroy(df, n, "undo_removed", "its undo is removed", NULL);
	if (o && json_object_get(o, "check") && !json_object_get(n, "check"))
		destroy(df, n, "check_removed", "its check is removed", NULL);

	json_t *was = json_array(), *now = json_array();
	if (o)
		sql_of(json_object_get(o, "with"), was);
	sql_of(json_object_get(n, "with"), now);
	size_t i, j;
	json_t *x, *y;
	json_array_foreach(now, i, x) {
		int old = 0;
		json_array_foreach(was, j, y)
			old |= json_equal(x, y);
		if (old)
			continue;
		char *t = !strcmp(sstr(x, "kind"), "flushes")
				  ? rb_xstrdup("a Redis command that empties a database")
				  : rb_xasprintf("SQL that %s%s", sstr(x, "kind"),
						 json_is_true(json_object_get(x, "no_where"))
							 ? " without WHERE" : "");
		destroy(df, n, "sql", t, json_incref(json_object_get(x, "statement")));
		free(t);
	}
	json_decref(was);
	json_decref(now);

	const json_t *fo = o ? json_object_get(o, "for_each") : NULL;
	const json_t *fn = json_object_get(n, "for_each");
	json_t *more = wider_items(fo, fn);
	if (more && json_array_size(more)) {
		char *t = rb_xasprintf("its for_each is wider: %zu items, was %zu",
				       json_array_size(fn), json_array_size(fo));
		destroy(df, n, "for_each_wider", t, json_incref(more));
		free(t);
	} else if (o && !fo && fn) {
		char *t = json_is_array(fn)
				  ? rb_xasprintf("now runs once for each of %zu items", json_array_size(fn))
				  : rb_xstrdup("now runs once for each item of a list known during the run");
		destroy(df, n, "for_each_wider", t, NULL);
		free(t);
	}
	json_decref(more);
	json_int_t co = json_integer_value(json_object_get(o, "concurrency"));
	json_int_t cn = json_integer_value(json_object_get(n, "concurrency"));
	if (o && fo && fn && cn > co) {
		char *t = rb_xasprintf("its for_each runs %lld items at once, was %lld",
				       (long long)cn, (long long)co);
		destroy(df, n, "for_each_wider", t, NULL);
		free(t);
	}
	if (o && attempts(o) > 1 && attempts(n) <= 1) {
		char *t = rb_xasprintf("its retry is removed (was %lld attempts)",
				       (long long)attempts(o));
		destroy(df, n, "retry_removed", t, NULL);
		free(t);
	}
	if (o && sstr(o, "timeout") && !sstr(n, "timeout")) {
		char *t = rb_xasprintf("its timeout is removed (was %s)", sstr(o, "timeout"));
		destroy(df, n, "timeout_removed", t, NULL);
		free(t);
	}
}

static json_t *entry(const char *change, const struct side *s, size_t i)
{
	const json_t *st = json_array_get(s->steps, i);
	return json_pack("{s:s, s:O, s:O, s:O, s:O}", "change", change, "id",
			 json_object_get(st, "id"), "section", json_array_get(s->section, i),
			 "action", json_object_get(st, "action"), "form", json_object_get(st, "form"));
}

static void removed(struct differ *df, const struct side *o, size_t i)
{
	json_t *e = entry("removed", o, i), *root = json_array();
	json_object_set(e, "step", json_array_get(o->steps, i));
	json_object_set_new(e, "fields", json_array());
	compare(json_array_get(o->steps, i), NULL, root, M_STEP, 0, json_object_get(e, "fields"));
	json_decref(root);
	json_array_append_new(df->entries, e);
}

static void diff_steps(struct differ *df, const json_t *oldp, const json_t *newp, json_t *counts)
{
	struct side o, n;
	side_init(&o, oldp);
	side_init(&n, newp);
	size_t no = json_array_size(o.steps), nn = json_array_size(n.steps);

	/* by id; then the same call under a new id is a rename */
	for (size_t i = 0; i < nn; i++) {
		json_t *at = json_object_get(o.byid, sstr(json_array_get(n.steps, i), "id"));
		if (at) {
			n.match[i] = (long)json_integer_value(at);
			o.match[n.match[i]] = (long)i;
		}
	}
	/* the unmatched old steps by call, each call's in order: paired first come, first served */
	json_t *calls = json_object();
	for (size_t j = 0; j < no; j++) {
		if (o.match[j] >= 0)
			continue;
		char *key = call_key(&o, j);
		json_t *list = json_object_get(calls, key);
		if (!list)
			json_object_set_new(calls, key, list = json_array());
		json_array_append_new(list, json_integer((json_int_t)j));
		free(key);
	}
	for (size_t i = 0; i < nn && json_object_size(calls); i++) {
		if (n.match[i] >= 0)
			continue;
		char *key = call_key(&n, i);
		json_t *list = json_object_get(calls, key);
		if (json_array_size(list)) {
			size_t j = (size_t)json_integer_value(json_array_get(list, 0));
			json_array_remove(list, 0);
			n.match[i] = (long)j;
			o.match[j] = (long)i;
			n.renamed[i] = 1;
		}
		free(key);
	}
	json_decref(calls);

	/* the order: matched steps outside the longest run kept in order were moved */
	long *seq = rb_xmalloc((nn + 1) * sizeof(*seq));
	size_t *seq_at = rb_xmalloc((nn + 1) * sizeof(*seq_at));
	size_t k = 0;
	for (size_t i = 0; i < nn; i++)
		if (n.match[i] >= 0) {
			seq_at[k] = i;
			seq[k++] = n.match[i];
		}
	int *keep = rb_xcalloc(k + 1, sizeof(*keep));
	longest_kept(seq, k, keep);
	int *moved = rb_xcalloc(nn + 1, sizeof(*moved));
	for (size_t i = 0; i < k; i++)
		moved[seq_at[i]] = !keep[i];

	size_t next_old = 0;    /* removed steps are listed where they were */
	size_t added = 0, gone = 0, changed = 0, renamed = 0, reordered = 0;
	for (size_t i = 0; i < nn; i++) {
		const json_t *ns = json_array_get(n.steps, i);
		long m = n.match[i];
		if (m >= 0 && !moved[i])
			for (; next_old < (size_t)m; next_old++)
				if (o.match[next_old] < 0) {
					removed(df, &o, next_old);
					gone++;
				}
		if (m < 0) {
			json_t *e = entry("added", &n, i), *root = json_array();
			json_object_set(e, "step", (json_t *)ns);
			json_object_set_new(e, "fields", json_array());
			compare(NULL, ns, root, M_STEP, 0, json_object_get(e, "fields"));
			json_decref(root);
			json_array_append_new(df->entries, e);
			judge(df, NULL, ns);
			added++;
			continue;
		}
		const json_t *os = json_array_get(o.steps, (size_t)m);
		json_t *fields = json_array(), *root = json_array();
		if (!json_equal(json_array_get(o.section, (size_t)m), json_array_get(n.section, i))) {
			json_t *p = path_with(root, "section");
			add_change(fields, p, json_array_get(o.section, (size_t)m),
				   json_array_get(n.section, i));
			json_decref(p);
		}
		compare(os, ns, root, M_STEP, 0, fields);
		json_decref(root);
		if (!json_array_size(fields) && !n.renamed[i] && !moved[i]) {
			json_decref(fields);
			continue;
		}
		json_t *e = entry("changed", &n, i);
		if (n.renamed[i]) {
			json_object_set(e, "renamed_from", json_object_get(os, "id"));
			renamed++;
		}
		if (moved[i]) {
			const json_t *before = i ? json_object_get(json_array_get(n.steps, i - 1), "id")
						 : NULL;
			json_object_set_new(e, "moved", json_pack("{s:O, s:O, s:o}", "from",
				json_array_get(o.pos, (size_t)m), "to", json_array_get(n.pos, i),
				"after", before && json_equal(json_array_get(n.section, i - 1),
							     json_array_get(n.section, i))
					 ? json_incref((json_t *)before) : json_null()));
			reordered++;
		}
		changed += json_array_size(fields) > 0;
		json_object_set_new(e, "fields", fields);
		json_array_append_new(df->entries, e);
		judge(df, os, ns);
	}
	for (; next_old < no; next_old++)
		if (o.match[next_old] < 0) {
			removed(df, &o, next_old);
			gone++;
		}
	json_object_set_new(counts, "changed", json_integer((json_int_t)changed));
	json_object_set_new(counts, "added", json_integer((json_int_t)added));
	json_object_set_new(counts, "removed", json_integer((json_int_t)gone));
	json_object_set_new(counts, "renamed", json_integer((json_int_t)renamed));
	json_object_set_new(counts, "reordered", json_integer((json_int_t)reordered));
	free(seq);
	free(seq_at);
	free(keep);
	free(moved);
	side_release(&o);
	side_release(&n);
}

/* --- the runbook's settings ---------------------------------------------------- */

/* secrets as {"NAME": {"from", "source"}} */
static json_t *secrets_by_name(const json_t *plan)
{
	json_t *m = json_object();
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(plan, "secrets"), i, s)
		json_object_set_new(m, sstr(s, "name"), json_pack("{s:O, s:O}", "from",
			json_object_get(s, "from"), "source", json_object_get(s, "source")));
	return m;
}

static void diff_settings(struct differ *df, const json_t *a, const json_t *b, json_t *out)
{
	/* the runbook's keys, except where the file is and its hash (comments change it) */
	json_t *ra = json_deep_copy(json_object_get(a, "runbook"));
	json_t *rb = json_deep_copy(json_object_get(b, "runbook"));
	const char *const where[] = {"file", "sha256"};
	for (int i = 0; i < 2; i++) {
		json_object_del(ra, where[i]);
		json_object_del(rb, where[i]);
	}
	/* ... and whether the window is open when the plan is made (the plan's, not the file's) */
	json_object_del(json_object_get(ra, "window"), "now");
	json_object_del(json_object_get(rb, "window"), "now");
	json_t *p = json_pack("[s]", "runbook");
	const char *k;
	json_t *v;
	json_object_foreach(ra, k, v) {
		json_t *w = json_object_get(rb, k);
		json_t *pk = path_with(p, k);
		if (!json_equal(v, w) && !(json_is_null(v) && !w))
			add_change(out, pk, v, w);
		json_decref(pk);
	}
	json_object_foreach(rb, k, v) {
		json_t *pk = path_with(p, k);
		if (!json_object_get(ra, k) && !json_is_null(v))
			add_change(out, pk, NULL, v);
		json_decref(pk);
	}
	json_decref(p);
	/* params, vars and secrets name by name */
	const char *const maps[] = {"params", "vars", "secrets"};
	for (int i = 0; i < 3; i++) {
		json_t *ma = i == 2 ? secrets_by_name(a) : json_incref(json_object_get(a, maps[i]));
		json_t *mb = i == 2 ? secrets_by_name(b) : json_incref(json_object_get(b, maps[i]));
		json_t *root = json_pack("[s]", maps[i]);
		if (json_is_object(ma) && json_is_object(mb))
			compare_keys(ma, mb, root, M_MAP, 7, out);  /* names, each value whole */
		json_decref(root);
		json_decref(ma);
		json_decref(mb);
	}

	if (json_is_true(json_object_get(ra, "rollback")) &&
	    !json_is_true(json_object_get(rb, "rollback")))
		destroy(df, NULL, "rollback_off", "rollback is turned off: the finished steps are "
			"no longer undone when the run fails", NULL);
	if (sstr(ra, "lock") && !sstr(rb, "lock"))
		destroy(df, NULL, "lock_removed", "the lock is removed, so runs may overlap; "
			"it was", json_incref(json_object_get(ra, "lock")));
	if (json_is_object(json_object_get(ra, "window")) &&
	    !json_is_object(json_object_get(rb, "window")))
		destroy(df, NULL, "window_removed", "the maintenance window is removed: the "
			"runbook may run at any time", NULL);
	json_decref(ra);
	json_decref(rb);
}

/* --- the document ---------------------------------------------------------------- */

static json_t *about(const json_t *plan)
{
	if (!plan)
		return json_null();
	const json_t *r = json_object_get(plan, "runbook");
	return json_pack("{s:O, s:O, s:O}", "file", json_object_get(r, "file"), "name",
			 json_object_get(r, "name"), "sha256", json_object_get(r, "sha256"));
}

static const char *plural(json_int_t n)
{
	return n == 1 ? "" : "s";
}

/* "3 steps changed, 1 added, 1 removed; 2 destructive changes" */
static char *summary_text(const json_t *c, int old, int new)
{
	json_int_t ch = json_integer_value(json_object_get(c, "changed"));
	json_int_t ad = json_integer_value(json_object_get(c, "added"));
	json_int_t rm = json_integer_value(json_object_get(c, "removed"));
	json_int_t rn = json_integer_value(json_object_get(c, "renamed"));
	json_int_t ro = json_integer_value(json_object_get(c, "reordered"));
	json_int_t se = json_integer_value(json_object_get(c, "settings"));
	json_int_t de = json_integer_value(json_object_get(c, "destructive"));
	if (!ch && !ad && !rm && !rn && !ro && !se && old && new)
		return rb_xstrdup("no changes");
	struct rb_buf b;
	rb_buf_init(&b);
	if (!old)
		rb_buf_puts(&b, "a new runbook: ");
	if (!new)
		rb_buf_puts(&b, "the runbook is removed: ");
	rb_buf_printf(&b, "%lld step%s changed, %lld added, %lld removed", (long long)ch,
		      plural(ch), (long long)ad, (long long)rm);
	if (rn)
		rb_buf_printf(&b, ", %lld renamed", (long long)rn);
	if (ro)
		rb_buf_printf(&b, ", %lld reordered", (long long)ro);
	if (se)
		rb_buf_printf(&b, "; %lld runbook setting%s changed", (long long)se, plural(se));
	if (de)
		rb_buf_printf(&b, "; %lld destructive change%s", (long long)de, plural(de));
	else
		rb_buf_puts(&b, "; no destructive changes");
	return rb_buf_detach(&b);
}

json_t *rb_plandiff(const json_t *old, const json_t *new)
{
	static const char empty_text[] = "{\"runbook\": {}, \"params\": {}, \"vars\": {}, "
					 "\"secrets\": [], \"steps\": []}";
	json_t *empty = json_loads(empty_text, 0, NULL);
	const json_t *a = old ? old : empty, *b = new ? new : empty;
	struct differ df = {json_array(), json_array()};
	json_t *counts = json_object(), *settings = json_array();
	diff_steps(&df, a, b, counts);
	if (old && new)     /* a runbook added or removed: its steps say it all */
		diff_settings(&df, a, b, settings);
	json_object_set_new(counts, "settings", json_integer((json_int_t)json_array_size(settings)));
	json_object_set_new(counts, "destructive",
			    json_integer((json_int_t)json_array_size(df.destructive)));
	char *text = summary_text(counts, old != NULL, new != NULL);
	json_object_set_new(counts, "text", json_string(text));
	int changed = strcmp(text, "no changes") != 0;
	free(text);
	json_t *d = json_pack("{s:s, s:i, s:o, s:o, s:b, s:o, s:o, s:o, s:o}", "format",
			      "runbook-plan-diff", "format_version", RB_PLANDIFF_FORMAT_VERSION, "old",
			      about(old), "new", about(new), "changed", changed, "summary", counts,
			      "destructive", df.destructive, "settings", settings, "steps",
			      df.entries);
	json_decref(empty);
	return d;
}
