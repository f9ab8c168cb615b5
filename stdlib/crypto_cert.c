/*
 * crypto.cert_info: the facts of a certificate (names, dates, days left,
 * fingerprints), from a PEM file or from a live TLS server.  A live read runs
 * on a worker thread: the name lookup may block there, and the connect and the
 * handshake wait in poll() on the socket and on the cancel's eventfd, so a
 * cancel or the deadline stops them at once.  It never changes anything, so
 * `--dry-run --probe` and a `check:` may use it.
 *
 * The chain is verified (against ca_file or the system's CAs, and the name),
 * but a certificate that does not verify is read all the same: that it has
 * expired, or whom it was issued to, is what a runbook asks about it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "action.h"
#include "crypto.h"
#include "tls.h"
#include "types.h"
#include "util.h"

/* A live read's connect and handshake when timeout is not given. */
#define CERT_TIMEOUT_MS 10000

static const struct rb_arg cert_args[] = {
	{"file", RB_T_STRING, 0, NULL, "a PEM file: its first certificate is read (those after "
	 "it are its chain, for ca_file); or host"},
	{"host", RB_T_STRING, 0, NULL, "a TLS server's name or address: the certificate it "
	 "presents is read; or file"},
	{"port", RB_T_INTEGER, 0, NULL, "the server's port (default 443)"},
	{"server_name", RB_T_STRING, 0, NULL, "the name sent for SNI and verified (default: "
	 "host)"},
	{"ca_file", RB_T_STRING, 0, NULL, "PEM file of the CAs to verify against (host: instead "
	 "of the system's; file: verified only with it)"},
	{"timeout", RB_T_DURATION, 0, NULL, "host: the connect and the handshake (default 10s; "
	 "the step's timeout bounds it too)"},
	{NULL, 0, 0, NULL, NULL},
};

static int cert_check(const json_t *args, const json_t *later, struct rb_arg_error *e)
{
	(void)later;        /* what is known only later is checked then */
	static const char *const strings[] = {"file", "host", "server_name", "ca_file",
					      "timeout", NULL};
	for (const char *const *s = strings; *s; s++)
		if (rb_crypto_arg_type(args, *s, JSON_STRING, e) < 0)
			return -1;
	if (rb_crypto_arg_type(args, "port", JSON_INTEGER, e) < 0)
		return -1;
	int file = json_object_get(args, "file") != NULL;
	if (file && json_object_get(args, "host"))
		return rb_crypto_arg_error(e, "host", rb_xstrdup("give file or host, not both"));
	json_t *port = json_object_get(args, "port");
	if (port && (json_integer_value(port) < 1 || json_integer_value(port) > 65535))
		return rb_crypto_arg_error(e, "port", rb_xstrdup("expected 1 to 65535"));
	static const char *const live_only[] = {"port", "server_name", "timeout", NULL};
	for (const char *const *s = live_only; file && *s; s++)
		if (json_object_get(args, *s))
			return rb_crypto_arg_error(e, *s, rb_xstrdup("is for a live read (host), "
								     "not a file"));
	const char *t = rb_arg_str(args, "timeout"), *why;
	int64_t ms;
	if (t && rb_duration_parse(t, &ms, &why) < 0)
		return rb_crypto_arg_error(e, "timeout", rb_xstrdup(why));
	if (t && ms <= 0)
		return rb_crypto_arg_error(e, "timeout", rb_xstrdup("must be more than 0s"));
	return 0;
}

static long port_of(const json_t *args)
{
	json_t *p = json_object_get(args, "port");
	return p ? (long)json_integer_value(p) : 443;
}

static enum rb_effect cert_effect(const json_t *args, const json_t *later, char **what)
{
	(void)later;
	if (rb_arg_str(args, "host"))
		*what = rb_xasprintf("reads the certificate of %s:%ld", rb_arg_str(args, "host"),
				     port_of(args));
	else if (rb_arg_str(args, "file"))
		*what = rb_xasprintf("reads the certificate in %s", rb_arg_str(args, "file"));
	return RB_EFFECT_READS;
}

/* --- a certificate's facts ----------------------------------------------------------------- */

