/*
 * The redactor: secrets and patterns registered by the engine, matchers
 * built from them, and the redaction of a text or a JSON value.  What is
 * found and why is in redact.h; the forms are listed by redact_forms.c, the
 * default patterns are redact_pii.c's, the matching is litmatch.c's.
 */
#include "redact.h"

#include <pthread.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "litmatch.h"
#include "redact_int.h"
#include "util.h"

struct pattern {
	char *label;                    /* "<name>" */
	size_t label_len;
	regex_t re;
	const struct rb_pii *pii;       /* a default's finder and check; NULL: whole lines */
};

struct rb_redactor {
	/*
	 * Readers redact; writers add, and build the matchers.  Writers are
	 * preferred, so that an add is not starved by a stream of output.
	 */
	pthread_rwlock_t lock;
	struct rb_strset lits, frags;
	struct pattern *pats;
	size_t npats, patcap;
	int stale;                      /* added to since the matchers were built */
	size_t reach;                   /* rb_redact_cut's margin, set by build() */
	struct rb_acm *acm;
	struct rb_winset *ws;
};

struct rb_redactor *rb_redactor_new(void)
{
	struct rb_redactor *r = rb_xcalloc(1, sizeof(*r));
	pthread_rwlockattr_t a;
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&r->lock, &a);
	pthread_rwlockattr_destroy(&a);
	return r;
}

void rb_redactor_free(struct rb_redactor *r)
{
	if (!r)
		return;
	rb_strset_release(&r->lits);
	rb_strset_release(&r->frags);
	for (size_t i = 0; i < r->npats; i++) {
		free(r->pats[i].label);
		regfree(&r->pats[i].re);
	}
	free(r->pats);
	rb_acm_free(r->acm);
	rb_winset_free(r->ws);
	pthread_rwlock_destroy(&r->lock);
	free(r);
}

int rb_redactor_add_secret(struct rb_redactor *r, const char *value, size_t len)
{
	if (len < RB_REDACT_MIN_LEN)
		return -1;
	pthread_rwlock_wrlock(&r->lock);
	rb_secret_forms(value, len, &r->lits, &r->frags);
	r->stale = 1;
	pthread_rwlock_unlock(&r->lock);
	return 0;
}

static int add_pattern(struct rb_redactor *r, const char *name, const char *ere,
		       const struct rb_pii *pii, char **err)
{
	size_t nl = strlen(name);
	if (!nl || nl > RB_REDACT_NAME_MAX || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != nl) {
		if (err)
			*err = rb_xasprintf("pattern name '%s': expected 1 to %d of a-z, 0-9, _ and -",
					    name, RB_REDACT_NAME_MAX);
		return -1;
	}
	struct pattern p = {.pii = pii};
	/* REG_NEWLINE: '.' and [^...] stop at a newline, ^ and $ match at one. */
	int rc = regcomp(&p.re, ere, REG_EXTENDED | REG_NEWLINE);
	if (rc) {
		if (err) {
			char msg[256];
			regerror(rc, &p.re, msg, sizeof(msg));
			*err = rb_xasprintf("pattern '%s': %s", name, msg);
		}
		return -1;
	}
	p.label = rb_xasprintf("<%s>", name);
	p.label_len = nl + 2;
	pthread_rwlock_wrlock(&r->lock);
	rb_grow(&r->pats, &r->patcap, r->npats + 1, sizeof(*r->pats));
	r->pats[r->npats++] = p;
	r->stale = 1;
	pthread_rwlock_unlock(&r->lock);
	return 0;
}

int rb_redactor_add_pattern(struct rb_redactor *r, const char *name, const char *ere, char **err)
{
	return add_pattern(r, name, ere, NULL, err);
}

int rb_redactor_add_default_patterns(struct rb_redactor *r)
{
	for (size_t i = 0; i < rb_pii_count; i++)
		if (add_pattern(r, rb_pii_patterns[i].name, rb_pii_patterns[i].ere,
				&rb_pii_patterns[i], NULL) < 0)
			return -1;
	return 0;
}

