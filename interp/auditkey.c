/*
 * The audit log's keys: Ed25519 key pairs in PEM files (generated, loaded,
 * or the host key made on first use), their ids, the keyring a verifier
 * trusts, and the one place that signs and checks bytes.  It never replaces
 * a key file unless told to, and never writes a private key readable by others.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "audit_int.h"
#include "durable.h"
#include "rundir.h"
#include "util.h"

#define KEY_FILE_MAX    (64 * 1024)

/* OpenSSL's reason for the last failure, and a clean error queue for the next call. */
static const char *ossl_reason(void)
{
	static __thread char buf[160];
	unsigned long e = ERR_peek_last_error();
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "unknown OpenSSL error");
	ERR_clear_error();
	return buf;
}

/* Fills k from its pkey (taking it): the raw public key and the id. */
static int key_fill(struct rb_audit_key *k, EVP_PKEY *pkey, int can_sign, char **err)
{
	size_t n = sizeof(k->raw);
	char hex[65];
	k->pkey = pkey;
	k->can_sign = can_sign;
	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_ED25519)
		return rb_fail(err, "not an Ed25519 key");
	if (EVP_PKEY_get_raw_public_key(pkey, k->raw, &n) != 1 || n != sizeof(k->raw))
		return rb_fail(err, "cannot read the public key: %s", ossl_reason());
	rb_sha256_hex(k->raw, sizeof(k->raw), hex);
	memcpy(k->id, hex, RB_AUDIT_KEY_ID_LEN);
	k->id[RB_AUDIT_KEY_ID_LEN] = 0;
	return 0;
}

static struct rb_audit_key *key_new(EVP_PKEY *pkey, int can_sign, char **err)
{
	struct rb_audit_key *k = rb_xcalloc(1, sizeof(*k));
	if (key_fill(k, pkey, can_sign, err) < 0) {
		rb_audit_key_free(k);
		return NULL;
	}
	return k;
}

void rb_audit_key_free(struct rb_audit_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

const char *rb_audit_key_id(const struct rb_audit_key *k)
{
	return k->id;
}

int rb_audit_key_can_sign(const struct rb_audit_key *k)
{
	return k->can_sign;
}

/* Never ask for a passphrase on the terminal: encrypted keys are refused. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* The file at path ("-": standard input) and its fstat, from one descriptor. */
static int read_key_file(const char *path, char **out, size_t *len, struct stat *st, char **err)
{
	int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY) : 0;
	if (fd < 0)
		return rb_fail(err, "cannot open '%s': %s", path, strerror(errno));
	struct rb_buf b;
	rb_buf_init(&b);
	int r = -1;
	if (fstat(fd, st) < 0) {
		rb_fail(err, "cannot stat '%s': %s", path, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st->st_mode)) {
		rb_fail(err, "'%s' is a directory", path);
		goto out;
	}
	char chunk[4096];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rb_fail(err, "cannot read '%s': %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (b.len + (size_t)n > KEY_FILE_MAX) {
			rb_fail(err, "%s: larger than %d bytes: not a key", path, KEY_FILE_MAX);
			goto out;
		}
		rb_buf_add(&b, chunk, (size_t)n);
	}
	*len = b.len;
	*out = rb_buf_detach(&b);
	r = 0;
out:
	if (fd != 0)
		close(fd);
	if (b.s)
		OPENSSL_cleanse(b.s, b.len);
	rb_buf_release(&b);
	return r;
}

/*
 * A private key that another user owns (who may know it, or replace it) or
 * that group or others may read is refused, as ssh refuses an unprotected
 * private key file: what it signs would prove nothing.
 */
static int private_key_safe(const char *path, const struct stat *st, char **err)
{
	if (st->st_uid != geteuid())
		return rb_fail(err, "%s: the private key is owned by uid %u, not by you (uid %u): "
			       "another user may know or replace it; refusing to use it", path,
			       (unsigned)st->st_uid, (unsigned)geteuid());
	if (st->st_mode & 077)
		return rb_fail(err, "%s: permissions %04o are too open for a private key (group or "
			       "others have access to it); refusing to use it: chmod 600 %s", path,
			       (unsigned)(st->st_mode & 07777), path);
	return 0;
}

