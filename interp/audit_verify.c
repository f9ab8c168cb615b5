/*
 * The audit log's verifier: one pass over the lines, checking each record's
 * form, canonical encoding, seq, chain, run, key and signature, then the
 * rules that open and close runs, and names the first record that breaks one.
 * It trusts nothing in the log and never stops at a problem without saying
 * which line holds it.  docs/audit-format.md has the rules.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "audit_int.h"
#include "util.h"

/* --- lines ---------------------------------------------------------------------- */

struct reader {
	FILE *f;
	char *buf;
	size_t cap, start, end;
	int eof;
	uint64_t offset;        /* of the line last returned */
	uint64_t next;          /* of the byte at start */
};

/*
 * The next line without its newline: 1 (*term says whether it had one), 0 at
 * the end, -1 on a read error (errno) or a line longer than
 * RB_AUDIT_LINE_MAX (errno EFBIG).
 */
static int next_line(struct reader *rd, const char **line, size_t *len, int *term)
{
	for (;;) {
		char *nl = rd->end > rd->start ? memchr(rd->buf + rd->start, '\n',
							 rd->end - rd->start) : NULL;
		if (nl || rd->eof) {
			size_t n = nl ? (size_t)(nl - (rd->buf + rd->start)) : rd->end - rd->start;
			if (!nl && n == 0)
				return 0;
			*line = rd->buf + rd->start;
			*len = n;
			*term = nl != NULL;
			rd->offset = rd->next;
			rd->start += n + (nl != NULL);
			rd->next += n + (nl != NULL);
			return 1;
		}
		if (rd->end - rd->start > RB_AUDIT_LINE_MAX) {
			errno = EFBIG;
			return -1;
		}
		if (rd->start > 0) {
			memmove(rd->buf, rd->buf + rd->start, rd->end - rd->start);
			rd->end -= rd->start;
			rd->start = 0;
		}
		if (rd->cap - rd->end < 65536)
			rb_grow(&rd->buf, &rd->cap, rd->end + 65536, 1);
		size_t got = fread(rd->buf + rd->end, 1, rd->cap - rd->end, rd->f);
		rd->end += got;
		if (got == 0) {
			if (ferror(rd->f))
				return -1;
			rd->eof = 1;
		}
	}
}

/* --- records -------------------------------------------------------------------- */

/* Where a run is, by the records that open and close it. */
enum run_state {
	RUN_NONE,       /* no record of it yet */
	RUN_OPEN,       /* a session runs: after run_started or run_resumed */
	RUN_CLOSED,     /* after run_finished */
	RUN_CRASHED,    /* after run_crashed: a session ended without run_finished */
};

struct verify {
	const struct rb_audit_verify_opts *o;
	struct rb_audit_result *r;
	uint64_t line;          /* of the record being checked */
	uint64_t seq;           /* of the last record that verified */
	char prev[65];          /* the SHA-256 of its line */
	char *run_id;           /* of a single-run log */
	json_t *runs;           /* run id -> enum run_state */
	struct rb_audit_checker chk;
	EVP_MD *sha256;         /* for the chain, fetched once */
	EVP_MD_CTX *hctx;
	struct rb_buf canon;    /* a line's encoding, then its signed bytes */
};

__attribute__((format(printf, 4, 5)))
static int bad(struct verify *v, uint64_t line, uint64_t seq, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->r->reason, sizeof(v->r->reason), fmt, ap);
	va_end(ap);
	/*
	 * The reason quotes the log (run ids, JSON's "near '...'"), and reaches a
	 * terminal: nothing but printable ASCII.
	 */
	for (char *p = v->r->reason; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	v->r->bad_line = line;
	v->r->bad_seq = seq;
	return -1;
}

