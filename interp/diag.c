/*
 * Formats diagnostics like a compiler: position, severity, message, then the
 * offending source line with a caret under the column.  Messages are sorted by
 * position so that a file's problems read top to bottom.
 */
#include "diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"
#include "yaml_doc.h"

void rb_diags_init(struct rb_diags *d, const char *file, const char *src, size_t srclen)
{
	memset(d, 0, sizeof(*d));
	d->file = file;
	d->src = src;
	d->srclen = srclen;
}

void rb_diags_release(struct rb_diags *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].msg);
	free(d->v);
	d->v = NULL;
	d->n = d->cap = d->errors = 0;
}

static void add(struct rb_diags *d, enum rb_severity sev, int line, int col,
		const char *fmt, va_list ap)
{
	rb_grow(&d->v, &d->cap, d->n + 1, sizeof(*d->v));
	struct rb_diag *g = &d->v[d->n];
	g->sev = sev;
	g->line = line;
	g->col = col;
	g->seq = d->n++;
	g->msg = rb_xvasprintf(fmt, ap);
	if (sev == RB_ERROR)
		d->errors++;
}

int rb_error_at(struct rb_diags *d, const struct rb_node *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add(d, RB_ERROR, n ? n->line : 0, n ? n->col : 0, fmt, ap);
	va_end(ap);
	return -1;
}

int rb_error_pos(struct rb_diags *d, int line, int col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add(d, RB_ERROR, line, col, fmt, ap);
	va_end(ap);
	return -1;
}

void rb_warning_pos(struct rb_diags *d, int line, int col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add(d, RB_WARNING, line, col, fmt, ap);
	va_end(ap);
}

void rb_note_pos(struct rb_diags *d, int line, int col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add(d, RB_NOTE, line, col, fmt, ap);
	va_end(ap);
}

/*
 * Notes belong to the message reported just before them, so they sort with
 * it: the key of a note is its parent's position.
 */
static int by_position(const void *pa, const void *pb)
{
	const struct rb_diag *a = pa, *b = pb;
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	if (a->col != b->col)
		return a->col < b->col ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void print_caret(struct rb_diags *d, FILE *f, int line, int col, int color)
{
	if (!d->src || line <= 0)
		return;
	const char *p = d->src, *end = d->src + d->srclen;
	for (int l = 1; l < line && p < end; l++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return;
		p = nl + 1;
	}
	if (p >= end)
		return;
	const char *eol = memchr(p, '\n', (size_t)(end - p));
	size_t len = eol ? (size_t)(eol - p) : (size_t)(end - p);
	if (len && p[len - 1] == '\r')
		len--;
	if (len > 400)
		return;         /* a minified line helps nobody */
	/*
	 * The line may be what was wrong (bad UTF-8, a control character): it is
	 * shown as util.h makes text visible, and the caret counts the columns of
	 * what is shown.  Columns count characters; tabs are kept so that it lines up.
	 */
	const char *q = p;
	for (int c = 1; c < col && q < p + len; c++) {
		q++;
		while (q < p + len && (*q & 0xC0) == 0x80)
			q++;
	}
	char *before = rb_visible(p, (size_t)(q - p), RB_VIS_TAB);
	char *rest = rb_visible(q, len - (size_t)(q - p), RB_VIS_TAB);
	fprintf(f, " %5d | %s%s\n       | ", line, before, rest);
	for (const char *b = before; *b; b++)
		if ((*b & 0xC0) != 0x80)
			fputc(*b == '\t' ? '\t' : ' ', f);
	free(before);
	free(rest);
	fputs(color ? "\033[1;32m^\033[0m\n" : "^\n", f);
}

void rb_diags_print(struct rb_diags *d, FILE *f, int color)
{
	static const char *const names[] = {"error", "warning", "note"};
	static const char *const colors[] = {"\033[1;31m", "\033[1;35m", "\033[1;36m"};

	/* Give each note the position of the message it follows. */
	struct rb_diag *v = rb_xcalloc(d->n, sizeof(*v));
	int pl = 0, pc = 0;
	for (size_t i = 0; i < d->n; i++) {
		v[i] = d->v[i];
		if (v[i].sev != RB_NOTE) {
			pl = v[i].line;
			pc = v[i].col;
		} else {
			v[i].line = pl;
			v[i].col = pc;
		}
	}
	qsort(v, d->n, sizeof(*v), by_position);
	for (size_t i = 0; i < d->n; i++) {
		const struct rb_diag *g = &v[i];
		const struct rb_diag *orig = &d->v[g->seq];
		if (color)
			fputs("\033[1m", f);
		if (orig->line > 0)
			fprintf(f, "%s:%d:%d: ", d->file, orig->line, orig->col);
		else
			fprintf(f, "%s: ", d->file);
		/* Messages quote values: their control characters are shown, not obeyed. */
		char *msg = rb_visible(g->msg, strlen(g->msg), RB_VIS_TAB);
		if (color)
			fprintf(f, "%s%s:\033[0m\033[1m %s\033[0m\n", colors[g->sev],
				names[g->sev], msg);
		else
			fprintf(f, "%s: %s\n", names[g->sev], msg);
		free(msg);
		if (orig->line > 0)
			print_caret(d, f, orig->line, orig->col, color);
	}
	free(v);
}

int rb_use_color(FILE *f)
{
	const char *nc = getenv("NO_COLOR");
	if (nc && *nc)
		return 0;
	return isatty(fileno(f));
}
