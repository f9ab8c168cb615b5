/*
 * Writes a plan diff (plandiff.c's document) for people: text for the
 * terminal and markdown for a pull-request comment.  Both put the summary
 * line first and the destructive changes next; markdown folds each step's
 * details in <details>.  What comes from a runbook is shown with its control
 * characters visible, and in markdown inside code spans and fences it
 * cannot leave, or as escaped prose.  A value that is long or has several
 * lines goes in a fence (never a code span), so that every line outside a
 * fence is short: mdsplit.c may then cut a long comment between lines, and
 * inside a fence anywhere.
 */
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "plandiff.h"
#include "util.h"

enum { INLINE_MAX = 100 };      /* longer values go in a fence in markdown */

static const char *str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* --- values --------------------------------------------------------------------- */

/* The path of a change as shown: "sql" for with.sql, "undo.with.command", "param days". */
static char *path_text(const json_t *path)
{
	struct rb_buf b;
	rb_buf_init(&b);
	size_t i = 0;
	json_t *k;
	const char *first = json_string_value(json_array_get(path, 0));
	static const char *const settings[][2] = {
		{"runbook", ""}, {"params", "param "}, {"vars", "var "}, {"secrets", "secret "},
	};
	for (size_t s = 0; first && s < 4; s++)
		if (!strcmp(first, settings[s][0]) && json_array_size(path) > 1) {
			rb_buf_puts(&b, settings[s][1]);
			i = 1;
		}
	if (first && !strcmp(first, "with") && json_array_size(path) > 1)
		i = 1;
	for (size_t start = i; i < json_array_size(path); i++) {
		k = json_array_get(path, i);
		if (i > start)
			rb_buf_putc(&b, '.');
		rb_visible_add(&b, json_string_value(k), json_string_length(k), RB_VIS_TAB);
	}
	if (!b.s)
		rb_buf_puts(&b, "(step)");
	return rb_buf_detach(&b);
}

/* What is the same as nothing when the other side has nothing: left out of added steps. */
static int boring(const json_t *path, const json_t *v)
{
	const char *last = json_string_value(json_array_get(path, json_array_size(path) - 1));
	size_t depth = json_array_size(path);
	if (!v || json_is_null(v) || json_is_false(v) ||
	    (json_is_array(v) && !json_array_size(v)) || (json_is_object(v) && !json_object_size(v)))
		return 1;
	if (last && !strcmp(last, "retry"))
		return json_integer_value(json_object_get(v, "attempts")) <= 1;
	if (last && !strcmp(last, "concurrency"))
		return json_integer_value(v) <= 1;
	/* the header line of an added or removed step says these */
	return depth == 1 && last && (!strcmp(last, "action") || !strcmp(last, "form") ||
				      !strcmp(last, "side_effects") || !strcmp(last, "idempotent"));
}

/* A change shown: all of a runbook's settings; of a step, what is not boring (above). */
static int shown(const json_t *c)
{
	const char *first = json_string_value(json_array_get(json_object_get(c, "path"), 0));
	static const char *const settings[] = {"runbook", "params", "vars", "secrets"};
	for (int i = 0; first && i < 4; i++)
		if (!strcmp(first, settings[i]))
			return 1;
	const json_t *o = json_object_get(c, "old"), *n = json_object_get(c, "new");
	const json_t *p = json_object_get(c, "path");
	return !((!o && boring(p, n)) || (!n && boring(p, o)));
}

