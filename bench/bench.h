/*
 * What the C floors of bench/ share: a clock, and the least the engine writes
 * for a step (its records, appended to a log file, with one Ed25519 signature
 * and one fdatasync for a group of them).  Header-only: each bench is one
 * file that bench/run compiles with -Ibench.
 */
#ifndef RB_BENCH_H
#define RB_BENCH_H

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* About the size of an engine record's canonical encoding. */
#define RECORD_BYTES    400
/* How old a group of records of steps without side effects gets before it is synced. */
#define GROUP_US        100000.0

static inline double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* A log file in a directory of the disk measured, and the key that signs it. */
struct bench_log {
	EVP_PKEY *key;
	int fd;
	double group;                   /* when the group now being appended began */
	char path[4096];
};

/* 0, or -1 having said why. */
static inline int bench_log_open(struct bench_log *l, const char *dir, const char *name)
{
	snprintf(l->path, sizeof l->path, "%s/%s.%d", dir, name, (int)getpid());
	l->key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	l->fd = open(l->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	l->group = now_us();
	if (!l->key || l->fd < 0) {
		perror(l->path);
		return -1;
	}
	return 0;
}

static inline void bench_log_close(struct bench_log *l)
{
	close(l->fd);
	unlink(l->path);
	EVP_PKEY_free(l->key);
}

/* Appends n records; with sync, signs the last and syncs them (audit log format 2). */
static inline int bench_records(struct bench_log *l, int n, int sync)
{
	unsigned char rec[RECORD_BYTES + 1], sig[64];
	size_t len = sizeof sig;

	memset(rec, 'x', RECORD_BYTES);
	rec[RECORD_BYTES] = '\n';
	for (int i = 0; i < n; i++)
		if (write(l->fd, rec, sizeof rec) != (ssize_t)sizeof rec)
			return -1;
	if (!sync)
		return 0;
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	int ok = m && EVP_DigestSignInit(m, NULL, NULL, NULL, l->key) == 1 &&
		 EVP_DigestSign(m, sig, &len, rec, RECORD_BYTES) == 1;

	EVP_MD_CTX_free(m);
	return ok ? fdatasync(l->fd) : -1;
}

/* The same for steps without side effects: signed and synced once the group is 100 ms old. */
static inline int bench_records_grouped(struct bench_log *l, int n)
{
	int due = now_us() - l->group >= GROUP_US;

	if (due)
		l->group = now_us();
	return bench_records(l, n, due);
}

#endif
