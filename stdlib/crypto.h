/*
 * What the crypto.* actions share (crypto.c: keys and random secrets;
 * crypto_cert.c: certificates): reading PEM files, the facts of a key, and
 * OpenSSL's reasons in messages.  None of it ever puts key material in a
 * message or an output.
 */
#ifndef RB_CRYPTO_H
#define RB_CRYPTO_H

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>

#include "action.h"

/* The largest PEM file read (a certificate bundle is about 200 KiB). */
#define RB_CRYPTO_MAX_PEM	(1024 * 1024)

/* What a PEM file holds first, by its first label that names a key or a certificate. */
enum rb_pem_kind {
	RB_PEM_NONE,
	RB_PEM_CERTIFICATE,
	RB_PEM_PRIVATE_KEY,
	RB_PEM_PUBLIC_KEY,
};

/*
 * The file at path whole (a regular file of at most RB_CRYPTO_MAX_PEM bytes,
 * never a FIFO or a device), NUL-terminated in *out (malloc'd: the caller
 * cleanses and frees it, it may be a private key); -1 with *err.
 */
int rb_crypto_read(const char *path, char **out, size_t *len, char **err);
/* The kind of the first key or certificate in a PEM text. */
enum rb_pem_kind rb_crypto_pem_kind(const char *pem);
/*
 * The key in a PEM text (private: the key pair, possibly encrypted with
 * passphrase, which may be NULL; public: SubjectPublicKeyInfo or PKCS#1);
 * NULL with *err (which names path, never the text).
 */
EVP_PKEY *rb_crypto_load_key(const char *pem, size_t len, int private, const char *passphrase,
			     const char *path, char **err);
/* The first certificate in a PEM text; NULL with *err (which names path). */
X509 *rb_crypto_load_cert(const char *pem, size_t len, const char *path, char **err);

/*
 * The SHA-256 of a key's DER SubjectPublicKeyInfo: as 64 hex digits, and as
 * "SHA256:" and unpadded base64 (the form of ssh-keygen -l).  -1 on failure.
 */
int rb_crypto_fingerprint(EVP_PKEY *pkey, char hex[65], char b64[60]);
/* "rsa", "ec", "ed25519", "ed448", or OpenSSL's name of the type in lower case. */
const char *rb_crypto_key_type(EVP_PKEY *pkey, char buf[32]);
/*
 * A key's facts for an output, into out: key_type, bits, curve (an EC key's,
 * as NIST names it where it can: P-256), fingerprint, fingerprint_base64.
 * -1 on failure.
 */
int rb_crypto_key_facts(EVP_PKEY *pkey, json_t *out);

/* OpenSSL's reason for its last error (no data of the call in it), and the queue cleared. */
const char *rb_crypto_reason(char *buf, size_t size);

/* Sets e (an argument's error) and returns -1. */
int rb_crypto_arg_error(struct rb_arg_error *e, const char *arg, char *msg);
/*
 * A type check of the argument name for check(): absent, or of json type
 * (JSON_STRING, JSON_INTEGER, JSON_TRUE for a boolean); -1 with *e.
 */
int rb_crypto_arg_type(const json_t *args, const char *name, json_type type,
		       struct rb_arg_error *e);

/* The time limit of a call: the earlier of its deadline and now + its timeout argument. */
int64_t rb_crypto_deadline(const struct rb_call *c, int64_t default_ms);

#endif
