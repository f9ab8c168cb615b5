/*
 * notify.*: alerts to Slack incoming webhooks, PagerDuty's Events API v2 and
 * generic JSON webhooks, and notify.channels, which sends one alert to the
 * channels configured as the OARS guide describes them (a JSON array of
 * {id, type: slack_webhook | pagerduty_events_v2 | generic_webhook, ...}).
 *
 * Each is built on http.request: the alert becomes that action's arguments,
 * and its start() and step() do the sending, one channel after the other,
 * with its retries on 429 and 5xx.  A webhook's URL and a routing key are
 * secrets: they reach the request and nothing else (the URL's path is left
 * out of messages, as for any URL from secrets).
 */
#include <stdlib.h>
#include <string.h>

#include "action.h"
#include "runctx.h"
#include "util.h"

#define PAGERDUTY_URL   "https://events.pagerduty.com/v2/enqueue"

static const char *const pd_actions[] = {"trigger", "acknowledge", "resolve", NULL};
static const char *const severities[] = {
	"critical", "error", "warning", "info", "SEV1", "SEV2", "SEV3", "P1", "P2", "P3", "P4", NULL,
};

static const struct rb_arg slack_args[] = {
	{"webhook_url", RB_T_STRING, RB_ARG_REQUIRED | RB_ARG_SECRET, NULL, "the incoming "
	 "webhook's URL, from secrets"},
	{"text", RB_T_STRING, RB_ARG_REQUIRED, NULL, "the message (Slack's mrkdwn)"},
	{"blocks", RB_T_LIST, 0, NULL, "Block Kit blocks, sent as they are"},
	{"timeout", RB_T_DURATION, 0, NULL, "the whole request (default 30s)"},
	{NULL, 0, 0, NULL, NULL},
};

static const struct rb_arg pd_args[] = {
	{"routing_key", RB_T_STRING, RB_ARG_REQUIRED | RB_ARG_SECRET, NULL, "the integration's "
	 "routing key, from secrets"},
	{"action", RB_T_STRING, 0, pd_actions, "trigger (the default), acknowledge or resolve"},
	{"summary", RB_T_STRING, 0, NULL, "what is wrong (required to trigger)"},
	{"dedup_key", RB_T_STRING, 0, NULL, "the alert's key: the same one acknowledges or "
	 "resolves it (default: the run id and the step's id)"},
	{"severity", RB_T_STRING, 0, severities, "critical, error (the default), warning or "
	 "info; SEV1-SEV3 and P1-P4 map to them"},
	{"source", RB_T_STRING, 0, NULL, "where it happens (default runbook)"},
	{"component", RB_T_STRING, 0, NULL, "the part that is affected"},
	{"group", RB_T_STRING, 0, NULL, "a logical group of components"},
	{"class", RB_T_STRING, 0, NULL, "the kind of event"},
	{"custom_details", RB_T_MAP, 0, NULL, "more facts, shown in the incident"},
	{"url", RB_T_STRING, 0, NULL, "the Events API's URL (default " PAGERDUTY_URL ")"},
	{"timeout", RB_T_DURATION, 0, NULL, "the whole request (default 30s)"},
	{NULL, 0, 0, NULL, NULL},
};

static const struct rb_arg hook_args[] = {
	{"url", RB_T_STRING, RB_ARG_REQUIRED | RB_ARG_SECRET, NULL, "the webhook's URL, from "
	 "secrets"},
	{"json", RB_T_ANY, RB_ARG_REQUIRED, NULL, "the body, sent as JSON"},
	{"headers", RB_T_STRING_MAP, 0, NULL, "request headers"},
	{"timeout", RB_T_DURATION, 0, NULL, "the whole request (default 30s)"},
	{NULL, 0, 0, NULL, NULL},
};

