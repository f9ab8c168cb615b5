/*
 * Parsers for the small literal languages inside a runbook: durations, cron
 * fields and clock times, plus the type check for literal values.  They only
 * parse; callers attach positions to the errors.
 */
#include "types.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "yaml_doc.h"

static const struct {
	const char *unit;
	int64_t ms;
} units[] = {
	{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1},
};

int rb_duration_parse(const char *s, int64_t *ms, const char **why)
{
	int64_t total = 0;
	const int64_t max = (int64_t)RB_MAX_DURATION_MS_DAYS * 86400000;
	if (!*s) {
		*why = "empty duration";
		return -1;
	}
	while (*s) {
		if (!isdigit((unsigned char)*s)) {
			*why = "expected a number followed by ms, s, m, h or d, such as '30s' or '1h30m'";
			return -1;
		}
		int64_t v = 0;
		while (isdigit((unsigned char)*s)) {
			v = v * 10 + (*s++ - '0');
			if (v > max) {
				*why = "duration longer than 366 days";
				return -1;
			}
		}
		size_t k, n = sizeof(units) / sizeof(units[0]);
		for (k = 0; k < n; k++) {
			size_t ul = strlen(units[k].unit);
			if (!strncmp(s, units[k].unit, ul) && !isalpha((unsigned char)s[ul]))
				break;
		}
		if (k == n) {
			*why = *s ? "unknown unit: use ms, s, m, h or d, such as '30s' or '1h30m'"
				  : "missing unit: write '30s', not '30'";
			return -1;
		}
		total += v * units[k].ms;
		if (total > max) {
			*why = "duration longer than 366 days";
			return -1;
		}
		s += strlen(units[k].unit);
	}
	*ms = total;
	return 0;
}

void rb_duration_format(int64_t ms, char *buf, size_t size)
{
	size_t len = 0;
	buf[0] = '\0';
	if (ms == 0) {
		snprintf(buf, size, "0s");
		return;
	}
	for (size_t k = 0; k < sizeof(units) / sizeof(units[0]) && len < size; k++) {
		int64_t v = ms / units[k].ms;
		if (!v)
			continue;
		ms -= v * units[k].ms;
		len += (size_t)snprintf(buf + len, size - len, "%lld%s", (long long)v,
					units[k].unit);
	}
}

/* --- cron ------------------------------------------------------------------ */

static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
				     "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct field {
	const char *name;
	int lo, hi;
	const char *const *names;
	int name_base;
};

static const struct field fields[5] = {
	{"minute", 0, 59, NULL, 0},
	{"hour", 0, 23, NULL, 0},
	{"day of month", 1, 31, NULL, 0},
	{"month", 1, 12, months, 1},
	{"day of week", 0, 7, days, 0},
};

static int cron_value(const struct field *f, const char **p, int *v, char **err)
{
	const char *s = *p;
	if (isdigit((unsigned char)*s)) {
		long n = 0;
		while (isdigit((unsigned char)*s) && n < 1000)
			n = n * 10 + (*s++ - '0');
		if (n < f->lo || n > f->hi) {
			*err = rb_xasprintf("%s %ld is out of range %d-%d", f->name, n, f->lo,
					    f->hi);
			return -1;
		}
		*v = (int)n;
		*p = s;
		return 0;
	}
	if (f->names && isalpha((unsigned char)*s)) {
		int count = f == &fields[3] ? 12 : 7;
		for (int i = 0; i < count; i++) {
			if (!strncasecmp(s, f->names[i], 3) && !isalpha((unsigned char)s[3])) {
				*v = i + f->name_base;
				*p = s + 3;
				return 0;
			}
		}
	}
	*err = rb_xasprintf("invalid %s '%.*s'", f->name, (int)strcspn(s, ",-/"), s);
	return -1;
}

/* After a weekday, "#1" .. "#5" or "#L": its n-th or last in the month, as a
 * bit of rb_cron's dow_nth. */
static int cron_nth(const char **p, const char *day, unsigned *nth, char **err)
{
	const char *s = *p + 1;
	if (*s >= '1' && *s <= '5' && !isalnum((unsigned char)s[1]))
		*nth = 1u << (*s - '1');
	else if ((*s == 'L' || *s == 'l') && !isalnum((unsigned char)s[1]))
		*nth = RB_NTH_LAST;
	else {
		*err = rb_xasprintf("invalid day of week '%.*s': after '#' comes 1 to 5 (the "
				    "n-th such day of the month) or L (the last)",
				    (int)strcspn(day, ","), day);
		return -1;
	}
	*p = s + 1;
	return 0;
}

