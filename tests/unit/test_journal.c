/*
 * Tests interp/journal.c, with the rundir.c and durable.c below it: round
 * trips, group commit, compaction (which keeps the whole log), torn tails and
 * their signed repair, corrupt logs, injected write and sync failures, and a
 * crash test that SIGKILLs a child at hundreds of seeded points (inside
 * compaction too) and checks what loads and that the log still verifies as
 * the run's signed audit log.
 *
 * Build and run from the repository root:
 *   make -j2 build/unit/test_journal && build/unit/test_journal
 * The same under make asan (build/asan/unit/test_journal), and under
 *   valgrind --error-exitcode=1 --leak-check=full build/unit/test_journal
 *
 * Usage: test_journal [-v] [--seed N]    the tests; -v says what the crash test did
 *        test_journal --bench DIR...     measure costs in each DIR
 * The tests run in a temp directory on tmpfs (/dev/shm or /tmp) and one on disk
 * (build/, /var/tmp or /tmp), or in the directories of $JOURNAL_TEST_DIRS
 * (colon-separated).  The crash test kills 320 times in all; $JOURNAL_KILLS sets
 * the kill points per directory instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "audit.h"
#include "durable.h"
#include "journal.h"
#include "rundir.h"
#include "util.h"

#define TMPFS_MAGIC_NR  0x01021994
#define KILLS_TOTAL     320     /* kill points over all the test directories */
#define ROUNDS_PER_RUN  25      /* the crash test starts a new run this often */
#define CHILD_ITERS     300

#include "check.h"

static int verbose;
/* The key every test run is signed with (from a fixed seed), and one that signs nothing. */
static struct rb_audit_key *tkey, *other_key;

/* --- helpers ------------------------------------------------------------------- */

static char *join(const char *a, const char *b)
{
	char *s;
	if (asprintf(&s, "%s/%s", a, b) < 0)
		abort();
	return s;
}

static long long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static int file_mode(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static int append_raw(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, buf, len);
	close(fd);
	return w == (ssize_t)len ? 0 : -1;
}

/* The whole file, NUL-terminated, or NULL. */
static char *slurp(const char *path, size_t *len)
{
	char *buf = NULL, *err = NULL;
	size_t n = 0;
	if (rb_read_file(path, 1u << 30, &buf, &n, &err) < 0) {
		free(err);
		return NULL;
	}
	if (len)
		*len = n;
	return buf;
}

/* Line n (from 1) of path without its newline, malloc'd, or NULL when it has none. */
static char *line_at(const char *path, uint64_t n, size_t *len)
{
	size_t flen;
	char *buf = slurp(path, &flen), *p = buf, *line = NULL;
	for (uint64_t i = 1; p && p < buf + flen; i++) {
		char *nl = memchr(p, '\n', (size_t)(buf + flen - p));
		if (!nl)
			break;
		if (i == n) {
			line = strndup(p, (size_t)(nl - p));
			if (len)
				*len = (size_t)(nl - p);
			break;
		}
		p = nl + 1;
	}
	free(buf);
	return line;
}

/* Lines ended by a newline in path. */
static uint64_t count_lines(const char *path)
{
	size_t len;
	char *buf = slurp(path, &len);
	uint64_t n = 0;
	for (size_t i = 0; buf && i < len; i++)
		n += buf[i] == '\n';
	free(buf);
	return n;
}

static char *step_name(uint64_t n)
{
	char *s;
	if (asprintf(&s, "s%" PRIu64, n) < 0)
		abort();
	return s;
}

/* A step's record as the engine writes them (an audit record: its "type" is required). */
static json_t *rec_step(uint64_t n, const char *status)
{
	char *name = step_name(n);
	json_t *r = json_pack("{s:s,s:s,s:s}", "type", "step_finished", "step", name, "status",
			      status);
	free(name);
	return r;
}

static json_t *rec_type(const char *type)
{
	return json_pack("{s:s}", "type", type);
}

/* Append rec and drop the caller's reference. */
static int add(struct rb_journal *j, json_t *rec)
{
	int r = rb_journal_append(j, rec);
	json_decref(rec);
	return r;
}

static uint64_t rec_seq(const json_t *rec)
{
	return (uint64_t)json_integer_value(json_object_get(rec, "seq"));
}

static const char *rec_str(const json_t *rec, const char *key)
{
	const char *s = json_string_value(json_object_get(rec, key));
	return s ? s : "";
}

static uint64_t last_seq(const struct rb_journal *j)
{
	struct rb_journal_stats st;
	rb_journal_stats(j, &st);
	return st.last_seq;
}

/*
 * rb_audit_verify of the run's log with a keyring of key, for run id, open
 * runs allowed (the tests' runs do not end); head, when not NULL, is expected.
 */
