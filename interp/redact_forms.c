/*
 * The forms a secret value takes in what a run prints: escaped in JSON,
 * form-encoded, hex, base64 at each alignment, line by line, and the values
 * inside an env file or a JSON document.  It only lists strings; finding
 * them is litmatch.c's job, and redact.h documents the choices.
 */
#include "redact_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "redact.h"
#include "util.h"

/* --- a set of byte strings ------------------------------------------------------ */

static uint64_t fnv1a(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
	return h;
}

static void strset_rehash(struct rb_strset *ss, size_t nslot)
{
	free(ss->slot);
	ss->slot = rb_xcalloc(nslot, sizeof(*ss->slot));
	ss->nslot = nslot;
	for (size_t i = 0; i < ss->n; i++) {
		size_t k = fnv1a(ss->s[i], ss->len[i]) & (nslot - 1);
		while (ss->slot[k])
			k = (k + 1) & (nslot - 1);
		ss->slot[k] = i + 1;
	}
}

void rb_strset_add(struct rb_strset *ss, const char *p, size_t n)
{
	if (2 * (ss->n + 1) > ss->nslot)
		strset_rehash(ss, ss->nslot ? 2 * ss->nslot : 64);
	size_t k = fnv1a(p, n) & (ss->nslot - 1);
	for (; ss->slot[k]; k = (k + 1) & (ss->nslot - 1)) {
		size_t i = ss->slot[k] - 1;
		if (ss->len[i] == n && !memcmp(ss->s[i], p, n))
			return;
	}
	size_t cap = ss->cap;
	rb_grow(&ss->s, &cap, ss->n + 1, sizeof(*ss->s));
	rb_grow(&ss->len, &ss->cap, ss->n + 1, sizeof(*ss->len));
	ss->s[ss->n] = rb_xmalloc(n + 1);
	memcpy(ss->s[ss->n], p, n);
	ss->s[ss->n][n] = 0;
	ss->len[ss->n] = n;
	ss->slot[k] = ++ss->n;
}

void rb_strset_release(struct rb_strset *ss)
{
	for (size_t i = 0; i < ss->n; i++) {
		explicit_bzero(ss->s[i], ss->len[i]);
		free(ss->s[i]);
	}
	free(ss->s);
	free(ss->len);
	free(ss->slot);
	memset(ss, 0, sizeof(*ss));
}

/* --- encodings ------------------------------------------------------------------- */

/* What JSON encoders differ in. */
enum {
	JE_UPPER = 1,           /* \u001F (jansson) or \u001f (Python, JavaScript) */
	JE_ASCII = 2,           /* non-ASCII as \u escapes (Python's ensure_ascii) */
	JE_SLASH = 4,           /* '/' as \/ (PHP, jansson's JSON_ESCAPE_SLASH) */
	JE_DEL = 8,             /* DEL as \u007f (Python's ensure_ascii) */
	JE_ALL = 16,
};

static void json_u(struct rb_buf *b, unsigned cp, const char *hex)
{
	char u[7] = {'\\', 'u', hex[(cp >> 12) & 15], hex[(cp >> 8) & 15], hex[(cp >> 4) & 15],
		     hex[cp & 15], 0};
	rb_buf_add(b, u, 6);
}

/* The length of the valid UTF-8 sequence at p[0, n) and its code point, or 0. */
static size_t utf8_seq(const unsigned char *p, size_t n, unsigned *cp)
{
	size_t len = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : 2;
	if (len > n || rb_utf8_check((const char *)p, len) != len)
		return 0;
	unsigned c = p[0] & (0x3F >> (len - 1));
	for (size_t k = 1; k < len; k++)
		c = (c << 6) | (p[k] & 0x3F);
	*cp = c;
	return len;
}