/* Under the write lock. */
static void build(struct rb_redactor *r)
{
	rb_acm_free(r->acm);
	rb_winset_free(r->ws);
	r->acm = r->lits.n ? rb_acm_new((const char *const *)r->lits.s, r->lits.len, r->lits.n) : NULL;
	r->ws = r->frags.n ? rb_winset_new(RB_REDACT_FRAG, (const char *const *)r->frags.s,
					   r->frags.len, r->frags.n) : NULL;
	/*
	 * How far a match can reach past a cut: the longest literal form, three
	 * times over for its percent-encoding; a fragment; a pattern's guess.
	 */
	size_t reach = r->frags.n ? RB_REDACT_FRAG : 0;
	for (size_t i = 0; i < r->lits.n; i++)
		if (r->lits.len[i] > reach / 3)
			reach = 3 * r->lits.len[i];
	if (r->npats && reach < RB_REDACT_PATTERN_REACH)
		reach = RB_REDACT_PATTERN_REACH;
	r->reach = reach < RB_REDACT_REACH_MAX ? reach : RB_REDACT_REACH_MAX;
	r->stale = 0;
}

void rb_redactor_seal(struct rb_redactor *r)
{
	pthread_rwlock_wrlock(&r->lock);
	if (r->stale)
		build(r);
	pthread_rwlock_unlock(&r->lock);
}

/*
 * Takes the read lock on built matchers.  The redactor is logically const:
 * only the lock and the matchers, a cache of what was added, change.
 */
static struct rb_redactor *lock_built(const struct rb_redactor *cr)
{
	struct rb_redactor *r = (struct rb_redactor *)cr;
	pthread_rwlock_rdlock(&r->lock);
	while (r->stale) {
		pthread_rwlock_unlock(&r->lock);
		rb_redactor_seal(r);
		pthread_rwlock_rdlock(&r->lock);
	}
	return r;
}

/* --- finding ---------------------------------------------------------------------- */

/* A stretch of the text to replace; label 0 is a secret, k a pattern k - 1. */
struct span {
	size_t s, e;
	size_t label;
};

struct spans {
	struct span *v;
	size_t n, cap;
};

/* Where hits go: spans of the text, from a view of one of its lines or of all of it. */
struct sink {
	struct spans *sp;
	size_t base;                    /* where the view starts in the text */
	const size_t *map;              /* view offset -> offset in the line; NULL: the same */
	size_t label;
};

static size_t label_merge(size_t a, size_t b)
{
	return a == 0 || b == 0 ? 0 : a;
}

static void span_add(struct sink *k, size_t s, size_t e)
{
	if (k->map) {
		s = k->map[s];
		e = k->map[e];
	}
	s += k->base;
	e += k->base;
	struct spans *sp = k->sp;
	/* Hits mostly come in order: merge with the last one while we can. */
	if (sp->n) {
		struct span *t = &sp->v[sp->n - 1];
		if (s <= t->e && e >= t->s) {
			t->s = s < t->s ? s : t->s;
			t->e = e > t->e ? e : t->e;
			t->label = label_merge(t->label, k->label);
			return;
		}
	}
	rb_grow(&sp->v, &sp->cap, sp->n + 1, sizeof(*sp->v));
	sp->v[sp->n++] = (struct span){s, e, k->label};
}

static void on_hit(void *ud, size_t s, size_t e)
{
	span_add(ud, s, e);
}

/* A growable NUL-terminated copy of pieces of lines, for regexec. */
struct scratch {
	char *s;
	size_t cap;
};

/*
 * Matches of pattern p in line[a, b), a piece without NUL bytes: regexec
 * needs a C string.  A match the pattern's check drops is looked for again
 * one byte further.
 */
static void match_piece(const struct pattern *p, const char *line, size_t len, size_t a, size_t b,
			struct scratch *sc, struct sink *k)
{
	rb_grow(&sc->s, &sc->cap, b - a + 1, 1);
	memcpy(sc->s, line + a, b - a);
	sc->s[b - a] = 0;
	size_t off = 0;
	while (off <= b - a) {
		regmatch_t m[1];
		if (regexec(&p->re, sc->s + off, 1, m, a + off > 0 ? REG_NOTBOL : 0))
			break;
		size_t ms = a + off + (size_t)m[0].rm_so, me = a + off + (size_t)m[0].rm_eo;
		if (me == ms) {
			off = ms - a + 1;
			continue;
		}
		if (p->pii && !(me = p->pii->accept(line, len, ms, me))) {
			off = ms - a + 1;
			continue;
		}
		span_add(k, ms, me);
		off = me - a;
	}
}

