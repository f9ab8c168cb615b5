/*
 * Tests interp/live.c: events go in, the bytes it writes go through a small
 * screen model (\r, \n, tab, ESC[nA, ESC[J, SGR ignored, wrapping at the
 * width), and the tests look at what the screen shows.  Anything else the
 * view sends (another escape sequence, a raw control character) is a failure.
 *
 * Every write is also checked for the footer's invariants: its rows are
 * contiguous and end at the cursor, there is one summary row, at most
 * RB_LIVE_MAX_ROWS + 2 rows, none wider than the width less one, none wrapped.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "live.h"

#include "check.h"

/* --- the screen model -------------------------------------------------------------- */

#define ROWS    40
#define COLS    256

struct srow {
	char cell[COLS][8];     /* one character's UTF-8 each; "\1": the right half of a wide one */
	int wrapped;            /* text went past the width of this row */
};

struct screen {
	struct srow *r[ROWS];
	int width, row, col;
	int bad;                /* something the view must not send */
	char badwhat[64];
	int sgr;                /* SGR sequences seen */
	long scrolled;
};

static void screen_init(struct screen *sc, int width)
{
	memset(sc, 0, sizeof(*sc));
	for (int i = 0; i < ROWS; i++)
		sc->r[i] = calloc(1, sizeof(struct srow));
	sc->width = width;
}

static void screen_release(struct screen *sc)
{
	for (int i = 0; i < ROWS; i++)
		free(sc->r[i]);
}

static void newline(struct screen *sc)
{
	sc->col = 0;
	if (++sc->row < ROWS)
		return;
	struct srow *top = sc->r[0];
	memmove(sc->r, sc->r + 1, (ROWS - 1) * sizeof(*sc->r));
	memset(top, 0, sizeof(*top));
	sc->r[ROWS - 1] = top;
	sc->row = ROWS - 1;
	sc->scrolled++;
}

static void clear_below(struct screen *sc)
{
	for (int c = sc->col; c < COLS; c++)
		sc->r[sc->row]->cell[c][0] = '\0';
	sc->r[sc->row]->wrapped = 0;
	for (int i = sc->row + 1; i < ROWS; i++)
		memset(sc->r[i], 0, sizeof(struct srow));
}

static void set_bad(struct screen *sc, const char *what, unsigned c)
{
	if (!sc->bad)
		snprintf(sc->badwhat, sizeof(sc->badwhat), "%s 0x%02x", what, c);
	sc->bad++;
}

/* The test's own idea of a character's columns (enough for the cases below). */
static int model_width(uint32_t cp)
{
	if (cp >= 0x0300 && cp <= 0x036f)
		return 0;
	if ((cp >= 0x3040 && cp <= 0x30ff) || (cp >= 0x4e00 && cp <= 0x9fff))
		return 2;
	return 1;
}

static void feed(struct screen *sc, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		unsigned c = p[i];
		if (c == '\r') {
			sc->col = 0;
			i++;
		} else if (c == '\n') {
			newline(sc);
			i++;
		} else if (c == '\t') {
			sc->col = (sc->col / 8 + 1) * 8;
			if (sc->col >= sc->width)
				sc->col = sc->width - 1;
			i++;
		} else if (c == 0x1b) {
			if (i + 1 >= len || p[i + 1] != '[') {
				set_bad(sc, "escape", i + 1 < len ? p[i + 1] : 0);
				i++;
				continue;
			}
			size_t j = i + 2;
			int n = 0, has = 0;
			while (j < len && ((p[j] >= '0' && p[j] <= '9') || p[j] == ';')) {
				if (p[j] != ';')
					n = n * 10 + (p[j] - '0'), has = 1;
				j++;
			}
			unsigned fin = j < len ? p[j] : 0;
			if (fin == 'A') {
				sc->row -= has && n ? n : 1;    /* 0 is 1, as in a VT100 */
				if (sc->row < 0)
					sc->row = 0;
			} else if (fin == 'J' && !n) {
				clear_below(sc);
			} else if (fin == 'm') {
				sc->sgr++;
			} else {
				set_bad(sc, "csi", fin);
			}
			i = j + 1;
		} else if (c < 0x20 || c == 0x7f) {
			set_bad(sc, "control", c);
			i++;
		} else {
			size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
			uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
			for (size_t k = 1; k < n && i + k < len; k++)
				cp = cp << 6 | (p[i + k] & 0x3f);
			if (cp >= 0x80 && cp < 0xa0)
				set_bad(sc, "c1", cp);
			int w = model_width(cp);
			if (w == 0 && sc->col > 0) {
				char *cell = sc->r[sc->row]->cell[sc->col - 1];
				if (strlen(cell) + n < sizeof(sc->r[0]->cell[0]))
					strncat(cell, s + i, n);
			} else if (w) {
				if (sc->col + w > sc->width) {
					sc->r[sc->row]->wrapped = 1;
					newline(sc);
				}
				char *cell = sc->r[sc->row]->cell[sc->col];
				memcpy(cell, s + i, n);
				cell[n] = '\0';
				if (w == 2)
					strcpy(sc->r[sc->row]->cell[sc->col + 1], "\1");
				sc->col += w;
			}
			i += n;
		}
	}
}