static void json_escape(struct rb_buf *b, const char *s, size_t n, unsigned f)
{
	const char *hex = f & JE_UPPER ? "0123456789ABCDEF" : "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n; i++) {
		unsigned c = p[i], cp;
		size_t len;
		switch (c) {
		case '"':  rb_buf_puts(b, "\\\""); break;
		case '\\': rb_buf_puts(b, "\\\\"); break;
		case '\b': rb_buf_puts(b, "\\b"); break;
		case '\f': rb_buf_puts(b, "\\f"); break;
		case '\n': rb_buf_puts(b, "\\n"); break;
		case '\r': rb_buf_puts(b, "\\r"); break;
		case '\t': rb_buf_puts(b, "\\t"); break;
		case '/':  rb_buf_puts(b, f & JE_SLASH ? "\\/" : "/"); break;
		default:
			if (c < 0x20 || (c == 0x7F && (f & JE_DEL))) {
				json_u(b, c, hex);
			} else if (c >= 0x80 && (f & JE_ASCII) && (len = utf8_seq(p + i, n - i, &cp))) {
				if (cp >= 0x10000) {
					json_u(b, 0xD800 + ((cp - 0x10000) >> 10), hex);
					json_u(b, 0xDC00 + ((cp - 0x10000) & 0x3FF), hex);
				} else {
					json_u(b, cp, hex);
				}
				i += len - 1;
			} else {
				rb_buf_putc(b, (char)c);
			}
		}
	}
}

void rb_base64(const unsigned char *in, size_t n, int url, char *out)
{
	const char *a = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			    : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = a[(v >> 18) & 63];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? a[v & 63] : '=';
	}
	out[o] = 0;
}

/* --- the forms -------------------------------------------------------------------- */

/* An encoding: found by its pieces when long enough for them. */
static void add_enc(struct rb_strset *lits, struct rb_strset *frags, const char *p, size_t n)
{
	if (n >= RB_REDACT_FRAG)
		rb_strset_add(frags, p, n);
	else if (n >= RB_REDACT_MIN_LEN)
		rb_strset_add(lits, p, n);
}

/* As is, JSON-escaped once and twice in every variant, form-encoded. */
/* Working copies of a secret do not outlive their use. */
static void wipe(struct rb_buf *b)
{
	if (b->s)
		explicit_bzero(b->s, b->cap);
	rb_buf_release(b);
}

static void add_text_forms(struct rb_strset *lits, const char *v, size_t n)
{
	rb_strset_add(lits, v, n);
	struct rb_buf once, twice;
	rb_buf_init(&once);
	rb_buf_init(&twice);
	for (unsigned f = 0; f < JE_ALL; f++) {
		once.len = twice.len = 0;
		json_escape(&once, v, n, f);
		json_escape(&twice, once.s, once.len, f);
		rb_strset_add(lits, once.s, once.len);
		rb_strset_add(lits, twice.s, twice.len);
	}
	/*
	 * %XX escapes are undone before matching (redact.c), whichever
	 * characters an encoder leaves as they are; a space as '+' is not.
	 */
	if (memchr(v, ' ', n)) {
		once.len = 0;
		for (size_t i = 0; i < n; i++)
			rb_buf_putc(&once, v[i] == ' ' ? '+' : v[i]);
		rb_strset_add(lits, once.s, once.len);
	}
	wipe(&once);
	wipe(&twice);
}

/*
 * Hex, and base64 at the 3 alignments: with a = 0, 1 or 2 bytes of a blob
 * before the value, the characters from ceil(8a / 6) up to floor(8(a + n) / 6)
 * hold bits of the value only, whatever surrounds it.
 */
static void add_binary_forms(struct rb_strset *lits, struct rb_strset *frags, const char *v,
			     size_t n)
{
	char *buf = rb_xmalloc(2 * n + 4 * ((n + 4) / 3) + 8);
	for (int upper = 0; upper < 2; upper++) {
		const char *hex = upper ? "0123456789ABCDEF" : "0123456789abcdef";
		for (size_t i = 0; i < n; i++) {
			buf[2 * i] = hex[(unsigned char)v[i] >> 4];
			buf[2 * i + 1] = hex[(unsigned char)v[i] & 15];
		}
		add_enc(lits, frags, buf, 2 * n);
	}
	unsigned char *blob = rb_xcalloc(n + 2, 1);
	for (size_t a = 0; a < 3; a++) {
		memset(blob, 0, a);
		memcpy(blob + a, v, n);
		size_t lo = (8 * a + 5) / 6, hi = 8 * (a + n) / 6;
		for (int url = 0; url < 2; url++) {
			rb_base64(blob, a + n, url, buf);
			add_enc(lits, frags, buf + lo, hi - lo);
		}
	}
	explicit_bzero(blob, n + 2);
	explicit_bzero(buf, 2 * n + 4 * ((n + 4) / 3) + 8);
	free(blob);
	free(buf);
}

static int blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* "-----BEGIN RSA PRIVATE KEY-----" and its END: not secret. */
static int pem_armour(const char *p, size_t n)
{
	return n > 10 && (!memcmp(p, "-----BEGIN ", 11) || !memcmp(p, "-----END ", 9)) &&
	       !memcmp(p + n - 5, "-----", 5);
}

