/*
 * Tests interp/redact.c: every form of a secret inside text at several
 * offsets (base64 inside larger blobs at offsets 0..5, wrapped base64, hex,
 * JSON-escaped, URL-encoded), a PEM key line by line, a JSON document as a
 * secret, short, overlapping and edge secrets, NUL bytes, UTF-8, the default
 * patterns against positives and realistic runbook output that must stay,
 * rb_redact_json, HMAC test vectors, a differential test of the literal
 * matcher against a naive scan, and redaction from several threads.
 *
 * Build and run from the repository root: make build/unit/test_redact &&
 * build/unit/test_redact (make test runs it; make asan under the sanitizers;
 * valgrind --leak-check=full --error-exitcode=1 build/unit/test_redact).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "redact.h"
#include "util.h"

#include "check.h"

/* --- helpers --------------------------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

static void rnd_text(char *out, size_t n, const char *alpha)
{
	size_t k = strlen(alpha);
	for (size_t i = 0; i < n; i++)
		out[i] = alpha[rnd() % k];
	out[n] = 0;
}

static const char ALNUM[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/* rb_redact of a C string, as a C string (the caller frees). */
static char *red(const struct rb_redactor *r, const char *s)
{
	return rb_redact(r, s, strlen(s), NULL);
}

/* Checks that redacting in gives want exactly. */
static void expect(const struct rb_redactor *r, const char *in, const char *want, int line)
{
	char *out = red(r, in);
	CHECK(!strcmp(out, want), "line %d: redact(\"%s\") = \"%s\", want \"%s\"", line, in, out, want);
	free(out);
}
#define EXPECT(r, in, want) expect(r, in, want, __LINE__)

static void hexenc(const unsigned char *p, size_t n, int upper, char *out)
{
	const char *h = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = h[p[i] >> 4];
		out[2 * i + 1] = h[p[i] & 15];
	}
	out[2 * n] = 0;
}

/* OpenSSL's base64 (the oracle), optionally URL-safe and unpadded. */
static char *b64(const unsigned char *p, size_t n, int url, int pad)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	for (char *c = out; *c; c++) {
		if (url && *c == '+')
			*c = '-';
		else if (url && *c == '/')
			*c = '_';
	}
	if (!pad)
		out[strcspn(out, "=")] = 0;
	return out;
}

/* Percent-encoding that leaves letters, digits and the characters of keep. */
static char *urlenc(const char *s, size_t n, const char *keep, int upper, int plus)
{
	const char *h = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	struct rb_buf b;
	rb_buf_init(&b);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    (c && strchr(keep, c))) {
			rb_buf_putc(&b, (char)c);
		} else if (c == ' ' && plus) {
			rb_buf_putc(&b, '+');
		} else {
			char e[4] = {'%', h[c >> 4], h[c & 15], 0};
			rb_buf_puts(&b, e);
		}
	}
	return rb_buf_detach(&b);
}

/* Python's json.dumps: lower-case \u escapes, non-ASCII escaped (BMP only here). */
static char *pyjson(const char *s)
{
	struct rb_buf b;
	rb_buf_init(&b);
	rb_buf_putc(&b, '"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			rb_buf_putc(&b, '\\');
			rb_buf_putc(&b, (char)*p);
		} else if (*p == '\n' || *p == '\t' || *p == '\r') {
			rb_buf_puts(&b, *p == '\n' ? "\\n" : *p == '\t' ? "\\t" : "\\r");
		} else if (*p < 0x20 || *p == 0x7f) {
			rb_buf_printf(&b, "\\u%04x", *p);
		} else if (*p >= 0xC0 && *p < 0xE0 && p[1]) {
			rb_buf_printf(&b, "\\u%04x", ((p[0] & 0x1F) << 6) | (p[1] & 0x3F));
			p++;
		} else {
			rb_buf_putc(&b, (char)*p);
		}
	}
	rb_buf_putc(&b, '"');
	return rb_buf_detach(&b);
}

static char *jdump(const char *s, size_t n, size_t flags)
{
	json_t *j = json_stringn(s, n);
	char *d = json_dumps(j, JSON_ENCODE_ANY | flags);
	json_decref(j);
	return d;
}

static char *cat3(const char *a, const char *b, size_t blen, const char *c, size_t *len)
{
	size_t la = strlen(a), lc = strlen(c);
	char *s = malloc(la + blen + lc + 1);
	memcpy(s, a, la);
	memcpy(s + la, b, blen);
	memcpy(s + la + blen, c, lc + 1);
	if (len)
		*len = la + blen + lc;
	return s;
}

/* --- secrets as they are ------------------------------------------------------------ */

static void t_refuse_short(void)
{
	struct rb_redactor *r = rb_redactor_new();
	CHECK(rb_redactor_add_secret(r, "abc", 3) == -1, "a 3-character secret was accepted");
	CHECK(rb_redactor_add_secret(r, "", 0) == -1, "an empty secret was accepted");
	CHECK(rb_redactor_add_secret(r, "Q7z!", 4) == 0, "a 4-character secret was refused");
	EXPECT(r, "xQ7z!x abc Q7z Q7z!Q7z!", "x***x abc Q7z ***");
	EXPECT(r, "Q7z", "Q7z");
	/* Its encodings too, base64 at every offset inside a blob. */
	EXPECT(r, "hex 51377a21 51377A21", "hex *** ***");
	for (size_t k = 0; k < 6; k++) {
		unsigned char blob[16];
		memcpy(blob, "\x01\x02\x03\x04\x05\x06", k);
		memcpy(blob + k, "Q7z!", 4);
		memcpy(blob + k + 4, "\xfe\xfd\xfc", 3);
		char *e = b64(blob, k + 7, 0, 1);
		size_t lo = (8 * k + 5) / 6, hi = 8 * (k + 4) / 6;
		char *out = red(r, e);
		CHECK(!strncmp(out, e, lo) && !strncmp(out + lo, "***", 3) && !strcmp(out + lo + 3, e + hi),
		      "4-character secret at blob offset %zu: %s -> %s", k, e, out);
		free(out);
		free(e);
	}
	rb_redactor_free(r);
}

