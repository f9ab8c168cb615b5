/*
 * runbook audit verify|head|show: check signed audit logs, print the head
 * to publish, and show a log as a timeline.  Exit 0 when all is well, 1 when
 * a log does not verify or cannot be read, 2 for a bad command line.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "audit.h"
#include "cli.h"
#include "redact.h"
#include "rundir.h"
#include "runstate.h"
#include "util.h"

/* After rb_opt_next gave HELP or ERROR (which it printed). */
static int help_or_error(int k)
{
	if (k == RB_OPT_HELP) {
		rb_print_usage("audit", stdout);
		return RB_EXIT_OK;
	}
	return RB_EXIT_INVALID;
}

/* Each file out (a command's output, or a list of them) says it holds; -1 after a message. */
static int check_files(const char *dir, const char *log, size_t line, const json_t *out,
		       json_t *seen)
{
	static const char *const keys[] = {"stdout_rest", "stderr_rest"};
	int rc = 0;
	size_t i;
	json_t *v;
	json_array_foreach(out, i, v)
		rc |= check_files(dir, log, line, v, seen);
	for (size_t k = 0; k < 2; k++) {
		const json_t *rest = json_object_get(out, keys[k]);
		const char *file = json_string_value(json_object_get(rest, "file"));
		const char *sha = json_string_value(json_object_get(rest, "sha256"));
		if (!file || !sha || json_object_get(seen, file))
			continue;       /* a for_each item's is in two records */
		json_object_set_new(seen, file, json_true());
		char hex[65], *path = rb_xasprintf("%s/%s", dir, file);
		/* output/NAME, nothing else: the log does not send a verifier elsewhere. */
		const char *name = strncmp(file, RB_RUN_OUTPUT "/", sizeof(RB_RUN_OUTPUT)) ? NULL
				   : file + sizeof(RB_RUN_OUTPUT);
		if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) {
			fprintf(stderr, "%s:%zu: error: names the file '%s', which is not in the run's "
				"%s directory\n", log, line, file, RB_RUN_OUTPUT);
			rc = -1;
		} else if (rb_sha256_file(path, hex) < 0) {
			fprintf(stderr, "%s: error: %s, and %s:%zu binds it\n", path,
				errno == ELOOP ? "a symbolic link (not followed)" : errno == EINVAL
				? "not a regular file" : strerror(errno), log, line);
			rc = -1;
		} else if (strcmp(hex, sha)) {
			fprintf(stderr, "%s: error: its SHA-256 is not the one %s:%zu records: the file "
				"was changed\n", path, log, line);
			rc = -1;
		}
		free(path);
	}
	return rc;
}

/*
 * The files of a run's directory that its log binds (the output a command wrote past what a
 * step keeps: stdout_rest, stderr_rest) hold what it says.  -1 after a message.
 */
static int verify_files(const char *log, size_t *nfiles)
{
	FILE *f = fopen(log, "r");
	if (!f)
		return 0;       /* rb_audit_verify read it: it said so */
	char *dir = rb_xstrdup(log), *slash = strrchr(dir, '/'), *buf = NULL;
	size_t cap = 0, line = 0;
	ssize_t n;
	int rc = 0;
	json_t *seen = json_object();
	if (slash)
		*slash = '\0';
	while ((n = getline(&buf, &cap, f)) > 0) {
		line++;
		json_t *rec = json_loadb(buf, (size_t)n, JSON_ALLOW_NUL, NULL);
		json_t *out = rb_record_value(rec, "output");
		if (out)
			rc |= check_files(slash ? dir : ".", log, line, out, seen);
		json_decref(out);
		json_decref(rec);
	}
	*nfiles = json_object_size(seen);
	json_decref(seen);
	free(buf);
	free(dir);
	fclose(f);
	return rc;
}

