/*
 * lua: run a chunk in the run's sandbox; its return value is the output.
 * The sandbox has no I/O, so the action has no side effects.  It runs inline,
 * on the engine's thread, because the run has one Lua state; the engine keeps
 * its signals, timeouts and other steps going meanwhile from the sandbox's hook
 * (sched.c: lua_poll), which stops the chunk when the step is cancelled.
 */
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "action.h"
#include "luabox.h"
#include "util.h"

/* Without a step timeout a chunk still may not run forever. */
enum { LUA_DEFAULT_MS = 60 * 1000 };

static const struct rb_arg lua_args[] = {
	{"code", RB_T_STRING, RB_ARG_REQUIRED, NULL, "the Lua chunk"},
	{NULL, 0, 0, NULL, NULL},
};

static int lua_run(const struct rb_call *c, struct rb_result *res)
{
	const char *code = json_string_value(json_object_get(c->args, "code"));
	long ms = LUA_DEFAULT_MS;
	if (c->deadline_ms) {
		ms = (long)(c->deadline_ms - rb_now_ms());
		if (ms < 1)
			ms = 1;
	}
	char *err = NULL;
	int line = 0;
	if (rb_luabox_eval(c->box, c->scope, code, strlen(code), 0, ms, &err, &line) < 0) {
		/* Stopped (a signal, the run's timeout: the engine's poll), it did not fail; out of
		   time, or failing, it gave no answer. */
		res->outcome = rb_cancelled(c->cancel) ? RB_CANCELLED
			       : strstr(err, "time limit of") ? RB_TIMED_OUT : RB_BROKEN;
		res->error = err;       /* the engine puts the position in front of it */
		res->chunk_line = line;
		return -1;
	}
	lua_State *L = rb_luabox_state(c->box);
	res->output = rb_lua_to_json(L, -1, &err);
	lua_pop(L, 1);
	if (!res->output) {
		res->outcome = RB_BROKEN;
		res->error = rb_xasprintf("the chunk's return value: %s", err);
		free(err);
		return -1;
	}
	return 0;
}

const struct rb_action act_lua = {
	.name = "lua",
	.summary = "run a Lua chunk in the sandbox; its return value is the output",
	.args = lua_args,
	.flags = RB_ACT_IDEMPOTENT | RB_ACT_INLINE | RB_ACT_PURE,
	.run = lua_run,
};
