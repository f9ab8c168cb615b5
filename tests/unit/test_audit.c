/*
 * Tests the signed audit log (interp/audit*.c, auditkey.c): the canonical
 * encoding, keys and keyrings, the appender (groups, torn tails, repairs, the
 * shared log), and the verifier against every single-byte change and byte
 * deletion of a small log, every line deleted, repeated or swapped, lines
 * spliced from another run, a cut tail, unknown and rotated keys.
 *
 * Usage: test_audit                         the tests
 *        test_audit --write-log LOG KEY     write tests/audit.sh's log: one run of
 *                                           six records signed with the private KEY
 *        test_audit --write-corpus DIR      write the fuzzer's seed logs
 *                                           (tests/fuzz/audit/)
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "audit_int.h"
#include "check.h"
#include "util.h"

#define RUN_A   "20261123-170505-00aa"
#define RUN_B   "20261123-170505-00bb"

/* --- helpers ------------------------------------------------------------------- */

static char *join(const char *a, const char *b)
{
	return rb_xasprintf("%s/%s", a, b);
}

static char *slurp(const char *path, size_t *len)
{
	char *buf = NULL, *err = NULL;
	size_t n = 0;
	if (rb_read_file(path, 1 << 26, &buf, &n, &err) < 0) {
		free(err);
		*len = 0;
		return NULL;
	}
	*len = n;
	return buf;
}

static void spit(const char *path, const char *buf, size_t len)
{
	FILE *f = fopen(path, "we");
	if (!f || fwrite(buf, 1, len, f) != len)
		abort();
	fclose(f);
}

static int file_mode(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static struct rb_audit_key *seed_key(unsigned char b)
{
	unsigned char seed[32];
	struct rb_audit_key *k;
	memset(seed, b, sizeof(seed));
	if (rb_audit_key_from_seed(seed, &k, NULL) < 0)
		abort();
	return k;
}

static struct rb_audit_keyring *ring(const struct rb_audit_key *a, const struct rb_audit_key *b)
{
	struct rb_audit_keyring *kr = rb_audit_keyring_new();
	if (a)
		rb_audit_keyring_add(kr, a, "a", NULL);
	if (b)
		rb_audit_keyring_add(kr, b, "b", NULL);
	return kr;
}

/* A clock that moves 137 ms a call from 2026-11-23T17:05:05.000Z. */
static int64_t tick(void *arg)
{
	int64_t *t = arg;
	return *t += 137;
}

static int64_t clock_start(void)
{
	int64_t ms;
	rb_audit_parse_ts("2026-11-23T17:05:05.000Z", &ms);
	return ms;
}

/* One record: type, then key/value string pairs; "#key" values are integers. */
static json_t *rec(const char *type, ...)
{
	json_t *r = json_pack("{s:s}", "type", type);
	va_list ap;
	va_start(ap, type);
	for (const char *k; (k = va_arg(ap, const char *));) {
		const char *v = va_arg(ap, const char *);
		if (k[0] == '#')
			json_object_set_new(r, k + 1, json_integer(atoll(v)));
		else
			json_object_set_new(r, k, json_string(v));
	}
	va_end(ap);
	return r;
}

/* Append the records (taking them), syncing every two and at the end. */
static int write_recs(const char *path, const struct rb_audit_key *k, const char *run,
		      unsigned flags, int64_t *clk, json_t **recs, size_t n)
{
	struct rb_audit_log *a;
	char *err = NULL;
	if (rb_audit_open(path, k, run, flags, &a, &err) < 0) {
		CHECK(0, "open %s: %s", path, err);
		free(err);
		for (size_t i = 0; i < n; i++)
			json_decref(recs[i]);
		return -1;
	}
	rb_audit_set_clock(a, tick, clk);
	int r = 0;
	for (size_t i = 0; i < n; i++) {
		if (r == 0 && rb_audit_append(a, recs[i]) < 0)
			r = -1;
		if (r == 0 && i % 2 == 1 && rb_audit_sync(a) < 0)
			r = -1;
		json_decref(recs[i]);
	}
	if (r == 0 && rb_audit_sync(a) < 0)
		r = -1;
	if (r < 0)
		CHECK(0, "writing %s: %s", path, rb_audit_error(a));
	rb_audit_close(a);
	return r;
}

/*
 * Every character whose encoding needs care: the C0 controls, DEL, the C1
 * controls, U+2028/U+2029, a BOM, a noncharacter, a 4-byte character, NUL,
 * quote, backslash and slash; and keys that sort differently by bytes and by
 * case.  tests/audit.sh checks that jq encodes the record as the writer did.
 */
static json_t *tricky(void)
{
	char s[64];
	size_t n = 0;
	for (int c = 0; c < 0x20; c++)
		s[n++] = (char)c;
	s[n++] = 0x7f;
	const char *rest = "\xc2\x80\xc2\x85\xc2\x9f\xe2\x80\xa8\xe2\x80\xa9\xef\xbb\xbf"
			   "\xef\xbf\xbf\xf0\x9f\x98\x80\"\\/~";
	memcpy(s + n, rest, strlen(rest));
	n += strlen(rest);
	return json_pack("{s:s%,s:i,s:i,s:i,s:[s,I]}", "output", s, n, "Zeta", 1, "zeta", 2,
			 "\xc3\xa9tat", 3, "list", "", (json_int_t)-RB_AUDIT_INT_MAX);
}

/* The test's run: six records, one with every character that needs care. */
static int write_standard(const char *path, const struct rb_audit_key *k, const char *run)
{
	int64_t clk = clock_start();
	json_t *recs[] = {
		rec("run_started", "runbook", "evening.yaml", "#steps", "1", NULL),
		rec("step_started", "step", "analyze", "#attempt", "1", NULL),
		rec("action_intent", "step", "analyze", "action", "shell",
		    "command", "echo \"hi\" \\ /tmp", NULL),
		tricky(),
		rec("step_finished", "step", "analyze", "status", "succeeded",
		    "#duration_ms", "1380", NULL),
		rec("run_finished", "status", "succeeded", NULL),
	};
	json_object_set_new(recs[3], "type", json_string("action_result"));
	json_object_set_new(recs[3], "step", json_string("analyze"));
	return write_recs(path, k, run, 0, &clk, recs, 6);
}

static int verify_buf(const char *buf, size_t len, const struct rb_audit_verify_opts *o,
		      struct rb_audit_result *r)
{
	FILE *f = fmemopen((void *)buf, len ? len : 1, "r");
	if (!f)
		abort();
	if (!len)       /* fmemopen cannot open an empty buffer for reading */
		fgetc(f);
	int rc = rb_audit_verify_stream(f, o, r);
	fclose(f);
	return rc;
}

/* Line numbers: the line that holds each byte (a newline belongs to its line). */
static uint64_t *lines_of(const char *buf, size_t len, size_t *nlines)
{
	uint64_t *l = rb_xmalloc((len + 1) * sizeof(*l)), line = 1;
	for (size_t i = 0; i < len; i++) {
		l[i] = line;
		if (buf[i] == '\n')
			line++;
	}
	*nlines = line - 1;
	return l;
}

/* The lines of buf, each with its newline. */
static size_t split(const char *buf, size_t len, const char **lines, size_t *lens, size_t max)
{
	size_t n = 0, start = 0;
	for (size_t i = 0; i < len && n < max; i++)
		if (buf[i] == '\n') {
			lines[n] = buf + start;
			lens[n++] = i + 1 - start;
			start = i + 1;
		}
	return n;
}

static char *concat(const char **lines, const size_t *lens, const size_t *order, size_t n,
		    size_t *len)
{
	struct rb_buf b;
	rb_buf_init(&b);
	for (size_t i = 0; i < n; i++)
		rb_buf_add(&b, lines[order[i]], lens[order[i]]);
	*len = b.len;
	if (!b.s)
		return rb_xstrdup("");
	return rb_buf_detach(&b);
}

/* --- the canonical encoding --------------------------------------------------------- */

static void t_canon(void)
{
	/* Expected bytes as `jq -cS .` 1.6 prints them; tests/audit.sh asks jq itself too. */
	json_t *v = json_pack("{s:s%,s:[i,i,b,n,{}],s:i,s:{s:s,s:s}}", "b",
			      "\x00\x01\x08\x0b\x1b\x1f\x7f\"\\/\t\n\r\f\xc3\xa9\xe2\x80\xa8"
			      "\xf0\x9f\x98\x80", (size_t)23, "a", 1, -2, 1, "", 0, "c", "z",
			      "", "\xc3\xa9", "y");
	struct rb_buf b;
	rb_buf_init(&b);
	CHECK(rb_audit_canon(v, NULL, &b, NULL) == 0, "canon");
	const char *want = "{\"\":0,\"a\":[1,-2,true,null,{}],"
			   "\"b\":\"\\u0000\\u0001\\b\\u000b\\u001b\\u001f\\u007f\\\"\\\\/\\t\\n"
			   "\\r\\f\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80\",\"c\":{\"z\":\"\","
			   "\"\xc3\xa9\":\"y\"}}";
	CHECK(b.s && !strcmp(b.s, want), "canon:\n got  %s\n want %s", b.s, want);
	b.len = 0;
	CHECK(rb_audit_canon(v, "b", &b, NULL) == 0 && !strstr(b.s, "\"b\""), "skip key: %s",
	      b.s);
	json_decref(v);

	char *err = NULL;
	v = json_pack("{s:[f]}", "x", 1.5);
	CHECK(rb_audit_canon(v, NULL, NULL, &err) < 0 && err && strstr(err, "real") &&
	      strstr(err, ".x[0]"), "a real is refused with its place: %s", err);
	free(err);
	json_decref(v);
	v = json_pack("{s:I}", "big", (json_int_t)RB_AUDIT_INT_MAX + 1);
	err = NULL;
	CHECK(rb_audit_canon(v, NULL, NULL, &err) < 0 && strstr(err, "2^53"), "2^53+1: %s", err);
	free(err);
	json_decref(v);
	v = json_pack("{s:I,s:I}", "max", (json_int_t)RB_AUDIT_INT_MAX, "min",
		      -(json_int_t)RB_AUDIT_INT_MAX);
	b.len = 0;
	CHECK(rb_audit_canon(v, NULL, &b, NULL) == 0 &&
	      !strcmp(b.s, "{\"max\":9007199254740992,\"min\":-9007199254740992}"), "2^53: %s",
	      b.s);
	json_decref(v);
	json_t *deep = json_array();
	for (int i = 0; i < RB_AUDIT_DEPTH_MAX + 1; i++) {
		json_t *outer = json_array();
		json_array_append_new(outer, deep);
		deep = outer;
	}
	err = NULL;
	CHECK(rb_audit_canon(deep, NULL, NULL, &err) < 0 && strstr(err, "nesting"), "depth: %s",
	      err);
	free(err);
	json_decref(deep);
	rb_buf_release(&b);

	char ts[32];
	int64_t ms;
	CHECK(rb_audit_parse_ts("2026-11-23T17:05:05.123Z", &ms) == 0, "parse ts");
	rb_audit_format_ts(ms, ts);
	CHECK(!strcmp(ts, "2026-11-23T17:05:05.123Z"), "ts round trip: %s", ts);
	CHECK(rb_audit_parse_ts("2026-11-23T17:05:05Z", &ms) < 0, "ts without ms");
	CHECK(rb_audit_parse_ts("2026-11-23 17:05:05.123Z", &ms) < 0, "ts with a space");
	struct rb_audit_head h;
	CHECK(rb_audit_head_parse("12:" "0123456789abcdef0123456789abcdef"
				  "0123456789abcdef0123456789abcdef", &h) == 0 && h.seq == 12,
	      "head parse");
	CHECK(rb_audit_head_parse("12:0123", &h) < 0, "short head");
	CHECK(rb_audit_head_parse(":0123456789abcdef0123456789abcdef"
				  "0123456789abcdef0123456789abcdef", &h) < 0, "head without seq");
}

/* --- keys -------------------------------------------------------------------------- */

/*
 * The verifier takes a record's signed bytes out of its line: the line
 * without the bytes rb_audit_canon_span names must be rb_audit_canon(v, key),
 * wherever the key sorts (first, between, last, alone) and not when it is
 * only nested.  And the place a refusal names, now built only on failure.
 */
/*
 * rb_audit_canon_gaps: a member put at each gap gives the canonical encoding of the
 * object with it; and the log's lines, made by putting its own keys at those gaps,
 * are canonical whatever keys a record has around them.
 */
static void t_canon_gaps(const char *dir, const struct rb_audit_key *k)
{
	static const char *const keys[] = {"b", "key_id", "seq", "zz"};
	static const char *const cases[] = {
		"{}", "{\"a\":1}", "{\"c\":[1],\"z\":{\"b\":2}}", "{\"key\":1,\"key_ie\":2}",
		"{\"a\":1,\"key_i\":2,\"sep\":3,\"seqq\":4,\"zzz\":5}", "{\"~\":1,\"\u00e9\":2}",
	};
	struct rb_buf got, want;
	rb_buf_init(&got);
	rb_buf_init(&want);
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		json_t *v = json_loads(cases[i], 0, NULL);
		size_t gap[4];
		got.len = 0;
		CHECK(v && rb_audit_canon_gaps(v, keys, 4, &got, gap, NULL) == 0, "gaps of %s",
		      cases[i]);
		for (size_t g = 0; v && g < 4; g++) {
			/* The member put at its gap, with the comma on the side that has a member. */
			struct rb_buf line;
			rb_buf_init(&line);
			int last = got.s[gap[g]] == '}', alone = got.len == 2;
			rb_buf_add(&line, got.s, gap[g]);
			rb_buf_printf(&line, "%s\"%s\":0%s", last && !alone ? "," : "", keys[g],
				      last ? "" : ",");
			rb_buf_add(&line, got.s + gap[g], got.len - gap[g]);
			json_t *w = json_deep_copy(v);
			json_object_set_new(w, keys[g], json_integer(0));
			want.len = 0;
			rb_audit_canon(w, NULL, &want, NULL);
			CHECK(!strcmp(line.s, want.s), "%s at its gap in %s: %s, want %s", keys[g],
			      cases[i], line.s, want.s);
			json_decref(w);
			rb_buf_release(&line);
		}
		json_decref(v);
	}
	/* The writer's lines, signed and not: each one exactly its own canonical encoding. */
	char log[512];
	snprintf(log, sizeof(log), "%s/gaps.jsonl", dir);
	int64_t clk = clock_start();
	json_t *recs[] = {
		rec("a", "aa", "1", "key", "2", "key_ie", "3", "prev0", "4", "pre", "5", NULL),
		rec("b", "run", "1", "run_id0", "2", "s", "3", "seq0", "4", "sif", "5", "sih", "6",
		    NULL),
		rec("c", "t", "1", "ts0", "2", "tt", "3", "~", "4", "A", "5", "_", "6", NULL),
		rec("d", NULL), tricky(),
	};
	json_object_set_new(recs[4], "type", json_string("e"));
	CHECK(write_recs(log, k, RUN_A, 0, &clk, recs, sizeof(recs) / sizeof(*recs)) == 0,
	      "write %s", log);
	FILE *f = fopen(log, "r");
	char *line = NULL;
	size_t cap = 0, n = 0;
	ssize_t len;
	while (f && (len = getline(&line, &cap, f)) > 0) {
		line[--len] = '\0';
		json_t *v = json_loadb(line, (size_t)len, JSON_ALLOW_NUL, NULL);
		want.len = 0;
		CHECK(v && rb_audit_canon(v, NULL, &want, NULL) == 0 && want.len == (size_t)len &&
		      !memcmp(want.s, line, want.len), "line %zu is canonical: %s", n + 1, line);
		json_decref(v);
		n++;
	}
	CHECK(n == sizeof(recs) / sizeof(*recs), "%zu lines in %s", n, log);
	free(line);
	if (f)
		fclose(f);
	rb_buf_release(&got);
	rb_buf_release(&want);
}