static void t_raw(void)
{
	struct rb_redactor *r = rb_redactor_new();
	char s[25];
	rnd_text(s, 24, ALNUM);
	CHECK(rb_redactor_add_secret(r, s, 24) == 0, "add");
	const char *pre[] = {"", "x", "ab", "key=", "token: ", "\t\t"};
	const char *post[] = {"", "y", "\n", " end", ".", "\"}"};
	for (size_t i = 0; i < 6; i++)
		for (size_t j = 0; j < 6; j++) {
			char in[128], want[128];
			snprintf(in, sizeof(in), "%s%s%s", pre[i], s, post[j]);
			snprintf(want, sizeof(want), "%s***%s", pre[i], post[j]);
			EXPECT(r, in, want);
		}
	char twice[64], want[64];
	snprintf(twice, sizeof(twice), "%s%s", s, s);
	EXPECT(r, twice, "***");
	snprintf(twice, sizeof(twice), "%s %s", s, s);
	EXPECT(r, twice, "*** ***");
	snprintf(want, sizeof(want), "%.23s", s);
	EXPECT(r, want, want);          /* all but its last character: not the secret */
	EXPECT(r, "", "");
	size_t n = 99;
	char *out = rb_redact(r, NULL, 0, &n);
	CHECK(out && !*out && n == 0, "NULL text");
	free(out);

	/* A secret read from a file ends in a newline that echo does not print. */
	char f[32];
	snprintf(f, sizeof(f), "%.20s\r\n", s + 2);
	rb_redactor_add_secret(r, f, strlen(f));
	snprintf(twice, sizeof(twice), "pw=%.20s.", s + 2);
	EXPECT(r, twice, "pw=***.");
	rb_redactor_free(r);
}

/* Secrets of 4 to 9 characters of "abc" in texts of "abc": only their raw form can
 * occur, so the result must be what a naive scan of every secret at every byte gives. */
static void t_differential(void)
{
	for (int trial = 0; trial < 300; trial++) {
		struct rb_redactor *r = rb_redactor_new();
		size_t nsec = 1 + rnd() % 30, tlen = rnd() % 400;
		char sec[30][10], text[401];
		for (size_t i = 0; i < nsec; i++) {
			rnd_text(sec[i], 4 + rnd() % 6, "abc");
			rb_redactor_add_secret(r, sec[i], strlen(sec[i]));
		}
		rnd_text(text, tlen, trial % 2 ? "abc" : "aab");
		char cover[401] = {0};
		for (size_t i = 0; i < tlen; i++)
			for (size_t k = 0; k < nsec; k++) {
				size_t sl = strlen(sec[k]);
				if (i + sl <= tlen && !memcmp(text + i, sec[k], sl))
					memset(cover + i, 1, sl);
			}
		char want[2000];
		size_t w = 0;
		for (size_t i = 0; i < tlen; i++) {
			if (!cover[i])
				want[w++] = text[i];
			else if (i == 0 || !cover[i - 1])
				w += (size_t)sprintf(want + w, "***");
		}
		want[w] = 0;
		char *out = red(r, text);
		CHECK(!strcmp(out, want), "trial %d: %s -> %s, want %s", trial, text, out, want);
		free(out);
		rb_redactor_free(r);
	}
}

/* The same with secrets longer than the automaton's 512-byte anchors, sharing
 * them, in texts made of their pieces. */
static void t_differential_long(void)
{
	for (int trial = 0; trial < 40; trial++) {
		struct rb_redactor *r = rb_redactor_new();
		size_t nsec = 1 + rnd() % 6;
		static char sec[6][801];
		char base[801];
		rnd_text(base, 800, "ab");
		for (size_t i = 0; i < nsec; i++) {
			size_t n = 500 + rnd() % 300;
			memcpy(sec[i], base, n);        /* long common prefixes */
			sec[i][n] = 0;
			for (size_t k = 0; k < 3; k++)
				sec[i][rnd() % n] = "ab"[rnd() % 2];
			rb_redactor_add_secret(r, sec[i], n);
		}
		static char text[6001];
		size_t tlen = 0;
		while (tlen < 5000) {
			const char *piece = sec[rnd() % nsec];
			size_t a = rnd() % 2 ? 0 : rnd() % 100, n = strlen(piece) - a;
			if (rnd() % 3 == 0)
				n = rnd() % n;
			memcpy(text + tlen, piece + a, n);
			tlen += n;
			text[tlen++] = "ab"[rnd() % 2];
		}
		text[tlen] = 0;
		static char cover[6001], want[6001];
		memset(cover, 0, tlen);
		for (size_t i = 0; i < tlen; i++)
			for (size_t k = 0; k < nsec; k++) {
				size_t sl = strlen(sec[k]);
				if (i + sl <= tlen && !memcmp(text + i, sec[k], sl))
					memset(cover + i, 1, sl);
			}
		size_t w = 0;
		for (size_t i = 0; i < tlen; i++) {
			if (!cover[i])
				want[w++] = text[i];
			else if (i == 0 || !cover[i - 1])
				w += (size_t)sprintf(want + w, "***");
		}
		want[w] = 0;
		char *out = red(r, text);
		CHECK(!strcmp(out, want), "long trial %d: %zu bytes out, want %zu", trial, strlen(out), w);
		free(out);
		rb_redactor_free(r);
	}
}

/* A large sensitive output: found whole, its lines left alone. */
static void t_big_value(void)
{
	struct rb_redactor *r = rb_redactor_new();
	size_t n = 1 << 20;
	char *v = malloc(n + 1);
	for (size_t i = 0; i < n;) {
		i += (size_t)snprintf(v + i, n + 1 - i, "row %zu: done\n", i);
	}
	v[n] = 0;
	rb_redactor_add_secret(r, v, n);
	char *in = cat3("[", v, n, "]", NULL);
	char *out = red(r, in);
	CHECK(!strcmp(out, "[***]"), "1 MiB value: %.40s", out);
	free(out);
	free(in);
	char *d = jdump(v, n, 0);
	out = red(r, d);
	CHECK(!strcmp(out, "\"***\""), "1 MiB value, JSON: %.40s", out);
	free(out);
	free(d);
	EXPECT(r, "row 13: done", "row 13: done");
	rb_redactor_free(r);
	free(v);
}

