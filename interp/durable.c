/*
 * Writes that must survive a crash, below the journal and the audit log:
 * write(2) and fsync retried on EINTR and short writes, with the tests' hook
 * (failure and crash injection) visited at each point; whole-file writes
 * through a temp file and a rename; directories made and synced into their
 * parents; a run's small files read without following links.  It knows no
 * record, run or log format, and must never report as durable what is not.
 */
#include "durable.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- system calls, retried and hooked ------------------------------------------ */

int rb_hook_inject(rb_journal_hook *hook, void *arg, enum rb_journal_point p)
{
	int e = hook ? hook(arg, p, NULL) : 0;
	if (e) {
		errno = e;
		return -1;
	}
	return 0;
}

/* write(2) until done: EINTR and short writes are normal, anything else fails. */
static int write_all(int fd, const char *p, size_t len, rb_journal_hook *hook, void *arg,
		     enum rb_journal_point point)
{
	while (len > 0) {
		size_t n = len;
		int e = hook ? hook(arg, point, &n) : 0;
		if (e) {
			errno = e;
			return -1;
		}
		if (n == 0 || n > len)
			n = len;
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (w == 0) {
			/* Not expected of a regular file; never spin on it. */
			errno = EIO;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int rb_write_hooked(int fd, const char *p, size_t len, rb_journal_hook *hook, void *arg)
{
	return write_all(fd, p, len, hook, arg, RB_JP_BEFORE_WRITE);
}

int rb_write_all(int fd, const void *p, size_t n)
{
	return write_all(fd, p, n, NULL, NULL, RB_JP_BEFORE_WRITE);
}

int rb_sync_fd(int fd, int data_only)
{
	int r;
	do
		r = data_only ? fdatasync(fd) : fsync(fd);
	while (r < 0 && errno == EINTR);
	return r;
}

int rb_sync_dir(int dfd)
{
	if (rb_sync_fd(dfd, 0) == 0)
		return 0;
	/* Some filesystems cannot fsync a directory and say so with EINVAL. */
	return errno == EINVAL ? 0 : -1;
}

/* fsync the directory that holds path, so that a new entry in it is durable. */
int rb_sync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *parent;
	if (!slash)
		parent = strdup(".");
	else if (slash == path)
		parent = strdup("/");
	else
		parent = strndup(path, (size_t)(slash - path));
	if (!parent)
		return -1;
	int dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(parent);
	if (dfd < 0)
		return -1;
	int r = rb_sync_dir(dfd);
	int saved = errno;
	close(dfd);
	errno = saved;
	return r;
}

/*
 * Reads dirfd/name whole, NUL-terminated; -1 with errno (ENOENT when missing).
 * The run's files are the engine's: a symbolic link there is not followed
 * (ELOOP), and what is not a regular file (a FIFO, a device) is not read
 * (EINVAL): either could send a reader elsewhere, or read forever.
 */
int rb_read_at(int dirfd, const char *name, char **out, size_t *outlen)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	size_t cap = 4096, len = 0;
	char *buf = NULL;
	if (fstat(fd, &st) < 0)
		goto bad;
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		goto bad;
	}
	if (st.st_size > 0)
		cap = (size_t)st.st_size + 1;
	buf = malloc(cap);
	if (!buf)
		goto bad;
	for (;;) {
		if (len + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				goto bad;
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + len, cap - len - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			goto bad;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = 0;
	*out = buf;
	*outlen = len;
	return 0;
bad:;
	int saved = errno ? errno : ENOMEM;
	free(buf);
	close(fd);
	errno = saved;
	return -1;
}

/* Why read_at failed, for a message. */
const char *rb_read_why(int e)
{
	return e == ELOOP ? "a symbolic link, not followed"
	       : e == EINVAL ? "not a regular file" : strerror(e);
}

/* --- whole files and directories ----------------------------------------------- */

/*
 * Temp file, fsync, rename, fsync of the directory: after a crash at any
 * point name is the old file or the new one, whole.  The temp name is fixed
 * (.NAME.tmp) so a crash leaves at most one, which rb_journal_open removes.
 */
int rb_write_durable_at(int dirfd, const char *dir, const char *name, const void *buf,
			size_t len, int mode, rb_journal_hook *hook, void *arg, char **err)
{
	char tmp[NAME_MAX + 1];
	if (!*name || strchr(name, '/') || name[0] == '.' ||
	    snprintf(tmp, sizeof(tmp), ".%s.tmp", name) >= (int)sizeof(tmp)) {
		errno = EINVAL;
		return rb_fail(err, "cannot write %s/%s: not a plain file name", dir, name);
	}
	if (unlinkat(dirfd, tmp, 0) < 0 && errno != ENOENT)
		return rb_fail(err, "cannot remove %s/%s: %s", dir, tmp, strerror(errno));
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return rb_fail(err, "cannot create %s/%s: %s", dir, tmp, strerror(errno));
	if (write_all(fd, buf, len, hook, arg, RB_JP_BEFORE_TEMP_WRITE) < 0) {
		rb_fail(err, "cannot write %s/%s: %s", dir, tmp, strerror(errno));
		goto undo;
	}
	if (rb_hook_inject(hook, arg, RB_JP_AFTER_TEMP_WRITE) < 0 || rb_sync_fd(fd, 0) < 0) {
		rb_fail(err, "cannot sync %s/%s: %s", dir, tmp, strerror(errno));
		goto undo;
	}
	int r = close(fd);
	fd = -1;
	if (r < 0) {
		rb_fail(err, "cannot close %s/%s: %s", dir, tmp, strerror(errno));
		goto undo;
	}
	if (rb_hook_inject(hook, arg, RB_JP_AFTER_TEMP_FSYNC) < 0 ||
	    renameat(dirfd, tmp, dirfd, name) < 0) {
		rb_fail(err, "cannot rename %s/%s to %s: %s", dir, tmp, name, strerror(errno));
		goto undo;
	}
	/* From here the new file is in place; only its durability is unknown. */
	if (rb_hook_inject(hook, arg, RB_JP_AFTER_RENAME) < 0 || rb_sync_dir(dirfd) < 0)
		return rb_fail(err, "cannot sync directory %s after writing %s: %s", dir, name,
			    strerror(errno));
	return 0;
undo:;
	int saved = errno;
	if (fd >= 0)
		close(fd);
	unlinkat(dirfd, tmp, 0);
	errno = saved;
	return -1;
}

int rb_write_durable(const char *dir, const char *name, const void *buf, size_t len,
		     int mode, char **err)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return rb_fail(err, "cannot open directory %s: %s", dir, strerror(errno));
	int r = rb_write_durable_at(dfd, dir, name, buf, len, mode, NULL, NULL, err);
	close(dfd);
	return r;
}

int rb_mkdir_durable(const char *path, char **err)
{
	char *p = strdup(path);
	if (!p)
		return rb_fail(err, "out of memory");
	int r = 0;
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s)
			continue;
		char c = *s;
		*s = 0;
		if (mkdir(p, 0700) == 0) {
			if (rb_sync_parent(p) < 0) {
				r = rb_fail(err, "cannot sync the directory above %s: %s", p,
					 strerror(errno));
				break;
			}
		} else if (errno != EEXIST) {
			r = rb_fail(err, "cannot create directory %s: %s", p, strerror(errno));
			break;
		}
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return r;
}

/* --- the hook's points --------------------------------------------------------- */

const char *rb_journal_point_name(enum rb_journal_point p)
{
	static const char *const names[RB_JP_COUNT] = {
		[RB_JP_BEFORE_WRITE] = "before-write",
		[RB_JP_AFTER_WRITE] = "after-write",
		[RB_JP_AFTER_FDATASYNC] = "after-fdatasync",
		[RB_JP_BEFORE_TEMP_WRITE] = "before-temp-write",
		[RB_JP_AFTER_TEMP_WRITE] = "after-temp-write",
		[RB_JP_AFTER_TEMP_FSYNC] = "after-temp-fsync",
		[RB_JP_AFTER_RENAME] = "after-rename",
		[RB_JP_AFTER_DIR_FSYNC] = "after-dir-fsync",
		[RB_JP_BEFORE_GATE] = "before-gate",
	};
	return (unsigned)p < RB_JP_COUNT ? names[p] : "?";
}
