/*
 * What the audit log's files (audit.c, auditkey.c, audit_canon.c,
 * audit_verify.c, audit_show.c) share and nothing else may use: the key's
 * insides, signing, the signature's text form, and reading a log's tail.
 */
#ifndef RB_AUDIT_INT_H
#define RB_AUDIT_INT_H

#include <openssl/evp.h>

#include "audit.h"

#define SIG_LEN         64      /* an Ed25519 signature */
#define SIG_B64_LEN     88      /* its base64, with "==" */
#define ZERO_HASH       "0000000000000000000000000000000000000000000000000000000000000000"
/*
 * Format 2 signs a record's canonical bytes after this context, so that its
 * signature is never one of another protocol's (docs/audit-format.md).
 */
#define SIG_CONTEXT     "runbook audit log v2\n"
#define SIG_CONTEXT_LEN (sizeof(SIG_CONTEXT) - 1)

struct rb_audit_key {
	EVP_PKEY *pkey;
	int can_sign;
	unsigned char raw[32];  /* the public key */
	char id[RB_AUDIT_KEY_ID_LEN + 1];
};

/*
 * rb_audit_canon of all of v, and where the outermost member named key is in
 * out: [*from, *to) is that member with the comma that joins it to the
 * others, so that out without those bytes is rb_audit_canon(v, key).  The
 * verifier checks a line and finds its signed bytes with one encoding.
 * Both 0 when v has no such member.
 */
int rb_audit_canon_span(const json_t *v, const char *key, struct rb_buf *out, size_t *from,
			size_t *to, char **err);

/*
 * rb_audit_canon of the object v, and the places of keys (sorted, none of them
 * in v) in out: gap[i] is where a member keys[i] goes, the offset of the
 * member that would follow it (just after the brace or comma before that
 * member), or of the closing brace when none would.  The log encodes a record
 * once, when it is appended, and adds the keys it sets when it chains it.
 */
int rb_audit_canon_gaps(const json_t *v, const char *const *keys, size_t nkeys,
			struct rb_buf *out, size_t *gap, char **err);
/* A string (n bytes) and an integer as the canonical encoding writes them. */
void rb_audit_canon_string(struct rb_buf *out, const char *s, size_t n);
void rb_audit_canon_int(struct rb_buf *out, json_int_t i);

/* Ed25519 over msg; ctx is a scratch context the caller keeps (one per thread). */
int rb_audit_sign_bytes(const struct rb_audit_key *k, EVP_MD_CTX *ctx, const void *msg,
			size_t len, unsigned char sig[SIG_LEN]);
/*
 * The same, faster in a loop: tmpl set up for k once (rb_audit_sign_setup,
 * which fetches the algorithm and exports the key), then copied into ctx for
 * each signature.
 */
int rb_audit_sign_setup(const struct rb_audit_key *k, EVP_MD_CTX *tmpl);
int rb_audit_sign_copy(EVP_MD_CTX *tmpl, EVP_MD_CTX *ctx, const void *msg, size_t len,
		       unsigned char sig[SIG_LEN]);
/* 1 when sig is k's signature of msg, else 0. */
int rb_audit_check_bytes(const struct rb_audit_key *k, EVP_MD_CTX *ctx, const void *msg,
			 size_t len, const unsigned char sig[SIG_LEN]);

/*
 * Checks one signature after another (the verifier's loop): the context is
 * set up for a key once (EVP_DigestVerifyInit fetches the algorithm and
 * exports the key each time, a tenth of a verify) and copied for each check.
 * The keys must outlive it.
 */
struct rb_audit_checker {
	const struct rb_audit_key *key;         /* the key tmpl is set up for, or NULL */
	EVP_MD_CTX *tmpl, *ctx;
};
void rb_audit_checker_init(struct rb_audit_checker *c);
void rb_audit_checker_release(struct rb_audit_checker *c);
/* rb_audit_check_bytes, through c: 1 when sig is k's signature of msg, else 0. */
int rb_audit_checker_check(struct rb_audit_checker *c, const struct rb_audit_key *k,
			   const void *msg, size_t len, const unsigned char sig[SIG_LEN]);

/* Standard base64 with padding, no line breaks; out gets a NUL. */
void rb_audit_b64(const unsigned char *in, size_t n, char *out);
/*
 * A signature from its base64, which must be exactly the form rb_audit_b64
 * writes (88 characters, unused bits zero): otherwise several strings would
 * carry one signature, and a changed line could still verify.
 */
int rb_audit_sig_decode(const char *s, size_t len, unsigned char sig[SIG_LEN]);

/* True when s is n lower-case hex digits and nothing else. */
int rb_audit_is_hex(const char *s, size_t n);

/*
 * The end of a log file: its last whole record and the torn tail after it.
 * The torn tail is the bytes after the last newline, and before them the
 * lines that hold a NUL byte (what a power loss leaves: never a record, since
 * JSON escapes NUL).
 */
struct rb_audit_tail {
	uint64_t size;          /* the file's size */
	uint64_t end;           /* the end of the last whole line, its newline included */
	char *last;             /* that line, without its newline (malloc'd), or NULL */
	size_t last_len;
	struct rb_audit_torn torn;      /* length 0: none */
};
/* Read the tail of the file open on fd (read from the end, not the whole file). */
int rb_audit_read_tail(int fd, const char *path, struct rb_audit_tail *t, char **err);
void rb_audit_tail_release(struct rb_audit_tail *t);

#endif
