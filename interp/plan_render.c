/*
 * Renders the plan document for people: text for the terminal (colour only
 * when asked) and markdown for pull-request comments.  Reads only the JSON
 * that plan.c built, so all three formats say the same thing.  What comes
 * from the runbook is shown with its control characters visible (util.h),
 * and in markdown it cannot leave its code span or fence, nor format.
 */
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "util.h"

struct out {
	FILE *f;
	int color;
	struct rb_strv shown;   /* what vis() made, freed by out_release */
};

static void out_release(struct out *o)
{
	rb_strv_release(&o->shown);
}

/* s (NULL: NULL) on one line with its control characters visible, until out_release. */
static const char *vis(struct out *o, const char *s)
{
	if (!s)
		return NULL;
	char *v = rb_visible(s, strlen(s), RB_VIS_TAB);
	rb_strv_push(&o->shown, v);
	return v;
}

static const char *c(const struct out *o, const char *code)
{
	return o->color ? code : "";
}

#define BOLD "\033[1m"
#define DIM "\033[2m"
#define YELLOW "\033[33m"
#define CYAN "\033[36m"
#define RESET "\033[0m"

/* v as compact JSON, with what JSON leaves (C1, bidirectional controls) visible; malloc'd. */
static char *json_text(const json_t *v, size_t flags)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | flags);
	char *shown = rb_visible(s ? s : "?", s ? strlen(s) : 1, 0);
	free(s);
	return shown;
}

/*
 * A value: strings as they are, the rest as compact JSON; control characters
 * visible (a NUL too), newlines kept when keep has RB_VIS_NL.  malloc'd.
 */
static char *inline_value(const json_t *v, unsigned keep)
{
	if (json_is_string(v))
		return rb_visible(json_string_value(v), json_string_length(v), RB_VIS_TAB | keep);
	return json_text(v, JSON_PRESERVE_ORDER);
}

static void print_value(struct out *o, const char *indent, const char *key,
			const json_t *v)
{
	key = vis(o, key);
	char *s = inline_value(v, RB_VIS_NL);
	const char *nl = strchr(s, '\n');
	const char *col = strstr(s, "<known after") ? CYAN : "";
	if (!nl) {
		fprintf(o->f, "%s%s: %s%s%s\n", indent, key, c(o, col), s, c(o, RESET));
	} else {
		/* Multi-line text (scripts, Lua) as an indented block. */
		fprintf(o->f, "%s%s: |\n", indent, key);
		const char *p = s;
		while (*p) {
			const char *e = strchr(p, '\n');
			size_t len = e ? (size_t)(e - p) : strlen(p);
			fprintf(o->f, "%s  %.*s\n", indent, (int)len, p);
			p += len + (e ? 1 : 0);
		}
	}
	free(s);
}

static const char *str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* The plural's "s": "1 step", "2 steps". */
static const char *plural(size_t n)
{
	return n == 1 ? "" : "s";
}

static void retry_text(const json_t *r, char *buf, size_t size)
{
	json_int_t n = json_integer_value(json_object_get(r, "attempts"));
	const char *delay = str(r, "delay");
	const char *max = str(r, "max_delay");
	if (n <= 1) {
		buf[0] = '\0';
		return;
	}
	snprintf(buf, size, "%lld attempts, %s backoff from %s%s%s", (long long)n,
		 str(r, "backoff"), delay ? delay : "0s", max ? " up to " : "", max ? max : "");
}

/* A step's gate in the plan: none, one, or one that its approve decides at run time. */
enum gate { GATE_NO, GATE_YES, GATE_MAYBE };
static enum gate gate_of(const json_t *s)
{
	json_t *a = json_object_get(s, "approve");
	json_t *g = json_object_get(a, "gate");
	return !a || json_is_false(g) ? GATE_NO : json_is_null(g) ? GATE_MAYBE : GATE_YES;
}

