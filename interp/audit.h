/*
 * The signed audit log: one JSON record a line, each carrying the SHA-256 of
 * the line before it and an Ed25519 signature over its canonical encoding, so
 * that rb_audit_verify finds a changed, deleted, inserted or reordered record.
 * It knows no step or action: the records are the engine's, and only the
 * record types that open and close a run have a meaning here.
 * docs/audit-format.md has the format and every rule.
 */
#ifndef RB_AUDIT_H
#define RB_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "durable.h"
#include "rundir.h"

struct rb_buf;

#define RB_RUN_AUDIT            RB_RUN_JOURNAL  /* the run's log, in its run directory */
#define RB_AUDIT_KEY_ID_LEN     16              /* hex digits of a key id */
#define RB_AUDIT_LINE_MAX       (16u << 20)     /* a longer line is not a record */
#define RB_AUDIT_DEPTH_MAX      128             /* nesting of arrays and objects */
#define RB_AUDIT_GROUP_MAX      65536           /* records a signature may cover */
/* The largest integer a record may hold: jq reads numbers as doubles. */
#define RB_AUDIT_INT_MAX        9007199254740992LL      /* 2^53 */

/*
 * Errors: functions that take char **err return -1 and set *err to a message
 * (lower case, no final period; the caller frees it) when err is not NULL.
 * An open log keeps its message: rb_audit_error().
 */

/* --- keys (interp/auditkey.c) ---------------------------------------------------- */

struct rb_audit_key;            /* an Ed25519 key: a key pair, or a public key only */

/* A PEM file: a private key (PKCS#8, unencrypted) or a public key (SubjectPublicKeyInfo). */
int rb_audit_key_load(const char *path, struct rb_audit_key **out, char **err);
/* The key pair of a 32-byte Ed25519 seed (RFC 8032's private key): for tests and benchmarks. */
int rb_audit_key_from_seed(const unsigned char seed[32], struct rb_audit_key **out, char **err);
/*
 * Generate a key pair and write it: path (the private key, PKCS#8 PEM, mode
 * 0600) and path.pub (the public key, PEM, 0644), each through a temp file,
 * fsync and rename.  An existing path or path.pub is never replaced unless
 * force.  out may be NULL.
 */
int rb_audit_keygen(const char *path, int force, struct rb_audit_key **out, char **err);
/*
 * The signing key: the file opt (--audit-key) if set, else the file
 * $RUNBOOK_AUDIT_KEY, else the host key STATE_DIR/keys/host.pem, generated on
 * first use; then *created is its path (malloc'd, for the notice the caller
 * prints), else NULL.  state_dir NULL means rb_state_dir(NULL).
 */
int rb_audit_key_default(const char *opt, const char *state_dir, struct rb_audit_key **out,
			 char **created, char **err);
#define RB_AUDIT_HOST_KEY       "keys/host.pem"         /* under the state directory */

/* The key id: the first 16 hex digits of the SHA-256 of the raw 32-byte public key. */
const char *rb_audit_key_id(const struct rb_audit_key *k);
/*
 * The key under which the engine's records give an HMAC-SHA256 of a secret
 * (never its value): SHA-256 of "runbook secret hmac v1", its NUL, and the
 * 32-byte private seed, so that only the holder of the signing key can check
 * which value was used (`runbook audit hmac`).  -1 for a public key.
 */
int rb_audit_key_hmac_key(const struct rb_audit_key *k, unsigned char out[32]);
/* 1 when k can sign (a key pair), 0 for a public key. */
int rb_audit_key_can_sign(const struct rb_audit_key *k);
void rb_audit_key_free(struct rb_audit_key *k);

/*
 * A keyring: the public keys a verifier trusts.  rb_audit_keyring_load reads
 * a directory (every *.pem and *.pub in it; a private key counts as its public
 * half) or one key file.  The same key twice counts once; two keys with the
 * same id are an error.
 */
struct rb_audit_keyring;
struct rb_audit_keyring *rb_audit_keyring_new(void);
int rb_audit_keyring_load(const char *path, struct rb_audit_keyring **out, char **err);
/* Add k's public half (copied); name says where it came from, in messages. */
int rb_audit_keyring_add(struct rb_audit_keyring *kr, const struct rb_audit_key *k,
			 const char *name, char **err);
size_t rb_audit_keyring_count(const struct rb_audit_keyring *kr);
/* The id of the i-th key, in the order they were added. */
const char *rb_audit_keyring_id(const struct rb_audit_keyring *kr, size_t i);
/* The key with this id, or NULL. */
const struct rb_audit_key *rb_audit_keyring_find(const struct rb_audit_keyring *kr,
						  const char *id);
void rb_audit_keyring_free(struct rb_audit_keyring *kr);

/*
 * Signed documents (the run's snapshot): text, a JSON object (and maybe a
 * newline), comes back with ,"sig":"BASE64" before its closing brace, the
 * Ed25519 signature of k over text as it was (without the newline).  The
 * document should name its key (a "key_id" member) for the check.  malloc'd,
 * its length in *outlen; NULL and *err when k cannot sign.
 */