/* Row r as text, trailing blanks dropped; *cols: its columns. */
static const char *row_text(struct screen *sc, int r, int *cols)
{
	static char buf[COLS * 8 + 1];
	size_t n = 0;
	int last = -1;
	for (int c = 0; c < COLS; c++)
		if (sc->r[r]->cell[c][0])
			last = c;
	for (int c = 0; c <= last; c++) {
		const char *cell = sc->r[r]->cell[c];
		if (!strcmp(cell, "\1"))
			continue;
		if (!*cell)
			cell = " ";
		strcpy(buf + n, cell);
		n += strlen(cell);
	}
	buf[n] = '\0';
	while (n && buf[n - 1] == ' ')
		buf[--n] = '\0';
	if (cols)
		*cols = last + 1;
	return buf;
}

static int find_row(struct screen *sc, const char *needle)
{
	for (int r = 0; r < ROWS; r++)
		if (strstr(row_text(sc, r, NULL), needle))
			return r;
	return -1;
}

static void dump(struct screen *sc)
{
	int last = 0;
	for (int r = 0; r < ROWS; r++)
		if (*row_text(sc, r, NULL) || r == sc->row)
			last = r;
	printf("  --- screen (cursor %d,%d) ---\n", sc->row, sc->col);
	for (int r = 0; r <= last; r++)
		printf("  %2d|%s\n", r, row_text(sc, r, NULL));
}

/* A footer row: spinner, waiting step, "… and K more", or the summary. */
static int is_footer(const char *t)
{
	const unsigned char *u = (const unsigned char *)t;
	if (u[0] == 0xe2 && u[1] >= 0xa0 && u[1] <= 0xa3)      /* U+2800 braille */
		return 1;
	if (!strncmp(t, "\u21bb ", 4) && strstr(t, " retry ") && !strstr(t, ": attempt"))
		return 1;
	if (!strncmp(t, "\u2026 and ", 8))
		return 1;
	return t[0] == '[' && t[1] >= '0' && t[1] <= '9';
}

static int is_summary(const char *t)
{
	return t[0] == '[' && t[1] >= '0' && t[1] <= '9';
}

/* --- the harness --------------------------------------------------------------------- */

struct t {
	char *buf;
	size_t len, seen;
	FILE *f;
	struct rb_live *lv;
	struct screen sc;
	int width;
	int footer_first, footer_rows;  /* after the last sync */
};

