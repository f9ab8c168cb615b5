/*
 * Slot claims in the state directory (slot.h): made with link(2), which is
 * atomic and never replaces a name, so that of two processes claiming one
 * slot exactly one wins, and a claim is never seen half written.
 */
#include "slot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durable.h"
#include "isotime.h"
#include "util.h"

static int safe_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

void rb_slot_key(const char *runbook, char key[RB_SLOT_KEY_MAX])
{
	size_t n = strlen(runbook), k;
	int safe = n > 0 && n <= 64 && runbook[0] != '.';
	for (k = 0; safe && k < n; k++)
		safe = safe_char(runbook[k]);
	if (safe) {
		memcpy(key, runbook, n + 1);
		return;
	}
	size_t m = n < 64 ? n : 64;
	for (k = 0; k < m; k++)
		key[k] = safe_char(runbook[k]) ? runbook[k] : '_';
	if (m && key[0] == '.')
		key[0] = '_';
	char hex[65];
	rb_sha256_hex(runbook, n, hex);
	snprintf(key + m, RB_SLOT_KEY_MAX - m, "-%.12s", hex);
}

void rb_slot_name(time_t slot, char name[RB_SLOT_NAME_MAX])
{
	struct tm tm;
	gmtime_r(&slot, &tm);
	strftime(name, RB_SLOT_NAME_MAX, "%Y%m%dT%H%M%SZ", &tm);
}

time_t rb_slot_parse(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end || strlen(s) != 20)
		return -1;
	time_t t = timegm(&tm);
	char back[32];
	rb_utc_text(t, back);
	return strcmp(back, s) ? -1 : t;     /* no 31 April, no 25:00 */
}

/* dirfd/name as a directory, made (0700, durably) when missing; never a link.  -1: errno. */
static int open_dir(int dirfd, const char *name, int make)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT || !make)
		return fd;
	if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
		return -1;
	if (rb_sync_dir(dirfd) < 0)
		return -1;
	return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* STATE_DIR/slots/KEY, opened (made when make).  -1 with *err; ENOENT is errno when !make. */
static int key_dir(const char *state, const char *key, int make, char **err)
{
	if (make && rb_mkdir_durable(state, err) < 0)
		return -1;
	int sfd = open(state, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sfd < 0) {
		if (errno == ENOENT && !make)
			return -1;
		return rb_fail(err, "cannot open the state directory %s: %s", state, strerror(errno));
	}
	int fd = -1;
	const char *where = "slots";
	int slots = open_dir(sfd, "slots", make);
	if (slots >= 0) {
		where = key;
		fd = open_dir(slots, key, make);
		int e = errno;
		close(slots);
		errno = e;
	}
	int e = errno;
	close(sfd);
	if (fd < 0 && (make || e != ENOENT))
		rb_fail(err, "cannot open %s/slots%s%s: %s", state, where == key ? "/" : "",
			where == key ? key : "", e == ELOOP || e == ENOTDIR
			? "a symbolic link or a file in place of a directory, not followed"
			: strerror(e));
	errno = e;
	return fd;
}

static char *record_text(const json_t *rec)
{
	char *t = json_dumps(rec, JSON_INDENT(2) | JSON_SORT_KEYS);
	char *s = rb_xasprintf("%s\n", t ? t : "{}");
	free(t);
	return s;
}

static json_t *read_record(int dfd, const char *name)
{
	char *buf;
	size_t len;
	if (rb_read_at(dfd, name, &buf, &len) < 0)
		return NULL;
	json_t *v = json_loadb(buf, len, 0, NULL);
	free(buf);
	if (v && !json_is_object(v)) {
		json_decref(v);
		v = NULL;
	}
	return v;
}

