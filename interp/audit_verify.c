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

/*
 * A record of the group being read: what is checked once the group's
 * signature has verified (its chain, run and place in its run's life).
 */
struct grec {
	uint64_t line, seq;
	char hash[65], prev[65];
	char *run, *type;
};

struct verify {
	const struct rb_audit_verify_opts *o;
	struct rb_audit_result *r;
	uint64_t line;          /* of the record being read */
	uint64_t seq;           /* of the last record read */
	char *run_id;           /* of a single-run log, once known */
	json_t *runs;           /* run id -> enum run_state */
	struct rb_audit_checker chk;
	EVP_MD_CTX *hctx;       /* for the chain's hashes */
	struct rb_buf canon;    /* a line's encoding */
	struct rb_buf msg;      /* the bytes its signature is over */
	/*
	 * The group being read: the records after the last one whose signature
	 * verified, up to the next signed one, which covers them through the
	 * chain.  done: that signed record is in (and verified); the group is
	 * checked when the line after it is read, which tells a foreign signed
	 * record from a changed one before it.
	 */
	struct grec *g;
	size_t ng, gcap, gbytes;        /* gbytes: of the run ids and types held */
	int done;               /* (the group before ends at r->head, its last record) */
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
static int check_run(struct verify *v, uint64_t line, const char *run, const char *type,
		     uint64_t seq)
{
	json_t *st = json_object_get(v->runs, run);
	enum run_state s = st ? (enum run_state)json_integer_value(st) : RUN_NONE, next = s;
	if (!st)
		v->r->runs++;
	if (!strcmp(type, "run_started")) {
		if (s != RUN_NONE)
			return bad(v, line, seq, "run_started of run %s, which started before",
				   run);
		next = RUN_OPEN;
	} else if (!strcmp(type, "run_resumed")) {
		if (s != RUN_CLOSED && s != RUN_CRASHED)
			return bad(v, line, seq, "run_resumed of run %s without run_finished or "
				   "run_crashed before it", run);
		next = RUN_OPEN;
	} else if (!strcmp(type, "run_crashed")) {
		/* From none: the first session crashed before its run_started was durable. */
		if (s != RUN_OPEN && s != RUN_NONE)
			return bad(v, line, seq, "run_crashed of run %s, which is not running",
				   run);
		next = RUN_CRASHED;
	} else if (!strcmp(type, "run_finished")) {
		if (s != RUN_OPEN)
			return bad(v, line, seq, "run_finished of run %s, which is not running",
				   run);
		next = RUN_CLOSED;
	} else if (strcmp(type, "log_repaired")) {
		if (s != RUN_OPEN)
			return bad(v, line, seq, "%s of run %s outside a session (%s)", type, run,
				   s == RUN_NONE ? "before its run_started"
				   : s == RUN_CLOSED ? "after its run_finished"
						     : "after run_crashed, before run_resumed");
	}
	if (next != s || !st)
		json_object_set_new(v->runs, run, json_integer(next));
	return 0;
}

/*
 * The string fields of a record, in the order they are checked: every record
 * has the first four, the last record of a group the signature's two.
 */
enum { F_TS, F_RUN_ID, F_TYPE, F_PREV, F_KEY_ID, F_SIG, F_COUNT, F_NEEDED = F_KEY_ID };
static const char *const fields[F_COUNT] = {"ts", "run_id", "type", "prev", "key_id", "sig"};

/*
 * The key and the signature of a record whose line is in canonical form:
 * canon holds the line, [from, to) its "sig" member (and its comma); the
 * signed bytes, built in msg, are the format's context and the line without
 * that member.  0, or -1 and why.
 */
static int check_sig(struct rb_audit_checker *chk, const struct rb_buf *canon, size_t from,
		     size_t to, struct rb_buf *msg, const struct rb_audit_keyring *kr,
		     const char *key_id, const char *sig64, size_t sig64_len, char *why,
		     size_t whysize)
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
	msg->len = 0;
	rb_buf_add(msg, SIG_CONTEXT, SIG_CONTEXT_LEN);
	rb_buf_add(msg, canon->s, from);
	rb_buf_add(msg, canon->s + to, canon->len - to);
	if (rb_audit_checker_check(chk, k, msg->s, msg->len, sig))
		return 0;
	/* Format 1 signed every record, without the context: say so, not "forged". */
	if (rb_audit_checker_check(chk, k, msg->s + SIG_CONTEXT_LEN, msg->len - SIG_CONTEXT_LEN,
				   sig))
		snprintf(why, whysize, "a record of audit log format 1 (signed without the format 2 "
			 "context): this runbook verifies format 2 only");
	else
		snprintf(why, whysize, "the signature does not verify with key %s", k->id);
	return -1;
}