/* The rules that open and close runs (docs/audit-format.md, "Closing a run"). */
static int check_run(struct verify *v, const char *run, const char *type, uint64_t seq)
{
	json_t *st = json_object_get(v->runs, run);
	enum run_state s = st ? (enum run_state)json_integer_value(st) : RUN_NONE, next = s;
	if (!st)
		v->r->runs++;
	if (!strcmp(type, "run_started")) {
		if (s != RUN_NONE)
			return bad(v, v->line, seq, "run_started of run %s, which started before",
				   run);
		next = RUN_OPEN;
	} else if (!strcmp(type, "run_resumed")) {
		if (s != RUN_CLOSED && s != RUN_CRASHED)
			return bad(v, v->line, seq, "run_resumed of run %s without run_finished or "
				   "run_crashed before it", run);
		next = RUN_OPEN;
	} else if (!strcmp(type, "run_crashed")) {
		/* From none: the first session crashed before its run_started was durable. */
		if (s != RUN_OPEN && s != RUN_NONE)
			return bad(v, v->line, seq, "run_crashed of run %s, which is not running",
				   run);
		next = RUN_CRASHED;
	} else if (!strcmp(type, "run_finished")) {
		if (s != RUN_OPEN)
			return bad(v, v->line, seq, "run_finished of run %s, which is not running",
				   run);
		next = RUN_CLOSED;
	} else if (strcmp(type, "log_repaired")) {
		if (s != RUN_OPEN)
			return bad(v, v->line, seq, "%s of run %s outside a session (%s)", type, run,
				   s == RUN_NONE ? "before its run_started"
				   : s == RUN_CLOSED ? "after its run_finished"
						     : "after run_crashed, before run_resumed");
	}
	if (next != s || !st)
		json_object_set_new(v->runs, run, json_integer(next));
	return 0;
}

/* The string fields every record has, in the order they are checked. */
enum { F_TS, F_RUN_ID, F_TYPE, F_PREV, F_KEY_ID, F_SIG, F_COUNT };
static const char *const fields[F_COUNT] = {"ts", "run_id", "type", "prev", "key_id", "sig"};

/*
 * The SHA-256 of a line in hex, with one context and one fetched digest for
 * the whole log (EVP_Digest fetches SHA-256 again for every call).
 */
static void line_hash(struct verify *v, const char *line, size_t len, char hex[65])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!v->sha256 || !v->hctx || EVP_DigestInit_ex2(v->hctx, v->sha256, NULL) != 1 ||
	    EVP_DigestUpdate(v->hctx, line, len) != 1 ||
	    EVP_DigestFinal_ex(v->hctx, md, &n) != 1 || n != 32) {
		rb_sha256_hex(line, len, hex);
		return;
	}
	for (unsigned i = 0; i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[64] = 0;
}

/*
 * The key and the signature of a record whose line is in canonical form:
 * canon holds the line, [from, to) its "sig" member (and its comma), which
 * this cuts out of canon to leave the signed bytes.  0, or -1 and why.
 */
static int check_sig(struct rb_audit_checker *chk, struct rb_buf *canon, size_t from, size_t to,
		     const struct rb_audit_keyring *kr, const char *key_id, const char *sig64,
		     size_t sig64_len, char *why, size_t whysize)
{
	const struct rb_audit_key *k = rb_audit_keyring_find(kr, key_id);
	unsigned char sig[SIG_LEN];
	if (!k) {
		snprintf(why, whysize, "signed by key %s, which is not in the keyring", key_id);
		return -1;
	}
	if (rb_audit_sig_decode(sig64, sig64_len, sig) < 0) {
		snprintf(why, whysize, "malformed sig (88 characters of base64 expected)");
		return -1;
	}
	memmove(canon->s + from, canon->s + to, canon->len - to);
	canon->len -= to - from;
	if (!rb_audit_checker_check(chk, k, canon->s, canon->len, sig)) {
		snprintf(why, whysize, "the signature does not verify with key %s", k->id);
		return -1;
	}
	return 0;
}

int rb_audit_check_line(const char *line, size_t len, const struct rb_audit_keyring *kr,
			char *why, size_t whysize)
{
	json_t *rec = json_loadb(line, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, NULL);
	const char *key_id = json_string_value(json_object_get(rec, "key_id"));
	json_t *jsig = json_object_get(rec, "sig");
	struct rb_audit_checker chk;
	struct rb_buf canon;
	size_t from, to;
	char *e = NULL;
	int r = -1;
	rb_audit_checker_init(&chk);
	rb_buf_init(&canon);
	if (!json_is_object(rec) || !key_id || !json_is_string(jsig))
		snprintf(why, whysize, "not a record with a key_id and a sig");
	else if (rb_audit_canon_span(rec, "sig", &canon, &from, &to, &e) < 0)
		snprintf(why, whysize, "cannot be a record: %s", e);
	else if (canon.len != len || memcmp(canon.s, line, len))
		snprintf(why, whysize, "not in canonical form");
	else
		r = check_sig(&chk, &canon, from, to, kr, key_id, json_string_value(jsig),
			      json_string_length(jsig), why, whysize);
	free(e);
	rb_buf_release(&canon);
	rb_audit_checker_release(&chk);
	json_decref(rec);
	return r;
}

