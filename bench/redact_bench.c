/*
 * Throughput of redaction: 10 MiB of generated runbook output (timestamps,
 * run ids, SQL, JSON events, tracebacks, hashes; now and then a secret in
 * some encoding, an address or a phone number) with 50 secrets registered,
 * through interp/redact.c and through the naive scan that exec.c's
 * ex_redact did (copied below), whole and line by line as the engine does.
 *
 * Built and run by bench/run:
 *   cc -std=c11 -D_GNU_SOURCE -O2 -pthread -o /tmp/redact_bench bench/redact_bench.c \
 *     interp/redact.c interp/redact_forms.c interp/redact_pii.c interp/litmatch.c \
 *     interp/util.c $(pkg-config --cflags --libs jansson openssl) && /tmp/redact_bench [MiB]
 * "/tmp/redact_bench 10 --no-naive" leaves out the naive scan (for a profiler).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "redact.h"
#include "redact_int.h"
#include "util.h"

#define NSECRETS 50

static uint64_t rng = 42;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* --- the naive scan, as exec.c's ex_redact had it -------------------------------- */

static char *naive_redact(const struct rb_strv *secrets, const char *s, size_t len, size_t *outlen)
{
	struct rb_buf b;
	rb_buf_init(&b);
	size_t i = 0;
	while (i < len) {
		size_t best = 0;
		for (size_t k = 0; k < secrets->n; k++) {
			size_t sl = strlen(secrets->v[k]);
			if (sl && sl <= len - i && sl > best && !memcmp(s + i, secrets->v[k], sl))
				best = sl;
		}
		if (best) {
			rb_buf_puts(&b, RB_REDACT_MASK);
			i += best;
		} else {
			rb_buf_add(&b, s + i, 1);
			i++;
		}
	}
	if (outlen)
		*outlen = b.len;
	return rb_buf_detach(&b);
}

/* --- the text ------------------------------------------------------------------- */

static void token(char *out, size_t n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
	for (size_t i = 0; i < n; i++)
		out[i] = a[rnd() % 64];
	out[n] = 0;
}

static void secret_line(struct rb_buf *b, const char *sec, int i)
{
	size_t n = strlen(sec);
	char enc[256];
	switch (i % 4) {
	case 0:
		rb_buf_printf(b, "> Authorization: Bearer %s\n", sec);
		break;
	case 1:
		rb_base64((const unsigned char *)sec, n, 0, enc);
		rb_buf_printf(b, "  data: {password: %s}\n", enc);
		break;
	case 2:
		for (size_t k = 0; k < n; k++)
			sprintf(enc + 2 * k, "%02x", (unsigned char)sec[k]);
		rb_buf_printf(b, "key id %s loaded\n", enc);
		break;
	default:
		rb_buf_printf(b, "GET /api/v1/export?token=%s&format=csv HTTP/1.1\n", sec);
	}
}

static char *make_text(size_t size, char secrets[][49], size_t *len)
{
	struct rb_buf b;
	rb_buf_init(&b);
	for (int i = 0; b.len < size; i++) {
		int s = i % 60, ms = (int)(rnd() % 1000);
		switch (rnd() % 10) {
		case 0:
			rb_buf_printf(&b, "{\"ts\":\"2026-11-23T17:05:%02d.%03dZ\",\"run\":\"20261123-170505-7f3a\","
				      "\"step\":\"backup_%d\",\"event\":\"output\",\"line\":\"wrote %u bytes to "
				      "s3://acme-backups/db/2026-11-23/part-%05d.sql.gz\"}\n", s, ms, i % 97,
				      rnd(), i);
			break;
		case 1:
			rb_buf_printf(&b, "[string \"evening-maintenance.yaml:%d:7\"]:3: attempt to index a nil "
				      "value (field 'rows')\nstack traceback:\n\t[C]: in ?\n", 40 + i % 200);
			break;
		case 2:
			rb_buf_printf(&b, "%08x%08x%08x%08x%08x  /var/backups/db-%d.sql.gz\n", rnd(), rnd(),
				      rnd(), rnd(), rnd(), i);
			break;
		case 3:
			rb_buf_printf(&b, "Nov 23 17:05:%02d web-%02d postgres[%u]: LOG:  duration: %d.%03d ms  "
				      "statement: VACUUM (ANALYZE) public.sessions\n", s, i % 12,
				      1000 + rnd() % 60000, ms, (int)(rnd() % 1000));
			break;
		case 4:
			rb_buf_printf(&b, "  pg_dump: dumping contents of table \"public.audit_log_%d\" (%u rows)\n",
				      i % 50, rnd() % 10000000);
			break;
		case 5:
			rb_buf_printf(&b, "10.0.%d.%d - - [23/Nov/2026:17:05:%02d +0000] \"GET /status HTTP/1.1\" "
				      "200 %u \"-\" \"kube-probe/1.29\"\n", i % 256, (i / 7) % 256, s,
				      rnd() % 5000);
			break;
		case 6:
			rb_buf_printf(&b, "runbook: step rotate_jwt (%d/%d) succeeded in %d.%03ds, exit status 0, "
				      "pid %u\n", i % 40, 40, i % 9, ms, rnd() % 4000000);
			break;
		case 7:
			if (rnd() % 20 == 0)
				rb_buf_printf(&b, "notify oncall alice.doe%d@example.com, +49 30 %07u\n", i,
					      rnd() % 10000000);
			else
				rb_buf_printf(&b, "image registry.example.com/ops/worker:1.25.%d@sha256:%08x%08x "
					      "pulled on node-%d\n", i % 30, rnd(), rnd(), i % 17);
			break;
		case 8:
			if (rnd() % 25 == 0)
				secret_line(&b, secrets[rnd() % NSECRETS], i);
			else
				rb_buf_printf(&b, "2026-11-23 17:05:%02d.%03d UTC [%u] LOG:  checkpoint complete: "
					      "wrote %u buffers (%d.%d%%)\n", s, ms, rnd() % 90000, rnd() % 5000,
					      i % 100, i % 10);
			break;
		default:
			rb_buf_printf(&b, "    at Object.<anonymous> (/srv/app/node_modules/pg/lib/client.js:%d:%d)\n",
				      i % 600, i % 80);
		}
	}
	*len = b.len;
	return rb_buf_detach(&b);
}