char *rb_audit_sign_doc(const struct rb_audit_key *k, const char *text, size_t len,
			size_t *outlen, char **err);
/* 0 when text is so signed by key_id's key in kr; else -1 and why. */
int rb_audit_check_doc(const char *text, size_t len, const char *key_id,
		       const struct rb_audit_keyring *kr, char *why, size_t whysize);

/* --- records (interp/audit_canon.c) ---------------------------------------------- */

/*
 * The canonical encoding of v, appended to out: the bytes `jq -cS` prints
 * (without its newline), so that anyone can reproduce them.  Objects with
 * their keys sorted by bytes, no white space, strings escaping only '"', '\\'
 * and the control characters (\b \t \n \f \r, else \u00xx in lower case, and
 * DEL as \u007f), integers in decimal.  Refused: reals, integers beyond
 * +-RB_AUDIT_INT_MAX, nesting deeper than RB_AUDIT_DEPTH_MAX.  skip_key, when
 * not NULL, is left out of the outermost object (the signed bytes leave out
 * "sig").  out may be NULL to check v only.
 */
int rb_audit_canon(const json_t *v, const char *skip_key, struct rb_buf *out, char **err);

/* ms since the epoch as RFC 3339 UTC with milliseconds: 2026-11-23T17:05:05.123Z */
void rb_audit_format_ts(int64_t ms, char buf[32]);
/* The reverse, for exactly that form; -1 when s is not in it.  ms NULL: check the form only. */
int rb_audit_parse_ts(const char *s, int64_t *ms);

/* --- the appender (interp/audit.c) ---------------------------------------------- */

/* The last record of a log: its seq and the SHA-256 of its line (64 zeros and 0: none). */
struct rb_audit_head {
	uint64_t seq;
	char sha256[65];
};
/* "SEQ:SHA256", the form `runbook audit head` prints; -1 when s is not in it. */
int rb_audit_head_parse(const char *s, struct rb_audit_head *h);

/*
 * A torn tail: the bytes after the last signed record, left by a crash in a
 * write (a line cut short, zeros, whole records of a group whose signed end
 * is missing).
 */
struct rb_audit_torn {
	uint64_t offset;        /* where it starts */
	uint64_t length;        /* bytes to the end of the file */
	uint64_t line;          /* its line number if the lines before it are intact (seq + 1) */
	uint64_t records;       /* whole unsigned records in it */
};

struct rb_audit_log;

enum {
	/*
	 * Several processes append (--audit-log): each sync takes an flock on
	 * the file, continues from its last record, repairs a torn tail it
	 * finds, and signs then.  Without it the log has one writer, and a sync
	 * fails if the file changed since the last.
	 */
	RB_AUDIT_SHARED = 1,
	/*
	 * The log is in a run's directory, the engine's own: a symbolic link
	 * in its place is not followed (open fails), where a log the user
	 * names (--audit-log) may be one.
	 */
	RB_AUDIT_NOFOLLOW = 2,
};

/*
 * Open path to append records of run run_id signed with key (borrowed; it must
 * outlive the log and be a key pair), creating it (0600) when missing.  It
 * continues from the last record (seq and the chain) and checks that it
 * reads.  A torn tail is not an error: rb_audit_torn tells, and appends fail
 * until rb_audit_repair (a shared log repairs it in its next sync).  A repair
 * that a crash interrupted (PATH.repair exists) is completed here.
 */
int rb_audit_open(const char *path, const struct rb_audit_key *key, const char *run_id,
		  unsigned flags, struct rb_audit_log **out, char **err);
/*
 * The same, completing an interrupted repair only when PATH.repair's record
 * verifies with a key of trust (copied; NULL or empty: key's public half): it
 * is canonical and signed, a log_repaired of run_id (any run in a shared log),
 * follows the log's last record (seq, prev, offset) and accounts for every
 * byte after it.  Otherwise open (or a shared log's sync) fails, naming the
 * file, and the log is left as it is.  rb_audit_open trusts key alone.
 */
int rb_audit_open_trusted(const char *path, const struct rb_audit_key *key,
			  const struct rb_audit_keyring *trust, const char *run_id,
			  unsigned flags, struct rb_audit_log **out, char **err);
/* The torn tail open found and no repair has removed, or NULL; borrowed. */
const struct rb_audit_torn *rb_audit_torn(const struct rb_audit_log *a);
/*
 * Remove the torn tail and record it: a log_repaired record with its offset,
 * length, SHA-256 and (up to 64 KiB) its bytes, durable when this returns.
 * The record is first written whole to PATH.repair, so that a crash after the
 * truncation cannot lose it (open completes the repair).  0 when not torn.
 */
