/*
 * The audit log as a timeline for people (runbook audit show): each record's
 * time from the first, seq, type, step, status and its other fields, in text,
 * markdown or JSON.  It verifies nothing (runbook audit verify does) and
 * renders any record generically, since the engine's fields are its own;
 * whatever a log holds, control characters never reach the terminal.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "audit_int.h"
#include "util.h"

#define VALUE_SHOW_MAX  80      /* bytes of a field's value shown in text and markdown */

enum format { TEXT, MARKDOWN, JSON };

/* The fields every record has, shown in their own columns or not at all. */
static const char *const own[] = {"seq", "ts", "run_id", "prev", "key_id", "sig", "type",
				  "step", "status"};

static int is_own(const char *k)
{
	for (size_t i = 0; i < sizeof(own) / sizeof(*own); i++)
		if (!strcmp(k, own[i]))
			return 1;
	return 0;
}

/* A string shown as it is: no space, quote, backslash, pipe or control character. */
static int plain(const char *s, size_t n)
{
	uint32_t cp;
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c == '"' || c == '\\' || c == '|' || c == 0x7f ||
		    rb_utf8_unsafe((const unsigned char *)s + i, n - i, &cp))
			return 0;
	}
	return 1;
}

/* v for a column: plain strings as they are, the rest as JSON; cut at VALUE_SHOW_MAX. */
static void put_value(struct rb_buf *b, const json_t *v, enum format fmt)
{
	struct rb_buf t;
	rb_buf_init(&t);
	if (json_is_string(v) && plain(json_string_value(v), json_string_length(v)))
		rb_buf_add(&t, json_string_value(v), json_string_length(v));
	else if (rb_audit_canon(v, NULL, &t, NULL) < 0)
		rb_buf_puts(&t, "?");
	size_t n = t.len;
	if (n > VALUE_SHOW_MAX) {
		n = VALUE_SHOW_MAX;
		while (n > 0 && ((unsigned char)t.s[n] & 0xc0) == 0x80)
			n--;    /* not inside a UTF-8 sequence */
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)t.s[i];
		if (fmt == MARKDOWN && c == '|')
			rb_buf_putc(b, '\\');
		/* JSON leaves these as they are: escape them here, as JSON would. */
		uint32_t cp;
		size_t u = rb_utf8_unsafe((const unsigned char *)t.s + i, n - i, &cp);
		if (u) {
			rb_buf_printf(b, "\\u%04x", (unsigned)cp);
			i += u - 1;
			continue;
		}
		rb_buf_putc(b, (char)c);
	}
	if (n < t.len)
		rb_buf_puts(b, "...");
	rb_buf_release(&t);
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The fields that have no column, sorted: key=value ... */
static void put_details(struct rb_buf *b, const json_t *rec, enum format fmt)
{
	size_t n = 0;
	const char **keys = rb_xmalloc((json_object_size(rec) + 1) * sizeof(*keys));
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)rec, k, v)
		if (!is_own(k))
			keys[n++] = k;
	qsort(keys, n, sizeof(*keys), key_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i)
			rb_buf_putc(b, ' ');
		json_t *key = json_string(keys[i]);
		put_value(b, key, fmt);
		json_decref(key);
		rb_buf_putc(b, '=');
		put_value(b, json_object_get(rec, keys[i]), fmt);
	}
	free(keys);
}

static void put_offset(struct rb_buf *b, int have, int64_t ms)
{
	if (!have) {
		rb_buf_puts(b, "?");
		return;
	}
	const char *sign = ms < 0 ? "-" : "+";
	uint64_t a = ms < 0 ? (uint64_t)-ms : (uint64_t)ms;
	rb_buf_printf(b, "%s%" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%03" PRIu64, sign,
		      a / 3600000, a / 60000 % 60, a / 1000 % 60, a % 1000);
}

struct show {
	FILE *out;
	enum format fmt;
	uint64_t line, bad;
	int have_first;
	int64_t first_ms;
	char *run, *key;        /* of the record before */
	int any;                /* JSON: an element was printed */
	/*
	 * Records after the last signed one, shown once the signature that ends
	 * their group names its key (or at the end, or before a bad line).
	 */
	json_t *held;           /* [[line, record], ...] */
};

