/*
 * TLS client sessions over non-blocking sockets (tls.h), on OpenSSL.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"
#include "util.h"

struct rb_tls {
	SSL_CTX *ctx;
	SSL *ssl;
};

/* OpenSSL's reason for the last error, its queue cleared. */
static char *reason(const char *doing)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	char *msg = rb_xasprintf("%s: %s", doing, r ? r : e ? "OpenSSL error" : "unknown error");
	ERR_clear_error();
	return msg;
}

/* 0 when path can be opened for reading, else -1 with *err naming it and why. */
static int readable(const char *what, const char *path, char **err)
{
	FILE *f = fopen(path, "r");
	if (f) {
		fclose(f);
		return 0;
	}
	*err = rb_xasprintf("%s %s: %s", what, path, strerror(errno));
	return -1;
}

int rb_tls_is_address(const char *s)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

struct rb_tls *rb_tls_new(int fd, const struct rb_tls_opts *o, char **err)
{
	if ((o->ca_file && !o->insecure && readable("ca_file", o->ca_file, err) < 0) ||
	    (o->cert_file && readable("client_cert", o->cert_file, err) < 0) ||
	    (o->key_file && readable("client_key", o->key_file, err) < 0))
		return NULL;
	struct rb_tls *t = rb_xcalloc(1, sizeof(*t));
	ERR_clear_error();
	if (!(t->ctx = SSL_CTX_new(TLS_client_method()))) {
		*err = reason("cannot set up TLS");
		goto fail;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(t->ctx, o->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
	if (!o->insecure && (o->ca_file ? SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL)
			     : SSL_CTX_set_default_verify_paths(t->ctx)) != 1) {
		*err = o->ca_file ? reason("ca_file: cannot read the CAs")
		       : reason("cannot read the system's CAs");
		goto fail;
	}
	if (o->cert_file && SSL_CTX_use_certificate_chain_file(t->ctx, o->cert_file) != 1) {
		*err = reason("client_cert: cannot read the certificate");
		goto fail;
	}
	if (o->key_file && (SSL_CTX_use_PrivateKey_file(t->ctx, o->key_file, SSL_FILETYPE_PEM) != 1
			    || SSL_CTX_check_private_key(t->ctx) != 1)) {
		*err = reason("client_key: cannot use the key");
		goto fail;
	}
	if (!(t->ssl = SSL_new(t->ctx)) || SSL_set_fd(t->ssl, fd) != 1) {
		*err = reason("cannot set up TLS");
		goto fail;
	}
	/* A write cut short is retried from a buffer that may have moved (hiredis's grows). */
	SSL_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* SNI takes names only; SSL_set1_host checks an address against the IP SANs. */
	if (!rb_tls_is_address(o->name))
		SSL_set_tlsext_host_name(t->ssl, o->name);
	if (!o->insecure && SSL_set1_host(t->ssl, o->name) != 1) {
		*err = reason("cannot set the name to verify");
		goto fail;
	}
	return t;
fail:
	rb_tls_free(t);
	return NULL;
}

void rb_tls_free(struct rb_tls *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	SSL_CTX_free(t->ctx);
	free(t);
}

/*
 * What an SSL call's result r means: 1 it moved, 0 wait for *events, -1 with *err.
 * A clean close from the server (close_notify) is the end of the stream.
 */
static int outcome(struct rb_tls *t, int r, short *events, char **err, const char *doing)
{
	int e = SSL_get_error(t->ssl, r);
	switch (e) {
	case SSL_ERROR_NONE:
		return 1;
	case SSL_ERROR_WANT_READ:
		*events = POLLIN;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		*events = POLLOUT;
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		*err = rb_xstrdup("the server closed the connection");
		return -1;
	case SSL_ERROR_SYSCALL:
		if (!ERR_peek_last_error()) {
			*err = rb_xasprintf("%s: %s", doing, errno ? strerror(errno)
					    : "the server closed the connection");
			return -1;
		}
		break;
	}
	long v = SSL_get_verify_result(t->ssl);
	if (v != X509_V_OK && !SSL_is_init_finished(t->ssl)) {
		ERR_clear_error();
		*err = rb_xasprintf("%s: the server's certificate: %s", doing,
				    X509_verify_cert_error_string(v));
		return -1;
	}
	/* An alert from the server: it ended the connection, and says why. */
	unsigned long last = ERR_peek_last_error();
	if (ERR_GET_LIB(last) == ERR_LIB_SSL && ERR_GET_REASON(last) >= SSL_AD_REASON_OFFSET)
		doing = "the server closed the connection";
	*err = reason(doing);
	return -1;
}

int rb_tls_handshake(struct rb_tls *t, short *events, char **err)
{
	ERR_clear_error();
	errno = 0;
	int r = SSL_connect(t->ssl);
	if (r == 1)
		return 1;
	return outcome(t, r, events, err, "the TLS handshake failed") < 0 ? -1 : 0;
}

ssize_t rb_tls_read(struct rb_tls *t, void *buf, size_t n, short *events, char **err)
{
	size_t got = 0;
	*err = NULL;
	ERR_clear_error();
	errno = 0;
	int r = SSL_read_ex(t->ssl, buf, n, &got);
	if (r == 1)
		return (ssize_t)got;
	if (SSL_get_error(t->ssl, r) == SSL_ERROR_ZERO_RETURN)
		return 0;
	outcome(t, r, events, err, "reading");
	return -1;
}

ssize_t rb_tls_write(struct rb_tls *t, const void *buf, size_t n, short *events, char **err)
{
	size_t put = 0;
	*err = NULL;
	ERR_clear_error();
	errno = 0;
	int r = SSL_write_ex(t->ssl, buf, n, &put);
	if (r == 1)
		return (ssize_t)put;
	int was = errno;
	if (outcome(t, r, events, err, "writing") < 0 && (was == ECONNRESET || was == EPIPE)) {
		/*
		 * The server closed on an alert it sent first (TLS 1.3: a client
		 * certificate refused after the client's handshake was over): its
		 * reason says more than the reset.
		 */
		char b[256];
		size_t got;
		char *why = NULL;
		ERR_clear_error();
		r = SSL_read_ex(t->ssl, b, sizeof(b), &got);
		if (r != 1 && SSL_get_error(t->ssl, r) == SSL_ERROR_SSL &&
		    outcome(t, r, events, &why, "reading") < 0) {
			free(*err);
			*err = why;
		}
	}
	return -1;
}

int rb_tls_pending(const struct rb_tls *t)
{
	return SSL_pending(t->ssl);
}
