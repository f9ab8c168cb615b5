/*
 * The audit log's appender: continue a log from its last record, stamp, sign
 * and chain records, write them in groups with one fdatasync, and remove a
 * torn tail only after a signed record of it is safe.  It must never report
 * as written what is not, nor drop bytes from a log without a record saying
 * so; docs/audit-format.md has the rules.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit_int.h"
#include "durable.h"
#include "util.h"

#define TAIL_WINDOW     (64 * 1024)             /* first read from the end */
#define TAIL_MAX        (4 * (uint64_t)RB_AUDIT_LINE_MAX)
#define REPAIR_DATA_MAX (64 * 1024)             /* torn bytes kept in log_repaired */

/* The keys the log sets in every record, sorted as a canonical line's keys are. */
enum { F_KEY_ID, F_PREV, F_RUN_ID, F_SEQ, F_SIG, F_TS, NFIXED };
static const char *const fixed[NFIXED] = {"key_id", "prev", "run_id", "seq", "sig", "ts"};

/*
 * A record appended and not yet chained: its canonical line without the keys
 * the log sets, encoded once, and where those keys go (rb_audit_canon_gaps).
 */
struct pend {
	size_t at, len;                 /* its bytes in a buffer, */
	size_t gap[NFIXED];             /* the keys' places, from at, */
	size_t type_at;                 /* and its type there, NUL-terminated */
	char ts[32];
};

struct rb_audit_log {
	char *path, *dir, *repair_name; /* the log, its directory, PATH.repair's name in it */
	int fd;                         /* O_APPEND */
	unsigned flags;
	const struct rb_audit_key *key;
	char *run_id;
	EVP_MD_CTX *ctx, *tmpl;         /* tmpl: set up to sign with key, copied into ctx */
	EVP_MD_CTX *hctx;               /* for the chain's hashes */
	char ts[32];                    /* the last ts stamped, */
	int64_t ts_sec;                 /* and its second (-1: none) */

	/* The end of the file as this handle knows it. */
	uint64_t seq;                   /* of the last record, 0: none */
	char prev[65];                  /* the SHA-256 of its line */
	char *last_type;
	uint64_t size;
	struct rb_audit_torn torn;      /* length 0: none */

	struct pend *pend;              /* records appended, not yet chained */
	size_t npend, pendcap;
	struct rb_buf pbytes;           /* their encodings */
	struct rb_buf out;              /* signed lines being written */
	struct rb_buf msg;              /* the bytes a signature is over */
	struct rb_audit_head head;      /* as of the last sync */
	int unsynced;                   /* written since the last fdatasync */

	char *broken;                   /* a write or sync failed: nothing may be trusted */
	char *errmsg;
	int64_t (*now_ms)(void *arg);
	void *now_arg;
	rb_journal_hook *hook;          /* the tests' failure and crash injection */
	void *hook_arg;
	uint64_t records, syncs;
	struct rb_audit_keyring *trust; /* who may have signed a PATH.repair to complete */
};

/* --- errors and system calls -------------------------------------------------------- */

__attribute__((format(printf, 2, 3)))
static int afail(struct rb_audit_log *a, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	free(a->errmsg);
	a->errmsg = rb_xvasprintf(fmt, ap);
	va_end(ap);
	errno = saved;
	return -1;
}

/* Marks a broken with its current message: the first failure is the one kept. */
static int abreak(struct rb_audit_log *a)
{
	if (!a->broken)
		a->broken = rb_xstrdup(a->errmsg ? a->errmsg : "unknown error");
	return -1;
}

static int read_all_at(int fd, char *p, size_t n, uint64_t off)
{
	while (n > 0) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;    /* the file shrank under us */
			return -1;
		}
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int lock(int fd, int op)
{
	int r;
	do
		r = flock(fd, op);
	while (r < 0 && errno == EINTR);
	return r;
}