static int verify_run(const char *dir, const char *id, const struct rb_audit_key *key,
		      const struct rb_audit_head *head, struct rb_audit_result *r)
{
	struct rb_audit_keyring *kr = rb_audit_keyring_new();
	char *path = join(dir, RB_RUN_JOURNAL);
	if (rb_audit_keyring_add(kr, key, "test", NULL) < 0)
		abort();
	struct rb_audit_verify_opts o = {.keyring = kr, .expected_head = head, .run_id = id,
					 .allow_open = 1};
	int v = rb_audit_verify(path, &o, r);
	rb_audit_keyring_free(kr);
	free(path);
	return v;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* xorshift64*: the crash test's kill points come from one seed. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* What the hooks of the tests do: count points, fail or shorten at one. */
struct hookctx {
	unsigned count[RB_JP_COUNT];
	int fail_point;         /* -1: none */
	unsigned fail_from;     /* fail from this occurrence on (1-based) */
	int fail_errno;
	size_t max_write;       /* 0: writes as asked; else at most this many bytes each */
	/* The crash test's child. */
	int kill_point;         /* -1: none */
	unsigned kill_at;
	int partial;            /* at kill_point BEFORE_WRITE: write part, then die */
	size_t cut;             /* bytes short of the whole write */
	int cutting;
	int killfd;             /* the pipe to the parent, which kills */
};

static void hookctx_init(struct hookctx *h)
{
	memset(h, 0, sizeof(*h));
	h->fail_point = h->kill_point = -1;
}

/*
 * The child stops at its kill point and the parent SIGKILLs it, rather than
 * the child raising SIGKILL itself: valgrind turns a signal a process sends
 * itself into an orderly exit with a report of its open descriptors.
 */
static void stop_here(struct hookctx *h)
{
	uint64_t stop = UINT64_MAX;
	if (write(h->killfd, &stop, sizeof(stop)) != sizeof(stop))
		raise(SIGKILL);
	for (;;)
		pause();
}

static int test_hook(void *arg, enum rb_journal_point p, size_t *len)
{
	struct hookctx *h = arg;
	unsigned c = ++h->count[p];
	if ((int)p == h->kill_point) {
		if (h->cutting)
			stop_here(h);
		if (c == h->kill_at) {
			if (!h->partial)
				stop_here(h);
			/* Write all but the last few bytes of the group, then die. */
			if (*len > h->cut + 1) {
				*len -= h->cut + 1;
				h->cutting = 1;
			} else {
				stop_here(h);
			}
		}
	}
	if ((int)p == h->fail_point && c >= h->fail_from)
		return h->fail_errno;
	if (len && h->max_write && *len > h->max_write)
		*len = h->max_write;
	return 0;
}

/* The logical state of a run: the set of steps its records name, each once. */
static json_t *replay(json_t *snap, json_t *recs, int *dups)
{
	json_t *steps = json_object_get(snap, "steps");
	json_t *st = steps ? json_deep_copy(steps) : json_object();
	size_t i;
	json_t *r;
	*dups = 0;
	json_array_foreach(recs, i, r) {
		const char *name = json_string_value(json_object_get(r, "step"));
		if (!name)
			continue;
		if (json_object_get(st, name))
			(*dups)++;
		json_object_set_new(st, name, json_string(json_string_value(
			json_object_get(r, "status"))));
	}
	return st;
}

/* --- run ids, state dir, listing --------------------------------------------------- */

static void t_run_id(void)
{
	char id[RB_RUN_ID_MAX], id2[RB_RUN_ID_MAX], small[9];
	rb_run_id(id, sizeof(id), 1795445412, 0x7f3a);
	CHECK(!strcmp(id, "20261123-145012-7f3a"), "run id %s", id);
	rb_run_id(id2, sizeof(id2), 1795445413, 0x0001);
	CHECK(strcmp(id, id2) < 0, "run ids sort by time: %s, %s", id, id2);
	rb_run_id(id2, sizeof(id2), 1795445412, 0x12345);
	CHECK(!strcmp(id2, "20261123-145012-2345"), "run id keeps 16 bits: %s", id2);
	rb_run_id(small, sizeof(small), 1795445412, 1);
	CHECK(!strcmp(small, "20261123"), "small buffer: %s", small);
}

static void t_state_dir(void)
{
	char *old = getenv("RUNBOOK_STATE_DIR") ? strdup(getenv("RUNBOOK_STATE_DIR")) : NULL;
	unsetenv("RUNBOOK_STATE_DIR");
	CHECK(!strcmp(rb_state_dir(NULL), ".runbook"), "default state dir");
	setenv("RUNBOOK_STATE_DIR", "/x/env", 1);
	CHECK(!strcmp(rb_state_dir(NULL), "/x/env"), "state dir from the environment");
	CHECK(!strcmp(rb_state_dir("/x/opt"), "/x/opt"), "--state-dir wins");
	if (old)
		setenv("RUNBOOK_STATE_DIR", old, 1);
	else
		unsetenv("RUNBOOK_STATE_DIR");
	free(old);
	char *d = rb_run_dir("/s", "r1");
	CHECK(d && !strcmp(d, "/s/runs/r1"), "run dir %s", d);
	free(d);
}

static void t_runs_list(const char *base)
{
	char *state = join(base, "list"), *err = NULL, **ids;
	size_t n = 9;
	CHECK(rb_runs_list(state, &ids, &n, &err) == 0 && n == 0 && !ids,
	      "no state dir: no runs (%s)", err ? err : "");
	free(err);
	err = NULL;
	static const time_t times[] = { 1795445412, 1795445000, 1795449999 };
	for (int i = 0; i < 3; i++) {
		char id[RB_RUN_ID_MAX];
		struct rb_journal *j;
		rb_run_id(id, sizeof(id), times[i], (unsigned)i);
		CHECK(rb_journal_create(state, id, tkey, &j, &err) == 0, "create %s: %s", id,
		      err ? err : "");
		rb_journal_close(j);
	}
	char *runs = join(state, "runs"), *stray = join(runs, "stray-file"),
	     *dot = join(runs, ".hidden");
	FILE *f = fopen(stray, "w");
	if (f)
		fclose(f);
	mkdir(dot, 0700);
	/* What a crash inside rb_journal_create leaves: not a run, and no obstacle. */
	char *stale = join(runs, ".20261123-150000-0009.tmp"), *sj = join(stale, RB_RUN_JOURNAL);
	mkdir(stale, 0700);
	f = fopen(sj, "w");
	if (f)
		fclose(f);
	CHECK(rb_runs_list(state, &ids, &n, &err) == 0, "list: %s", err ? err : "");
	CHECK(n == 3, "3 runs listed, not %zu", n);
	if (n == 3) {
		CHECK(!strcmp(ids[0], "20261123-160639-0002") && !strcmp(ids[1],
		      "20261123-145012-0000") && !strcmp(ids[2], "20261123-144320-0001"),
		      "newest first: %s %s %s", ids[0], ids[1], ids[2]);
	}
	rb_runs_free(ids, n);
	struct rb_journal *j;
	CHECK(rb_journal_create(state, "20261123-150000-0009", tkey, &j, &err) == 0 &&
	      file_size(stale) == -1, "create over a stale temp directory: %s", err ? err : "");
	rb_journal_close(j);
	free(stale);
	free(sj);
	free(runs);
	free(stray);
	free(dot);
	free(state);
}

/* --- round trip ------------------------------------------------------------------ */

static void t_roundtrip(const char *base)
{
	char *state = join(base, "rt"), *err = NULL;
	struct rb_journal *j = NULL, *j2 = NULL;
	json_t *snap, *recs, *torn;
	struct rb_journal_stats st;
	struct rb_audit_head h, fh;
	struct rb_audit_result vr;
	const char *id = "20260101-000000-0001";

	CHECK(rb_journal_create(state, id, tkey, &j, &err) == 0, "create: %s", err ? err : "");
	if (!j)
		goto out;
	char *dir = rb_run_dir(state, id), *jpath = join(dir, RB_RUN_JOURNAL),
	     *outdir = join(dir, RB_RUN_OUTPUT);
	CHECK(!strcmp(RB_RUN_JOURNAL, "audit.jsonl"), "the journal is the audit log");
	CHECK(file_mode(dir) == 0700, "run dir mode %o", file_mode(dir));
	CHECK(file_mode(jpath) == 0600 && file_size(jpath) == 0, "journal mode %o, size %lld",
	      file_mode(jpath), file_size(jpath));
	CHECK(file_mode(outdir) == 0700, "output dir mode %o", file_mode(outdir));
	CHECK(!strcmp(rb_journal_last_type(j), "") && !rb_journal_torn(j),
	      "a new run has no last record: '%s'", rb_journal_last_type(j));
	rb_journal_head(j, &h);
	CHECK(h.seq == 0, "the head of an empty log is seq 0");

	CHECK(rb_journal_create(state, id, tkey, &j2, &err) == -1 && err &&
	      strstr(err, "already exists"), "create twice: %s", err ? err : "(no error)");
	free(err);
	err = NULL;
	CHECK(rb_journal_open(dir, id, tkey, NULL, &j2, &err) == -1 && err && strstr(err, "another"),
	      "open while open: %s", err ? err : "(no error)");
	free(err);
	err = NULL;

	/* Strings that could break a line-based format if escaped wrongly. */
	json_t *odd = json_pack("{s:s,s:s,s:s%}", "type", "run_started",
				"text", "two\nlines\r\t\"q\" é ☃\x7f", "nul", "a\0b", (size_t)3);
	json_t *odd_copy = json_deep_copy(odd);
	CHECK(rb_journal_append(j, odd) == 0 && last_seq(j) == 1, "append: %s",
	      rb_journal_error(j));
	CHECK(json_equal(odd, odd_copy), "append leaves its record alone (no seq set in it)");
	/* It was copied: what the caller changes later is not journalled. */
	json_object_set_new(odd, "later", json_string("not journalled"));
	for (uint64_t i = 2; i <= 5; i++) {
		CHECK(add(j, rec_step(i, "succeeded")) == 0 && last_seq(j) == i,
		      "append %" PRIu64 ": seq %" PRIu64, i, last_seq(j));
	}
	CHECK(rb_journal_load(dir, NULL, &recs, NULL, &err) == 0 && json_array_size(recs) == 0,
	      "nothing is written before sync");
	json_decref(recs);
	CHECK(rb_journal_sync(j) == 0, "sync: %s", rb_journal_error(j));
	rb_journal_stats(j, &st);
	CHECK(st.last_seq == 5 && st.synced_seq == 5 && st.pending == 0 &&
	      st.journal_records == 5 && st.syncs == 1 && count_lines(jpath) == 5,
	      "stats after sync: last %" PRIu64 " synced %" PRIu64 " records %" PRIu64
	      " syncs %" PRIu64, st.last_seq, st.synced_seq, st.journal_records, st.syncs);
	rb_journal_head(j, &h);
	CHECK(rb_audit_head(jpath, &fh, NULL, &err) == 0 && h.seq == 5 && fh.seq == 5 &&
	      !strcmp(h.sha256, fh.sha256), "rb_journal_head is the file's last record: %s",
	      err ? err : "");

	/* What the audit log refuses, without breaking the journal. */
	static const char *const refused[] = {
		"6", "{\"step\":\"no type\"}", "{\"type\":\"\"}", "{\"type\":\"x\",\"seq\":9}",
		"{\"type\":\"x\",\"sig\":\"forged\"}", "{\"type\":\"x\",\"ratio\":1.5}",
		"{\"type\":\"x\",\"big\":9007199254740993}",
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		json_t *r = json_loads(refused[i], JSON_DECODE_ANY, NULL);
		CHECK(r && rb_journal_append(j, r) == -1 && *rb_journal_error(j) &&
		      last_seq(j) == 5, "%s is refused: %s", refused[i], rb_journal_error(j));
		json_decref(r);
	}
	json_t *real = json_pack("{s:s,s:f}", "type", "x", "ratio", 0.5);
	CHECK(rb_journal_append(j, real) == -1 && strstr(rb_journal_error(j), "real"),
	      "a real is refused by name: %s", rb_journal_error(j));
	json_decref(real);
	rb_journal_stats(j, &st);
	CHECK(st.pending == 0 && rb_journal_sync(j) == 0 && st.syncs == 1,
	      "refused records leave nothing pending");

	CHECK(rb_journal_load(dir, &snap, &recs, &torn, &err) == 0, "load: %s", err ? err : "");
	CHECK(!snap && !torn, "no snapshot, no torn tail");
	CHECK(json_array_size(recs) == 5, "5 records, got %zu", json_array_size(recs));
	json_t *r1 = json_array_get(recs, 0);
	const char *k;
	json_t *v;
	int same = 1;
	json_object_foreach(odd_copy, k, v)
		same &= json_equal(json_object_get(r1, k), v);
	CHECK(same && !json_object_get(r1, "later"), "odd strings survive the round trip");
	/*
	 * As they are in the audit log: the keys the log sets are there, and
	 * the signature only on the last of the five that one sync wrote.
	 */
	json_t *r5 = json_array_get(recs, 4);
	CHECK(rec_seq(r1) == 1 && !strcmp(rec_str(r1, "run_id"), id) &&
	      !json_object_get(r1, "key_id") && !json_object_get(r1, "sig") &&
	      strlen(rec_str(r1, "prev")) == 64 && strspn(rec_str(r1, "prev"), "0") == 64 &&
	      strlen(rec_str(r1, "ts")) == 24 && !strcmp(rec_str(r5, "key_id"),
							   rb_audit_key_id(tkey)) &&
	      strlen(rec_str(r5, "sig")) == 88, "records 1 and 5 as the log wrote them");
	for (size_t i = 0; i < json_array_size(recs); i++)
		CHECK(rec_seq(json_array_get(recs, i)) == i + 1, "seq of record %zu", i);
	json_decref(recs);
	json_decref(odd);
	json_decref(odd_copy);

	/* The journal is the signed audit log: it verifies with the key, not with another. */
	CHECK(verify_run(dir, id, tkey, NULL, &vr) == 0 && vr.records == 5 && vr.head.seq == 5 &&
	      !strcmp(vr.head.sha256, h.sha256), "the log verifies: %s", vr.reason);
	CHECK(verify_run(dir, id, other_key, NULL, &vr) == -1 && vr.bad_line == 5 &&
	      strstr(vr.reason, "keyring"), "not with another key: %s", vr.reason);
	rb_journal_close(j);

	/* Resume: numbering continues, nothing is replayed into the handle. */
	CHECK(rb_journal_open(dir, id, tkey, NULL, &j, &err) == 0, "open: %s", err ? err : "");
	if (j) {
		rb_journal_stats(j, &st);
		CHECK(st.last_seq == 5 && st.synced_seq == 5 && st.journal_records == 5 &&
		      !rb_journal_torn(j), "open continues after 5, at %" PRIu64, st.last_seq);
		CHECK(!strcmp(rb_journal_last_type(j), "step_finished"), "last type '%s'",
		      rb_journal_last_type(j));
		struct rb_audit_head oh;
		rb_journal_head(j, &oh);
		CHECK(oh.seq == 5 && !strcmp(oh.sha256, h.sha256), "head after open");
		CHECK(add(j, rec_step(6, "started")) == 0 && last_seq(j) == 6, "seq 6 after resume");
		/* Close drops what was not synced: it was never durable. */
		rb_journal_close(j);
	}
	CHECK(rb_journal_load(dir, NULL, &recs, NULL, &err) == 0 && json_array_size(recs) == 5,
	      "unsynced record dropped at close");
	json_decref(recs);

	/* The next session goes on from the durable head. */
	CHECK(rb_journal_open(dir, id, tkey, NULL, &j, &err) == 0, "open: %s", err ? err : "");
	if (j) {
		CHECK(add(j, rec_step(6, "succeeded")) == 0 && rb_journal_sync(j) == 0, "sync 6");
		rb_journal_close(j);
	}
	CHECK(verify_run(dir, id, tkey, NULL, &vr) == 0 && vr.records == 6, "6 verify: %s",
	      vr.reason);
	free(dir);
	free(jpath);
	free(outdir);
out:
	free(err);
	free(state);
}

static void t_group_commit(const char *base)
{
	char *state = join(base, "group"), *err = NULL;
	struct rb_journal *j;
	struct hookctx h;
	struct rb_journal_stats st;
	json_t *recs;

	if (rb_journal_create(state, "g", tkey, &j, &err) < 0) {
		CHECK(0, "create: %s", err);
		goto out;
	}
	hookctx_init(&h);
	rb_journal_set_hook(j, test_hook, &h);
	for (uint64_t i = 1; i <= 100; i++)
		add(j, rec_step(i, "succeeded"));
	rb_journal_stats(j, &st);
	CHECK(st.pending == 100 && st.syncs == 0, "100 pending, no sync yet");
	CHECK(rb_journal_sync(j) == 0, "sync: %s", rb_journal_error(j));
	rb_journal_stats(j, &st);
	CHECK(st.syncs == 1 && h.count[RB_JP_AFTER_FDATASYNC] == 1,
	      "100 appends, one fdatasync (stats %" PRIu64 ", hook %u)", st.syncs,
	      h.count[RB_JP_AFTER_FDATASYNC]);
	CHECK(h.count[RB_JP_BEFORE_WRITE] == 1 && h.count[RB_JP_AFTER_WRITE] == 1,
	      "one write for the group, %u", h.count[RB_JP_BEFORE_WRITE]);
	CHECK(rb_journal_sync(j) == 0 && h.count[RB_JP_AFTER_FDATASYNC] == 1,
	      "a sync with nothing pending does not fdatasync");
	rb_journal_close(j);
	char *dir = rb_run_dir(state, "g");
	CHECK(rb_journal_load(dir, NULL, &recs, NULL, &err) == 0 && json_array_size(recs) == 100,
	      "100 records load");
	json_decref(recs);
	free(dir);
out:
	free(err);
	free(state);
}

/*
 * rb_journal_write: the group is written, not synced, for a command's supervisor to sync
 * through rb_journal_gate_fd(), a description of the log's file of its own; the next
 * rb_journal_sync syncs it even with nothing pending.  An injected failure at before-gate
 * gives a pipe, whose fdatasync fails.
 */
static void t_write_then_gate(const char *base)
{
	char *state = join(base, "gate"), *err = NULL;
	struct rb_journal *j;
	struct hookctx h;
	struct rb_journal_stats st;
	struct stat a, b;

	if (rb_journal_create(state, "w", tkey, &j, &err) < 0) {
		CHECK(0, "create: %s", err);
		goto out;
	}
	hookctx_init(&h);
	rb_journal_set_hook(j, test_hook, &h);
	for (uint64_t i = 1; i <= 3; i++)
		add(j, rec_step(i, "succeeded"));
	CHECK(rb_journal_write(j) == 0, "write: %s", rb_journal_error(j));
	rb_journal_stats(j, &st);
	CHECK(st.pending == 0 && st.syncs == 0 && st.synced_seq < st.last_seq &&
	      h.count[RB_JP_AFTER_WRITE] == 1 && h.count[RB_JP_AFTER_FDATASYNC] == 0,
	      "written, not synced (pending %" PRIu64 ", syncs %" PRIu64 ")", st.pending, st.syncs);
	int g = rb_journal_gate_fd(j);
	char *dir = rb_run_dir(state, "w"), *path = rb_xasprintf("%s/%s", dir, RB_RUN_JOURNAL);
	CHECK(g >= 0 && rb_journal_gate_fd(j) == g && h.count[RB_JP_BEFORE_GATE] == 2,
	      "one descriptor, the point visited each time");
	CHECK(g >= 0 && fstat(g, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
	      (fcntl(g, F_GETFL) & O_ACCMODE) == O_RDONLY && (fcntl(g, F_GETFD) & FD_CLOEXEC) &&
	      fdatasync(g) == 0, "the gate is the log, read-only, close-on-exec, and syncs");
	CHECK(rb_journal_sync(j) == 0, "sync: %s", rb_journal_error(j));
	rb_journal_stats(j, &st);
	CHECK(st.syncs == 1 && st.synced_seq == st.last_seq,
	      "the next sync syncs what was written (syncs %" PRIu64 ")", st.syncs);
	CHECK(rb_journal_sync(j) == 0 && (rb_journal_stats(j, &st), st.syncs == 1),
	      "and only once");
	h.fail_point = RB_JP_BEFORE_GATE;
	h.fail_from = 1;
	h.fail_errno = EIO;
	g = rb_journal_gate_fd(j);
	CHECK(g >= 0 && fstat(g, &a) == 0 && S_ISFIFO(a.st_mode) && fdatasync(g) < 0 &&
	      errno == EINVAL && rb_journal_gate_fd(j) == g, "an injected failure gives a pipe");
	rb_journal_close(j);
	free(path);
	free(dir);
out:
	free(err);
	free(state);
}

/* --- compaction ------------------------------------------------------------------ */

static void t_compact(const char *base)
{
	char *state = join(base, "compact"), *err = NULL, sha[65];
	struct rb_journal *j = NULL, *twin = NULL;
	struct rb_journal_stats st;
	struct rb_audit_head h, snaphead;
	struct rb_audit_result vr;
	uint64_t hseq = 0;
	json_t *steps = json_object();

	if (rb_journal_create(state, "c", tkey, &j, &err) < 0 ||
	    rb_journal_create(state, "twin", tkey, &twin, &err) < 0) {
		CHECK(0, "create: %s", err);
		rb_journal_close(j);
		goto out;
	}
	char *dir = rb_run_dir(state, "c"), *tdir = rb_run_dir(state, "twin"),
	     *jpath = join(dir, RB_RUN_JOURNAL);
	CHECK(rb_run_head(dir, &hseq, sha, &err) == 0, "no snapshot, no head: %s",
	      err ? err : "");
	for (uint64_t i = 1; i <= 60; i++) {
		/* Record 1 starts the run; step i succeeds or fails: the state keeps the last status. */
		const char *status = i % 7 ? "succeeded" : "failed";
		if (i == 1) {
			add(j, rec_type("run_started"));
			add(twin, rec_type("run_started"));
		} else {
			add(j, rec_step(i, status));
			add(twin, rec_step(i, status));
			char *name = step_name(i);
			json_object_set_new(steps, name, json_string(status));
			free(name);
		}
		if (i % 5 == 0) {
			rb_journal_sync(j);
			rb_journal_sync(twin);
		}
		if (i == 50) {
			long long before = file_size(jpath);
			json_t *snap = json_pack("{s:O}", "steps", steps);
			CHECK(rb_journal_compact(j, snap) == 0, "compact: %s", rb_journal_error(j));
			json_decref(snap);
			CHECK(file_size(jpath) == before && count_lines(jpath) == 50,
			      "compaction keeps every record in the log (%lld bytes, was %lld)",
			      file_size(jpath), before);
			rb_journal_stats(j, &st);
			CHECK(st.snapshot_seq == 50 && st.journal_records == 0 && st.compactions == 1,
			      "stats after compaction");
			rb_journal_head(j, &h);
			CHECK(rb_run_head(dir, &hseq, sha, &err) == 1 && hseq == 50 && h.seq == 50 &&
			      !strcmp(sha, h.sha256), "the snapshot's head is rb_journal_head: %s",
			      err ? err : "");
		}
	}
	rb_journal_stats(j, &st);
	CHECK(st.journal_records == 10 && st.last_seq == 60, "10 records after the snapshot");
	rb_journal_close(j);
	rb_journal_close(twin);

	json_t *snap, *recs, *tsnap, *trecs;
	int d1, d2;
	CHECK(rb_journal_load(dir, &snap, &recs, NULL, &err) == 0, "load: %s", err ? err : "");
	CHECK(rb_journal_load(tdir, &tsnap, &trecs, NULL, &err) == 0, "load twin");
	CHECK(snap && json_object_size(json_object_get(snap, "steps")) == 49, "snapshot of 49");
	CHECK(json_array_size(recs) == 10 && rec_seq(json_array_get(recs, 0)) == 51,
	      "records 51..60 after the snapshot");
	CHECK(json_array_size(trecs) == 60, "the twin loads all 60");
	json_t *a = replay(snap, recs, &d1), *b = replay(tsnap, trecs, &d2);
	CHECK(json_equal(a, b) && json_equal(a, steps) && d1 == 0 && d2 == 0,
	      "compacted and uncompacted runs give the same state");
	json_decref(a);
	json_decref(b);
	json_decref(snap);
	json_decref(recs);
	json_decref(tsnap);
	json_decref(trecs);
	/* The whole log verifies, with the head the snapshot kept. */
	snaphead.seq = hseq;
	memcpy(snaphead.sha256, sha, sizeof(sha));
	CHECK(verify_run(dir, "c", tkey, &snaphead, &vr) == 0 && vr.records == 60,
	      "the compacted run's log verifies whole, with its head: %s", vr.reason);

	/* Resume after a compaction; compact twice with nothing in between. */
	CHECK(rb_journal_open(dir, "c", tkey, NULL, &j, &err) == 0, "open: %s", err ? err : "");
	if (j) {
		rb_journal_stats(j, &st);
		CHECK(st.last_seq == 60 && st.snapshot_seq == 50 && st.journal_records == 10,
		      "open after compaction: last %" PRIu64 ", %" PRIu64 " after the snapshot",
		      st.last_seq, st.journal_records);
		json_t *snap2 = json_pack("{s:O}", "steps", steps);
		CHECK(rb_journal_compact(j, snap2) == 0 && rb_journal_compact(j, snap2) == 0,
		      "compact twice: %s", rb_journal_error(j));
		json_decref(snap2);
		rb_journal_stats(j, &st);
		CHECK(st.snapshot_seq == 60 && st.journal_records == 0 && st.compactions == 2 &&
		      rb_run_head(dir, &hseq, sha, &err) == 1 && hseq == 60,
		      "the head moved to 60");
		CHECK(add(j, rec_step(61, "succeeded")) == 0 && last_seq(j) == 61 &&
		      rb_journal_sync(j) == 0, "append after compactions");
		rb_journal_close(j);
	}
	CHECK(rb_journal_load(dir, &snap, &recs, NULL, &err) == 0 && json_array_size(recs) == 1 &&
	      rec_seq(json_array_get(recs, 0)) == 61 && count_lines(jpath) == 61,
	      "one record after the new snapshot, 61 in the log");
	json_decref(snap);
	json_decref(recs);
	free(dir);
	free(tdir);
	free(jpath);
out:
	json_decref(steps);
	free(err);
	free(state);
}

/*
 * The windows of a compaction, made to fail rather than crash: the journal
 * stays usable, no record is lost or applied twice, and the log is never cut.
 * A failure before the rename leaves the old snapshot, one after it the new
 * one; after-dir-fsync is visited once the compaction is complete, where an
 * error cannot undo it.
 */
static void t_compact_failures(const char *base)
{
	char *state = join(base, "cfail"), *err = NULL;
	struct rb_journal *j;
	struct hookctx h;
	static const struct {
		enum rb_journal_point p;
		int e;
		int fails;              /* the compaction returns -1 */
		uint64_t want_snap;     /* records the snapshot on disk covers afterwards */
	} cases[] = {
		{ RB_JP_BEFORE_TEMP_WRITE, ENOSPC, 1, 10 },
		{ RB_JP_AFTER_TEMP_WRITE, EIO, 1, 10 },         /* fsync of the temp file fails */
		{ RB_JP_AFTER_TEMP_FSYNC, EXDEV, 1, 10 },       /* rename fails */
		{ RB_JP_AFTER_RENAME, EIO, 1, 20 },             /* directory fsync fails */
		{ RB_JP_AFTER_DIR_FSYNC, EIO, 0, 20 },          /* done: nothing left to fail */
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		char id[16];
		snprintf(id, sizeof(id), "cf%zu", c);
		if (rb_journal_create(state, id, tkey, &j, &err) < 0) {
			CHECK(0, "create: %s", err);
			break;
		}
		const char *pname = rb_journal_point_name(cases[c].p);
		char *dir = rb_run_dir(state, id), *jpath = join(dir, RB_RUN_JOURNAL);
		json_t *steps = json_object();
		for (uint64_t i = 1; i <= 30; i++) {
			add(j, rec_step(i, "succeeded"));
			char *name = step_name(i);
			json_object_set_new(steps, name, json_string("succeeded"));
			free(name);
			if (i % 10)
				continue;
			json_t *snap = json_pack("{s:O}", "steps", steps);
			if (i == 20) {
				hookctx_init(&h);
				h.fail_point = (int)cases[c].p;
				h.fail_from = 1;
				h.fail_errno = cases[c].e;
				rb_journal_set_hook(j, test_hook, &h);
				int r2 = rb_journal_compact(j, snap);
				if (cases[c].fails)
					CHECK(r2 == -1 && strstr(rb_journal_error(j), strerror(cases[c].e)),
					      "%s: compaction fails with %s: %s", pname,
					      strerror(cases[c].e), rb_journal_error(j));
				else
					CHECK(r2 == 0 && h.count[cases[c].p] == 1,
					      "%s: visited once the compaction is done: %s", pname,
					      rb_journal_error(j));
				rb_journal_set_hook(j, NULL, NULL);
				json_t *s, *recs;
				int dups;
				uint64_t hseq = 0;
				char sha[65];
				CHECK(rb_journal_load(dir, &s, &recs, NULL, &err) == 0,
				      "load after failed compaction: %s", err ? err : "");
				json_t *logical = replay(s, recs, &dups);
				uint64_t covered = json_object_size(json_object_get(s, "steps"));
				CHECK(covered == cases[c].want_snap && dups == 0 &&
				      json_equal(logical, steps) &&
				      rb_run_head(dir, &hseq, sha, &err) == 1 &&
				      hseq == cases[c].want_snap,
				      "%s: snapshot covers %" PRIu64 " (head %" PRIu64 "), %d applied twice",
				      pname, covered, hseq, dups);
				CHECK(count_lines(jpath) == 20, "%s: the log keeps its 20 records", pname);
				json_decref(logical);
				json_decref(s);
				json_decref(recs);
			} else {
				CHECK(rb_journal_compact(j, snap) == 0, "%s: compaction %" PRIu64 ": %s",
				      pname, i, rb_journal_error(j));
			}
			json_decref(snap);
		}
		char *tmp = join(dir, "." RB_RUN_SNAPSHOT ".tmp");
		CHECK(file_size(tmp) == -1, "no temp snapshot left behind");
		free(tmp);
		struct rb_journal_stats st;
		rb_journal_stats(j, &st);
		CHECK(st.snapshot_seq == 30 && st.journal_records == 0, "%s: stats at the end", pname);
		rb_journal_close(j);
		json_t *s, *recs;
		int dups;
		CHECK(rb_journal_load(dir, &s, &recs, NULL, &err) == 0, "final load");
		json_t *logical = replay(s, recs, &dups);
		CHECK(json_equal(logical, steps) && dups == 0 && json_array_size(recs) == 0 &&
		      count_lines(jpath) == 30, "%s: the journal stayed usable", pname);
		json_decref(logical);
		json_decref(s);
		json_decref(recs);
		json_decref(steps);
		free(dir);
		free(jpath);
	}
	free(err);
	free(state);
}

/* --- torn tails and corruption ------------------------------------------------------ */

/*
 * Replace the first from in path with to (same length), or with to NULL cut
 * the file there and close the object ("}\n"); 1 if from was there.
 */
static int edit_file(const char *path, const char *from, const char *to)
{
	size_t len;
	char *buf = slurp(path, &len), *at = buf ? strstr(buf, from) : NULL;
	if (at) {
		if (to)
			memcpy(at, to, strlen(to));
		else
			len = (size_t)(stpcpy(at, "}\n") - buf);
		FILE *f = fopen(path, "w");
		if (!f || fwrite(buf, 1, len, f) != len)
			at = NULL;
		if (f)
			fclose(f);
	}
	free(buf);
	return at != NULL;
}

/* A run with records 1..n synced (1 is run_started, then steps); returns its directory. */
static char *make_run(const char *state, const char *id, uint64_t n)
{
	struct rb_journal *j;
	char *err = NULL;
	if (rb_journal_create(state, id, tkey, &j, &err) < 0) {
		CHECK(0, "create %s: %s", id, err);
		free(err);
		return NULL;
	}
	for (uint64_t i = 1; i <= n; i++)
		add(j, i == 1 ? rec_type("run_started") : rec_step(i, "succeeded"));
	CHECK(rb_journal_sync(j) == 0, "sync %s", id);
	rb_journal_close(j);
	return rb_run_dir(state, id);
}

/* The bytes of base64 s, malloc'd. */
static unsigned char *unb64(const char *s, size_t *n)
{
	size_t len = strlen(s);
	unsigned char *out = malloc(len / 4 * 3 + 1);
	int r = out ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)len) : -1;
	if (r < 0) {
		free(out);
		return NULL;
	}
	*n = (size_t)r - (len >= 1 && s[len - 1] == '=') - (len >= 2 && s[len - 2] == '=');
	return out;
}

