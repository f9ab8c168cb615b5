/*
 * Calendar arithmetic for schedules and windows (cal.h).
 *
 * Dates are counted in days since 1970-01-01 (Hinnant's civil_from_days),
 * so walking a calendar never touches the C library; the library is asked
 * only for a zone's UTC offset at an instant (localtime_r under
 * TZ=":NAME").  A local wall-clock time w ("local seconds": days * 86400 +
 * seconds of the day) becomes an instant by one rule, resolve(): the first
 * instant whose wall clock reads w or later.  That is the instant itself for
 * an ordinary time, the first of the two for a time that a fall-back change
 * repeats, and the end of the gap for a time that a spring-forward change
 * skips (docs/schedule.md says what that means for cron slots and windows).
 * Because resolve() is monotonic, a slot whose wall time is at or before
 * the wall time of t can never start after t: the searches below skip those
 * without asking the library anything.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cal.h"
#include "util.h"

enum { DAY = 86400, HORIZON_DAYS = 5 * 366 };

/* --- civil calendar ------------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = floor_div(z, 146097);
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

/* 0 Sunday .. 6 Saturday; 1970-01-01 was a Thursday. */
static int weekday(int64_t days)
{
	return (int)(((days + 4) % 7 + 7) % 7);
}

static int month_days(int64_t y, int m)
{
	static const int n[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return n[m - 1] + (m == 2 && leap);
}

/* --- zones ---------------------------------------------------------------- */

/*
 * The zone the C library computes in.  "local" is the process's own TZ as it
 * was on the first call (or /etc/localtime when unset); every public function
 * puts that back before it returns, so the rest of the program (exec_svc.c's
 * clock, strftime) keeps seeing the local zone.  Calls nest (a schedule's
 * zone, then its window's): an inner one puts the outer one's zone back, and
 * a zone already in force is not set again (glibc reads the file each time).
 */
struct zone {
	int utc;
	char prev[128];          /* the zone in force before; "" the original */
};

static int orig_saved;
static char *orig_tz;            /* NULL: TZ was unset */
static char cur_tz[128];         /* the zone set here; "" the original */

static void zone_set(const char *name)
{
	if (!strcmp(cur_tz, name))
		return;
	if (*name) {
		char buf[136];
		snprintf(buf, sizeof(buf), ":%s", name);
		setenv("TZ", buf, 1);
	} else if (orig_tz) {
		setenv("TZ", orig_tz, 1);
	} else {
		unsetenv("TZ");
	}
	tzset();
	snprintf(cur_tz, sizeof(cur_tz), "%s", name);
}

static void zone_enter(struct zone *z, const char *tz)
{
	z->utc = !tz || !strcmp(tz, "UTC");
	if (z->utc)
		return;
	if (!orig_saved) {
		const char *s = getenv("TZ");
		orig_tz = s ? rb_xstrdup(s) : NULL;
		orig_saved = 1;
	}
	snprintf(z->prev, sizeof(z->prev), "%s", cur_tz);
	zone_set(strcmp(tz, "local") ? tz : "");
}

static void zone_leave(struct zone *z)
{
	if (!z->utc)
		zone_set(z->prev);
}

static long offset_at(const struct zone *z, time_t t)
{
	if (z->utc)
		return 0;
	struct tm tm;
	if (!localtime_r(&t, &tm))
		return 0;
	return tm.tm_gmtoff;
}

/* The first instant whose wall clock reads w (local seconds) or later. */
static time_t resolve(const struct zone *z, int64_t w)
{
	if (z->utc)
		return (time_t)w;
	/* The offsets a day either side: a zone changes at most once in between. */
	long o[2] = {offset_at(z, (time_t)(w - DAY)), offset_at(z, (time_t)(w + DAY))};
	int found = 0;
	time_t best = 0;
	for (int i = 0; i < 2; i++) {
		time_t t = (time_t)(w - o[i]);
		if (offset_at(z, t) == o[i] && (!found || t < best)) {
			best = t;
			found = 1;
		}
	}
	if (found)
		return best;
	/* w is in a gap: the change is between lo (wall before w) and hi (wall after). */
	time_t lo = (time_t)(w - (o[0] > o[1] ? o[0] : o[1]));
	time_t hi = (time_t)(w - (o[0] < o[1] ? o[0] : o[1]));
	while (hi - lo > 1) {
		time_t mid = lo + (hi - lo) / 2;
		if (mid + offset_at(z, mid) >= w)
			hi = mid;
		else
			lo = mid;
	}
	return hi;
}

/* t's wall clock in local seconds. */
static int64_t wall_of(const struct zone *z, time_t t)
{
	return (int64_t)t + offset_at(z, t);
}

static int tz_name_ok(const char *s)
{
	if (!*s || strlen(s) >= 128 || *s == '/')
		return 0;
	for (const char *p = s; *p; p++) {
		int start = p == s || p[-1] == '/';
		if (start && !((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			       (*p >= '0' && *p <= '9')))
			return 0;       /* no "..", ".x", "-x", "//", trailing "/" */
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9') || strchr("/_+-", *p)))
			return 0;
	}
	return s[strlen(s) - 1] != '/';
}

int rb_tz_check(const char *name, char **err)
{
	if (!name || !strcmp(name, "UTC") || !strcmp(name, "local"))
		return 0;
	if (!tz_name_ok(name)) {
		*err = rb_xasprintf("invalid time zone '%s' (expected UTC, local or an IANA "
				    "name such as Europe/Paris)", name);
		return -1;
	}
	/* glibc reads TZDIR when it is set, else its own directory, and falls back
	 * to UTC in silence when the file is missing: check the same file here. */
	const char *dir = getenv("TZDIR");
	if (!dir || !*dir)
		dir = "/usr/share/zoneinfo";
	char *path = rb_xasprintf("%s/%s", dir, name);
	struct stat st;
	char magic[4] = {0};
	int ok = 0;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		*err = rb_xasprintf("unknown time zone '%s' (a directory of zones in %s, not "
				    "a zone)", name, dir);
		free(path);
		return -1;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		     read(fd, magic, 4) == 4 && !memcmp(magic, "TZif", 4);
		close(fd);
	}
	free(path);
	if (!ok) {
		*err = rb_xasprintf("unknown time zone '%s' (no such zone in %s)", name, dir);
		return -1;
	}
	return 0;
}

void rb_tz_local(const char *tz, time_t t, struct tm *out)
{
	struct zone z;
	zone_enter(&z, tz);
	if (z.utc) {
		gmtime_r(&t, out);
		out->tm_zone = "UTC";
	} else {
		localtime_r(&t, out);
	}
	zone_leave(&z);
}

/* --- cron ------------------------------------------------------------------ */

static int cron_day(const struct rb_cron *c, int64_t days)
{
	int64_t y;
	int m, d;
	civil_from_days(days, &y, &m, &d);
	int wd = weekday(days);
	int dm = (c->dom >> d) & 1;
	int wm = ((c->dow >> wd) & 1) || rb_nth_match(c->dow_nth[wd], d, month_days(y, m));
	return c->days_or ? dm || wm : dm && wm;
}

static time_t cron_next(const struct zone *z, const struct rb_cron *c, time_t t)
{
	int64_t lw = wall_of(z, t);
	int64_t day0 = floor_div(lw, DAY);
	for (int64_t day = day0; day <= day0 + HORIZON_DAYS;) {
		int64_t y;
		int m, d;
		civil_from_days(day, &y, &m, &d);
		if (!((c->month >> m) & 1)) {           /* the first of the next month */
			day += month_days(y, m) - d + 1;
			continue;
		}
		if (cron_day(c, day)) {
			for (int h = 0; h < 24; h++) {
				if (!((c->hour >> h) & 1) || (day * DAY + h * 3600 + 3599) <= lw)
					continue;
				for (int mi = 0; mi < 60; mi++) {
					int64_t w = day * DAY + h * 3600 + mi * 60;
					if (!((c->minute >> mi) & 1) || w <= lw)
						continue;
					time_t s = resolve(z, w);
					if (s > t)
						return s;
				}
			}
		}
		day++;
	}
	return -1;
}

time_t rb_cron_next(const struct rb_cron *c, const char *tz, time_t t)
{
	struct zone z;
	zone_enter(&z, tz);
	time_t r = cron_next(&z, c, t);
	zone_leave(&z);
	return r;
}

/* --- windows --------------------------------------------------------------- */

/* Whether a window opens on that day (its days name the day it starts on). */
static int window_day(const struct rb_window *w, int64_t days)
{
	int64_t y;
	int m, d;
	civil_from_days(days, &y, &m, &d);
	int wd = (weekday(days) + 6) % 7;       /* 0 Monday */
	return ((w->days >> wd) & 1) || rb_nth_match(w->nth[wd], d, month_days(y, m));
}

/*
 * The window that contains t, or else the next one: 0 with its opening and
 * closing instants, or -1 when none opens within the horizon.
 */
static int window_find(const struct zone *z, const struct rb_window *w, time_t t,
		       time_t *open, time_t *close)
{
	if (w->start == w->end)
		return -1;
	int64_t day0 = floor_div(wall_of(z, t), DAY);
	for (int64_t day = day0 - 1; day <= day0 + HORIZON_DAYS; day++) {
		if (!window_day(w, day))
			continue;
		int64_t end_day = w->end > w->start ? day : day + 1;
		time_t o = resolve(z, day * DAY + w->start * 60);
		time_t c = resolve(z, end_day * DAY + w->end * 60);
		if (c <= t || c <= o)       /* past, or empty (inside one gap) */
			continue;
		*open = o;
		*close = c;
		return 0;
	}
	return -1;
}

static int window_at(const struct rb_window *w, time_t t, time_t *open, time_t *close)
{
	struct zone z;
	zone_enter(&z, w->timezone);
	int rc = window_find(&z, w, t, open, close);
	zone_leave(&z);
	return rc;
}

int rb_window_contains(const struct rb_window *w, time_t t)
{
	time_t o, c;
	return window_at(w, t, &o, &c) == 0 && o <= t;
}

time_t rb_window_close(const struct rb_window *w, time_t t)
{
	time_t o, c;
	return window_at(w, t, &o, &c) == 0 && o <= t ? c : -1;
}

time_t rb_window_next_open(const struct rb_window *w, time_t t)
{
	time_t o, c;
	if (window_at(w, t, &o, &c) < 0)
		return -1;
	return o <= t ? t : o;
}

/* --- schedules --------------------------------------------------------------- */

size_t rb_schedule_starts(const struct rb_cron *c, const char *tz, const struct rb_window *w,
			  time_t t, time_t *out, long *gmtoff, size_t n)
{
	time_t limit = t + (time_t)HORIZON_DAYS * DAY;
	size_t k = 0;
	struct zone z;
	zone_enter(&z, tz);
	while (k < n) {
		time_t s = cron_next(&z, c, t);
		if (s < 0 || s > limit)
			break;
		time_t o = w ? rb_window_next_open(w, s) : s;
		if (o < 0 || o > limit)
			break;
		if (o == s) {
			if (gmtoff)
				gmtoff[k] = offset_at(&z, s);
			out[k++] = s;
		}
		t = o == s ? s : o - 1;         /* else the first slot at or after the opening */
	}
	zone_leave(&z);
	return k;
}

time_t rb_schedule_next(const struct rb_cron *c, const char *tz, const struct rb_window *w,
			time_t t)
{
	time_t s;
	return rb_schedule_starts(c, tz, w, t, &s, NULL, 1) ? s : -1;
}
/* --- systemd OnCalendar= ------------------------------------------------------ */

/* The set bits lo..hi of bits as "*" (all of them) or "1,3..5,9". */
static void cal_list(struct rb_buf *b, uint64_t bits, int lo, int hi)
{
	uint64_t all = ((hi - lo + 1) >= 64 ? ~0ull : ((1ull << (hi - lo + 1)) - 1)) << lo;
	if ((bits & all) == all) {
		rb_buf_puts(b, "*");
		return;
	}
	const char *sep = "";
	for (int v = lo; v <= hi; v++) {
		if (!((bits >> v) & 1))
			continue;
		int e = v;
		while (e < hi && ((bits >> (e + 1)) & 1))
			e++;
		if (e - v >= 2)
			rb_buf_printf(b, "%s%02d..%02d", sep, v, e);
		else if (e == v + 1)
			rb_buf_printf(b, "%s%02d,%02d", sep, v, e);
		else
			rb_buf_printf(b, "%s%02d", sep, v);
		sep = ",";
		v = e;
	}
}

int rb_cron_oncalendar(const struct rb_cron *c, char *buf, size_t size)
{
	static const char *const names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	uint64_t dom = c->dom;
	unsigned dow = c->dow, nth = 0;
	int last = 0;
	for (int d = 0; d < 7; d++) {
		if (!c->dow_nth[d])
			continue;
		if ((nth && c->dow_nth[d] != nth) || (c->dow & 0x7F))
			return -1;      /* sun#1,mon#2 or sun#1,mon: not one line */
		nth = c->dow_nth[d];
		dow |= 1u << d;
	}
	if (nth) {
		if (nth & (nth - 1))
			return -1;      /* sun#1,sun#3 */
		if (nth == RB_NTH_LAST) {
			if ((dom & 0xFFFFFFFEu) != 0xFFFFFFFEu)
				return -1;
			last = 1;
		} else {
			int n = __builtin_ctz(nth);             /* the n+1-th */
			uint64_t week = 0x7Full << (1 + 7 * n);
			dom &= week;
			if (!dom)
				return -1;
		}
	}
	if (c->days_or)
		return -1;
	struct rb_buf b;
	rb_buf_init(&b);
	if ((dow & 0x7F) != 0x7F) {
		/* systemd's week starts on Monday: "Sun..Tue" is no range there */
		const char *sep = "";
		for (int i = 0; i < 7; i++) {
			int d = (i + 1) % 7;                    /* Mon .. Sun */
			if (!((dow >> d) & 1))
				continue;
			int e = i;
			while (e < 6 && ((dow >> ((e + 2) % 7)) & 1))
				e++;
			if (e - i >= 2)
				rb_buf_printf(&b, "%s%s..%s", sep, names[d], names[(e + 1) % 7]);
			else
				rb_buf_printf(&b, "%s%s%s%s", sep, names[d], e > i ? "," : "",
					      e > i ? names[(e + 1) % 7] : "");
			sep = ",";
			i = e;
		}
		rb_buf_puts(&b, " ");
	}
	rb_buf_puts(&b, "*-");
	cal_list(&b, c->month, 1, 12);
	if (last) {
		rb_buf_puts(&b, "~07/1");
	} else {
		rb_buf_puts(&b, "-");
		cal_list(&b, dom, 1, 31);
	}
	rb_buf_puts(&b, " ");
	cal_list(&b, c->hour, 0, 23);
	rb_buf_puts(&b, ":");
	cal_list(&b, c->minute, 0, 59);
	rb_buf_puts(&b, ":00");
	int n = (int)b.len;
	if (b.len >= size)
		n = -1;
	else
		memcpy(buf, b.s, b.len + 1);
	rb_buf_release(&b);
	return n;
}

size_t rb_window_day_words(const struct rb_window *w, char words[][6])
{
	static const char *const names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
	size_t n = 0;
	for (int i = 0; i < 7; i++) {
		if (w->days & (1u << i))
			snprintf(words[n++], 6, "%s", names[i]);
		for (int k = 0; k < 6; k++)     /* sun#1 .. sun#5, sun#L */
			if (w->nth[i] & (1u << k))
				snprintf(words[n++], 6, "%s#%c", names[i], k < 5 ? '1' + k : 'L');
	}
	return n;
}

void rb_window_text(const struct rb_window *w, char *buf, size_t size)
{
	char words[RB_WINDOW_DAY_WORDS][6];
	size_t n = (w->days & 0x7F) == 0x7F ? 0 : rb_window_day_words(w, words), len = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? "," : "", words[i]);
	if (len < size)
		snprintf(buf + len, size - len, "%s%02d:%02d-%02d:%02d %s", n ? " " : "", w->start / 60,
			 w->start % 60, w->end / 60, w->end % 60, w->timezone ? w->timezone : "UTC");
}
