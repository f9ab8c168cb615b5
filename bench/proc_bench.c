/*
 * The cost of one step spawn through interp/proc.c against a plain
 * posix_spawn + waitpid loop, both running /bin/true one at a time, in
 * alternating rounds so that a noisy machine hurts both alike.  Optionally
 * grows the runner's heap first, to show that the cost does not follow it.
 *
 * Built and run by bench/run:
 *   cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -pthread -o /tmp/proc_bench \
 *     bench/proc_bench.c interp/proc.c interp/spawner.c interp/durable.c \
 *     interp/util.c -lcrypto && /tmp/proc_bench 1000 [heap-MiB]
 */
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int plain(int n)
{
	char *av[] = { "/bin/true", NULL };

	for (int i = 0; i < n; i++) {
		pid_t pid;
		int st;

		if (posix_spawn(&pid, av[0], NULL, NULL, av, environ) != 0 ||
		    waitpid(pid, &st, 0) != pid || st != 0)
			return -1;
	}
	return 0;
}

/* What the engine does per step: start, poll until done, read the result, free. */
static int module(int n)
{
	const char *av[] = { "/bin/true", NULL };
	struct rb_proc_spec s = { .argv = av, .mem_limit = 65536, .grace_ms = 1000 };

	for (int i = 0; i < n; i++) {
		struct rb_proc *p = rb_proc_start(&s, NULL);
		struct pollfd fds[RB_PROC_MAX_FDS];
		int nf;

		if (!p)
			return -1;
		while ((nf = rb_proc_pollfds(p, fds, RB_PROC_MAX_FDS)) > 0) {
			poll(fds, (nfds_t)nf, (int)rb_proc_timeout_ms(p));
			rb_proc_handle(p, fds, nf);
		}
		rb_proc_reap();
		if (rb_proc_result(p)->exit_code != 0)
			return -1;
		rb_proc_free(p);
	}
	return 0;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000, rounds = 10;
	size_t heap_mb = argc > 2 ? (size_t)atol(argv[2]) : 0;
	double tp = 0, tm = 0;
	char *err = NULL;

	if (n < rounds)
		n = rounds;
	if (rb_proc_init(1, &err) < 0) {
		fprintf(stderr, "bench: %s\n", err);
		return 1;
	}
	/* Small blocks, as an engine's heap is made of: fork would copy their page tables. */
	for (size_t i = 0; i < heap_mb * 1024 * 1024 / 256; i++)
		memset(malloc(256), 1, 256);
	for (int r = 0; r < rounds; r++) {
		double t0 = now_s();

		if (plain(n / rounds) < 0)
			return 1;
		tp += now_s() - t0;
		t0 = now_s();
		if (module(n / rounds) < 0)
			return 1;
		tm += now_s() - t0;
	}
	n = n / rounds * rounds;
	printf("%d spawns of /bin/true, runner heap +%zu MiB:\n", n, heap_mb);
	printf("  posix_spawn + waitpid: %7.1f us each\n", tp / n * 1e6);
	printf("  rb_proc (module):      %7.1f us each (%.2fx)\n", tm / n * 1e6, tm / tp);
	rb_proc_shutdown();
	return 0;
}