static void step_text(struct out *o, const json_t *s, const char *indent)
{
	FILE *f = o->f;
	int side = json_is_true(json_object_get(s, "side_effects"));
	/* A check has no id of its own: it is shown as "check". */
	fprintf(f, "%s%s%s%s  %s", indent, c(o, BOLD), str(s, "id") ? str(s, "id") : "check",
		c(o, RESET), str(s, "form")[0] == 'a' ? str(s, "action") : str(s, "form"));
	if (side)
		fprintf(f, "  %s[side effects]%s", c(o, YELLOW), c(o, RESET));
	if (gate_of(s) != GATE_NO)
		fprintf(f, "  %s[%s]%s", c(o, YELLOW), gate_of(s) == GATE_YES ? "gate" : "gate?",
			c(o, RESET));
	if (json_object_get(s, "skipped"))
		fprintf(f, "  %s[skipped: %s is false]%s", c(o, DIM),
			str(json_object_get(s, "skipped"), "because_of"), c(o, RESET));
	fputc('\n', f);
	if (str(s, "does"))
		fprintf(f, "%s    does: %s\n", indent, vis(o, str(s, "does")));

	char in2[64];
	snprintf(in2, sizeof(in2), "%s    ", indent);
	if (str(s, "name"))
		fprintf(f, "%s%s%s%s\n", in2, c(o, DIM), vis(o, str(s, "name")), c(o, RESET));
	json_t *after = json_object_get(s, "after");
	if (json_array_size(after)) {
		fprintf(f, "%safter: ", in2);
		size_t i;
		json_t *x;
		json_array_foreach(after, i, x)
			fprintf(f, "%s%s", i ? ", " : "", json_string_value(x));
		fputc('\n', f);
	}
	json_t *cond = json_object_get(s, "if");
	if (cond) {
		char *v = inline_value(json_object_get(cond, "value"), 0);
		fprintf(f, "%sif: %s  => %s\n", in2, vis(o, str(cond, "expression")), v);
		free(v);
	}
	json_t *probe = json_object_get(s, "probe");
	json_t *explain = json_object_get(json_object_get(probe, "output"), "explain");
	if (probe && json_is_array(explain)) {  /* said what it would do; did not run */
		fprintf(f, "%sexplained (not run):\n", in2);
		size_t k;
		json_t *e;
		json_array_foreach(explain, k, e)
			fprintf(f, "%s  %zu. %s%s\n", in2, k + 1,
				vis(o, str(e, "summary") ? str(e, "summary") : str(e, "note")
				    ? str(e, "note") : str(e, "statement") ? str(e, "statement") : "?"),
				str(e, "summary") || str(e, "note") ? "" : ": no plan");
		if (str(probe, "error"))
			print_value(o, in2, "  error", json_object_get(probe, "error"));
	} else if (probe) {
		fprintf(f, "%sprobed: %s\n", in2, str(probe, "status"));
		if (str(probe, "error"))
			print_value(o, in2, "  error", json_object_get(probe, "error"));
		if (json_object_get(probe, "output"))
			print_value(o, in2, "  output", json_object_get(probe, "output"));
		if (json_object_get(probe, "outputs"))
			print_value(o, in2, "  outputs", json_object_get(probe, "outputs"));
	}
	if (json_object_get(s, "for_each")) {
		print_value(o, in2, "for each", json_object_get(s, "for_each"));
		json_int_t conc = json_integer_value(json_object_get(s, "concurrency"));
		if (conc > 1)
			fprintf(f, "%s  (%lld at once)\n", in2, (long long)conc);
	}
	json_t *appr = json_object_get(s, "approve");
	if (appr && gate_of(s) == GATE_NO) {
		if (str(appr, "expression"))
			fprintf(f, "%sapprove: no gate (%s gives false or nil)\n", in2,
				vis(o, str(appr, "expression")));
		else
			fprintf(f, "%sapprove: no gate (false)\n", in2);
	} else if (appr) {
		print_value(o, in2, "approve", json_object_get(appr, "prompt"));
		if (gate_of(s) == GATE_MAYBE)
			fprintf(f, "%s  (a gate only if %s gives a prompt or true)\n", in2,
				vis(o, str(appr, "expression")));
		if (str(appr, "timeout"))
			fprintf(f, "%s  (times out after %s)\n", in2, vis(o, str(appr, "timeout")));
	}
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(s, "with"), k, v)
		print_value(o, in2, k, v);
	char r[160];
	retry_text(json_object_get(s, "retry"), r, sizeof(r));
	const char *timeout = str(s, "timeout");
	int cont = json_is_true(json_object_get(s, "continue_on_error"));
	if (*r || timeout || cont) {
		fprintf(f, "%s", in2);
		if (timeout)
			fprintf(f, "timeout %s", timeout);
		if (*r)
			fprintf(f, "%sretry %s", timeout ? "; " : "", r);
		if (cont)
			fprintf(f, "%scontinue on error", timeout || *r ? "; " : "");
		fputc('\n', f);
	}
	json_t *outs = json_object_get(s, "outputs");
	if (outs)
		json_object_foreach(outs, k, v) {
			char *key = rb_xasprintf("output %s", k);
			print_value(o, in2, key, v);
			free(key);
		}
	if (json_is_true(json_object_get(s, "sensitive")))
		fprintf(f, "%soutput is sensitive\n", in2);
	json_t *check = json_object_get(s, "check"), *undo = json_object_get(s, "undo");
	if (check)
		step_text(o, check, in2);
	if (undo) {
		fprintf(f, "%sundo:\n", in2);
		char in3[80];
		snprintf(in3, sizeof(in3), "%s  ", in2);
		step_text(o, undo, in3);
	}
}

