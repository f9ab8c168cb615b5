/*
 * The live terminal view of a run (live.h): the running steps in a footer
 * redrawn in place, everything else printed above it.  It only formats and
 * writes: no clock, no lock, no terminal query; the engine passes those in.
 */
#include "live.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define PENDING_MAX     65536   /* pending bytes that are written at once */
#define LAST_MAX        1024    /* bytes kept of a step's latest output line */
#define ID_COLS_MAX     24      /* the footer's id column at most */
#define DEFAULT_WIDTH   80

#define C_RESET         "\x1b[0m"
#define C_BOLD          "\x1b[1m"
#define C_DIM           "\x1b[2m"
#define C_RED           "\x1b[31m"
#define C_GREEN         "\x1b[32m"
#define C_YELLOW        "\x1b[33m"
#define C_CYAN          "\x1b[36m"

static const char *const spinner[] = {
	"\u280b", "\u2819", "\u2839", "\u2838", "\u283c", "\u2834", "\u2826", "\u2827", "\u2807",
	"\u280f",
};
#define NSPIN   (sizeof(spinner) / sizeof(*spinner))

/*
 * A step in the footer: running, or waiting to retry.  In a list in the
 * order they started and in a hash table by id, so that each event costs the
 * same with thousands running.
 */
struct lstep {
	struct lstep *prev, *next;
	struct lstep *hnext;    /* in its bucket */
	char *id;
	int attempt;
	int64_t started_ms;     /* of this attempt */
	int64_t retry_at;       /* when waiting to retry: when; 0 while running */
	char *last;             /* latest non-blank output line, raw */
	size_t lastlen, lastcap;
};

struct rb_live {
	FILE *out;
	int width, color;
	size_t total, done, failed, skipped, interrupted;
	struct lstep *head, *tail;
	struct lstep **buckets;
	size_t nbuckets, nrun;
	int64_t t0;             /* when the run started */
	int started;            /* an event came: there is a footer to show */
	int finished;           /* run_finished came: none until run_started */
	struct rb_buf pending;  /* permanent lines not written yet */
	char *footer;           /* the footer on the screen, "" when none */
	int rows;               /* its rows */
	int64_t last_write;
	int wrote;              /* last_write is set */
};

/* --- harmless text of a known width ---------------------------------------------- */

/*
 * Where text goes: a buffer, and the columns it used.  A footer row has a
 * limit: what does not fit is cut and ends in "…"; tabs and newlines become
 * spaces.  A permanent line has none, keeps tabs and indents after newlines.
 */
struct sink {
	struct rb_buf *b;
	int footer;
	int max;                /* columns allowed */
	int cols;               /* columns used */
	size_t mark;            /* b->len when cols was at most max - 1 ... */
	int markcols;           /* ... and cols then: where "…" goes when cut */
	int cut;                /* something did not fit: the rest is dropped */
};

static void sink_init(struct sink *k, struct rb_buf *b, int footer, int max)
{
	memset(k, 0, sizeof(*k));
	k->b = b;
	k->footer = footer;
	k->max = max;
	k->mark = b->len;
}

static void emit(struct sink *k, const char *s, size_t n, int w)
{
	if (k->cut)
		return;
	if (k->cols + w > k->max) {
		k->b->len = k->mark;
		if (k->b->s)
			k->b->s[k->b->len] = '\0';
		k->cols = k->markcols;
		if (k->cols + 1 <= k->max) {
			rb_buf_puts(k->b, "\u2026");
			k->cols++;
		}
		k->cut = 1;
		return;
	}
	rb_buf_add(k->b, s, n);
	k->cols += w;
	if (k->cols <= k->max - 1) {
		k->mark = k->b->len;
		k->markcols = k->cols;
	}
}

/* Ranges of code points, sorted, for a binary search. */
struct range {
	uint32_t lo, hi;
};