/*
 * Open a run whose log ends in torn (len bytes at offset off): open repairs it
 * with a log_repaired record at off that says what was removed, durable before
 * it returns; appending goes on after it and the log verifies.
 */
static void check_repair(const char *dir, const char *id, uint64_t nrec, long long off,
			 const char *torn, size_t len, const char *what)
{
	char *jpath = join(dir, RB_RUN_JOURNAL), *side = join(dir, RB_RUN_JOURNAL ".repair");
	char *err = NULL, hex[65];
	struct rb_journal *j;
	struct rb_audit_result vr;
	json_t *recs, *t;

	CHECK(verify_run(dir, id, tkey, NULL, &vr) == -1 && vr.torn && vr.bad_line == nrec + 1,
	      "%s: the torn log does not verify: %s", what, vr.reason);
	char *before = line_at(jpath, nrec, NULL);
	CHECK(rb_journal_open(dir, id, tkey, NULL, &j, &err) == 0, "%s: open torn: %s", what,
	      err ? err : "");
	if (!j)
		goto out;
	const json_t *found = rb_journal_torn(j);
	CHECK(found && json_integer_value(json_object_get(found, "offset")) == off &&
	      json_integer_value(json_object_get(found, "length")) == (json_int_t)len,
	      "%s: open reports what it found", what);
	CHECK(!strcmp(rb_journal_last_type(j), nrec == 1 ? "run_started" : "step_finished"),
	      "%s: the last type is of the record before the tail: %s", what,
	      rb_journal_last_type(j));
	CHECK(last_seq(j) == nrec + 1 && file_size(side) == -1,
	      "%s: the repair is record %" PRIu64 ", its side file gone", what, last_seq(j));
	/* Durable before open returned: load sees it without anything else done. */
	CHECK(rb_journal_load(dir, NULL, &recs, &t, &err) == 0 && !t &&
	      json_array_size(recs) == nrec + 1, "%s: the repaired log loads whole", what);
	json_t *rep = json_array_get(recs, nrec);
	size_t dlen = 0;
	unsigned char *data = unb64(rec_str(rep, "data"), &dlen);
	rb_sha256_hex(torn, len, hex);
	CHECK(!strcmp(rec_str(rep, "type"), "log_repaired") && rec_seq(rep) == nrec + 1 &&
	      json_integer_value(json_object_get(rep, "offset")) == off &&
	      json_integer_value(json_object_get(rep, "length")) == (json_int_t)len &&
	      !strcmp(rec_str(rep, "sha256"), hex) && data && dlen == len &&
	      !memcmp(data, torn, len), "%s: log_repaired says what was removed", what);
	free(data);
	json_decref(recs);
	char *after = line_at(jpath, nrec, NULL);
	CHECK(before && after && !strcmp(before, after) && file_size(jpath) > off,
	      "%s: the records before the tail are untouched", what);
	free(before);
	free(after);
	CHECK(add(j, rec_step(nrec + 2, "succeeded")) == 0 && last_seq(j) == nrec + 2 &&
	      rb_journal_sync(j) == 0, "%s: append after the repair", what);
	rb_journal_close(j);
	CHECK(rb_journal_load(dir, NULL, &recs, &t, &err) == 0 && !t &&
	      json_array_size(recs) == nrec + 2, "%s: loads after the repair", what);
	json_decref(recs);
	CHECK(verify_run(dir, id, tkey, NULL, &vr) == 0 && vr.records == nrec + 2,
	      "%s: the repaired log verifies: %s", what, vr.reason);
out:
	free(err);
	free(jpath);
	free(side);
}