static void t_overlap(void)
{
	struct rb_redactor *r = rb_redactor_new();
	const char *s[] = {"abcdef", "defghi", "xyz12345", "12345678", "QRST", "UVWX", "LMNOPQR", "NOP1"};
	for (size_t i = 0; i < sizeof(s) / sizeof(*s); i++)
		rb_redactor_add_secret(r, s[i], strlen(s[i]));
	EXPECT(r, "..abcdefghi..", "..***..");      /* overlapping: no "ghi" left over */
	EXPECT(r, "xyz12345678", "***");
	EXPECT(r, "_QRSTUVWX_", "_***_");           /* adjacent: one mask */
	EXPECT(r, "LMNOPQR NOP1", "*** ***");        /* a prefix of one starts another */
	EXPECT(r, "abcdefabcdef", "***");
	EXPECT(r, "abcde fghi", "abcde fghi");
	rb_redactor_free(r);
}

static void t_nul_utf8(void)
{
	struct rb_redactor *r = rb_redactor_new();
	rb_redactor_add_secret(r, "ab\0cdef", 7);
	static const char in[] = "x\0ab\0cdef\0y";
	size_t n;
	char *out = rb_redact(r, in, sizeof(in) - 1, &n);
	CHECK(n == 7 && !memcmp(out, "x\0***\0y", 7), "NUL bytes: %zu bytes", n);
	free(out);
	rb_redactor_add_secret(r, "pässwörd!", strlen("pässwörd!"));
	EXPECT(r, "ü pässwörd! ü", "ü *** ü");
	/* A secret that starts inside a character takes the whole character. */
	rb_redactor_add_secret(r, "\xA4sswo", 5);
	out = red(r, "Pässwort");
	CHECK(!strcmp(out, "P***rt"), "cut character: %s", out);
	CHECK(rb_utf8_check(out, strlen(out)) == strlen(out), "output not valid UTF-8");
	free(out);
	rb_redactor_add_secret(r, "zyx\xC3", 4);
	EXPECT(r, "wzyxé!", "w***!");
	/* Invalid UTF-8 stays as it is around the mask. */
	EXPECT(r, "\xff\xfepässwörd!\xc3", "\xff\xfe***\xc3");
	EXPECT(r, "\xA4\xA4\xA4sswo", "\xA4\xA4***");
	rb_redactor_free(r);
}

/* --- encodings ----------------------------------------------------------------------- */

static void t_json_escaped(void)
{
	struct rb_redactor *r = rb_redactor_new();
	char sec[64];
	char tail[9];
	rnd_text(tail, 8, ALNUM);
	snprintf(sec, sizeof(sec), "Pa$$ w\"o\\rd/é\x01\t%s", tail);
	rb_redactor_add_secret(r, sec, strlen(sec));
	size_t flags[] = {0, JSON_ENSURE_ASCII, JSON_ESCAPE_SLASH, JSON_ENSURE_ASCII | JSON_ESCAPE_SLASH};
	for (size_t i = 0; i < 4; i++) {
		char *d = jdump(sec, strlen(sec), flags[i]);
		char *in = cat3("{\"password\": ", d, strlen(d), "}", NULL);
		EXPECT(r, in, "{\"password\": \"***\"}");
		free(in);
		/* and escaped twice: JSON in a JSON string */
		char *dd = jdump(d, strlen(d), flags[i]);
		EXPECT(r, dd, "\"\\\"***\\\"\"");
		free(dd);
		free(d);
	}
	char *py = pyjson(sec);
	EXPECT(r, py, "\"***\"");
	free(py);
	rb_redactor_free(r);
}

static void t_url(void)
{
	struct rb_redactor *r = rb_redactor_new();
	char sec[64], tail[9];
	rnd_text(tail, 8, ALNUM);
	snprintf(sec, sizeof(sec), "p@ss w/rd+&=?~*é%s", tail);
	rb_redactor_add_secret(r, sec, strlen(sec));
	struct { const char *keep; int plus; } v[] = {
		{"-._~", 0},            /* RFC 3986, curl --data-urlencode */
		{"-._~!*'()", 0},       /* JavaScript encodeURIComponent */
		{"-._~/", 0},           /* Python quote */
		{"-._*", 1},            /* Java URLEncoder, form encoding */
		{"-._", 1},             /* PHP urlencode */
		{"", 0},                /* everything */
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++)
		for (int upper = 0; upper < 2; upper++) {
			char *e = urlenc(sec, strlen(sec), v[i].keep, upper, v[i].plus);
			char *in = cat3("GET /login?user=bob&pass=", e, strlen(e), "&next=%2Fhome HTTP/1.1", NULL);
			EXPECT(r, in, "GET /login?user=bob&pass=***&next=%2Fhome HTTP/1.1");
			free(in);
			free(e);
		}
	/* A secret with a space, form-encoded, and nothing else to escape. */
	rb_redactor_add_secret(r, "correct horse battery", 21);
	EXPECT(r, "q=correct+horse+battery&x=1", "q=***&x=1");
	rb_redactor_free(r);
}

static void t_hex(void)
{
	struct rb_redactor *r = rb_redactor_new();
	unsigned char sec[20];
	for (size_t i = 0; i < sizeof(sec); i++)
		sec[i] = (unsigned char)rnd();
	rb_redactor_add_secret(r, (const char *)sec, sizeof(sec));
	for (int upper = 0; upper < 2; upper++) {
		char h[41];
		hexenc(sec, sizeof(sec), upper, h);
		char *in = cat3("key=", h, 40, " ok", NULL);
		EXPECT(r, in, "key=*** ok");
		free(in);
		/* inside a longer hex dump, and cut in two at a line end */
		char pre[9];
		hexenc((const unsigned char *)"\x10\x20\x30\x40", 4, upper, pre);
		in = cat3(pre, h, 40, "0a0b", NULL);
		char want[32];
		snprintf(want, sizeof(want), "%s***0a0b", pre);
		EXPECT(r, in, want);
		free(in);
		char a[64], b[64];
		snprintf(a, sizeof(a), "%.20s", h);
		snprintf(b, sizeof(b), "%s", h + 20);
		EXPECT(r, a, "***");
		EXPECT(r, b, "***");
	}
	rb_redactor_free(r);
}

