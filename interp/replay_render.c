/*
 * The replay model (replay.h) as a postmortem timeline: text for a terminal,
 * markdown to paste into a postmortem document, or the model as JSON.  It
 * reads the model only; every string from the log is shortened to one line
 * and escaped, so that nothing in a log can move the cursor or reorder text.
 */
#include "replay.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define SHORT_MAX       60      /* characters of a value in a step's details */
#define ERROR_MAX       200     /* characters of an error message */

enum format { TEXT, MARKDOWN };

struct out {
	struct rb_buf b;
	enum format fmt;
};

static const char *str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static json_int_t num(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/*
 * s[0, n) on one line: at most max characters ("..." when cut), trailing
 * white space dropped, control and misleading characters escaped as JSON
 * would (\n, \u001b, \u202e), and in markdown the characters that format.
 */
static void put_text(struct out *o, const char *s, size_t n, size_t max)
{
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	size_t chars = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		uint32_t cp;
		size_t u;
		if ((c & 0xc0) != 0x80 && chars++ == max) {
			rb_buf_puts(&o->b, "...");
			return;
		}
		if (c == '\n')
			rb_buf_puts(&o->b, "\\n");
		else if (c == '\t')
			rb_buf_puts(&o->b, "\\t");
		else if (c == '\r')
			rb_buf_puts(&o->b, "\\r");
		else if (c < 0x20 || c == 0x7f)
			rb_buf_printf(&o->b, "\\u%04x", c);
		else if ((u = rb_utf8_unsafe((const unsigned char *)s + i, n - i, &cp))) {
			rb_buf_printf(&o->b, "\\u%04x", (unsigned)cp);
			i += u - 1;
		} else {
			if (o->fmt == MARKDOWN && strchr("\\`*_[]<>|#", c))
				rb_buf_putc(&o->b, '\\');
			rb_buf_putc(&o->b, (char)c);
		}
	}
}

static void put_str(struct out *o, const char *s, size_t max)
{
	put_text(o, s ? s : "?", s ? strlen(s) : 1, max);
}

/* A value: a string as it is, anything else as compact JSON. */
static void put_value(struct out *o, const json_t *v, size_t max)
{
	if (json_is_string(v)) {
		put_text(o, json_string_value(v), json_string_length(v), max);
		return;
	}
	char *t = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	put_str(o, t ? t : "?", max);
	free(t);
}

static void put_offset(struct out *o, int64_t ms)
{
	uint64_t a = ms < 0 ? (uint64_t)-ms : (uint64_t)ms;
	rb_buf_printf(&o->b, "%s%" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%03" PRIu64,
		      ms < 0 ? "-" : "+", a / 3600000, a / 60000 % 60, a / 1000 % 60, a % 1000);
}

static void put_duration(struct out *o, int64_t ms)
{
	uint64_t a = ms < 0 ? (uint64_t)-ms : (uint64_t)ms;
	const char *sign = ms < 0 ? "-" : "";
	if (a < 60000)
		rb_buf_printf(&o->b, "%s%" PRIu64 ".%03" PRIu64 "s", sign, a / 1000, a % 1000);
	else if (a < 3600000)
		rb_buf_printf(&o->b, "%s%" PRIu64 "m%02" PRIu64 ".%03" PRIu64 "s", sign, a / 60000,
			      a / 1000 % 60, a % 1000);
	else
		rb_buf_printf(&o->b, "%s%" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s", sign, a / 3600000,
			      a / 60000 % 60, a / 1000 % 60);
}

/* Pad the text since mark to width (text only). */
static void pad(struct out *o, size_t mark, size_t width)
{
	if (o->fmt != TEXT)
		return;
	size_t chars = 0;
	for (size_t i = mark; i < o->b.len; i++)
		chars += ((unsigned char)o->b.s[i] & 0xc0) != 0x80;
	for (; chars < width; chars++)
		rb_buf_putc(&o->b, ' ');
}

