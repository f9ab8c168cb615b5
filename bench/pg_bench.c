/*
 * The least a pg.query step can cost: a loop in C of the same query on one
 * connection, sent as the action sends it (below), alone, and with what the
 * engine must write for each step (its 4 records, grouped as the engine groups
 * those of steps without side effects: bench.h).  Alternating rounds, in one
 * process.
 *
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Ibench -o /tmp/pg_bench bench/pg_bench.c -lpq -lcrypto
 *   /tmp/pg_bench N DIR CONNINFO     prints: query_us floor_us (a step, means)
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

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

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000, rounds = 10;
	double t[2] = { 0, 0 };
	struct bench_log l;

	if (argc < 4) {
		fprintf(stderr, "usage: pg_bench N DIR CONNINFO\n");
		return 2;
	}
	PGconn *c = PQconnectdb(argv[3]);

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "pg_bench: %s", PQerrorMessage(c));
		return 1;
	}
	if (bench_log_open(&l, argv[2], "pg-bench") < 0)
		return 1;
	for (int r = 0; r < rounds; r++) {
		double t0 = now_us();

		for (int i = 0; i < n / rounds; i++)
			if (query(c) < 0)
				return 1;
		t[0] += now_us() - t0;
		t0 = now_us();
		for (int i = 0; i < n / rounds; i++)
			if (query(c) < 0 || bench_records_grouped(&l, 4) < 0)
				return 1;
		t[1] += now_us() - t0;
	}
	n = n / rounds * rounds;
	printf("%.1f %.1f\n", t[0] / n, t[1] / n);
	bench_log_close(&l);
	PQfinish(c);
	return 0;
}
