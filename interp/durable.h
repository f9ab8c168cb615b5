/*
 * Durable files, below the journal and the audit log (journal -> audit log ->
 * these): write(2) and fsync retried on EINTR and short writes, the tests'
 * hook that fails or crashes at each point of them, whole-file writes through
 * a temp file and a rename, directories made durably, and a run's small files
 * read without following links.  It knows no record, run or log format.
 */
#ifndef RB_DURABLE_H
#define RB_DURABLE_H

#include <stddef.h>

/*
 * Errors: functions that take char **err return -1 and set *err to a message
 * (lower case, no final period; the caller frees it) when err is not NULL.
 * The others return -1 with errno set.
 */

/*
 * Test hook: called at each point below with the hook's argument (the
 * journal's: rb_journal_set_hook; the audit log's: rb_audit_set_hook).
 * Returning an errno value makes the operation that follows the point fail
 * with that errno, as if the system call had (returns after the last point are
 * ignored).  At RB_JP_BEFORE_WRITE and RB_JP_BEFORE_TEMP_WRITE *len is the
 * byte count about to be written; lowering it makes a short write.  A hook
 * may also raise(SIGKILL) to crash at the point.  Elsewhere len is NULL.
 * The names are the journal's, whose writes these are (RUNBOOK_TEST_CRASH,
 * docs/state.md, names them).
 */
enum rb_journal_point {
	RB_JP_BEFORE_WRITE,       /* before each write(2) to the journal */
	RB_JP_AFTER_WRITE,        /* all written; next: fdatasync */
	RB_JP_AFTER_FDATASYNC,    /* the group is durable */
	RB_JP_BEFORE_TEMP_WRITE,  /* compaction: before each write of the temp snapshot */
	RB_JP_AFTER_TEMP_WRITE,   /* next: fsync of the temp snapshot */
	RB_JP_AFTER_TEMP_FSYNC,   /* next: rename over snapshot.json */
	RB_JP_AFTER_RENAME,       /* next: fsync of the run directory */
	RB_JP_AFTER_DIR_FSYNC,    /* the compaction is complete */
	RB_JP_BEFORE_GATE,        /* written, not synced; next: rb_journal_gate_fd's descriptor
				     goes to a command's supervisor, which syncs it */
	RB_JP_COUNT
};
typedef int rb_journal_hook(void *arg, enum rb_journal_point p, size_t *len);
/* "before-write", ...: the names RUNBOOK_TEST_CRASH and RUNBOOK_TEST_FAIL take. */
const char *rb_journal_point_name(enum rb_journal_point p);
/* write(2) all of p, retrying EINTR and short writes; -1 with errno. */
int rb_write_all(int fd, const void *p, size_t n);
/* For the audit log's writes: write(2) all of p, visiting RB_JP_BEFORE_WRITE before each. */
int rb_write_hooked(int fd, const char *p, size_t len, rb_journal_hook *hook, void *arg);
/* -1 with errno set when hook (may be NULL) returns an error at p. */
int rb_hook_inject(rb_journal_hook *hook, void *arg, enum rb_journal_point p);

/* fsync (fdatasync when data_only) of fd, retried on EINTR. */
int rb_sync_fd(int fd, int data_only);
/* fsync of a directory's descriptor; EINVAL (a filesystem that cannot) counts as done. */
int rb_sync_dir(int dfd);
/* fsync the directory that holds path, so that a new entry in it is durable. */
int rb_sync_parent(const char *path);

/*
 * Reads dirfd/name whole, NUL-terminated (*out is malloc'd); -1 with errno
 * (ENOENT when missing).  A symbolic link is not followed (ELOOP), and what is
 * not a regular file (a FIFO, a device) is not read (EINVAL).
 */
int rb_read_at(int dirfd, const char *name, char **out, size_t *outlen);
/* Why rb_read_at failed with errno e, for a message. */
const char *rb_read_why(int e);

/*
 * Write dir/name durably: temp file .NAME.tmp in dir, fsync, rename over
 * name, fsync of dir.  mode is the new file's (e.g. 0600).  After a crash the
 * file is either the old one or the new one, whole.
 */
int rb_write_durable(const char *dir, const char *name, const void *buf, size_t len,
		     int mode, char **err);
/*
 * The same in the directory dirfd (dir names it in messages), visiting hook
 * (NULL: none) at RB_JP_BEFORE_TEMP_WRITE, RB_JP_AFTER_TEMP_WRITE,
 * RB_JP_AFTER_TEMP_FSYNC and RB_JP_AFTER_RENAME: a compaction's snapshot.
 */
int rb_write_durable_at(int dirfd, const char *dir, const char *name, const void *buf,
			size_t len, int mode, rb_journal_hook *hook, void *arg, char **err);

/* mkdir -p, mode 0700, each new directory's entry synced into its parent. */
int rb_mkdir_durable(const char *path, char **err);

#endif