/* Right-align the text since mark in width (text only). */
static void pad_left(struct out *o, size_t mark, size_t width)
{
	size_t n = o->b.len - mark;
	if (o->fmt != TEXT || n >= width)
		return;
	size_t add = width - n;
	for (size_t i = 0; i < add; i++)
		rb_buf_putc(&o->b, ' ');
	memmove(o->b.s + mark + add, o->b.s + mark, n);
	memset(o->b.s + mark, ' ', add);
}

static void sep(struct out *o, int *first, const char *s)
{
	if (!*first)
		rb_buf_puts(&o->b, s);
	*first = 0;
}

/* The last line of s that is not blank. */
static void put_last_line(struct out *o, const char *s, size_t n)
{
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		n--;
	size_t start = n;
	while (start && s[start - 1] != '\n')
		start--;
	put_text(o, s + start, n - start, SHORT_MAX);
}

/* A step's output in a few words: its named outputs, else stdout's last line, else its value. */
static void put_key_outputs(struct out *o, const json_t *s, int *first)
{
	const json_t *outputs = json_object_get(s, "outputs");
	const json_t *output = json_object_get(s, "output");
	const json_t *items = json_object_get(s, "items");
	if (json_is_object(outputs) && json_object_size(outputs)) {
		const char **keys = rb_xmalloc(json_object_size(outputs) * sizeof(*keys));
		size_t n = 0;
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)outputs, k, v)
			keys[n++] = k;
		for (size_t i = 0; i < n; i++) {
			sep(o, first, "; ");
			put_str(o, keys[i], SHORT_MAX);
			rb_buf_putc(&o->b, '=');
			put_value(o, json_object_get(outputs, keys[i]), SHORT_MAX);
		}
		free(keys);
		return;
	}
	if (json_is_array(items) && json_array_size(items)) {
		size_t i, ok = 0;
		json_t *it;
		json_array_foreach(items, i, it)
			ok += str(it, "status") && !strcmp(str(it, "status"), "succeeded");
		sep(o, first, "; ");
		rb_buf_printf(&o->b, "%zu item%s, %zu succeeded", json_array_size(items),
			      json_array_size(items) == 1 ? "" : "s", ok);
		json_t *lastout = json_object_get(json_array_get(items, json_array_size(items) - 1),
						  "output");
		const json_t *so = json_object_get(lastout, "stdout");
		if (json_is_string(so) && json_string_length(so)) {
			rb_buf_puts(&o->b, "; last: ");
			put_last_line(o, json_string_value(so), json_string_length(so));
		}
		return;
	}
	if (!output || json_is_null(output))
		return;
	const json_t *so = json_object_get(output, "stdout");
	if (json_is_string(so)) {
		if (!json_string_length(so))
			return;
		sep(o, first, "; ");
		rb_buf_puts(&o->b, "stdout: ");
		put_last_line(o, json_string_value(so), json_string_length(so));
		return;
	}
	sep(o, first, "; ");
	rb_buf_puts(&o->b, "output: ");
	put_value(o, output, SHORT_MAX);
}

static void put_gate(struct out *o, const json_t *g, int with_prompt)
{
	const char *d = str(g, "decision");
	if (with_prompt && str(g, "prompt")) {
		rb_buf_putc(&o->b, '"');
		put_str(o, str(g, "prompt"), ERROR_MAX);
		rb_buf_puts(&o->b, "\": ");
	}
	if (!d || !strcmp(d, "waiting")) {
		rb_buf_puts(&o->b, "waiting for approval");
		if (json_object_get(g, "offset_ms")) {
			rb_buf_puts(&o->b, " since ");
			put_offset(o, num(g, "offset_ms"));
		}
		return;
	}
	rb_buf_printf(&o->b, "%s by ", d);
	put_str(o, str(g, "by"), SHORT_MAX);
	if (str(g, "via")) {
		rb_buf_puts(&o->b, " via ");
		put_str(o, str(g, "via"), SHORT_MAX);
	}
	if (with_prompt && json_object_get(g, "decided_offset_ms")) {
		rb_buf_puts(&o->b, " at ");
		put_offset(o, num(g, "decided_offset_ms"));
	}
	if (json_object_get(g, "waited_ms")) {
		rb_buf_puts(&o->b, " after waiting ");
		put_duration(o, num(g, "waited_ms"));
	} else if (with_prompt) {
		rb_buf_puts(&o->b, " (in advance)");
	}
}