int rb_audit_key_load(const char *path, struct rb_audit_key **out, char **err)
{
	char *text = NULL, *e = NULL;
	size_t len;
	struct stat st;
	*out = NULL;
	if (read_key_file(path, &text, &len, &st, err) < 0)
		return -1;
	int can_sign = 1;
	BIO *bio = BIO_new_mem_buf(text, (int)len);
	EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
	if (!pkey && bio) {
		ERR_clear_error();
		can_sign = 0;
		BIO_free(bio);
		bio = BIO_new_mem_buf(text, (int)len);
		pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL) : NULL;
	}
	BIO_free(bio);
	int encrypted = strstr(text, "ENCRYPTED") != NULL;
	OPENSSL_cleanse(text, len);
	free(text);
	if (pkey && can_sign && private_key_safe(path, &st, err) < 0) {
		EVP_PKEY_free(pkey);
		return -1;
	}
	if (!pkey) {
		ossl_reason();
		if (encrypted)
			return rb_fail(err, "%s: encrypted keys are not supported", path);
		return rb_fail(err, "%s: not a PEM private or public key", path);
	}
	struct rb_audit_key *k = key_new(pkey, can_sign, &e);
	if (!k) {
		rb_fail(err, "%s: %s", path, e);
		free(e);
		return -1;
	}
	*out = k;
	return 0;
}

int rb_audit_key_from_seed(const unsigned char seed[32], struct rb_audit_key **out, char **err)
{
	EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	if (!pkey)
		return rb_fail(err, "cannot make a key: %s", ossl_reason());
	*out = key_new(pkey, 1, err);
	return *out ? 0 : -1;
}

/* --- writing key files ----------------------------------------------------------- */

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
 * path gets buf whole or not at all: a temp file (created 0600, so a private
 * key is never readable by others, even for a moment), fsync, rename (without
 * replacing unless force), fsync of the directory.
 */
static int write_key_file(const char *path, const char *buf, size_t len, int mode, int force,
			  char **err)
{
	char *dir = dir_of(path);
	char *tmp = rb_xasprintf("%s/.runbook-key.XXXXXX", dir);
	int r = -1;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rb_fail(err, "cannot create a file in %s: %s", dir, strerror(errno));
		goto out;
	}
	if (fchmod(fd, (mode_t)mode) < 0 || rb_write_all(fd, buf, len) < 0 ||
	    rb_sync_fd(fd, 0) < 0) {
		rb_fail(err, "cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	int moved = force ? rename(tmp, path)
			  : renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE);
	if (moved < 0) {
		int e = errno;
		unlink(tmp);
		if (e == EEXIST)
			rb_fail(err, "%s exists; not replaced", path);
		else
			rb_fail(err, "cannot write %s: %s", path, strerror(e));
		errno = e;
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

/* The PEM text of pkey: private (PKCS#8) or public (SubjectPublicKeyInfo). */
static char *pem_of(EVP_PKEY *pkey, int private, size_t *len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	if (!bio)
		return NULL;
	int ok = private ? PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL)
			 : PEM_write_bio_PUBKEY(bio, pkey);
	char *s = NULL;
	if (ok == 1) {
		char *p;
		long n = BIO_get_mem_data(bio, &p);
		s = rb_xstrndup(p, (size_t)n);
		*len = (size_t)n;
	}
	BIO_free(bio);
	return s;
}

int rb_audit_keygen(const char *path, int force, struct rb_audit_key **out, char **err)
{
	char *pub = rb_xasprintf("%s.pub", path), *priv_pem = NULL, *pub_pem = NULL;
	struct stat st;
	size_t plen = 0, ulen = 0;
	int r = -1;
	if (out)
		*out = NULL;
	if (!force && (lstat(path, &st) == 0 || lstat(pub, &st) == 0)) {
		rb_fail(err, "%s exists; not replaced", lstat(path, &st) == 0 ? path : pub);
		errno = EEXIST;
		goto out;
	}
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!pkey) {
		rb_fail(err, "cannot generate a key: %s", ossl_reason());
		goto out;
	}
	struct rb_audit_key *k = key_new(pkey, 1, err);
	if (!k)
		goto out;
	priv_pem = pem_of(k->pkey, 1, &plen);
	pub_pem = pem_of(k->pkey, 0, &ulen);
	if (!priv_pem || !pub_pem) {
		rb_fail(err, "cannot encode the key: %s", ossl_reason());
		rb_audit_key_free(k);
		goto out;
	}
	/* The private key first: a public key can be derived again, a private one not. */
	if (write_key_file(path, priv_pem, plen, 0600, force, err) < 0 ||
	    write_key_file(pub, pub_pem, ulen, 0644, force, err) < 0) {
		rb_audit_key_free(k);
		goto out;
	}
	if (out)
		*out = k;
	else
		rb_audit_key_free(k);
	r = 0;
out:
	if (priv_pem)
		OPENSSL_cleanse(priv_pem, plen);
	free(priv_pem);
	free(pub_pem);
	free(pub);
	return r;
}

