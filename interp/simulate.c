/*
 * replay --simulate: the runbook as it is now, run by the engine with each
 * action's recorded result standing in for the action (exec.h: recorded),
 * and where it would go another way than the run did: a step whose
 * condition decides otherwise, a call with other arguments, a step added or
 * gone.  Nothing is executed but the runbook's own Lua.
 */
#include "simulate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "plan.h"
#include "rundir.h"
#include "runstate.h"
#include "util.h"

/* What the log says: results by call, and each step's first calls and last status. */
struct recorded {
	json_t *results;        /* "STEP\tATTEMPT\tINDEX\tCHECK": {"ok", "error", "output"} */
	json_t *steps;          /* "STEP": {"status", "calls": [first attempt's calls]} */
	json_t *params;         /* run_started's */
	json_t *approved;       /* ["STEP", ...] passed gates */
	json_t *for_each;       /* {"STEP": true} for the steps whose calls are items */
	const char *run_id;
	time_t started_at;      /* run.started_at, as the run had it */
};

static char *call_key(const char *step, long attempt, long index, int check)
{
	return rb_xasprintf("%s\t%ld\t%ld\t%d", step, attempt, index, check);
}

static json_t *step_of(struct recorded *r, const char *id)
{
	json_t *s = json_object_get(r->steps, id);
	if (!s)
		json_object_set_new(r->steps, id, s = json_object());
	return s;
}

/* The output a record holds for a call that succeeded (out, or NULL): kept with its result. */
static void set_output(struct recorded *r, const char *step, long attempt, long index,
		       int check, json_t *out)
{
	char *k = call_key(step, attempt, index, check);
	json_t *res = json_object_get(r->results, k);
	if (res && json_is_true(json_object_get(res, "ok")) && out)
		json_object_set(res, "output", out);
	free(k);
}

static void index_records(struct recorded *r, const json_t *records)
{
	json_t *attempt = json_object();        /* the attempt each step is at */
	size_t i;
	json_t *rec;
	json_array_foreach(records, i, rec) {
		const char *type = json_string_value(json_object_get(rec, "type"));
		const char *step = json_string_value(json_object_get(rec, "step"));
		long att = (long)json_integer_value(json_object_get(rec, "attempt"));
		long idx = (long)json_integer_value(json_object_get(rec, "index"));
		int check = json_is_true(json_object_get(rec, "check"));
		if (!type)
			continue;
		if (!strcmp(type, "run_started")) {
			r->run_id = json_string_value(json_object_get(rec, "run_id"));
			r->started_at = rb_run_started_at(rec, r->run_id);
			json_decref(r->params);
			r->params = rb_record_value(rec, "params");
		} else if (!step) {
			continue;
		} else if (!strcmp(type, "step_started")) {
			json_object_set_new(attempt, step, json_integer(att));
		} else if (!strcmp(type, "action_intent")) {
			if (json_object_get(rec, "calls"))
				json_object_set_new(r->for_each, step, json_true());
			if (check || att != 1)
				continue;
			json_t *calls = rb_record_value(rec, "calls");
			if (!calls)
				calls = json_pack("[o]", rb_record_value(rec, "args"));
			json_object_set_new(step_of(r, step), "calls", calls);
		} else if (!strcmp(type, "action_result")) {
			char *k = call_key(step, att, idx, check);
			const char *status = json_string_value(json_object_get(rec, "status"));
			int ok = status && !strcmp(status, "succeeded");
			json_t *res = json_pack("{s:b}", "ok", ok);
			if (json_object_get(rec, "error"))
				json_object_set(res, "error", json_object_get(rec, "error"));
			json_t *out = ok ? NULL : rb_record_value(rec, "output");
			if (out)        /* a failed call's output, which later steps may read */
				json_object_set_new(res, "output", out);
			json_object_set_new(r->results, k, res);
			free(k);
		} else if (!strcmp(type, "item_finished")) {
			long at = (long)json_integer_value(json_object_get(attempt, step));
			json_t *out = rb_record_value(rec, "output");
			set_output(r, step, at, idx, 0, out);
			json_decref(out);
		} else if (!strcmp(type, "step_finished")) {
			const char *status = json_string_value(json_object_get(rec, "status"));
			if (status)
				json_object_set_new(step_of(r, step), "status", json_string(status));
			/* A check's result is the output of a satisfied step; else the call's. */
			int sat = status && !strcmp(status, "satisfied");
			json_t *out = rb_record_value(rec, "output");
			if (!json_object_get(r->for_each, step)) {
				set_output(r, step, att, 0, sat, out);
			} else if (json_is_array(out)) {
				/* A for_each step's output is the list of its items': each its own. */
				size_t k;
				json_t *item;
				json_array_foreach(out, k, item)
					set_output(r, step, att, (long)k, sat, item);
			}
			json_decref(out);
		} else if (!strcmp(type, "gate_approved")) {
			json_array_append_new(r->approved, json_string(step));
		}
	}
	json_decref(attempt);
}

