/*
 * Tests interp/cal.c: zones, cron next start times (month ends, leap days,
 * "#n" and "#L" weekdays, DST in Europe/Paris and America/New_York in 2026),
 * windows (across midnight, across DST, first Sundays) and OnCalendar=.
 * The differential tests against croner and systemd are in tests/schedule.sh.
 *
 * Build and run from the repository root: make build/unit/test_cal &&
 * build/unit/test_cal (make test runs it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cal.h"

#include "check.h"

/* "2026-03-29T01:00:00Z" -> seconds. */
static time_t at(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return timegm(&tm);
}

static const char *utc(time_t t, char *buf)
{
	if (t < 0)
		return "none";
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

/* The starts of cron in tz after from, as UTC times separated by spaces. */
static void check_next(int line, const char *cron, const char *tz, const char *from,
		       const char *want)
{
	struct rb_cron c;
	char *err = NULL;
	if (rb_cron_parse(cron, &c, &err) < 0) {
		CHECK(0, "line %d: %s: %s", line, cron, err);
		free(err);
		return;
	}
	char got[1024] = "", buf[32];
	time_t t = at(from);
	size_t n = 1;
	for (const char *p = want; *p; p++)
		n += *p == ' ';
	for (size_t i = 0; i < n; i++) {
		t = rb_cron_next(&c, tz, t);
		if (i)
			strcat(got, " ");
		strcat(got, utc(t, buf));
		if (t < 0)
			break;
	}
	CHECK(!strcmp(got, want), "line %d: '%s' in %s after %s:\n  got  %s\n  want %s", line,
	      cron, tz, from, got, want);
}

#define NEXT(cron, tz, from, want) check_next(__LINE__, cron, tz, from, want)

static void test_cron(void)
{
	NEXT("0 2 * * sun#1", "UTC", "2026-01-01T00:00:00Z",
	     "2026-01-04T02:00:00Z 2026-02-01T02:00:00Z 2026-03-01T02:00:00Z "
	     "2026-04-05T02:00:00Z");
	NEXT("0 2 * * 0#1", "UTC", "2026-01-04T02:00:00Z", "2026-02-01T02:00:00Z");
	NEXT("0 2 * * 7#1", "UTC", "2026-01-04T01:59:59Z", "2026-01-04T02:00:00Z");
	NEXT("0 0 * * sun#L", "UTC", "2026-01-01T00:00:00Z",
	     "2026-01-25T00:00:00Z 2026-02-22T00:00:00Z 2026-03-29T00:00:00Z");
	/* #5: only months with a fifth Friday (2026: January, May, July, October) */
	NEXT("0 0 * * fri#5", "UTC", "2026-01-01T00:00:00Z",
	     "2026-01-30T00:00:00Z 2026-05-29T00:00:00Z 2026-07-31T00:00:00Z "
	     "2026-10-30T00:00:00Z 2027-01-29T00:00:00Z");
	NEXT("0 0 * * mon#1,fri#L", "UTC", "2026-01-01T00:00:00Z",
	     "2026-01-05T00:00:00Z 2026-01-30T00:00:00Z 2026-02-02T00:00:00Z");
	NEXT("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z");
	NEXT("0 0 31 * *", "UTC", "2026-01-31T00:00:00Z",
	     "2026-03-31T00:00:00Z 2026-05-31T00:00:00Z 2026-07-31T00:00:00Z");
	NEXT("0 0 30 2 *", "UTC", "2026-01-01T00:00:00Z", "none");
	NEXT("0 0 31 4,6 *", "UTC", "2026-01-01T00:00:00Z", "none");
	NEXT("59 23 31 12 *", "UTC", "2026-12-31T23:59:00Z", "2027-12-31T23:59:00Z");
	NEXT("*/20 * * * *", "UTC", "2026-01-01T00:00:30Z",
	     "2026-01-01T00:20:00Z 2026-01-01T00:40:00Z 2026-01-01T01:00:00Z");
	/* both day fields: cron's OR; one of them '*': AND (a star step too) */
	NEXT("0 0 1 * mon", "UTC", "2026-01-01T00:00:00Z",
	     "2026-01-05T00:00:00Z 2026-01-12T00:00:00Z 2026-01-19T00:00:00Z "
	     "2026-01-26T00:00:00Z 2026-02-01T00:00:00Z");
	NEXT("0 0 */2 * mon", "UTC", "2026-01-01T00:00:00Z",
	     "2026-01-05T00:00:00Z 2026-01-19T00:00:00Z 2026-02-09T00:00:00Z");
	NEXT("0 0 * * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z");
	/* croner 9.1.0 goes from 25 February to 4 March (tests/schedule/compare.js) */
	NEXT("39 20 25-31/5,1-14 * *", "UTC", "2026-02-25T21:00:00Z",
	     "2026-03-01T20:39:00Z 2026-03-02T20:39:00Z");

	/* Europe/Paris 2026: 02:00 CET -> 03:00 CEST on 29 March (01:00 UTC);
	 * 03:00 CEST -> 02:00 CET on 25 October (01:00 UTC). */
	NEXT("30 2 * * *", "Europe/Paris", "2026-03-27T12:00:00Z",
	     "2026-03-28T01:30:00Z 2026-03-29T01:00:00Z 2026-03-30T00:30:00Z");
	/* four slots in the gap run once, at its end */
	NEXT("*/15 2 * * *", "Europe/Paris", "2026-03-29T00:00:00Z",
	     "2026-03-29T01:00:00Z 2026-03-30T00:00:00Z 2026-03-30T00:15:00Z");
	NEXT("0 * * * *", "Europe/Paris", "2026-03-28T23:30:00Z",
	     "2026-03-29T00:00:00Z 2026-03-29T01:00:00Z 2026-03-29T02:00:00Z");
	/* the repeated 02:30 runs once, at its first occurrence */
	NEXT("30 2 * * *", "Europe/Paris", "2026-10-24T12:00:00Z",
	     "2026-10-25T00:30:00Z 2026-10-26T01:30:00Z");
	NEXT("30 * * * *", "Europe/Paris", "2026-10-24T23:45:00Z",
	     "2026-10-25T00:30:00Z 2026-10-25T02:30:00Z 2026-10-25T03:30:00Z");
	/* from inside the second 02:xx, the repeated slots are past */
	NEXT("*/20 * * * *", "Europe/Paris", "2026-10-25T01:10:00Z",
	     "2026-10-25T02:00:00Z 2026-10-25T02:20:00Z");
	NEXT("0 9 * * mon-fri", "Europe/Paris", "2026-03-27T00:00:00Z",
	     "2026-03-27T08:00:00Z 2026-03-30T07:00:00Z");
	/* America/New_York 2026: 02:00 EST -> 03:00 EDT on 8 March (07:00 UTC);
	 * 02:00 EDT -> 01:00 EST on 1 November (06:00 UTC). */
	NEXT("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z",
	     "2026-03-08T07:00:00Z 2026-03-09T06:30:00Z");
	NEXT("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z",
	     "2026-11-01T05:30:00Z 2026-11-02T06:30:00Z");
	NEXT("0 2 * * sun#1", "America/New_York", "2026-10-31T12:00:00Z",
	     "2026-11-01T07:00:00Z 2026-12-06T07:00:00Z");
}

static void test_parse(void)
{
	static const struct {
		const char *cron, *err;
	} bad[] = {
		{"0 2 * * sun#6", "invalid day of week 'sun#6': after '#' comes 1 to 5 (the n-th "
				  "such day of the month) or L (the last)"},
		{"0 2 * * sun#0", "invalid day of week 'sun#0': after '#' comes 1 to 5 (the n-th "
				  "such day of the month) or L (the last)"},
		{"0 2 * * mon,sun#", "invalid day of week 'sun#': after '#' comes 1 to 5 (the "
				     "n-th such day of the month) or L (the last)"},
		{"0 2 * * 1-3#2", "unexpected '#' in day of week field"},
		{"0 2#1 * * *", "unexpected '#' in hour field"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rb_cron c;
		char *err = NULL;
		int rc = rb_cron_parse(bad[i].cron, &c, &err);
		CHECK(rc < 0 && err && !strcmp(err, bad[i].err), "'%s': %s", bad[i].cron,
		      err ? err : "accepted");
		free(err);
	}
	struct rb_cron c;
	char *err = NULL;
	CHECK(rb_cron_parse("0 2 * * sun#1,5#L", &c, &err) == 0 && c.dow == 0 &&
	      c.dow_nth[0] == 1 && c.dow_nth[5] == RB_NTH_LAST && !c.days_or, "sun#1,5#L");
	CHECK(rb_cron_parse("0 2 1 * sun#2", &c, &err) == 0 && c.days_or, "days_or with #n");
	int wd;
	unsigned nth;
	CHECK(rb_weekday_parse("sun#1", &wd, &nth, &err) == 0 && wd == 0 && nth == 1, "sun#1");
	CHECK(rb_weekday_parse("SAT#L", &wd, &nth, &err) == 0 && wd == 6 && nth == RB_NTH_LAST,
	      "SAT#L");
	CHECK(rb_weekday_parse("7", &wd, &nth, &err) == 0 && wd == 0 && nth == 0, "7");
	CHECK(rb_weekday_parse("sunday", &wd, &nth, &err) < 0, "sunday");
	free(err);
}

static void test_zones(void)
{
	static const struct {
		const char *name;
		int ok;
	} zones[] = {
		{"UTC", 1}, {"local", 1}, {"Europe/Paris", 1}, {"America/New_York", 1},
		{"Etc/GMT+5", 1}, {"Mars/Olympus", 0}, {"../../etc/passwd", 0},
		{"/etc/passwd", 0}, {"Europe", 0}, {"Europe/Paris/", 0}, {"Europe//Paris", 0},
		{"", 0}, {"Europe/.Paris", 0}, {"Europe/Paris;", 0}, {"zone.tab", 0},
	};
	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		char *err = NULL;
		int rc = rb_tz_check(zones[i].name, &err);
		CHECK((rc == 0) == zones[i].ok, "zone '%s': %s", zones[i].name,
		      err ? err : "accepted");
		free(err);
	}
	char *err = NULL;
	rb_tz_check("Mars/Olympus", &err);
	CHECK(err && !strcmp(err, "unknown time zone 'Mars/Olympus' (no such zone in "
		  "/usr/share/zoneinfo)"), "message: %s", err);
	free(err);

	/* the zone is put back: TZ as it was */
	const char *before = getenv("TZ");
	char *saved = before ? strdup(before) : NULL;
	struct tm tm;
	rb_tz_local("Europe/Paris", at("2026-01-15T12:00:00Z"), &tm);
	CHECK(tm.tm_hour == 13 && tm.tm_gmtoff == 3600 && !tm.tm_isdst, "Paris in January");
	rb_tz_local("Europe/Paris", at("2026-07-15T12:00:00Z"), &tm);
	CHECK(tm.tm_hour == 14 && tm.tm_gmtoff == 7200 && tm.tm_isdst, "Paris in July");
	rb_tz_local("UTC", at("2026-07-15T12:00:00Z"), &tm);
	CHECK(tm.tm_hour == 12 && tm.tm_gmtoff == 0 && !strcmp(tm.tm_zone, "UTC"), "UTC");
	const char *after = getenv("TZ");
	CHECK((!saved && !after) || (saved && after && !strcmp(saved, after)), "TZ restored");
	free(saved);
}

static void test_windows(void)
{
	char b1[32], b2[32];
	/* first Sunday of the month, 02:00-06:00 UTC */
	struct rb_window w = {.start = 120, .end = 360, .days = 0, .timezone = "UTC"};
	w.nth[6] = 1;
	CHECK(rb_window_contains(&w, at("2026-01-04T03:00:00Z")), "first Sunday");
	CHECK(rb_window_contains(&w, at("2026-01-04T02:00:00Z")), "opening instant");
	CHECK(!rb_window_contains(&w, at("2026-01-04T06:00:00Z")), "closing instant");
	CHECK(!rb_window_contains(&w, at("2026-01-11T03:00:00Z")), "second Sunday");
	CHECK(rb_window_close(&w, at("2026-01-04T03:00:00Z")) == at("2026-01-04T06:00:00Z"),
	      "close %s", utc(rb_window_close(&w, at("2026-01-04T03:00:00Z")), b1));
	CHECK(rb_window_close(&w, at("2026-01-05T03:00:00Z")) == -1, "close outside");
	time_t t = rb_window_next_open(&w, at("2026-01-04T06:00:00Z"));
	CHECK(t == at("2026-02-01T02:00:00Z"), "next open %s", utc(t, b1));
	t = rb_window_next_open(&w, at("2026-01-04T05:00:00Z"));
	CHECK(t == at("2026-01-04T05:00:00Z"), "next open inside %s", utc(t, b1));

	/* Friday 22:00 to 02:00: Saturday 01:00 is Friday's window */
	struct rb_window n = {.start = 22 * 60, .end = 120, .days = 1u << 4, .timezone = "UTC"};
	CHECK(rb_window_contains(&n, at("2026-01-03T01:00:00Z")), "Saturday 01:00");
	CHECK(!rb_window_contains(&n, at("2026-01-02T01:00:00Z")), "Friday 01:00");
	CHECK(rb_window_contains(&n, at("2026-01-02T23:00:00Z")), "Friday 23:00");
	CHECK(rb_window_close(&n, at("2026-01-02T23:00:00Z")) == at("2026-01-03T02:00:00Z"),
	      "close after midnight");

	/* wall clock across DST: 02:00-06:00 Paris */
	struct rb_window p = {.start = 120, .end = 360, .days = 0x7F, .timezone = "Europe/Paris"};
	t = rb_window_next_open(&p, at("2026-03-28T12:00:00Z"));
	time_t c = rb_window_close(&p, t);
	CHECK(t == at("2026-03-29T01:00:00Z") && c == at("2026-03-29T04:00:00Z"),
	      "spring forward: %s-%s", utc(t, b1), utc(c, b2));
	CHECK(!rb_window_contains(&p, at("2026-03-29T00:59:59Z")), "spring forward: before");
	t = rb_window_next_open(&p, at("2026-10-24T12:00:00Z"));
	c = rb_window_close(&p, t);
	CHECK(t == at("2026-10-25T00:00:00Z") && c == at("2026-10-25T05:00:00Z"),
	      "fall back: %s-%s", utc(t, b1), utc(c, b2));
	CHECK(rb_window_contains(&p, at("2026-10-25T01:30:00Z")), "fall back: second 02:30");
	struct rb_window ny = {.start = 60, .end = 180, .days = 0x7F,
			       .timezone = "America/New_York"};
	t = rb_window_next_open(&ny, at("2026-11-01T00:00:00Z"));
	c = rb_window_close(&ny, t);
	CHECK(t == at("2026-11-01T05:00:00Z") && c == at("2026-11-01T08:00:00Z"),
	      "New York fall back: %s-%s", utc(t, b1), utc(c, b2));
	/* a window inside the gap is empty that day */
	struct rb_window g = {.start = 125, .end = 150, .days = 0x7F, .timezone = "Europe/Paris"};
	t = rb_window_next_open(&g, at("2026-03-28T12:00:00Z"));
	CHECK(t == at("2026-03-30T00:05:00Z"), "gap window: %s", utc(t, b1));

	struct rb_window none = {.start = 120, .end = 120, .days = 0x7F, .timezone = "UTC"};
	CHECK(rb_window_next_open(&none, at("2026-01-01T00:00:00Z")) == -1, "empty window");

	/* the window filters the schedule */
	struct rb_cron cr;
	char *err = NULL;
	rb_cron_parse("0 * * * sun", &cr, &err);
	t = rb_schedule_next(&cr, "UTC", &w, at("2026-01-01T00:00:00Z"));
	CHECK(t == at("2026-01-04T02:00:00Z"), "schedule in window: %s", utc(t, b1));
	t = rb_schedule_next(&cr, "UTC", &w, at("2026-01-04T05:00:00Z"));
	CHECK(t == at("2026-02-01T02:00:00Z"), "schedule in window: %s", utc(t, b1));
	rb_cron_parse("0 12 * * *", &cr, &err);
	CHECK(rb_schedule_next(&cr, "UTC", &w, at("2026-01-01T00:00:00Z")) == -1,
	      "schedule never in window");
	CHECK(rb_schedule_next(&cr, "UTC", NULL, at("2026-01-01T00:00:00Z")) ==
	      at("2026-01-01T12:00:00Z"), "no window");
}

static void test_oncalendar(void)
{
	static const struct {
		const char *cron, *want;
	} cases[] = {
		{"0 2 * * sun#1", "Sun *-*-01..07 02:00:00"},
		{"0 2 * * 0#5", "Sun *-*-29..31 02:00:00"},
		{"30 4 * * mon#L,fri#L", "Mon,Fri *-*~07/1 04:30:00"},
		{"*/15 9-17 * * mon-fri", "Mon..Fri *-*-* 09..17:00,15,30,45:00"},
		{"0 0 1 1 *", "*-01-01 00:00:00"},
		{"0 0 * * sun-wed", "Mon..Wed,Sun *-*-* 00:00:00"},
		{"0 0 * * 0,1,5,6", "Mon,Fri..Sun *-*-* 00:00:00"},
		{"* * * * *", "*-*-* *:*:00"},
		{"5 4 1,15 */3 *", "*-01,04,07,10-01,15 04:05:00"},
		{"0 2 1-7 * sun", NULL},
		{"0 2 * * sun#1,mon#2", NULL},
		{"0 2 * * sun#1,mon", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rb_cron c;
		char *err = NULL, buf[256];
		if (rb_cron_parse(cases[i].cron, &c, &err) < 0) {
			CHECK(0, "%s: %s", cases[i].cron, err);
			free(err);
			continue;
		}
		int n = rb_cron_oncalendar(&c, buf, sizeof(buf));
		CHECK(cases[i].want ? n > 0 && !strcmp(buf, cases[i].want) : n < 0,
		      "'%s' -> '%s', want '%s'", cases[i].cron, n < 0 ? "(none)" : buf,
		      cases[i].want ? cases[i].want : "(none)");
	}
}

int main(void)
{
	test_cron();
	test_parse();
	test_zones();
	test_windows();
	test_oncalendar();
	printf("test_cal: %d passed, %d failed\n", npass, nfail);
	return nfail != 0;
}
