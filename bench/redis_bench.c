/*
 * What 1,000 redis.command GET steps are measured against: loops in C on
 * one hiredis connection, in alternating rounds in one process so that a
 * noisy machine hurts them alike.
 *
 *   plain   a GET and its reply (blocking hiredis, one connection)
 *   floor   the same, with what a step must write beside it: its 4 records
 *           (step_started, action_intent, action_result, step_finished)
 *           appended with one Ed25519 signature and one fdatasync
 *
 * bench/run prints these beside the engine's own figures.  Built by it:
 *   cc -std=c11 -D_GNU_SOURCE -O2 -o /tmp/redis_bench bench/redis_bench.c \
 *      $(pkg-config --cflags --libs hiredis) -lcrypto
 *   /tmp/redis_bench N HOST PORT PASSWORD DIR   (DIR: where the log file goes)
 * prints the mean us of each on one line: "PLAIN FLOOR".
 */
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* About the size of an engine record's canonical encoding. */
#define RECORD_BYTES 400

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* One GET of key; 0 when its reply came. */
static int get(redisContext *c)
{
	redisReply *r = redisCommand(c, "GET %s", "bench:key");
	int ok = r && r->type != REDIS_REPLY_ERROR;

	freeReplyObject(r);
	return ok ? 0 : -1;
}

/* Appends n records, signs the last (audit log format 2: one signature a group), one fdatasync. */
static int records(EVP_PKEY *key, int fd, int n)
{
	unsigned char rec[RECORD_BYTES + 1];

	memset(rec, 'x', RECORD_BYTES);
	rec[RECORD_BYTES] = '\n';
	for (int i = 0; i < n; i++) {
		unsigned char sig[64];
		size_t len = sizeof sig;
		EVP_MD_CTX *m = i == n - 1 ? EVP_MD_CTX_new() : NULL;
		int ok = i < n - 1 || (m && EVP_DigestSignInit(m, NULL, NULL, NULL, key) == 1 &&
				       EVP_DigestSign(m, sig, &len, rec, RECORD_BYTES) == 1);

		EVP_MD_CTX_free(m);
		if (!ok || write(fd, rec, sizeof rec) != (ssize_t)sizeof rec)
			return -1;
	}
	return fdatasync(fd);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 0, rounds = 10;
	double t[2] = { 0, 0 };
	char path[4096];
	redisContext *c;
	redisReply *r;
	EVP_PKEY *key;
	int fd;

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
	key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	snprintf(path, sizeof path, "%s/redis-bench.%d", argv[5], (int)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (!key || fd < 0) {
		perror(path);
		return 1;
	}
	for (int k = 0; k < rounds; k++) {
		double t0 = now_us();

		for (int i = 0; i < n / rounds; i++)
			if (get(c) < 0)
				return 1;
		t[0] += now_us() - t0;
		t0 = now_us();
		for (int i = 0; i < n / rounds; i++)
			if (get(c) < 0 || records(key, fd, 4) < 0)
				return 1;
		t[1] += now_us() - t0;
	}
	n = n / rounds * rounds;
	printf("%.1f %.1f\n", t[0] / n, t[1] / n);
	close(fd);
	unlink(path);
	EVP_PKEY_free(key);
	redisFree(c);
	return 0;
}
