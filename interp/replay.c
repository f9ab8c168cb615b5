/*
 * A run's audit records read back as a model of the run: sessions, steps,
 * attempts, calls, items, gates, checks (replay.h has its shape).  It reads
 * records the verifier has accepted and trusts nothing else about them: a
 * record missing a field leaves that field out of the model.  Rendering is
 * replay_render.c's.
 */
#include "replay.h"

#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "runstate.h"
#include "util.h"

struct model {
	json_t *root, *run, *sessions, *steps;
	json_t *index;          /* step id -> its entry */
	json_t *open;           /* step id -> its attempt in flight */
	json_t *open_check;     /* step id -> its check in flight */
	json_t *items;          /* step id -> {"INDEX": item}, sorted into "items" at the end */
	json_t *session;        /* the last session, or NULL */
	int64_t first_ms;
	const char *last_ts;    /* the last record of a session (not a repair or crash note) */
	int64_t last_off;
};

static const char *str(const json_t *rec, const char *key)
{
	return json_string_value(json_object_get(rec, key));
}

/* rec[key] copied into o[key] when rec has it. */
static void copy(json_t *o, const char *key, const json_t *rec, const char *from)
{
	json_t *v = json_object_get(rec, from ? from : key);
	if (v)
		json_object_set(o, key, v);
}

static void set_int(json_t *o, const char *key, int64_t v)
{
	json_object_set_new(o, key, json_integer((json_int_t)v));
}

static json_t *step_entry(struct model *m, const char *id, int64_t off)
{
	json_t *s = json_object_get(m->index, id);
	if (s)
		return s;
	s = json_pack("{s:s, s:s, s:I, s:[]}", "step", id, "status", "unfinished", "offset_ms",
		      (json_int_t)off, "attempts");
	json_array_append_new(m->steps, s);
	json_object_set(m->index, id, s);
	return s;
}

/* The calls an action_intent announces: its args, or one per for_each item. */
static json_t *intent_calls(const json_t *rec, int *for_each)
{
	json_t *calls = json_array();
	json_t *many = rb_record_value(rec, "calls");
	*for_each = json_is_array(many);
	if (*for_each) {
		size_t k;
		json_t *a;
		json_array_foreach(many, k, a)
			json_array_append_new(calls, json_pack("{s:I, s:O}", "index", (json_int_t)k,
							       "args", a));
	} else {
		json_t *args = rb_record_value(rec, "args");
		json_t *c = json_pack("{s:i}", "index", 0);
		if (args)
			json_object_set_new(c, "args", args);
		json_array_append_new(calls, c);
	}
	json_decref(many);
	return calls;
}

/* The call at index k of an attempt or check (made when the intent did not announce it). */
static json_t *call_at(json_t *owner, json_int_t k)
{
	json_t *calls = json_object_get(owner, "calls");
	size_t i;
	json_t *c;
	if (k < 0)
		return NULL;
	json_array_foreach(calls, i, c)
		if (json_integer_value(json_object_get(c, "index")) == k)
			return c;
	c = json_pack("{s:I}", "index", k);
	json_array_append_new(calls, c);
	return c;
}

/* Give call the output rec[key] when that text is the output its result hashed. */
static void match_output(json_t *call, const json_t *rec, const char *key)
{
	const json_t *t = json_object_get(rec, key);
	const char *want = str(call, "output_sha256");
	char hex[65];
	if (!call || !json_is_string(t) || !want)
		return;
	rb_sha256_hex(json_string_value(t), json_string_length(t), hex);
	if (strcmp(hex, want))
		return;
	json_t *v = rb_record_value(rec, key);
	if (v)
		json_object_set_new(call, "output", v);
}

/* Close the attempt of step id in flight, if any, with status (and rec's error). */
static json_t *close_attempt(struct model *m, const char *id, const char *status,
			     const json_t *rec, int64_t off)
{
	json_t *a = json_object_get(m->open, id);
	if (!a)
		return NULL;
	json_object_set_new(a, "status", json_string(status));
	if (rec)
		copy(a, "error", rec, NULL);
	set_int(a, "end_offset_ms", off);
	json_incref(a);
	json_object_del(m->open, id);
	json_decref(a);         /* the step's attempts array still holds it */
	return a;
}

