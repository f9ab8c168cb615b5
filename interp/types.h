/*
 * Literal value syntax shared by the loader and the CLI: durations, cron
 * expressions, clock times, and checking a YAML value against a type.
 */
#ifndef RB_TYPES_H
#define RB_TYPES_H

#include <stdint.h>

#include "action.h"

struct rb_node;

enum { RB_MAX_DURATION_MS_DAYS = 366 };

/* "1h30m" -> milliseconds.  Returns 0, or -1 with a reason in *why. */
int rb_duration_parse(const char *s, int64_t *ms, const char **why);
/* Milliseconds -> "1h30m" into buf. */
void rb_duration_format(int64_t ms, char *buf, size_t size);

struct rb_cron {
	uint64_t minute;        /* bit per allowed value */
	uint32_t hour, dom;
	uint16_t month;         /* bits 1..12 */
	uint8_t dow;            /* bits 0..6, Sunday 0 */
	/* sun#1 .. sun#5, sun#L: weekday d (Sunday 0) only on its n-th in the month
	 * (bit n-1) or its last (RB_NTH_LAST); the weekday's bit in dow stays clear */
	uint8_t dow_nth[7];
	int days_or;            /* both day fields restricted: cron runs on either's days */
};

enum { RB_NTH_LAST = 1 << 5 };

/* Whether a day that is the mday-th of a month of mdays days, on its weekday,
 * is one that nth (bits as in dow_nth) names. */
int rb_nth_match(unsigned nth, int mday, int mdays);

/* "sun", "sun#1" .. "sun#5", "sun#L" (a name or 0-7, any case) -> the weekday
 * (Sunday 0) and its nth bits (0: every such weekday).  Returns 0, or -1 with
 * a malloc'd message in *err. */
int rb_weekday_parse(const char *s, int *wday, unsigned *nth, char **err);

/* Returns 0, or -1 with a malloc'd message in *err. */
int rb_cron_parse(const char *s, struct rb_cron *c, char **err);

/* "HH:MM" -> minutes since midnight, or -1. */
int rb_clock_parse(const char *s);

const char *rb_type_name(enum rb_type t);

/*
 * Whether a literal YAML value fits type t.  Returns 1, or 0 with *why
 * (malloc'd) describing the mismatch.
 */
int rb_value_fits(const struct rb_node *n, enum rb_type t, char **why);

/*
 * A rendered argument of type g at run time, *v (replaced when it becomes text: a number
 * for a string, as validate lets a literal be), given its node as written, lit (for the
 * literal text: 1.10, not 1.1).  nil for an argument that is not required is left, as not
 * given.  Returns 0, or -1 with *why (malloc'd; it quotes no value, which may be secret).
 */
int rb_arg_fit(const struct rb_arg *g, const struct rb_node *lit, json_t **v, char **why);

#endif