static int is(const char *s, const char *want)
{
	return s && !strcmp(s, want);
}

/* What a step's line says after its columns. */
static void put_details(struct out *o, const json_t *s)
{
	int first = 1;
	const json_t *g = json_object_get(s, "gate");
	const char *status = str(s, "status");
	size_t i;
	json_t *a;
	if (g) {
		sep(o, &first, "; ");
		rb_buf_puts(&o->b, "gate ");
		put_gate(o, g, 0);
	}
	if (json_is_true(json_object_get(s, "taken_as_done"))) {
		sep(o, &first, "; ");
		rb_buf_puts(&o->b, "taken as done (resume --skip)");
	}
	json_array_foreach(json_object_get(s, "attempts"), i, a)
		if (is(str(a, "status"), "crashed")) {
			sep(o, &first, "; ");
			rb_buf_printf(&o->b, "attempt %" JSON_INTEGER_FORMAT " crashed with session "
				      "%" JSON_INTEGER_FORMAT, num(a, "attempt"), num(a, "session"));
		}
	if (str(s, "error") && !is(status, "succeeded")) {
		sep(o, &first, "; ");
		rb_buf_puts(&o->b, is(status, "skipped") ? "skipped: " : "error: ");
		put_str(o, str(s, "error"), ERROR_MAX);
	}
	if (json_is_true(json_object_get(s, "continued"))) {
		sep(o, &first, "; ");
		rb_buf_puts(&o->b, "the run went on (continue_on_error)");
	}
	put_key_outputs(o, s, &first);
}

static void put_table_row(struct out *o, const char *const *cells, const size_t *widths,
			  size_t n)
{
	size_t mark;
	rb_buf_puts(&o->b, o->fmt == MARKDOWN ? "| " : "  ");
	for (size_t i = 0; i < n; i++) {
		if (i)
			rb_buf_puts(&o->b, o->fmt == MARKDOWN ? " | " : "  ");
		mark = o->b.len;
		rb_buf_puts(&o->b, cells[i]);
		pad(o, mark, widths[i]);
	}
	if (o->fmt == MARKDOWN)
		rb_buf_puts(&o->b, " |");
	while (o->b.len && o->b.s[o->b.len - 1] == ' ')
		o->b.len--;
	rb_buf_putc(&o->b, '\n');
}

/* A cell rendered into its own buffer, so that widths can be measured. */
static char *cell(enum format fmt, void (*fn)(struct out *, const void *), const void *arg)
{
	struct out c = {.fmt = fmt};
	rb_buf_init(&c.b);
	fn(&c, arg);
	rb_buf_putc(&c.b, '\0');
	return rb_buf_detach(&c.b);
}