static const struct rb_arg channels_args[] = {
	{"channels", RB_T_ANY, RB_ARG_REQUIRED | RB_ARG_SECRET, NULL, "the channels: a JSON "
	 "array (text, as OARS_ALERT_CHANNELS holds it, or a list) of {id, type, ...}, from "
	 "secrets"},
	{"only", RB_T_LIST, 0, NULL, "the ids of the channels to send to (default all)"},
	{"title", RB_T_STRING, RB_ARG_REQUIRED, NULL, "the alert's one line"},
	{"text", RB_T_STRING, 0, NULL, "more words"},
	{"severity", RB_T_STRING, 0, severities, "as notify.pagerduty's (default error)"},
	{"dedup_key", RB_T_STRING, 0, NULL, "the alert's key for PagerDuty (default: the run id "
	 "and the step's id)"},
	{"action", RB_T_STRING, 0, pd_actions, "for PagerDuty: trigger (the default), "
	 "acknowledge or resolve"},
	{"details", RB_T_MAP, 0, NULL, "more facts, sent to every channel"},
	{"timeout", RB_T_DURATION, 0, NULL, "each channel's request (default 30s)"},
	{NULL, 0, 0, NULL, NULL},
};

/* PagerDuty's severity for any of the accepted names. */
static const char *pd_severity(const char *s)
{
	if (!s)
		return "error";
	if (!strcmp(s, "SEV1") || !strcmp(s, "P1"))
		return "critical";
	if (!strcmp(s, "SEV2") || !strcmp(s, "P2"))
		return "error";
	if (!strcmp(s, "SEV3") || !strcmp(s, "P3"))
		return "warning";
	if (!strcmp(s, "P4"))
		return "info";
	return s;
}

/* The URL's arguments of a request, when the URL is a secret. */
static const char *const secret_url[] = {"url", NULL};

/* One request to send: its channel, and the arguments of http.request. */
struct send {
	char *id, *type;
	json_t *args;
};

struct notify {
	const struct rb_call *c;
	struct rb_call call;            /* http.request's: c's, with the request's arguments */
	struct send *sends;
	size_t nsends, sendcap, next;
	void *http;                     /* the request under way */
	json_t *results;
	int list;                       /* the output is {channels: [...]} (notify.channels) */
	int failed;
	char *error;                    /* the first failure */
};

static json_t *http_args(const char *url, json_t *body, const json_t *headers,
			 const json_t *timeout)
{
	json_t *a = json_pack("{s:s, s:s, s:o}", "method", "POST", "url", url, "json", body);
	if (headers)
		json_object_set(a, "headers", (json_t *)headers);
	json_object_set_new(a, "timeout", timeout ? json_incref((json_t *)timeout) : json_string("30s"));
	return a;
}

static void add_send(struct notify *n, const char *id, const char *type, json_t *args)
{
	rb_grow(&n->sends, &n->sendcap, n->nsends + 1, sizeof(*n->sends));
	n->sends[n->nsends++] = (struct send){rb_xstrdup(id), rb_xstrdup(type), args};
}

/* A key that is the same for each attempt and resume of the call. */
static char *default_dedup(const struct rb_call *c)
{
	char key[33];
	rb_call_key(c, key);
	return rb_xasprintf("runbook-%s", key);
}

static json_t *pd_body(const struct rb_call *c, const char *key, const char *action,
		       const char *summary, const char *severity, const char *source,
		       const json_t *a)
{
	char *dedup = NULL;
	if (!rb_arg_str(a, "dedup_key"))
		dedup = default_dedup(c);
	json_t *b = json_pack("{s:s, s:s, s:s}", "routing_key", key, "event_action",
			      action ? action : "trigger", "dedup_key",
			      dedup ? dedup : rb_arg_str(a, "dedup_key"));
	free(dedup);
	if (!action || !strcmp(action, "trigger")) {
		json_t *p = json_pack("{s:s, s:s, s:s}", "summary", summary ? summary : "",
				      "severity", pd_severity(severity), "source",
				      source ? source : "runbook");
		static const char *const opt[] = {"component", "group", "class", NULL};
		for (const char *const *o = opt; *o; o++)
			if (rb_arg_str(a, *o))
				json_object_set_new(p, *o, json_string(rb_arg_str(a, *o)));
		json_t *d = json_object_get(a, "custom_details");
		if (!d)
			d = json_object_get(a, "details");
		d = json_is_object(d) ? json_copy(d) : json_object();
		/* Where the run's log stood: it can be checked against this copy later. */
		json_object_set_new(d, "run_id", json_string(rb_runctx_id(c->run)));
		if (c->audit_head)
			json_object_set_new(d, "audit_head", json_string(c->audit_head));
		json_object_set_new(p, "custom_details", d);
		json_object_set_new(b, "payload", p);
	}
	json_object_set_new(b, "client", json_string("runbook"));
	return b;
}