int rb_audit_check_line(const char *line, size_t len, const struct rb_audit_keyring *kr,
			char *why, size_t whysize)
{
	json_t *rec = json_loadb(line, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, NULL);
	const char *key_id = json_string_value(json_object_get(rec, "key_id"));
	json_t *jsig = json_object_get(rec, "sig");
	struct rb_audit_checker chk;
	struct rb_buf canon, msg;
	size_t from, to;
	char *e = NULL;
	int r = -1;
	rb_audit_checker_init(&chk);
	rb_buf_init(&canon);
	rb_buf_init(&msg);
	if (!json_is_object(rec) || !key_id || !json_is_string(jsig))
		snprintf(why, whysize, "not a record with a key_id and a sig");
	else if (rb_audit_canon_span(rec, "sig", &canon, &from, &to, &e) < 0)
		snprintf(why, whysize, "cannot be a record: %s", e);
	else if (canon.len != len || memcmp(canon.s, line, len))
		snprintf(why, whysize, "not in canonical form");
	else
		r = check_sig(&chk, &canon, from, to, &msg, kr, key_id, json_string_value(jsig),
			      json_string_length(jsig), why, whysize);
	free(e);
	rb_buf_release(&canon);
	rb_buf_release(&msg);
	rb_audit_checker_release(&chk);
	json_decref(rec);
	return r;
}

static void group_clear(struct verify *v)
{
	for (size_t i = 0; i < v->ng; i++) {
		free(v->g[i].run);
		free(v->g[i].type);
	}
	v->ng = 0;
	v->gbytes = 0;
	v->done = 0;
}

/* Line n's prev is not the hash of the line before, and nothing says that line changed. */
static int link_bad(struct verify *v, uint64_t n, uint64_t seq)
{
	if (n == 1)
		return bad(v, n, seq, "prev is not 64 zeros in the first record");
	return bad(v, n, seq, "prev is not the SHA-256 of line %" PRIu64 " (a record changed, "
		   "missing or inserted before this one)", n - 1);
}

/*
 * The group, whose last record's signature verified: its chain, from that
 * record back to the group before, then each record's run and place.  When
 * a prev does not match, the record after it is vouched for (by the
 * signature, through the links after it) and the one before is not: that one
 * changed.  Only at the signed record itself could either be bad (a signed
 * record of another log put there): it is taken for foreign when it is of
 * another run than the log's, or the line after it does not follow it
 * (next_prev: that line's prev, NULL when there is none).
 */
