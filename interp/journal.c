/*
 * The run directory and its durable state: the journal (the run's signed
 * audit log, interp/audit.c, appended in groups that share one fdatasync, its
 * torn tail repaired on resume) and the snapshot that compaction writes, both
 * through durable.c.  It must never report as durable what is not, nor lose or
 * repeat a record it once reported durable; docs/state.md says how.
 */
#include "journal.h"
#include "audit.h"
#include "durable.h"
#include "rundir.h"
#include "lock.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define SNAPSHOT_FORMAT         "runbook-snapshot"
#define TORN_SHOW_MAX           4096    /* bytes of a torn tail shown in hex and text */

struct rb_journal {
	char *dir;              /* the run directory, for messages */
	char *path;             /* its journal, for messages */
	/*
	 * Both O_CLOEXEC, like every descriptor here: a step's process that
	 * inherited the directory would hold the run's lock after we exit.
	 */
	int dirfd;              /* holds the run's flock; fsync'd after renames */
	struct rb_audit_log *log;
	const struct rb_audit_key *key; /* signs the log's records and the snapshot */

	uint64_t next_seq;
	uint64_t synced_seq;
	uint64_t snapshot_seq;
	uint64_t pending;       /* appended, not yet written */
	int unsynced;           /* written, not yet synced */
	int gate[2];            /* rb_journal_gate_fd's descriptor, and a pipe's other end */
	uint64_t jrecords;      /* synced records after the snapshot */
	uint64_t compactions;

	/* A write or fdatasync of the journal failed: nothing may be trusted. */
	char *broken;
	char *errmsg;
	json_t *torn;           /* what open cut off, or NULL */
	char *last_type;        /* of the last record before open (and its repair) */

	rb_journal_hook *hook;
	void *hook_arg;
	/* RUNBOOK_TEST_CRASH: the point to die at, and how many visits are left. */
	enum rb_journal_point crash_point;
	unsigned long crash_left;
	int crash_errno;        /* RUNBOOK_TEST_FAIL: fail with this instead of dying */
};

/* --- errors ------------------------------------------------------------------ */

/* rb_fail for an open journal, whose message rb_journal_error gives. */
__attribute__((format(printf, 2, 3)))
static int jfail(struct rb_journal *j, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	free(j->errmsg);
	j->errmsg = rb_xvasprintf(fmt, ap);
	va_end(ap);
	errno = saved;
	return -1;
}

/* Marks j broken with the current message: the first failure is the one kept. */
static int jbreak(struct rb_journal *j)
{
	if (!j->broken)
		j->broken = strdup(j->errmsg ? j->errmsg : "unknown error");
	return -1;
}

static int check_broken(struct rb_journal *j)
{
	if (!j->broken)
		return 0;
	errno = EIO;
	return jfail(j, "journal %s is not durable since an earlier failure (%s); "
		     "resume the run to repair it", j->path, j->broken);
}

/* --- the tests' hook (durable.h) ----------------------------------------------- */

static int inject(struct rb_journal *j, enum rb_journal_point p)
{
	return j ? rb_hook_inject(j->hook, j->hook_arg, p) : 0;
}

/* --- the run's lock and stale temp files --------------------------------------- */

