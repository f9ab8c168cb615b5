/*
 * Tests interp/replay.c and replay_render.c on records the fixtures of
 * tests/replay.sh cannot easily hold: a rejected gate, a check that finds its
 * step done, a for_each item that fails and is retried, a log that ends in a
 * session, a crash before the run's start was durable, records missing
 * fields, and control characters in outputs.  Records here are not signed:
 * the model trusts what its caller verified.
 *
 *   test_replay            (built by make test; links the engine's objects)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "replay.h"
#include "util.h"

#include "check.h"

/*
 * The records of a case: objects without ts and run_id, which are added
 * (ts 100 ms apart from 2026-01-01T00:00:00.000Z).  "@SHA(TEXT)" in a value
 * of output_sha256 is replaced by the SHA-256 of TEXT.
 */
static json_t *records(const char *text)
{
	json_error_t je;
	json_t *recs = json_loads(text, 0, &je);
	if (!recs) {
		printf("bad case: %s: %s\n", je.text, text);
		exit(1);
	}
	size_t i;
	json_t *r;
	json_array_foreach(recs, i, r) {
		char ts[64];
		snprintf(ts, sizeof(ts), "2026-01-01T00:00:%02u.%03uZ", (unsigned)(i / 10 % 60),
			 (unsigned)(i % 10 * 100));
		json_object_set_new(r, "ts", json_string(ts));
		json_object_set_new(r, "seq", json_integer((json_int_t)i + 1));
		if (!json_object_get(r, "run_id"))
			json_object_set_new(r, "run_id", json_string("r1"));
		const char *sha = json_string_value(json_object_get(r, "output_sha256"));
		if (sha && !strncmp(sha, "@SHA(", 5)) {
			char hex[65];
			rb_sha256_hex(sha + 5, strlen(sha) - 6, hex);
			json_object_set_new(r, "output_sha256", json_string(hex));
		}
	}
	return recs;
}