static json_t *slack_body(const struct rb_call *c, const char *title, const char *text,
			  const json_t *details)
{
	struct rb_buf b;
	rb_buf_init(&b);
	if (title)
		rb_buf_printf(&b, "*%s*", title);
	if (text)
		rb_buf_printf(&b, "%s%s", title ? "\n" : "", text);
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)details, k, v) {
		char *t = json_is_string(v) ? rb_xstrdup(json_string_value(v))
			  : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		rb_buf_printf(&b, "\n%s: %s", k, t);
		free(t);
	}
	rb_buf_printf(&b, "\nrun %s", rb_runctx_id(c->run));
	if (c->audit_head)
		rb_buf_printf(&b, ", audit log head %s", c->audit_head);
	json_t *body = json_pack("{s:s}", "text", b.s ? b.s : "");
	rb_buf_release(&b);
	return body;
}

/* The channels, as written: a JSON array, as text or as a list; NULL with *why. */
static json_t *parse_channels(const json_t *v, char **why)
{
	json_t *list = NULL;
	if (json_is_string(v)) {
		json_error_t e;
		list = json_loads(json_string_value(v), 0, &e);
		if (!list) {    /* no quote of the text: it holds the webhooks' URLs */
			*why = rb_xasprintf("not JSON (line %d, column %d: %s)", e.line, e.column,
					    rb_json_why(&e));
			return NULL;
		}
	} else {
		list = json_incref((json_t *)v);
	}
	if (!json_is_array(list)) {
		*why = rb_xstrdup("expected a JSON array of channels");
		json_decref(list);
		return NULL;
	}
	size_t k;
	json_t *ch;
	json_array_foreach(list, k, ch) {
		const char *id = rb_arg_str(ch, "id"), *type = rb_arg_str(ch, "type");
		const char *need = !type ? NULL : !strcmp(type, "pagerduty_events_v2") ? "routingKey"
				   : !strcmp(type, "slack_webhook") || !strcmp(type, "generic_webhook")
				   ? "url" : NULL;
		if (!json_is_object(ch) || !id || !type)
			*why = rb_xasprintf("channel %zu: expected {id, type, ...}", k + 1);
		else if (!need)
			*why = rb_xasprintf("channel '%s': unknown type (slack_webhook, "
					    "pagerduty_events_v2, generic_webhook)", id);
		else if (!rb_arg_str(ch, need))
			*why = rb_xasprintf("channel '%s' (%s) has no %s", id, type, need);
		if (*why) {
			json_decref(list);
			return NULL;
		}
	}
	return list;
}

static int channels_check(const json_t *args, const json_t *later, struct rb_arg_error *e)
{
	(void)later;
	json_t *ch = json_object_get(args, "channels");
	char *why = NULL;
	if (ch) {
		json_t *list = parse_channels(ch, &why);
		if (!list)
			return rb_arg_fail(e, "channels", -1, why);
		json_decref(list);
	}
	return 0;
}

static int pd_check(const json_t *args, const json_t *later, struct rb_arg_error *e)
{
	const char *action = rb_arg_str(args, "action");
	if ((!action || !strcmp(action, "trigger")) && !rb_arg_later(later, "action") &&
	    !rb_arg_given(args, later, "summary"))
		return rb_arg_fail(e, "summary", -1, rb_xstrdup("a trigger needs a summary"));
	return 0;
}

static void free_notify(struct notify *n)
{
	for (size_t k = 0; k < n->nsends; k++) {
		free(n->sends[k].id);
		free(n->sends[k].type);
		json_decref(n->sends[k].args);
	}
	free(n->sends);
	json_decref(n->results);
	free(n->error);
	free(n);
}