static int verify(int argc, char **argv)
{
	static const struct rb_opt opts[] = {
		{'k', "keyring", 1}, {0, "state-dir", 1}, {0, "head", 1}, {0, "shared", 0},
		{0, "allow-open", 0}, {0, NULL, 0}};
	struct rb_optparse p;
	const char *ring = NULL, *state = NULL;
	const char **logs = rb_xcalloc((size_t)argc, sizeof(*logs));
	struct rb_audit_verify_opts o = {0};
	struct rb_audit_head head;
	int n = 0, k, rc = RB_EXIT_OK;
	rb_opt_init(&p, "audit verify", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		if (k < 0 && k != RB_OPT_ARG) {
			free(logs);
			return help_or_error(k);
		}
		switch (k) {
		case RB_OPT_ARG: logs[n++] = p.val; break;
		case 0: ring = p.val; break;
		case 1: state = p.val; break;
		case 2:
			if (rb_audit_head_parse(p.val, &head) < 0) {
				free(logs);
				return rb_usage_error("audit verify: --head '%s' is not SEQ:SHA256 "
						      "(as 'runbook audit head' prints it)", p.val);
			}
			o.expected_head = &head;
			break;
		case 3: o.shared = 1; break;
		default: o.allow_open = 1; break;
		}
	}
	if (!n)
		rc = rb_usage_error("audit verify: no log given (usage: runbook audit verify "
				    "LOG... [--keyring DIR])");
	else if (o.expected_head && n > 1)
		rc = rb_usage_error("audit verify: --head is the head of one log; give one LOG");
	struct rb_audit_keyring *kr = rc == RB_EXIT_OK ? rb_cli_keyring(ring, state) : NULL;
	if (rc == RB_EXIT_OK && !kr)
		rc = RB_EXIT_FAILED;
	o.keyring = kr;
	for (int i = 0; rc != RB_EXIT_INVALID && kr && i < n; i++) {
		struct rb_audit_result r;
		struct rb_audit_head kept;
		char *path = NULL;
		int ok = rb_cli_run_log(logs[i], state, &path, &kept);
		if (ok < 0) {
			rc = RB_EXIT_FAILED;
			continue;
		}
		const struct rb_audit_head *given = o.expected_head;
		if (ok > 0 && !given)
			o.expected_head = &kept;
		int v = rb_audit_verify(path, &o, &r);
		o.expected_head = given;
		size_t nfiles = 0;
		if (v < 0) {
			rc = RB_EXIT_FAILED;
			rb_cli_verify_error(path, &r);
		} else if (strcmp(path, logs[i]) && verify_files(path, &nfiles) < 0) {
			rc = RB_EXIT_FAILED;    /* a run directory: its files too */
		} else {
			printf("%s: ok: %" PRIu64 " record%s, %" PRIu64 " run%s", path, r.records,
			       r.records == 1 ? "" : "s", r.runs, r.runs == 1 ? "" : "s");
			if (r.open_runs)
				printf(" (%" PRIu64 " not closed)", r.open_runs);
			printf(", head %" PRIu64 ":%s", r.head.seq, r.head.sha256);
			if (nfiles)
				printf(", %zu output file%s", nfiles, nfiles == 1 ? "" : "s");
			putchar('\n');
		}
		free(path);
	}
	rb_audit_keyring_free(kr);
	free(logs);
	return rc;
}

static int head(int argc, char **argv)
{
	static const struct rb_opt opts[] = {{0, NULL, 0}};
	struct rb_optparse p;
	const char *log = NULL;
	int k;
	rb_opt_init(&p, "audit head", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		if (k != RB_OPT_ARG)
			return help_or_error(k);
		if (log)
			return rb_usage_error("audit head: one log at a time");
		log = p.val;
	}
	if (!log)
		return rb_usage_error("audit head: no log given (usage: runbook audit head LOG)");
	struct rb_audit_head h;
	struct rb_audit_torn torn;
	char *err = NULL;
	if (rb_audit_head(log, &h, &torn, &err) < 0) {
		rb_cli_error("%s", err);
		free(err);
		return RB_EXIT_FAILED;
	}
	printf("%" PRIu64 ":%s\n", h.seq, h.sha256);
	if (torn.length)
		fprintf(stderr, "runbook: warning: %s ends in a torn tail after this record "
			"(%" PRIu64 " bytes at offset %" PRIu64 ")\n", log, torn.length, torn.offset);
	return RB_EXIT_OK;
}