static void t_torn(const char *base)
{
	char *state = join(base, "torn"), *err = NULL;
	json_t *snap, *recs, *torn;
	struct rb_journal *j;

	/* Half a line, as a crash in the middle of write(2) leaves it. */
	char *dir = make_run(state, "half", 3);
	if (!dir)
		goto out;
	char *jpath = join(dir, RB_RUN_JOURNAL);
	long long good = file_size(jpath);
	size_t l3len = 0;
	char *l3 = line_at(jpath, 3, &l3len);
	size_t half = l3len / 2;
	append_raw(jpath, l3, half);
	CHECK(rb_journal_load(dir, &snap, &recs, &torn, &err) == 0, "load torn: %s",
	      err ? err : "");
	CHECK(json_array_size(recs) == 3, "the 3 records before the torn tail");
	CHECK(torn && json_integer_value(json_object_get(torn, "offset")) == good &&
	      json_integer_value(json_object_get(torn, "length")) == (json_int_t)half &&
	      json_integer_value(json_object_get(torn, "line")) == 4,
	      "torn tail at offset %lld, length %zu, line 4", good, half);
	const char *text = json_string_value(json_object_get(torn, "text"));
	CHECK(text && strlen(text) == half && !strncmp(text, l3, half), "torn text");
	json_decref(recs);
	json_decref(torn);
	check_repair(dir, "half", 3, good, l3, half, "half a line");
	free(l3);
	free(jpath);
	free(dir);

	/* A whole record without its newline is torn too: the next one would join it. */
	dir = make_run(state, "nonl", 2);
	jpath = join(dir, RB_RUN_JOURNAL);
	good = file_size(jpath);
	char *l2 = line_at(jpath, 2, NULL);
	append_raw(jpath, l2, strlen(l2));
	CHECK(rb_journal_load(dir, NULL, &recs, &torn, &err) == 0 && json_array_size(recs) == 2 &&
	      torn, "record without newline is a torn tail");
	json_decref(recs);
	json_decref(torn);
	check_repair(dir, "nonl", 2, good, l2, strlen(l2), "no newline");
	free(l2);
	free(jpath);
	free(dir);

	/* Zeros, as a power loss can leave after the size was updated. */
	dir = make_run(state, "zeros", 1);
	jpath = join(dir, RB_RUN_JOURNAL);
	good = file_size(jpath);
	static const char zeros[600];
	append_raw(jpath, zeros, sizeof(zeros));
	CHECK(rb_journal_load(dir, NULL, &recs, &torn, &err) == 0 && json_array_size(recs) == 1 &&
	      torn && json_integer_value(json_object_get(torn, "length")) == 600 &&
	      !json_object_get(torn, "text"), "zeros are a torn tail, shown in hex only");
	json_decref(recs);
	json_decref(torn);
	check_repair(dir, "zeros", 1, good, zeros, sizeof(zeros), "zeros");
	free(jpath);
	free(dir);

	/* A bad line with good records after it is corruption, not a torn tail. */
	dir = make_run(state, "mid", 2);
	jpath = join(dir, RB_RUN_JOURNAL);
	l2 = line_at(jpath, 2, NULL);
	append_raw(jpath, "x\n", 2);
	append_raw(jpath, l2, strlen(l2));
	append_raw(jpath, "\n", 1);
	long long size = file_size(jpath);
	recs = NULL;
	CHECK(rb_journal_load(dir, NULL, &recs, NULL, &err) == -1 && err && strstr(err, jpath) &&
	      strstr(err, ":3:") && strstr(err, "corrupt") && !recs, "bad line in the middle: %s",
	      err ? err : "");
	free(err);
	err = NULL;
	CHECK(rb_journal_open(dir, "mid", tkey, NULL, &j, &err) == -1 && !j && err && strstr(err, ":3:"),
	      "open refuses a corrupt journal: %s", err ? err : "");
	CHECK(file_size(jpath) == size, "and leaves it as it was");
	free(err);
	err = NULL;
	free(l2);
	free(jpath);
	free(dir);

	/*
	 * A record changed in the middle, still valid JSON with its seq: the
	 * chain finds it (the next record's prev), for every reader; and a
	 * first record whose prev is not zeros.  Nothing is changed by trying.
	 */
	static const char *const edits[][2] = {
		{ "\"step\":\"s2\"", "\"step\":\"s9\"" },      /* in record 2 of 3 */
		{ "\"prev\":\"000", "\"prev\":\"100" },          /* record 1's prev */
	};
	for (size_t e = 0; e < sizeof(edits) / sizeof(*edits); e++) {
		char id[16];
		snprintf(id, sizeof(id), "edited%zu", e);
		dir = make_run(state, id, 3);
		jpath = join(dir, RB_RUN_JOURNAL);
		CHECK(edit_file(jpath, edits[e][0], edits[e][1]), "edit %zu: '%s' is in the log", e,
		      edits[e][0]);
		size = file_size(jpath);
		recs = NULL;
		const char *want = e == 0 ? ":3: prev is not the SHA-256 of line 2: the journal was changed"
				   : ":1: prev is not 64 zeros in the first record";
		CHECK(rb_journal_load(dir, NULL, &recs, NULL, &err) == -1 && err && strstr(err, jpath) &&
		      strstr(err, want) && !recs, "edit %zu: load: %s", e, err ? err : "");
		free(err);
		err = NULL;
		CHECK(rb_journal_open(dir, id, tkey, NULL, &j, &err) == -1 && !j && err && strstr(err, want),
		      "edit %zu: open refuses it: %s", e, err ? err : "");
		CHECK(file_size(jpath) == size, "edit %zu: and leaves it as it was", e);
		free(err);
		err = NULL;
		free(jpath);
		free(dir);
	}

	/*
	 * A last line that ends in a newline, holds no NUL and does not read: no
	 * crash leaves one.  Load shows it as a torn tail; open refuses the log
	 * (the audit layer takes only a cut line or NUL lines for torn) and
	 * changes nothing.
	 */
	dir = make_run(state, "junk", 2);
	jpath = join(dir, RB_RUN_JOURNAL);
	append_raw(jpath, "x\n", 2);
	size = file_size(jpath);
	CHECK(rb_journal_load(dir, NULL, &recs, &torn, &err) == 0 && json_array_size(recs) == 2 &&
	      torn && json_integer_value(json_object_get(torn, "line")) == 3,
	      "a junk last line loads as torn: %s", err ? err : "");
	json_decref(recs);
	json_decref(torn);
	CHECK(rb_journal_open(dir, "junk", tkey, NULL, &j, &err) == -1 && !j && err &&
	      strstr(err, "does not read") && file_size(jpath) == size,
	      "open refuses a junk last line: %s", err ? err : "(no error)");
	free(err);
	err = NULL;
	free(jpath);
	free(dir);

	/* A gap in the seq numbers. */
	dir = make_run(state, "gap", 2);
	jpath = join(dir, RB_RUN_JOURNAL);
	l2 = line_at(jpath, 2, NULL);
	json_t *r4 = json_loads(l2, 0, NULL);
	json_object_set_new(r4, "seq", json_integer(4));
	char *l4 = json_dumps(r4, JSON_COMPACT);
	append_raw(jpath, l4, strlen(l4));
	append_raw(jpath, "\n", 1);
	CHECK(rb_journal_load(dir, NULL, &recs, NULL, &err) == -1 && err && strstr(err, ":3:") &&
	      strstr(err, "seq 4 where 3"), "seq gap: %s", err ? err : "");
	free(err);
	err = NULL;
	CHECK(rb_journal_open(dir, "gap", tkey, NULL, &j, &err) == -1 && !j && err &&
	      strstr(err, "seq 4 where 3"), "open refuses a gap: %s", err ? err : "");
	free(err);
	err = NULL;
	json_decref(r4);
	free(l4);
	free(l2);
	free(jpath);
	free(dir);

	/*
	 * A log that ends before the snapshot's head was cut (compaction syncs
	 * the log before it writes the snapshot, so no crash leaves this): the
	 * records after the cut are missing, and a resume must not number new
	 * records with seqs the snapshot already covers, which load would skip.
	 */
	dir = make_run(state, "cut", 5);
	jpath = join(dir, RB_RUN_JOURNAL);
	CHECK(rb_journal_open(dir, "cut", tkey, NULL, &j, &err) == 0, "open: %s", err ? err : "");
	if (j) {
		json_t *st5 = json_object();
		CHECK(rb_journal_compact(j, st5) == 0, "compact at 5: %s", rb_journal_error(j));
		json_decref(st5);
		rb_journal_close(j);
	}
	char *l1 = line_at(jpath, 1, NULL), *l2c = line_at(jpath, 2, NULL);
	long long cut_at = l1 && l2c ? (long long)(strlen(l1) + strlen(l2c) + 2) : 0;
	CHECK(cut_at > 0 && truncate(jpath, cut_at) == 0, "cut the log after record 2");
	free(l1);
	free(l2c);
	recs = NULL;
	CHECK(rb_journal_load(dir, NULL, &recs, NULL, &err) == -1 && !recs && err &&
	      strstr(err, jpath) && strstr(err, "missing"), "a log cut before the snapshot's "
	      "head: %s", err ? err : "(no error)");
	free(err);
	err = NULL;
	j = NULL;
	CHECK(rb_journal_open(dir, "cut", tkey, NULL, &j, &err) == -1 && !j && err &&
	      strstr(err, "missing"), "open refuses it: %s", err ? err : "(no error)");
	if (j)
		rb_journal_close(j);
	free(err);
	err = NULL;
	free(jpath);
	free(dir);

	/* A snapshot that does not read, and a run without a journal. */
	dir = make_run(state, "badsnap", 1);
	CHECK(rb_write_durable(dir, RB_RUN_SNAPSHOT, "{\"seq\":", 7, 0600, &err) == 0, "write");
	CHECK(rb_journal_load(dir, NULL, &recs, NULL, &err) == -1 && err &&
	      strstr(err, "invalid snapshot") && strstr(err, RB_RUN_SNAPSHOT ":1:"),
	      "bad snapshot: %s", err ? err : "");
	free(err);
	err = NULL;
	uint64_t hseq;
	char sha[65];
	CHECK(rb_run_head(dir, &hseq, sha, &err) == -1 && err, "no head in a bad snapshot: %s",
	      err ? err : "");
	free(err);
	err = NULL;
	jpath = join(dir, RB_RUN_JOURNAL);
	unlink(jpath);
	CHECK(rb_journal_open(dir, "badsnap", tkey, NULL, &j, &err) == -1 && err &&
	      strstr(err, "not a run"), "no journal: %s", err ? err : "");
	free(err);
	err = NULL;
	CHECK(rb_journal_open("/nonexistent/run", "x", tkey, NULL, &j, &err) == -1 && err &&
	      strstr(err, "No such file"), "missing run: %s", err ? err : "");
	free(jpath);
	free(dir);
out:
	free(err);
	free(state);
}