/* A value on one line: "none" when absent, else compact JSON, controls visible. malloc'd. */
static char *one_line(const json_t *v, const json_t *path)
{
	if (!v)
		return rb_xstrdup("none");
	const char *last = json_string_value(json_array_get(path, json_array_size(path) - 1));
	if (json_is_null(v))
		return rb_xstrdup("none");
	if (last && !strcmp(last, "retry") && json_is_object(v)) {
		json_int_t n = json_integer_value(json_object_get(v, "attempts"));
		if (n <= 1)
			return rb_xstrdup("none");
		return rb_xasprintf("%lld attempts, %s backoff from %s%s%s", (long long)n,
				    str(v, "backoff"), str(v, "delay") ? str(v, "delay") : "0s",
				    str(v, "max_delay") ? " up to " : "",
				    str(v, "max_delay") ? str(v, "max_delay") : "");
	}
	if (last && (!strcmp(last, "undo") || !strcmp(last, "check")) && json_is_object(v)) {
		/* a step hanging off another, added or removed whole: its call on one line */
		char *w = json_dumps(json_object_get(v, "with"), JSON_COMPACT | JSON_PRESERVE_ORDER);
		const char *form = str(v, "form");
		char *t = rb_xasprintf("%s %s", form && strcmp(form, "action") ? form
					: str(v, "action"), w ? w : "{}");
		char *shown_t = rb_visible(t, strlen(t), RB_VIS_TAB);
		free(w);
		free(t);
		return shown_t;
	}
	if (last && !strcmp(last, "approve") && json_is_object(v)) {
		const json_t *g = json_object_get(v, "gate");
		const char *e = str(v, "expression");
		char *p = json_dumps(json_object_get(v, "prompt"), JSON_COMPACT | JSON_ENCODE_ANY);
		char *t = json_is_false(g) ? rb_xstrdup("no gate")
			  : json_is_null(g) ? rb_xasprintf("a gate if %s gives a prompt or true", e)
			  : rb_xasprintf("gate %s%s%s%s", p ? p : "?", e ? " (from " : "", e ? e : "",
					 e ? ")" : "");
		if (str(v, "timeout")) {
			char *more = rb_xasprintf("%s, times out after %s", t, str(v, "timeout"));
			free(t);
			t = more;
		}
		char *shown_t = rb_visible(t, strlen(t), RB_VIS_TAB);
		free(p);
		free(t);
		return shown_t;
	}
	if (last && !strcmp(last, "if") && json_is_object(v)) {
		char *val = json_dumps(json_object_get(v, "value"), JSON_COMPACT | JSON_ENCODE_ANY);
		char *t = rb_xasprintf("%s (%s)", str(v, "expression"), val ? val : "?");
		char *s = rb_visible(t, strlen(t), RB_VIS_TAB);
		free(val);
		free(t);
		return s;
	}
	char *j = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
	char *s = rb_visible(j ? j : "?", j ? strlen(j) : 1, RB_VIS_TAB);
	free(j);
	return s;
}

/* Both sides strings and one of them on several lines: shown as a line diff. */
static int multi_line(const json_t *c)
{
	const json_t *o = json_object_get(c, "old"), *n = json_object_get(c, "new");
	if ((o && !json_is_string(o)) || (n && !json_is_string(n)) || (!o && !n))
		return 0;
	return (o && strchr(json_string_value(o), '\n')) || (n && strchr(json_string_value(n), '\n'));
}

struct lines {
	char **v;               /* visible, malloc'd */
	size_t n;
};

static void lines_of(const json_t *s, struct lines *l)
{
	l->v = NULL;
	l->n = 0;
	if (!s)
		return;
	const char *p = json_string_value(s), *end = p + json_string_length(s);
	size_t cap = 0;
	while (p < end) {
		const char *e = memchr(p, '\n', (size_t)(end - p));
		size_t len = e ? (size_t)(e - p) : (size_t)(end - p);
		rb_grow(&l->v, &cap, l->n + 1, sizeof(*l->v));
		l->v[l->n++] = rb_visible(p, len, RB_VIS_TAB);
		p += len + (e ? 1 : 0);
	}
}