static int lookup(void *ud, const char *step, int attempt, size_t index, int check,
		  json_t **output, char **error)
{
	struct recorded *r = ud;
	char *k = call_key(step, attempt, (long)index, check);
	json_t *res = json_object_get(r->results, k);
	free(k);
	if (!res)
		return -1;
	json_t *out = json_object_get(res, "output");
	*output = out ? json_deep_copy(out) : json_null();
	if (json_is_true(json_object_get(res, "ok")))
		return 1;
	const char *e = json_string_value(json_object_get(res, "error"));
	*error = rb_xstrdup(e ? e : "failed");
	return 0;
}

static int ran(const char *status)
{
	return status && strcmp(status, "skipped") && strcmp(status, "pending") &&
	       strcmp(status, "not_probed");
}

/* A step the path got to: it ran, or its condition (or a skip before it) was decided. */
static int reached(const char *status)
{
	return status && strcmp(status, "pending") && strcmp(status, "awaiting_approval");
}

/* A status that says how a step that ran came out. */
static int decided(const char *status)
{
	return status && (!strcmp(status, "succeeded") || !strcmp(status, "failed"));
}

/* v as one short line of JSON, for a difference. */
static char *brief(const json_t *v)
{
	char *t = v ? rb_record_text(v) : rb_xstrdup("(none)");
	if (strlen(t) > 100)
		strcpy(t + 97, "...");
	return t;
}

static void add(json_t *diffs, const char *kind, const char *step, char *text)
{
	json_array_append_new(diffs, json_pack("{s:s, s:s, s:s}", "kind", kind, "step", step,
					       "text", text));
	free(text);
}

/* The first argument that differs between the calls then and now. */
static void compare_calls(json_t *diffs, const char *id, const json_t *then, const json_t *now)
{
	if (json_equal((json_t *)then, (json_t *)now))
		return;
	if (json_array_size(then) != json_array_size(now)) {
		add(diffs, "argument", id, rb_xasprintf("%s: %zu call%s then, %zu now", id,
			json_array_size(then), json_array_size(then) == 1 ? "" : "s",
			json_array_size(now)));
		return;
	}
	for (size_t c = 0; c < json_array_size(then); c++) {
		json_t *a = json_array_get(then, c), *b = json_array_get(now, c);
		if (json_equal(a, b))
			continue;
		const char *key;
		json_t *v;
		json_t *keys = json_object();
		json_object_foreach(a, key, v)
			json_object_set_new(keys, key, json_true());
		json_object_foreach(b, key, v)
			json_object_set_new(keys, key, json_true());
		json_object_foreach(keys, key, v) {
			json_t *x = json_object_get(a, key), *y = json_object_get(b, key);
			if (x && y && json_equal(x, y))
				continue;
			char *bx = brief(x), *by = brief(y);
			char at[32] = "";
			if (json_array_size(then) > 1)
				snprintf(at, sizeof(at), "[%zu]", c + 1);
			add(diffs, "argument", id, rb_xasprintf("%s%s: %s was %s, now %s", id, at, key,
								bx, by));
			free(bx);
			free(by);
		}
		json_decref(keys);
	}
}

static json_t *compare(const struct rb_runbook *rb, const struct recorded *r,
		       const json_t *sim)
{
	json_t *diffs = json_array();
	for (size_t i = 0; i < rb->nmain; i++) {
		const char *id = rb->steps[i]->id;
		json_t *then = json_object_get(r->steps, id), *now = json_object_get(sim, id);
		const char *st = json_string_value(json_object_get(then, "status"));
		if (then && !st)
			st = "running";         /* started; the log ends before its end */
		const char *sn = json_string_value(json_object_get(now, "status"));
		if (!then && !reached(sn)) {
			/* Not reached then (the run stopped before it) nor now: the same path. */
		} else if (!then) {
			const char *why = json_string_value(json_object_get(now, "error"));
			add(diffs, "added", id, ran(sn)
			    ? rb_xasprintf("%s: a new step; it would run now", id)
			    : rb_xasprintf("%s: a new step; it would be %s%s%s", id, sn ? sn : "pending",
					   why ? ": " : "", why ? why : ""));
		} else if (ran(st) && !ran(sn)) {
			const char *why = json_string_value(json_object_get(now, "error"));
			add(diffs, "condition", id, rb_xasprintf("%s: ran then (%s); now it would be "
				"%s%s%s", id, st, sn, why ? ": " : "", why ? why : ""));
		} else if (!ran(st) && ran(sn)) {
			add(diffs, "condition", id, rb_xasprintf("%s: was %s then; now it would run",
								 id, st));
		} else if (ran(st)) {
			if (decided(st) && decided(sn) && strcmp(st, sn)) {
				const char *why = json_string_value(json_object_get(now, "error"));
				add(diffs, "outcome", id, rb_xasprintf("%s: %s then; now it would have "
					"%s%s%s", id, st, sn, why ? ": " : "", why ? why : ""));
			}
			json_t *ct = json_object_get(then, "calls");
			json_t *cn = json_array_get(json_object_get(now, "calls"), 0);
			if (ct && cn)
				compare_calls(diffs, id, ct, cn);
		}
	}
	const char *id;
	json_t *v;
	json_object_foreach(r->steps, id, v) {
		int found = 0;
		for (size_t i = 0; i < rb->nsteps && !found; i++)
			found = !strcmp(rb->steps[i]->id, id);
		if (!found)
			add(diffs, "removed", id, rb_xasprintf("%s: %s then; the runbook has no "
				"such step now", id, json_is_string(json_object_get(v, "status"))
				? json_string_value(json_object_get(v, "status")) : "started"));
	}
	return diffs;
}

