/*
 * The default patterns: e-mail addresses and phone numbers, the PII that
 * the operations guides want masked in logs.  Each is a POSIX regular
 * expression, a finder of the pieces of a line worth giving to regexec, and
 * a check of what a regular expression cannot say (no \b, no look-around):
 * that a number is not part of a timestamp, a version, an address or an id.
 * The negatives in tests/unit/test_redact.c are what these checks are for.
 */
#include "redact_int.h"

#include <ctype.h>
#include <strings.h>
#include <string.h>

static int word(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

static int digit(char c)
{
	return c >= '0' && c <= '9';
}

/* --- e-mail ---------------------------------------------------------------------- */

static const char email_ere[] =
	"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*\\.[A-Za-z][A-Za-z]+";

static int local_char(char c)
{
	return isalnum((unsigned char)c) || (c && strchr("._%+-", c));
}

static int domain_char(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '-';
}

/* Around each '@': the characters an address can be made of. */
static int email_segment(const char *line, size_t len, size_t *pos, size_t *so, size_t *eo)
{
	while (*pos < len) {
		const char *at = memchr(line + *pos, '@', len - *pos);
		if (!at)
			break;
		size_t a = (size_t)(at - line), l = a, r = a + 1;
		while (l > 0 && local_char(line[l - 1]))
			l--;
		while (r < len && domain_char(line[r]))
			r++;
		*pos = r;
		if (l < a && r > a + 1) {
			*so = l;
			*eo = r;
			return 1;
		}
	}
	return 0;
}

/*
 * "Domains" that are systemd unit types (getty@tty1.service) or file
 * types (icon@2x.png, pkg@1.2.3.tgz), not top-level domains in use.
 */
static const char *const not_tld[] = {
	"automount", "conf", "css", "csv", "device", "gif", "gz", "htm", "html", "ico", "ini",
	"jpeg", "jpg", "js", "json", "lock", "log", "mount", "path", "pdf", "png", "scope",
	"service", "slice", "socket", "svg", "swap", "target", "tar", "tgz", "timer", "toml",
	"txt", "webp", "xml", "xz", "yaml", "yml",
};

static size_t email_accept(const char *line, size_t len, size_t so, size_t eo)
{
	if (so > 0 && local_char(line[so - 1]))
		return 0;
	size_t t = eo;
	while (line[t - 1] != '.')
		t--;
	for (size_t i = 0; i < sizeof(not_tld) / sizeof(*not_tld); i++)
		if (strlen(not_tld[i]) == eo - t && !strncasecmp(line + t, not_tld[i], eo - t))
			return 0;
	if (eo < len) {
		char c = line[eo];
		if (word(c) || c == '-' || c == '@')
			return 0;
		/* "git@github.com:org/repo" is scp's syntax, not an address */
		if ((c == ':' || c == '.') && eo + 1 < len && !isspace((unsigned char)line[eo + 1]))
			return 0;
	}
	return eo;
}

/* --- phone numbers --------------------------------------------------------------- */

/*
 * International: "+", a country code, groups of digits or "(digits)" with at
 * most one space, dot or dash between them.  North American: (555) 123-4567,
 * 555-123-4567, 555.123.4567, 1-555-123-4567, but not 555 123 4567, which
 * is as often three numbers in a list ("failed tests: 571 612 1056").
 * European national: 030 1234567, (030) 1234567, 0151/23456789,
 * 01 23 45 67 89.
 */
static const char phone_ere[] =
	"\\+[1-9][0-9]{0,2}([ .-]?(\\([0-9]{1,4}\\)|[0-9]{1,12}))*"
	"|(1[ .-])?(\\([0-9]{3}\\) ?|[0-9]{3}[.-])[0-9]{3}[.-][0-9]{4}"
	"|\\(0[1-9][0-9]{1,3}\\) ?[0-9]{5,8}"
	"|0[1-9][0-9]{1,3}[ /-][0-9]{5,8}"
	"|0[1-9]([ .-][0-9]{2}){4}";

static int phone_char(char c)
{
	switch (c) {
	case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8':
	case '9': case '+': case '(': case ')': case ' ': case '.': case '/': case '-':
		return 1;
	default:
		return 0;
	}
}

/*
 * Whether a run of phone characters has what each form of phone_ere starts
 * with: "+" and a digit, a group of 3 digits, or one of 2 to 5 that starts
 * with 0 and another digit.  Timestamps, dates, sizes and versions seldom do,
 * and regexec costs a microsecond a call.
 */
static int phone_shape(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		if (s[i] == '+' && i + 1 < n && s[i + 1] >= '1' && s[i + 1] <= '9')
			return 1;
		if (!digit(s[i])) {
			i++;
			continue;
		}
		size_t a = i;
		while (i < n && digit(s[i]))
			i++;
		size_t g = i - a;
		if (g == 3 || (g >= 2 && g <= 5 && s[a] == '0' && s[a + 1] != '0'))
			return 1;
	}
	return 0;
}