int rb_audit_repair(struct rb_audit_log *a);
/* The type of the last record in the log ("" when empty): resume writes run_crashed unless it is run_finished. */
const char *rb_audit_last_type(const struct rb_audit_log *a);
/*
 * Add a record: rec (borrowed) is an object with a string "type" and none of
 * the keys the log sets (seq, ts, run_id, prev, key_id, sig).  It is copied
 * (its members; the values in them are shared, and must not be changed after)
 * and stamped with the time now; nothing is written until rb_audit_sync, so
 * several records share one fdatasync.  Fails on what cannot be encoded
 * (rb_audit_canon).
 */
int rb_audit_append(struct rb_audit_log *a, const json_t *rec);
/*
 * Sign everything appended since the last sync, write it and fdatasync once.
 * 0 only when it is all durable.  After a failed write or fdatasync the log
 * is broken for good (as the journal is): reopen it, which finds the torn
 * tail the failure may have left.
 */
int rb_audit_sync(struct rb_audit_log *a);
/*
 * The same without the fdatasync: written, with the write-back started
 * (sync_file_range), durable at the next rb_audit_sync, or once whoever the
 * caller hands a descriptor of the file has synced it: that sync then finds
 * the data on its way to the disk.
 */
int rb_audit_write(struct rb_audit_log *a);
/* The head as of the last sync (what the engine keeps in its checkpoint). */
void rb_audit_log_head(const struct rb_audit_log *a, struct rb_audit_head *h);
/* Time source for ts, in ms since the epoch (default: CLOCK_REALTIME); for tests. */
void rb_audit_set_clock(struct rb_audit_log *a, int64_t (*now_ms)(void *arg), void *arg);
/*
 * Test hook (durable.h): visited at RB_JP_BEFORE_WRITE (each write(2) of a
 * sync), RB_JP_AFTER_WRITE and RB_JP_AFTER_FDATASYNC, where it can make the
 * operation fail, cut a write short or crash the process.
 */
void rb_audit_set_hook(struct rb_audit_log *a, rb_journal_hook *hook, void *arg);
/* Records signed and fdatasyncs done through this handle. */
void rb_audit_counts(const struct rb_audit_log *a, uint64_t *records, uint64_t *syncs);
/* Close; records appended and not synced are dropped (they were never durable). */
void rb_audit_close(struct rb_audit_log *a);
/* The last error of a ("" when none). */
const char *rb_audit_error(const struct rb_audit_log *a);

/*
 * The head of the log at path without verifying it: its last whole record.
 * *torn (when not NULL) gets the torn tail after it (length 0: none).
 */
int rb_audit_head(const char *path, struct rb_audit_head *h, struct rb_audit_torn *torn,
		  char **err);

/* --- the verifier (interp/audit_verify.c) ------------------------------------- */

struct rb_audit_verify_opts {
	const struct rb_audit_keyring *keyring;
	/*
	 * The head published or kept when the log was written: the record with
	 * its seq must be there with that hash, which finds a cut tail the chain
	 * alone cannot (docs/audit-format.md).  NULL: none.
	 */
	const struct rb_audit_head *expected_head;
	/* Every record must be of this run (NULL: of the run of line 1); not with shared. */
	const char *run_id;
	int shared;             /* records of several runs: the rules hold per run */
	int allow_open;         /* a run without its end (running, or crashed) is not an error */
};

struct rb_audit_result {
	uint64_t lines;         /* lines read */
	uint64_t records;       /* records that verified */
	uint64_t runs;          /* runs seen */
	uint64_t open_runs;     /* runs not closed (an error unless allow_open) */
	/*
	 * The first bad record: its line (from 1) and seq (0 when it has none
	 * that reads).  A record missing at the end (no run_finished, or the
	 * expected head beyond the end) is named as the line after the last.
	 * bad_line 0 with a reason: the log could not be read.
	 */
	uint64_t bad_line;
	uint64_t bad_seq;
	int torn;               /* the first problem is a torn tail */
	char reason[320];
	struct rb_audit_head head;      /* the last record that verified */
};

/*
 * One record's line: canonical, and signed by the key it names, which kr
 * holds; not its place in a chain.  0, or -1 and why.  A resume checks the
 * last record of a run's log so (its chain commits to every record before).
 */
int rb_audit_check_line(const char *line, size_t len, const struct rb_audit_keyring *kr,
			char *why, size_t whysize);

/* 1 when line is a record with a sig, 0 a record without one, -1 not a record. */
int rb_audit_line_signed(const char *line, size_t len);

/* Verify the log at path; 0 when it holds, else -1 with the first problem in *r. */
int rb_audit_verify(const char *path, const struct rb_audit_verify_opts *o,
		    struct rb_audit_result *r);
/* The same over a stream (read to its end). */
int rb_audit_verify_stream(FILE *f, const struct rb_audit_verify_opts *o,
			   struct rb_audit_result *r);

/* --- the timeline (interp/audit_show.c) ------------------------------------------ */

/*
 * The records of the log in f as a timeline for people, without verifying
 * them: format "text", "markdown" or "json".  Lines that do not read are shown
 * as such; -1 (after printing everything) when there was one, or on a read error.
 */
int rb_audit_show(FILE *in, FILE *out, const char *format, char **err);

#endif