/* One field into bits; for the day of week (nth != NULL), "sun#2" and "5#L"
 * go to nth[0..7] instead. */
static int cron_field(const struct field *f, const char *s, uint64_t *bits, uint8_t *nth,
		      char **err)
{
	*bits = 0;
	for (;;) {
		int lo = f->lo, hi = f->hi, step = 1;
		const char *item = s;
		if (*s == '*') {
			s++;
		} else {
			if (cron_value(f, &s, &lo, err) < 0)
				return -1;
			hi = lo;
			if (nth && *s == '#') {
				unsigned n;
				if (cron_nth(&s, item, &n, err) < 0)
					return -1;
				nth[lo] |= (uint8_t)n;
				goto next;
			}
			if (*s == '-') {
				s++;
				if (cron_value(f, &s, &hi, err) < 0)
					return -1;
				if (hi < lo) {
					*err = rb_xasprintf("%s range %d-%d is backwards", f->name,
							    lo, hi);
					return -1;
				}
			}
		}
		if (*s == '/') {
			s++;
			if (!isdigit((unsigned char)*s)) {
				*err = rb_xasprintf("%s step must be a number", f->name);
				return -1;
			}
			long n = 0;
			while (isdigit((unsigned char)*s) && n < 1000)
				n = n * 10 + (*s++ - '0');
			if (n < 1 || n > f->hi) {
				*err = rb_xasprintf("%s step %ld is out of range 1-%d", f->name, n,
						    f->hi);
				return -1;
			}
			step = (int)n;
		}
		for (int v = lo; v <= hi; v += step)
			*bits |= 1ull << v;
next:
		if (*s == '\0')
			return 0;
		if (*s != ',') {
			*err = rb_xasprintf("unexpected '%c' in %s field", *s, f->name);
			return -1;
		}
		s++;
	}
}

int rb_cron_parse(const char *s, struct rb_cron *c, char **err)
{
	static const struct {
		const char *macro, *expansion;
	} macros[] = {
		{"@hourly", "0 * * * *"}, {"@daily", "0 0 * * *"}, {"@midnight", "0 0 * * *"},
		{"@weekly", "0 0 * * 0"}, {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
		{"@annually", "0 0 1 1 *"},
	};
	if (*s == '@') {
		for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++)
			if (!strcmp(s, macros[i].macro))
				return rb_cron_parse(macros[i].expansion, c, err);
		*err = rb_xasprintf("unknown cron macro '%s' (expected @hourly, @daily, "
				    "@weekly, @monthly or @yearly)", s);
		return -1;
	}
	char buf[256];
	if (strlen(s) >= sizeof(buf)) {
		*err = rb_xstrdup("cron expression too long");
		return -1;
	}
	strcpy(buf, s);
	char *tok[6], *save = NULL;
	int n = 0;
	for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
		if (n < 6)
			tok[n++] = t;
		else
			n++;
	if (n != 5) {
		*err = rb_xasprintf("cron expression has %d field%s, expected 5 (minute hour "
				    "day-of-month month day-of-week)", n, n == 1 ? "" : "s");
		return -1;
	}
	uint64_t bits[5];
	uint8_t nth[8] = {0};
	for (int i = 0; i < 5; i++)
		if (cron_field(&fields[i], tok[i], &bits[i], i == 4 ? nth : NULL, err) < 0)
			return -1;
	for (int d = 0; d < 7; d++)
		c->dow_nth[d] = (uint8_t)(nth[d] | (d ? 0 : nth[7]));
	c->minute = bits[0];
	c->hour = (uint32_t)bits[1];
	c->dom = (uint32_t)bits[2];
	c->month = (uint16_t)bits[3];
	c->dow = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7F);    /* 7 is Sunday too */
	/* cron's rule (Vixie, POSIX): a day field that starts with '*' is not a restriction;
	 * when neither does, a day matches when either field does */
	c->days_or = tok[2][0] != '*' && tok[4][0] != '*';
	return 0;
}

int rb_nth_match(unsigned nth, int mday, int mdays)
{
	return ((nth >> ((mday - 1) / 7)) & 1) || ((nth & RB_NTH_LAST) && mday + 7 > mdays);
}

