/*
 * runbook schedule SUBCOMMAND: the scheduled runbooks.  A small table of
 * subcommands (list; due, install and uninstall come next, issue 20), each
 * a function taking the arguments after its name, like the commands.
 *
 * runbook schedule list [DIR|FILE...] [--count N] [--from TIME] [--output json]:
 * each runbook with a schedule, its cron, zone, window and lock, and its
 * next N starts in the schedule's zone and in UTC.  A slot outside the
 * window is not a start (rb_schedule_next).  A DIR is read for *.yaml and
 * *.yml, not recursively, in name order.  "Now" is --from, else RUNBOOK_NOW,
 * else the clock.  Invalid files are reported as validate reports them and
 * make the exit status 2; the others are still listed.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cal.h"
#include "cli.h"
#include "isotime.h"
#include "luabox.h"
#include "runbook.h"
#include "rundir.h"
#include "slot.h"
#include "util.h"

enum { MAX_COUNT = 1000, MAX_MISSED = 20 };

/* --- the files --------------------------------------------------------------- */

static int yaml_name(const char *n)
{
	size_t len = strlen(n);
	return n[0] != '.' && ((len > 5 && !strcmp(n + len - 5, ".yaml")) ||
			       (len > 4 && !strcmp(n + len - 4, ".yml")));
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* arg's runbook files into files: arg itself, or a directory's *.yaml and
 * *.yml sorted.  -1 (printed) when arg cannot be read. */
static int add_files(const char *arg, struct rb_strv *files)
{
	struct stat st;
	if (stat(arg, &st) < 0) {
		rb_cli_error("schedule: cannot read '%s': %s", arg, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		rb_strv_push(files, rb_xstrdup(arg));
		return 0;
	}
	DIR *d = opendir(arg);
	if (!d) {
		rb_cli_error("schedule: cannot read '%s': %s", arg, strerror(errno));
		return -1;
	}
	struct rb_strv names = {0};
	for (struct dirent *e; (e = readdir(d));)
		if (yaml_name(e->d_name))
			rb_strv_push(&names, rb_xstrdup(e->d_name));
	closedir(d);
	if (names.n)
		qsort(names.v, names.n, sizeof(*names.v), by_name);
	size_t len = strlen(arg);
	for (size_t i = 0; i < names.n; i++)
		rb_strv_push(files, rb_xasprintf("%s%s%s", arg, len && arg[len - 1] == '/' ?
						 "" : "/", names.v[i]));
	rb_strv_release(&names);
	return 0;
}

/* --- list --------------------------------------------------------------------- */

/* t at UTC offset off as 2026-03-29T03:00:00+02:00. */
static void local_text(time_t t, long off, char *buf, size_t size)
{
	time_t l = t + (off < -86399 || off > 86399 ? 0 : off);
	int o = (int)(l - t), a = o < 0 ? -o : o;
	struct tm tm;
	gmtime_r(&l, &tm);
	char date[32];
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s%c%02d:%02d", date, o < 0 ? '-' : '+', a / 3600, a % 3600 / 60);
}

/* The window's days as ["mon", "sun#1"], or NULL for every day. */
static json_t *window_days(const struct rb_window *w)
{
	if ((w->days & 0x7F) == 0x7F)
		return NULL;
	char words[RB_WINDOW_DAY_WORDS][6];
	size_t n = rb_window_day_words(w, words);
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(words[i]));
	return a;
}

/*
 * What the state directory says of rb's slots (docs/schedule.md): "last", the
 * newest one started ({slot, status, run_id}), or null; "missed", the slots
 * due by now that did not start: those schedule due recorded missed, and
 * those after the last one that nothing claimed (at most MAX_MISSED, the
 * newest; "more": how many else).  Nothing when no slot was ever claimed.
 */
static void add_history(json_t *e, const struct rb_runbook *rb, const char *state, time_t now)
{
	char key[RB_SLOT_KEY_MAX], *err = NULL;
	json_t *recs = NULL;
	rb_slot_key(rb->name, key);
	if (rb_slot_list(state, key, &recs, &err) < 0) {
		json_object_set_new(e, "slots_error", json_string(err));
		free(err);
		return;
	}
	json_t *last = NULL, *missed = json_array();
	time_t newest = -1;
	size_t i;
	json_t *r;
	json_array_foreach(recs, i, r) {
		const char *st = json_string_value(json_object_get(r, "status"));
		time_t t = rb_slot_parse(json_string_value(json_object_get(r, "slot")));
		if (t > newest)
			newest = t;
		if (st && !strcmp(st, "missed"))
			json_array_append_new(missed, json_pack("{s:O, s:b}", "slot",
								json_object_get(r, "slot"),
								"recorded", 1));
		else
			last = r;
	}
	json_object_set_new(e, "last", last ? json_pack("{s:O, s:O, s:O?}", "slot",
							json_object_get(last, "slot"), "status",
							json_object_get(last, "status"), "run_id",
							json_object_get(last, "run_id"))
					    : json_null());
	size_t more = 0;
	if (newest >= 0) {
		const struct rb_window *w = rb->has_window ? &rb->window : NULL;
		json_t *unclaimed = json_array();
		for (time_t t = newest; (t = rb_schedule_next(&rb->cron, rb->schedule_tz, w, t)) >= 0 &&
		     t <= now;) {
			char s[32];
			rb_utc_text(t, s);
			json_array_append_new(unclaimed, json_pack("{s:s, s:b}", "slot", s,
								   "recorded", 0));
			if (json_array_size(unclaimed) > MAX_MISSED) {
				json_array_remove(unclaimed, 0);
				more++;
			}
		}
		json_array_extend(missed, unclaimed);
		json_decref(unclaimed);
	}
	json_object_set_new(e, "missed", missed);
	if (more)
		json_object_set_new(e, "missed_more", json_integer((json_int_t)more));
	json_decref(recs);
}

/* One runbook's entry: its facts and next starts. */
static json_t *entry(const struct rb_runbook *rb, time_t from, int count)
{
	json_t *e = json_pack("{s:s, s:s, s:s, s:s}", "runbook", rb->name, "file", rb->file,
			      "cron", rb->schedule, "timezone", rb->schedule_tz);
	json_object_set_new(e, "lock", rb->lock ? json_string(rb->lock) : json_null());
	char cal[512];
	if (rb_cron_oncalendar(&rb->cron, cal, sizeof(cal)) >= 0)
		json_object_set_new(e, "oncalendar", json_sprintf("%s%s%s", cal,
			strcmp(rb->schedule_tz, "local") ? " " : "",
			strcmp(rb->schedule_tz, "local") ? rb->schedule_tz : ""));
	else
		json_object_set_new(e, "oncalendar", json_null());
	const struct rb_window *w = rb->has_window ? &rb->window : NULL;
	if (w) {
		char start[16], end[16];
		snprintf(start, sizeof(start), "%02d:%02d", w->start / 60, w->start % 60);
		snprintf(end, sizeof(end), "%02d:%02d", w->end / 60, w->end % 60);
		json_t *days = window_days(w);
		json_object_set_new(e, "window", json_pack("{s:s, s:s, s:s, s:o}", "start", start,
							   "end", end, "timezone", w->timezone,
							   "days", days ? days : json_null()));
	} else {
		json_object_set_new(e, "window", json_null());
	}
	json_t *next = json_array();
	time_t *starts = rb_xcalloc((size_t)count, sizeof(*starts));
	long *offs = rb_xcalloc((size_t)count, sizeof(*offs));
	size_t n = rb_schedule_starts(&rb->cron, rb->schedule_tz, w, from, starts, offs,
				      (size_t)count);
	for (size_t i = 0; i < n; i++) {
		time_t t = starts[i];
		char local[64], utc[32];
		local_text(t, offs[i], local, sizeof(local));
		rb_utc_text(t, utc);
		json_array_append_new(next, json_pack("{s:s, s:s}", "local", local, "utc", utc));
	}
	free(starts);
	free(offs);
	if (json_array_size(next) == 0)
		json_object_set_new(e, "warning", json_string(
			w && rb_cron_next(&rb->cron, rb->schedule_tz, from) >= 0 ?
			"the schedule never starts inside the window in the next 5 years" :
			"the schedule never starts in the next 5 years"));
	json_object_set_new(e, "next", next);
	return e;
}

static const char *s_of(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* s without its control characters shown as such; "" for NULL (malloc'd). */
static char *visible(const char *s)
{
	return s ? rb_visible(s, strlen(s), RB_VIS_TAB) : rb_xstrdup("");
}

static void print_text(const json_t *e)
{
	/* names, crons and zones are checked by the loader, files are the
	 * user's own arguments: shown as they are but without control bytes */
	char *name = rb_visible(s_of(e, "runbook"), strlen(s_of(e, "runbook")), RB_VIS_TAB);
	char *file = rb_visible(s_of(e, "file"), strlen(s_of(e, "file")), RB_VIS_TAB);
	printf("%s (%s)\n", name, file);
	free(name);
	free(file);
	printf("  schedule: %s %s\n", s_of(e, "cron"), s_of(e, "timezone"));
	const json_t *w = json_object_get(e, "window");
	if (json_is_object(w)) {
		printf("  window:   %s-%s %s on ", s_of(w, "start"), s_of(w, "end"),
		       s_of(w, "timezone"));
		const json_t *days = json_object_get(w, "days"), *d;
		size_t i;
		json_array_foreach(days, i, d)
			printf("%s%s", i ? "," : "", json_string_value(d));
		puts(json_is_array(days) ? (json_array_size(days) ? "" : "no day") : "every day");
	}
	if (s_of(e, "lock"))
		printf("  lock:     %s\n", s_of(e, "lock"));
	size_t i;
	const json_t *n;
	json_array_foreach(json_object_get(e, "next"), i, n)
		printf("  %s %s  %s\n", i ? "         " : "next:    ", s_of(n, "local"),
		       s_of(n, "utc"));
	if (s_of(e, "warning"))
		printf("  warning:  %s\n", s_of(e, "warning"));
	/* The slots' records are files of the state directory: their text is shown, not obeyed. */
	const json_t *last = json_object_get(e, "last");
	if (json_is_object(last)) {
		char *slot = visible(s_of(last, "slot")), *st = visible(s_of(last, "status"));
		char *run = visible(s_of(last, "run_id"));
		printf("  last:     %s %s%s%s\n", slot, st, *run ? ", run " : "", run);
		free(slot);
		free(st);
		free(run);
	}
	if (json_integer_value(json_object_get(e, "missed_more")))
		printf("  missed:   %lld more, older\n",
		       (long long)json_integer_value(json_object_get(e, "missed_more")));
	json_array_foreach(json_object_get(e, "missed"), i, n) {
		char *slot = visible(s_of(n, "slot"));
		printf("  %s %s (%s)\n", i || json_object_get(e, "missed_more") ? "         " : "missed:  ",
		       slot, json_is_true(json_object_get(n, "recorded"))
		       ? "recorded missed by schedule due" : "not started");
		free(slot);
	}
	if (s_of(e, "slots_error")) {
		char *why = visible(s_of(e, "slots_error"));
		printf("  slots:    %s\n", why);
		free(why);
	}
}

static int parse_from(const char *s, time_t *out)
{
	double t;
	int whole;
	const char *why;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (*s && !*end && !errno) {
		*out = (time_t)v;
		return 0;
	}
	if (rb_isotime_parse(s, strlen(s), &t, &whole, &why) < 0)
		return -1;
	*out = (time_t)t;
	return 0;
}

static int schedule_list(int argc, char **argv)
{
	static const struct rb_opt opts[] = {
		{'n', "count", 1}, {0, "from", 1}, {'o', "output", 1}, {0, "state-dir", 1},
		{0, NULL, 0},
	};
	struct rb_optparse p;
	struct rb_strv args = {0};
	const char *output = "text", *state = NULL;
	long count = 5;
	time_t from = (time_t)rb_now();
	int k, rc = RB_EXIT_OK;
	rb_opt_init(&p, "schedule list", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		char *end;
		switch (k) {
		case RB_OPT_ERROR:
			rb_strv_release(&args);
			return RB_EXIT_INVALID;
		case RB_OPT_HELP:
			rb_print_usage("schedule", stdout);
			rb_strv_release(&args);
			return RB_EXIT_OK;
		case RB_OPT_ARG:
			rb_strv_push(&args, rb_xstrdup(p.val));
			break;
		case 0:
			count = strtol(p.val, &end, 10);
			if (*end || !*p.val || count < 1 || count > MAX_COUNT) {
				rb_strv_release(&args);
				return rb_usage_error("schedule list: --count must be a number from "
						      "1 to %d, not '%s'", MAX_COUNT, p.val);
			}
			break;
		case 1:
			if (parse_from(p.val, &from) < 0) {
				rb_strv_release(&args);
				return rb_usage_error("schedule list: --from must be a time such as "
						      "2026-01-01T00:00:00Z, not '%s'", p.val);
			}
			break;
		case 2:
			output = p.val;
			break;
		default:
			state = p.val;
		}
	}
	if (strcmp(output, "text") && strcmp(output, "json")) {
		rb_strv_release(&args);
		return rb_usage_error("schedule list: unknown output '%s' (expected text or json)",
				      output);
	}
	if (!args.n)
		rb_strv_push(&args, rb_xstrdup("."));
	struct rb_strv files = {0};
	for (size_t i = 0; i < args.n; i++)
		if (add_files(args.v[i], &files) < 0)
			rc = RB_EXIT_INVALID;
	rb_strv_release(&args);

	json_t *list = json_array();
	for (size_t i = 0; i < files.n; i++) {
		struct rb_runbook *rb;
		int r = rb_cli_load(files.v[i], &rb);
		if (r != RB_EXIT_OK) {
			if (r > rc)
				rc = r;
			continue;
		}
		if (rb->schedule) {
			json_t *e = entry(rb, from, (int)count);
			add_history(e, rb, rb_state_dir(state), (time_t)rb_now());
			json_array_append_new(list, e);
		}
		rb_runbook_free(rb);
	}
	rb_strv_release(&files);

	if (!strcmp(output, "json")) {
		char f[32];
		rb_utc_text(from, f);
		json_t *doc = json_pack("{s:s, s:i, s:o}", "from", f, "count", (int)count,
					"schedules", list);
		json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(doc);
	} else {
		size_t i;
		json_t *e;
		json_array_foreach(list, i, e) {
			if (i)
				putchar('\n');
			print_text(e);
		}
		json_decref(list);
	}
	return rc;
}

/* --- dispatch ------------------------------------------------------------------ */

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} subcommands[] = {
	{"list", schedule_list},
	{"due", cmd_schedule_due},
	{"install", cmd_schedule_install},
	{"uninstall", cmd_schedule_uninstall},
	{NULL, NULL},
};

int rb_cli_schedule_files(const char *arg, struct rb_strv *files)
{
	return add_files(arg, files);
}

int cmd_schedule(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		rb_print_usage("schedule", argc < 2 ? stderr : stdout);
		return argc < 2 ? RB_EXIT_INVALID : RB_EXIT_OK;
	}
	for (size_t i = 0; subcommands[i].name; i++)
		if (!strcmp(subcommands[i].name, argv[1]))
			return subcommands[i].fn(argc - 1, argv + 1);
	return rb_usage_error("schedule: unknown subcommand '%s' (expected list, due, install or uninstall)", argv[1]);
}