static int lock_run(int dirfd, const char *dir, char **err)
{
	if (flock(dirfd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	if (errno == EWOULDBLOCK) {
		pid_t pid = rb_flock_holder(dirfd);
		char by[32] = "";
		if (pid > 0)
			snprintf(by, sizeof(by), " (PID %d)", (int)pid);
		errno = EWOULDBLOCK;
		return rb_fail(err, "run %s is open in another runbook process%s: it is being run "
			       "or resumed", dir, by);
	}
	return rb_fail(err, "cannot lock run %s: %s", dir, strerror(errno));
}

/* Removes the .NAME.tmp files of durable writes that a crash interrupted. */
static void remove_temps(int dirfd)
{
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (e->d_name[0] == '.' && n > 5 && !strcmp(e->d_name + n - 4, ".tmp"))
			unlinkat(dirfd, e->d_name, 0);
	}
	closedir(d);
}

/* --- reading a run ------------------------------------------------------------- */

struct scan {
	json_t *state;          /* the snapshot's state, or NULL */
	uint64_t snap_seq;
	char *snap_text;        /* the snapshot's bytes, and what a resume checks of it: */
	size_t snap_len;
	char *snap_key_id;      /* the key that signed it, */
	char snap_head[65];     /* the SHA-256 of the log's line at snap_seq that it keeps, */
	char log_at_snap[65];   /* and that line's SHA-256 ("" when the log has none) */
	char *last_line;        /* the log's last signed record, or NULL */
	size_t last_len, last_lineno;
	json_t *records;        /* journal records after the snapshot */
	uint64_t last_seq;      /* of the last record, or snap_seq */
	uint64_t jrecords;      /* records in the journal file, skipped ones too */
	size_t good_len;        /* bytes of the journal before a torn tail */
	json_t *torn;
};

static void scan_release(struct scan *s)
{
	free(s->snap_text);
	free(s->snap_key_id);
	free(s->last_line);
	json_decref(s->state);
	json_decref(s->records);
	json_decref(s->torn);
}

/* A journal line: an object with a positive integer "seq"; else NULL and why. */
static json_t *parse_record(const char *p, size_t n, uint64_t *seq, char *why, size_t whysize)
{
	json_error_t je;
	/* The encoder writes "\u0000" for NUL in strings, so the decoder must take it. */
	json_t *rec = json_loadb(p, n, JSON_ALLOW_NUL, &je);
	if (!rec) {
		snprintf(why, whysize, "%s", je.text);
		return NULL;
	}
	json_t *s = json_object_get(rec, "seq");
	if (!json_is_object(rec) || !json_is_integer(s) || json_integer_value(s) < 1) {
		snprintf(why, whysize, "not an object with a positive \"seq\"");
		json_decref(rec);
		return NULL;
	}
	*seq = (uint64_t)json_integer_value(s);
	return rec;
}

static int utf8_valid(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = p[i], len;
		if (c == 0)
			return 0;
		if (c < 0x80)
			len = 1;
		else if (c >= 0xc2 && c <= 0xdf)
			len = 2;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4;
		else
			return 0;
		if (i + len > n)
			return 0;
		for (unsigned k = 1; k < len; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
		i += len;
	}
	return 1;
}

static json_t *torn_info(const char *buf, size_t off, size_t len, size_t line)
{
	static const char hexd[] = "0123456789abcdef";
	size_t show = len < TORN_SHOW_MAX ? len : TORN_SHOW_MAX;
	const unsigned char *p = (const unsigned char *)buf + off;
	char *hex = malloc(show * 2 + 1);
	if (!hex)
		return NULL;
	for (size_t i = 0; i < show; i++) {
		hex[2 * i] = hexd[p[i] >> 4];
		hex[2 * i + 1] = hexd[p[i] & 15];
	}
	hex[2 * show] = 0;
	json_t *t = json_pack("{s:I,s:I,s:I,s:s}", "offset", (json_int_t)off, "length",
			      (json_int_t)len, "line", (json_int_t)line, "hex", hex);
	free(hex);
	if (!t)
		return NULL;
	/* Cut where the tail was cut, then back to a character boundary. */
	size_t tn = show;
	if (show < len)
		for (int k = 0; k < 3 && tn > 0 && (p[tn] & 0xc0) == 0x80; k++)
			tn--;
	if (utf8_valid(p, tn))
		json_object_set_new(t, "text", json_stringn((const char *)p, tn));
	return t;
}

/*
 * The journal's lines, in order.  Each ends in '\n' and is an object with a
 * seq one more than the line before and a prev that is the SHA-256 of the
 * line before (the audit log's chain): so a record changed, removed or
 * inserted anywhere but at the end stops the load, whoever reads the run.
 * The signatures are for `runbook audit verify`.  The first line that is cut
 * short or does not parse starts the torn tail, unless a good record follows
 * it: a crash only ever cuts the end, so a hole in the middle is corruption,
 * and guessing past it could lose a record that was synced.
 */
static int scan_journal(const char *buf, size_t len, const char *path, struct scan *s,
			char **err)
{
	size_t off = 0, line = 1, last_off = 0;
	size_t signed_end = 0, signed_n = 0;    /* after the last signed record */
	uint64_t expect = 0, signed_seq = 0;
	char why[200], prev[65];

	memset(prev, '0', 64);
	prev[64] = 0;

	while (off < len) {
		const char *nl = memchr(buf + off, '\n', len - off);
		size_t end = nl ? (size_t)(nl - buf) : len;
		uint64_t seq = 0;
		json_t *rec = nl ? parse_record(buf + off, end - off, &seq, why, sizeof(why)) : NULL;
		if (!nl)
			snprintf(why, sizeof(why), "no end of line");
		if (!rec) {
			size_t o = end + 1, later = 0;
			while (o < len) {
				const char *nl2 = memchr(buf + o, '\n', len - o);
				if (!nl2)
					break;
				char why2[200];
				uint64_t seq2;
				json_t *r2 = parse_record(buf + o, (size_t)(nl2 - buf) - o, &seq2,
							  why2, sizeof(why2));
				if (r2) {
					later++;
					json_decref(r2);
				}
				o = (size_t)(nl2 - buf) + 1;
			}
			if (later) {
				errno = EINVAL;
				return rb_fail(err, "%s:%zu: unreadable record (%s) followed by %zu good "
					    "ones: the journal is corrupt", path, line, why, later);
			}
			s->torn = torn_info(buf, off, len - off, line);
			if (!s->torn) {
				errno = ENOMEM;
				return rb_fail(err, "out of memory");
			}
			break;
		}
		if (expect && seq != expect) {
			json_decref(rec);
			errno = EINVAL;
			return rb_fail(err, "%s:%zu: seq %" PRIu64 " where %" PRIu64 " was expected: "
				    "the journal is corrupt", path, line, seq, expect);
		}
		const char *rp = json_string_value(json_object_get(rec, "prev"));
		if (!rp || strcmp(rp, prev)) {
			json_decref(rec);
			errno = EINVAL;
			if (line == 1)
				return rb_fail(err, "%s:1: prev is not 64 zeros in the first record: "
					    "the journal is corrupt", path);
			return rb_fail(err, "%s:%zu: prev is not the SHA-256 of line %zu: the journal "
				    "was changed (a record changed, removed or inserted before this "
				    "one; runbook audit verify names it)", path, line, line - 1);
		}
		rb_sha256_hex(buf + off, end - off, prev);
		if (seq == s->snap_seq)
			memcpy(s->log_at_snap, prev, sizeof(prev));
		if (json_object_get(rec, "sig")) {
			last_off = off;
			s->last_len = end - off;
			s->last_lineno = line;
			signed_end = end + 1;
			signed_n = json_array_size(s->records) + 1;
			signed_seq = seq;
		}
		expect = seq + 1;
		if (json_array_append_new(s->records, rec) < 0) {
			errno = ENOMEM;
			return rb_fail(err, "out of memory");
		}
		s->jrecords++;
		off = end + 1;
		line++;
	}
	/*
	 * Records after the last signed one are a group whose signed end a crash
	 * cut off: never durable, nothing acted on them.  They join the torn tail.
	 */
	size_t n = json_array_size(s->records);
	if (n > signed_n) {
		json_decref(s->torn);
		s->torn = torn_info(buf, signed_end, len - signed_end, s->last_lineno + 1);
		if (!s->torn) {
			errno = ENOMEM;
			return rb_fail(err, "out of memory");
		}
		while (json_array_size(s->records) > signed_n)
			json_array_remove(s->records, json_array_size(s->records) - 1);
		s->jrecords -= n - signed_n;
		if (s->snap_seq > signed_seq)
			s->log_at_snap[0] = '\0';
		off = signed_end;
	}
	s->good_len = off < len ? off : len;
	if (s->last_lineno)
		s->last_line = rb_xstrndup(buf + last_off, s->last_len);
	return 0;
}

static int scan_snapshot(const char *buf, size_t len, const char *path, struct scan *s,
			 char **err)
{
	json_error_t je;
	json_t *snap = json_loadb(buf, len, JSON_ALLOW_NUL, &je);
	if (!snap) {
		errno = EINVAL;
		return rb_fail(err, "%s:%d:%d: invalid snapshot: %s", path, je.line, je.column,
			    je.text);
	}
	json_t *format = json_object_get(snap, "format");
	json_t *version = json_object_get(snap, "version");
	json_t *seq = json_object_get(snap, "seq");
	json_t *state = json_object_get(snap, "state");
	int r = 0;
	errno = EINVAL;
	if (!json_is_string(format) || strcmp(json_string_value(format), SNAPSHOT_FORMAT))
		r = rb_fail(err, "%s: not a runbook snapshot", path);
	else if (!json_is_integer(version) || json_integer_value(version) < 1 ||
		 json_integer_value(version) > RB_SNAPSHOT_VERSION)
		r = rb_fail(err, "%s: unsupported snapshot version (this runbook reads versions 1 "
			 "to %d)", path, RB_SNAPSHOT_VERSION);
	else if (!json_is_integer(seq) || json_integer_value(seq) < 0 || !state)
		r = rb_fail(err, "%s: snapshot without a \"seq\" or a \"state\"", path);
	if (r == 0) {
		s->snap_seq = (uint64_t)json_integer_value(seq);
		s->state = json_incref(state);
		const char *kid = json_string_value(json_object_get(snap, "key_id"));
		const char *head = json_string_value(json_object_get(json_object_get(snap, "head"),
								     "sha256"));
		s->snap_key_id = kid ? rb_xstrdup(kid) : NULL;
		if (head && strlen(head) == 64)
			memcpy(s->snap_head, head, 65);
	}
	json_decref(snap);
	return r;
}

/*
 * Reads a run: the snapshot first, then the journal.  That order lets a reader
 * without the lock race a compaction safely: the journal is never cut and a
 * compaction syncs it before it writes the snapshot, so a journal read later
 * holds at least every record of a snapshot read earlier.  (The other order
 * could pair the journal with a snapshot written after it was read, which
 * covers records it does not have.)
 */
static int scan_run(int dirfd, const char *dir, struct scan *s, char **err)
{
	char *jbuf = NULL, *sbuf = NULL, *jpath = NULL, *spath = NULL;
	size_t jlen = 0, slen = 0;
	int r = -1;

	memset(s, 0, sizeof(*s));
	if (asprintf(&jpath, "%s/%s", dir, RB_RUN_JOURNAL) < 0) {
		jpath = NULL;
		goto oom;
	}
	if (asprintf(&spath, "%s/%s", dir, RB_RUN_SNAPSHOT) < 0) {
		spath = NULL;
		goto oom;
	}
	s->records = json_array();
	if (!s->records)
		goto oom;

	if (rb_read_at(dirfd, RB_RUN_SNAPSHOT, &sbuf, &slen) < 0 && errno != ENOENT) {
		rb_fail(err, "cannot read %s: %s", spath, rb_read_why(errno));
		goto out;
	}
	if (rb_read_at(dirfd, RB_RUN_JOURNAL, &jbuf, &jlen) < 0) {
		/*
		 * Compaction never removes the journal, and rb_journal_create
		 * returns only once it exists: without one this is no run, or one
		 * whose creation was cut short before anything was recorded.
		 */
		if (errno == ENOENT)
			rb_fail(err, "%s is not a run: it has no %s", dir, RB_RUN_JOURNAL);
		else
			rb_fail(err, "cannot read %s: %s", jpath, rb_read_why(errno));
		goto out;
	}
	if (sbuf && scan_snapshot(sbuf, slen, spath, s, err) < 0)
		goto out;
	s->snap_text = sbuf;
	s->snap_len = slen;
	sbuf = NULL;
	if (scan_journal(jbuf, jlen, jpath, s, err) < 0)
		goto out;

	/* Keep the records after the snapshot; the first must follow it directly. */
	size_t n = json_array_size(s->records), skip = 0;
	s->last_seq = s->snap_seq;
	/*
	 * The log is never cut and compaction syncs it before writing the
	 * snapshot: a log that ends before the snapshot's seq lost records, and
	 * a resume would give new records seqs that load then skips.
	 */
	uint64_t log_last = n ? (uint64_t)json_integer_value(
		json_object_get(json_array_get(s->records, n - 1), "seq")) : 0;
	if (log_last < s->snap_seq) {
		errno = EINVAL;
		rb_fail(err, "%s:%zu: ends at seq %" PRIu64 " but %s covers records up to %" PRIu64
		     ": records are missing (the log was cut)", jpath, n + 1, log_last, spath,
		     s->snap_seq);
		goto out;
	}
	if (n > 0) {
		json_t *first = json_object_get(json_array_get(s->records, 0), "seq");
		json_t *last = json_object_get(json_array_get(s->records, n - 1), "seq");
		uint64_t f = (uint64_t)json_integer_value(first);
		uint64_t l = (uint64_t)json_integer_value(last);
		if (f > s->snap_seq + 1) {
			errno = EINVAL;
			rb_fail(err, "%s:1: starts at seq %" PRIu64 " but %s covers records up to %"
			     PRIu64 " only: records are missing", jpath, f,
			     sbuf ? spath : "no snapshot", s->snap_seq);
			goto out;
		}
		if (l > s->last_seq)
			s->last_seq = l;
		if (l <= s->snap_seq)
			skip = n;
		else
			skip = (size_t)(s->snap_seq + 1 - f);
	}
	if (skip > 0) {
		json_t *kept = json_array();
		if (!kept)
			goto oom;
		for (size_t i = skip; i < n; i++)
			json_array_append(kept, json_array_get(s->records, i));
		json_decref(s->records);
		s->records = kept;
	}
	r = 0;
	goto out;
oom:
	errno = ENOMEM;
	rb_fail(err, "out of memory");
out:
	if (r < 0) {
		int saved = errno;
		scan_release(s);
		memset(s, 0, sizeof(*s));
		errno = saved;
	}
	free(jbuf);
	free(sbuf);
	free(jpath);
	free(spath);
	return r;
}

int rb_run_head(const char *run_dir, uint64_t *seq, char sha256[65], char **err)
{
	int dfd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return rb_fail(err, "cannot open run %s: %s", run_dir, strerror(errno));
	char *buf = NULL;
	size_t len;
	int r = rb_read_at(dfd, RB_RUN_SNAPSHOT, &buf, &len);
	close(dfd);
	if (r < 0)
		return errno == ENOENT ? 0 : rb_fail(err, "cannot read %s/%s: %s", run_dir,
						  RB_RUN_SNAPSHOT, rb_read_why(errno));
	/* The state may hold NUL (a step's output): the encoder writes \u0000. */
	json_t *snap = json_loadb(buf, len, JSON_ALLOW_NUL, NULL);
	free(buf);
	json_t *h = json_object_get(snap, "head");
	json_t *s = json_object_get(h, "seq");
	const char *hex = json_string_value(json_object_get(h, "sha256"));
	r = 0;
	if (!snap)
		r = rb_fail(err, "%s/%s: not JSON", run_dir, RB_RUN_SNAPSHOT);
	else if (h && (!json_is_integer(s) || json_integer_value(s) < 0 || !hex ||
		       strlen(hex) != 64))
		r = rb_fail(err, "%s/%s: a \"head\" without seq and sha256", run_dir, RB_RUN_SNAPSHOT);
	else if (h) {
		*seq = (uint64_t)json_integer_value(s);
		memcpy(sha256, hex, 65);
		r = 1;
	}
	json_decref(snap);
	return r;
}

/* --- the crash hook of the tests ----------------------------------------------- */

/*
 * Dies at the crash_left-th visit of crash_point, as a crash would: no
 * cleanup at all; or, for RUNBOOK_TEST_FAIL, fails the operation there and
 * at every later visit, as a full disk would.
 */
static int crash_hook(void *arg, enum rb_journal_point p, size_t *len)
{
	struct rb_journal *j = arg;
	(void)len;
	if (p != j->crash_point || (j->crash_left && --j->crash_left))
		return 0;
	if (j->crash_errno)
		return j->crash_errno;
	raise(SIGKILL);
	return 0;
}

/*
 * RUNBOOK_TEST_CRASH=POINT:N, for crash tests of the binary (tests/kill.sh):
 * the process kills itself with SIGKILL the Nth time this journal reaches
 * POINT.  RUNBOOK_TEST_FAIL=POINT:N makes the operation after the point fail
 * with ENOSPC from the Nth visit on (tests/exec.sh: the run fails closed).
 * A value that does not read is an error rather than ignored, so that a test
 * never believes it crashed somewhere it did not.
 */
static int crash_from_env(struct rb_journal *j, char **err)
{
	const char *var = "RUNBOOK_TEST_CRASH", *v = getenv(var);
	if (!v || !*v) {
		var = "RUNBOOK_TEST_FAIL";
		v = getenv(var);
		j->crash_errno = ENOSPC;
	}
	const char *colon = v ? strchr(v, ':') : NULL;
	if (!v || !*v)
		return 0;
	for (int p = 0; colon && p < RB_JP_COUNT; p++) {
		const char *name = rb_journal_point_name(p);
		if (strlen(name) != (size_t)(colon - v) || strncmp(v, name, strlen(name)))
			continue;
		char *end;
		errno = 0;
		unsigned long n = strtoul(colon + 1, &end, 10);
		if (colon[1] < '0' || colon[1] > '9' || *end || errno || n < 1)
			break;
		j->crash_point = p;
		j->crash_left = n;
		if (!j->hook)
			rb_journal_set_hook(j, crash_hook, j);
		return 0;
	}
	char names[256] = "";
	for (int p = 0; p < RB_JP_COUNT; p++)
		snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
			 p ? ", " : "", rb_journal_point_name(p));
	errno = EINVAL;
	return rb_fail(err, "%s='%s': expected POINT:N with N >= 1 and POINT one of %s", var, v,
		    names);
}

