/*
 * crypto.keypair, crypto.random, crypto.fingerprint and crypto.verify_pair:
 * keys and random secrets with OpenSSL's EVP interface, on a worker thread
 * (an RSA key of 4096 bits takes seconds: its generation stops at a cancel or
 * the deadline).  crypto_cert.c has crypto.cert_info.
 *
 * A private key's bytes never reach a message, an output or a log: they are
 * read into memory that is cleansed after use, messages name files and
 * OpenSSL's reasons only, and crypto.random's value is marked a secret
 * (rb_result.secrets) so that the engine hides it wherever the run writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action.h"
#include "crypto.h"
#include "durable.h"
#include "types.h"
#include "util.h"

/* --- shared with crypto_cert.c ------------------------------------------------------------- */

const char *rb_crypto_reason(char *buf, size_t size)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	snprintf(buf, size, "%s", r ? r : e ? "OpenSSL error" : "unknown OpenSSL error");
	ERR_clear_error();
	return buf;
}

int rb_crypto_arg_error(struct rb_arg_error *e, const char *arg, char *msg)
{
	return rb_arg_fail(e, arg, -1, msg);
}

int rb_crypto_arg_type(const json_t *args, const char *name, json_type type,
		       struct rb_arg_error *e)
{
	json_t *v = json_object_get(args, name);
	if (!v)
		return 0;
	if (type == JSON_STRING && (!json_is_string(v) || !json_string_length(v)))
		return rb_crypto_arg_error(e, name, rb_xstrdup(json_is_string(v) ? "is empty"
							       : "expected a string"));
	if (type == JSON_INTEGER && !json_is_integer(v))
		return rb_crypto_arg_error(e, name, rb_xstrdup("expected an integer"));
	if (type == JSON_TRUE && !json_is_boolean(v))
		return rb_crypto_arg_error(e, name, rb_xstrdup("expected true or false"));
	return 0;
}

int64_t rb_crypto_deadline(const struct rb_call *c, int64_t default_ms)
{
	int64_t ms = default_ms;
	const char *t = json_string_value(json_object_get(c->args, "timeout"));
	const char *why;
	if (t && rb_duration_parse(t, &ms, &why) < 0)
		ms = default_ms;
	int64_t at = rb_now_ms() + ms;
	return c->deadline_ms && c->deadline_ms < at ? c->deadline_ms : at;
}

int rb_crypto_read(const char *path, char **out, size_t *len, char **err)
{
	/* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd < 0)
		return rb_fail(err, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return rb_fail(err, "cannot read %s: %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode) || st.st_size > RB_CRYPTO_MAX_PEM) {
		close(fd);
		if (S_ISDIR(st.st_mode))
			return rb_fail(err, "%s is a directory", path);
		if (!S_ISREG(st.st_mode))
			return rb_fail(err, "%s is not a regular file", path);
		return rb_fail(err, "%s is larger than %d bytes: not a PEM file", path,
			       RB_CRYPTO_MAX_PEM);
	}
	size_t cap = (size_t)st.st_size + 2, n = 0;     /* room to read the end */
	char *buf = rb_xmalloc(cap);
	for (;;) {
		if (n + 1 == cap) {     /* it grew since fstat: up to the bound */
			if (cap > RB_CRYPTO_MAX_PEM) {
				OPENSSL_clear_free(buf, cap);
				close(fd);
				return rb_fail(err, "%s is larger than %d bytes: not a PEM file",
					       path, RB_CRYPTO_MAX_PEM);
			}
			char *more = rb_xmalloc(cap * 2);
			memcpy(more, buf, n);
			OPENSSL_clear_free(buf, cap);
			buf = more;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			OPENSSL_clear_free(buf, cap);
			close(fd);
			return rb_fail(err, "cannot read %s: %s", path, strerror(e));
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	/* Cleansed by its reader with the length it is told: the slack goes now. */
	memset(buf + n, 0, cap - n);
	*out = buf;
	*len = n;
	return 0;
}

/* A PEM block's label and where the block starts; the next after from, or NULL. */
static const char *pem_block(const char *from, char *label, size_t size)
{
	static const char begin[] = "-----BEGIN ";
	for (const char *p = strstr(from, begin); p; p = strstr(p + 1, begin)) {
		const char *l = p + sizeof(begin) - 1, *end = strstr(l, "-----");
		const char *nl = strchr(l, '\n');
		if (!end || (nl && nl < end) || (size_t)(end - l) >= size)
			continue;
		memcpy(label, l, (size_t)(end - l));
		label[end - l] = '\0';
		return p;
	}
	return NULL;
}

static int ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), m = strlen(tail);
	return n >= m && !strcmp(s + n - m, tail);
}

static enum rb_pem_kind label_kind(const char *label)
{
	if (ends_with(label, "CERTIFICATE"))    /* X509 CERTIFICATE, TRUSTED CERTIFICATE */
		return RB_PEM_CERTIFICATE;
	if (ends_with(label, "PRIVATE KEY"))    /* RSA, EC, ENCRYPTED PRIVATE KEY */
		return RB_PEM_PRIVATE_KEY;
	if (ends_with(label, "PUBLIC KEY"))     /* RSA PUBLIC KEY (PKCS#1) */
		return RB_PEM_PUBLIC_KEY;
	return RB_PEM_NONE;                     /* EC PARAMETERS, CERTIFICATE REQUEST, ... */
}

