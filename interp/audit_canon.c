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

/*
 * rb_buf_add and rb_buf_putc, inline: the verifier encodes every line of a
 * log, a few dozen pieces each, and the calls were a tenth of its encoding.
 */
static inline void put(struct rb_buf *out, const char *s, size_t n)
{
	if (out->cap - out->len <= n)
		rb_grow(&out->s, &out->cap, out->len + n + 1, 1);
	memcpy(out->s + out->len, s, n);
	out->len += n;
	out->s[out->len] = 0;
}

static inline void put1(struct rb_buf *out, char c)
{
	if (out->cap - out->len <= 1)
		rb_grow(&out->s, &out->cap, out->len + 2, 1);
	out->s[out->len++] = c;
	out->s[out->len] = 0;
}

/* Which bytes need an escape: '"', '\\', the C0 controls and DEL. */
static int needs_escape(unsigned char c)
{
	return c < 0x20 || c == '"' || c == '\\' || c == 0x7f;
}

static void put_string(struct rb_buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	put1(out, '"');
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && !needs_escape((unsigned char)s[j]))
			j++;
		put(out, s + i, j - i);
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
		put(out, e, e[1] == 'u' ? 6 : 2);
		i = j + 1;
	}
	put1(out, '"');
}

/* In decimal, as jq prints it (|i| <= 2^53 here: no INT64_MIN to care about). */
static void put_int(struct rb_buf *out, json_int_t i)
{
	char d[24], *p = d + sizeof(d);
	unsigned long long u = i < 0 ? 0ull - (unsigned long long)i : (unsigned long long)i;
	do
		*--p = (char)('0' + u % 10);
	while (u /= 10);
	if (i < 0)
		*--p = '-';
	put(out, p, (size_t)(d + sizeof(d) - p));
}

/*
 * Where the encoder is, for messages (.a[3].b): a key, or an index when key
 * is NULL, for each level above the value being encoded.  Kept as pointers
 * and only formatted when something fails, since records almost never do.
 */
struct step {
	const char *key;
	size_t len, index;
};

struct canon {
	struct rb_buf *out;     /* NULL: check only */
	const char *skip;       /* left out of the outermost object */
	const char *span;       /* the outermost member whose bytes to find, or NULL */
	size_t from, to;        /* its bytes in out, with the comma that joins it */
	const char *const *gaps; /* keys (sorted) whose places in the outermost object to find, */
	size_t ngaps, *gap;     /* how many, and their places */
	struct step path[RB_AUDIT_DEPTH_MAX + 2];
	char *err;
};

static int cfail(struct canon *c, int depth, const char *what)
{
	struct rb_buf p;
	rb_buf_init(&p);
	for (int i = 0; i < depth; i++) {
		if (c->path[i].key) {
			rb_buf_putc(&p, '.');
			rb_buf_add(&p, c->path[i].key, c->path[i].len);
		} else {
			rb_buf_printf(&p, "[%zu]", c->path[i].index);
		}
	}
	c->err = rb_xasprintf("%s at %s", what, p.len ? p.s : "the top");
	rb_buf_release(&p);
	return -1;
}

static int encode(struct canon *c, const json_t *v, int depth);

/* Up to this many members are sorted on the stack; a record's objects are small. */
#define MEMBERS_INLINE  32

static int encode_object(struct canon *c, const json_t *v, int depth)
{
	size_t n = json_object_size(v), k = 0;
	struct member inl[MEMBERS_INLINE];
	struct member *m = n <= MEMBERS_INLINE ? inl : rb_xmalloc(n * sizeof(*m));
	const char *skip = depth == 0 ? c->skip : NULL;
	int sorted = 1, r = 0;
	for (void *it = json_object_iter((json_t *)v); it;
	     it = json_object_iter_next((json_t *)v, it)) {
		const char *key = json_object_iter_key(it);
		size_t len = json_object_iter_key_len(it);
		json_t *val = json_object_iter_value(it);
		if (memchr(key, 0, len)) {
			r = cfail(c, depth, "a key with a NUL byte");
			goto out;
		}
		if (skip && !strcmp(key, skip))
			continue;
		m[k] = (struct member){key, len, val};
		/* jansson keeps the order of the text: a canonical line's keys are sorted. */
		if (k && sorted && member_cmp(&m[k - 1], &m[k]) > 0)
			sorted = 0;
		k++;
	}
	if (!sorted)
		qsort(m, k, sizeof(*m), member_cmp);
	if (c->out)
		put1(c->out, '{');
	size_t g = 0, ngaps = depth == 0 ? c->ngaps : 0;
	for (size_t i = 0; i < k && r == 0; i++) {
		int mark = depth == 0 && c->span && !strcmp(m[i].key, c->span);
		if (c->out) {
			if (mark)
				c->from = c->out->len;
			if (i)
				put1(c->out, ',');
			for (; g < ngaps; g++) {
				struct member gm = {c->gaps[g], strlen(c->gaps[g]), NULL};
				if (member_cmp(&gm, &m[i]) > 0)
					break;
				c->gap[g] = c->out->len;
			}
			put_string(c->out, m[i].key, m[i].len);
			put1(c->out, ':');
		}
		c->path[depth] = (struct step){m[i].key, m[i].len, 0};
		r = encode(c, m[i].value, depth + 1);
		/* The first member takes the comma after it instead of the one before. */
		if (mark && c->out)
			c->to = c->out->len + (i == 0 && k > 1);
	}
	if (c->out && r == 0) {
		for (; g < ngaps; g++)
			c->gap[g] = c->out->len;
		put1(c->out, '}');
	}
out:
	if (m != inl)
		free(m);
	return r;
}

