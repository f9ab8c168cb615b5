/*
 * libFuzzer target: load, validate and plan arbitrary bytes as a runbook.
 * Whatever the input, this must neither crash, leak, hang nor read out of
 * bounds; invalid input only produces diagnostics.
 */
#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "plan.h"
#include "runbook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rb_diags d;
	rb_diags_init(&d, "fuzz.yaml", NULL, 0);
	struct rb_runbook *rb = rb_runbook_load("fuzz.yaml", (const char *)data, size, &d);
	if (!d.errors) {
		json_t *params = rb_params_resolve(rb, NULL, 0, &d);
		FILE *sink = fopen("/dev/null", "w");
		struct rb_plan_out po = {.f = sink, .color = 1};
		if (params && sink)
			rb_plan_write(rb, params, &rb_plan_json, &po, &d);
		if (sink)
			fclose(sink);
		json_decref(params);
	}
	/* Formatting the messages is part of what must not crash. */
	d.src = rb->src;
	d.srclen = rb->srclen;
	FILE *devnull = fopen("/dev/null", "w");
	if (devnull) {
		rb_diags_print(&d, devnull, 1);
		fclose(devnull);
	}
	rb_diags_release(&d);
	rb_runbook_free(rb);
	return 0;
}
