/*
 * A TLS client session (OpenSSL) over a connected, non-blocking socket, for
 * an action stepped in the engine's poll loop: each call does what the socket
 * lets it do now and says what to wait for.  The server's certificate is
 * verified (the system's CAs, or ca_file) against the name it was asked for,
 * unless insecure; a client certificate is sent when given.
 */
#ifndef RB_TLS_H
#define RB_TLS_H

#include <sys/types.h>

struct rb_tls_opts {
	const char *name;               /* the host asked for: SNI and the name verified */
	const char *ca_file;            /* PEM CAs instead of the system's, or NULL */
	const char *cert_file;          /* client certificate (PEM), or NULL */
	const char *key_file;           /* its private key (PEM) */
	int insecure;                   /* do not verify the server's certificate */
};

struct rb_tls;

/* A session on fd (which stays the caller's); NULL with *err (the files, say). */
struct rb_tls *rb_tls_new(int fd, const struct rb_tls_opts *o, char **err);
void rb_tls_free(struct rb_tls *t);

/*
 * The handshake, as far as it can go now: 1 done, 0 to be called again once fd
 * is ready for *events, -1 with *err (why the handshake or the verification
 * failed).
 */
int rb_tls_handshake(struct rb_tls *t, short *events, char **err);

/*
 * Like read(2) and write(2) on the session: the bytes moved; for read, 0 at the
 * end of the stream.  -1 with *err NULL: nothing can move now, wait for *events
 * on fd; -1 with *err: the connection failed.
 */
ssize_t rb_tls_read(struct rb_tls *t, void *buf, size_t n, short *events, char **err);
ssize_t rb_tls_write(struct rb_tls *t, const void *buf, size_t n, short *events, char **err);

/* Whether s is an IPv4 or IPv6 address (no SNI for it; verified against the IP SANs). */
int rb_tls_is_address(const char *s);

/* Bytes the session has decrypted and not handed out: poll() cannot see them. */
int rb_tls_pending(const struct rb_tls *t);

#endif