static int check_group(struct verify *v, const char *next_prev)
{
	size_t n = v->ng;
	for (size_t k = n; k-- > 0;) {
		const struct grec *g = &v->g[k];
		const char *before = k ? v->g[k - 1].hash : v->r->head.sha256;
		if (!strcmp(g->prev, before))
			continue;
		int foreign = k == 0 || (k == n - 1 &&
			      ((v->run_id && strcmp(g->run, v->run_id)) ||
			       (next_prev && strcmp(next_prev, g->hash))));
		if (foreign)
			return link_bad(v, g->line, g->seq);
		return bad(v, v->g[k - 1].line, v->g[k - 1].seq, "not the record that the "
			   "signature at line %" PRIu64 " covers (the prev of line %" PRIu64 " is "
			   "another hash): it was changed", v->g[n - 1].line, g->line);
	}
	const struct rb_audit_head *h = v->o->expected_head;
	for (size_t k = 0; k < n; k++) {
		const struct grec *g = &v->g[k];
		if (!v->o->shared) {
			if (!v->run_id)
				v->run_id = rb_xstrdup(v->o->run_id ? v->o->run_id : g->run);
			if (strcmp(g->run, v->run_id))
				return bad(v, g->line, g->seq, "run_id %s in the log of run %s", g->run,
					   v->run_id);
		}
		if (check_run(v, g->line, g->run, g->type, g->seq) < 0)
			return -1;
		if (h && h->seq == g->seq && strcmp(h->sha256, g->hash))
			return bad(v, g->line, g->seq, "not the record of the expected head %" PRIu64
				   ":%.16s...", h->seq, h->sha256);
	}
	const struct grec *last = &v->g[n - 1];
	v->r->records += n;
	v->r->head.seq = last->seq;
	memcpy(v->r->head.sha256, last->hash, 65);
	group_clear(v);
	return 0;
}

/*
 * One line: its own checks (JSON, fields, canonical form, seq, and the
 * signature of a signed one), then into the group.
 */
/*
 * An open group (no signature vouches for it yet) with a broken link: the
 * first line whose prev is not the hash of the line before is named, -1;
 * else 0.
 */
static int open_group_break(struct verify *v)
{
	for (size_t k = 0; k < v->ng; k++)
		if (strcmp(v->g[k].prev, k ? v->g[k - 1].hash : v->r->head.sha256))
			return link_bad(v, v->g[k].line, v->g[k].seq);
	return 0;
}

static int check_line(struct verify *v, const char *line, size_t len);

static int check_record(struct verify *v, const char *line, size_t len)
{
	int r = check_line(v, line, len);
	/*
	 * A line that fails its own checks after a broken link in an open group:
	 * the break is the first problem (say, an unsigned record inserted).
	 */
	if (r == -2 && v->done) {       /* the group before comes first */
		check_group(v, NULL);
		return -1;
	}
	if (r == -2)
		open_group_break(v);
	return r < 0 ? -1 : 0;
}

