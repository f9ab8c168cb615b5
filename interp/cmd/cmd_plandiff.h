/*
 * runbook plan --diff OLD NEW and runbook plan --base REV FILE: cmd_plan.c
 * parses the command line and hands it here (cmd_plandiff.c).
 */
#ifndef RB_CMD_PLANDIFF_H
#define RB_CMD_PLANDIFF_H

#include <stddef.h>

struct rb_plandiff_opts {
	int diff;               /* --diff: files[0] is OLD, files[1] NEW */
	const char *base;       /* --base REV: files[0] against its version at REV */
	const char *format;     /* text, json or markdown */
	const char *split;      /* --split DIR, or NULL */
	const char *max_bytes;  /* --max-bytes N, or NULL */
	char **params;          /* -p NAME=VALUE, for both sides */
	size_t nparams;
	const char *files[2];
	size_t nfiles;
};

/* Exit status: 0 no change, 1 changes, 2 an error (as kubectl diff). */
int rb_cmd_plan_diff(const struct rb_plandiff_opts *o);

#endif
