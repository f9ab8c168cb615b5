/*
 * The unit tests' one assertion: count a pass, or print where and why it
 * failed and count a failure.  Each test ends with "NAME: N passed, N failed".
 */
#ifndef RB_TEST_CHECK_H
#define RB_TEST_CHECK_H

#include <ftw.h>
#include <stdio.h>
#include <unistd.h>

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

static inline int rb_test_rm_one(const char *path, const struct stat *st, int flag,
				 struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* rm -rf of a test's temporary directory. */
static inline void rb_test_rm_rf(const char *path)
{
	nftw(path, rb_test_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
