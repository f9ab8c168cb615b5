/*
 * A run's durable state: an append-only journal of step transitions, which
 * is the run's signed audit log (audit.h: one signed JSON record a line,
 * fdatasync'd in groups), and a snapshot that compaction writes atomically.
 * It knows nothing of steps or runbooks; the records and the snapshot are the
 * engine's.  The run directory's names and listing are rundir.h's, the
 * durable writes below it durable.h's.  docs/state.md has the formats
 * and exactly what survives a crash or a power loss.
 */
#ifndef RB_JOURNAL_H
#define RB_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "durable.h"

#define RB_SNAPSHOT_VERSION     2       /* 2: signed (key_id, sig); 1 is still read */

struct rb_journal;
struct rb_audit_key;
struct rb_audit_keyring;
struct rb_audit_head;

/*
 * Errors: functions that take char **err return -1 and set *err to a message
 * (lower case, no final period; the caller frees it) when err is not NULL.
 * Functions on an open journal keep their message: rb_journal_error().
 * A journal handle is used by one thread at a time.
 */

/*
 * Create STATE_DIR/runs/RUN_ID (mode 0700, and the directories above it when
 * missing) with an empty journal and an output/ directory, and open the
 * journal, whose records key (borrowed: it must outlive the journal) signs.  The run is built under runs/.RUN_ID.tmp and renamed into place, so
 * after a crash it is whole or absent; it is durable when this returns.  Fails
 * if the run already exists.  state_dir NULL means rb_state_dir(NULL).
 */
int rb_journal_create(const char *state_dir, const char *run_id,
		      const struct rb_audit_key *key, struct rb_journal **out, char **err);

/*
 * Open an existing run, run_id, to append to it (resume), signing with key.
 * It reads the snapshot and the journal only to continue the seq numbers and
 * to check them; it gives back no records (rb_journal_load does).  A torn
 * tail is cut off and recorded (a signed log_repaired record, audit.h),
 * durably, before anything is appended after it: call rb_journal_load first
 * to learn about it (rb_journal_torn tells too).  Stale temp files are removed, and
 * what a crashed writer left unsynced is synced, so that everything a load
 * before the open showed is durable when it returns.
 * With trust (a keyring; NULL: no check), before it changes anything, the
 * log's last record and the snapshot must be signed by a key of trust and
 * the snapshot's head must be the log's record at its seq: with the chain
 * that every load checks, the state to resume is then all signed.
 * A run is open in one process at a time (flock on its directory): a second
 * open or create of the same run fails while the first is open.
 */
int rb_journal_open(const char *run_dir, const char *run_id, const struct rb_audit_key *key,
		    const struct rb_audit_keyring *trust, struct rb_journal **out, char **err);

/*
 * The run's hold: the exclusive flock on its directory that an open journal
 * keeps.  A resume takes it before it reads the run's state, so that what it
 * decides on cannot change before it acts (another resume of the run fails
 * here), then opens the journal under it with rb_journal_open_held.  Returns
 * the directory's descriptor (O_CLOEXEC), or -1 with *err: "run DIR is open
 * in another runbook process (PID N): it is being run or resumed" (errno
 * EWOULDBLOCK; the PID when /proc/locks tells it), or why it cannot open it.
 */
int rb_journal_hold(const char *run_dir, char **err);
/* rb_journal_open under hold (from rb_journal_hold), which it takes: closed with the journal, or on failure. */
int rb_journal_open_held(int hold, const char *run_dir, const char *run_id,
			 const struct rb_audit_key *key, const struct rb_audit_keyring *trust,
			 struct rb_journal **out, char **err);

/*
 * Add one record: rec (borrowed) is an audit record (audit.h: an object with
 * a "type", without the keys the log sets); its members are copied now
 * (members set later are not journalled; the values are shared, and must not
 * be changed after) and gets the next seq (1, 2, ... over the whole
 * run).  Nothing is written until rb_journal_sync, so several appends share
 * one fdatasync.
 */
int rb_journal_append(struct rb_journal *j, json_t *rec);

/*
 * Write everything appended since the last sync (retrying EINTR and short
 * writes) and fdatasync once.  Returns 0 only when it is all durable; with
 * nothing pending and nothing written since the last sync (rb_journal_write)
 * it returns 0 at once.  After a failed write or fdatasync the
 * journal is broken for good: every later append, sync and compaction fails,
 * because after a failed fdatasync the kernel may have dropped the pages and
 * a retry could report success for data that is gone.  Resume with
 * rb_journal_open, which cuts the torn tail the failure may have left.
 */
int rb_journal_sync(struct rb_journal *j);