static void count(struct rb_plan_out *o, const json_t *s)
{
	if (o->in_failure) {
		o->fail_steps++;
		return;
	}
	o->steps++;
	o->side += json_is_true(json_object_get(s, "side_effects"));
	o->gates += gate_of(s) != GATE_NO;
	o->undo += json_object_get(s, "undo") != NULL;
}

/* "now (2026-01-01T00:00:00Z): inside the window, which closes at ..." (malloc'd), or NULL. */
static char *window_now_text(const json_t *now)
{
	if (!json_is_object(now))
		return NULL;
	const char *at = str(now, "at");
	if (json_is_true(json_object_get(now, "inside")))
		return rb_xasprintf("now (%s): inside the window, which closes at %s: a run may "
				    "start", at, str(now, "closes_at"));
	if (!str(now, "next_open"))
		return rb_xasprintf("now (%s): outside the window, which does not open in the "
				    "next 5 years", at);
	return rb_xasprintf("now (%s): outside the window: a run is refused until it opens "
			    "at %s (or --ignore-window)", at, str(now, "next_open"));
}

static void text_begin(void *ctx, const json_t *plan)
{
	struct rb_plan_out *po = ctx;
	struct out o = {po->f, po->color, {0}};
	FILE *f = po->f;
	po->header = plan;
	po->stages = json_object_get(plan, "stages");
	const json_t *h = json_object_get(plan, "runbook");
	fprintf(f, "%sPlan: %s%s (%s)\n", c(&o, BOLD), vis(&o, str(h, "name")), c(&o, RESET),
		vis(&o, str(h, "file")));
	if (str(h, "description"))
		fprintf(f, "  %s\n", vis(&o, str(h, "description")));
	const char *k;
	json_t *v;
	if (json_object_size(json_object_get(plan, "params"))) {
		fputs("  params:", f);
		json_object_foreach(json_object_get(plan, "params"), k, v) {
			char *s = json_text(v, 0);
			fprintf(f, " %s=%s", vis(&o, k), s);
			free(s);
		}
		fputc('\n', f);
	}
	json_object_foreach(json_object_get(plan, "vars"), k, v) {
		char *s = json_text(v, 0);
		fprintf(f, "  var %s = %s\n", vis(&o, k), s);
		free(s);
	}
	size_t i;
	json_array_foreach(json_object_get(plan, "secrets"), i, v)
		fprintf(f, "  secret %s from %s %s\n", vis(&o, str(v, "name")), str(v, "from"),
			vis(&o, str(v, "source")));
	if (str(h, "lock"))
		fprintf(f, "  lock: %s\n", vis(&o, str(h, "lock")));
	if (str(h, "schedule")) {
		const char *tz = str(h, "schedule_timezone");
		fprintf(f, "  schedule: %s", vis(&o, str(h, "schedule")));
		if (tz && strcmp(tz, "UTC"))
			fprintf(f, " %s", vis(&o, tz));
		fputc('\n', f);
	}
	json_t *w = json_object_get(h, "window");
	if (json_is_object(w)) {
		char *days = json_text(json_object_get(w, "days"), 0);
		fprintf(f, "  window: %s-%s %s on %s\n", vis(&o, str(w, "start")),
			vis(&o, str(w, "end")), vis(&o, str(w, "timezone")), days);
		free(days);
		char *now = window_now_text(json_object_get(w, "now"));
		if (now)
			fprintf(f, "    %s\n", now);
		free(now);
	}
	if (str(h, "timeout"))
		fprintf(f, "  timeout: %s\n", vis(&o, str(h, "timeout")));
	if (json_is_true(json_object_get(h, "rollback")))
		fputs("  rollback: undo finished steps if the run fails\n", f);
	out_release(&o);
}

