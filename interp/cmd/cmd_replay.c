/*
 * runbook replay RUN_ID|RUN_DIR|LOG: a run's postmortem timeline.  The log is
 * verified first, exactly as `runbook audit verify` does, and the timeline is
 * built from the very bytes that verified (read once), so that what it shows
 * is what the signatures cover.  Exit 0 shown, 1 the log does not verify or
 * cannot be read (or the run is not in it), 2 for a bad command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "cli.h"
#include "replay.h"
#include "rundir.h"
#include "simulate.h"
#include "util.h"

/* The most of a log replay reads: it keeps the log in memory, to show what verified. */
#define REPLAY_LOG_MAX  ((size_t)256 << 20)

struct replay_opts {
	const char *arg, *format, *ring, *state, *run, *runbook;
	int simulate;
};

/*
 * The log at path ("-": standard input) whole, as the verifier reads it: no
 * line longer than RB_AUDIT_LINE_MAX and at most REPLAY_LOG_MAX bytes, so that
 * what never ends (/dev/zero) or a huge file is an error, not all the memory.
 * -1 after printing why.
 */
static int read_log(const char *path, char **out, size_t *outlen)
{
	int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : 0;
	if (fd < 0) {
		rb_cli_error("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	struct rb_buf b;
	rb_buf_init(&b);
	size_t line_start = 0, scanned = 0, lines = 1;
	int rc = 0;
	for (;;) {
		if (b.cap - b.len < 65536)
			rb_grow(&b.s, &b.cap, b.len + 65536, 1);
		ssize_t n = read(fd, b.s + b.len, b.cap - b.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rb_cli_error("cannot read %s: %s", path, strerror(errno));
			rc = -1;
			break;
		}
		if (n == 0)
			break;
		b.len += (size_t)n;
		for (const char *nl; (nl = memchr(b.s + scanned, '\n', b.len - scanned));) {
			scanned = line_start = (size_t)(nl - b.s) + 1;
			lines++;
		}
		scanned = b.len;
		if (b.len - line_start > RB_AUDIT_LINE_MAX) {
			fprintf(stderr, "%s:%zu: error: a line longer than %u bytes, which no audit log "
				"holds: not read further\n", path, lines, RB_AUDIT_LINE_MAX);
			rc = -1;
			break;
		}
		if (b.len > REPLAY_LOG_MAX) {
			fprintf(stderr, "%s: error: larger than %zu MiB, the most replay reads (runbook "
				"audit verify reads any size)\n", path, REPLAY_LOG_MAX >> 20);
			rc = -1;
			break;
		}
	}
	if (fd != 0)
		close(fd);
	if (rc < 0) {
		rb_buf_release(&b);
		return -1;
	}
	*outlen = b.len;
	rb_buf_putc(&b, '\0');
	*out = rb_buf_detach(&b);
	return 0;
}

/* The run ids of the records in buf, first seen first (lines that do not read are skipped). */
static json_t *run_ids(const char *buf, size_t len)
{
	json_t *ids = json_array(), *seen = json_object();
	for (size_t at = 0; at < len;) {
		const char *nl = memchr(buf + at, '\n', len - at);
		size_t n = nl ? (size_t)(nl - (buf + at)) : len - at;
		json_t *rec = json_loadb(buf + at, n, JSON_ALLOW_NUL, NULL);
		const char *id = json_string_value(json_object_get(rec, "run_id"));
		if (id && !json_object_get(seen, id)) {
			json_object_set_new(seen, id, json_true());
			json_array_append_new(ids, json_string(id));
		}
		json_decref(rec);
		at += n + 1;
	}
	json_decref(seen);
	return ids;
}

/* The records of run in the first n lines of buf (which verified), in order. */
static json_t *records_of(const char *buf, size_t len, uint64_t n, const char *run)
{
	json_t *recs = json_array();
	size_t at = 0;
	for (uint64_t line = 0; line < n && at < len; line++) {
		const char *nl = memchr(buf + at, '\n', len - at);
		size_t k = nl ? (size_t)(nl - (buf + at)) : len - at;
		json_t *rec = json_loadb(buf + at, k, JSON_ALLOW_NUL, NULL);
		const char *id = json_string_value(json_object_get(rec, "run_id"));
		if (id && !strcmp(id, run))
			json_array_append(recs, rec);
		json_decref(rec);
		at += k + 1;
	}
	return recs;
}

static char *join_ids(const json_t *ids)
{
	struct rb_buf b;
	size_t i;
	json_t *id;
	rb_buf_init(&b);
	json_array_foreach(ids, i, id) {
		rb_buf_puts(&b, i ? ", " : "");
		rb_buf_puts(&b, json_string_value(id));
	}
	rb_buf_putc(&b, '\0');
	return rb_buf_detach(&b);
}

/*
 * --simulate: the runbook as it is now (--runbook, else the file the run
 * was started from) run by the engine with every action's result taken from
 * the verified records, and where its path differs from the run's
 * (interp/simulate.c).  Exit 0 the same path, 1 another one.
 */
static int simulate(const json_t *recs, const json_t *model, const struct replay_opts *o)
{
	const char *file = o->runbook ? o->runbook
			   : json_string_value(json_object_get(json_object_get(model, "run"), "file"));
	if (!file) {
		fprintf(stderr, "runbook: error: replay --simulate: the log names no runbook file; "
			"give it with --runbook FILE\n");
		return RB_EXIT_FAILED;
	}
	struct rb_runbook *rb;
	int rc = rb_cli_load(file, &rb);
	if (rc != RB_EXIT_OK)
		return rc;
	struct rb_diags d;
	rb_diags_init(&d, file, rb->src, rb->srclen);
	int r = rb_replay_simulate(rb, recs, &d, o->format, stdout);
	rb_diags_print(&d, stderr, rb_use_color(stderr));
	rb_diags_release(&d);
	rb_runbook_free(rb);
	return r < 0 ? RB_EXIT_INVALID : r ? RB_EXIT_FAILED : RB_EXIT_OK;
}

/* Verify the log in buf (read from path); 0, or -1 after printing why not. */
static int verify(const char *path, const char *buf, size_t len, const struct replay_opts *o,
		  const struct rb_audit_head *kept, int shared, struct rb_audit_result *r)
{
	struct rb_audit_keyring *kr = rb_cli_keyring(o->ring, o->state);
	if (!kr)
		return -1;
	struct rb_audit_verify_opts vo = {.keyring = kr, .expected_head = kept, .shared = shared,
					  .run_id = shared ? NULL : o->run};
	/* An empty log: the verifier says so, from an empty stream. */
	FILE *f = len ? fmemopen((void *)buf, len, "r") : fopen("/dev/null", "re");
	int rc = -1;
	if (!f) {
		rb_cli_error("cannot read %s: %s", path, strerror(errno));
	} else if (rb_audit_verify_stream(f, &vo, r) < 0) {
		rb_cli_verify_error(path, r);
	} else {
		rc = 0;
	}
	if (f)
		fclose(f);
	rb_audit_keyring_free(kr);
	return rc;
}

static int replay(const struct replay_opts *o)
{
	struct rb_audit_head kept;
	struct rb_audit_result r;
	char *path = NULL, *buf = NULL, *err = NULL, *list = NULL;
	json_t *ids = NULL, *recs = NULL, *model = NULL;
	size_t len = 0;
	int rc = RB_EXIT_FAILED;
	int ok = rb_cli_run_log(o->arg, o->state, &path, &kept);
	if (ok < 0)
		return RB_EXIT_FAILED;
	struct stat st;
	if (!ok && strcmp(path, "-") && stat(path, &st) < 0 && errno == ENOENT &&
	    !strchr(o->arg, '/')) {
		fprintf(stderr, "runbook: error: no run %s in %s/runs, and no log file of that name\n",
			o->arg, rb_state_dir(o->state));
		goto out;
	}
	if (read_log(path, &buf, &len) < 0)
		goto out;
	/* Which run: the only one, or --run's. */
	ids = run_ids(buf, len);
	list = join_ids(ids);
	const char *run = o->run;
	int found = 0;
	size_t i;
	json_t *id;
	json_array_foreach(ids, i, id)
		found |= run && !strcmp(json_string_value(id), run);
	if (!run && json_array_size(ids) > 1) {
		rc = rb_usage_error("replay: %s holds %zu runs; pick one with --run ID (%s)", path,
				    json_array_size(ids), list);
		goto out;
	}
	if (run && !found && json_array_size(ids)) {
		fprintf(stderr, "runbook: error: run %s is not in %s (it holds %s)\n", run, path,
			list);
		goto out;
	}
	if (verify(path, buf, len, o, ok > 0 ? &kept : NULL, json_array_size(ids) > 1, &r) < 0)
		goto out;
	if (!run && !(run = json_string_value(json_array_get(ids, 0)))) {
		fprintf(stderr, "%s: error: no records\n", path);
		goto out;
	}
	recs = records_of(buf, len, r.records, run);
	if (!(model = rb_replay_model(recs, &err))) {
		fprintf(stderr, "%s: error: %s\n", path, err);
		goto out;
	}
	char head[96];
	snprintf(head, sizeof(head), "%" PRIu64 ":%s", r.head.seq, r.head.sha256);
	json_object_set_new(model, "verified", json_pack("{s:I, s:s, s:b}", "records",
							 (json_int_t)r.records, "head", head,
							 "shared", json_array_size(ids) > 1));
	if (o->simulate) {
		rc = simulate(recs, model, o);
		goto out;
	}
	if (rb_replay_render(model, o->format, stdout, &err) < 0) {
		rb_cli_error("%s", err);
		goto out;
	}
	rc = RB_EXIT_OK;
out:
	free(err);
	free(list);
	free(buf);
	free(path);
	json_decref(ids);
	json_decref(recs);
	json_decref(model);
	return rc;
}

int cmd_replay(int argc, char **argv)
{
	static const struct rb_opt opts[] = {
		{'f', "format", 1}, {'k', "keyring", 1}, {0, "state-dir", 1}, {0, "run", 1},
		{0, "simulate", 0}, {0, "runbook", 1}, {0, NULL, 0}};
	struct replay_opts o = {.format = "text"};
	struct rb_optparse p;
	int k;
	rb_opt_init(&p, "replay", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		switch (k) {
		case RB_OPT_HELP:
			rb_print_usage("replay", stdout);
			return RB_EXIT_OK;
		case RB_OPT_ERROR:
			return RB_EXIT_INVALID;
		case RB_OPT_ARG:
			if (o.arg)
				return rb_usage_error("replay: one run at a time");
			o.arg = p.val;
			break;
		case 0: o.format = p.val; break;
		case 1: o.ring = p.val; break;
		case 2: o.state = p.val; break;
		case 3: o.run = p.val; break;
		case 4: o.simulate = 1; break;
		default: o.runbook = p.val; break;
		}
	}
	if (o.runbook && !o.simulate)
		return rb_usage_error("replay: --runbook goes with --simulate");
	if (!o.arg)
		return rb_usage_error("replay: no run given (usage: runbook replay RUN_ID|RUN_DIR|LOG)");
	if (strcmp(o.format, "text") && strcmp(o.format, "markdown") && strcmp(o.format, "json"))
		return rb_usage_error("replay: unknown format '%s' (expected text, markdown or json)",
				      o.format);
	return replay(&o);
}
