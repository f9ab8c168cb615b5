/*
 * The engine's services, below both the run (exec.c) and the scheduler
 * (sched.c): the run's events and console, its journal (records, groups,
 * syncs, snapshots), its redaction, and its Lua state (steps[id], secrets
 * read when first needed).  It calls nothing in exec.c or sched.c.  Secret
 * values are replaced by *** in everything it writes or prints.
 */
#include "exec_int.h"

#include <lua.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "audit.h"
#include "redact.h"
#include "runstate.h"

const char *const ex_status_names[S_COUNT] = {
	"pending", "running", "succeeded", "failed", "skipped", "interrupted",
	"awaiting_approval", "satisfied", "not_probed",
};

/* --- redaction and events ----------------------------------------------------- */

/*
 * s with every secret replaced by ***, in any of the forms the redactor
 * knows (interp/redact.h: encodings, lines of multi-line values); malloc'd.
 */
char *ex_redact(const struct exec *ex, const char *s, size_t len, size_t *outlen)
{
	if (!ex->nsecrets) {
		char *copy = rb_xmalloc(len + 1);
		memcpy(copy, s, len);
		copy[len] = '\0';
		if (outlen)
			*outlen = len;
		return copy;
	}
	return rb_redact(ex->redactor, s, len, outlen);
}

/*
 * A sensitive step's output, or a var made from a secret, is a secret from the
 * moment it is known: each string in it (and each number's text) is registered,
 * so that what prints or records it later shows ***.  Values shorter than
 * RB_REDACT_MIN_LEN cannot be (docs/language.md).
 */