enum rb_pem_kind rb_crypto_pem_kind(const char *pem)
{
	char label[64];
	for (const char *p = pem_block(pem, label, sizeof(label)); p;
	     p = pem_block(p + 1, label, sizeof(label)))
		if (label_kind(label) != RB_PEM_NONE)
			return label_kind(label);
	return RB_PEM_NONE;
}

/* The decoder asks for a passphrase that was not given: no prompt, a failure. */
static int no_passphrase(char *buf, int size, int rwflag, void *ud)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	*(int *)ud = 1;
	return -1;
}

EVP_PKEY *rb_crypto_load_key(const char *pem, size_t len, int private, const char *passphrase,
			     const char *path, char **err)
{
	/* The first block of the kind asked for: an "EC PARAMETERS" block may come first. */
	char label[64];
	const char *p;
	enum rb_pem_kind want = private ? RB_PEM_PRIVATE_KEY : RB_PEM_PUBLIC_KEY;
	for (p = pem_block(pem, label, sizeof(label)); p; p = pem_block(p + 1, label, sizeof(label)))
		if (label_kind(label) == want)
			break;
	if (!p) {
		rb_fail(err, "%s holds no %s key in PEM", path, private ? "private" : "public");
		return NULL;
	}
	EVP_PKEY *pkey = NULL;
	int asked = 0;
	ERR_clear_error();
	OSSL_DECODER_CTX *d = OSSL_DECODER_CTX_new_for_pkey(
		&pkey, "PEM", NULL, NULL, private ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, NULL,
		NULL);
	if (d && passphrase)
		OSSL_DECODER_CTX_set_passphrase(d, (const unsigned char *)passphrase,
						strlen(passphrase));
	else if (d)
		OSSL_DECODER_CTX_set_pem_password_cb(d, no_passphrase, &asked);
	const unsigned char *data = (const unsigned char *)p;
	size_t left = len - (size_t)(p - pem);
	if (!d || !OSSL_DECODER_from_data(d, &data, &left) || !pkey) {
		char why[160];
		rb_crypto_reason(why, sizeof(why));
		if (asked || (!passphrase && (strstr(label, "ENCRYPTED") ||
					      strstr(p, "Proc-Type: 4,ENCRYPTED"))))
			rb_fail(err, "%s: the private key is encrypted: give its passphrase", path);
		else
			rb_fail(err, "%s: cannot read the %s key: %s", path,
				private ? "private" : "public", why);
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	OSSL_DECODER_CTX_free(d);
	return pkey;
}

X509 *rb_crypto_load_cert(const char *pem, size_t len, const char *path, char **err)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	ERR_clear_error();
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (!x) {
		char why[160];
		rb_fail(err, "%s: cannot read the certificate: %s", path,
			rb_crypto_reason(why, sizeof(why)));
	}
	return x;
}

int rb_crypto_fingerprint(EVP_PKEY *pkey, char hex[65], char b64[60])
{
	unsigned char *der = NULL, md[32];
	int n = i2d_PUBKEY(pkey, &der);
	unsigned int mdlen = 0;
	int ok = n > 0 && EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL) == 1;
	OPENSSL_free(der);
	if (!ok)
		return -1;
	rb_hex(md, sizeof(md), hex);
	unsigned char enc[48];
	int m = EVP_EncodeBlock(enc, md, sizeof(md));
	while (m > 0 && enc[m - 1] == '=')
		m--;
	snprintf(b64, 60, "SHA256:%.*s", m, (const char *)enc);
	return 0;
}

const char *rb_crypto_key_type(EVP_PKEY *pkey, char buf[32])
{
	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		return "rsa";
	case EVP_PKEY_RSA_PSS:
		return "rsa-pss";
	case EVP_PKEY_EC:
		return "ec";
	case EVP_PKEY_ED25519:
		return "ed25519";
	case EVP_PKEY_ED448:
		return "ed448";
	default:
		break;
	}
	const char *name = EVP_PKEY_get0_type_name(pkey);
	snprintf(buf, 32, "%s", name ? name : "unknown");
	for (char *p = buf; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return buf;
}

int rb_crypto_key_facts(EVP_PKEY *pkey, json_t *out)
{
	char hex[65], b64[60], tbuf[32];
	if (rb_crypto_fingerprint(pkey, hex, b64) < 0)
		return -1;
	json_object_set_new(out, "key_type", json_string(rb_crypto_key_type(pkey, tbuf)));
	json_object_set_new(out, "bits", json_integer(EVP_PKEY_get_bits(pkey)));
	char group[64];
	size_t glen = 0;
	if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_EC &&
	    EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
					   &glen) == 1) {
		const char *nist = EC_curve_nid2nist(OBJ_txt2nid(group));
		json_object_set_new(out, "curve", json_string(nist ? nist : group));
	}
	json_object_set_new(out, "fingerprint", json_string(hex));
	json_object_set_new(out, "fingerprint_base64", json_string(b64));
	ERR_clear_error();
	return 0;
}

/* --- the actions' common parts ------------------------------------------------------------- */

static int broken(struct rb_result *res, char *msg)
{
	res->outcome = RB_BROKEN;
	res->error = msg;
	return -1;
}

static int failed(struct rb_result *res, char *msg)
{
	res->outcome = RB_FAILED;
	res->error = msg;
	return -1;
}