/* The recorded params as -p NAME=VALUE for the runbook as it is now (gone ones left out). */
static json_t *params_now(const struct rb_runbook *rb, const json_t *recorded,
			  struct rb_diags *d, json_t *diffs)
{
	size_t n = json_object_size(recorded), k = 0;
	char **given = rb_xcalloc(n + 1, sizeof(*given));
	const char *name;
	json_t *v;
	json_object_foreach((json_t *)recorded, name, v) {
		if (!rb_runbook_param(rb, name)) {
			add(diffs, "param", name, rb_xasprintf("param %s: given to the run; the "
				"runbook takes no such param now", name));
			continue;
		}
		char *text = json_is_string(v) ? rb_xstrdup(json_string_value(v)) : rb_record_text(v);
		given[k++] = rb_xasprintf("%s=%s", name, text);
		free(text);
	}
	json_t *p = rb_params_resolve(rb, given, k, d);
	for (size_t i = 0; i < k; i++)
		free(given[i]);
	free(given);
	return p;
}

int rb_replay_simulate(struct rb_runbook *rb, const json_t *records, struct rb_diags *d,
		       const char *format, FILE *out)
{
	struct recorded r = {.results = json_object(), .steps = json_object(),
			     .approved = json_array(), .for_each = json_object(), .started_at = -1};
	index_records(&r, records);
	int rc;
	json_t *diffs = json_array();
	json_t *none = json_object();
	json_t *params = params_now(rb, r.params ? r.params : none, d, diffs);
	FILE *sink = fopen("/dev/null", "w");
	size_t na = json_array_size(r.approved);
	const char **approve = rb_xcalloc(na + 1, sizeof(*approve));
	for (size_t i = 0; i < na; i++)
		approve[i] = json_string_value(json_array_get(r.approved, i));
	json_t *sim = json_object();
	/* The run's id and start, so that what is made of them is as it was then. */
	struct rb_exec_opts o = {.params = params, .jobs = 1, .out = sink, .recorded = lookup,
				 .recorded_ud = &r, .simulated = sim, .approve = approve,
				 .napprove = na, .resume_id = r.run_id,
				 .now = r.started_at >= 0 ? r.started_at : 0};
	enum rb_run_status status;
	char run_id[RB_RUN_ID_MAX];
	if (!params || !sink || rb_exec_run(rb, &o, d, &status, run_id) < 0) {
		/* What is known already (a param gone) is said before why it stopped. */
		if (json_array_size(diffs))
			rb_simulate_print(out, format, r.run_id ? r.run_id : "?", rb->file, rb->nmain,
					  diffs);
		rc = -1;
	} else {
		json_t *more = compare(rb, &r, sim);
		json_array_extend(diffs, more);
		json_decref(more);
		rc = json_array_size(diffs) ? 1 : 0;
		rb_simulate_print(out, format, r.run_id ? r.run_id : "?", rb->file, rb->nmain, diffs);
	}
	if (sink)
		fclose(sink);
	free(approve);
	json_decref(sim);
	json_decref(params);
	json_decref(diffs);
	json_decref(none);
	json_decref(r.results);
	json_decref(r.steps);
	json_decref(r.params);
	json_decref(r.approved);
	json_decref(r.for_each);
	return rc;
}

void rb_simulate_print(FILE *out, const char *format, const char *run_id, const char *file,
		       size_t nsteps, const json_t *diffs)
{
	size_t n = json_array_size(diffs), i;
	json_t *d;
	if (!strcmp(format, "json")) {
		json_t *doc = json_pack("{s:s, s:s, s:b, s:O}", "run", run_id, "runbook", file,
					"same_path", n == 0, "differences", diffs);
		json_dumpf(doc, out, JSON_INDENT(2));
		fputc('\n', out);
		json_decref(doc);
		return;
	}
	int md = !strcmp(format, "markdown");
	fprintf(out, md ? "### Simulation of run %s with %s as it is now\n\n"
			: "simulate run %s with %s as it is now:\n", run_id, file);
	json_array_foreach(diffs, i, d)
		fprintf(out, md ? "- **%s**: %s\n" : "  %-10s %s\n",
			json_string_value(json_object_get(d, "kind")),
			json_string_value(json_object_get(d, "text")));
	if (n)
		fprintf(out, "%s%zu difference%s: the runbook would not take the path the run took\n",
			md ? "\n" : "", n, n == 1 ? "" : "s");
	else
		fprintf(out, "the same path: %zu step%s, the same conditions and arguments\n", nsteps,
			nsteps == 1 ? "" : "s");
}
