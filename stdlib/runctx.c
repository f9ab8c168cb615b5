/*
 * The run's context for its actions (runctx.h): a list of kept connections
 * and one of run-wide objects, under one mutex.  Runs have few targets, so
 * lists do.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "action.h"
#include "runctx.h"
#include "util.h"

struct kept {
	char *kind, *target;
	void *conn;                     /* NULL while it is taken */
	void (*close)(void *conn);
	struct kept *next;
};

struct object {
	char *kind;
	void *obj;
	void (*destroy)(void *obj);
	struct object *next;
};

struct rb_runctx {
	char *run_id;
	pthread_mutex_t mu;
	struct kept *kept;
	struct object *objects;
};

struct rb_runctx *rb_runctx_new(const char *run_id)
{
	struct rb_runctx *r = rb_xcalloc(1, sizeof(*r));
	r->run_id = rb_xstrdup(run_id ? run_id : "");
	pthread_mutex_init(&r->mu, NULL);
	return r;
}

void rb_runctx_free(struct rb_runctx *r)
{
	if (!r)
		return;
	for (struct kept *k = r->kept, *next; k; k = next) {
		next = k->next;
		if (k->conn)
			k->close(k->conn);
		free(k->kind);
		free(k->target);
		free(k);
	}
	/* Objects last: a connection may use one (a curl handle, the share). */
	for (struct object *o = r->objects, *next; o; o = next) {
		next = o->next;
		o->destroy(o->obj);
		free(o->kind);
		free(o);
	}
	pthread_mutex_destroy(&r->mu);
	free(r->run_id);
	free(r);
}

const char *rb_runctx_id(const struct rb_runctx *r)
{
	return r->run_id;
}

void *rb_pool_take(struct rb_runctx *r, const char *kind, const char *target)
{
	void *conn = NULL;
	pthread_mutex_lock(&r->mu);
	for (struct kept **p = &r->kept; *p; p = &(*p)->next) {
		struct kept *k = *p;
		if (!strcmp(k->kind, kind) && !strcmp(k->target, target)) {
			conn = k->conn;
			*p = k->next;
			free(k->kind);
			free(k->target);
			free(k);
			break;
		}
	}
	pthread_mutex_unlock(&r->mu);
	return conn;
}

void rb_pool_give(struct rb_runctx *r, const char *kind, const char *target, void *conn,
		  void (*close)(void *conn))
{
	struct kept *k = rb_xcalloc(1, sizeof(*k));
	k->kind = rb_xstrdup(kind);
	k->target = rb_xstrdup(target);
	k->conn = conn;
	k->close = close;
	pthread_mutex_lock(&r->mu);
	k->next = r->kept;
	r->kept = k;
	pthread_mutex_unlock(&r->mu);
}

void *rb_runctx_object(struct rb_runctx *r, const char *kind, void *(*make)(void),
		       void (*destroy)(void *obj))
{
	void *obj = NULL;
	pthread_mutex_lock(&r->mu);
	struct object *o;
	for (o = r->objects; o; o = o->next)
		if (!strcmp(o->kind, kind))
			break;
	if (o) {
		obj = o->obj;
	} else if ((obj = make()) != NULL) {
		o = rb_xcalloc(1, sizeof(*o));
		o->kind = rb_xstrdup(kind);
		o->obj = obj;
		o->destroy = destroy;
		o->next = r->objects;
		r->objects = o;
	}
	pthread_mutex_unlock(&r->mu);
	return obj;
}

void rb_call_key(const struct rb_call *c, char key[33])
{
	char *s = c->item == RB_NO_ITEM
		  ? rb_xasprintf("%s\n%s\n%d", rb_runctx_id(c->run), c->step, c->check)
		  : rb_xasprintf("%s\n%s\n%d\n%zu", rb_runctx_id(c->run), c->step, c->check,
				 c->item);
	char hex[65];
	rb_sha256_hex(s, strlen(s), hex);
	free(s);
	memcpy(key, hex, 32);
	key[32] = '\0';
}
