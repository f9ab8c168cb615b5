/*
 * libFuzzer target: redaction of arbitrary text with a secret taken from
 * the input, put back into the text in one of its encodings.  Whatever the
 * bytes, no form of the secret may survive, the output must stay valid
 * UTF-8 when the input was, be no longer than the input when only secrets
 * are replaced, and redacting it again must change nothing; cut where
 * rb_redact_cut says, the two pieces redacted alone must hide it too.
 *
 * Input: byte 0 chooses (bit 0: default patterns; bits 1-3: the encoding;
 * bits 4-7 and byte 1: where it goes), byte 2 the secret's length (4 to 67),
 * then the secret, then the text.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "redact.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const labels[] = {RB_REDACT_MASK, "<email>", "<phone>"};

/* Whether a form could be rebuilt from a mask and the text beside it: then its
 * absence proves nothing. */
static int checkable(const char *f, size_t n)
{
	if (n < RB_REDACT_MIN_LEN || memchr(f, '*', n) || memchr(f, '<', n) || memchr(f, '>', n))
		return 0;
	for (size_t i = 0; i < sizeof(labels) / sizeof(*labels); i++)
		if (memmem(labels[i], strlen(labels[i]), f, n))
			return 0;
	return 1;
}

static void must_not_hold(const char *out, size_t outlen, const char *f, size_t n)
{
	if (checkable(f, n) && memmem(out, outlen, f, n))
		abort();
}

