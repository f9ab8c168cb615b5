/*
 * Tests interp/proc.c and interp/spawner.c with real processes, no mocks:
 * argv and sh -c forms, environment, cwd, stdin, capture, lines, spill, exit
 * statuses, 50 procs in one poll loop, and the lifetime guarantees: a tree
 * that ignores SIGTERM and hides a setsid daemon ends within
 * timeout + grace + 1 s, and nothing of a step survives a kill -9 of its
 * runner, its supervisor or the spawner.
 *
 * Build and run from the repository root (also under -fsanitize=address,undefined,
 * and under valgrind --error-exitcode=1 --leak-check=full --track-fds=yes):
 *   cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
 *     -Wno-missing-field-initializers -O2 -g -Iinterp -o /tmp/test_proc \
 *     tests/unit/test_proc.c interp/proc.c interp/spawner.c && /tmp/test_proc
 * Usage: test_proc [-v]; -v prints the timings.  tests/unit/proc/bench.c
 * measures the cost of a spawn.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"

#include "check.h"

static int verbose;


static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

/* ---- driving procs ---- */

/* Lines seen by on_line, as "1:text\n" / "2:text\n", and a flag for "up". */
struct lines {
	char *s;
	size_t len;
	int up;
	int calls;
};

static void on_line(void *ud, int stream, const char *line, size_t len)
{
	struct lines *l = ud;

	l->s = realloc(l->s, l->len + len + 4);
	l->len += (size_t)sprintf(l->s + l->len, "%d:", stream);
	memcpy(l->s + l->len, line, len);
	l->len += len;
	l->s[l->len++] = '\n';
	l->s[l->len] = 0;
	l->calls++;
	if (len == 2 && !memcmp(line, "up", 2))
		l->up = 1;
}

/*
 * One poll loop for n procs, the way the engine drives them: until all are
 * done, or until stop() says so, or limit seconds.  Returns 0 when all are done.
 */
static int drive(struct rb_proc **v, int n, double limit, int (*stop)(void *), void *arg)
{
	struct pollfd *fds = calloc((size_t)n * RB_PROC_MAX_FDS, sizeof *fds);
	int *cnt = calloc((size_t)n, sizeof *cnt), rc = -1;
	double end = now_s() + limit;

	while (now_s() < end) {
		int nf = 0, live = 0;
		long timeout = 100;

		for (int i = 0; i < n; i++) {
			long t;

			cnt[i] = rb_proc_pollfds(v[i], fds + nf, RB_PROC_MAX_FDS);
			if (cnt[i] < 0)
				cnt[i] = 0;
			if (rb_proc_done(v[i]))
				continue;
			live++;
			nf += cnt[i];
			t = rb_proc_timeout_ms(v[i]);
			if (t >= 0 && t < timeout)
				timeout = t;
		}
		if (!live) {
			rc = 0;
			break;
		}
		if (stop && stop(arg))
			break;
		if (poll(fds, (nfds_t)nf, (int)timeout) < 0 && errno != EINTR)
			break;
		nf = 0;
		for (int i = 0; i < n; i++) {
			rb_proc_handle(v[i], fds + nf, cnt[i]);
			nf += cnt[i];
		}
		rb_proc_reap();
	}
	free(fds);
	free(cnt);
	return rc;
}

static struct rb_proc *start(const struct rb_proc_spec *s)
{
	char *err = NULL;
	struct rb_proc *p = rb_proc_start(s, &err);

	CHECK(p, "rb_proc_start(%s): %s", s->argv[0], err ? err : "?");
	free(err);
	return p;
}

/* Starts, runs to the end (at most limit seconds), returns the proc or NULL. */
static struct rb_proc *run(const struct rb_proc_spec *s, double limit)
{
	struct rb_proc *p = start(s);

	if (p && drive(&p, 1, limit, NULL, NULL) < 0) {
		CHECK(0, "%s did not end within %.1f s", s->argv[0], limit);
		rb_proc_free(p);
		p = NULL;
	}
	return p;
}

static int up(void *arg)
{
	return ((struct lines *)arg)->up;
}

static int started(void *arg)
{
	return rb_proc_result(arg)->pid > 0;
}

/* ---- looking at /proc ---- */

static int read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, total = 0;

	if (fd < 0)
		return -1;
	while ((size_t)total < size - 1 && (n = read(fd, buf + total, size - 1 - (size_t)total)) > 0)
		total += n;
	close(fd);
	buf[total] = 0;
	return (int)total;
}

/* Processes whose environment holds the entry mark ("NAME=value"). */
static int count_marked(const char *mark)
{
	static char buf[1 << 16];
	DIR *d = opendir("/proc");
	struct dirent *e;
	size_t ml = strlen(mark);
	int count = 0;

	while (d && (e = readdir(d))) {
		char path[64];
		int n, pid = atoi(e->d_name);

		if (pid <= 0 || pid == getpid())
			continue;
		snprintf(path, sizeof path, "/proc/%d/environ", pid);
		n = read_file(path, buf, sizeof buf);
		for (int i = 0; i < n; i += (int)strlen(buf + i) + 1)
			if (!strncmp(buf + i, mark, ml) && buf[i + ml] == 0) {
				count++;
				break;
			}
	}
	if (d)
		closedir(d);
	return count;
}

static int wait_marked(const char *mark, int want_at_least, double limit)
{
	double end = now_s() + limit;
	int n;

	while ((n = count_marked(mark)) < want_at_least && now_s() < end)
		sleep_ms(20);
	return n;
}

