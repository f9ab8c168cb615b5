/*
 * Machine-wide runbook locks (lock.h): the lock directory and its files,
 * opened without following links and checked for their owner and mode before
 * they are trusted, and who holds an flock.  It never waits and never prints.
 */
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util.h"

const char *rb_lock_dir(void)
{
	const char *env = getenv("RUNBOOK_LOCK_DIR");
	struct stat st;
	if (env && *env)
		return env;
	return stat("/run/lock", &st) == 0 && S_ISDIR(st.st_mode) ? RB_LOCK_DIR_DEFAULT
								   : RB_LOCK_DIR_FALLBACK;
}

/* Only root and the caller may own what the lock's exclusion rests on. */
static int trusted_owner(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

/*
 * The lock directory, opened without following a link and checked: its
 * owner can remove any lock in it, and so can anyone who may write to it
 * unless it is sticky.  Made (1777) when missing.
 */
static int open_dir(const char *dir, char **err)
{
	if (dir[0] != '/') {
		errno = EINVAL;
		return rb_fail(err, "the lock directory '%s' is not an absolute path (RUNBOOK_LOCK_DIR): "
			       "runs elsewhere would not see its locks", dir);
	}
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int made = 0;
	if (fd < 0 && errno == ENOENT) {
		if (mkdir(dir, 0700) == 0)
			made = 1;
		else if (errno != EEXIST)
			return rb_fail(err, "cannot create the lock directory %s: %s", dir,
				       strerror(errno));
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0) {
		if (errno == ELOOP || errno == ENOTDIR)
			return rb_fail(err, "the lock directory %s is not a directory (a symbolic "
				       "link or a file): refusing it", dir);
		return rb_fail(err, "cannot open the lock directory %s: %s", dir, strerror(errno));
	}
	/* Like /tmp: every user may take a lock here, and only its owner may remove a file. */
	if (made && fchmod(fd, 01777) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return rb_fail(err, "cannot set the mode of the lock directory %s: %s", dir,
			       strerror(e));
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return rb_fail(err, "cannot stat the lock directory %s: %s", dir, strerror(e));
	}
	errno = EPERM;
	if (!trusted_owner(st.st_uid)) {
		close(fd);
		return rb_fail(err, "the lock directory %s is owned by uid %u, not by you or root: "
			       "its owner could remove a lock you hold; refusing it", dir,
			       (unsigned)st.st_uid);
	}
	if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX)) {
		close(fd);
		return rb_fail(err, "the lock directory %s may be written by others and is not "
			       "sticky (mode %04o): anyone could remove a lock you hold; refusing it "
			       "(chmod 1777 or 755 %s)", dir, (unsigned)(st.st_mode & 07777), dir);
	}
	return fd;
}

/* NAME.lock in dfd: made (0644, so that other users may lock it too) or opened, then checked. */
static int open_file(int dfd, const char *file, const char *path, char **err)
{
	/* O_RDONLY is enough for flock; O_NONBLOCK: a planted FIFO must not hang the open. */
	int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
	int fd = openat(dfd, file, flags | O_CREAT | O_EXCL, 0644);
	if (fd >= 0)
		fchmod(fd, 0644);       /* whatever the umask */
	else if (errno == EEXIST)
		fd = openat(dfd, file, flags);
	if (fd < 0) {
		if (errno == ELOOP)
			return rb_fail(err, "the lock file %s is a symbolic link: refusing to follow "
				       "it", path);
		return rb_fail(err, "cannot open the lock file %s: %s", path, strerror(errno));
	}
	struct stat st;
	char why[160] = "";
	if (fstat(fd, &st) < 0)
		snprintf(why, sizeof(why), "cannot stat it: %s", strerror(errno));
	else if (!S_ISREG(st.st_mode))
		snprintf(why, sizeof(why), "it is not a regular file");
	else if (st.st_nlink != 1)
		snprintf(why, sizeof(why), "it has %ju links", (uintmax_t)st.st_nlink);
	else if (!trusted_owner(st.st_uid))
		snprintf(why, sizeof(why), "it is owned by uid %u, not by you or root, who could "
			 "remove it while you hold it", (unsigned)st.st_uid);
	if (why[0]) {
		close(fd);
		errno = EPERM;
		return rb_fail(err, "the lock file %s is unsafe: %s; refusing it", path, why);
	}
	return fd;
}

int rb_lock_try(const char *name, int *fd, char **path, pid_t *holder, char **err)
{
	const char *dir = rb_lock_dir();
	char *file = rb_xasprintf("%s.lock", name);
	*fd = -1;
	*holder = 0;
	*path = rb_xasprintf("%s/%s", dir, file);
	int dfd = open_dir(dir, err), r = -1;
	if (dfd < 0)
		goto out;
	/* A lock file removed or replaced between the open and the flock is opened again. */
	for (int tries = 0; tries < 8; tries++) {
		int lfd = open_file(dfd, file, *path, err);
		if (lfd < 0)
			goto out;
		if (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
			int e = errno;
			if (e == EWOULDBLOCK)
				*holder = rb_flock_holder(lfd);
			close(lfd);
			if (e == EWOULDBLOCK || e == EINTR) {
				r = 1;
				goto out;
			}
			errno = e;
			rb_fail(err, "cannot lock %s: %s", *path, strerror(e));
			goto out;
		}
		struct stat held, now;
		if (fstat(lfd, &held) == 0 &&
		    fstatat(dfd, file, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
		    held.st_dev == now.st_dev && held.st_ino == now.st_ino) {
			*fd = lfd;
			r = 0;
			goto out;
		}
		close(lfd);
	}
	errno = EAGAIN;
	rb_fail(err, "the lock file %s keeps being replaced: refusing it", *path);
out:
	if (dfd >= 0)
		close(dfd);
	free(file);
	return r;
}

pid_t rb_flock_holder(int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return 0;
	FILE *f = fopen("/proc/locks", "re");
	if (!f)
		return 0;
	/* "1: FLOCK  ADVISORY  WRITE 5930 fe:00:10953491 0 EOF"; waiters have "->" after the number. */
	char line[256], want[64];
	snprintf(want, sizeof(want), "%02x:%02x:%ju", major(st.st_dev), minor(st.st_dev),
		 (uintmax_t)st.st_ino);
	pid_t pid = 0;
	while (!pid && fgets(line, sizeof(line), f)) {
		char kind[16], dev[64];
		long p;
		const char *colon = strchr(line, ':');
		if (!colon || !strncmp(colon + 1, " ->", 3))
			continue;
		if (sscanf(colon + 1, " %15s %*s %*s %ld %63s", kind, &p, dev) == 3 &&
		    !strcmp(kind, "FLOCK") && !strcmp(dev, want) && p > 0)
			pid = (pid_t)p;
	}
	fclose(f);
	return pid;
}