int rb_audit_key_default(const char *opt, const char *state_dir, struct rb_audit_key **out,
			 char **created, char **err)
{
	*created = NULL;
	*out = NULL;
	const char *env = getenv("RUNBOOK_AUDIT_KEY");
	const char *given = opt ? opt : env && *env ? env : NULL;
	if (given) {
		if (rb_audit_key_load(given, out, err) < 0)
			return -1;
		if (!(*out)->can_sign) {
			rb_audit_key_free(*out);
			*out = NULL;
			return rb_fail(err, "%s: a public key cannot sign (give the private key)", given);
		}
		return 0;
	}
	char *path = rb_xasprintf("%s/%s", rb_state_dir(state_dir), RB_AUDIT_HOST_KEY);
	char *dir = dir_of(path);
	int r = rb_mkdir_durable(dir, err);
	free(dir);
	if (r == 0 && access(path, F_OK) < 0 && errno == ENOENT) {
		char *e = NULL;
		/* Two runs may race to create it: the loser loads the winner's. */
		if (rb_audit_keygen(path, 0, out, &e) == 0)
			*created = rb_xstrdup(path);
		else if (access(path, F_OK) < 0)
			r = rb_fail(err, "%s", e);
		free(e);
	}
	if (r == 0 && !*out)
		r = rb_audit_key_load(path, out, err);
	if (r == 0 && !(*out)->can_sign) {
		rb_audit_key_free(*out);
		*out = NULL;
		r = rb_fail(err, "%s: not a private key", path);
	}
	if (r < 0) {
		free(*created);
		*created = NULL;
	}
	free(path);
	return r;
}

/* --- signing ------------------------------------------------------------------ */

int rb_audit_sign_bytes(const struct rb_audit_key *k, EVP_MD_CTX *ctx, const void *msg,
			size_t len, unsigned char sig[SIG_LEN])
{
	size_t n = SIG_LEN;
	/* Reset: OpenSSL 3.0 does not re-initialise a used context for another key. */
	EVP_MD_CTX_reset(ctx);
	if (!k->can_sign || EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->pkey) != 1 ||
	    EVP_DigestSign(ctx, sig, &n, msg, len) != 1 || n != SIG_LEN) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