/* Text from a certificate as a JSON string: bytes that are not UTF-8 become U+FFFD. */
static json_t *text_json(const char *s, size_t n)
{
	size_t m;
	char *clean = rb_utf8_lossy(s, n, &m);
	json_t *j = json_stringn(clean, m);
	free(clean);
	return j;
}

/* A name as RFC 2253 writes it ("CN=api.example.com,O=Example"), in UTF-8. */
static json_t *name_json(const X509_NAME *name)
{
	BIO *b = BIO_new(BIO_s_mem());
	json_t *j = NULL;
	if (b && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
		char *p;
		long n = BIO_get_mem_data(b, &p);
		j = text_json(p, (size_t)n);
	}
	BIO_free(b);
	return j ? j : json_string("");
}

static json_t *common_name(const X509_NAME *name)
{
	int k = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	unsigned char *u = NULL;
	int n = k < 0 ? -1 : ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(
							   X509_NAME_get_entry(name, k)));
	json_t *j = n < 0 ? json_null() : text_json((const char *)u, (size_t)n);
	OPENSSL_free(u);
	return j;
}

/* The subject's alternative names: DNS names, addresses, e-mails and URIs, as text. */
static json_t *sans_json(X509 *x)
{
	json_t *list = json_array();
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (int k = 0; gens && k < sk_GENERAL_NAME_num(gens); k++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);
		const ASN1_STRING *s = NULL;
		char ip[INET6_ADDRSTRLEN];
		switch (g->type) {
		case GEN_DNS:
			s = g->d.dNSName;
			break;
		case GEN_EMAIL:
			s = g->d.rfc822Name;
			break;
		case GEN_URI:
			s = g->d.uniformResourceIdentifier;
			break;
		case GEN_IPADD: {
			int n = ASN1_STRING_length(g->d.iPAddress);
			if ((n == 4 || n == 16) &&
			    inet_ntop(n == 4 ? AF_INET : AF_INET6,
				      ASN1_STRING_get0_data(g->d.iPAddress), ip, sizeof(ip)))
				json_array_append_new(list, json_string(ip));
			break;
		}
		default:
			break;
		}
		if (s)
			json_array_append_new(list, text_json(
				(const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s)));
	}
	GENERAL_NAMES_free(gens);
	return list;
}

/* An ASN.1 time as ISO 8601 in UTC, and as seconds since the epoch in *t. */
static json_t *time_json(const ASN1_TIME *a, time_t *t)
{
	struct tm tm;
	char iso[32];
	if (!a || ASN1_TIME_to_tm(a, &tm) != 1)
		return json_null();
	*t = timegm(&tm);
	strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(iso);
}

static json_t *cert_facts(X509 *x)
{
	json_t *out = json_object();
	json_object_set_new(out, "subject", name_json(X509_get_subject_name(x)));
	json_object_set_new(out, "common_name", common_name(X509_get_subject_name(x)));
	json_object_set_new(out, "issuer", name_json(X509_get_issuer_name(x)));
	json_object_set_new(out, "sans", sans_json(x));
	time_t nb = 0, na = 0;
	json_object_set_new(out, "not_before", time_json(X509_get0_notBefore(x), &nb));
	json_t *after = time_json(X509_get0_notAfter(x), &na);
	json_object_set_new(out, "not_after", after);
	if (json_is_string(after))
		json_object_set_new(out, "days_left", json_integer(
			(json_int_t)floor(difftime(na, time(NULL)) / 86400.0)));
	time_t now = time(NULL);
	json_object_set_new(out, "expired", json_boolean(json_is_string(after) && na < now));
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;
	json_object_set_new(out, "serial", hex ? json_string(hex) : json_null());
	OPENSSL_free(hex);
	BN_free(bn);
	unsigned char md[32];
	unsigned int n = 0;
	char fp[65];
	if (X509_digest(x, EVP_sha256(), md, &n) == 1) {
		rb_hex(md, sizeof(md), fp);
		json_object_set_new(out, "fingerprint", json_string(fp));
	}
	const char *sig = OBJ_nid2ln(X509_get_signature_nid(x));
	json_object_set_new(out, "signature_algorithm", sig ? json_string(sig) : json_null());
	json_object_set_new(out, "is_ca", json_boolean(X509_check_ca(x) != 0));
	json_object_set_new(out, "self_signed", json_boolean(X509_self_signed(x, 1) == 1));
	EVP_PKEY *pkey = X509_get0_pubkey(x);
	json_t *pk = json_object();
	if (pkey && rb_crypto_key_facts(pkey, pk) == 0)
		json_object_set_new(out, "public_key", pk);
	else
		json_decref(pk);
	ERR_clear_error();
	return out;
}