static void text_step(void *ctx, const json_t *s, int first)
{
	struct rb_plan_out *po = ctx;
	struct out o = {po->f, po->color, {0}};
	if (first) {
		po->stage = (size_t)json_integer_value(json_object_get(s, "stage"));
		size_t n = json_array_size(json_array_get(po->stages, po->stage - 1));
		fprintf(po->f, "\n%sStage %zu%s", c(&o, BOLD), po->stage, c(&o, RESET));
		if (n > 1)
			fprintf(po->f, " (%zu steps in parallel)", n);
		fputc('\n', po->f);
	}
	step_text(&o, s, "  ");
	out_release(&o);
	count(po, s);
}

static void text_section(void *ctx, const json_t *stages)
{
	struct rb_plan_out *po = ctx;
	struct out o = {po->f, po->color, {0}};
	po->in_failure = 1;
	po->stages = stages;
	if (json_array_size(stages))
		fprintf(po->f, "\n%sOn failure%s", c(&o, BOLD), c(&o, RESET));
}

static void text_end(void *ctx)
{
	struct rb_plan_out *po = ctx;
	size_t stages = json_array_size(json_object_get(po->header, "stages"));
	fprintf(po->f, "\n%zu step%s in %zu stage%s: %zu with side effects, %zu gate%s, %zu with "
		"undo", po->steps, plural(po->steps), stages, plural(stages), po->side, po->gates,
		plural(po->gates), po->undo);
	if (po->fail_steps)
		fprintf(po->f, "; %zu on failure", po->fail_steps);
	fputc('\n', po->f);
}

const struct rb_plan_renderer rb_plan_text = {text_begin, text_step, text_section, text_end};

/* --- markdown -------------------------------------------------------------------- */

/* The longest run of backticks in s. */
static int max_ticks(const char *s)
{
	int ticks = 0, run = 0;
	for (const char *p = s; *p; p++) {
		run = *p == '`' ? run + 1 : 0;
		if (run > ticks)
			ticks = run;
	}
	return ticks;
}

/*
 * Inline code that its text cannot leave: delimited by more backticks than
 * any run inside it, on one line, control characters visible.  In a table
 * cell (cell), a '|' would end the cell even there: GFM takes "\|".
 */
static void md_code_in(FILE *f, const char *s, int cell)
{
	char *v = rb_visible(s, strlen(s), RB_VIS_TAB);
	int ticks = max_ticks(v);
	for (int i = 0; i <= ticks; i++)
		fputc('`', f);
	fputs(ticks ? " " : "", f);
	for (const char *p = v; *p; p++) {
		if (*p == '|' && cell)
			fputc('\\', f);
		fputc(*p, f);
	}
	fputs(ticks ? " " : "", f);
	for (int i = 0; i <= ticks; i++)
		fputc('`', f);
	free(v);
}

static void md_code(FILE *f, const char *s)
{
	md_code_in(f, s, 0);
}

/*
 * Text from the runbook as markdown prose: control characters visible, on
 * one line unless keep has RB_VIS_NL, and every character that formats
 * escaped, so that it cannot open a code span, a link, an HTML comment or
 * tag (which would hide what follows), a heading or a table cell.
 */
