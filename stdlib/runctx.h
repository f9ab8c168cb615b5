/*
 * The run as its actions see it: its id, and what lives as long as the run
 * and is shared by its steps: connections kept for the next step to the same
 * target (one libpq connection per conninfo, one Redis context per URL), and
 * run-wide objects (libcurl's connection cache).  The engine makes one per
 * run and frees it at the end, which closes every connection kept.
 *
 * A connection is taken out of the pool for one call and given back by it
 * when the call is over and the connection is clean (no transaction open, no
 * role, search_path, database or MULTI left set: the action resets or closes
 * it); a call that cannot tell closes it instead.  Calls running at once get
 * different connections.  Thread-safe.
 */
#ifndef RB_RUNCTX_H
#define RB_RUNCTX_H

#include <stddef.h>

struct rb_call;
struct rb_runctx;

struct rb_runctx *rb_runctx_new(const char *run_id);
void rb_runctx_free(struct rb_runctx *r);
const char *rb_runctx_id(const struct rb_runctx *r);

/* An idle connection kept for kind ("pg") and target (its conninfo), now the caller's; or NULL. */
void *rb_pool_take(struct rb_runctx *r, const char *kind, const char *target);
/* Keep conn for the next call to the same target; close frees it when the run ends. */
void rb_pool_give(struct rb_runctx *r, const char *kind, const char *target, void *conn,
		  void (*close)(void *conn));

/*
 * The run-wide object of kind, made by make() on first use and freed by
 * destroy() when the run ends; NULL when make() failed.
 */
void *rb_runctx_object(struct rb_runctx *r, const char *kind, void *(*make)(void),
		       void (*destroy)(void *obj));

/*
 * A key that is the same for every attempt and every resume of a call of a
 * step (and item), and different for any other: the SHA-256 of the run id,
 * the step's id, whether it is the check and the item, as 32 hex digits.
 */
void rb_call_key(const struct rb_call *c, char key[33]);

#endif