/* base64 of a blob holding the secret at offsets 0..5: exactly the characters the
 * secret alone determines are masked, in each alphabet, padded or not. */
static void t_base64(void)
{
	struct rb_redactor *r = rb_redactor_new();
	char sec[41];
	rnd_text(sec, 40, ALNUM);
	rb_redactor_add_secret(r, sec, 40);
	for (size_t k = 0; k < 6; k++)
		for (int url = 0; url < 2; url++)
			for (int pad = 0; pad < 2; pad++) {
				unsigned char blob[64];
				for (size_t i = 0; i < k; i++)
					blob[i] = (unsigned char)rnd();
				memcpy(blob + k, sec, 40);
				for (size_t i = 0; i < 7; i++)
					blob[k + 40 + i] = (unsigned char)(rnd() | 0x80);
				char *e = b64(blob, k + 47, url, pad);
				size_t lo = (8 * k + 5) / 6, hi = 8 * (k + 40) / 6;
				char *in = cat3("blob=", e, strlen(e), ";", NULL);
				char want[128];
				snprintf(want, sizeof(want), "blob=%.*s***%s;", (int)lo, e, e + hi);
				EXPECT(r, in, want);
				free(in);
				free(e);
			}
	/* The secret alone: everything but the last, partial character and padding. */
	char *e = b64((const unsigned char *)sec, 40, 0, 1);
	char want[64];
	snprintf(want, sizeof(want), "***%s", e + 8 * 40 / 6);
	char *out = red(r, e);
	CHECK(!strcmp(out, want), "base64 alone: %s -> %s", e, out);
	free(out);
	free(e);
	rb_redactor_free(r);
}

/* base64 wrapped at 64 and 76 columns, redacted line by line as the engine does:
 * every piece of RB_REDACT_FRAG characters or more of the secret's is masked. */
static void t_base64_wrapped(void)
{
	struct rb_redactor *r = rb_redactor_new();
	unsigned char sec[300];
	for (size_t i = 0; i < sizeof(sec); i++)
		sec[i] = (unsigned char)rnd();
	rb_redactor_add_secret(r, (const char *)sec, sizeof(sec));
	for (int width = 64; width <= 76; width += 12)
		for (size_t k = 0; k < 3; k++) {
			unsigned char blob[320];
			for (size_t i = 0; i < k + 5; i++)
				blob[i] = (unsigned char)i;
			memcpy(blob + k + 5, sec, sizeof(sec));
			memcpy(blob + k + 5 + sizeof(sec), "tail!", 5);
			size_t n = k + 5 + sizeof(sec) + 5, off = k + 5;
			char *e = b64(blob, n, 0, 1);
			size_t lo = (8 * off + 5) / 6, hi = 8 * (off + sizeof(sec)) / 6, el = strlen(e);
			for (size_t a = 0; a < el; a += (size_t)width) {
				size_t b = a + (size_t)width < el ? a + (size_t)width : el;
				size_t x = a > lo ? a : lo, y = b < hi ? b : hi;
				char line[80], want[96];
				snprintf(line, sizeof(line), "%.*s", (int)(b - a), e + a);
				if (y > x && y - x >= RB_REDACT_FRAG)
					snprintf(want, sizeof(want), "%.*s***%.*s", (int)(x - a), e + a,
						 (int)(b - y), e + y);
				else
					snprintf(want, sizeof(want), "%s", line);
				char *out = red(r, line);
				CHECK(!strcmp(out, want), "width %d offset %zu: %s -> %s, want %s", width,
				      k, line, out, want);
				free(out);
			}
			free(e);
		}
	rb_redactor_free(r);
}

/* --- structured secrets -------------------------------------------------------------- */

static char *make_pem(void)
{
	EVP_PKEY *key = EVP_RSA_gen(1024);
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem = NULL;
	if (key && bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) {
		char *p;
		long n = BIO_get_mem_data(bio, &p);
		pem = rb_xstrndup(p, (size_t)n);
	}
	BIO_free(bio);
	EVP_PKEY_free(key);
	return pem;
}

static void t_pem(void)
{
	char *pem = make_pem();
	CHECK(pem != NULL, "no PEM key");
	if (!pem)
		return;
	struct rb_redactor *r = rb_redactor_new();
	rb_redactor_add_secret(r, pem, strlen(pem));
	char *whole = cat3("key:\n", pem, strlen(pem), "done", NULL);
	EXPECT(r, whole, "key:\n***done");
	free(whole);
	int body = 0;
	for (char *line = pem, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
		char l[128], in[160], want[160];
		snprintf(l, sizeof(l), "%.*s", (int)(nl - line), line);
		if (!strncmp(l, "-----", 5)) {
			EXPECT(r, l, l);        /* armour stays */
			continue;
		}
		body++;
		EXPECT(r, l, "***");
		snprintf(in, sizeof(in), "[rotate_key] %s\r", l);
		snprintf(want, sizeof(want), "[rotate_key] ***\r");
		EXPECT(r, in, want);
	}
	CHECK(body >= 10, "PEM has %d body lines", body);

	/* base64 of the file, wrapped at 76 (a Kubernetes secret by hand) */
	char *e = b64((const unsigned char *)pem, strlen(pem), 0, 1);
	size_t el = strlen(e), lines = 0, masked = 0;
	for (size_t a = 0; a + 76 < el; a += 76) {
		char line[80];
		snprintf(line, sizeof(line), "%.76s", e + a);
		char *out = red(r, line);
		lines++;
		masked += !strcmp(out, "***");
		free(out);
	}
	CHECK(lines > 10 && masked == lines, "base64 of the PEM: %zu of %zu lines masked", masked, lines);
	free(e);

	/* the key inside a JSON string */
	json_t *j = json_pack("{s:s}", "key", pem);
	char *d = json_dumps(j, 0);
	char *out = red(r, d);
	CHECK(!strcmp(out, "{\"key\": \"***\"}"), "PEM in JSON: %s", out);
	free(out);
	free(d);
	json_decref(j);
	rb_redactor_free(r);
	free(pem);
}

