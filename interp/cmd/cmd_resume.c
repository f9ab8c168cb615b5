/*
 * runbook resume RUN_ID [--rerun STEP]... [--skip STEP]... [--force] ...:
 * continue a run that failed, was interrupted or crashed.  Finished steps
 * keep their results; a step that was running when the run stopped runs
 * again only if it is idempotent or the operator says so.  Prints what it
 * will do before doing it.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "diag.h"
#include "exec.h"
#include "graph.h"
#include "journal.h"
#include "luabox.h"
#include "plan.h"
#include "redact.h"
#include "runbook.h"
#include "rundir.h"
#include "runstate.h"
#include "types.h"
#include "util.h"

static int listed(const char *const *v, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i], id))
			return 1;
	return 0;
}

/* A value the log holds redacted: *** (a secret) or <NAME> (a redact: pattern, PII). */
static int looks_redacted(const struct rb_runbook *rb, const char *v)
{
	if (strstr(v, RB_REDACT_MASK))
		return 1;
	static const char *const pii[] = {"<email>", "<phone>"};
	for (size_t i = 0; rb->redact_pii && i < 2; i++)
		if (strstr(v, pii[i]))
			return 1;
	for (size_t i = 0; i < rb->nredact_patterns; i++) {
		char *label = rb_xasprintf("<%s>", rb->redact_patterns[i].name);
		int found = strstr(v, label) != NULL;
		free(label);
		if (found)
			return 1;
	}
	return 0;
}

/*
 * The run's params, as its log recorded them: redacted where they held a
 * secret or what a redact: pattern hides (an e-mail address), so such a
 * param must be given again (-p NAME=VALUE) for the resume to run with its
 * value, never silently with the placeholder.  Only those may be given.
 */
static int redacted_params(const struct rb_runbook *rb, const json_t *recorded, char **given,
			   size_t ngiven, json_t **out)
{
	struct rb_diags d;
	rb_diags_init(&d, rb->file, rb->src, rb->srclen);
	json_t *resolved = ngiven ? rb_params_resolve(rb, given, ngiven, &d) : NULL;
	rb_diags_print(&d, stderr, rb_use_color(stderr));
	int bad = ngiven && !resolved;
	rb_diags_release(&d);
	*out = json_deep_copy(recorded ? recorded : json_object());
	for (size_t i = 0; !bad && i < ngiven; i++) {
		char *name = rb_xstrndup(given[i], strcspn(given[i], "="));
		json_t *was = json_object_get(*out, name);
		if (!json_is_string(was) || !looks_redacted(rb, json_string_value(was))) {
			fprintf(stderr, "runbook: error: resume: -p %s: the run's params stand; only a "
				"param its log holds redacted may be given again\n", name);
			bad = 1;
		} else {
			json_object_set(*out, name, json_object_get(resolved, name));
		}
		free(name);
	}
	const char *name;
	json_t *v;
	json_object_foreach(*out, name, v)
		if (!bad && json_is_string(v) && looks_redacted(rb, json_string_value(v))) {
			fprintf(stderr, "runbook: error: resume: param '%s' is redacted in the run's "
				"log (%s); give it again: -p %s=VALUE\n", name, json_string_value(v),
				name);
			bad = 1;
		}
	json_decref(resolved);
	return bad ? RB_EXIT_INVALID : RB_EXIT_OK;
}

/*
 * The runbook to resume: the run's own copy, unless the file it came from
 * has changed since, which is refused without --force (and then used).  A
 * run started from standard input (file "-") has no file but its copy: the
 * resume's own standard input is not that runbook, and is never read.
 */
