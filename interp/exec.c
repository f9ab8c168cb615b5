/*
 * The engine, the run's side: rb_exec_run, from its set-up (lock, key,
 * journal opened or created, vars and the secrets read at the start, resume's
 * restore) through its phases (sched.c), rollback and its end, to teardown.
 * It calls down into sched.c and exec_svc.c (events, journal, Lua state),
 * never the other way.  Secret values are replaced by *** in everything it
 * writes or prints.
 */
#include "exec_int.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "audit.h"
#include "expr.h"
#include "lock.h"
#include "redact.h"
#include "runstate.h"

#ifndef RB_VERSION              /* the Makefile sets it */
#define RB_VERSION "unknown"
#endif

/* The run's main steps as the snapshot has them, counted: the run's last line. */
static void count_steps(const struct exec *ex, struct rb_run_counts *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < ex->rb->nmain; i++) {
		if (ex->s[i].unrecorded)
			continue;
		json_t *was = ex_kept_state(ex, i);
		rb_run_count(c, was ? json_string_value(json_object_get(was, "status"))
				    : ex_status_names[ex->s[i].status]);
	}
}

/*
 * Compact when the journal holds four records for each of the run's steps, and
 * a few more (and at least 1,000): the snapshot costs O(steps), so each record
 * pays O(1).  A step writes up to four (its start, its call's intent and
 * result, its end), the run a few of its own: a run that goes through its
 * steps once is not compacted right before the snapshot at its end.
 * RUNBOOK_TEST_COMPACT_RECORDS lowers the bar so that crash tests reach
 * compaction in small runs.
 */
static void set_compact_at(struct exec *ex)
{
	const char *t = getenv("RUNBOOK_TEST_COMPACT_RECORDS");
	if (t && atol(t) > 0)
		ex->compact_at = (size_t)atol(t);
	else
		ex->compact_at = 4 * ex->rb->nsteps + 64 > 1000 ? 4 * ex->rb->nsteps + 64 : 1000;
}

/*
 * The HMAC of a value (its JSON text) under a key derived from the run's
 * signing key, as for a secret (audit.h): what the log keeps of a var it must
 * not hold.  NULL when there is no key (a probe, a simulation).
 */
static json_t *value_hmac(const struct exec *ex, const json_t *v)
{
	unsigned char k[32];
	char hex[65];
	if (!ex->key || rb_audit_key_hmac_key(ex->key, k) < 0)
		return NULL;
	char *t = rb_record_text(v);
	int ok = rb_hmac_hex(k, sizeof(k), t, strlen(t), hex) == 0;
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(t, strlen(t));
	free(t);
	return ok ? json_pack("{s:s}", "hmac_sha256", hex) : NULL;
}

/*
 * A var's value x, fixed for the run: kept in ex->vars for run_started and
 * the snapshots, or, when the log must not hold it (it uses a secret, or
 * redaction would change it), its HMAC in ex->vars_hmac.  A resume computes
 * such a var again: its HMAC must be the one the run started with, or the run
 * would go on with another value than it began with (-1, with an error).
 */
static int fix_var(struct exec *ex, const struct rb_var *var, json_t *x)
{
	if (!ex->key)           /* a probe or a simulation: nothing is kept */
		return 0;
	json_t *clean = var->secret ? NULL : ex_redact_json(ex, x);
	int keep = clean && json_equal(clean, x);
	json_decref(clean);
	if (keep)
		return json_object_set(ex->vars, var->name, x);
	json_t *h = value_hmac(ex, x);
	if (!h)
		return rb_error_at(ex->d, var->key, "var '%s': cannot compute the HMAC the run "
				   "keeps of it", var->name);
	const json_t *start = ex->o->start;
	json_t *then = json_object_get(json_object_get(start, "vars_hmac"), var->name);
	const char *key = json_string_value(json_object_get(start, "vars_key"));
	int rc = 0;
	if (then && key && strcmp(key, rb_audit_key_id(ex->key)))
		rc = rb_error_at(ex->d, var->key, "var '%s' is kept out of the run's log (it uses "
				 "a secret, or is redacted), which holds only its HMAC under audit key "
				 "%s; this resume signs with key %s and cannot check that the var "
				 "has the value the run started with: resume with the run's key "
				 "(--audit-key FILE)", var->name, key, rb_audit_key_id(ex->key));
	else if (then && !json_equal(then, h))
		rc = rb_error_at(ex->d, var->key, "var '%s' does not have the value the run started "
				 "with: it is kept out of the run's log (it uses a secret, or is "
				 "redacted), so it was computed again, and its HMAC differs (a secret "
				 "or param it reads changed, or it depends on the time or the "
				 "environment); resume refuses to go on with another value",
				 var->name);
	json_object_set_new(ex->vars_hmac, var->name, h);
	return rc;
}

