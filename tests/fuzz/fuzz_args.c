/*
 * libFuzzer target: the actions' own argument checks and effect hooks
 * (rb_action.check and .effect), which read what a runbook's author wrote and
 * what its expressions computed: URLs, SQL text scanned for its $N, alert
 * channel lists, statuses.  The first byte picks the action; the rest is a
 * JSON object of arguments.  Whatever they hold, a check answers (0, or -1
 * with a message and the name of an argument that is among the action's), an
 * effect is one of the three, and nothing reads past what it was given.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "action.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const struct rb_action *a = rb_actions[data[0] % rb_nactions];
	json_t *args = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, NULL);
	if (!json_is_object(args)) {
		json_decref(args);
		return 0;
	}
	/* The values of the arguments' types only, as the engine hands them out. */
	json_t *later = json_array();
	json_array_append_new(later, json_string("params"));
	for (int round = 0; round < 2; round++) {
		const json_t *l = round ? later : NULL;
		struct rb_arg_error e = {NULL, -1, NULL};
		if (a->check) {
			int r = a->check(args, l, &e);
			if (r < 0 && (!e.msg || (e.arg && !rb_action_arg(a, e.arg))))
				abort();
			if (r == 0 && e.msg)
				abort();
			free(e.msg);
		}
		char *what = NULL;
		if (a->effect) {
			enum rb_effect eff = a->effect(args, l, &what);
			if (eff != RB_EFFECT_UNKNOWN && eff != RB_EFFECT_READS && eff != RB_EFFECT_WRITES)
				abort();
			if (what && strlen(what) > 65536)
				abort();
		}
		free(what);
	}
	json_decref(later);
	json_decref(args);
	return 0;
}