static int load_runbook(const char *run_dir, const json_t *st, int force,
			struct rb_runbook **out)
{
	char *buf, *err = NULL;
	size_t len;
	const char *file = json_string_value(json_object_get(st, "file"));
	const char *sha = json_string_value(json_object_get(st, "sha256"));
	char hex[65];
	if (rb_run_load_runbook(run_dir, &buf, &len, &err) < 0) {
		rb_cli_error("%s", err);
		free(err);
		return RB_EXIT_FAILED;
	}
	/* The copy must be what run_started recorded (signed), not only what runbook.sha256 says. */
	if (sha && rb_sha256_hex(buf, len, hex) == 0 && strcmp(hex, sha)) {
		fprintf(stderr, "runbook: error: %s/%s is not the runbook the run started with (its "
			"SHA-256 is not the one the run's log recorded): the run directory was "
			"changed\n", run_dir, RB_RUN_RUNBOOK);
		free(buf);
		return RB_EXIT_FAILED;
	}
	char *now = NULL;
	size_t nowlen = 0;
	if (file && strcmp(file, "-") && sha &&
	    rb_read_file(file, RB_MAX_INPUT, &now, &nowlen, &err) == 0 &&
	    rb_sha256_hex(now, nowlen, hex) == 0 && strcmp(hex, sha)) {
		if (!force) {
			fprintf(stderr, "runbook: error: %s has changed since the run started; "
				"resume refuses to run a different runbook: give --force to run it "
				"as it is now\n", file);
			free(now);
			free(buf);
			return RB_EXIT_INVALID;
		}
		free(buf);
		buf = now;
		len = nowlen;
		now = NULL;
	}
	free(now);
	free(err);
	struct rb_diags d;
	rb_diags_init(&d, file ? file : "runbook.yaml", NULL, 0);
	struct rb_runbook *rb = rb_runbook_load(file ? file : "runbook.yaml", buf, len, &d);
	free(buf);
	d.src = rb->src;
	d.srclen = rb->srclen;
	rb_diags_print(&d, stderr, rb_use_color(stderr));
	int rc = d.errors ? RB_EXIT_INVALID : RB_EXIT_OK;
	rb_diags_release(&d);
	if (rc != RB_EXIT_OK)
		rb_runbook_free(rb);
	else
		*out = rb;
	return rc;
}

/*
 * Decide each step; RB_EXIT_OK with *kept filled, or an exit status.  from
 * (--from) is a step to run again with everything after it, or NULL.
 */