/* The session in flight ends: its steps in flight end with it. */
static void end_session(struct model *m, const char *ended, const char *ts, int64_t off)
{
	const char *id;
	json_t *a, *tmp;
	json_object_foreach_safe(m->open, tmp, id, a) {
		json_t *s = json_object_get(m->index, id);
		close_attempt(m, id, ended, NULL, off);
		json_object_set_new(s, "status", json_string(ended));
	}
	json_object_clear(m->open_check);
	if (!m->session || strcmp(str(m->session, "ended"), "open"))
		return;
	json_object_set_new(m->session, "ended", json_string(!strcmp(ended, "crashed")
							      ? "crashed" : "finished"));
	if (ts) {
		json_object_set_new(m->session, "end_ts", json_string(ts));
		set_int(m->session, "end_offset_ms", off);
	}
}

static void session_start(struct model *m, const json_t *rec, const char *kind, int64_t off)
{
	m->session = json_pack("{s:I, s:s, s:O, s:I}", "session",
			       (json_int_t)json_array_size(m->sessions) + 1, "kind", kind, "ts",
			       json_object_get(rec, "ts"), "offset_ms", (json_int_t)off);
	static const char *const who[] = {"user", "host", "version", "pid", "sha256",
					  "journal_torn"};
	for (size_t k = 0; k < sizeof(who) / sizeof(*who); k++)
		copy(m->session, who[k], rec, NULL);
	json_object_set_new(m->session, "ended", json_string("open"));
	json_array_append_new(m->sessions, m->session);
}

