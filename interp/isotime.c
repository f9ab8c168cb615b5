/*
 * ISO 8601 / RFC 3339 times: parsed strictly (every field in range, the
 * zone required with a time) and computed without the C library's time
 * zone, so that a runbook's arithmetic on times is the same on every host.
 * Formatting goes through strftime in UTC, its format checked first.
 */
#include "isotime.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The years a time may have: four digits, as ISO 8601 writes them without agreement. */
#define MIN_T (-62167219200.0)          /* 0000-01-01T00:00:00Z */
#define MAX_T 253402300799.0            /* 9999-12-31T23:59:59Z */

/* Exactly n digits at *p, advancing it. */
static int digits(const char **p, const char *end, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (*p >= end || **p < '0' || **p > '9')
			return -1;
		v = v * 10 + (*(*p)++ - '0');
	}
	*out = v;
	return 0;
}

static int is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int rb_isotime_parse(const char *s, size_t len, double *t, int *whole, const char **why)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *p = s, *end = s + len;
	int y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0, sign = 0;
	double frac = 0;
	*why = "expected YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SS with Z or an offset such as +02:00";
	if (digits(&p, end, 4, &y) < 0 || p >= end || *p++ != '-' ||
	    digits(&p, end, 2, &mo) < 0 || p >= end || *p++ != '-' ||
	    digits(&p, end, 2, &d) < 0)
		return -1;
	if (mo < 1 || mo > 12)
		return *why = "the month is not 01 to 12", -1;
	if (d < 1 || d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
		return *why = "the month has no such day", -1;
	if (p < end) {
		if (*p != 'T' && *p != 't' && *p != ' ')
			return -1;
		p++;
		if (digits(&p, end, 2, &h) < 0 || p >= end || *p++ != ':' ||
		    digits(&p, end, 2, &mi) < 0)
			return -1;
		if (p < end && *p == ':') {
			p++;
			if (digits(&p, end, 2, &sec) < 0)
				return -1;
			if (p < end && (*p == '.' || *p == ',')) {
				p++;
				double scale = 0.1;
				if (p >= end || *p < '0' || *p > '9')
					return *why = "expected digits after the decimal point", -1;
				for (; p < end && *p >= '0' && *p <= '9'; p++, scale /= 10)
					frac += (*p - '0') * scale;
			}
		}
		if (h > 23)
			return *why = "the hour is not 00 to 23", -1;
		if (mi > 59)
			return *why = "the minute is not 00 to 59", -1;
		if (sec > 60)   /* 60: a leap second, as RFC 3339 allows */
			return *why = "the second is not 00 to 60", -1;
		if (p >= end)
			return *why = "no time zone: end it with Z or an offset such as +02:00", -1;
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			sign = *p++ == '-' ? -1 : 1;
			if (digits(&p, end, 2, &oh) < 0)
				return *why = "expected an offset as +HH:MM", -1;
			if (p < end && *p == ':')
				p++;
			if (p < end && digits(&p, end, 2, &om) < 0)
				return *why = "expected an offset as +HH:MM", -1;
			if (oh > 23 || om > 59)
				return *why = "the offset is out of range", -1;
		} else {
			return *why = "expected Z or an offset such as +02:00 after the time", -1;
		}
	}
	if (p != end)
		return *why = "unexpected text after the time", -1;
	int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
		       sign * (oh * 3600 + om * 60);
	*t = (double)secs + frac;
	*whole = frac == 0;
	return 0;
}

int rb_isotime_format(double t, const char *fmt, char *buf, size_t size, const char **why)
{
	/* Others (%E, %O, %s, %k ...) are extensions, or undefined for strftime. */
	static const char ok[] = "aAbBcCdDeFgGhHIjmMnprRStTuUVwWxXyYzZ%";
	for (const char *p = fmt ? fmt : ""; *p; p++) {
		if (*p != '%')
			continue;
		if (!p[1] || !strchr(ok, p[1]))
			return *why = "a conversion that is not one of C99's (%a %A %b %B %c %C "
				      "%d %D %e %F %g %G %h %H %I %j %m %M %n %p %r %R %S %t %T %u "
				      "%U %V %w %W %x %X %y %Y %z %Z %%)", -1;
		p++;
	}
	if (!isfinite(t) || t < MIN_T || t >= MAX_T + 1)
		return *why = "out of range (years 0000 to 9999)", -2;
	time_t tt = (time_t)floor(t);
	struct tm tm;
	if (!gmtime_r(&tt, &tm))
		return *why = "out of range (years 0000 to 9999)", -2;
	if (!fmt) {     /* ISO 8601: strftime's %Y has no leading zeros before year 1000 */
		int n = snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
				 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		return n < 0 || (size_t)n >= size ? (*why = "the result is too long", -1) : 0;
	}
	if (!*fmt) {
		buf[0] = '\0';
		return 0;
	}
	if (!strftime(buf, size, fmt, &tm))
		return *why = "the result is too long", -1;
	return 0;
}

void rb_utc_text(time_t t, char buf[32])
{
	const char *why;
	if (rb_isotime_format((double)t, NULL, buf, 32, &why) < 0)
		snprintf(buf, 32, "(time out of range)");
}
