/*
 * The scheduler: one thread (the run's) takes each ready step through its
 * condition, its check, its gate and its attempts, renders its calls, hands
 * them out as units (one per for_each item), up to the step's concurrency and
 * the run's --jobs, and journals what happened before anything that depends
 * on it starts.  A unit runs where its action says: stepped in this thread's
 * poll loop (start and step: commands), on this thread at once (inline
 * actions, with Lua), or on a worker thread (run).
 */
#include "exec_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lauxlib.h>
#include <lua.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "audit.h"
#include "redact.h"

/* Output lines of a step, from a worker thread. */
static void on_line(void *ud, int stream, const char *line, size_t len)
{
	struct unit *u = ud;
	struct exec *ex = u->jb->ex;
	const char *id = ex->rb->steps[u->jb->step]->id;
	if (stream == 1 && ex->rb->steps[u->jb->step]->quiet)
		return;         /* captured all the same: its output, the log */
	size_t n;
	char *clean = rb_utf8_lossy(line, len, &n);
	if (ex->rb->steps[u->jb->step]->sensitive) {     /* every line is its output */
		free(clean);
		clean = rb_xstrdup(RB_SECRET_MASK);
		n = strlen(clean);
	} else if (memchr(clean, '\0', n)) {
		/* Redacted before its NULs are shown as "\0" below, which no secret's form has. */
		char *red = ex_redact(ex, clean, n, &n);
		free(clean);
		clean = red;
	}
	json_t *ev = json_pack("{s:s, s:s, s:s, s:s%}", "event", "output", "step", id, "stream",
			       stream == 2 ? "stderr" : "stdout", "line", clean, n);
	char at[32] = "";
	if (u->jb->items) {
		json_object_set_new(ev, "index", json_integer((json_int_t)u->k));
		snprintf(at, sizeof(at), "[%zu]", u->k + 1);
	}
	/*
	 * The text is a C string: a NUL in the line is shown as \0 (util.h), not
	 * its end.  A CR that ends the line (CRLF) hides nothing: dropped there.
	 */
	struct rb_buf t;
	rb_buf_init(&t);
	size_t tn = n;
	while (tn && clean[tn - 1] == '\r')
		tn--;
	for (const char *p = clean, *z; p < clean + tn; p = z + 1) {
		z = memchr(p, '\0', (size_t)(clean + tn - p));
		z = z ? z : clean + tn;
		rb_buf_add(&t, p, (size_t)(z - p));
		if (z < clean + tn)
			rb_buf_puts(&t, "\\0");
	}
	ex_event(ex, ev, "%s%s%s %s", id, at, stream == 2 ? "!" : "|", t.s ? t.s : "");
	rb_buf_release(&t);
	free(clean);
}

/*
 * A command has started.  When its supervisor synced the journal first (a gated
 * batch), the records written for it are durable now: what waited for them is shown.
 */
static void on_started(void *ud)
{
	struct unit *u = ud;
	struct exec *ex = u->jb->ex;
	if (ex->gated == u)
		ex_recorded(ex);
}

/* Output spilled to the run directory is redacted before it is written, from a worker thread. */
static char *spill_filter(void *ud, const char *d, size_t n, size_t *outn)
{
	struct unit *u = ud;
	return ex_redact(u->jb->ex, d, n, outn);
}

/* Output that must be cut (a long line, the end of what is kept) is cut between secrets. */
static size_t output_cut(void *ud, const char *d, size_t n)
{
	struct unit *u = ud;
	return rb_redact_cut(u->jb->ex->redactor, d, n);
}

/* --- workers --------------------------------------------------------------------------- */

/*
 * An error at line n of a Lua chunk as a compiler says it, FILE:LINE:COL: at that line's
 * first character in the runbook, when the chunk is a lua: text as written there.
 */
static char *chunk_error(struct exec *ex, const struct rb_step *what, const char *code, int n,
			 char *err)
{
	const struct rb_node *node = what->lua ? what->lua
				     : what->with ? rb_map_get(what->with, "code") : NULL;
	char *e;
	if (!node || node->type != RB_SCALAR || !code || strlen(code) != node->len ||
	    memcmp(code, node->str, node->len)) {
		e = rb_xasprintf("line %d of the chunk: %s", n, err);
	} else {
		size_t off = 0;
		for (int at = 1; at < n && code[off]; off++)   /* to the start of line n */
			at += code[off] == '\n';
		while (code[off] == ' ' || code[off] == '\t')
			off++;
		int line, col;
		rb_runbook_pos(ex->rb, node, off, &line, &col);
		e = rb_xasprintf("%s:%d:%d: %s", ex->rb->file, line, col, err);
	}
	free(err);
	return e;
}

/*
 * An action's error at a place in an argument's text (rb_result.err_arg: a SQL
 * error's position): at that character in the runbook when the text is the
 * argument's own, written in it; else at the argument, with the character.
 */
static char *arg_pos_error(struct exec *ex, const struct rb_step *what, const json_t *args,
			   const struct rb_result *res, char *err)
{
	const struct rb_node *n = rb_map_get(what->with, res->err_arg);
	const json_t *v = json_object_get(args, res->err_arg);
	if (n && res->err_index >= 0) {
		n = n->type == RB_SEQ && (size_t)res->err_index < n->n ? n->items[res->err_index]
								      : NULL;
		v = json_array_get(v, (size_t)res->err_index);
	}
	if (n && n->type == RB_MAP) {   /* an item {sql: ..., params: ...} */
		n = rb_map_get(n, res->err_arg);
		v = json_object_get(v, res->err_arg);
	}
	if (!n)
		return err;
	const char *text = json_string_value(v);
	char *e;
	if (n->type == RB_SCALAR && !n->tmpl && text && strlen(text) == n->len &&
	    !memcmp(text, n->str, n->len)) {
		size_t off = 0;         /* the character's byte, in UTF-8 */
		for (long c = 1; c < res->err_pos && off < n->len; c++)
			do
				off++;
			while (off < n->len && (text[off] & 0xC0) == 0x80);
		int line, col;
		rb_runbook_pos(ex->rb, n, off, &line, &col);
		e = rb_xasprintf("%s:%d:%d: %s", ex->rb->file, line, col, err);
	} else {
		e = rb_xasprintf("%s:%d:%d: %s (at character %ld of the statement)", ex->rb->file,
				 n->line, n->col, err, res->err_pos);
	}
	free(err);
	return e;
}

/*
 * The Lua memory limit keeps item k of n from being set (or cleared) for step i:
 * -1 with *err saying so at the step's for_each, and the run fails.
 */
static int item_capped(struct exec *ex, size_t i, size_t k, size_t n, char **err)
{
	const struct rb_step *st = ex->rb->steps[i];
	const struct rb_node *at = st->for_each ? st->for_each : st->node;
	*err = rb_xasprintf("%s:%d:%d: memory limit of %zu MiB exceeded while setting item %zu "
			    "of %zu for step '%s'", ex->rb->file, at->line, at->col,
			    rb_luabox_mem_mib(ex->box), k + 1, n, st->id);
	ex->s[i].capped = 1;
	return -1;
}

/*
 * The call a unit makes: its arguments, where its output spills, whom it tells.
 * Returns -1 with *err when item cannot be set for an inline action (the Lua
 * memory limit): the call must not run.
 */
static int unit_call(struct unit *u, char **err)
{
	struct job *jb = u->jb;
	struct exec *ex = jb->ex;
	const char *id = ex->rb->steps[jb->step]->id;
	const char *check = jb->what->kind == RB_CHECK ? ".check" : "";
	if (!ex->run_dir)               /* a probe keeps nothing */
		u->spill = NULL;
	else if (jb->items)
		u->spill = rb_xasprintf("%s/%s/%s%s.%zu", ex->run_dir, RB_RUN_OUTPUT, id, check,
					u->k + 1);
	else
		u->spill = rb_xasprintf("%s/%s/%s%s", ex->run_dir, RB_RUN_OUTPUT, id, check);
	/* An inline action reads item at run time (it is its Lua), on this thread. */
	int rc = 0;
	if (jb->items && (jb->action->flags & RB_ACT_INLINE) &&
	    rb_luabox_set_json(ex->box, ex->scope, "item", json_array_get(jb->items, u->k), 0) < 0)
		rc = item_capped(ex, jb->step, u->k, jb->n, err);
	u->call = (struct rb_call){
		.run = ex->ctx,
		.step = id,
		.item = jb->items ? u->k : RB_NO_ITEM,
		.attempt = ex->s[jb->step].attempts,
		.check = jb->what->kind == RB_CHECK,
		.explain = jb->explain,
		.args = json_array_get(jb->calls, u->k),
		.secret_args = (const char *const *)jb->what->secret_args,
		.env = (const char *const *)jb->env.v,
		.deadline_ms = jb->deadline_ms,
		.cancel = &jb->cancel,
		.spill_path = u->spill,
		.on_line = on_line,
		.on_started = on_started,
		.ud = u,
		.filter = spill_filter,
		.cut = output_cut,
		.box = ex->box,
		.scope = ex->scope,
		.sensitive = ex->rb->steps[jb->step]->sensitive,
	};
	if (ex->journal && !(jb->action->flags & RB_ACT_INLINE)) {
		struct rb_audit_head h;
		rb_journal_head(ex->journal, &h);
		snprintf(u->head, sizeof(u->head), "%" PRIu64 ":%s (key %s)", h.seq, h.sha256,
			 rb_audit_key_id(ex->key));
		u->call.audit_head = u->head;
	}
	if (ex->gate_fd >= 0 && (jb->action->flags & RB_ACT_SYNC_FIRST)) {
		u->call.sync = 1;
		u->call.sync_fd = ex->gate_fd;
		ex->gate_fd = -1;
		ex->gated = u;
	}
	return rc;
}