void ex_add_sensitive(struct exec *ex, const json_t *v)
{
	size_t k;
	const char *key;
	json_t *x;
	char num[64];
	switch (json_typeof(v)) {
	case JSON_STRING:
		rb_redactor_add_secret(ex->redactor, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		rb_redactor_add_secret(ex->redactor, num, strlen(num));
		break;
	case JSON_REAL:
		snprintf(num, sizeof(num), "%.17g", json_real_value(v));
		rb_redactor_add_secret(ex->redactor, num, strlen(num));
		break;
	case JSON_ARRAY:
		json_array_foreach(v, k, x)
			ex_add_sensitive(ex, x);
		break;
	case JSON_OBJECT:
		json_object_foreach((json_t *)v, key, x)
			ex_add_sensitive(ex, x);
		break;
	default:
		break;
	}
}

/* A copy of v with secrets redacted in every string and key. */
json_t *ex_redact_json(const struct exec *ex, json_t *v)
{
	if (!v)
		return json_null();
	return ex->nsecrets ? rb_redact_json(ex->redactor, v) : json_deep_copy(v);
}

/* v redacted (NULL gives null), sharing what has nothing to redact (rb_redact_json_shared). */
static json_t *redact_shared(const struct exec *ex, json_t *v)
{
	if (!v)
		return json_null();
	return ex->nsecrets ? rb_redact_json_shared(ex->redactor, v) : json_incref(v);
}

int ex_events_read(const struct exec *ex)
{
	return ex->o->json_events || ex->o->live;
}

/* ev, or NULL (ev freed) when no one reads events. */
static json_t *read_or_drop(const struct exec *ex, json_t *ev)
{
	if (ex_events_read(ex))
		return ev;
	json_decref(ev);
	return NULL;
}

/* The time of day for a line of text: formatted once a second. */
static const char *clock_text(struct exec *ex)
{
	time_t t = time(NULL);
	if (t != ex->clock_sec) {
		struct tm tm;
		localtime_r(&t, &tm);
		strftime(ex->clock, sizeof(ex->clock), "%H:%M:%S", &tm);
		ex->clock_sec = t;
	}
	return ex->clock;
}

/* Print one event (ev taken, msg its text); the caller holds out_mu. */
static void emit(struct exec *ex, json_t *ev, const char *msg)
{
	FILE *f = ex->o->out;
	if (ex->o->json_events) {
		char ts[32];
		time_t t = time(NULL);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		json_object_set_new(ev, "time", json_string(ts));
		json_object_set_new(ev, "run", json_string(ex->run_id));
		json_t *clean = redact_shared(ex, ev);
		json_dumpf(clean, f, JSON_COMPACT | JSON_PRESERVE_ORDER);
		fputc('\n', f);
		json_decref(clean);
	} else {
		char *clean = ex_redact(ex, msg, strlen(msg), NULL);
		if (ex->o->live) {
			json_t *cev = redact_shared(ex, ev);
			rb_live_event(ex->o->live, cev, clean, rb_now_ms());
			json_decref(cev);
		} else {
			/* One event, one line: its control characters shown, not obeyed. */
			char *line = rb_visible(clean, strlen(clean), RB_VIS_TAB);
			fprintf(f, "%s %s\n", clock_text(ex), line);
			free(line);
		}
		free(clean);
	}
	/* The scheduling thread flushes before it waits (ex_flush); workers' lines go at once. */
	if (!pthread_equal(pthread_self(), ex->sched))
		fflush(f);
	json_decref(ev);
}

/* Keep an event (ev and text taken) until ex_recorded; the caller holds out_mu. */
static void hold(struct exec *ex, json_t *ev, char *text, int outcome, int status, size_t step)
{
	rb_grow(&ex->held, &ex->heldcap, ex->nheld + 1, sizeof(*ex->held));
	ex->held[ex->nheld++] = (struct held_event){ev, text, outcome, status, step};
}

/* One event: a line of text, or a JSON object with "event" set. */
void ex_event(struct exec *ex, json_t *ev, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = rb_xvasprintf(fmt, ap);
	va_end(ap);
	ev = read_or_drop(ex, ev);
	pthread_mutex_lock(&ex->out_mu);
	if (ex->nheld) {        /* after an outcome still waiting: in its turn */
		hold(ex, ev, msg, 0, -1, 0);
		msg = NULL;
	} else {
		emit(ex, ev, msg);
	}
	pthread_mutex_unlock(&ex->out_mu);
	free(msg);
}

void ex_recorded(struct exec *ex)
{
	pthread_mutex_lock(&ex->out_mu);
	for (size_t k = 0; k < ex->nheld; k++) {
		emit(ex, ex->held[k].ev, ex->held[k].text);
		free(ex->held[k].text);
	}
	ex->nheld = 0;
	pthread_mutex_unlock(&ex->out_mu);
}

/*
 * The journal failed: what waited is shown, each outcome as not recorded (its
 * record may be lost), and its step no longer counted as it ended.
 */
void ex_unrecorded(struct exec *ex)
{
	pthread_mutex_lock(&ex->out_mu);
	for (size_t k = 0; k < ex->nheld; k++) {
		struct held_event *h = &ex->held[k];
		if (!h->outcome) {
			emit(ex, h->ev, h->text);
			free(h->text);
			continue;
		}
		json_t *ev = NULL;
		if (h->ev) {
			ev = json_copy(h->ev);
			json_object_set(ev, "record", json_object_get(h->ev, "event"));
			json_object_set_new(ev, "event", json_string("not_recorded"));
			json_decref(h->ev);
		}
		if (h->status >= 0)     /* not counted as it ended (count_steps) */
			ex->s[h->step].unrecorded = 1;
		char *text = rb_xasprintf("%s (not recorded: the audit log cannot be written)",
					  h->text);
		emit(ex, ev, text);
		free(text);
		free(h->text);
		ex->unrecorded++;
	}
	ex->nheld = 0;
	pthread_mutex_unlock(&ex->out_mu);
}

void ex_step_outcome(struct exec *ex, size_t i, json_t *ev, int status, char *msg)
{
	ev = read_or_drop(ex, ev);
	pthread_mutex_lock(&ex->out_mu);
	if (ex->journal) {      /* a probe or a simulation records nothing: nothing to wait for */
		hold(ex, ev, msg, 1, status, i);
		msg = NULL;
	} else {
		emit(ex, ev, msg);
	}
	pthread_mutex_unlock(&ex->out_mu);
	free(msg);
	if (ex->journal && ex->journal_failed)
		ex_unrecorded(ex);
}

void ex_outcome(struct exec *ex, json_t *ev, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = rb_xvasprintf(fmt, ap);
	va_end(ap);
	ex_step_outcome(ex, 0, ev, -1, msg);
}

void ex_flush(struct exec *ex)
{
	pthread_mutex_lock(&ex->out_mu);
	fflush(ex->o->out);
	pthread_mutex_unlock(&ex->out_mu);
}

/* --- journal ---------------------------------------------------------------------- */

static const char *const text_keys[] = RB_RECORD_TEXT_KEYS;

/* The journal (or the shared log) failed: nothing more is recorded, so nothing more may run. */
static void journal_broken(struct exec *ex, const char *why)
{
	ex->journal_failed = 1;
	if (!ex->journal_error)
		ex->journal_error = rb_xstrdup(why);
}

int ex_groupable_step(const struct rb_step *st)
{
	return st && st->action && !st->side_effects && st->kind != RB_CHECK && !st->check;
}

/*
 * A record that may wait in a group (exec_int.h): the start, intent, result,
 * retry or end of a step without side effects (lua, assert, pg.query, a GET):
 * a crash loses only what resume runs again.  Anything else (a gate, the
 * run's own records, any record of a step that can change something) is
 * synced before the next start.
 */
static int groupable(const struct exec *ex, const json_t *rec)
{
	static const char *const types[] = {"step_started", "action_intent", "action_result",
					    "step_retry", "step_finished", "item_finished"};
	const char *type = json_string_value(json_object_get(rec, "type"));
	const char *id = json_string_value(json_object_get(rec, "step"));
	if (!type || !id || !ex_groupable_step(rb_runbook_step(ex->rb, id)))
		return 0;
	for (size_t k = 0; k < sizeof(types) / sizeof(*types); k++)
		if (!strcmp(type, types[k]))
			return 1;
	return 0;
}

void ex_journal(struct exec *ex, json_t *rec)
{
	if (!ex->journal) {     /* a probe */
		json_decref(rec);
		return;
	}
	json_t *clean = redact_shared(ex, rec);
	json_decref(rec);
	for (size_t k = 0; k < sizeof(text_keys) / sizeof(*text_keys); k++) {
		json_t *v = json_object_get(clean, text_keys[k]);
		if (v) {
			char *t = rb_record_text(v);
			json_object_set_new(clean, text_keys[k], json_string(t));
			free(t);
		}
	}
	if (ex->journal_failed)
		;
	else if (rb_journal_append(ex->journal, clean) < 0)
		journal_broken(ex, rb_journal_error(ex->journal));
	else if (ex->shared && rb_audit_append(ex->shared, clean) < 0)
		journal_broken(ex, rb_audit_error(ex->shared));
	else {
		if (!ex->group_ms)
			ex->group_ms = rb_now_ms();
		if (!groupable(ex, clean))
			ex->group_must_sync = 1;
	}
	json_decref(clean);
}

json_t *ex_record_event(const json_t *rec)
{
	json_t *ev = json_copy((json_t *)rec);  /* shallow */
	json_object_set(ev, "event", json_object_get(rec, "type"));
	json_object_del(ev, "type");
	json_object_del(ev, "output");
	json_object_del(ev, "outputs");
	return ev;
}

void ex_output_sha256(const struct exec *ex, const struct rb_step *st, const json_t *out,
		      char hex[65])
{
	json_t *clean = st->sensitive ? json_string(RB_SECRET_MASK)
			: redact_shared(ex, (json_t *)out);
	char *t = rb_record_text(clean);
	rb_sha256_hex(t, strlen(t), hex);
	free(t);
	json_decref(clean);
}

void ex_record_kind(json_t *rec, const struct rb_step *st)
{
	if (st->kind == RB_ON_FAILURE || st->kind == RB_UNDO)
		json_object_set_new(rec, "kind", json_string(st->kind == RB_UNDO ? "undo"
										  : "on_failure"));
}

/*
 * A step's state from before a resume, when this session has not started it
 * again: what the journal said stands (in the snapshot and in the counts).
 */
json_t *ex_kept_state(const struct exec *ex, size_t i)
{
	const struct srun *sr = &ex->s[i];
	if (sr->status != S_PENDING || sr->attempts != 0)
		return NULL;
	return json_object_get(ex->o->before, ex->rb->steps[i]->id);
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
		json_t *was = ex_kept_state(ex, i);
		if (was) {
			json_t *w = json_pack("{s:O, s:O}", "status", json_object_get(was, "status"),
					      "attempts", json_object_get(was, "attempts"));
			ex_record_kind(w, st);
			static const char *const kept[] = {"items", "error", "duration_ms", "secret"};
			for (size_t k = 0; k < sizeof(kept) / sizeof(*kept); k++)
				if (json_object_get(was, kept[k]))
					json_object_set(w, kept[k], json_object_get(was, kept[k]));
			json_object_set_new(steps, st->id, w);
			continue;
		}
		json_t *v = json_object();
		json_object_set_new_nocheck(v, "status",
					    json_string_nocheck(ex_status_names[sr->status]));
		json_object_set_new_nocheck(v, "attempts", json_integer(sr->attempts));
		ex_record_kind(v, st);
		if (ex_secret_kept(st, sr))
			json_object_set_new(v, "secret", json_true());
		if (sr->output)
			json_object_set_new(v, "output", st->sensitive ? json_string(RB_SECRET_MASK)
								     : redact_shared(ex, sr->output));
		if (sr->outputs)
			json_object_set_new(v, "outputs", st->sensitive ? json_string(RB_SECRET_MASK)
								      : redact_shared(ex, sr->outputs));
		if (sr->items_done)     /* journalled redacted already */
			json_object_set(v, "items", sr->items_done);
		if (sr->error) {        /* why it failed or was skipped, for runbook status */
			char *e = ex_redact(ex, sr->error, strlen(sr->error), NULL);
			json_object_set_new(v, "error", json_string(e));
			free(e);
		}
		if (sr->duration_ms >= 0)
			json_object_set_new_nocheck(v, "duration_ms", json_integer(sr->duration_ms));
		json_object_set_new(steps, st->id, v);
	}
	/* What run_started (and run_finished) said, redacted as there. */
	json_t *snap = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "run", ex->run_id, "runbook",
				 ex->rb->name, "file", ex->rb->file, "sha256", ex->sha, "params",
				 redact_shared(ex, ex->o->params), "steps", steps);
	if (ex->outcome)
		json_object_set_new(snap, "status", json_string(ex->outcome));
	/* What the run fixed at its start, for the resumes after this snapshot. */
	json_object_set_new(snap, "started_at", json_integer((json_int_t)ex->o->now));
	json_object_set(snap, "vars", ex->vars);
	json_object_set(snap, "vars_hmac", ex->vars_hmac);
	json_object_set_new(snap, "vars_key", json_string(ex->vars_key));
	if (ex->o->plan_sha256)
		json_object_set_new(snap, "plan_sha256", json_string(ex->o->plan_sha256));
	return snap;
}