/* Apply what was written since the last sync; check the footer's invariants. */
static int sync_(struct t *t, int line)
{
	fflush(t->f);
	int wrote = t->len > t->seen;
	feed(&t->sc, t->buf + t->seen, t->len - t->seen);
	t->seen = t->len;
	if (!wrote)
		return 0;       /* the screen is as it was */
	struct screen *sc = &t->sc;
	int first = -1, n = 0, nsum = 0, ok = 1;
	for (int r = 0; r < ROWS; r++) {
		int cols;
		const char *txt = row_text(sc, r, &cols);
		if (!is_footer(txt))
			continue;
		if (first < 0)
			first = r;
		else if (r != first + n)
			ok = 0;         /* not contiguous */
		n++;
		nsum += is_summary(txt);
		if (cols > t->width - 1 || sc->r[r]->wrapped) {
			CHECK(0, "line %d: footer row %d is %d columns (width %d)%s: %s", line, r,
			      cols, t->width, sc->r[r]->wrapped ? ", wrapped" : "", txt);
			ok = 0;
		}
	}
	if (n) {
		ok &= first + n - 1 == sc->row && nsum == 1;
		ok &= is_summary(row_text(sc, sc->row, NULL));
		ok &= n <= RB_LIVE_MAX_ROWS + 2;
	}
	CHECK(ok, "line %d: the footer is not %d to %d rows at the cursor ending in one summary",
	      line, 1, RB_LIVE_MAX_ROWS + 2);
	CHECK(!sc->bad, "line %d: the view sent %s", line, sc->badwhat);
	if (!ok || sc->bad)
		dump(sc);
	t->footer_first = first;
	t->footer_rows = n;
	return wrote;
}
#define SYNC(t) sync_((t), __LINE__)

static void t_open(struct t *t, int width, int color, size_t nsteps)
{
	memset(t, 0, sizeof(*t));
	t->f = open_memstream(&t->buf, &t->len);
	t->width = width;
	screen_init(&t->sc, width);
	t->lv = rb_live_new(t->f, width, color, nsteps);
}

static void t_close(struct t *t)
{
	if (t->lv)
		rb_live_free(t->lv);
	t->lv = NULL;
	SYNC(t);
	fclose(t->f);
	free(t->buf);
	screen_release(&t->sc);
}

/* An event from a json_pack format; 1 if the view wrote. */
static int ev(struct t *t, int64_t now, const char *text, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	json_error_t err;
	json_t *e = json_vpack_ex(&err, 0, fmt, ap);
	va_end(ap);
	if (!e) {
		CHECK(0, "json_pack %s: %s", fmt, err.text);
		return 0;
	}
	rb_live_event(t->lv, e, text, now);
	json_decref(e);
	return SYNC(t);
}

static int tick(struct t *t, int64_t now)
{
	rb_live_tick(t->lv, now);
	return SYNC(t);
}

static int started(struct t *t, int64_t now, const char *id)
{
	return ev(t, now, NULL, "{s:s, s:s, s:i}", "event", "step_started", "step", id,
		  "attempt", 1);
}

static int output(struct t *t, int64_t now, const char *id, const char *stream, const char *line)
{
	return ev(t, now, NULL, "{s:s, s:s, s:s, s:s}", "event", "output", "step", id, "stream",
		  stream, "line", line);
}

static int finished(struct t *t, int64_t now, const char *id, const char *status,
		    const char *error, int ms)
{
	json_t *e = json_pack("{s:s, s:s, s:s, s:i}", "event", "step_finished", "step", id,
			      "status", status, "attempt", 1);
	if (error)
		json_object_set_new(e, "error", json_string(error));
	if (ms >= 0)
		json_object_set_new(e, "duration_ms", json_integer(ms));
	rb_live_event(t->lv, e, NULL, now);
	json_decref(e);
	return SYNC(t);
}

static int has(struct t *t, const char *s)
{
	return memmem(t->buf, t->len, s, strlen(s)) != NULL;
}

/* The footer row (not the summary) that contains needle, or NULL. */
static const char *footer_row(struct t *t, const char *needle)
{
	for (int r = t->footer_first; r >= 0 && r < t->footer_first + t->footer_rows - 1; r++) {
		const char *s = row_text(&t->sc, r, NULL);
		if (strstr(s, needle))
			return s;
	}
	return NULL;
}

static const char *summary(struct t *t)
{
	return t->footer_rows ? row_text(&t->sc, t->sc.row, NULL) : "";
}

#define SHOWS(t, needle)                                                                \
	do {                                                                            \
		int r_ = find_row(&(t)->sc, (needle));                                  \
		CHECK(r_ >= 0, "the screen does not show '%s'", (needle));              \
		if (r_ < 0)                                                             \
			dump(&(t)->sc);                                                 \
	} while (0)

#define SUMMARY(t, want)                                                                \
	do {                                                                            \
		CHECK(!strcmp(summary(t), (want)), "summary '%s', want '%s'", summary(t), \
		      (want));                                                          \
	} while (0)