/* A service-account key: a secret that is a JSON document. */
static void t_json_secret(void)
{
	char *pem = make_pem();
	if (!pem)
		return;
	char id[41];
	rnd_text(id, 40, "0123456789abcdef");
	json_t *doc = json_pack("{s:s, s:s, s:s, s:s}", "type", "service_account", "private_key_id", id,
				"private_key", pem, "client_email", "deploy@proj-7.iam.gserviceaccount.com");
	char *text = json_dumps(doc, JSON_INDENT(2));
	struct rb_redactor *r = rb_redactor_new();
	rb_redactor_add_secret(r, text, strlen(text));

	char *in = cat3("config ", text, strlen(text), " loaded", NULL);
	EXPECT(r, in, "config *** loaded");
	free(in);
	/* JSON-escaped inside another JSON string */
	json_t *outer = json_pack("{s:s, s:i}", "payload", text, "n", 1);
	char *d = json_dumps(outer, 0);
	EXPECT(r, d, "{\"payload\": \"***\", \"n\": 1}");
	free(d);
	json_decref(outer);
	/* parsed, and its fields printed one by one or as compact JSON */
	EXPECT(r, id, "***");
	char line[128];
	snprintf(line, sizeof(line), "private_key_id=%s", id);
	EXPECT(r, line, "private_key_id=***");
	d = json_dumps(doc, JSON_COMPACT);
	char *out = red(r, d);
	CHECK(!strstr(out, id) && !strstr(out, "MII") && !strstr(out, "gserviceaccount"),
	      "compact JSON of the secret: %s", out);
	free(out);
	free(d);
	char *body = strchr(pem, '\n') + 1;
	snprintf(line, sizeof(line), "%.*s", (int)(strchr(body, '\n') - body), body);
	EXPECT(r, line, "***");
	free(text);
	json_decref(doc);
	rb_redactor_free(r);
	free(pem);
}

static void t_env_file(void)
{
	struct rb_redactor *r = rb_redactor_new();
	const char env[] = "# database\nDB_USER=app\nDB_PASSWORD=hunter2hunter2\n"
			   "export API_KEY='sk_live_9f8e7d6c5b4a'\nredis_url: \"redis://:s3cr3tpw@cache:6379\"\n";
	rb_redactor_add_secret(r, env, sizeof(env) - 1);
	EXPECT(r, "password is hunter2hunter2.", "password is ***.");
	EXPECT(r, "using sk_live_9f8e7d6c5b4a", "using ***");
	EXPECT(r, "DB_PASSWORD=hunter2hunter2", "***");
	EXPECT(r, "connect redis://:s3cr3tpw@cache:6379 ok", "connect *** ok");
	EXPECT(r, "DB_USER=app", "***");                     /* a line of the secret */
	EXPECT(r, "user app", "user app");                   /* short values are not on their own */
	EXPECT(r, "# database", "# database");
	rb_redactor_free(r);
}

/* --- patterns --------------------------------------------------------------------- */

static const char *const email_pos[][2] = {
	{"alice@example.com", "<email>"},
	{"mail sent to alice.smith+ops@mail.example.co.uk.", "mail sent to <email>."},
	{"Author: Alice Doe <alice@example.com>", "Author: Alice Doe <<email>>"},
	{"to=bob_1@example.org, cc=carol@example.net", "to=<email>, cc=<email>"},
	{"mailto:dave@example.io", "mailto:<email>"},
	{"notify alice@example.com: reset sent", "notify <email>: reset sent"},
	{"GET /unsubscribe?e=erin%40example.com&t=1", "GET /unsubscribe?e=<email>&t=1"},
	{"{\"email\":\"frank@example.de\"}", "{\"email\":\"<email>\"}"},
};

static const char *const email_neg[] = {
	"git clone git@github.com:acme/ops.git",
	"systemctl restart getty@tty1.service postgresql@16-main.service",
	"Started openvpn@server.service.",
	"cp icon@2x.png logo@3x.webp dist/",
	"npm pack left-pad@1.3.0.tgz",
	"ssh deploy@web-01 uptime",
	"psql postgres://app@localhost:5432/app",
	"npm i @types/node@20.1.0",
	"image nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
	"@channel deploy done",
	"a@b.c",
};

static const char *const phone_pos[][2] = {
	{"+49 30 1234567", "<phone>"},
	{"call +1 (555) 123-4567 now", "call <phone> now"},
	{"oncall: +1-555-123-4567", "oncall: <phone>"},
	{"sms to +14155552671 sent", "sms to <phone> sent"},
	{"+44 20 7946 0958", "<phone>"},
	{"+44 (0)20 7946 0958", "<phone>"},
	{"+33 1 23 45 67 89", "<phone>"},
	{"+81-3-1234-5678", "<phone>"},
	{"+1.555.123.4567", "<phone>"},
	{"tel:+4930123456", "tel:<phone>"},
	{"+61 7 3802 0800", "<phone>"},
	{"Phone:  +972-4-8307322", "Phone:  <phone>"},
	{"(555) 123-4567", "<phone>"},
	{"(555)123-4567", "<phone>"},
	{"555-123-4567", "<phone>"},
	{"Call 555.123.4567.", "Call <phone>."},
	{"1-800-555-0199", "<phone>"},
	{"1 (555) 123-4567", "<phone>"},
	{"Tel. 030 1234567", "Tel. <phone>"},
	{"030-1234567", "<phone>"},
	{"030/1234567", "<phone>"},
	{"(030) 1234567", "<phone>"},
	{"mobile 0151 23456789,", "mobile <phone>,"},
	{"01 23 45 67 89", "<phone>"},
	{"{\"phone\":\"+49 89 123456\"}", "{\"phone\":\"<phone>\"}"},
	{"phone=%2B49%2030%201234567&x=1", "phone=<phone>&x=1"},
	{"+49 30 1234567 and +49 30 7654321", "<phone> and <phone>"},
};