/* Combining marks and zero-width characters: no column. */
static const struct range zero_width[] = {
	{0x0300, 0x036f}, {0x0483, 0x0489}, {0x0591, 0x05bd}, {0x0610, 0x061a},
	{0x064b, 0x065f}, {0x1ab0, 0x1aff}, {0x1dc0, 0x1dff}, {0x200b, 0x200f},
	{0x202a, 0x202e}, {0x2060, 0x2064}, {0x20d0, 0x20ff}, {0xfe00, 0xfe0f},
	{0xfe20, 0xfe2f}, {0xfeff, 0xfeff}, {0xe0100, 0xe01ef},
};

/*
 * East Asian wide and emoji: two columns.  Generous on purpose: counting a
 * narrow character as wide only shortens a row; the reverse would wrap it.
 */
static const struct range wide[] = {
	{0x1100, 0x115f}, {0x231a, 0x231b}, {0x2329, 0x232a}, {0x23e9, 0x23ec},
	{0x23f0, 0x23f0}, {0x23f3, 0x23f3}, {0x25fd, 0x25fe}, {0x2614, 0x2615},
	{0x2648, 0x2653}, {0x267f, 0x267f}, {0x2693, 0x2693}, {0x26a1, 0x26a1},
	{0x26aa, 0x26ab}, {0x26bd, 0x26be}, {0x26c4, 0x26c5}, {0x26ce, 0x26ce},
	{0x26d4, 0x26d4}, {0x26ea, 0x26ea}, {0x26f2, 0x26f3}, {0x26f5, 0x26f5},
	{0x26fa, 0x26fa}, {0x26fd, 0x26fd}, {0x2705, 0x2705}, {0x270a, 0x270b},
	{0x2728, 0x2728}, {0x274c, 0x274c}, {0x274e, 0x274e}, {0x2753, 0x2755},
	{0x2757, 0x2757}, {0x2795, 0x2797}, {0x27b0, 0x27b0}, {0x27bf, 0x27bf},
	{0x2b1b, 0x2b1c}, {0x2b50, 0x2b50}, {0x2b55, 0x2b55}, {0x2e80, 0x303e},
	{0x3041, 0x33ff}, {0x3400, 0x4dbf}, {0x4e00, 0x9fff}, {0xa000, 0xa4cf},
	{0xa960, 0xa97f}, {0xac00, 0xd7a3}, {0xf900, 0xfaff}, {0xfe10, 0xfe19},
	{0xfe30, 0xfe6f}, {0xff00, 0xff60}, {0xffe0, 0xffe6}, {0x16fe0, 0x16fe4},
	{0x17000, 0x18cff}, {0x1b000, 0x1b2ff}, {0x1f004, 0x1f004}, {0x1f0cf, 0x1f0cf},
	{0x1f18e, 0x1f18e}, {0x1f191, 0x1f19a}, {0x1f200, 0x1f265}, {0x1f300, 0x1f64f},
	{0x1f680, 0x1f6ff}, {0x1f7e0, 0x1f7eb}, {0x1f900, 0x1f9ff}, {0x1fa70, 0x1faff},
	{0x20000, 0x2fffd}, {0x30000, 0x3fffd},
};

static int in_ranges(const struct range *r, size_t n, uint32_t cp)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cp < r[mid].lo)
			hi = mid;
		else if (cp > r[mid].hi)
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

static int cp_width(uint32_t cp)
{
	if (in_ranges(zero_width, sizeof(zero_width) / sizeof(*zero_width), cp))
		return 0;
	if (in_ranges(wide, sizeof(wide) / sizeof(*wide), cp))
		return 2;
	return 1;
}

