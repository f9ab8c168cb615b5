/*
 * The unit tests' one assertion: count a pass, or print where and why it
 * failed and count a failure.  Each test ends with "NAME: N passed, N failed".
 */
#ifndef RB_TEST_CHECK_H
#define RB_TEST_CHECK_H

#include <stdio.h>

static int npass, nfail;

#define CHECK(cond, ...)						\
	do {								\
		if (cond) {						\
			npass++;					\
		} else {						\
			nfail++;					\
			printf("FAIL %s:%d: ", __FILE__, __LINE__);	\
			printf(__VA_ARGS__);				\
			putchar('\n');					\
		}							\
	} while (0)

#endif