static void md_text(FILE *f, const char *s, unsigned keep)
{
	char *v = rb_visible(s, strlen(s), RB_VIS_TAB | keep);
	for (const char *p = v; *p; p++) {
		if (strchr("\\`*_[]<>|#&~!", *p))
			fputc('\\', f);
		fputc(*p, f);
	}
	free(v);
}

/* A step; sub names a step that hangs off another ("check", "undo"), or is NULL. */
static void md_step(FILE *f, const json_t *s, const char *sub)
{
	if (sub)
		fprintf(f, "  - %s: ", sub);
	else
		fputs("- ", f);
	if (str(s, "id")) {
		fputs("**", f);
		md_code(f, str(s, "id"));
		fputs("** ", f);
	}
	fputs(str(s, "form")[0] == 'a' ? str(s, "action") : str(s, "form"), f);
	if (str(s, "name")) {
		fputs(": ", f);
		md_text(f, str(s, "name"), 0);
	}
	if (json_is_true(json_object_get(s, "side_effects")))
		fputs(" · **side effects**", f);
	if (gate_of(s) != GATE_NO)
		fputs(gate_of(s) == GATE_YES ? " · **gate**" : " · **gate?**", f);
	if (json_object_get(s, "skipped")) {
		fputs(" · skipped (", f);
		md_code(f, str(json_object_get(s, "skipped"), "because_of"));
		fputs(" is false)", f);
	}
	fputc('\n', f);
	const char *ind = sub ? "    " : "  ";
	json_t *after = json_object_get(s, "after");
	if (json_array_size(after)) {
		fprintf(f, "%s- after ", ind);
		size_t i;
		json_t *x;
		json_array_foreach(after, i, x) {
			fputs(i ? ", " : "", f);
			md_code(f, json_string_value(x));
		}
		fputc('\n', f);
	}
	json_t *cond = json_object_get(s, "if");
	if (cond) {
		char *v = inline_value(json_object_get(cond, "value"), 0);
		fprintf(f, "%s- if ", ind);
		md_code(f, str(cond, "expression"));
		fputs(" → ", f);
		md_text(f, v, 0);
		fputc('\n', f);
		free(v);
	}
	json_t *probe = json_object_get(s, "probe");
	json_t *explain = json_object_get(json_object_get(probe, "output"), "explain");
	if (probe && json_is_array(explain)) {
		fprintf(f, "%s- explained (not run):\n", ind);
		size_t k;
		json_t *e;
		json_array_foreach(explain, k, e) {
			fprintf(f, "%s  %zu. ", ind, k + 1);
			md_text(f, str(e, "summary") ? str(e, "summary") : str(e, "note")
				? str(e, "note") : str(e, "statement") ? str(e, "statement") : "?", 0);
			fputc('\n', f);
		}
	} else if (probe) {
		char *out = inline_value(json_object_get(probe, "output"), 0);
		fprintf(f, "%s- probed: **%s**", ind, str(probe, "status"));
		if (json_object_get(probe, "output")) {
			fputs(" → ", f);
			md_code(f, out);
		}
		fputc('\n', f);
		free(out);
	}
	json_t *appr = json_object_get(s, "approve");
	if (appr && gate_of(s) == GATE_NO) {
		fprintf(f, "%s- approval: none (", ind);
		if (str(appr, "expression"))
			md_code(f, str(appr, "expression"));
		else
			fputs("false", f);
		fputs(str(appr, "expression") ? " gives false or nil)\n" : ")\n", f);
	} else if (appr) {
		char *p = inline_value(json_object_get(appr, "prompt"), 0);
		fprintf(f, "%s- approval: ", ind);
		md_text(f, p, 0);
		if (gate_of(s) == GATE_MAYBE) {
			fputs(" (a gate only if ", f);
			md_code(f, str(appr, "expression"));
			fputs(" gives a prompt or true)", f);
		}
		fputc('\n', f);
		free(p);
	}
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(s, "with"), k, v) {
		char *val = inline_value(v, RB_VIS_NL);
		fprintf(f, "%s- ", ind);
		md_code(f, k);
		if (strchr(val, '\n')) {
			/* A fence longer than any run of backticks inside: none closes it. */
			int fence = max_ticks(val) + 1;
			fence = fence < 3 ? 3 : fence;
			fprintf(f, ":\n\n%s  ", ind);
			for (int i = 0; i < fence; i++)
				fputc('`', f);
			fputc('\n', f);
			const char *p = val;
			while (*p) {
				const char *e = strchr(p, '\n');
				size_t len = e ? (size_t)(e - p) : strlen(p);
				fprintf(f, "%s  %.*s\n", ind, (int)len, p);
				p += len + (e ? 1 : 0);
			}
			fprintf(f, "%s  ", ind);
			for (int i = 0; i < fence; i++)
				fputc('`', f);
			fputs("\n\n", f);
		} else {
			fputs(": ", f);
			md_code(f, val);
			fputc('\n', f);
		}
		free(val);
	}
	char r[160];
	retry_text(json_object_get(s, "retry"), r, sizeof(r));
	if (str(s, "timeout") || *r) {
		fprintf(f, "%s- ", ind);
		if (str(s, "timeout"))
			fprintf(f, "timeout %s%s", str(s, "timeout"), *r ? "; " : "");
		if (*r)
			fprintf(f, "retry %s", r);
		fputc('\n', f);
	}
	if (json_is_true(json_object_get(s, "continue_on_error")))
		fprintf(f, "%s- continues on error\n", ind);
	if (json_object_get(s, "check"))
		md_step(f, json_object_get(s, "check"), "check");
	if (json_object_get(s, "undo"))
		md_step(f, json_object_get(s, "undo"), "undo");
}