static void lines_free(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

/*
 * The lines of old and new as a diff: emit(ud, ' ' | '-' | '+', line) for
 * each, by the longest common subsequence (all of old, then all of new, past
 * a million line pairs).
 */
static void line_diff(const json_t *old, const json_t *new,
		      void (*emit)(void *ud, char op, const char *line), void *ud)
{
	struct lines a, b;
	lines_of(old, &a);
	lines_of(new, &b);
	size_t w = b.n + 1;
	unsigned *t = (a.n + 1) * w <= 1000000 ? rb_xcalloc((a.n + 1) * w, sizeof(*t)) : NULL;
	if (!t) {
		for (size_t i = 0; i < a.n; i++)
			emit(ud, '-', a.v[i]);
		for (size_t j = 0; j < b.n; j++)
			emit(ud, '+', b.v[j]);
	} else {
		for (size_t i = a.n; i-- > 0;)
			for (size_t j = b.n; j-- > 0;)
				t[i * w + j] = !strcmp(a.v[i], b.v[j])
						       ? t[(i + 1) * w + j + 1] + 1
						       : t[(i + 1) * w + j] > t[i * w + j + 1]
							 ? t[(i + 1) * w + j] : t[i * w + j + 1];
		size_t i = 0, j = 0;
		while (i < a.n || j < b.n) {
			if (i < a.n && j < b.n && !strcmp(a.v[i], b.v[j])) {
				emit(ud, ' ', a.v[i++]);
				j++;
			} else if (j >= b.n || (i < a.n && t[(i + 1) * w + j] >= t[i * w + j + 1])) {
				emit(ud, '-', a.v[i++]);
			} else {
				emit(ud, '+', b.v[j++]);
			}
		}
	}
	free(t);
	lines_free(&a);
	lines_free(&b);
}

static const char *action_of(const json_t *e)
{
	return str(e, "form") && strcmp(str(e, "form"), "action") ? str(e, "form")
								   : str(e, "action");
}

/* --- text --------------------------------------------------------------------- */

#define BOLD "\033[1m"
#define RED "\033[31m"
#define GREEN "\033[32m"
#define YELLOW "\033[33m"
#define RESET "\033[0m"

struct text {
	FILE *f;
	int color;
	const char *indent;
};

static const char *col(const struct text *t, const char *code)
{
	return t->color ? code : "";
}

static void text_line(void *ud, char op, const char *line)
{
	struct text *t = ud;
	fprintf(t->f, "%s%s%c %s%s\n", t->indent,
		col(t, op == '-' ? RED : op == '+' ? GREEN : ""), op, line,
		col(t, op == ' ' ? "" : RESET));
}

/* whole: the changes of a step added or removed, each on one side only: no "(added)" */
static void text_changes(struct text *t, const json_t *changes, const char *indent, int whole)
{
	size_t i;
	json_t *c;
	json_array_foreach(changes, i, c) {
		if (!shown(c))
			continue;
		const json_t *path = json_object_get(c, "path");
		char *p = path_text(path);
		if (multi_line(c)) {
			fprintf(t->f, "%s%s:\n", indent, p);
			char *in = rb_xasprintf("%s  ", indent);
			struct text sub = {t->f, t->color, in};
			line_diff(json_object_get(c, "old"), json_object_get(c, "new"), text_line, &sub);
			free(in);
		} else {
			char *o = one_line(json_object_get(c, "old"), path);
			char *n = one_line(json_object_get(c, "new"), path);
			if (!json_object_get(c, "old"))
				fprintf(t->f, "%s%s: %s%s\n", indent, p, n, whole ? "" : " (added)");
			else if (!json_object_get(c, "new"))
				fprintf(t->f, "%s%s: %s%s\n", indent, p, o, whole ? "" : " (removed)");
			else
				fprintf(t->f, "%s%s: %s -> %s\n", indent, p, o, n);
			free(o);
			free(n);
		}
		free(p);
	}
}

static void text_destructive(struct text *t, const json_t *d)
{
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(d, "destructive"), i, x) {
		fprintf(t->f, "  %s!%s %s: %s", col(t, RED), col(t, RESET),
			str(x, "step") ? str(x, "step") : "runbook", str(x, "text"));
		const json_t *v = json_object_get(x, "value");
		if (v) {
			char *s = one_line(v, NULL);
			const char *shown_v = s;
			if (json_is_string(v)) {
				free(s);
				s = rb_visible(json_string_value(v), json_string_length(v), RB_VIS_TAB);
				shown_v = s;
			}
			fprintf(t->f, ": %s", shown_v);
			free(s);
		}
		fputc('\n', t->f);
	}
}

/* The old or the new runbook's facts; NULL for the side of a runbook added or removed. */
static const json_t *side(const json_t *d, const char *which)
{
	const json_t *s = json_object_get(d, which);
	return json_is_object(s) ? s : NULL;
}