/* Each member of v into the table that registry ref holds; -1 past the memory limit. */
static int ref_set_all(struct rb_luabox *b, int ref, const json_t *v)
{
	const char *k;
	json_t *x;
	json_object_foreach((json_t *)v, k, x)
		if (rb_luabox_ref_set_json(b, ref, k, x, 0) < 0)
			return -1;
	return 0;
}

/* The run's scope: params, secrets (those vars read), vars, run (its status changes), steps. */
static int build_scope(struct exec *ex)
{
	struct rb_runbook *rb = ex->rb;
	lua_State *L = rb_luabox_state(ex->box);
	ex->secret_read = rb_xcalloc(rb->nsecrets ? rb->nsecrets : 1, 1);
	lua_newtable(L);
	lua_createtable(L, 0, 1);
	lua_pushlightuserdata(L, ex);
	lua_pushcclosure(L, ex_secrets_index, 1);
	lua_setfield(L, -2, "__index");
	lua_setmetatable(L, -2);
	ex->secrets_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	int rc = 0;
	for (size_t i = 0; i < rb->nsecrets; i++)
		if (rb->secrets[i].at_start && ex_take_secret(ex, i, NULL) < 0)
			rc = -1;
	if (rc < 0)
		return -1;
	rb_luabox_push_scope(ex->box);
	ex->scope = lua_gettop(L);
	size_t mib = rb_luabox_mem_mib(ex->box);
	/* The secrets read so far, behind a read-only view (more are read as steps need them). */
	lua_rawgeti(L, LUA_REGISTRYINDEX, ex->secrets_ref);
	rb_luabox_readonly(L);
	rb_luabox_set(L, ex->scope, "secrets");
	json_t *run = json_pack("{s:s, s:b, s:I, s:s}", "id", ex->run_id, "dry_run", 0,
				"started_at", (json_int_t)ex->o->now, "status", "running");
	int vars_ref;
	if (rb_luabox_set_json(ex->box, ex->scope, "params", ex->o->params, 1) < 0)
		rc = rb_error_pos(ex->d, 0, 0, "memory limit of %zu MiB exceeded while setting "
				  "params", mib);
	else if (rb_luabox_set_table(ex->box, ex->scope, "run", &ex->run_ref) < 0 ||
		 ref_set_all(ex->box, ex->run_ref, run) < 0 ||
		 rb_luabox_set_table(ex->box, ex->scope, "steps", &ex->steps_ref) < 0 ||
		 rb_luabox_set_table(ex->box, ex->scope, "vars", &vars_ref) < 0)
		rc = rb_error_pos(ex->d, 0, 0, "memory limit of %zu MiB exceeded while setting "
				  "up the run's scope", mib);
	json_decref(run);
	/*
	 * The steps not started yet share one table: what ex_publish would give each
	 * (steps.X is a read-only view, so none can change it for the others).
	 */
	const char **pending = rb_xmalloc((rb->nsteps ? rb->nsteps : 1) * sizeof(*pending));
	size_t npending = 0;
	for (size_t i = 0; i < rb->nsteps && rc == 0; i++) {
		const struct srun *sr = &ex->s[i];
		if (sr->status == S_PENDING && !sr->attempts && !sr->output && !sr->outputs &&
		    !sr->error)
			pending[npending++] = rb->steps[i]->id;
		else if (ex_publish(ex, i) < 0)
			rc = rb_error_at(ex->d, rb->steps[i]->node, "memory limit of %zu MiB exceeded "
					 "while recording step '%s'", mib, rb->steps[i]->id);
	}
	json_t *state = json_pack("{s:s, s:i}", "status", ex_status_names[S_PENDING], "attempts", 0);
	if (rc == 0 && rb_luabox_ref_set_json_all(ex->box, ex->steps_ref, pending, npending,
						  state) < 0)
		rc = rb_error_pos(ex->d, 0, 0, "memory limit of %zu MiB exceeded while setting "
				  "up the run's scope", mib);
	json_decref(state);
	free(pending);
	if (rc < 0)
		return -1;

	struct rb_render r = ex_renderer(ex, ex->d);
	/* A resume's vars are the run's: those the log holds are not computed again. */
	const json_t *was = json_object_get(ex->o->start, "vars");
	for (size_t i = 0; i < rb->nvars; i++) {
		const struct rb_var *var = &rb->vars[i];
		json_t *x = var->secret ? NULL : json_incref(json_object_get(was, var->name));
		if (!x && !(x = rb_render_node(&r, var->value))) {
			lua_settop(L, ex->scope);
			return -1;
		}
		/* A var made from a secret is as secret as it is, every field of it. */
		if (var->secret)
			ex_add_sensitive(ex, x);
		if (fix_var(ex, var, x) < 0) {
			json_decref(x);
			lua_settop(L, ex->scope);
			return -1;
		}
		int r2 = rb_luabox_ref_set_json(ex->box, vars_ref, var->name, x, 0);
		json_decref(x);
		if (r2 < 0)
			return rb_error_at(ex->d, rb->vars[i].value, "memory limit of %zu MiB "
					   "exceeded while setting var '%s'", mib, rb->vars[i].name);
	}
	lua_settop(L, ex->scope);
	return 0;
}