/* --- from a file --------------------------------------------------------------------------- */

/* Verify leaf with the certificates after it in the file as its chain, against ca_file. */
static void verify_file(X509 *leaf, STACK_OF(X509) *chain, const char *ca_file, json_t *out,
			char **err)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	char why[160];
	if (!store || !ctx || X509_STORE_load_file(store, ca_file) != 1) {
		*err = rb_xasprintf("ca_file %s: cannot read the CAs: %s", ca_file,
				    rb_crypto_reason(why, sizeof(why)));
	} else if (X509_STORE_CTX_init(ctx, store, leaf, chain) != 1) {
		*err = rb_xasprintf("cannot verify: %s", rb_crypto_reason(why, sizeof(why)));
	} else {
		int ok = X509_verify_cert(ctx) == 1;
		json_object_set_new(out, "verified", json_boolean(ok));
		json_object_set_new(out, "verify_error", ok ? json_null() : json_string(
			X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx))));
	}
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	ERR_clear_error();
}

static int from_file(const struct rb_call *c, struct rb_result *res)
{
	const char *path = rb_arg_str(c->args, "file"), *ca = rb_arg_str(c->args, "ca_file");
	char *pem = NULL, *err = NULL;
	size_t len = 0;
	if (rb_crypto_read(path, &pem, &len, &err) < 0) {
		res->outcome = RB_FAILED;
		res->error = err;
		return -1;
	}
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *leaf = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	STACK_OF(X509) *chain = sk_X509_new_null();
	for (X509 *more; leaf && b && (more = PEM_read_bio_X509(b, NULL, NULL, NULL));)
		sk_X509_push(chain, more);
	BIO_free(b);
	OPENSSL_clear_free(pem, len + 1);
	int r = -1;
	if (!leaf) {
		char why[160];
		res->outcome = RB_FAILED;
		res->error = rb_xasprintf("%s: no certificate in PEM: %s", path,
					  rb_crypto_reason(why, sizeof(why)));
		goto out;
	}
	ERR_clear_error();      /* the end of the file, after the last certificate */
	res->output = cert_facts(leaf);
	json_object_set_new(res->output, "file", json_string(path));
	if (ca)
		verify_file(leaf, chain, ca, res->output, &err);
	if (err) {
		res->outcome = RB_FAILED;
		res->error = err;
		goto out;
	}
	r = 0;
out:
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	return r;
}

/* --- from a live server -------------------------------------------------------------------- */

/* Why a live read stopped: 0 when it did not. */
enum halt { GOING, CANCELLED, TIMED_OUT };

/* Wait until fd is ready for events, a cancel or the deadline. */
static enum halt wait_fd(const struct rb_call *c, int fd, short events, int64_t deadline)
{
	for (;;) {
		if (rb_cancelled(c->cancel))
			return CANCELLED;
		int64_t left = deadline - rb_now_ms();
		if (left <= 0)
			return TIMED_OUT;
		struct pollfd p[2] = {{fd, events, 0}, {c->cancel->fd, POLLIN, 0}};
		int nfds = c->cancel->fd >= 0 ? 2 : 1;
		/* Without an eventfd the level is read every 50 ms. */
		int ms = nfds == 1 && left > 50 ? 50 : left > 60000 ? 60000 : (int)left;
		int n = poll(p, (nfds_t)nfds, ms);
		if (n < 0 && errno != EINTR)
			return GOING;   /* the next call on fd says what is wrong */
		if (n > 0 && p[0].revents)
			return GOING;
	}
}

struct live {
	const struct rb_call *c;
	const char *host;
	long port;
	int64_t deadline;
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	char where[300];        /* host:port, for messages */
};