static int check_record(struct verify *v, const char *line, size_t len)
{
	json_error_t je;
	char hash[65], *e = NULL;
	json_t *rec = json_loadb(line, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
	if (!rec)
		return bad(v, v->line, 0, "not JSON: %s (column %d)", je.text, je.column);
	int r = -1;
	json_t *js = json_object_get(rec, "seq");
	uint64_t seq = json_is_integer(js) && json_integer_value(js) > 0
			       ? (uint64_t)json_integer_value(js) : 0;
	if (!json_is_object(rec)) {
		bad(v, v->line, 0, "not a JSON object");
		goto out;
	}
	if (!seq) {
		bad(v, v->line, 0, "no seq (a positive integer)");
		goto out;
	}
	const char *f[F_COUNT];
	json_t *jsig = NULL;
	for (size_t i = 0; i < F_COUNT; i++) {
		json_t *jf = json_object_get(rec, fields[i]);
		f[i] = json_string_value(jf);
		if (!f[i] || !*f[i]) {
			bad(v, v->line, seq, "no %s (a string)", fields[i]);
			goto out;
		}
		if (i == F_SIG)
			jsig = jf;
	}
	int bad_ts = rb_audit_parse_ts(f[F_TS], NULL) < 0;
	if (bad_ts || !rb_audit_is_hex(f[F_PREV], 64) ||
	    !rb_audit_is_hex(f[F_KEY_ID], RB_AUDIT_KEY_ID_LEN)) {
		bad(v, v->line, seq, "malformed %s", bad_ts ? "ts"
			: !rb_audit_is_hex(f[F_PREV], 64) ? "prev" : "key_id");
		goto out;
	}
	/*
	 * One encoding only: else bytes could change under a valid signature.
	 * The same pass finds "sig" in it, for the signed bytes below.
	 */
	size_t sig_from, sig_to;
	v->canon.len = 0;
	if (rb_audit_canon_span(rec, "sig", &v->canon, &sig_from, &sig_to, &e) < 0) {
		bad(v, v->line, seq, "cannot be a record: %s", e);
		goto out;
	}
	if (v->canon.len != len || memcmp(v->canon.s, line, len)) {
		size_t i = 0;
		while (i < len && i < v->canon.len && line[i] == v->canon.s[i])
			i++;
		bad(v, v->line, seq, "not in canonical form (from column %zu)", i + 1);
		goto out;
	}
	if (seq != v->seq + 1) {
		bad(v, v->line, seq, "seq %" PRIu64 " where %" PRIu64 " was expected (a record "
		    "missing, repeated or out of order)", seq, v->seq + 1);
		goto out;
	}
	if (strcmp(f[F_PREV], v->prev)) {
		if (v->line == 1)
			bad(v, v->line, seq, "prev is not 64 zeros in the first record");
		else
			bad(v, v->line, seq, "prev is not the SHA-256 of line %" PRIu64
			    " (a record changed, missing or inserted before this one)", v->line - 1);
		goto out;
	}
	const char *run = f[F_RUN_ID], *type = f[F_TYPE];
	if (!v->o->shared) {
		if (!v->run_id)
			v->run_id = rb_xstrdup(v->o->run_id ? v->o->run_id : run);
		if (strcmp(run, v->run_id)) {
			bad(v, v->line, seq, "run_id %s in the log of run %s", run, v->run_id);
			goto out;
		}
	}
	/*
	 * The signed bytes, rb_audit_canon(rec, "sig"): v->canon is the line, so
	 * they are it without the "sig" member and its comma.
	 */
	char why[200];
	if (check_sig(&v->chk, &v->canon, sig_from, sig_to, v->o->keyring, f[F_KEY_ID], f[F_SIG],
		      json_string_length(jsig), why, sizeof(why)) < 0) {
		bad(v, v->line, seq, "%s", why);
		goto out;
	}
	if (check_run(v, run, type, seq) < 0)
		goto out;
	line_hash(v, line, len, hash);
	const struct rb_audit_head *h = v->o->expected_head;
	if (h && h->seq == seq && strcmp(h->sha256, hash)) {
		bad(v, v->line, seq, "not the record of the expected head %" PRIu64 ":%.16s...",
		    h->seq, h->sha256);
		goto out;
	}
	v->seq = seq;
	memcpy(v->prev, hash, sizeof(hash));
	v->r->records++;
	v->r->head.seq = seq;
	memcpy(v->r->head.sha256, hash, sizeof(hash));
	r = 0;
out:
	free(e);
	json_decref(rec);
	return r;
}

/* At the end: every run closed (or allowed open), the expected head reached. */
static int check_end(struct verify *v)
{
	const struct rb_audit_head *h = v->o->expected_head;
	uint64_t after = v->line + 1;
	if (h && h->seq > v->seq)
		return bad(v, after, v->seq + 1, "the log ends at seq %" PRIu64 ", before the "
			   "expected head seq %" PRIu64 ": its tail was cut", v->seq, h->seq);
	if (v->seq == 0 && !v->o->allow_open)
		return bad(v, 1, 1, "no records");
	const char *run;
	json_t *st;
	json_object_foreach(v->runs, run, st) {
		enum run_state s = (enum run_state)json_integer_value(st);
		if (s == RUN_CLOSED || v->o->allow_open)
			continue;
		return bad(v, after, v->seq + 1, "run %s has no run_finished at the end of the "
			   "log (%s)", run, s == RUN_CRASHED ? "it crashed and was not resumed"
			   : "its tail was cut, or it crashed, or it is still running");
	}
	return 0;
}

static void count_open(struct verify *v)
{
	const char *run;
	json_t *st;
	json_object_foreach(v->runs, run, st)
		v->r->open_runs += json_integer_value(st) != RUN_CLOSED;
}

int rb_audit_verify_stream(FILE *f, const struct rb_audit_verify_opts *o,
			   struct rb_audit_result *r)
{
	struct verify v = {.o = o, .r = r};
	struct reader rd = {.f = f};
	memset(r, 0, sizeof(*r));
	memcpy(r->head.sha256, ZERO_HASH, 65);
	memcpy(v.prev, ZERO_HASH, 65);
	v.runs = json_object();
	rb_audit_checker_init(&v.chk);
	v.sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!v.sha256)
		ERR_clear_error();      /* line_hash falls back to rb_sha256_hex */
	v.hctx = EVP_MD_CTX_new();
	rb_buf_init(&v.canon);
	uint64_t torn_line = 0, torn_off = 0;
	const char *line;
	size_t len;
	int term, got, rc = 0;
	if (o->shared && o->run_id) {
		snprintf(r->reason, sizeof(r->reason), "a run id is for a single-run log");
		rc = -1;
		goto out;
	}
	while ((got = next_line(&rd, &line, &len, &term)) == 1) {
		v.line++;
		r->lines++;
		/* A torn tail: the last bytes without a newline, and NUL lines before them. */
		if (!term || memchr(line, 0, len)) {
			if (!torn_line) {
				torn_line = v.line;
				torn_off = rd.offset;
			}
			continue;
		}
		if (torn_line) {
			rc = bad(&v, torn_line, 0, "a NUL byte (records never hold one)");
			goto out;
		}
		if (check_record(&v, line, len) < 0) {
			rc = -1;
			goto out;
		}
	}
	if (got < 0) {
		if (errno == EFBIG)
			rc = bad(&v, v.line + 1, 0, "a line longer than %u bytes", RB_AUDIT_LINE_MAX);
		else
			rc = bad(&v, 0, 0, "cannot read: %s", strerror(errno));
		goto out;
	}
	if (torn_line) {
		r->torn = 1;
		rc = bad(&v, torn_line, 0, "torn tail: %" PRIu64 " bytes at offset %" PRIu64
			 " after seq %" PRIu64 ", a write cut short (resuming the run repairs it)",
			 rd.next - torn_off, torn_off, v.seq);
		goto out;
	}
	rc = check_end(&v);
out:
	count_open(&v);
	json_decref(v.runs);
	rb_audit_checker_release(&v.chk);
	EVP_MD_free(v.sha256);
	EVP_MD_CTX_free(v.hctx);
	rb_buf_release(&v.canon);
	free(v.run_id);
	free(rd.buf);
	return rc;
}

int rb_audit_verify(const char *path, const struct rb_audit_verify_opts *o,
		    struct rb_audit_result *r)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		memset(r, 0, sizeof(*r));
		snprintf(r->reason, sizeof(r->reason), "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	int rc = rb_audit_verify_stream(f, o, r);
	fclose(f);
	return rc;
}
