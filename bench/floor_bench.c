/*
 * The least a step can cost on this machine: loops in C that do only the
 * work the engine cannot avoid, measured in alternating rounds in one
 * process so that a noisy machine hurts them alike.
 *
 *   plain     posix_spawn + waitpid of /bin/true (the reference of the targets)
 *   run step  what a `run: /bin/true` step must do with the audit log on:
 *             append its 4 records (step_started, action_intent, action_result,
 *             step_finished) with one Ed25519 signature, on the last (format 2:
 *             one a group), one fdatasync (the intent must be durable before
 *             the spawn; the previous step's end shares it), then the spawn
 *   lua step  the same for an inline step synced alone: 2 records, one
 *             signature, one fdatasync (grouped, it needs neither)
 *
 * and, with -s, the start of a program against another one (runbook --version
 * against an empty program linked with the same libraries).
 *
 * bench/run prints these beside the engine's own figures.  Built by it:
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Ibench -o /tmp/floor_bench bench/floor_bench.c -lcrypto
 *   /tmp/floor_bench N DIR [-q]   (DIR: where the log file goes, on the disk measured;
 *                                  -q: only the three figures in us, on one line)
 *   /tmp/floor_bench -s N PROG1 PROG2 [ARG]  (the mean us of each start, ARG given to PROG1)
 */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

/* Runs argv (quiet: with stdout on /dev/null) and waits; 0 if it exits 0. */
static int spawn(char **argv, int quiet)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st, ok;

	posix_spawn_file_actions_init(&fa);
	if (quiet)
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	ok = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) == 0 &&
	     waitpid(pid, &st, 0) == pid && st == 0;
	posix_spawn_file_actions_destroy(&fa);
	return ok ? 0 : -1;
}

static char *true_argv[] = { "/bin/true", NULL };

/* -s N PROG1 PROG2 [ARG]: the mean start of each, in alternating rounds. */
static int starts(int argc, char **argv)
{
	int n = argc > 2 ? atoi(argv[2]) : 0, rounds = 10;
	char *a[] = { argc > 3 ? argv[3] : NULL, argc > 5 ? argv[5] : NULL, NULL };
	char *b[] = { argc > 4 ? argv[4] : NULL, NULL };
	double ta = 0, tb = 0;

	if (n < rounds || !a[0] || !b[0]) {
		fprintf(stderr, "usage: floor_bench -s N PROG1 PROG2 [ARG]\n");
		return 2;
	}
	for (int r = 0; r < rounds; r++) {
		double t0 = now_us();

		for (int i = 0; i < n / rounds; i++)
			if (spawn(a, 1) < 0)
				return 1;
		ta += now_us() - t0;
		t0 = now_us();
		for (int i = 0; i < n / rounds; i++)
			if (spawn(b, 1) < 0)
				return 1;
		tb += now_us() - t0;
	}
	n = n / rounds * rounds;
	printf("%.1f %.1f\n", ta / n, tb / n);
	return 0;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000, rounds = 10;
	const char *dir = argc > 2 ? argv[2] : ".";
	double t[3] = { 0, 0, 0 };
	struct bench_log l;

	if (argc > 1 && !strcmp(argv[1], "-s"))
		return starts(argc, argv);
	if (bench_log_open(&l, dir, "floor-bench") < 0)
		return 1;
	if (n < rounds)
		n = rounds;
	for (int r = 0; r < rounds; r++) {
		double t0 = now_us();

		for (int i = 0; i < n / rounds; i++)
			if (spawn(true_argv, 0) < 0)
				return 1;
		t[0] += now_us() - t0;
		t0 = now_us();
		for (int i = 0; i < n / rounds; i++)
			if (bench_records(&l, 4, 1) < 0 || spawn(true_argv, 0) < 0)
				return 1;
		t[1] += now_us() - t0;
		t0 = now_us();
		for (int i = 0; i < n / rounds; i++)
			if (bench_records(&l, 2, 1) < 0)
				return 1;
		t[2] += now_us() - t0;
	}
	n = n / rounds * rounds;
	if (argc > 3 && !strcmp(argv[3], "-q"))
		printf("%.1f %.1f %.1f\n", t[0] / n, t[1] / n, t[2] / n);
	else {
			printf("floor, %d steps each, log in %s:\n", n, dir);
		printf("  plain: posix_spawn + waitpid     %8.1f us each\n", t[0] / n);
		printf("  run step: 4 records, 1 signature, sync, spawn %8.1f us each (%.2fx plain)\n",
		       t[1] / n, t[1] / t[0]);
		printf("  lua step: 2 records, 1 signature, sync        %8.1f us each\n", t[2] / n);
	}
	bench_log_close(&l);
	return 0;
}