/*
 * Readers take no lock: a load while another process appends and compacts
 * must always read (a record being written may show as a torn tail), with the
 * records after the snapshot following it directly.  The race it watches
 * (a snapshot newer than the log read before it) has a narrow window: it
 * failed here reliably only with a delay put between the two reads.
 */
/* --- what a resume trusts: rb_journal_open with a keyring ------------------------------- */

/* A run with 3 records, a compaction, and 1 record after it; returns its directory. */
static char *make_compacted(const char *state, const char *id)
{
	struct rb_journal *j;
	char *err = NULL;
	if (rb_journal_create(state, id, tkey, &j, &err) < 0) {
		CHECK(0, "create %s: %s", id, err);
		free(err);
		return NULL;
	}
	add(j, rec_type("run_started"));
	add(j, rec_step(2, "succeeded"));
	add(j, rec_step(3, "failed"));
	json_t *snap = json_pack("{s:{s:s,s:s}}", "steps", "s2", "succeeded", "s3", "failed");
	CHECK(rb_journal_compact(j, snap) == 0, "compact %s: %s", id, rb_journal_error(j));
	json_decref(snap);
	add(j, rec_step(4, "succeeded"));
	CHECK(rb_journal_sync(j) == 0, "sync %s", id);
	rb_journal_close(j);
	return rb_run_dir(state, id);
}

static void t_trust(const char *base)
{
	char *state = join(base, "trust"), *err = NULL;
	struct rb_audit_keyring *mine = rb_audit_keyring_new(), *theirs = rb_audit_keyring_new();
	struct rb_journal *j = NULL;
	CHECK(rb_audit_keyring_add(mine, tkey, "tkey", &err) == 0 &&
	      rb_audit_keyring_add(theirs, other_key, "other", &err) == 0, "keyrings: %s",
	      err ? err : "");

	/* A run as the journal wrote it opens with its key trusted, again and again. */
	char *dir = make_compacted(state, "good");
	char *spath = join(dir, RB_RUN_SNAPSHOT), *jpath = join(dir, RB_RUN_JOURNAL);
	char *snap = slurp(spath, NULL);
	CHECK(snap && strstr(snap, "\"version\":2") && strstr(snap, "\"key_id\":\"") &&
	      strstr(snap, "\"}\n") && strstr(snap, ",\"sig\":\""), "the snapshot is signed: %s",
	      snap ? snap : "");
	free(snap);
	for (int k = 0; k < 2; k++) {
		CHECK(rb_journal_open(dir, "good", tkey, mine, &j, &err) == 0, "open %d with trust: %s",
		      k, err ? err : "");
		free(err);
		err = NULL;
		json_t *empty = json_pack("{s:{}}", "steps");
		CHECK(!j || rb_journal_compact(j, empty) == 0, "compact %d after a trusted open", k);
		json_decref(empty);
		rb_journal_close(j);
		j = NULL;
	}
	/* Signed by a key not trusted: refused, unless the keyring holds it. */
	long long size = file_size(jpath);
	CHECK(rb_journal_open(dir, "good", other_key, theirs, &j, &err) == -1 && !j && err &&
	      strstr(err, "the run's last record does not verify: signed by key") &&
	      strstr(err, "not in the keyring"), "another key is not trusted: %s", err ? err : "");
	free(err);
	err = NULL;
	CHECK(file_size(jpath) == size, "and the log is as it was");
	CHECK(rb_audit_keyring_add(theirs, tkey, "tkey", &err) == 0 &&
	      rb_journal_open(dir, "good", other_key, theirs, &j, &err) == 0,
	      "trusted by --keyring, another key resumes: %s", err ? err : "");
	free(err);
	err = NULL;
	rb_journal_close(j);
	j = NULL;

	/* status and runs load it with the same checks; a key they lack is said, not refused. */
	struct rb_audit_keyring *stranger = rb_audit_keyring_new();
	CHECK(rb_audit_keyring_add(stranger, other_key, "other", &err) == 0, "stranger's keyring");
	json_t *recs = NULL;
	char *unverified = NULL;
	CHECK(rb_journal_load_trusted(dir, mine, NULL, &recs, NULL, &unverified, &err) == 0 &&
	      recs && !unverified, "load with its key: verified (%s)", unverified ? unverified : "");
	json_decref(recs);
	recs = NULL;
	CHECK(rb_journal_load_trusted(dir, stranger, NULL, &recs, NULL, &unverified, &err) == 0 &&
	      recs && unverified && strstr(unverified, RB_RUN_JOURNAL ":") &&
	      strstr(unverified, "which is not in the keyring"),
	      "load without its key: shown, not verified: %s", unverified ? unverified : "");
	json_decref(recs);
	recs = NULL;
	free(unverified);
	unverified = NULL;
	/* A version 1 snapshot (unsigned) cannot be checked: said when loading, refused on open. */
	json_t *v2 = json_load_file(spath, 0, NULL);
	json_object_set_new(v2, "version", json_integer(1));
	json_object_del(v2, "key_id");
	json_object_del(v2, "sig");
	CHECK(v2 && json_dump_file(v2, spath, JSON_COMPACT) == 0, "a version 1 snapshot");
	json_decref(v2);
	CHECK(rb_journal_load_trusted(dir, mine, NULL, &recs, NULL, &unverified, &err) == 0 &&
	      unverified && strstr(unverified, "the snapshot is of version 1, which is not signed"),
	      "load of a version 1 snapshot: not verified: %s", unverified ? unverified : "");
	json_decref(recs);
	free(unverified);
	CHECK(rb_journal_open(dir, "good", tkey, mine, &j, &err) == -1 && !j && err &&
	      strstr(err, "the snapshot does not verify"), "resume refuses it: %s", err ? err : "");
	free(err);
	err = NULL;
	rb_audit_keyring_free(stranger);
	free(spath);
	free(jpath);
	free(dir);

	/* Changes no chain shows: the last record, the snapshot's state, its head, no sig. */
	static const struct {
		const char *file, *from, *to, *want;
	} edits[] = {
		{ RB_RUN_JOURNAL, "\"step\":\"s4\"", "\"step\":\"s5\"",
		  "the run's last record does not verify: the signature does not verify" },
		{ RB_RUN_SNAPSHOT, "\"s3\":\"failed\"", "\"s3\":\"faile!\"",
		  "the snapshot does not verify: the signature does not verify" },
		{ RB_RUN_SNAPSHOT, "\"head\":{\"seq\":3", "\"head\":{\"seq\":2",
		  "the snapshot does not verify: the signature does not verify" },
		{ RB_RUN_SNAPSHOT, ",\"sig\":\"", NULL, "the snapshot does not verify: not signed" },
	};
	for (size_t e = 0; e < sizeof(edits) / sizeof(*edits); e++) {
		char id[16];
		snprintf(id, sizeof(id), "edit%zu", e);
		dir = make_compacted(state, id);
		char *path = join(dir, edits[e].file);
		jpath = join(dir, RB_RUN_JOURNAL);
		CHECK(edit_file(path, edits[e].from, edits[e].to), "edit %zu: '%s' in %s", e,
		      edits[e].from, edits[e].file);
		size = file_size(jpath);
		CHECK(rb_journal_open(dir, id, tkey, mine, &j, &err) == -1 && !j && err &&
		      strstr(err, edits[e].want), "edit %zu refused: %s", e, err ? err : "");
		free(err);
		err = NULL;
		rb_journal_close(j);    /* (when the check above failed) */
		j = NULL;
		CHECK(file_size(jpath) == size, "edit %zu: the log is as it was", e);
		recs = NULL;
		CHECK(rb_journal_load_trusted(dir, mine, NULL, &recs, NULL, NULL, &err) == -1 && !recs &&
		      err && strstr(err, edits[e].want), "edit %zu: status refuses it: %s", e,
		      err ? err : "");
		free(err);
		err = NULL;
		/* Without a keyring the journal opens it: the check is the resume's. */
		CHECK(rb_journal_open(dir, id, tkey, NULL, &j, &err) == 0,
		      "edit %zu: opens without trust: %s", e, err ? err : "");
		free(err);
		err = NULL;
		rb_journal_close(j);
		j = NULL;
		free(path);
		free(jpath);
		free(dir);
	}

	/* A snapshot signed, but of another run of the same key: its head is not this log's. */
	char *a = make_compacted(state, "runa"), *b = make_compacted(state, "runb");
	char *sa = join(a, RB_RUN_SNAPSHOT), *sb = join(b, RB_RUN_SNAPSHOT);
	size_t n;
	char *bytes = slurp(sa, &n);
	FILE *f = fopen(sb, "w");
	CHECK(bytes && f && fwrite(bytes, 1, n, f) == n, "copy a snapshot");
	if (f)
		fclose(f);
	CHECK(rb_journal_open(b, "runb", tkey, mine, &j, &err) == -1 && !j && err &&
	      strstr(err, "the snapshot's head is not the log's record at seq 3"),
	      "another run's snapshot refused: %s", err ? err : "");
	free(err);
	free(bytes);
	free(sa);
	free(sb);
	free(a);
	free(b);
	rb_audit_keyring_free(mine);
	rb_audit_keyring_free(theirs);
	free(state);
}

static void t_concurrent_load(const char *base)
{
	char *state = join(base, "conc"), *err = NULL;
	char *dir = make_run(state, "c", 1);
	if (!dir)
		goto out;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		struct rb_journal *j;
		if (rb_journal_open(dir, "c", tkey, NULL, &j, NULL) < 0)
			_exit(3);
		json_t *steps = json_object();
		for (uint64_t i = 2; i <= 400; i++) {
			json_t *r = rec_step(i, "succeeded");
			json_object_set(steps, rec_str(r, "step"), json_object_get(r, "status"));
			if (add(j, r) < 0 || rb_journal_sync(j) < 0)
				_exit(4);
			json_t *snap = json_pack("{s:O}", "steps", steps);
			if (i % 3 == 0 && rb_journal_compact(j, snap) < 0)
				_exit(4);
			json_decref(snap);
		}
		json_decref(steps);
		rb_journal_close(j);
		_exit(0);
	}
	int loads = 0, bad = 0, status = -1;
	for (;;) {
		json_t *snap, *recs;
		int dups;
		if (rb_journal_load(dir, &snap, &recs, NULL, &err) < 0) {
			if (!bad++)
				CHECK(0, "load while another process compacts: %s", err);
			free(err);
			err = NULL;
		} else {
			json_t *st = replay(snap, recs, &dups);
			uint64_t n = json_object_size(st);
			for (uint64_t k = 2; k <= n + 1; k++) {
				char *name = step_name(k);
				bad += !json_object_get(st, name);
				free(name);
			}
			bad += dups;
			json_decref(st);
			json_decref(snap);
			json_decref(recs);
		}
		loads++;
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0 && bad == 0,
	      "%d loads during appends and compactions, %d bad (writer status %d)", loads, bad,
	      status);
	free(dir);
out:
	free(err);
	free(state);
}

/* --- failures ------------------------------------------------------------------------- */