/* A header row for each of o's names: "| what `NAME` | `VALUE as JSON` |". */
static void md_values(FILE *f, const char *what, const json_t *o)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v) {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		fprintf(f, "| %s ", what);
		md_code_in(f, k, 1);
		fputs(" | ", f);
		md_code_in(f, s, 1);
		fputs(" |\n", f);
		free(s);
	}
}

static void md_begin(void *ctx, const json_t *plan)
{
	struct rb_plan_out *po = ctx;
	FILE *f = po->f;
	po->header = plan;
	po->stages = json_object_get(plan, "stages");
	const json_t *h = json_object_get(plan, "runbook");
	fputs("## Plan: ", f);
	md_code(f, str(h, "name"));
	fputc('\n', f);
	if (str(h, "description")) {
		fputc('\n', f);
		md_text(f, str(h, "description"), RB_VIS_NL);
		fputc('\n', f);
	}
	fputs("\n| | |\n| --- | --- |\n| file | ", f);
	md_code_in(f, str(h, "file"), 1);
	fprintf(f, " (sha256 `%.12s`) |\n", str(h, "sha256"));
	/* The same rows as the text plan's header, in its order. */
	md_values(f, "param", json_object_get(plan, "params"));
	md_values(f, "var", json_object_get(plan, "vars"));
	json_t *v;
	size_t i;
	json_array_foreach(json_object_get(plan, "secrets"), i, v) {
		fputs("| secret ", f);
		md_code_in(f, str(v, "name"), 1);
		fprintf(f, " | from %s ", str(v, "from"));
		md_code_in(f, str(v, "source"), 1);
		fputs(" |\n", f);
	}
	if (str(h, "lock")) {
		fputs("| lock | ", f);
		md_code_in(f, str(h, "lock"), 1);
		fputs(" |\n", f);
	}
	if (str(h, "schedule")) {
		fputs("| schedule | ", f);
		md_code_in(f, str(h, "schedule"), 1);
		const char *tz = str(h, "schedule_timezone");
		if (tz && strcmp(tz, "UTC")) {
			fputs(" ", f);
			md_code_in(f, tz, 1);
		}
		fputs(" |\n", f);
	}
	json_t *w = json_object_get(h, "window");
	if (json_is_object(w)) {
		char *days = json_dumps(json_object_get(w, "days"), JSON_COMPACT);
		char *text = rb_xasprintf("%s-%s %s on %s", str(w, "start"), str(w, "end"),
					  str(w, "timezone"), days);
		fputs("| window | ", f);
		md_code_in(f, text, 1);
		char *now = window_now_text(json_object_get(w, "now"));
		if (now) {
			fputs("<br>", f);
			md_text(f, now, 0);
		}
		free(now);
		fputs(" |\n", f);
		free(text);
		free(days);
	}
	if (str(h, "timeout")) {
		fputs("| timeout | ", f);
		md_text(f, str(h, "timeout"), 0);
		fputs(" |\n", f);
	}
	if (json_is_true(json_object_get(h, "rollback")))
		fputs("| rollback | on |\n", f);
}

