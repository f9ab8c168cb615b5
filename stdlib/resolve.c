/*
 * A lookup is shared by the caller and its thread, each holding a reference;
 * the last to let go frees it, so the caller may give up on a slow DNS server
 * (a cancel, a timeout) without waiting for it.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "resolve.h"
#include "util.h"

struct rb_resolve {
	pthread_mutex_t mu;
	int refs;
	int fd;                         /* eventfd, written when done */
	char *hosts;
	int done, failed;
	char *names, *addrs, *err;
};

static void unref(struct rb_resolve *r)
{
	pthread_mutex_lock(&r->mu);
	int last = --r->refs == 0;
	pthread_mutex_unlock(&r->mu);
	if (!last)
		return;
	close(r->fd);
	pthread_mutex_destroy(&r->mu);
	free(r->hosts);
	free(r->names);
	free(r->addrs);
	free(r->err);
	free(r);
}

static int is_address(const char *h)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return *h == '/' || *h == '@' || inet_pton(AF_INET, h, buf) == 1 ||
	       inet_pton(AF_INET6, h, buf) == 1;
}

int rb_resolve_needed(const char *host)
{
	if (!host || !*host)
		return 0;
	char *list = rb_xstrdup(host), *save = NULL;
	int needed = 0;
	for (char *h = strtok_r(list, ",", &save); h; h = strtok_r(NULL, ",", &save))
		if (!is_address(h))
			needed = 1;
	free(list);
	return needed;
}

static void *lookup(void *arg)
{
	struct rb_resolve *r = arg;
	struct rb_buf names, out;
	rb_buf_init(&names);
	rb_buf_init(&out);
	char *err = NULL, *save = NULL;
	for (char *h = strtok_r(r->hosts, ",", &save); h && !err; h = strtok_r(NULL, ",", &save)) {
		if (is_address(h)) {
			rb_buf_printf(&names, "%s%s", names.len ? "," : "", h);
			rb_buf_printf(&out, "%s%s", out.len ? "," : "", *h == '/' || *h == '@' ? "" : h);
			continue;
		}
		struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
		struct addrinfo *ai = NULL;
		int rc = getaddrinfo(h, NULL, &hints, &ai);
		if (rc != 0 || !ai)
			err = rb_xasprintf("cannot resolve host %s: %s", h, gai_strerror(rc));
		for (struct addrinfo *x = ai; x && !err; x = x->ai_next) {
			char num[INET6_ADDRSTRLEN];
			const void *a = x->ai_family == AF_INET
				? (const void *)&((struct sockaddr_in *)x->ai_addr)->sin_addr
				: (const void *)&((struct sockaddr_in6 *)x->ai_addr)->sin6_addr;
			if (!inet_ntop(x->ai_family, a, num, sizeof(num)))
				continue;
			rb_buf_printf(&names, "%s%s", names.len ? "," : "", h);
			rb_buf_printf(&out, "%s%s", out.len ? "," : "", num);
		}
		if (ai)
			freeaddrinfo(ai);
	}
	pthread_mutex_lock(&r->mu);
	r->done = 1;
	r->failed = err != NULL;
	r->err = err;
	r->names = rb_buf_detach(&names);
	r->addrs = rb_buf_detach(&out);
	pthread_mutex_unlock(&r->mu);
	uint64_t one = 1;
	ssize_t w = write(r->fd, &one, sizeof(one));
	(void)w;
	unref(r);
	return NULL;
}

struct rb_resolve *rb_resolve_start(const char *host, char **err)
{
	struct rb_resolve *r = rb_xcalloc(1, sizeof(*r));
	r->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->fd < 0) {
		*err = rb_xstrdup("cannot look the host up: no descriptor");
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->mu, NULL);
	r->hosts = rb_xstrdup(host);
	r->refs = 2;
	pthread_t t;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&t, &at, lookup, r);
	pthread_attr_destroy(&at);
	if (rc != 0) {
		r->refs = 1;
		unref(r);
		*err = rb_xstrdup("cannot look the host up: no thread");
		return NULL;
	}
	return r;
}

int rb_resolve_fd(const struct rb_resolve *r)
{
	return r->fd;
}

int rb_resolve_result(struct rb_resolve *r, char **hosts, char **addrs, char **err)
{
	pthread_mutex_lock(&r->mu);
	int done = r->done, failed = r->failed;
	if (done && !failed) {
		*hosts = rb_xstrdup(r->names);
		*addrs = rb_xstrdup(r->addrs);
	}
	else if (done)
		*err = rb_xstrdup(r->err);
	pthread_mutex_unlock(&r->mu);
	return !done ? 0 : failed ? -1 : 1;
}

void rb_resolve_free(struct rb_resolve *r)
{
	if (r)
		unref(r);
}