/* Waits until no process holds mark, reaping orphans meanwhile; returns the seconds. */
static double wait_unmarked(const char *mark, double limit)
{
	double t0 = now_s();

	while (count_marked(mark) > 0 && now_s() - t0 < limit) {
		rb_proc_reap();
		sleep_ms(10);
	}
	rb_proc_reap();
	return now_s() - t0;
}

static int stat_of(int pid, int *ppid, char *state, char *comm, size_t commsz)
{
	char path[64], buf[1024], *l, *r;

	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	if (read_file(path, buf, sizeof buf) <= 0)
		return -1;
	l = strchr(buf, '(');
	r = strrchr(buf, ')');
	if (!l || !r || sscanf(r + 1, " %c %d", state, ppid) != 2)
		return -1;
	snprintf(comm, commsz, "%.*s", (int)(r - l - 1), l + 1);
	return 0;
}

/*
 * The descendants of this process other than the spawner, described in out:
 * between tests there must be none, zombies included.  Supervisors that just
 * ended may wait a moment for the spawner to reap them, so retry a while.
 */
static int descendants(char *out, size_t size)
{
	int pids[4096], ppids[4096], n = 0, count = 0;
	char states[4096], comms[4096][32];
	int mark[4096] = { 0 }, changed = 1;
	DIR *d = opendir("/proc");
	struct dirent *e;

	*out = 0;
	while (d && (e = readdir(d)) && n < 4096) {
		int pid = atoi(e->d_name);

		if (pid > 0 && stat_of(pid, &ppids[n], &states[n], comms[n], sizeof comms[n]) == 0)
			pids[n++] = pid;
	}
	if (d)
		closedir(d);
	while (changed) {
		changed = 0;
		for (int i = 0; i < n; i++) {
			if (mark[i])
				continue;
			if (ppids[i] == getpid()) {
				mark[i] = strcmp(comms[i], "rb-spawner") ? 1 : 2;
				changed = 1;
			}
			/* The spawner's idle supervisors wait for the next step. */
			for (int j = 0; j < n && !mark[i]; j++)
				if (mark[j] && pids[j] == ppids[i]) {
					mark[i] = mark[j] == 2 && !strcmp(comms[i], "rb-idle") ? 3 : 1;
					changed = 1;
				}
		}
	}
	for (int i = 0; i < n; i++) {
		size_t l = strlen(out);

		if (mark[i] != 1)
			continue;
		count++;
		snprintf(out + l, size - l, " %d(%s,%c,ppid %d)", pids[i], comms[i], states[i], ppids[i]);
	}
	return count;
}

static void check_clean(const char *when)
{
	static char what[8192];
	double end = now_s() + 2;
	int n;

	while ((n = descendants(what, sizeof what)) > 0 && now_s() < end) {
		rb_proc_reap();
		sleep_ms(10);
	}
	CHECK(n == 0, "after %s: descendants left:%s", when, what);
}

/* ---- the cases ---- */

static void t_argv_and_sh(void)
{
	const char *av[] = { "printf", "%s-%s\\n", "a", "b", NULL };
	const char *sh[] = { "sh", "-c", "echo out; echo err >&2; exit 3", NULL };
	struct rb_proc_spec s = { .argv = av, .mem_limit = 4096 };
	struct rb_proc *p = run(&s, 5);
	const struct rb_proc_result *r;

	if (p) {
		r = rb_proc_result(p);
		CHECK(r->exit_code == 0 && r->signal == -1, "argv: exit %d signal %d", r->exit_code,
		      r->signal);
		CHECK(!strcmp(r->out, "a-b\n") && r->err_len == 0, "argv: out '%s' err '%s'", r->out,
		      r->err);
		CHECK(r->pid > 0 && !r->error && !r->killed, "argv: pid %d error %s", r->pid,
		      r->error ? r->error : "-");
		rb_proc_free(p);
	}
	s.argv = sh;
	p = run(&s, 5);
	if (p) {
		r = rb_proc_result(p);
		CHECK(r->exit_code == 3, "sh -c: exit %d", r->exit_code);
		CHECK(!strcmp(r->out, "out\n") && r->out_len == 4, "sh -c: stdout '%s'", r->out);
		CHECK(!strcmp(r->err, "err\n") && r->err_total == 4, "sh -c: stderr '%s'", r->err);
		rb_proc_free(p);
	}
}

static void t_env(void)
{
	const char *av[] = { "sh", "-c",
		"printf '%s|%s|' \"$RB_SECRET\" \"$HOME\"; tr '\\0' ' ' </proc/$$/cmdline", NULL };
	const char *env[] = { "RB_SECRET=hunter2-rb", "HOME=/rb-home", "HOME=/rb-home-2", NULL };
	const char *tr[] = { "true", NULL };
	const char *path[] = { "PATH=/rb-nowhere", NULL };
	struct rb_proc_spec s = { .argv = av, .env = env, .mem_limit = 4096 };
	struct rb_proc *p = run(&s, 5);
	const struct rb_proc_result *r;
	const char *bad[] = { "hunter2-rb", NULL };
	char *err = NULL;

	if (p) {
		r = rb_proc_result(p);
		CHECK(!strncmp(r->out, "hunter2-rb|/rb-home-2|sh -c ", 28),
		      "env: the child saw '%s'", r->out);
		CHECK(!strstr(r->out + 11, "hunter2"), "env: the secret is on a command line: '%s'",
		      r->out);
		rb_proc_free(p);
	}
	/* PATH is searched in the child's environment, as execvp in the child would. */
	s.argv = tr;
	s.env = path;
	p = run(&s, 5);
	if (p) {
		r = rb_proc_result(p);
		CHECK(r->exit_code == 127, "PATH override: exit %d", r->exit_code);
		rb_proc_free(p);
	}
	s.env = bad;
	CHECK(!rb_proc_start(&s, &err) && err && !strstr(err, "hunter2"),
	      "a malformed env entry: %s", err ? err : "(accepted)");
	free(err);
}