/* What a unit's call came to, as its step takes it. */
static void unit_result(struct unit *u, struct rb_result *res)
{
	struct job *jb = u->jb;
	struct exec *ex = jb->ex;
	int check = jb->what->kind == RB_CHECK;
	/* Inline, so on the engine's thread: the runbook's positions are its. */
	if (res->chunk_line && (jb->action->flags & RB_ACT_INLINE))
		res->error = chunk_error(ex, jb->what, json_string_value(
			json_object_get(u->call.args, "code")), res->chunk_line, res->error);
	else if (res->err_arg && res->err_pos > 0 && res->error)
		res->error = arg_pos_error(ex, jb->what, u->call.args, res, res->error);
	/*
	 * A check whose code fails (a Lua error: returning false is how it says "not in
	 * place") gave no answer.  That is a bug in the runbook, as a check argument that
	 * cannot be rendered is, and the step must not run on it.
	 */
	u->broken = check && (res->outcome == RB_BROKEN || res->outcome == RB_TIMED_OUT);
	if (ex->gated == u)
		ex->gated = NULL;
	if (res->outcome == RB_NOT_STARTED) {
		char *why = rb_xasprintf("cannot sync %s/%s before '%s' starts: %s", ex->run_dir,
					 RB_RUN_JOURNAL, u->call.step, strerror(res->sync_errno));
		ex_journal_failed(ex, why);
		free(why);
		free(res->error);
		res->error = rb_xstrdup("not started: the audit log cannot be made durable");
	}
	/* A check says "in place" by succeeding with a result that is not nil or false. */
	if (check && res->outcome == RB_OK && (!res->output || json_is_null(res->output) ||
				      json_is_false(res->output))) {
		res->outcome = RB_FAILED;
		res->error = rb_xasprintf("it returned %s",
					  res->output && json_is_false(res->output) ? "false"
										    : "nil");
	}
	char *err = NULL;
	if (jb->items && (jb->action->flags & RB_ACT_INLINE) &&
	    rb_luabox_set_json(ex->box, ex->scope, "item", NULL, 0) < 0 &&
	    item_capped(ex, jb->step, u->k, jb->n, &err) < 0) {
		res->outcome = RB_BROKEN;
		free(res->error);
		res->error = err;
	}
	free(u->spill);
	u->spill = NULL;
	u->secrets = res->secrets;
	u->failed = res->outcome != RB_OK;
	u->timed_out = res->outcome == RB_TIMED_OUT;
	u->error = res->error;
	u->warning = res->warning;
	u->output = res->output;
}

/* A unit's call with run(), from start to end: on a worker, or inline. */
static void run_unit(struct unit *u)
{
	struct job *jb = u->jb;
	struct exec *ex = jb->ex;
	struct rb_result res = {0};
	if (unit_call(u, &res.error) < 0) {
		res.outcome = RB_BROKEN;
	} else if (ex->o->recorded && !(jb->action->flags & RB_ACT_INLINE)) {
		/* replay --simulate: what the run recorded stands in for the action. */
		int r = ex->o->recorded(ex->o->recorded_ud, u->call.step, ex->s[jb->step].attempts,
					u->k, jb->what->kind == RB_CHECK, &res.output, &res.error);
		/* A call the run never made is taken as done, so the path goes on. */
		res.outcome = r == 0 ? RB_FAILED : RB_OK;
	} else if (!jb->action->run) {
		res.outcome = RB_BROKEN;
		res.error = rb_xasprintf("action '%s' cannot run in this version", jb->action->name);
	} else {
		jb->action->run(&u->call, &res);
	}
	unit_result(u, &res);
}

static void *worker(void *arg)
{
	struct exec *ex = arg;
	for (;;) {
		pthread_mutex_lock(&ex->mu);
		while (!ex->queue && !ex->quit)
			pthread_cond_wait(&ex->cv, &ex->mu);
		struct unit *u = ex->queue;
		if (!u) {
			pthread_mutex_unlock(&ex->mu);
			return NULL;
		}
		ex->queue = u->next;
		pthread_mutex_unlock(&ex->mu);

		run_unit(u);

		pthread_mutex_lock(&ex->mu);
		u->next = ex->done;
		ex->done = u;
		pthread_mutex_unlock(&ex->mu);
		ssize_t w;
		do
			w = write(ex->wake[1], "", 1);
		while (w < 0 && errno == EINTR);
	}
}