/* check_record's work: -2 when this line fails its own checks, -1 when the group before does. */
static int check_line(struct verify *v, const char *line, size_t len)
{
	json_error_t je;
	char *e = NULL;
	json_t *rec = json_loadb(line, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
	if (!rec) {
		bad(v, v->line, 0, "not JSON: %s (column %d)", je.text, je.column);
		return -2;
	}
	int r = -2;
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
		if (i >= F_NEEDED && !jf)
			continue;
		if (!f[i] || !*f[i]) {
			bad(v, v->line, seq, "no %s (a string)", fields[i]);
			goto out;
		}
		if (i == F_SIG)
			jsig = jf;
	}
	int is_signed = f[F_SIG] != NULL;
	if (!f[F_KEY_ID] != !is_signed) {
		bad(v, v->line, seq, "a %s without a %s", is_signed ? "sig" : "key_id",
		    is_signed ? "key_id" : "sig");
		goto out;
	}
	int bad_ts = rb_audit_parse_ts(f[F_TS], NULL) < 0;
	if (bad_ts || !rb_audit_is_hex(f[F_PREV], 64) ||
	    (is_signed && !rb_audit_is_hex(f[F_KEY_ID], RB_AUDIT_KEY_ID_LEN))) {
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
	char hash[65], why[200];
	rb_sha256_hex_ctx(v->hctx, line, len, hash);
	/* The group before is checked first: this line tells whether its end is foreign. */
	if (v->done && check_group(v, f[F_PREV]) < 0) {
		r = -1;
		goto out;
	}
	if (seq != v->seq + 1) {
		bad(v, v->line, seq, "seq %" PRIu64 " where %" PRIu64 " was expected (a record "
		    "missing, repeated or out of order)", seq, v->seq + 1);
		goto out;
	}
	/* What a group holds until its signature is bounded, whatever a hostile log says. */
	size_t held = strlen(f[F_RUN_ID]) + strlen(f[F_TYPE]);
	if (v->ng >= RB_AUDIT_GROUP_MAX || v->gbytes + held > RB_AUDIT_LINE_MAX) {
		if (v->ng >= RB_AUDIT_GROUP_MAX)
			bad(v, v->line, seq, "more than %u records without a signature",
			    RB_AUDIT_GROUP_MAX);
		else
			bad(v, v->line, seq, "more than %u bytes of run ids and types without a "
			    "signature", RB_AUDIT_LINE_MAX);
		goto out;
	}
	if (is_signed && check_sig(&v->chk, &v->canon, sig_from, sig_to, &v->msg, v->o->keyring,
				   f[F_KEY_ID], f[F_SIG], json_string_length(jsig), why,
				   sizeof(why)) < 0) {
		bad(v, v->line, seq, "%s", why);
		goto out;
	}
	rb_grow(&v->g, &v->gcap, v->ng + 1, sizeof(*v->g));
	struct grec *g = &v->g[v->ng++];
	g->line = v->line;
	g->seq = seq;
	memcpy(g->hash, hash, 65);
	memcpy(g->prev, f[F_PREV], 65);
	g->run = rb_xstrdup(f[F_RUN_ID]);
	g->type = rb_xstrdup(f[F_TYPE]);
	v->gbytes += held;
	v->done = is_signed;
	v->seq = seq;
	r = 0;
out:
	free(e);
	json_decref(rec);
	return r;
}

/*
 * At the end: the last group checked, nothing after the last signature, every
 * run closed (or allowed open), the expected head reached.  torn_*: a torn
 * tail after the records read (torn_line 0: none).
 */
static int check_end(struct verify *v, uint64_t torn_line, uint64_t torn_off, uint64_t torn_len)
{
	const struct rb_audit_head *h = v->o->expected_head;
	uint64_t after = v->line + 1;
	if (v->done && check_group(v, NULL) < 0)
		return -1;
	if (v->ng) {
		/* Nothing vouches for them: a broken link among them is named first. */
		if (open_group_break(v) < 0)
			return -1;
		v->r->torn = 1;
		if (torn_line)
			return bad(v, v->g[0].line, v->g[0].seq, "torn tail: %zu record%s without the "
				   "signature that ends their group, and %" PRIu64 " bytes at offset %"
				   PRIu64 ", after seq %" PRIu64 ": a write cut short (resuming the run "
				   "repairs it)", v->ng, v->ng == 1 ? "" : "s", torn_len, torn_off,
				   v->r->head.seq);
		return bad(v, v->g[0].line, v->g[0].seq, "unsigned tail: %zu record%s after the last "
			   "signed one (seq %" PRIu64 "): a group written without its signed end, as a "
			   "write cut short leaves it (resuming the run repairs it), or records added "
			   "without the key", v->ng, v->ng == 1 ? "" : "s", v->r->head.seq);
	}
	if (torn_line) {
		v->r->torn = 1;
		return bad(v, torn_line, 0, "torn tail: %" PRIu64 " bytes at offset %" PRIu64
			   " after seq %" PRIu64 ", a write cut short (resuming the run repairs it)",
			   torn_len, torn_off, v->seq);
	}
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
	v.runs = json_object();
	rb_audit_checker_init(&v.chk);
	v.hctx = EVP_MD_CTX_new();
	rb_buf_init(&v.canon);
	rb_buf_init(&v.msg);
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
	rc = check_end(&v, torn_line, torn_off, rd.next - torn_off);
out:
	count_open(&v);
	json_decref(v.runs);
	rb_audit_checker_release(&v.chk);
	EVP_MD_CTX_free(v.hctx);
	rb_buf_release(&v.canon);
	rb_buf_release(&v.msg);
	group_clear(&v);
	free(v.g);
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