static int decide(struct rb_runbook *rb, const json_t *st, const char *const *rerun,
		  size_t nrerun, const char *const *skip, size_t nskip, const char *from,
		  json_t *kept, json_t *items)
{
	json_t *by_id = json_object();
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(st, "steps"), i, s)
		json_object_set(by_id, json_string_value(json_object_get(s, "step")), s);
	const char *const *lists[3] = {rerun, skip, &from};
	size_t counts[3] = {nrerun, nskip, from != NULL};
	for (int l = 0; l < 3; l++)
		for (size_t k = 0; k < counts[l]; k++) {
			struct rb_step *step = rb_runbook_step(rb, lists[l][k]);
			if (!step || step->kind != RB_MAIN) {
				json_decref(by_id);
				return rb_usage_error("resume: no step '%s' in the runbook",
						      lists[l][k]);
			}
		}
	struct rb_buf keep, again, undecided;
	rb_buf_init(&keep);
	rb_buf_init(&again);
	rb_buf_init(&undecided);
	/* In stage order: a step is kept only if everything it needs is kept. */
	size_t norder;
	struct rb_step **order = rb_graph_order(rb, RB_MAIN, &norder);
	for (size_t k = 0; k < norder; k++) {
		const struct rb_step *step = order[k];
		json_t *was = json_object_get(by_id, step->id);
		int deps_kept = 1;
		for (size_t j = 0; j < step->ndeps; j++)
			deps_kept &= json_object_get(kept, rb->steps[step->deps[j]]->id) != NULL;
		const char *status = was ? json_string_value(json_object_get(was, "status")) : NULL;
		if (!status || !strcmp(status, "pending"))
			continue;
		int in_flight = !strcmp(status, "running") || !strcmp(status, "retrying") ||
				!strcmp(status, "interrupted");
		int done = !strcmp(status, "succeeded") || !strcmp(status, "skipped") ||
			   !strcmp(status, "satisfied");
		/* A step that a rollback undid is not done any more. */
		json_t *undo = step->undo ? json_object_get(by_id, step->undo->id) : NULL;
		if (undo && !strcmp(json_string_value(json_object_get(undo, "status")),
				    "succeeded")) {
			rb_buf_printf(&again, " %s (undone)", step->id);
			continue;
		}
		if (from && !strcmp(from, step->id)) {
			rb_buf_printf(&again, " %s (--from)", step->id);
		} else if (listed(skip, nskip, step->id)) {
			/* Taken as done: what depends on it runs (it has no output). */
			json_object_set_new(kept, step->id, json_pack("{s:s, s:O, s:b}", "status",
				"succeeded", "attempts", json_object_get(was, "attempts"),
				"taken_as_done", 1));
			rb_buf_printf(&keep, " %s (taken as done: --skip)", step->id);
		} else if (done && deps_kept) {
			json_object_set(kept, step->id, was);
			rb_buf_printf(&keep, " %s", step->id);
		} else if (done) {
			rb_buf_printf(&again, " %s (after a step that runs again)", step->id);
		} else if (in_flight && !step->check && !step->idempotent &&
			   !listed(rerun, nrerun, step->id)) {
			rb_buf_printf(&undecided, " %s", step->id);
		} else {
			/* It runs again where it stopped: the for_each items it finished stay done. */
			json_t *finished = json_object_get(was, "items");
			if (finished)
				json_object_set(items, step->id, finished);
			rb_buf_printf(&again, " %s (%s%s", step->id, status,
				      in_flight && step->check ? "; its check decides" : "");
			if (json_object_size(finished))
				rb_buf_printf(&again, "; %zu item%s done", json_object_size(finished),
					      json_object_size(finished) == 1 ? "" : "s");
			rb_buf_putc(&again, ')');
		}
	}
	free(order);
	json_decref(by_id);
	int rc = RB_EXIT_OK;
	if (undecided.len) {
		fprintf(stderr, "runbook: error: these steps were running when the run stopped and "
			"are not idempotent, so they may have done part of their work:%s\n"
			"runbook: resume with --rerun STEP to run one again, or --skip STEP when "
			"it is known to be done\n", undecided.s);
		rc = RB_EXIT_INVALID;
	} else {
		printf("resume: keeping%s\n", keep.len ? keep.s : " nothing");
		printf("resume: running again%s\n", again.len ? again.s : ": none");
	}
	rb_buf_release(&keep);
	rb_buf_release(&again);
	rb_buf_release(&undecided);
	return rc;
}