static void t_cwd(void)
{
	const char *av[] = { "pwd", NULL };
	struct rb_proc_spec s = { .argv = av, .cwd = "/usr", .mem_limit = 4096 };
	struct rb_proc *p = run(&s, 5);
	const struct rb_proc_result *r;

	if (p) {
		CHECK(!strcmp(rb_proc_result(p)->out, "/usr\n"), "cwd: '%s'", rb_proc_result(p)->out);
		rb_proc_free(p);
	}
	s.cwd = "/rb-no-such-dir";
	p = run(&s, 5);
	if (p) {
		r = rb_proc_result(p);
		CHECK(r->exit_code == 126 && r->error && strstr(r->error, "/rb-no-such-dir"),
		      "bad cwd: exit %d, %s", r->exit_code, r->error ? r->error : "no error");
		rb_proc_free(p);
	}
}

/*
 * spec.sync: the supervisor fdatasyncs the file right before the command, and
 * does not start it when that fails.  A pipe's fdatasync fails for real
 * (EINVAL); the command would have created a file.  With stdin data too, so
 * that the descriptor is found after it in the request.
 */
static void t_sync_first(void)
{
	char dir[] = "/tmp/rb-test-sync-XXXXXX", log[64], mark[64];
	const char *av[] = { "sh", "-c", "cat >/dev/null; touch \"$0\"", mark, NULL };
	int pfd[2], fd;

	if (!mkdtemp(dir) || pipe2(pfd, O_CLOEXEC) < 0) {
		CHECK(0, "sync: setup: %s", strerror(errno));
		return;
	}
	snprintf(log, sizeof log, "%s/log", dir);
	snprintf(mark, sizeof mark, "%s/ran", dir);
	fd = open(log, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	CHECK(fd >= 0 && write(fd, "x\n", 2) == 2, "sync: log: %s", strerror(errno));
	for (int stdin_too = 0; stdin_too < 2; stdin_too++) {
		struct rb_proc_spec s = { .argv = av, .sync = 1, .sync_fd = pfd[0],
					  .stdin_data = stdin_too ? "in\n" : NULL,
					  .stdin_len = stdin_too ? 3 : 0 };
		struct rb_proc *p = run(&s, 5);
		const struct rb_proc_result *r;

		if (p) {
			r = rb_proc_result(p);
			CHECK(r->sync_errno == EINVAL && r->error &&
			      strstr(r->error, "fdatasync before it failed") && !r->pid,
			      "sync fails (stdin %d): errno %d, pid %d, '%s'", stdin_too,
			      r->sync_errno, r->pid, r->error ? r->error : "(none)");
			CHECK(access(mark, F_OK) < 0, "sync fails (stdin %d): the command ran",
			      stdin_too);
			rb_proc_free(p);
		}
		s.sync_fd = fd;
		p = run(&s, 5);
		if (p) {
			r = rb_proc_result(p);
			CHECK(!r->sync_errno && !r->error && r->exit_code == 0 &&
			      access(mark, F_OK) == 0,
			      "sync succeeds (stdin %d): errno %d, exit %d, '%s'", stdin_too,
			      r->sync_errno, r->exit_code, r->error ? r->error : "(none)");
			rb_proc_free(p);
		}
		unlink(mark);
	}
	close(fd);
	close(pfd[0]);
	close(pfd[1]);
	unlink(log);
	rmdir(dir);
}

/*
 * Supervisors serve step after step: nothing of one step (cwd, environment,
 * fds, a pending SIGTERM) may reach the next.  Also a relative command is
 * found from the step's cwd, and a request too big for one message (argv
 * past 64 KiB) still arrives whole.
 */
static void t_reuse_and_big(void)
{
	const char *a1[] = { "sh", "-c",
		"printf '%s|%s|' \"$PWD\" \"$RB_ONLY_ONCE\"; exec ls /proc/self/fd", NULL };
	const char *e1[] = { "RB_ONLY_ONCE=yes", NULL };
	const char *rel[] = { "./sh", "-c", "echo relative", NULL };
	/* Four arguments: one alone may not pass 128 KiB (MAX_ARG_STRLEN). */
	const char *big[] = { "sh", "-c", "echo $((${#1} + ${#2} + ${#3} + ${#4}))", "sh",
			      NULL, NULL, NULL, NULL, NULL };
	char *arg = malloc(60001);
	struct rb_proc_spec s = { .argv = a1, .env = e1, .cwd = "/usr", .mem_limit = 256 };
	struct rb_proc *p;

	for (int i = 0; i < 6; i++) {
		p = run(&s, 5);
		if (!p)
			break;
		CHECK(!strncmp(rb_proc_result(p)->out, i % 2 ? "/|" : "/usr|yes|", i % 2 ? 2 : 9),
		      "step %d saw '%s'", i, rb_proc_result(p)->out);
		/* 0-2 and the one ls opens, each time: no fd of another step leaked in. */
		CHECK(!strcmp(strrchr(rb_proc_result(p)->out, '|'), "|0\n1\n2\n3\n"),
		      "step %d has other fds: '%s'", i, rb_proc_result(p)->out);
		rb_proc_free(p);
		s.cwd = i % 2 ? "/usr" : "/";
		s.env = i % 2 ? e1 : NULL;
	}
	s = (struct rb_proc_spec){ .argv = rel, .cwd = "/bin", .mem_limit = 64 };
	p = run(&s, 5);
	if (p) {
		CHECK(!strcmp(rb_proc_result(p)->out, "relative\n"), "./sh from /bin: '%s' %s",
		      rb_proc_result(p)->out, rb_proc_result(p)->error ? rb_proc_result(p)->error : "");
		rb_proc_free(p);
	}
	memset(arg, 'a', 60000);
	arg[60000] = 0;
	big[4] = big[5] = big[6] = big[7] = arg;
	s = (struct rb_proc_spec){ .argv = big, .mem_limit = 64 };
	p = run(&s, 5);
	if (p) {
		CHECK(!strcmp(rb_proc_result(p)->out, "240000\n"), "240 kB of arguments: '%s' %s",
		      rb_proc_result(p)->out, rb_proc_result(p)->error ? rb_proc_result(p)->error : "");
		rb_proc_free(p);
	}
	free(arg);
}

static void t_stdin(void)
{
	const char *cat[] = { "cat", NULL };
	const char *tr[] = { "true", NULL };
	size_t n = 1 << 20;
	char *data = malloc(n), *tmp = malloc(n);
	struct rb_proc_spec s = { .argv = cat, .stdin_data = tmp, .stdin_len = n,
				  .mem_limit = 2 << 20 };
	struct rb_proc *p;

	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i * 7 + i / 251);
	memcpy(tmp, data, n);
	p = start(&s);
	/* Borrowed by rb_proc_start only: more than a pipeful of it is still to go. */
	memset(tmp, 0, n);
	free(tmp);
	if (p && drive(&p, 1, 10, NULL, NULL) == 0) {
		const struct rb_proc_result *r = rb_proc_result(p);

		CHECK(r->out_len == n && !memcmp(r->out, data, n), "stdin 1 MiB: got %zu bytes back",
		      r->out_len);
	} else {
		CHECK(0, "cat with 1 MiB of stdin did not end");
	}
	rb_proc_free(p);
	/* A command that does not read its stdin: EPIPE, not a hang or a SIGPIPE. */
	s.argv = tr;
	s.stdin_data = data;
	p = run(&s, 5);
	if (p) {
		CHECK(rb_proc_result(p)->exit_code == 0, "unread stdin: exit %d",
		      rb_proc_result(p)->exit_code);
		rb_proc_free(p);
	}
	free(data);
}