/* --- measuring ------------------------------------------------------------------- */

struct run {
	const struct rb_redactor *r;
	const struct rb_strv *naive;
	int by_line;
	size_t masks;
};

static size_t count_masks(const char *s, size_t n)
{
	size_t c = 0;
	for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), "***", 3)); p += 3)
		c++;
	for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), "<email>", 7)); p += 7)
		c++;
	for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), "<phone>", 7)); p += 7)
		c++;
	return c;
}

/* Seconds to redact the text; the masks in the result are counted when count is set. */
static double once(struct run *ru, const char *text, size_t len, int count)
{
	double t0 = now_s();
	size_t masks = 0;
	for (size_t a = 0; a < len;) {
		size_t b = len;
		if (ru->by_line) {
			const char *nl = memchr(text + a, '\n', len - a);
			b = nl ? (size_t)(nl - text) + 1 : len;
		}
		size_t n;
		char *out = ru->naive ? naive_redact(ru->naive, text + a, b - a, &n)
				      : rb_redact(ru->r, text + a, b - a, &n);
		if (count)
			masks += count_masks(out, n);
		free(out);
		a = b;
	}
	double t = now_s() - t0;
	if (count)
		ru->masks = masks;
	return t;
}

static double measure(const char *name, struct run *ru, const char *text, size_t len, int rounds)
{
	/* The naive scan is slow enough for counting to cost nothing beside it. */
	double best = ru->naive ? once(ru, text, len, 1) : (once(ru, text, len, 1), 1e9);
	for (int i = 0; i < rounds; i++) {
		double t = once(ru, text, len, 0);
		if (t < best)
			best = t;
	}
	double mbs = (double)len / (1 << 20) / best;
	printf("%-46s %8.1f MB/s %8.0f ms  %6zu masks\n", name, mbs, best * 1000, ru->masks);
	return mbs;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 10;
	int quick = argc > 2 && !strcmp(argv[2], "--no-naive");     /* for profiling */
	char secrets[NSECRETS][49];
	struct rb_strv naive = {0};
	for (int i = 0; i < NSECRETS; i++) {
		token(secrets[i], 16 + rnd() % 33);
		rb_strv_push(&naive, rb_xstrdup(secrets[i]));
	}
	size_t len;
	char *text = make_text(mib << 20, secrets, &len);

	double t0 = now_s();
	struct rb_redactor *sec = rb_redactor_new();
	for (int i = 0; i < NSECRETS; i++)
		rb_redactor_add_secret(sec, secrets[i], strlen(secrets[i]));
	rb_redactor_seal(sec);
	double build = now_s() - t0;
	struct rb_redactor *all = rb_redactor_new();
	for (int i = 0; i < NSECRETS; i++)
		rb_redactor_add_secret(all, secrets[i], strlen(secrets[i]));
	rb_redactor_add_default_patterns(all);
	rb_redactor_seal(all);

	printf("%.1f MiB of runbook output, %d secrets (16-48 characters); matchers built in %.1f ms\n",
	       (double)len / (1 << 20), NSECRETS, build * 1000);
	struct run naive_whole = {.naive = &naive}, naive_lines = {.naive = &naive, .by_line = 1};
	struct run new_whole = {.r = sec}, new_lines = {.r = sec, .by_line = 1};
	struct run pii_lines = {.r = all, .by_line = 1};
	double n1 = 1, n2 = 1;
	if (!quick) {
		n1 = measure("naive scan (ex_redact), whole text", &naive_whole, text, len, 0);
		n2 = measure("naive scan (ex_redact), line by line", &naive_lines, text, len, 0);
	}
	double r1 = measure("rb_redact, all forms, whole text", &new_whole, text, len, 3);
	double r2 = measure("rb_redact, all forms, line by line", &new_lines, text, len, 3);
	double r3 = measure("rb_redact, all forms + email/phone, by line", &pii_lines, text, len, 3);
	if (!quick)
		printf("speed-up over the naive scan: %.1fx whole, %.1fx line by line (%.1fx with patterns)\n",
	       r1 / n1, r2 / n2, r3 / n2);
	rb_redactor_free(sec);
	rb_redactor_free(all);
	rb_strv_release(&naive);
	free(text);
	return 0;
}