/* A snapshot now (force), or when enough records came since the last. */
static void compact(struct exec *ex, int force)
{
	struct rb_journal_stats st;
	if (!ex->journal || ex->journal_failed)
		return;
	rb_journal_stats(ex->journal, &st);
	if (!force && st.journal_records < ex->compact_at)
		return;
	json_t *snap = snapshot(ex);
	/* A failed snapshot costs a longer replay on resume, nothing else. */
	rb_journal_compact(ex->journal, snap);
	json_decref(snap);
}

void ex_compact(struct exec *ex)
{
	compact(ex, 0);
}

void ex_compact_now(struct exec *ex)
{
	compact(ex, 1);
}

void ex_journal_failed(struct exec *ex, const char *why)
{
	journal_broken(ex, why);
	ex->failed = 1;
	ex_unrecorded(ex);
	if (!ex->journal_said) {
		ex->journal_said = 1;
		ex_event(ex, json_pack("{s:s, s:s}", "event", "error", "message",
				       ex->journal_error),
			 "error: cannot write the audit log: %s; stopping the run",
			 ex->journal_error);
	}
}

/* Write what was journalled and, with sync, make it durable; a failure stops the run. */
static int flush_journal(struct exec *ex, int sync)
{
	if (!ex->journal)
		return 0;
	if (ex->journal_failed)
		ex_journal_failed(ex, ex->journal_error);
	else if ((sync ? rb_journal_sync : rb_journal_write)(ex->journal) < 0)
		ex_journal_failed(ex, rb_journal_error(ex->journal));
	else if (ex->shared && (sync ? rb_audit_sync : rb_audit_write)(ex->shared) < 0)
		ex_journal_failed(ex, rb_audit_error(ex->shared));
	else {
		ex->group_ms = 0;
		ex->group_must_sync = 0;
		if (sync)
			ex_recorded(ex);
		return 0;
	}
	return -1;
}