/* Realistic runbook output that must come out as it went in. */
static const char *const phone_neg[] = {
	"2026-11-23T17:05:05Z step backup started",
	"17:05:05 backup: ok",
	"[2026-11-23 17:05:05.123 +0100] LOG: checkpoint complete",
	"2026-11-23T17:05:05+01:00 web-01 nginx[4242]: reload",
	"2026-11-23T17:05:05.123456789Z",
	"Nov 23 17:05:05 web-01 sshd[12345]: Accepted publickey",
	"run 20261123-170505-7f3a resumed",
	"runbook: run 20261123-170505-0042 finished in 1m23s",
	"took 1.234s", "took 12m34s (timeout 30m)", "elapsed 01:02:03", "PT1H30M",
	"runbook 0.1.0", "PostgreSQL 16.2 on x86_64-pc-linux-gnu", "nginx:1.25.3-alpine",
	"jansson 2.14.0+build.5", "v1.2.3+20261123170505", "kernel 6.1.0-28-amd64",
	"connected to 192.168.100.200", "10.0.0.1:5432", "listening on 0.0.0.0:8080",
	"[2001:db8::1]:443", "allow 10.0.0.0/8 and 192.168.0.0/16",
	"port 5432", "8080/tcp open", "ports 30000-32767",
	"wrote 1048576 bytes", "1,048,576 rows", "size 1.5 GiB (1610612736 bytes)",
	"memory 123456789 KiB", "load average: 0.52, 0.58, 0.59",
	"pid 12345", "ppid=1 pid=4242424", "exit status 0", "killed process 1234567",
	"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	"commit 3f9a2b1c4d5e6f708192a3b4c5d6e7f8091a2b3c",
	"request 550e8400-e29b-41d4-a716-446655440000 done",
	"epoch 1732381505", "ts=1732381505123",
	"lsn 0/16B3748", "wal 000000010000000A000000FF archived",
	"HTTP/1.1 503 Service Unavailable", "@@ -12,7 +12,8 @@",
	"+1234 -567 lines", "+2026-11-23: release notes", "+20261123",
	"TZ UTC+05:30", "GMT+1", "+05:30", "up +12.5% since yesterday", "+5 more",
	"23.11.2026", "11/23/2026", "2026/11/23", "2026-11-23",
	"CVE-2024-12345", "ticket INC-123-4567", "order #1234567890",
	"card 4111 1111 1111 1111", "chmod 0644 /etc/app.conf", "0644 1000 1000 /etc/app.conf",
	"umask 0022", "offset 12345678901", "mac 00:1a:2b:3c:4d:5e",
	"pod web-7f3a9b6c5d-x2z4q Running", "ISBN 978-3-16-148410-0",
	"1 2 3 4 5 6 7 8 9 10", "counts: 12  345  6789", "p95 123.456 ms, p99 1234.567 ms",
	"1+1=2", "2.5.4.3 = CN", "1.3.6.1.4.1.311.21.7",
	/* found in /usr/share/doc and node's docs by an earlier version */
	"IGNORED: failed tests: 571 612 1056", "sizes 500 600 700 800 900 1000 1095 1200",
	"555 123 4567", "[500 500 1000 1000 734 734 1006 734]",
	"// Prints: <Buffer 01 02 03 04 05 06 07 08>", "Partially addressable: 01 02 03 04 05 06 07",
	"00010  ff ff ff ff 20 00 00 00  10 00 05 00 00 00 00 00  .... ...........",
	"sg_raw -s 512 -r 1024 $bsg 53 00 00 00 00 01 00 00 01 00",
	"<Buffer a0 8b 28 3f 01 00 00 00 50 32>", "+1767225600", "+1767225600123", "+123456789",
};

static void t_patterns(void)
{
	struct rb_redactor *r = rb_redactor_new();
	CHECK(rb_redactor_add_default_patterns(r) == 0, "default patterns");
	for (size_t i = 0; i < sizeof(email_pos) / sizeof(*email_pos); i++)
		EXPECT(r, email_pos[i][0], email_pos[i][1]);
	for (size_t i = 0; i < sizeof(email_neg) / sizeof(*email_neg); i++)
		EXPECT(r, email_neg[i], email_neg[i]);
	for (size_t i = 0; i < sizeof(phone_pos) / sizeof(*phone_pos); i++)
		EXPECT(r, phone_pos[i][0], phone_pos[i][1]);
	for (size_t i = 0; i < sizeof(phone_neg) / sizeof(*phone_neg); i++)
		EXPECT(r, phone_neg[i], phone_neg[i]);
	/* Each line on its own; redacting twice changes nothing more. */
	const char *text = "a 2026-11-23T17:05:05Z alice@example.com\n"
			   "+49 30 1234567\n\nb 555-123-4567\n";
	char *once = red(r, text), *twice = red(r, once);
	CHECK(!strcmp(once, "a 2026-11-23T17:05:05Z <email>\n<phone>\n\nb <phone>\n"), "lines: %s", once);
	CHECK(!strcmp(once, twice), "not idempotent: %s", twice);
	free(once);
	free(twice);
	/* A secret and an address that overlap: the secret's mask wins. */
	rb_redactor_add_secret(r, "alice@exa", 9);
	EXPECT(r, "to alice@example.com", "to ***");
	rb_redactor_free(r);
}