/* --- the open journal ---------------------------------------------------------- */

static struct rb_journal *journal_new(const char *dir)
{
	struct rb_journal *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->dirfd = -1;
	j->gate[0] = j->gate[1] = -1;
	j->dir = strdup(dir);
	if (!j->dir || asprintf(&j->path, "%s/%s", dir, RB_RUN_JOURNAL) < 0) {
		j->path = NULL;
		rb_journal_close(j);
		return NULL;
	}
	return j;
}

/*
 * Removes what rb_journal_create puts in a run directory that is not yet
 * renamed; a symbolic link planted in its place is removed itself, never
 * followed (the files of its target are not the run's).
 */
static int remove_new_run(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 && (errno == ELOOP || errno == ENOTDIR))
		return unlink(dir);
	if (dfd < 0)
		return errno == ENOENT ? 0 : -1;
	unlinkat(dfd, RB_RUN_JOURNAL, 0);
	unlinkat(dfd, RB_RUN_OUTPUT, AT_REMOVEDIR);
	close(dfd);
	return rmdir(dir);
}

/* rename without replacing; the fallback has a race only between two creators of one id. */
static int rename_new(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	struct stat st;
	if (lstat(to, &st) == 0) {
		errno = EEXIST;
		return -1;
	}
	return rename(from, to);
}