/* The length of the valid UTF-8 character at p (its code point in *cp), or 0. */
static size_t utf8_char(const unsigned char *p, size_t len, uint32_t *cp)
{
	unsigned c = p[0];
	size_t n;
	uint32_t v, min;
	if ((c & 0xe0) == 0xc0)
		n = 2, v = c & 0x1f, min = 0x80;
	else if ((c & 0xf0) == 0xe0)
		n = 3, v = c & 0x0f, min = 0x800;
	else if ((c & 0xf8) == 0xf0)
		n = 4, v = c & 0x07, min = 0x10000;
	else
		return 0;
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (p[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

/*
 * Text made harmless (util.h): control characters shown, not obeyed (ESC as
 * \e, CR as \r), so that a command's output can neither move the cursor,
 * erase, recolour nor retitle; in a footer row, tabs and newlines as spaces.
 */
static void put_text(struct sink *k, const char *s, size_t len)
{
	char *v = rb_visible(s, len, RB_VIS_TAB | RB_VIS_NL);
	const unsigned char *p = (const unsigned char *)v;
	size_t i = 0, n = strlen(v);
	while (i < n && !k->cut) {
		unsigned c = p[i];
		uint32_t cp;
		size_t u;
		if ((c == '\t' || c == '\n') && k->footer) {
			emit(k, " ", 1, 1);
			i++;
		} else if (c == '\n') {
			emit(k, "\n    ", 5, 4);  /* a message's next line, indented */
			i++;
		} else if (c < 0x80) {
			emit(k, v + i, 1, 1);   /* a tab too: where it ends is the terminal's */
			i++;
		} else if ((u = utf8_char(p + i, n - i, &cp))) {
			emit(k, v + i, u, cp_width(cp));
			i += u;
		} else {
			i++;                    /* not reached: v is valid UTF-8 */
		}
	}
	free(v);
}

static void put_str(struct sink *k, const char *s)
{
	put_text(k, s, strlen(s));
}

/* Colour takes no column; it stays when the text after it is cut. */
static void put_sgr(struct rb_live *lv, struct sink *k, const char *sgr)
{
	if (!lv->color)
		return;
	rb_buf_puts(k->b, sgr);
	if (!k->cut && k->cols <= k->max - 1) {
		k->mark = k->b->len;
		k->markcols = k->cols;
	}
}

/* A field of exactly w columns: s cut or padded with spaces. */
static void put_field(struct sink *k, const char *s, int w)
{
	struct rb_buf f;
	struct sink fk;
	rb_buf_init(&f);
	sink_init(&fk, &f, 1, w);
	put_str(&fk, s);
	for (; fk.cols < w; fk.cols++)
		rb_buf_putc(&f, ' ');
	put_text(k, f.s, f.len);
	rb_buf_release(&f);
}

static int text_cols(const char *s)
{
	struct rb_buf f;
	struct sink fk;
	rb_buf_init(&f);
	sink_init(&fk, &f, 1, INT_MAX);
	put_str(&fk, s);
	rb_buf_release(&f);
	return fk.cols;
}

/*
 * What a terminal would leave of a line with carriage returns (a progress
 * bar): the text after the last one that is not at the end.  For the footer
 * only, which shows a step's state; the permanent line shows all of it.
 */
static void visible_part(const char **s, size_t *len)
{
	while (*len && (*s)[*len - 1] == '\r')
		(*len)--;
	for (size_t i = *len; i > 0; i--) {
		if ((*s)[i - 1] == '\r') {
			*s += i;
			*len -= i;
			return;
		}
	}
}

/* 12.3s, 1m02s, 2h05m; cut down, not rounded, as a clock would be. */
static void fmt_duration(int64_t ms, char *buf, size_t size)
{
	if (ms < 0)
		ms = 0;
	if (ms < 60000)
		snprintf(buf, size, "%d.%ds", (int)(ms / 1000), (int)(ms % 1000 / 100));
	else if (ms < 3600000)
		snprintf(buf, size, "%dm%02ds", (int)(ms / 60000), (int)(ms % 60000 / 1000));
	else
		snprintf(buf, size, "%" PRId64 "h%02dm", ms / 3600000, (int)(ms % 3600000 / 60000));
}

/* --- the steps in the footer ---------------------------------------------------- */

static size_t hash_id(const char *id)
{
	size_t h = 2166136261u;         /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

static struct lstep *find_step(struct rb_live *lv, const char *id)
{
	if (!lv->nbuckets)
		return NULL;
	struct lstep *s = lv->buckets[hash_id(id) % lv->nbuckets];
	while (s && strcmp(s->id, id))
		s = s->hnext;
	return s;
}

static void rehash(struct rb_live *lv)
{
	size_t n = lv->nbuckets ? lv->nbuckets * 2 : 64;
	free(lv->buckets);
	lv->buckets = rb_xcalloc(n, sizeof(*lv->buckets));
	lv->nbuckets = n;
	for (struct lstep *s = lv->head; s; s = s->next) {
		struct lstep **b = &lv->buckets[hash_id(s->id) % n];
		s->hnext = *b;
		*b = s;
	}
}

static struct lstep *add_step(struct rb_live *lv, const char *id)
{
	struct lstep *s = rb_xcalloc(1, sizeof(*s));
	s->id = rb_xstrdup(id);
	s->prev = lv->tail;
	if (lv->tail)
		lv->tail->next = s;
	else
		lv->head = s;
	lv->tail = s;
	lv->nrun++;
	if (lv->nrun > lv->nbuckets) {
		rehash(lv);     /* links s too */
	} else {
		struct lstep **b = &lv->buckets[hash_id(id) % lv->nbuckets];
		s->hnext = *b;
		*b = s;
	}
	return s;
}

static void remove_step(struct rb_live *lv, struct lstep *s)
{
	struct lstep **b = &lv->buckets[hash_id(s->id) % lv->nbuckets];
	while (*b != s)
		b = &(*b)->hnext;
	*b = s->hnext;
	if (s->prev)
		s->prev->next = s->next;
	else
		lv->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		lv->tail = s->prev;
	lv->nrun--;
	free(s->id);
	free(s->last);
	free(s);
}

static void clear_steps(struct rb_live *lv)
{
	while (lv->head)
		remove_step(lv, lv->head);
}

/* Keep line as the step's latest, unless it is blank. */
static void set_last(struct lstep *s, const char *line, size_t len)
{
	size_t i = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i == len)
		return;
	if (len > LAST_MAX) {
		len = LAST_MAX;
		while (len && ((unsigned char)line[len] & 0xc0) == 0x80)
			len--;          /* not in the middle of a character */
	}
	rb_grow(&s->last, &s->lastcap, len + 1, 1);
	memcpy(s->last, line, len);
	s->last[len] = '\0';
	s->lastlen = len;
}

/* --- the footer ------------------------------------------------------------------- */

/* "id", or "id #2" for a later attempt. */
static void step_label(const struct lstep *s, char *buf, size_t size)
{
	if (s->attempt > 1)
		snprintf(buf, size, "%s #%d", s->id, s->attempt);
	else
		snprintf(buf, size, "%s", s->id);
}

static void step_row(struct rb_live *lv, struct sink *k, const struct lstep *s, int idw,
		     int64_t now)
{
	char label[96], d[32];
	step_label(s, label, sizeof(label));
	if (s->retry_at) {
		put_sgr(lv, k, C_YELLOW);
		put_str(k, "\u21bb ");
		put_sgr(lv, k, C_RESET);
		put_field(k, label, idw);
		fmt_duration(s->retry_at - now, d, sizeof(d));
		char what[64];
		snprintf(what, sizeof(what), " retry %d in %s", s->attempt + 1, d);
		put_sgr(lv, k, C_YELLOW);
		put_str(k, what);
		put_sgr(lv, k, C_RESET);
		return;
	}
	int64_t el = now - s->started_ms;
	put_sgr(lv, k, C_CYAN);
	put_str(k, spinner[(el < 0 ? 0 : el / 100) % NSPIN]);
	put_sgr(lv, k, C_RESET);
	put_str(k, " ");
	put_sgr(lv, k, C_BOLD);
	put_field(k, label, idw);
	put_sgr(lv, k, C_RESET);
	fmt_duration(el, d, sizeof(d));
	char col[40];
	snprintf(col, sizeof(col), " %6s", d);
	put_str(k, col);
	if (s->last) {
		put_str(k, "  ");
		put_sgr(lv, k, C_DIM);
		put_text(k, s->last, s->lastlen);
		put_sgr(lv, k, C_RESET);
	}
}

static void summary_row(struct rb_live *lv, struct sink *k, int64_t now)
{
	char s[160], d[32];
	size_t done = lv->total && lv->done > lv->total ? lv->total : lv->done;
	if (lv->total)
		snprintf(s, sizeof(s), "[%zu/%zu]", done, lv->total);
	else
		snprintf(s, sizeof(s), "[%zu]", done);
	put_sgr(lv, k, C_BOLD);
	put_str(k, s);
	put_sgr(lv, k, C_RESET);
	snprintf(s, sizeof(s), " %zu running", lv->nrun);
	put_str(k, s);
	if (lv->failed) {
		snprintf(s, sizeof(s), ", %zu failed", lv->failed);
		put_sgr(lv, k, C_RED);
		put_str(k, s);
		put_sgr(lv, k, C_RESET);
	}
	if (lv->interrupted) {
		snprintf(s, sizeof(s), ", %zu interrupted", lv->interrupted);
		put_str(k, s);
	}
	if (lv->skipped) {
		snprintf(s, sizeof(s), ", %zu skipped", lv->skipped);
		put_str(k, s);
	}
	fmt_duration(now - lv->t0, d, sizeof(d));
	snprintf(s, sizeof(s), " \u00b7 %s", d);
	put_str(k, s);
}

/* The footer's rows, separated by "\n" and not ended by one; their count. */
static int render_footer(struct rb_live *lv, int64_t now, struct rb_buf *b)
{
	if (!lv->started || (lv->finished && !lv->nrun))
		return 0;
	int max = lv->width - 1, rows = 0;
	size_t shown = lv->nrun < RB_LIVE_MAX_ROWS ? lv->nrun : RB_LIVE_MAX_ROWS;
	/* The id column fits the longest id shown, within a third of the row. */
	int idw = 1;
	const struct lstep *s = lv->head;
	for (size_t i = 0; i < shown; i++, s = s->next) {
		char label[96];
		step_label(s, label, sizeof(label));
		int w = text_cols(label);
		if (w > idw)
			idw = w;
	}
	if (idw > ID_COLS_MAX)
		idw = ID_COLS_MAX;
	if (idw > max / 3)
		idw = max / 3 > 1 ? max / 3 : 1;
	struct sink k;
	s = lv->head;
	for (size_t i = 0; i < shown; i++, rows++, s = s->next) {
		sink_init(&k, b, 1, max);
		step_row(lv, &k, s, idw, now);
		put_sgr(lv, &k, C_RESET);
		rb_buf_putc(b, '\n');
	}
	if (lv->nrun > shown) {
		char more[64];
		snprintf(more, sizeof(more), "\u2026 and %zu more", lv->nrun - shown);
		sink_init(&k, b, 1, max);
		put_sgr(lv, &k, C_DIM);
		put_str(&k, more);
		put_sgr(lv, &k, C_RESET);
		rb_buf_putc(b, '\n');
		rows++;
	}
	sink_init(&k, b, 1, max);
	summary_row(lv, &k, now);
	put_sgr(lv, &k, C_RESET);
	return rows + 1;
}

/*
 * One write: up over the old footer, clear to the end of the screen, the
 * pending lines, the new footer (none when !footer).  Nothing when nothing
 * would change.
 */
static void write_screen(struct rb_live *lv, int64_t now, int footer)
{
	struct rb_buf f, b;
	rb_buf_init(&f);
	int rows = footer ? render_footer(lv, now, &f) : 0;
	const char *fs = f.s ? f.s : "";
	if (!lv->pending.len && rows == lv->rows && !strcmp(fs, lv->footer)) {
		rb_buf_release(&f);
		return;
	}
	rb_buf_init(&b);
	if (lv->rows > 1)
		rb_buf_printf(&b, "\r\x1b[%dA\x1b[J", lv->rows - 1);
	else if (lv->rows == 1)
		rb_buf_puts(&b, "\r\x1b[J");
	if (lv->pending.len)
		rb_buf_add(&b, lv->pending.s, lv->pending.len);
	lv->pending.len = 0;
	rb_buf_add(&b, fs, strlen(fs));
	fwrite(b.s, 1, b.len, lv->out);
	fflush(lv->out);
	rb_buf_release(&b);
	free(lv->footer);
	lv->footer = rb_buf_detach(&f);
	lv->rows = rows;
}

static void draw(struct rb_live *lv, int64_t now)
{
	write_screen(lv, now, 1);
	lv->last_write = now;
	lv->wrote = 1;
}

static int due(const struct rb_live *lv, int64_t now)
{
	return !lv->wrote || now - lv->last_write >= RB_LIVE_INTERVAL_MS;
}

/* --- permanent lines ------------------------------------------------------------ */

static void line_sgr(struct rb_live *lv, const char *sgr)
{
	if (lv->color)
		rb_buf_puts(&lv->pending, sgr);
}

static void line_text(struct rb_live *lv, const char *s, size_t len)
{
	struct sink k;
	sink_init(&k, &lv->pending, 0, INT_MAX);
	put_text(&k, s, len);
}

static void line_str(struct rb_live *lv, const char *s)
{
	line_text(lv, s, strlen(s));
}

static void line_end(struct rb_live *lv)
{
	line_sgr(lv, C_RESET);
	rb_buf_putc(&lv->pending, '\n');
}

/* A whole line: text, or else fallback, in colour sgr (NULL: none). */
static void line_msg(struct rb_live *lv, const char *sgr, const char *text, const char *fallback)
{
	if (sgr)
		line_sgr(lv, sgr);
	line_str(lv, text ? text : fallback);
	line_end(lv);
}

/* --- events --------------------------------------------------------------------- */

static const char *get_str(const json_t *ev, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(ev, key));
	return s ? s : dflt;
}

static int64_t get_int(const json_t *ev, const char *key, int64_t dflt)
{
	json_t *v = json_object_get(ev, key);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static void on_output(struct rb_live *lv, const json_t *ev)
{
	const char *id = get_str(ev, "step", "?");
	json_t *jl = json_object_get(ev, "line");
	const char *line = json_is_string(jl) ? json_string_value(jl) : "";
	size_t len = json_is_string(jl) ? json_string_length(jl) : 0;
	const char *last = line;
	size_t lastlen = len;
	visible_part(&last, &lastlen);
	struct lstep *s = find_step(lv, id);
	if (s)
		set_last(s, last, lastlen);
	while (len && line[len - 1] == '\r')
		len--;          /* CRLF: a CR that ends the line hides nothing */
	line_sgr(lv, C_DIM);
	line_str(lv, id);
	line_str(lv, !strcmp(get_str(ev, "stream", ""), "stderr") ? "! " : "| ");
	line_text(lv, line, len);
	line_end(lv);
}

static void on_started(struct rb_live *lv, const json_t *ev, int64_t now)
{
	const char *id = get_str(ev, "step", "?");
	struct lstep *s = find_step(lv, id);
	if (!s)
		s = add_step(lv, id);
	s->attempt = (int)get_int(ev, "attempt", 1);
	s->started_ms = now;
	s->retry_at = 0;
	free(s->last);          /* a new attempt's output is yet to come */
	s->last = NULL;
	s->lastlen = s->lastcap = 0;
}

static void on_retry(struct rb_live *lv, const json_t *ev, const char *text, int64_t now)
{
	const char *id = get_str(ev, "step", "?");
	struct lstep *s = find_step(lv, id);
	if (!s)
		s = add_step(lv, id);
	s->attempt = (int)get_int(ev, "attempt", s->attempt);
	int64_t delay = get_int(ev, "delay_ms", 0);
	s->retry_at = now + (delay > 0 ? delay : 1);
	line_sgr(lv, C_YELLOW);
	line_str(lv, "\u21bb ");
	if (text) {
		line_str(lv, text);
	} else {
		char m[64];
		snprintf(m, sizeof(m), ": attempt %d failed; retrying", s->attempt);
		line_str(lv, id);
		line_str(lv, m);
	}
	line_end(lv);
}

static void on_finished(struct rb_live *lv, const json_t *ev)
{
	const char *id = get_str(ev, "step", "?");
	const char *status = get_str(ev, "status", "finished");
	const char *err = get_str(ev, "error", NULL);
	int64_t ms = get_int(ev, "duration_ms", -1);
	char d[32] = "";
	if (ms >= 0)
		fmt_duration(ms, d, sizeof(d));
	struct lstep *s = find_step(lv, id);
	if (s)
		remove_step(lv, s);
	lv->done++;

	const char *mark = "\u2022", *sgr = NULL, *what = NULL;
	if (!strcmp(status, "succeeded")) {
		mark = "\u2713", sgr = C_GREEN;
	} else if (!strcmp(status, "failed")) {
		mark = "\u2717", sgr = C_RED, what = ms >= 0 ? " failed after " : " failed";
		lv->failed++;
	} else if (!strcmp(status, "skipped")) {
		mark = "-", sgr = C_YELLOW, what = " skipped";
		lv->skipped++;
	} else if (!strcmp(status, "interrupted")) {
		mark = "!", sgr = C_YELLOW, what = ms >= 0 ? " interrupted after " : " interrupted";
		lv->interrupted++;
	} else if (!strcmp(status, "satisfied")) {
		mark = "\u2713", sgr = C_GREEN, what = " satisfied";
	}
	if (sgr)
		line_sgr(lv, sgr);
	line_str(lv, mark);
	line_sgr(lv, C_RESET);
	line_str(lv, " ");
	line_str(lv, id);
	if (!what) {            /* succeeded, or a status the view does not know */
		if (strcmp(status, "succeeded")) {
			char *words = rb_xstrdup(status);     /* awaiting_approval: two words */
			for (char *p = words; *p; p++)
				*p = *p == '_' ? ' ' : *p;
			line_str(lv, " ");
			line_str(lv, words);
			free(words);
		}
		if (*d) {
			line_str(lv, " ");
			line_str(lv, d);
		}
	} else {
		if (sgr)
			line_sgr(lv, sgr);
		line_str(lv, what);
		if (what[strlen(what) - 1] == ' ')
			line_str(lv, d);
		line_sgr(lv, C_RESET);
	}
	if (err) {
		line_str(lv, ": ");
		line_str(lv, err);
	}
	line_end(lv);
}

static void on_run_started(struct rb_live *lv, const json_t *ev, const char *text,
			   int64_t now)
{
	int64_t n = get_int(ev, "steps", -1);
	if (n >= 0)
		lv->total = (size_t)n;
	lv->t0 = now;
	lv->done = lv->failed = lv->skipped = lv->interrupted = 0;
	lv->finished = 0;
	clear_steps(lv);
	line_sgr(lv, C_BOLD);
	if (text) {
		line_str(lv, text);
	} else {
		char m[64];
		snprintf(m, sizeof(m), ", %zu steps", lv->total);
		line_str(lv, "run: ");
		line_str(lv, get_str(ev, "runbook", "?"));
		line_str(lv, m);
	}
	line_end(lv);
}

static void on_run_finished(struct rb_live *lv, const json_t *ev, const char *text)
{
	const char *status = get_str(ev, "status", "finished");
	clear_steps(lv);
	lv->finished = 1;
	line_sgr(lv, C_BOLD);
	line_sgr(lv, !strcmp(status, "succeeded") ? C_GREEN
		     : !strcmp(status, "failed") ? C_RED : C_YELLOW);
	if (text) {
		line_str(lv, text);
	} else {
		line_str(lv, "run ");
		line_str(lv, status);
	}
	line_end(lv);
}

struct rb_live *rb_live_new(FILE *out, int width, int color, size_t nsteps)
{
	struct rb_live *lv = rb_xcalloc(1, sizeof(*lv));
	lv->out = out;
	lv->width = width >= 2 ? width : DEFAULT_WIDTH;
	lv->color = color;
	lv->total = nsteps;
	lv->footer = rb_xstrdup("");
	rb_buf_init(&lv->pending);
	return lv;
}

void rb_live_event(struct rb_live *lv, const json_t *ev, const char *text, int64_t now_ms)
{
	const char *name = json_is_object(ev) ? get_str(ev, "event", "") : "";
	int urgent = 0;
	if (!lv->started) {
		lv->started = 1;
		lv->t0 = now_ms;
	}
	if (!strcmp(name, "output")) {
		on_output(lv, ev);
	} else if (!strcmp(name, "step_started")) {
		on_started(lv, ev, now_ms);
	} else if (!strcmp(name, "step_retry")) {
		on_retry(lv, ev, text, now_ms);
	} else if (!strcmp(name, "step_finished")) {
		on_finished(lv, ev);
	} else if (!strcmp(name, "run_started")) {
		on_run_started(lv, ev, text, now_ms);
	} else if (!strcmp(name, "run_finished")) {
		on_run_finished(lv, ev, text);
		urgent = 1;     /* the engine may not tick again */
	} else if (!strcmp(name, "rollback")) {
		line_msg(lv, C_YELLOW, text, "rolling back");
	} else if (!strcmp(name, "interrupt")) {
		line_msg(lv, C_YELLOW, text, "interrupted: stopping the running steps");
		urgent = 1;
	} else if (!strcmp(name, "window_closed")) {
		line_msg(lv, C_YELLOW, text, "the maintenance window closed: no more steps start");
		urgent = 1;
	} else if (!strcmp(name, "run_timeout")) {
		line_msg(lv, C_RED, text, "the run's timeout has passed: stopping the running steps");
		urgent = 1;
	} else if (!strcmp(name, "error")) {
		char *m = rb_xasprintf("error: %s", get_str(ev, "message", "unknown"));
		line_msg(lv, C_RED, text, m);
		free(m);
		urgent = 1;
	} else {
		line_msg(lv, NULL, text, *name ? name : "unknown event");
	}
	if (urgent || due(lv, now_ms) || lv->pending.len >= PENDING_MAX)
		draw(lv, now_ms);
}

void rb_live_tick(struct rb_live *lv, int64_t now_ms)
{
	if (due(lv, now_ms))
		draw(lv, now_ms);
}

void rb_live_resize(struct rb_live *lv, int width)
{
	lv->width = width >= 2 ? width : DEFAULT_WIDTH;
}

void rb_live_suspend(struct rb_live *lv)
{
	write_screen(lv, lv->last_write, 0);
}

void rb_live_free(struct rb_live *lv)
{
	if (!lv)
		return;
	write_screen(lv, lv->last_write, 0);
	clear_steps(lv);
	free(lv->buckets);
	free(lv->footer);
	rb_buf_release(&lv->pending);
	free(lv);
}
