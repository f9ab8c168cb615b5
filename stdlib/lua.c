/*
 * lua: run a chunk in the run's sandbox; its return value is the output.
 * The sandbox has no I/O, so the action has no side effects.
 */
#include "action.h"

static const struct rb_arg lua_args[] = {
	{"code", RB_T_STRING, RB_ARG_REQUIRED, NULL, "the Lua chunk"},
	{NULL, 0, 0, NULL, NULL},
};

const struct rb_action act_lua = {
	.name = "lua",
	.summary = "run a Lua chunk in the sandbox; its return value is the output",
	.args = lua_args,
	.flags = RB_ACT_IDEMPOTENT,
};
