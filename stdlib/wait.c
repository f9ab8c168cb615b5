/*
 * wait: sleep for a duration, for example to let a change settle.
 */
#include "action.h"

static const struct rb_arg wait_args[] = {
	{"duration", RB_T_DURATION, RB_ARG_REQUIRED, NULL, "how long to wait"},
	{NULL, 0, 0, NULL, NULL},
};

const struct rb_action act_wait = {
	.name = "wait",
	.summary = "wait for a duration",
	.args = wait_args,
	.flags = RB_ACT_IDEMPOTENT,
};
