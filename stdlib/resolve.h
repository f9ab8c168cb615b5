/*
 * Name lookups that never block the engine's thread: getaddrinfo on a thread
 * of its own (which takes no signal: they are the engine's), done when a
 * descriptor the caller polls becomes readable.  libcurl does the same inside;
 * libpq and hiredis look names up where they are called, so pg.* and
 * redis.command look them up here first.
 */
#ifndef RB_RESOLVE_H
#define RB_RESOLVE_H

#include <netdb.h>

struct rb_resolve;

/*
 * Look host (and port, or NULL) up for a TCP connection; NULL with *err (malloc'd).
 * Messages call it shown ("the connection's host", when the name is part of a secret),
 * or "host NAME" when shown is NULL.
 */
struct rb_resolve *rb_resolve_start(const char *host, const char *port, const char *shown,
				    char **err);
/* Readable once the lookup is over. */
int rb_resolve_fd(const struct rb_resolve *r);
/*
 * 1 when it is over: the addresses in *res (the caller's: freeaddrinfo); -1
 * when the name was not found, with *err (malloc'd, naming the host as shown); 0 when
 * it is not over yet.
 */
int rb_resolve_result(struct rb_resolve *r, struct addrinfo **res, char **err);
/* Done with it, over or not: a lookup under way finishes and frees itself. */
void rb_resolve_free(struct rb_resolve *r);

/* Whether host is a name to look up: not an IP address nor a Unix socket's directory. */
int rb_resolve_needed(const char *host);

#endif
