/*
 * plan --save and run --plan (plan_review.h).  The hash is SHA-256 over the
 * JSON plan in canonical form (keys sorted, compact), without the file name
 * it was given by: the plan holds the runbook's SHA-256, the params, the
 * vars and every value known before the run, and the secrets' sources, never
 * their values (***).  The saved file is parsed by jansson alone.
 *
 * A value computed from the time the run starts (time.now(), run.started_at
 * and what is made of them) cannot be the same at review and at run: the
 * plan is made a second time with the clock moved on, and the values that
 * changed are listed in "time_dependent" and left out of the comparison and
 * the hash (their expressions are in the runbook's bytes, which are in it).
 */
#include "plan_review.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "diag.h"
#include "luabox.h"
#include "durable.h"
#include "plan.h"
#include "redact.h"
#include "runbook.h"
#include "util.h"

/*
 * The clock moved on for the second plan: a year, a month, a day, an hour, a
 * minute and a second, so that every field of a date differs (and the weekday).
 */
#define CLOCK_SHIFT     ((398.0 * 24 + 1) * 3600 + 61)

static char *child(const char *path, const char *key)
{
	return rb_xasprintf("%s%s%s", path, *path ? "." : "", key);
}

/* A difference: {"reviewed", "now"}, each absent where its side has no value. */
static json_t *pair(const json_t *a, const json_t *b)
{
	json_t *d = json_object();
	if (a)
		json_object_set(d, "reviewed", (json_t *)a);
	if (b)
		json_object_set(d, "now", (json_t *)b);
	return d;
}

/* Add to set the path of each value that differs between a and b, with the two values. */
static void differing(const char *path, const json_t *a, const json_t *b, json_t *set)
{
	if (json_equal((json_t *)a, (json_t *)b))
		return;
	if (json_is_object(a) && json_is_object(b)) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)a, k, v) {
			char *p = child(path, k);
			differing(p, v, json_object_get(b, k), set);
			free(p);
		}
		json_object_foreach((json_t *)b, k, v)
			if (!json_object_get(a, k)) {
				char *p = child(path, k);
				json_object_set_new(set, p, pair(NULL, v));
				free(p);
			}
	} else if (json_is_array(a) && json_is_array(b) &&
		   json_array_size(a) == json_array_size(b)) {
		for (size_t i = 0; i < json_array_size(a); i++) {
			char *p = rb_xasprintf("%s[%zu]", path, i);
			differing(p, json_array_get(a, i), json_array_get(b, i), set);
			free(p);
		}
	} else {
		json_object_set_new(set, path, pair(a, b));
	}
}

/* A copy of v with null at each path of set. */
static json_t *masked(const char *path, const json_t *v, const json_t *set)
{
	if (json_object_get(set, path))
		return json_null();
	if (json_is_object(v)) {
		json_t *o = json_object();
		const char *k;
		json_t *x;
		json_object_foreach((json_t *)v, k, x) {
			char *p = child(path, k);
			json_object_set_new(o, k, masked(p, x, set));
			free(p);
		}
		return o;
	}
	if (json_is_array(v)) {
		json_t *a = json_array();
		for (size_t i = 0; i < json_array_size(v); i++) {
			char *p = rb_xasprintf("%s[%zu]", path, i);
			json_array_append_new(a, masked(p, json_array_get(v, i), set));
			free(p);
		}
		return a;
	}
	return json_incref((json_t *)v);
}

/* Add the strings of a saved plan's time_dependent to set; -1 if it is no list of them. */
static int add_paths(json_t *set, const json_t *list)
{
	size_t i;
	json_t *p;
	if (!json_is_array(list))
		return -1;
	json_array_foreach(list, i, p) {
		if (!json_is_string(p))
			return -1;
		json_object_set_new(set, json_string_value(p), json_true());
	}
	return 0;
}

/* What is compared and hashed: plan without its review, file name and time-dependent values. */
static json_t *comparable(const json_t *plan, const json_t *set)
{
	json_t *c = masked("", plan, set);
	json_object_del(c, "review");
	json_object_del(c, "time_dependent");
	json_object_del(json_object_get(c, "runbook"), "file");
	return c;
}