/* A private key's file (or a public key's, a certificate's) read; -1 with res filled in. */
static int read_pem(const char *path, char **pem, size_t *len, struct rb_result *res)
{
	char *err = NULL;
	if (rb_crypto_read(path, pem, len, &err) < 0)
		return failed(res, err);
	return 0;
}

static void forget(char *pem, size_t len)
{
	if (pem)
		OPENSSL_clear_free(pem, len + 1);
}

/* --- crypto.keypair ------------------------------------------------------------------------ */

static const char *const key_types[] = {"rsa", "ed25519", "ec", NULL};
static const char *const curves[] = {"P-256", "P-384", NULL};

static const struct rb_arg keypair_args[] = {
	{"type", RB_T_STRING, RB_ARG_REQUIRED, key_types, "the key's type"},
	{"private_key", RB_T_STRING, RB_ARG_REQUIRED, NULL, "the private key's PEM file "
	 "(PKCS#8, mode 0600), which must not exist unless overwrite"},
	{"public_key", RB_T_STRING, 0, NULL, "the public key's PEM file (SubjectPublicKeyInfo, "
	 "mode 0644; default: private_key with .pub added)"},
	{"bits", RB_T_INTEGER, 0, NULL, "rsa: 2048, 3072 (the default) or 4096"},
	{"curve", RB_T_STRING, 0, curves, "ec: P-256 (the default) or P-384"},
	{"passphrase", RB_T_STRING, RB_ARG_SECRET, NULL, "encrypt the private key with it "
	 "(AES-256), from secrets"},
	{"overwrite", RB_T_BOOLEAN, 0, NULL, "replace the files when they exist (default false: "
	 "the step fails)"},
	{NULL, 0, 0, NULL, NULL},
};

static int one_of(const char *s, const char *const *choices)
{
	for (; *choices; choices++)
		if (!strcmp(s, *choices))
			return 1;
	return 0;
}

/* A string argument with choices, checked at run time too (validate checks literals). */
static int check_choice(const json_t *args, const char *name, const char *const *choices,
			struct rb_arg_error *e)
{
	if (rb_crypto_arg_type(args, name, JSON_STRING, e) < 0)
		return -1;
	const char *s = rb_arg_str(args, name);
	if (!s || one_of(s, choices))
		return 0;
	struct rb_buf b;
	rb_buf_init(&b);
	for (size_t k = 0; choices[k]; k++)
		rb_buf_printf(&b, "%s%s", k ? ", " : "", choices[k]);
	char *msg = rb_xasprintf("'%s' is not one of %s", s, b.s);
	rb_buf_release(&b);
	return rb_crypto_arg_error(e, name, msg);
}

static int keypair_check(const json_t *args, const json_t *later, struct rb_arg_error *e)
{
	(void)later;        /* what is known only later is checked then */
	if (check_choice(args, "type", key_types, e) < 0 ||
	    check_choice(args, "curve", curves, e) < 0 ||
	    rb_crypto_arg_type(args, "private_key", JSON_STRING, e) < 0 ||
	    rb_crypto_arg_type(args, "public_key", JSON_STRING, e) < 0 ||
	    rb_crypto_arg_type(args, "bits", JSON_INTEGER, e) < 0 ||
	    rb_crypto_arg_type(args, "overwrite", JSON_TRUE, e) < 0)
		return -1;
	const char *type = rb_arg_str(args, "type");
	json_t *bits = json_object_get(args, "bits");
	if (bits) {
		json_int_t b = json_integer_value(bits);
		if (b != 2048 && b != 3072 && b != 4096)
			return rb_crypto_arg_error(e, "bits", rb_xstrdup("expected 2048, 3072 or "
									 "4096"));
		if (type && strcmp(type, "rsa"))
			return rb_crypto_arg_error(e, "bits", rb_xasprintf(
				"is for rsa keys, not %s%s", type,
				!strcmp(type, "ec") ? " (ec keys take a curve)" : ""));
	}
	if (json_object_get(args, "curve") && type && strcmp(type, "ec"))
		return rb_crypto_arg_error(e, "curve", rb_xasprintf("is for ec keys, not %s",
								    type));
	const char *priv = rb_arg_str(args, "private_key"), *pub = rb_arg_str(args, "public_key");
	if (priv && pub && !strcmp(priv, pub))
		return rb_crypto_arg_error(e, "public_key",
					   rb_xstrdup("is the private key's file"));
	if (priv && priv[strlen(priv) - 1] == '/')
		return rb_crypto_arg_error(e, "private_key", rb_xstrdup("names a directory, not a "
									"file"));
	return 0;
}

/* "rsa 3072", "ec P-256", "ed25519". */
static char *key_kind(const json_t *args)
{
	const char *type = rb_arg_str(args, "type");
	if (!type)
		return rb_xstrdup("a key pair");
	if (!strcmp(type, "rsa")) {
		json_t *b = json_object_get(args, "bits");
		return rb_xasprintf("rsa %" JSON_INTEGER_FORMAT, b ? json_integer_value(b) : 3072);
	}
	if (!strcmp(type, "ec"))
		return rb_xasprintf("ec %s", rb_arg_str(args, "curve") ? rb_arg_str(args, "curve")
						 : "P-256");
	return rb_xstrdup(type);
}