/* run.status, for the on_failure steps: failed, or interrupted (a small write: the spare). */
static void set_run_status(struct exec *ex, const char *status)
{
	json_t *v = json_string(status);
	rb_luabox_ref_set_json(ex->box, ex->run_ref, "status", v, 1);
	json_decref(v);
}

/*
 * How long the on_failure steps of an interrupted run may take, all together:
 * the run was asked to stop, and whoever asked (a service manager) kills it
 * if it does not.  With the main steps' 5 s from SIGTERM to SIGKILL before,
 * and 5 s more to kill what is still running at the bound, a run ends within
 * 25 s of the signal: inside Kubernetes' default grace of 30 s and systemd's
 * 90 s (docs/language.md).
 */
enum { ON_FAILURE_AFTER_INTERRUPT_MS = 15000 };

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
		ex_event(ex, json_pack("{s:s, s:i}", "event", "rollback", "steps", (int)n),
			 "rolling back %zu step%s", n, n == 1 ? "" : "s");
	ex->seeded = RB_UNDO;           /* no gate of the main steps is asked meanwhile */
	for (size_t k = 0; k < n && !ex->interrupted; k++) {
		size_t u = ex->rb->steps[v[k]]->undo->index;
		rb_grow(&ex->ready, &ex->readycap, ex->nready + 1, sizeof(*ex->ready));
		ex->ready[ex->nready++] = u;
		ex_run_phase(ex);
	}
	free(v);
}

/*
 * lock: NAME: an flock on LOCK_DIR/NAME.lock, machine-wide whatever the
 * state directory (lock.h), held until the run ends (the kernel drops it
 * however the process dies).  Waits up to the lock timeout, then gives up
 * naming the holder.
 */
static int take_lock(struct exec *ex)
{
	char *path = NULL, *err = NULL;
	int64_t give_up = rb_now_ms() + ex->o->lock_timeout_ms;
	int said = 0, rc = -1;
	for (;;) {
		pid_t holder;
		free(path);
		int r = rb_lock_try(ex->rb->lock, &ex->lock_fd, &path, &holder, &err);
		if (r == 0)
			break;
		if (r < 0) {
			rb_error_pos(ex->d, 0, 0, "lock '%s': %s", ex->rb->lock, err);
			goto out;
		}
		char by[48] = "";
		if (holder > 0)
			snprintf(by, sizeof(by), "PID %d, ", (int)holder);
		if (rb_now_ms() >= give_up || (ex->o->signals && *ex->o->signals)) {
			if (ex->o->lock_held)
				*ex->o->lock_held = 1;
			char d[32];
			rb_duration_format(ex->o->lock_timeout_ms, d, sizeof(d));
			rb_error_pos(ex->d, 0, 0, "lock '%s' is held by another run (%s%s); gave up "
				     "after %s (--lock-timeout)", ex->rb->lock, by, path, d);
			goto out;
		}
		if (!said++)
			ex_event(ex, json_pack("{s:s, s:s, s:s, s:i}", "event", "lock_waiting",
					       "lock", ex->rb->lock, "file", path, "pid", (int)holder),
				 "waiting for lock '%s' (%s%s)", ex->rb->lock, by, path);
		struct timespec ts = {0, 100 * 1000000L};
		nanosleep(&ts, NULL);
	}
	rc = 0;
out:
	free(err);
	free(path);
	return rc;
}

/*
 * Resume: the kept steps take their state from before, without running,
 * and what depends on them becomes ready as if they had just finished.
 */
