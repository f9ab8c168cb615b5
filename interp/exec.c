/*
 * The engine.  One thread schedules: it owns the Lua state, renders each
 * step's arguments, journals transitions (durable before anything depends on
 * them), and prints events.  Worker threads run the actions that may block
 * (shell, wait); inline actions (lua, assert) run on the scheduling thread.
 * Secret values are replaced by *** in everything it writes or prints.
 */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../stdlib/action.h"
#include "expr.h"
#include "graph.h"
#include "journal.h"
#include "luabox.h"
#include "plan.h"
#include "render.h"
#include "util.h"

enum sstatus {
	S_PENDING, S_RUNNING, S_SUCCEEDED, S_FAILED, S_SKIPPED, S_INTERRUPTED, S_WAITING,
	S_SATISFIED, S_COUNT
};

static const char *const status_names[S_COUNT] = {
	"pending", "running", "succeeded", "failed", "skipped", "interrupted",
	"awaiting_approval", "satisfied",
};


struct exec;

/*
 * An attempt of a step (or its check): its rendered calls, one per for_each
 * item (one without for_each), run as units on the workers, up to the step's
 * concurrency at once.  Only the scheduling thread touches a job, except
 * cancel; workers see their unit and what the job holds read-only.
 */
struct job {
	struct exec *ex;
	size_t step;                    /* index in rb->steps */
	const struct rb_step *what;     /* the step, or its check */
	const struct rb_action *action;
	json_t *calls;                  /* array of rendered arguments */
	json_t *items;                  /* for_each: the items, or NULL */
	json_t *item_sha;               /* for_each: each item's SHA-256, to keep them apart */
	struct rb_strv env;             /* secrets for child processes, NULL-terminated */
	int64_t deadline_ms;
	size_t n, next, running, ndone, concurrency;
	json_t *outs;                   /* each call's output (null until it succeeded) */
	unsigned char *ok;              /* each call: it succeeded (in this or an earlier attempt) */
	json_t *output;                 /* the result: one output, or the list */
	int failed, timed_out;
	char *error;
	volatile sig_atomic_t cancel;
};

/* One call of a job, run by a worker (or inline). */
struct unit {
	struct job *jb;
	size_t k;                       /* which call */
	json_t *output;
	int failed, timed_out;
	char *error;
	struct unit *next;
};

struct srun {
	enum sstatus status;
	int attempts;
	json_t *output, *outputs;
	char *error;
	int64_t started_ms;
	int64_t retry_at;               /* waiting to be retried at this time, or 0 */
	size_t waiting;                 /* dependencies not finished yet */
	int dep_skipped;
	size_t *succ, nsucc;            /* the steps that depend on this one */
	size_t completed;               /* completion order, for rollback */
	int decided;                    /* its condition said it runs */
	int checked;                    /* its check said the effect is not in place */
	int approved;                   /* its gate is passed */
	char *prompt;                   /* its gate's rendered prompt, while it waits */
	/* for_each: {"K": {"sha256", "output"}} for the items done, kept across attempts */
	json_t *items_done;
	struct job *job;
};

struct exec {
	struct rb_runbook *rb;
	const struct rb_exec_opts *o;
	struct rb_diags *d;
	struct rb_luabox *box;
	int scope;
	int steps_ref;                  /* the table behind the scope's read-only steps */
	struct srun *s;
	struct rb_journal *journal;
	char run_id[RB_RUN_ID_MAX];
	char *run_dir;
	struct rb_strv secrets;         /* values to redact */
	size_t *ready, rhead, nready, readycap;   /* FIFO: ready[rhead..nready) */
	size_t *retrying, nretrying, retrycap;
	size_t *gates, ngates, gatecap; /* steps waiting at their gate, in arrival order */
	size_t running, completed;
	int failed, interrupted, stop_on_failure;
	int64_t deadline_ms;            /* the run's timeout, while it applies; 0: none */
	int timed_out;
	int lock_fd;                    /* the runbook's lock, held for the run, or -1 */
	size_t counts[S_COUNT];
	pthread_t *threads;
	int nthreads;
	pthread_mutex_t mu;             /* guards queue, done and quit */
	pthread_cond_t cv;
	struct unit *queue, *done;
	struct job **active;            /* jobs with calls still to hand out or running */
	size_t nactive, activecap;
	int quit;
	int wake[2];                    /* a worker writes a byte when a job is done */
	pthread_mutex_t out_mu;         /* one event line at a time */
	int64_t t0;
	int journal_failed;
	char sha[65];                   /* of the runbook's bytes */
	size_t compact_at;              /* compact when the journal holds this many records */
};

/* --- redaction and events ----------------------------------------------------- */

/* s with every secret value replaced by ***; malloc'd. */
static char *redact(const struct exec *ex, const char *s, size_t len, size_t *outlen)
{
	struct rb_buf b;
	rb_buf_init(&b);
	size_t i = 0;
	while (i < len) {
		size_t best = 0;
		for (size_t k = 0; k < ex->secrets.n; k++) {
			size_t sl = strlen(ex->secrets.v[k]);
			if (sl && sl <= len - i && sl > best && !memcmp(s + i, ex->secrets.v[k], sl))
				best = sl;
		}
		if (best) {
			rb_buf_puts(&b, RB_SECRET_MASK);
			i += best;
		} else {
			rb_buf_add(&b, s + i, 1);
			i++;
		}
	}
	if (outlen)
		*outlen = b.len;
	return rb_buf_detach(&b);
}

/* A copy of v with secrets redacted in every string. */
static json_t *redact_json(const struct exec *ex, json_t *v)
{
	if (!v)
		return json_null();
	if (!ex->secrets.n)
		return json_deep_copy(v);
	switch (json_typeof(v)) {
	case JSON_STRING: {
		size_t len;
		char *s = redact(ex, json_string_value(v), json_string_length(v), &len);
		json_t *j = json_stringn(s, len);
		free(s);
		return j ? j : json_string(RB_SECRET_MASK);
	}
	case JSON_ARRAY: {
		json_t *a = json_array();
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x)
			json_array_append_new(a, redact_json(ex, x));
		return a;
	}
	case JSON_OBJECT: {
		json_t *o = json_object();
		const char *k;
		json_t *x;
		json_object_foreach(v, k, x) {
			char *rk = redact(ex, k, strlen(k), NULL);
			json_object_set_new(o, rk, redact_json(ex, x));
			free(rk);
		}
		return o;
	}
	default:
		return json_deep_copy(v);
	}
}