/*
 * The same without the fdatasync (the write-back is only started: audit.h), for
 * a caller that hands rb_journal_gate_fd() to whoever must see the records
 * durable before it acts (a command's supervisor syncs it right before the
 * exec: proc.h).  The records are durable at the next rb_journal_sync, which
 * syncs even with nothing pending.
 */
int rb_journal_write(struct rb_journal *j);

/*
 * A descriptor of the journal's file for that sync, an open file description
 * of its own (a write-back error is reported once per description, so the
 * journal's own sync still sees it); opened on first use, closed with j, -1 if
 * it cannot be opened.  RB_JP_BEFORE_GATE is visited here: an injected failure
 * gives a pipe instead, whose fdatasync fails for real (EINVAL).
 */
int rb_journal_gate_fd(struct rb_journal *j);

/*
 * Compaction: sync, then write snapshot (the caller's state, borrowed; it must
 * include the effect of every record appended so far) as the run's snapshot
 * (temp file, fsync, rename, fsync of the directory) with the seq and hash of
 * the log's last record.  The log is never cut (it is the audit log): a load
 * skips the records the snapshot covers.  The caller decides when
 * (docs/state.md suggests a rule); a failure leaves the journal usable.
 */
int rb_journal_compact(struct rb_journal *j, json_t *snapshot);

/* Close; records appended but not synced are dropped (they were never durable). */
void rb_journal_close(struct rb_journal *j);

/* The last error of j ("" when none); valid until the next call on j. */
const char *rb_journal_error(const struct rb_journal *j);
/* The type of the run's last record when rb_journal_open found it ("" for a new run). */
const char *rb_journal_last_type(const struct rb_journal *j);
/* The torn tail rb_journal_open cut off (as in rb_journal_load), or NULL; borrowed. */
const json_t *rb_journal_torn(const struct rb_journal *j);

struct rb_journal_stats {
	uint64_t last_seq;      /* seq of the last appended record (0: none in this run) */
	uint64_t synced_seq;    /* every record up to this one is durable */
	uint64_t snapshot_seq;  /* the snapshot covers records up to this one (0: none) */
	uint64_t pending;       /* appended, not yet written (nor synced) */
	uint64_t journal_records;  /* records after the snapshot, synced or pending */
	uint64_t syncs;         /* fdatasync calls on the journal through this handle */
	uint64_t compactions;   /* completed through this handle */
};
void rb_journal_stats(const struct rb_journal *j, struct rb_journal_stats *st);
/* The log's head as of the last sync. */
void rb_journal_head(const struct rb_journal *j, struct rb_audit_head *h);

/*
 * Load a run for replay, read-only and without the lock: *snapshot is the
 * state given to the last rb_journal_compact (NULL when none) and *records an
 * array of every record after it, in seq order.  *torn_info is NULL, or a torn
 * tail (a crash in the middle of a write) that the records stop before:
 * {"offset": byte offset, "length": bytes, "line": 1-based line,
 *  "hex": the bytes in hex, "text": the bytes when valid UTF-8} with hex and
 * text cut at 4096 bytes.  A torn tail is not an error; anything else that
 * does not read (a bad record followed by good ones, a gap in the seq
 * numbers, a bad snapshot) is, with the file and line in *err.  A run being
 * written by another process may show its half-written last line as torn.
 * Any of the outputs except records may be NULL when not wanted.
 */
int rb_journal_load(const char *run_dir, json_t **snapshot, json_t **records,
		    json_t **torn_info, char **err);

/*
 * rb_journal_load, then the signatures that rb_journal_open checks with a
 * trust keyring: the log's last record, the snapshot, the snapshot's head.
 * One that does not verify is an error.  When they cannot be checked with
 * trust (a key it does not hold, an unsigned version 1 snapshot), the run is
 * loaded all the same and *unverified says why (free it).
 */
int rb_journal_load_trusted(const char *run_dir, const struct rb_audit_keyring *trust,
			    json_t **snapshot, json_t **records, json_t **torn_info,
			    char **unverified, char **err);

/*
 * The head of the run's log that its snapshot keeps (the seq and SHA-256 of
 * the last record when it was written): 1 when there is one, 0 when there is
 * no snapshot yet, -1 with *err when it does not read.
 */
int rb_run_head(const char *run_dir, uint64_t *seq, char sha256[65], char **err);

/*
 * The tests' hook (durable.h) on the journal's writes: the audit log's
 * (rb_audit_set_hook) and compaction's.  It replaces RUNBOOK_TEST_CRASH's.
 */
void rb_journal_set_hook(struct rb_journal *j, rb_journal_hook *hook, void *arg);

#endif
