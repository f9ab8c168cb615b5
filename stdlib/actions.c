/*
 * The one place an action is registered: a table sorted by name, searched
 * with bsearch.  Adding an action is one line here and one file.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "action.h"

const struct rb_action *const rb_actions[] = {
	&act_assert,
	&act_lua,
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

int64_t rb_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