static int64_t realtime_ms(void *arg)
{
	(void)arg;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- the tail ------------------------------------------------------------------- */

void rb_audit_tail_release(struct rb_audit_tail *t)
{
	free(t->last);
	memset(t, 0, sizeof(*t));
}

/*
 * Finds the last whole line in buf, which holds the file's bytes from start
 * to size: 1 when found (or when there is none, at start 0), 0 when the
 * window must grow.
 */
static int tail_scan(const char *buf, uint64_t start, struct rb_audit_tail *t)
{
	uint64_t n = t->size - start;
	const char *nl = n ? memrchr(buf, '\n', n) : NULL;
	t->torn.records = 0;
	if (!nl)
		return start == 0 ? (t->torn.offset = 0, 1) : 0;
	uint64_t torn = start + (uint64_t)(nl - buf) + 1;
	for (;;) {
		if (torn == 0) {
			t->torn.offset = 0;
			return 1;
		}
		uint64_t end = torn - 1;        /* the line's newline */
		const char *p = end > start ? memrchr(buf, '\n', end - start) : NULL;
		if (!p && start > 0)
			return 0;
		uint64_t begin = p ? start + (uint64_t)(p - buf) + 1 : 0;
		if (memchr(buf + (begin - start), 0, end - begin)) {
			torn = begin;   /* zeros a power loss left: part of the torn tail */
			continue;
		}
		if (rb_audit_line_signed(buf + (begin - start), end - begin) == 0) {
			torn = begin;   /* a record of a group whose signed end is missing */
			t->torn.records++;
			continue;
		}
		t->torn.offset = torn;
		t->end = torn;
		t->last_len = end - begin;
		t->last = rb_xstrndup(buf + (begin - start), t->last_len);
		return 1;
	}
}

int rb_audit_read_tail(int fd, const char *path, struct rb_audit_tail *t, char **err)
{
	struct stat st;
	memset(t, 0, sizeof(*t));
	if (fstat(fd, &st) < 0)
		return rb_fail(err, "cannot stat %s: %s", path, strerror(errno));
	t->size = (uint64_t)st.st_size;
	for (uint64_t window = TAIL_WINDOW;; window *= 4) {
		uint64_t start = t->size > window ? t->size - window : 0;
		char *buf = rb_xmalloc(t->size - start + 1);
		if (read_all_at(fd, buf, t->size - start, start) < 0) {
			free(buf);
			return rb_fail(err, "cannot read %s: %s", path, strerror(errno));
		}
		int done = tail_scan(buf, start, t);
		free(buf);
		if (done)
			break;
		if (window >= TAIL_MAX)
			return rb_fail(err, "%s: no whole record in its last %" PRIu64 " bytes", path,
				    window);
	}
	t->torn.length = t->size - t->torn.offset;
	return 0;
}

int rb_audit_line_signed(const char *line, size_t len)
{
	json_t *v = json_loadb(line, len, JSON_ALLOW_NUL, NULL);
	int r = !json_is_object(v) || !json_is_integer(json_object_get(v, "seq")) ? -1
		: json_is_string(json_object_get(v, "sig"));
	json_decref(v);
	return r;
}

/* The seq and type of a line that must be a record; -1 when it is not one. */
static int line_fields(const char *line, size_t len, uint64_t *seq, char **type)
{
	json_t *v = json_loadb(line, len, JSON_ALLOW_NUL, NULL);
	json_t *s = json_object_get(v, "seq"), *ty = json_object_get(v, "type");
	int ok = json_is_integer(s) && json_integer_value(s) > 0 && json_is_string(ty);
	if (ok) {
		*seq = (uint64_t)json_integer_value(s);
		if (type)
			*type = rb_xstrdup(json_string_value(ty));
	}
	json_decref(v);
	return ok ? 0 : -1;
}

int rb_audit_head(const char *path, struct rb_audit_head *h, struct rb_audit_torn *torn,
		  char **err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return rb_fail(err, "cannot open %s: %s", path, strerror(errno));
	struct rb_audit_tail t;
	int r = rb_audit_read_tail(fd, path, &t, err);
	close(fd);
	if (r < 0)
		return -1;
	h->seq = 0;
	memcpy(h->sha256, ZERO_HASH, 65);
	if (t.last && line_fields(t.last, t.last_len, &h->seq, NULL) < 0)
		r = rb_fail(err, "%s: the last record does not read", path);
	else if (t.last)
		rb_sha256_hex(t.last, t.last_len, h->sha256);
	if (torn) {
		*torn = t.torn;
		torn->line = h->seq + 1;
	}
	rb_audit_tail_release(&t);
	return r;
}

/* Take in the file's end: the last record's seq, hash and type, and a torn tail. */
static int load_tail(struct rb_audit_log *a)
{
	struct rb_audit_tail t;
	char *e = NULL;
	if (rb_audit_read_tail(a->fd, a->path, &t, &e) < 0) {
		afail(a, "%s", e);
		free(e);
		return -1;
	}
	uint64_t seq = 0;
	char *type = rb_xstrdup("");
	if (t.last) {
		free(type);
		type = NULL;
		if (line_fields(t.last, t.last_len, &seq, &type) < 0) {
			rb_audit_tail_release(&t);
			return afail(a, "%s: the last record does not read (check the log with "
				     "'runbook audit verify')", a->path);
		}
		rb_sha256_hex(t.last, t.last_len, a->prev);
	} else {
		memcpy(a->prev, ZERO_HASH, 65);
	}
	a->seq = seq;
	free(a->last_type);
	a->last_type = type;
	a->size = t.size;
	a->torn = t.torn;
	a->torn.line = seq + 1;
	rb_audit_tail_release(&t);
	return 0;
}

/* --- signing ---------------------------------------------------------------------- */

/* ts: now, as a record's time. */
static void stamp(struct rb_audit_log *a, char ts[32])
{
	/* The date and time are formatted once a second; the milliseconds each time. */
	int64_t ms = a->now_ms(a->now_arg);
	if (ms < 0 || ms / 1000 != a->ts_sec) {
		rb_audit_format_ts(ms, a->ts);
		a->ts_sec = ms < 0 ? -1 : ms / 1000;
	} else {
		int f = (int)(ms % 1000);       /* "...SS.fffZ": the f digits are at 20-22 */
		a->ts[20] = (char)('0' + f / 100);
		a->ts[21] = (char)('0' + f / 10 % 10);
		a->ts[22] = (char)('0' + f % 10);
	}
	memcpy(ts, a->ts, sizeof(a->ts));
}

/*
 * Encode rec (an object with a "type", without the keys the log sets) into
 * bytes as the next record to chain, stamped now; -1 (and *err) when it has
 * what a record cannot hold.
 */
static int encode_pend(struct rb_audit_log *a, const json_t *rec, struct rb_buf *bytes,
		       struct pend *p, char **err)
{
	p->at = bytes->len;
	if (rb_audit_canon_gaps(rec, fixed, NFIXED, bytes, p->gap, err) < 0)
		return -1;
	p->len = bytes->len - p->at;
	for (int k = 0; k < NFIXED; k++)
		p->gap[k] -= p->at;
	const char *type = json_string_value(json_object_get(rec, "type"));
	p->type_at = bytes->len;
	rb_buf_add(bytes, type, strlen(type) + 1);
	stamp(a, p->ts);
	return 0;
}

/*
 * The line of p (its bytes at base) with the keys the log sets: seq, prev, run_id
 * and ts; key_id with sign; sig when given (its base64).
 */
static void merge(const struct rb_audit_log *a, const char *base, const struct pend *p,
		  int sign, const char *sig, struct rb_buf *out)
{
	const char *s = base + p->at;
	size_t done = 0;
	for (int k = 0; k < NFIXED; k++) {
		if ((k == F_KEY_ID && !sign) || (k == F_SIG && !sig))
			continue;
		size_t g = p->gap[k];
		int last = s[g] == '}';         /* else the member that follows starts there */
		rb_buf_add(out, s + done, g - done);
		done = g;
		if (last)
			rb_buf_putc(out, ',');
		rb_audit_canon_string(out, fixed[k], strlen(fixed[k]));
		rb_buf_putc(out, ':');
		if (k == F_SEQ) {
			rb_audit_canon_int(out, (json_int_t)(a->seq + 1));
		} else {
			const char *v = k == F_KEY_ID ? a->key->id : k == F_PREV ? a->prev
					: k == F_RUN_ID ? a->run_id : k == F_SIG ? sig : p->ts;
			rb_audit_canon_string(out, v, strlen(v));
		}
		if (!last)
			rb_buf_putc(out, ',');
	}
	rb_buf_add(out, s + done, p->len - done);
}

/*
 * Chain p (its bytes at base) as the next record: with sign (the last record of
 * a group), key_id and sig; appends its line and a newline to out, and moves
 * the chain on.
 */
static int chain_record(struct rb_audit_log *a, const char *base, const struct pend *p,
			int sign, struct rb_buf *out)
{
	char b64[SIG_B64_LEN + 1];
	size_t start = out->len;
	if (sign) {
		/* The signed bytes are the line without its "sig" member, after the context. */
		unsigned char sig[SIG_LEN];
		a->msg.len = 0;
		rb_buf_add(&a->msg, SIG_CONTEXT, SIG_CONTEXT_LEN);
		merge(a, base, p, 1, NULL, &a->msg);
		if (rb_audit_sign_copy(a->tmpl, a->ctx, a->msg.s, a->msg.len, sig) < 0)
			return afail(a, "%s: cannot sign a record with key %s", a->path, a->key->id);
		rb_audit_b64(sig, SIG_LEN, b64);
	}
	merge(a, base, p, sign, sign ? b64 : NULL, out);
	rb_sha256_hex_ctx(a->hctx, out->s + start, out->len - start, a->prev);
	rb_buf_putc(out, '\n');
	a->seq++;
	return 0;
}

static void set_last_type(struct rb_audit_log *a, const char *type)
{
	free(a->last_type);
	a->last_type = rb_xstrdup(type);
}

/* --- repairs ---------------------------------------------------------------------- */

static char *repair_path(const struct rb_audit_log *a)
{
	return rb_xasprintf("%s/%s", a->dir, a->repair_name);
}

/* Cut the file to end, append line (with its newline) and make both durable. */
static int cut_and_append(struct rb_audit_log *a, uint64_t end, const char *line, size_t len)
{
	if (ftruncate(a->fd, (off_t)end) < 0 || rb_write_all(a->fd, line, len) < 0 ||
	    rb_sync_fd(a->fd, 1) < 0) {
		afail(a, "cannot repair %s: %s", a->path, strerror(errno));
		return abreak(a);
	}
	a->size = end + len;
	a->syncs++;
	return 0;
}

/*
 * PATH.repair, whole: a regular file (never followed through a symlink) of
 * at most one line.  0 and *buf, 1 when there is none, -1 after afail.
 */
static int read_repair(struct rb_audit_log *a, const char *rpath, char **buf, size_t *len)
{
	int fd = open(rpath, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return 1;
	struct stat st;
	int r = 0;
	if (fd < 0 || fstat(fd, &st) < 0)
		r = afail(a, "cannot open %s: %s", rpath, strerror(errno));
	else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > (uint64_t)RB_AUDIT_LINE_MAX + 1)
		r = afail(a, "%s: not a repair record (%s); check the log with 'runbook audit "
			  "verify', then remove it", rpath, !S_ISREG(st.st_mode) ? "not a regular file"
			  : "too long");
	if (r == 0) {
		*len = (size_t)st.st_size;
		*buf = rb_xmalloc(*len + 1);
		if (read_all_at(fd, *buf, *len, 0) < 0) {
			r = afail(a, "cannot read %s: %s", rpath, strerror(errno));
			free(*buf);
			*buf = NULL;
		} else {
			(*buf)[*len] = '\0';
		}
	}
	if (fd >= 0)
		close(fd);
	return r;
}

/*
 * The bytes of the log from off to its end are what a log_repaired record
 * says it removes (its length and SHA-256), or a prefix of the record's own
 * line (the cut was made, the append cut short): then completing the repair
 * removes nothing that the record does not account for.
 */
static int tail_fits(struct rb_audit_log *a, uint64_t off, uint64_t size, const json_t *rec,
		     const char *line, size_t len)
{
	uint64_t n = size - off;
	json_t *jl = json_object_get(rec, "length");
	const char *sha = json_string_value(json_object_get(rec, "sha256"));
	if (n < len) {
		char *b = rb_xmalloc(n + 1);
		int same = read_all_at(a->fd, b, n, off) == 0 && !memcmp(b, line, n);
		free(b);
		if (same)
			return 1;
	}
	if (!json_is_integer(jl) || (uint64_t)json_integer_value(jl) != n || !sha)
		return 0;
	/* The torn bytes may be many: hash them a piece at a time. */
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dn = 0;
	char hex[65], *piece = rb_xmalloc(TAIL_WINDOW);
	int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	for (uint64_t at = off; ok && at < size;) {
		size_t k = size - at < TAIL_WINDOW ? (size_t)(size - at) : TAIL_WINDOW;
		ok = read_all_at(a->fd, piece, k, at) == 0 && EVP_DigestUpdate(md, piece, k);
		at += k;
	}
	ok = ok && EVP_DigestFinal_ex(md, d, &dn) && dn == 32;
	EVP_MD_CTX_free(md);
	free(piece);
	if (ok)
		rb_hex(d, 32, hex);
	return ok && !strcmp(hex, sha);
}

/*
 * A repair a crash interrupted: PATH.repair holds its signed record, written
 * before anything was cut.  Whatever the log's end is now (the torn bytes,
 * cut, or part of the record), the record follows the log's last whole line;
 * put it there.  Only a record that verifies is put there: signed by a key of
 * a->trust, a log_repaired of this log's run, chained to the log's last
 * record, and accounting for every byte it takes the place of.  Anything else
 * changes nothing and is an error naming the file, since a forged repair
 * would be chained over by every record signed after it.
 */
static int finish_repair(struct rb_audit_log *a)
{
	char *rpath = repair_path(a), *buf = NULL, *e = NULL, why[256];
	size_t len = 0;
	json_t *rec = NULL;
	struct rb_audit_tail t = {0};
	int r = read_repair(a, rpath, &buf, &len);
	if (r != 0) {
		r = r > 0 ? 0 : -1;
		goto out;
	}
	const char *fix = "check the log with 'runbook audit verify', then remove it";
	uint64_t rseq;
	if (len > 1 && buf[len - 1] == '\n' && !memchr(buf, '\n', len - 1) &&
	    !memchr(buf, 0, len))
		rec = json_loadb(buf, len - 1, JSON_ALLOW_NUL, NULL);
	const char *rprev = json_string_value(json_object_get(rec, "prev"));
	const char *rtype = json_string_value(json_object_get(rec, "type"));
	const char *rrun = json_string_value(json_object_get(rec, "run_id"));
	json_t *roff = json_object_get(rec, "offset");
	if (!rprev || !rrun || line_fields(buf, len - 1, &rseq, NULL) < 0) {
		r = afail(a, "%s: not a record; %s", rpath, fix);
		goto out;
	}
	if (rb_audit_check_line(buf, len - 1, a->trust, why, sizeof(why)) < 0) {
		r = afail(a, "%s: its record does not verify (%s): not completing the repair; %s",
			  rpath, why, fix);
		goto out;
	}
	if (!rtype || strcmp(rtype, "log_repaired")) {
		r = afail(a, "%s: a %s record, not a log_repaired; %s", rpath, rtype ? rtype : "?",
			  fix);
		goto out;
	}
	if (!(a->flags & RB_AUDIT_SHARED) && strcmp(rrun, a->run_id)) {
		r = afail(a, "%s: a record of run %s, not of %s; %s", rpath, rrun, a->run_id, fix);
		goto out;
	}
	if (rb_audit_read_tail(a->fd, a->path, &t, &e) < 0) {
		r = afail(a, "%s", e);
		goto out;
	}
	uint64_t gseq = 0;
	char ghash[65] = ZERO_HASH;
	if (t.last) {
		if (line_fields(t.last, t.last_len, &gseq, NULL) < 0)
			gseq = UINT64_MAX;
		rb_sha256_hex(t.last, t.last_len, ghash);
	}
	if (t.last && t.last_len == len - 1 && !memcmp(t.last, buf, len - 1)) {
		/* The record made it: only the file is left to remove. */
	} else if (!strcmp(rprev, ghash) && gseq != UINT64_MAX && rseq == gseq + 1 &&
		   json_is_integer(roff) && (uint64_t)json_integer_value(roff) == t.end &&
		   tail_fits(a, t.end, t.size, rec, buf, len)) {
		r = cut_and_append(a, t.end, buf, len);
	} else {
		r = afail(a, "%s (an interrupted repair) does not follow the last record of %s; %s",
			  rpath, a->path, fix);
	}
	if (r == 0 && unlink(rpath) < 0)
		r = afail(a, "cannot remove %s: %s", rpath, strerror(errno));
out:
	rb_audit_tail_release(&t);
	json_decref(rec);
	free(e);
	free(buf);
	free(rpath);
	return r;
}

/* The torn tail a->torn becomes a log_repaired record; the caller holds the lock if shared. */
static int repair(struct rb_audit_log *a)
{
	uint64_t off = a->torn.offset, n = a->torn.length;
	char hex[65], *e = NULL;
	char *bytes = rb_xmalloc(n + 1);
	if (read_all_at(a->fd, bytes, n, off) < 0) {
		free(bytes);
		return afail(a, "cannot read the torn tail of %s: %s", a->path, strerror(errno));
	}
	rb_sha256_hex(bytes, n, hex);
	json_t *rec = json_pack("{s:s,s:I,s:I,s:s}", "type", "log_repaired", "offset",
				(json_int_t)off, "length", (json_int_t)n, "sha256", hex);
	if (n <= REPAIR_DATA_MAX) {
		char *b64 = rb_xmalloc(4 * (n / 3 + 1) + 1);
		rb_audit_b64((const unsigned char *)bytes, n, b64);
		json_object_set_new(rec, "data", json_string(b64));
		free(b64);
	}
	free(bytes);
	if (a->torn.records)     /* records written without the signature that ends their group */
		json_object_set_new(rec, "records", json_integer((json_int_t)a->torn.records));
	struct rb_buf line, enc;
	rb_buf_init(&line);
	rb_buf_init(&enc);
	struct pend p;
	uint64_t seq = a->seq;
	char prev[65], *type = rb_xstrdup(rb_audit_last_type(a));
	memcpy(prev, a->prev, sizeof(prev));
	int r = encode_pend(a, rec, &enc, &p, &e);
	if (r < 0)                      /* cannot be: the record is ours */
		r = afail(a, "%s: cannot encode a record: %s", a->path, e);
	else
		r = chain_record(a, enc.s, &p, 1, &line);
	if (r == 0)
		set_last_type(a, "log_repaired");
	json_decref(rec);
	rb_buf_release(&enc);
	/* First the record, whole and durable, beside the log: then the cut cannot lose it. */
	if (r == 0 && rb_write_durable(a->dir, a->repair_name, line.s, line.len, 0600, &e) < 0)
		r = afail(a, "%s", e);
	if (r < 0) {
		/* Nothing was written: the log's end is where it was. */
		a->seq = seq;
		memcpy(a->prev, prev, sizeof(prev));
		free(a->last_type);
		a->last_type = type;
		type = NULL;
	}
	free(type);
	if (r == 0)
		r = cut_and_append(a, off, line.s, line.len);
	if (r == 0) {
		char *rpath = repair_path(a);
		if (unlink(rpath) < 0)
			r = afail(a, "cannot remove %s: %s", rpath, strerror(errno));
		free(rpath);
		memset(&a->torn, 0, sizeof(a->torn));
		a->records++;
	}
	free(e);
	rb_buf_release(&line);
	return r;
}

int rb_audit_repair(struct rb_audit_log *a)
{
	if (a->broken)
		return afail(a, "%s is broken since an earlier failure (%s)", a->path, a->broken);
	if (!a->torn.length)
		return 0;
	int shared = a->flags & RB_AUDIT_SHARED;
	if (shared && lock(a->fd, LOCK_EX) < 0)
		return afail(a, "cannot lock %s: %s", a->path, strerror(errno));
	int r = shared ? load_tail(a) : 0;
	if (r == 0 && a->torn.length)
		r = repair(a);
	if (r == 0) {
		a->head.seq = a->seq;
		memcpy(a->head.sha256, a->prev, 65);
	}
	if (shared)
		lock(a->fd, LOCK_UN);
	return r;
}

/* --- the log ----------------------------------------------------------------------- */

/* A copy of trust, or a keyring of key alone when trust is NULL or empty. */
static struct rb_audit_keyring *trust_copy(const struct rb_audit_key *key,
					   const struct rb_audit_keyring *trust)
{
	struct rb_audit_keyring *kr = rb_audit_keyring_new();
	size_t n = trust ? rb_audit_keyring_count(trust) : 0;
	for (size_t i = 0; i < n; i++) {
		const char *id = rb_audit_keyring_id(trust, i);
		/* From a keyring: no two keys share an id, so this cannot fail. */
		rb_audit_keyring_add(kr, rb_audit_keyring_find(trust, id), id, NULL);
	}
	if (!n)
		rb_audit_keyring_add(kr, key, "the signing key", NULL);
	return kr;
}

int rb_audit_open(const char *path, const struct rb_audit_key *key, const char *run_id,
		  unsigned flags, struct rb_audit_log **out, char **err)
{
	return rb_audit_open_trusted(path, key, NULL, run_id, flags, out, err);
}

int rb_audit_open_trusted(const char *path, const struct rb_audit_key *key,
			  const struct rb_audit_keyring *trust, const char *run_id,
			  unsigned flags, struct rb_audit_log **out, char **err)
{
	*out = NULL;
	if (!key->can_sign)
		return rb_fail(err, "key %s is a public key: it cannot sign", key->id);
	if (!run_id || !*run_id)
		return rb_fail(err, "no run id for the audit log");
	struct rb_audit_log *a = rb_xcalloc(1, sizeof(*a));
	a->trust = trust_copy(key, trust);
	a->path = rb_xstrdup(path);
	const char *slash = strrchr(path, '/');
	a->dir = !slash ? rb_xstrdup(".") : slash == path ? rb_xstrdup("/")
				    : rb_xstrndup(path, (size_t)(slash - path));
	a->repair_name = rb_xasprintf("%s.repair", slash ? slash + 1 : path);
	a->flags = flags;
	a->key = key;
	a->run_id = rb_xstrdup(run_id);
	a->ctx = EVP_MD_CTX_new();
	a->tmpl = EVP_MD_CTX_new();
	a->hctx = EVP_MD_CTX_new();         /* NULL: rb_sha256_hex_ctx does without */
	rb_buf_init(&a->pbytes);
	a->now_ms = realtime_ms;
	a->ts_sec = -1;
	rb_buf_init(&a->out);
	rb_buf_init(&a->msg);
	int created = 1;
	a->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (a->fd < 0 && errno == EEXIST) {
		created = 0;
		a->fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC |
			     (flags & RB_AUDIT_NOFOLLOW ? O_NOFOLLOW : 0));
	}
	int r = 0;
	if (!a->ctx || !a->tmpl || rb_audit_sign_setup(key, a->tmpl) < 0) {
		r = rb_fail(err, "cannot set up signing with key %s", key->id);
		goto out;
	}
	if (a->fd < 0) {
		r = rb_fail(err, "cannot open %s: %s", path, errno == ELOOP
			    ? "a symbolic link, not followed" : strerror(errno));
		goto out;
	}
	/* A new file's entry must be durable too, or a power loss loses the whole log. */
	int dfd = created ? open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (created && (dfd < 0 || rb_sync_dir(dfd) < 0)) {
		r = rb_fail(err, "cannot sync %s: %s", a->dir, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		goto out;
	}
	if (dfd >= 0)
		close(dfd);
	int shared = flags & RB_AUDIT_SHARED;
	if (shared && lock(a->fd, LOCK_EX) < 0) {
		r = rb_fail(err, "cannot lock %s: %s", path, strerror(errno));
		goto out;
	}
	r = finish_repair(a);
	if (r == 0)
		r = load_tail(a);
	if (shared)
		lock(a->fd, LOCK_UN);
	if (r < 0)
		rb_fail(err, "%s", a->errmsg);
	a->head.seq = a->seq;
	memcpy(a->head.sha256, a->prev, 65);
out:
	if (r < 0) {
		rb_audit_close(a);
		return -1;
	}
	*out = a;
	return 0;
}

const struct rb_audit_torn *rb_audit_torn(const struct rb_audit_log *a)
{
	return a->torn.length ? &a->torn : NULL;
}

const char *rb_audit_last_type(const struct rb_audit_log *a)
{
	return a->last_type ? a->last_type : "";
}

int rb_audit_append(struct rb_audit_log *a, const json_t *rec)
{
	char *e = NULL;
	if (a->broken)
		return afail(a, "%s is broken since an earlier failure (%s)", a->path, a->broken);
	if (a->torn.length && !(a->flags & RB_AUDIT_SHARED))
		return afail(a, "%s ends in a torn tail (%" PRIu64 " bytes at offset %" PRIu64
			     "): repair it first", a->path, a->torn.length, a->torn.offset);
	if (!json_is_object(rec))
		return afail(a, "an audit record must be an object");
	const char *type = json_string_value(json_object_get(rec, "type"));
	if (!type || !*type)
		return afail(a, "an audit record needs a \"type\" string");
	for (size_t i = 0; i < NFIXED; i++)
		if (json_object_get(rec, fixed[i]))
			return afail(a, "an audit record may not set \"%s\" (the log sets it)",
				     fixed[i]);
	rb_grow(&a->pend, &a->pendcap, a->npend + 1, sizeof(*a->pend));
	if (encode_pend(a, rec, &a->pbytes, &a->pend[a->npend], &e) < 0) {
		afail(a, "audit record %s cannot be encoded: %s", type, e);
		free(e);
		return -1;
	}
	a->npend++;
	return 0;
}

/* Sign the pending records and write them, without fdatasync; -1 breaks the log. */
static int write_pending(struct rb_audit_log *a)
{
	size_t n = a->npend;
	if (n == 0)
		return 0;
	int shared = a->flags & RB_AUDIT_SHARED, r = 0;
	struct stat st;
	if (shared) {
		/* Another process may have appended since: continue from the file's end. */
		if (lock(a->fd, LOCK_EX) < 0)
			return afail(a, "cannot lock %s: %s", a->path, strerror(errno));
		r = finish_repair(a);
		if (r == 0)
			r = load_tail(a);
		if (r == 0 && a->torn.length)
			r = repair(a);
	} else if (a->torn.length) {
		r = afail(a, "%s ends in a torn tail: repair it first", a->path);
	} else if (fstat(a->fd, &st) < 0 || (uint64_t)st.st_size != a->size) {
		r = afail(a, "%s changed since it was opened (another writer?); not appending",
			  a->path);
	}
	a->out.len = 0;
	/* One signature, on the group's last record, covers the group through the chain. */
	for (size_t i = 0; r == 0 && i < n; i++)
		r = chain_record(a, a->pbytes.s, &a->pend[i], i == n - 1, &a->out);
	if (r == 0 && (rb_write_hooked(a->fd, a->out.s, a->out.len, a->hook, a->hook_arg) < 0 ||
		       rb_hook_inject(a->hook, a->hook_arg, RB_JP_AFTER_WRITE) < 0)) {
		afail(a, "cannot write %s: %s", a->path, strerror(errno));
		r = -1;
	}
	if (r == 0) {
		a->size += a->out.len;
		a->records += n;
		a->unsynced = 1;
		set_last_type(a, a->pbytes.s + a->pend[n - 1].type_at);
		a->npend = 0;
		a->pbytes.len = 0;
	}
	if (shared)
		lock(a->fd, LOCK_UN);
	/* Whatever failed, the chain in memory may be ahead of the file now. */
	return r < 0 ? abreak(a) : 0;
}

int rb_audit_write(struct rb_audit_log *a)
{
	if (a->broken)
		return afail(a, "%s is broken since an earlier failure (%s)", a->path, a->broken);
	if (write_pending(a) < 0)
		return -1;
	/* Only a start: errors of the write-back go to whoever syncs (each descriptor's). */
	if (a->unsynced)
		sync_file_range(a->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	return 0;
}

int rb_audit_sync(struct rb_audit_log *a)
{
	if (a->broken)
		return afail(a, "%s is broken since an earlier failure (%s)", a->path, a->broken);
	if (write_pending(a) < 0)
		return -1;
	if (!a->unsynced)
		return 0;
	if (rb_sync_fd(a->fd, 1) < 0) {
		afail(a, "cannot write %s: %s", a->path, strerror(errno));
		return abreak(a);
	}
	if (a->hook)
		a->hook(a->hook_arg, RB_JP_AFTER_FDATASYNC, NULL);
	a->unsynced = 0;
	a->syncs++;
	a->head.seq = a->seq;
	memcpy(a->head.sha256, a->prev, 65);
	return 0;
}

void rb_audit_log_head(const struct rb_audit_log *a, struct rb_audit_head *h)
{
	*h = a->head;
}

void rb_audit_set_clock(struct rb_audit_log *a, int64_t (*now_ms)(void *arg), void *arg)
{
	a->now_ms = now_ms ? now_ms : realtime_ms;
	a->now_arg = arg;
}

void rb_audit_set_hook(struct rb_audit_log *a, rb_journal_hook *hook, void *arg)
{
	a->hook = hook;
	a->hook_arg = arg;
}

void rb_audit_counts(const struct rb_audit_log *a, uint64_t *records, uint64_t *syncs)
{
	*records = a->records;
	*syncs = a->syncs;
}

const char *rb_audit_error(const struct rb_audit_log *a)
{
	return a->errmsg ? a->errmsg : "";
}

void rb_audit_close(struct rb_audit_log *a)
{
	if (!a)
		return;
	if (a->fd >= 0)
		close(a->fd);
	EVP_MD_CTX_free(a->ctx);
	EVP_MD_CTX_free(a->hctx);
	EVP_MD_CTX_free(a->tmpl);
	free(a->pend);
	rb_buf_release(&a->pbytes);
	rb_buf_release(&a->out);
	rb_buf_release(&a->msg);
	free(a->path);
	free(a->dir);
	free(a->repair_name);
	free(a->run_id);
	free(a->last_type);
	free(a->broken);
	free(a->errmsg);
	rb_audit_keyring_free(a->trust);
	free(a);
}