static json_int_t session_no(const struct model *m)
{
	return m->session ? json_integer_value(json_object_get(m->session, "session")) : 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names of the secrets a run read (their HMACs stay in the log), sorted. */
static json_t *secret_names(const json_t *secrets)
{
	size_t n = 0;
	const char **v = rb_xmalloc((json_object_size(secrets) + 1) * sizeof(*v));
	const char *name;
	json_t *x;
	json_object_foreach((json_t *)secrets, name, x)
		v[n++] = name;
	qsort(v, n, sizeof(*v), name_cmp);
	json_t *names = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(names, json_string(v[i]));
	free(v);
	return names;
}

/* A secret read when a step needed it (secret_read) joins the run's sorted names. */
static void secret_read(struct model *m, const char *name)
{
	json_t *names = json_object_get(m->run, "secrets");
	if (!names)
		json_object_set_new(m->run, "secrets", names = json_array());
	size_t i;
	json_t *n;
	json_array_foreach(names, i, n) {
		int c = strcmp(json_string_value(n), name);
		if (c == 0)
			return;
		if (c > 0)
			break;
	}
	json_array_insert_new(names, i, json_string(name));
}

static void run_record(struct model *m, const char *type, const json_t *rec, int64_t off)
{
	if (!strcmp(type, "run_started")) {
		static const char *const keys[] = {"runbook", "file", "sha256", "user", "host",
						   "version"};
		for (size_t k = 0; k < sizeof(keys) / sizeof(*keys); k++)
			copy(m->run, keys[k], rec, NULL);
		json_t *params = rb_record_value(rec, "params");
		if (params)
			json_object_set_new(m->run, "params", params);
		json_object_set_new(m->run, "secrets", secret_names(json_object_get(rec, "secrets")));
		session_start(m, rec, "started", off);
	} else if (!strcmp(type, "run_resumed")) {
		session_start(m, rec, "resumed", off);
	} else if (!strcmp(type, "run_crashed")) {
		end_session(m, "crashed", m->last_ts, m->last_off);
	} else if (!strcmp(type, "log_repaired") && m->session) {
		json_t *r = json_object_get(m->session, "repairs");
		if (!r)
			json_object_set_new(m->session, "repairs", r = json_array());
		json_t *e = json_pack("{s:O, s:I}", "ts", json_object_get(rec, "ts"), "offset_ms",
				      (json_int_t)off);
		copy(e, "offset", rec, NULL);
		copy(e, "length", rec, NULL);
		copy(e, "sha256", rec, NULL);
		json_array_append_new(r, e);
	} else if (!strcmp(type, "run_finished")) {
		json_t *ses = m->session;
		end_session(m, "unfinished", str(rec, "ts"), off);
		if (ses)
			copy(ses, "status", rec, NULL);
	}
}

static void gate_record(json_t *s, const char *type, const json_t *rec,
			int64_t off)
{
	json_t *g = json_object_get(s, "gate");
	if (!g)
		json_object_set_new(s, "gate", g = json_object());
	if (!strcmp(type, "gate_waiting")) {
		json_object_clear(g);
		copy(g, "prompt", rec, NULL);
		copy(g, "ts", rec, NULL);
		set_int(g, "offset_ms", off);
		json_object_set_new(g, "decision", json_string("waiting"));
		json_object_set_new(s, "status", json_string("awaiting_approval"));
		return;
	}
	json_object_set_new(g, "decision", json_string(!strcmp(type, "gate_approved") ? "approved"
									      : "rejected"));
	copy(g, "by", rec, NULL);
	copy(g, "via", rec, NULL);
	copy(g, "decided_ts", rec, "ts");
	set_int(g, "decided_offset_ms", off);
	json_t *w = json_object_get(g, "offset_ms");
	if (w)
		set_int(g, "waited_ms", off - json_integer_value(w));
}

static void step_record(struct model *m, const char *id, const char *type, const json_t *rec,
			int64_t off)
{
	json_t *s = step_entry(m, id, off);
	int check = json_is_true(json_object_get(rec, "check"));
	if (!strcmp(type, "step_started")) {
		close_attempt(m, id, "unfinished", NULL, off);     /* not expected: a lost end */
		json_object_del(m->open_check, id);
		json_t *a = json_pack("{s:O?, s:I, s:I, s:s, s:[]}", "attempt",
				      json_object_get(rec, "attempt"), "session", session_no(m),
				      "offset_ms", (json_int_t)off, "status", "unfinished", "calls");
		json_array_append_new(json_object_get(s, "attempts"), a);
		json_object_set(m->open, id, a);
		json_object_set_new(s, "status", json_string("running"));
	} else if (!strcmp(type, "action_intent")) {
		int for_each;
		json_t *calls = intent_calls(rec, &for_each);
		json_t *owner;
		if (check) {
			json_t *checks = json_object_get(s, "checks");
			if (!checks)
				json_object_set_new(s, "checks", checks = json_array());
			owner = json_pack("{s:I, s:I}", "session", session_no(m), "offset_ms",
					  (json_int_t)off);
			json_array_append_new(checks, owner);
			json_object_set(m->open_check, id, owner);
		} else if (!(owner = json_object_get(m->open, id))) {
			json_decref(calls);
			return;
		}
		json_object_del(owner, "calls");       /* after the action, for people reading */
		copy(owner, "action", rec, NULL);
		if (for_each)
			json_object_set_new(owner, "for_each", json_true());
		json_object_set_new(owner, "calls", calls);
	} else if (!strcmp(type, "action_result")) {
		json_t *owner = json_object_get(check ? m->open_check : m->open, id);
		json_t *k = json_object_get(rec, "index");
		json_t *c = owner ? call_at(owner, k ? json_integer_value(k) : 0) : NULL;
		if (!c)
			return;
		static const char *const keys[] = {"status", "exit_code", "duration_ms",
						   "output_sha256", "error"};
		for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++)
			copy(c, keys[i], rec, NULL);
		json_t *out = rb_record_value(rec, "output");   /* a failed call's */
		if (out)
			json_object_set_new(c, "output", out);
		set_int(c, "offset_ms", off);
	} else if (!strcmp(type, "item_finished")) {
		json_t *k = json_object_get(rec, "index");
		json_t *a = json_object_get(m->open, id);
		if (!json_is_integer(k))
			return;
		json_t *item = json_pack("{s:O, s:O?, s:I}", "index", k, "status",
					 json_object_get(rec, "status"), "session", session_no(m));
		copy(item, "sha256", rec, NULL);
		json_t *out = rb_record_value(rec, "output");
		if (out)
			json_object_set_new(item, "output", out);
		copy(item, "error", rec, NULL);
		if (a) {
			copy(item, "attempt", a, NULL);
			match_output(call_at(a, json_integer_value(k)), rec, "output");
		}
		json_t *byid = json_object_get(m->items, id);
		if (!byid)
			json_object_set_new(m->items, id, byid = json_object());
		char key[32];
		snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(k));
		json_object_set_new(byid, key, item);
	} else if (!strcmp(type, "step_retry")) {
		json_t *a = close_attempt(m, id, "failed", rec, off);
		if (a)
			json_object_set_new(a, "retried", json_true());
		json_object_set_new(s, "status", json_string("retrying"));
	} else if (!strcmp(type, "gate_waiting") || !strcmp(type, "gate_approved") ||
		   !strcmp(type, "gate_rejected")) {
		gate_record(s, type, rec, off);
	} else if (!strcmp(type, "step_finished")) {
		const char *status = str(rec, "status");
		static const char *const keys[] = {"error", "output", "outputs", "duration_ms",
						   "end_offset_ms", "taken_as_done", "continued"};
		for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++)
			json_object_del(s, keys[i]);
		json_object_set_new(s, "status", json_string(status ? status : "unknown"));
		set_int(s, "end_offset_ms", off);
		copy(s, "duration_ms", rec, NULL);
		copy(s, "error", rec, NULL);
		static const char *const text[] = {"output", "outputs"};
		for (size_t i = 0; i < 2; i++) {
			json_t *v = rb_record_value(rec, text[i]);
			if (v)
				json_object_set_new(s, text[i], v);
		}
		copy(s, "taken_as_done", rec, NULL);
		copy(s, "continued", rec, NULL);
		json_t *a = json_object_get(m->open, id);
		if (a && !json_object_get(a, "for_each") &&
		    json_array_size(json_object_get(a, "calls")) == 1)
			match_output(json_array_get(json_object_get(a, "calls"), 0), rec, "output");
		json_t *ck = json_object_get(m->open_check, id);
		if (ck && status && !strcmp(status, "satisfied"))
			match_output(json_array_get(json_object_get(ck, "calls"), 0), rec, "output");
		close_attempt(m, id, status ? status : "unknown", rec, off);
		json_object_del(m->open_check, id);
	}
}

