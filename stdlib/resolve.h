/*
 * Name lookups that never block the engine's thread: getaddrinfo on a thread
 * of its own, which says it is done through a descriptor the caller polls
 * (libcurl does the same inside; libpq and hiredis look names up where they
 * are called, so pg.* and redis.* look them up here first).
 */
#ifndef RB_RESOLVE_H
#define RB_RESOLVE_H

#include <stddef.h>

struct rb_resolve;

/* Look up host (a name, or a comma-separated list of them); NULL with *err. */
struct rb_resolve *rb_resolve_start(const char *host, char **err);
/* Readable once the lookup is over. */
int rb_resolve_fd(const struct rb_resolve *r);
/*
 * 1 when it is over: every address of every name, in numeric form and
 * comma-separated, in *addrs, and beside each its name, in *hosts (both
 * malloc'd, of the same length: as libpq's host and hostaddr lists take them,
 * trying each in turn); -1 when a name was not found, with *err; 0 when it is
 * not over yet.
 */
int rb_resolve_result(struct rb_resolve *r, char **hosts, char **addrs, char **err);
/* Done with it, over or not (a lookup under way finishes and frees itself). */
void rb_resolve_free(struct rb_resolve *r);

/* Whether host is an IP address, a Unix socket's directory or a list of those. */
int rb_resolve_needed(const char *host);

#endif