static int encode(struct canon *c, const json_t *v, int depth)
{
	if (!v)
		return cfail(c, depth, "no value");
	if (depth > RB_AUDIT_DEPTH_MAX)
		return cfail(c, depth, "nesting deeper than " STR(RB_AUDIT_DEPTH_MAX) " levels");
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return encode_object(c, v, depth);
	case JSON_ARRAY: {
		size_t n = json_array_size(v);
		if (c->out)
			put1(c->out, '[');
		for (size_t i = 0; i < n; i++) {
			if (c->out && i)
				put1(c->out, ',');
			c->path[depth] = (struct step){NULL, 0, i};
			if (encode(c, json_array_get(v, i), depth + 1) < 0)
				return -1;
		}
		if (c->out)
			put1(c->out, ']');
		return 0;
	}
	case JSON_STRING:
		if (c->out)
			put_string(c->out, json_string_value(v), json_string_length(v));
		return 0;
	case JSON_INTEGER: {
		json_int_t i = json_integer_value(v);
		if (i > RB_AUDIT_INT_MAX || i < -RB_AUDIT_INT_MAX)
			return cfail(c, depth, "an integer beyond 2^53 (jq would round it)");
		if (c->out)
			put_int(c->out, i);
		return 0;
	}
	case JSON_REAL:
		return cfail(c, depth, "a real number (records hold integers only)");
	case JSON_TRUE:
		if (c->out)
			put(c->out, "true", 4);
		return 0;
	case JSON_FALSE:
		if (c->out)
			put(c->out, "false", 5);
		return 0;
	case JSON_NULL:
		if (c->out)
			put(c->out, "null", 4);
		return 0;
	}
	return cfail(c, depth, "an unknown JSON type");
}

static int canon_run(struct canon *c, const json_t *v, char **err)
{
	struct rb_buf *out = c->out;
	size_t mark = out ? out->len : 0;
	int r = encode(c, v, 0);
	if (r < 0) {
		if (out) {
			out->len = mark;
			if (out->s)
				out->s[mark] = 0;
		}
		if (err)
			*err = c->err;
		else
			free(c->err);
	}
	return r;
}

int rb_audit_canon(const json_t *v, const char *skip_key, struct rb_buf *out, char **err)
{
	struct canon c;         /* not = {0}: path is 3 KiB that encode writes before reading */
	c.out = out;
	c.skip = skip_key;
	c.span = NULL;
	c.ngaps = 0;
	c.err = NULL;
	return canon_run(&c, v, err);
}

int rb_audit_canon_gaps(const json_t *v, const char *const *keys, size_t nkeys,
			struct rb_buf *out, size_t *gap, char **err)
{
	struct canon c;
	c.out = out;
	c.skip = NULL;
	c.span = NULL;
	c.gaps = keys;
	c.ngaps = nkeys;
	c.gap = gap;
	c.err = NULL;
	if (!json_is_object(v)) {
		if (err)
			*err = rb_xstrdup("not an object");
		return -1;
	}
	return canon_run(&c, v, err);
}

void rb_audit_canon_string(struct rb_buf *out, const char *s, size_t n)
{
	put_string(out, s, n);
}

void rb_audit_canon_int(struct rb_buf *out, json_int_t i)
{
	put_int(out, i);
}

int rb_audit_canon_span(const json_t *v, const char *key, struct rb_buf *out, size_t *from,
			size_t *to, char **err)
{
	struct canon c;
	c.out = out;
	c.skip = NULL;
	c.span = key;
	c.ngaps = 0;
	c.from = c.to = 0;
	c.err = NULL;
	*from = *to = 0;
	if (canon_run(&c, v, err) < 0)
		return -1;
	*from = c.from;
	*to = c.to;
	return 0;
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
	if (!ms)
		return 0;
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
