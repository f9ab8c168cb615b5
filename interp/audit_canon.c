/*
 * The canonical encoding of audit records, the text forms of their fields
 * (time stamps, heads, signatures) and nothing that does I/O.  The encoding
 * is the one `jq -cS` prints, byte for byte, so that a record can be checked
 * with stock tools; jansson's own json_dumps differs from jq in the escapes of
 * control characters (\u001B, and DEL unescaped), hence this encoder.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit_int.h"
#include "util.h"

#define STR2(x) #x
#define STR(x) STR2(x)

struct member {
	const char *key;
	size_t len;
	json_t *value;
};

/* Bytes order, as jq sorts (and as UTF-8 keeps code point order). */
static int member_cmp(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
	if (c)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

/* Which bytes need an escape: '"', '\\', the C0 controls and DEL. */
static int needs_escape(unsigned char c)
{
	return c < 0x20 || c == '"' || c == '\\' || c == 0x7f;
}

static void put_string(struct rb_buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	rb_buf_putc(out, '"');
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && !needs_escape((unsigned char)s[j]))
			j++;
		rb_buf_add(out, s + i, j - i);
		if (j == n)
			break;
		unsigned char c = (unsigned char)s[j];
		char e[7] = {'\\', 0};
		switch (c) {
		case '"': e[1] = '"'; break;
		case '\\': e[1] = '\\'; break;
		case '\b': e[1] = 'b'; break;
		case '\t': e[1] = 't'; break;
		case '\n': e[1] = 'n'; break;
		case '\f': e[1] = 'f'; break;
		case '\r': e[1] = 'r'; break;
		default:
			memcpy(e + 1, "u00", 3);
			e[4] = hex[c >> 4];
			e[5] = hex[c & 15];
			break;
		}
		rb_buf_puts(out, e);
		i = j + 1;
	}
	rb_buf_putc(out, '"');
}

struct canon {
	struct rb_buf *out;     /* NULL: check only */
	struct rb_buf path;     /* where we are, for messages: .a[3].b */
	char *err;
};

static int cfail(struct canon *c, const char *what)
{
	c->err = rb_xasprintf("%s at %s", what, c->path.len ? c->path.s : "the top");
	return -1;
}

static int encode(struct canon *c, const json_t *v, const char *skip, int depth);

static int encode_object(struct canon *c, const json_t *v, const char *skip, int depth)
{
	size_t n = json_object_size(v), k = 0;
	struct member *m = rb_xmalloc((n ? n : 1) * sizeof(*m));
	for (void *it = json_object_iter((json_t *)v); it;
	     it = json_object_iter_next((json_t *)v, it)) {
		const char *key = json_object_iter_key(it);
		size_t len = json_object_iter_key_len(it);
		json_t *val = json_object_iter_value(it);
		if (memchr(key, 0, len)) {
			free(m);
			return cfail(c, "a key with a NUL byte");
		}
		if (skip && !strcmp(key, skip))
			continue;
		m[k++] = (struct member){key, len, val};
	}
	qsort(m, k, sizeof(*m), member_cmp);
	if (c->out)
		rb_buf_putc(c->out, '{');
	int r = 0;
	for (size_t i = 0; i < k && r == 0; i++) {
		if (c->out) {
			if (i)
				rb_buf_putc(c->out, ',');
			put_string(c->out, m[i].key, m[i].len);
			rb_buf_putc(c->out, ':');
		}
		size_t mark = c->path.len;
		rb_buf_putc(&c->path, '.');
		rb_buf_add(&c->path, m[i].key, m[i].len);
		r = encode(c, m[i].value, NULL, depth + 1);
		if (r == 0) {
			c->path.len = mark;
			c->path.s[mark] = 0;
		}
	}
	if (c->out && r == 0)
		rb_buf_putc(c->out, '}');
	free(m);
	return r;
}

