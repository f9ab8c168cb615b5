/*
 * A lookup is shared by the caller and its thread, each holding a reference;
 * the last to let go frees it, so the caller may give up on a slow DNS server
 * (a cancel, a timeout) without waiting for it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "resolve.h"
#include "util.h"

struct rb_resolve {
	atomic_int refs;
	atomic_int done;
	char *host, *port;
	char *shown;                    /* what messages call it: "host NAME", or the caller's */
	int rc;                         /* getaddrinfo's */
	int err;                        /* errno, for EAI_SYSTEM */
	struct addrinfo *res;
	int fd;                         /* eventfd, written when done */
};

static void unref(struct rb_resolve *r)
{
	if (atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	if (r->res)
		freeaddrinfo(r->res);
	free(r->host);
	free(r->port);
	free(r->shown);
	close(r->fd);
	free(r);
}

int rb_resolve_needed(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return host && *host && *host != '/' && *host != '@' && inet_pton(AF_INET, host, buf) != 1 &&
	       inet_pton(AF_INET6, host, buf) != 1;
}

static void *lookup(void *arg)
{
	struct rb_resolve *r = arg;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_ADDRCONFIG};
	r->rc = getaddrinfo(r->host, r->port, &hints, &r->res);
	r->err = errno;
	atomic_store(&r->done, 1);
	uint64_t one = 1;
	ssize_t w = write(r->fd, &one, sizeof(one));
	(void)w;
	unref(r);
	return NULL;
}

struct rb_resolve *rb_resolve_start(const char *host, const char *port, const char *shown,
				     char **err)
{
	struct rb_resolve *r = rb_xcalloc(1, sizeof(*r));
	atomic_init(&r->refs, 2);
	atomic_init(&r->done, 0);
	r->shown = shown ? rb_xstrdup(shown) : rb_xasprintf("host %s", host);
	if ((r->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		*err = rb_xasprintf("cannot look %s up: %s", r->shown, strerror(errno));
		free(r->shown);
		free(r);
		return NULL;
	}
	r->host = rb_xstrdup(host);
	r->port = port ? rb_xstrdup(port) : NULL;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	/* The thread takes no signal: they are the engine's. */
	sigset_t all, was;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &was);
	pthread_t t;
	int rc = pthread_create(&t, &at, lookup, r);
	pthread_sigmask(SIG_SETMASK, &was, NULL);
	pthread_attr_destroy(&at);
	if (rc) {
		*err = rb_xasprintf("cannot look %s up: %s", r->shown, strerror(rc));
		atomic_store(&r->refs, 1);
		unref(r);
		return NULL;
	}
	return r;
}

int rb_resolve_fd(const struct rb_resolve *r)
{
	return r->fd;
}

int rb_resolve_result(struct rb_resolve *r, struct addrinfo **res, char **err)
{
	if (!atomic_load(&r->done))
		return 0;
	if (r->rc) {
		*err = rb_xasprintf("cannot resolve %s: %s", r->shown, r->rc == EAI_SYSTEM
				    ? strerror(r->err) : gai_strerror(r->rc));
		return -1;
	}
	*res = r->res;          /* the thread is done with it */
	r->res = NULL;
	return 1;
}

void rb_resolve_free(struct rb_resolve *r)
{
	if (r)
		unref(r);
}