void rb_plandiff_text(const json_t *d, FILE *f, int color)
{
	struct text t = {f, color, ""};
	const json_t *o = side(d, "old"), *n = side(d, "new");
	char *of = o ? rb_visible(str(o, "file"), strlen(str(o, "file")), RB_VIS_TAB)
		     : rb_xstrdup("(none)");
	char *nf = n ? rb_visible(str(n, "file"), strlen(str(n, "file")), RB_VIS_TAB)
		     : rb_xstrdup("(none)");
	fprintf(f, "%splan diff: %s -> %s%s\n", col(&t, BOLD), of, nf, col(&t, RESET));
	free(of);
	free(nf);
	fprintf(f, "%s\n", str(json_object_get(d, "summary"), "text"));
	if (!json_is_true(json_object_get(d, "changed")))
		return;
	if (json_array_size(json_object_get(d, "destructive"))) {
		fprintf(f, "\n%sdestructive changes:%s\n", col(&t, BOLD), col(&t, RESET));
		text_destructive(&t, d);
	}
	if (json_array_size(json_object_get(d, "settings"))) {
		fprintf(f, "\n%srunbook:%s\n", col(&t, BOLD), col(&t, RESET));
		text_changes(&t, json_object_get(d, "settings"), "  ", 0);
	}
	const json_t *steps = json_object_get(d, "steps");
	if (!json_array_size(steps))
		return;
	fprintf(f, "\n%ssteps:%s\n", col(&t, BOLD), col(&t, RESET));
	size_t i;
	json_t *e;
	json_array_foreach(steps, i, e) {
		const char *ch = str(e, "change");
		char mark = ch[0] == 'a' ? '+' : ch[0] == 'r' ? '-' : '~';
		fprintf(f, "  %s%c %s%s  %s", col(&t, mark == '+' ? GREEN : mark == '-' ? RED : YELLOW),
			mark, str(e, "id"), col(&t, RESET), action_of(e));
		if (strcmp(str(e, "section"), "main"))
			fputs("  (on failure)", f);
		if (mark != '~')
			fprintf(f, "  %s", ch);
		if (str(e, "renamed_from"))
			fprintf(f, "  renamed from %s", str(e, "renamed_from"));
		const json_t *mv = json_object_get(e, "moved");
		if (mv) {
			if (str(mv, "after"))
				fprintf(f, "  moved: now after %s", str(mv, "after"));
			else
				fputs("  moved: now first", f);
		}
		fputc('\n', f);
		text_changes(&t, json_object_get(e, "fields"), "      ", mark != '~');
	}
}

/* --- markdown ---------------------------------------------------------------- */

/* Text for HTML (a <summary>): the five characters that mean something escaped. */
static void html(FILE *f, const char *s)
{
	char *v = rb_visible(s, strlen(s), RB_VIS_TAB);
	for (const char *p = v; *p; p++)
		switch (*p) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&#39;", f); break;
		default: fputc(*p, f);
		}
	free(v);
}

/* The longest run of backticks in s. */
static int max_ticks(const char *s)
{
	int ticks = 0, run = 0;
	for (; *s; s++) {
		run = *s == '`' ? run + 1 : 0;
		ticks = run > ticks ? run : ticks;
	}
	return ticks;
}

struct fence {
	FILE *f;
	int ticks;
};

static void fence_line(void *ud, char op, const char *line)
{
	struct fence *fe = ud;
	fprintf(fe->f, "  %c %s\n", op, line);
}

static void fence_open(FILE *f, int ticks, const char *info)
{
	fputs("\n  ", f);
	for (int i = 0; i < ticks; i++)
		fputc('`', f);
	fprintf(f, "%s\n", info);
}

static void fence_close(FILE *f, int ticks)
{
	fputs("  ", f);
	for (int i = 0; i < ticks; i++)
		fputc('`', f);
	fputs("\n\n", f);
}

/* A fence its lines cannot close: more backticks than any run in them, at least 3. */
static int fence_for(const char *const *texts, size_t n)
{
	int ticks = 2;
	for (size_t i = 0; i < n; i++)
		if (texts[i] && max_ticks(texts[i]) > ticks)
			ticks = max_ticks(texts[i]);
	return ticks + 1;
}

/* One change as a list item: short values as code spans, the rest fenced. */
static void md_change(FILE *f, const json_t *c, int whole)
{
	const json_t *path = json_object_get(c, "path");
	const json_t *o = json_object_get(c, "old"), *n = json_object_get(c, "new");
	char *p = path_text(path);
	fputs("- ", f);
	rb_md_code(f, p);
	free(p);
	if (multi_line(c)) {
		const char *texts[2] = {json_string_value(o), json_string_value(n)};
		struct fence fe = {f, fence_for(texts, 2)};
		fputc(':', f);
		fence_open(f, fe.ticks, "diff");
		line_diff(o, n, fence_line, &fe);
		fence_close(f, fe.ticks);
		return;
	}
	char *os = one_line(o, path), *ns = one_line(n, path);
	if (strlen(os) <= INLINE_MAX && strlen(ns) <= INLINE_MAX) {
		fputs(": ", f);
		if (o)
			rb_md_code(f, os);
		if (o && n)
			fputs(" → ", f);
		if (n)
			rb_md_code(f, ns);
		if (!whole)
			fputs(!n ? " (removed)" : !o ? " (added)" : "", f);
		fputc('\n', f);
	} else {
		const char *texts[2] = {os, ns};
		int ticks = fence_for(texts, 2);
		fputc(':', f);
		fence_open(f, ticks, "diff");
		if (o)
			fprintf(f, "  - %s\n", os);
		if (n)
			fprintf(f, "  + %s\n", ns);
		fence_close(f, ticks);
	}
	free(os);
	free(ns);
}

