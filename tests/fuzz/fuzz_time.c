/*
 * libFuzzer target: time.parse and time.format's C halves (isotime.h).
 * Whatever the bytes, a time that parses is in the years 0000 to 9999, and
 * formats back to text that parses to the same second; and the bytes as a
 * format are refused or formatted, never read past.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isotime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	double t;
	int whole;
	const char *why;
	char buf[1024];
	if (rb_isotime_parse((const char *)data, size, &t, &whole, &why) == 0) {
		/* An offset can move a time a day past the years' bounds: then it does not format. */
		int r = rb_isotime_format(t, NULL, buf, sizeof(buf), &why);
		if (r == 0) {
			double back;
			if (rb_isotime_parse(buf, strlen(buf), &back, &whole, &why) < 0 || !whole ||
			    back != floor(t))
				abort();
		} else if (r != -2 || (t >= -62167219200.0 && t < 253402300800.0)) {
			abort();
		}
	} else if (!why || !*why) {
		abort();
	}
	char *fmt = malloc(size + 1);
	memcpy(fmt, data, size);
	fmt[size] = '\0';
	if (rb_isotime_format(0, fmt, buf, sizeof(buf), &why) == 0 && strlen(buf) >= sizeof(buf))
		abort();
	free(fmt);
	return 0;
}
