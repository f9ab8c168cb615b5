/*
 * assert: fail the step unless a condition holds; the condition is usually an
 * expression over earlier steps' outputs.
 */
#include "action.h"

static const struct rb_arg assert_args[] = {
	{"that", RB_T_BOOLEAN, RB_ARG_REQUIRED, NULL, "the condition that must be true"},
	{"message", RB_T_STRING, 0, NULL, "the failure message"},
	{NULL, 0, 0, NULL, NULL},
};

const struct rb_action act_assert = {
	.name = "assert",
	.summary = "fail unless a condition is true",
	.args = assert_args,
	.flags = RB_ACT_IDEMPOTENT,
};