int cmd_resume(int argc, char **argv)
{
	static const struct rb_opt opts[] = {
		{0, "rerun", 1}, {0, "skip", 1}, {0, "force", 0}, {'j', "jobs", 1},
		{0, "state-dir", 1}, {0, "output", 1}, {0, "lock-timeout", 1}, {0, "approve", 1},
		{0, "from", 1}, {'p', "param", 1}, {0, "audit-key", 1}, {0, "audit-log", 1},
		{0, "keyring", 1}, {0, "ignore-window", 0}, {0, NULL, 0},
	};
	struct rb_optparse p;
	const char *id = NULL, *from = NULL;
	const char **rerun = rb_xcalloc((size_t)argc, sizeof(*rerun));
	const char **skip = rb_xcalloc((size_t)argc, sizeof(*skip));
	char **given = rb_xcalloc((size_t)argc, sizeof(*given));
	size_t ngiven = 0;
	size_t nrerun = 0, nskip = 0;
	int k, rc = RB_EXIT_OK, force = 0;
	struct rb_exec_opts o = {.jobs = RB_JOBS_DEFAULT, .out = stdout,
				 .approve = rb_xcalloc((size_t)argc, sizeof(char *))};
	json_t *st = NULL, *kept = NULL, *items = NULL, *before = NULL, *params = NULL;
	struct rb_runbook *rb = NULL;
	char *dir = NULL, *err = NULL;
	int hold = -1;

	rb_opt_init(&p, "resume", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		switch (k) {
		case RB_OPT_ERROR:
			rc = RB_EXIT_INVALID;
			goto out;
		case RB_OPT_HELP:
			rb_print_usage("resume", stdout);
			goto out;
		case RB_OPT_ARG:
			if (id) {
				rc = rb_usage_error("resume: one run at a time");
				goto out;
			}
			id = p.val;
			break;
		case 0:
			rerun[nrerun++] = p.val;
			break;
		case 1:
			skip[nskip++] = p.val;
			break;
		case 2:
			force = 1;
			break;
		case 8:
			from = p.val;
			break;
		case 9:
			given[ngiven++] = (char *)p.val;
			break;
		case 12:
			o.keyring = p.val;
			break;
		default:
			if (rb_exec_option("resume", opts[k].longname, p.val, &o) < 0) {
				rc = RB_EXIT_INVALID;
				goto out;
			}
			break;
		}
	}
	if (!id || strchr(id, '/') || id[0] == '.') {
		rc = rb_usage_error("resume: %s", id ? "not a run id" : "no run given (usage: "
					"runbook resume RUN_ID)");
		goto out;
	}
	dir = rb_run_dir(rb_state_dir(o.state_dir), id);
	/*
	 * The run's hold first: what is decided below is read under it, so that
	 * another resume of the run (or the run itself, still going) cannot change
	 * it before this one acts on it.  The engine opens the journal under it.
	 */
	if ((hold = rb_journal_hold(dir, &err)) < 0) {
		fprintf(stderr, "runbook: error: %s\n", err);
		rc = RB_EXIT_FAILED;
		goto out;
	}
	o.hold = &hold;
	if (!(st = rb_run_state(dir, NULL, NULL, &err))) {
		rb_cli_error("run %s: %s", id, err);
		rc = RB_EXIT_FAILED;
		goto out;
	}
	if (!from && !strcmp(json_string_value(json_object_get(st, "status")), "succeeded")) {
		printf("run %s succeeded: nothing to resume\n", id);
		goto out;
	}
	if (!json_object_get(st, "params")) {
		fprintf(stderr, "runbook: error: run %s has no record of its start (it stopped while "
			"starting, before any step ran): nothing to resume; start it again\n", id);
		rc = RB_EXIT_FAILED;
		goto out;
	}
	if ((rc = load_runbook(dir, st, force, &rb)) != RB_EXIT_OK)
		goto out;
	kept = json_object();
	items = json_object();
	if ((rc = decide(rb, st, rerun, nrerun, skip, nskip, from, kept, items)) != RB_EXIT_OK)
		goto out;
	fflush(stdout);
	before = json_object();
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(st, "steps"), i, s)
		json_object_set(before, json_string_value(json_object_get(s, "step")), s);
	o.before = before;
	o.resume_id = id;
	/* Every session sees what the first one fixed: run.started_at and the vars. */
	o.start = st;
	o.now = rb_run_started_at(st, id);
	/* A run started from a reviewed plan stays that plan's: its gates say so. */
	o.plan_sha256 = json_string_value(json_object_get(st, "plan_sha256"));
	if (o.now < 0)
		o.now = (time_t)rb_now();
	o.kept = kept;
	o.items = items;
	if ((rc = redacted_params(rb, json_object_get(st, "params"), given, ngiven, &params)) !=
	    RB_EXIT_OK)
		goto out;
	o.params = params;
	json_t *note = json_pack("{s:b}", "journal_torn", json_is_true(json_object_get(st, "torn")));
	o.resume_note = note;
	struct rb_diags d;
	rb_diags_init(&d, rb->file, rb->src, rb->srclen);
	rc = rb_cli_execute(rb, &o, &d);
	rb_diags_print(&d, stderr, rb_use_color(stderr));
	rb_diags_release(&d);
	json_decref(note);
out:
	if (hold >= 0)
		close(hold);
	free(err);
	free(dir);
	json_decref(st);
	json_decref(kept);
	json_decref(items);
	json_decref(before);
	rb_runbook_free(rb);
	free(rerun);
	free(skip);
	free(given);
	json_decref(params);
	free(o.approve);
	return rc;
}