/* The value at a dotted path ("steps.0.gate.by"): numbers index arrays. */
static json_t *at(json_t *v, const char *path)
{
	char *p = strdup(path), *save = NULL;
	for (char *k = strtok_r(p, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
		v = json_is_array(v) ? json_array_get(v, strtoul(k, NULL, 10)) : json_object_get(v, k);
	free(p);
	return v;
}

/* model at path is the JSON want ("absent": not there). */
#define HAS(model, path, want)                                                             \
	do {                                                                               \
		json_t *got_ = at(model, path);                                            \
		json_t *w_ = strcmp(want, "absent") ? json_loads(want, JSON_DECODE_ANY, NULL) \
						    : NULL;                                \
		char *g_ = got_ ? json_dumps(got_, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;  \
		CHECK(w_ ? got_ && json_equal(got_, w_) : !got_, "%s: got %s, want %s",    \
		      path, g_ ? g_ : "(absent)", want);                                   \
		free(g_);                                                                  \
		json_decref(w_);                                                           \
	} while (0)

static json_t *model_of(const char *text)
{
	json_t *recs = records(text);
	char *err = NULL;
	json_t *m = rb_replay_model(recs, &err);
	CHECK(m, "model: %s", err ? err : "?");
	free(err);
	json_decref(recs);
	return m ? m : json_object();
}

static char *render(const json_t *m, const char *format)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	char *err = NULL;
	CHECK(rb_replay_render(m, format, f, &err) == 0, "render %s: %s", format, err ? err : "");
	free(err);
	fclose(f);
	return buf;
}

static void rejected_gate(void)
{
	json_t *m = model_of("["
		"{\"type\":\"run_started\",\"runbook\":\"rb\",\"user\":\"alice\",\"params\":\"{}\","
		" \"secrets\":{\"token\":{\"hmac_sha256\":\"00\"},\"api\":{\"hmac_sha256\":\"11\"}}},"
		"{\"type\":\"gate_waiting\",\"step\":\"deploy\",\"prompt\":\"Deploy?\"},"
		"{\"type\":\"run_finished\",\"status\":\"paused\"},"
		"{\"type\":\"run_resumed\",\"user\":\"bob\"},"
		"{\"type\":\"gate_rejected\",\"step\":\"deploy\",\"by\":\"bob\"},"
		"{\"type\":\"step_finished\",\"step\":\"deploy\",\"status\":\"failed\",\"attempt\":0,"
		" \"error\":\"not approved (rejected by bob)\",\"duration_ms\":5},"
		"{\"type\":\"run_finished\",\"status\":\"failed\"}]");
	HAS(m, "run.status", "\"failed\"");
	HAS(m, "run.secrets", "[\"api\",\"token\"]");
	HAS(m, "run.params", "{}");
	HAS(m, "run.sessions.0.status", "\"paused\"");
	HAS(m, "run.sessions.1.user", "\"bob\"");
	HAS(m, "run.sessions.1.offset_ms", "300");
	HAS(m, "steps.0.gate", "{\"prompt\":\"Deploy?\",\"ts\":\"2026-01-01T00:00:00.100Z\","
	    "\"offset_ms\":100,\"decision\":\"rejected\",\"by\":\"bob\","
	    "\"decided_ts\":\"2026-01-01T00:00:00.400Z\",\"decided_offset_ms\":400,"
	    "\"waited_ms\":300}");
	HAS(m, "steps.0.status", "\"failed\"");
	HAS(m, "steps.0.attempts", "[]");
	char *t = render(m, "text");
	CHECK(strstr(t, "\"Deploy?\": rejected by bob at +0:00:00.400 after waiting 0.300s"),
	      "text: the gate: %s", t);
	CHECK(strstr(t, "\n  deploy  failed: not approved (rejected by bob)\n"), "text: the failure: %s", t);
	free(t);
	t = render(m, "markdown");
	CHECK(strstr(t, "- **deploy**: failed: not approved (rejected by bob)\n"), "markdown: %s", t);
	free(t);
	json_decref(m);
}

static void check_satisfied(void)
{
	json_t *m = model_of("["
		"{\"type\":\"run_started\"},"
		"{\"type\":\"action_intent\",\"step\":\"mk\",\"check\":true,\"action\":\"shell\","
		" \"args\":\"{\\\"command\\\":\\\"test -e x\\\"}\"},"
		"{\"type\":\"action_result\",\"step\":\"mk\",\"check\":true,\"status\":\"succeeded\","
		" \"exit_code\":0,\"output_sha256\":\"@SHA({\\\"exit_code\\\":0})\"},"
		"{\"type\":\"step_finished\",\"step\":\"mk\",\"status\":\"satisfied\",\"attempt\":0,"
		" \"output\":\"{\\\"exit_code\\\":0}\"},"
		"{\"type\":\"run_finished\",\"status\":\"succeeded\"}]");
	HAS(m, "steps.0.status", "\"satisfied\"");
	HAS(m, "steps.0.checks.0.action", "\"shell\"");
	HAS(m, "steps.0.checks.0.calls.0.args", "{\"command\":\"test -e x\"}");
	HAS(m, "steps.0.checks.0.calls.0.output", "{\"exit_code\":0}");
	HAS(m, "steps.0.attempts", "[]");
	json_decref(m);
}

static void items_retried(void)
{
	json_t *m = model_of("["
		"{\"type\":\"run_started\"},"
		"{\"type\":\"step_started\",\"step\":\"each\",\"attempt\":1},"
		"{\"type\":\"action_intent\",\"step\":\"each\",\"attempt\":1,\"action\":\"shell\","
		" \"calls\":\"[{\\\"command\\\":\\\"a\\\"},{\\\"command\\\":\\\"b\\\"}]\"},"
		"{\"type\":\"action_result\",\"step\":\"each\",\"attempt\":1,\"index\":1,"
		" \"status\":\"failed\",\"exit_code\":1,\"error\":\"exit status 1\"},"
		"{\"type\":\"item_finished\",\"step\":\"each\",\"index\":1,\"status\":\"failed\","
		" \"sha256\":\"b1\",\"error\":\"exit status 1\"},"
		"{\"type\":\"action_result\",\"step\":\"each\",\"attempt\":1,\"index\":0,"
		" \"status\":\"succeeded\",\"output_sha256\":\"@SHA(\\\"A\\\")\"},"
		"{\"type\":\"item_finished\",\"step\":\"each\",\"index\":0,\"status\":\"succeeded\","
		" \"sha256\":\"a1\",\"output\":\"\\\"A\\\"\"},"
		"{\"type\":\"step_retry\",\"step\":\"each\",\"attempt\":1,\"error\":\"exit status 1\"},"
		"{\"type\":\"step_started\",\"step\":\"each\",\"attempt\":2},"
		"{\"type\":\"action_intent\",\"step\":\"each\",\"attempt\":2,\"action\":\"shell\","
		" \"calls\":\"[{\\\"command\\\":\\\"a\\\"},{\\\"command\\\":\\\"b\\\"}]\"},"
		"{\"type\":\"action_result\",\"step\":\"each\",\"attempt\":2,\"index\":1,"
		" \"status\":\"succeeded\",\"output_sha256\":\"@SHA(\\\"B\\\")\"},"
		"{\"type\":\"item_finished\",\"step\":\"each\",\"index\":1,\"status\":\"succeeded\","
		" \"sha256\":\"b1\",\"output\":\"\\\"B\\\"\"},"
		"{\"type\":\"step_finished\",\"step\":\"each\",\"status\":\"succeeded\",\"attempt\":2,"
		" \"output\":\"[\\\"A\\\",\\\"B\\\"]\",\"duration_ms\":900},"
		"{\"type\":\"run_finished\",\"status\":\"succeeded\"}]");
	HAS(m, "steps.0.attempts.0.status", "\"failed\"");
	HAS(m, "steps.0.attempts.0.retried", "true");
	HAS(m, "steps.0.attempts.0.for_each", "true");
	HAS(m, "steps.0.attempts.0.calls.0.output", "\"A\"");
	HAS(m, "steps.0.attempts.0.calls.1.status", "\"failed\"");
	HAS(m, "steps.0.attempts.0.calls.1.output", "absent");
	HAS(m, "steps.0.attempts.1.calls.0.status", "absent");    /* item 0 was not run again */
	HAS(m, "steps.0.attempts.1.calls.1.output", "\"B\"");
	HAS(m, "steps.0.items", "[{\"index\":0,\"status\":\"succeeded\",\"session\":1,"
	    "\"sha256\":\"a1\",\"output\":\"A\",\"attempt\":1},{\"index\":1,\"status\":\"succeeded\","
	    "\"session\":1,\"sha256\":\"b1\",\"output\":\"B\",\"attempt\":2}]");
	HAS(m, "steps.0.output", "[\"A\",\"B\"]");
	char *t = render(m, "text");
	CHECK(strstr(t, "each  attempt 1, item 1: failed: exit status 1\n"), "text: item failure: %s", t);
	CHECK(strstr(t, "2 items, 2 succeeded"), "text: items: %s", t);
	free(t);
	json_decref(m);
}

static void open_and_odd(void)
{
	/* The log ends inside a session (a run still going: audit verify --allow-open). */
	json_t *m = model_of("["
		"{\"type\":\"run_started\"},"
		"{\"type\":\"step_started\",\"step\":\"s\",\"attempt\":1},"
		"{\"type\":\"action_intent\",\"step\":\"s\",\"attempt\":1,\"action\":\"wait\","
		" \"args\":\"{\\\"duration\\\":\\\"1h\\\"}\"}]");
	HAS(m, "run.status", "\"unfinished\"");
	HAS(m, "run.sessions.0.ended", "\"open\"");
	HAS(m, "run.sessions.0.end_offset_ms", "200");
	HAS(m, "steps.0.status", "\"unfinished\"");
	HAS(m, "steps.0.attempts.0.status", "\"unfinished\"");
	json_decref(m);
	/* A crash before run_started was durable, then a resume; fields missing here and there. */
	m = model_of("["
		"{\"type\":\"run_crashed\"},"
		"{\"type\":\"run_resumed\"},"
		"{\"type\":\"step_started\",\"step\":\"s\"},"
		"{\"type\":\"action_result\",\"step\":\"s\",\"index\":-4},"
		"{\"type\":\"item_finished\",\"step\":\"s\",\"index\":3},"
		"{\"type\":\"item_finished\",\"step\":\"s\"},"
		"{\"type\":\"gate_approved\",\"step\":\"g\"},"
		"{\"type\":\"step_finished\",\"step\":\"s\"},"
		"{\"type\":\"something_new\",\"step\":\"s\"},"
		"{\"type\":\"run_finished\"}]");
	HAS(m, "run.sessions.0.kind", "\"resumed\"");
	HAS(m, "run.status", "\"unfinished\"");
	HAS(m, "steps.0.status", "\"unknown\"");
	HAS(m, "steps.0.items.0.index", "3");
	HAS(m, "steps.1.gate.decision", "\"approved\"");
	HAS(m, "steps.1.gate.waited_ms", "absent");
	for (const char *const *f = (const char *const[]){"text", "markdown", "json", NULL}; *f; f++)
		free(render(m, *f));
	json_decref(m);
}

static void escapes(void)
{
	json_t *m = model_of("["
		"{\"type\":\"run_started\",\"runbook\":\"rb|x\"},"
		"{\"type\":\"step_started\",\"step\":\"s\",\"attempt\":1},"
		"{\"type\":\"step_finished\",\"step\":\"s\",\"status\":\"succeeded\",\"attempt\":1,"
		" \"output\":\"{\\\"stdout\\\":\\\"one\\\\ntwo \\\\u001b[31mred\\\\u202e\\\\u0085x\\\\n\\\"}\"},"
		"{\"type\":\"run_finished\",\"status\":\"succeeded\"}]");
	char *t = render(m, "text");
	CHECK(strstr(t, "stdout: two \\u001b[31mred\\u202e\\u0085x\n"), "text: %s", t);
	CHECK(!strchr(t, 0x1b) && !strstr(t, "\xe2\x80\xae") && !strstr(t, "\xc2\x85"),
	      "text holds a raw control character");
	free(t);
	t = render(m, "markdown");
	CHECK(strstr(t, "# Run r1: rb\\|x\n"), "markdown: %s", t);
	free(t);
	t = render(m, "json");
	CHECK(!strchr(t, 0x1b) && !strstr(t, "\xe2\x80\xae"), "json holds a raw control character");
	free(t);
	char *err = NULL;
	FILE *f = fopen("/dev/null", "w");
	CHECK(rb_replay_render(m, "html", f, &err) < 0 && err &&
	      !strcmp(err, "unknown format 'html' (expected text, markdown or json)"), "format: %s",
	      err ? err : "");
	fclose(f);
	free(err);
	json_decref(m);
}

static void refused(void)
{
	char *err = NULL;
	json_t *recs = json_array();
	CHECK(!rb_replay_model(recs, &err) && err && !strcmp(err, "no records"), "empty: %s",
	      err ? err : "");
	free(err);
	json_decref(recs);
	recs = records("[{\"type\":\"run_started\"},{\"type\":\"run_started\",\"run_id\":\"r2\"}]");
	err = NULL;
	CHECK(!rb_replay_model(recs, &err) && err && !strcmp(err, "records of two runs: r1 and r2"),
	      "two runs: %s", err ? err : "");
	free(err);
	json_decref(recs);
	recs = json_loads("[{\"type\":\"run_started\"}]", 0, NULL);
	err = NULL;
	CHECK(!rb_replay_model(recs, &err) && err && !strcmp(err, "record 1 is not an audit record"),
	      "no ts: %s", err ? err : "");
	free(err);
	json_decref(recs);
}

int main(void)
{
	rejected_gate();
	check_satisfied();
	items_retried();
	open_and_odd();
	escapes();
	refused();
	printf("replay: %d passed, %d failed\n", npass, nfail);
	return nfail != 0;
}