int rb_audit_sign_setup(const struct rb_audit_key *k, EVP_MD_CTX *tmpl)
{
	EVP_MD_CTX_reset(tmpl);
	if (!k->can_sign || EVP_DigestSignInit(tmpl, NULL, NULL, NULL, k->pkey) != 1) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

int rb_audit_sign_copy(EVP_MD_CTX *tmpl, EVP_MD_CTX *ctx, const void *msg, size_t len,
		       unsigned char sig[SIG_LEN])
{
	size_t n = SIG_LEN;
	/* Ed25519 is one-shot: each signature gets a copy of the context set up once. */
	if (EVP_MD_CTX_copy_ex(ctx, tmpl) != 1 || EVP_DigestSign(ctx, sig, &n, msg, len) != 1 ||
	    n != SIG_LEN) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

int rb_audit_check_bytes(const struct rb_audit_key *k, EVP_MD_CTX *ctx, const void *msg,
			 size_t len, const unsigned char sig[SIG_LEN])
{
	EVP_MD_CTX_reset(ctx);
	int ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
		 EVP_DigestVerify(ctx, sig, SIG_LEN, msg, len) == 1;
	if (!ok)
		ERR_clear_error();
	return ok;
}

/* --- signed documents --------------------------------------------------------- */

/* ,"sig":"<88 characters>"} closes a signed document. */
#define DOC_SIG_OPEN    ",\"sig\":\""
#define DOC_SIG_TAIL    (sizeof(DOC_SIG_OPEN) - 1 + SIG_B64_LEN + 2)

/* len without a final newline; 1 if there was one. */
static int chomp(const char *text, size_t *len)
{
	int nl = *len > 0 && text[*len - 1] == '\n';
	*len -= (size_t)nl;
	return nl;
}

char *rb_audit_sign_doc(const struct rb_audit_key *k, const char *text, size_t len,
			size_t *outlen, char **err)
{
	int nl = chomp(text, &len);
	unsigned char sig[SIG_LEN];
	char b64[SIG_B64_LEN + 1];
	if (len < 3 || text[0] != '{' || text[len - 1] != '}') {
		rb_fail(err, "not a JSON object with members to sign");
		return NULL;
	}
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && rb_audit_sign_bytes(k, ctx, text, len, sig) == 0;
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		rb_fail(err, "cannot sign with key %s", k->id);
		return NULL;
	}
	rb_audit_b64(sig, SIG_LEN, b64);
	char *out = rb_xasprintf("%.*s" DOC_SIG_OPEN "%s\"}%s", (int)(len - 1), text, b64,
				 nl ? "\n" : "");
	*outlen = strlen(out);
	return out;
}

int rb_audit_check_doc(const char *text, size_t len, const char *key_id,
		       const struct rb_audit_keyring *kr, char *why, size_t whysize)
{
	chomp(text, &len);
	const struct rb_audit_key *k = key_id ? rb_audit_keyring_find(kr, key_id) : NULL;
	unsigned char sig[SIG_LEN];
	char b64[SIG_B64_LEN + 1] = "";
	if (len > DOC_SIG_TAIL + 1)
		memcpy(b64, text + len - 2 - SIG_B64_LEN, SIG_B64_LEN);
	if (len <= DOC_SIG_TAIL + 1 || text[len - 1] != '}' || text[len - 2] != '"' ||
	    memcmp(text + len - DOC_SIG_TAIL, DOC_SIG_OPEN, sizeof(DOC_SIG_OPEN) - 1) ||
	    rb_audit_sig_decode(b64, SIG_B64_LEN, sig) < 0) {
		snprintf(why, whysize, "not signed (no \"sig\" member at its end)");
		return -1;
	}
	if (!k) {
		snprintf(why, whysize, "signed by key %s, which is not in the keyring",
			 key_id ? key_id : "(none named)");
		return -1;
	}
	/* The signed bytes: the text up to the "sig" member, and the closing brace. */
	size_t n = len - DOC_SIG_TAIL;
	char *msg = rb_xmalloc(n + 1);
	memcpy(msg, text, n);
	msg[n] = '}';
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && rb_audit_check_bytes(k, ctx, msg, n + 1, sig);
	EVP_MD_CTX_free(ctx);
	free(msg);
	if (!ok) {
		snprintf(why, whysize, "the signature does not verify with key %s", k->id);
		return -1;
	}
	return 0;
}

void rb_audit_checker_init(struct rb_audit_checker *c)
{
	c->key = NULL;
	c->tmpl = EVP_MD_CTX_new();
	c->ctx = EVP_MD_CTX_new();
}

void rb_audit_checker_release(struct rb_audit_checker *c)
{
	EVP_MD_CTX_free(c->tmpl);
	EVP_MD_CTX_free(c->ctx);
	c->tmpl = c->ctx = NULL;
	c->key = NULL;
}

int rb_audit_checker_check(struct rb_audit_checker *c, const struct rb_audit_key *k,
			   const void *msg, size_t len, const unsigned char sig[SIG_LEN])
{
	if (!c->tmpl || !c->ctx)
		return 0;
	if (c->key != k) {
		c->key = NULL;
		EVP_MD_CTX_reset(c->tmpl);
		if (EVP_DigestVerifyInit(c->tmpl, NULL, NULL, NULL, k->pkey) != 1) {
			ERR_clear_error();
			return 0;
		}
		c->key = k;
	}
	/* Ed25519 is one-shot: a context verifies once, so each check gets a copy. */
	int ok = EVP_MD_CTX_copy_ex(c->ctx, c->tmpl) == 1 &&
		 EVP_DigestVerify(c->ctx, sig, SIG_LEN, msg, len) == 1;
	if (!ok)
		ERR_clear_error();
	return ok;
}

/* --- keyrings ------------------------------------------------------------------- */

struct ring_key {
	struct rb_audit_key key;        /* public only */
	char *name;
};

struct rb_audit_keyring {
	struct ring_key *v;
	size_t n, cap;
};

struct rb_audit_keyring *rb_audit_keyring_new(void)
{
	return rb_xcalloc(1, sizeof(struct rb_audit_keyring));
}

void rb_audit_keyring_free(struct rb_audit_keyring *kr)
{
	if (!kr)
		return;
	for (size_t i = 0; i < kr->n; i++) {
		EVP_PKEY_free(kr->v[i].key.pkey);
		free(kr->v[i].name);
	}
	free(kr->v);
	free(kr);
}

size_t rb_audit_keyring_count(const struct rb_audit_keyring *kr)
{
	return kr->n;
}

const char *rb_audit_keyring_id(const struct rb_audit_keyring *kr, size_t i)
{
	return i < kr->n ? kr->v[i].key.id : NULL;
}

const struct rb_audit_key *rb_audit_keyring_find(const struct rb_audit_keyring *kr,
						  const char *id)
{
	for (size_t i = 0; kr && i < kr->n; i++)
		if (!strcmp(kr->v[i].key.id, id))
			return &kr->v[i].key;
	return NULL;
}

int rb_audit_keyring_add(struct rb_audit_keyring *kr, const struct rb_audit_key *k,
			 const char *name, char **err)
{
	for (size_t i = 0; i < kr->n; i++) {
		if (!memcmp(kr->v[i].key.raw, k->raw, sizeof(k->raw)))
			return 0;
		if (!strcmp(kr->v[i].key.id, k->id))
			return rb_fail(err, "%s and %s are different keys with the same id %s",
				    kr->v[i].name, name, k->id);
	}
	/* Only the public half: a keyring never holds what could sign. */
	EVP_PKEY *pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, k->raw,
						    sizeof(k->raw));
	if (!pub)
		return rb_fail(err, "%s: %s", name, ossl_reason());
	rb_grow(&kr->v, &kr->cap, kr->n + 1, sizeof(*kr->v));
	struct ring_key *rk = &kr->v[kr->n];
	memset(rk, 0, sizeof(*rk));
	if (key_fill(&rk->key, pub, 0, err) < 0) {
		EVP_PKEY_free(pub);
		return -1;
	}
	rk->name = rb_xstrdup(name);
	kr->n++;
	return 0;
}