static void t_write_failure(const char *base)
{
	char *state = join(base, "wfail"), *err = NULL;
	struct rb_journal *j;
	struct hookctx h;
	struct rb_journal_stats st;
	json_t *recs, *torn;

	/* write(2) fails at once with ENOSPC. */
	char *dir = make_run(state, "enospc", 3);
	if (!dir || rb_journal_open(dir, "enospc", tkey, NULL, &j, &err) < 0) {
		CHECK(0, "open: %s", err ? err : "");
		goto out;
	}
	hookctx_init(&h);
	h.fail_point = RB_JP_BEFORE_WRITE;
	h.fail_from = 1;
	h.fail_errno = ENOSPC;
	rb_journal_set_hook(j, test_hook, &h);
	add(j, rec_step(4, "succeeded"));
	CHECK(rb_journal_sync(j) == -1 && strstr(rb_journal_error(j), "No space left") &&
	      strstr(rb_journal_error(j), RB_RUN_JOURNAL),
	      "ENOSPC is an error: %s", rb_journal_error(j));
	rb_journal_stats(j, &st);
	CHECK(st.synced_seq == 3 && st.syncs == 0, "nothing claimed durable after ENOSPC");
	rb_journal_set_hook(j, NULL, NULL);
	json_t *r = rec_step(5, "succeeded");
	CHECK(rb_journal_append(j, r) == -1 && rb_journal_sync(j) == -1 &&
	      rb_journal_compact(j, r) == -1 && strstr(rb_journal_error(j), "earlier failure"),
	      "the journal stays broken: %s", rb_journal_error(j));
	json_decref(r);
	rb_journal_close(j);
	CHECK(rb_journal_load(dir, NULL, &recs, &torn, &err) == 0 && json_array_size(recs) == 3 &&
	      !torn, "the synced records are intact");
	json_decref(recs);
	free(dir);

	/* A short write, then ENOSPC: half a group on disk, a torn tail. */
	dir = make_run(state, "short", 3);
	if (!dir || rb_journal_open(dir, "short", tkey, NULL, &j, &err) < 0) {
		CHECK(0, "open: %s", err ? err : "");
		goto out;
	}
	hookctx_init(&h);
	h.fail_point = RB_JP_BEFORE_WRITE;
	h.fail_from = 2;
	h.fail_errno = ENOSPC;
	h.max_write = 30;
	rb_journal_set_hook(j, test_hook, &h);
	for (uint64_t i = 4; i <= 6; i++)
		add(j, rec_step(i, "succeeded"));
	CHECK(rb_journal_sync(j) == -1 && h.count[RB_JP_BEFORE_WRITE] == 2 &&
	      strstr(rb_journal_error(j), "No space left"), "short write then ENOSPC: %s",
	      rb_journal_error(j));
	rb_journal_close(j);
	CHECK(rb_journal_load(dir, NULL, &recs, &torn, &err) == 0 && json_array_size(recs) == 3 &&
	      torn && json_integer_value(json_object_get(torn, "length")) == 30,
	      "the 30 bytes written are a torn tail");
	json_decref(recs);
	json_decref(torn);
	char *jpath = join(dir, RB_RUN_JOURNAL);
	long long good = file_size(jpath) - 30;
	char *written = slurp(jpath, NULL);
	if (written)
		check_repair(dir, "short", 3, good, written + good, 30, "short write");
	free(written);
	free(jpath);
	free(dir);

	/* fdatasync fails: not durable, and never again trusted. */
	dir = make_run(state, "eio", 1);
	if (!dir || rb_journal_open(dir, "eio", tkey, NULL, &j, &err) < 0) {
		CHECK(0, "open: %s", err ? err : "");
		goto out;
	}
	hookctx_init(&h);
	h.fail_point = RB_JP_AFTER_WRITE;
	h.fail_from = 1;
	h.fail_errno = EIO;
	rb_journal_set_hook(j, test_hook, &h);
	add(j, rec_step(2, "succeeded"));
	CHECK(rb_journal_sync(j) == -1 && strstr(rb_journal_error(j), strerror(EIO)),
	      "failed fdatasync is reported: %s", rb_journal_error(j));
	rb_journal_set_hook(j, NULL, NULL);
	CHECK(rb_journal_sync(j) == -1, "a second sync does not pretend");
	rb_journal_stats(j, &st);
	CHECK(st.synced_seq == 1 && st.syncs == 0, "synced_seq stays 1");
	rb_journal_close(j);
	/*
	 * The record was written, only its fdatasync failed: it is in the file, and
	 * a resume's open makes it durable (or, had the kernel lost it, would not
	 * find it); either way the run goes on from what loads.
	 */
	CHECK(rb_journal_open(dir, "eio", tkey, NULL, &j, &err) == 0 && last_seq(j) == 2 &&
	      !rb_journal_torn(j), "open after the failed fdatasync: %s", err ? err : "");
	rb_journal_close(j);
	free(dir);

	/* Short writes everywhere (journal and snapshot) still give whole files. */
	dir = make_run(state, "tiny", 0);
	if (!dir || rb_journal_open(dir, "tiny", tkey, NULL, &j, &err) < 0) {
		CHECK(0, "open: %s", err ? err : "");
		goto out;
	}
	hookctx_init(&h);
	h.max_write = 7;
	rb_journal_set_hook(j, test_hook, &h);
	json_t *steps = json_object();
	for (uint64_t i = 1; i <= 20; i++) {
		add(j, rec_step(i, "succeeded"));
		char *name = step_name(i);
		json_object_set_new(steps, name, json_string("succeeded"));
		free(name);
		if (i == 12) {
			json_t *snap = json_pack("{s:O}", "steps", steps);
			CHECK(rb_journal_compact(j, snap) == 0, "compact with short writes");
			json_decref(snap);
		}
	}
	CHECK(rb_journal_sync(j) == 0 && h.count[RB_JP_BEFORE_WRITE] > 20 &&
	      h.count[RB_JP_BEFORE_TEMP_WRITE] > 20, "many short writes (%u, %u)",
	      h.count[RB_JP_BEFORE_WRITE], h.count[RB_JP_BEFORE_TEMP_WRITE]);
	rb_journal_close(j);
	json_t *snap;
	int dups;
	CHECK(rb_journal_load(dir, &snap, &recs, &torn, &err) == 0 && !torn, "load tiny writes");
	json_t *logical = replay(snap, recs, &dups);
	CHECK(json_equal(logical, steps) && !dups, "short writes lose nothing");
	json_decref(logical);
	json_decref(snap);
	json_decref(recs);
	json_decref(steps);
	free(dir);
out:
	free(err);
	free(state);
}

/* --- whole files ---------------------------------------------------------------------- */

static void t_durable_files(const char *base)
{
	char *state = join(base, "files"), *err = NULL;
	char *dir = make_run(state, "f", 0), hex[65], *buf = NULL;
	size_t len = 0;
	if (!dir)
		goto out;
	CHECK(rb_sha256_hex("abc", 3, hex) == 0 &&
	      !strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
	      "sha256(abc) = %s", hex);
	CHECK(rb_sha256_hex("", 0, hex) == 0 &&
	      !strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
	      "sha256('') = %s", hex);
	static const unsigned char bytes[] = {0x00, 0x09, 0x0a, 0x7f, 0x80, 0xf0, 0xff};
	rb_hex(bytes, sizeof(bytes), hex);
	CHECK(!strcmp(hex, "00090a7f80f0ff"), "hex: %s", hex);
	CHECK(rb_write_durable(dir, "params.json", "one", 3, 0600, &err) == 0, "write: %s",
	      err ? err : "");
	CHECK(rb_write_durable(dir, "params.json", "second", 6, 0600, &err) == 0, "overwrite");
	char *p = join(dir, "params.json"), *tmp = join(dir, ".params.json.tmp");
	CHECK(file_size(p) == 6 && file_mode(p) == 0600 && file_size(tmp) == -1,
	      "durable write: size, mode, no temp left");
	CHECK(rb_write_durable(dir, "a/b", "x", 1, 0600, &err) == -1 && err,
	      "a name with a slash is refused");
	free(err);
	err = NULL;
	CHECK(rb_write_durable("/nonexistent", "x", "x", 1, 0600, &err) == -1 && err &&
	      strstr(err, "/nonexistent"), "missing directory: %s", err ? err : "");
	free(err);
	err = NULL;

	static const char yaml[] = "name: demo\nsteps: []\n";
	CHECK(rb_run_save_runbook(dir, yaml, sizeof(yaml) - 1, &err) == 0, "save runbook: %s",
	      err ? err : "");
	CHECK(rb_run_load_runbook(dir, &buf, &len, &err) == 0 && len == sizeof(yaml) - 1 &&
	      !memcmp(buf, yaml, len), "load runbook: %s", err ? err : "");
	free(buf);
	char *rb = join(dir, RB_RUN_RUNBOOK);
	append_raw(rb, "#", 1);
	CHECK(rb_run_load_runbook(dir, &buf, &len, &err) == -1 && err && strstr(err, "changed") &&
	      !buf, "a changed copy is refused: %s", err ? err : "");
	free(rb);
	free(p);
	free(tmp);
	free(dir);
out:
	free(err);
	free(state);
}

/*
 * Symbolic links planted in the state directory are not followed: not for a
 * run's directory, its log or its snapshot (open and load fail, saying so, and
 * the target is untouched), nor for the temp directory a create removes; and
 * what is not a regular file (a FIFO) is not read, rather than waited on.
 */
static void t_planted_links(const char *base)
{
	char *state = join(base, "links"), *err = NULL, *elsewhere = join(base, "elsewhere");
	struct rb_journal *j = NULL;
	mkdir(elsewhere, 0700);
	/* A temp directory of a create, planted as a link to someone's directory. */
	char *victim = join(elsewhere, "victim"), *vj = join(victim, RB_RUN_JOURNAL);
	char *vo = join(victim, RB_RUN_OUTPUT), *runs = join(state, "runs");
	char *tmp = join(runs, ".20261123-150000-0001.tmp");
	mkdir(victim, 0700);
	mkdir(vo, 0700);
	FILE *f = fopen(vj, "w");
	if (f) {
		fputs("theirs\n", f);
		fclose(f);
	}
	CHECK(rb_mkdir_durable(runs, NULL) == 0 && symlink(victim, tmp) == 0, "plant the link");
	CHECK(rb_journal_create(state, "20261123-150000-0001", tkey, &j, &err) == 0,
	      "create over a planted temp link: %s", err ? err : "");
	rb_journal_close(j);
	j = NULL;
	CHECK(file_size(vj) == 7 && file_size(vo) >= 0, "the link's target is untouched");

	/* The log, the snapshot, the run's directory itself: links to a copy elsewhere. */
	char *dir = make_run(state, "20261123-150000-0002", 3);
	char *log = dir ? join(dir, RB_RUN_JOURNAL) : NULL, *copy = join(elsewhere, "log");
	size_t len0 = 0;
	char *bytes = log ? slurp(log, &len0) : NULL;
	if (bytes && (f = fopen(copy, "w"))) {
		fwrite(bytes, 1, len0, f);
		fclose(f);
	}
	CHECK(bytes && unlink(log) == 0 && symlink(copy, log) == 0, "link the log");
	json_t *recs = NULL;
	CHECK(rb_journal_load(dir, NULL, &recs, NULL, &err) < 0 && err &&
	      strstr(err, "a symbolic link, not followed"), "load refuses a linked log: %s",
	      err ? err : "");
	free(err);
	err = NULL;
	CHECK(rb_journal_open(dir, "20261123-150000-0002", tkey, NULL, &j, &err) < 0 && err &&
	      strstr(err, "a symbolic link, not followed"), "open refuses a linked log: %s",
	      err ? err : "");
	free(err);
	err = NULL;
	size_t len;
	char *now = slurp(copy, &len);
	CHECK(now && len == len0 && !memcmp(now, bytes, len), "the linked log is untouched");
	free(now);
	unlink(log);
	if (bytes && (f = fopen(log, "w"))) {
		fwrite(bytes, 1, len0, f);
		fclose(f);
	}
	char *snap = dir ? join(dir, RB_RUN_SNAPSHOT) : NULL;
	CHECK(snap && symlink(copy, snap) == 0, "link the snapshot");
	CHECK(rb_journal_load(dir, NULL, &recs, NULL, &err) < 0 && err &&
	      strstr(err, "snapshot.json: a symbolic link, not followed"),
	      "load refuses a linked snapshot: %s", err ? err : "");
	free(err);
	err = NULL;
	uint64_t hseq;
	char hsha[65];
	CHECK(rb_run_head(dir, &hseq, hsha, &err) < 0 && err && strstr(err, "symbolic link"),
	      "the head is not read through a link: %s", err ? err : "");
	free(err);
	err = NULL;
	unlink(snap);
	CHECK(mkfifo(snap, 0600) == 0, "a FIFO for a snapshot");
	CHECK(rb_journal_load(dir, NULL, &recs, NULL, &err) < 0 && err &&
	      strstr(err, "not a regular file"), "a FIFO is not read: %s", err ? err : "");
	free(err);
	err = NULL;
	unlink(snap);
	char *moved = join(elsewhere, "run"), *linked = join(runs, "20261123-150000-0003");
	CHECK(dir && rename(dir, moved) == 0 && symlink(moved, linked) == 0, "link the run");
	CHECK(rb_journal_open(linked, "20261123-150000-0003", tkey, NULL, &j, &err) < 0 && err &&
	      strstr(err, "symbolic link"), "open refuses a linked run: %s", err ? err : "");
	free(err);
	err = NULL;
	char *mlog = join(moved, RB_RUN_JOURNAL);
	now = slurp(mlog, &len);
	CHECK(now && len == len0, "the linked run is untouched");
	free(now);
	free(mlog);
	json_decref(recs);
	free(linked);
	free(moved);
	free(snap);
	free(bytes);
	free(copy);
	free(log);
	free(dir);
	free(tmp);
	free(runs);
	free(vo);
	free(vj);
	free(victim);
	free(elsewhere);
	free(state);
}