static int restore(struct exec *ex)
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
		/* Its secret was masked in the log: this session does not know it. */
		sr->secret_output = sr->secret_lost = json_is_true(json_object_get(k, "secret")) ||
						      (st->sensitive && (sr->output || sr->outputs));
		const char *e = json_string_value(json_object_get(k, "error"));
		sr->error = e ? rb_xstrdup(e) : NULL;   /* why it was skipped */
		json_t *ms = json_object_get(k, "duration_ms");
		sr->duration_ms = json_is_integer(ms) ? json_integer_value(ms) : -1;
		sr->completed = ++ex->completed;
		if (ex_publish(ex, i) < 0)
			return rb_error_at(ex->d, st->node, "memory limit of %zu MiB exceeded while "
					   "recording step '%s' (kept from before the resume)",
					   rb_luabox_mem_mib(ex->box), st->id);
		for (size_t j = 0; j < sr->nsucc; j++) {
			struct srun *t = &ex->s[sr->succ[j]];
			t->dep_skipped |= sr->status == S_SKIPPED;
			t->waiting--;
		}
	}
	return 0;
}

/*
 * The key that signs the run's log: --audit-key, $RUNBOOK_AUDIT_KEY, or the
 * host's key, made on first use (and said so, by an event: its public half
 * must reach the keyrings that verify this host's logs).
 */
static int load_key(struct exec *ex, const char *state)
{
	char *created = NULL, *err = NULL;
	if (rb_audit_key_default(ex->o->audit_key, state, &ex->key, &created, &err) < 0) {
		rb_error_pos(ex->d, 0, 0, "audit key: %s", err);
		free(err);
		return -1;
	}
	if (created) {
		char *pub = rb_xasprintf("%s.pub", created);
		ex_event(ex, json_pack("{s:s, s:s, s:s, s:s}", "event", "audit_key_created",
				       "file", created, "public_file", pub, "key_id",
				       rb_audit_key_id(ex->key)),
			 "created %s, the audit key of this host (key id %s), to sign run logs; "
			 "give %s to those who verify them", created, rb_audit_key_id(ex->key), pub);
		free(pub);
	}
	free(created);
	ex->secret_hmacs = json_object();
	ex->vars = json_object();
	ex->vars_hmac = json_object();
	const char *was = json_string_value(json_object_get(ex->o->start, "vars_key"));
	ex->vars_key = rb_xstrdup(was ? was : rb_audit_key_id(ex->key));
	return 0;
}

/*
 * The keys a resume trusts to have signed the run so far: its own, and those
 * of --keyring (a run begun with another key).  NULL after an error.
 */
static struct rb_audit_keyring *trusted_keys(struct exec *ex)
{
	struct rb_audit_keyring *kr = NULL;
	char *err = NULL;
	if (ex->o->keyring ? rb_audit_keyring_load(ex->o->keyring, &kr, &err) < 0
			   : !(kr = rb_audit_keyring_new()))
		rb_error_pos(ex->d, 0, 0, "keyring: %s", err ? err : "out of memory");
	else if (rb_audit_keyring_add(kr, ex->key, "the audit key", &err) < 0)
		rb_error_pos(ex->d, 0, 0, "keyring: %s", err);
	else
		return kr;
	free(err);
	rb_audit_keyring_free(kr);
	return NULL;
}

static const char *host_name(void)
{
	static char host[256];
	if (gethostname(host, sizeof(host) - 1) < 0)
		snprintf(host, sizeof(host), "unknown");
	return host;
}

/*
 * A new run's id: its start time (to the second) and 16 random bits.  Runs
 * started in the same second (all of them, under a fixed RUNBOOK_NOW) may draw
 * the same bits: the next ones are taken until the id is free.
 */
