/*
 * What 1,000 redis.command GET steps are measured against: loops in C on
 * one hiredis connection, in alternating rounds in one process so that a
 * noisy machine hurts them alike.
 *
 *   plain   a GET and its reply (blocking hiredis, one connection)
 *   floor   the same, with what a step must write beside it: its 4 records
 *           (step_started, action_intent, action_result, step_finished),
 *           grouped as the engine groups those of steps without side effects
 *           (a GET has none): one Ed25519 signature and one fdatasync a group
 *           (bench.h), as pg_bench does
 *
 * bench/run prints these beside the engine's own figures.  Built by it:
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Ibench -o /tmp/redis_bench bench/redis_bench.c \
 *      $(pkg-config --cflags --libs hiredis) -lcrypto
 *   /tmp/redis_bench N HOST PORT PASSWORD DIR   (DIR: where the log file goes)
 * prints the mean us of each on one line: "PLAIN FLOOR".
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

/* One GET of key; 0 when its reply came. */
static int get(redisContext *c)
{
	redisReply *r = redisCommand(c, "GET %s", "bench:key");
	int ok = r && r->type != REDIS_REPLY_ERROR;

	freeReplyObject(r);
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 0, rounds = 10;
	double t[2] = { 0, 0 };
	struct bench_log l;
	redisContext *c;
	redisReply *r;

	if (argc != 6 || n < rounds) {
		fprintf(stderr, "usage: redis_bench N HOST PORT PASSWORD DIR\n");
		return 2;
	}
	c = redisConnect(argv[2], atoi(argv[3]));
	if (!c || c->err) {
		fprintf(stderr, "redis_bench: cannot connect: %s\n", c ? c->errstr : "no memory");
		return 1;
	}
	r = redisCommand(c, "AUTH %s", argv[4]);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "redis_bench: AUTH failed\n");
		return 1;
	}
	freeReplyObject(r);
	if (bench_log_open(&l, argv[5], "redis-bench") < 0)
		return 1;
	for (int k = 0; k < rounds; k++) {
		double t0 = now_us();

		for (int i = 0; i < n / rounds; i++)
			if (get(c) < 0)
				return 1;
		t[0] += now_us() - t0;
		t0 = now_us();
		for (int i = 0; i < n / rounds; i++)
			if (get(c) < 0 || bench_records_grouped(&l, 4) < 0)
				return 1;
		t[1] += now_us() - t0;
	}
	n = n / rounds * rounds;
	printf("%.1f %.1f\n", t[0] / n, t[1] / n);
	bench_log_close(&l);
	redisFree(c);
	return 0;
}
