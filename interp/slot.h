/*
 * A scheduled start's claim, so that the same slot of a runbook never runs
 * twice (cron, a systemd timer's catch-up, two hosts' schedulers sharing a
 * state directory): STATE_DIR/slots/KEY/SLOT, one small JSON file per slot,
 * created whole and exclusively (a temp file linked to its name: link(2)
 * fails when the name exists).  It knows nothing of runs or schedules; the
 * command layer decides what a slot is (docs/schedule.md).
 */
#ifndef RB_SLOT_H
#define RB_SLOT_H

#include <stddef.h>
#include <time.h>

#include <jansson.h>

#define RB_SLOT_KEY_MAX         128
#define RB_SLOT_NAME_MAX        24      /* "20260104T020000Z" and its NUL */

/*
 * The directory name of a runbook's slots: its name when that is a safe file
 * name ([A-Za-z0-9._-], not starting with '.', at most 64 bytes), else those
 * characters with the others as '_' and the first 12 hex digits of the
 * name's SHA-256 after a '-', so that two names never share one.
 */
void rb_slot_key(const char *runbook, char key[RB_SLOT_KEY_MAX]);
/* A slot's file name: its start in UTC, "20260104T020000Z". */
void rb_slot_name(time_t slot, char name[RB_SLOT_NAME_MAX]);
/* "2026-01-04T02:00:00Z" (nothing else: UTC, whole seconds) -> seconds, or -1. */
time_t rb_slot_parse(const char *s);

/*
 * Claim the slot with record rec: 1 when this call claimed it (the file is
 * durable, whole), 0 when it was claimed before (*was, when not NULL, is its
 * record: a new reference), -1 with *err (malloc'd).  The directories are
 * made (0700) when missing; a symbolic link in place of slots/, KEY/ or the
 * slot's file is never followed.
 */
int rb_slot_claim(const char *state_dir, const char *key, time_t slot, const json_t *rec,
		  json_t **was, char **err);
/* The record of a slot: 1 with *rec (a new reference; NULL when it does not read), 0 when
   the slot is not claimed, -1 with *err. */
int rb_slot_get(const char *state_dir, const char *key, time_t slot, json_t **rec, char **err);
/* Replace the record of a claimed slot, whole (temp file, rename).  0, or -1 with *err. */
int rb_slot_update(const char *state_dir, const char *key, time_t slot, const json_t *rec,
		   char **err);
/*
 * The records of key's slots, oldest first (an array; empty when none); a
 * file that does not read as a JSON object is left out.  0, or -1 with *err.
 */
int rb_slot_list(const char *state_dir, const char *key, json_t **out, char **err);

#endif
