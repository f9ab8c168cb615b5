/*
 * shell: run a command, as argv (a list) or through sh -c (a string).  Its
 * side effects are unknown, so it is never assumed read-only.
 */
#include "action.h"

static const char *const parse_choices[] = {"json", "lines", NULL};

static const struct rb_arg shell_args[] = {
	{"command", RB_T_COMMAND, RB_ARG_REQUIRED, NULL,
	 "a string run by sh -c, or a list: the program and its arguments"},
	{"env", RB_T_STRING_MAP, 0, NULL, "extra environment variables"},
	{"cwd", RB_T_STRING, 0, NULL, "working directory"},
	{"stdin", RB_T_STRING, 0, NULL, "text written to the command's standard input"},
	{"parse", RB_T_STRING, 0, parse_choices,
	 "decode standard output: json, or lines (a list of lines)"},
	{NULL, 0, 0, NULL, NULL},
};

const struct rb_action act_shell = {
	.name = "shell",
	.summary = "run a command and capture its output and exit code",
	.args = shell_args,
	.flags = RB_ACT_SIDE_EFFECTS,
};