/* A permanent row (above the footer) that equals want. */
static int perm_row(struct t *t, const char *want)
{
	int end = t->footer_rows ? t->footer_first : ROWS;
	for (int r = 0; r < end; r++)
		if (!strcmp(row_text(&t->sc, r, NULL), want))
			return r;
	return -1;
}

#define PERM(t, want)                                                                   \
	do {                                                                            \
		CHECK(perm_row((t), (want)) >= 0, "no line '%s' above the footer", (want)); \
		if (perm_row((t), (want)) < 0)                                          \
			dump(&(t)->sc);                                                 \
	} while (0)

/* --- the tests ------------------------------------------------------------------------- */

/* A small run from start to finish: what the screen shows after each event. */
static void t_flow(void)
{
	struct t t;
	t_open(&t, 80, 0, 3);
	ev(&t, 0, "run r1: demo, 3 steps (state in /tmp/r1)", "{s:s, s:s, s:i, s:s}", "event",
	   "run_started", "runbook", "demo", "steps", 3, "dir", "/tmp/r1");
	CHECK(t.sc.row == 1 && perm_row(&t, "run r1: demo, 3 steps (state in /tmp/r1)") == 0,
	      "the run's line first, then the footer");
	SUMMARY(&t, "[0/3] 0 running \u00b7 0.0s");

	CHECK(!started(&t, 0, "a"), "an event within the interval writes nothing");
	CHECK(!started(&t, 50, "b"), "an event within the interval writes nothing");
	CHECK(!tick(&t, 60), "a tick within the interval writes nothing");
	CHECK(tick(&t, 100), "a tick after the interval writes");
	CHECK(t.footer_rows == 3, "two steps and the summary: %d rows", t.footer_rows);
	const char *a = footer_row(&t, " a ");
	CHECK(a && !strcmp(a, "\u2819 a   0.1s"), "step a: '%s'", a ? a : "(none)");
	CHECK(footer_row(&t, "b   0.0s") != NULL, "step b, started 50 ms ago");
	SUMMARY(&t, "[0/3] 2 running \u00b7 0.1s");

	CHECK(output(&t, 250, "a", "stdout", "hello world"), "output past the interval writes");
	PERM(&t, "a| hello world");
	CHECK(footer_row(&t, "a   0.2s  hello world") != NULL, "a's latest line in the footer");
	CHECK(!output(&t, 260, "b", "stderr", "oops"), "coalesced");
	CHECK(find_row(&t.sc, "oops") < 0, "not shown before the next write");
	CHECK(!tick(&t, 300), "tick within the interval");
	CHECK(tick(&t, 350), "tick past the interval");
	PERM(&t, "b! oops");
	CHECK(perm_row(&t, "b! oops") == perm_row(&t, "a| hello world") + 1, "in order");
	CHECK(footer_row(&t, "b   0.3s  oops") != NULL, "b's latest line (stderr too)");
	output(&t, 500, "b", "stdout", "   ");
	CHECK(footer_row(&t, "b   0.4s  oops") != NULL, "a blank line does not replace it");

	finished(&t, 1500, "a", "succeeded", NULL, 1500);
	PERM(&t, "\u2713 a 1.5s");
	CHECK(!footer_row(&t, " a "), "a left the footer");
	SUMMARY(&t, "[1/3] 1 running \u00b7 1.5s");
	CHECK(!finished(&t, 1510, "b", "failed", "exit status 2", 1460), "coalesced");
	tick(&t, 1600);
	PERM(&t, "\u2717 b failed after 1.4s: exit status 2");
	SUMMARY(&t, "[2/3] 0 running, 1 failed \u00b7 1.6s");
	CHECK(t.footer_rows == 1, "only the summary: %d rows", t.footer_rows);
	finished(&t, 1700, "c", "skipped", "condition is false", -1);
	PERM(&t, "- c skipped: condition is false");
	SUMMARY(&t, "[3/3] 0 running, 1 failed, 1 skipped \u00b7 1.7s");

	CHECK(ev(&t, 1710, "run r1 failed in 1.7s: 1 succeeded, 1 failed, 1 skipped, 0 not run",
		 "{s:s, s:s, s:i, s:i, s:i, s:i, s:i}", "event", "run_finished", "status", "failed",
		 "succeeded", 1, "failed", 1, "skipped", 1, "not_run", 0, "duration_ms", 1710),
	      "the end of the run is written at once");
	CHECK(t.footer_rows == 0, "no footer after the run");
	int end = perm_row(&t, "run r1 failed in 1.7s: 1 succeeded, 1 failed, 1 skipped, 0 not run");
	CHECK(end == 7 && t.sc.row == 8 && t.sc.col == 0, "the last line, then the cursor: %d",
	      end);
	CHECK(!tick(&t, 5000), "nothing to draw after the run");
	const char *order[] = {
		"run r1: demo, 3 steps (state in /tmp/r1)", "a| hello world", "b! oops",
		"b|", "\u2713 a 1.5s", "\u2717 b failed after 1.4s: exit status 2",
		"- c skipped: condition is false",
	};
	for (int i = 0; i < 7; i++)
		CHECK(!strcmp(row_text(&t.sc, i, NULL), order[i]), "row %d: '%s', want '%s'", i,
		      row_text(&t.sc, i, NULL), order[i]);
	t_close(&t);
}