static int index_cmp(const void *a, const void *b)
{
	json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "index"));
	json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "index"));
	return x < y ? -1 : x > y;
}

/* Each step's items, by index. */
static void sort_items(struct model *m)
{
	const char *id;
	json_t *byid;
	json_object_foreach(m->items, id, byid) {
		size_t n = json_object_size(byid), i = 0;
		json_t **v = rb_xmalloc((n ? n : 1) * sizeof(*v));
		const char *k;
		json_t *item;
		json_object_foreach(byid, k, item)
			v[i++] = item;
		qsort(v, n, sizeof(*v), index_cmp);
		json_t *arr = json_array();
		for (i = 0; i < n; i++)
			json_array_append(arr, v[i]);
		free(v);
		json_object_set_new(json_object_get(m->index, id), "items", arr);
	}
}

json_t *rb_replay_model(const json_t *records, char **err)
{
	struct model m = {0};
	const char *run_id = NULL;
	size_t i;
	json_t *rec;
	if (!json_is_array(records) || !json_array_size(records)) {
		if (err)
			*err = rb_xstrdup("no records");
		return NULL;
	}
	json_array_foreach(records, i, rec) {
		const char *r = str(rec, "run_id");
		if (!json_is_object(rec) || !r || !str(rec, "type") || !str(rec, "ts")) {
			if (err)
				*err = rb_xasprintf("record %zu is not an audit record", i + 1);
			return NULL;
		}
		if (run_id && strcmp(r, run_id)) {
			if (err)
				*err = rb_xasprintf("records of two runs: %s and %s", run_id, r);
			return NULL;
		}
		run_id = r;
	}
	json_t *first = json_array_get(records, 0), *last = json_array_get(records, i - 1);
	if (rb_audit_parse_ts(str(first, "ts"), &m.first_ms) < 0)
		m.first_ms = 0;
	m.run = json_pack("{s:s}", "run_id", run_id);
	m.sessions = json_array();
	m.steps = json_array();
	m.index = json_object();
	m.open = json_object();
	m.open_check = json_object();
	m.items = json_object();
	json_t *keys = json_array();
	m.last_ts = str(first, "ts");
	json_array_foreach(records, i, rec) {
		const char *type = str(rec, "type"), *id = str(rec, "step"), *ts = str(rec, "ts");
		int64_t ms;
		int64_t off = rb_audit_parse_ts(ts, &ms) == 0 ? ms - m.first_ms : m.last_off;
		const char *kid = str(rec, "key_id");
		size_t k;
		json_t *have;
		int seen = 0;
		json_array_foreach(keys, k, have)
			seen |= kid && !strcmp(json_string_value(have), kid);
		if (kid && !seen)
			json_array_append_new(keys, json_string(kid));
		if (!strncmp(type, "run_", 4) || !strcmp(type, "log_repaired"))
			run_record(&m, type, rec, off);
		else if (!strcmp(type, "secret_read") && str(rec, "secret"))
			secret_read(&m, str(rec, "secret"));
		else if (id)
			step_record(&m, id, type, rec, off);
		if (strcmp(type, "run_crashed") && strcmp(type, "log_repaired")) {
			m.last_ts = ts;
			m.last_off = off;
		}
	}
	/* The log ends inside a session: what was in flight is unfinished. */
	const char *id;
	json_t *a, *tmp;
	json_object_foreach_safe(m.open, tmp, id, a)
		close_attempt(&m, id, "unfinished", NULL, m.last_off);
	json_array_foreach(m.steps, i, rec) {
		const char *st = str(rec, "status");
		if (!strcmp(st, "running") || !strcmp(st, "retrying"))
			json_object_set_new(rec, "status", json_string("unfinished"));
	}
	if (m.session && !strcmp(str(m.session, "ended"), "open")) {
		json_object_set_new(m.session, "end_ts", json_string(m.last_ts));
		set_int(m.session, "end_offset_ms", m.last_off);
	}
	sort_items(&m);
	if (!json_object_get(m.run, "secrets"))
		json_object_set_new(m.run, "secrets", json_array());
	json_object_set(m.run, "started", json_object_get(first, "ts"));
	json_object_set(m.run, "ended", json_object_get(last, "ts"));
	int64_t end_ms;
	set_int(m.run, "duration_ms", rb_audit_parse_ts(str(last, "ts"), &end_ms) == 0
				      ? end_ms - m.first_ms : 0);
	const char *status = "unfinished";
	if (m.session && !strcmp(str(m.session, "ended"), "crashed"))
		status = "crashed";
	else if (m.session && str(m.session, "status"))
		status = str(m.session, "status");
	json_object_set_new(m.run, "status", json_string(status));
	set_int(m.run, "records", (int64_t)json_array_size(records));
	json_object_set_new(m.run, "key_ids", keys);
	json_object_set_new(m.run, "sessions", m.sessions);
	m.root = json_pack("{s:i, s:o, s:o}", "format_version", RB_REPLAY_VERSION, "run", m.run,
			   "steps", m.steps);
	json_decref(m.index);
	json_decref(m.open);
	json_decref(m.open_check);
	json_decref(m.items);
	return m.root;
}
