/*
 * assert: fail the step unless a condition holds; the condition is usually an
 * expression over earlier steps' outputs, evaluated before the call.
 */
#include "action.h"
#include "util.h"

static const struct rb_arg assert_args[] = {
	{"that", RB_T_BOOLEAN, RB_ARG_REQUIRED, NULL, "the condition that must be true"},
	{"message", RB_T_STRING, 0, NULL, "the failure message"},
	{NULL, 0, 0, NULL, NULL},
};

static int assert_run(const struct rb_call *c, struct rb_result *res)
{
	/* Lua truth: only nil (null) and false are false. */
	json_t *that = json_object_get(c->args, "that");
	int ok = that && !json_is_null(that) && !json_is_false(that);
	res->output = json_pack("{s:b}", "ok", ok);
	if (ok)
		return 0;
	json_t *msg = json_object_get(c->args, "message");
	res->outcome = RB_FAILED;
	res->error = rb_xstrdup(json_is_string(msg) ? json_string_value(msg)
						    : "assertion failed");
	return -1;
}

const struct rb_action act_assert = {
	.name = "assert",
	.summary = "fail unless a condition is true",
	.args = assert_args,
	.flags = RB_ACT_IDEMPOTENT | RB_ACT_INLINE | RB_ACT_PURE,
	.run = assert_run,
};