/* Suspend and free erase the footer; what others write stays. */
static void t_suspend(void)
{
	struct t t;
	t_open(&t, 60, 0, 1);
	ev(&t, 0, "run r2: gate, 1 step", "{s:s, s:s, s:i}", "event", "run_started", "runbook",
	   "gate", "steps", 1);
	started(&t, 10, "deploy");
	tick(&t, 100);
	CHECK(t.footer_rows == 2, "a step and the summary");
	rb_live_suspend(t.lv);
	SYNC(&t);
	CHECK(t.footer_rows == 0 && t.sc.row == 1 && t.sc.col == 0,
	      "suspended: no footer, the cursor where it began (%d,%d)", t.sc.row, t.sc.col);
	fputs("approve deploy? y\n", t.f);     /* a prompt and its answer */
	SYNC(&t);
	rb_live_suspend(t.lv);
	CHECK(!SYNC(&t), "suspending again writes nothing");
	CHECK(!tick(&t, 150), "the interval counts from the last draw");
	CHECK(tick(&t, 200), "the next tick draws the footer again");
	CHECK(perm_row(&t, "approve deploy? y") == 1 && t.footer_first == 2,
	      "below the prompt");
	CHECK(footer_row(&t, "deploy   0.1s") != NULL, "deploy still running");
	output(&t, 210, "deploy", "stdout", "rolling");
	rb_live_free(t.lv);
	t.lv = NULL;
	SYNC(&t);
	CHECK(t.footer_rows == 0, "free erases the footer");
	PERM(&t, "deploy| rolling");        /* pending lines are written, not lost */
	CHECK(perm_row(&t, "run r2: gate, 1 step") == 0, "the run's line stays");
	CHECK(t.sc.row == 3 && t.sc.col == 0, "the cursor after the last line");
	t_close(&t);
}