static int encode(struct canon *c, const json_t *v, const char *skip, int depth)
{
	if (!v)
		return cfail(c, "no value");
	if (depth > RB_AUDIT_DEPTH_MAX)
		return cfail(c, "nesting deeper than " STR(RB_AUDIT_DEPTH_MAX) " levels");
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return encode_object(c, v, skip, depth);
	case JSON_ARRAY: {
		size_t n = json_array_size(v);
		if (c->out)
			rb_buf_putc(c->out, '[');
		for (size_t i = 0; i < n; i++) {
			if (c->out && i)
				rb_buf_putc(c->out, ',');
			size_t mark = c->path.len;
			rb_buf_printf(&c->path, "[%zu]", i);
			if (encode(c, json_array_get(v, i), NULL, depth + 1) < 0)
				return -1;
			c->path.len = mark;
			c->path.s[mark] = 0;
		}
		if (c->out)
			rb_buf_putc(c->out, ']');
		return 0;
	}
	case JSON_STRING:
		if (c->out)
			put_string(c->out, json_string_value(v), json_string_length(v));
		return 0;
	case JSON_INTEGER: {
		json_int_t i = json_integer_value(v);
		if (i > RB_AUDIT_INT_MAX || i < -RB_AUDIT_INT_MAX)
			return cfail(c, "an integer beyond 2^53 (jq would round it)");
		if (c->out)
			rb_buf_printf(c->out, "%" JSON_INTEGER_FORMAT, i);
		return 0;
	}
	case JSON_REAL:
		return cfail(c, "a real number (records hold integers only)");
	case JSON_TRUE:
		if (c->out)
			rb_buf_puts(c->out, "true");
		return 0;
	case JSON_FALSE:
		if (c->out)
			rb_buf_puts(c->out, "false");
		return 0;
	case JSON_NULL:
		if (c->out)
			rb_buf_puts(c->out, "null");
		return 0;
	}
	return cfail(c, "an unknown JSON type");
}

int rb_audit_canon(const json_t *v, const char *skip_key, struct rb_buf *out, char **err)
{
	struct canon c = {.out = out};
	rb_buf_init(&c.path);
	size_t mark = out ? out->len : 0;
	int r = encode(&c, v, skip_key, 0);
	if (r < 0) {
		if (out) {
			out->len = mark;
			if (out->s)
				out->s[mark] = 0;
		}
		if (err)
			*err = c.err;
		else
			free(c.err);
	}
	rb_buf_release(&c.path);
	return r;
}

/* --- time stamps, heads, hex and base64 ---------------------------------------- */

void rb_audit_format_ts(int64_t ms, char buf[32])
{
	int64_t s = ms / 1000, frac = ms % 1000;
	if (frac < 0) {
		frac += 1000;
		s--;
	}
	time_t t = (time_t)s;
	struct tm tm;
	gmtime_r(&t, &tm);
	/* The modulos tell the compiler the widths (each field is in range anyway). */
	snprintf(buf, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
		 (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
		 (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
		 (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u, (unsigned)frac % 1000u);
}

static int digits(const char *s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		*v = *v * 10 + (s[i] - '0');
	}
	return 0;
}

int rb_audit_parse_ts(const char *s, int64_t *ms)
{
	/* 2026-11-23T17:05:05.123Z */
	int y, mo, d, h, mi, sec, frac;
	if (strlen(s) != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':' || s[19] != '.' || s[23] != 'Z' || digits(s, 4, &y) ||
	    digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) || digits(s + 11, 2, &h) ||
	    digits(s + 14, 2, &mi) || digits(s + 17, 2, &sec) || digits(s + 20, 3, &frac))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59)
		return -1;
	struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
			.tm_min = mi, .tm_sec = sec};
	*ms = (int64_t)timegm(&tm) * 1000 + frac;
	return 0;
}

int rb_audit_is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[n] == 0;
}

int rb_audit_head_parse(const char *s, struct rb_audit_head *h)
{
	const char *colon = strchr(s, ':');
	if (!colon || colon == s || colon - s > 20)
		return -1;
	uint64_t seq = 0;
	for (const char *p = s; p < colon; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		seq = seq * 10 + (uint64_t)(*p - '0');
	}
	if (!rb_audit_is_hex(colon + 1, 64))
		return -1;
	h->seq = seq;
	memcpy(h->sha256, colon + 1, 65);
	return 0;
}

void rb_audit_b64(const unsigned char *in, size_t n, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

int rb_audit_sig_decode(const char *s, size_t len, unsigned char sig[SIG_LEN])
{
	unsigned char raw[SIG_B64_LEN / 4 * 3];
	char again[SIG_B64_LEN + 1];
	if (len != SIG_B64_LEN || strlen(s) != len ||
	    EVP_DecodeBlock(raw, (const unsigned char *)s, (int)len) != (int)sizeof(raw))
		return -1;
	rb_audit_b64(raw, SIG_LEN, again);
	if (memcmp(again, s, SIG_B64_LEN))
		return -1;
	memcpy(sig, raw, SIG_LEN);
	return 0;
}