static int halted(struct live *l, enum halt h, const char *doing, struct rb_result *res)
{
	res->outcome = h == CANCELLED ? RB_CANCELLED : RB_TIMED_OUT;
	res->error = rb_xasprintf("%s: %s while %s", l->where,
				  h == CANCELLED ? "cancelled" : "timed out", doing);
	return -1;
}

/* A TCP connection to one of the host's addresses, in l->fd; -1 with res filled in. */
static int connect_to(struct live *l, struct rb_result *res)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ais = NULL;
	char port[16];
	snprintf(port, sizeof(port), "%ld", l->port);
	int rc = getaddrinfo(l->host, port, &hints, &ais);
	if (rc != 0) {
		res->outcome = RB_FAILED;
		res->error = rb_xasprintf("%s: cannot resolve the host: %s", l->where,
					  rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	int last = ECONNREFUSED;
	for (struct addrinfo *ai = ais; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			last = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			last = errno;
			close(fd);
			continue;
		}
		enum halt h = wait_fd(l->c, fd, POLLOUT, l->deadline);
		if (h != GOING) {
			close(fd);
			freeaddrinfo(ais);
			return halted(l, h, "connecting", res);
		}
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr) {
			last = soerr;
			close(fd);
			continue;
		}
		l->fd = fd;
		freeaddrinfo(ais);
		return 0;
	}
	freeaddrinfo(ais);
	res->outcome = RB_FAILED;
	res->error = rb_xasprintf("%s: cannot connect: %s", l->where, strerror(last));
	return -1;
}

/* The TLS handshake on l->fd, verifying as it goes but going on when it does not verify. */
static int handshake(struct live *l, struct rb_result *res)
{
	const json_t *a = l->c->args;
	const char *ca = rb_arg_str(a, "ca_file"), *name = rb_arg_str(a, "server_name");
	char why[160];
	if (!name)
		name = l->host;
	if (!(l->ctx = SSL_CTX_new(TLS_client_method())) ||
	    !(l->ssl = SSL_new(l->ctx))) {
		res->outcome = RB_BROKEN;
		res->error = rb_xasprintf("cannot set up TLS: %s",
					  rb_crypto_reason(why, sizeof(why)));
		return -1;
	}
	/* Verified, with the result kept, not enforced: a bad certificate is read too. */
	SSL_CTX_set_verify(l->ctx, SSL_VERIFY_NONE, NULL);
	if (ca ? SSL_CTX_load_verify_locations(l->ctx, ca, NULL) != 1
	    : SSL_CTX_set_default_verify_paths(l->ctx) != 1) {
		res->outcome = RB_FAILED;
		res->error = rb_xasprintf("ca_file %s: cannot read the CAs: %s",
					  ca ? ca : "(the system's)", rb_crypto_reason(why, sizeof(why)));
		return -1;
	}
	SSL_set_fd(l->ssl, l->fd);
	/* SNI takes names only; SSL_set1_host checks an address against the IP SANs. */
	if (!rb_tls_is_address(name))
		SSL_set_tlsext_host_name(l->ssl, name);
	SSL_set1_host(l->ssl, name);
	for (;;) {
		ERR_clear_error();
		int r = SSL_connect(l->ssl);
		if (r == 1)
			return 0;
		int e = SSL_get_error(l->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			short ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
			enum halt h = wait_fd(l->c, l->fd, ev, l->deadline);
			if (h != GOING)
				return halted(l, h, "waiting for the TLS handshake", res);
			continue;
		}
		res->outcome = RB_FAILED;
		if (e == SSL_ERROR_SYSCALL && !ERR_peek_last_error())
			res->error = rb_xasprintf("%s: the TLS handshake failed: %s", l->where,
						  errno ? strerror(errno)
						  : "the server closed the connection");
		else
			res->error = rb_xasprintf("%s: the TLS handshake failed: %s", l->where,
						  rb_crypto_reason(why, sizeof(why)));
		return -1;
	}
}

