/*
 * A runbook's `lock: NAME`, machine-wide: an flock on LOCK_DIR/NAME.lock, in a
 * directory every state directory shares, checked so that a file or link
 * another user planted there can neither redirect nor break it.  It knows
 * nothing of runs; the engine decides how long to wait (interp/exec.c).
 */
#ifndef RB_LOCK_H
#define RB_LOCK_H

#include <sys/types.h>

/* The directory of the locks: $RUNBOOK_LOCK_DIR if set, else RB_LOCK_DIR_DEFAULT. */
const char *rb_lock_dir(void);
#define RB_LOCK_DIR_DEFAULT     "/run/lock/runbook"
#define RB_LOCK_DIR_FALLBACK    "/tmp/runbook-locks"    /* where /run/lock does not exist */

/*
 * Try once to take lock name: 0 when taken (*fd holds it, O_CLOEXEC, until
 * closed; the kernel drops it however the process dies), 1 when another
 * process holds it (*holder: its pid, 0 when unknown), -1 with *err (the
 * directory or the file is unsafe or cannot be made).  *path is the lock
 * file's path in every case (malloc'd).  The directory is made when missing
 * (mode 1777, as /tmp: every user may lock, none may remove another's
 * lock); it must be a real directory owned by root or by the caller, and
 * sticky if others may write to it.  The file must be a regular file with
 * one link, owned by root or by the caller; it is never followed if it is a
 * link.
 */
int rb_lock_try(const char *name, int *fd, char **path, pid_t *holder, char **err);

/* The pid of a process holding an flock on fd's file (from /proc/locks), or 0 when unknown. */
pid_t rb_flock_holder(int fd);

#endif
