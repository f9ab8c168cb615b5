/*
 * The run directory's names and places: the state directory, a run's
 * directory and id, the list of runs, and the run's copy of its runbook.  It
 * knows nothing of the journal's records or the snapshot's state (journal.c),
 * and never writes but through durable.c.
 */
#include "rundir.h"
#include "durable.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- names and places ---------------------------------------------------------- */

const char *rb_state_dir(const char *opt)
{
	if (opt && *opt)
		return opt;
	const char *env = getenv("RUNBOOK_STATE_DIR");
	if (env && *env)
		return env;
	return ".runbook";
}

char *rb_run_dir(const char *state_dir, const char *run_id)
{
	char *s;
	if (asprintf(&s, "%s/runs/%s", state_dir, run_id) < 0)
		return NULL;
	return s;
}

void rb_run_id(char *buf, size_t size, time_t t, unsigned rand)
{
	struct tm tm;
	if (!gmtime_r(&t, &tm))
		memset(&tm, 0, sizeof(tm));
	snprintf(buf, size, "%04d%02d%02d-%02d%02d%02d-%04x", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, rand & 0xffffu);
}

time_t rb_run_started_at(const json_t *st, const char *id)
{
	json_t *t = json_object_get(st, "started_at");
	if (json_is_integer(t))
		return (time_t)json_integer_value(t);
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = id ? strptime(id, "%Y%m%d-%H%M%S", &tm) : NULL;
	return end && *end == '-' ? timegm(&tm) : -1;
}

int rb_run_id_valid(const char *id)
{
	size_t n = strlen(id);
	return n > 0 && n < RB_RUN_ID_MAX * 4 && id[0] != '.' && !strchr(id, '/');
}

/* --- listing runs ---------------------------------------------------------------- */

static int cmp_desc(const void *a, const void *b)
{
	return strcmp(*(char *const *)b, *(char *const *)a);
}

void rb_runs_free(char **ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

int rb_runs_list(const char *state_dir, char ***ids, size_t *n, char **err)
{
	char **v = NULL;
	size_t len = 0, cap = 0;
	char *runs;

	*ids = NULL;
	*n = 0;
	if (asprintf(&runs, "%s/runs", rb_state_dir(state_dir)) < 0)
		return rb_fail(err, "out of memory");
	DIR *d = opendir(runs);
	if (!d) {
		int r = errno == ENOENT ? 0 : rb_fail(err, "cannot list %s: %s", runs, strerror(errno));
		free(runs);
		return r;
	}
	struct dirent *e;
	errno = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (e->d_type != DT_DIR) {
			struct stat st;
			if (e->d_type != DT_UNKNOWN ||
			    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISDIR(st.st_mode))
				continue;
		}
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			char **nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				goto oom;
			v = nv;
		}
		if (!(v[len] = strdup(e->d_name)))
			goto oom;
		len++;
		errno = 0;
	}
	if (errno) {
		rb_fail(err, "cannot list %s: %s", runs, strerror(errno));
		goto undo;
	}
	closedir(d);
	free(runs);
	if (len > 1)
		qsort(v, len, sizeof(*v), cmp_desc);
	*ids = v;
	*n = len;
	return 0;
oom:
	errno = ENOMEM;
	rb_fail(err, "out of memory");
undo:
	closedir(d);
	free(runs);
	rb_runs_free(v, len);
	return -1;
}

/* --- the runbook's copy ---------------------------------------------------------- */

int rb_run_save_runbook(const char *run_dir, const void *buf, size_t len, char **err)
{
	char hex[65], line[128];
	if (rb_sha256_hex(buf, len, hex) < 0)
		return rb_fail(err, "cannot compute the SHA-256 of the runbook");
	/* sha256sum's format, so that `sha256sum -c runbook.sha256` checks it by hand. */
	int n = snprintf(line, sizeof(line), "%s  %s\n", hex, RB_RUN_RUNBOOK);
	if (rb_write_durable(run_dir, RB_RUN_RUNBOOK, buf, len, 0600, err) < 0 ||
	    rb_write_durable(run_dir, RB_RUN_RUNBOOK_SHA, line, (size_t)n, 0600, err) < 0)
		return -1;
	return 0;
}

int rb_run_load_runbook(const char *run_dir, char **buf, size_t *len, char **err)
{
	char *sum = NULL, hex[65];
	size_t sumlen;
	int r = -1;

	*buf = NULL;
	*len = 0;
	int dfd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return rb_fail(err, "cannot open run %s: %s", run_dir, strerror(errno));
	if (rb_read_at(dfd, RB_RUN_RUNBOOK_SHA, &sum, &sumlen) < 0) {
		rb_fail(err, "cannot read %s/%s: %s", run_dir, RB_RUN_RUNBOOK_SHA,
			rb_read_why(errno));
		goto out;
	}
	if (rb_read_at(dfd, RB_RUN_RUNBOOK, buf, len) < 0) {
		rb_fail(err, "cannot read %s/%s: %s", run_dir, RB_RUN_RUNBOOK, rb_read_why(errno));
		goto out;
	}
	if (rb_sha256_hex(*buf, *len, hex) < 0) {
		rb_fail(err, "cannot compute the SHA-256 of the runbook");
		goto out;
	}
	if (sumlen < 64 || memcmp(sum, hex, 64) != 0) {
		errno = EINVAL;
		rb_fail(err, "%s/%s does not match %s: the run's copy of the runbook was changed",
		     run_dir, RB_RUN_RUNBOOK, RB_RUN_RUNBOOK_SHA);
		goto out;
	}
	r = 0;
out:
	if (r < 0) {
		free(*buf);
		*buf = NULL;
		*len = 0;
	}
	free(sum);
	close(dfd);
	return r;
}