static void match_patterns(const struct rb_redactor *r, const char *line, size_t len,
			   struct scratch *sc, struct sink *k)
{
	for (size_t i = 0; i < r->npats; i++) {
		const struct pattern *p = &r->pats[i];
		k->label = i + 1;
		if (p->pii) {
			size_t pos = 0, so, eo;
			while (p->pii->segment(line, len, &pos, &so, &eo))
				match_piece(p, line, len, so, eo, sc, k);
			continue;
		}
		for (size_t a = 0; a <= len;) {
			const char *z = memchr(line + a, 0, len - a);
			size_t b = z ? (size_t)(z - line) : len;
			if (b > a)
				match_piece(p, line, len, a, b, sc, k);
			a = b + 1;
		}
	}
	k->label = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * The line with its %XX escapes undone, and where each byte of it came
 * from: the view in which a URL-encoded secret or address is plain.
 * 0 when the line has no escape.
 */
static int percent_decode(const char *line, size_t len, struct rb_buf *out, size_t **map,
			  size_t *mapcap)
{
	const char *pc = memchr(line, '%', len);
	if (!pc)
		return 0;
	out->len = 0;
	rb_grow(map, mapcap, len + 1, sizeof(**map));
	int any = 0;
	for (size_t i = 0; i < len;) {
		(*map)[out->len] = i;
		int h, l;
		if (line[i] == '%' && i + 2 < len && (h = hexval(line[i + 1])) >= 0 &&
		    (l = hexval(line[i + 2])) >= 0) {
			rb_buf_putc(out, (char)(h << 4 | l));
			i += 3;
			any = 1;
		} else {
			rb_buf_putc(out, line[i++]);
		}
	}
	(*map)[out->len] = len;
	return any;
}

static int cmp_span(const void *x, const void *y)
{
	const struct span *a = x, *b = y;
	return a->s < b->s ? -1 : a->s > b->s;
}

/* Stretch a span that cuts a UTF-8 sequence to the whole character. */
static void widen(const unsigned char *p, size_t len, struct span *sp)
{
	for (int end = 0; end < 2; end++) {
		size_t at = end ? sp->e : sp->s;
		if (at >= len || (p[at] & 0xC0) != 0x80)
			continue;
		size_t lead = at;
		while (lead > 0 && at - lead < 3 && (p[lead] & 0xC0) == 0x80)
			lead--;
		unsigned c = p[lead];
		size_t n = c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xC0 && c < 0xE0 ? 2 : 0;
		if (!n || lead + n <= at)
			continue;       /* not inside a sequence: invalid input stays as it is */
		if (end)
			sp->e = lead + n < len ? lead + n : len;
		else
			sp->s = lead;
	}
}

/* Under the read lock: what of s must go, in *sp (sp->n is 0 when nothing). */
static void find_spans(const struct rb_redactor *r, const char *s, size_t len, struct spans *sp)
{
	struct sink k = {.sp = sp};
	if (r->acm)
		rb_acm_scan(r->acm, s, len, on_hit, &k);
	if (r->ws)
		rb_winset_scan(r->ws, s, len, on_hit, &k);
	if (r->npats || r->acm || r->ws) {
		struct scratch sc = {0};
		struct rb_buf dec;
		size_t *map = NULL, mapcap = 0;
		rb_buf_init(&dec);
		for (size_t a = 0; a < len;) {
			const char *nl = memchr(s + a, '\n', len - a);
			size_t b = nl ? (size_t)(nl - s) : len;
			k.base = a;
			k.map = NULL;
			match_patterns(r, s + a, b - a, &sc, &k);
			if (percent_decode(s + a, b - a, &dec, &map, &mapcap)) {
				k.map = map;
				if (r->acm)
					rb_acm_scan(r->acm, dec.s, dec.len, on_hit, &k);
				if (r->ws)
					rb_winset_scan(r->ws, dec.s, dec.len, on_hit, &k);
				match_patterns(r, dec.s, dec.len, &sc, &k);
			}
			a = b + 1;
		}
		free(sc.s);
		free(map);
		rb_buf_release(&dec);
	}
}

/* s with the spans (freed here) replaced by their labels or the mask, malloc'd. */
static char *apply_spans(const struct rb_redactor *r, const char *s, size_t len, struct spans sp,
			 size_t *outlen)
{
	for (size_t i = 0; i < sp.n; i++)
		widen((const unsigned char *)s, len, &sp.v[i]);
	if (sp.n > 1)
		qsort(sp.v, sp.n, sizeof(*sp.v), cmp_span);
	struct rb_buf out;
	rb_buf_init(&out);
	rb_grow(&out.s, &out.cap, len + 1, 1);
	size_t at = 0;
	for (size_t i = 0; i < sp.n;) {
		struct span m = sp.v[i++];
		while (i < sp.n && sp.v[i].s <= m.e) {
			if (sp.v[i].e > m.e)
				m.e = sp.v[i].e;
			m.label = label_merge(m.label, sp.v[i].label);
			i++;
		}
		rb_buf_add(&out, s + at, m.s - at);
		if (m.label)
			rb_buf_add(&out, r->pats[m.label - 1].label, r->pats[m.label - 1].label_len);
		else
			rb_buf_puts(&out, RB_REDACT_MASK);
		at = m.e;
	}
	rb_buf_add(&out, s + at, len - at);
	free(sp.v);
	if (outlen)
		*outlen = out.len;
	return rb_buf_detach(&out);
}

/* Under the read lock. */
static char *redact_locked(const struct rb_redactor *r, const char *s, size_t len, size_t *outlen)
{
	struct spans sp = {0};
	if (!s)
		s = "", len = 0;
	find_spans(r, s, len, &sp);
	return apply_spans(r, s, len, sp, outlen);
}

char *rb_redact(const struct rb_redactor *cr, const char *s, size_t len, size_t *outlen)
{
	struct rb_redactor *r = lock_built(cr);
	char *out = redact_locked(r, s, len, outlen);
	pthread_rwlock_unlock(&r->lock);
	return out;
}

size_t rb_redact_cut(const struct rb_redactor *cr, const char *s, size_t len)
{
	struct rb_redactor *r = lock_built(cr);
	size_t c = len > r->reach ? len - r->reach : 0;
	if (c) {
		struct spans sp = {0};
		find_spans(r, s, len, &sp);
		for (size_t i = 0; i < sp.n; i++)
			widen((const unsigned char *)s, len, &sp.v[i]);
		if (sp.n > 1)
			qsort(sp.v, sp.n, sizeof(*sp.v), cmp_span);
		/* Latest start first: a span that holds c moves it to its start, before the others. */
		for (size_t i = sp.n; i-- > 0;)
			if (sp.v[i].s < c && c < sp.v[i].e)
				c = sp.v[i].s;
		free(sp.v);
	}
	pthread_rwlock_unlock(&r->lock);
	/*
	 * Not inside a character: back to its first byte.  Spans are widened to whole
	 * characters, so a character c is inside is outside them all; bytes that are
	 * not UTF-8 (a stray continuation byte) are no character, and c stays.
	 */
	const unsigned char *u = (const unsigned char *)s;
	size_t k = c;
	while (k > 0 && c - k < 3 && (u[k] & 0xC0) == 0x80)
		k--;
	size_t n = u[k] >= 0xF0 && u[k] < 0xF5 ? 4 : u[k] >= 0xE0 && u[k] < 0xF0 ? 3
		 : u[k] >= 0xC2 && u[k] < 0xE0 ? 2 : 1;      /* 1: no lead byte */
	if (k < c && n > 1 && k + n > c)
		c = k;
	return c;
}

/* --- JSON ------------------------------------------------------------------------- */

/* A string from redacted bytes that jansson refuses (invalid UTF-8): made valid. */
static json_t *string_from(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);
	if (!j) {
		size_t ln;
		char *l = rb_utf8_lossy(s, n, &ln);
		j = json_stringn(l, ln);
		free(l);
	}
	return j ? j : json_string(RB_REDACT_MASK);
}

