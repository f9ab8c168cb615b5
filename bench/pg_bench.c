/*
 * The least a pg.query step can cost: a loop in C of the same query on one
 * connection, sent as the action sends it (below), alone, and with what the
 * engine must write for each step (its 4
 * records appended, one Ed25519 signature and one fdatasync for a group of
 * them: the engine groups the records of steps without side effects and syncs
 * them once every RB_GROUP_MS, 100 ms).  Alternating rounds, in one process.
 *
 *   cc -std=c11 -D_GNU_SOURCE -O2 -o /tmp/pg_bench bench/pg_bench.c -lpq -lcrypto
 *   /tmp/pg_bench N DIR CONNINFO     prints: query_us floor_us (a step, means)
 */
#include <fcntl.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RECORD_BYTES 400
#define GROUP_US     100000.0

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/*
 * What pg.query sends for a step on a kept connection, in one round trip:
 * DISCARD ALL (the reset), a sync, BEGIN READ ONLY, the query, COMMIT, a sync.
 */
static int query(PGconn *c)
{
	static const char *const sql[] = { "DISCARD ALL", NULL, "BEGIN READ ONLY", "SELECT 1",
					   "COMMIT", NULL };
	int syncs = 0, ok = PQenterPipelineMode(c) == 1;

	for (size_t i = 0; ok && i < sizeof sql / sizeof *sql; i++)
		ok = sql[i] ? PQsendQueryParams(c, sql[i], 0, NULL, NULL, NULL, NULL, 0) == 1
			    : PQpipelineSync(c) == 1;
	while (ok && syncs < 2) {
		PGresult *r = PQgetResult(c);

		if (!r)
			continue;
		ExecStatusType st = PQresultStatus(r);

		syncs += st == PGRES_PIPELINE_SYNC;
		ok = st != PGRES_FATAL_ERROR && st != PGRES_PIPELINE_ABORTED;
		PQclear(r);
	}
	return ok && PQexitPipelineMode(c) == 1 ? 0 : -1;
}

/* 4 records; sign and sync when the group is 100 ms old. */
static int records(EVP_PKEY *key, int fd, double *group)
{
	unsigned char rec[RECORD_BYTES + 1];

	memset(rec, 'x', RECORD_BYTES);
	rec[RECORD_BYTES] = '\n';
	for (int i = 0; i < 4; i++)
		if (write(fd, rec, sizeof rec) != (ssize_t)sizeof rec)
			return -1;
	if (now_us() - *group < GROUP_US)
		return 0;
	unsigned char sig[64];
	size_t len = sizeof sig;
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	int ok = m && EVP_DigestSignInit(m, NULL, NULL, NULL, key) == 1 &&
		 EVP_DigestSign(m, sig, &len, rec, RECORD_BYTES) == 1;

	EVP_MD_CTX_free(m);
	*group = now_us();
	return ok ? fdatasync(fd) : -1;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000, rounds = 10;
	double t[2] = { 0, 0 }, group = now_us();
	char path[4096];

	if (argc < 4) {
		fprintf(stderr, "usage: pg_bench N DIR CONNINFO\n");
		return 2;
	}
	PGconn *c = PQconnectdb(argv[3]);
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

	snprintf(path, sizeof path, "%s/pg-bench.%d", argv[2], (int)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);

	if (PQstatus(c) != CONNECTION_OK || !key || fd < 0) {
		fprintf(stderr, "pg_bench: %s", PQerrorMessage(c));
		return 1;
	}
	for (int r = 0; r < rounds; r++) {
		double t0 = now_us();

		for (int i = 0; i < n / rounds; i++)
			if (query(c) < 0)
				return 1;
		t[0] += now_us() - t0;
		t0 = now_us();
		for (int i = 0; i < n / rounds; i++)
			if (query(c) < 0 || records(key, fd, &group) < 0)
				return 1;
		t[1] += now_us() - t0;
	}
	n = n / rounds * rounds;
	printf("%.1f %.1f\n", t[0] / n, t[1] / n);
	close(fd);
	unlink(path);
	EVP_PKEY_free(key);
	PQfinish(c);
	return 0;
}
