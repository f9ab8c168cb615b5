/*
 * runbook: the command table, global options and dispatch; nothing else.
 */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

#ifndef RB_VERSION
#define RB_VERSION "0.1.0"
#endif

const char *const rb_version = RB_VERSION;

const struct rb_command rb_commands[] = {
	{"validate", cmd_validate, "check runbooks and report every problem",
	 "usage: runbook validate [-q] FILE...\n"
	 "\n"
	 "Check each runbook and report every problem as FILE:LINE:COL: error: MESSAGE.\n"
	 "\n"
	 "  -q, --quiet    print nothing for valid files\n"
	 "\n"
	 "Exit status: 0 all valid, 2 a file is invalid, 1 a file cannot be read.\n"},
	{"plan", cmd_plan, "show what a run would do, without running anything",
	 "usage: runbook plan FILE [-p NAME=VALUE]... [--format text|json|markdown]\n"
	 "       runbook plan --diff OLD NEW | --base REV FILE [-p NAME=VALUE]...\n"
	 "                    [--format text|json|markdown] [--split DIR [--max-bytes N]]\n"
	 "\n"
	 "Show the steps in execution order, stage by stage, with every value that can\n"
	 "be known before the run resolved. Secrets show as ***, values that depend on\n"
	 "a step's result as <known after STEP>.\n"
	 "\n"
	 "  -p, --param NAME=VALUE   set a param (repeatable; with --diff, for both sides)\n"
	 "  -f, --format FORMAT      text (default), json or markdown\n"
	 "      --save FILE          also write the JSON plan with its SHA-256, for\n"
	 "                           run --plan\n"
	 "      --diff OLD NEW       compare the plans of two versions of a runbook:\n"
	 "                           steps added, removed, renamed, moved and changed,\n"
	 "                           destructive changes first\n"
	 "      --base REV           compare FILE with its version at git revision REV\n"
	 "      --split DIR          with --format markdown: write the diff to\n"
	 "                           DIR/part-1.md, part-2.md ... for comments\n"
	 "      --max-bytes N        the most bytes of a part (default 60000)\n"
	 "\n"
	 "Exit status: 0 ok, 2 invalid runbook or params, 1 other failure; with --diff\n"
	 "or --base: 0 no change, 1 changes, 2 an error.\n"},
	{"run", cmd_run, "run a runbook",
	 "usage: runbook run FILE [-p NAME=VALUE]... [--jobs N] [--dry-run [--probe]]\n"
	 "                    [--state-dir DIR]\n"
	 "                    [--output auto|text|json] [--lock-timeout DURATION]\n"
	 "                    [--approve STEP|all]... [--audit-key FILE] [--audit-log FILE]\n"
	 "\n"
	 "Run the steps, independent ones in parallel, recording every step's start and\n"
	 "result durably in the run's signed audit log (STATE_DIR/runs/RUN_ID/audit.jsonl).\n"
	 "\n"
	 "  -p, --param NAME=VALUE   set a param (repeatable)\n"
	 "  -j, --jobs N             steps that run at once (default 4)\n"
	 "      --dry-run            print the plan and run nothing\n"
	 "      --probe              with --dry-run: first run the steps that change\n"
	 "                           nothing, and show their results in the plan\n"
	 "      --state-dir DIR      where runs are kept (default $RUNBOOK_STATE_DIR or\n"
	 "                           ./.runbook)\n"
	 "      --output FORMAT      auto (default): the live view on a terminal, else\n"
	 "                           text; text: a line per event; json: a JSON object\n"
	 "                           per event\n"
	 "      --lock-timeout D     wait this long for the runbook's lock (default: 0s)\n"
	 "      --approve STEP       pass STEP's approval gate without asking (repeatable;\n"
	 "                           'all' passes every gate)\n"
	 "      --audit-key FILE     the key that signs the log (default\n"
	 "                           $RUNBOOK_AUDIT_KEY, else the host key\n"
	 "                           STATE_DIR/keys/host.pem, made on first use)\n"
	 "      --audit-log FILE     also append the records to FILE, a log shared by runs\n"
	 "      --plan FILE          refuse to start (exit 6) unless the plan is the one\n"
	 "                           saved in FILE by plan --save\n"
	 "      --ignore-window      start outside the runbook's window (recorded)\n"
	 "      --slot TIME          a scheduled start (RFC 3339 UTC): claimed in the state\n"
	 "                           directory, never run twice (docs/schedule.md)\n"
	 "\n"
	 "A gate not approved in advance is asked on the terminal; without one, the run\n"
	 "pauses there (exit 3) and prints the resume command.\n"
	 "\n"
	 "Exit status: 0 succeeded, 1 failed, 2 invalid runbook or params, 3 paused at a\n"
	 "gate, 4 outside its window or stopped at its close, 5 a --slot run's lock held,\n"
	 "129/130/143 interrupted by SIGHUP/SIGINT/SIGTERM.\n"},
	{"resume", cmd_resume, "continue a run that failed, was interrupted, crashed or paused",
	 "usage: runbook resume RUN_ID [--rerun STEP]... [--skip STEP]... [--from STEP] [--force]\n"
	 "                       [--jobs N]\n"
	 "                       [--state-dir DIR] [--output auto|text|json] [--lock-timeout D]\n"
	 "                       [--approve STEP|all]... [--audit-key FILE] [--audit-log FILE]\n"
	 "                       [--keyring DIR]\n"
	 "\n"
	 "Continue a run where it stopped (failed, interrupted, crashed or paused at a\n"
	 "gate; --approve passes gates as for run). Steps that succeeded or were skipped keep their\n"
	 "results; failed steps run again; a step that was running when the run stopped\n"
	 "runs again if it is idempotent, else resume stops and asks for:\n"
	 "\n"
	 "      --rerun STEP         run it again (repeatable)\n"
	 "      --skip STEP          take it as done (repeatable)\n"
	 "      --from STEP          run STEP and every step after it again (also after\n"
	 "                           a run that succeeded)\n"
	 "      --force              run the runbook file even though it changed since the\n"
	 "                           run started (refused otherwise)\n"
	 "  -p, --param NAME=VALUE   give again a param the run's log holds redacted\n"
	 "      --keyring DIR        public keys trusted to have signed the run so far,\n"
	 "                           besides the audit key (a run begun with another key)\n"
	 "      --ignore-window      resume outside the runbook's window (recorded)\n"},
	{"runs", cmd_runs, "list the runs in the state directory, newest first",
	 "usage: runbook runs [--state-dir DIR] [--keyring DIR]\n"
	 "\n"
	 "One line per run: its id, status (succeeded, failed, interrupted, paused, or\n"
	 "unfinished: crashed or still running), runbook and step counts.  Each run's\n"
	 "signatures are checked with the audit key and --keyring's public keys.\n"},
	{"status", cmd_status, "show the steps of a run",
	 "usage: runbook status RUN_ID [--state-dir DIR] [--format text|json] [--keyring DIR]\n"
	 "\n"
	 "Each step of the run as its journal tells it: status, attempts, duration and\n"
	 "why it failed or was skipped.  The run's signatures are checked with the audit\n"
	 "key and --keyring's public keys.\n"},
	{"audit", cmd_audit, "verify, show and print the head of signed audit logs",
	 "usage: runbook audit verify LOG|RUN_DIR|RUN_ID... [--keyring DIR] [--head SEQ:SHA256]\n"
	 "                            [--shared]\n"
	 "                            [--allow-open] [--state-dir DIR]\n"
	 "       runbook audit head LOG\n"
	 "       runbook audit show LOG [--format text|json|markdown]\n"
	 "       runbook audit hmac [--audit-key FILE] [--state-dir DIR] < VALUE\n"
	 "\n"
	 "verify checks each record's signature, the hash chain, the seq numbers, the\n"
	 "run and that the run was closed, and names the first bad record as\n"
	 "LOG:LINE: error: seq N: REASON.\n"
	 "\n"
	 "  -k, --keyring DIR        the trusted public keys: a directory of *.pem and\n"
	 "                           *.pub files, or one key file (default:\n"
	 "                           STATE_DIR/keys)\n"
	 "      --head SEQ:SHA256    the head published when the log was written: finds\n"
	 "                           a cut tail\n"
	 "      --shared             a log of several runs (--audit-log)\n"
	 "      --allow-open         a run without its end (running, or crashed and not\n"
	 "                           resumed) is not an error\n"
	 "\n"
	 "head prints the last record's seq and the SHA-256 of its line, to publish.\n"
	 "show prints the records as a timeline, without verifying them.\n"
	 "\n"
	 "Exit status: 0 ok, 1 a log does not verify or cannot be read, 2 usage.\n"
	 "See docs/audit-format.md.\n"},
	{"replay", cmd_replay, "a run's timeline for a postmortem, from its verified audit log",
	 "usage: runbook replay RUN_ID|RUN_DIR|LOG [--format text|markdown|json] [--run ID]\n"
	 "                      [--keyring DIR] [--state-dir DIR] [--simulate [--runbook FILE]]\n"
	 "\n"
	 "Verify the run's audit log as 'runbook audit verify' does, then show what\n"
	 "happened: its sessions (started, resumed, crashed), every step with its start\n"
	 "offset, duration, status, attempts and key outputs, the failures with their\n"
	 "messages, and the approval gates with who approved them. A log that does not\n"
	 "verify shows no timeline.\n"
	 "\n"
	 "  -f, --format FORMAT      text (default), markdown (to paste into a\n"
	 "                           postmortem) or json (the whole model)\n"
	 "      --run ID             the run to show from a log of several runs\n"
	 "                           (--audit-log)\n"
	 "  -k, --keyring DIR        the trusted public keys (default: STATE_DIR/keys)\n"
	 "      --state-dir DIR      where runs are kept\n"
	 "      --simulate           run the runbook as it is now with every action's\n"
	 "                           recorded result (nothing is executed), and report\n"
	 "                           where it would take another path: a condition\n"
	 "                           that decides otherwise, other arguments, a step\n"
	 "                           added or gone\n"
	 "      --runbook FILE       with --simulate: the runbook (default: the file\n"
	 "                           the run was started from)\n"
	 "\n"
	 "Exit status: 0 shown (with --simulate: the same path), 1 the log does not\n"
	 "verify, cannot be read or does not hold the run (with --simulate: another\n"
	 "path), 2 usage or a runbook that does not load.\n"},
	{"keygen", cmd_keygen, "generate an Ed25519 key pair for signing audit logs",
	 "usage: runbook keygen --out FILE [--force]\n"
	 "\n"
	 "Write a new Ed25519 key pair: FILE, the private key (PKCS#8 PEM, mode 0600),\n"
	 "and FILE.pub, the public key to put in verifiers' keyrings. An existing FILE\n"
	 "or FILE.pub is not replaced unless --force.\n"
	 "\n"
	 "  -o, --out FILE           where to write the private key\n"
	 "      --force              replace existing files\n"},
	{"graph", cmd_graph, "draw the step graph as Graphviz dot or Mermaid",
	 "usage: runbook graph FILE [--format dot|mermaid]\n"
	 "\n"
	 "  -f, --format FORMAT      dot (default) or mermaid\n"},
	{"eval", cmd_eval, "evaluate an expression in the sandbox",
	 "usage: runbook eval [-r FILE] [-p NAME=VALUE]... [--lua] [--timeout MS] EXPRESSION\n"
	 "       runbook eval [-r FILE] [-p NAME=VALUE]... --run-tests CASES\n"
	 "\n"
	 "Evaluate a Lua expression (or with --lua a chunk) in the sandbox that runbook\n"
	 "expressions use, with the params and vars of FILE in scope, and print the value\n"
	 "as JSON. Steps have not run, so 'steps' is empty.\n"
	 "\n"
	 "  -r, --runbook FILE       the runbook whose params and vars are in scope\n"
	 "  -p, --param NAME=VALUE   set a param (repeatable)\n"
	 "      --lua                EXPRESSION is a chunk; its return value is printed\n"
	 "      --timeout MS         the deadline (default 1000)\n"
	 "      --run-tests CASES    check a file of cases (see tests/expr/)\n"},
	{"actions", cmd_actions, "list the actions and their arguments",
	 "usage: runbook actions [--format text|markdown|json]\n"},
	{"lint", cmd_lint, "report what reviewers care about beyond validity",
	 "usage: runbook lint [--output text|json] FILE...\n"
	 "\n"
	 "Validate each runbook, then warn about what a reviewer should see, each\n"
	 "warning as FILE:LINE:COL: warning: MESSAGE [ID]: a side effect without undo\n"
	 "under rollback: true (no-undo), destructive SQL without a gate\n"
	 "(destructive-sql), FLUSHALL or FLUSHDB without a gate (redis-flush), a secret\n"
	 "on a command line (secret-argv), a network step without a timeout\n"
	 "(no-timeout), an unused param, var or secret (unused-param, unused-var,\n"
	 "unused-secret), insecure: true (insecure). Silence one with lint: {ignore:\n"
	 "[ID]} on the step or at the top of the runbook.\n"
	 "\n"
	 "  -o, --output FORMAT      text (default) or json\n"
	 "\n"
	 "Exit status: 0 no warnings, 1 warnings, 2 a file is invalid or cannot be read.\n"},
	{"schedule", cmd_schedule, "list the scheduled runbooks and their next starts",
	 "usage: runbook schedule list [DIR|FILE...] [--count N] [--from TIME] [--output json]\n"
	 "\n"
	 "Each runbook with a schedule (a DIR: its *.yaml and *.yml files; default .), its\n"
	 "cron, time zone, window and lock, and its next N starts in the schedule's zone\n"
	 "and in UTC. A slot outside the runbook's window is not a start.\n"
	 "\n"
	 "  -n, --count N            how many starts (default 5, at most 1000)\n"
	 "      --from TIME          start after TIME (RFC 3339 or seconds), not now\n"
	 "                           (RUNBOOK_NOW, else the clock)\n"
	 "  -o, --output FORMAT      text (default) or json\n"
	 "\n"
	 "       runbook schedule due [--catch-up D] [--state-dir DIR] [DIR|FILE...]\n"
	 "       runbook schedule install --systemd|--cron [--dir UNITDIR]\n"
	 "               [--randomized-delay D] [--catch-up D] [--state-dir S] [--print] DIR\n"
	 "       runbook schedule uninstall --systemd|--cron [--dir UNITDIR] DIR\n"
	 "\n"
	 "due starts each runbook whose latest slot is due and not claimed (as run --slot);\n"
	 "a slot older than --catch-up (1h) is recorded missed.  install writes systemd\n"
	 "units or a crontab block that call due; uninstall removes exactly those\n"
	 "(docs/schedule.md).\n"},
	{NULL, NULL, NULL, NULL},
};