/* Rows are cut to the width in characters, wide ones counted twice. */
static void t_width(void)
{
	struct t t;
	t_open(&t, 20, 0, 3);
	ev(&t, 0, "run r3", "{s:s, s:i}", "event", "run_started", "steps", 3);
	started(&t, 0, "a_very_long_step_identifier");
	output(&t, 100, "a_very_long_step_identifier", "stdout",
	       "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
	       "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9");
	int cols;
	const char *row = footer_row(&t, "a_ve");
	CHECK(row != NULL, "the step's row");
	row_text(&t.sc, t.footer_first, &cols);
	CHECK(cols == 19, "cut to width - 1 characters: %d", cols);
	CHECK(row && !strcmp(row, "\u2819 a_ver\u2026   0.1s  \u00e9\u2026"),
	      "id and line cut, with an ellipsis: '%s'", row ? row : "");
	row_text(&t.sc, t.sc.row, &cols);
	CHECK(cols == 19 && !strcmp(summary(&t), "[0/3] 1 running \u00b7 \u2026"),
	      "the summary too: '%s'", summary(&t));

	/* Wide characters take two columns; combining ones none. */
	output(&t, 200, "a_very_long_step_identifier", "stdout",
	       "e\u0301e\u0301e\u0301e\u0301e\u0301e\u0301");
	row = footer_row(&t, "a_ve");
	CHECK(row && strstr(row, "  e\u0301\u2026"), "combining marks take no column: '%s'",
	      row ? row : "");
	rb_live_resize(t.lv, 30);
	t.width = t.sc.width = 30;
	output(&t, 300, "a_very_long_step_identifier", "stdout",
	       "\u6f22\u5b57\u6f22\u5b57\u6f22\u5b57\u6f22\u5b57\u6f22\u5b57");
	row = footer_row(&t, "a_ve");
	row_text(&t.sc, t.footer_first, &cols);
	CHECK(cols <= 29 && row && strstr(row, "  \u6f22\u5b57\u6f22\u5b57\u2026"),
	      "wide characters count twice: %d columns: '%s'", cols, row ? row : "");
	rb_live_resize(t.lv, 12);
	t.width = t.sc.width = 12;
	CHECK(tick(&t, 400), "a resize is drawn at the next tick");
	row_text(&t.sc, t.sc.row, &cols);
	CHECK(cols == 11, "narrower: %d", cols);
	rb_live_resize(t.lv, 200);
	t.width = t.sc.width = 200;
	tick(&t, 500);
	row = footer_row(&t, "a_very_long_step_identi\u2026");
	CHECK(row && strstr(row, "\u6f22\u5b57\u6f22\u5b57\u6f22\u5b57\u6f22\u5b57\u6f22\u5b57"),
	      "wider: all of it: '%s'", row ? row : "");
	t_close(&t);
}

/* What commands print cannot move the cursor, change colours or the title: it is shown. */
static void t_controls(void)
{
	struct t t;
	t_open(&t, 200, 0, 2);
	started(&t, 0, "x");
	static const char nasty[] = "A\x1b[2J\x1b[31mred\x1b[0m B\x07" "C\x08" "D \x1b]0;title\x07"
				    "E\x1b(BF\x7f" "G\xc2\x9bH\tI\xff" "\0J";
	static const char shown[] = "A\\e[2J\\e[31mred\\e[0m B\\aC\\bD \\e]0;title\\aE\\e(BF"
				    "\\x7fG\\u009bH";
	json_t *e = json_pack("{s:s, s:s, s:s}", "event", "output", "step", "x", "stream",
			      "stdout");
	json_object_set_new(e, "line", json_stringn_nocheck(nasty, sizeof(nasty) - 1));
	rb_live_event(t.lv, e, NULL, 100);
	json_decref(e);
	SYNC(&t);
	int r = find_row(&t.sc, "x| ");
	const char *p = r >= 0 ? row_text(&t.sc, r, NULL) : "";
	CHECK(!strncmp(p, "x| ", 3) && !strncmp(p + 3, shown, strlen(shown)) &&
	      strstr(p, "I\\xff\\0J"), "permanent line shows the controls: '%s'", p);
	const char *row = footer_row(&t, " x ");
	CHECK(row && strstr(row, shown) && strstr(row, "H I\\xff\\0J"), "footer: '%s'",
	      row ? row : "");

	output(&t, 200, "x", "stdout", "10%\r20%\r30%\r");
	PERM(&t, "x| 10%\\r20%\\r30%");
	row = footer_row(&t, " x ");
	CHECK(row && strstr(row, "0.2s  30%"), "a progress bar shows its last state: '%s'",
	      row ? row : "");
	output(&t, 310, "x", "stdout", "HTTP/1.1 200 OK\r");
	PERM(&t, "x| HTTP/1.1 200 OK");
	CHECK(!has(&t, "OK\\r"), "a CR that ends a line (CRLF) is dropped");

	finished(&t, 420, "x", "failed", "first line\n\x1b[1mnext\x1b[0m line", 300);
	PERM(&t, "\u2717 x failed after 0.3s: first line");
	PERM(&t, "    \\e[1mnext\\e[0m line");
	ev(&t, 530, "weird \x1b[5mthing\x1b]8;;http://x\x1b\\", "{s:s}", "event", "custom");
	PERM(&t, "weird \\e[5mthing\\e]8;;http://x\\e\\");
	t_close(&t);
}