int ex_group_due(const struct exec *ex)
{
	if (!ex->group_ms)
		return 0;
	if (ex->group_must_sync)
		return 1;
	struct rb_journal_stats st;
	rb_journal_stats(ex->journal, &st);
	return rb_now_ms() - ex->group_ms >= RB_GROUP_MS || st.pending >= RB_GROUP_RECORDS;
}

int ex_journal_sync(struct exec *ex)
{
	return flush_journal(ex, 1);
}

int ex_journal_write(struct exec *ex)
{
	return flush_journal(ex, 0);
}

/* --- Lua state of the run ------------------------------------------------------------ */

static int step_known(void *ud, size_t index)
{
	(void)ud;
	(void)index;
	return 1;       /* during a run, steps.X is always there: pending or done */
}

struct rb_render ex_renderer(struct exec *ex, struct rb_diags *d)
{
	struct rb_render r = {
		.rb = ex->rb, .box = ex->box, .scope = ex->scope, .secrets_known = 1,
		.item_known = 1, .output_known = 1, .step_known = step_known,
		.ms = RB_EXPR_MS_DEFAULT, .d = d,
	};
	return r;
}

/*
 * steps[id] = {status, attempts, output, outputs, error} in the engine's table; -1 when
 * that would pass the Lua memory limit (steps[id] is unchanged then: the caller
 * fails the step and records that with ex_publish_failed).
 */