static void t_lines(void)
{
	const char *av[] = { "sh", "-c",
		"printf ab; sleep 0.05; printf 'c\\nde'; echo e1 >&2; sleep 0.05; printf 'f\\n\\ng';"
		" printf e2 >&2", NULL };
	const char *big[] = { "sh", "-c",
		"head -c 150000 /dev/zero | tr '\\0' x; echo; head -c 65536 /dev/zero | tr '\\0' y; echo",
		NULL };
	struct lines l = { 0 };
	struct rb_proc_spec s = { .argv = av, .mem_limit = 4096, .on_line = on_line, .ud = &l };
	struct rb_proc *p = run(&s, 5);

	if (p) {
		/* Streams interleave by arrival; compare each stream's lines in order. */
		char o[256] = "", e[256] = "";

		for (char *line = strtok(l.s, "\n"); line; line = strtok(NULL, "\n")) {
			char *to = line[0] == '1' ? o : e;

			strcat(to, line + 2);
			strcat(to, "|");
		}
		CHECK(!strcmp(o, "abc|def||g|") && l.calls == 6, "lines on stdout: '%s' (%d calls)", o,
		      l.calls);
		CHECK(!strcmp(e, "e1|e2|"), "lines on stderr: '%s'", e);
		rb_proc_free(p);
	}
	free(l.s);
	memset(&l, 0, sizeof l);
	s.argv = big;
	p = run(&s, 5);
	if (p) {
		/* 150000 = 65536 + 65536 + 18928; a line of exactly 65536 is one call. */
		CHECK(l.calls == 4 && l.len == 150000 + 65536 + 4 * 3,
		      "long lines: %d calls, %zu bytes", l.calls, l.len);
		rb_proc_free(p);
	}
	free(l.s);
}

