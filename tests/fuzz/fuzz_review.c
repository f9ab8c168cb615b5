/*
 * libFuzzer target: what reads a runbook's text for the review tools and the
 * scheduler, on any bytes.  The first line is a cron expression: when it
 * parses, its next start after a fixed time is later than it (or none),
 * and its OnCalendar= text fits and is a line.  The whole input is SQL for
 * lint's lexer (every finding inside the text, in order) and for plan
 * --diff's statement scan (its statements are one line, at most 80 bytes
 * and "...").
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cal.h"
#include "plandiff.h"
#include "sqllex.h"
#include "types.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void cron(const char *s)
{
	struct rb_cron c;
	char *err = NULL;
	if (rb_cron_parse(s, &c, &err) < 0) {
		if (!err)
			abort();
		free(err);
		return;
	}
	const time_t t0 = 1767225600;   /* 2026-01-01T00:00:00Z */
	time_t t = rb_cron_next(&c, "UTC", t0);
	if (t != -1 && (t <= t0 || t % 60))
		abort();
	char buf[512];
	int n = rb_cron_oncalendar(&c, buf, sizeof(buf));
	if (n >= 0 && ((size_t)n != strlen(buf) || strchr(buf, '\n')))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	char *nl = memchr(s, '\n', size);
	if (nl)
		*nl = '\0';
	if (strlen(s) < 200)
		cron(s);
	if (nl)
		*nl = '\n';

	struct rb_sql_finding f[16];
	size_t n = rb_sql_destructive((const char *)data, size, f, 16);
	for (size_t i = 0; i < n && i < 16; i++)
		if (f[i].off >= size || (i && f[i].off <= f[i - 1].off))
			abort();

	json_t *out = json_array();
	rb_plandiff_sql(s, out);
	size_t i;
	json_t *x;
	json_array_foreach(out, i, x) {
		const char *st = json_string_value(json_object_get(x, "statement"));
		if (!st || strchr(st, '\n') || strlen(st) > 80 + 4 + 3)
			abort();
	}
	json_decref(out);
	free(s);
	return 0;
}
