/*
 * ISO 8601 / RFC 3339 times for the sandbox's time library (time.parse,
 * time.format): text to seconds since the epoch and back, in UTC.  Pure C:
 * no Lua, and never the process's time zone.
 */
#ifndef RB_ISOTIME_H
#define RB_ISOTIME_H

#include <stddef.h>
#include <time.h>

/*
 * Parse s[0..len): a date (YYYY-MM-DD: its midnight in UTC) or a date and a
 * time, YYYY-MM-DDTHH:MM[:SS[.FFF]] ('T', 't' or a space between them, ','
 * for '.' too) with its zone: Z or an offset, +HH:MM, +HHMM or +HH.  Sets *t
 * to seconds since the epoch and *whole when there is no fraction of a
 * second.  -1 with *why (static text) when s is not such a time.
 */
int rb_isotime_parse(const char *s, size_t len, double *t, int *whole, const char **why);

/*
 * strftime of t (seconds since the epoch, the fraction dropped) in UTC into
 * buf; fmt NULL: ISO 8601, YYYY-MM-DDTHH:MM:SSZ.  Only the conversions of C99
 * are allowed.  With *why (static text):
 * -1 for the format (another conversion, a result that does not fit), -2 for
 * a time out of range.
 */
int rb_isotime_format(double t, const char *fmt, char *buf, size_t size, const char **why);

/* rb_isotime_format(t, NULL), "2026-01-04T02:00:00Z", for a time known to be in range. */
void rb_utc_text(time_t t, char buf[32]);

#endif