static void t_spill(void)
{
	const char *av[] = { "seq", "1", "5000", NULL };
	char prefix[64], path[80], *want = malloc(32768), *got = malloc(32768);
	size_t wlen = 0;
	struct rb_proc_spec s = { .argv = av, .mem_limit = 1000, .spill_path = prefix };
	struct rb_proc *p;
	struct stat sb;
	int n;

	for (int i = 1; i <= 5000; i++)
		wlen += (size_t)sprintf(want + wlen, "%d\n", i);
	snprintf(prefix, sizeof prefix, "/tmp/rb-test-spill-%d", (int)getpid());
	p = run(&s, 5);
	if (p) {
		const struct rb_proc_result *r = rb_proc_result(p);

		CHECK(r->out_len == 1000 && !memcmp(r->out, want, 1000) && r->out[1000] == 0,
		      "spill: %zu bytes kept in memory", r->out_len);
		CHECK(r->out_total == wlen && r->out_spilled == wlen - 1000,
		      "spill: total %zu spilled %zu, want %zu", r->out_total, r->out_spilled, wlen);
		snprintf(path, sizeof path, "%s.stdout", prefix);
		n = read_file(path, got, 32768);
		CHECK(n == (int)(wlen - 1000) && !memcmp(got, want + 1000, wlen - 1000),
		      "spill file: %d bytes, not the rest of the output", n);
		CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600, "spill file mode %o",
		      (unsigned)sb.st_mode & 0777);
		CHECK(r->out_spill_file && !strcmp(r->out_spill_file, path) && !r->err_spill_file,
		      "the result names the spill file: %s", r->out_spill_file);
		snprintf(path, sizeof path, "%s.stderr", prefix);
		CHECK(access(path, F_OK) < 0, "an empty stream made a spill file");
		rb_proc_free(p);
	}
	/* Again: the file there (an earlier attempt's) is kept, the next name is taken. */
	p = run(&s, 5);
	if (p) {
		const struct rb_proc_result *r = rb_proc_result(p);
		snprintf(path, sizeof path, "%s.stdout.2", prefix);
		n = read_file(path, got, 32768);
		CHECK(r->out_spill_file && !strcmp(r->out_spill_file, path) &&
		      n == (int)(wlen - 1000) && !memcmp(got, want + 1000, wlen - 1000),
		      "a second spill goes to %s: %s", path, r->out_spill_file);
		snprintf(path, sizeof path, "%s.stdout", prefix);
		n = read_file(path, got, 32768);
		CHECK(n == (int)(wlen - 1000), "the first spill file is kept");
		unlink(path);
		snprintf(path, sizeof path, "%s.stdout.2", prefix);
		unlink(path);
		rb_proc_free(p);
	}
	/* A symbolic link in the file's place is not followed: nothing is written, ELOOP. */
	char victim[80];
	snprintf(victim, sizeof victim, "%s.victim", prefix);
	snprintf(path, sizeof path, "%s.stdout", prefix);
	CHECK(symlink(victim, path) == 0, "plant a symlink");
	p = run(&s, 5);
	if (p) {
		const struct rb_proc_result *r = rb_proc_result(p);
		CHECK(r->out_spilled == 0 && r->out_spill_errno == ELOOP && !r->out_spill_file &&
		      access(victim, F_OK) < 0, "a planted symlink is not followed (errno %d)",
		      r->out_spill_errno);
		rb_proc_free(p);
	}
	unlink(path);
	/* Without a spill path the rest is dropped, but counted. */
	s.spill_path = NULL;
	p = run(&s, 5);
	if (p) {
		const struct rb_proc_result *r = rb_proc_result(p);

		CHECK(r->out_len == 1000 && r->out_total == wlen && r->out_spilled == 0,
		      "no spill: len %zu total %zu spilled %zu", r->out_len, r->out_total,
		      r->out_spilled);
		rb_proc_free(p);
	}
	free(want);
	free(got);
}

static void t_exit_and_signal(void)
{
	static const struct {
		const char *script;
		int code, sig;
	} cases[] = {
		{ "exit 7", 7, -1 },
		{ "exit 255", 255, -1 },
		{ "kill -TERM $$", -1, SIGTERM },
		{ "kill -KILL $$", -1, SIGKILL },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *av[] = { "sh", "-c", cases[i].script, NULL };
		struct rb_proc_spec s = { .argv = av };
		struct rb_proc *p = run(&s, 5);

		if (!p)
			continue;
		CHECK(rb_proc_result(p)->exit_code == cases[i].code &&
		      rb_proc_result(p)->signal == cases[i].sig, "'%s': exit %d signal %d",
		      cases[i].script, rb_proc_result(p)->exit_code, rb_proc_result(p)->signal);
		rb_proc_free(p);
	}
}