/* The HMAC run_started records for a secret, of the value on standard input. */
static int hmac(int argc, char **argv)
{
	static const struct rb_opt opts[] = {{0, "audit-key", 1}, {0, "state-dir", 1},
					     {0, NULL, 0}};
	struct rb_optparse p;
	const char *keyfile = NULL, *state = NULL;
	int k;
	rb_opt_init(&p, "audit hmac", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		if (k < 0)
			return k == RB_OPT_ARG ? rb_usage_error("audit hmac: the value is read on "
				"standard input, not given as an argument") : help_or_error(k);
		if (k == 0)
			keyfile = p.val;
		else
			state = p.val;
	}
	struct rb_audit_key *key = NULL;
	char *err = NULL, *v = NULL;
	size_t len = 0;
	unsigned char hk[32];
	char hex[65];
	int rc = RB_EXIT_FAILED;
	/* The key runs sign with (as rb_audit_key_default finds it, but never made here). */
	const char *env = getenv("RUNBOOK_AUDIT_KEY");
	char *path = keyfile ? rb_xstrdup(keyfile) : env && *env ? rb_xstrdup(env)
		     : rb_xasprintf("%s/%s", rb_state_dir(state), RB_AUDIT_HOST_KEY);
	if (rb_audit_key_load(path, &key, &err) < 0) {
		fprintf(stderr, "runbook: error: audit key: %s\n", err);
	} else if (!rb_audit_key_can_sign(key)) {
		fprintf(stderr, "runbook: error: %s is a public key: the HMAC needs the private "
			"key\n", path);
	} else if (rb_read_file("/dev/stdin", 1 << 20, &v, &len, &err) < 0) {
		fprintf(stderr, "runbook: error: cannot read the value: %s\n", err);
	} else {
		if (len && v[len - 1] == '\n')
			len--;
		if (rb_audit_key_hmac_key(key, hk) == 0 && rb_hmac_hex(hk, 32, v, len, hex) == 0) {
			printf("%s\n", hex);
			rc = RB_EXIT_OK;
		}
		OPENSSL_cleanse(hk, sizeof(hk));
		OPENSSL_cleanse(v, len);
	}
	free(v);
	free(err);
	free(path);
	rb_audit_key_free(key);
	return rc;
}

static int show(int argc, char **argv)
{
	static const struct rb_opt opts[] = {{'f', "format", 1}, {0, NULL, 0}};
	struct rb_optparse p;
	const char *log = NULL, *format = "text";
	int k;
	rb_opt_init(&p, "audit show", argc, argv);
	while ((k = rb_opt_next(&p, opts)) != RB_OPT_END) {
		if (k < 0 && k != RB_OPT_ARG)
			return help_or_error(k);
		if (k == 0) {
			format = p.val;
		} else {
			if (log)
				return rb_usage_error("audit show: one log at a time");
			log = p.val;
		}
	}
	if (!log)
		return rb_usage_error("audit show: no log given (usage: runbook audit show LOG)");
	if (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "markdown"))
		return rb_usage_error("audit show: unknown format '%s' (expected text, json or "
				      "markdown)", format);
	FILE *f = strcmp(log, "-") ? fopen(log, "re") : stdin;
	if (!f) {
		fprintf(stderr, "runbook: error: cannot open %s: %m\n", log);
		return RB_EXIT_FAILED;
	}
	char *err = NULL;
	int rc = rb_audit_show(f, stdout, format, &err);
	if (f != stdin)
		fclose(f);
	if (rc < 0) {
		fprintf(stderr, "%s: error: %s\n", log, err);
		free(err);
		return RB_EXIT_FAILED;
	}
	return RB_EXIT_OK;
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} subs[] = {{"verify", verify}, {"head", head}, {"show", show}, {"hmac", hmac}};

int cmd_audit(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		rb_print_usage("audit", argc < 2 ? stderr : stdout);
		return argc < 2 ? RB_EXIT_INVALID : RB_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(*subs); i++)
		if (!strcmp(argv[1], subs[i].name))
			return subs[i].fn(argc - 1, argv + 1);
	return rb_usage_error("audit: unknown subcommand '%s' (expected verify, head, show or hmac)",
			      argv[1]);
}