static void t_custom_patterns(void)
{
	struct rb_redactor *r = rb_redactor_new();
	char *err = NULL;
	CHECK(rb_redactor_add_pattern(r, "ticket", "INC-[0-9]+", &err) == 0, "ticket: %s", err);
	CHECK(rb_redactor_add_pattern(r, "iban", "DE[0-9]{20}", &err) == 0, "iban: %s", err);
	CHECK(rb_redactor_add_pattern(r, "err", "^ERROR.*", &err) == 0, "err: %s", err);
	CHECK(rb_redactor_add_pattern(r, "empty", "x*", &err) == 0, "empty: %s", err);
	EXPECT(r, "see INC-4711 and INC-42.", "see <ticket> and <ticket>.");
	EXPECT(r, "pay DE89370400440532013000 now", "pay <iban> now");
	EXPECT(r, "ERROR: disk full\nok ERROR\nERROR 2", "<err>\nok ERROR\n<err>");
	EXPECT(r, "yyy", "yyy");
	EXPECT(r, "axxb", "a<empty>b");
	static const char nul[] = "INC-1\0INC-2";
	size_t n;
	char *out = rb_redact(r, nul, sizeof(nul) - 1, &n);
	CHECK(n == 17 && !memcmp(out, "<ticket>\0<ticket>", 17), "pattern across a NUL byte");
	free(out);
	err = NULL;
	CHECK(rb_redactor_add_pattern(r, "Bad Name", "x", &err) == -1 && err && strstr(err, "Bad Name"),
	      "bad name: %s", err ? err : "(none)");
	free(err);
	err = NULL;
	CHECK(rb_redactor_add_pattern(r, "broken", "a(b", &err) == -1 && err && strstr(err, "broken"),
	      "bad expression: %s", err ? err : "(none)");
	free(err);
	rb_redactor_free(r);
}

/* --- JSON, HMAC, threads ------------------------------------------------------------- */

static void t_json(void)
{
	struct rb_redactor *r = rb_redactor_new();
	rb_redactor_add_secret(r, "hunter2hunter2", 14);
	rb_redactor_add_secret(r, "12345678", 8);
	rb_redactor_add_default_patterns(r);
	json_t *v = json_loads("{\"user\": \"alice@example.com\", \"alice@example.com\": 1, "
			       "\"bob@example.com\": 2, \"hunter2hunter2\": \"key\", "
			       "\"nested\": [{\"pw\": \"x hunter2hunter2 y\"}, 12345678, 12345678.5, 1234, "
			       "true, null, \"ok\", []], \"n\": 2.5}", 0, NULL);
	json_t *want = json_loads("{\"user\": \"<email>\", \"<email>\": 1, \"<email> (2)\": 2, "
				  "\"***\": \"key\", \"nested\": [{\"pw\": \"x *** y\"}, \"***\", \"***.5\", "
				  "1234, true, null, \"ok\", []], \"n\": 2.5}", 0, NULL);
	json_t *got = rb_redact_json(r, v);
	char *g = json_dumps(got, JSON_SORT_KEYS);
	CHECK(v && want && json_equal(got, want), "rb_redact_json: %s", g);
	free(g);
	json_decref(got);
	/* The shared form gives the same value, sharing only what did not change. */
	got = rb_redact_json_shared(r, v);
	g = json_dumps(got, JSON_SORT_KEYS);
	CHECK(json_equal(got, want) && got != v, "rb_redact_json_shared: %s", g);
	free(g);
	json_t *nested = json_object_get(got, "nested");
	CHECK(nested != json_object_get(v, "nested") &&
	      json_array_get(nested, 7) == json_array_get(json_object_get(v, "nested"), 7),
	      "a changed array is new, its unchanged [] shared");
	json_decref(got);
	json_t *clean = json_loads("{\"a\": [1, {\"b\": \"ok\"}], \"c\": 2.5, \"d\": null}", 0, NULL);
	got = rb_redact_json_shared(r, clean);
	CHECK(got == clean && clean->refcount == 2, "nothing to redact: the value itself");
	json_decref(got);
	got = rb_redact_json(r, clean);
	CHECK(got != clean && json_equal(got, clean) &&
	      json_object_get(got, "a") != json_object_get(clean, "a"), "rb_redact_json copies");
	json_decref(got);
	json_object_set_new(json_array_get(json_object_get(clean, "a"), 1), "z", json_string("hunter2hunter2"));
	got = rb_redact_json_shared(r, clean);
	CHECK(got != clean && json_array_get(json_object_get(got, "a"), 0) ==
	      json_array_get(json_object_get(clean, "a"), 0) &&
	      !strcmp(json_string_value(json_object_get(json_array_get(json_object_get(got, "a"), 1),
							 "z")), "***") &&
	      json_object_get(got, "c") == json_object_get(clean, "c"),
	      "a secret deep down: its path is new, the rest shared");
	CHECK(!strcmp(json_string_value(json_object_get(json_array_get(json_object_get(clean, "a"), 1),
							 "z")), "hunter2hunter2"), "the original is unchanged");
	json_decref(got);
	json_decref(clean);
	json_decref(want);
	json_decref(v);
	got = rb_redact_json(r, NULL);
	CHECK(json_is_null(got), "NULL is not null");
	json_decref(got);
	/* A string jansson did not check comes out valid. */
	v = json_stringn_nocheck("\xff hunter2hunter2", 16);
	got = rb_redact_json(r, v);
	CHECK(got && !strcmp(json_string_value(got), "\xEF\xBF\xBD ***"), "invalid UTF-8 string");
	json_decref(got);
	json_decref(v);
	rb_redactor_free(r);
}

