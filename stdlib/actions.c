/*
 * The one place an action is registered: a table sorted by name, searched
 * with bsearch.  Adding an action is one line here and one file.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "action.h"

const struct rb_action *const rb_actions[] = {
	&act_assert,
	&act_crypto_cert_info,
	&act_crypto_fingerprint,
	&act_crypto_keypair,
	&act_crypto_random,
	&act_crypto_verify_pair,
	&act_http_request,
	&act_lua,
	&act_notify_channels,
	&act_notify_pagerduty,
	&act_notify_slack,
	&act_notify_webhook,
	&act_pg_exec,
	&act_pg_query,
	&act_pg_set_password,
	&act_redis_command,
	&act_shell,
	&act_wait,
};

const size_t rb_nactions = sizeof(rb_actions) / sizeof(rb_actions[0]);

static int by_name(const void *key, const void *elem)
{
	return strcmp(key, (*(const struct rb_action *const *)elem)->name);
}

const struct rb_action *rb_action_find(const char *name)
{
	const struct rb_action *const *a =
		bsearch(name, rb_actions, rb_nactions, sizeof(rb_actions[0]), by_name);
	return a ? *a : NULL;
}

const struct rb_arg *rb_action_arg(const struct rb_action *a, const char *name)
{
	for (const struct rb_arg *g = a->args; g->name; g++)
		if (!strcmp(g->name, name))
			return g;
	return NULL;
}

int rb_arg_fail(struct rb_arg_error *e, const char *arg, int index, char *msg)
{
	e->arg = arg;
	e->index = index;
	e->msg = msg;
	return -1;
}

int rb_strlist_has(const json_t *list, const char *s)
{
	size_t k;
	json_t *v;
	json_array_foreach(list, k, v)
		if (json_is_string(v) && !strcmp(json_string_value(v), s))
			return 1;
	return 0;
}

int rb_arg_later(const json_t *later, const char *name)
{
	return rb_strlist_has(later, name);
}

int rb_arg_given(const json_t *args, const json_t *later, const char *name)
{
	return json_object_get(args, name) || rb_arg_later(later, name);
}

const char *rb_json_why(json_error_t *e)
{
	char *near = strstr(e->text, " near '");
	if (near)
		*near = '\0';
	return e->text;
}

int rb_call_arg_secret(const struct rb_call *c, const char *name)
{
	for (const char *const *a = c->secret_args; a && *a; a++)
		if (!strcmp(*a, name))
			return 1;
	return 0;
}

int64_t rb_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rb_cancel_init(struct rb_cancel *c, int with_fd)
{
	atomic_init(&c->level, RB_CANCEL_NONE);
	c->fd = -1;
	if (with_fd && (c->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return -1;
	return 0;
}

void rb_cancel_fini(struct rb_cancel *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

void rb_cancel_set(struct rb_cancel *c, enum rb_cancel_level level)
{
	int was = atomic_load(&c->level);
	while (was < (int)level && !atomic_compare_exchange_weak(&c->level, &was, (int)level))
		;
	if (c->fd >= 0 && was == RB_CANCEL_NONE && level > RB_CANCEL_NONE) {
		uint64_t one = 1;
		ssize_t w = write(c->fd, &one, sizeof(one));
		(void)w;        /* EAGAIN: it is readable already */
	}
}
