/*
 * runbook runs [--state-dir DIR] [--keyring DIR] and runbook status RUN_ID
 * [--state-dir DIR] [--format text|json] [--keyring DIR]: the runs kept in the
 * state directory, newest first, and one run's steps, each checked against
 * its signatures as a resume would check it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "cli.h"
#include "rundir.h"
#include "runstate.h"
#include "util.h"

/*
 * A run id as rb_run_id makes them, YYYYMMDD-HHMMSS-xxxx: the only names the
 * engine gives a run's directory.  Anything else in runs/ was put there by
 * someone else, and its name may hold escape sequences or newlines.
 */
static int is_run_id(const char *s)
{
	static const char form[] = "99999999-999999-xxxx";
	for (size_t i = 0; i < sizeof(form) - 1; i++) {
		char c = s[i];
		if (form[i] == '9' ? c < '0' || c > '9'
		    : form[i] == 'x' ? !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))
		    : c != form[i])
			return 0;
	}
	return s[sizeof(form) - 1] == '\0';
}

/* s (NULL: "?") for a terminal, from files that someone else may have put in the state directory (rb_visible). */
static char *printable(const char *s)
{
	s = s ? s : "?";
	return rb_visible(s, strlen(s), 0);
}

/*
 * The keys a run's signatures are checked with: --keyring's, and the audit key
 * a run here would sign with (RUNBOOK_AUDIT_KEY, else the state directory's
 * host key if there is one: looking never creates it).  NULL after a message.
 */
static struct rb_audit_keyring *trusted(const char *keyring, const char *state)
{
	struct rb_audit_keyring *kr = NULL;
	struct rb_audit_key *k = NULL;
	char *err = NULL, *host = rb_xasprintf("%s/%s", state, RB_AUDIT_HOST_KEY);
	const char *env = getenv("RUNBOOK_AUDIT_KEY");
	const char *key = env && *env ? env : access(host, F_OK) == 0 ? host : NULL;
	int ok = keyring ? rb_audit_keyring_load(keyring, &kr, &err) == 0
			 : (kr = rb_audit_keyring_new()) != NULL;
	if (ok && key)
		ok = rb_audit_key_load(key, &k, &err) == 0 &&
		     rb_audit_keyring_add(kr, k, key, &err) == 0;
	rb_audit_key_free(k);
	free(host);
	if (!ok) {
		rb_cli_error("%s", err ? err : "out of memory");
		free(err);
		rb_audit_keyring_free(kr);
		return NULL;
	}
	return kr;
}

int cmd_runs(int argc, char **argv)
{
	static const struct rb_opt opts[] = {{0, "state-dir", 1}, {0, "keyring", 1}, {0, NULL, 0}};
	struct rb_optparse p;
	const char *state_opt = NULL, *keyring = NULL;
	int k;
	rb_opt_init(&p, "runs", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		if (k == RB_OPT_ERROR)
			return RB_EXIT_INVALID;
		if (k == RB_OPT_HELP) {
			rb_print_usage("runs", stdout);
			return RB_EXIT_OK;
		}
		if (k == RB_OPT_ARG)
			return rb_usage_error("runs: unexpected argument '%s'", p.val);
		if (k == 0)
			state_opt = p.val;
		else
			keyring = p.val;
	}
	const char *state = rb_state_dir(state_opt);
	char **ids, *err = NULL, *first_unverified = NULL;
	size_t n, nunverified = 0;
	if (rb_runs_list(state, &ids, &n, &err) < 0) {
		rb_cli_error("%s", err);
		free(err);
		return RB_EXIT_FAILED;
	}
	struct rb_audit_keyring *trust = trusted(keyring, state);
	if (!trust) {
		rb_runs_free(ids, n);
		return RB_EXIT_FAILED;
	}
	for (size_t i = 0; i < n; i++) {
		if (!is_run_id(ids[i])) {
			char *name = printable(ids[i]), *where = printable(state);
			fprintf(stderr, "runbook: warning: %s/runs/%s is not a run (its name is not a run "
				"id): skipped\n", where, name);
			free(name);
			free(where);
			continue;
		}
		char *dir = rb_run_dir(state, ids[i]), *unverified = NULL;
		json_t *st = rb_run_state(dir, trust, &unverified, &err);
		if (!st) {
			/* The reason may quote the run's files (a parser's "near '...'"). */
			char *why = printable(err);
			printf("%-22s %-12s (%s)\n", ids[i], "unreadable", why);
			free(why);
			free(err);
			err = NULL;
		} else {
			/* Counted as the run's last line counts them (runstate.h). */
			struct rb_run_counts c;
			rb_run_state_counts(st, &c);
			char *counted = rb_run_counts_text(&c);
			char *status = printable(json_string_value(json_object_get(st, "status")));
			char *name = printable(json_string_value(json_object_get(st, "runbook")));
			printf("%-22s %-12s %-24s %s%s\n", ids[i], status, name, counted,
			       unverified ? " (not verified)" : "");
			free(counted);
			free(status);
			free(name);
			json_decref(st);
		}
		if (unverified && !nunverified++)
			first_unverified = printable(unverified);      /* it quotes a key id */
		free(unverified);
		free(dir);
	}
	if (nunverified)
		fprintf(stderr, "runbook: warning: %zu run%s not verified, as %s (trust the key "
			"that signed %s with --keyring DIR)\n", nunverified,
			nunverified == 1 ? " is" : "s are", first_unverified,
			nunverified == 1 ? "it" : "them");
	free(first_unverified);
	rb_audit_keyring_free(trust);
	rb_runs_free(ids, n);
	return RB_EXIT_OK;
}

