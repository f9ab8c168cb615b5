/*
 * Tests the action contract's run-wide pieces: the run context (stdlib/runctx.c:
 * connections kept by kind and target, run-wide objects, the call key), the
 * cancel (levels that only rise, an eventfd readable once), and the helpers
 * check() hooks use (rb_arg_fail, rb_arg_later, rb_arg_given).
 *
 *   test_runctx            (built by make test; links the engine's objects)
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action.h"
#include "runctx.h"

#include "check.h"

static int closed;

static void close_conn(void *conn)
{
	closed++;
	free(conn);
}

static void pool(void)
{
	struct rb_runctx *r = rb_runctx_new("20260101-000000-abcd");
	CHECK(!strcmp(rb_runctx_id(r), "20260101-000000-abcd"), "the run id");
	CHECK(rb_pool_take(r, "pg", "host=a") == NULL, "an empty pool gives nothing");
	char *a = strdup("a"), *b = strdup("b");
	rb_pool_give(r, "pg", "host=a", a, close_conn);
	rb_pool_give(r, "redis", "host=a", b, close_conn);
	CHECK(rb_pool_take(r, "pg", "host=b") == NULL, "another target gets nothing");
	CHECK(rb_pool_take(r, "redis", "host=a") == b, "by kind and target");
	CHECK(rb_pool_take(r, "pg", "host=a") == a, "the connection given back");
	CHECK(rb_pool_take(r, "pg", "host=a") == NULL, "taken: it is the caller's alone");
	rb_pool_give(r, "pg", "host=a", a, close_conn);
	rb_pool_give(r, "redis", "host=a", b, close_conn);
	closed = 0;
	rb_runctx_free(r);
	CHECK(closed == 2, "the run's end closes what is kept (%d closed)", closed);
}

static int made, destroyed;

static void *make(void)
{
	made++;
	return strdup("share");
}

static void *make_fails(void)
{
	return NULL;
}

static void destroy(void *p)
{
	destroyed++;
	free(p);
}

static void objects(void)
{
	struct rb_runctx *r = rb_runctx_new("x");
	made = destroyed = 0;
	void *o1 = rb_runctx_object(r, "curl", make, destroy);
	void *o2 = rb_runctx_object(r, "curl", make, destroy);
	CHECK(o1 && o1 == o2 && made == 1, "one object of a kind for the run (%d made)", made);
	CHECK(rb_runctx_object(r, "other", make_fails, destroy) == NULL, "a make that fails");
	CHECK(rb_runctx_object(r, "other", make, destroy) != NULL, "... is tried again");
	rb_runctx_free(r);
	CHECK(destroyed == 2, "the run's end destroys them (%d)", destroyed);
}

/* Many threads take and give one target at once: no connection is handed out twice. */
struct racer {
	struct rb_runctx *r;
	int *inuse;
	int bad;
};

static void noop_close(void *conn)
{
	(void)conn;
}

static void *race(void *arg)
{
	struct racer *x = arg;
	for (int i = 0; i < 2000; i++) {
		int *c = rb_pool_take(x->r, "pg", "t");
		if (!c)
			continue;
		if (__atomic_fetch_add(c, 1, __ATOMIC_SEQ_CST) != 0)
			x->bad = 1;
		__atomic_fetch_sub(c, 1, __ATOMIC_SEQ_CST);
		rb_pool_give(x->r, "pg", "t", c, noop_close);
	}
	return NULL;
}

static void threads(void)
{
	struct rb_runctx *r = rb_runctx_new("x");
	static int conns[4];
	for (int i = 0; i < 4; i++)
		rb_pool_give(r, "pg", "t", &conns[i], noop_close);
	pthread_t t[4];
	struct racer x[4];
	for (int i = 0; i < 4; i++) {
		x[i] = (struct racer){r, conns, 0};
		pthread_create(&t[i], NULL, race, &x[i]);
	}
	int bad = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		bad |= x[i].bad;
	}
	CHECK(!bad, "a connection was in two threads' hands at once");
	int back = 0;
	while (rb_pool_take(r, "pg", "t"))
		back++;
	CHECK(back == 4, "every connection came back (%d)", back);
	rb_runctx_free(r);
}

