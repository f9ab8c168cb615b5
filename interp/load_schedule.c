/*
 * The loader's part for `schedule` and `window` (runbook.c calls it): a
 * schedule is a cron line, or {cron, timezone}; a window is {start, end,
 * days, timezone} with days such as [mon, fri] or [sun#1].  Zones are
 * checked against the zoneinfo files (cal.c), and a schedule that never
 * starts, or never inside its window, is reported at the schedule.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cal.h"
#include "load.h"
#include "luabox.h"
#include "util.h"

static const char *const schedule_keys[] = {"cron", "timezone", NULL};
static const char *const window_keys[] = {"start", "end", "days", "timezone", NULL};

static int load_zone(struct loader *l, const struct rb_node *n, const char **out)
{
	char *err = NULL;
	if (rb_load_string(l, n, out) < 0)
		return -1;
	if (rb_tz_check(*out, &err) < 0) {
		rb_error_at(l->d, n, "%s", err);
		free(err);
		return -1;
	}
	return 0;
}

int rb_load_schedule(struct loader *l, const struct rb_node *v)
{
	struct rb_runbook *rb = l->rb;
	const struct rb_node *cron = v;
	rb->schedule_tz = "UTC";
	if (v->type == RB_MAP) {
		if (rb_load_keys(l, v, schedule_keys, "schedule") < 0)
			return -1;
		const struct rb_node *tz = rb_map_get(v, "timezone");
		if (tz && load_zone(l, tz, &rb->schedule_tz) < 0)
			return -1;
		if (!(cron = rb_map_get(v, "cron")))
			return rb_error_at(l->d, v, "schedule has no 'cron' (such as \"0 2 * * "
					   "sun#1\")");
	}
	char *err = NULL;
	if (rb_load_string(l, cron, &rb->schedule) < 0)
		return -1;
	if (rb_cron_parse(rb->schedule, &rb->cron, &err) < 0) {
		rb_error_at(l->d, cron, "invalid schedule: %s", err);
		free(err);
		rb->schedule = NULL;
		return -1;
	}
	if (rb->cron.days_or)
		rb_warning_pos(l->d, cron->line, cron->col, "schedule '%s' restricts both the day "
			       "of month and the day of week: cron starts it on the days that "
			       "match either, not both (\"0 2 1-7 * 0\" is days 1 to 7 and "
			       "every Sunday, not the first Sunday); write one of them as *, "
			       "or the first Sunday as \"0 2 * * sun#1\"",
			       rb->schedule);
	if (rb_cron_next(&rb->cron, rb->schedule_tz, (time_t)rb_now()) < 0) {
		rb_error_at(l->d, cron, "schedule '%s' never starts: no day in the next 5 years "
			    "matches it", rb->schedule);
		rb->schedule = NULL;
		return -1;
	}
	return 0;
}

/* mon .. sun, sun#1 .. sun#5, sun#L into w. */
static int load_day(struct loader *l, const struct rb_node *d, struct rb_window *w)
{
	int wd;
	unsigned nth;
	char *err = NULL;
	/* names in lower case, as the schema says (cron's field takes any case) */
	if (d->type != RB_SCALAR || strspn(d->str, "abcdefghijklmnopqrstuvwxyz") != 3 ||
	    rb_weekday_parse(d->str, &wd, &nth, &err) < 0) {
		int hash = d->type == RB_SCALAR && strchr(d->str, '#') && err;
		if (hash)
			rb_error_at(l->d, d, "%s", err);
		else
			rb_error_at(l->d, d, "unknown day%s%s%s: expected mon, tue, wed, thu, fri, "
				    "sat or sun, or sun#1 to sun#5 and sun#L (the first to fifth "
				    "or last Sunday of the month)", d->type == RB_SCALAR ? " '" : "",
				    d->type == RB_SCALAR ? d->str : "",
				    d->type == RB_SCALAR ? "'" : "");
		free(err);
		return -1;
	}
	wd = (wd + 6) % 7;                      /* Monday 0 */
	if (nth)
		w->nth[wd] |= (unsigned char)nth;
	else
		w->days |= 1u << wd;
	return 0;
}

int rb_load_window(struct loader *l, const struct rb_node *n)
{
	struct rb_window *w = &l->rb->window;
	if (n->type != RB_MAP)
		return rb_error_at(l->d, n, "window must be a mapping with 'start' and 'end', "
				   "not %s", rb_node_kind_name(n));
	int rc = rb_load_keys(l, n, window_keys, "window");
	const char *const which[2] = {"start", "end"};
	int *dst[2] = {&w->start, &w->end};
	const struct rb_node *end = NULL;
	for (int i = 0; i < 2; i++) {
		const struct rb_node *v = rb_map_get(n, which[i]);
		if (!v) {
			rc = rb_error_at(l->d, n, "window has no '%s' (HH:MM)", which[i]);
			continue;
		}
		if (v->type != RB_SCALAR || (*dst[i] = rb_clock_parse(v->str)) < 0)
			rc = rb_error_at(l->d, v, "window %s must be a time HH:MM from 00:00 to "
					 "23:59", which[i]);
		else if (i == 1)
			end = v;
	}
	if (end && rc == 0 && w->start == w->end)
		rc = rb_error_at(l->d, end, "window is empty: it ends when it starts (%s); a "
				 "window across midnight ends the next day, as 22:00 to 02:00",
				 end->str);
	const struct rb_node *days = rb_map_get(n, "days");
	w->days = 0x7F;
	memset(w->nth, 0, sizeof(w->nth));
	if (days && days->type != RB_SEQ) {
		rc = rb_error_at(l->d, days, "window days must be a list such as [mon, tue] or "
				 "[sun#1]");
	} else if (days) {
		w->days = 0;
		for (size_t i = 0; i < days->n; i++)
			if (load_day(l, days->items[i], w) < 0)
				rc = -1;
	}
	const struct rb_node *tz = rb_map_get(n, "timezone");
	w->timezone = "UTC";
	if (tz && load_zone(l, tz, &w->timezone) < 0)
		rc = -1;
	l->rb->has_window = 1;
	return rc;
}

void rb_load_schedule_check(struct loader *l, const struct rb_node *schedule)
{
	struct rb_runbook *rb = l->rb;
	if (!rb->schedule || !rb->has_window || !schedule)
		return;
	if (schedule->type == RB_MAP && rb_map_get(schedule, "cron"))
		schedule = rb_map_get(schedule, "cron");
	if (rb_schedule_next(&rb->cron, rb->schedule_tz, &rb->window, (time_t)rb_now()) < 0)
		rb_warning_pos(l->d, schedule->line, schedule->col, "schedule '%s' never starts "
			       "inside the window: no slot of it in the next 5 years falls in the "
			       "window, and a slot outside the window is not a start",
			       rb->schedule);
}
