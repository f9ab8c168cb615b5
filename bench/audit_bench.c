/*
 * The audit log's costs on one core: records signed a second (append, then a
 * signature and an fdatasync every 4 records, as a run of shell steps groups
 * them) and records
 * verified a second, beside the bare Ed25519 sign and verify that bound them.
 * It uses the public API and the signing primitives only, so that it builds
 * against an older interp/ too, for figures before and after a change.
 *
 * Built and run by bench/run:
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Iinterp $(pkg-config --cflags jansson openssl) \
 *     -o /tmp/audit_bench bench/audit_bench.c interp/audit.c interp/audit_canon.c \
 *     interp/auditkey.c interp/audit_verify.c interp/durable.c interp/rundir.c interp/util.c \
 *     $(pkg-config --libs jansson openssl) && /tmp/audit_bench 20000 DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit_int.h"
#include "util.h"

/* A log of shell steps: each step's group is its result, its end, the next start and intent. */
#define GROUP   4
#define ROUNDS  3

/*
 * CPU time of this process: the figures are per core, and on a busy machine
 * wall time would count the other processes' turns too.  The signing figure
 * leaves out the time waiting for fdatasync (wall time below has it).
 */
static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double wall_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A record the size of the engine's step records (about 350 bytes signed). */
static json_t *record(int i)
{
	char step[32];
	snprintf(step, sizeof(step), "step-%05d", i / 4);
	static const char *const types[] = {"step_started", "action_intent", "action_result",
					    "step_finished"};
	return json_pack("{s:s,s:s,s:i,s:s,s:i}", "type", types[i % 4], "step", step, "attempt",
			 1, "status", "succeeded", "duration_ms", i * 7);
}

static int run_started(struct rb_audit_log *a, int start)
{
	json_t *r = json_pack("{s:s}", "type", start ? "run_started" : "run_finished");
	int rc = rb_audit_append(a, r);
	json_decref(r);
	return rc;
}

/* Write a log of n records at path; CPU and wall seconds in *cpu and *wall. */
static int write_log(const char *path, const struct rb_audit_key *k, int n, double *cpu,
		     double *wall)
{
	struct rb_audit_log *a;
	char *err = NULL;
	unlink(path);
	if (rb_audit_open(path, k, "20261123-170505-beef", 0, &a, &err) < 0) {
		fprintf(stderr, "audit_bench: %s\n", err);
		free(err);
		return -1;
	}
	double t0 = now_s(), w0 = wall_s();
	int rc = run_started(a, 1);
	for (int i = 0; rc == 0 && i < n - 2; i++) {
		json_t *r = record(i);
		rc = rb_audit_append(a, r);
		json_decref(r);
		if (rc == 0 && i % GROUP == GROUP - 1)
			rc = rb_audit_sync(a);
	}
	if (rc == 0)
		rc = run_started(a, 0);
	if (rc == 0)
		rc = rb_audit_sync(a);
	*cpu = now_s() - t0;
	*wall = wall_s() - w0;
	if (rc < 0)
		fprintf(stderr, "audit_bench: %s\n", rb_audit_error(a));
	rb_audit_close(a);
	return rc;
}

static double min_of(double a, double b)
{
	return a < b ? a : b;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 20000;
	const char *dir = argc > 2 ? argv[2] : "/tmp";
	unsigned char seed[32];
	memset(seed, 7, sizeof(seed));
	struct rb_audit_key *k;
	if (rb_audit_key_from_seed(seed, &k, NULL) < 0)
		return 1;
	struct rb_audit_keyring *kr = rb_audit_keyring_new();
	rb_audit_keyring_add(kr, k, "bench", NULL);
	struct rb_audit_verify_opts o = {.keyring = kr};
	char *path = rb_xasprintf("%s/audit-bench-%d.jsonl", dir, (int)getpid());

	/*
	 * Each figure is the best of ROUNDS, taken in turns, so that a moment
	 * when the machine is busy (or a virtual one is slowed) spoils one
	 * round of each, not one figure.
	 */
	char msg[350];          /* the bare operations, on a message the size of a record */
	memset(msg, 'x', sizeof(msg));
	unsigned char sig[SIG_LEN];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int bare = n / 4 > 0 ? n / 4 : 1;
	double sign_us = 1e30, verify_us = 1e30, write_s = 1e30, write_wall = 1e30;
	double verify_s = 1e30;
	for (int round = 0; round < ROUNDS; round++) {
		double t0 = now_s();
		for (int i = 0; i < bare; i++)
			rb_audit_sign_bytes(k, ctx, msg, sizeof(msg), sig);
		sign_us = min_of(sign_us, (now_s() - t0) * 1e6 / bare);
		t0 = now_s();
		int ok = 0;
		for (int i = 0; i < bare; i++)
			ok += rb_audit_check_bytes(k, ctx, msg, sizeof(msg), sig);
		verify_us = min_of(verify_us, (now_s() - t0) * 1e6 / bare);
		if (ok != bare)
			return 1;

		double cpu, wall;
		if (write_log(path, k, n, &cpu, &wall) < 0)
			return 1;
		write_s = min_of(write_s, cpu);
		write_wall = min_of(write_wall, wall);

		struct rb_audit_result r;
		t0 = now_s();
		int rc = rb_audit_verify(path, &o, &r);
		verify_s = min_of(verify_s, now_s() - t0);
		if (rc < 0 || r.records != (uint64_t)n) {
			fprintf(stderr, "audit_bench: line %llu: %s\n",
				(unsigned long long)r.bad_line, r.reason);
			return 1;
		}
	}
	EVP_MD_CTX_free(ctx);
	FILE *f = fopen(path, "r");
	fseek(f, 0, SEEK_END);
	long bytes = ftell(f);
	fclose(f);
	unlink(path);

	printf("(CPU time of one core, best of %d rounds)\n", ROUNDS);
	printf("Ed25519 alone:        sign %6.1f us, verify %6.1f us (%.0f verifies/s; each "
	       "with EVP_Digest*Init)\n", sign_us, verify_us, 1e6 / verify_us);
	printf("audit log, %d records of %ld bytes in %s:\n", n, bytes / n, dir);
	printf("  signed:   %8.0f records/s (%.1f us CPU each; with an fdatasync every %d: "
	       "%.0f records/s wall)\n", n / write_s, write_s * 1e6 / n, GROUP, n / write_wall);
	printf("  verified: %8.0f records/s (%.1f us each, %.1f us beyond the Ed25519 verify "
	       "that each group of %d shares)\n", n / verify_s, verify_s * 1e6 / n,
	       verify_s * 1e6 / n - verify_us / GROUP, GROUP);
	rb_audit_keyring_free(kr);
	rb_audit_key_free(k);
	free(path);
	return 0;
}