static void new_run_id(struct exec *ex, const char *state)
{
	unsigned r = ex->o->rand;
	for (int tries = 0; tries < 0x10000; tries++, r = r * 1103515245u + 12345u) {
		rb_run_id(ex->run_id, sizeof(ex->run_id), ex->o->now, r >> (tries ? 16 : 0));
		char *dir = rb_run_dir(state, ex->run_id);
		struct stat st;
		int taken = dir && lstat(dir, &st) == 0;
		free(dir);
		if (!taken)
			return;
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
		ex->s[i].duration_ms = -1;
		for (size_t k = 0; k < st->ndeps; k++) {
			struct srun *d = &ex->s[st->deps[k]];
			d->succ = rb_xrealloc(d->succ, (d->nsucc + 1) * sizeof(*d->succ));
			d->succ[d->nsucc++] = i;
		}
	}
	/* Everything that can refuse the run comes before its directory exists. */
	const char *state = rb_state_dir(ex->o->state_dir);
	if (ex->o->resume_id)
		snprintf(ex->run_id, sizeof(ex->run_id), "%s", ex->o->resume_id);
	else
		new_run_id(ex, state);
	ex->ctx = rb_runctx_new(ex->run_id);
	ex->redactor = rb_redactor_new();
	ex->nsecrets += rb_runbook_add_patterns(rb, ex->redactor);     /* redact: and PII */
	for (size_t i = 0; i < rb->nsteps; i++)         /* their outputs are added as they end */
		ex->nsecrets += rb->steps[i]->sensitive;
	ex->nsecrets += rb->nsecrets;                   /* and secrets as they are read */
	ex->box = rb_runbook_take_box(rb);
	if (!ex->box)
		return rb_error_pos(ex->d, 0, 0, "cannot create a Lua state");
	ex_lua_serve(ex);
	int keeps_nothing = ex->o->probe || ex->o->recorded;
	if (!keeps_nothing && load_key(ex, state) < 0)
		return -2;
	if (build_scope(ex) < 0)
		return -1;
	if (keeps_nothing)              /* no run directory, journal or lock */
		return ex_start_workers(ex) < 0 ? -2 : 0;
	char *err = NULL;
	/* From here on a failure is not the input's fault: -2. */
	if (rb->lock && take_lock(ex) < 0)
		return -2;
	ex->run_dir = rb_run_dir(state, ex->run_id);
	/* Whom a resume trusts; a new run, its own key only (an interrupted repair's signer). */
	struct rb_audit_keyring *trust = ex->o->resume_id ? trusted_keys(ex) : NULL;
	if (ex->o->resume_id && !trust)
		return -2;
	if (ex->o->audit_log &&
	    rb_audit_open_trusted(ex->o->audit_log, ex->key, trust, ex->run_id, RB_AUDIT_SHARED,
				  &ex->shared, &err) < 0) {
		rb_error_pos(ex->d, 0, 0, "cannot open the audit log: %s", err);
		free(err);
		rb_audit_keyring_free(trust);
		return -2;
	}
	if (ex->o->resume_id) {
		int r = -1, hold = ex->o->hold ? *ex->o->hold : -1;
		if (trust && hold >= 0) {
			*ex->o->hold = -1;      /* the journal's now */
			r = rb_journal_open_held(hold, ex->run_dir, ex->run_id, ex->key, trust,
						 &ex->journal, &err);
		} else if (trust) {
			r = rb_journal_open(ex->run_dir, ex->run_id, ex->key, trust, &ex->journal,
					    &err);
		}
		rb_audit_keyring_free(trust);
		if (r < 0) {
			if (err)
				rb_error_pos(ex->d, 0, 0, "cannot open the run: %s%s", err,
					     strstr(err, "not in the keyring")
						     ? " (resume with the key that signed it, "
						       "--audit-key FILE, or trust its public key with "
						       "--keyring DIR)" : "");
			free(err);
			return -2;
		}
		if (restore(ex) < 0)
			return -1;
	} else if (rb_journal_create(state, ex->run_id, ex->key, &ex->journal, &err) < 0) {
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
	json_t *who = json_pack("{s:s, s:s, s:s, s:i}", "user", ex->o->user ? ex->o->user : "",
				"host", host_name(), "version", RB_VERSION, "pid", (int)getpid());
	if (ex->o->resume_id) {
		/* The session before ended without saying so: it crashed (or was killed). */
		if (strcmp(rb_journal_last_type(ex->journal), "run_finished"))
			ex_journal(ex, json_pack("{s:s}", "type", "run_crashed"));
		json_t *rec = json_pack("{s:s, s:s, s:O}", "type", "run_resumed", "sha256", sha,
					"secrets", ex->secret_hmacs);
		json_object_update(rec, who);
		if (ex->o->resume_note)
			json_object_update(rec, ex->o->resume_note);
		ex_journal(ex, rec);
		/* --skip: the operator takes the step as done, and the journal says so. */
		const char *id;
		json_t *k;
		json_object_foreach(ex->o->kept, id, k)
			if (json_is_true(json_object_get(k, "taken_as_done")))
				ex_journal(ex, json_pack("{s:s, s:s, s:s, s:O, s:b}", "type",
							 "step_finished", "step", id, "status",
							 "succeeded", "attempt",
							 json_object_get(k, "attempts"),
							 "taken_as_done", 1));
	} else {
		json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:O, s:O, s:I, s:O, s:O}", "type",
					"run_started", "runbook", rb->name, "file", rb->file, "sha256",
					sha, "params", ex->o->params, "secrets", ex->secret_hmacs,
					"started_at", (json_int_t)ex->o->now, "vars", ex->vars,
					"vars_hmac", ex->vars_hmac);
		json_object_update(rec, who);
		if (ex->o->plan_sha256)
			json_object_set_new(rec, "plan_sha256", json_string(ex->o->plan_sha256));
		ex_journal(ex, rec);
	}
	json_decref(who);
	/* --ignore-window: who said so, in the log the run is judged by. */
	if (ex->o->window_ignored) {
		json_t *rec = json_deep_copy(ex->o->window_ignored);
		json_object_set_new(rec, "type", json_string("window_ignored"));
		ex_journal(ex, rec);
	}
	if (ex_journal_sync(ex) < 0 || ex_start_workers(ex) < 0)
		return -2;
	return 0;
}

