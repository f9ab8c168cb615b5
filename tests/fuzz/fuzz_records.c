/*
 * libFuzzer target: arbitrary bytes as a run's directory, through everything
 * that reads one back: the journal's load (snapshot and audit.jsonl, torn
 * tails), the run's state (`runbook status`, resume), the head the snapshot
 * keeps, and replay --simulate's reading of the records (a fixed runbook run
 * with the records' results standing in for its actions), and the signature
 * checks of a resume (the snapshot's, each line's).  The input is the log, or
 * a snapshot, a line "---", then the log.  For inputs of odd size the log's
 * "prev" members are first set to the SHA-256 of the line before, so that
 * mutations get past the chain that every load checks.  Whatever it holds,
 * nothing may crash, leak, hang or read out of bounds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "diag.h"
#include "journal.h"
#include "runbook.h"
#include "rundir.h"
#include "runstate.h"
#include "simulate.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/fuzz-records-XXXXXX";
static struct rb_runbook *rb;
static struct rb_diags d;
static struct rb_audit_keyring *kr;

static const char runbook[] =
	"runbook: fuzz\nversion: 1\nparams:\n  n: {type: integer, default: 1}\nsteps:\n"
	"  - id: a\n    run: echo ${{ params.n }}\n"
	"  - id: b\n    if: ${{ steps.a.output.exit_code == 0 }}\n    lua: return 1\n"
	"  - id: c\n    for_each: ${{ {1, 2} }}\n    run: echo ${{ item }}\n";

static void init(void)
{
	if (!mkdtemp(dir))
		abort();
	rb_diags_init(&d, "fuzz.yaml", runbook, sizeof(runbook) - 1);
	rb = rb_runbook_load("fuzz.yaml", runbook, sizeof(runbook) - 1, &d);
	if (!rb || d.errors)
		abort();
	unsigned char seed[32];
	struct rb_audit_key *k;
	memset(seed, 7, sizeof(seed));
	kr = rb_audit_keyring_new();
	if (rb_audit_key_from_seed(seed, &k, NULL) < 0 || rb_audit_keyring_add(kr, k, "k", NULL) < 0)
		abort();
	rb_audit_key_free(k);
}

/* Each line's "prev" made the SHA-256 of the line before (64 zeros on the first). */
static void chain(uint8_t *p, size_t n)
{
	char prev[65];
	memset(prev, '0', 64);
	prev[64] = 0;
	for (size_t off = 0; off < n;) {
		uint8_t *nl = memchr(p + off, '\n', n - off);
		size_t end = nl ? (size_t)(nl - p) : n;
		uint8_t *at = memmem(p + off, end - off, "\"prev\":\"", 8);
		if (at && at + 8 + 64 <= p + end)
			memcpy(at + 8, prev, 64);
		rb_sha256_hex(p + off, end - off, prev);
		off = end + 1;
	}
}

static void put(const char *name, const uint8_t *p, size_t n)
{
	char path[64];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		abort();
	fwrite(p, 1, n, f);
	fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!rb)
		init();
	const uint8_t *log = data, *sep = memmem(data, size, "\n---\n", 5);
	size_t loglen = size;
	char snap[64];
	snprintf(snap, sizeof(snap), "%s/%s", dir, RB_RUN_SNAPSHOT);
	unlink(snap);
	if (sep) {
		put(RB_RUN_SNAPSHOT, data, (size_t)(sep - data));
		log = sep + 5;
		loglen = size - (size_t)(log - data);
	}
	uint8_t *fixed = NULL;
	if (size % 2) {
		fixed = malloc(loglen ? loglen : 1);
		memcpy(fixed, log, loglen);
		chain(fixed, loglen);
		log = fixed;
	}
	put(RB_RUN_JOURNAL, log, loglen);
	char why[256];
	if (sep)
		rb_audit_check_doc((const char *)data, (size_t)(sep - data), rb_audit_keyring_id(kr, 0), kr,
				   why, sizeof(why));
	for (size_t off = 0; off < loglen;) {
		const uint8_t *nl = memchr(log + off, '\n', loglen - off);
		size_t end = nl ? (size_t)(nl - log) : loglen;
		rb_audit_check_line((const char *)log + off, end - off, kr, why, sizeof(why));
		off = end + 1;
	}
	free(fixed);

	json_t *s = NULL, *records = NULL, *torn = NULL;
	char *err = NULL;
	if (rb_journal_load(dir, &s, &records, &torn, &err) == 0) {
		FILE *null = fopen("/dev/null", "w");
		struct rb_diags sd;
		rb_diags_init(&sd, "fuzz.yaml", runbook, sizeof(runbook) - 1);
		rb_replay_simulate(rb, records, &sd, "json", null);
		rb_diags_release(&sd);
		fclose(null);
	}
	json_decref(s);
	json_decref(records);
	json_decref(torn);
	free(err);
	err = NULL;
	/* As status and runs read it: with the signatures checked. */
	char *unverified = NULL;
	json_t *st = rb_run_state(dir, kr, &unverified, &err);
	json_decref(st);
	free(unverified);
	free(err);
	err = NULL;
	uint64_t seq;
	char hex[65];
	rb_run_head(dir, &seq, hex, &err);
	free(err);
	return 0;
}