int ex_publish(struct exec *ex, size_t i)
{
	struct srun *sr = &ex->s[i];
	json_t *v = json_object();
	json_object_set_new_nocheck(v, "status", json_string_nocheck(ex_status_names[sr->status]));
	json_object_set_new_nocheck(v, "attempts", json_integer(sr->attempts));
	if (sr->output)
		json_object_set(v, "output", sr->output);
	if (sr->outputs)
		json_object_set(v, "outputs", sr->outputs);
	if (sr->error) {
		char *e = ex_redact(ex, sr->error, strlen(sr->error), NULL);
		json_object_set_new(v, "error", json_string(e));
		free(e);
	}
	int r = rb_luabox_ref_set_json(ex->box, ex->steps_ref, ex->rb->steps[i]->id, v, 0);
	json_decref(v);
	return r;
}

/*
 * The memory limit was reached while recording step i (what: which part, or
 * NULL): it failed, and its error says so at its position.  steps[id] says
 * failed, without its output: the record is small and may take the box's
 * spare, so that no expression reads what the step was before.  The caller
 * fails the run, whatever continue_on_error says.
 */
void ex_publish_failed(struct exec *ex, size_t i, const char *what)
{
	struct srun *sr = &ex->s[i];
	const struct rb_step *st = ex->rb->steps[i];
	char *e = rb_xasprintf("%s:%d:%d: memory limit of %zu MiB exceeded while recording step "
			       "'%s'%s%s", ex->rb->file, st->node->line, st->node->col,
			       rb_luabox_mem_mib(ex->box), st->id, what ? " " : "", what ? what : "");
	if (sr->error) {
		char *both = rb_xasprintf("%s (and before that: %s)", e, sr->error);
		free(e);
		e = both;
	}
	free(sr->error);
	sr->error = e;
	sr->status = S_FAILED;
	json_decref(sr->outputs);
	sr->outputs = NULL;
	json_t *v = json_pack("{s:s, s:i}", "status", "failed", "attempts", sr->attempts);
	rb_luabox_ref_set_json(ex->box, ex->steps_ref, st->id, v, 1);
	json_decref(v);
}