static enum rb_effect keypair_effect(const json_t *args, const json_t *later, char **what)
{
	(void)later;
	const char *priv = rb_arg_str(args, "private_key"), *pub = rb_arg_str(args, "public_key");
	char *kind = key_kind(args);
	int ow = json_is_true(json_object_get(args, "overwrite"));
	if (!priv)
		*what = rb_xasprintf("writes a key pair (%s)%s", kind,
				     ow ? ", replacing its files if they exist" : "");
	else if (pub)
		*what = rb_xasprintf("writes %s and %s (%s)%s", priv, pub, kind,
				     ow ? ", replacing them if they exist" : "");
	else
		*what = rb_xasprintf("writes %s and %s.pub (%s)%s", priv, priv, kind,
				     ow ? ", replacing them if they exist" : "");
	free(kind);
	return RB_EFFECT_WRITES;
}

/* OpenSSL's generation asks now and then whether to go on. */
static int keygen_progress(EVP_PKEY_CTX *ctx)
{
	const struct rb_call *c = EVP_PKEY_CTX_get_app_data(ctx);
	return !rb_cancelled(c->cancel) && !(c->deadline_ms && rb_now_ms() >= c->deadline_ms);
}

static EVP_PKEY *generate(const struct rb_call *c, char **err)
{
	const char *type = rb_arg_str(c->args, "type");
	const char *alg = !strcmp(type, "rsa") ? "RSA" : !strcmp(type, "ec") ? "EC" : "ED25519";
	json_t *bits = json_object_get(c->args, "bits");
	const char *curve = rb_arg_str(c->args, "curve");
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
	int ok = ctx && EVP_PKEY_keygen_init(ctx) == 1;
	if (ok && !strcmp(alg, "RSA"))
		ok = EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, bits ? (int)json_integer_value(bits)
							    : 3072) == 1;
	if (ok && !strcmp(alg, "EC"))
		ok = EVP_PKEY_CTX_set_group_name(ctx, curve ? curve : "P-256") == 1;
	if (ok) {
		EVP_PKEY_CTX_set_app_data(ctx, (void *)c);
		EVP_PKEY_CTX_set_cb(ctx, keygen_progress);
		ok = EVP_PKEY_generate(ctx, &pkey) == 1;
	}
	if (!ok) {
		char why[160];
		rb_crypto_reason(why, sizeof(why));
		*err = rb_xasprintf("cannot generate the key: %s", why);
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return rb_xstrdup(".");
	if (slash == path)
		return rb_xstrdup("/");
	return rb_xstrndup(path, (size_t)(slash - path));
}

/*
 * path gets buf whole or not at all: a temp file beside it (created 0600, so a
 * private key is never readable by others, even for a moment), its mode, fsync,
 * a rename that replaces only with overwrite, fsync of the directory.
 */
static int write_key_file(const char *path, const char *buf, size_t len, mode_t mode,
			  int overwrite, char **err)
{
	char *dir = dir_of(path);
	char *tmp = rb_xasprintf("%s/.runbook-key.XXXXXX", dir);
	int r = -1;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rb_fail(err, "cannot create a file in %s: %s", dir, strerror(errno));
		goto out;
	}
	if (fchmod(fd, mode) < 0 || rb_write_all(fd, buf, len) < 0 || rb_sync_fd(fd, 0) < 0) {
		rb_fail(err, "cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if ((overwrite ? rename(tmp, path)
	     : renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE)) < 0) {
		int e = errno;
		unlink(tmp);
		if (e == EEXIST)
			rb_fail(err, "%s exists: not replaced (overwrite: true replaces it)", path);
		else
			rb_fail(err, "cannot write %s: %s", path, strerror(e));
		goto out;
	}
	if (rb_sync_parent(path) < 0) {
		rb_fail(err, "cannot sync %s: %s", dir, strerror(errno));
		goto out;
	}
	r = 0;
out:
	free(tmp);
	free(dir);
	return r;
}

/* The PEM text of pkey, private (PKCS#8, encrypted with pass) or public; NULL on failure. */
static char *pem_of(EVP_PKEY *pkey, int private, const char *pass, size_t *len)
{
	/* secmem: the buffer of a private key is cleansed when the BIO goes. */
	BIO *bio = BIO_new(private ? BIO_s_secmem() : BIO_s_mem());
	if (!bio)
		return NULL;
	const EVP_CIPHER *cipher = pass ? EVP_aes_256_cbc() : NULL;
	int passlen = pass ? (int)strlen(pass) : 0;
	int ok = !private ? PEM_write_bio_PUBKEY(bio, pkey)
		 : PEM_write_bio_PrivateKey(bio, pkey, cipher, (const unsigned char *)pass, passlen,
					    NULL, NULL);
	char *s = NULL;
	if (ok == 1) {
		char *p;
		long n = BIO_get_mem_data(bio, &p);
		s = rb_xmalloc((size_t)n + 1);
		memcpy(s, p, (size_t)n);
		s[n] = '\0';
		*len = (size_t)n;
	}
	BIO_free(bio);
	return s;
}

/* Stopped: by a cancel or at the deadline.  1 when so (res filled in). */
static int stopped(const struct rb_call *c, const char *what, struct rb_result *res)
{
	if (rb_cancelled(c->cancel)) {
		res->outcome = RB_CANCELLED;
		res->error = rb_xasprintf("%s: cancelled", what);
		return 1;
	}
	if (c->deadline_ms && rb_now_ms() >= c->deadline_ms) {
		res->outcome = RB_TIMED_OUT;
		res->error = rb_xasprintf("%s: timed out", what);
		return 1;
	}
	return 0;
}