static void md_step_cb(void *ctx, const json_t *s, int first)
{
	struct rb_plan_out *po = ctx;
	if (first) {
		po->stage = (size_t)json_integer_value(json_object_get(s, "stage"));
		size_t n = json_array_size(json_array_get(po->stages, po->stage - 1));
		fprintf(po->f, "\n%s Stage %zu%s\n\n", po->in_failure ? "####" : "###", po->stage,
			n > 1 ? " (in parallel)" : "");
	}
	md_step(po->f, s, NULL);
	count(po, s);
}

static void md_section(void *ctx, const json_t *stages)
{
	struct rb_plan_out *po = ctx;
	po->in_failure = 1;
	po->stages = stages;
	if (json_array_size(stages))
		fputs("\n### On failure\n", po->f);
}

static void md_end(void *ctx)
{
	struct rb_plan_out *po = ctx;
	size_t stages = json_array_size(json_object_get(po->header, "stages"));
	fprintf(po->f, "\n**%zu step%s in %zu stage%s**: %zu with side effects, %zu gate%s, %zu "
		"with undo", po->steps, plural(po->steps), stages, plural(stages), po->side,
		po->gates, plural(po->gates), po->undo);
	if (po->fail_steps)
		fprintf(po->f, "; %zu on failure", po->fail_steps);
	fputs(".\n", po->f);
}

const struct rb_plan_renderer rb_plan_markdown = {md_begin, md_step_cb, md_section, md_end};

/* --- json -------------------------------------------------------------------- */

/*
 * The JSON document is written piece by piece, each piece encoded by
 * jansson, so that a large plan is never held in memory whole.
 */
/* Write v as indented JSON, every line after the first indented by indent. */
static void json_at(FILE *f, const json_t *v, int indent)
{
	static const char spaces[] = "                ";
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	const char *p = s;
	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
		fwrite(p, 1, n, f);
		if (nl)
			fwrite(spaces, 1, (size_t)indent < sizeof(spaces) ? (size_t)indent : 0, f);
		p += n;
	}
	free(s);
}

static void json_begin(void *ctx, const json_t *plan)
{
	struct rb_plan_out *po = ctx;
	const char *k;
	json_t *v;
	fputc('{', po->f);
	json_object_foreach((json_t *)plan, k, v) {
		if (!strcmp(k, "on_failure"))
			continue;
		fputs("\n  ", po->f);
		json_t *key = json_string(k);
		json_at(po->f, key, 0);
		json_decref(key);
		fputs(": ", po->f);
		json_at(po->f, v, 2);
		fputc(',', po->f);
	}
	fputs("\n  \"steps\": [", po->f);
	po->steps = 0;
}

static void json_step(void *ctx, const json_t *s, int first)
{
	struct rb_plan_out *po = ctx;
	(void)first;
	fputs(po->steps++ ? ",\n    " : "\n    ", po->f);
	json_at(po->f, s, 4);
}

static void json_section(void *ctx, const json_t *stages)
{
	struct rb_plan_out *po = ctx;
	fputs(po->steps ? "\n  ],\n" : "],\n", po->f);
	fputs("  \"on_failure\": {\n    \"stages\": ", po->f);
	json_at(po->f, stages, 4);
	fputs(",\n    \"steps\": [", po->f);
	po->steps = 0;
}

static void json_end(void *ctx)
{
	struct rb_plan_out *po = ctx;
	fputs(po->steps ? "\n    ]\n  }\n}\n" : "]\n  }\n}\n", po->f);
}

const struct rb_plan_renderer rb_plan_json = {json_begin, json_step, json_section, json_end};

/* --- for the plan diff (plandiff_render.c): the same markdown, the same escapes ---- */

void rb_md_code(FILE *f, const char *s)
{
	md_code(f, s);
}

void rb_md_text(FILE *f, const char *s)
{
	md_text(f, s, 0);
}