static void column(struct rb_buf *b, const json_t *v, enum format fmt, int width)
{
	size_t mark = b->len;
	if (v)
		put_value(b, v, fmt);
	if (fmt == TEXT)
		while (b->len < mark + (size_t)width)
			rb_buf_putc(b, ' ');
}

/* rec of line, signed (as its group is) by key ("?": not signed) */
static void show_record(struct show *s, uint64_t line, json_t *rec, const char *key)
{
	struct rb_buf b;
	int64_t ms = 0;
	const char *ts = json_string_value(json_object_get(rec, "ts"));
	int have = ts && rb_audit_parse_ts(ts, &ms) == 0;
	if (have && !s->have_first) {
		s->have_first = 1;
		s->first_ms = ms;
	}
	rb_buf_init(&b);
	if (s->fmt == JSON) {
		json_t *e = json_pack("{s:I,s:O}", "line", (json_int_t)line, "record", rec);
		if (have)
			json_object_set_new(e, "offset_ms", json_integer(ms - s->first_ms));
		rb_buf_puts(&b, s->any ? ",\n" : "");
		rb_audit_canon(e, NULL, &b, NULL);
		json_decref(e);
		s->any = 1;
		fputs(b.s, s->out);
		rb_buf_release(&b);
		return;
	}
	const char *run = json_string_value(json_object_get(rec, "run_id"));
	run = run ? run : "?";
	if (!s->run || strcmp(s->run, run) || strcmp(s->key, key)) {
		json_t *jr = json_string(run), *jk = json_string(key);
		if (s->fmt == MARKDOWN)
			rb_buf_puts(&b, s->run ? "\n" : "");
		rb_buf_puts(&b, s->fmt == MARKDOWN ? "### run " : "run ");
		put_value(&b, jr, s->fmt);
		rb_buf_puts(&b, ", key ");
		put_value(&b, jk, s->fmt);
		if (ts) {
			rb_buf_puts(&b, ", from ");
			put_value(&b, json_object_get(rec, "ts"), s->fmt);
		}
		rb_buf_puts(&b, s->fmt == MARKDOWN ? "\n\n| time | seq | type | step | status | "
			    "details |\n| --- | --- | --- | --- | --- | --- |\n" : "\n");
		json_decref(jr);
		json_decref(jk);
		free(s->run);
		free(s->key);
		s->run = rb_xstrdup(run);
		s->key = rb_xstrdup(key);
	}
	const char *sep = s->fmt == MARKDOWN ? " | " : "  ";
	rb_buf_puts(&b, s->fmt == MARKDOWN ? "| " : "  ");
	size_t mark = b.len;
	put_offset(&b, have, ms - s->first_ms);
	while (s->fmt == TEXT && b.len < mark + 13)
		rb_buf_putc(&b, ' ');
	rb_buf_puts(&b, sep);
	column(&b, json_object_get(rec, "seq"), s->fmt, 5);
	rb_buf_puts(&b, sep);
	column(&b, json_object_get(rec, "type"), s->fmt, 15);
	rb_buf_puts(&b, sep);
	column(&b, json_object_get(rec, "step"), s->fmt, 12);
	rb_buf_puts(&b, sep);
	column(&b, json_object_get(rec, "status"), s->fmt, 10);
	rb_buf_puts(&b, sep);
	put_details(&b, rec, s->fmt);
	if (s->fmt == MARKDOWN)
		rb_buf_puts(&b, " |");
	while (b.len && b.s[b.len - 1] == ' ')
		b.len--;
	rb_buf_putc(&b, '\n');
	fwrite(b.s, 1, b.len, s->out);
	rb_buf_release(&b);
}

/* A line that is not a record: JSON's error, or a torn tail. */
static void show_bad(struct show *s, uint64_t offset, size_t len, int torn, const char *raw)
{
	/* JSON's message quotes the line, which need not be UTF-8. */
	size_t n;
	char *why = rb_utf8_lossy(raw, strlen(raw), &n);
	s->bad++;
	if (s->fmt == JSON) {
		json_t *e = json_pack("{s:I,s:s,s:I,s:I}", "line", (json_int_t)s->line, "error",
				      why, "offset", (json_int_t)offset, "length", (json_int_t)len);
		if (torn)
			json_object_set_new(e, "torn", json_true());
		struct rb_buf b;
		rb_buf_init(&b);
		rb_buf_puts(&b, s->any ? ",\n" : "");
		rb_audit_canon(e, NULL, &b, NULL);
		fputs(b.s, s->out);
		rb_buf_release(&b);
		json_decref(e);
		s->any = 1;
		free(why);
		return;
	}
	json_t *w = json_string(why);
	struct rb_buf b;
	rb_buf_init(&b);
	put_value(&b, w, s->fmt);
	fprintf(s->out, s->fmt == MARKDOWN ? "\n**line %" PRIu64 ": %s**\n\n" : "line %" PRIu64
		": %s\n", s->line, b.s);
	rb_buf_release(&b);
	json_decref(w);
	free(why);
}