static void md_changes(FILE *f, const json_t *changes, int whole)
{
	size_t i;
	json_t *c;
	json_array_foreach(changes, i, c)
		if (shown(c))
			md_change(f, c, whole);
}

static void md_destructive(FILE *f, const json_t *d)
{
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(d, "destructive"), i, x) {
		fputs("- ", f);
		if (str(x, "step")) {
			fputs("**", f);
			rb_md_code(f, str(x, "step"));
			fputs("**", f);
		} else {
			fputs("**runbook**", f);
		}
		fputs(": ", f);
		rb_md_text(f, str(x, "text"));
		const json_t *v = json_object_get(x, "value");
		if (v) {
			char *s = json_is_string(v) ? rb_xstrdup(json_string_value(v)) : one_line(v, NULL);
			/* a line outside a fence stays short (mdsplit.c): the JSON has it all */
			size_t n = strlen(s);
			if (n > 2 * INLINE_MAX) {
				n = 2 * INLINE_MAX - 3;        /* room for "..." in s */
				while (n && ((unsigned char)s[n] & 0xC0) == 0x80)
					n--;
				strcpy(s + n, "...");
			}
			fputs(": ", f);
			rb_md_code(f, s);
			free(s);
		}
		fputc('\n', f);
	}
}

static void md_file(FILE *f, const json_t *side)
{
	if (!side) {
		fputs("(none)", f);
		return;
	}
	rb_md_code(f, str(side, "file"));
	fprintf(f, " (sha256 `%.12s`)", str(side, "sha256"));
}

void rb_plandiff_markdown(const json_t *d, FILE *f)
{
	const json_t *o = side(d, "old"), *n = side(d, "new");
	fputs("## Plan diff: ", f);
	rb_md_code(f, str(n ? n : o, "name"));
	fputs("\n\n**", f);
	rb_md_text(f, str(json_object_get(d, "summary"), "text"));
	fputs("**\n\n", f);
	md_file(f, o);
	fputs(" → ", f);
	md_file(f, n);
	fputc('\n', f);
	if (!json_is_true(json_object_get(d, "changed")))
		return;
	if (json_array_size(json_object_get(d, "destructive"))) {
		fputs("\n### Destructive changes\n\n", f);
		md_destructive(f, d);
	}
	const json_t *settings = json_object_get(d, "settings");
	if (json_array_size(settings)) {
		fprintf(f, "\n<details><summary>Runbook settings: %zu changed</summary>\n\n",
			json_array_size(settings));
		md_changes(f, settings, 0);
		fputs("\n</details>\n", f);
	}
	const json_t *steps = json_object_get(d, "steps");
	if (json_array_size(steps))
		fputs("\n### Steps\n", f);
	size_t i;
	json_t *e;
	json_array_foreach(steps, i, e) {
		const char *ch = str(e, "change");
		fprintf(f, "\n<details><summary>%c%s <code>", ch[0] - 'a' + 'A', ch + 1);
		html(f, str(e, "id"));
		fputs("</code> (", f);
		html(f, action_of(e));
		fputs(strcmp(str(e, "section"), "main") ? ", on failure)" : ")", f);
		if (str(e, "renamed_from")) {
			fputs(", renamed from <code>", f);
			html(f, str(e, "renamed_from"));
			fputs("</code>", f);
		}
		const json_t *mv = json_object_get(e, "moved");
		if (mv) {
			if (str(mv, "after")) {
				fputs(", moved: now after <code>", f);
				html(f, str(mv, "after"));
				fputs("</code>", f);
			} else {
				fputs(", moved: now first", f);
			}
		}
		fputs("</summary>\n\n", f);
		size_t k, nshown = 0;
		json_t *c;
		json_array_foreach(json_object_get(e, "fields"), k, c)
			nshown += shown(c);
		if (!nshown)
			fputs("- no other change\n", f);
		md_changes(f, json_object_get(e, "fields"), strcmp(ch, "changed") != 0);
		fputs("\n</details>\n", f);
	}
}