/* --- RUNBOOK_TEST_CRASH ------------------------------------------------------------- */

/*
 * A child that resumes run dir with RUNBOOK_TEST_CRASH=spec, appends a step
 * and syncs: how it ended (its wait status).
 */
static int crash_env_child(const char *dir, const char *id, const char *spec, uint64_t step)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		struct rb_journal *j;
		setenv("RUNBOOK_TEST_CRASH", spec, 1);
		if (rb_journal_open(dir, id, tkey, NULL, &j, NULL) < 0)
			_exit(3);
		if (add(j, rec_step(step, "succeeded")) < 0 || rb_journal_sync(j) < 0)
			_exit(4);
		rb_journal_close(j);
		_exit(0);
	}
	int status = -1;
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

/*
 * The crash hook the binary's tests use (tests/kill.sh): what reads and what
 * does not, that it reaches the audit log's writes, and that a test's own
 * hook replaces it.
 */
static void t_crash_env(const char *base)
{
	char *state = join(base, "crashenv"), *err = NULL;
	struct rb_journal *j = NULL;
	json_t *recs;
	const char *id = "20260101-000000-00ce";
	static const char *const bad[] = {"nowhere:1", "after-write", "after-write:",
					  "after-write:0", "after-write:-1", "after-write:2x",
					  "after-writes:1", ":1", "after-restart:1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("RUNBOOK_TEST_CRASH", bad[i], 1);
		CHECK(rb_journal_create(state, id, tkey, &j, &err) == -1 && !j && err &&
		      strstr(err, "RUNBOOK_TEST_CRASH") && strstr(err, "after-dir-fsync") &&
		      strstr(err, "one of") && !strstr(strstr(err, "one of"), "after-restart"),
		      "RUNBOOK_TEST_CRASH=%s is refused: %s", bad[i], err ? err : "(no error)");
		free(err);
		err = NULL;
	}
	char *dir = rb_run_dir(state, id);
	CHECK(file_mode(dir) == -1, "a refused create leaves no run");

	/* A point never reached (no compaction here): the run goes on as without it. */
	setenv("RUNBOOK_TEST_CRASH", "after-dir-fsync:1", 1);
	CHECK(rb_journal_create(state, id, tkey, &j, &err) == 0, "create: %s", err ? err : "");
	if (!j)
		goto out;
	CHECK(add(j, rec_type("run_started")) == 0 && rb_journal_sync(j) == 0, "sync: %s",
	      rb_journal_error(j));
	rb_journal_close(j);
	j = NULL;
	setenv("RUNBOOK_TEST_CRASH", "after-write:0", 1);
	CHECK(rb_journal_open(dir, id, tkey, NULL, &j, &err) == -1 && !j && err &&
	      strstr(err, "after-write:0"), "open refuses a bad value too: %s",
	      err ? err : "(no error)");
	free(err);
	err = NULL;
	unsetenv("RUNBOOK_TEST_CRASH");

	/*
	 * It fires in the audit log's writes: killed before the write, the record
	 * is not there; after it (before its fdatasync), the kernel keeps it.
	 */
	int st = crash_env_child(dir, id, "before-write:1", 2);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "before-write:1 kills (status %d)", st);
	CHECK(rb_journal_load(dir, NULL, &recs, NULL, &err) == 0 && json_array_size(recs) == 1,
	      "killed before the write: 1 record");
	json_decref(recs);
	st = crash_env_child(dir, id, "after-write:1", 2);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "after-write:1 kills (status %d)", st);
	CHECK(rb_journal_load(dir, NULL, &recs, NULL, &err) == 0 && json_array_size(recs) == 2,
	      "killed after the write: 2 records");
	json_decref(recs);
	st = crash_env_child(dir, id, "after-fdatasync:2", 3);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "after-fdatasync:2 is not reached by one "
	      "sync (status %d)", st);

	/* The first after-write would kill, but a hook set by the caller replaces it. */
	setenv("RUNBOOK_TEST_CRASH", "after-write:1", 1);
	CHECK(rb_journal_open(dir, id, tkey, NULL, &j, &err) == 0, "open: %s", err ? err : "");
	if (!j)
		goto out;
	struct hookctx h;
	hookctx_init(&h);
	rb_journal_set_hook(j, test_hook, &h);
	CHECK(add(j, rec_step(4, "succeeded")) == 0 && rb_journal_sync(j) == 0 &&
	      h.count[RB_JP_AFTER_WRITE] == 1, "the caller's hook runs instead");
	rb_journal_close(j);
out:
	unsetenv("RUNBOOK_TEST_CRASH");
	free(dir);
	free(err);
	free(state);
}

/* --- the crash test ------------------------------------------------------------------- */

enum { MODE_ASYNC = RB_JP_COUNT, MODE_PARTIAL, MODE_COUNT };

static const char *mode_name(int m)
{
	if (m == MODE_ASYNC)
		return "random-moment";
	if (m == MODE_PARTIAL)
		return "mid-write";
	return rb_journal_point_name((enum rb_journal_point)m);
}

/* The points a child is stopped at; each must be hit. */
static const int kill_modes[] = {
	RB_JP_AFTER_WRITE, RB_JP_AFTER_FDATASYNC, RB_JP_BEFORE_TEMP_WRITE,
	RB_JP_AFTER_TEMP_WRITE, RB_JP_AFTER_TEMP_FSYNC, RB_JP_AFTER_RENAME,
	RB_JP_AFTER_DIR_FSYNC, MODE_PARTIAL,
};
#define NKILL_MODES (sizeof(kill_modes) / sizeof(kill_modes[0]))

static void die(const char *what, const char *err, int code)
{
	fprintf(stderr, "crash child: %s: %s\n", what, err ? err : "");
	_exit(code);
}

/* Append rec; the journal must give it the next seq. */
static void child_add(struct rb_journal *j, json_t *rec)
{
	uint64_t before = last_seq(j);
	if (add(j, rec) < 0 || last_seq(j) != before + 1)
		die("append", rb_journal_error(j), 4);
}

/*
 * The child, as the engine does it: create the run and record run_started, or
 * resume it (replay what loads, then run_crashed unless the last session
 * ended with run_finished, and run_resumed); then append steps and sync in
 * groups of 1..4, report each synced step on the pipe, and compact every few
 * steps, until it is killed or ends the run with run_finished.
 */
static void crash_child(const char *state, const char *id, int create, struct hookctx *h,
			uint64_t seed, int wfd)
{
	struct rb_journal *j;
	char *err = NULL;
	json_t *steps;

	if (create) {
		if (rb_journal_create(state, id, tkey, &j, &err) < 0)
			die("create", err, 3);
		steps = json_object();
		child_add(j, rec_type("run_started"));
	} else {
		char *dir = rb_run_dir(state, id);
		json_t *snap, *recs;
		int dups;
		if (rb_journal_load(dir, &snap, &recs, NULL, &err) < 0)
			die("load", err, 3);
		steps = replay(snap, recs, &dups);
		json_decref(snap);
		json_decref(recs);
		if (rb_journal_open(dir, id, tkey, NULL, &j, &err) < 0)
			die("open", err, 3);
		free(dir);
		if (strcmp(rb_journal_last_type(j), "run_finished"))
			child_add(j, rec_type("run_crashed"));
		child_add(j, rec_type("run_resumed"));
	}
	if (rb_journal_sync(j) < 0)
		die("sync", rb_journal_error(j), 4);
	h->killfd = wfd;
	rb_journal_set_hook(j, test_hook, h);
	uint64_t last = json_object_size(steps), since = 0, every = 3 + rnd(&seed) % 8;
	for (int it = 0; it < CHILD_ITERS; it++) {
		unsigned g = 1 + (unsigned)(rnd(&seed) % 4);
		for (unsigned k = 0; k < g; k++) {
			json_t *r = rec_step(last + 1, "succeeded");
			json_object_set(steps, json_string_value(json_object_get(r, "step")),
					json_object_get(r, "status"));
			child_add(j, r);
			last++;
		}
		if (rb_journal_sync(j) < 0)
			die("sync", rb_journal_error(j), 4);
		if (write(wfd, &last, sizeof(last)) != sizeof(last))
			die("pipe", strerror(errno), 5);
		since += g;
		if (since >= every) {
			json_t *snap = json_pack("{s:O,s:I}", "steps", steps, "last", (json_int_t)last);
			if (rb_journal_compact(j, snap) < 0)
				die("compact", rb_journal_error(j), 4);
			json_decref(snap);
			since = 0;
		}
	}
	child_add(j, rec_type("run_finished"));
	if (rb_journal_sync(j) < 0)
		die("sync", rb_journal_error(j), 4);
	rb_journal_close(j);
	json_decref(steps);
	close(wfd);
	_exit(0);
}

/*
 * What must hold after any crash: the run loads; the snapshot's head is a
 * record of the log and the records after it have continuous seq numbers;
 * every step the child reported synced is there, each exactly once; and the
 * log verifies as the run's signed audit log (up to a torn tail, which the
 * next open repairs).
 */
static void crash_verify(const char *dir, const char *id, uint64_t reported, uint64_t *last_out,
			 int *torn_seen, int mode)
{
	json_t *snap, *recs, *torn;
	char *err = NULL, hsha[65], *jpath = join(dir, RB_RUN_JOURNAL);
	uint64_t hseq = 0;
	if (rb_journal_load(dir, &snap, &recs, &torn, &err) < 0) {
		CHECK(0, "after a kill (%s): load: %s", mode_name(mode), err);
		free(err);
		free(jpath);
		return;
	}
	int hr = rb_run_head(dir, &hseq, hsha, &err);
	CHECK(hr == (snap ? 1 : 0), "after a kill (%s): head %d: %s", mode_name(mode), hr,
	      err ? err : "");
	free(err);
	err = NULL;
	if (hr == 1) {
		size_t n;
		char *line = line_at(jpath, hseq, &n), hex[65] = "";
		if (line)
			rb_sha256_hex(line, n, hex);
		CHECK(line && !strcmp(hex, hsha), "after a kill (%s): the snapshot's head %" PRIu64
		      " is a record of the log", mode_name(mode), hseq);
		free(line);
	}
	uint64_t s = (uint64_t)json_integer_value(json_object_get(snap, "last"));
	CHECK(json_object_size(json_object_get(snap, "steps")) == s,
	      "snapshot of %" PRIu64 " steps has %zu", s,
	      json_object_size(json_object_get(snap, "steps")));
	uint64_t expect = hseq + 1, step = s + 1;
	size_t i;
	json_t *r;
	int gaps = 0;
	json_array_foreach(recs, i, r) {
		if (rec_seq(r) != expect++)
			gaps++;
		if (!json_object_get(r, "step"))
			continue;
		char *name = step_name(step++);
		if (strcmp(rec_str(r, "step"), name))
			gaps++;
		free(name);
	}
	uint64_t last = step - 1, lseq = expect - 1;
	int dups;
	json_t *logical = replay(snap, recs, &dups);
	int missing = 0;
	for (uint64_t k = 1; k <= last; k++) {
		char *name = step_name(k);
		if (!json_object_get(logical, name))
			missing++;
		free(name);
	}
	CHECK(gaps == 0 && dups == 0 && missing == 0 && json_object_size(logical) == last,
	      "after a kill (%s): %d seq gaps, %d applied twice, %d missing of %" PRIu64,
	      mode_name(mode), gaps, dups, missing, last);
	CHECK(last >= reported, "after a kill (%s): synced step %" PRIu64 " lost (have %" PRIu64
	      ")", mode_name(mode), reported, last);
	if (torn) {
		CHECK(json_integer_value(json_object_get(torn, "offset")) +
		      json_integer_value(json_object_get(torn, "length")) == file_size(jpath),
		      "torn tail runs to the end of the journal");
		(*torn_seen)++;
	}
	struct rb_audit_result vr;
	int v = verify_run(dir, id, tkey, NULL, &vr);
	CHECK((v == 0 || (torn && vr.torn && vr.bad_line == lseq + 1)) && vr.head.seq == lseq,
	      "after a kill (%s): the log verifies up to seq %" PRIu64 " (%s)", mode_name(mode),
	      lseq, v ? vr.reason : "");
	*last_out = last;
	json_decref(logical);
	json_decref(snap);
	json_decref(recs);
	json_decref(torn);
	free(jpath);
}