static int keypair_run(const struct rb_call *c, struct rb_result *res)
{
	const json_t *a = c->args;
	const char *priv = rb_arg_str(a, "private_key"), *pass = rb_arg_str(a, "passphrase");
	int overwrite = json_is_true(json_object_get(a, "overwrite"));
	char *pub = rb_arg_str(a, "public_key") ? rb_xstrdup(rb_arg_str(a, "public_key"))
		    : rb_xasprintf("%s.pub", priv);
	char *kind = key_kind(a), *err = NULL, *priv_pem = NULL, *pub_pem = NULL;
	size_t plen = 0, ulen = 0;
	EVP_PKEY *pkey = NULL;
	struct stat st;
	int r = -1;
	ERR_clear_error();
	if (!overwrite && (lstat(priv, &st) == 0 || lstat(pub, &st) == 0)) {
		failed(res, rb_xasprintf("%s exists: not replaced (overwrite: true replaces it)",
					 lstat(priv, &st) == 0 ? priv : pub));
		goto out;
	}
	if (!(pkey = generate(c, &err))) {
		if (!stopped(c, "generating the key", res))
			broken(res, err);
		else
			free(err);
		goto out;
	}
	priv_pem = pem_of(pkey, 1, pass, &plen);
	pub_pem = pem_of(pkey, 0, NULL, &ulen);
	if (!priv_pem || !pub_pem) {
		char why[160];
		broken(res, rb_xasprintf("cannot encode the key: %s",
					 rb_crypto_reason(why, sizeof(why))));
		goto out;
	}
	if (stopped(c, "before writing the key", res))
		goto out;
	/* The private key first: a public key can be derived again, a private one not. */
	if (write_key_file(priv, priv_pem, plen, 0600, overwrite, &err) < 0) {
		failed(res, err);
		goto out;
	}
	if (write_key_file(pub, pub_pem, ulen, 0644, overwrite, &err) < 0) {
		/* Made here and now, without its public half, the private key goes again. */
		if (!overwrite && unlink(priv) == 0)
			rb_sync_parent(priv);
		failed(res, err);
		goto out;
	}
	res->output = json_pack("{s:s, s:s}", "private_key", priv, "public_key", pub);
	if (rb_crypto_key_facts(pkey, res->output) < 0) {
		char why[160];
		broken(res, rb_xasprintf("cannot compute the fingerprint: %s",
					 rb_crypto_reason(why, sizeof(why))));
		goto out;
	}
	r = 0;
out:
	forget(priv_pem, plen);
	free(pub_pem);
	EVP_PKEY_free(pkey);
	free(kind);
	free(pub);
	ERR_clear_error();
	return r;
}

static const struct rb_output keypair_outputs[] = {
	{"private_key", "the private key's file"},
	{"public_key", "the public key's file"},
	{"key_type", "rsa, ec or ed25519"},
	{"bits", "the key's size in bits (ed25519: 256)"},
	{"curve", "ec: P-256 or P-384"},
	{"fingerprint", "the SHA-256 of the public key's DER SubjectPublicKeyInfo, 64 hex "
	 "digits (sha256sum of `openssl pkey -pubout -outform DER`)"},
	{"fingerprint_base64", "the same as \"SHA256:\" and unpadded base64, as ssh-keygen "
	 "writes fingerprints"},
	{NULL, NULL},
};

const struct rb_action act_crypto_keypair = {
	.name = "crypto.keypair",
	.summary = "generate a key pair (rsa, ec or ed25519) into PEM files; its fingerprint "
		   "is the output",
	.args = keypair_args,
	.outputs = keypair_outputs,
	.example = "- id: new_signing_key\n"
		   "  action: crypto.keypair\n"
		   "  with:\n"
		   "    type: rsa\n"
		   "    bits: 4096\n"
		   "    private_key: /etc/veris/keys/next.pem\n"
		   "  check:\n"
		   "    run: test -s /etc/veris/keys/next.pem\n",
	.flags = RB_ACT_SIDE_EFFECTS,
	.check = keypair_check,
	.effect = keypair_effect,
	.run = keypair_run,
};

/* --- crypto.random ------------------------------------------------------------------------- */

enum { RANDOM_MIN = 8, RANDOM_MAX = 1024 };

static const char *const encodings[] = {"base64", "base64url", "hex", NULL};

static const struct rb_arg random_args[] = {
	{"bytes", RB_T_INTEGER, 0, NULL, "how many random bytes (8 to 1024, default 32)"},
	{"encoding", RB_T_STRING, 0, encodings, "how they are written: base64 (the default, "
	 "padded), base64url (no padding) or hex"},
	{NULL, 0, 0, NULL, NULL},
};

static int random_check(const json_t *args, const json_t *later, struct rb_arg_error *e)
{
	(void)later;        /* what is known only later is checked then */
	if (check_choice(args, "encoding", encodings, e) < 0 ||
	    rb_crypto_arg_type(args, "bytes", JSON_INTEGER, e) < 0)
		return -1;
	json_t *n = json_object_get(args, "bytes");
	if (n && (json_integer_value(n) < RANDOM_MIN || json_integer_value(n) > RANDOM_MAX))
		return rb_crypto_arg_error(e, "bytes", rb_xasprintf("expected %d to %d (fewer "
								    "bytes are not a secret)",
								    RANDOM_MIN, RANDOM_MAX));
	return 0;
}