static void clock_text(char *buf, size_t size)
{
	time_t t = time(NULL);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, size, "%H:%M:%S", &tm);
}

/* One event: a line of text, or a JSON object with "event" set. */
static void event(struct exec *ex, json_t *ev, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void event(struct exec *ex, json_t *ev, const char *fmt, ...)
{
	FILE *f = ex->o->out;
	pthread_mutex_lock(&ex->out_mu);
	if (ex->o->json_events) {
		char ts[32];
		time_t t = time(NULL);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		json_object_set_new(ev, "time", json_string(ts));
		json_object_set_new(ev, "run", json_string(ex->run_id));
		json_t *clean = ex->secrets.n ? redact_json(ex, ev) : json_incref(ev);
		json_dumpf(clean, f, JSON_COMPACT | JSON_PRESERVE_ORDER);
		fputc('\n', f);
		json_decref(clean);
	} else {
		char ts[16];
		va_list ap;
		va_start(ap, fmt);
		char *msg = rb_xvasprintf(fmt, ap);
		va_end(ap);
		char *clean = redact(ex, msg, strlen(msg), NULL);
		if (ex->o->live) {
			json_t *cev = ex->secrets.n ? redact_json(ex, ev) : json_incref(ev);
			rb_live_event(ex->o->live, cev, clean, rb_now_ms());
			json_decref(cev);
		} else {
			clock_text(ts, sizeof(ts));
			fprintf(f, "%s %s\n", ts, clean);
		}
		free(clean);
		free(msg);
	}
	fflush(f);
	pthread_mutex_unlock(&ex->out_mu);
	json_decref(ev);
}

/* Output lines of a step, from a worker thread. */
static void on_line(void *ud, int stream, const char *line, size_t len)
{
	struct unit *u = ud;
	struct exec *ex = u->jb->ex;
	const char *id = ex->rb->steps[u->jb->step]->id;
	size_t n;
	char *clean = rb_utf8_lossy(line, len, &n);
	json_t *ev = json_pack("{s:s, s:s, s:s, s:s%}", "event", "output", "step", id, "stream",
			       stream == 2 ? "stderr" : "stdout", "line", clean, n);
	char at[32] = "";
	if (u->jb->items) {
		json_object_set_new(ev, "index", json_integer((json_int_t)u->k));
		snprintf(at, sizeof(at), "[%zu]", u->k + 1);
	}
	event(ex, ev, "%s%s%s %.*s", id, at, stream == 2 ? "!" : "|", (int)n, clean);
	free(clean);
}

/* --- journal ---------------------------------------------------------------------- */

static void journal(struct exec *ex, json_t *rec)
{
	json_t *clean = ex->secrets.n ? redact_json(ex, rec) : json_incref(rec);
	json_decref(rec);
	if (!ex->journal_failed && rb_journal_append(ex->journal, clean) < 0)
		ex->journal_failed = 1;
	json_decref(clean);
}

/*
 * The state a resume needs, for compaction: every step's status, attempts
 * and outputs (redacted, as in the journal).
 */
static json_t *snapshot(struct exec *ex)
{
	json_t *steps = json_object();
	for (size_t i = 0; i < ex->rb->nsteps; i++) {
		const struct srun *sr = &ex->s[i];
		const struct rb_step *st = ex->rb->steps[i];
		json_t *v = json_pack("{s:s, s:i}", "status", status_names[sr->status], "attempts",
				      sr->attempts);
		if (sr->output)
			json_object_set_new(v, "output", st->sensitive ? json_string(RB_SECRET_MASK)
								     : redact_json(ex, sr->output));
		if (sr->outputs)
			json_object_set_new(v, "outputs", st->sensitive ? json_string(RB_SECRET_MASK)
								      : redact_json(ex, sr->outputs));
		if (sr->items_done)     /* journalled redacted already */
			json_object_set(v, "items", sr->items_done);
		json_object_set_new(steps, st->id, v);
	}
	/* What run_started said, which the journal no longer holds after this. */
	return json_pack("{s:s, s:s, s:s, s:s, s:O, s:o}", "run", ex->run_id, "runbook",
			 ex->rb->name, "file", ex->rb->file, "sha256", ex->sha, "params",
			 ex->o->params, "steps", steps);
}

/*
 * Compact when the journal holds as many records as the run has steps (and
 * at least 1,000): the snapshot costs O(steps), so each record pays O(1).
 * RUNBOOK_TEST_COMPACT_RECORDS lowers the bar so that crash tests reach
 * compaction in small runs.
 */
static void set_compact_at(struct exec *ex)
{
	const char *t = getenv("RUNBOOK_TEST_COMPACT_RECORDS");
	if (t && atol(t) > 0)
		ex->compact_at = (size_t)atol(t);
	else
		ex->compact_at = ex->rb->nsteps > 1000 ? ex->rb->nsteps : 1000;
}

static void maybe_compact(struct exec *ex)
{
	struct rb_journal_stats st;
	rb_journal_stats(ex->journal, &st);
	if (st.journal_records < ex->compact_at)
		return;
	json_t *snap = snapshot(ex);
	if (rb_journal_compact(ex->journal, snap) < 0 && rb_journal_sync(ex->journal) < 0)
		ex->journal_failed = 1;
	json_decref(snap);
}

/* Make what was journalled durable; a failure stops the run. */
static int journal_sync(struct exec *ex)
{
	if (!ex->journal_failed && rb_journal_sync(ex->journal) == 0) {
		maybe_compact(ex);
		return 0;
	}
	if (!ex->journal_failed || !ex->failed) {
		ex->journal_failed = 1;
		ex->failed = 1;
		event(ex, json_pack("{s:s, s:s}", "event", "error", "message",
				    rb_journal_error(ex->journal)),
		      "error: cannot write the journal: %s; stopping the run",
		      rb_journal_error(ex->journal));
	}
	return -1;
}

/* --- Lua state of the run ------------------------------------------------------------ */

static int step_known(void *ud, size_t index)
{
	(void)ud;
	(void)index;
	return 1;       /* during a run, steps.X is always there: pending or done */
}

static struct rb_render renderer(struct exec *ex, struct rb_diags *d)
{
	struct rb_render r = {
		.rb = ex->rb, .box = ex->box, .scope = ex->scope, .secrets_known = 1,
		.item_known = 1, .output_known = 1, .step_known = step_known,
		.ms = RB_EXPR_MS_DEFAULT, .d = d,
	};
	return r;
}

/* steps[id] = {status, attempts, output, outputs} in the engine's table. */
static void publish(struct exec *ex, size_t i)
{
	struct srun *sr = &ex->s[i];
	lua_State *L = rb_luabox_state(ex->box);
	json_t *v = json_pack("{s:s, s:i}", "status", status_names[sr->status], "attempts",
			      sr->attempts);
	if (sr->output)
		json_object_set(v, "output", sr->output);
	if (sr->outputs)
		json_object_set(v, "outputs", sr->outputs);
	lua_rawgeti(L, LUA_REGISTRYINDEX, ex->steps_ref);
	if (rb_lua_push_json(L, v) == 0)
		lua_setfield(L, -2, ex->rb->steps[i]->id);
	lua_pop(L, 1);
	json_decref(v);
}

/*
 * Secrets are redacted by value wherever they appear; a value this short
 * would be found inside ordinary words, and hiding those would garble what
 * the run writes.  So it is refused.
 */
enum { SECRET_MIN_LEN = 4 };

static int check_secret(struct exec *ex, const struct rb_secret *s, char **value)
{
	if (strlen(*value) >= SECRET_MIN_LEN)
		return 0;
	free(*value);
	*value = NULL;
	return rb_error_at(ex->d, s->key, "secret '%s' is shorter than %d characters: too short "
			   "to be kept out of the output", s->name, SECRET_MIN_LEN);
}

static int read_secret(struct exec *ex, const struct rb_secret *s, char **out)
{
	if (s->env) {
		const char *v = getenv(s->env);
		if (!v)
			return rb_error_at(ex->d, s->key, "secret '%s': environment variable %s "
					   "is not set", s->name, s->env);
		*out = rb_xstrdup(v);
		return check_secret(ex, s, out);
	}
	char *buf = NULL, *err = NULL;
	size_t len;
	if (rb_read_file(s->file, 1 << 20, &buf, &len, &err) < 0) {
		rb_error_at(ex->d, s->key, "secret '%s': %s", s->name, err);
		free(err);
		return -1;
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	*out = buf;
	return check_secret(ex, s, out);
}

/* The run's scope: params, secrets, vars, run, steps. */
static int build_scope(struct exec *ex)
{
	struct rb_runbook *rb = ex->rb;
	lua_State *L = rb_luabox_state(ex->box);
	json_t *secrets = json_object();
	int rc = 0;
	for (size_t i = 0; i < rb->nsecrets; i++) {
		char *v = NULL;
		if (read_secret(ex, &rb->secrets[i], &v) < 0) {
			rc = -1;
			continue;
		}
		json_object_set_new(secrets, rb->secrets[i].name, json_string(v));
		rb_strv_push(&ex->secrets, v);
	}
	if (rc < 0) {
		json_decref(secrets);
		return -1;
	}
	rb_luabox_push_scope(ex->box);
	ex->scope = lua_gettop(L);
	rb_lua_push_json(L, ex->o->params);
	rb_luabox_readonly(L);
	rb_luabox_set(L, ex->scope, "params");
	rb_lua_push_json(L, secrets);
	rb_luabox_readonly(L);
	rb_luabox_set(L, ex->scope, "secrets");
	json_decref(secrets);
	json_t *run = json_pack("{s:s, s:b, s:I}", "id", ex->run_id, "dry_run", 0, "started_at",
				(json_int_t)ex->o->now);
	rb_lua_push_json(L, run);
	json_decref(run);
	rb_luabox_readonly(L);
	rb_luabox_set(L, ex->scope, "run");

	lua_newtable(L);
	lua_pushvalue(L, -1);
	ex->steps_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	rb_luabox_readonly(L);
	rb_luabox_set(L, ex->scope, "steps");
	for (size_t i = 0; i < rb->nsteps; i++)
		publish(ex, i);

	lua_newtable(L);
	int vars = lua_gettop(L);
	lua_pushvalue(L, vars);
	rb_luabox_readonly(L);
	rb_luabox_set(L, ex->scope, "vars");
	struct rb_render r = renderer(ex, ex->d);
	for (size_t i = 0; i < rb->nvars; i++) {
		json_t *x = rb_render_node(&r, rb->vars[i].value);
		if (!x) {
			lua_settop(L, ex->scope);
			return -1;
		}
		/* A var made from a secret is as secret as it is. */
		if (rb->vars[i].secret && json_is_string(x))
			rb_strv_push(&ex->secrets, rb_xstrdup(json_string_value(x)));
		rb_lua_push_json(L, x);
		lua_setfield(L, vars, rb->vars[i].name);
		json_decref(x);
	}
	lua_settop(L, ex->scope);
	return 0;
}

/* --- workers --------------------------------------------------------------------------- */

static void run_unit(struct unit *u)
{
	struct job *jb = u->jb;
	struct exec *ex = jb->ex;
	const char *id = ex->rb->steps[jb->step]->id;
	int check = jb->what->kind == RB_CHECK;
	char spill[4096];
	if (jb->items)
		snprintf(spill, sizeof(spill), "%s/%s/%s%s.%zu", ex->run_dir, RB_RUN_OUTPUT, id,
			 check ? ".check" : "", u->k + 1);
	else
		snprintf(spill, sizeof(spill), "%s/%s/%s%s", ex->run_dir, RB_RUN_OUTPUT, id,
			 check ? ".check" : "");
	/* An inline action reads item at run time (it is its Lua), on this thread. */
	int inline_item = jb->items && (jb->action->flags & RB_ACT_INLINE);
	lua_State *L = rb_luabox_state(ex->box);
	if (inline_item && rb_lua_push_json(L, json_array_get(jb->items, u->k)) == 0)
		rb_luabox_set(L, ex->scope, "item");
	struct rb_call call = {
		.step = id,
		.args = json_array_get(jb->calls, u->k),
		.env = (const char *const *)jb->env.v,
		.deadline_ms = jb->deadline_ms,
		.cancel = &jb->cancel,
		.spill_path = spill,
		.on_line = on_line,
		.ud = u,
		.box = ex->box,
		.scope = ex->scope,
	};
	struct rb_result res = {0};
	if (!jb->action->run) {
		res.failed = 1;
		res.error = rb_xasprintf("action '%s' cannot run in this version", jb->action->name);
	} else {
		jb->action->run(&call, &res);
	}
	/* A check says "in place" by succeeding with a result that is not nil or false. */
	if (check && !res.failed && (!res.output || json_is_null(res.output) ||
				     json_is_false(res.output))) {
		res.failed = 1;
		res.error = rb_xasprintf("it returned %s",
					 res.output && json_is_false(res.output) ? "false" : "nil");
	}
	if (inline_item) {
		lua_pushnil(L);
		rb_luabox_set(L, ex->scope, "item");
	}
	u->failed = res.failed;
	u->timed_out = res.timed_out;
	u->error = res.error;
	u->output = res.output;
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

static int start_workers(struct exec *ex)
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

static void stop_workers(struct exec *ex)
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
	free(jb);
}

/* --- steps ------------------------------------------------------------------------------ */

static double secs_since(int64_t t)
{
	return (double)(rb_now_ms() - t) / 1000.0;
}

/* Named outputs, computed with `output` in scope. */
static json_t *compute_outputs(struct exec *ex, const struct rb_step *st, json_t *output,
			       char **err)
{
	lua_State *L = rb_luabox_state(ex->box);
	if (rb_lua_push_json(L, output ? output : json_null()) < 0) {
		*err = rb_xstrdup("the output does not fit in the Lua memory limit");
		return NULL;
	}
	rb_luabox_set(L, ex->scope, "output");
	struct rb_diags d;
	rb_diags_init(&d, ex->rb->file, NULL, 0);
	struct rb_render r = renderer(ex, &d);
	json_t *v = rb_render_node(&r, st->outputs);
	lua_pushnil(L);
	rb_luabox_set(L, ex->scope, "output");
	if (!v)
		*err = rb_xstrdup(d.n ? d.v[0].msg : "outputs failed");
	rb_diags_release(&d);
	return v;
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
	ex->counts[status]++;
	if (status == S_SUCCEEDED && st->outputs) {
		char *err = NULL;
		sr->outputs = compute_outputs(ex, st, output, &err);
		if (!sr->outputs) {
			sr->status = status = S_FAILED;
			ex->counts[S_SUCCEEDED]--;
			ex->counts[S_FAILED]++;
			sr->error = rb_xasprintf("outputs: %s", err);
			free(err);
			free(error);
		}
	}
	publish(ex, i);

	json_t *rec = json_pack("{s:s, s:s, s:s, s:i}", "event", "step_finished", "step", st->id,
				"status", status_names[status], "attempt", sr->attempts);
	if (sr->output)
		json_object_set(rec, "output", st->sensitive ? json_string(RB_SECRET_MASK)
							     : sr->output);
	if (sr->outputs)
		json_object_set(rec, "outputs", st->sensitive ? json_string(RB_SECRET_MASK)
							      : sr->outputs);
	if (sr->error)
		json_object_set_new(rec, "error", json_string(sr->error));
	if (status != S_SKIPPED)
		json_object_set_new(rec, "duration_ms",
				    json_integer(rb_now_ms() - sr->started_ms));
	json_t *ev = json_deep_copy(rec);
	json_object_del(ev, "output");
	json_object_del(ev, "outputs");
	journal(ex, rec);

	if (status == S_SUCCEEDED)
		event(ex, ev, "%s: succeeded in %.1fs", st->id, secs_since(sr->started_ms));
	else if (status == S_INTERRUPTED)
		event(ex, ev, "%s: interrupted after %.1fs", st->id, secs_since(sr->started_ms));
	else if (status == S_SKIPPED)
		event(ex, ev, "%s: skipped (%s)", st->id, sr->error);
	else if (status == S_SATISFIED)
		event(ex, ev, "%s: satisfied: its check says it is in place, not running it", st->id);
	else
		event(ex, ev, "%s: failed%s in %.1fs: %s", st->id,
		      st->continue_on_error ? " (continuing)" : "", secs_since(sr->started_ms),
		      sr->error ? sr->error : "failed");

	if (status == S_FAILED && !st->continue_on_error && ex->stop_on_failure)
		ex->failed = 1;
	for (size_t k = 0; k < sr->nsucc; k++) {
		struct srun *t = &ex->s[sr->succ[k]];
		t->dep_skipped |= status == S_SKIPPED;
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
 * Render what the action of step i, or of its check, needs; NULL with *err
 * when an expression fails.
 */
static struct job *prepare(struct exec *ex, size_t i, int check, char **err)
{
	const struct rb_step *st = ex->rb->steps[i], *what = check ? st->check : st;
	struct rb_diags d;
	rb_diags_init(&d, ex->rb->file, NULL, 0);
	struct rb_render r = renderer(ex, &d);
	struct job *jb = rb_xcalloc(1, sizeof(*jb));
	jb->ex = ex;
	jb->step = i;
	jb->what = what;
	jb->action = what->action;
	jb->calls = json_array();
	lua_State *L = rb_luabox_state(ex->box);

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
		if (items) {
			rb_lua_push_json(L, json_array_get(items, k));
			rb_luabox_set(L, ex->scope, "item");
		}
		json_t *args;
		if (what->run) {
			r.secret_env = &jb->env;
			json_t *cmd = rb_render_node(&r, what->run);
			r.secret_env = NULL;
			args = cmd ? json_pack("{s:o}", "command", cmd) : NULL;
		} else if (what->lua) {
			args = json_pack("{s:s%}", "code", what->lua->str, what->lua->len);
		} else {
			args = what->with ? rb_render_node(&r, what->with) : json_object();
		}
		if (!args)
			goto fail;
		json_array_append_new(jb->calls, args);
	}
	if (items) {
		lua_pushnil(L);
		rb_luabox_set(L, ex->scope, "item");
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
	if (items) {
		lua_pushnil(L);
		rb_luabox_set(L, ex->scope, "item");
	}
	json_decref(items);
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
	struct rb_diags d;
	rb_diags_init(&d, ex->rb->file, NULL, 0);
	struct rb_render r = renderer(ex, &d);
	json_t *v = rb_render_node(&r, st->cond);
	if (!v) {
		*why = rb_xasprintf("if: %s", d.n ? d.v[0].msg : "failed");
		rb_diags_release(&d);
		return -1;
	}
	rb_diags_release(&d);
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
	journal(ex, json_pack("{s:s, s:s, s:s, s:s}", "event", "gate_approved", "step", id, "by",
			      by, "via", via));
	event(ex, json_pack("{s:s, s:s, s:s, s:s}", "event", "gate_approved", "step", id, "by", by,
			    "via", via),
	      "%s: approved by %s (%s)", id, by, via);
}

/*
 * Step i has reached its gate.  Returns 1 when it may run now (approved in
 * advance); 0 when it waits (or failed: its prompt did not render).
 */
static int reach_gate(struct exec *ex, size_t i)
{
	const struct rb_step *st = ex->rb->steps[i];
	struct srun *sr = &ex->s[i];
	if (approved_in_advance(ex, st->id)) {
		approve(ex, i, "--approve");
		return 1;
	}
	struct rb_diags d;
	rb_diags_init(&d, ex->rb->file, NULL, 0);
	struct rb_render r = renderer(ex, &d);
	json_t *p = rb_render_node(&r, st->approve);
	if (!p) {
		finish(ex, i, S_FAILED, NULL,
		       rb_xasprintf("approve: %s", d.n ? d.v[0].msg : "failed"));
		rb_diags_release(&d);
		return 0;
	}
	rb_diags_release(&d);
	char *text = json_is_string(p) ? rb_xstrdup(json_string_value(p))
				       : json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(p);
	sr->prompt = redact(ex, text, strlen(text), NULL);
	free(text);
	sr->status = S_WAITING;
	journal(ex, json_pack("{s:s, s:s, s:s}", "event", "gate_waiting", "step", st->id,
			      "prompt", sr->prompt));
	event(ex, json_pack("{s:s, s:s, s:s}", "event", "gate_waiting", "step", st->id, "prompt",
			    sr->prompt),
	      "%s: waiting for approval: %s", st->id, sr->prompt);
	rb_grow(&ex->gates, &ex->gatecap, ex->ngates + 1, sizeof(*ex->gates));
	ex->gates[ex->ngates++] = i;
	return 0;
}

/*
 * Nothing else can run: ask about the waiting gates, first come first.
 * Returns 1 when an answer changed something (a step is ready, or failed).
 * The first gate without an answer ends the asking: the run pauses there.
 */
static int ask_gates(struct exec *ex)
{
	if (!ex->ngates || !ex->o->ask || ex->failed || ex->interrupted)
		return 0;
	if (journal_sync(ex) < 0)       /* "waiting" is durable before anyone is asked */
		return 0;
	size_t i = ex->gates[0];
	const struct rb_step *st = ex->rb->steps[i];
	struct srun *sr = &ex->s[i];
	if (ex->o->live) {        /* the prompt goes where the footer was */
		pthread_mutex_lock(&ex->out_mu);
		rb_live_suspend(ex->o->live);
		pthread_mutex_unlock(&ex->out_mu);
	}
	int answer = ex->o->ask(ex->o->ask_ud, st->id, sr->prompt, st->approve_timeout_ms);
	if (answer < 0)
		return 0;
	memmove(ex->gates, ex->gates + 1, --ex->ngates * sizeof(*ex->gates));
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
	journal(ex, json_pack("{s:s, s:s, s:s}", "event", "gate_rejected", "step", st->id, "by",
			      by));
	finish(ex, i, S_FAILED, NULL, rb_xasprintf("not approved (rejected by %s)", by));
	return 1;
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
		int go = should_run(ex, i, &why);
		if (go <= 0) {
			finish(ex, i, go == 0 ? S_SKIPPED : S_FAILED, NULL, why);
			return;
		}
	}
	int check = st->check && !sr->checked;
	if (!check && st->approve && !sr->approved && !reach_gate(ex, i))
		return;
	struct job *jb = prepare(ex, i, check, &why);
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
		journal(ex, json_pack("{s:s, s:s, s:i}", "event", "step_started", "step", st->id,
				      "attempt", sr->attempts));
	}
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
		} else if (ex->interrupted && jb->cancel) {
			finish(ex, i, S_INTERRUPTED, jb->output, rb_xasprintf("check: %s", jb->error));
			free(jb->error);
		} else {
			event(ex, json_pack("{s:s, s:s, s:s}", "event", "check", "step", st->id,
					    "error", jb->error ? jb->error : "failed"),
			      "%s: not in place yet (check: %s)", st->id,
			      jb->error ? jb->error : "failed");
			json_decref(jb->output);
			free(jb->error);
			sr->status = S_PENDING;
			rb_grow(&ex->ready, &ex->readycap, ex->nready + 1, sizeof(*ex->ready));
			ex->ready[ex->nready++] = i;
		}
	} else if (jb->failed && sr->attempts < st->retry.attempts && !ex->interrupted) {
		int64_t delay = retry_delay(&st->retry, sr->attempts);
		char d[32];
		rb_duration_format(delay, d, sizeof(d));
		journal(ex, json_pack("{s:s, s:s, s:i, s:s}", "event", "step_retry", "step", st->id,
				      "attempt", sr->attempts, "error",
				      jb->error ? jb->error : "failed"));
		event(ex, json_pack("{s:s, s:s, s:i, s:I}", "event", "step_retry", "step", st->id,
				    "attempt", sr->attempts, "delay_ms", (json_int_t)delay),
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
		if (jb->failed && jb->timed_out && st->timeout_ms >= 0) {
			char d[32];
			rb_duration_format(st->timeout_ms, d, sizeof(d));
			free(err);
			err = rb_xasprintf("timed out after %s", d);
		} else if (jb->failed && !err) {
			err = rb_xstrdup("failed");
		}
		enum sstatus st2 = !jb->failed ? S_SUCCEEDED
				   : ex->interrupted && jb->cancel ? S_INTERRUPTED : S_FAILED;
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
	json_t *out = u->failed ? NULL : st->sensitive ? json_string(RB_SECRET_MASK)
				: json_incref(u->output ? u->output : json_null());
	json_t *rec = json_pack("{s:s, s:s, s:I, s:s, s:O}", "event", "item_finished", "step",
				st->id, "index", (json_int_t)u->k, "status",
				u->failed ? "failed" : "succeeded", "sha256",
				json_array_get(jb->item_sha, u->k));
	if (out) {
		char key[32];
		snprintf(key, sizeof(key), "%zu", u->k);
		if (!sr->items_done)
			sr->items_done = json_object();
		json_t *clean = redact_json(ex, out);
		json_object_set_new(sr->items_done, key, json_pack("{s:O, s:O}", "sha256",
			json_array_get(jb->item_sha, u->k), "output", clean));
		json_object_set_new(rec, "output", clean);
		json_decref(out);
	}
	if (u->error)
		json_object_set_new(rec, "error", json_string(u->error));
	json_t *ev = json_pack("{s:s, s:s, s:I, s:s}", "event", "item_finished", "step", st->id,
			       "index", (json_int_t)u->k, "status", u->failed ? "failed" : "succeeded");
	journal(ex, rec);
	if (u->failed)
		event(ex, ev, "%s: item %zu of %zu failed: %s", st->id, u->k + 1, jb->n,
		      u->error ? u->error : "failed");
	else
		event(ex, ev, "%s: item %zu of %zu succeeded", st->id, u->k + 1, jb->n);
}

/* Every call of a job is done (or it stopped): its step's attempt is over. */
static void complete(struct exec *ex, struct job *jb)
{
	jb->output = jb->items ? json_incref(jb->outs) : json_incref(json_array_get(jb->outs, 0));
	for (size_t k = 0; k < ex->nactive; k++)
		if (ex->active[k] == jb) {
			memmove(ex->active + k, ex->active + k + 1,
				(ex->nactive - k - 1) * sizeof(*ex->active));
			ex->nactive--;
			break;
		}
	job_done(ex, jb);
}

/* A unit is done.  Returns 1 when that completed its job (which is then freed). */
static int unit_done(struct exec *ex, struct unit *u)
{
	struct job *jb = u->jb;
	jb->running--;
	if (jb->items && jb->what->kind != RB_CHECK)
		item_finished(ex, jb, u);
	if (!u->failed) {
		jb->ok[u->k] = 1;
		jb->ndone++;
		json_array_set_new(jb->outs, u->k, u->output ? u->output : json_null());
	} else {
		if (!jb->failed) {
			jb->failed = 1;
			jb->timed_out = u->timed_out;
			jb->error = !jb->items ? u->error
				    : rb_xasprintf("item %zu of %zu: %s", u->k + 1, jb->n,
						   u->error ? u->error : "failed");
			if (jb->items)
				free(u->error);
		} else {
			free(u->error);
		}
		json_decref(u->output);
	}
	free(u);
	if (jb->running || (!jb->failed && jb->ndone < jb->n))
		return 0;
	complete(ex, jb);
	return 1;
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
		int stop = jb->cancel || ex->interrupted || ex->journal_failed;
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
		jb->running++;
		if (jb->action->flags & RB_ACT_INLINE) {
			run_unit(u);
			if (unit_done(ex, u))
				return 1;
			continue;
		}
		ex->running++;
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
	while (ex->rhead < ex->nready && !ex->failed && !ex->interrupted &&
	       ex->running + nbatch < cap)
		start(ex, ex->ready[ex->rhead++], batch, &nbatch);
	if (ex->rhead == ex->nready)
		ex->rhead = ex->nready = 0;
	if (journal_sync(ex) < 0) {
		for (size_t k = 0; k < nbatch; k++) {
			struct job *jb = batch[k];
			ex->s[jb->step].job = NULL;
			finish(ex, jb->step, S_FAILED, NULL,
			       rb_xstrdup("not started: the journal cannot be written"));
			free_job(jb);
		}
		free(batch);
		return;
	}
	for (size_t k = 0; k < nbatch; k++) {
		struct job *jb = batch[k];
		const struct rb_step *st = ex->rb->steps[jb->step];
		if (jb->what->kind == RB_CHECK)
			event(ex, json_pack("{s:s, s:s}", "event", "check_started", "step", st->id),
			      "%s: checking whether it is needed", st->id);
		else
			event(ex, json_pack("{s:s, s:s, s:i}", "event", "step_started", "step",
					    st->id, "attempt", ex->s[jb->step].attempts),
			      "%s: started", st->id);
		rb_grow(&ex->active, &ex->activecap, ex->nactive + 1, sizeof(*ex->active));
		ex->active[ex->nactive++] = jb;
		dispatch(ex, jb);
	}
	free(batch);
}

/* Ask every running step to stop: 1 politely, 2 at once. */
static void cancel_running(struct exec *ex, int how)
{
	pthread_mutex_lock(&ex->mu);
	for (size_t i = 0; i < ex->rb->nsteps; i++)
		if (ex->s[i].job)
			ex->s[i].job->cancel = (sig_atomic_t)how;
	pthread_mutex_unlock(&ex->mu);
}

static void check_signals(struct exec *ex, int *seen)
{
	if (!ex->o->signals || *ex->o->signals == *seen)
		return;
	*seen = *ex->o->signals;
	if (!ex->interrupted)
		event(ex, json_pack("{s:s, s:i}", "event", "interrupt", "signal",
				    (int)*ex->o->signo),
		      "interrupted: stopping the running steps (again to kill them at once)");
	ex->interrupted = *seen;
	cancel_running(ex, *seen > 1 ? 2 : 1);
}

/* The run's timeout: the run fails, and what runs is stopped. */
static void check_deadline(struct exec *ex)
{
	if (!ex->deadline_ms || ex->timed_out || rb_now_ms() < ex->deadline_ms)
		return;
	char d[32];
	rb_duration_format(ex->rb->timeout_ms, d, sizeof(d));
	ex->timed_out = 1;
	ex->failed = 1;
	event(ex, json_pack("{s:s, s:I}", "event", "run_timeout", "timeout_ms",
			    (json_int_t)ex->rb->timeout_ms),
	      "the run's timeout of %s has passed: stopping the running steps", d);
	cancel_running(ex, 1);
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

/* Run the ready steps and everything they unlock, until nothing can run. */
static void run_phase(struct exec *ex)
{
	int seen = ex->o->signals ? *ex->o->signals : 0;
	for (;;) {
		check_signals(ex, &seen);
		check_deadline(ex);
		schedule(ex);
		journal_sync(ex);
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
		int can_start = ex->rhead < ex->nready && !ex->failed && !ex->interrupted;
		if (!ex->running && !ex->nretrying && !can_start) {
			if (ask_gates(ex))
				continue;
			check_signals(ex, &seen);
			break;
		}
		if (can_start && ex->running < (size_t)ex->o->jobs)
			continue;
		if (ex->deadline_ms && !ex->timed_out && (next < 0 || ex->deadline_ms < next))
			next = ex->deadline_ms;
		int64_t most = ex->o->live ? RB_LIVE_INTERVAL_MS : 1000;
		int timeout = next < 0 ? (int)most : (int)(next - now < most ? next - now : most);
		struct pollfd pfd = {ex->wake[0], POLLIN, 0};
		poll(&pfd, 1, timeout < 0 ? 0 : timeout);
		live_tick(ex);
		char buf[256];
		while (read(ex->wake[0], buf, sizeof(buf)) > 0)
			;
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
}

/* Queue the steps of a kind that need nothing. */
static void seed(struct exec *ex, enum rb_step_kind kind)
{
	for (size_t i = 0; i < ex->rb->nsteps; i++) {
		const struct rb_step *st = ex->rb->steps[i];
		if (st->kind != kind || ex->s[i].waiting || ex->s[i].status != S_PENDING)
			continue;
		rb_grow(&ex->ready, &ex->readycap, ex->nready + 1, sizeof(*ex->ready));
		ex->ready[ex->nready++] = i;
	}
}

static int by_completion_desc(const void *a, const void *b, void *arg)
{
	const struct exec *ex = arg;
	size_t x = ex->s[*(const size_t *)a].completed, y = ex->s[*(const size_t *)b].completed;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* Undo the finished steps that have an undo, last finished first, one at a time. */
static void rollback(struct exec *ex)
{
	size_t *v = rb_xmalloc((ex->rb->nmain + 1) * sizeof(*v)), n = 0;
	for (size_t i = 0; i < ex->rb->nmain; i++)
		if (ex->rb->steps[i]->undo && ex->s[i].status == S_SUCCEEDED)
			v[n++] = i;
	qsort_r(v, n, sizeof(*v), by_completion_desc, ex);
	if (n)
		event(ex, json_pack("{s:s, s:i}", "event", "rollback", "steps", (int)n),
		      "rolling back %zu step%s", n, n == 1 ? "" : "s");
	for (size_t k = 0; k < n && !ex->interrupted; k++) {
		size_t u = ex->rb->steps[v[k]]->undo->index;
		rb_grow(&ex->ready, &ex->readycap, ex->nready + 1, sizeof(*ex->ready));
		ex->ready[ex->nready++] = u;
		run_phase(ex);
	}
	free(v);
}

/*
 * lock: NAME: an flock on STATE_DIR/locks/NAME.lock, held until the run
 * ends (the kernel drops it however the process dies).  Waits up to the
 * lock timeout, then gives up with the holder's path.
 */
static int take_lock(struct exec *ex, const char *state)
{
	char *dir = rb_xasprintf("%s/locks", state);
	char *path = rb_xasprintf("%s/%s.lock", dir, ex->rb->lock);
	int rc = -1;
	if ((mkdir(state, 0700) < 0 && errno != EEXIST) || (mkdir(dir, 0700) < 0 && errno != EEXIST)) {
		rb_error_pos(ex->d, 0, 0, "cannot create %s: %s", dir, strerror(errno));
		goto out;
	}
	ex->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (ex->lock_fd < 0) {
		rb_error_pos(ex->d, 0, 0, "cannot open the lock %s: %s", path, strerror(errno));
		goto out;
	}
	int64_t give_up = rb_now_ms() + ex->o->lock_timeout_ms;
	int said = 0;
	while (flock(ex->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			rb_error_pos(ex->d, 0, 0, "cannot lock %s: %s", path, strerror(errno));
			goto out;
		}
		if (rb_now_ms() >= give_up || (ex->o->signals && *ex->o->signals)) {
			char d[32];
			rb_duration_format(ex->o->lock_timeout_ms, d, sizeof(d));
			rb_error_pos(ex->d, 0, 0, "lock '%s' is held by another run (%s); gave up "
				     "after %s (--lock-timeout)", ex->rb->lock, path, d);
			goto out;
		}
		if (!said++)
			fprintf(stderr, "runbook: waiting for lock '%s' (%s)\n", ex->rb->lock, path);
		struct timespec ts = {0, 100 * 1000000L};
		nanosleep(&ts, NULL);
	}
	rc = 0;
out:
	if (rc < 0 && ex->lock_fd >= 0) {
		close(ex->lock_fd);
		ex->lock_fd = -1;
	}
	free(dir);
	free(path);
	return rc;
}

/*
 * Resume: the kept steps take their state from before, without running,
 * and what depends on them becomes ready as if they had just finished.
 */
static void restore(struct exec *ex)
{
	for (size_t i = 0; i < ex->rb->nsteps; i++) {
		const struct rb_step *st = ex->rb->steps[i];
		json_t *items = json_object_get(ex->o->items, st->id);
		if (items)
			ex->s[i].items_done = json_deep_copy(items);
		json_t *k = json_object_get(ex->o->kept, st->id);
		if (!k || st->kind != RB_MAIN)
			continue;
		struct srun *sr = &ex->s[i];
		const char *status = json_string_value(json_object_get(k, "status"));
		sr->status = !status ? S_SUCCEEDED : !strcmp(status, "skipped") ? S_SKIPPED
			     : !strcmp(status, "satisfied") ? S_SATISFIED : S_SUCCEEDED;
		sr->attempts = (int)json_integer_value(json_object_get(k, "attempts"));
		sr->output = json_incref(json_object_get(k, "output"));
		sr->outputs = json_incref(json_object_get(k, "outputs"));
		sr->completed = ++ex->completed;
		publish(ex, i);
		for (size_t j = 0; j < sr->nsucc; j++) {
			struct srun *t = &ex->s[sr->succ[j]];
			t->dep_skipped |= sr->status == S_SKIPPED;
			t->waiting--;
		}
	}
}

static int setup(struct exec *ex)
{
	struct rb_runbook *rb = ex->rb;
	set_compact_at(ex);
	ex->s = rb_xcalloc(rb->nsteps ? rb->nsteps : 1, sizeof(*ex->s));
	for (size_t i = 0; i < rb->nsteps; i++) {
		const struct rb_step *st = rb->steps[i];
		ex->s[i].waiting = st->ndeps;
		for (size_t k = 0; k < st->ndeps; k++) {
			struct srun *d = &ex->s[st->deps[k]];
			d->succ = rb_xrealloc(d->succ, (d->nsucc + 1) * sizeof(*d->succ));
			d->succ[d->nsucc++] = i;
		}
	}
	/* Everything that can refuse the run comes before its directory exists. */
	if (ex->o->resume_id)
		snprintf(ex->run_id, sizeof(ex->run_id), "%s", ex->o->resume_id);
	else
		rb_run_id(ex->run_id, sizeof(ex->run_id), ex->o->now, ex->o->rand);
	ex->box = rb_luabox_new(0);
	if (!ex->box)
		return rb_error_pos(ex->d, 0, 0, "cannot create a Lua state");
	if (build_scope(ex) < 0)
		return -1;
	char *err = NULL;
	const char *state = rb_state_dir(ex->o->state_dir);
	/* From here on a failure is not the input's fault: -2. */
	if (rb->lock && take_lock(ex, state) < 0)
		return -2;
	ex->run_dir = rb_run_dir(state, ex->run_id);
	if (ex->o->resume_id) {
		if (rb_journal_open(ex->run_dir, &ex->journal, &err) < 0) {
			rb_error_pos(ex->d, 0, 0, "cannot open the run: %s", err);
			free(err);
			return -2;
		}
		restore(ex);
	} else if (rb_journal_create(state, ex->run_id, &ex->journal, &err) < 0) {
		rb_error_pos(ex->d, 0, 0, "cannot create the run: %s", err);
		free(err);
		return -2;
	} else if (rb_run_save_runbook(ex->run_dir, rb->src, rb->srclen, &err) < 0) {
		rb_error_pos(ex->d, 0, 0, "cannot save the runbook in the run: %s", err);
		free(err);
		return -2;
	}
	const char *sha = ex->sha;
	rb_sha256_hex(rb->src, rb->srclen, ex->sha);
	if (ex->o->resume_id) {
		json_t *rec = json_pack("{s:s, s:s}", "event", "run_resumed", "sha256", sha);
		if (ex->o->resume_note)
			json_object_update(rec, ex->o->resume_note);
		journal(ex, rec);
	} else {
		journal(ex, json_pack("{s:s, s:s, s:s, s:s, s:s, s:O}", "event", "run_started",
				      "run", ex->run_id, "runbook", rb->name, "file", rb->file,
				      "sha256", sha, "params", ex->o->params));
	}
	if (journal_sync(ex) < 0 || start_workers(ex) < 0)
		return -2;
	return 0;
}

static void teardown(struct exec *ex)
{
	if (ex->threads)
		stop_workers(ex);
	if (ex->s) {
		for (size_t i = 0; i < ex->rb->nsteps; i++) {
			json_decref(ex->s[i].output);
			json_decref(ex->s[i].outputs);
			free(ex->s[i].error);
			free(ex->s[i].prompt);
			json_decref(ex->s[i].items_done);
			free(ex->s[i].succ);
		}
		free(ex->s);
	}
	free(ex->ready);
	free(ex->retrying);
	free(ex->gates);
	free(ex->active);
	if (ex->journal)
		rb_journal_close(ex->journal);
	if (ex->lock_fd >= 0)
		close(ex->lock_fd);
	free(ex->run_dir);
	rb_luabox_free(ex->box);
	rb_strv_release(&ex->secrets);
	pthread_mutex_destroy(&ex->mu);
	pthread_cond_destroy(&ex->cv);
	pthread_mutex_destroy(&ex->out_mu);
}

/* The command that continues this run, with the gates it waits at. */
static char *resume_hint(const struct exec *ex)
{
	struct rb_buf b;
	rb_buf_init(&b);
	rb_buf_printf(&b, "runbook resume %s", ex->run_id);
	if (ex->o->state_dir)
		rb_buf_printf(&b, " --state-dir %s", ex->o->state_dir);
	for (size_t k = 0; k < ex->ngates; k++)
		rb_buf_printf(&b, " --approve %s", ex->rb->steps[ex->gates[k]]->id);
	return rb_buf_detach(&b);
}

int rb_exec_run(struct rb_runbook *rb, const struct rb_exec_opts *o, struct rb_diags *d,
		enum rb_run_status *status, char *run_id)
{
	struct exec ex = {.rb = rb, .o = o, .d = d, .wake = {-1, -1}, .stop_on_failure = 1,
			  .lock_fd = -1};
	pthread_mutex_init(&ex.mu, NULL);
	pthread_cond_init(&ex.cv, NULL);
	pthread_mutex_init(&ex.out_mu, NULL);
	ex.t0 = rb_now_ms();
	int rc = setup(&ex);
	if (rc < 0) {
		teardown(&ex);
		return rc;
	}
	memcpy(run_id, ex.run_id, RB_RUN_ID_MAX);
	event(&ex, json_pack("{s:s, s:s, s:i, s:s}", "event", "run_started", "runbook", rb->name,
			     "steps", (int)rb->nmain, "dir", ex.run_dir),
	      "run %s: %s, %zu step%s (state in %s)", ex.run_id, rb->name, rb->nmain,
	      rb->nmain == 1 ? "" : "s", ex.run_dir);

	if (rb->timeout_ms >= 0)        /* counted from the first step, not from setup */
		ex.deadline_ms = rb_now_ms() + rb->timeout_ms;
	seed(&ex, RB_MAIN);
	run_phase(&ex);
	ex.deadline_ms = 0;             /* rollback and on_failure get their own time */
	int failed = ex.failed || ex.journal_failed;
	size_t not_run = 0;
	for (size_t i = 0; i < rb->nmain; i++)
		not_run += ex.s[i].status == S_PENDING || ex.s[i].status == S_WAITING;
	size_t ok = ex.counts[S_SUCCEEDED] + ex.counts[S_SATISFIED], skip = ex.counts[S_SKIPPED];
	size_t bad = ex.counts[S_FAILED] + ex.counts[S_INTERRUPTED];

	/* A failed run undoes what it did (rollback: true), then runs on_failure. */
	ex.rhead = ex.nready = 0;       /* what became ready after the failure never runs */
	if (failed && !ex.interrupted && !ex.journal_failed) {
		ex.failed = 0;
		if (rb->rollback)
			rollback(&ex);
		ex.stop_on_failure = 0;
		ex.rhead = ex.nready = 0;
		seed(&ex, RB_ON_FAILURE);
		run_phase(&ex);
	}

	*status = ex.interrupted ? RB_RUN_INTERRUPTED : failed ? RB_RUN_FAILED
		  : ex.ngates ? RB_RUN_PAUSED : RB_RUN_SUCCEEDED;
	static const char *const outcome[] = {"succeeded", "failed", "interrupted", "paused"};
	journal(&ex, json_pack("{s:s, s:s}", "event", "run_finished", "status", outcome[*status]));
	journal_sync(&ex);
	json_t *ev = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:I}", "event", "run_finished",
			       "status", outcome[*status], "succeeded", (int)ok, "failed", (int)bad,
			       "skipped", (int)skip, "not_run", (int)not_run, "duration_ms",
			       (json_int_t)(rb_now_ms() - ex.t0));
	char *hint = *status == RB_RUN_SUCCEEDED ? NULL : resume_hint(&ex);
	if (hint)
		json_object_set_new(ev, "resume", json_string(hint));
	event(&ex, ev, "run %s %s in %.1fs: %zu succeeded, %zu failed, %zu skipped, %zu not run",
	      ex.run_id, outcome[*status], secs_since(ex.t0), ok, bad, skip, not_run);
	if (hint && !o->json_events)    /* JSON has it in run_finished */
		event(&ex, json_pack("{s:s}", "event", "hint"), "to continue: %s", hint);
	free(hint);
	teardown(&ex);
	return 0;
}