static json_t *json_plan(struct rb_runbook *rb, json_t *pj, struct rb_diags *d)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	if (!mem)
		return NULL;
	struct rb_plan_out po = {.f = mem, .color = 0};
	int ok = rb_plan_write(rb, pj, &rb_plan_json, &po, d) == 0;
	fclose(mem);
	json_t *plan = NULL;
	if (ok) {
		struct rb_redactor *r = rb_redactor_new();
		char *clean = NULL;
		size_t clen = len;
		if (rb_runbook_add_patterns(rb, r))
			clean = rb_redact(r, buf, len, &clen);
		plan = json_loadb(clean ? clean : buf, clen, 0, NULL);
		free(clean);
		rb_redactor_free(r);
	}
	free(buf);
	return plan;
}

json_t *rb_review_plan(struct rb_runbook *rb, json_t *pj, struct rb_diags *d)
{
	json_t *plan = json_plan(rb, pj, d);
	if (!plan)
		return NULL;
	rb_now_shift(CLOCK_SHIFT);
	json_t *later = json_plan(rb, pj, d);
	rb_now_shift(0);
	json_t *set = json_object(), *list = json_array();
	differing("", plan, later, set);
	const char *k;
	json_t *v;
	json_object_foreach(set, k, v)
		json_array_append_new(list, json_string(k));
	json_object_set_new(plan, "time_dependent", list);
	json_decref(set);
	json_decref(later);
	return plan;
}

/* The hash of plan without its review, file name and time-dependent values, as hex. */
static void plan_hash(const json_t *plan, char hex[65])
{
	json_t *set = json_object();
	add_paths(set, json_object_get(plan, "time_dependent"));
	json_t *c = comparable(plan, set);
	char *s = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	rb_sha256_hex(s, strlen(s), hex);
	free(s);
	json_decref(c);
	json_decref(set);
}