/*
 * The string of s redacted, or NULL when nothing of it goes: then the caller
 * shares the value it came from (jansson's scalars are not changed in place
 * here), which saves a copy of nearly every value.
 */
static json_t *redacted(const struct rb_redactor *r, const char *s, size_t n)
{
	struct spans sp = {0};
	find_spans(r, s, n, &sp);
	if (!sp.n) {
		free(sp.v);
		return NULL;
	}
	size_t rn;
	char *t = apply_spans(r, s, n, sp, &rn);
	json_t *j = string_from(t, rn);
	free(t);
	return j;
}

/* A number as its text, redacted: the number itself, or the redacted text. */
static json_t *redact_number(const struct rb_redactor *r, const json_t *v)
{
	char buf[32], *text = buf;
	if (json_is_integer(v))
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (!(text = json_dumps(v, JSON_ENCODE_ANY)))
		return json_deep_copy(v);
	json_t *j = redacted(r, text, strlen(text));
	if (text != buf)
		free(text);
	return j ? j : json_incref((json_t *)v);
}

/*
 * v with secrets redacted in every string and key.  Scalars are shared when
 * nothing in them changed; so are arrays and objects when share is set, else
 * each is a new one.
 */
static json_t *redact_json(const struct rb_redactor *r, const json_t *v, int share)
{
	size_t i, k;
	json_t *x;
	switch (json_typeof(v)) {
	case JSON_STRING: {
		json_t *j = redacted(r, json_string_value(v), json_string_length(v));
		return j ? j : json_incref((json_t *)v);
	}
	case JSON_INTEGER:
	case JSON_REAL:
		return redact_number(r, v);
	case JSON_ARRAY: {
		json_t *a = share ? NULL : json_array();
		json_array_foreach(v, i, x) {
			json_t *y = redact_json(r, x, share);
			if (!a && y == x) {
				json_decref(y);
				continue;
			}
			if (!a)                 /* the first change: copy what came before it */
				for (a = json_array(), k = 0; k < i; k++)
					json_array_append(a, json_array_get(v, k));
			json_array_append_new(a, y);
		}
		return a ? a : json_incref((json_t *)v);
	}
	case JSON_OBJECT: {
		json_t *o = share ? NULL : json_object();
		const char *key;
		size_t klen;
		i = 0;
		json_object_keylen_foreach((json_t *)v, key, klen, x) {
			json_t *ks = redacted(r, key, klen);    /* a valid UTF-8 key */
			json_t *y = redact_json(r, x, share);
			if (!o && !ks && y == x) {
				json_decref(y);
				i++;
				continue;
			}
			if (!o) {               /* the first change: copy what came before it */
				const char *k2;
				size_t l2;
				json_t *x2;
				o = json_object();
				k = 0;
				json_object_keylen_foreach((json_t *)v, k2, l2, x2) {
					if (k++ == i)
						break;
					json_object_setn(o, k2, l2, x2);
				}
			}
			if (!ks && !json_object_getn(o, key, klen)) {
				json_object_setn_new(o, key, klen, y);
				continue;
			}
			if (!ks)
				ks = json_stringn(key, klen);
			struct rb_buf b;
			rb_buf_init(&b);
			rb_buf_add(&b, json_string_value(ks), json_string_length(ks));
			size_t base = b.len;
			for (int n = 2; json_object_getn(o, b.s, b.len); n++) {
				b.len = base;
				rb_buf_printf(&b, " (%d)", n);
			}
			json_object_setn_new(o, b.s, b.len, y);
			rb_buf_release(&b);
			json_decref(ks);
		}
		return o ? o : json_incref((json_t *)v);
	}
	default:
		return share ? json_incref((json_t *)v) : json_deep_copy(v);
	}
}

json_t *rb_redact_json(const struct rb_redactor *cr, const json_t *v)
{
	if (!v)
		return json_null();
	struct rb_redactor *r = lock_built(cr);
	json_t *j = redact_json(r, v, 0);
	pthread_rwlock_unlock(&r->lock);
	return j;
}

json_t *rb_redact_json_shared(const struct rb_redactor *cr, json_t *v)
{
	if (!v)
		return json_null();
	struct rb_redactor *r = lock_built(cr);
	json_t *j = redact_json(r, v, 1);
	pthread_rwlock_unlock(&r->lock);
	return j;
}

/* --- HMAC ------------------------------------------------------------------------- */

int rb_hmac_hex(const void *key, size_t keylen, const void *msg, size_t len, char out[65])
{
	unsigned char mac[32];
	size_t maclen = 0;
	/* OpenSSL refuses a NULL key even of length 0; an empty key is valid HMAC. */
	static const unsigned char none[1];
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key ? key : none, keylen,
		       msg ? msg : (const void *)none, len, mac, sizeof(mac), &maclen) ||
	    maclen != sizeof(mac)) {
		out[0] = 0;
		return -1;
	}
	rb_hex(mac, sizeof(mac), out);
	return 0;
}
