/*
 * Replays a run's snapshot and journal records into a summary of the run and
 * of each step, for the commands that show runs.  It interprets the engine's
 * record kinds (interp/exec.c, interp/exec_svc.c) and nothing else.
 */
#include "runstate.h"

#include <stdio.h>
#include <string.h>

#include "journal.h"
#include "util.h"

/* The entry for a step, created in first-seen order. */
static json_t *step_entry(json_t *steps, json_t *index, const char *id)
{
	json_t *s = json_object_get(index, id);
	if (s)
		return s;
	s = json_pack("{s:s, s:s, s:i}", "step", id, "status", "pending", "attempts", 0);
	json_array_append_new(steps, s);
	json_object_set(index, id, s);
	return s;
}

char *rb_record_text(const json_t *v)
{
	char *t = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	return t ? t : rb_xstrdup("null");
}

json_t *rb_record_value(const json_t *rec, const char *key)
{
	json_t *t = json_object_get(rec, key);
	if (!json_is_string(t))
		return NULL;
	return json_loadb(json_string_value(t), json_string_length(t),
			  JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

/* rec's text key decoded into s[key] (or removed from s when rec has none). */
static void set_value(json_t *s, const json_t *rec, const char *key)
{
	json_t *v = rb_record_value(rec, key);
	if (v)
		json_object_set_new(s, key, v);
	else
		json_object_del(s, key);
}

static int is_string(const json_t *v, const char *s)
{
	return json_is_string(v) && !strcmp(json_string_value(v), s);
}

void rb_run_count(struct rb_run_counts *c, const char *st)
{
	if (!st)
		st = "";
	if (!strcmp(st, "succeeded") || !strcmp(st, "satisfied"))
		c->succeeded++;
	else if (!strcmp(st, "failed"))
		c->failed++;
	else if (!strcmp(st, "interrupted"))
		c->interrupted++;
	else if (!strcmp(st, "skipped"))
		c->skipped++;
	else if (!strcmp(st, "running") || !strcmp(st, "retrying"))
		c->running++;
	else
		c->not_run++;
}

void rb_run_state_counts(const json_t *state, struct rb_run_counts *c)
{
	size_t i;
	json_t *s;
	memset(c, 0, sizeof(*c));
	json_array_foreach(json_object_get(state, "steps"), i, s)
		if (!json_object_get(s, "kind"))
			rb_run_count(c, json_string_value(json_object_get(s, "status")));
}

char *rb_run_counts_text(const struct rb_run_counts *c)
{
	char intr[48] = "", running[48] = "";
	if (c->interrupted)
		snprintf(intr, sizeof(intr), ", %zu interrupted", c->interrupted);
	if (c->running)
		snprintf(running, sizeof(running), ", %zu running", c->running);
	return rb_xasprintf("%zu succeeded, %zu failed%s, %zu skipped, %zu not run%s",
			    c->succeeded, c->failed, intr, c->skipped, c->not_run, running);
}

/* A record of an on_failure or undo step says so (exec_svc.c): such steps are not counted. */
static void set_kind(json_t *s, const json_t *rec)
{
	json_t *kind = json_object_get(rec, "kind");
	if (json_is_string(kind))
		json_object_set(s, "kind", kind);
}

static void apply(json_t *st, json_t *index, const json_t *rec)
{
	const char *ev = json_string_value(json_object_get(rec, "type"));
	const char *id = json_string_value(json_object_get(rec, "step"));
	json_t *steps = json_object_get(st, "steps");
	if (!ev)
		return;
	if (!strcmp(ev, "run_started")) {
		json_object_set(st, "run", json_object_get(rec, "run_id"));
		json_object_set(st, "runbook", json_object_get(rec, "runbook"));
		json_object_set(st, "file", json_object_get(rec, "file"));
		json_object_set(st, "sha256", json_object_get(rec, "sha256"));
		set_value(st, rec, "params");
		/* What the run fixed at its start (absent from the runs before it was recorded). */
		if (json_object_get(rec, "started_at")) {
			json_object_set(st, "started_at", json_object_get(rec, "started_at"));
			set_value(st, rec, "vars");
			json_object_set(st, "vars_hmac", json_object_get(rec, "vars_hmac"));
			json_object_set(st, "vars_key", json_object_get(rec, "key_id"));
		}
		if (json_is_string(json_object_get(rec, "plan_sha256")))
			json_object_set(st, "plan_sha256", json_object_get(rec, "plan_sha256"));
	} else if (!strcmp(ev, "run_resumed")) {
		json_object_set_new(st, "status", json_string("unfinished"));
	} else if (!strcmp(ev, "run_finished")) {
		json_object_set(st, "status", json_object_get(rec, "status"));
	} else if (id && !strcmp(ev, "step_started")) {
		json_t *s = step_entry(steps, index, id);
		json_object_set_new(s, "status", json_string("running"));
		json_object_set(s, "attempts", json_object_get(rec, "attempt"));
		set_kind(s, rec);
	} else if (id && !strcmp(ev, "step_retry")) {
		json_t *s = step_entry(steps, index, id);
		json_object_set_new(s, "status", json_string("retrying"));
		json_object_set(s, "error", json_object_get(rec, "error"));
	} else if (id && !strcmp(ev, "item_finished") &&
		   is_string(json_object_get(rec, "status"), "succeeded")) {
		/* A for_each item done: kept when its step runs again (with the same items). */
		json_t *s = step_entry(steps, index, id);
		json_t *items = json_object_get(s, "items");
		if (!items)
			json_object_set_new(s, "items", items = json_object());
		char key[32];
		snprintf(key, sizeof(key), "%lld",
			 (long long)json_integer_value(json_object_get(rec, "index")));
		json_t *out = rb_record_value(rec, "output");
		json_object_set_new(items, key, json_pack("{s:O, s:o}", "sha256",
			json_object_get(rec, "sha256"), "output", out ? out : json_null()));
	} else if (id && !strcmp(ev, "gate_waiting")) {
		json_t *s = step_entry(steps, index, id);
		json_object_set_new(s, "status", json_string("awaiting_approval"));
		set_kind(s, rec);
	} else if (id && !strcmp(ev, "step_finished")) {
		json_t *s = step_entry(steps, index, id);
		json_object_set(s, "status", json_object_get(rec, "status"));
		json_object_set(s, "attempts", json_object_get(rec, "attempt"));
		set_kind(s, rec);
		json_object_del(s, "error");
		set_value(s, rec, "output");
		set_value(s, rec, "outputs");
		json_object_del(s, "secret");
		if (json_is_true(json_object_get(rec, "secret")))
			json_object_set_new(s, "secret", json_true());
		if (json_object_get(rec, "error"))
			json_object_set(s, "error", json_object_get(rec, "error"));
		if (json_object_get(rec, "duration_ms"))
			json_object_set(s, "duration_ms", json_object_get(rec, "duration_ms"));
	}
}

json_t *rb_run_state(const char *run_dir, const struct rb_audit_keyring *trust,
		     char **unverified, char **err)
{
	json_t *snap = NULL, *records = NULL, *torn = NULL;
	if (rb_journal_load_trusted(run_dir, trust, &snap, &records, &torn, unverified, err) < 0)
		return NULL;
	json_t *st = json_pack("{s:s, s:n, s:s, s:b, s:[]}", "run", "", "runbook", "status",
			       "unfinished", "torn", torn != NULL, "steps");
	json_t *index = json_object();
	/* A snapshot holds each step's state as of its seq (exec_svc.c: snapshot()). */
	if (snap) {
		static const char *const run_keys[] = {"run", "runbook", "file", "sha256", "params",
						       "status", "started_at", "vars", "vars_hmac",
						       "vars_key", "plan_sha256"};
		for (size_t k = 0; k < sizeof(run_keys) / sizeof(*run_keys); k++)
			if (json_object_get(snap, run_keys[k]))
				json_object_set(st, run_keys[k], json_object_get(snap, run_keys[k]));
		const char *id;
		json_t *v;
		json_object_foreach(json_object_get(snap, "steps"), id, v) {
			json_t *s = step_entry(json_object_get(st, "steps"), index, id);
			json_object_set(s, "status", json_object_get(v, "status"));
			json_object_set(s, "attempts", json_object_get(v, "attempts"));
			static const char *const keys[] = {"output", "outputs", "error",
							   "duration_ms", "kind", "secret"};
			for (size_t k = 0; k < sizeof(keys) / sizeof(*keys); k++)
				if (json_object_get(v, keys[k]))
					json_object_set(s, keys[k], json_object_get(v, keys[k]));
			if (json_object_get(v, "items"))
				json_object_set_new(s, "items",
						    json_deep_copy(json_object_get(v, "items")));
		}
	}
	size_t i;
	json_t *rec;
	json_array_foreach(records, i, rec)
		apply(st, index, rec);
	json_decref(index);
	json_decref(snap);
	json_decref(records);
	json_decref(torn);
	return st;
}