static int random_run(const struct rb_call *c, struct rb_result *res)
{
	json_t *nb = json_object_get(c->args, "bytes");
	const char *enc = rb_arg_str(c->args, "encoding");
	size_t n = nb ? (size_t)json_integer_value(nb) : 32;
	if (!enc)
		enc = "base64";
	if (n < RANDOM_MIN || n > RANDOM_MAX)
		return broken(res, rb_xasprintf("bytes: expected %d to %d", RANDOM_MIN,
						RANDOM_MAX));
	unsigned char raw[RANDOM_MAX];
	char text[RANDOM_MAX * 2 + 4];
	ERR_clear_error();
	if (RAND_priv_bytes(raw, (int)n) != 1) {
		char why[160];
		return broken(res, rb_xasprintf("no random bytes: %s",
						rb_crypto_reason(why, sizeof(why))));
	}
	if (!strcmp(enc, "hex")) {
		rb_hex(raw, n, text);
	} else {
		int m = EVP_EncodeBlock((unsigned char *)text, raw, (int)n);
		if (!strcmp(enc, "base64url")) {
			while (m > 0 && text[m - 1] == '=')
				m--;
			text[m] = '\0';
			for (char *p = text; *p; p++)
				*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
		}
	}
	OPENSSL_cleanse(raw, sizeof(raw));
	res->output = json_pack("{s:s, s:I, s:s}", "value", text, "bytes", (json_int_t)n,
				"encoding", enc);
	/* The engine hides it wherever the run writes or prints, with no sensitive: needed. */
	res->secrets = json_pack("[s]", text);
	OPENSSL_cleanse(text, sizeof(text));
	return 0;
}

static const struct rb_output random_outputs[] = {
	{"value", "the random bytes, encoded: a secret, hidden (***) wherever the run writes "
	 "or prints it, also when a later step's output holds it; never written down, so a "
	 "resumed run reads *** in its place"},
	{"bytes", "how many bytes"},
	{"encoding", "base64, base64url or hex"},
	{NULL, NULL},
};

const struct rb_action act_crypto_random = {
	.name = "crypto.random",
	.summary = "make a random secret (a password, a token, a key) from OpenSSL's "
		   "generator; the engine hides it as a secret",
	.args = random_args,
	.outputs = random_outputs,
	.example = "- id: db_password\n"
		   "  action: crypto.random\n"
		   "  with: {bytes: 24, encoding: base64url}\n"
		   "- id: set_password\n"
		   "  needs: [db_password]\n"
		   "  action: shell\n"
		   "  with:\n"
		   "    command: [vault, kv, put, secret/db, password=-]\n"
		   "    stdin: ${{ steps.db_password.output.value }}\n",
	.flags = RB_ACT_SECRET_OUTPUT,
	.check = random_check,
	.run = random_run,
};

/* --- crypto.fingerprint -------------------------------------------------------------------- */

static const struct rb_arg fingerprint_args[] = {
	{"file", RB_T_STRING, RB_ARG_REQUIRED, NULL, "a PEM file: a public key, a private key "
	 "or a certificate (its first)"},
	{"passphrase", RB_T_STRING, RB_ARG_SECRET, NULL, "an encrypted private key's, from "
	 "secrets"},
	{NULL, 0, 0, NULL, NULL},
};

static int fingerprint_check(const json_t *args, const json_t *later, struct rb_arg_error *e)
{
	(void)later;        /* what is known only later is checked then */
	return rb_crypto_arg_type(args, "file", JSON_STRING, e);
}

/* The public key of a PEM file, whatever it holds; NULL with res filled in. */
static EVP_PKEY *any_key(const char *path, const char *pass, const char **kind, X509 **cert,
			 struct rb_result *res)
{
	char *pem = NULL, *err = NULL;
	size_t len = 0;
	EVP_PKEY *pkey = NULL;
	if (read_pem(path, &pem, &len, res) < 0)
		return NULL;
	switch (rb_crypto_pem_kind(pem)) {
	case RB_PEM_CERTIFICATE:
		*kind = "certificate";
		if ((*cert = rb_crypto_load_cert(pem, len, path, &err)) &&
		    !(pkey = X509_get_pubkey(*cert)))
			err = rb_xasprintf("%s: the certificate's key is of a type OpenSSL does "
					   "not know", path);
		break;
	case RB_PEM_PRIVATE_KEY:
		*kind = "private_key";
		pkey = rb_crypto_load_key(pem, len, 1, pass, path, &err);
		break;
	case RB_PEM_PUBLIC_KEY:
		*kind = "public_key";
		pkey = rb_crypto_load_key(pem, len, 0, NULL, path, &err);
		break;
	default:
		err = rb_xasprintf("%s holds no key or certificate in PEM", path);
		break;
	}
	forget(pem, len);
	if (!pkey)
		failed(res, err);
	return pkey;
}