int rb_review_save(json_t *plan, const char *path, char **err)
{
	char hex[65];
	plan_hash(plan, hex);
	json_t *out = json_deep_copy(plan);
	json_object_set_new(out, "review", json_pack("{s:s, s:s}", "algorithm", "sha256",
						      "sha256", hex));
	char *s = json_dumps(out, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	json_decref(out);
	char *copy = rb_xstrdup(path), *slash = strrchr(copy, '/');
	const char *dir = ".", *name = copy;
	if (slash) {
		*slash = '\0';
		dir = slash == copy ? "/" : copy;
		name = slash + 1;
	}
	int rc = 0;
	size_t n = strlen(s);
	s[n] = '\n';    /* json_dumps's NUL becomes the final newline */
	char *why = NULL;
	if (!*name || rb_write_durable(dir, name, s, n + 1, 0644, &why) < 0) {
		*err = rb_xasprintf("cannot write %s: %s", path, why ? why : "not a file name");
		rc = -1;
	}
	free(why);
	free(copy);
	free(s);
	return rc;
}

/* A value for a message: JSON, at most 60 characters. */
static char *shown(const json_t *v)
{
	if (!v)
		return rb_xstrdup("(none)");
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
	if (s && strlen(s) > 60)
		strcpy(s + 57, "...");
	return s ? s : rb_xstrdup("?");
}

/* One line of msgs, formatted. */
static void say(struct rb_strv *msgs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct rb_strv *msgs, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	rb_strv_push(msgs, rb_xvasprintf(fmt, ap));
	va_end(ap);
}

/* The differences of set (differing()), the first MAX_SHOWN of them, into msgs. */
enum { MAX_SHOWN = 20 };
static void say_differences(struct rb_strv *msgs, const json_t *set)
{
	const char *path;
	json_t *v;
	size_t n = 0;
	json_object_foreach((json_t *)set, path, v) {
		if (n++ == MAX_SHOWN)
			continue;
		char *x = shown(json_object_get(v, "reviewed")), *y = shown(json_object_get(v, "now"));
		say(msgs, "run: %s differs from the reviewed plan: reviewed %s, now %s", path, x, y);
		free(x);
		free(y);
	}
	if (n > MAX_SHOWN)
		say(msgs, "run: and %zu more differences", n - MAX_SHOWN);
}

int rb_review_check(const json_t *plan, const char *path, char hash[65], struct rb_strv *msgs)
{
	char *buf = NULL, *err = NULL;
	size_t len = 0;
	if (rb_read_file(path, RB_REVIEW_MAX, &buf, &len, &err) < 0) {
		say(msgs, "%s: error: %s", path, err);
		free(err);
		return RB_EXIT_INVALID;
	}
	if (len > RB_REVIEW_MAX) {
		say(msgs, "%s: error: larger than %d MiB: no saved plan is", path,
		    RB_REVIEW_MAX >> 20);
		free(buf);
		return RB_EXIT_INVALID;
	}
	json_error_t je;
	json_t *saved = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	free(buf);
	if (!saved) {
		say(msgs, "%s:%d:%d: error: not a saved plan: %s", path, je.line, je.column,
		    je.text);
		return RB_EXIT_INVALID;
	}
	const json_t *review = json_object_get(saved, "review");
	const char *h = json_string_value(json_object_get(review, "sha256"));
	const char *fmt = json_string_value(json_object_get(saved, "format"));
	int rc = RB_EXIT_OK;
	char now[65];
	json_t *set = json_object();
	if (!json_is_object(saved) || !fmt || strcmp(fmt, "runbook-plan") ||
	    !json_equal(json_object_get(saved, "format_version"),
			json_object_get((json_t *)plan, "format_version"))) {
		say(msgs, "%s: error: not a saved plan of this version of runbook (format "
		    "runbook-plan, format_version %lld): make it with runbook plan --save",
			path, (long long)json_integer_value(json_object_get((json_t *)plan,
									   "format_version")));
		rc = RB_EXIT_INVALID;
		goto out;
	}
	if (add_paths(set, json_object_get(saved, "time_dependent")) < 0 ||
	    add_paths(set, json_object_get((json_t *)plan, "time_dependent")) < 0) {
		say(msgs, "%s: error: not a saved plan: time_dependent is not a list of paths",
		    path);
		rc = RB_EXIT_INVALID;
		goto out;
	}
	if (!h || strlen(h) != 64 || strspn(h, "0123456789abcdef") != 64) {
		say(msgs, "%s: error: the plan has no review.sha256 (64 hex digits): make it with "
		    "runbook plan --save", path);
		rc = RB_EXIT_INVALID;
		goto out;
	}
	plan_hash(saved, now);
	if (strcmp(now, h)) {
		say(msgs, "%s: error: the plan's contents do not match its review.sha256: it was "
		    "changed after it was saved", path);
		rc = RB_EXIT_INVALID;
		goto out;
	}
	/* What differs, from the most telling: the runbook's bytes, a param, a value. */
	json_t *a = comparable(saved, set), *b = comparable(plan, set), *diff = json_object();
	const json_t *sa = json_object_get(json_object_get(a, "runbook"), "sha256");
	const json_t *sb = json_object_get(json_object_get(b, "runbook"), "sha256");
	if (!json_equal((json_t *)sa, (json_t *)sb))
		say(msgs, "run: the runbook's bytes differ from the reviewed plan's (sha256 %.12s, "
		    "reviewed %.12s)", json_string_value(sb), json_string_value(sa));
	else
		differing("", a, b, diff);
	say_differences(msgs, diff);
	if (msgs->n) {
		say(msgs, "run: refused: this is not the plan reviewed in %s (sha256 %.12s); "
		    "review the new one (runbook plan --save)", path, h);
		rc = RB_EXIT_PLAN_DIFFERS;
	} else {
		memcpy(hash, h, 65);
	}
	json_decref(diff);
	json_decref(a);
	json_decref(b);
out:
	json_decref(set);
	json_decref(saved);
	return rc;
}