static int add_file(struct rb_audit_keyring *kr, const char *path, char **err)
{
	struct rb_audit_key *k;
	if (rb_audit_key_load(path, &k, err) < 0)
		return -1;
	int r = rb_audit_keyring_add(kr, k, path, err);
	rb_audit_key_free(k);
	return r;
}

static int key_name(const struct dirent *d)
{
	size_t n = strlen(d->d_name);
	if (d->d_name[0] == '.' || n < 5)
		return 0;
	return !strcmp(d->d_name + n - 4, ".pem") || !strcmp(d->d_name + n - 4, ".pub");
}

int rb_audit_keyring_load(const char *path, struct rb_audit_keyring **out, char **err)
{
	struct stat st;
	*out = NULL;
	if (stat(path, &st) < 0)
		return rb_fail(err, "cannot read keyring %s: %s", path, strerror(errno));
	struct rb_audit_keyring *kr = rb_audit_keyring_new();
	if (!S_ISDIR(st.st_mode)) {
		if (add_file(kr, path, err) < 0) {
			rb_audit_keyring_free(kr);
			return -1;
		}
		*out = kr;
		return 0;
	}
	struct dirent **names;
	int n = scandir(path, &names, key_name, alphasort);
	if (n < 0) {
		rb_audit_keyring_free(kr);
		return rb_fail(err, "cannot read keyring %s: %s", path, strerror(errno));
	}
	int r = 0;
	for (int i = 0; i < n; i++) {
		char *file = rb_xasprintf("%s/%s", path, names[i]->d_name);
		if (r == 0)
			r = add_file(kr, file, err);
		free(file);
		free(names[i]);
	}
	free(names);
	if (r == 0 && kr->n == 0)
		r = rb_fail(err, "keyring %s holds no key (*.pem or *.pub files)", path);
	if (r < 0) {
		rb_audit_keyring_free(kr);
		return -1;
	}
	*out = kr;
	return 0;
}

int rb_audit_key_hmac_key(const struct rb_audit_key *k, unsigned char out[32])
{
	static const char label[] = "runbook secret hmac v1";
	unsigned char seed[32];
	size_t n = sizeof(seed);
	if (!k->can_sign || EVP_PKEY_get_raw_private_key(k->pkey, seed, &n) != 1 || n != 32)
		return -1;
	unsigned char buf[sizeof(label) + 32];
	memcpy(buf, label, sizeof(label));      /* with its NUL: the label ends there */
	memcpy(buf + sizeof(label), seed, 32);
	int r = EVP_Digest(buf, sizeof(buf), out, NULL, EVP_sha256(), NULL) == 1 ? 0 : -1;
	OPENSSL_cleanse(seed, sizeof(seed));
	OPENSSL_cleanse(buf, sizeof(buf));
	return r;
}