int rb_weekday_parse(const char *s, int *wday, unsigned *nth, char **err)
{
	const char *p = s;
	if (cron_value(&fields[4], &p, wday, err) < 0)
		return -1;
	*wday %= 7;
	*nth = 0;
	if (*p == '#' && cron_nth(&p, s, nth, err) < 0)
		return -1;
	if (*p) {
		*err = rb_xasprintf("invalid day of week '%s'", s);
		return -1;
	}
	return 0;
}

int rb_clock_parse(const char *s)
{
	if (strlen(s) != 5 || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
	    s[2] != ':' || !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
		return -1;
	int h = (s[0] - '0') * 10 + (s[1] - '0');
	int m = (s[3] - '0') * 10 + (s[4] - '0');
	if (h > 23 || m > 59)
		return -1;
	return h * 60 + m;
}

/* --- types ------------------------------------------------------------------ */

const char *rb_type_name(enum rb_type t)
{
	static const char *const names[] = {
		"string", "integer", "number", "boolean", "duration", "list", "map",
		"any", "command", "map of strings",
	};
	return (size_t)t < sizeof(names) / sizeof(names[0]) ? names[t] : "value";
}

int rb_value_fits(const struct rb_node *n, enum rb_type t, char **why)
{
	enum rb_scalar_kind k = n->type == RB_SCALAR ? rb_scalar_kind(n) : RB_K_STRING;
	int ok = 0;
	switch (t) {
	case RB_T_ANY:
		return 1;
	case RB_T_STRING:
		/* Numbers and booleans are written as strings often enough
		   (port: 5432) that refusing them would only annoy. */
		ok = n->type == RB_SCALAR && k != RB_K_NULL;
		break;
	case RB_T_INTEGER:
		ok = n->type == RB_SCALAR && k == RB_K_INT;
		break;
	case RB_T_NUMBER:
		ok = n->type == RB_SCALAR && (k == RB_K_INT || k == RB_K_FLOAT);
		break;
	case RB_T_BOOLEAN:
		ok = n->type == RB_SCALAR && k == RB_K_BOOL;
		break;
	case RB_T_DURATION:
		if (n->type == RB_SCALAR && k == RB_K_STRING) {
			int64_t ms;
			const char *w;
			if (rb_duration_parse(n->str, &ms, &w) < 0) {
				*why = rb_xasprintf("invalid duration '%s': %s", n->str, w);
				return 0;
			}
			return 1;
		}
		if (n->type == RB_SCALAR && k == RB_K_INT) {
			*why = rb_xasprintf("invalid duration '%s': missing unit: write '%ss', "
					    "not '%s'", n->str, n->str, n->str);
			return 0;
		}
		break;
	case RB_T_LIST:
		ok = n->type == RB_SEQ;
		break;
	case RB_T_MAP:
		ok = n->type == RB_MAP;
		break;
	case RB_T_COMMAND:
		if (n->type == RB_SCALAR && k != RB_K_NULL)
			return 1;
		if (n->type == RB_SEQ && n->n > 0) {
			for (size_t i = 0; i < n->n; i++)
				if (n->items[i]->type != RB_SCALAR) {
					*why = rb_xasprintf("command arguments must be strings, "
							    "not %s",
							    rb_node_kind_name(n->items[i]));
					return 0;
				}
			return 1;
		}
		*why = rb_xasprintf("expected a command string or a non-empty list, got %s",
				    n->type == RB_SEQ ? "an empty list" : rb_node_kind_name(n));
		return 0;
	case RB_T_STRING_MAP:
		if (n->type == RB_MAP) {
			for (size_t i = 0; i < n->n; i++) {
				const struct rb_node *v = n->items[2 * i + 1];
				if (v->type != RB_SCALAR || rb_scalar_kind(v) == RB_K_NULL) {
					*why = rb_xasprintf("value of '%s' must be a string, not %s",
							    n->items[2 * i]->str,
							    rb_node_kind_name(v));
					return 0;
				}
			}
			return 1;
		}
		break;
	}
	if (!ok)
		*why = rb_xasprintf("expected %s %s, got %s",
				    t == RB_T_INTEGER ? "an" : "a", rb_type_name(t),
				    rb_node_kind_name(n));
	return ok;
}

/* --- arguments known at run time ------------------------------------------------------ */

static const char *json_kind(const json_t *v)
{
	return json_is_object(v) ? "a map" : json_is_array(v) ? "a list" : json_is_null(v) ? "nil"
	       : json_is_boolean(v) ? "a boolean" : json_is_string(v) ? "a string" : "a number";
}

/*
 * A scalar as text, as the runbook wrote it when lit is its literal node (1.10 stays
 * 1.10), else as Lua would print it; NULL for nil, lists and maps.
 */
static json_t *scalar_text(const json_t *v, const struct rb_node *lit)
{
	if (json_is_string(v))
		return json_incref((json_t *)v);
	if (lit && lit->type == RB_SCALAR && !lit->tmpl && (json_is_number(v) || json_is_boolean(v)))
		return json_stringn(lit->str, lit->len);
	if (json_is_integer(v)) {
		char *s = rb_xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
		json_t *t = json_string(s);
		free(s);
		return t;
	}
	if (json_is_real(v)) {          /* the fewest digits that read back the same */
		double d = json_real_value(v);
		char buf[40];
		for (int prec = 14; prec <= 17; prec++) {
			snprintf(buf, sizeof(buf), "%.*g", prec, d);
			if (strtod(buf, NULL) == d)
				break;
		}
		return json_string(buf);
	}
	if (json_is_boolean(v))
		return json_string(json_is_true(v) ? "true" : "false");
	return NULL;
}

int rb_arg_fit(const struct rb_arg *g, const struct rb_node *lit, json_t **v, char **why)
{
	json_t *x = *v, *t;
	if (json_is_null(x) && !(g->flags & RB_ARG_REQUIRED))
		return 0;               /* nil: not given, as when it is left out */
	switch (g->type) {
	case RB_T_STRING:
		if (!(t = scalar_text(x, lit))) {
			*why = rb_xasprintf("expected a string, not %s", json_kind(x));
			return -1;
		}
		json_decref(x);
		*v = t;
		if (g->choices) {
			const char *s = json_string_value(t);
			size_t j;
			for (j = 0; g->choices[j] && strcmp(s, g->choices[j]); j++)
				;
			if (!g->choices[j]) {   /* the value is not quoted: it may hold a secret */
				struct rb_buf b;
				rb_buf_init(&b);
				for (j = 0; g->choices[j]; j++)
					rb_buf_printf(&b, "%s%s", j ? ", " : "", g->choices[j]);
				*why = rb_xasprintf("expected one of %s", b.s);
				rb_buf_release(&b);
				return -1;
			}
		}
		return 0;
	case RB_T_STRING_MAP: {
		if (!json_is_object(x)) {
			*why = rb_xasprintf("expected a map of strings, not %s", json_kind(x));
			return -1;
		}
		const char *k;
		json_t *e;
		json_object_foreach(x, k, e) {
			const struct rb_node *ln = NULL;
			for (size_t i = 0; lit && lit->type == RB_MAP && i < lit->n; i++)
				if (lit->items[2 * i]->type == RB_SCALAR &&
				    !strcmp(lit->items[2 * i]->str, k))
					ln = lit->items[2 * i + 1];
			if (!(t = scalar_text(e, ln))) {
				*why = rb_xasprintf("value of '%s' must be a string, not %s", k,
						    json_kind(e));
				return -1;
			}
			json_object_set_new(x, k, t);
		}
		return 0;
	}
	case RB_T_DURATION: {
		int64_t ms;
		const char *w = "expected a duration, like 10s";
		if (!json_is_string(x) || rb_duration_parse(json_string_value(x), &ms, &w) < 0) {
			*why = json_is_string(x) ? rb_xasprintf("invalid duration: %s", w)
			       : rb_xasprintf("expected a duration, like 10s, not %s", json_kind(x));
			return -1;
		}
		return 0;
	}
	case RB_T_INTEGER:
		if (json_is_real(x) && json_real_value(x) == (double)(json_int_t)json_real_value(x)) {
			*v = json_integer((json_int_t)json_real_value(x));      /* 6 / 2 is 3.0 */
			json_decref(x);
			return 0;
		}
		if (!json_is_integer(x)) {
			*why = rb_xasprintf("expected an integer, not %s", json_kind(x));
			return -1;
		}
		return 0;
	case RB_T_LIST:
	case RB_T_MAP:
		if (g->type == RB_T_LIST ? !json_is_array(x) : !json_is_object(x)) {
			*why = rb_xasprintf("expected a %s, not %s", g->type == RB_T_LIST ? "list"
					    : "map", json_kind(x));
			return -1;
		}
		return 0;
	default:                /* booleans are Lua's truth (assert), the rest the action's */
		return 0;
	}
}