/* The records held, of the group that key signed ("?": none did). */
static void show_held(struct show *s, const char *key)
{
	size_t i;
	json_t *e;
	json_array_foreach(s->held, i, e)
		show_record(s, (uint64_t)json_integer_value(json_array_get(e, 0)),
			    json_array_get(e, 1), key);
	json_array_clear(s->held);
}

/*
 * The next line of in with its newline, if any, in b: 1, 0 at the end, -1 on
 * a read error or (errno EFBIG) a line longer than RB_AUDIT_LINE_MAX, which
 * no log holds: what never ends a line (/dev/zero) is not read into memory.
 */
static int read_line(FILE *in, struct rb_buf *b)
{
	int c;
	b->len = 0;
	while ((c = getc_unlocked(in)) != EOF) {
		if (b->len > RB_AUDIT_LINE_MAX) {
			errno = EFBIG;
			return -1;
		}
		rb_buf_putc(b, (char)c);
		if (c == '\n')
			break;
	}
	if (ferror(in))
		return -1;
	return b->len > 0;
}

int rb_audit_show(FILE *in, FILE *out, const char *format, char **err)
{
	struct show s = {.out = out, .held = json_array()};
	if (!strcmp(format, "text"))
		s.fmt = TEXT;
	else if (!strcmp(format, "markdown"))
		s.fmt = MARKDOWN;
	else if (!strcmp(format, "json"))
		s.fmt = JSON;
	else {
		if (err)
			*err = rb_xasprintf("unknown format '%s' (expected text, json or markdown)",
					    format);
		return -1;
	}
	struct rb_buf lb;
	rb_buf_init(&lb);
	int got;
	uint64_t offset = 0;
	if (s.fmt == JSON)
		fputs("[\n", out);
	while ((got = read_line(in, &lb)) > 0) {
		s.line++;
		const char *line = lb.s;
		size_t len = lb.len;
		int term = line[len - 1] == '\n';
		json_error_t je;
		json_t *rec = NULL;
		if (!term || !(rec = json_loadb(line, len - 1, JSON_ALLOW_NUL, &je)) ||
		    !json_is_object(rec))
			show_held(&s, "?");     /* in order, before the bad line */
		if (!term) {
			show_bad(&s, offset, len, 1, "torn tail: a line without its newline");
		} else if (!rec) {
			char *why = rb_xasprintf("not JSON: %s", je.text);
			show_bad(&s, offset, len - 1, 0, why);
			free(why);
		} else if (!json_is_object(rec)) {
			show_bad(&s, offset, len - 1, 0, "not a JSON object");
		} else {
			json_array_append_new(s.held, json_pack("[I,O]", (json_int_t)s.line, rec));
			const char *key = json_string_value(json_object_get(rec, "key_id"));
			if (key)
				show_held(&s, key);
		}
		json_decref(rec);
		offset += len;
	}
	show_held(&s, "?");
	int rc = 0;
	if (got < 0 && errno == EFBIG) {
		if (err)
			*err = rb_xasprintf("line %" PRIu64 " is longer than %u bytes, which no "
					    "audit log holds: stopped reading there", s.line + 1,
					    RB_AUDIT_LINE_MAX);
		rc = -1;
	} else if (got < 0) {
		if (err)
			*err = rb_xasprintf("cannot read: %s", strerror(errno));
		rc = -1;
	} else if (s.bad) {
		if (err)
			*err = rb_xasprintf("%" PRIu64 " line%s not a record", s.bad,
					    s.bad == 1 ? " is" : "s are");
		rc = -1;
	}
	if (s.fmt == JSON)
		fputs(s.any ? "\n]\n" : "]\n", out);
	rb_buf_release(&lb);
	json_decref(s.held);
	free(s.run);
	free(s.key);
	return rc;
}