/* Start the next request; 0, or 1 when none is left. */
static int start_next(struct notify *n)
{
	while (n->next < n->nsends) {
		struct send *s = &n->sends[n->next];
		n->call.args = s->args;
		struct rb_result r = {0};
		n->http = act_http_request.start(&n->call, &r);
		if (n->http)
			return 0;
		/* It could not start: its result is in r. */
		json_array_append_new(n->results, json_pack("{s:s, s:s, s:b, s:s}", "id", s->id,
							    "type", s->type, "ok", 0, "error",
							    r.error ? r.error : "failed"));
		if (!n->failed)
			n->error = rb_xasprintf("%s: %s", s->id, r.error ? r.error : "failed");
		n->failed = 1;
		free(r.error);
		json_decref(r.output);
		n->next++;
	}
	return 1;
}

static void *notify_begin(const struct rb_call *c, struct notify *n, struct rb_result *res)
{
	n->c = c;
	n->call = *c;
	n->call.secret_args = secret_url;
	n->call.spill_path = NULL;      /* an alert's answer is short; no files */
	n->results = json_array();
	if (start_next(n)) {            /* nothing could start */
		res->outcome = RB_FAILED;
		res->output = json_pack("{s:O}", "channels", n->results);
		res->error = n->error ? n->error : rb_xstrdup("no channel to send to");
		n->error = NULL;
		free_notify(n);
		return NULL;
	}
	return n;
}

static void *slack_start(const struct rb_call *c, struct rb_result *res)
{
	struct notify *n = rb_xcalloc(1, sizeof(*n));
	const json_t *a = c->args;
	json_t *body = json_pack("{s:s}", "text", rb_arg_str(a, "text"));
	if (json_object_get(a, "blocks"))
		json_object_set(body, "blocks", json_object_get(a, "blocks"));
	add_send(n, "slack", "slack_webhook", http_args(rb_arg_str(a, "webhook_url"), body, NULL,
							 json_object_get(a, "timeout")));
	return notify_begin(c, n, res);
}

static void *pd_start(const struct rb_call *c, struct rb_result *res)
{
	struct notify *n = rb_xcalloc(1, sizeof(*n));
	const json_t *a = c->args;
	json_t *body = pd_body(c, rb_arg_str(a, "routing_key"), rb_arg_str(a, "action"),
			       rb_arg_str(a, "summary"), rb_arg_str(a, "severity"), rb_arg_str(a, "source"), a);
	add_send(n, "pagerduty", "pagerduty_events_v2", http_args(
		rb_arg_str(a, "url") ? rb_arg_str(a, "url") : PAGERDUTY_URL, body, NULL,
		json_object_get(a, "timeout")));
	return notify_begin(c, n, res);
}

static void *hook_start(const struct rb_call *c, struct rb_result *res)
{
	struct notify *n = rb_xcalloc(1, sizeof(*n));
	const json_t *a = c->args;
	add_send(n, "webhook", "generic_webhook", http_args(
		rb_arg_str(a, "url"), json_incref(json_object_get(a, "json")),
		json_object_get(a, "headers"), json_object_get(a, "timeout")));
	return notify_begin(c, n, res);
}