static void t_canon_span(void)
{
	static const char *const cases[] = {
		"{\"sig\":\"s\",\"z\":1}", "{\"a\":[1],\"sig\":\"s\",\"z\":{\"sig\":2}}",
		"{\"a\":1,\"b\":2,\"sig\":\"s\"}", "{\"sig\":{\"x\":[]}}",
		"{\"a\":{\"sig\":1}}", "{}",
	};
	struct rb_buf all, want;
	rb_buf_init(&all);
	rb_buf_init(&want);
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		json_t *v = json_loads(cases[i], 0, NULL);
		size_t from = 99, to = 99;
		all.len = want.len = 0;
		CHECK(v && rb_audit_canon_span(v, "sig", &all, &from, &to, NULL) == 0 &&
		      rb_audit_canon(v, "sig", &want, NULL) == 0, "span %s", cases[i]);
		CHECK(all.s && !strcmp(all.s, cases[i]), "span encodes all of %s: %s", cases[i],
		      all.s);
		CHECK(from <= to && to <= all.len && all.len - (to - from) == want.len &&
		      !memcmp(all.s, want.s, from) &&
		      !memcmp(all.s + to, want.s + from, all.len - to),
		      "span of sig in %s: [%zu, %zu), want %s", cases[i], from, to, want.s);
		CHECK(json_object_get(v, "sig") || (from == 0 && to == 0), "no sig in %s: %zu %zu",
		      cases[i], from, to);
		json_decref(v);
	}
	rb_buf_release(&all);
	rb_buf_release(&want);

	char *err = NULL;
	json_t *v = json_loads("{\"a\":[0,{\"b\":[[1,{\"c\":1e3}]]}]}", 0, NULL);
	CHECK(rb_audit_canon(v, NULL, NULL, &err) < 0 && err &&
	      !strcmp(err, "a real number (records hold integers only) at .a[1].b[0][1].c"),
	      "the place of a refusal: %s", err);
	free(err);
	json_decref(v);
	err = NULL;
	/* jansson parses no such key, but its API makes one. */
	v = json_pack("[i,{}]", 1);
	json_object_setn_new(json_array_get(v, 1), "k\0", 2, json_integer(1));
	CHECK(v && rb_audit_canon(v, NULL, NULL, &err) < 0 && err &&
	      !strcmp(err, "a key with a NUL byte at [1]"), "a NUL key: %s", err);
	free(err);
	json_decref(v);
	err = NULL;
	v = json_real(1.0);
	CHECK(rb_audit_canon(v, NULL, NULL, &err) < 0 && err && strstr(err, "at the top"),
	      "a refusal at the top: %s", err);
	free(err);
	json_decref(v);
}

/*
 * The verifier's checker sets a context up per key and copies it for each
 * signature: keys taking turns, a signature of the other key, a changed
 * message and a changed signature must all come out as one fresh
 * EVP_DigestVerifyInit would say.
 */
static void t_checker(const struct rb_audit_key *ka, const struct rb_audit_key *kb)
{
	static const char msg[] = "{\"seq\":1}";
	unsigned char sa[SIG_LEN], sb[SIG_LEN];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	CHECK(rb_audit_sign_bytes(ka, ctx, msg, sizeof(msg) - 1, sa) == 0 &&
	      rb_audit_sign_bytes(kb, ctx, msg, sizeof(msg) - 1, sb) == 0, "sign");
	struct rb_audit_checker c;
	rb_audit_checker_init(&c);
	for (int round = 0; round < 3; round++) {
		CHECK(rb_audit_checker_check(&c, ka, msg, sizeof(msg) - 1, sa) == 1,
		      "a's signature, round %d", round);
		CHECK(rb_audit_checker_check(&c, ka, msg, sizeof(msg) - 1, sb) == 0,
		      "b's signature with a, round %d", round);
		CHECK(rb_audit_checker_check(&c, kb, msg, sizeof(msg) - 1, sb) == 1,
		      "b's signature, round %d", round);
		CHECK(rb_audit_checker_check(&c, kb, msg, sizeof(msg) - 2, sb) == 0,
		      "a shorter message, round %d", round);
		sa[round * 20] ^= 0x10;
		CHECK(rb_audit_checker_check(&c, ka, msg, sizeof(msg) - 1, sa) == 0 &&
		      rb_audit_check_bytes(ka, ctx, msg, sizeof(msg) - 1, sa) == 0,
		      "a changed signature, round %d", round);
		sa[round * 20] ^= 0x10;
	}
	rb_audit_checker_release(&c);
	EVP_MD_CTX_free(ctx);
}