/* Thousands of steps: the footer stays small, the writes few. */
static void t_many(void)
{
	struct t t;
	enum { N = 5000 };
	char id[32];
	t_open(&t, 100, 0, 0);
	ev(&t, 0, "run r5: big", "{s:s, s:i}", "event", "run_started", "steps", N);
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "s%d", i);
		started(&t, 1 + i / 100, id);
	}
	CHECK(t.footer_rows == 1, "all started within the interval: nothing written yet");
	tick(&t, 100);
	CHECK(t.footer_rows == RB_LIVE_MAX_ROWS + 2, "%d step rows, '… and K more', the summary: %d",
	      RB_LIVE_MAX_ROWS, t.footer_rows);
	CHECK(footer_row(&t, "s0 ") && footer_row(&t, "s7 ") && !footer_row(&t, "s8 "),
	      "the first started first");
	SHOWS(&t, "\u2026 and 4992 more");
	SUMMARY(&t, "[0/5000] 5000 running \u00b7 0.1s");

	/* 5,000 events in 250 ms, twice: a write every 100 ms at most. */
	int writes = 0;
	for (int i = 0; i < N; i++) {
		int64_t now = i < N / 2 ? 200 + i / 10 : 700 + (i - N / 2) / 10;
		snprintf(id, sizeof(id), "s%d", N - 1 - i);       /* last first */
		writes += output(&t, now, id, "stdout", "working");
		writes += finished(&t, now, id, "succeeded", NULL, 10);
		if (i == N / 2 - 1) {
			tick(&t, 600);
			SUMMARY(&t, "[2500/5000] 2500 running \u00b7 0.6s");
			SHOWS(&t, "\u2026 and 2492 more");
			CHECK(footer_row(&t, "s0 ") && footer_row(&t, "s7 "), "the oldest");
		}
	}
	CHECK(writes == 6, "%d writes", writes);
	CHECK(tick(&t, 1100), "the rest at the next tick");
	SUMMARY(&t, "[5000/5000] 0 running \u00b7 1.1s");
	CHECK(t.footer_rows == 1, "only the summary left");
	CHECK(perm_row(&t, "\u2713 s0 0.0s") == t.footer_first - 1, "the last finished last");
	CHECK(perm_row(&t, "s0| working") == t.footer_first - 2, "after its output");

	/* Output alone past 64 KiB is written without waiting for the tick. */
	started(&t, 1200, "chatty");
	tick(&t, 1300);
	char line[200];
	memset(line, 'z', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	int forced = 0;
	for (int i = 0; i < 400; i++)
		forced += output(&t, 1301, "chatty", "stdout", line);
	CHECK(forced >= 1 && forced <= 2, "80 KB of output at once: %d writes", forced);
	t_close(&t);
}

/* Writes only when due; nothing when nothing changed. */
static void t_rate(void)
{
	struct t t;
	t_open(&t, 80, 0, 1);
	ev(&t, 1000, "run r6", "{s:s, s:i}", "event", "run_started", "steps", 1);
	started(&t, 1000, "w");
	int n = 0;
	for (int64_t ms = 1001; ms < 1100; ms++)
		n += tick(&t, ms);
	CHECK(n == 0, "99 ticks within the interval wrote %d times", n);
	CHECK(tick(&t, 1100), "the tick at the interval writes");
	for (int64_t ms = 1101; ms <= 2100; ms++)
		n += tick(&t, ms);
	CHECK(n == 10, "a write per 100 ms over a second: %d", n);
	CHECK(!tick(&t, 1500), "a clock that goes back does not write");
	for (int i = 0; i < 1000; i++)
		n += output(&t, 2110 + i / 100, "w", "stdout", "line");
	CHECK(n == 10, "1,000 lines within the interval: no write (%d)", n - 10);
	CHECK(tick(&t, 2200), "then one");
	CHECK(t.sc.scrolled > 900, "all 1,000 lines written (%ld rows scrolled)", t.sc.scrolled);
	ev(&t, 2201, "interrupted: stopping the running steps", "{s:s, s:i}", "event",
	   "interrupt", "signal", 2);
	PERM(&t, "interrupted: stopping the running steps");   /* at once */
	ev(&t, 2202, NULL, "{s:s, s:s}", "event", "error", "message", "disk full");
	PERM(&t, "error: disk full");
	ev(&t, 2203, NULL, "{s:s, s:i}", "event", "run_timeout", "timeout_ms", 1000);
	PERM(&t, "the run's timeout has passed: stopping the running steps");
	t_close(&t);
}