static void *channels_start(const struct rb_call *c, struct rb_result *res)
{
	const json_t *a = c->args;
	char *why = NULL;
	json_t *list = parse_channels(json_object_get(a, "channels"), &why);
	if (!list) {
		res->outcome = RB_BROKEN;
		res->error = rb_xasprintf("channels: %s", why);
		free(why);
		return NULL;
	}
	struct notify *n = rb_xcalloc(1, sizeof(*n));
	n->list = 1;
	const char *title = rb_arg_str(a, "title"), *text = rb_arg_str(a, "text");
	const json_t *details = json_object_get(a, "details"), *timeout = json_object_get(a, "timeout");
	size_t k;
	json_t *ch;
	json_array_foreach(list, k, ch) {
		const char *id = rb_arg_str(ch, "id"), *type = rb_arg_str(ch, "type");
		const json_t *only = json_object_get(a, "only");
		if (only && !rb_strlist_has(only, id))
			continue;
		json_t *args;
		if (!strcmp(type, "slack_webhook")) {
			args = http_args(rb_arg_str(ch, "url"), slack_body(c, title, text, details),
					 NULL, timeout);
		} else if (!strcmp(type, "pagerduty_events_v2")) {
			char *summary = text ? rb_xasprintf("%s: %s", title, text) : rb_xstrdup(title);
			args = http_args(rb_arg_str(ch, "url") ? rb_arg_str(ch, "url") : PAGERDUTY_URL,
					 pd_body(c, rb_arg_str(ch, "routingKey"), rb_arg_str(a, "action"),
						 summary, rb_arg_str(a, "severity"), rb_arg_str(ch, "source"),
						 a), NULL, timeout);
			free(summary);
		} else {
			json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "title", title, "severity",
						 pd_severity(rb_arg_str(a, "severity")), "source",
						 "runbook", "run_id", rb_runctx_id(c->run));
			if (text)
				json_object_set_new(body, "text", json_string(text));
			if (details)
				json_object_set(body, "details", (json_t *)details);
			if (c->audit_head)
				json_object_set_new(body, "audit_head", json_string(c->audit_head));
			args = http_args(rb_arg_str(ch, "url"), body, json_object_get(ch, "headers"),
					 timeout);
		}
		add_send(n, id, type, args);
	}
	json_decref(list);
	return notify_begin(c, n, res);
}

static int notify_step(void *state, struct pollfd *fds, int *nfds, long *timeout_ms,
		       struct rb_result *res)
{
	struct notify *n = state;
	for (;;) {
		struct rb_result r = {0};
		if (!act_http_request.step(n->http, fds, nfds, timeout_ms, &r))
			return 0;
		struct send *s = &n->sends[n->next++];
		json_t *one = json_pack("{s:s, s:s, s:b}", "id", s->id, "type", s->type, "ok",
					r.outcome == RB_OK);
		json_t *status = json_object_get(r.output, "status");
		if (status)
			json_object_set(one, "status", status);
		json_t *dedup = json_object_get(json_object_get(r.output, "json"), "dedup_key");
		if (json_is_string(dedup))
			json_object_set(one, "dedup_key", dedup);
		if (r.error)
			json_object_set_new(one, "error", json_string(r.error));
		json_array_append_new(n->results, one);
		if (r.outcome != RB_OK && !n->failed) {
			n->failed = 1;
			n->error = rb_xasprintf("%s: %s", s->id, r.error ? r.error : "failed");
			/* A cancel or the deadline ends every channel: the last one says how. */
			if (r.outcome == RB_CANCELLED || r.outcome == RB_TIMED_OUT)
				res->outcome = r.outcome;
		}
		free(r.error);
		free(r.warning);
		json_decref(r.output);
		json_decref(r.secrets);
		*nfds = 0;
		if (res->outcome == RB_CANCELLED || res->outcome == RB_TIMED_OUT ||
		    start_next(n)) {
			json_t *first = json_array_get(n->results, 0);
			res->output = !n->list && first ? json_deep_copy(first)
				      : json_pack("{s:O}", "channels", n->results);
			if (n->failed && res->outcome == RB_OK)
				res->outcome = RB_FAILED;
			res->error = n->error;
			n->error = NULL;
			free_notify(n);
			return 1;
		}
	}
}

static enum rb_effect slack_effect(const json_t *args, const json_t *later, char **what)
{
	(void)args;
	(void)later;
	*what = rb_xstrdup("posts to a Slack webhook");
	return RB_EFFECT_WRITES;
}

static enum rb_effect pd_effect(const json_t *args, const json_t *later, char **what)
{
	(void)later;
	const char *action = rb_arg_str(args, "action");
	*what = rb_xasprintf("sends a PagerDuty %s event", action ? action : "trigger");
	return RB_EFFECT_WRITES;
}

static enum rb_effect hook_effect(const json_t *args, const json_t *later, char **what)
{
	(void)args;
	(void)later;
	*what = rb_xstrdup("posts to a webhook");
	return RB_EFFECT_WRITES;
}