static size_t width_of(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

static void cell_offset(struct out *o, const void *s)
{
	put_offset(o, num(s, "offset_ms"));
}

static void cell_duration(struct out *o, const void *s)
{
	if (json_object_get(s, "duration_ms"))
		put_duration(o, num(s, "duration_ms"));
	else
		rb_buf_puts(&o->b, "-");
}

static void cell_status(struct out *o, const void *s)
{
	put_str(o, str(s, "status"), SHORT_MAX);
}

static void cell_step(struct out *o, const void *s)
{
	put_str(o, str(s, "step"), SHORT_MAX);
}

static void cell_attempts(struct out *o, const void *s)
{
	rb_buf_printf(&o->b, "%zu", json_array_size(json_object_get(s, "attempts")));
}

static void cell_details(struct out *o, const void *s)
{
	put_details(o, s);
}

#define NCOLS 6

static void put_steps(struct out *o, const json_t *steps)
{
	static const char *const head[NCOLS] = {"offset", "duration", "status", "step", "attempts",
						"details"};
	static void (*const fns[NCOLS])(struct out *, const void *) = {
		cell_offset, cell_duration, cell_status, cell_step, cell_attempts, cell_details};
	size_t n = json_array_size(steps), widths[NCOLS];
	char **cells = rb_xcalloc(n * NCOLS + 1, sizeof(*cells));
	for (size_t c = 0; c < NCOLS; c++)
		widths[c] = o->fmt == TEXT ? strlen(head[c]) : 0;
	for (size_t i = 0; i < n; i++)
		for (size_t c = 0; c < NCOLS; c++) {
			cells[i * NCOLS + c] = cell(o->fmt, fns[c], json_array_get(steps, i));
			size_t w = width_of(cells[i * NCOLS + c]);
			if (o->fmt == TEXT && w > widths[c])
				widths[c] = w;
		}
	const char *upper[NCOLS];
	char buf[NCOLS][16];
	for (size_t c = 0; c < NCOLS; c++) {
		size_t k;
		for (k = 0; head[c][k] && k < sizeof(buf[c]) - 1; k++)
			buf[c][k] = o->fmt == TEXT ? (char)(head[c][k] - 'a' + 'A') : head[c][k];
		buf[c][k] = '\0';
		upper[c] = buf[c];
	}
	widths[NCOLS - 1] = 0;          /* the last column is not padded */
	put_table_row(o, upper, widths, NCOLS);
	if (o->fmt == MARKDOWN)
		rb_buf_puts(&o->b, "| --- | ---: | --- | --- | ---: | --- |\n");
	for (size_t i = 0; i < n; i++) {
		/* Durations and attempts right-aligned. */
		if (o->fmt == TEXT) {
			rb_buf_puts(&o->b, "  ");
			for (size_t c = 0; c < NCOLS; c++) {
				size_t mark = o->b.len;
				if (c)
					rb_buf_puts(&o->b, "  ");
				mark = o->b.len;
				rb_buf_puts(&o->b, cells[i * NCOLS + c]);
				if (c == 1 || c == 4)
					pad_left(o, mark, widths[c]);
				else
					pad(o, mark, widths[c]);
			}
			while (o->b.len && o->b.s[o->b.len - 1] == ' ')
				o->b.len--;
			rb_buf_putc(&o->b, '\n');
		} else {
			put_table_row(o, (const char *const *)cells + i * NCOLS, widths, NCOLS);
		}
	}
	for (size_t i = 0; i < n * NCOLS; i++)
		free(cells[i]);
	free(cells);
}

static void heading(struct out *o, const char *title)
{
	if (o->fmt == MARKDOWN)
		rb_buf_printf(&o->b, "\n## %c%s\n\n", title[0] - 'a' + 'A', title + 1);
	else
		rb_buf_printf(&o->b, "\n%s\n", title);
}

/* A field of the header: "  name     value" in text, "| name | value |" in markdown. */
static void field_start(struct out *o, const char *name)
{
	if (o->fmt == MARKDOWN) {
		rb_buf_printf(&o->b, "| %s | ", name);
	} else {
		size_t mark = o->b.len;
		rb_buf_printf(&o->b, "  %s", name);
		pad(o, mark, 13);
	}
}

static void field_end(struct out *o)
{
	rb_buf_puts(&o->b, o->fmt == MARKDOWN ? " |\n" : "\n");
}

static void put_header(struct out *o, const json_t *model)
{
	const json_t *run = json_object_get(model, "run");
	const json_t *v = json_object_get(model, "verified");
	if (o->fmt == MARKDOWN) {
		rb_buf_puts(&o->b, "# Run ");
		put_str(o, str(run, "run_id"), SHORT_MAX);
		rb_buf_puts(&o->b, ": ");
		put_str(o, str(run, "runbook"), SHORT_MAX);
		rb_buf_puts(&o->b, "\n\n| | |\n| --- | --- |\n");
	} else {
		rb_buf_puts(&o->b, "run ");
		put_str(o, str(run, "run_id"), SHORT_MAX);
		rb_buf_puts(&o->b, ": ");
		put_str(o, str(run, "runbook"), SHORT_MAX);
		rb_buf_puts(&o->b, ", ");
		put_str(o, str(run, "status"), SHORT_MAX);
		rb_buf_puts(&o->b, "\n");
	}
	field_start(o, "status");
	rb_buf_puts(&o->b, o->fmt == MARKDOWN ? "**" : "");
	put_str(o, str(run, "status"), SHORT_MAX);
	rb_buf_puts(&o->b, o->fmt == MARKDOWN ? "**" : "");
	rb_buf_puts(&o->b, " after ");
	put_duration(o, num(run, "duration_ms"));
	size_t ns = json_array_size(json_object_get(run, "sessions"));
	rb_buf_printf(&o->b, ", %zu session%s", ns, ns == 1 ? "" : "s");
	field_end(o);
	field_start(o, "runbook");
	put_str(o, str(run, "file"), ERROR_MAX);
	if (str(run, "sha256")) {
		rb_buf_puts(&o->b, ", sha256 ");
		put_str(o, str(run, "sha256"), 64);
	}
	field_end(o);
	field_start(o, "started");
	put_str(o, str(run, "started"), SHORT_MAX);
	rb_buf_puts(&o->b, " by ");
	put_str(o, str(run, "user"), SHORT_MAX);
	rb_buf_puts(&o->b, " on ");
	put_str(o, str(run, "host"), SHORT_MAX);
	rb_buf_puts(&o->b, ", runbook ");
	put_str(o, str(run, "version"), SHORT_MAX);
	field_end(o);
	field_start(o, "ended");
	put_str(o, str(run, "ended"), SHORT_MAX);
	field_end(o);
	if (json_object_get(run, "params")) {
		field_start(o, "params");
		put_value(o, json_object_get(run, "params"), ERROR_MAX);
		field_end(o);
	}
	if (json_array_size(json_object_get(run, "secrets"))) {
		field_start(o, "secrets");
		size_t i;
		json_t *n;
		json_array_foreach(json_object_get(run, "secrets"), i, n) {
			rb_buf_puts(&o->b, i ? ", " : "");
			put_value(o, n, SHORT_MAX);
		}
		field_end(o);
	}
	if (v) {
		field_start(o, "audit log");
		rb_buf_printf(&o->b, "verified: %" JSON_INTEGER_FORMAT " records, head ",
			      num(v, "records"));
		put_str(o, str(v, "head"), 100);
		if (json_is_true(json_object_get(v, "shared")))
			rb_buf_printf(&o->b, " (a log of several runs; %" JSON_INTEGER_FORMAT
				      " records of this one)", num(run, "records"));
		size_t i;
		json_t *k;
		json_array_foreach(json_object_get(run, "key_ids"), i, k) {
			rb_buf_puts(&o->b, i ? ", " : i == 0 &&
				    json_array_size(json_object_get(run, "key_ids")) > 1
				    ? ", signed by keys " : ", signed by key ");
			put_value(o, k, SHORT_MAX);
		}
		field_end(o);
	}
}

static void put_sessions(struct out *o, const json_t *run)
{
	size_t i;
	json_t *s;
	heading(o, "sessions");
	if (o->fmt == MARKDOWN)
		rb_buf_puts(&o->b, "| # | kind | at | by | ended |\n| ---: | --- | --- | --- | --- |\n");
	json_array_foreach(json_object_get(run, "sessions"), i, s) {
		size_t mark;
		rb_buf_printf(&o->b, o->fmt == MARKDOWN ? "| %" JSON_INTEGER_FORMAT " | "
			      : "  %" JSON_INTEGER_FORMAT "  ", num(s, "session"));
		mark = o->b.len;
		put_str(o, str(s, "kind"), SHORT_MAX);
		pad(o, mark, 8);
		rb_buf_puts(&o->b, o->fmt == MARKDOWN ? " | " : "  ");
		put_offset(o, num(s, "offset_ms"));
		rb_buf_puts(&o->b, " (");
		put_str(o, str(s, "ts"), SHORT_MAX);
		rb_buf_puts(&o->b, o->fmt == MARKDOWN ? ") | " : ")  by ");
		put_str(o, str(s, "user"), SHORT_MAX);
		rb_buf_puts(&o->b, "@");
		put_str(o, str(s, "host"), SHORT_MAX);
		if (json_object_get(s, "pid"))
			rb_buf_printf(&o->b, " pid %" JSON_INTEGER_FORMAT, num(s, "pid"));
		rb_buf_puts(&o->b, o->fmt == MARKDOWN ? " | " : ", ");
		const char *ended = str(s, "ended");
		if (is(ended, "finished")) {
			put_str(o, str(s, "status"), SHORT_MAX);
			rb_buf_puts(&o->b, " at ");
		} else if (is(ended, "crashed")) {
			rb_buf_puts(&o->b, "crashed after its last record at ");
		} else {
			rb_buf_puts(&o->b, "open (the log ends) at ");
		}
		put_offset(o, num(s, "end_offset_ms"));
		size_t k;
		json_t *r;
		json_array_foreach(json_object_get(s, "repairs"), k, r)
			rb_buf_printf(&o->b, "; torn tail of %" JSON_INTEGER_FORMAT
				      " bytes at offset %" JSON_INTEGER_FORMAT " cut off", num(r, "length"),
				      num(r, "offset"));
		rb_buf_puts(&o->b, o->fmt == MARKDOWN ? " |\n" : "\n");
	}
}

/* "  step       " in text, "- **step**, " in markdown. */
static void item_start(struct out *o, const json_t *s, size_t width)
{
	if (o->fmt == MARKDOWN) {
		rb_buf_puts(&o->b, "- **");
		put_str(o, str(s, "step"), SHORT_MAX);
		rb_buf_puts(&o->b, "**: ");
	} else {
		size_t mark = o->b.len;
		rb_buf_puts(&o->b, "  ");
		put_str(o, str(s, "step"), SHORT_MAX);
		pad(o, mark, width + 4);
	}
}

static int failed(const char *st)
{
	return st && strcmp(st, "succeeded") && strcmp(st, "satisfied") && strcmp(st, "skipped") &&
	       strcmp(st, "unfinished") && strcmp(st, "awaiting_approval");
}

static size_t step_width(const json_t *steps)
{
	size_t i, w = 4;
	json_t *s;
	json_array_foreach(steps, i, s) {
		struct out c = {.fmt = TEXT};
		rb_buf_init(&c.b);
		put_str(&c, str(s, "step"), SHORT_MAX);
		rb_buf_putc(&c.b, '\0');
		if (width_of(c.b.s) > w)
			w = width_of(c.b.s);
		rb_buf_release(&c.b);
	}
	return w;
}

static void put_failures(struct out *o, const json_t *steps)
{
	size_t i, any = 0, w = step_width(steps);
	json_t *s;
	heading(o, "failures");
	json_array_foreach(steps, i, s) {
		size_t k;
		json_t *a, *c;
		json_array_foreach(json_object_get(s, "attempts"), k, a) {
			if (!failed(str(a, "status")))
				continue;
			item_start(o, s, w);
			rb_buf_printf(&o->b, "attempt %" JSON_INTEGER_FORMAT " at ", num(a, "attempt"));
			put_offset(o, num(a, "offset_ms"));
			rb_buf_puts(&o->b, ": ");
			put_str(o, str(a, "status"), SHORT_MAX);
			if (is(str(a, "status"), "crashed"))
				rb_buf_printf(&o->b, " with session %" JSON_INTEGER_FORMAT
					      " (no result recorded)", num(a, "session"));
			if (str(a, "error")) {
				rb_buf_puts(&o->b, ": ");
				put_str(o, str(a, "error"), ERROR_MAX);
			}
			if (json_is_true(json_object_get(a, "retried")))
				rb_buf_puts(&o->b, " (retried)");
			else if (k + 1 == json_array_size(json_object_get(s, "attempts")) &&
				 json_is_true(json_object_get(s, "continued")))
				rb_buf_puts(&o->b, " (the run went on: continue_on_error)");
			rb_buf_putc(&o->b, '\n');
			any++;
			size_t ci;
			json_array_foreach(json_object_get(a, "calls"), ci, c) {
				if (!json_is_true(json_object_get(a, "for_each")) ||
				    !failed(str(c, "status")))
					continue;
				item_start(o, s, w);
				rb_buf_printf(&o->b, "attempt %" JSON_INTEGER_FORMAT ", item %"
					      JSON_INTEGER_FORMAT ": ", num(a, "attempt"), num(c, "index"));
				put_str(o, str(c, "status"), SHORT_MAX);
				if (str(c, "error")) {
					rb_buf_puts(&o->b, ": ");
					put_str(o, str(c, "error"), ERROR_MAX);
				}
				rb_buf_putc(&o->b, '\n');
			}
		}
		/* A step that failed before any attempt: its condition or arguments. */
		if (!json_array_size(json_object_get(s, "attempts")) && failed(str(s, "status"))) {
			item_start(o, s, w);
			put_str(o, str(s, "status"), SHORT_MAX);
			if (str(s, "error")) {
				rb_buf_puts(&o->b, ": ");
				put_str(o, str(s, "error"), ERROR_MAX);
			}
			rb_buf_putc(&o->b, '\n');
			any++;
		}
	}
	if (!any)
		rb_buf_puts(&o->b, o->fmt == MARKDOWN ? "None.\n" : "  none\n");
}

static void put_gates(struct out *o, const json_t *steps)
{
	size_t i, any = 0, w = step_width(steps);
	json_t *s;
	heading(o, "gates");
	json_array_foreach(steps, i, s) {
		const json_t *g = json_object_get(s, "gate");
		if (!g)
			continue;
		item_start(o, s, w);
		put_gate(o, g, 1);
		rb_buf_putc(&o->b, '\n');
		any++;
	}
	if (!any)
		rb_buf_puts(&o->b, o->fmt == MARKDOWN ? "None.\n" : "  none\n");
}

int rb_replay_render(const json_t *model, const char *format, FILE *f, char **err)
{
	if (!strcmp(format, "json")) {
		/* ASCII only: what a log holds cannot reach a terminal unescaped. */
		if (json_dumpf(model, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII) < 0 ||
		    fputc('\n', f) == EOF || fflush(f) != 0) {
			if (err)
				*err = rb_xstrdup("cannot write the timeline");
			return -1;
		}
		return 0;
	}
	struct out o = {.fmt = TEXT};
	if (!strcmp(format, "markdown")) {
		o.fmt = MARKDOWN;
	} else if (strcmp(format, "text")) {
		if (err)
			*err = rb_xasprintf("unknown format '%s' (expected text, markdown or json)",
					    format);
		return -1;
	}
	const json_t *steps = json_object_get(model, "steps");
	rb_buf_init(&o.b);
	put_header(&o, model);
	put_sessions(&o, json_object_get(model, "run"));
	heading(&o, "timeline");
	put_steps(&o, steps);
	put_failures(&o, steps);
	put_gates(&o, steps);
	int rc = fwrite(o.b.s, 1, o.b.len, f) == o.b.len && fflush(f) == 0 ? 0 : -1;
	rb_buf_release(&o.b);
	if (rc < 0 && err)
		*err = rb_xstrdup("cannot write the timeline");
	return rc;
}