static int fingerprint_run(const struct rb_call *c, struct rb_result *res)
{
	const char *path = rb_arg_str(c->args, "file"), *kind = NULL;
	X509 *cert = NULL;
	ERR_clear_error();
	EVP_PKEY *pkey = any_key(path, rb_arg_str(c->args, "passphrase"), &kind, &cert, res);
	if (!pkey)
		return -1;
	int r = 0;
	res->output = json_pack("{s:s, s:s}", "file", path, "kind", kind);
	if (rb_crypto_key_facts(pkey, res->output) < 0) {
		char why[160];
		r = broken(res, rb_xasprintf("%s: cannot compute the fingerprint: %s", path,
					     rb_crypto_reason(why, sizeof(why))));
	} else if (cert) {
		unsigned char md[32];
		unsigned int n = 0;
		char hex[65];
		if (X509_digest(cert, EVP_sha256(), md, &n) == 1) {
			rb_hex(md, sizeof(md), hex);
			json_object_set_new(res->output, "certificate_fingerprint",
					    json_string(hex));
		}
	}
	X509_free(cert);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return r;
}

static const struct rb_output fingerprint_outputs[] = {
	{"file", "the file"},
	{"kind", "what it holds: public_key, private_key or certificate"},
	{"key_type", "rsa, ec, ed25519, ..."},
	{"bits", "the key's size in bits"},
	{"curve", "ec: the curve (P-256, P-384, P-521, or OpenSSL's name)"},
	{"fingerprint", "the SHA-256 of the public key's DER SubjectPublicKeyInfo, 64 hex "
	 "digits: the same for a private key, its public key and a certificate of it"},
	{"fingerprint_base64", "the same as \"SHA256:\" and unpadded base64"},
	{"certificate_fingerprint", "a certificate's: the SHA-256 of its DER, 64 hex digits "
	 "(`openssl x509 -fingerprint -sha256` writes them in upper case, with colons)"},
	{NULL, NULL},
};

const struct rb_action act_crypto_fingerprint = {
	.name = "crypto.fingerprint",
	.summary = "the SHA-256 fingerprint of a public key, a private key or a certificate "
		   "in a PEM file",
	.args = fingerprint_args,
	.outputs = fingerprint_outputs,
	.example = "- id: deployed_key\n"
		   "  action: crypto.fingerprint\n"
		   "  with: {file: /etc/veris/keys/current.pub}\n",
	.check = fingerprint_check,
	.run = fingerprint_run,
};

/* --- crypto.verify_pair -------------------------------------------------------------------- */

static const struct rb_arg verify_pair_args[] = {
	{"private_key", RB_T_STRING, RB_ARG_REQUIRED, NULL, "the private key's PEM file"},
	{"public_key", RB_T_STRING, 0, NULL, "the public key's PEM file (a certificate's will do)"},
	{"certificate", RB_T_STRING, 0, NULL, "a certificate's PEM file, instead of public_key"},
	{"passphrase", RB_T_STRING, RB_ARG_SECRET, NULL, "an encrypted private key's, from "
	 "secrets"},
	{NULL, 0, 0, NULL, NULL},
};

static int verify_pair_check(const json_t *args, const json_t *later, struct rb_arg_error *e)
{
	(void)later;        /* what is known only later is checked then */
	if (rb_crypto_arg_type(args, "private_key", JSON_STRING, e) < 0 ||
	    rb_crypto_arg_type(args, "public_key", JSON_STRING, e) < 0 ||
	    rb_crypto_arg_type(args, "certificate", JSON_STRING, e) < 0)
		return -1;
	if (json_object_get(args, "public_key") && json_object_get(args, "certificate"))
		return rb_crypto_arg_error(e, "certificate", rb_xstrdup("give public_key or "
									"certificate, not both"));
	return 0;
}

/*
 * Sign a random message with priv and verify it with pub, as their type does:
 * RSA-PSS with SHA-256, ECDSA with SHA-256, Ed25519 and Ed448 as they are.
 * 1: it verifies; 0: it does not; -1 with *err: priv cannot sign.
 */
static int sign_verify(EVP_PKEY *priv, EVP_PKEY *pub, char **err)
{
	unsigned char msg[64], *sig = NULL;
	size_t siglen = 0;
	int id = EVP_PKEY_get_base_id(priv);
	const char *md = id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : "SHA256";
	int rsa = id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS;
	EVP_MD_CTX *s = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
	EVP_PKEY_CTX *sp = NULL, *vp = NULL;
	int r = -1;
	char why[160];
	if (!s || !v || RAND_bytes(msg, sizeof(msg)) != 1 ||
	    EVP_DigestSignInit_ex(s, &sp, md, NULL, NULL, priv, NULL) != 1 ||
	    (rsa && (EVP_PKEY_CTX_set_rsa_padding(sp, RSA_PKCS1_PSS_PADDING) != 1 ||
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(sp, RSA_PSS_SALTLEN_DIGEST) != 1)) ||
	    EVP_DigestSign(s, NULL, &siglen, msg, sizeof(msg)) != 1) {
		*err = rb_xasprintf("cannot sign with the private key: %s",
				    rb_crypto_reason(why, sizeof(why)));
		goto out;
	}
	sig = rb_xmalloc(siglen);
	if (EVP_DigestSign(s, sig, &siglen, msg, sizeof(msg)) != 1) {
		*err = rb_xasprintf("cannot sign with the private key: %s",
				    rb_crypto_reason(why, sizeof(why)));
		goto out;
	}
	/* A public key the signature's scheme does not take does not match. */
	r = EVP_DigestVerifyInit_ex(v, &vp, md, NULL, NULL, pub, NULL) == 1 &&
	    (!rsa || (EVP_PKEY_CTX_set_rsa_padding(vp, RSA_PKCS1_PSS_PADDING) == 1 &&
		      EVP_PKEY_CTX_set_rsa_pss_saltlen(vp, RSA_PSS_SALTLEN_DIGEST) == 1)) &&
	    EVP_DigestVerify(v, sig, siglen, msg, sizeof(msg)) == 1;
out:
	free(sig);
	EVP_MD_CTX_free(s);
	EVP_MD_CTX_free(v);
	ERR_clear_error();
	return r;
}