void rb_print_usage(const char *cmd, FILE *f)
{
	for (const struct rb_command *c = rb_commands; c->name; c++)
		if (!strcmp(c->name, cmd)) {
			fputs(c->usage, f);
			return;
		}
}

static void usage(FILE *f)
{
	fputs("usage: runbook [--version] [--help] COMMAND [ARGS]\n\ncommands:\n", f);
	for (const struct rb_command *c = rb_commands; c->name; c++)
		fprintf(f, "  %-10s %s\n", c->name, c->summary);
	fputs("\nSee 'runbook COMMAND --help' and docs/cli.md.\n", f);
}

int main(int argc, char **argv)
{
	/*
	 * No fastbins: with them, every allocation of 1 KiB or more (a record's
	 * encoding, a Lua chunk) first merges the fastbins (malloc_consolidate),
	 * which took about a third of a run's CPU in 10,000 lua steps; tcache
	 * still serves the small ones (docs/state.md, "Costs").
	 */
	mallopt(M_MXFAST, 0);
	if (argc < 2) {
		usage(stderr);
		return RB_EXIT_INVALID;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
		rb_print_version(stdout);
		return RB_EXIT_OK;
	}
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		if (argc > 2 && strcmp(cmd, "help") == 0) {
			for (const struct rb_command *c = rb_commands; c->name; c++)
				if (!strcmp(c->name, argv[2])) {
					fputs(c->usage, stdout);
					return RB_EXIT_OK;
				}
			return rb_usage_error("unknown command '%s'", argv[2]);
		}
		usage(stdout);
		return RB_EXIT_OK;
	}
	for (const struct rb_command *c = rb_commands; c->name; c++)
		if (!strcmp(c->name, cmd))
			return c->fn(argc - 1, argv + 1);
	rb_usage_error("unknown command '%s'", cmd);
	usage(stderr);
	return RB_EXIT_INVALID;
}