static void teardown(struct exec *ex)
{
	if (ex->threads)
		ex_stop_workers(ex);
	/* Never the case after a run's last sync; what no sync confirmed was not recorded. */
	if (ex->nheld)
		ex_unrecorded(ex);
	free(ex->held);
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
	free(ex->polled);
	free(ex->ended);
	free(ex->pfds);
	if (ex->journal)
		rb_journal_close(ex->journal);
	rb_audit_close(ex->shared);
	rb_audit_key_free(ex->key);
	json_decref(ex->secret_hmacs);
	free(ex->secret_read);
	json_decref(ex->vars);
	json_decref(ex->vars_hmac);
	free(ex->vars_key);
	free(ex->journal_error);
	if (ex->lock_fd >= 0)
		close(ex->lock_fd);
	free(ex->run_dir);
	rb_luabox_free(ex->box);
	rb_runctx_free(ex->ctx);        /* closes the connections the run kept */
	if (ex->o->redactor_out) {
		*ex->o->redactor_out = ex->redactor;
		ex->redactor = NULL;
	}
	rb_redactor_free(ex->redactor);
	pthread_mutex_destroy(&ex->mu);
	pthread_cond_destroy(&ex->cv);
	pthread_mutex_destroy(&ex->out_mu);
}

/*
 * --dry-run --probe: the main steps that cannot change anything run (and the
 * checks of those that can); the results go to o->probed for the plan.
 */
static void probe(struct exec *ex, enum rb_run_status *status)
{
	ex_event(ex, json_pack("{s:s, s:s}", "event", "probe_started", "runbook", ex->rb->name),
		 "probe %s: running the steps that change nothing", ex->rb->name);
	ex_seed(ex, RB_MAIN);
	ex_run_phase(ex);
	for (size_t i = 0; i < ex->rb->nmain; i++) {
		const struct srun *sr = &ex->s[i];
		const struct rb_step *st = ex->rb->steps[i];
		/* Not run; but one that explained what it would do shows that. */
		int explained = sr->status == S_UNPROBED && sr->output;
		if (sr->status == S_PENDING || (sr->status == S_UNPROBED && !explained))
			continue;
		json_t *v = json_pack("{s:s}", "status", explained ? "explained"
				      : ex_status_names[sr->status]);
		static const char *const keys[] = {"output", "outputs"};
		json_t *vals[] = {sr->output, sr->outputs};
		for (int k = 0; k < 2; k++)
			if (vals[k])
				json_object_set_new(v, keys[k], st->sensitive
						    ? json_string(RB_SECRET_MASK)
						    : ex_redact_json(ex, vals[k]));
		if (sr->error && !explained) {
			char *e = ex_redact(ex, sr->error, strlen(sr->error), NULL);
			json_object_set_new(v, "error", json_string(e));
			free(e);
		}
		json_object_set_new(ex->o->probed, st->id, v);
	}
	*status = ex->interrupted ? RB_RUN_INTERRUPTED : ex->failed ? RB_RUN_FAILED
		  : RB_RUN_SUCCEEDED;
}

/* replay --simulate: what each main step did (its calls were kept as they started). */
static void simulated(struct exec *ex)
{
	for (size_t i = 0; i < ex->rb->nmain; i++) {
		const struct srun *sr = &ex->s[i];
		const char *id = ex->rb->steps[i]->id;
		json_t *v = json_object_get(ex->o->simulated, id);
		if (!v)
			json_object_set_new(ex->o->simulated, id, v = json_pack("{s:[]}", "calls"));
		json_object_set_new(v, "status", json_string(ex_status_names[sr->status]));
		json_object_set_new(v, "attempts", json_integer(sr->attempts));
		if (sr->error)
			json_object_set_new(v, "error", json_string(sr->error));
	}
}

