/*
 * libFuzzer target: arbitrary bytes as an audit log, through everything that
 * reads one: the verifier (single-run and shared, with and without an
 * expected head), the timeline in its three formats, and the appender's
 * reading of a log's end (open, then append and sync after it), and the
 * bytes as the PATH.repair an open finds beside a torn log.  Whatever
 * the input, nothing may crash, leak, hang or read out of bounds.  The
 * keyring holds the unit test's two keys, so its logs in tests/fuzz/audit/
 * verify and the fuzzer starts from valid records.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct rb_audit_key *key_a, *key_b;
static struct rb_audit_keyring *ring;
static char dir[] = "/tmp/fuzz-audit-XXXXXX";
static char *base;                      /* a log of key_a's with a torn tail */
static size_t base_len;

static void remove_dir(void)
{
	rmdir(dir);
}

static void init(void)
{
	unsigned char seed[32];
	memset(seed, 0xa1, sizeof(seed));
	rb_audit_key_from_seed(seed, &key_a, NULL);
	memset(seed, 0xb2, sizeof(seed));
	rb_audit_key_from_seed(seed, &key_b, NULL);
	ring = rb_audit_keyring_new();
	rb_audit_keyring_add(ring, key_a, "a", NULL);
	rb_audit_keyring_add(ring, key_b, "b", NULL);
	if (!mkdtemp(dir))
		abort();
	atexit(remove_dir);
	char path[64];
	struct rb_audit_log *a;
	snprintf(path, sizeof(path), "%s/base", dir);
	if (rb_audit_open(path, key_a, "fuzz", 0, &a, NULL) < 0)
		abort();
	json_t *rec = json_pack("{s:s}", "type", "run_started");
	rb_audit_append(a, rec);
	rb_audit_sync(a);
	rb_audit_close(a);
	json_decref(rec);
	FILE *f = fopen(path, "a+");
	static const char torn[] = "{\"key_id\":\"ab";
	base = malloc(4096);
	if (!f || !base || fputs(torn, f) < 0 || fseek(f, 0, SEEK_SET) < 0)
		abort();
	base_len = fread(base, 1, 4096, f);
	fclose(f);
	unlink(path);
}

static void verify(const uint8_t *data, size_t size, const struct rb_audit_verify_opts *o)
{
	FILE *f = fmemopen((void *)data, size, "r");
	struct rb_audit_result r;
	if (!f)
		return;
	rb_audit_verify_stream(f, o, &r);
	fclose(f);
}

static void show(const uint8_t *data, size_t size, const char *format)
{
	FILE *in = fmemopen((void *)data, size, "r"), *out = fopen("/dev/null", "w");
	char *err = NULL;
	if (in && out)
		rb_audit_show(in, out, format, &err);
	free(err);
	if (in)
		fclose(in);
	if (out)
		fclose(out);
}

/* The appender on a memfd holding the bytes: the tail, the torn tail, a sync after. */
static void append(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-audit", 0);
	if (fd < 0)
		return;
	if (write(fd, data, size) == (ssize_t)size) {
		char path[64], *err = NULL;
		struct rb_audit_head h;
		struct rb_audit_torn torn;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		rb_audit_head(path, &h, &torn, &err);
		free(err);
		err = NULL;
		struct rb_audit_log *a;
		if (rb_audit_open(path, key_a, "fuzz", 0, &a, &err) == 0) {
			json_t *rec = json_pack("{s:s}", "type", "run_finished");
			if (!rb_audit_torn(a) && rb_audit_append(a, rec) == 0)
				rb_audit_sync(a);
			json_decref(rec);
			rb_audit_close(a);
		}
		free(err);
	}
	close(fd);
}

/* The bytes as PATH.repair beside a torn log: open completes the repair only if they verify. */
static void repair(const uint8_t *data, size_t size)
{
	char log[64], rep[80], *err = NULL;
	snprintf(log, sizeof(log), "%s/log", dir);
	snprintf(rep, sizeof(rep), "%s.repair", log);
	FILE *f = fopen(log, "w"), *g = fopen(rep, "w");
	int ok = f && g && fwrite(base, 1, base_len, f) == base_len &&
		 fwrite(data, 1, size, g) == size;
	if (f)
		fclose(f);
	if (g)
		fclose(g);
	struct rb_audit_log *a;
	if (ok && rb_audit_open(log, key_a, "fuzz", 0, &a, &err) == 0)
		rb_audit_close(a);
	free(err);
	unlink(rep);
	unlink(log);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ring)
		init();
	if (size == 0)
		return 0;
	struct rb_audit_head head = {.seq = 3};
	memset(head.sha256, '0', 64);
	struct rb_audit_verify_opts single = {.keyring = ring};
	struct rb_audit_verify_opts shared = {.keyring = ring, .shared = 1, .allow_open = 1,
					      .expected_head = &head};
	verify(data, size, &single);
	verify(data, size, &shared);
	show(data, size, "text");
	show(data, size, "markdown");
	show(data, size, "json");
	append(data, size);
	repair(data, size);
	return 0;
}