/* Retries, other statuses, unknown events, colour. */
static void t_misc(void)
{
	struct t t;
	t_open(&t, 80, 0, 4);
	started(&t, 0, "r");
	ev(&t, 500, "r: attempt 1 of 3 failed: boom; retrying in 2s", "{s:s, s:s, s:i, s:i}",
	   "event", "step_retry", "step", "r", "attempt", 1, "delay_ms", 2000);
	PERM(&t, "\u21bb r: attempt 1 of 3 failed: boom; retrying in 2s");
	CHECK(footer_row(&t, "\u21bb r retry 2 in 2.0s") != NULL, "waiting to retry");
	tick(&t, 1500);
	CHECK(footer_row(&t, "\u21bb r retry 2 in 1.0s") != NULL, "counting down");
	SUMMARY(&t, "[0/4] 1 running \u00b7 1.5s");
	ev(&t, 2500, NULL, "{s:s, s:s, s:i}", "event", "step_started", "step", "r", "attempt", 2);
	tick(&t, 3100);
	CHECK(footer_row(&t, "r #2   0.6s") != NULL, "the second attempt");
	finished(&t, 3100, "r", "succeeded", NULL, 600);
	finished(&t, 3100, "g", "awaiting_approval", "needs approval", -1);
	finished(&t, 3100, "s", "satisfied", NULL, 20);
	finished(&t, 3100, "i", "interrupted", NULL, 2000);
	ev(&t, 3100, "gate g opened by bob", "{s:s}", "event", "gate_opened");
	ev(&t, 3100, NULL, "{s:s}", "event", "gate_closed");
	tick(&t, 3200);
	PERM(&t, "\u2713 r 0.6s");
	PERM(&t, "\u2022 g awaiting approval: needs approval");
	PERM(&t, "\u2713 s satisfied");
	PERM(&t, "! i interrupted after 2.0s");
	PERM(&t, "gate g opened by bob");
	PERM(&t, "gate_closed");
	SUMMARY(&t, "[4/4] 0 running, 1 interrupted \u00b7 3.2s");
	started(&t, 3200, "long");
	tick(&t, 3200 + 62345);
	CHECK(footer_row(&t, "long  1m02s") != NULL, "minutes");
	SUMMARY(&t, "[4/4] 1 running, 1 interrupted \u00b7 1m05s");
	tick(&t, 3200 + 2 * 3600000 + 5 * 60000);
	CHECK(footer_row(&t, "long  2h05m") != NULL, "hours");
	finished(&t, 3200 + 2 * 3600000 + 5 * 60000, "long", "succeeded", NULL, 1);
	tick(&t, 3200 + 2 * 3600000 + 6 * 60000);
	CHECK(!tick(&t, 3200 + 2 * 3600000 + 6 * 60000 + 500), "the same footer is not redrawn");
	CHECK(t.sc.sgr == 0, "no colour unless asked: %d SGR", t.sc.sgr);
	t_close(&t);

	t_open(&t, 80, 1, 1);
	started(&t, 0, "c");
	output(&t, 100, "c", "stdout", "hi");
	CHECK(t.sc.sgr > 0, "colour when asked");
	CHECK(has(&t, "\x1b[2mc| hi\x1b[0m\n"), "output lines dim");
	finished(&t, 200, "c", "failed", "no", 200);
	CHECK(has(&t, "\x1b[31m\u2717"), "failures red");
	PERM(&t, "\u2717 c failed after 0.2s: no");
	t_close(&t);
}

int main(void)
{
	t_flow();
	t_suspend();
	t_width();
	t_controls();
	t_many();
	t_rate();
	t_misc();
	printf("live: %d passed, %d failed\n", npass, nfail);
	return nfail ? 1 : 0;
}