int cmd_status(int argc, char **argv)
{
	static const struct rb_opt opts[] = {{0, "state-dir", 1}, {'f', "format", 1},
					     {0, "keyring", 1}, {0, NULL, 0}};
	struct rb_optparse p;
	const char *state_opt = NULL, *id = NULL, *format = "text", *keyring = NULL;
	int k;
	rb_opt_init(&p, "status", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		if (k == RB_OPT_ERROR)
			return RB_EXIT_INVALID;
		if (k == RB_OPT_HELP) {
			rb_print_usage("status", stdout);
			return RB_EXIT_OK;
		}
		if (k == RB_OPT_ARG) {
			if (id)
				return rb_usage_error("status: one run at a time");
			id = p.val;
		} else if (k == 0) {
			state_opt = p.val;
		} else if (k == 1) {
			format = p.val;
		} else {
			keyring = p.val;
		}
	}
	if (!id)
		return rb_usage_error("status: no run given (usage: runbook status RUN_ID)");
	if (strcmp(format, "text") && strcmp(format, "json"))
		return rb_usage_error("status: unknown format '%s' (expected text or json)", format);
	if (strchr(id, '/') || id[0] == '.')
		return rb_usage_error("status: '%s' is not a run id", id);
	struct rb_audit_keyring *trust = trusted(keyring, rb_state_dir(state_opt));
	if (!trust)
		return RB_EXIT_FAILED;
	char *dir = rb_run_dir(rb_state_dir(state_opt), id), *err = NULL, *unverified = NULL;
	json_t *st = rb_run_state(dir, trust, &unverified, &err);
	free(dir);
	rb_audit_keyring_free(trust);
	if (!st) {
		rb_cli_error("run %s: %s", id, err);
		free(err);
		return RB_EXIT_FAILED;
	}
	struct rb_run_counts c;
	rb_run_state_counts(st, &c);
	json_object_set_new(st, "counts", json_pack("{s:i, s:i, s:i, s:i, s:i, s:i}", "succeeded",
		(int)c.succeeded, "failed", (int)c.failed, "interrupted", (int)c.interrupted,
		"skipped", (int)c.skipped, "not_run", (int)c.not_run, "running", (int)c.running));
	json_object_set_new(st, "verified", json_boolean(!unverified));
	if (unverified) {
		json_object_set_new(st, "not_verified", json_string(unverified));
		char *why = printable(unverified);      /* it quotes a key id */
		fprintf(stderr, "runbook: warning: run %s is not verified, as %s (trust the key that "
			"signed it with --keyring DIR)\n", id, why);
		free(why);
		free(unverified);
	}
	if (!strcmp(format, "json")) {
		json_dumpf(st, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
	} else {
		/* What the run's files say, shown safely: they may not be the engine's. */
		char *name = printable(json_string_value(json_object_get(st, "runbook")));
		char *status = printable(json_string_value(json_object_get(st, "status")));
		char *counted = rb_run_counts_text(&c);
		printf("run %s: %s, %s: %s%s\n", id, name, status, counted,
		       json_is_true(json_object_get(st, "torn")) ? " (its journal ends torn)" : "");
		free(counted);
		free(name);
		free(status);
		size_t i;
		json_t *s;
		json_array_foreach(json_object_get(st, "steps"), i, s) {
			const char *e = json_string_value(json_object_get(s, "error"));
			json_t *ms = json_object_get(s, "duration_ms");
			char *step = printable(json_string_value(json_object_get(s, "step")));
			char *sst = printable(json_string_value(json_object_get(s, "status")));
			printf("  %-28s %-17s %2lld attempt%s", step, sst,
			       (long long)json_integer_value(json_object_get(s, "attempts")),
			       json_integer_value(json_object_get(s, "attempts")) == 1 ? " " : "s");
			free(step);
			free(sst);
			if (ms)
				printf(" %8.1fs", (double)json_integer_value(ms) / 1000.0);
			if (e) {        /* it may quote values: shown, not obeyed */
				char *shown = rb_visible(e, strlen(e), RB_VIS_TAB);
				printf("  %s", shown);
				free(shown);
			}
			putchar('\n');
		}
	}
	json_decref(st);
	return RB_EXIT_OK;
}
