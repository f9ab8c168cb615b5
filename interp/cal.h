/*
 * Calendar arithmetic for schedules and maintenance windows: time zones
 * (UTC, local, or an IANA name from the system's zoneinfo), the next start
 * times of a cron expression in a zone, and whether an instant is inside a
 * window.  Times are seconds since the epoch; a zone's offsets and DST
 * changes come from the C library (tzset/localtime_r/mktime), one zone at
 * a time: not for use from several threads.
 */
#ifndef RB_CAL_H
#define RB_CAL_H

#include <time.h>

#include "runbook.h"
#include "types.h"

/* Whether name is "UTC", "local" or a zone file under TZDIR or
 * /usr/share/zoneinfo (a TZif file; no "..", no leading "/").  Returns 0, or
 * -1 with a malloc'd reason in *err. */
int rb_tz_check(const char *name, char **err);

/* t as wall-clock time in zone tz (tm_gmtoff and tm_isdst filled in). */
void rb_tz_local(const char *tz, time_t t, struct tm *out);

/* The first start time of c in zone tz strictly after t, or -1 when there is
 * none in the next 5 years (a 30 February).  DST: see docs/schedule.md. */
time_t rb_cron_next(const struct rb_cron *c, const char *tz, time_t t);

/* Whether t is inside window w. */
int rb_window_contains(const struct rb_window *w, time_t t);

/* When the window that contains t closes; -1 when t is outside it. */
time_t rb_window_close(const struct rb_window *w, time_t t);

/* When the next window opens: t itself when t is inside one, else the first
 * opening after t, or -1 when none in the next 5 years. */
time_t rb_window_next_open(const struct rb_window *w, time_t t);

/* The first start of a schedule strictly after t: a slot of c in zone tz that
 * window w (NULL: none) contains; the window filters the schedule.  -1 when
 * there is none in the next 5 years. */
time_t rb_schedule_next(const struct rb_cron *c, const char *tz, const struct rb_window *w,
			time_t t);

/* The first n starts of that schedule after t into out, and their UTC
 * offsets in tz into gmtoff unless NULL (fewer when the 5 years after t hold
 * fewer); how many.  One zone switch for them all. */
size_t rb_schedule_starts(const struct rb_cron *c, const char *tz, const struct rb_window *w,
			  time_t t, time_t *out, long *gmtoff, size_t n);

/* c as a systemd OnCalendar= expression ("Sun *-*-01..07 02:00:00") into
 * buf, without a zone (the caller appends " Europe/Paris" or " UTC").
 * Returns its length, or -1 when one line cannot say it (both day fields
 * restricted, "#n" days mixed with others) or buf is too small. */
int rb_cron_oncalendar(const struct rb_cron *c, char *buf, size_t size);

/* The days of window w as they are written ("mon", "sun#1", "sun#L"), Monday
 * first, into words; how many (at most RB_WINDOW_DAY_WORDS). */
enum { RB_WINDOW_DAY_WORDS = 7 * 7 };
size_t rb_window_day_words(const struct rb_window *w, char words[][6]);

/* w for people: "02:00-06:00 UTC", or "sun#1 02:00-06:00 UTC" when not every day. */
void rb_window_text(const struct rb_window *w, char *buf, size_t size);

#endif