/* Runs of the characters a number is written with, if they could hold one. */
static int phone_segment(const char *line, size_t len, size_t *pos, size_t *so, size_t *eo)
{
	size_t i = *pos;
	while (i < len) {
		while (i < len && !digit(line[i]) && line[i] != '+' && line[i] != '(')
			i++;
		size_t a = i, digits = 0;
		while (i < len && phone_char(line[i]))
			digits += digit(line[i++]);
		if (digits >= 7 && phone_shape(line + a, i - a)) {
			*pos = i;
			*so = a;
			*eo = i;
			return 1;
		}
	}
	*pos = len;
	return 0;
}

/*
 * Glued to the token around it: "v1.2.3+...", "id-555-...", "x555", "17:05",
 * "...4567.txt".  A colon joins digits only, so "tel:+49..." is a number.
 */
static int joins(char c, char other)
{
	if (c == ':')
		return digit(other);
	return (c == '.' || c == '-' || c == '/' || c == '+') && word(other);
}

static int glued_before(const char *line, size_t so)
{
	if (so == 0)
		return 0;
	return word(line[so - 1]) || (so >= 2 && joins(line[so - 1], line[so - 2]));
}

static int glued_after(const char *line, size_t len, size_t eo)
{
	if (eo == len)
		return 0;
	return word(line[eo]) || (eo + 1 < len && joins(line[eo], line[eo + 1]));
}

/*
 * "+" numbers: a regular expression cannot count the digits of all groups,
 * so the match is cut back group by group to the longest plausible number:
 * 8 to 15 digits (E.164), a country code of at most 3 digits when groups are
 * separated, 9 digits at least when they are not ("+20261123" is a date in
 * a diff), and not four dotted groups of 1 to 3 digits (an IP address).
 */
static size_t phone_plus(const char *line, size_t len, size_t so, size_t eo)
{
	enum { MAXG = 32 };
	size_t ends[MAXG], dig[MAXG], ng = 0;
	int seps[MAXG], ipish[MAXG];
	size_t i = so + 1, cc = 0, d = 0, groups = 1, maxg;
	int nsep = 0, dots = 1;
	while (i < eo && digit(line[i]))
		i++, cc++;
	d = maxg = cc;
	for (;;) {
		if (ng == MAXG)
			break;          /* longer than any number: judge what is there */
		ends[ng] = i;
		dig[ng] = d;
		seps[ng] = nsep;
		ipish[ng] = nsep && dots && groups == 4 && maxg <= 3;
		ng++;
		size_t j = i, g = 0;
		char sep = 0;
		if (j < eo && (line[j] == ' ' || line[j] == '.' || line[j] == '-'))
			sep = line[j++];
		int paren = j < eo && line[j] == '(';
		if (paren) {
			size_t k = j + 1;
			while (k < eo && digit(line[k]))
				k++, g++;
			if (k >= eo || line[k] != ')' || !g)
				break;
			j = k + 1;
		} else {
			while (j < eo && digit(line[j]))
				j++, g++;
			if (!g)
				break;
		}
		if (paren || sep != '.')
			dots = 0;
		if (paren || sep)
			nsep++;
		d += g;
		groups++;
		if (g > maxg)
			maxg = g;
		i = j;
	}
	/* +1 is North America: always 10 digits after it ("+1767225600" is a Unix time). */
	int nanp = line[so + 1] == '1';
	while (ng-- > 0) {
		size_t e = ends[ng];
		int ok = seps[ng] ? cc <= 3 && dig[ng] >= 8 && dig[ng] <= 15 && !ipish[ng]
				  : dig[ng] >= 9 && dig[ng] <= 15;
		if (nanp && (cc == 1 || !seps[ng]))
			ok &= dig[ng] == 11;
		if (ok && !glued_after(line, len, e))
			return e;
	}
	return 0;
}

/* One of a list of numbers: "500 600 700 800", a hex dump "00 01 02 03 04 05". */
static int in_list(const char *line, size_t len, size_t so, size_t eo)
{
	return (so >= 2 && line[so - 1] == ' ' && digit(line[so - 2])) ||
	       (eo + 1 < len && line[eo] == ' ' && digit(line[eo + 1]));
}

static size_t phone_accept(const char *line, size_t len, size_t so, size_t eo)
{
	if (glued_before(line, so))
		return 0;
	if (line[so] == '+')
		return phone_plus(line, len, so, eo);
	if (glued_after(line, len, eo) || in_list(line, len, so, eo))
		return 0;
	/* One kind of separator, but the blank after "(555)" and before it. */
	size_t d = 0;
	char sep = 0;
	for (size_t k = so; k < eo; k++) {
		char c = line[k];
		if (digit(c)) {
			d++;
			continue;
		}
		if (c == '(' || c == ')' || (k > so && line[k - 1] == ')') ||
		    (k + 1 < eo && line[k + 1] == '('))
			continue;
		if (sep && c != sep)
			return 0;
		sep = c;
	}
	char first = line[so] == '(' ? line[so + 1] : line[so];
	if (first == '0')
		return d >= 9 && d <= 12 ? eo : 0;
	return d == 10 || (d == 11 && line[so] == '1') ? eo : 0;
}

const struct rb_pii rb_pii_patterns[] = {
	{"email", email_ere, email_segment, email_accept},
	{"phone", phone_ere, phone_segment, phone_accept},
};

const size_t rb_pii_count = sizeof(rb_pii_patterns) / sizeof(*rb_pii_patterns);
