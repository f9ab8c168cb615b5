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

/* Add to set the path of each value that differs between a and b. */
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
				json_object_set_new(set, p, json_true());
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
		json_object_set_new(set, path, json_true());
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

int rb_review_save(json_t *plan, const char *path)
{
	char hex[65], *err = NULL;
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
	int rc = RB_EXIT_OK;
	size_t n = strlen(s);
	s[n] = '\n';    /* json_dumps's NUL becomes the final newline */
	if (!*name || rb_write_durable(dir, name, s, n + 1, 0644, &err) < 0) {
		rb_cli_error("plan: cannot write %s: %s", path, err ? err : "not a file name");
		rc = RB_EXIT_FAILED;
	}
	free(err);
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

/* Print each difference between the reviewed a and the current b under path. */
static int differ(const char *path, const json_t *a, const json_t *b, int *left)
{
	if (json_equal((json_t *)a, (json_t *)b))
		return 0;
	if (a && b && json_is_object(a) && json_is_object(b)) {
		int n = 0;
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)a, k, v) {
			char *p = rb_xasprintf("%s%s%s", path, *path ? "." : "", k);
			n += differ(p, v, json_object_get(b, k), left);
			free(p);
		}
		json_object_foreach((json_t *)b, k, v)
			if (!json_object_get(a, k)) {
				char *p = rb_xasprintf("%s%s%s", path, *path ? "." : "", k);
				n += differ(p, NULL, v, left);
				free(p);
			}
		return n;
	}
	if (a && b && json_is_array(a) && json_is_array(b) &&
	    json_array_size(a) == json_array_size(b)) {
		int n = 0;
		for (size_t i = 0; i < json_array_size(a); i++) {
			char *p = rb_xasprintf("%s[%zu]", path, i);
			n += differ(p, json_array_get(a, i), json_array_get(b, i), left);
			free(p);
		}
		return n;
	}
	if ((*left)-- > 0) {
		char *x = shown(a), *y = shown(b);
		rb_cli_error("run: %s differs from the reviewed plan: reviewed %s, now %s", path, x, y);
		free(x);
		free(y);
	}
	return 1;
}

int rb_review_check(const json_t *plan, const char *path, char hash[65])
{
	char *buf = NULL, *err = NULL;
	size_t len = 0;
	if (rb_read_file(path, RB_REVIEW_MAX, &buf, &len, &err) < 0) {
		fprintf(stderr, "%s: error: %s\n", path, err);
		free(err);
		return RB_EXIT_INVALID;
	}
	if (len > RB_REVIEW_MAX) {
		fprintf(stderr, "%s: error: larger than %d MiB: no saved plan is\n", path,
			RB_REVIEW_MAX >> 20);
		free(buf);
		return RB_EXIT_INVALID;
	}
	json_error_t je;
	json_t *saved = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	free(buf);
	if (!saved) {
		fprintf(stderr, "%s:%d:%d: error: not a saved plan: %s\n", path, je.line, je.column,
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
		fprintf(stderr, "%s: error: not a saved plan of this version of runbook (format "
			"runbook-plan, format_version %lld): make it with runbook plan --save\n",
			path, (long long)json_integer_value(json_object_get((json_t *)plan,
									   "format_version")));
		rc = RB_EXIT_INVALID;
		goto out;
	}
	if (add_paths(set, json_object_get(saved, "time_dependent")) < 0 ||
	    add_paths(set, json_object_get((json_t *)plan, "time_dependent")) < 0) {
		fprintf(stderr, "%s: error: not a saved plan: time_dependent is not a list of "
			"paths\n", path);
		rc = RB_EXIT_INVALID;
		goto out;
	}
	if (!h || strlen(h) != 64 || strspn(h, "0123456789abcdef") != 64) {
		fprintf(stderr, "%s: error: the plan has no review.sha256 (64 hex digits): make "
			"it with runbook plan --save\n", path);
		rc = RB_EXIT_INVALID;
		goto out;
	}
	plan_hash(saved, now);
	if (strcmp(now, h)) {
		fprintf(stderr, "%s: error: the plan's contents do not match its review.sha256: "
			"it was changed after it was saved\n", path);
		rc = RB_EXIT_INVALID;
		goto out;
	}
	/* What differs, from the most telling: the runbook's bytes, a param, a value. */
	json_t *a = comparable(saved, set), *b = comparable(plan, set);
	int left = 20, n = 0;
	const json_t *sa = json_object_get(json_object_get(a, "runbook"), "sha256");
	const json_t *sb = json_object_get(json_object_get(b, "runbook"), "sha256");
	if (!json_equal((json_t *)sa, (json_t *)sb)) {
		rb_cli_error("run: the runbook's bytes differ from the reviewed plan's (sha256 "
			     "%.12s, reviewed %.12s)", json_string_value(sb), json_string_value(sa));
		n++;
	} else {
		n = differ("", a, b, &left);
	}
	if (n) {
		if (left < 0)
			rb_cli_error("run: and %d more differences", -left);
		rb_cli_error("run: refused: this is not the plan reviewed in %s (sha256 %.12s); "
			     "review the new one (runbook plan --save)", path, h);
		rc = RB_EXIT_PLAN_DIFFERS;
	} else {
		memcpy(hash, h, 65);
	}
	json_decref(a);
	json_decref(b);
out:
	json_decref(set);
	json_decref(saved);
	return rc;
}