/*
 * Open the run's log (it exists) for j, signing with key, and continue its
 * seq; an interrupted repair is completed only when trust (NULL: key) signed it.
 */
static int open_log(struct rb_journal *j, const struct rb_audit_key *key,
		    const struct rb_audit_keyring *trust, const char *run_id, char **err)
{
	if (rb_audit_open_trusted(j->path, key, trust, run_id, RB_AUDIT_NOFOLLOW, &j->log,
				  err) < 0)
		return -1;
	rb_audit_set_hook(j->log, j->hook, j->hook_arg);
	j->key = key;
	return 0;
}

static void take_head(struct rb_journal *j)
{
	struct rb_audit_head h;
	rb_audit_log_head(j->log, &h);
	j->next_seq = h.seq + 1;
	j->synced_seq = h.seq;
}

/*
 * The run is made under runs/.RUN_ID.tmp and renamed into place only when its
 * journal and output/ exist and are durable, so that after a crash a run
 * directory is whole or absent: never a run without a journal.
 */
int rb_journal_create(const char *state_dir, const char *run_id,
		      const struct rb_audit_key *key, struct rb_journal **out, char **err)
{
	struct rb_journal *j = NULL;
	char *runs = NULL, *dir = NULL, *tmp = NULL;
	struct stat st;
	int made = 0;

	*out = NULL;
	state_dir = rb_state_dir(state_dir);
	if (!rb_run_id_valid(run_id)) {
		errno = EINVAL;
		return rb_fail(err, "invalid run id '%s'", run_id);
	}
	if (asprintf(&runs, "%s/runs", state_dir) < 0) {
		runs = NULL;
		goto oom;
	}
	if (asprintf(&tmp, "%s/.%s.tmp", runs, run_id) < 0) {
		tmp = NULL;
		goto oom;
	}
	dir = rb_run_dir(state_dir, run_id);
	j = dir ? journal_new(dir) : NULL;
	if (!j)
		goto oom;
	if (crash_from_env(j, err) < 0)
		goto undo;
	if (rb_mkdir_durable(runs, err) < 0)
		goto undo;
	if (lstat(dir, &st) == 0) {
		errno = EEXIST;
		rb_fail(err, "run %s already exists in %s", run_id, runs);
		goto undo;
	}
	/* A crash of an earlier create of this id may have left its temp directory. */
	if (remove_new_run(tmp) < 0 || mkdir(tmp, 0700) < 0) {
		rb_fail(err, "cannot create directory %s: %s", tmp, strerror(errno));
		goto undo;
	}
	made = 1;
	j->dirfd = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (j->dirfd < 0) {
		rb_fail(err, "cannot open directory %s: %s", tmp, strerror(errno));
		goto undo;
	}
	if (lock_run(j->dirfd, dir, err) < 0)
		goto undo;
	if (mkdirat(j->dirfd, RB_RUN_OUTPUT, 0700) < 0) {
		rb_fail(err, "cannot create directory %s/%s: %s", tmp, RB_RUN_OUTPUT, strerror(errno));
		goto undo;
	}
	int fd = openat(j->dirfd, RB_RUN_JOURNAL, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rb_fail(err, "cannot create %s/%s: %s", tmp, RB_RUN_JOURNAL, strerror(errno));
		goto undo;
	}
	int synced = rb_sync_fd(fd, 0) == 0 && rb_sync_dir(j->dirfd) == 0;
	close(fd);
	if (!synced) {
		rb_fail(err, "cannot sync the new run %s: %s", tmp, strerror(errno));
		goto undo;
	}
	if (rename_new(tmp, dir) < 0) {
		if (errno == EEXIST || errno == ENOTEMPTY)
			rb_fail(err, "run %s already exists in %s", run_id, runs);
		else
			rb_fail(err, "cannot rename %s to %s: %s", tmp, dir, strerror(errno));
		goto undo;
	}
	made = 0;
	/* The run exists once runs/ has its entry on disk. */
	if (rb_sync_parent(dir) < 0) {
		rb_fail(err, "cannot sync %s: %s", runs, strerror(errno));
		goto undo;
	}
	if (open_log(j, key, NULL, run_id, err) < 0)
		goto undo;
	take_head(j);
	free(runs);
	free(tmp);
	free(dir);
	*out = j;
	return 0;
oom:
	errno = ENOMEM;
	rb_fail(err, "out of memory");
undo:;
	int saved = errno;
	rb_journal_close(j);
	if (made)
		remove_new_run(tmp);
	free(runs);
	free(tmp);
	free(dir);
	errno = saved;
	return -1;
}