/*
 * Secrets are redacted by value wherever they appear; a value this short
 * would be found inside ordinary words, and hiding those would garble what
 * the run writes.  So it is refused.
 */
enum { SECRET_MIN_LEN = 4, SECRET_FILE_MAX = 1 << 20 };

static int check_secret(struct exec *ex, const struct rb_secret *s, char **value, size_t len)
{
	if (len >= SECRET_MIN_LEN)
		return 0;
	free(*value);
	*value = NULL;
	return rb_error_at(ex->d, s->key, "secret '%s' is shorter than %d characters: too short "
			   "to be kept out of the output", s->name, SECRET_MIN_LEN);
}

/*
 * A secret's value and its length.  A file's is kept whole, NUL bytes and all
 * (redaction, the HMAC and Lua take its length), or refused: larger than
 * SECRET_FILE_MAX, or not UTF-8 (a run's values are text; it would have no
 * value at all).
 */
static int read_secret(struct exec *ex, const struct rb_secret *s, char **out, size_t *outlen)
{
	if (ex->o->recorded) {          /* a simulation sees what the log saw */
		*out = rb_xstrdup(RB_SECRET_MASK);
		*outlen = strlen(*out);
		return 0;
	}
	if (s->env) {
		const char *v = getenv(s->env);
		if (!v)
			return rb_error_at(ex->d, s->key, "secret '%s': environment variable %s "
					   "is not set", s->name, s->env);
		*out = rb_xstrdup(v);
		*outlen = strlen(v);
		return check_secret(ex, s, out, *outlen);
	}
	char *buf = NULL, *err = NULL;
	size_t len, bad;
	if (rb_read_file(s->file, SECRET_FILE_MAX, &buf, &len, &err) < 0) {
		rb_error_at(ex->d, s->key, "secret '%s': %s", s->name, err);
		free(err);
		return -1;
	}
	if (len > SECRET_FILE_MAX) {
		OPENSSL_cleanse(buf, len);
		free(buf);
		return rb_error_at(ex->d, s->key, "secret '%s': %s is larger than %d MiB", s->name,
				   s->file, SECRET_FILE_MAX >> 20);
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	if ((bad = rb_utf8_check(buf, len)) < len) {
		OPENSSL_cleanse(buf, len);
		free(buf);
		return rb_error_at(ex->d, s->key, "secret '%s': %s is not UTF-8 text (byte %zu is "
				   "not): give a binary secret encoded, in base64 say", s->name,
				   s->file, bad + 1);
	}
	*out = buf;
	*outlen = len;
	return check_secret(ex, s, out, len);
}

/* The audit proves which value a secret had by its HMAC (audit.h), never by the value. */
static void secret_hmac(struct exec *ex, const char *name, const char *v, size_t len)
{
	unsigned char k[32];
	char hex[65];
	if (!ex->key || rb_audit_key_hmac_key(ex->key, k) < 0)
		return;
	int ok = rb_hmac_hex(k, sizeof(k), v, len, hex) == 0;
	OPENSSL_cleanse(k, sizeof(k));
	if (ok)
		json_object_set_new(ex->secret_hmacs, name, json_pack("{s:s}", "hmac_sha256", hex));
}

struct secret_value {
	int ref;
	const char *name, *value;
	size_t len;
};

/* secrets[name] = value in the table behind the scope's; protected: it allocates. */
static int set_secret_protected(lua_State *L)
{
	const struct secret_value *sv = lua_touserdata(L, 1);
	lua_rawgeti(L, LUA_REGISTRYINDEX, sv->ref);
	lua_pushlstring(L, sv->value, sv->len);
	lua_setfield(L, -2, sv->name);
	return 0;
}

/*
 * Secret i, read now, once a run: its value is registered with the redactor
 * before it reaches the scope, so that nothing holding it can be printed or
 * journalled unredacted.  Its HMAC goes to run_started (or run_resumed) when
 * it is read as the run starts, else to a secret_read record now.
 */
int ex_take_secret(struct exec *ex, size_t i, const char *step)
{
	const struct rb_secret *s = &ex->rb->secrets[i];
	char *v = NULL;
	size_t len = 0;
	if (read_secret(ex, s, &v, &len) < 0)
		return -1;
	rb_redactor_add_secret(ex->redactor, v, len);
	secret_hmac(ex, s->name, v, len);
	lua_State *L = rb_luabox_state(ex->box);
	struct secret_value sv = {ex->secrets_ref, s->name, v, len};
	lua_pushcfunction(L, set_secret_protected);
	lua_pushlightuserdata(L, &sv);
	int rc = lua_pcall(L, 1, 0, 0) == LUA_OK ? 0 : -1;
	OPENSSL_cleanse(v, len);
	free(v);
	if (rc < 0) {
		lua_pop(L, 1);
		return rb_error_at(ex->d, s->key, "memory limit of %zu MiB exceeded while setting "
				   "secret '%s'", rb_luabox_mem_mib(ex->box), s->name);
	}
	ex->secret_read[i] = 1;
	if (ex->journal) {
		json_t *h = json_object_get(json_object_get(ex->secret_hmacs, s->name),
					    "hmac_sha256");
		json_t *rec = json_pack("{s:s, s:s, s:O?}", "type", "secret_read", "secret",
					s->name, "hmac_sha256", h);
		if (step)
			json_object_set_new(rec, "step", json_string(step));
		ex_journal(ex, rec);
	}
	return 0;
}

/*
 * Read secret i for step (NULL: an expression that reached the secrets table
 * without naming it); -1 with *err, "FILE:LINE:COL: secret ...", at its
 * declaration, when it cannot be.
 */
static int take_secret_for(struct exec *ex, size_t i, const char *step, char **err)
{
	struct rb_diags d, *keep = ex->d;
	rb_diags_init(&d, ex->rb->file, NULL, 0);
	ex->d = &d;             /* read_secret reports to ex->d */
	int rc = ex_take_secret(ex, i, step);
	ex->d = keep;
	if (rc < 0) {
		const struct rb_diag *e = d.n ? &d.v[0] : NULL;
		*err = e ? rb_xasprintf("%s:%d:%d: %s", ex->rb->file, e->line, e->col, e->msg)
			 : rb_xasprintf("secret '%s' cannot be read", ex->rb->secrets[i].name);
	}
	rb_diags_release(&d);
	return rc;
}

int ex_read_secrets(struct exec *ex, size_t i, unsigned what, char **err)
{
	const struct rb_step *st = ex->rb->steps[i];
	for (size_t k = 0; st->secrets && k < ex->rb->nsecrets; k++)
		if ((st->secrets[k] & what) && !ex->secret_read[k] &&
		    take_secret_for(ex, k, st->id, err) < 0)
			return -1;
	return 0;
}

/*
 * __index of the table behind the scope's read-only secrets: a declared
 * secret that no expression names (_ENV.secrets.X) is read when it is
 * reached, or the expression fails: never a silent nil.
 */
int ex_secrets_index(lua_State *L)
{
	struct exec *ex = lua_touserdata(L, lua_upvalueindex(1));
	const char *name = lua_tostring(L, 2);
	for (size_t k = 0; name && k < ex->rb->nsecrets; k++) {
		if (strcmp(ex->rb->secrets[k].name, name) || ex->secret_read[k])
			continue;
		char *err = NULL;
		if (take_secret_for(ex, k, NULL, &err) < 0) {
			lua_pushstring(L, err);
			free(err);
			return lua_error(L);
		}
		lua_rawget(L, 1);
		return 1;
	}
	return 0;
}