int ex_start_workers(struct exec *ex)
{
	if (pipe2(ex->wake, O_CLOEXEC | O_NONBLOCK) < 0)
		return rb_error_pos(ex->d, 0, 0, "cannot create a pipe: %s", strerror(errno));
	/* Workers take no signals: the scheduling thread handles them. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	ex->threads = rb_xcalloc((size_t)ex->o->jobs, sizeof(*ex->threads));
	for (int i = 0; i < ex->o->jobs; i++) {
		if (pthread_create(&ex->threads[i], NULL, worker, ex) != 0)
			break;
		ex->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!ex->nthreads)
		return rb_error_pos(ex->d, 0, 0, "cannot start worker threads");
	return 0;
}

void ex_stop_workers(struct exec *ex)
{
	pthread_mutex_lock(&ex->mu);
	ex->quit = 1;
	pthread_cond_broadcast(&ex->cv);
	pthread_mutex_unlock(&ex->mu);
	for (int i = 0; i < ex->nthreads; i++)
		pthread_join(ex->threads[i], NULL);
	free(ex->threads);
	if (ex->wake[0] >= 0) {
		close(ex->wake[0]);
		close(ex->wake[1]);
	}
}

static void free_job(struct job *jb)
{
	json_decref(jb->calls);
	json_decref(jb->items);
	json_decref(jb->item_sha);
	json_decref(jb->outs);
	free(jb->ok);
	rb_strv_release(&jb->env);
	rb_cancel_fini(&jb->cancel);
	free(jb);
}

/* --- steps ------------------------------------------------------------------------------ */

/* Named outputs, computed with `output` in scope. */
/*
 * Render n in the run's scope; NULL with *err = "WHAT: why" when an
 * expression fails.
 */
static json_t *render(struct exec *ex, const struct rb_node *n, const char *what, char **err)
{
	struct rb_diags d;
	rb_diags_init(&d, ex->rb->file, NULL, 0);
	struct rb_render r = ex_renderer(ex, &d);
	json_t *v = rb_render_node(&r, n);
	if (!v)
		*err = rb_xasprintf("%s: %s", what, d.n ? d.v[0].msg : "failed");
	rb_diags_release(&d);
	return v;
}

/* NULL with *err when an expression fails, or with *capped at the Lua memory limit. */
static json_t *compute_outputs(struct exec *ex, const struct rb_step *st, json_t *output,
			       char **err, int *capped)
{
	if (rb_luabox_set_json(ex->box, ex->scope, "output", output ? output : json_null(), 0) < 0) {
		*capped = 1;
		return NULL;
	}
	json_t *v = render(ex, st->outputs, "outputs", err);
	if (rb_luabox_set_json(ex->box, ex->scope, "output", NULL, 0) < 0) {
		json_decref(v);
		free(*err);
		*err = NULL;
		*capped = 1;
		return NULL;
	}
	return v;
}

/* When what is being finished ended: now, or when a polled call ended while Lua ran. */
static int64_t ended_ms(const struct exec *ex)
{
	return ex->ended_ms ? ex->ended_ms : rb_now_ms();
}

static void finish(struct exec *ex, size_t i, enum sstatus status, json_t *output, char *error)
{
	struct srun *sr = &ex->s[i];
	const struct rb_step *st = ex->rb->steps[i];
	sr->status = status;
	json_decref(sr->output);        /* a result kept from before a resume */
	json_decref(sr->outputs);
	sr->outputs = NULL;
	free(sr->error);
	sr->output = output;
	sr->error = error;
	sr->completed = ++ex->completed;
	if (st->sensitive && output)
		ex_add_sensitive(ex, output);
	if (status == S_SUCCEEDED) {    /* its items are in its output now */
		json_decref(sr->items_done);
		sr->items_done = NULL;
	}
	int capped = 0;
	if (status == S_SUCCEEDED && st->outputs) {
		char *err = NULL;
		sr->outputs = compute_outputs(ex, st, output, &err, &capped);
		if (!sr->outputs && !capped) {
			sr->status = status = S_FAILED;
			sr->error = err;
			free(error);
		}
		if (st->sensitive && sr->outputs)
			ex_add_sensitive(ex, sr->outputs);
	}
	/* Reaching the Lua memory limit fails the step and the run, loudly (ex_publish_failed). */
	if (capped || ex_publish(ex, i) < 0) {
		ex_publish_failed(ex, i, capped ? "(its output, for its outputs)" : NULL);
		status = S_FAILED;
		capped = 1;
	}
	int continued = status == S_FAILED && st->continue_on_error && !capped && !sr->capped;

	json_t *rec = json_pack("{s:s, s:s, s:s, s:i}", "type", "step_finished", "step", st->id,
				"status", ex_status_names[status], "attempt", sr->attempts);
	ex_record_kind(rec, st);
	/* A resume cannot have what is masked: it says so to a step that reads it. */
	if (ex_secret_kept(st, sr))
		json_object_set_new(rec, "secret", json_true());
	if (sr->output)
		json_object_set_new(rec, "output", st->sensitive ? json_string(RB_SECRET_MASK)
							     : json_incref(sr->output));
	if (sr->outputs)
		json_object_set_new(rec, "outputs", st->sensitive ? json_string(RB_SECRET_MASK)
							      : json_incref(sr->outputs));
	if (sr->error)
		json_object_set_new(rec, "error", json_string(sr->error));
	if (continued)
		json_object_set_new(rec, "continued", json_true());
	int64_t end = ended_ms(ex);
	sr->duration_ms = status == S_SKIPPED ? -1 : end - sr->started_ms;
	if (sr->duration_ms >= 0)
		json_object_set_new(rec, "duration_ms", json_integer(sr->duration_ms));
	json_t *ev = ex_events_read(ex) ? ex_record_event(rec) : NULL;
	ex_journal(ex, rec);

	/* Shown once step_finished is durable: the console reports what the journal has. */
	double secs = (end - sr->started_ms) / 1000.0;
	char *msg = status == S_SUCCEEDED ? rb_xasprintf("%s: succeeded in %.1fs", st->id, secs)
		    : status == S_INTERRUPTED ? rb_xasprintf("%s: interrupted after %.1fs", st->id, secs)
		    : status == S_SKIPPED ? rb_xasprintf("%s: skipped (%s)", st->id, sr->error)
		    : status == S_UNPROBED ? rb_xasprintf("%s: not probed (%s)", st->id, sr->error)
		    : status == S_SATISFIED ? rb_xasprintf("%s: satisfied: its check says it is in "
							   "place, not running it", st->id)
		    : rb_xasprintf("%s: failed%s in %.1fs: %s", st->id, continued ? " (continuing)" : "",
				   secs, sr->error ? sr->error : "failed");
	ex_step_outcome(ex, i, ev, (int)status, msg);

	if (status == S_FAILED && !continued && ex->stop_on_failure)
		ex->failed = 1;
	for (size_t k = 0; k < sr->nsucc; k++) {
		struct srun *t = &ex->s[sr->succ[k]];
		t->dep_skipped |= status == S_SKIPPED;
		t->dep_unprobed |= status == S_UNPROBED;
		if (--t->waiting == 0 && t->status == S_PENDING) {
			rb_grow(&ex->ready, &ex->readycap, ex->nready + 1, sizeof(*ex->ready));
			ex->ready[ex->nready++] = sr->succ[k];
		}
	}
}

/* The SHA-256 of an item's JSON, which tells whether an item done before is this one. */
static json_t *item_hash(const json_t *item)
{
	char *enc = json_dumps(item, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	char hex[65];
	rb_sha256_hex(enc ? enc : "", enc ? strlen(enc) : 0, hex);
	free(enc);
	return json_string(hex);
}

/*
 * for_each items are units of their own: the items an earlier attempt (or
 * the run before a resume) finished are not run again, when they are the
 * same items.
 */
static void keep_items(struct exec *ex, struct job *jb)
{
	json_t *done = ex->s[jb->step].items_done;
	jb->item_sha = json_array();
	for (size_t k = 0; k < jb->n; k++) {
		json_t *h = item_hash(json_array_get(jb->items, k));
		char key[32];
		snprintf(key, sizeof(key), "%zu", k);
		json_t *was = json_object_get(done, key);
		if (was && json_equal(json_object_get(was, "sha256"), h)) {
			jb->ok[k] = 1;
			jb->ndone++;
			json_array_set(jb->outs, k, json_object_get(was, "output"));
		}
		json_array_append_new(jb->item_sha, h);
	}
}

/*
 * The key of v (or "" for v itself) whose string, or a string inside, holds a
 * NUL, or NULL when none does (keys are C strings already).  An expression's value can (Lua's
 * "\0"), but what it reaches is a C string (argv, env, a prompt): what runs
 * or shows would end at the NUL while the signed record holds the rest.
 */
static const char *nul_at(json_t *v)
{
	const char *k;
	json_t *x;
	size_t i;
	switch (json_typeof(v)) {
	case JSON_STRING:
		return memchr(json_string_value(v), '\0', json_string_length(v)) ? "" : NULL;
	case JSON_ARRAY:
		json_array_foreach(v, i, x)
			if (nul_at(x))
				return "";
		return NULL;
	case JSON_OBJECT:
		json_object_foreach(v, k, x)
			if (nul_at(x))
				return k;
		return NULL;
	default:
		return NULL;
	}
}

/* "FILE:LINE:COL: NUL character ... in what" at node n, for *err. */
static char *nul_error(const struct exec *ex, const struct rb_node *n, const char *what)
{
	return rb_xasprintf("%s:%d:%d: NUL character (\\0) from an expression in %s, which "
			    "would end there", ex->rb->file, n->line, n->col, what);
}

/*
 * Whether a call of the job, its arguments rendered, writes, as its action's effect()
 * says now that they are known (pg.query's SQL from an expression: COPY TO PROGRAM):
 * the plan took it for one that reads, and a probe must not run it.
 */
static int writes_now(const struct job *jb)
{
	size_t k;
	json_t *args;
	if (!jb->action->effect)
		return 0;
	json_array_foreach(jb->calls, k, args) {
		char *what = NULL;
		enum rb_effect e = jb->action->effect(args, NULL, &what);
		free(what);
		if (e == RB_EFFECT_WRITES)
			return 1;
	}
	return 0;
}

/*
 * The rendered arguments against their types, as validate checks those written out: a
 * value an expression gave is known only now (a map for a URL, a number for a header,
 * a method not among the choices).  0, or -1 with *e.
 */
static int args_fit(const struct rb_action *a, const struct rb_step *what, json_t *args,
		    struct rb_arg_error *e)
{
	const char *k;
	json_t *v;
	void *tmp;
	json_object_foreach_safe(args, tmp, k, v) {
		const struct rb_arg *g = rb_action_arg(a, k);
		char *why = NULL;
		if (!g)
			continue;
		json_incref(v);
		json_t *fit = v;
		if (rb_arg_fit(g, rb_map_get(what->with, k), &fit, &why) < 0) {
			json_decref(fit);
			e->arg = g->name;
			e->index = -1;
			e->msg = why;
			return -1;
		}
		if (fit != v)
			json_object_set(args, k, fit);
		json_decref(fit);
	}
	return 0;
}

/*
 * Render what the action of step i, or of its check, needs; NULL with *err
 * when an expression fails.
 */
static struct job *prepare(struct exec *ex, size_t i, int check, char **err)
{
	const struct rb_step *st = ex->rb->steps[i], *what = check ? st->check : st;
	struct rb_diags d;
	rb_diags_init(&d, ex->rb->file, NULL, 0);
	struct rb_render r = ex_renderer(ex, &d);
	struct job *jb = rb_xcalloc(1, sizeof(*jb));
	jb->ex = ex;
	jb->step = i;
	jb->what = what;
	jb->action = what->action;
	jb->calls = json_array();
	/*
	 * A call on a worker may wait on the descriptor; an inline one is stopped through
	 * Lua's hook, and a polled one is stepped by the loop that raises the level.
	 */
	if (rb_cancel_init(&jb->cancel, jb->action->run && !(jb->action->flags & RB_ACT_INLINE))
	    < 0) {
		*err = rb_xasprintf("cannot start: %s", strerror(errno));
		rb_diags_release(&d);
		free_job(jb);
		return NULL;
	}
	char *capped = NULL;            /* item could not be set: the Lua memory limit */

	json_t *items = NULL;
	if (st->for_each) {
		items = rb_render_node(&r, st->for_each);
		if (items && !json_is_array(items)) {
			rb_error_at(&d, st->for_each, "for_each must give a list, not %s",
				    json_is_object(items) ? "a map" : "a single value");
			json_decref(items);
			items = NULL;
		}
		if (!items)
			goto fail;
	}
	size_t n = items ? json_array_size(items) : 1;
	for (size_t k = 0; k < n; k++) {
		if (items && rb_luabox_set_json(ex->box, ex->scope, "item",
						json_array_get(items, k), 0) < 0) {
			item_capped(ex, i, k, n, &capped);
			goto fail;
		}
		r.secret_env = &jb->env;
		r.redactor = ex->redactor;
		json_t *args = rb_render_args(&r, what);
		r.secret_env = NULL;
		r.redactor = NULL;
		if (!args)
			goto fail;
		const char *nk = nul_at(args);
		if (nk) {       /* refused before it is signed: the record is what runs */
			const struct rb_node *at = what->run ? what->run
						   : rb_map_get(what->with, nk);
			char *w = what->run ? rb_xstrdup("the command") : rb_xasprintf("'%s'", nk);
			*err = nul_error(ex, at ? at : what->with ? what->with : st->node, w);
			free(w);
			json_decref(args);
			goto fail_err;
		}
		struct rb_arg_error e = {NULL, -1, NULL};
		if (args_fit(jb->action, what, args, &e) < 0 ||
		    (jb->action->check && jb->action->check(args, NULL, &e) < 0)) {
			/* What was known only now breaks the action's rules: at the argument. */
			const struct rb_node *at = rb_map_get(what->with, e.arg ? e.arg : "");
			*err = rb_xasprintf("%s:%d:%d: argument '%s' of action '%s': %s",
					    ex->rb->file, at ? at->line : what->node->line,
					    at ? at->col : what->node->col, e.arg ? e.arg : "",
					    jb->action->name, e.msg);
			free(e.msg);
			json_decref(args);
			goto fail_err;
		}
		json_array_append_new(jb->calls, args);
	}
	if (items && rb_luabox_set_json(ex->box, ex->scope, "item", NULL, 0) < 0) {
		item_capped(ex, i, n - 1, n, &capped);
		goto fail;
	}
	jb->items = items;
	rb_diags_release(&d);
	rb_strv_terminated(&jb->env);
	jb->n = n;
	jb->concurrency = items && !check && st->concurrency > 1 ? (size_t)st->concurrency : 1;
	jb->outs = json_array();
	jb->ok = rb_xcalloc(n ? n : 1, 1);
	for (size_t k = 0; k < n; k++)
		json_array_append_new(jb->outs, json_null());
	if (items && !check)
		keep_items(ex, jb);
	return jb;
fail:
	*err = NULL;
fail_err:
	if (items && !capped && rb_luabox_set_json(ex->box, ex->scope, "item", NULL, 0) < 0)
		item_capped(ex, i, n - 1, n, &capped);
	json_decref(items);
	if (*err)
		free(capped);   /* the first reason stands */
	else if (capped)
		*err = capped;
	else if (d.n && d.v[0].line > 0)   /* a compiler's FILE:LINE:COL where it has one */
		*err = rb_xasprintf("%s:%d:%d: %s", ex->rb->file, d.v[0].line, d.v[0].col, d.v[0].msg);
	else
		*err = rb_xstrdup(d.n ? d.v[0].msg : "an expression failed");
	rb_diags_release(&d);
	free_job(jb);
	return NULL;
}

/* Decide whether a ready step runs: its condition, and skipped dependencies. */
static int should_run(struct exec *ex, size_t i, char **why)
{
	const struct rb_step *st = ex->rb->steps[i];
	if (!st->cond) {
		if (ex->s[i].dep_skipped) {
			*why = rb_xstrdup("a step it needs was skipped");
			return 0;
		}
		return 1;
	}
	json_t *v = render(ex, st->cond, "if", why);
	if (!v)
		return -1;
	int truth = !json_is_null(v) && !json_is_false(v);
	json_decref(v);
	if (!truth)
		*why = rb_xstrdup("its condition is false");
	return truth;
}

/* --- approval gates ------------------------------------------------------------------ */

static int approved_in_advance(const struct exec *ex, const char *id)
{
	for (size_t k = 0; k < ex->o->napprove; k++)
		if (!strcmp(ex->o->approve[k], id) || !strcmp(ex->o->approve[k], "all"))
			return 1;
	return 0;
}

static void approve(struct exec *ex, size_t i, const char *via)
{
	const char *id = ex->rb->steps[i]->id, *by = ex->o->user ? ex->o->user : "unknown";
	ex->s[i].approved = 1;
	ex->s[i].started_ms = rb_now_ms();
	json_t *rec = json_pack("{s:s, s:s, s:s, s:s}", "type", "gate_approved", "step", id, "by",
				by, "via", via);
	if (ex->o->plan_sha256)         /* what was reviewed is what the approver passed */
		json_object_set_new(rec, "plan_sha256", json_string(ex->o->plan_sha256));
	ex_journal(ex, rec);
	ex_outcome(ex, json_pack("{s:s, s:s, s:s, s:s}", "event", "gate_approved", "step", id, "by",
				 by, "via", via), "%s: approved by %s (%s)", id, by, via);
}

/* approve gave what is no prompt: an error at its position, as the loader's are. */
static char *approve_error(struct exec *ex, const struct rb_step *st, const char *what)
{
	return rb_xasprintf("%s:%d:%d: approve must give a prompt (a string), true, false or nil, "
			    "not %s", ex->rb->file, st->approve->line, st->approve->col, what);
}

/*
 * Step i has reached its gate.  Returns 1 when it may run now (no gate: approve
 * gave false or nil; or approved in advance); 0 when it waits (or failed: its
 * approve did not render, or gave what is no prompt; or a probe stops there).
 */
static int reach_gate(struct exec *ex, size_t i)
{
	const struct rb_step *st = ex->rb->steps[i];
	struct srun *sr = &ex->s[i];
	char *err = NULL, *text = NULL;
	const char *what = NULL;
	json_t *p = render(ex, st->approve, "approve", &err);
	if (p && nul_at(p)) {   /* the prompt is a C string: it would end there */
		json_decref(p);
		p = NULL;
		err = nul_error(ex, st->approve, "the prompt");
	}
	if (!p && ex->interrupted) {    /* an interrupt stopped it (lua_poll): not run */
		free(err);
		return 0;
	}
	if (!p) {
		finish(ex, i, S_FAILED, NULL, err);
		return 0;
	}
	int gate = rb_approve_gate(p, st->id, &text, &what);
	if (gate < 0) {
		json_decref(p);
		finish(ex, i, S_FAILED, NULL, approve_error(ex, st, what));
		return 0;
	}
	if (gate == 0) {        /* a gate for some cases only (prod, say): not this one */
		const char *said = json_is_false(p) ? "false" : "nil";
		json_t *rec = json_pack("{s:s, s:s, s:O}", "type", "gate_not_needed", "step",
					st->id, "approve", p);
		ex_record_kind(rec, st);
		ex_journal(ex, rec);
		ex_outcome(ex, json_pack("{s:s, s:s, s:O}", "event", "gate_not_needed", "step",
					 st->id, "approve", p),
			   "%s: no approval needed (approve gave %s)", st->id, said);
		json_decref(p);
		sr->approved = 1;
		return 1;
	}
	json_decref(p);
	if (ex->o->probe) {
		free(text);
		finish(ex, i, S_UNPROBED, NULL, rb_xstrdup("it has an approval gate"));
		return 0;
	}
	if (approved_in_advance(ex, st->id)) {
		free(text);
		approve(ex, i, "--approve");
		return 1;
	}
	sr->prompt = ex_redact(ex, text, strlen(text), NULL);
	free(text);
	sr->status = S_WAITING;
	json_t *rec = json_pack("{s:s, s:s, s:s}", "type", "gate_waiting", "step", st->id,
				"prompt", sr->prompt);
	ex_record_kind(rec, st);
	ex_journal(ex, rec);
	/* A run that asks on the terminal shows the prompt once: with its question. */
	ex_outcome(ex, json_pack("{s:s, s:s, s:s}", "event", "gate_waiting", "step", st->id,
				 "prompt", sr->prompt), "%s: waiting for approval%s%s", st->id,
		   ex->o->ask ? "" : ": ", ex->o->ask ? "" : sr->prompt);
	rb_grow(&ex->gates, &ex->gatecap, ex->ngates + 1, sizeof(*ex->gates));
	ex->gates[ex->ngates++] = i;
	return 0;
}

/*
 * Nothing else can run: ask about the waiting gates of this phase, first come first.
 * Returns 1 when an answer changed something (a step is ready, or failed).
 * The first gate without an answer ends the asking: the run pauses there.
 */
static int ask_gates(struct exec *ex)
{
	if (!ex->ngates || !ex->o->ask || ex->failed || ex->interrupted || ex->window_closed)
		return 0;
	/*
	 * Only a gate of this phase: the main steps' gate that waited when the run failed
	 * or was interrupted is not asked while its on_failure steps run (resume asks it).
	 */
	size_t k = 0;
	while (k < ex->ngates && ex->rb->steps[ex->gates[k]]->kind != ex->seeded)
		k++;
	if (k == ex->ngates)
		return 0;
	if (ex_journal_sync(ex) < 0)       /* "waiting" is durable before anyone is asked */
		return 0;
	size_t i = ex->gates[k];
	const struct rb_step *st = ex->rb->steps[i];
	struct srun *sr = &ex->s[i];
	if (ex->o->live) {        /* the prompt goes where the footer was */
		pthread_mutex_lock(&ex->out_mu);
		rb_live_suspend(ex->o->live);
		pthread_mutex_unlock(&ex->out_mu);
	}
	ex_flush(ex);
	/* No answer after the window closes: the step would start outside it. */
	int64_t timeout = st->approve_timeout_ms;
	if (ex->o->window_close_ms && ex->seeded == RB_MAIN) {
		int64_t left = ex->o->window_close_ms - rb_now_ms();
		if (left <= 0)
			return 0;
		if (timeout < 0 || left < timeout)
			timeout = left;
	}
	int answer = ex->o->ask(ex->o->ask_ud, st->id, sr->prompt, timeout);
	if (answer < 0)
		return 0;
	memmove(ex->gates + k, ex->gates + k + 1, (--ex->ngates - k) * sizeof(*ex->gates));
	free(sr->prompt);
	sr->prompt = NULL;
	if (answer > 0) {
		approve(ex, i, "terminal");
		sr->status = S_PENDING;
		rb_grow(&ex->ready, &ex->readycap, ex->nready + 1, sizeof(*ex->ready));
		ex->ready[ex->nready++] = i;
		return 1;
	}
	const char *by = ex->o->user ? ex->o->user : "unknown";
	ex_journal(ex, json_pack("{s:s, s:s, s:s}", "type", "gate_rejected", "step", st->id, "by",
			      by));
	finish(ex, i, S_FAILED, NULL, rb_xasprintf("not approved (rejected by %s)", by));
	return 1;
}

/* A call's arguments as its intent records them: a secret argument's value never. */
static json_t *intent_args(const struct rb_action *a, json_t *args)
{
	json_t *copy = NULL;
	for (const struct rb_arg *g = a->args; g->name; g++)
		if ((g->flags & RB_ARG_SECRET) && json_object_get(args, g->name)) {
			if (!copy)
				copy = json_copy(args);
			json_object_set_new(copy, g->name, json_string(RB_SECRET_MASK));
		}
	return copy ? copy : json_incref(args);
}

/*
 * A job's action is about to run: what it will do, made durable with the
 * step's start by schedule() before any of it starts.  Inline actions (lua,
 * assert) only compute: the step's records say all there is.
 */
static void intent(struct exec *ex, const struct job *jb)
{
	if (jb->action->flags & RB_ACT_INLINE)
		return;
	if (ex->o->simulated && jb->what->kind != RB_CHECK) {
		const char *id = ex->rb->steps[jb->step]->id;
		json_t *v = json_object_get(ex->o->simulated, id);
		if (!v)
			json_object_set_new(ex->o->simulated, id, v = json_pack("{s:[]}", "calls"));
		/* Redacted as the log's are, to compare with them. */
		json_array_append_new(json_object_get(v, "calls"), ex_redact_json(ex, jb->calls));
	}
	json_t *rec = json_pack("{s:s, s:s, s:i, s:s}", "type", "action_intent", "step",
				ex->rb->steps[jb->step]->id, "attempt", ex->s[jb->step].attempts,
				"action", jb->action->name);
	if (jb->what->kind == RB_CHECK)
		json_object_set_new(rec, "check", json_true());
	if (jb->items) {
		json_t *calls = json_array();
		size_t k;
		json_t *a;
		json_array_foreach(jb->calls, k, a)
			json_array_append_new(calls, intent_args(jb->action, a));
		json_object_set_new(rec, "calls", calls);
	} else {
		json_object_set_new(rec, "args", intent_args(jb->action, json_array_get(jb->calls, 0)));
	}
	ex_journal(ex, rec);
}

/* What a call of a job's action did; its output is recorded by its SHA-256 here. */
static void result(struct exec *ex, const struct unit *u)
{
	const struct job *jb = u->jb;
	if (jb->action->flags & RB_ACT_INLINE)
		return;
	const struct rb_step *st = ex->rb->steps[jb->step];
	json_t *rec = json_pack("{s:s, s:s, s:i, s:s, s:I}", "type", "action_result", "step", st->id,
				"attempt", ex->s[jb->step].attempts, "status",
				!u->failed ? "succeeded" : u->timed_out ? "timed_out"
				: rb_cancelled(&jb->cancel) ? "interrupted" : "failed", "duration_ms",
				(json_int_t)(ended_ms(ex) - u->started_ms));
	if (jb->what->kind == RB_CHECK)
		json_object_set_new(rec, "check", json_true());
	if (jb->items)
		json_object_set_new(rec, "index", json_integer((json_int_t)u->k));
	json_t *code = json_object_get(u->output, "exit_code");
	if (json_is_integer(code))
		json_object_set(rec, "exit_code", code);
	if (!u->failed || u->output) {
		char hex[65];
		ex_output_sha256(ex, st, u->output, hex);
		json_object_set_new(rec, "output_sha256", json_string(hex));
	}
	/* A failed call's output (its stderr, say): step_finished has only its last attempt's. */
	if (u->failed && u->output)
		json_object_set_new(rec, "output", st->sensitive ? json_string(RB_SECRET_MASK)
							     : json_incref(u->output));
	if (u->error)
		json_object_set_new(rec, "error", json_string(u->error));
	ex_journal(ex, rec);
}

/*
 * Step i is ready: decide whether it runs (its condition), ask its check
 * whether its effect is in place already, pass its gate, then start an
 * attempt.  Each of these happens once a run; a retry goes straight to the
 * attempt.  The jobs to start are added to batch.
 */
static void start(struct exec *ex, size_t i, struct job **batch, size_t *nbatch)
{
	struct srun *sr = &ex->s[i];
	const struct rb_step *st = ex->rb->steps[i];
	char *why = NULL;
	if (!sr->decided) {
		sr->decided = 1;
		sr->started_ms = rb_now_ms();
		/* What reads a step that a probe did not run cannot be decided either. */
		if (ex->o->probe && sr->dep_unprobed) {
			finish(ex, i, S_UNPROBED, NULL, rb_xstrdup("it needs a step that was not probed"));
			return;
		}
		/* A secret is read when a step needs it: for its if, then to run it. */
		int go = ex_read_secrets(ex, i, RB_READS_IN_IF, &why) < 0 ? -1
			 : should_run(ex, i, &why);
		if (go < 0 && ex->interrupted) {
			/* An interrupt stopped its condition (lua_poll): undecided, it is not run. */
			sr->decided = 0;
			free(why);
			return;
		}
		if (go <= 0) {
			finish(ex, i, go == 0 ? S_SKIPPED : S_FAILED, NULL, why);
			return;
		}
	}
	/*
	 * What reads a secret output from before a resume fails, rather than get "***":
	 * the log keeps secrets masked, so this session does not have it.
	 */
	for (size_t k = 0; k < st->nreads; k++)
		if (ex->s[st->reads[k]].secret_lost) {
			finish(ex, i, S_FAILED, NULL, rb_xasprintf(
				"%s:%d:%d: it reads the output of step '%s', a secret, which a resume "
				"does not have (the log keeps it masked): run it again, resume "
				"--from %s", ex->rb->file, st->node->line, st->node->col,
				ex->rb->steps[st->reads[k]]->id, ex->rb->steps[st->reads[k]]->id));
			return;
		}
	int check = st->check && !sr->checked;
	/* A probe runs only what changes nothing; a gate first says whether there is one. */
	if (!check && ex->o->probe && st->side_effects && !st->approve &&
	    !(st->action->flags & RB_ACT_EXPLAINS)) {
		finish(ex, i, S_UNPROBED, NULL, rb_xstrdup("it has side effects"));
		return;
	}
	if (ex_read_secrets(ex, i, RB_READS_IN_STEP, &why) < 0) {
		finish(ex, i, S_FAILED, NULL, why);
		return;
	}
	if (!check && st->approve && !sr->approved && !reach_gate(ex, i))
		return;
	/* ... or says what it would do, when its action can (pg.exec: EXPLAIN). */
	int explain = !check && ex->o->probe && st->side_effects;
	if (explain && !(st->action->flags & RB_ACT_EXPLAINS)) {
		finish(ex, i, S_UNPROBED, NULL, rb_xstrdup("it has side effects"));
		return;
	}
	struct job *jb = prepare(ex, i, check, &why);
	if (jb && ex->o->probe && !explain && writes_now(jb)) {
		free_job(jb);
		finish(ex, i, S_UNPROBED, NULL, rb_xstrdup("it has side effects (its arguments, "
							  "known now, say so)"));
		return;
	}
	if (jb)
		jb->explain = explain;
	if (!jb && ex->interrupted) {   /* as for its condition: it is not run */
		free(why);
		return;
	}
	if (!jb) {
		finish(ex, i, S_FAILED, NULL, check ? rb_xasprintf("check: %s", why) : why);
		if (check)
			free(why);
		return;
	}
	const struct rb_step *what = jb->what;
	if (what->timeout_ms >= 0)
		jb->deadline_ms = rb_now_ms() + what->timeout_ms;
	sr->status = S_RUNNING;
	sr->job = jb;
	if (!check) {
		sr->attempts++;
		json_t *rec = json_pack("{s:s, s:s, s:i}", "type", "step_started", "step", st->id,
					"attempt", sr->attempts);
		ex_record_kind(rec, st);
		ex_journal(ex, rec);
	}
	intent(ex, jb);
	batch[(*nbatch)++] = jb;
}

static int64_t retry_delay(const struct rb_retry *r, int attempt)
{
	int64_t d = r->delay_ms;
	if (r->exponential)
		for (int k = 1; k < attempt && d < INT64_MAX / 2; k++)
			d *= 2;
	if (r->max_delay_ms && d > r->max_delay_ms)
		d = r->max_delay_ms;
	return d;
}

/* A worker (or an inline action) is done with job. */
static void job_done(struct exec *ex, struct job *jb)
{
	size_t i = jb->step;
	struct srun *sr = &ex->s[i];
	const struct rb_step *st = ex->rb->steps[i];
	sr->job = NULL;
	if (jb->what->kind == RB_CHECK) {
		sr->checked = 1;
		if (!jb->failed) {
			finish(ex, i, S_SATISFIED, jb->output, NULL);
		} else if (ex->interrupted && rb_cancelled(&jb->cancel)) {
			finish(ex, i, S_INTERRUPTED, jb->output, rb_xasprintf("check: %s", jb->error));
			free(jb->error);
		} else if (jb->broken) {
			finish(ex, i, S_FAILED, jb->output, rb_xasprintf("check: %s", jb->error));
			free(jb->error);
		} else {
			ex_event(ex, json_pack("{s:s, s:s, s:s}", "event", "check", "step", st->id,
					       "error", jb->error ? jb->error : "failed"),
				 "%s: not in place yet (check: %s)", st->id,
				 jb->error ? jb->error : "failed");
			json_decref(jb->output);
			free(jb->error);
			sr->status = S_PENDING;
			rb_grow(&ex->ready, &ex->readycap, ex->nready + 1, sizeof(*ex->ready));
			ex->ready[ex->nready++] = i;
		}
	} else if (jb->failed && sr->attempts < st->retry.attempts && !ex->interrupted &&
		   !sr->capped) {
		int64_t delay = retry_delay(&st->retry, sr->attempts);
		char d[32];
		rb_duration_format(delay, d, sizeof(d));
		ex_journal(ex, json_pack("{s:s, s:s, s:i, s:s}", "type", "step_retry", "step", st->id,
				      "attempt", sr->attempts, "error",
				      jb->error ? jb->error : "failed"));
		ex_outcome(ex, json_pack("{s:s, s:s, s:i, s:I}", "event", "step_retry", "step",
					 st->id, "attempt", sr->attempts, "delay_ms",
					 (json_int_t)delay),
			   "%s: attempt %d of %ld failed: %s; retrying in %s", st->id, sr->attempts,
			   st->retry.attempts, jb->error ? jb->error : "failed", d);
		json_decref(jb->output);
		free(jb->error);
		sr->status = S_PENDING;
		sr->retry_at = rb_now_ms() + delay;
		rb_grow(&ex->retrying, &ex->retrycap, ex->nretrying + 1, sizeof(*ex->retrying));
		ex->retrying[ex->nretrying++] = i;
	} else {
		char *err = jb->error;
		/* The step's timeout says so; an action's own (its timeout argument) says its own. */
		if (jb->failed && jb->timed_out && st->timeout_ms >= 0 && jb->deadline_ms &&
		    rb_now_ms() >= jb->deadline_ms) {
			char d[32];
			rb_duration_format(st->timeout_ms, d, sizeof(d));
			free(err);
			err = rb_xasprintf("timed out after %s", d);
		} else if (jb->failed && !err) {
			err = rb_xstrdup("failed");
		}
		enum sstatus st2 = !jb->failed ? S_SUCCEEDED
				   : ex->interrupted && rb_cancelled(&jb->cancel) ? S_INTERRUPTED : S_FAILED;
		if (jb->explain && st2 == S_SUCCEEDED) {        /* explained, not run */
			st2 = S_UNPROBED;
			err = rb_xstrdup("it has side effects: explained, not run");
		}
		finish(ex, i, st2, jb->output, err);
	}
	free_job(jb);
}

static void job_done(struct exec *ex, struct job *jb);

/* An item of a for_each step is done: journalled, and kept for a retry or a resume. */
static void item_finished(struct exec *ex, struct job *jb, struct unit *u)
{
	const struct rb_step *st = ex->rb->steps[jb->step];
	struct srun *sr = &ex->s[jb->step];
	if (st->sensitive && u->output)
		ex_add_sensitive(ex, u->output);
	json_t *out = u->failed ? NULL : st->sensitive ? json_string(RB_SECRET_MASK)
				: json_incref(u->output ? u->output : json_null());
	json_t *rec = json_pack("{s:s, s:s, s:I, s:s, s:O}", "type", "item_finished", "step",
				st->id, "index", (json_int_t)u->k, "status",
				u->failed ? "failed" : "succeeded", "sha256",
				json_array_get(jb->item_sha, u->k));
	if (out) {
		char key[32];
		snprintf(key, sizeof(key), "%zu", u->k);
		if (!sr->items_done)
			sr->items_done = json_object();
		json_t *clean = ex_redact_json(ex, out);
		json_object_set_new(sr->items_done, key, json_pack("{s:O, s:O}", "sha256",
			json_array_get(jb->item_sha, u->k), "output", clean));
		json_object_set_new(rec, "output", clean);
		json_decref(out);
	}
	if (u->error)
		json_object_set_new(rec, "error", json_string(u->error));
	json_t *ev = json_pack("{s:s, s:s, s:I, s:s}", "event", "item_finished", "step", st->id,
			       "index", (json_int_t)u->k, "status", u->failed ? "failed" : "succeeded");
	ex_journal(ex, rec);
	if (u->failed)
		ex_outcome(ex, ev, "%s: item %zu of %zu failed: %s", st->id, u->k + 1, jb->n,
			   u->error ? u->error : "failed");
	else
		ex_outcome(ex, ev, "%s: item %zu of %zu succeeded", st->id, u->k + 1, jb->n);
}

/* Takes p out of the array of n pointers at v, keeping the order of the others. */
static void remove_ptr(void *v, size_t *n, const void *p)
{
	char *a = v;
	for (size_t k = 0; k < *n; k++) {
		const void *x;
		memcpy(&x, a + k * sizeof(x), sizeof(x));
		if (x == p) {
			memmove(a + k * sizeof(x), a + (k + 1) * sizeof(x), (*n - k - 1) * sizeof(x));
			(*n)--;
			return;
		}
	}
}

/* Every call of a job is done (or it stopped): its step's attempt is over. */
static void complete(struct exec *ex, struct job *jb)
{
	jb->output = jb->items ? json_incref(jb->outs) : json_incref(json_array_get(jb->outs, 0));
	remove_ptr(ex->active, &ex->nactive, jb);
	job_done(ex, jb);
}

/* A unit is done.  Returns 1 when that completed its job (which is then freed). */
static int unit_done(struct exec *ex, struct unit *u)
{
	struct job *jb = u->jb;
	jb->running--;
	/* What the action says is a secret is hidden from now on, as a sensitive output is. */
	if (u->secrets) {
		ex_add_sensitive(ex, u->secrets);
		ex->s[jb->step].secret_output = 1;
	}
	json_decref(u->secrets);
	result(ex, u);
	if (u->warning) {
		const char *id = ex->rb->steps[jb->step]->id;
		ex_event(ex, json_pack("{s:s, s:s, s:s}", "event", "warning", "step", id, "message",
				       u->warning), "%s: warning: %s", id, u->warning);
		free(u->warning);
	}
	if (jb->items && jb->what->kind != RB_CHECK)
		item_finished(ex, jb, u);
	/* A failed call's output is its step's output too (on_failure steps read it). */
	json_array_set_new(jb->outs, u->k, u->output ? u->output : json_null());
	if (!u->failed) {
		jb->ok[u->k] = 1;
		jb->ndone++;
	} else {
		if (!jb->failed) {
			jb->failed = 1;
			jb->timed_out = u->timed_out;
			jb->broken = u->broken;
			jb->error = !jb->items ? u->error
				    : rb_xasprintf("item %zu of %zu: %s", u->k + 1, jb->n,
						   u->error ? u->error : "failed");
			if (jb->items)
				free(u->error);
		} else {
			free(u->error);
		}
	}
	free(u);
	if (jb->running || (!jb->failed && jb->ndone < jb->n))
		return 0;
	complete(ex, jb);
	return 1;
}

/* Step a polled unit's call.  Returns 1 when it is over: out of the poll loop, its result in u. */
static int step_unit(struct exec *ex, struct unit *u)
{
	struct rb_result res = {0};
	long t = -1;
	if (!u->jb->action->step(u->state, u->fds, &u->nfds, &t, &res)) {
		u->wake_at = t < 0 ? -1 : rb_now_ms() + t;
		return 0;
	}
	remove_ptr(ex->polled, &ex->npolled, u);
	ex->running--;
	unit_result(u, &res);
	return 1;
}

/* Start a unit whose action is stepped in the poll loop.  Returns 1 when that completed its job. */
static int start_polled(struct exec *ex, struct unit *u)
{
	struct rb_result res = {0};
	char *err = NULL;
	unit_call(u, &err);             /* not inline: it sets no item */
	free(err);
	u->state = u->jb->action->start(&u->call, &res);
	if (!u->state) {
		ex->running--;
		unit_result(u, &res);
		return unit_done(ex, u);
	}
	rb_grow(&ex->polled, &ex->polledcap, ex->npolled + 1, sizeof(*ex->polled));
	ex->polled[ex->npolled++] = u;
	u->nfds = 0;
	return step_unit(ex, u) ? unit_done(ex, u) : 0;
}

/* The polled calls that ended while Lua ran (ex_lua_poll), finished now that it has returned. */
static void finish_ended(struct exec *ex)
{
	while (ex->nended) {
		struct unit *u = ex->ended[0];
		memmove(ex->ended, ex->ended + 1, --ex->nended * sizeof(*ex->ended));
		ex->ended_ms = u->ended_ms;     /* its durations end then, not now */
		unit_done(ex, u);
		ex->ended_ms = 0;
	}
}

/* Step every polled call: what its fds said, a cancel, its time. */
static void step_polled(struct exec *ex)
{
	finish_ended(ex);
	for (size_t k = 0; k < ex->npolled;) {
		struct unit *u = ex->polled[k];
		if (step_unit(ex, u))
			unit_done(ex, u);
		else
			k++;
	}
}

/*
 * Hand out a job's next calls, up to its concurrency and the run's --jobs;
 * inline ones run here and now.  A cancelled job hands out nothing more.
 * Returns 1 when the job completed (and is freed).
 */
static int dispatch(struct exec *ex, struct job *jb)
{
	for (;;) {
		while (jb->next < jb->n && jb->ok[jb->next])
			jb->next++;
		int stop = rb_cancelled(&jb->cancel) || ex->interrupted || ex->journal_failed;
		if (!jb->running && (jb->failed || stop || jb->next >= jb->n)) {
			if (!jb->failed && jb->next < jb->n) {
				jb->failed = 1;
				jb->error = rb_xasprintf("stopped after %zu of %zu items", jb->ndone,
							 jb->n);
			}
			complete(ex, jb);
			return 1;
		}
		if (stop || jb->failed || jb->next >= jb->n || jb->running >= jb->concurrency ||
		    ex->running >= (size_t)ex->o->jobs)
			return 0;
		struct unit *u = rb_xcalloc(1, sizeof(*u));
		u->jb = jb;
		u->k = jb->next++;
		u->started_ms = rb_now_ms();
		jb->running++;
		/* A simulation reads the recorded results on this thread too. */
		if ((jb->action->flags & RB_ACT_INLINE) || ex->o->recorded) {
			ex->lua_job = jb;       /* ex_lua_poll stops it when it is cancelled */
			run_unit(u);
			ex->lua_job = NULL;
			if (unit_done(ex, u))
				return 1;
			continue;
		}
		ex->running++;
		if (jb->action->start) {
			if (start_polled(ex, u))
				return 1;
			continue;
		}
		pthread_mutex_lock(&ex->mu);
		struct unit **tail = &ex->queue;
		while (*tail)
			tail = &(*tail)->next;
		u->next = NULL;
		*tail = u;
		pthread_cond_signal(&ex->cv);
		pthread_mutex_unlock(&ex->mu);
	}
}

/*
 * Whether the batch of job alone can leave the sync of its records to the supervisor
 * of its command (proc.h): the request then travels to it while the disk syncs, instead
 * of after.  One command and one supervisor syncing at a time: a write-back error is
 * reported once per open file, and all supervisors share the journal's descriptor.
 */
static int can_gate(const struct exec *ex, const struct job *jb)
{
	return ex->journal && !ex->shared && !ex->gated && !ex->journal_failed &&
	       !ex->o->recorded && (jb->action->flags & RB_ACT_SYNC_FIRST) && jb->n == 1;
}

/*
 * Whether the batch may start with the records before it unsynced: steps
 * without side effects (lua, assert), and a group of records not yet due.
 */
static int may_group(const struct exec *ex, struct job **batch, size_t n)
{
	if (!ex->journal || ex->journal_failed)
		return 0;
	for (size_t k = 0; k < n; k++)
		if (!ex_groupable_step(batch[k]->what))
			return 0;
	return !ex_group_due(ex);
}

/* Start what can start: group the journal records, sync once, dispatch. */
static void schedule(struct exec *ex)
{
	/* The jobs under way first: their start is durable already. */
	for (size_t k = 0; k < ex->nactive;)
		if (!dispatch(ex, ex->active[k]))
			k++;
	size_t cap = (size_t)ex->o->jobs;
	struct job **batch = rb_xcalloc(cap, sizeof(*batch));
	size_t nbatch = 0;
	while (ex->rhead < ex->nready && !ex->failed && !ex->interrupted && !ex->window_closed &&
	       ex->running + nbatch < cap)
		start(ex, ex->ready[ex->rhead++], batch, &nbatch);
	if (ex->rhead == ex->nready)
		ex->rhead = ex->nready = 0;
	if (nbatch == 0) {              /* what was journalled is synced before the next wait */
		free(batch);
		return;
	}
	int r, gate = nbatch == 1 && can_gate(ex, batch[0]);
	if (may_group(ex, batch, nbatch))
		r = 0;
	else if (!gate)
		r = ex_journal_sync(ex);
	else if ((r = ex_journal_write(ex)) == 0 &&
		 (ex->gate_fd = rb_journal_gate_fd(ex->journal)) < 0)
		r = ex_journal_sync(ex);
	if (r < 0) {
		for (size_t k = 0; k < nbatch; k++) {
			struct job *jb = batch[k];
			ex->s[jb->step].job = NULL;
			finish(ex, jb->step, S_FAILED, NULL,
			       rb_xstrdup("not started: the audit log cannot be written"));
			free_job(jb);
		}
		free(batch);
		return;
	}
	for (size_t k = 0; k < nbatch; k++) {
		struct job *jb = batch[k];
		const struct rb_step *st = ex->rb->steps[jb->step];
		if (jb->what->kind == RB_CHECK)
			ex_event(ex, json_pack("{s:s, s:s}", "event", "check_started", "step", st->id),
				 "%s: checking whether it is needed", st->id);
		else
			ex_event(ex, !ex_events_read(ex) ? NULL
				 : json_pack("{s:s, s:s, s:i}", "event", "step_started", "step",
					     st->id, "attempt", ex->s[jb->step].attempts),
				 "%s: started", st->id);
		rb_grow(&ex->active, &ex->activecap, ex->nactive + 1, sizeof(*ex->active));
		ex->active[ex->nactive++] = jb;
		dispatch(ex, jb);
	}
	free(batch);
	/* The command did not start (cancelled, say): nobody synced for it. */
	if (ex->gate_fd >= 0) {
		ex->gate_fd = -1;
		ex_journal_sync(ex);
	}
}

/* Ask every running step to stop: 1 politely, 2 at once. */
static void cancel_running(struct exec *ex, enum rb_cancel_level how)
{
	for (size_t i = 0; i < ex->rb->nsteps; i++)
		if (ex->s[i].job)
			rb_cancel_set(&ex->s[i].job->cancel, how);
}

static void check_signals(struct exec *ex, int *seen)
{
	if (!ex->o->signals || *ex->o->signals == *seen)
		return;
	*seen = *ex->o->signals;
	if (!ex->interrupted)
		ex_event(ex, json_pack("{s:s, s:i}", "event", "interrupt", "signal",
				       (int)*ex->o->signo),
			 ex->after_interrupt
			 ? "interrupted again: killing the on_failure steps, skipping the rest"
			 : ex->rb->non_failure && ex->stop_on_failure
			 ? "interrupted: stopping the running steps, then the on_failure steps run "
			   "(again to kill them at once and skip the on_failure steps)"
			 : "interrupted: stopping the running steps (again to kill them at once)");
	ex->interrupted = *seen;
	cancel_running(ex, *seen > 1 ? RB_CANCEL_KILL : RB_CANCEL_STOP);
}

/* The run's timeout: the run fails, and what runs is stopped. */
static void check_deadline(struct exec *ex)
{
	if (!ex->deadline_ms || ex->timed_out || rb_now_ms() < ex->deadline_ms)
		return;
	char d[32];
	rb_duration_format(ex->deadline_len_ms, d, sizeof(d));
	ex->timed_out = 1;
	ex->failed = 1;
	if (ex->after_interrupt)
		ex_event(ex, json_pack("{s:s, s:I}", "event", "on_failure_timeout", "timeout_ms",
				       (json_int_t)ex->deadline_len_ms),
			 "the on_failure steps of the interrupted run did not end within %s: "
			 "stopping them", d);
	else
		ex_event(ex, json_pack("{s:s, s:I}", "event", "run_timeout", "timeout_ms",
				       (json_int_t)ex->deadline_len_ms),
			 "the run's timeout of %s has passed: stopping the running steps", d);
	cancel_running(ex, RB_CANCEL_STOP);
}

/*
 * The maintenance window closed (docs/schedule.md): the main steps that have
 * not started do not start, those running go on to their end or their
 * timeout, and the run stops, resumable.  Only the main phase keeps it: the
 * rollback and on_failure steps of a run that failed run whatever the time.
 */
static void check_window(struct exec *ex)
{
	if (!ex->o->window_close_ms || ex->window_closed || ex->seeded != RB_MAIN ||
	    ex->failed || ex->interrupted || rb_now_ms() < ex->o->window_close_ms)
		return;
	ex->window_closed = 1;
	char at[32] = "";
	struct tm tm;
	gmtime_r(&ex->o->window_close, &tm);
	strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_t *running = json_array();
	for (size_t i = 0; i < ex->rb->nmain; i++)
		if (ex->s[i].job)
			json_array_append_new(running, json_string(ex->rb->steps[i]->id));
	size_t n = json_array_size(running);
	ex_journal(ex, json_pack("{s:s, s:s, s:O}", "type", "window_closed", "closed_at", at,
				 "running", running));
	ex_event(ex, json_pack("{s:s, s:s, s:o}", "event", "window_closed", "closed_at", at,
			       "running", running),
		 "the maintenance window closed at %s: no more steps start%s", at,
		 n == 0 ? "" : n == 1 ? "; the running step goes on to its end"
		 : "; the running steps go on to their end");
	/* A step waiting to be tried again is not: resume runs it (docs/schedule.md). */
	for (size_t k = 0; k < ex->nretrying; k++)
		ex->s[ex->retrying[k]].retry_at = 0;
	ex->nretrying = 0;
}

/* The live view redraws elapsed times, and follows the terminal's width. */
static void live_tick(struct exec *ex)
{
	if (!ex->o->live)
		return;
	struct winsize ws;
	pthread_mutex_lock(&ex->out_mu);
	if (ioctl(fileno(ex->o->out), TIOCGWINSZ, &ws) == 0 && ws.ws_col)
		rb_live_resize(ex->o->live, ws.ws_col);
	rb_live_tick(ex->o->live, rb_now_ms());
	pthread_mutex_unlock(&ex->out_mu);
}

/*
 * Wait, at most timeout ms, for a worker's wake-up (with wake) or the fds of the polled
 * calls; their revents go back to the calls, for their next step.
 */
static void poll_all(struct exec *ex, int timeout, int wake)
{
	size_t n = 1;
	for (size_t k = 0; k < ex->npolled; k++)
		n += (size_t)ex->polled[k]->nfds;
	rb_grow(&ex->pfds, &ex->pfdcap, n, sizeof(*ex->pfds));
	ex->pfds[0] = (struct pollfd){wake ? ex->wake[0] : -1, POLLIN, 0};
	n = 1;
	for (size_t k = 0; k < ex->npolled; k++) {
		const struct unit *u = ex->polled[k];
		memcpy(ex->pfds + n, u->fds, (size_t)u->nfds * sizeof(*u->fds));
		n += (size_t)u->nfds;
	}
	poll(ex->pfds, n, timeout);
	n = 1;
	for (size_t k = 0; k < ex->npolled; k++) {
		struct unit *u = ex->polled[k];
		memcpy(u->fds, ex->pfds + n, (size_t)u->nfds * sizeof(*u->fds));
		n += (size_t)u->nfds;
	}
	if (ex->pfds[0].revents) {
		char buf[256];
		while (read(ex->wake[0], buf, sizeof(buf)) > 0)
			;
	}
}

/*
 * What was journalled is durable before a wait, but for the records of a batch whose
 * command's supervisor syncs them (schedule()): syncing them here too would only
 * double the disk's work.  While a command is gated, every other write is a sync.
 */
static void sync_before_wait(struct exec *ex, int *timeout)
{
	struct rb_journal_stats st;
	if (ex->gated && ex->journal) {
		rb_journal_stats(ex->journal, &st);
		if (st.pending == 0)
			return;
	}
	/*
	 * A group of records that may wait (steps without side effects: a query
	 * waits on its server) waits through the wait, until it is due.
	 */
	if (ex->journal && ex->group_ms && !ex_group_due(ex)) {
		int64_t left = ex->group_ms + RB_GROUP_MS - rb_now_ms();
		if (left < *timeout)
			*timeout = left < 0 ? 0 : (int)left;
		return;
	}
	ex_journal_sync(ex);
}

/*
 * Lua runs on this thread, the engine's, which owns the run's Lua state: a lua:
 * step or check, and every expression.  While it runs, the count hook calls this
 * every RB_LUABOX_POLL_MS (rb_luabox_set_poll), so that what the poll loop does
 * goes on: signals and the run's timeout are acted on, and the polled calls are
 * stepped (their output streams, their timeouts and cancels act).  Nothing here
 * touches Lua or the steps' state: a call that ends waits in ex->ended until Lua
 * has returned, and the loop finishes it (finish_ended).  That keeps the Lua state
 * on one thread and every step's end in one place, where running Lua on a worker
 * would have the engine wait for the state before each expression, each end of a
 * step and each for_each item.  Returns why the Lua code must stop (its job was
 * cancelled; an expression, by an interrupt), or NULL.
 */
static const char *lua_poll(void *ud)
{
	struct exec *ex = ud;
	if (!ex->in_phase)              /* setup: vars; no signal is acted on yet */
		return NULL;
	if (!ex->serving) {
		ex->serving = 1;
		check_signals(ex, &ex->seen);
		check_deadline(ex);
		poll_all(ex, 0, 0);
		for (size_t k = 0; k < ex->npolled;) {
			struct unit *u = ex->polled[k];
			if (!step_unit(ex, u)) {
				k++;
				continue;
			}
			u->ended_ms = rb_now_ms();
			rb_grow(&ex->ended, &ex->endedcap, ex->nended + 1, sizeof(*ex->ended));
			ex->ended[ex->nended++] = u;
		}
		/* Outcomes wait for their records to be durable, and every event after them
		   (ex_outcome): sync them now rather than hold the other steps' lines. */
		pthread_mutex_lock(&ex->out_mu);
		size_t held = ex->nheld;
		pthread_mutex_unlock(&ex->out_mu);
		if (held && ex_group_due(ex))
			ex_journal_sync(ex);
		live_tick(ex);
		ex_flush(ex);
		ex->serving = 0;
	}
	if (ex->lua_job)
		return !rb_cancelled(&ex->lua_job->cancel) ? NULL : ex->interrupted ? "interrupted" : "cancelled";
	return ex->interrupted ? "interrupted" : NULL;
}

void ex_lua_serve(struct exec *ex)
{
	rb_luabox_set_poll(ex->box, lua_poll, ex);
}

/* Run the ready steps and everything they unlock, until nothing can run. */
void ex_run_phase(struct exec *ex)
{
	ex->seen = ex->o->signals ? *ex->o->signals : 0;
	ex->in_phase = 1;
	for (;;) {
		check_signals(ex, &ex->seen);
		check_deadline(ex);
		check_window(ex);
		step_polled(ex);
		/*
		 * schedule() makes what was journalled durable before it starts
		 * anything, so the finish of one step and the start of the next
		 * share one fdatasync; what is left is synced before waiting.
		 */
		schedule(ex);
		ex_compact(ex);
		int64_t now = rb_now_ms(), next = -1;
		for (size_t k = 0; k < ex->nretrying;) {
			size_t i = ex->retrying[k];
			if (ex->interrupted || ex->failed) {
				ex->s[i].retry_at = 0;
				finish(ex, i, S_FAILED, NULL,
				       rb_xstrdup(ex->interrupted ? "interrupted before its retry"
								  : "not retried: the run has failed"));
			} else if (ex->s[i].retry_at <= now) {
				ex->s[i].retry_at = 0;
				rb_grow(&ex->ready, &ex->readycap, ex->nready + 1, sizeof(*ex->ready));
				ex->ready[ex->nready++] = i;
			} else {
				if (next < 0 || ex->s[i].retry_at < next)
					next = ex->s[i].retry_at;
				k++;
				continue;
			}
			ex->retrying[k] = ex->retrying[--ex->nretrying];
		}
		if (ex->nended)         /* calls that ended while Lua ran: finish them first */
			continue;
		int can_start = ex->rhead < ex->nready && !ex->failed && !ex->interrupted &&
				!ex->window_closed;
		if (!ex->running && !ex->nretrying && !can_start) {
			if (ask_gates(ex))
				continue;
			check_signals(ex, &ex->seen);
			ex_journal_sync(ex);
			ex_flush(ex);
			break;
		}
		if (can_start && ex->running < (size_t)ex->o->jobs)
			continue;
		if (ex->deadline_ms && !ex->timed_out && (next < 0 || ex->deadline_ms < next))
			next = ex->deadline_ms;
		int64_t wc = ex->o->window_close_ms;
		if (wc && !ex->window_closed && ex->seeded == RB_MAIN && (next < 0 || wc < next))
			next = wc;
		for (size_t k = 0; k < ex->npolled; k++) {
			int64_t at = ex->polled[k]->wake_at;
			if (at >= 0 && (next < 0 || at < next))
				next = at;
		}
		int64_t most = ex->o->live ? RB_LIVE_INTERVAL_MS : 1000;
		int timeout = next < 0 ? (int)most : (int)(next - now < most ? next - now : most);
		sync_before_wait(ex, &timeout);
		ex_flush(ex);
		poll_all(ex, timeout < 0 ? 0 : timeout, 1);
		live_tick(ex);
		pthread_mutex_lock(&ex->mu);
		struct unit *done = ex->done;
		ex->done = NULL;
		pthread_mutex_unlock(&ex->mu);
		while (done) {
			struct unit *nx = done->next;
			ex->running--;
			unit_done(ex, done);
			done = nx;
		}
	}
	ex->in_phase = 0;
}

/* Queue the steps of a kind that need nothing. */
void ex_seed(struct exec *ex, enum rb_step_kind kind)
{
	ex->seeded = kind;
	for (size_t i = 0; i < ex->rb->nsteps; i++) {
		const struct rb_step *st = ex->rb->steps[i];
		if (st->kind != kind || ex->s[i].waiting || ex->s[i].status != S_PENDING)
			continue;
		rb_grow(&ex->ready, &ex->readycap, ex->nready + 1, sizeof(*ex->ready));
		ex->ready[ex->nready++] = i;
	}
}