/*
 * What a resume checks before it appends anything: the log's last record is
 * signed by a key of trust (its chain, which the scan checked, commits to
 * every record before it), and so is the snapshot, whose head must be the
 * log's record at its seq.  Then the state a resume reads is all the work of
 * the keys it trusts.
 */
static int check_signed(const struct scan *s, const char *dir,
			const struct rb_audit_keyring *trust, char **err)
{
	char why[256];
	errno = EINVAL;
	if (s->last_line && rb_audit_check_line(s->last_line, s->last_len, trust, why,
						sizeof(why)) < 0)
		return rb_fail(err, "%s/%s:%zu: the run's last record does not verify: %s", dir,
			       RB_RUN_JOURNAL, s->last_lineno, why);
	if (!s->snap_text)
		return 0;
	if (rb_audit_check_doc(s->snap_text, s->snap_len, s->snap_key_id, trust, why,
			       sizeof(why)) < 0)
		return rb_fail(err, "%s/%s: the snapshot does not verify: %s", dir, RB_RUN_SNAPSHOT,
			       why);
	if (s->snap_seq > 0 && strcmp(s->snap_head, s->log_at_snap))
		return rb_fail(err, "%s/%s: the snapshot's head is not the log's record at seq %"
			       PRIu64 ": they are not of one run", dir, RB_RUN_SNAPSHOT, s->snap_seq);
	return 0;
}

