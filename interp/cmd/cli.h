/*
 * What the subcommands share: the exit statuses, the command table entry, and
 * loading a runbook file with its diagnostics printed.  Only the command
 * layer (interp/cmd/) includes this: the engine's include path lacks it.
 */
#ifndef RB_CLI_H
#define RB_CLI_H

#include <stdio.h>
#include <time.h>

#include <jansson.h>

struct rb_runbook;
struct rb_redactor;

/* The exit statuses, documented in docs/cli.md. */
enum rb_exit {
	RB_EXIT_OK = 0,
	RB_EXIT_FAILED = 1,     /* a run failed, or a file could not be read */
	RB_EXIT_INVALID = 2,    /* invalid runbook, params or command line */
	RB_EXIT_PAUSED = 3,     /* a run waits at an approval gate */
	RB_EXIT_WINDOW = 4,     /* a run refused or stopped by its maintenance window */
	RB_EXIT_LOCKED = 5,     /* a scheduled run (--slot) found its lock held */
	RB_EXIT_PLAN_DIFFERS = 6, /* run --plan: the plan is not the one reviewed */
	RB_EXIT_SIGHUP = 129,
	RB_EXIT_SIGINT = 130,
	RB_EXIT_SIGTERM = 143,
};

struct rb_command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
	const char *usage;      /* printed by CMD --help */
};

extern const char *const rb_version;

/* runbook --version, with the libraries' versions. */
void rb_print_version(FILE *f);

int cmd_validate(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_graph(int argc, char **argv);
int cmd_actions(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_lint(int argc, char **argv);
int cmd_schedule(int argc, char **argv);

/*
 * Print "runbook: error: ..." on stderr, its control characters shown, not
 * obeyed (util.h: messages quote values).
 */
void rb_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, and return RB_EXIT_INVALID (usage errors). */
int rb_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print the usage text of a command to f (main.c has the table). */
void rb_print_usage(const char *cmd, FILE *f);

/*
 * Read and validate path, printing its diagnostics to stderr.  Returns an
 * exit status; on RB_EXIT_OK *out is the runbook.
 */
int rb_cli_load(const char *path, struct rb_runbook **out);
/*
 * Write buf[0, len) (a rendered plan) to f redacted by with (a probe's
 * redactor, which knows the secrets), or when with is NULL by the runbook's
 * redact: patterns (e-mail addresses and phone numbers unless pii: false),
 * as a run applies them to what it prints.  0, or -1 when f fails.
 */
int rb_cli_write_redacted(const struct rb_runbook *rb, const struct rb_redactor *with,
			  const char *buf, size_t len, FILE *f);



struct rb_exec_opts;
struct rb_diags;
/*
 * The options run and resume share (jobs, state-dir, output, lock-timeout):
 * 1 when name was one and val is set in o, 0 when it is not one of them,
 * -1 after a usage error.
 */
int rb_exec_option(const char *cmd, const char *name, const char *val, struct rb_exec_opts *o);
/* Run rb (new or resumed, as o says) with signals caught; an exit status. */
int rb_cli_execute(struct rb_runbook *rb, struct rb_exec_opts *o, struct rb_diags *d);
/*
 * The runbook's maintenance window, before a run or a resume (cmd_run.c):
 * inside it, o gets its close; outside it, RB_EXIT_WINDOW after saying when
 * the next opens, unless ignore (--ignore-window: o gets the record of who
 * overrode it, which *note keeps: the caller frees it).  RB_EXIT_OK otherwise.
 * rb_cli_execute calls it unless o->window_checked.
 */
int rb_cli_window(const struct rb_runbook *rb, struct rb_exec_opts *o, int ignore, json_t **note);

struct rb_audit_keyring;
struct rb_audit_head;
struct rb_audit_result;
/*
 * The keyring verifiers trust: opt (--keyring DIR or FILE), else
 * STATE_DIR/keys (state_opt: --state-dir), where the host key is.  NULL after
 * printing why it cannot be read.
 */
struct rb_audit_keyring *rb_cli_keyring(const char *opt, const char *state_opt);
/*
 * A LOG argument may be a run: its directory, or its id in the state
 * directory.  Then *path is its audit.jsonl, and the head its snapshot keeps
 * must be in it (a cut tail shows): 1 with *kept set, 0 for a plain log (or
 * a run without a snapshot yet; *path is arg), -1 (printed) when the
 * snapshot does not read.  *path is malloc'd unless -1.
 */
int rb_cli_run_log(const char *arg, const char *state, char **path, struct rb_audit_head *kept);
/* Print why the log at path did not verify: PATH:LINE: error: seq N: REASON. */
void rb_cli_verify_error(const char *path, const struct rb_audit_result *r);

/*
 * The one option parser.  Options are -x VALUE, -xVALUE, --long VALUE and
 * --long=VALUE; "--" ends them; everything else is a positional argument.
 */
struct rb_opt {
	char name;              /* short name, or 0 */
	const char *longname;
	int has_arg;
};

enum { RB_OPT_END = -1, RB_OPT_ERROR = -2, RB_OPT_ARG = -3, RB_OPT_HELP = -4 };

struct rb_optparse {
	int argc;
	char **argv;
	int i;
	int dashdash;
	const char *cmd;
	const char *val;        /* the option's value, or the positional argument */
};

void rb_opt_init(struct rb_optparse *p, const char *cmd, int argc, char **argv);
/* Index of the option in opts, or one of RB_OPT_*; errors are printed. */
int rb_opt_next(struct rb_optparse *p, const struct rb_opt *opts);

/* schedule due, install, uninstall (cmd_schedule_due.c, cmd_schedule_install.c) */
int cmd_schedule_due(int argc, char **argv);
int cmd_schedule_install(int argc, char **argv);
int cmd_schedule_uninstall(int argc, char **argv);
struct rb_strv;
/* arg's runbook files into files (cmd_schedule.c): arg, or a DIR's *.yaml and *.yml sorted. */
int rb_cli_schedule_files(const char *arg, struct rb_strv *files);
/* The latest start of rb's schedule at or before now (its window filters it), or -1. */
time_t rb_cli_latest_slot(const struct rb_runbook *rb, time_t now);
/* FILE.params, the params of a scheduled run of FILE (malloc'd). */
char *rb_cli_params_file(const char *file);
/* This program's file, resolved (readlink of /proc/self/exe), or "runbook" to find on PATH. */
const char *rb_cli_self(void);
#endif