/* The encoded secret in enc, and the part of it that must go in form. */
static void encode(int how, const uint8_t *sec, size_t n, const uint8_t *text, size_t tlen,
		   struct rb_buf *enc, struct rb_buf *form)
{
	static const char hex[] = "0123456789abcdef", HEX[] = "0123456789ABCDEF";
	switch (how) {
	case 0:         /* as is */
		rb_buf_add(enc, (const char *)sec, n);
		rb_buf_add(form, (const char *)sec, n);
		break;
	case 1: {       /* JSON, as jansson writes it */
		json_t *j = json_stringn((const char *)sec, n);
		char *d = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
		if (d) {
			rb_buf_puts(enc, d);
			rb_buf_add(form, d + 1, strlen(d) - 2);
		}
		free(d);
		json_decref(j);
		break;
	}
	case 2:
	case 3:         /* hex */
		for (size_t i = 0; i < n; i++) {
			rb_buf_putc(enc, (how == 2 ? hex : HEX)[sec[i] >> 4]);
			rb_buf_putc(enc, (how == 2 ? hex : HEX)[sec[i] & 15]);
		}
		rb_buf_add(form, enc->s, enc->len);
		break;
	case 4:
	case 5: {       /* base64 of a blob of text bytes around the secret */
		size_t k = tlen % 3 + (tlen > 2 ? text[0] % 4 : 0), m = k + n + 5;
		uint8_t *blob = calloc(m, 1);
		memcpy(blob, text, k < tlen ? k : tlen);
		memcpy(blob + k, sec, n);
		unsigned char *e = malloc(4 * ((m + 2) / 3) + 1);
		EVP_EncodeBlock(e, blob, (int)m);
		for (unsigned char *c = e; how == 5 && *c; c++)
			*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
		size_t lo = (8 * k + 5) / 6, hi = 8 * (k + n) / 6;
		rb_buf_puts(enc, (const char *)e);
		rb_buf_add(form, (const char *)e + lo, hi - lo);
		free(e);
		free(blob);
		break;
	}
	case 6:         /* every byte percent-encoded */
		for (size_t i = 0; i < n; i++)
			rb_buf_printf(enc, "%%%02X", sec[i]);
		rb_buf_add(form, enc->s, enc->len);
		break;
	default:        /* a line of it, when it has several */
		for (size_t i = 0; i < n; i++)
			if (sec[i] == '\n') {
				rb_buf_add(enc, (const char *)sec, i);
				break;
			}
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	int patterns = data[0] & 1, how = (data[0] >> 1) & 7;
	size_t n = 4 + data[2] % 64;
	if (size < 3 + n)
		return 0;
	const uint8_t *sec = data + 3, *text = data + 3 + n;
	size_t tlen = size - 3 - n, at = ((size_t)(data[0] >> 4) << 8 | data[1]) % (tlen + 1);

	struct rb_redactor *r = rb_redactor_new();
	if (rb_redactor_add_secret(r, (const char *)sec, n) != 0)
		abort();
	if (patterns)
		rb_redactor_add_default_patterns(r);

	/* The text as it is. */
	size_t outlen;
	char *out = rb_redact(r, (const char *)text, tlen, &outlen);
	if (out[outlen] || (!patterns && outlen > tlen) || outlen > tlen + tlen / 5 + 1)
		abort();
	must_not_hold(out, outlen, (const char *)sec, n);
	if (rb_utf8_check((const char *)text, tlen) == tlen && rb_utf8_check(out, outlen) != outlen)
		abort();
	/* Masks cannot make a new secret unless it has '*' or JSON's \u002a in it. */
	if (!patterns && !memchr(sec, '*', n) && !memchr(sec, '\\', n)) {
		size_t again;
		char *out2 = rb_redact(r, out, outlen, &again);
		if (again != outlen || memcmp(out, out2, outlen))
			abort();
		free(out2);
	}
	free(out);

	/* The secret put in, encoded. */
	struct rb_buf enc, form, in;
	rb_buf_init(&enc);
	rb_buf_init(&form);
	rb_buf_init(&in);
	encode(how, sec, n, text, tlen, &enc, &form);
	rb_buf_add(&in, (const char *)text, at);
	rb_buf_add(&in, enc.s ? enc.s : "", enc.len);
	rb_buf_add(&in, (const char *)text + at, tlen - at);
	out = rb_redact(r, in.s, in.len, &outlen);
	must_not_hold(out, outlen, form.s ? form.s : "", form.len);
	/* Cut where rb_redact_cut says, each piece redacted alone: the form is not split. */
	size_t c = rb_redact_cut(r, in.s ? in.s : "", in.len);
	if (c > in.len)
		abort();
	if (c) {
		size_t la, lb;
		char *a = rb_redact(r, in.s, c, &la), *b = rb_redact(r, in.s + c, in.len - c, &lb);
		struct rb_buf both;
		rb_buf_init(&both);
		rb_buf_add(&both, a, la);
		rb_buf_add(&both, b, lb);
		must_not_hold(both.s, both.len, form.s ? form.s : "", form.len);
		rb_buf_release(&both);
		free(a);
		free(b);
	}
	if (how == 7 && enc.len) {
		/* a line on its own, as the engine redacts output */
		char *line = rb_redact(r, enc.s, enc.len, &outlen);
		size_t t = 0;
		while (t < enc.len && (enc.s[t] == ' ' || enc.s[t] == '\t' || enc.s[t] == '\r'))
			t++;
		size_t z = enc.len;
		while (z > t && (enc.s[z - 1] == ' ' || enc.s[z - 1] == '\t' || enc.s[z - 1] == '\r'))
			z--;
		int comment = z > t && enc.s[t] == '#' && (z - t == 1 || enc.s[t + 1] == ' ' ||
							   enc.s[t + 1] == '\t' || enc.s[t + 1] == '\r');
		int armour = z - t > 10 && (!memcmp(enc.s + t, "-----BEGIN ", 11) ||
					    !memcmp(enc.s + t, "-----END ", 9)) &&
			     !memcmp(enc.s + z - 5, "-----", 5);
		if (!comment && !armour && z - t >= RB_REDACT_PART_LEN)
			must_not_hold(line, outlen, enc.s + t, z - t);
		free(line);
	}
	free(out);

	/* JSON: whatever parses is copied and redacted without a crash. */
	json_t *j = json_loadb((const char *)text, tlen, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (j) {
		json_t *c = rb_redact_json(r, j);
		char *d = json_dumps(c, JSON_ENCODE_ANY);
		if (!d)
			abort();
		free(d);
		json_decref(c);
		json_decref(j);
	}
	rb_buf_release(&enc);
	rb_buf_release(&form);
	rb_buf_release(&in);
	rb_redactor_free(r);
	return 0;
}