/*
 * Why the signatures of a run cannot be checked with trust, or NULL: the key
 * of its last record, or of its snapshot, is not in it, or the snapshot is of
 * version 1 (unsigned).
 */
static char *unverifiable(const struct scan *s, const char *dir,
			  const struct rb_audit_keyring *trust)
{
	char *why = NULL;
	if (s->last_line) {
		json_t *rec = json_loadb(s->last_line, s->last_len, JSON_ALLOW_NUL, NULL);
		const char *kid = json_string_value(json_object_get(rec, "key_id"));
		if (kid && !rb_audit_keyring_find(trust, kid))
			why = rb_xasprintf("%s/%s:%zu: signed by key %s, which is not in the keyring",
					   dir, RB_RUN_JOURNAL, s->last_lineno, kid);
		json_decref(rec);
	}
	if (!why && s->snap_text && !s->snap_key_id)
		why = rb_xasprintf("%s/%s: the snapshot is of version 1, which is not signed", dir,
				   RB_RUN_SNAPSHOT);
	else if (!why && s->snap_text && !rb_audit_keyring_find(trust, s->snap_key_id))
		why = rb_xasprintf("%s/%s: signed by key %s, which is not in the keyring", dir,
				   RB_RUN_SNAPSHOT, s->snap_key_id);
	return why;
}