static void t_hmac(void)
{
	char out[65];
	unsigned char key[20];
	memset(key, 0x0b, sizeof(key));
	CHECK(rb_hmac_hex(key, sizeof(key), "Hi There", 8, out) == 0 &&
	      !strcmp(out, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
	      "RFC 4231 case 1: %s", out);
	CHECK(rb_hmac_hex("Jefe", 4, "what do ya want for nothing?", 28, out) == 0 &&
	      !strcmp(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
	      "RFC 4231 case 2: %s", out);
	CHECK(rb_hmac_hex("", 0, "", 0, out) == 0 &&
	      !strcmp(out, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"),
	      "empty key and message: %s", out);
}

struct worker {
	struct rb_redactor *r;
	char (*secrets)[33];
	size_t n;
	int bad;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 3000; i++) {
		char line[128];
		const char *s = w->secrets[(size_t)i % w->n];
		snprintf(line, sizeof(line), "[step_%d] token %s from alice@example.com", i, s);
		char *out = red(w->r, line);
		char want[128];
		snprintf(want, sizeof(want), "[step_%d] token *** from <email>", i);
		w->bad += strcmp(out, want) != 0;
		free(out);
	}
	return NULL;
}

/* Workers redact while secrets are added (sensitive outputs known late). */
static void t_threads(void)
{
	struct rb_redactor *r = rb_redactor_new();
	static char secrets[50][33], late[40][33];
	for (size_t i = 0; i < 50; i++) {
		rnd_text(secrets[i], 32, ALNUM);
		rb_redactor_add_secret(r, secrets[i], 32);
	}
	rb_redactor_add_default_patterns(r);
	rb_redactor_seal(r);
	struct worker w[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){r, secrets, 50, 0};
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	for (size_t i = 0; i < 40; i++) {
		rnd_text(late[i], 32, ALNUM);
		rb_redactor_add_secret(r, late[i], 32);
	}
	int bad = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		bad += w[i].bad;
	}
	CHECK(bad == 0, "%d lines redacted wrong by the workers", bad);
	char *out = red(r, late[39]);
	CHECK(!strcmp(out, "***"), "a late secret: %s", out);
	free(out);
	rb_redactor_free(r);
}

/* A text that would make a naive longest-match scan quadratic. */
static void t_adversarial(void)
{
	struct rb_redactor *r = rb_redactor_new();
	char *sec = malloc(1002);
	memset(sec, 'a', 1000);
	memcpy(sec + 1000, "b", 2);
	rb_redactor_add_secret(r, sec, 1001);
	size_t n = 1 << 21;
	char *text = malloc(n + 1);
	memset(text, 'a', n);
	memcpy(text + n - 1001, sec, 1001);
	text[n] = 0;
	size_t outlen;
	char *out = rb_redact(r, text, n, &outlen);
	CHECK(outlen == n - 1001 + 3 && !strcmp(out + n - 1001, "***"), "long run of a");
	free(out);
	free(text);
	free(sec);
	rb_redactor_free(r);
}

/* Whether any 6 bytes of the secret sec stand in s[0, n). */
static int has_part(const char *s, size_t n, const char *sec)
{
	size_t k = strlen(sec);
	for (size_t i = 0; i + 6 <= k; i++)
		if (memmem(s, n, sec + i, 6))
			return 1;
	return 0;
}

/*
 * rb_redact_cut: a secret or an address laid across every place near the cut is never
 * split, each side redacted alone hides it whole, and the cut is on a character.
 */
static void t_cut(void)
{
	struct rb_redactor *r = rb_redactor_new();
	const char *sec = "Zq81xTokenPartVw3Lm9";
	rb_redactor_add_secret(r, sec, strlen(sec));
	rb_redactor_add_default_patterns(r);
	size_t n = 3 * RB_REDACT_PATTERN_REACH;
	char *s = rb_xcalloc(1, n + 1);
	CHECK(rb_redact_cut(r, "short", 5) == 0, "a text within the reach has no cut yet");
	int split = 0, uncut = 0;
	for (size_t at = n - RB_REDACT_PATTERN_REACH - 40; at < n - RB_REDACT_PATTERN_REACH + 8; at++) {
		memset(s, 'x', n);
		memset(s, ' ', 64);
		memcpy(s + at, sec, strlen(sec));
		size_t c = rb_redact_cut(r, s, n);
		uncut += c == 0;
		if (c > at && c < at + strlen(sec))
			split++;
		size_t la, lb;
		char *a = rb_redact(r, s, c, &la), *b = rb_redact(r, s + c, n - c, &lb);
		if (has_part(a, la, sec) || has_part(b, lb, sec))
			split++;
		free(a);
		free(b);
	}
	CHECK(!split && !uncut, "a secret was split by a cut (%d), or no cut was found (%d)", split, uncut);
	/* An e-mail address: a pattern's match is not cut either. */
	const char *mail = "someone.on.call@example.com";
	split = 0;
	for (size_t at = n - RB_REDACT_PATTERN_REACH - 40; at < n - RB_REDACT_PATTERN_REACH + 8; at++) {
		memset(s, ' ', n);
		memcpy(s + at, mail, strlen(mail));
		size_t c = rb_redact_cut(r, s, n);
		split += c > at && c < at + strlen(mail);
	}
	CHECK(!split, "an address was split by a cut (%d)", split);
	/* Two-byte characters: never cut inside one. */
	for (size_t i = 0; i + 1 < n; i += 2)
		memcpy(s + i, "\xc3\xa9", 2);
	size_t c = rb_redact_cut(r, s, n);
	CHECK(c > 0 && c % 2 == 0, "a cut inside a character (%zu)", c);
	/* Stray continuation bytes after a secret (not UTF-8): the cut stays out of it. */
	memset(s, 0x91, n);
	memcpy(s + n - RB_REDACT_PATTERN_REACH - 10, sec, strlen(sec));
	c = rb_redact_cut(r, s, n);
	CHECK(c <= n - RB_REDACT_PATTERN_REACH - 10 || c >= n - RB_REDACT_PATTERN_REACH - 10 + strlen(sec),
	      "a cut inside a secret followed by bytes that are not UTF-8 (%zu)", c);
	free(s);
	rb_redactor_free(r);
}

int main(void)
{
	t_refuse_short();
	t_raw();
	t_differential();
	t_differential_long();
	t_big_value();
	t_overlap();
	t_nul_utf8();
	t_json_escaped();
	t_url();
	t_hex();
	t_base64();
	t_base64_wrapped();
	t_pem();
	t_json_secret();
	t_env_file();
	t_patterns();
	t_custom_patterns();
	t_json();
	t_hmac();
	t_threads();
	t_adversarial();
	t_cut();
	printf("redact: %d passed, %d failed\n", npass, nfail);
	return nfail ? 1 : 0;
}
