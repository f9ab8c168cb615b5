/*
 * wait: sleep for a duration, for example to let a change settle.  Sleeps in
 * short slices so that a cancel or the step's deadline stops it promptly.
 */
#include <time.h>

#include "action.h"
#include "types.h"
#include "util.h"

static const struct rb_arg wait_args[] = {
	{"duration", RB_T_DURATION, RB_ARG_REQUIRED, NULL, "how long to wait"},
	{NULL, 0, 0, NULL, NULL},
};

static int wait_run(const struct rb_call *c, struct rb_result *res)
{
	const char *d = json_string_value(json_object_get(c->args, "duration"));
	int64_t ms;
	const char *why;
	if (!d || rb_duration_parse(d, &ms, &why) < 0) {
		res->outcome = RB_BROKEN;
		res->error = rb_xasprintf("duration: %s", d ? why : "expected a duration");
		return -1;
	}
	int64_t end = rb_now_ms() + ms;
	for (;;) {
		int64_t now = rb_now_ms();
		if (now >= end)
			break;
		int cancelled = rb_cancelled(c->cancel) != RB_CANCEL_NONE;
		if (cancelled || (c->deadline_ms && now >= c->deadline_ms)) {
			res->outcome = cancelled ? RB_CANCELLED : RB_TIMED_OUT;
			res->error = rb_xstrdup(cancelled ? "cancelled" : "timed out");
			return -1;
		}
		int64_t slice = end - now < 50 ? end - now : 50;
		struct timespec ts = {0, (long)slice * 1000000L};
		nanosleep(&ts, NULL);
	}
	res->output = json_pack("{s:s}", "waited", d);
	return 0;
}

const struct rb_action act_wait = {
	.name = "wait",
	.summary = "wait for a duration",
	.args = wait_args,
	.flags = RB_ACT_IDEMPOTENT,
	.run = wait_run,
};