int rb_journal_load_trusted(const char *run_dir, const struct rb_audit_keyring *trust,
			    json_t **snapshot, json_t **records, json_t **torn_info,
			    char **unverified, char **err)
{
	struct scan s;
	if (snapshot)
		*snapshot = NULL;
	*records = NULL;
	if (torn_info)
		*torn_info = NULL;
	if (unverified)
		*unverified = NULL;
	int dfd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return rb_fail(err, "cannot open run %s: %s", run_dir, strerror(errno));
	int r = scan_run(dfd, run_dir, &s, err);
	close(dfd);
	if (r < 0)
		return -1;
	if (trust) {
		char *why = unverifiable(&s, run_dir, trust);
		if (why && unverified)
			*unverified = why;
		else
			free(why);
		if (!why && check_signed(&s, run_dir, trust, err) < 0) {
			scan_release(&s);
			return -1;
		}
	}
	if (snapshot) {
		*snapshot = s.state;
		s.state = NULL;
	}
	*records = s.records;
	s.records = NULL;
	if (torn_info) {
		*torn_info = s.torn;
		s.torn = NULL;
	}
	scan_release(&s);
	return 0;
}

int rb_journal_load(const char *run_dir, json_t **snapshot, json_t **records,
		    json_t **torn_info, char **err)
{
	return rb_journal_load_trusted(run_dir, NULL, snapshot, records, torn_info, NULL, err);
}