int rb_slot_claim(const char *state_dir, const char *key, time_t slot, const json_t *rec,
		  json_t **was, char **err)
{
	char name[RB_SLOT_NAME_MAX], tmp[64];
	rb_slot_name(slot, name);
	int dfd = key_dir(state_dir, key, 1, err);
	if (dfd < 0)
		return -1;
	snprintf(tmp, sizeof(tmp), ".%s.%ld.tmp", name, (long)getpid());
	char *text = record_text(rec);
	int rc = -1;
	unlinkat(dfd, tmp, 0);          /* a crashed claim's, of a pid used again */
	int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		rb_fail(err, "cannot create %s/slots/%s/%s: %s", state_dir, key, tmp, strerror(errno));
		goto out;
	}
	int w = rb_write_all(fd, text, strlen(text)) < 0 || rb_sync_fd(fd, 0) < 0 ? errno : 0;
	close(fd);
	if (w) {
		rb_fail(err, "cannot write %s/slots/%s/%s: %s", state_dir, key, tmp, strerror(w));
		unlinkat(dfd, tmp, 0);
		goto out;
	}
	/* The claim: link(2) never replaces a name, so one process wins. */
	int linked = linkat(dfd, tmp, dfd, name, 0);
	int e = errno;
	unlinkat(dfd, tmp, 0);
	if (linked == 0) {
		if (rb_sync_dir(dfd) < 0) {
			rb_fail(err, "cannot sync %s/slots/%s: %s", state_dir, key, strerror(errno));
			goto out;
		}
		rc = 1;
	} else if (e == EEXIST) {
		if (was)
			*was = read_record(dfd, name);
		rc = 0;
	} else {
		rb_fail(err, "cannot claim %s/slots/%s/%s: %s", state_dir, key, name, strerror(e));
	}
out:
	free(text);
	close(dfd);
	return rc;
}

int rb_slot_get(const char *state_dir, const char *key, time_t slot, json_t **rec, char **err)
{
	char name[RB_SLOT_NAME_MAX];
	rb_slot_name(slot, name);
	*rec = NULL;
	int dfd = key_dir(state_dir, key, 0, err);
	if (dfd < 0)
		return errno == ENOENT ? 0 : -1;
	struct stat st;
	int r = fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW);
	if (r == 0)
		*rec = read_record(dfd, name);
	else if (errno != ENOENT)
		rb_fail(err, "cannot read %s/slots/%s/%s: %s", state_dir, key, name, strerror(errno));
	int e = errno;
	close(dfd);
	return r == 0 ? 1 : e == ENOENT ? 0 : -1;
}

int rb_slot_update(const char *state_dir, const char *key, time_t slot, const json_t *rec,
		   char **err)
{
	char name[RB_SLOT_NAME_MAX];
	rb_slot_name(slot, name);
	int dfd = key_dir(state_dir, key, 0, err);
	if (dfd < 0) {
		if (errno == ENOENT)
			rb_fail(err, "%s/slots/%s: no such directory", state_dir, key);
		return -1;
	}
	char *text = record_text(rec), *dir = rb_xasprintf("%s/slots/%s", state_dir, key);
	int rc = rb_write_durable_at(dfd, dir, name, text, strlen(text), 0600, NULL, NULL, err);
	free(text);
	free(dir);
	close(dfd);
	return rc;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int rb_slot_list(const char *state_dir, const char *key, json_t **out, char **err)
{
	*out = json_array();
	int dfd = key_dir(state_dir, key, 0, err);
	if (dfd < 0)
		return errno == ENOENT ? 0 : -1;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return rb_fail(err, "cannot read %s/slots/%s: %s", state_dir, key, strerror(errno));
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		names = rb_xrealloc(names, (n + 1) * sizeof(*names));
		names[n++] = rb_xstrdup(e->d_name);
	}
	qsort(names, n, sizeof(*names), by_name);     /* their names sort by time */
	for (size_t k = 0; k < n; k++) {
		json_t *v = read_record(dirfd(d), names[k]);
		if (v)
			json_array_append_new(*out, v);
		free(names[k]);
	}
	free(names);
	closedir(d);
	return 0;
}