/* Every main step has run (or been skipped): a window that closed after stopped nothing. */
static int all_started(const struct exec *ex)
{
	for (size_t i = 0; i < ex->rb->nmain; i++)
		if (ex->s[i].status == S_PENDING || ex->s[i].status == S_WAITING)
			return 0;
	return 1;
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

/*
 * The messages the run added to d (from index n0) are printed by the caller
 * after the redactor is gone: a var whose expression failed may quote a
 * secret.
 */
static void redact_diags(struct exec *ex, size_t n0)
{
	for (size_t k = n0; ex->redactor && k < ex->d->n; k++) {
		char *m = ex_redact(ex, ex->d->v[k].msg, strlen(ex->d->v[k].msg), NULL);
		free(ex->d->v[k].msg);
		ex->d->v[k].msg = m;
	}
}

int rb_exec_run(struct rb_runbook *rb, const struct rb_exec_opts *o, struct rb_diags *d,
		enum rb_run_status *status, char *run_id)
{
	struct exec ex = {.rb = rb, .o = o, .d = d, .wake = {-1, -1}, .gate_fd = -1,
			  .stop_on_failure = 1, .lock_fd = -1};
	pthread_mutex_init(&ex.mu, NULL);
	pthread_cond_init(&ex.cv, NULL);
	pthread_mutex_init(&ex.out_mu, NULL);
	ex.t0 = rb_now_ms();
	ex.sched = pthread_self();
	size_t n0 = d->n;
	int rc = setup(&ex);
	if (rc < 0) {
		redact_diags(&ex, n0);
		teardown(&ex);
		return rc;
	}
	memcpy(run_id, ex.run_id, RB_RUN_ID_MAX);
	if (o->probe) {
		probe(&ex, status);
		ex_flush(&ex);
		redact_diags(&ex, n0);
		teardown(&ex);
		return 0;
	}
	const char *where = ex.run_dir ? ex.run_dir : "nowhere: a simulation";
	ex_event(&ex, json_pack("{s:s, s:s, s:i, s:s}", "event", "run_started", "runbook", rb->name,
				"steps", (int)rb->nmain, "dir", where),
		 "run %s: %s, %zu step%s (state in %s)", ex.run_id, rb->name, rb->nmain,
		 rb->nmain == 1 ? "" : "s", where);

	if (o->window_ignored) {
		json_t *ev = json_deep_copy(o->window_ignored);
		json_object_set_new(ev, "event", json_string("window_ignored"));
		ex_event(&ex, ev, "--ignore-window: the maintenance window is not kept (by %s)",
			 json_string_value(json_object_get(o->window_ignored, "by")));
	}
	if (o->window_close_ms) {
		char at[32];
		struct tm tm;
		gmtime_r(&o->window_close, &tm);
		strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
		ex_event(&ex, json_pack("{s:s, s:s}", "event", "window_open", "closes_at", at),
			 "inside the maintenance window, which closes at %s: no step starts after",
			 at);
	}
	if (rb->timeout_ms >= 0) {      /* counted from the first step, not from setup */
		ex.deadline_ms = rb_now_ms() + rb->timeout_ms;
		ex.deadline_len_ms = rb->timeout_ms;
	}
	ex_seed(&ex, RB_MAIN);
	ex_run_phase(&ex);
	ex.deadline_ms = 0;             /* rollback and on_failure get their own time */
	int failed = ex.failed || ex.journal_failed;

	/*
	 * A failed run undoes what it did (rollback: true), then runs on_failure.
	 * An interrupted run runs on_failure too, so that on-call hears of a run
	 * its service manager stopped, within a bound; a second signal skips them.
	 * It is not rolled back: an interrupt says nothing about the work, and the
	 * run resumes where it stopped, which an undo would destroy.
	 */
	int interrupted = ex.interrupted;
	ex.rhead = ex.nready = 0;       /* what became ready after the failure never runs */
	if (failed && !interrupted && !ex.journal_failed) {
		ex.failed = 0;
		set_run_status(&ex, "failed");
		if (rb->rollback)
			rollback(&ex);
		ex.stop_on_failure = 0;
		ex.rhead = ex.nready = 0;
		ex_seed(&ex, RB_ON_FAILURE);
		ex_run_phase(&ex);
	} else if (interrupted && rb->non_failure && !ex.journal_failed) {
		if (o->signals && *o->signals > 1) {
			ex_event(&ex, json_pack("{s:s}", "event", "on_failure_skipped"),
				 "interrupted again: the on_failure steps do not run");
		} else {
			set_run_status(&ex, "interrupted");
			ex.interrupted = ex.failed = ex.timed_out = 0;
			ex.after_interrupt = 1;
			ex.stop_on_failure = 0;
			ex.deadline_len_ms = ON_FAILURE_AFTER_INTERRUPT_MS;
			ex.deadline_ms = rb_now_ms() + ex.deadline_len_ms;
			ex_seed(&ex, RB_ON_FAILURE);
			ex_run_phase(&ex);
			ex.deadline_ms = 0;
			ex.interrupted = interrupted;
		}
	}

	*status = interrupted || ex.interrupted ? RB_RUN_INTERRUPTED : failed ? RB_RUN_FAILED
		  : ex.window_closed && !all_started(&ex) ? RB_RUN_STOPPED
		  : ex.ngates ? RB_RUN_PAUSED : RB_RUN_SUCCEEDED;
	static const char *const outcome[] = {"succeeded", "failed", "interrupted", "paused",
					      "stopped"};
	ex.outcome = outcome[*status];
	ex_journal(&ex, json_pack("{s:s, s:s}", "type", "run_finished", "status", outcome[*status]));
	/* The snapshot keeps the log's head: a tail cut from the log shows (audit verify). */
	int recorded = !ex.journal || ex_journal_sync(&ex) == 0;
	if (ex.journal && recorded)
		ex_compact_now(&ex);
	if (!recorded) {        /* the console says what the journal has, no more */
		*status = RB_RUN_FAILED;
		ex.outcome = outcome[*status];
	}
	if (o->simulated)
		simulated(&ex);
	/*
	 * The whole run's main steps, kept ones included, as runbook runs counts them;
	 * outcomes shown as not recorded are not counted as what they said.
	 */
	struct rb_run_counts c;
	count_steps(&ex, &c);
	json_t *ev = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:I}", "event", "run_finished",
			       "status", outcome[*status], "succeeded", (int)c.succeeded, "failed",
			       (int)c.failed, "interrupted", (int)c.interrupted, "skipped",
			       (int)c.skipped, "not_run", (int)c.not_run, "duration_ms",
			       (json_int_t)(rb_now_ms() - ex.t0));
	char *hint = *status == RB_RUN_SUCCEEDED ? NULL : resume_hint(&ex);
	if (hint)
		json_object_set_new(ev, "resume", json_string(hint));
	char *counted = rb_run_counts_text(&c);
	char unrec[48] = "";
	if (ex.unrecorded) {
		json_object_set_new(ev, "not_recorded", json_integer((json_int_t)ex.unrecorded));
		snprintf(unrec, sizeof(unrec), ", %zu not recorded", ex.unrecorded);
	}
	if (!recorded)
		json_object_set_new(ev, "recorded", json_false());
	/*
	 * The log's head, its last signed record: what a log cannot show about
	 * itself (a cut tail) shows against it when it is kept elsewhere
	 * (runbook audit verify --head).
	 */
	char head[96] = "";
	if (ex.journal && recorded) {
		struct rb_audit_head h;
		rb_journal_head(ex.journal, &h);
		snprintf(head, sizeof(head), "%" PRIu64 ":%s", h.seq, h.sha256);
		json_object_set_new(ev, "head", json_string(head));
		json_object_set_new(ev, "key_id", json_string(rb_audit_key_id(ex.key)));
	}
	ex_event(&ex, ev, "run %s %s in %.1fs: %s%s%s", ex.run_id, outcome[*status],
		 ex_secs_since(ex.t0), counted, unrec, recorded ? "" : " (its end is not "
		 "recorded: the audit log cannot be written)");
	free(counted);
	if (*head && !o->json_events)   /* JSON has it in run_finished */
		ex_event(&ex, json_pack("{s:s}", "event", "hint"), "audit log head %s (key %s): keep "
			 "it elsewhere; runbook audit verify --head checks the log against it", head,
			 rb_audit_key_id(ex.key));
	if (hint && !o->json_events)    /* JSON has it in run_finished */
		ex_event(&ex, json_pack("{s:s}", "event", "hint"), "to continue: %s", hint);
	free(hint);
	ex_flush(&ex);
	redact_diags(&ex, n0);
	teardown(&ex);
	return 0;
}