static int verify_pair_run(const struct rb_call *c, struct rb_result *res)
{
	const json_t *a = c->args;
	const char *priv_path = rb_arg_str(a, "private_key");
	const char *pub_path = rb_arg_str(a, "public_key") ? rb_arg_str(a, "public_key")
			       : rb_arg_str(a, "certificate");
	if (!pub_path)
		return broken(res, rb_xstrdup("give public_key or certificate: what the private "
					      "key is checked against"));
	char *pem = NULL, *err = NULL;
	size_t len = 0;
	const char *kind = NULL;
	X509 *cert = NULL;
	EVP_PKEY *priv = NULL, *pub = NULL;
	int r = -1;
	ERR_clear_error();
	if (read_pem(priv_path, &pem, &len, res) < 0)
		goto out;
	if (rb_crypto_pem_kind(pem) != RB_PEM_PRIVATE_KEY) {
		failed(res, rb_xasprintf("%s holds no private key in PEM", priv_path));
		goto out;
	}
	priv = rb_crypto_load_key(pem, len, 1, rb_arg_str(a, "passphrase"), priv_path, &err);
	if (!priv) {
		failed(res, err);
		goto out;
	}
	if (!(pub = any_key(pub_path, NULL, &kind, &cert, res)))
		goto out;
	if (!strcmp(kind, "private_key")) {
		failed(res, rb_xasprintf("%s is a private key: give a public key or a certificate",
					 pub_path));
		goto out;
	}
	if (stopped(c, "checking the key pair", res))
		goto out;
	char tp[32], tq[32];
	const char *priv_type = rb_crypto_key_type(priv, tp);
	const char *pub_type = rb_crypto_key_type(pub, tq);
	int match = 0;
	if (!strcmp(priv_type, pub_type) && (match = sign_verify(priv, pub, &err)) < 0) {
		broken(res, rb_xasprintf("%s: %s", priv_path, err));
		free(err);
		goto out;
	}
	res->output = json_pack("{s:b}", "matches", match);
	json_t *pf = json_object();
	if (rb_crypto_key_facts(priv, res->output) < 0 || rb_crypto_key_facts(pub, pf) < 0) {
		json_decref(pf);
		char why[160];
		broken(res, rb_xasprintf("cannot compute the fingerprints: %s",
					 rb_crypto_reason(why, sizeof(why))));
		goto out;
	}
	json_object_set(res->output, "public_fingerprint", json_object_get(pf, "fingerprint"));
	if (!match) {
		char types[80];
		if (strcmp(priv_type, pub_type))
			snprintf(types, sizeof(types), "%s and %s", priv_type, pub_type);
		else
			snprintf(types, sizeof(types), "%s keys", priv_type);
		failed(res, rb_xasprintf("the private key %s does not match the %s %s (%s, "
					 "fingerprints %.16s... and %.16s...)", priv_path,
					 !strcmp(kind, "certificate") ? "certificate" : "public key",
					 pub_path, types, json_string_value(json_object_get(
						 res->output, "fingerprint")),
					 json_string_value(json_object_get(pf, "fingerprint"))));
		json_decref(pf);
		goto out;
	}
	json_decref(pf);
	r = 0;
out:
	forget(pem, len);
	X509_free(cert);
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	ERR_clear_error();
	return r;
}

static const struct rb_output verify_pair_outputs[] = {
	{"matches", "whether a message signed with the private key verifies with the public "
	 "key (false fails the step; its on_failure steps read it)"},
	{"key_type", "the private key's type: rsa (signed with RSA-PSS), ec (ECDSA), ed25519"},
	{"bits", "its size in bits"},
	{"curve", "ec: the curve"},
	{"fingerprint", "the SHA-256 of the private key's public key (DER SubjectPublicKeyInfo), "
	 "64 hex digits"},
	{"fingerprint_base64", "the same as \"SHA256:\" and unpadded base64"},
	{"public_fingerprint", "the same of the public key or certificate given: equal when "
	 "they match"},
	{NULL, NULL},
};

const struct rb_action act_crypto_verify_pair = {
	.name = "crypto.verify_pair",
	.summary = "check that a private key and a public key or certificate belong together, "
		   "by signing a random message and verifying it",
	.args = verify_pair_args,
	.outputs = verify_pair_outputs,
	.example = "- id: validate_new_key\n"
		   "  action: crypto.verify_pair\n"
		   "  with:\n"
		   "    private_key: /etc/veris/keys/next.pem\n"
		   "    public_key: /etc/veris/keys/next.pem.pub\n",
	.check = verify_pair_check,
	.run = verify_pair_run,
};