static void t_crash(const char *base, uint64_t seed, int kills_wanted)
{
	char *state = join(base, "crash");
	unsigned kills[MODE_COUNT] = {0};
	int total = 0, rounds = 0, torn_seen = 0, runs = 0, need_create = 0, in_create = 0;
	uint64_t reported = 0, last = 0;
	char id[RB_RUN_ID_MAX] = "";
	double t0 = now_ms();

	while (total < kills_wanted && rounds < kills_wanted * 2) {
		if (rounds % ROUNDS_PER_RUN == 0) {
			rb_run_id(id, sizeof(id), 1795445412 + runs, (unsigned)runs);
			runs++;
			reported = last = 0;
			need_create = 1;
		}
		int create = need_create;
		rounds++;

		struct hookctx h;
		hookctx_init(&h);
		int mode;
		unsigned wait_reports = 0, wait_us = 0;
		uint64_t dice = rnd(&seed) % 10;
		if (dice < 1) {
			/* Early: inside fork, load, open's repair or create. */
			mode = MODE_ASYNC;
			wait_us = (unsigned)(rnd(&seed) % 400);
		} else if (dice < 4) {
			mode = MODE_ASYNC;
			wait_reports = (unsigned)(rnd(&seed) % 20);
			wait_us = (unsigned)(rnd(&seed) % 3000);
		} else {
			mode = kill_modes[rnd(&seed) % NKILL_MODES];
			h.kill_at = 1 + (unsigned)(rnd(&seed) % 4);
			if (mode == MODE_PARTIAL) {
				h.kill_point = RB_JP_BEFORE_WRITE;
				h.partial = 1;
				h.cut = rnd(&seed) % 40;
			} else {
				h.kill_point = mode;
			}
		}
		uint64_t child_seed = rnd(&seed);

		int pfd[2];
		if (pipe2(pfd, O_CLOEXEC) < 0) {
			CHECK(0, "pipe: %s", strerror(errno));
			break;
		}
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0) {
			CHECK(0, "fork: %s", strerror(errno));
			close(pfd[0]);
			close(pfd[1]);
			break;
		}
		if (pid == 0) {
			close(pfd[0]);
			crash_child(state, id, create, &h, child_seed, pfd[1]);
		}
		close(pfd[1]);

		/* Read the child's progress; in async mode kill it along the way. */
		unsigned char acc[sizeof(uint64_t)];
		size_t have = 0;
		unsigned nrep = 0;
		int sent = 0;
		for (;;) {
			if (mode == MODE_ASYNC && !sent && nrep >= wait_reports) {
				if (wait_us)
					usleep(wait_us);
				kill(pid, SIGKILL);
				sent = 1;
			}
			ssize_t n = read(pfd[0], acc + have, sizeof(acc) - have);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			have += (size_t)n;
			if (have == sizeof(acc)) {
				uint64_t v;
				memcpy(&v, acc, sizeof(v));
				have = 0;
				if (v == UINT64_MAX) {
					/* The child waits at its kill point. */
					kill(pid, SIGKILL);
					sent = 1;
					continue;
				}
				CHECK(v > reported, "progress goes forward: %" PRIu64 " after %" PRIu64,
				      v, reported);
				reported = v;
				nrep++;
			}
		}
		close(pfd[0]);
		int status;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
			kills[mode]++;
			total++;
		} else {
			CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "crash child (%s) failed with status %d", mode_name(mode), status);
		}
		char *dir = rb_run_dir(state, id);
		if (file_size(dir) < 0) {
			/* Killed inside rb_journal_create: no run at all, and nothing synced. */
			CHECK(create && reported == 0, "run %s is missing after a kill (%s)", id,
			      mode_name(mode));
			in_create++;
		} else {
			need_create = 0;
			crash_verify(dir, id, reported, &last, &torn_seen, mode);
		}
		free(dir);
	}
	CHECK(total >= kills_wanted, "%d kill points of %d wanted", total, kills_wanted);
	if (kills_wanted >= 100) {
		for (size_t m = 0; m < NKILL_MODES; m++)
			CHECK(kills[kill_modes[m]] > 0, "no kill at %s", mode_name(kill_modes[m]));
		CHECK(kills[MODE_ASYNC] > 0, "no kill at a random moment");
		CHECK(torn_seen > 0, "no torn tail seen");
	}
	if (verbose) {
		printf("crash test in %s: %d kills in %d rounds over %d runs (%d inside create), "
		       "%d torn tails, %.0f ms\n ", base, total, rounds, runs, in_create, torn_seen,
		       now_ms() - t0);
		for (int m = 0; m < MODE_COUNT; m++)
			if (kills[m])
				printf(" %s %u", mode_name(m), kills[m]);
		putchar('\n');
	}
	free(state);
}

/* --- where to run --------------------------------------------------------------------- */

static int is_tmpfs(const char *path)
{
	struct statfs sf;
	return statfs(path, &sf) == 0 && sf.f_type == TMPFS_MAGIC_NR;
}

static int writable_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && access(path, W_OK) == 0;
}

/* One tmpfs directory and one on disk, when the machine has them. */
static size_t pick_dirs(const char **out, size_t max)
{
	static const char *const mem[] = { "/dev/shm", "/tmp" };
	static const char *const disk[] = { "build", "/var/tmp", "/tmp" };
	size_t n = 0;
	for (size_t i = 0; i < 2 && n < max; i++)
		if (writable_dir(mem[i]) && is_tmpfs(mem[i])) {
			out[n++] = mem[i];
			break;
		}
	for (size_t i = 0; i < 3 && n < max; i++)
		if (writable_dir(disk[i]) && !is_tmpfs(disk[i])) {
			out[n++] = disk[i];
			break;
		}
	if (n == 0)
		out[n++] = "/tmp";
	return n;
}

/* --- measurements ------------------------------------------------------------------- */

static json_t *bench_rec(uint64_t i, const char *status)
{
	char name[32];
	snprintf(name, sizeof(name), "step-%05" PRIu64, i);
	return json_pack("{s:s,s:s,s:s,s:s,s:i}", "type", "step_finished", "step", name, "status",
			 status, "at", "2026-11-23T14:50:12Z", "attempt", 1);
}

static void bench(const char *base)
{
	char tmpl[4096], *err = NULL;
	snprintf(tmpl, sizeof(tmpl), "%s/journal-bench-XXXXXX", base);
	if (!mkdtemp(tmpl)) {
		fprintf(stderr, "bench: %s: %s\n", tmpl, strerror(errno));
		return;
	}
	struct rb_journal *j;
	if (rb_journal_create(tmpl, "bench", tkey, &j, &err) < 0) {
		fprintf(stderr, "bench: %s\n", err);
		free(err);
		rb_test_rm_rf(tmpl);
		return;
	}
	printf("%s (%s)\n", base, is_tmpfs(base) ? "tmpfs" : "disk");
	const int n1 = 2000, ng = 500;
	uint64_t seq = 0;
	add(j, rec_type("run_started"));
	rb_journal_sync(j);
	double t = now_ms();
	for (int i = 0; i < n1; i++) {
		json_t *r = bench_rec(++seq, "succeeded");
		rb_journal_append(j, r);
		rb_journal_sync(j);
		json_decref(r);
	}
	double per = (now_ms() - t) / n1;
	printf("  append + fdatasync, one record:   %7.3f ms a record\n", per);
	t = now_ms();
	for (int g = 0; g < ng; g++) {
		for (int k = 0; k < 10; k++) {
			json_t *r = bench_rec(++seq, "succeeded");
			rb_journal_append(j, r);
			json_decref(r);
		}
		rb_journal_sync(j);
	}
	per = (now_ms() - t) / ng;
	printf("  group commit of 10 records:       %7.3f ms a group, %.3f ms a record\n", per,
	       per / 10);

	/* The state of a 10,000-step run, as the engine might keep it. */
	json_t *steps = json_object();
	for (int i = 1; i <= 10000; i++) {
		char name[32];
		snprintf(name, sizeof(name), "step-%05d", i);
		json_object_set_new(steps, name, json_pack("{s:s,s:s,s:s,s:i,s:i}", "status",
				    "succeeded", "started", "2026-11-23T14:50:12Z", "ended",
				    "2026-11-23T14:50:13Z", "attempt", 1, "exit", 0));
	}
	json_t *snap = json_pack("{s:o}", "steps", steps);
	const int nc = 20;
	t = now_ms();
	for (int c = 0; c < nc; c++)
		if (rb_journal_compact(j, snap) < 0)
			fprintf(stderr, "bench: %s\n", rb_journal_error(j));
	per = (now_ms() - t) / nc;
	char *dir = rb_run_dir(tmpl, "bench"), *sp = join(dir, RB_RUN_SNAPSHOT);
	printf("  compaction, 10,000-step snapshot: %7.3f ms (%lld bytes)\n", per, file_size(sp));
	for (int i = 0; i < 10000; i++) {
		json_t *r = bench_rec(++seq, "succeeded");
		rb_journal_append(j, r);
		json_decref(r);
	}
	rb_journal_sync(j);
	json_t *s2, *recs;
	char *jpath = join(dir, RB_RUN_JOURNAL);
	t = now_ms();
	rb_journal_load(dir, &s2, &recs, NULL, &err);
	/* The log is never cut: load reads all of it and keeps what follows the snapshot. */
	printf("  load: 10,000-step snapshot + 10,000 records after it (log of %" PRIu64
	       " records, %lld bytes): %.1f ms\n", count_lines(jpath), file_size(jpath),
	       now_ms() - t);
	struct rb_audit_result vr;
	t = now_ms();
	int v = verify_run(dir, "bench", tkey, NULL, &vr);
	double vt = now_ms() - t;
	printf("  rb_audit_verify of that log: %.1f ms (%.1f us a record)%s%s\n", vt,
	       vt * 1e3 / (double)(vr.records ? vr.records : 1), v ? ": " : "",
	       v ? vr.reason : "");
	free(jpath);
	json_decref(s2);
	json_decref(recs);
	json_decref(snap);
	rb_journal_close(j);
	free(sp);
	free(dir);
	rb_test_rm_rf(tmpl);
}

int main(int argc, char **argv)
{
	uint64_t seed = 20261123;
	int i = 1;
	unsigned char kseed[32];
	char *kerr = NULL;
	memset(kseed, 0x5a, sizeof(kseed));
	if (rb_audit_key_from_seed(kseed, &tkey, &kerr) < 0) {
		fprintf(stderr, "test key: %s\n", kerr);
		return 1;
	}
	memset(kseed, 0xa5, sizeof(kseed));
	if (rb_audit_key_from_seed(kseed, &other_key, &kerr) < 0) {
		fprintf(stderr, "test key: %s\n", kerr);
		return 1;
	}
	if (argc > 1 && !strcmp(argv[1], "--bench")) {
		for (i = 2; i < argc; i++)
			bench(argv[i]);
		rb_audit_key_free(tkey);
		rb_audit_key_free(other_key);
		return 0;
	}
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "-v"))
			verbose = 1;
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 10);
	}

	const char *dirs[16];
	size_t ndirs = 0;
	char *envdirs = getenv("JOURNAL_TEST_DIRS") ? strdup(getenv("JOURNAL_TEST_DIRS")) : NULL;
	if (envdirs) {
		char *save = NULL;
		for (char *d = strtok_r(envdirs, ":", &save); d && ndirs < 16;
		     d = strtok_r(NULL, ":", &save))
			dirs[ndirs++] = d;
	} else {
		ndirs = pick_dirs(dirs, 16);
	}
	/* At least KILLS_TOTAL kill points, however many directories. */
	int kills = (KILLS_TOTAL + (int)ndirs - 1) / (int)ndirs;
	if (getenv("JOURNAL_KILLS"))
		kills = atoi(getenv("JOURNAL_KILLS"));

	t_run_id();
	t_state_dir();
	for (size_t d = 0; d < ndirs; d++) {
		char tmpl[4096];
		snprintf(tmpl, sizeof(tmpl), "%s/journal-test-XXXXXX", dirs[d]);
		if (!mkdtemp(tmpl)) {
			CHECK(0, "mkdtemp %s: %s", tmpl, strerror(errno));
			continue;
		}
		t_runs_list(tmpl);
		t_roundtrip(tmpl);
		t_group_commit(tmpl);
		t_write_then_gate(tmpl);
		t_compact(tmpl);
		t_compact_failures(tmpl);
		t_torn(tmpl);
		t_trust(tmpl);
		t_concurrent_load(tmpl);
		t_write_failure(tmpl);
		t_durable_files(tmpl);
		t_planted_links(tmpl);
		t_crash_env(tmpl);
		t_crash(tmpl, seed + d, kills);
		rb_test_rm_rf(tmpl);
	}
	free(envdirs);
	rb_audit_key_free(tkey);
	rb_audit_key_free(other_key);
	printf("journal: %d passed, %d failed\n", npass, nfail);
	return nfail ? 1 : 0;
}