static void add_value(struct rb_strset *lits, struct rb_strset *frags, const char *v, size_t n,
		      int depth);

/* The value of a "KEY=VALUE" or "key: value" line, unquoted. */
static void add_line_value(struct rb_strset *lits, struct rb_strset *frags, const char *p,
			   size_t n)
{
	const char *eq = memchr(p, '=', n), *colon = NULL;
	for (size_t i = 0; i + 1 < n; i++)
		if (p[i] == ':' && p[i + 1] == ' ') {
			colon = p + i + 1;
			break;
		}
	const char *sep = eq && (!colon || eq < colon) ? eq : colon;
	if (!sep)
		return;
	const char *a = sep + 1, *z = p + n;
	while (a < z && blank(*a))
		a++;
	if (z - a >= 2 && (*a == '"' || *a == '\'') && z[-1] == *a)
		a++, z--;
	if ((size_t)(z - a) >= RB_REDACT_PART_LEN)
		add_value(lits, frags, a, (size_t)(z - a), 2);
}

static void add_lines(struct rb_strset *lits, struct rb_strset *frags, const char *v, size_t n)
{
	const char *p = v, *end = v + n;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *a = p, *z = nl ? nl : end;
		while (a < z && blank(*a))
			a++;
		while (z > a && blank(z[-1]))
			z--;
		size_t len = (size_t)(z - a);
		/* A comment says what a value is for; it does not hold it. */
		int comment = len && *a == '#' && (len == 1 || blank(a[1]));
		if (len >= RB_REDACT_PART_LEN && !pem_armour(a, len) && !comment) {
			add_text_forms(lits, a, len);
			add_line_value(lits, frags, a, len);
		}
		p = nl ? nl + 1 : end;
	}
}

static void add_json_strings(struct rb_strset *lits, struct rb_strset *frags, json_t *j, int depth)
{
	size_t i;
	const char *k;
	json_t *x;
	switch (json_typeof(j)) {
	case JSON_STRING:
		if (json_string_length(j) >= RB_REDACT_PART_LEN)
			add_value(lits, frags, json_string_value(j), json_string_length(j), depth);
		break;
	case JSON_ARRAY:
		json_array_foreach(j, i, x)
			add_json_strings(lits, frags, x, depth);
		break;
	case JSON_OBJECT:
		json_object_foreach(j, k, x)
			add_json_strings(lits, frags, x, depth);
		break;
	default:
		break;
	}
}

/*
 * depth: 0 for a secret, 1 for a string inside it, 2 for what is inside
 * that (no further: a JSON string holding JSON is as deep as secrets go).
 */
/* A large value, found whole: as is and as jansson escapes it. */
static void add_big(struct rb_strset *lits, const char *v, size_t n)
{
	struct rb_buf b;
	rb_buf_init(&b);
	rb_strset_add(lits, v, n);
	json_escape(&b, v, n, 0);
	rb_strset_add(lits, b.s, b.len);
	wipe(&b);
}

static void add_value(struct rb_strset *lits, struct rb_strset *frags, const char *v, size_t n,
		      int depth)
{
	if (n > RB_REDACT_BIG) {
		size_t m = n;
		while (m > 0 && (v[m - 1] == '\n' || v[m - 1] == '\r'))
			m--;
		add_big(lits, v, n);
		if (m < n)
			add_big(lits, v, m);
		return;
	}
	add_text_forms(lits, v, n);
	add_binary_forms(lits, frags, v, n);
	size_t m = n;
	while (m > 0 && (v[m - 1] == '\n' || v[m - 1] == '\r'))
		m--;
	if (m < n && m >= RB_REDACT_MIN_LEN) {
		add_text_forms(lits, v, m);
		add_binary_forms(lits, frags, v, m);
	}
	if (depth < 2 && memchr(v, '\n', m))
		add_lines(lits, frags, v, m);
	size_t i = 0;
	while (i < m && (blank(v[i]) || v[i] == '\n'))
		i++;
	if (depth < 2 && i < m && (v[i] == '{' || v[i] == '[')) {
		json_t *j = json_loadb(v, m, 0, NULL);
		if (j)
			add_json_strings(lits, frags, j, depth + 1);
		json_decref(j);
	}
}

void rb_secret_forms(const char *v, size_t n, struct rb_strset *lits, struct rb_strset *frags)
{
	add_value(lits, frags, v, n, 0);
}