static int from_host(const struct rb_call *c, struct rb_result *res)
{
	struct live l = {.c = c, .host = rb_arg_str(c->args, "host"), .port = port_of(c->args),
			 .deadline = rb_crypto_deadline(c, CERT_TIMEOUT_MS), .fd = -1};
	snprintf(l.where, sizeof(l.where), strchr(l.host, ':') ? "[%.256s]:%ld" : "%.256s:%ld",
		 l.host, l.port);
	int r = -1;
	if (connect_to(&l, res) < 0 || handshake(&l, res) < 0)
		goto out;
	X509 *x = SSL_get1_peer_certificate(l.ssl);
	if (!x) {
		res->outcome = RB_FAILED;
		res->error = rb_xasprintf("%s: the server presented no certificate", l.where);
		goto out;
	}
	res->output = cert_facts(x);
	X509_free(x);
	long v = SSL_get_verify_result(l.ssl);
	json_object_set_new(res->output, "host", json_string(l.host));
	json_object_set_new(res->output, "port", json_integer(l.port));
	json_object_set_new(res->output, "protocol", json_string(SSL_get_version(l.ssl)));
	json_object_set_new(res->output, "verified", json_boolean(v == X509_V_OK));
	json_object_set_new(res->output, "verify_error", v == X509_V_OK ? json_null()
			    : json_string(X509_verify_cert_error_string(v)));
	SSL_shutdown(l.ssl);    /* a close_notify if it goes out at once; not waited for */
	r = 0;
out:
	SSL_free(l.ssl);
	SSL_CTX_free(l.ctx);
	if (l.fd >= 0)
		close(l.fd);
	ERR_clear_error();
	return r;
}

static int cert_run(const struct rb_call *c, struct rb_result *res)
{
	ERR_clear_error();
	if (rb_arg_str(c->args, "file"))
		return from_file(c, res);
	if (rb_arg_str(c->args, "host"))
		return from_host(c, res);
	res->outcome = RB_BROKEN;
	res->error = rb_xstrdup("give file or host: where the certificate is");
	return -1;
}

static const struct rb_output cert_outputs[] = {
	{"subject", "the subject as RFC 2253 writes it (CN=api.example.com,O=Example)"},
	{"common_name", "the subject's CN, or nil"},
	{"issuer", "the issuer, the same way"},
	{"sans", "the subject alternative names: DNS names, IP addresses, e-mails and URIs"},
	{"not_before", "the start of its validity, ISO 8601 in UTC"},
	{"not_after", "its end, ISO 8601 in UTC"},
	{"days_left", "whole days until not_after (negative once expired)"},
	{"expired", "whether not_after has passed"},
	{"serial", "the serial number in hex"},
	{"fingerprint", "the SHA-256 of its DER, 64 hex digits (`openssl x509 -fingerprint "
	 "-sha256` writes them in upper case, with colons)"},
	{"signature_algorithm", "sha256WithRSAEncryption, ecdsa-with-SHA256, ED25519, ..."},
	{"is_ca", "whether it may sign certificates"},
	{"self_signed", "whether it is signed by its own key"},
	{"public_key", "its key: key_type, bits, curve, fingerprint and fingerprint_base64 as "
	 "crypto.fingerprint gives them"},
	{"verified", "host, or file with ca_file: whether the chain verifies (for host, with "
	 "the name)"},
	{"verify_error", "why it does not (\"certificate has expired\"), or nil"},
	{"host", "host: the server's name or address"},
	{"port", "host: its port"},
	{"protocol", "host: the TLS version spoken (TLSv1.3)"},
	{"file", "file: the file"},
	{NULL, NULL},
};

const struct rb_action act_crypto_cert_info = {
	.name = "crypto.cert_info",
	.summary = "read a certificate, from a PEM file or a TLS server: its names, dates, "
		   "days left and fingerprints",
	.args = cert_args,
	.outputs = cert_outputs,
	.example = "- id: api_cert\n"
		   "  action: crypto.cert_info\n"
		   "  with: {host: api.example.com, port: 443, timeout: 5s}\n"
		   "- id: cert_not_expiring\n"
		   "  needs: [api_cert]\n"
		   "  action: assert\n"
		   "  with:\n"
		   "    that: ${{ steps.api_cert.output.verified and "
		   "steps.api_cert.output.days_left > 14 }}\n"
		   "    message: the API's certificate does not verify or expires within 14 days\n",
	.check = cert_check,
	.effect = cert_effect,
	.run = cert_run,
};