int rb_journal_hold(const char *run_dir, char **err)
{
	/* The run's directory is the engine's: a symbolic link in its place is not followed. */
	int fd = open(run_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		struct stat lst;
		int linked = errno == ELOOP || (errno == ENOTDIR && lstat(run_dir, &lst) == 0 &&
						S_ISLNK(lst.st_mode));
		return rb_fail(err, "cannot open run %s: %s", run_dir, linked
			       ? "it is a symbolic link, not followed" : strerror(errno));
	}
	if (lock_run(fd, run_dir, err) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int rb_journal_open(const char *run_dir, const char *run_id, const struct rb_audit_key *key,
		    const struct rb_audit_keyring *trust, struct rb_journal **out, char **err)
{
	*out = NULL;
	int hold = rb_journal_hold(run_dir, err);
	if (hold < 0)
		return -1;
	return rb_journal_open_held(hold, run_dir, run_id, key, trust, out, err);
}

int rb_journal_open_held(int hold, const char *run_dir, const char *run_id,
			 const struct rb_audit_key *key, const struct rb_audit_keyring *trust,
			 struct rb_journal **out, char **err)
{
	struct scan s = {0};
	struct rb_journal *j;

	*out = NULL;
	j = journal_new(run_dir);
	if (!j) {
		close(hold);
		errno = ENOMEM;
		return rb_fail(err, "out of memory");
	}
	j->dirfd = hold;        /* closed with j: the hold ends with the journal */
	if (crash_from_env(j, err) < 0)
		goto undo;
	remove_temps(j->dirfd);
	if (scan_run(j->dirfd, run_dir, &s, err) < 0)
		goto undo;
	if (trust && check_signed(&s, run_dir, trust, err) < 0)
		goto undo;
	/*
	 * Finish what a crashed process may have left undone: records it wrote
	 * but never synced (the kernel kept them, and load has shown them to the
	 * engine, which will act on them), the rename of a compaction cut off
	 * before its directory fsync, the entry of a run in runs/.
	 */
	int fd = openat(j->dirfd, RB_RUN_JOURNAL, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int synced = fd >= 0 && rb_sync_fd(fd, 1) == 0;
	if (fd >= 0)
		close(fd);
	if (!synced || rb_sync_dir(j->dirfd) < 0 || rb_sync_parent(run_dir) < 0) {
		rb_fail(err, "cannot sync run %s: %s", run_dir, strerror(errno));
		goto undo;
	}
	if (open_log(j, key, trust, run_id, err) < 0)
		goto undo;
	j->last_type = strdup(rb_audit_last_type(j->log));
	/* Appending after a torn line would glue the next record to it: cut it, on the record. */
	if (rb_audit_torn(j->log) && rb_audit_repair(j->log) < 0) {
		rb_fail(err, "cannot repair the torn tail of %s: %s", j->path, rb_audit_error(j->log));
		goto undo;
	}
	j->torn = s.torn;
	s.torn = NULL;
	take_head(j);
	j->snapshot_seq = s.snap_seq;
	j->jrecords = j->synced_seq - s.snap_seq;
	scan_release(&s);
	*out = j;
	return 0;
undo:;
	int saved = errno;
	scan_release(&s);
	rb_journal_close(j);
	errno = saved;
	return -1;
}

int rb_journal_append(struct rb_journal *j, json_t *rec)
{
	if (check_broken(j) < 0)
		return -1;
	if (rb_audit_append(j->log, rec) < 0) {
		errno = EINVAL;
		return jfail(j, "%s", rb_audit_error(j->log));
	}
	j->pending++;
	j->next_seq++;
	return 0;
}

/* rb_audit_write (sync 0) or rb_audit_sync of what was appended, or written before. */
static int flush(struct rb_journal *j, int sync)
{
	if (check_broken(j) < 0)
		return -1;
	if (j->pending == 0 && (!sync || !j->unsynced))
		return 0;
	if ((sync ? rb_audit_sync : rb_audit_write)(j->log) < 0) {
		jfail(j, "%s", rb_audit_error(j->log));
		return jbreak(j);
	}
	j->jrecords += j->pending;
	j->pending = 0;
	j->unsynced = !sync;
	if (sync)
		j->synced_seq = j->next_seq - 1;
	return 0;
}

int rb_journal_write(struct rb_journal *j)
{
	return flush(j, 0);
}

int rb_journal_sync(struct rb_journal *j)
{
	return flush(j, 1);
}

static void close_gate(struct rb_journal *j)
{
	for (int i = 0; i < 2; i++) {
		if (j->gate[i] >= 0)
			close(j->gate[i]);
		j->gate[i] = -1;
	}
}

int rb_journal_gate_fd(struct rb_journal *j)
{
	if (inject(j, RB_JP_BEFORE_GATE) < 0 && j->gate[1] < 0) {
		close_gate(j);
		if (pipe2(j->gate, O_CLOEXEC) < 0)
			j->gate[0] = j->gate[1] = -1;
	} else if (j->gate[0] < 0) {
		j->gate[0] = openat(j->dirfd, RB_RUN_JOURNAL, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	}
	return j->gate[0];
}

struct membuf {
	char *p;
	size_t len, cap;
};

static int membuf_add(const char *s, size_t n, void *arg)
{
	struct membuf *m = arg;
	if (m->len + n > m->cap) {
		size_t cap = m->cap ? m->cap : 65536;
		while (cap < m->len + n)
			cap *= 2;
		char *np = realloc(m->p, cap);
		if (!np)
			return -1;
		m->p = np;
		m->cap = cap;
	}
	memcpy(m->p + m->len, s, n);
	m->len += n;
	return 0;
}

/*
 * The log is never cut: the snapshot only saves a resume from replaying it
 * all, and it keeps the log's head, so that a cut tail shows.
 */
int rb_journal_compact(struct rb_journal *j, json_t *snapshot)
{
	struct membuf m = {0};
	char *err = NULL;
	int r = -1;

	if (!snapshot) {
		errno = EINVAL;
		return jfail(j, "no snapshot to compact into");
	}
	if (rb_journal_sync(j) < 0)
		return -1;
	struct rb_audit_head h;
	rb_audit_log_head(j->log, &h);
	json_t *wrap = json_pack("{s:s,s:i,s:I,s:{s:I,s:s},s:s,s:O}", "format", SNAPSHOT_FORMAT,
				 "version", RB_SNAPSHOT_VERSION, "seq", (json_int_t)h.seq, "head",
				 "seq", (json_int_t)h.seq, "sha256", h.sha256, "key_id",
				 rb_audit_key_id(j->key), "state", snapshot);
	if (!wrap) {
		errno = ENOMEM;
		return jfail(j, "out of memory");
	}
	if (json_dump_callback(wrap, membuf_add, &m, JSON_COMPACT) < 0 ||
	    membuf_add("\n", 1, &m) < 0) {
		errno = EINVAL;
		jfail(j, "cannot encode the snapshot of %s as JSON", j->dir);
		goto out;
	}
	/* Signed, so that a resume can trust the state it reads (check_signed). */
	size_t slen;
	char *signed_text = rb_audit_sign_doc(j->key, m.p, m.len, &slen, &err);
	if (!signed_text) {
		errno = EINVAL;
		jfail(j, "cannot sign the snapshot of %s: %s", j->dir, err);
		goto out;
	}
	free(m.p);
	m.p = signed_text;
	m.len = slen;
	if (rb_write_durable_at(j->dirfd, j->dir, RB_RUN_SNAPSHOT, m.p, m.len, 0600, j->hook,
				j->hook_arg, &err) < 0) {
		jfail(j, "%s", err ? err : "cannot write the snapshot");
		goto out;
	}
	j->snapshot_seq = h.seq;
	j->jrecords = 0;
	j->compactions++;
	inject(j, RB_JP_AFTER_DIR_FSYNC);
	r = 0;
out:
	json_decref(wrap);
	free(m.p);
	free(err);
	return r;
}

void rb_journal_close(struct rb_journal *j)
{
	if (!j)
		return;
	rb_audit_close(j->log);
	close_gate(j);
	/* Closing the directory releases the run's lock. */
	if (j->dirfd >= 0)
		close(j->dirfd);
	json_decref(j->torn);
	free(j->last_type);
	free(j->broken);
	free(j->errmsg);
	free(j->path);
	free(j->dir);
	free(j);
}

const char *rb_journal_error(const struct rb_journal *j)
{
	return j->errmsg ? j->errmsg : "";
}

const char *rb_journal_last_type(const struct rb_journal *j)
{
	return j->last_type ? j->last_type : "";
}

const json_t *rb_journal_torn(const struct rb_journal *j)
{
	return j->torn;
}

void rb_journal_stats(const struct rb_journal *j, struct rb_journal_stats *st)
{
	uint64_t records, syncs;
	rb_audit_counts(j->log, &records, &syncs);
	st->last_seq = j->next_seq - 1;
	st->synced_seq = j->synced_seq;
	st->snapshot_seq = j->snapshot_seq;
	st->pending = j->pending;
	st->journal_records = j->jrecords + j->pending;
	st->syncs = syncs;
	st->compactions = j->compactions;
}

void rb_journal_head(const struct rb_journal *j, struct rb_audit_head *h)
{
	rb_audit_log_head(j->log, h);
}

void rb_journal_set_hook(struct rb_journal *j, rb_journal_hook *hook, void *arg)
{
	j->hook = hook;
	j->hook_arg = arg;
	if (j->log)
		rb_audit_set_hook(j->log, hook, arg);
}