static void t_not_found(void)
{
	static const struct {
		const char *cmd;
		int code;
		const char *msg;
	} cases[] = {
		{ "rb-no-such-command", 127, "cannot run 'rb-no-such-command': command not found" },
		{ "./rb-no-such-file", 127, "No such file or directory" },
		{ "/etc/passwd", 126, "Permission denied" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *av[] = { cases[i].cmd, NULL };
		struct rb_proc_spec s = { .argv = av };
		struct rb_proc *p = run(&s, 5);
		const struct rb_proc_result *r;

		if (!p)
			continue;
		r = rb_proc_result(p);
		CHECK(r->exit_code == cases[i].code && r->error && strstr(r->error, cases[i].msg),
		      "'%s': exit %d, error '%s'", cases[i].cmd, r->exit_code,
		      r->error ? r->error : "(none)");
		rb_proc_free(p);
	}
	/*
	 * Found and executable, but execve itself fails, in the child: its report comes
	 * through the supervisor's memory (vfork) or the error pipe (valgrind's fork).
	 */
	static const struct {
		const char *text;
		int code;
		const char *msg;
	} bad_exec[] = {
		{ "\x01\x02 not a program\n", 126, "Exec format error" },
	};
	for (size_t i = 0; i < sizeof bad_exec / sizeof bad_exec[0]; i++) {
		char path[] = "/tmp/rb-test-exec-XXXXXX";
		int fd = mkstemp(path);

		if (fd < 0 || write(fd, bad_exec[i].text, strlen(bad_exec[i].text)) < 0 ||
		    fchmod(fd, 0755) < 0) {
			CHECK(0, "cannot make %s: %s", path, strerror(errno));
			continue;
		}
		close(fd);
		const char *av[] = { path, NULL };
		struct rb_proc_spec s = { .argv = av };
		struct rb_proc *p = run(&s, 5);

		if (p) {
			const struct rb_proc_result *r = rb_proc_result(p);

			CHECK(r->exit_code == bad_exec[i].code && r->error &&
			      strstr(r->error, bad_exec[i].msg) && strstr(r->error, path),
			      "'%s': exit %d, error '%s'", bad_exec[i].text, r->exit_code,
			      r->error ? r->error : "(none)");
			rb_proc_free(p);
		}
		unlink(path);
	}
}

static void t_many(void)
{
	enum { N = 50 };
	struct rb_proc *v[N];
	char envs[N][32], want[64];
	const char *av[] = { "sh", "-c", "echo o$I; sleep 0.3; echo e$I >&2", NULL };
	double t0 = now_s();
	int ok = 0;

	for (int i = 0; i < N; i++) {
		const char *env[] = { envs[i], NULL };
		struct rb_proc_spec s = { .argv = av, .env = env, .mem_limit = 64 };

		snprintf(envs[i], sizeof envs[i], "I=%d", i);
		v[i] = start(&s);
		if (!v[i])
			return;
	}
	CHECK(drive(v, N, 20, NULL, NULL) == 0, "50 procs did not all end");
	for (int i = 0; i < N; i++) {
		const struct rb_proc_result *r = rb_proc_result(v[i]);
		char wante[32];

		snprintf(want, sizeof want, "o%d\n", i);
		snprintf(wante, sizeof wante, "e%d\n", i);
		ok += rb_proc_done(v[i]) && r->exit_code == 0 && !strcmp(r->out, want) &&
		      !strcmp(r->err, wante);
		rb_proc_free(v[i]);
	}
	CHECK(ok == N, "50 procs: %d ended with the right output", ok);
	if (verbose)
		printf("50 procs of 0.3 s in one loop: %.2f s\n", now_s() - t0);
	CHECK(now_s() - t0 < 10, "50 procs of 0.3 s took %.1f s", now_s() - t0);
}

static void t_cancel(void)
{
	const char *av[] = { "sleep", "30", NULL };
	struct rb_proc_spec s = { .argv = av, .grace_ms = 5000 };
	struct rb_proc *p = start(&s);
	const struct rb_proc_result *r;
	double t0;

	if (!p)
		return;
	drive(&p, 1, 0.2, NULL, NULL);
	t0 = now_s();
	rb_proc_terminate(p, 5000);
	CHECK(drive(&p, 1, 5, NULL, NULL) == 0 && now_s() - t0 < 2,
	      "sleep did not end promptly on SIGTERM (%.2f s)", now_s() - t0);
	r = rb_proc_result(p);
	CHECK(r->killed && !r->timed_out && r->signal == SIGTERM,
	      "cancel: killed %d timed_out %d signal %d", r->killed, r->timed_out, r->signal);
	rb_proc_free(p);
}

/* Cancelled at once, in a burst: each either never starts or is killed, fast. */
static void t_cancel_burst(void)
{
	enum { N = 20 };
	char mark[64];
	const char *av[] = { "sleep", "30", NULL };
	const char *env[] = { mark, NULL };
	struct rb_proc_spec s = { .argv = av, .env = env };
	struct rb_proc *v[N];
	double t0 = now_s();
	int ok = 0, cancelled = 0;

	snprintf(mark, sizeof mark, "RB_TEST_MARK=burst-%d", (int)getpid());
	for (int i = 0; i < N; i++) {
		v[i] = start(&s);
		if (!v[i])
			return;
		rb_proc_terminate(v[i], 0);
	}
	CHECK(drive(v, N, 5, NULL, NULL) == 0 && now_s() - t0 < 2,
	      "a cancelled burst took %.2f s", now_s() - t0);
	for (int i = 0; i < N; i++) {
		const struct rb_proc_result *r = rb_proc_result(v[i]);
		int never = r->error && strstr(r->error, "cancelled before it started");

		cancelled += never;
		ok += r->killed && (never || r->signal == SIGKILL || r->signal == SIGTERM);
		rb_proc_free(v[i]);
	}
	if (verbose)
		printf("cancelled burst: %d of %d never started\n", cancelled, N);
	CHECK(ok == N, "cancelled burst: %d of %d ended as cancelled or killed", ok, N);
	CHECK(wait_unmarked(mark, 1) < 1, "%d processes of a cancelled burst survived",
	      count_marked(mark));
	check_clean("a cancelled burst");
}

/*
 * The issue's test: a shell that ignores SIGTERM (and passes that on), three
 * levels of grandchildren, an orphan, and a setsid daemon holding stdout.
 */
static const char nasty[] =
	"trap '' TERM\n"
	"sh -c 'sh -c \"sh -c \\\"sleep 30; :\\\"; :\"; :' &\n"
	"setsid sh -c 'sleep 30; :' &\n"
	"(sleep 30 &)\n"
	"echo up\n"
	"while :; do sleep 1; done\n";

static void t_nasty_timeout(void)
{
	char mark[64];
	const char *av[] = { "sh", "-c", nasty, NULL };
	const char *env[] = { mark, NULL };
	struct lines l = { 0 };
	struct rb_proc_spec s = { .argv = av, .env = env, .timeout_ms = 300, .grace_ms = 300,
				  .on_line = on_line, .ud = &l, .mem_limit = 4096 };
	double t0 = now_s(), t;
	struct rb_proc *p;
	int seen;

	snprintf(mark, sizeof mark, "RB_TEST_MARK=nasty-%d", (int)getpid());
	p = start(&s);
	if (!p)
		return;
	drive(&p, 1, 5, up, &l);
	seen = wait_marked(mark, 8, 0.25);
	CHECK(seen >= 8, "the nasty tree had %d processes, not 8 or more", seen);
	CHECK(drive(&p, 1, 5, NULL, NULL) == 0, "the nasty tree did not end");
	t = now_s() - t0;
	if (verbose)
		printf("nasty tree, timeout 0.3 s + grace 0.3 s: ended after %.3f s\n", t);
	CHECK(t >= 0.55 && t <= 0.3 + 0.3 + 1.0, "the nasty tree ended after %.3f s", t);
	CHECK(rb_proc_result(p)->killed && rb_proc_result(p)->timed_out &&
	      rb_proc_result(p)->signal == SIGKILL, "nasty: killed %d timed_out %d signal %d",
	      rb_proc_result(p)->killed, rb_proc_result(p)->timed_out, rb_proc_result(p)->signal);
	CHECK(!strcmp(rb_proc_result(p)->out, "up\n"), "nasty: out '%s'", rb_proc_result(p)->out);
	rb_proc_free(p);
	CHECK(count_marked(mark) == 0, "%d processes of the nasty tree survived", count_marked(mark));
	check_clean("the nasty tree");
	free(l.s);
}

/* What a command leaves behind is stopped when it exits, holding stdout or not. */
static void t_leftovers(void)
{
	char mark[64];
	const char *av[] = { "sh", "-c",
		"sleep 30 & setsid sleep 30 & setsid sh -c 'trap \"\" TERM; sleep 30' & echo bye",
		NULL };
	const char *env[] = { mark, NULL };
	struct rb_proc_spec s = { .argv = av, .env = env, .grace_ms = 200, .mem_limit = 64 };
	double t0 = now_s();
	struct rb_proc *p;

	snprintf(mark, sizeof mark, "RB_TEST_MARK=left-%d", (int)getpid());
	p = run(&s, 5);
	if (!p)
		return;
	CHECK(rb_proc_result(p)->exit_code == 0 && !strcmp(rb_proc_result(p)->out, "bye\n"),
	      "leftovers: exit %d out '%s'", rb_proc_result(p)->exit_code, rb_proc_result(p)->out);
	CHECK(now_s() - t0 < 0.2 + 1.0, "leftovers took %.2f s", now_s() - t0);
	CHECK(count_marked(mark) == 0, "%d leftovers survived", count_marked(mark));
	rb_proc_free(p);
	check_clean("leftovers");
}

/* Freeing a live proc kills its tree. */
static void t_free_live(void)
{
	char mark[64];
	const char *av[] = { "sh", "-c", nasty, NULL };
	const char *env[] = { mark, NULL };
	struct lines l = { 0 };
	struct rb_proc_spec s = { .argv = av, .env = env, .on_line = on_line, .ud = &l };
	struct rb_proc *p;

	snprintf(mark, sizeof mark, "RB_TEST_MARK=free-%d", (int)getpid());
	p = start(&s);
	if (!p)
		return;
	drive(&p, 1, 5, up, &l);
	wait_marked(mark, 8, 0.25);
	rb_proc_free(p);
	CHECK(wait_unmarked(mark, 2) < 2, "freeing a live proc left %d processes", count_marked(mark));
	check_clean("rb_proc_free");
	free(l.s);
}

/* kill -9 of the supervisor: the spawner gets the orphans and kills them. */
static void t_supervisor_killed(void)
{
	char mark[64], comm[32], st;
	const char *av[] = { "sh", "-c", nasty, NULL };
	const char *env[] = { mark, NULL };
	struct lines l = { 0 };
	struct rb_proc_spec s = { .argv = av, .env = env, .on_line = on_line, .ud = &l };
	struct rb_proc *p;
	int sup = 0, ppid;

	snprintf(mark, sizeof mark, "RB_TEST_MARK=sup-%d", (int)getpid());
	p = start(&s);
	if (!p)
		return;
	drive(&p, 1, 5, up, &l);
	wait_marked(mark, 8, 0.25);
	stat_of(rb_proc_result(p)->pid, &sup, &st, comm, sizeof comm);
	strcpy(comm, "?");
	CHECK(sup > 0 && stat_of(sup, &ppid, &st, comm, sizeof comm) == 0 &&
	      !strcmp(comm, "rb-step"), "the command's parent is '%s', not rb-step", comm);
	kill(sup, SIGKILL);
	CHECK(drive(&p, 1, 5, NULL, NULL) == 0, "the proc did not end with its supervisor");
	CHECK(rb_proc_result(p)->error != NULL, "no error for a killed supervisor");
	rb_proc_free(p);
	CHECK(wait_unmarked(mark, 2) < 2, "%d processes survived their supervisor",
	      count_marked(mark));
	check_clean("kill -9 of a supervisor");
	free(l.s);
}

/*
 * kill -9 of the idle supervisors, round after round: the spawner counts
 * them out when it reaps them and forks others, so the next step runs.  (A
 * request sent while one is dying may reach it and fail: see proc.h.  So
 * the step starts when the killed ones are gone.)
 */
static void t_idle_supervisors_killed(void)
{
	const char *av[] = { "echo", "fine", NULL };
	struct rb_proc_spec s = { .argv = av, .mem_limit = 64 };

	for (int round = 0; round < 5; round++) {
		struct rb_proc *q;
		char comm[32], st;
		int ppid, gp, killed[64], n = 0;
		double end = now_s() + 2;

		/* The spawner forks the next ones after it reaps the last round's: wait for them. */
		while (n == 0 && now_s() < end) {
			DIR *d = opendir("/proc");
			struct dirent *e;

			while (d && (e = readdir(d)) && n < 64) {
				int pid = atoi(e->d_name);

				if (pid > 0 && stat_of(pid, &ppid, &st, comm, sizeof comm) == 0 &&
				    !strcmp(comm, "rb-idle") &&
				    stat_of(ppid, &gp, &st, comm, sizeof comm) == 0 &&
				    gp == getpid() && kill(pid, SIGKILL) == 0)
					killed[n++] = pid;
			}
			if (d)
				closedir(d);
			if (n == 0)
				sleep_ms(10);
		}
		CHECK(n >= 1, "round %d: found no idle supervisor to kill", round);
		end = now_s() + 2;
		for (int i = 0; i < n; i++)
			while (kill(killed[i], 0) == 0 && now_s() < end)
				sleep_ms(5);
		q = run(&s, 5);
		CHECK(q && !rb_proc_result(q)->error && !strcmp(rb_proc_result(q)->out, "fine\n"),
		      "round %d: no step ran after the idle supervisors were killed: %s", round,
		      !q ? "-" : rb_proc_result(q)->error ? rb_proc_result(q)->error
							  : rb_proc_result(q)->out);
		rb_proc_free(q);
	}
	check_clean("kill -9 of the idle supervisors");
}

/* kill -9 of the spawner: running steps go on, the next start makes another. */
static void t_spawner_killed(void)
{
	const char *av[] = { "sh", "-c", "sleep 0.3; echo fine", NULL };
	struct rb_proc_spec s = { .argv = av, .mem_limit = 64 };
	struct rb_proc *p = start(&s), *q;
	char comm[32], st;
	int ppid, killed = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;

	if (!p)
		return;
	/* Started (the supervisor reported): a request still in flight would be lost. */
	drive(&p, 1, 5, started, p);
	while (d && (e = readdir(d))) {
		int pid = atoi(e->d_name);

		if (pid > 0 && stat_of(pid, &ppid, &st, comm, sizeof comm) == 0 &&
		    ppid == getpid() && !strcmp(comm, "rb-spawner"))
			killed += kill(pid, SIGKILL) == 0;
	}
	if (d)
		closedir(d);
	CHECK(killed == 1, "found %d spawners to kill", killed);
	CHECK(drive(&p, 1, 5, NULL, NULL) == 0 && !strcmp(rb_proc_result(p)->out, "fine\n"),
	      "a running step did not survive its spawner");
	rb_proc_free(p);
	q = run(&s, 5);
	CHECK(q && !strcmp(rb_proc_result(q)->out, "fine\n"), "no new spawner");
	rb_proc_free(q);
	check_clean("kill -9 of the spawner");
}

/* kill -9 of the runner: nothing of its steps survives, within 2 s. */
static void t_runner_killed(void)
{
	char mark[64];
	int ready[2];
	pid_t runner;
	char c = 0;
	double t;

	snprintf(mark, sizeof mark, "RB_TEST_MARK=runner-%d", (int)getpid());
	if (pipe(ready) < 0)
		return;
	fflush(stdout);
	runner = fork();
	if (runner == 0) {
		const char *av[] = { "sh", "-c", nasty, NULL };
		const char *env[] = { mark, NULL };
		struct lines l = { 0 };
		struct rb_proc_spec s = { .argv = av, .env = env, .on_line = on_line, .ud = &l };
		struct rb_proc *p;
		char *err = NULL;

		close(ready[0]);
		if (rb_proc_init(1, &err) < 0 || !(p = rb_proc_start(&s, &err)))
			_exit(1);
		drive(&p, 1, 5, up, &l);
		if (write(ready[1], "R", 1) != 1)
			_exit(1);
		drive(&p, 1, 60, NULL, NULL);
		_exit(1);
	}
	close(ready[1]);
	if (runner < 0 || read(ready[0], &c, 1) != 1 || c != 'R') {
		CHECK(0, "the runner did not start its step");
		close(ready[0]);
		if (runner > 0) {
			kill(runner, SIGKILL);
			waitpid(runner, NULL, 0);
		}
		return;
	}
	close(ready[0]);
	CHECK(wait_marked(mark, 8, 0.5) >= 8, "the runner's tree had %d processes",
	      count_marked(mark));
	kill(runner, SIGKILL);
	waitpid(runner, NULL, 0);
	t = wait_unmarked(mark, 2);
	if (verbose)
		printf("kill -9 of the runner: its tree was gone after %.3f s\n", t);
	CHECK(count_marked(mark) == 0, "%d processes survived kill -9 of their runner",
	      count_marked(mark));
	check_clean("kill -9 of the runner");
}

int main(int argc, char **argv)
{
	char *err = NULL;
	double t0 = now_s();

	verbose = argc > 1 && !strcmp(argv[1], "-v");
	if (rb_proc_init(1, &err) < 0) {
		printf("FAIL rb_proc_init: %s\n", err);
		printf("proc: 0 passed, 1 failed\n");
		return 1;
	}
	t_argv_and_sh();
	t_env();
	t_cwd();
	t_reuse_and_big();
	t_stdin();
	t_lines();
	t_spill();
	t_exit_and_signal();
	t_not_found();
	t_sync_first();
	t_many();
	t_cancel();
	t_cancel_burst();
	t_nasty_timeout();
	t_leftovers();
	t_free_live();
	t_supervisor_killed();
	t_idle_supervisors_killed();
	t_spawner_killed();
	t_runner_killed();
	check_clean("all tests");
	rb_proc_shutdown();
	rb_proc_reap();
	if (verbose)
		printf("total %.2f s\n", now_s() - t0);
	printf("proc: %d passed, %d failed\n", npass, nfail);
	return nfail ? 1 : 0;
}