static enum rb_effect channels_effect(const json_t *args, const json_t *later, char **what)
{
	(void)later;
	json_t *only = json_object_get(args, "only");
	if (json_is_array(only)) {
		struct rb_buf b;
		rb_buf_init(&b);
		size_t k;
		json_t *v;
		json_array_foreach(only, k, v)
			rb_buf_printf(&b, "%s%s", k ? ", " : "", json_is_string(v)
				      ? json_string_value(v) : "?");
		*what = rb_xasprintf("sends an alert to the channels %s", b.s ? b.s : "");
		rb_buf_release(&b);
	} else {
		*what = rb_xstrdup("sends an alert to every configured channel");
	}
	return RB_EFFECT_WRITES;
}

static const struct rb_output one_outputs[] = {
	{"ok", "whether the service took it"},
	{"status", "the HTTP status of its answer"},
	{"dedup_key", "PagerDuty: the alert's key, to acknowledge or resolve it later"},
	{"error", "why it failed"},
	{NULL, NULL},
};

static const struct rb_output channels_outputs[] = {
	{"channels", "one entry per channel sent to: {id, type, ok, status, dedup_key, error}"},
	{NULL, NULL},
};

const struct rb_action act_notify_slack = {
	.name = "notify.slack",
	.summary = "post a message to a Slack incoming webhook",
	.args = slack_args,
	.outputs = one_outputs,
	.example = "- id: tell_ops\n"
		   "  action: notify.slack\n"
		   "  with:\n"
		   "    webhook_url: ${{ secrets.slack_ops }}\n"
		   "    text: \"Evening maintenance done on ${{ params.env }}\"\n",
	.flags = RB_ACT_SIDE_EFFECTS,
	.effect = slack_effect,
	.start = slack_start,
	.step = notify_step,
};

const struct rb_action act_notify_pagerduty = {
	.name = "notify.pagerduty",
	.summary = "send an event to PagerDuty's Events API v2: trigger, acknowledge or resolve "
		   "an alert",
	.args = pd_args,
	.outputs = one_outputs,
	.example = "- id: page\n"
		   "  action: notify.pagerduty\n"
		   "  with:\n"
		   "    routing_key: ${{ secrets.pd_routing_key }}\n"
		   "    summary: \"API health check failed on ${{ params.env }}\"\n"
		   "    severity: SEV1\n"
		   "    dedup_key: api-health-${{ params.env }}\n",
	.flags = RB_ACT_SIDE_EFFECTS | RB_ACT_IDEMPOTENT,
	.check = pd_check,
	.effect = pd_effect,
	.start = pd_start,
	.step = notify_step,
};

const struct rb_action act_notify_webhook = {
	.name = "notify.webhook",
	.summary = "post a JSON body to a webhook",
	.args = hook_args,
	.outputs = one_outputs,
	.example = "- id: tell_statuspage\n"
		   "  action: notify.webhook\n"
		   "  with:\n"
		   "    url: ${{ secrets.status_hook }}\n"
		   "    json: {component: api, status: degraded}\n",
	.flags = RB_ACT_SIDE_EFFECTS,
	.effect = hook_effect,
	.start = hook_start,
	.step = notify_step,
};

const struct rb_action act_notify_channels = {
	.name = "notify.channels",
	.summary = "send one alert to the configured channels (slack_webhook, "
		   "pagerduty_events_v2, generic_webhook), one after the other",
	.args = channels_args,
	.outputs = channels_outputs,
	.example = "on_failure:\n"
		   "  - id: alert\n"
		   "    action: notify.channels\n"
		   "    with:\n"
		   "      channels: ${{ secrets.alert_channels }}   # {env: OARS_ALERT_CHANNELS}\n"
		   "      title: \"backup-drill failed\"\n"
		   "      severity: SEV2\n"
		   "      details: {run: \"${{ run.id }}\"}\n",
	.flags = RB_ACT_SIDE_EFFECTS,
	.check = channels_check,
	.effect = channels_effect,
	.start = channels_start,
	.step = notify_step,
};