static void t_keys(const char *dir)
{
	char *path = join(dir, "k.pem"), *pub = join(dir, "k.pem.pub"), *err = NULL;
	struct rb_audit_key *k = NULL, *k2 = NULL, *kp = NULL;
	CHECK(rb_audit_keygen(path, 0, &k, &err) == 0, "keygen: %s", err);
	CHECK(file_mode(path) == 0600, "private key mode %o", file_mode(path));
	CHECK(file_mode(pub) == 0644, "public key mode %o", file_mode(pub));
	CHECK(strlen(rb_audit_key_id(k)) == RB_AUDIT_KEY_ID_LEN, "id %s", rb_audit_key_id(k));
	size_t len;
	char *before = slurp(path, &len);
	CHECK(before && strstr(before, "-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
	free(err);
	err = NULL;
	CHECK(rb_audit_keygen(path, 0, NULL, &err) < 0 && err && strstr(err, "exists"),
	      "keygen refuses to replace: %s", err);
	char *after = slurp(path, &len);
	CHECK(after && before && !strcmp(before, after), "the key is unchanged");
	free(after);
	free(err);
	err = NULL;
	/* The public half alone in the way is refused too. */
	char *other = join(dir, "o.pem"), *opub = join(dir, "o.pem.pub");
	spit(opub, "x", 1);
	CHECK(rb_audit_keygen(other, 0, NULL, &err) < 0 && access(other, F_OK) < 0,
	      "keygen refuses when FILE.pub exists: %s", err);
	free(err);
	err = NULL;

	CHECK(rb_audit_key_load(path, &k2, &err) == 0 && rb_audit_key_can_sign(k2) &&
	      !strcmp(rb_audit_key_id(k2), rb_audit_key_id(k)), "load private: %s", err);
	CHECK(rb_audit_key_load(pub, &kp, &err) == 0 && !rb_audit_key_can_sign(kp) &&
	      !strcmp(rb_audit_key_id(kp), rb_audit_key_id(k)), "load public: %s", err);
	CHECK(rb_audit_keygen(path, 1, NULL, &err) == 0, "--force replaces: %s", err);
	rb_audit_key_free(k2);
	k2 = NULL;
	CHECK(rb_audit_key_load(path, &k2, &err) == 0 &&
	      strcmp(rb_audit_key_id(k2), rb_audit_key_id(k)), "a new key after --force");
	CHECK(file_mode(path) == 0600, "mode after --force %o", file_mode(path));
	free(before);

	/* A public key cannot open a log. */
	struct rb_audit_log *a;
	char *log = join(dir, "pub.jsonl");
	CHECK(rb_audit_open(log, kp, RUN_A, 0, &a, &err) < 0 && strstr(err, "public"),
	      "public key cannot sign: %s", err);
	free(err);
	err = NULL;

	/* Keyrings: the same key twice (private and public file) counts once. */
	struct rb_audit_keyring *kr;
	CHECK(rb_audit_keyring_load(dir, &kr, &err) < 0 && strstr(err, "o.pem.pub"),
	      "a file that is not a key names itself: %s", err);
	free(err);
	err = NULL;
	unlink(opub);
	CHECK(rb_audit_keyring_load(dir, &kr, &err) == 0 && rb_audit_keyring_count(kr) == 1 &&
	      !strcmp(rb_audit_keyring_id(kr, 0), rb_audit_key_id(k2)), "keyring: %s", err);
	rb_audit_keyring_free(kr);
	CHECK(rb_audit_keyring_load(pub, &kr, &err) == 0 && rb_audit_keyring_count(kr) == 1,
	      "a keyring of one file: %s", err);
	rb_audit_keyring_free(kr);
	char *empty = join(dir, "empty");
	mkdir(empty, 0700);
	CHECK(rb_audit_keyring_load(empty, &kr, &err) < 0 && strstr(err, "no key"),
	      "empty keyring: %s", err);
	free(err);
	err = NULL;

	/* The host key: made on first use, then the same. */
	char *state = join(dir, "state"), *created = NULL;
	struct rb_audit_key *h1 = NULL, *h2 = NULL;
	unsetenv("RUNBOOK_AUDIT_KEY");
	CHECK(rb_audit_key_default(NULL, state, &h1, &created, &err) == 0 && created &&
	      strstr(created, "keys/host.pem"), "host key created: %s", err);
	CHECK(created && file_mode(created) == 0600, "host key mode");
	free(created);
	CHECK(rb_audit_key_default(NULL, state, &h2, &created, &err) == 0 && !created &&
	      !strcmp(rb_audit_key_id(h1), rb_audit_key_id(h2)), "host key again: %s", err);
	rb_audit_key_free(h2);
	setenv("RUNBOOK_AUDIT_KEY", path, 1);
	CHECK(rb_audit_key_default(NULL, state, &h2, &created, &err) == 0 && !created &&
	      !strcmp(rb_audit_key_id(h2), rb_audit_key_id(k2)), "RUNBOOK_AUDIT_KEY: %s", err);
	rb_audit_key_free(h2);
	CHECK(rb_audit_key_default(pub, state, &h2, &created, &err) < 0 && strstr(err, "public"),
	      "--audit-key with a public key: %s", err);
	unsetenv("RUNBOOK_AUDIT_KEY");
	free(err);

	rb_audit_key_free(h1);
	rb_audit_key_free(k);
	rb_audit_key_free(k2);
	rb_audit_key_free(kp);
	free(state);
	free(empty);
	free(log);
	free(other);
	free(opub);
	free(path);
	free(pub);
}

/* --- round trip -------------------------------------------------------------------- */

static void t_roundtrip(const char *dir, const struct rb_audit_key *ka,
			const struct rb_audit_key *kb)
{
	char *log = join(dir, "rt.jsonl");
	CHECK(write_standard(log, ka, RUN_A) == 0, "write");
	struct rb_audit_keyring *kr = ring(ka, kb);
	struct rb_audit_verify_opts o = {.keyring = kr};
	struct rb_audit_result r;
	CHECK(rb_audit_verify(log, &o, &r) == 0 && r.records == 6 && r.runs == 1 &&
	      r.open_runs == 0, "verify: line %" PRIu64 ": %s", r.bad_line, r.reason);
	struct rb_audit_head h;
	struct rb_audit_torn torn;
	CHECK(rb_audit_head(log, &h, &torn, NULL) == 0 && h.seq == 6 && torn.length == 0 &&
	      !strcmp(h.sha256, r.head.sha256), "head %" PRIu64 ":%s", h.seq, h.sha256);
	CHECK(file_mode(log) == 0600, "log mode %o", file_mode(log));

	/* Every record has the keys the format promises, the first prev is zeros. */
	size_t len;
	char *buf = slurp(log, &len);
	json_t *first = json_loadb(buf, strchr(buf, '\n') - buf, 0, NULL);
	CHECK(!strcmp(json_string_value(json_object_get(first, "prev")),
		      "0000000000000000000000000000000000000000000000000000000000000000") &&
	      json_integer_value(json_object_get(first, "seq")) == 1 &&
	      !strcmp(json_string_value(json_object_get(first, "ts")),
		      "2026-11-23T17:05:05.137Z") &&
	      !strcmp(json_string_value(json_object_get(first, "run_id")), RUN_A),
	      "first record: %.*s", (int)(strchr(buf, '\n') - buf), buf);
	json_decref(first);
	/* write_recs syncs every two records: the second of each group alone is signed. */
	const char *lines[8];
	size_t lens[8];
	CHECK(split(buf, len, lines, lens, 8) == 6, "six lines");
	for (size_t i = 0; i < 6; i++) {
		json_t *l = json_loadb(lines[i], lens[i], JSON_ALLOW_NUL, NULL);
		const char *kid = json_string_value(json_object_get(l, "key_id"));
		int sig = json_is_string(json_object_get(l, "sig"));
		CHECK(i % 2 ? kid && !strcmp(kid, rb_audit_key_id(ka)) && sig : !kid && !sig,
		      "line %zu: key_id %s, sig %d", i + 1, kid ? kid : "none", sig);
		json_decref(l);
	}
	/* Ed25519 is deterministic: the same records and key give the same bytes. */
	char *again = join(dir, "rt2.jsonl");
	write_standard(again, ka, RUN_A);
	size_t len2;
	char *buf2 = slurp(again, &len2);
	CHECK(len == len2 && !memcmp(buf, buf2, len), "the same log twice");
	free(buf2);

	/* Reopening continues seq and the chain. */
	struct rb_audit_log *a;
	CHECK(rb_audit_open(log, ka, RUN_A, 0, &a, NULL) == 0, "reopen");
	CHECK(!strcmp(rb_audit_last_type(a), "run_finished") && !rb_audit_torn(a),
	      "last type %s", rb_audit_last_type(a));
	struct rb_audit_head lh;
	rb_audit_log_head(a, &lh);
	CHECK(lh.seq == 6 && !strcmp(lh.sha256, h.sha256), "the log's head on open");
	json_t *x = rec("run_resumed", NULL), *y = rec("run_finished", "status", "failed", NULL);
	CHECK(rb_audit_append(a, x) == 0 && rb_audit_append(a, y) == 0 && rb_audit_sync(a) == 0,
	      "append after reopen: %s", rb_audit_error(a));
	uint64_t nrec, nsync;
	rb_audit_counts(a, &nrec, &nsync);
	CHECK(nrec == 2 && nsync == 1, "two records, one fdatasync: %" PRIu64 " %" PRIu64, nrec,
	      nsync);
	rb_audit_log_head(a, &lh);
	json_decref(x);
	json_decref(y);
	rb_audit_close(a);
	CHECK(rb_audit_verify(log, &o, &r) == 0 && r.records == 8 && lh.seq == 8 &&
	      !strcmp(lh.sha256, r.head.sha256), "verify after resume: %s", r.reason);

	/* What append refuses. */
	CHECK(rb_audit_open(log, ka, RUN_A, 0, &a, NULL) == 0, "reopen");
	json_t *bad1 = json_pack("{s:s,s:i}", "type", "x", "seq", 3);
	json_t *bad2 = json_pack("{s:i}", "step", 1);
	json_t *bad3 = json_pack("{s:s,s:f}", "type", "x", "ratio", 0.5);
	json_t *bad4 = json_pack("[s]", "type");
	CHECK(rb_audit_append(a, bad1) < 0 && strstr(rb_audit_error(a), "\"seq\""),
	      "seq refused: %s", rb_audit_error(a));
	CHECK(rb_audit_append(a, bad2) < 0 && strstr(rb_audit_error(a), "type"),
	      "no type: %s", rb_audit_error(a));
	CHECK(rb_audit_append(a, bad3) < 0 && strstr(rb_audit_error(a), ".ratio"),
	      "a real: %s", rb_audit_error(a));
	CHECK(rb_audit_append(a, bad4) < 0, "not an object");
	CHECK(rb_audit_sync(a) == 0, "nothing to sync");
	json_decref(bad1);
	json_decref(bad2);
	json_decref(bad3);
	json_decref(bad4);
	rb_audit_close(a);

	rb_audit_keyring_free(kr);
	free(buf);
	free(again);
	free(log);
}

/* --- single-byte changes ------------------------------------------------------------- */

/*
 * Every byte of the log changed (xor 0x01, xor 0x80, replaced by a newline;
 * with AUDIT_TEST_EVERY_VALUE set, to each of the 255 other values) and
 * deleted, one at a time: each is found, in the line that holds the byte.
 * The verifier stops at the first bad record, and a record whose bytes
 * changed is bad itself (its signature, canonical form, seq or JSON), so it
 * is named rather than the next line, whose prev no longer matches.  A newline
 * changed or deleted joins its line to the next: the joined line is named,
 * which is the line of the newline; the last newline leaves a torn tail in
 * that line.
 */
static void t_every_byte(const char *dir, const struct rb_audit_key *ka)
{
	char *log = join(dir, "bytes.jsonl");
	write_standard(log, ka, RUN_A);
	size_t len, nlines;
	char *buf = slurp(log, &len);
	uint64_t *line = lines_of(buf, len, &nlines);
	struct rb_audit_keyring *kr = ring(ka, NULL);
	struct rb_audit_verify_opts o = {.keyring = kr};
	struct rb_audit_result r;
	char *mod = rb_xmalloc(len + 1);
	unsigned missed = 0, wrong = 0, tried = 0;
	/* AUDIT_TEST_EVERY_VALUE=1: every other value of every byte (minutes, not seconds). */
	int every = getenv("AUDIT_TEST_EVERY_VALUE") != NULL, nv = every ? 256 : 4;
	for (size_t i = 0; i < len; i++) {
		for (int v = 0; v < nv; v++) {
			size_t mlen = len;
			memcpy(mod, buf, len);
			if (v == nv - 1) {              /* deleted */
				memmove(mod + i, mod + i + 1, len - i - 1);
				mlen--;
			} else if (every) {
				if ((unsigned char)buf[i] == v)
					continue;
				mod[i] = (char)v;
			} else if (v == 0) {
				mod[i] ^= 0x01;
			} else if (v == 1) {
				mod[i] ^= (char)0x80;
			} else if (buf[i] != '\n') {
				mod[i] = '\n';
			} else {
				continue;
			}
			tried++;
			if (verify_buf(mod, mlen, &o, &r) == 0) {
				if (missed++ < 5)
					CHECK(0, "byte %zu change %d not found", i, v);
			} else if (r.bad_line != (i == len - 1 ? 5 : line[i])) {
				if (wrong++ < 5)
					CHECK(0, "byte %zu (line %" PRIu64 ") change %d: line %" PRIu64
					      " named: %s", i, line[i], v, r.bad_line, r.reason);
			}
		}
	}
	CHECK(missed == 0 && wrong == 0, "%u of %u changes of %zu bytes: %u missed, %u wrong line",
	      missed + wrong, tried, len, missed, wrong);
	CHECK(nlines == 6 && tried > 3 * len, "%zu lines, %u changes", nlines, tried);
	/*
	 * The last newline gone: a torn tail, from line 5, whose group lost its
	 * signed end (line 6) with it.
	 */
	CHECK(verify_buf(buf, len - 1, &o, &r) < 0 && r.torn && r.bad_line == 5,
	      "torn: %s", r.reason);
	free(mod);
	free(line);
	free(buf);
	free(log);
	rb_audit_keyring_free(kr);
}

/* --- lines deleted, repeated, swapped, spliced ------------------------------------------ */

static void t_lines(const char *dir, const struct rb_audit_key *ka)
{
	char *loga = join(dir, "lines_a.jsonl"), *logb = join(dir, "lines_b.jsonl");
	write_standard(loga, ka, RUN_A);
	write_standard(logb, ka, RUN_B);       /* same key, same clock: another run */
	size_t lena, lenb, len;
	char *bufa = slurp(loga, &lena), *bufb = slurp(logb, &lenb);
	const char *la[16], *lb[16], *all[32];
	size_t lna[16], lnb[16], lnall[32], order[32];
	size_t n = split(bufa, lena, la, lna, 16);
	CHECK(split(bufb, lenb, lb, lnb, 16) == n && n == 6, "six lines each");
	for (size_t i = 0; i < n; i++) {
		all[i] = la[i];
		lnall[i] = lna[i];
		all[n + i] = lb[i];
		lnall[n + i] = lnb[i];
	}
	struct rb_audit_keyring *kr = ring(ka, NULL);
	struct rb_audit_verify_opts o = {.keyring = kr};
	struct rb_audit_result r;
	char *m;

	for (size_t d = 0; d < n; d++) {          /* delete line d+1 */
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			if (i != d)
				order[k++] = i;
		m = concat(all, lnall, order, k, &len);
		/* The last line deleted: line 5 is left without the signature that ended its group. */
		CHECK(verify_buf(m, len, &o, &r) < 0 &&
		      r.bad_line == (d == n - 1 ? d : d + 1) &&
		      r.bad_seq == (d == n - 1 ? d : d + 2),
		      "delete line %zu: line %" PRIu64 " seq %" PRIu64 " named: %s", d + 1,
		      r.bad_line, r.bad_seq, r.reason);
		free(m);
	}
	for (size_t d = 0; d < n; d++) {          /* repeat line d+1 */
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			order[k++] = i;
			if (i == d)
				order[k++] = i;
		}
		m = concat(all, lnall, order, k, &len);
		CHECK(verify_buf(m, len, &o, &r) < 0 && r.bad_line == d + 2 && r.bad_seq == d + 1 &&
		      strstr(r.reason, "seq"), "repeat line %zu: line %" PRIu64 " named: %s",
		      d + 1, r.bad_line, r.reason);
		free(m);
	}
	for (size_t i = 0; i < n; i++)            /* swap lines i+1 and j+1 */
		for (size_t j = i + 1; j < n; j++) {
			for (size_t x = 0; x < n; x++)
				order[x] = x;
			order[i] = j;
			order[j] = i;
			m = concat(all, lnall, order, n, &len);
			CHECK(verify_buf(m, len, &o, &r) < 0 && r.bad_line == i + 1,
			      "swap %zu and %zu: line %" PRIu64 " named: %s", i + 1, j + 1,
			      r.bad_line, r.reason);
			free(m);
		}
	/*
	 * Line k of run B in place of line k of run A: same key, same seq, its
	 * prev the hash of B's line k-1, so it is named.  A signed one carries a
	 * valid signature: it is told from a change to the unsigned line before
	 * it by its run, or by the line after it, whose prev does not match it.
	 * B's line 1, unsigned, is not the record that A's line 2 covers.
	 */
	for (size_t s = 0; s < n; s++) {
		for (size_t x = 0; x < n; x++)
			order[x] = x;
		order[s] = n + s;
		m = concat(all, lnall, order, n, &len);
		CHECK(verify_buf(m, len, &o, &r) < 0 && r.bad_line == s + 1,
		      "splice B's line %zu: line %" PRIu64 " named: %s", s + 1, r.bad_line,
		      r.reason);
		struct rb_audit_verify_opts ro = {.keyring = kr, .run_id = RUN_A};
		CHECK(verify_buf(m, len, &ro, &r) < 0 && r.bad_line == s + 1,
		      "splice B's line %zu, run id given: line %" PRIu64 " named: %s", s + 1,
		      r.bad_line, r.reason);
		free(m);
		/* Inserted rather than replacing. */
		size_t k = 0;
		for (size_t x = 0; x < n; x++) {
			if (x == s)
				order[k++] = n + s;
			order[k++] = x;
		}
		m = concat(all, lnall, order, k, &len);
		CHECK(verify_buf(m, len, &o, &r) < 0 && r.bad_line == (s == 0 ? 2 : s + 1),
		      "insert B's line %zu: line %" PRIu64 " named: %s", s + 1, r.bad_line,
		      r.reason);
		free(m);
	}
	/* A's first half, B's second: line 4 is named. */
	size_t half[6] = {0, 1, 2, n + 3, n + 4, n + 5};
	m = concat(all, lnall, half, 6, &len);
	CHECK(verify_buf(m, len, &o, &r) < 0 && r.bad_line == 4 && strstr(r.reason, "prev"),
	      "spliced halves: line %" PRIu64 ": %s", r.bad_line, r.reason);
	free(m);
	/* Another run's whole log in a single-run log: the run id given finds it. */
	struct rb_audit_verify_opts ro = {.keyring = kr, .run_id = RUN_A};
	CHECK(verify_buf(bufb, lenb, &ro, &r) < 0 && r.bad_line == 1 &&
	      strstr(r.reason, RUN_B), "another run's log: %s", r.reason);
	/* Empty. */
	CHECK(verify_buf("", 0, &o, &r) < 0 && r.bad_line == 1 && strstr(r.reason, "no records"),
	      "empty: %s", r.reason);

	rb_audit_keyring_free(kr);
	free(bufa);
	free(bufb);
	free(loga);
	free(logb);
}

/* The reasons, as runbook audit verify prints them. */
static void t_reasons(const struct rb_audit_key *ka, const struct rb_audit_key *kb)
{
	struct rb_audit_keyring *kr = ring(ka, NULL);
	struct rb_audit_verify_opts o = {.keyring = kr};
	struct rb_audit_result r;
	static const struct {
		const char *log, *reason;
		uint64_t line;
	} cases[] = {
		{"{}\n", "no seq (a positive integer)", 1},
		{"[1]\n", "not a JSON object", 1},
		{"{\"seq\":1,\n", "not JSON: ", 1},
		{"{\"seq\":1}\n", "no ts (a string)", 1},
		{"\n", "not JSON", 1},
		{"{\"key_id\":\"0011223344556677\",\"prev\":\"00\",\"run_id\":\"r\",\"seq\":1,"
		 "\"sig\":\"x\",\"ts\":\"2026-11-23T17:05:05.000Z\",\"type\":\"t\"}\n",
		 "malformed prev", 1},
		{"{\"key_id\":\"0011223344556677\",\"prev\":\"" "0000000000000000000000000000000000"
		 "000000000000000000000000000000\",\"run_id\":\"r\",\"seq\":1,\"sig\":\"x\","
		 "\"ts\":\"2026-11-23T17:05:05.000Z\",\"type\":\"t\"}\n",
		 "signed by key 0011223344556677, which is not in the keyring", 1},
		{"{\"type\":\"t\",\"key_id\":\"0011223344556677\",\"prev\":\"" "00000000000000000000"
		 "00000000000000000000000000000000000000000000\",\"run_id\":\"r\",\"seq\":1,"
		 "\"sig\":\"x\",\"ts\":\"2026-11-23T17:05:05.000Z\"}\n",
		 "not in canonical form (from column 3)", 1},
		{"\0\0\0\n{}\n", "a NUL byte", 1},
		{"\0\0\0\n\0\0", "torn tail: 6 bytes at offset 0 after seq 0", 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		const char *s = cases[i].log;
		size_t len = strlen(s);
		if (!len)       /* the NUL cases */
			len = i == 8 ? 7 : 6;
		CHECK(verify_buf(s, len, &o, &r) < 0 && r.bad_line == cases[i].line &&
		      !strncmp(r.reason, cases[i].reason, strlen(cases[i].reason)),
		      "case %zu: line %" PRIu64 ": %s", i, r.bad_line, r.reason);
	}
	(void)kb;
	rb_audit_keyring_free(kr);
}

/* --- the rules that close a run, a cut tail, the expected head ------------------------------- */

static int write_paused_resumed(const char *path, const struct rb_audit_key *k1,
				const struct rb_audit_key *k2, size_t n)
{
	int64_t clk = clock_start();
	json_t *s1[] = {
		rec("run_started", NULL),
		rec("step_started", "step", "a", NULL),
		rec("step_finished", "step", "a", "status", "succeeded", NULL),
		rec("run_finished", "status", "paused", NULL),
	};
	json_t *s2[] = {
		rec("run_resumed", NULL),
		rec("gate_approved", "step", "b", "by", "ops", NULL),
		rec("step_started", "step", "b", NULL),
		rec("run_finished", "status", "succeeded", NULL),
	};
	int r = write_recs(path, k1, RUN_A, 0, &clk, s1, 4);
	if (n > 4 && r == 0)
		r = write_recs(path, k2, RUN_A, 0, &clk, s2, n - 4);
	for (size_t i = n > 4 ? n - 4 : 0; i < 4; i++)
		json_decref(s2[i]);
	return r;
}

static void t_closing(const char *dir, const struct rb_audit_key *ka,
		      const struct rb_audit_key *kb)
{
	char *log = join(dir, "close.jsonl");
	write_paused_resumed(log, ka, ka, 8);
	size_t len;
	char *buf = slurp(log, &len);
	struct rb_audit_keyring *kr = ring(ka, NULL);
	struct rb_audit_verify_opts o = {.keyring = kr};
	struct rb_audit_result r;
	CHECK(verify_buf(buf, len, &o, &r) == 0 && r.records == 8, "paused and resumed: %s",
	      r.reason);
	struct rb_audit_head head = r.head;

	/*
	 * Cut after the pause's run_finished: what is left is a whole, closed run,
	 * and the chain alone cannot tell (the documented limit).  The head kept
	 * when the log was written can.
	 */
	size_t cut = 0;
	for (int nl = 0; nl < 4; cut++)
		nl += buf[cut] == '\n';
	CHECK(verify_buf(buf, cut, &o, &r) == 0 && r.records == 4,
	      "a tail cut at a run_finished is not found by the chain: %s", r.reason);
	o.expected_head = &head;
	CHECK(verify_buf(buf, cut, &o, &r) < 0 && r.bad_line == 5 && r.bad_seq == 5 &&
	      strstr(r.reason, "cut"), "with the head: line %" PRIu64 " seq %" PRIu64 ": %s",
	      r.bad_line, r.bad_seq, r.reason);
	CHECK(verify_buf(buf, len, &o, &r) == 0, "the whole log with its head: %s", r.reason);
	struct rb_audit_head wrong = head;
	wrong.seq = 3;
	CHECK(verify_buf(buf, len, &o, &r) == 0, "again");
	o.expected_head = &wrong;
	CHECK(verify_buf(buf, len, &o, &r) < 0 && r.bad_line == 3 && strstr(r.reason, "head"),
	      "a head that does not match: %s", r.reason);
	o.expected_head = NULL;

	/* Cut elsewhere: the run has no end. */
	for (int nl = 0; nl < 2; cut++)
		nl += buf[cut] == '\n';
	size_t cut6 = cut;
	CHECK(verify_buf(buf, cut6, &o, &r) < 0 && r.bad_line == 7 && r.bad_seq == 7 &&
	      strstr(r.reason, "no run_finished") && r.open_runs == 1, "cut at 6: %s", r.reason);
	/* An unfinished run (running, or crashed) may be allowed: then only the head finds a cut. */
	o.allow_open = 1;
	CHECK(verify_buf(buf, cut6, &o, &r) == 0 && r.open_runs == 1, "allowed open: %s",
	      r.reason);
	size_t cut5 = 0;
	for (int nl = 0; nl < 5; cut5++)
		nl += buf[cut5] == '\n';
	/* Cut after an unsigned record: its group's signed end is missing. */
	CHECK(verify_buf(buf, cut5, &o, &r) < 0 && r.bad_line == 5 && r.torn &&
	      strstr(r.reason, "unsigned tail"), "allowed open, cut at 5: %s", r.reason);
	struct rb_audit_head h6;
	CHECK(verify_buf(buf, cut6, &o, &r) == 0, "head at 6");
	h6 = r.head;
	o.expected_head = &h6;
	CHECK(verify_buf(buf, cut5, &o, &r) < 0 && r.bad_line == 5, "cut found with the head: %s",
	      r.reason);
	size_t cut4 = 0;
	for (int nl = 0; nl < 4; cut4++)
		nl += buf[cut4] == '\n';
	CHECK(verify_buf(buf, cut4, &o, &r) < 0 && r.bad_line == 5 && strstr(r.reason, "cut"),
	      "cut at a signed record, found with the head: %s", r.reason);
	o.expected_head = NULL;
	o.allow_open = 0;
	free(buf);

	/* Key rotation: the session after the pause signs with key B. */
	char *rot = join(dir, "rotate.jsonl");
	write_paused_resumed(rot, ka, kb, 8);
	buf = slurp(rot, &len);
	struct rb_audit_keyring *both = ring(ka, kb), *onlyb = ring(kb, NULL);
	o.keyring = both;
	CHECK(verify_buf(buf, len, &o, &r) == 0, "both keys trusted: %s", r.reason);
	o.keyring = kr;
	/* Signatures end groups of two: B's first is on line 6, A's on line 2. */
	CHECK(verify_buf(buf, len, &o, &r) < 0 && r.bad_line == 6 &&
	      strstr(r.reason, rb_audit_key_id(kb)) && strstr(r.reason, "not in the keyring"),
	      "key B unknown: %s", r.reason);
	o.keyring = onlyb;
	CHECK(verify_buf(buf, len, &o, &r) < 0 && r.bad_line == 2, "key A unknown: %s",
	      r.reason);
	/* A key id that is known but a signature by another key (the id forged). */
	char *forged = rb_xstrndup(buf, len);
	char *kid = strstr(forged, rb_audit_key_id(ka));
	memcpy(kid, rb_audit_key_id(kb), RB_AUDIT_KEY_ID_LEN);
	o.keyring = both;
	CHECK(verify_buf(forged, len, &o, &r) < 0 && r.bad_line == 2 &&
	      strstr(r.reason, "does not verify"), "forged key id: %s", r.reason);
	free(forged);
	free(buf);

	/* Records outside a session. */
	static const char *const bad_orders[][3] = {
		{"step_started", NULL, NULL},                   /* before run_started */
		{"run_started", "run_finished", "step_started"}, /* after run_finished */
		{"run_started", "run_started", NULL},
		{"run_started", "run_resumed", NULL},           /* resumed while running */
		{"run_started", "run_finished", "run_finished"},
	};
	static const uint64_t bad_line[] = {1, 3, 2, 2, 3};
	for (size_t c = 0; c < sizeof(bad_orders) / sizeof(*bad_orders); c++) {
		char *p = rb_xasprintf("%s/order%zu.jsonl", dir, c);
		json_t *recs[3];
		size_t k = 0;
		for (; k < 3 && bad_orders[c][k]; k++)
			recs[k] = rec(bad_orders[c][k], NULL);
		int64_t clk = clock_start();
		write_recs(p, ka, RUN_A, 0, &clk, recs, k);
		struct rb_audit_result rr;
		o.keyring = kr;
		CHECK(rb_audit_verify(p, &o, &rr) < 0 && rr.bad_line == bad_line[c],
		      "order %zu: line %" PRIu64 ": %s", c, rr.bad_line, rr.reason);
		free(p);
	}
	/* Crashed, then resumed and finished: closed. */
	char *crash = join(dir, "crash.jsonl");
	int64_t clk = clock_start();
	json_t *cr[] = {rec("run_started", NULL), rec("step_started", "step", "a", NULL),
			rec("run_crashed", NULL), rec("run_resumed", NULL),
			rec("run_finished", "status", "succeeded", NULL)};
	write_recs(crash, ka, RUN_A, 0, &clk, cr, 5);
	CHECK(rb_audit_verify(crash, &o, &r) == 0, "crashed and resumed: %s", r.reason);

	rb_audit_keyring_free(kr);
	rb_audit_keyring_free(both);
	rb_audit_keyring_free(onlyb);
	free(crash);
	free(rot);
	free(log);
}

/* --- torn tails and repairs ---------------------------------------------------------- */

static int write_open_run(const char *path, const struct rb_audit_key *k)
{
	int64_t clk = clock_start();
	json_t *recs[] = {rec("run_started", NULL), rec("step_started", "step", "a", NULL),
			  rec("action_intent", "step", "a", NULL)};
	return write_recs(path, k, RUN_A, 0, &clk, recs, 3);
}

/* Resume: the repair, then the crash and resume records and an end. */
static int finish_run(struct rb_audit_log *a)
{
	json_t *recs[] = {rec("run_crashed", NULL), rec("run_resumed", NULL),
			  rec("run_finished", "status", "succeeded", NULL)};
	int r = 0;
	for (int i = 0; i < 3; i++) {
		if (r == 0)
			r = rb_audit_append(a, recs[i]);
		json_decref(recs[i]);
	}
	return r == 0 ? rb_audit_sync(a) : -1;
}

static void t_torn(const char *dir, const struct rb_audit_key *ka)
{
	char *log = join(dir, "torn.jsonl"), *err = NULL;
	write_open_run(log, ka);
	size_t len0;
	char *clean = slurp(log, &len0);
	const char torn[] = "{\"key_id\":\"ab";
	int fd = open(log, O_WRONLY | O_APPEND);
	CHECK(write(fd, torn, sizeof(torn) - 1) == (ssize_t)sizeof(torn) - 1, "tear");
	close(fd);
	struct rb_audit_keyring *kr = ring(ka, NULL);
	struct rb_audit_verify_opts o = {.keyring = kr};
	struct rb_audit_result r;
	CHECK(rb_audit_verify(log, &o, &r) < 0 && r.torn && r.bad_line == 4 &&
	      strstr(r.reason, "torn tail: 13 bytes"), "verify torn: %s", r.reason);
	struct rb_audit_head h;
	struct rb_audit_torn t;
	CHECK(rb_audit_head(log, &h, &t, NULL) == 0 && h.seq == 3 && t.offset == len0 &&
	      t.length == 13 && t.line == 4, "head of a torn log");

	struct rb_audit_log *a;
	CHECK(rb_audit_open(log, ka, RUN_A, 0, &a, &err) == 0, "open torn: %s", err);
	const struct rb_audit_torn *tt = rb_audit_torn(a);
	CHECK(tt && tt->offset == len0 && tt->length == 13 && tt->line == 4, "torn on open");
	json_t *x = rec("step_finished", NULL);
	CHECK(rb_audit_append(a, x) < 0 && strstr(rb_audit_error(a), "torn"),
	      "no append after a torn tail: %s", rb_audit_error(a));
	json_decref(x);
	size_t len;
	char *buf = slurp(log, &len);
	CHECK(len == len0 + 13, "the torn bytes stay until repaired");
	free(buf);
	CHECK(rb_audit_repair(a) == 0 && !rb_audit_torn(a), "repair: %s", rb_audit_error(a));
	CHECK(!strcmp(rb_audit_last_type(a), "log_repaired"), "last type after repair");
	char *side = rb_xasprintf("%s.repair", log);
	CHECK(access(side, F_OK) < 0, "no repair file left");
	CHECK(finish_run(a) == 0, "finish: %s", rb_audit_error(a));
	rb_audit_close(a);
	CHECK(rb_audit_verify(log, &o, &r) == 0 && r.records == 7, "verify repaired: %s",
	      r.reason);
	/* The record says what was removed. */
	buf = slurp(log, &len);
	const char *l4 = buf + len0;
	json_t *rep = json_loadb(l4, strchr(l4, '\n') - l4, 0, NULL);
	char hex[65];
	rb_sha256_hex(torn, 13, hex);
	CHECK(!strcmp(json_string_value(json_object_get(rep, "type")), "log_repaired") &&
	      json_integer_value(json_object_get(rep, "offset")) == (json_int_t)len0 &&
	      json_integer_value(json_object_get(rep, "length")) == 13 &&
	      !strcmp(json_string_value(json_object_get(rep, "sha256")), hex) &&
	      !strcmp(json_string_value(json_object_get(rep, "data")), "eyJrZXlfaWQiOiJhYg=="),
	      "log_repaired: %.*s", (int)(strchr(l4, '\n') - l4), l4);
	json_decref(rep);
	free(buf);

	/* A power loss: a NUL line and zeros, removed together. */
	char *zlog = join(dir, "zeros.jsonl");
	write_open_run(zlog, ka);
	fd = open(zlog, O_WRONLY | O_APPEND);
	CHECK(write(fd, "\0\0\0\0\n\0\0", 7) == 7, "zeros");
	close(fd);
	CHECK(rb_audit_verify(zlog, &o, &r) < 0 && r.torn && r.bad_line == 4 &&
	      strstr(r.reason, "7 bytes"), "zeros are torn: %s", r.reason);
	CHECK(rb_audit_open(zlog, ka, RUN_A, 0, &a, &err) == 0 && rb_audit_torn(a) &&
	      rb_audit_torn(a)->length == 7, "open zeros");
	CHECK(rb_audit_repair(a) == 0 && finish_run(a) == 0, "repair zeros: %s",
	      rb_audit_error(a));
	rb_audit_close(a);
	CHECK(rb_audit_verify(zlog, &o, &r) == 0, "zeros repaired: %s", r.reason);

	/* A crash in the repair: each moment after the record was saved beside the log. */
	char *ref = join(dir, "ref.jsonl");
	spit(ref, clean, len0);
	fd = open(ref, O_WRONLY | O_APPEND);
	CHECK(write(fd, torn, 13) == 13, "tear ref");
	close(fd);
	CHECK(rb_audit_open(ref, ka, RUN_A, 0, &a, NULL) == 0 && rb_audit_repair(a) == 0,
	      "repair ref");
	rb_audit_close(a);
	size_t rlen;
	char *repaired = slurp(ref, &rlen);
	const char *rline = repaired + len0;
	size_t rl = rlen - len0;
	for (int moment = 0; moment < 4; moment++) {
		char *p = rb_xasprintf("%s/crash%d.jsonl", dir, moment);
		char *ps = rb_xasprintf("%s.repair", p);
		struct rb_buf b;
		rb_buf_init(&b);
		rb_buf_add(&b, clean, len0);
		if (moment == 0)
			rb_buf_add(&b, torn, 13);          /* before the cut */
		else if (moment == 2)
			rb_buf_add(&b, rline, rl / 2);     /* cut, half the record written */
		else if (moment == 3)
			rb_buf_add(&b, rline, rl);         /* all done but removing the file */
		spit(p, b.s, b.len);
		spit(ps, rline, rl);
		rb_buf_release(&b);
		CHECK(rb_audit_open(p, ka, RUN_A, 0, &a, &err) == 0 && !rb_audit_torn(a) &&
		      !strcmp(rb_audit_last_type(a), "log_repaired"),
		      "moment %d: open completes the repair: %s", moment, err);
		CHECK(access(ps, F_OK) < 0, "moment %d: the repair file is removed", moment);
		rb_audit_close(a);
		buf = slurp(p, &len);
		CHECK(len == rlen && !memcmp(buf, repaired, len), "moment %d: the repaired log",
		      moment);
		free(buf);
		free(p);
		free(ps);
	}
	/* A repair file that does not fit the log is not applied. */
	char *ps = rb_xasprintf("%s.repair", log);
	spit(ps, rline, rl);
	CHECK(rb_audit_open(log, ka, RUN_A, 0, &a, &err) < 0 && strstr(err, "does not follow"),
	      "a stray repair file: %s", err);
	free(err);
	err = NULL;
	unlink(ps);

	/* A shared log repairs in its next sync. */
	char *slog = join(dir, "shared_torn.jsonl");
	write_open_run(slog, ka);
	fd = open(slog, O_WRONLY | O_APPEND);
	CHECK(write(fd, torn, 13) == 13, "tear shared");
	close(fd);
	CHECK(rb_audit_open(slog, ka, RUN_A, RB_AUDIT_SHARED, &a, &err) == 0 && rb_audit_torn(a),
	      "open shared torn: %s", err);
	CHECK(finish_run(a) == 0, "shared sync repairs: %s", rb_audit_error(a));
	rb_audit_close(a);
	o.shared = 1;
	CHECK(rb_audit_verify(slog, &o, &r) == 0 && r.records == 7, "shared repaired: %s",
	      r.reason);

	free(ps);
	free(slog);
	free(repaired);
	free(ref);
	free(zlog);
	free(side);
	free(clean);
	free(log);
	rb_audit_keyring_free(kr);
}

/*
 * A PATH.repair that a crash did not leave: forged, signed by a key not
 * trusted, of another type, or not accounting for the bytes it replaces.
 * Open refuses each, naming the file, and changes nothing: the log keeps its
 * bytes and the file stays, to be looked at.
 */
/* A write of a group cut short: whole records of it are there, not its signed end. */
static int cut_after(void *arg, enum rb_journal_point p, size_t *len)
{
	size_t *keep = arg;
	if (p != RB_JP_BEFORE_WRITE)
		return 0;
	if (*keep == 0)
		return EIO;
	if (*len > *keep)
		*len = *keep;
	*keep -= *len;
	return 0;
}

static void t_group_cut(const char *dir, const struct rb_audit_key *ka)
{
	char *log = join(dir, "group_cut.jsonl"), *err = NULL;
	write_open_run(log, ka);                /* 3 records: line 2 signed, line 3 */
	size_t len0;
	char *clean = slurp(log, &len0);
	free(clean);
	struct rb_audit_log *a;
	CHECK(rb_audit_open(log, ka, RUN_A, 0, &a, &err) == 0, "open: %s", err);
	/* A group of three; the write stops 10 bytes into its third line. */
	json_t *recs[] = {rec("action_result", "step", "a", NULL),
			  rec("step_finished", "step", "a", "status", "succeeded", NULL),
			  rec("step_started", "step", "b", NULL)};
	for (int i = 0; i < 3; i++) {
		rb_audit_append(a, recs[i]);
		json_decref(recs[i]);
	}
	CHECK(rb_audit_sync(a) == 0, "the group: %s", rb_audit_error(a));
	rb_audit_close(a);
	size_t full;
	char *buf = slurp(log, &full);
	const char *l6 = buf + len0;
	for (int k = 0; k < 2; k++)
		l6 = strchr(l6, '\n') + 1;
	size_t keep = (size_t)(l6 - buf) + 10;
	CHECK(truncate(log, (off_t)keep) == 0, "cut");
	free(buf);

	struct rb_audit_keyring *kr = ring(ka, NULL);
	struct rb_audit_verify_opts o = {.keyring = kr, .allow_open = 1};
	struct rb_audit_result r;
	CHECK(rb_audit_verify(log, &o, &r) < 0 && r.torn && r.bad_line == 4 &&
	      strstr(r.reason, "2 records without the signature") && strstr(r.reason, "10 bytes"),
	      "verify a cut group: line %" PRIu64 ": %s", r.bad_line, r.reason);
	CHECK(r.records == 3 && r.head.seq == 3, "the verified part: %" PRIu64, r.records);
	struct rb_audit_head h;
	struct rb_audit_torn t;
	CHECK(rb_audit_head(log, &h, &t, NULL) == 0 && h.seq == 3 && t.offset == len0 &&
	      t.records == 2 && t.length == keep - len0, "head before the group: %" PRIu64
	      " torn %" PRIu64 " at %" PRIu64 ", %" PRIu64 " records", h.seq, t.length, t.offset,
	      t.records);
	/* The repair removes the whole group and says how many records it held. */
	CHECK(rb_audit_open(log, ka, RUN_A, 0, &a, &err) == 0 && rb_audit_torn(a) &&
	      rb_audit_torn(a)->records == 2, "open: %s", err);
	CHECK(rb_audit_repair(a) == 0 && finish_run(a) == 0, "repair: %s", rb_audit_error(a));
	rb_audit_close(a);
	o.allow_open = 0;
	CHECK(rb_audit_verify(log, &o, &r) == 0 && r.records == 7, "verify repaired: %s",
	      r.reason);
	buf = slurp(log, &full);
	json_t *rep = json_loadb(buf + len0, strchr(buf + len0, '\n') - (buf + len0), 0, NULL);
	CHECK(!strcmp(json_string_value(json_object_get(rep, "type")), "log_repaired") &&
	      json_integer_value(json_object_get(rep, "records")) == 2 &&
	      json_integer_value(json_object_get(rep, "length")) == (json_int_t)(keep - len0) &&
	      json_is_string(json_object_get(rep, "sig")), "log_repaired of a group");
	json_decref(rep);
	free(buf);

	/* The same cut made by a failing write, through the writer's own hook. */
	char *log2 = join(dir, "group_cut2.jsonl");
	write_open_run(log2, ka);
	CHECK(rb_audit_open(log2, ka, RUN_A, 0, &a, &err) == 0, "open: %s", err);
	size_t cutlen = 20;
	rb_audit_set_hook(a, cut_after, &cutlen);
	json_t *x = rec("step_started", "step", "x", NULL), *y = rec("action_intent", NULL);
	rb_audit_append(a, x);
	rb_audit_append(a, y);
	json_decref(x);
	json_decref(y);
	CHECK(rb_audit_sync(a) < 0, "the write fails");
	rb_audit_close(a);
	CHECK(rb_audit_open(log2, ka, RUN_A, 0, &a, &err) == 0 && rb_audit_torn(a) &&
	      rb_audit_torn(a)->length == 20 && rb_audit_torn(a)->records == 0, "torn 20: %s", err);
	rb_audit_close(a);

	rb_audit_keyring_free(kr);
	free(log);
	free(log2);
}

/* A log of format 1 (a signature on every record, without the context) is named as such. */
static void t_format1(const struct rb_audit_key *ka)
{
	json_t *r1 = rec("run_started", NULL);
	json_object_set_new(r1, "seq", json_integer(1));
	json_object_set_new(r1, "ts", json_string("2026-11-23T17:05:05.137Z"));
	json_object_set_new(r1, "run_id", json_string(RUN_A));
	json_object_set_new(r1, "prev", json_string(ZERO_HASH));
	json_object_set_new(r1, "key_id", json_string(rb_audit_key_id(ka)));
	struct rb_buf b;
	rb_buf_init(&b);
	rb_audit_canon(r1, NULL, &b, NULL);
	unsigned char sig[SIG_LEN];
	char b64[SIG_B64_LEN + 1];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	CHECK(rb_audit_sign_bytes(ka, ctx, b.s, b.len, sig) == 0, "sign");
	EVP_MD_CTX_free(ctx);
	rb_audit_b64(sig, SIG_LEN, b64);
	json_object_set_new(r1, "sig", json_string(b64));
	b.len = 0;
	rb_audit_canon(r1, NULL, &b, NULL);
	rb_buf_putc(&b, '\n');
	struct rb_audit_keyring *kr = ring(ka, NULL);
	struct rb_audit_verify_opts o = {.keyring = kr};
	struct rb_audit_result r;
	CHECK(verify_buf(b.s, b.len, &o, &r) < 0 && r.bad_line == 1 &&
	      strstr(r.reason, "format 1"), "format 1: %s", r.reason);
	char why[200];
	CHECK(rb_audit_check_line(b.s, b.len - 1, kr, why, sizeof(why)) < 0 &&
	      strstr(why, "format 1"), "format 1, one line: %s", why);
	/* A group longer than a signature may cover stops there, not at the end of memory. */
	struct rb_buf big;
	rb_buf_init(&big);
	char prev[65] = ZERO_HASH;
	for (unsigned i = 1; i <= RB_AUDIT_GROUP_MAX + 1; i++) {
		size_t at = big.len;
		rb_buf_printf(&big, "{\"prev\":\"%s\",\"run_id\":\"r\",\"seq\":%u,\"ts\":"
			      "\"2026-11-23T17:05:05.000Z\",\"type\":\"t\"}", prev, i);
		rb_sha256_hex(big.s + at, big.len - at, prev);
		rb_buf_putc(&big, '\n');
	}
	CHECK(verify_buf(big.s, big.len, &o, &r) < 0 && r.bad_line == RB_AUDIT_GROUP_MAX + 1 &&
	      strstr(r.reason, "records without a signature"), "a long group: line %" PRIu64
	      ": %s", r.bad_line, r.reason);
	rb_buf_release(&big);
	rb_audit_keyring_free(kr);
	rb_buf_release(&b);
	json_decref(r1);
}

static void t_forged_repair(const char *dir, const struct rb_audit_key *ka,
			    const struct rb_audit_key *kb)
{
	const char torn[] = "{\"key_id\":\"ab", other[] = "{\"key_id\":\"cd";
	char *clean_path = join(dir, "fr_clean.jsonl"), *err = NULL;
	write_open_run(clean_path, ka);
	size_t len0;
	char *clean = slurp(clean_path, &len0);
	struct rb_audit_log *a;
	struct rb_buf b;
	/* Real repair records: one signed by ka, one by kb, of the same torn tail. */
	char *lines[2];
	size_t lens[2];
	const struct rb_audit_key *keys[2] = {ka, kb};
	for (int k = 0; k < 2; k++) {
		char *p = rb_xasprintf("%s/fr_ref%d.jsonl", dir, k);
		rb_buf_init(&b);
		rb_buf_add(&b, clean, len0);
		rb_buf_add(&b, torn, 13);
		spit(p, b.s, b.len);
		rb_buf_release(&b);
		CHECK(rb_audit_open(p, keys[k], RUN_A, 0, &a, NULL) == 0 && rb_audit_repair(a) == 0,
		      "repair with key %d", k);
		rb_audit_close(a);
		size_t n;
		char *all = slurp(p, &n);
		lens[k] = n - len0;
		lines[k] = rb_xstrndup(all + len0, lens[k]);
		free(all);
		free(p);
	}
	/* The ka record with one byte changed (its length): the signature no longer holds. */
	char *changed = rb_xstrdup(lines[0]);
	char *at = strstr(changed, "\"length\":13");
	CHECK(at != NULL, "the record has its length");
	if (at)
		at[10] = '2';
	/* A record signed by ka, chained to the log's last, but not a repair. */
	char *oth = join(dir, "fr_other.jsonl");
	spit(oth, clean, len0);
	json_t *fin = rec("run_finished", "status", "succeeded", NULL);
	CHECK(rb_audit_open(oth, ka, RUN_A, 0, &a, NULL) == 0 && rb_audit_append(a, fin) == 0 &&
	      rb_audit_sync(a) == 0, "a finished run");
	json_decref(fin);
	rb_audit_close(a);
	size_t on;
	char *oall = slurp(oth, &on);
	char *not_repair = rb_xstrndup(oall + len0, on - len0);
	free(oall);

	struct {
		const char *what, *repair, *tail, *why;
	} cases[] = {
		{"signed by a key not trusted", lines[1], torn, "does not verify"},
		{"changed after it was signed", changed, torn, "does not verify"},
		{"not a log_repaired", not_repair, torn, "not a log_repaired"},
		{"other bytes than it removed", lines[0], other, "does not follow"},
		{"not a record", "{\"seq\":4}\n", torn, "not a record"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		char *p = rb_xasprintf("%s/fr%zu.jsonl", dir, i), *ps = rb_xasprintf("%s.repair", p);
		rb_buf_init(&b);
		rb_buf_add(&b, clean, len0);
		rb_buf_add(&b, cases[i].tail, 13);
		spit(p, b.s, b.len);
		spit(ps, cases[i].repair, strlen(cases[i].repair));
		CHECK(rb_audit_open(p, ka, RUN_A, 0, &a, &err) < 0 && err && strstr(err, ps) &&
		      strstr(err, cases[i].why), "%s: refused: %s", cases[i].what, err);
		size_t n;
		char *now = slurp(p, &n);
		CHECK(n == b.len && !memcmp(now, b.s, n), "%s: the log is unchanged", cases[i].what);
		free(now);
		now = slurp(ps, &n);
		CHECK(n == strlen(cases[i].repair) && !memcmp(now, cases[i].repair, n),
		      "%s: the repair file stays", cases[i].what);
		free(now);
		free(err);
		err = NULL;
		rb_buf_release(&b);
		free(ps);
		free(p);
	}
	/* A planted symlink is not read through. */
	char *p = join(dir, "fr_link.jsonl"), *ps = rb_xasprintf("%s.repair", p);
	char *target = join(dir, "fr_link_target");
	spit(target, lines[0], lens[0]);
	rb_buf_init(&b);
	rb_buf_add(&b, clean, len0);
	rb_buf_add(&b, torn, 13);
	spit(p, b.s, b.len);
	CHECK(symlink(target, ps) == 0, "plant a symlink");
	CHECK(rb_audit_open(p, ka, RUN_A, 0, &a, &err) < 0 && err && strstr(err, ps),
	      "a symlinked repair file is refused: %s", err);
	free(err);
	err = NULL;
	size_t n;
	char *now = slurp(p, &n);
	CHECK(n == b.len && !memcmp(now, b.s, n), "symlink: the log is unchanged");
	free(now);
	/* kb's record completes when kb is trusted. */
	unlink(ps);
	spit(ps, lines[1], lens[1]);
	struct rb_audit_keyring *both = ring(ka, kb);
	CHECK(rb_audit_open_trusted(p, ka, both, RUN_A, 0, &a, &err) == 0 && !rb_audit_torn(a) &&
	      !strcmp(rb_audit_last_type(a), "log_repaired") && access(ps, F_OK) < 0,
	      "a repair signed by a trusted key completes: %s", err);
	CHECK(finish_run(a) == 0, "and the log goes on: %s", rb_audit_error(a));
	rb_audit_close(a);
	struct rb_audit_verify_opts o = {.keyring = both};
	struct rb_audit_result r;
	CHECK(rb_audit_verify(p, &o, &r) == 0 && r.records == 7, "it verifies: %s", r.reason);
	rb_audit_keyring_free(both);
	rb_buf_release(&b);
	free(target);
	free(ps);
	free(p);
	free(not_repair);
	free(oth);
	free(changed);
	free(lines[0]);
	free(lines[1]);
	free(clean);
	free(clean_path);
}

/* --- the shared log, writers and failures --------------------------------------------------- */

static void t_shared(const char *dir, const struct rb_audit_key *ka,
		     const struct rb_audit_key *kb)
{
	char *log = join(dir, "shared.jsonl");
	struct rb_audit_log *a, *b;
	int64_t ca = clock_start(), cb = clock_start();
	CHECK(rb_audit_open(log, ka, RUN_A, RB_AUDIT_SHARED, &a, NULL) == 0 &&
	      rb_audit_open(log, kb, RUN_B, RB_AUDIT_SHARED, &b, NULL) == 0, "open twice");
	rb_audit_set_clock(a, tick, &ca);
	rb_audit_set_clock(b, tick, &cb);
	static const char *const types[] = {"run_started", "step_started", "step_finished",
					    "run_finished"};
	int ok = 1;
	for (int i = 0; i < 4; i++) {
		json_t *x = rec(types[i], NULL);
		ok &= rb_audit_append(a, x) == 0 && rb_audit_sync(a) == 0;
		ok &= rb_audit_append(b, x) == 0 && rb_audit_sync(b) == 0;
		json_decref(x);
	}
	CHECK(ok, "interleaved: %s %s", rb_audit_error(a), rb_audit_error(b));
	rb_audit_close(a);
	rb_audit_close(b);
	struct rb_audit_keyring *kr = ring(ka, kb);
	struct rb_audit_verify_opts o = {.keyring = kr, .shared = 1};
	struct rb_audit_result r;
	CHECK(rb_audit_verify(log, &o, &r) == 0 && r.records == 8 && r.runs == 2,
	      "shared log: %s", r.reason);
	o.shared = 0;
	CHECK(rb_audit_verify(log, &o, &r) < 0 && r.bad_line == 2 && strstr(r.reason, RUN_B),
	      "not a single-run log: %s", r.reason);
	o.shared = 1;
	o.run_id = RUN_A;
	CHECK(rb_audit_verify(log, &o, &r) < 0 && r.bad_line == 0, "shared with a run id");
	o.run_id = NULL;

	/* A single-writer log notices another writer. */
	char *one = join(dir, "one.jsonl");
	CHECK(rb_audit_open(one, ka, RUN_A, 0, &a, NULL) == 0 &&
	      rb_audit_open(one, ka, RUN_A, 0, &b, NULL) == 0, "open twice");
	json_t *x = rec("run_started", NULL);
	CHECK(rb_audit_append(b, x) == 0 && rb_audit_sync(b) == 0, "b writes");
	CHECK(rb_audit_append(a, x) == 0 && rb_audit_sync(a) < 0 &&
	      strstr(rb_audit_error(a), "changed"), "a refuses: %s", rb_audit_error(a));
	CHECK(rb_audit_append(a, x) < 0 && strstr(rb_audit_error(a), "broken"),
	      "broken for good: %s", rb_audit_error(a));
	rb_audit_close(a);
	rb_audit_close(b);

	/* A write that fails (ENOSPC): reported, and the log is broken. */
	if (access("/dev/full", W_OK) == 0) {
		CHECK(rb_audit_open("/dev/full", ka, RUN_A, 0, &a, NULL) == 0, "open /dev/full");
		CHECK(rb_audit_append(a, x) == 0 && rb_audit_sync(a) < 0 &&
		      strstr(rb_audit_error(a), "No space"), "ENOSPC: %s", rb_audit_error(a));
		CHECK(rb_audit_sync(a) < 0, "still broken");
		rb_audit_close(a);
	}
	json_decref(x);
	free(one);
	free(log);
	rb_audit_keyring_free(kr);
}

/* tests/audit.sh's log: the standard run, signed with a key file. */
static int write_log_main(const char *log, const char *keyfile)
{
	struct rb_audit_key *k;
	char *err = NULL;
	if (rb_audit_key_load(keyfile, &k, &err) < 0) {
		fprintf(stderr, "test_audit: %s\n", err);
		free(err);
		return 1;
	}
	int r = write_standard(log, k, RUN_A);
	rb_audit_key_free(k);
	return r < 0 || nfail ? 1 : 0;
}

/* The fuzzer's seed logs (tests/fuzz/audit/), signed with the keys of these tests. */
static int write_corpus(const char *dir)
{
	struct rb_audit_key *ka = seed_key(0xa1), *kb = seed_key(0xb2);
	char *p = join(dir, "standard.jsonl");
	write_standard(p, ka, RUN_A);
	free(p);
	p = join(dir, "rotated.jsonl");
	write_paused_resumed(p, ka, kb, 8);
	free(p);
	p = join(dir, "crashed.jsonl");
	write_open_run(p, ka);
	int fd = open(p, O_WRONLY | O_APPEND);
	if (fd < 0 || write(fd, "{\"key_id\":\"ab", 13) != 13)
		nfail++;
	if (fd >= 0)
		close(fd);
	struct rb_audit_log *a;
	int64_t clk = clock_start() + 10000;
	if (rb_audit_open(p, ka, RUN_A, 0, &a, NULL) == 0) {
		rb_audit_set_clock(a, tick, &clk);
		if (rb_audit_repair(a) < 0 || finish_run(a) < 0)
			nfail++;
		rb_audit_close(a);
	}
	free(p);
	p = join(dir, "shared.jsonl");
	int64_t ca = clock_start(), cb = clock_start() + 50;
	static const char *const types[] = {"run_started", "step_started", "run_finished"};
	for (int i = 0; i < 3; i++) {
		json_t *ra[] = {rec(types[i], NULL)}, *rb[] = {rec(types[i], NULL)};
		write_recs(p, ka, RUN_A, RB_AUDIT_SHARED, &ca, ra, 1);
		write_recs(p, kb, RUN_B, RB_AUDIT_SHARED, &cb, rb, 1);
	}
	free(p);
	rb_audit_key_free(ka);
	rb_audit_key_free(kb);
	return nfail ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--write-log"))
		return write_log_main(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
		return write_corpus(argv[2]);
	char tmpl[] = "/tmp/audit-test-XXXXXX";
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		return 1;
	}
	struct rb_audit_key *ka = seed_key(0xa1), *kb = seed_key(0xb2);
	t_canon();
	t_canon_span();
	t_canon_gaps(tmpl, ka);
	t_keys(tmpl);
	t_checker(ka, kb);
	t_roundtrip(tmpl, ka, kb);
	t_every_byte(tmpl, ka);
	t_lines(tmpl, ka);
	t_reasons(ka, kb);
	t_closing(tmpl, ka, kb);
	t_torn(tmpl, ka);
	t_group_cut(tmpl, ka);
	t_format1(ka);
	t_forged_repair(tmpl, ka, kb);
	t_shared(tmpl, ka, kb);
	rb_audit_key_free(ka);
	rb_audit_key_free(kb);
	rb_test_rm_rf(tmpl);
	printf("audit: %d passed, %d failed\n", npass, nfail);
	return nfail ? 1 : 0;
}