static void call_key(void)
{
	struct rb_runctx *r = rb_runctx_new("20260101-000000-abcd");
	struct rb_call c = {.run = r, .step = "pay", .item = RB_NO_ITEM, .attempt = 1};
	char k1[33], k2[33], k3[33], k4[33], k5[33];
	rb_call_key(&c, k1);
	c.attempt = 3;                  /* a retry, or a resume: the same call */
	rb_call_key(&c, k2);
	c.item = 0;
	rb_call_key(&c, k3);
	c.item = RB_NO_ITEM;
	c.check = 1;
	rb_call_key(&c, k4);
	c.check = 0;
	c.step = "refund";
	rb_call_key(&c, k5);
	CHECK(strlen(k1) == 32 && strspn(k1, "0123456789abcdef") == 32, "32 hex digits: %s", k1);
	CHECK(!strcmp(k1, k2), "the same for every attempt");
	CHECK(strcmp(k1, k3) && strcmp(k1, k4) && strcmp(k1, k5) && strcmp(k3, k4),
	      "another for an item, the check, another step");
	rb_runctx_free(r);
	r = rb_runctx_new("20260101-000000-ffff");
	c = (struct rb_call){.run = r, .step = "pay", .item = RB_NO_ITEM};
	rb_call_key(&c, k2);
	CHECK(strcmp(k1, k2), "another for another run");
	rb_runctx_free(r);
}

static int readable(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void cancel(void)
{
	struct rb_cancel c;
	CHECK(rb_cancel_init(&c, 1) == 0 && c.fd >= 0, "an eventfd");
	CHECK(rb_cancelled(&c) == RB_CANCEL_NONE && !readable(c.fd), "not cancelled at first");
	rb_cancel_set(&c, RB_CANCEL_STOP);
	CHECK(rb_cancelled(&c) == RB_CANCEL_STOP && readable(c.fd), "stop: readable");
	rb_cancel_set(&c, RB_CANCEL_NONE);
	CHECK(rb_cancelled(&c) == RB_CANCEL_STOP, "a level never goes down");
	rb_cancel_set(&c, RB_CANCEL_KILL);
	CHECK(rb_cancelled(&c) == RB_CANCEL_KILL && readable(c.fd), "kill");
	rb_cancel_fini(&c);
	CHECK(c.fd == -1, "closed");
	CHECK(rb_cancel_init(&c, 0) == 0 && c.fd == -1, "without a descriptor (inline calls)");
	rb_cancel_set(&c, RB_CANCEL_STOP);
	CHECK(rb_cancelled(&c) == RB_CANCEL_STOP, "the level without a descriptor");
	rb_cancel_fini(&c);
}

static void arg_helpers(void)
{
	json_t *args = json_pack("{s:s}", "url", "https://x"), *later = json_pack("[s]", "params");
	CHECK(rb_arg_later(later, "params") && !rb_arg_later(later, "url") &&
	      !rb_arg_later(NULL, "params"), "rb_arg_later");
	CHECK(rb_arg_given(args, later, "url") && rb_arg_given(args, later, "params") &&
	      !rb_arg_given(args, later, "body") && !rb_arg_given(args, NULL, "params"),
	      "rb_arg_given");
	struct rb_arg_error e = {NULL, -1, NULL};
	CHECK(rb_arg_fail(&e, "url", 2, strdup("bad")) == -1 && !strcmp(e.arg, "url") &&
	      e.index == 2 && !strcmp(e.msg, "bad"), "rb_arg_fail");
	free(e.msg);
	json_decref(args);
	json_decref(later);
}

int main(void)
{
	pool();
	objects();
	threads();
	call_key();
	cancel();
	arg_helpers();
	printf("runctx: %d passed, %d failed\n", npass, nfail);
	return nfail != 0;
}
