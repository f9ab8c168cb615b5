/*
 * pg.query and pg.exec: SQL on PostgreSQL with libpq, stepped in the engine's
 * poll loop (libpq's asynchronous interface, pipeline mode: a step's
 * statements go out together and come back in one round trip).
 *
 * pg.query runs one statement in a READ ONLY transaction, so it cannot
 * write to tables even if its SQL says so.  What such a transaction does not
 * stop (COPY TO PROGRAM, pg_terminate_backend) is found in its SQL: those
 * calls have side effects (unstopped()).  pg.exec runs its
 * statements in one transaction, or each alone (transaction: false) for what
 * cannot run in one (VACUUM, CREATE INDEX CONCURRENTLY).  Parameters travel
 * apart from the SQL ($1..$n), never spliced into it.
 *
 * A connection is opened once per run and conninfo (runctx.h) and reused:
 * a reused one is reset first (DISCARD ALL, in the same round trip), and one
 * left in a transaction that failed is closed, never given back.  A cancel
 * or a deadline cancels the statement on the server too (PQcancel, on a
 * thread of its own since it connects), then closes the connection.
 *
 * Values come back typed (docs/actions.md): integers, booleans, json and
 * jsonb decoded, timestamps in ISO 8601, numeric as a string (it may not fit
 * a double), NULL as null.  The session's DateStyle, TimeZone (UTC) and
 * client encoding (UTF8) are fixed at connect, so the text libpq gives is
 * what these rules read.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "action.h"
#include "pg.h"
#include "resolve.h"
#include "runctx.h"
#include "types.h"
#include "util.h"

/* Type OIDs of the built-in types read here (pg_type.h, stable across versions). */
enum {
	OID_BOOL = 16, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_OID = 26,
	OID_JSON = 114, OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_TIMESTAMP = 1114,
	OID_TIMESTAMPTZ = 1184, OID_NUMERIC = 1700, OID_JSONB = 3802,
};

/* The most rows kept in an output; a query that returns more fails (use LIMIT). */
#define PG_MAX_ROWS     100000

static const struct rb_arg query_args[] = {
	{"conn", RB_T_STRING, RB_ARG_REQUIRED | RB_ARG_SECRET, NULL, "the connection: a "
	 "postgresql:// URL or a conninfo string, from secrets"},
	{"sql", RB_T_STRING, RB_ARG_REQUIRED, NULL, "one statement, with $1..$n for params"},
	{"params", RB_T_LIST, 0, NULL, "the values of $1..$n (null is NULL; lists and maps go "
	 "as JSON)"},
	{"statement_timeout", RB_T_DURATION, 0, NULL, "the server stops the statement after "
	 "this (the step's timeout bounds it too)"},
	{NULL, 0, 0, NULL, NULL},
};

static const struct rb_arg exec_args[] = {
	{"conn", RB_T_STRING, RB_ARG_REQUIRED | RB_ARG_SECRET, NULL, "the connection: a "
	 "postgresql:// URL or a conninfo string, from secrets"},
	{"sql", RB_T_ANY, RB_ARG_REQUIRED, NULL, "a statement, or a list of statements (strings, "
	 "or maps {sql, params})"},
	{"params", RB_T_LIST, 0, NULL, "the values of $1..$n of a single statement"},
	{"statement_timeout", RB_T_DURATION, 0, NULL, "the server stops a statement after this"},
	{"transaction", RB_T_BOOLEAN, 0, NULL, "run the statements in one transaction (default "
	 "true); false runs each alone, for VACUUM or CREATE INDEX CONCURRENTLY"},
	{"exactly_once", RB_T_BOOLEAN, RB_ARG_MAKES_IDEMPOTENT, NULL, "record a marker row for "
	 "the call in the same transaction, so that a resume after a crash runs it again only "
	 "when it did not commit (docs/exactly-once.md)"},
	{"marker_table", RB_T_STRING, 0, NULL, "the markers' table, created when missing "
	 "(default runbook_markers; schema.table allowed)"},
	{NULL, 0, 0, NULL, NULL},
};

#define PG_MARKERS      "runbook_markers"

/* A table name of one or two lower-case identifiers: it is quoted into SQL. */
static int table_name_ok(const char *t)
{
	int parts = 0;
	for (const char *p = t;; p++) {
		if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
			return 0;
		while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')
			p++;
		parts++;
		if (!*p)
			return parts <= 2 && p - t <= 127;
		if (*p != '.')
			return 0;
	}
}

/* --- arguments ------------------------------------------------------------------------- */

static int ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '$' || (unsigned char)c >= 0x80;
}

/*
 * The highest $N in sql, outside quotes, quoted identifiers, dollar quotes and
 * comments: how many params it takes.  -1 when a quote or comment is not closed.
 */
static int max_param(const char *s)
{
	int max = 0;
	for (const char *p = s; *p;) {
		if (*p == '\'' || *p == '"') {
			/* An escape string (E'it\'s'): a backslash escapes the next character. */
			int esc = *p == '\'' && p > s && (p[-1] == 'E' || p[-1] == 'e') &&
				  (p - 1 == s || !ident_char(p[-2]));
			char q = *p++;
			while (*p && !(*p == q && p[1] != q))
				p += *p == q || (esc && *p == '\\' && p[1]) ? 2 : 1;
			if (!*p)
				return -1;
			p++;
		} else if (p[0] == '-' && p[1] == '-') {
			while (*p && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");
			if (!e)
				return -1;
			p = e + 2;
		} else if (*p == '$' && p > s && ident_char(p[-1])) {
			p++;            /* inside an identifier (a$1): neither a param nor a quote */
		} else if (*p == '$' && (p[1] == '$' || (p[1] >= 'A' && p[1] <= 'Z') ||
					 (p[1] >= 'a' && p[1] <= 'z') || p[1] == '_')) {
			const char *t = p + 1;          /* a dollar quote: $tag$ ... $tag$ */
			while (*t && *t != '$' && (*t == '_' || (*t >= 'a' && *t <= 'z') ||
						   (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9')))
				t++;
			if (*t != '$') {
				p++;
				continue;
			}
			size_t n = (size_t)(t - p + 1);
			const char *e = t + 1;
			while (*e && strncmp(e, p, n))
				e++;
			if (!*e)
				return -1;
			p = e + n;
		} else if (*p == '$' && p[1] >= '1' && p[1] <= '9') {
			long n = strtol(p + 1, (char **)&p, 10);
			if (n > max)
				max = n > 65535 ? 65535 : (int)n;
		} else {
			p++;
		}
	}
	return max;
}

/* One statement and its params (unknown: known only at run time): the count matches its $N. */
static int check_statement(const char *sql, const json_t *params, int unknown, const char *arg,
			   int index, struct rb_arg_error *e)
{
	if (!*sql)
		return rb_arg_fail(e, arg, index, rb_xstrdup("an empty statement"));
	int n = max_param(sql);
	if (n < 0)
		return rb_arg_fail(e, arg, index, rb_xstrdup("a quote, dollar quote or comment is "
							   "not closed"));
	if (params && !json_is_array(params))
		return rb_arg_fail(e, "params", -1, rb_xstrdup("expected a list"));
	if (unknown)
		return 0;
	size_t have = params ? json_array_size(params) : 0;
	if ((size_t)n != have)
	{
		char takes[48];
		if (n == 0)
			snprintf(takes, sizeof(takes), "no parameters");
		else
			snprintf(takes, sizeof(takes), "%d parameter%s ($%s%d)", n, n == 1 ? "" : "s",
				 n == 1 ? "" : "1..$", n);
		return rb_arg_fail(e, params ? "params" : arg, params ? -1 : index, rb_xasprintf(
			"the statement takes %s, and %zu %s given", takes, have,
			have == 1 ? "is" : "are"));
	}
	return 0;
}

static int check_common(const json_t *args, struct rb_arg_error *e)
{
	const char *conn = json_string_value(json_object_get(args, "conn"));
	char *why = NULL;
	if (conn) {             /* at run time: libpq says whether it parses */
		PQconninfoOption *o = PQconninfoParse(conn, &why);
		if (!o) {
			/* libpq quotes the text it could not read: the secret stays out. */
			PQfreemem(why);
			return rb_arg_fail(e, "conn", -1, rb_xstrdup(
				"not a postgresql:// URL nor a conninfo string"));
		}
		PQconninfoFree(o);
	}
	return 0;
}

static int query_check(const json_t *args, const json_t *later, struct rb_arg_error *e)
{
	const char *sql = json_string_value(json_object_get(args, "sql"));
	if (sql && check_statement(sql, json_object_get(args, "params"),
				   rb_arg_later(later, "params"), "sql", -1, e) < 0)
		return -1;
	return check_common(args, e);
}

/* The first word of a statement, upper case, for the plan: "DELETE". */
static void verb(const char *sql, char *out, size_t size)
{
	while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '\r' || *sql == '(')
		sql++;
	size_t n = 0;
	while (n + 1 < size && ((*sql >= 'a' && *sql <= 'z') || (*sql >= 'A' && *sql <= 'Z'))) {
		char c = *sql++;
		out[n++] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
	}
	out[n] = '\0';
}

/* The n-th word (0: the first) of sql, upper case, past blanks and comments, into w. */
static void word_at(const char *sql, int n, char *w, size_t size)
{
	const char *p = sql;
	for (int k = 0;; k++) {
		for (;;) {
			p += strspn(p, " \t\r\n(");
			if (p[0] == '-' && p[1] == '-')
				p += strcspn(p, "\n");
			else if (p[0] == '/' && p[1] == '*' && strstr(p + 2, "*/"))
				p = strstr(p + 2, "*/") + 2;
			else
				break;
		}
		if (k == n) {
			verb(p, w, size);
			return;
		}
		while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
			p++;
	}
}

/*
 * Whether sql ends or begins a transaction (COMMIT, ROLLBACK, BEGIN...; not ROLLBACK TO
 * a savepoint): in the step's transaction, the statements after a COMMIT would run
 * outside it, committed whatever follows, and exactly_once's marker with them.
 */
static int ends_transaction(const char *sql, char *v, size_t size)
{
	static const char *const verbs[] = {"ABORT", "BEGIN", "COMMIT", "END", "START", NULL};
	char w2[32], w3[32];
	word_at(sql, 0, v, size);
	for (const char *const *x = verbs; *x; x++)
		if (!strcmp(v, *x))
			return 1;
	word_at(sql, 1, w2, sizeof(w2));
	word_at(sql, 2, w3, sizeof(w3));
	if (!strcmp(v, "ROLLBACK"))
		return strcmp(w2, "TO") && strcmp(w3, "TO");
	return !strcmp(v, "PREPARE") && !strcmp(w2, "TRANSACTION");
}

static int exec_check(const json_t *args, const json_t *later, struct rb_arg_error *e)
{
	json_t *sql = json_object_get(args, "sql"), *params = json_object_get(args, "params");
	int in_tx = !json_is_false(json_object_get(args, "transaction"));
	size_t i;
	json_t *st;
	json_array_foreach(json_is_array(sql) ? sql : NULL, i, st) {
		const char *s = json_string_value(json_is_object(st) ? json_object_get(st, "sql") : st);
		char w[32];
		if (in_tx && s && ends_transaction(s, w, sizeof(w)))
			return rb_arg_fail(e, "sql", (int)i, rb_xasprintf(
				"%s in the step's transaction, which the action begins and commits: "
				"what follows would run outside it (give transaction: false to "
				"control transactions in the statements)", w));
	}
	char w[32];
	if (in_tx && json_is_string(sql) && ends_transaction(json_string_value(sql), w, sizeof(w)))
		return rb_arg_fail(e, "sql", -1, rb_xasprintf(
			"%s in the step's transaction, which the action begins and commits (give "
			"transaction: false to control transactions in the statements)", w));
	if (json_is_string(sql) && check_statement(json_string_value(sql), params,
						   rb_arg_later(later, "params"), "sql", -1, e) < 0)
		return -1;
	if (sql && !json_is_array(sql) && !json_is_string(sql))
		return rb_arg_fail(e, "sql", -1, rb_xstrdup("expected a statement or a list of "
							  "statements"));
	if (json_is_array(sql) && !json_array_size(sql))
		return rb_arg_fail(e, "sql", -1, rb_xstrdup("an empty list of statements"));
	if (json_is_array(sql) && rb_arg_given(args, later, "params"))
		return rb_arg_fail(e, "params", -1, rb_xstrdup("with a list of statements, give "
							     "each its params: {sql, params}"));
	(void)later;
	if (json_is_true(json_object_get(args, "exactly_once")) &&
	    json_is_false(json_object_get(args, "transaction")))
		return rb_arg_fail(e, "exactly_once", -1, rb_xstrdup(
			"needs a transaction: the marker commits with the statements or not at all"));
	const char *mt = json_string_value(json_object_get(args, "marker_table"));
	if (mt && !table_name_ok(mt))
		return rb_arg_fail(e, "marker_table", -1, rb_xstrdup(
			"expected a table name: lower-case letters, digits and _, or schema.table"));
	size_t k;
	json_t *v;
	json_array_foreach(json_is_array(sql) ? sql : NULL, k, v) {
		json_t *s = json_is_object(v) ? json_object_get(v, "sql") : v;
		if (!json_is_string(s))
			return rb_arg_fail(e, "sql", (int)k, rb_xstrdup(
				"expected a statement: a string, or a map {sql, params}"));
		if (json_is_object(v)) {
			const char *key;
			json_t *x;
			json_object_foreach(v, key, x)
				if (strcmp(key, "sql") && strcmp(key, "params"))
					return rb_arg_fail(e, "sql", (int)k, rb_xasprintf(
						"unknown key '%s' in a statement (sql, params)", key));
		}
		if (check_statement(json_string_value(s), json_is_object(v)
				    ? json_object_get(v, "params") : NULL, 0, "sql", (int)k, e) < 0) {
			if (!strcmp(e->arg, "params")) {
				e->arg = "sql";
				e->index = (int)k;
			}
			return -1;
		}
	}
	return check_common(args, e);
}

/*
 * What a READ ONLY transaction does not stop (PostgreSQL 15): statements that write
 * outside the tables (COPY to a file or a program on the server, CHECKPOINT, ANALYZE,
 * REINDEX, LOAD) and functions that act on the server (end other sessions, switch WAL,
 * make replication slots, reset statistics, reload the configuration) or beyond it.
 */
static const char *const ro_verbs[] = {
	"ANALYZE", "CHECKPOINT", "CLUSTER", "COPY", "LOAD", "NOTIFY", "REINDEX", "VACUUM", NULL,
};
static const char *const ro_functions[] = {
	"dblink", "dblink_exec", "dblink_send_query", "lo_export", "lo_import",
	"pg_advisory_lock", "pg_advisory_lock_shared", "pg_backup_start", "pg_backup_stop",
	"pg_cancel_backend", "pg_copy_logical_replication_slot",
	"pg_copy_physical_replication_slot", "pg_create_logical_replication_slot",
	"pg_create_physical_replication_slot", "pg_create_restore_point",
	"pg_drop_replication_slot", "pg_file_rename", "pg_file_sync", "pg_file_unlink",
	"pg_file_write", "pg_log_backend_memory_contexts", "pg_logical_emit_message",
	"pg_logical_slot_get_binary_changes", "pg_logical_slot_get_changes", "pg_notify",
	"pg_promote", "pg_reload_conf", "pg_replication_origin_advance",
	"pg_replication_origin_create", "pg_replication_origin_drop",
	"pg_replication_slot_advance", "pg_rotate_logfile", "pg_start_backup", "pg_stat_reset",
	"pg_stat_reset_replication_slot", "pg_stat_reset_shared",
	"pg_stat_reset_single_function_counters", "pg_stat_reset_single_table_counters",
	"pg_stat_reset_slru", "pg_stat_reset_subscription_stats", "pg_stat_statements_reset",
	"pg_stop_backup", "pg_switch_wal", "pg_switch_xlog", "pg_terminate_backend",
	"pg_try_advisory_lock", "pg_try_advisory_lock_shared", "pg_wal_replay_pause",
	"pg_wal_replay_resume", NULL,
};

/* Whether the word s[0, n) is in list, in any case (SQL folds unquoted names). */
static int in_list(const char *const *list, const char *s, size_t n)
{
	for (; *list; list++)
		if (strlen(*list) == n && !strncasecmp(*list, s, n))
			return 1;
	return 0;
}

/*
 * The first of sql's words, outside quotes and comments, that a read-only transaction
 * does not stop: its verb, or "a call of" a function (its name followed by "("), into out.
 * 0 when there is none.
 */
static int unstopped(const char *sql, char *out, size_t size)
{
	int first = 1;
	for (const char *p = sql; *p;) {
		if (*p == '\'' || *p == '"') {
			int esc = *p == '\'' && p > sql && (p[-1] == 'E' || p[-1] == 'e');
			char q = *p++;
			while (*p && !(*p == q && p[1] != q))
				p += *p == q || (esc && *p == '\\' && p[1]) ? 2 : 1;
			p += *p ? 1 : 0;
		} else if (p[0] == '-' && p[1] == '-') {
			p += strcspn(p, "\n");
		} else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");
			p = e ? e + 2 : p + strlen(p);
		} else if (*p == '$' && (p[1] == '$' || (p[1] >= 'A' && p[1] <= 'Z') ||
					 (p[1] >= 'a' && p[1] <= 'z') || p[1] == '_')) {
			const char *t = p + 1;  /* a dollar quote: $tag$ ... $tag$ (a body: not run) */
			while (*t && *t != '$' && ident_char(*t))
				t++;
			if (*t != '$') {
				p++;
				continue;
			}
			size_t n = (size_t)(t - p + 1);
			const char *e;
			for (e = t + 1; *e && strncmp(e, p, n); e++)
				;
			p = *e ? e + n : e;
		} else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_') {
			const char *w = p;
			while (ident_char(*p))
				p++;
			size_t n = (size_t)(p - w);
			const char *after = p + strspn(p, " \t\r\n");
			if (first && in_list(ro_verbs, w, n)) {
				verb(w, out, size);
				return 1;
			}
			if (*after == '(' && in_list(ro_functions, w, n)) {
				snprintf(out, size, "a call of %.*s", (int)n, w);
				return 1;
			}
			first = 0;
		} else {
			first &= *p == '(' || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n';
			p++;
		}
	}
	return 0;
}

static enum rb_effect query_effect(const json_t *args, const json_t *later, char **what)
{
	(void)later;
	const char *sql = json_string_value(json_object_get(args, "sql"));
	char v[64];
	if (sql && unstopped(sql, v, sizeof(v))) {
		*what = rb_xasprintf("%s, which a read-only transaction does not stop", v);
		return RB_EFFECT_WRITES;
	}
	if (sql) {
		verb(sql, v, sizeof(v));
		*what = rb_xasprintf("%s in a read-only transaction", *v ? v : "a statement");
	}
	return RB_EFFECT_READS;
}

static enum rb_effect exec_effect(const json_t *args, const json_t *later, char **what)
{
	(void)later;
	json_t *sql = json_object_get(args, "sql");
	struct rb_buf b;
	rb_buf_init(&b);
	if (!sql)
		rb_buf_puts(&b, "statements known at run time");
	size_t k, n = json_is_array(sql) ? json_array_size(sql) : sql ? 1 : 0;
	for (k = 0; k < n; k++) {
		json_t *v = json_is_array(sql) ? json_array_get(sql, k) : sql;
		const char *s = json_string_value(json_is_object(v) ? json_object_get(v, "sql") : v);
		char w[32];
		verb(s ? s : "", w, sizeof(w));
		rb_buf_printf(&b, "%s%s", k ? ", " : "", *w ? w : "?");
	}
	int tx = !json_is_false(json_object_get(args, "transaction"));
	rb_buf_printf(&b, n > 1 && tx ? " in one transaction" : !tx ? ", each alone" : "");
	if (json_is_true(json_object_get(args, "exactly_once"))) {
		const char *mt = json_string_value(json_object_get(args, "marker_table"));
		rb_buf_printf(&b, ", exactly once (a marker in %s)", mt ? mt : PG_MARKERS);
	}
	*what = rb_buf_detach(&b);
	return RB_EFFECT_WRITES;
}

/* --- a call under way ------------------------------------------------------------------ */

enum phase { P_RESOLVE, P_CONNECT, P_FLUSH, P_READ };

/* What a command sent in the pipeline is, to read its result. */
enum cmd { C_RESET, C_MARKERS, C_BEGIN, C_TIMEOUT, C_MARKER, C_USER, C_COMMIT, C_SYNC };

struct pg {
	const struct rb_call *c;
	int readonly, transaction;
	PGconn *conn;
	int fresh;                      /* opened by this call (not reset first) */
	int kept;                       /* the connection was kept from an earlier step */
	int reconnected;                /* ... it failed, and a new one took over */
	enum phase phase;
	const char *conninfo;
	/*
	 * P_RESOLVE: the hosts the conninfo names (a comma-separated list), the next
	 * one to look up, its lookup under way, and each name beside each of its
	 * addresses so far (libpq's host and hostaddr lists, tried in turn).
	 */
	char *hosts;
	char *next_host;
	struct rb_resolve *lookup;
	struct rb_buf names, addrs;
	json_t *stmts;                  /* [{sql, params}] */
	size_t next;                    /* the next statement to send (transaction: false) */
	struct sent {                   /* what was sent, in order, to read the results */
		enum cmd what;
		size_t stmt;            /* C_USER: which statement */
	} *cmds;
	size_t ncmds, cmdcap, cmdhead;
	size_t user;                    /* the statement whose result is being read */
	json_t *results;                /* one per statement */
	/*
	 * A user's statement's rows come one at a time (libpq's single-row mode), so that
	 * one that returns too many fails at PG_MAX_ROWS instead of after libpq has held
	 * them all in memory: those so far, and the columns.  mid: a command's results
	 * have begun (single-row mode can be asked for only before they do).
	 */
	json_t *rows, *cols;
	int mid;
	size_t single_for;              /* 1 + the command single-row mode was asked for */
	json_t *notices;                /* the server's notices (RAISE NOTICE, warnings) */
	char *error;                    /* the first error */
	const char *err_arg;
	int err_index;
	long err_pos;                   /* the server's position in the statement, or 0 */
	int failed;
	int exactly_once;
	int explain;                    /* rb_call.explain: EXPLAIN each statement, run none */
	json_t *explained;              /* ... what the server said, one per statement */
	char *markers;                  /* their table, quoted */
	int committed_before;           /* the marker was there: an earlier attempt committed */
	long timeout_ms;                /* statement_timeout, or 0 */
	int64_t deadline_ms;
};

/* Deliver a cancel to the server without blocking the engine: PQcancel connects. */
static void *cancel_thread(void *arg)
{
	char err[256];
	PQcancel(arg, err, sizeof(err));
	PQfreeCancel(arg);
	return NULL;
}

static void cancel_on_server(PGconn *conn)
{
	PGcancel *k = PQgetCancel(conn);
	pthread_t t;
	pthread_attr_t at;
	if (!k)
		return;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &at, cancel_thread, k) != 0)
		cancel_thread(k);
	pthread_attr_destroy(&at);
}

static void close_conn(void *conn)
{
	PQfinish(conn);
}

/* The most notices kept in an output. */
#define PG_MAX_NOTICES  100

static void on_notice(void *arg, const PGresult *r)
{
	struct pg *p = arg;
	const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	/* The user's statements' only: not those of the engine's own (CREATE ... IF NOT EXISTS). */
	if (!p || !msg || json_array_size(p->notices) >= PG_MAX_NOTICES ||
	    p->cmdhead >= p->ncmds || p->cmds[p->cmdhead].what != C_USER)
		return;
	const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
	size_t n;
	char *clean = rb_utf8_lossy(msg, strlen(msg), &n);
	json_array_append_new(p->notices, json_pack("{s:s, s:s%}", "severity", sev ? sev : "NOTICE",
						    "message", clean, n));
	free(clean);
}

static void quiet(void *arg, const PGresult *r)
{
	(void)arg;
	(void)r;
}

static void drop_rows(struct pg *p)
{
	json_decref(p->rows);
	json_decref(p->cols);
	p->rows = p->cols = NULL;
}

static void free_pg(struct pg *p, int keep)
{
	if (p->conn) {
		PQsetNoticeReceiver(p->conn, quiet, NULL);
		if (keep && PQstatus(p->conn) == CONNECTION_OK &&
		    PQtransactionStatus(p->conn) == PQTRANS_IDLE &&
		    PQpipelineStatus(p->conn) == PQ_PIPELINE_OFF)
			rb_pool_give(p->c->run, "pg", p->conninfo, p->conn, close_conn);
		else
			PQfinish(p->conn);
	}
	rb_resolve_free(p->lookup);
	free(p->hosts);
	rb_buf_release(&p->names);
	rb_buf_release(&p->addrs);
	json_decref(p->stmts);
	json_decref(p->results);
	drop_rows(p);
	json_decref(p->notices);
	json_decref(p->explained);
	free(p->markers);
	free(p->cmds);
	free(p->error);
	free(p);
}

static void push_cmd(struct pg *p, enum cmd c, size_t stmt)
{
	rb_grow(&p->cmds, &p->cmdcap, p->ncmds + 1, sizeof(*p->cmds));
	p->cmds[p->ncmds++] = (struct sent){c, stmt};
}

/* Params as libpq takes them: text, NULL for null, JSON text for lists and maps. */
static int send_statement(struct pg *p, const json_t *st, size_t which)
{
	const char *sql = json_string_value(json_object_get(st, "sql"));
	json_t *params = json_object_get(st, "params");
	size_t n = json_array_size(params);
	char **vals = rb_xcalloc(n ? n : 1, sizeof(*vals));
	for (size_t k = 0; k < n; k++) {
		json_t *v = json_array_get(params, k);
		if (json_is_null(v))
			vals[k] = NULL;
		else if (json_is_string(v))
			vals[k] = rb_xstrdup(json_string_value(v));
		else if (json_is_true(v) || json_is_false(v))
			vals[k] = rb_xstrdup(json_is_true(v) ? "true" : "false");
		else
			vals[k] = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	}
	int r = PQsendQueryParams(p->conn, sql, (int)n, NULL, (const char *const *)vals, NULL,
				  NULL, 0);
	for (size_t k = 0; k < n; k++)
		free(vals[k]);
	free(vals);
	push_cmd(p, C_USER, which);
	return r;
}

/* The markers' table as SQL: each part quoted. */
static char *quote_table(PGconn *conn, const char *name)
{
	const char *t = name ? name : PG_MARKERS, *dot = strchr(t, '.');
	char *a = PQescapeIdentifier(conn, t, dot ? (size_t)(dot - t) : strlen(t));
	char *b = dot ? PQescapeIdentifier(conn, dot + 1, strlen(dot + 1)) : NULL;
	char *q = rb_xasprintf("%s%s%s", a ? a : "\"?\"", b ? "." : "", b ? b : "");
	PQfreemem(a);
	PQfreemem(b);
	return q;
}

/* What EXPLAIN takes: plannable statements (VACUUM, ALTER, CREATE INDEX are not). */
static int explainable(const char *sql)
{
	static const char *const verbs[] = {"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE",
					    "VALUES", "WITH", "TABLE", NULL};
	char v[32];
	verb(sql, v, sizeof(v));
	for (const char *const *w = verbs; *w; w++)
		if (!strcmp(v, *w))
			return 1;
	return 0;
}

/* A probe's statement: EXPLAIN of it, never it; a statement EXPLAIN cannot take is named. */
static int send_explain(struct pg *p, const json_t *st, size_t k)
{
	const char *sql = json_string_value(json_object_get(st, "sql"));
	char v[32];
	verb(sql, v, sizeof(v));
	if (!explainable(sql)) {
		char *note = rb_xasprintf("%s: not explained (EXPLAIN does not take it)", v);
		json_array_append_new(p->explained, json_pack("{s:s, s:s}", "statement", v, "note",
							      note));
		free(note);
		return 1;
	}
	json_array_append_new(p->explained, json_pack("{s:s}", "statement", v));
	json_t *e = json_pack("{s:s, s:O}", "sql", "", "params",
			      json_object_get(st, "params") ? json_object_get(st, "params")
			      : json_null());
	char *text = rb_xasprintf("EXPLAIN (FORMAT JSON) %s", sql);
	json_object_set_new(e, "sql", json_string(text));
	free(text);
	if (!json_object_get(st, "params"))
		json_object_del(e, "params");
	int r = send_statement(p, e, k);
	json_decref(e);
	return r;
}

/* Send what comes next: the whole transaction, or the next statement alone. */
static int send_next(struct pg *p)
{
	if (PQenterPipelineMode(p->conn) != 1)
		return 0;
	int ok = 1;
	if (!p->fresh) {        /* what an earlier step left in the session goes */
		ok &= PQsendQueryParams(p->conn, "DISCARD ALL", 0, NULL, NULL, NULL, NULL, 0);
		push_cmd(p, C_RESET, 0);
		ok &= PQpipelineSync(p->conn);
		push_cmd(p, C_SYNC, 0);
		p->fresh = 1;
	}
	if (p->exactly_once && !p->markers) {   /* its own transaction, before the call's */
		p->markers = quote_table(p->conn, json_string_value(json_object_get(
			p->c->args, "marker_table")));
		char *create = rb_xasprintf("CREATE TABLE IF NOT EXISTS %s (key text PRIMARY KEY, "
					    "run_id text NOT NULL, step text NOT NULL, item bigint, "
					    "committed_at timestamptz NOT NULL DEFAULT now())",
					    p->markers);
		ok &= PQsendQueryParams(p->conn, create, 0, NULL, NULL, NULL, NULL, 0);
		free(create);
		push_cmd(p, C_MARKERS, 0);
		ok &= PQpipelineSync(p->conn);
		push_cmd(p, C_SYNC, 0);
	}
	size_t n = json_array_size(p->stmts);
	size_t from = p->next, to = p->transaction ? n : p->next + 1;
	if (p->transaction) {
		ok &= PQsendQueryParams(p->conn, p->readonly ? "BEGIN READ ONLY" : "BEGIN", 0, NULL,
					NULL, NULL, NULL, 0);
		push_cmd(p, C_BEGIN, 0);
	}
	long ms = p->timeout_ms;
	if (p->deadline_ms) {
		long left = (long)(p->deadline_ms - rb_now_ms());
		if (!ms || left < ms)
			ms = left < 1 ? 1 : left;
	}
	if (ms) {               /* SET LOCAL in a transaction; for this statement alone, else */
		char v[32];
		snprintf(v, sizeof(v), "%ld", ms);
		const char *vals[1] = {v};
		ok &= PQsendQueryParams(p->conn, p->transaction
					? "SELECT set_config('statement_timeout', $1, true)"
					: "SELECT set_config('statement_timeout', $1, false)", 1,
					NULL, vals, NULL, NULL, 0);
		push_cmd(p, C_TIMEOUT, 0);
		if (!p->transaction) {
			/* its own implicit transaction: VACUUM, CREATE DATABASE refuse to
			 * share one with anything */
			ok &= PQpipelineSync(p->conn);
			push_cmd(p, C_SYNC, 0);
		}
	}
	if (p->exactly_once) {
		/*
		 * First in the transaction: a second attempt's insert waits on the key while
		 * an earlier one's transaction is still open on the server, then fails when
		 * that one committed (23505), or goes on when it did not.
		 */
		char key[33], item[32];
		rb_call_key(p->c, key);
		snprintf(item, sizeof(item), "%zu", p->c->item);
		const char *vals[4] = {key, rb_runctx_id(p->c->run), p->c->step,
				       p->c->item == RB_NO_ITEM ? NULL : item};
		char *ins = rb_xasprintf("INSERT INTO %s (key, run_id, step, item) "
					 "VALUES ($1, $2, $3, $4)", p->markers);
		ok &= PQsendQueryParams(p->conn, ins, 4, NULL, vals, NULL, NULL, 0);
		free(ins);
		push_cmd(p, C_MARKER, 0);
	}
	for (size_t k = from; k < to; k++)
		if (p->explain)
			ok &= send_explain(p, json_array_get(p->stmts, k), k);
		else
			ok &= send_statement(p, json_array_get(p->stmts, k), k);
	if (p->transaction) {
		ok &= PQsendQueryParams(p->conn, p->explain ? "ROLLBACK" : "COMMIT", 0, NULL, NULL,
					NULL, NULL, 0);
		push_cmd(p, C_COMMIT, 0);
	}
	ok &= PQpipelineSync(p->conn);
	push_cmd(p, C_SYNC, 0);
	p->next = to;
	p->phase = P_FLUSH;
	return ok;
}

/* A value of column type oid as JSON, by the rules in the header. */
static json_t *value_json(Oid type, const char *v, int len)
{
	char *end;
	switch (type) {
	case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID: {
		long long n = strtoll(v, &end, 10);
		return *end ? json_string(v) : json_integer((json_int_t)n);
	}
	case OID_FLOAT4: case OID_FLOAT8: {
		double d = strtod(v, &end);
		/* NaN and Infinity are no JSON numbers: they stay text. */
		return *end || d != d || d - d != 0 ? json_string(v) : json_real(d);
	}
	case OID_BOOL:
		return json_boolean(v[0] == 't');
	case OID_JSON: case OID_JSONB: {
		json_t *j = json_loadb(v, (size_t)len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		return j ? j : json_stringn(v, (size_t)len);
	}
	case OID_TIMESTAMP: case OID_TIMESTAMPTZ: {
		/* ISO DateStyle: "2026-01-01 10:00:00.5+00"; UTC, so the zone is +00. */
		char *s = rb_xstrndup(v, (size_t)len);
		char *sp = strchr(s, ' ');
		if (sp)
			*sp = 'T';
		size_t n = strlen(s);
		if (type == OID_TIMESTAMPTZ && n > 3 && !strcmp(s + n - 3, "+00"))
			strcpy(s + n - 3, "Z");
		json_t *j = json_string(s);
		free(s);
		return j;
	}
	default: {
		size_t n;
		char *clean = rb_utf8_lossy(v, (size_t)len, &n);
		json_t *j = json_stringn(clean, n);
		free(clean);
		return j;
	}
	}
}

static json_t *columns_json(const PGresult *r)
{
	json_t *cols = json_array();
	for (int f = 0; f < PQnfields(r); f++)
		json_array_append_new(cols, json_pack("{s:s, s:I}", "name", PQfname(r, f), "type_oid",
						      (json_int_t)PQftype(r, f)));
	return cols;
}

static json_t *row_json(const PGresult *r, int t)
{
	json_t *row = json_object();
	for (int f = 0; f < PQnfields(r); f++)
		json_object_set_new(row, PQfname(r, f), PQgetisnull(r, t, f) ? json_null()
				    : value_json(PQftype(r, f), PQgetvalue(r, t, f),
						 PQgetlength(r, t, f)));
	return row;
}

/* A statement's result: r's rows, or those that came one at a time before it (rows, cols). */
static json_t *result_json(const PGresult *r, json_t *rows, json_t *cols)
{
	if (!rows) {
		rows = json_array();
		for (int t = 0; t < PQntuples(r); t++)
			json_array_append_new(rows, row_json(r, t));
	}
	if (!cols)
		cols = columns_json(r);
	const char *tuples = PQcmdTuples((PGresult *)r);
	return json_pack("{s:o, s:o, s:s, s:I, s:I}", "rows", rows, "columns", cols, "command",
			 PQcmdStatus((PGresult *)r), "row_count", (json_int_t)json_array_size(rows),
			 "rows_affected", (json_int_t)(*tuples ? strtoll(tuples, NULL, 10) : 0));
}

/* The server's words on an error: SQLSTATE, message, detail, hint; its position kept. */
void rb_pg_error_words(struct rb_buf *b, const PGresult *r, const char *fallback)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
	const char *hint = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);
	rb_buf_puts(b, msg ? msg : fallback);
	if (state)
		rb_buf_printf(b, " (SQLSTATE %s)", state);
	if (detail)
		rb_buf_printf(b, "; detail: %s", detail);
	if (hint)
		rb_buf_printf(b, "; hint: %s", hint);
}

static void take_error(struct pg *p, const PGresult *r, int user)
{
	if (p->error)
		return;
	const char *pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
	struct rb_buf b;
	rb_buf_init(&b);
	if (json_array_size(p->stmts) > 1 && user)
		rb_buf_printf(&b, "statement %zu: ", p->user + 1);
	rb_pg_error_words(&b, r, "the statement failed");
	p->error = rb_buf_detach(&b);
	p->failed = 1;
	if (user && pos) {
		p->err_arg = "sql";
		p->err_index = json_array_size(p->stmts) > 1 || json_is_array(json_object_get(
			p->c->args, "sql")) ? (int)p->user : -1;
		p->err_pos = strtol(pos, NULL, 10);
		if (p->explain)         /* the statement follows "EXPLAIN (FORMAT JSON) " */
			p->err_pos -= (long)strlen("EXPLAIN (FORMAT JSON) ");
	}
}

/* The estimate of the rows a plan touches: a ModifyTable's are its input's. */
static json_t *plan_rows(const json_t *plan)
{
	const char *type = json_string_value(json_object_get(plan, "Node Type"));
	if (type && !strcmp(type, "ModifyTable"))
		plan = json_array_get(json_object_get(plan, "Plans"), 0);
	json_t *n = json_object_get(plan, "Plan Rows");
	return n ? json_incref(n) : json_null();
}

/* A probe's EXPLAIN of statement p->user: its plan, and the rows it would touch. */
static void explained(struct pg *p, const PGresult *r)
{
	json_t *e = NULL;
	size_t k;
	json_t *v;
	char want[32];
	verb(json_string_value(json_object_get(json_array_get(p->stmts, p->user), "sql")), want,
	     sizeof(want));
	/* The entry of this statement: the first of its verb without a plan yet. */
	json_array_foreach(p->explained, k, v)
		if (!json_object_get(v, "plan") && !json_object_get(v, "note") &&
		    !strcmp(json_string_value(json_object_get(v, "statement")), want)) {
			e = v;
			break;
		}
	if (!e || PQntuples(r) < 1)
		return;
	json_t *plans = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
	json_t *plan = json_object_get(json_array_get(plans, 0), "Plan");
	if (plan) {
		json_object_set(e, "plan", plan);
		json_t *rows = plan_rows(plan);
		json_object_set_new(e, "rows", rows);
		/* One line for a reviewer: the statement, the rows, how the table is read. */
		const json_t *scan = plan;
		while (json_object_get(scan, "Plans"))
			scan = json_array_get(json_object_get(scan, "Plans"), 0);
		const char *node = json_string_value(json_object_get(scan, "Node Type"));
		const char *rel = json_string_value(json_object_get(scan, "Relation Name"));
		char *line = rb_xasprintf("%s: about %lld row%s; %s%s%s", want,
					  (long long)json_integer_value(rows),
					  json_integer_value(rows) == 1 ? "" : "s",
					  node ? node : "a plan", rel ? " on " : "", rel ? rel : "");
		json_object_set_new(e, "summary", json_string(line));
		free(line);
	}
	json_decref(plans);
}

static int sqlstate_is(const PGresult *r, const char *code)
{
	const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	return st && !strcmp(st, code);
}

/*
 * Ask for the next command's rows one at a time when it is a user's statement.  Only
 * before libpq parses its results: right after the command before it ended (its NULL),
 * before PQisBusy, which parses.  When libpq cannot, its rows come together, as before.
 */
static void single_row(struct pg *p)
{
	if (!p->mid && !p->explain && p->cmdhead < p->ncmds && p->cmds[p->cmdhead].what == C_USER &&
	    p->single_for != p->cmdhead + 1) {
		PQsetSingleRowMode(p->conn);
		p->single_for = p->cmdhead + 1;
	}
}

/* Read what has come; 1 when the call is over. */
static int read_results(struct pg *p)
{
	if (!PQconsumeInput(p->conn))
		return -1;
	int nulls = 0;
	single_row(p);
	while (!PQisBusy(p->conn)) {
		PGresult *r = PQgetResult(p->conn);
		if (!r) {       /* between the results of two commands; twice: nothing more yet */
			p->mid = 0;
			single_row(p);
			if (++nulls > 1)
				break;
			continue;
		}
		nulls = 0;
		ExecStatusType s = PQresultStatus(r);
		p->mid = s != PGRES_PIPELINE_SYNC;
		if (s == PGRES_SINGLE_TUPLE) {
			if (!p->rows) {
				p->rows = json_array();
				p->cols = columns_json(r);
			}
			json_array_append_new(p->rows, row_json(r, 0));
			PQclear(r);
			if (json_array_size(p->rows) > PG_MAX_ROWS) {
				/* The rest would come for nothing: the server stops, the
				 * connection goes (free_pg keeps no failed one). */
				if (!p->error)
					p->error = rb_xasprintf("the statement returned more than %d "
								"rows: give it a LIMIT", PG_MAX_ROWS);
				p->failed = 1;
				drop_rows(p);
				cancel_on_server(p->conn);
				return 1;
			}
			continue;
		}
		enum cmd c = p->cmdhead < p->ncmds ? p->cmds[p->cmdhead].what : C_SYNC;
		p->user = p->cmdhead < p->ncmds ? p->cmds[p->cmdhead].stmt : 0;
		if (s == PGRES_PIPELINE_SYNC) {
			/* skip to the sync: what the error aborted has come as PIPELINE_ABORTED */
			while (p->cmdhead < p->ncmds && p->cmds[p->cmdhead].what != C_SYNC)
				p->cmdhead++;
			p->cmdhead++;
			PQclear(r);
			if (p->cmdhead < p->ncmds)
				continue;
			PQexitPipelineMode(p->conn);
			if (p->failed || p->next >= json_array_size(p->stmts))
				return 1;
			return send_next(p) ? 0 : -1;
		}
		if (s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH) {
			/*
			 * The server waits for rows, or sends them, and libpq answers every
			 * PQgetResult with the COPY again: this loop would spin on the engine's
			 * thread for ever, deaf to the timeout.  The call fails here, and the
			 * connection is closed (free_pg keeps no failed one): the server rolls the
			 * transaction back.
			 */
			PQclear(r);
			if (!p->error) {
				struct rb_buf b;
				rb_buf_init(&b);
				if (json_array_size(p->stmts) > 1)
					rb_buf_printf(&b, "statement %zu: ", p->user + 1);
				rb_buf_printf(&b, "COPY %s is not supported: the action %s (COPY a "
					      "file on the server, or use %s)", s == PGRES_COPY_IN
					      ? "FROM STDIN" : "TO STDOUT", s == PGRES_COPY_IN
					      ? "sends no rows" : "takes no rows", s == PGRES_COPY_IN
					      ? "INSERT" : "SELECT");
				p->error = rb_buf_detach(&b);
			}
			p->failed = 1;
			return 1;
		}
		p->cmdhead++;
		if (s == PGRES_FATAL_ERROR && c == C_MARKER && sqlstate_is(r, "23505")) {
			p->committed_before = 1;        /* the rest is aborted, and rolled back */
		} else if (s == PGRES_FATAL_ERROR && c == C_MARKERS &&
			   (sqlstate_is(r, "23505") || sqlstate_is(r, "42P07") ||
			    sqlstate_is(r, "42710"))) {
			/* another call made the table at the same moment: it is there (the
			 * race shows as the table, its row type, or pg_type's unique index) */
			;
		} else if (s == PGRES_FATAL_ERROR) {
			drop_rows(p);   /* rows that came before the error are not its result */
			take_error(p, r, c == C_USER);
		} else if (s == PGRES_PIPELINE_ABORTED) {
			;
		} else if (c == C_USER && p->explain) {
			explained(p, r);
		} else if (c == C_USER) {
			if (PQntuples(r) > PG_MAX_ROWS && !p->error) {
				p->error = rb_xasprintf("the statement returned %d rows, more than "
							"%d: give it a LIMIT", PQntuples(r),
							PG_MAX_ROWS);
				p->failed = 1;
			} else {
				json_array_append_new(p->results, result_json(r, p->rows, p->cols));
				p->rows = p->cols = NULL;
			}
		}
		PQclear(r);
	}
	return 0;
}

/* The call's output: the statement's result, or with a list, all of theirs. */
static json_t *output_of(struct pg *p)
{
	if (p->explain) {
		json_t *out = json_pack("{s:O}", "explain", p->explained);
		if (json_array_size(p->notices))
			json_object_set(out, "notices", p->notices);
		return out;
	}
	json_t *sql = json_object_get(p->c->args, "sql");
	json_t *last = json_array_get(p->results, json_array_size(p->results) - 1);
	json_t *out = last ? json_copy(last) : json_object();
	if (p->committed_before) {      /* what it returned then is not known now */
		char key[33];
		rb_call_key(p->c, key);
		json_object_set_new(out, "committed_before", json_true());
		json_object_set_new(out, "marker", json_string(key));
	}
	if (json_is_array(sql))
		json_object_set(out, "results", p->results);
	if (json_array_size(p->notices))
		json_object_set(out, "notices", p->notices);
	return out;
}

static void finish(struct pg *p, struct rb_result *res, enum rb_outcome o, char *error)
{
	res->outcome = o;
	res->error = error;
	if (o == RB_OK || json_array_size(p->results) || p->explain)
		res->output = output_of(p);
}

/* The connection's own error, without the host, user or password libpq may put in it. */
char *rb_pg_conn_error(PGconn *conn, const char *doing)
{
	const char *m = conn ? PQerrorMessage(conn) : "out of memory";
	/* libpq says 'connection to server at "HOST" (ADDR), port N failed: WHY' */
	const char *why = strstr(m, "failed: ");
	why = why ? why + 8 : m;
	size_t n = strcspn(why, "\n");
	return rb_xasprintf("%s: %.*s", doing, (int)n, *why ? why : "the connection failed");
}

static char *conn_error(struct pg *p, const char *doing)
{
	return rb_pg_conn_error(p->conn, doing);
}

/* The host (or hosts) the conninfo names, when it names them by name, not hostaddr. */
static char *conn_host(const char *conninfo)
{
	PQconninfoOption *o = PQconninfoParse(conninfo, NULL);
	const char *host = NULL, *hostaddr = NULL;
	for (PQconninfoOption *x = o; x && x->keyword; x++)
		if (!strcmp(x->keyword, "host") && x->val && *x->val)
			host = x->val;
		else if (!strcmp(x->keyword, "hostaddr") && x->val && *x->val)
			hostaddr = x->val;
	if (!host && !hostaddr)
		host = getenv("PGHOST");
	char *h = host && !hostaddr ? rb_xstrdup(host) : NULL;
	PQconninfoFree(o);
	return h;
}

/*
 * Start connecting; when the hosts were looked up, to their addresses (each
 * name beside each of its addresses: libpq tries them in turn).  -1 with *err.
 */
static int connect_start(struct pg *p, const char *hosts, const char *hostaddrs, char **err)
{
	/*
	 * Fixed session settings: what the value rules read.  They follow the options the
	 * conninfo gives (-c search_path=app), which a later "options" would replace whole,
	 * and win over them; its application_name and connect_timeout win over ours.
	 */
	static const char fixed[] = "-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 "
				    "-c extra_float_digits=3";
	const char *given = NULL, *timeout = "30";
	PQconninfoOption *o = PQconninfoParse(p->conninfo, NULL);
	for (PQconninfoOption *x = o; x && x->keyword; x++)
		if (!strcmp(x->keyword, "options") && x->val && *x->val)
			given = x->val;
		else if (!strcmp(x->keyword, "connect_timeout") && x->val && *x->val)
			timeout = x->val;
	char *options = given ? rb_xasprintf("%s %s", given, fixed) : rb_xstrdup(fixed);
	const char *keys[] = {"dbname", "client_encoding", "options", "fallback_application_name",
			      "connect_timeout", hosts ? "host" : NULL, "hostaddr", NULL};
	const char *vals[] = {p->conninfo, "UTF8", options, "runbook", timeout, hosts, hostaddrs,
			      NULL};
	p->conn = PQconnectStartParams(keys, vals, 1);
	free(options);
	PQconninfoFree(o);
	if (!p->conn || PQstatus(p->conn) == CONNECTION_BAD) {
		*err = p->conn ? conn_error(p, "cannot connect")
		       : rb_xstrdup("cannot connect: out of memory");
		return -1;
	}
	PQsetNoticeReceiver(p->conn, on_notice, p);
	p->fresh = 1;
	p->phase = P_CONNECT;
	return 0;
}

/* Open a connection: look its host up first when it names one (libpq would block). */
static int open_conn(struct pg *p, char **err)
{
	char *host = conn_host(p->conninfo);
	int names = 0;
	for (char *h = host, *end; h && *h; h = *end ? end + 1 : end) {
		end = h + strcspn(h, ",");
		char c = *end;
		*end = '\0';
		names |= rb_resolve_needed(h);
		*end = c;
	}
	if (!names) {
		free(host);
		return connect_start(p, NULL, NULL, err);
	}
	free(p->hosts);
	p->hosts = p->next_host = host;
	p->names.len = p->addrs.len = 0;
	p->phase = P_RESOLVE;
	return 0;
}

/*
 * Look the next of the hosts up.  1 when all are (connect to their addresses),
 * 0 while one is under way, -1 with *err.
 */
static int resolve_hosts(struct pg *p, char **err)
{
	while (*p->next_host) {
		char *h = p->next_host, *end = h + strcspn(h, ",");
		char c = *end;
		*end = '\0';
		if (!rb_resolve_needed(h)) {    /* an address, or a socket's directory */
			rb_buf_printf(&p->names, "%s%s", p->names.len ? "," : "", h);
			rb_buf_printf(&p->addrs, "%s%s", p->addrs.len ? "," : "",
				      *h == '/' || *h == '@' ? "" : h);
		} else {
			/* The name is part of the conninfo, a secret: messages do not quote it
			 * (a password with an @ in a URL spills into the host). */
			if (!p->lookup && !(p->lookup = rb_resolve_start(
				h, NULL, "the connection's host (not shown: the conninfo is a secret)",
				err))) {
				*end = c;
				return -1;
			}
			struct addrinfo *res = NULL;
			int done = rb_resolve_result(p->lookup, &res, err);
			if (done <= 0) {
				*end = c;
				return done;
			}
			for (struct addrinfo *a = res; a; a = a->ai_next) {
				char num[INET6_ADDRSTRLEN];
				const void *in = a->ai_family == AF_INET
					? (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr
					: (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
				if (!inet_ntop(a->ai_family, in, num, sizeof(num)))
					continue;
				rb_buf_printf(&p->names, "%s%s", p->names.len ? "," : "", h);
				rb_buf_printf(&p->addrs, "%s%s", p->addrs.len ? "," : "", num);
			}
			freeaddrinfo(res);
			rb_resolve_free(p->lookup);
			p->lookup = NULL;
		}
		*end = c;
		p->next_host = c ? end + 1 : end;
	}
	return 1;
}

/*
 * A kept connection failed (the server restarted, a failover closed it while it
 * was idle): when what was sent may be sent again, because it only reads or its
 * marker decides (exactly_once), a new connection takes over, once.
 */
static int may_reconnect(const struct pg *p)
{
	return p->kept && !p->reconnected && PQstatus(p->conn) == CONNECTION_BAD &&
	       !json_array_size(p->results) && (p->readonly || p->exactly_once);
}

/*
 * A kept connection that the server closed while it sat idle (a restart, a
 * failover, pg_terminate_backend) is readable: its farewell and the end of the
 * stream wait there.  Nothing of this call was sent on it, so a new connection
 * takes over whatever the call is, a write too.  1 when conn is fit to use.
 */
static int still_open(PGconn *conn)
{
	struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
	/* The farewell (FATAL: terminating connection) may come in one read and the end
	 * of the stream in the next: read while there is something to read. */
	for (int i = 0; pfd.fd >= 0 && i < 16 && poll(&pfd, 1, 0) > 0; i++)
		if (!PQconsumeInput(conn) || PQstatus(conn) != CONNECTION_OK)
			return 0;
	return pfd.fd >= 0 && PQstatus(conn) == CONNECTION_OK && !PQisBusy(conn);
}

static int reconnect(struct pg *p, char **err)
{
	PQfinish(p->conn);
	p->conn = NULL;
	p->kept = 0;
	p->reconnected = 1;
	p->ncmds = p->cmdhead = p->next = 0;
	p->mid = 0;
	p->single_for = 0;
	drop_rows(p);
	p->failed = 0;          /* what libpq said of the lost connection */
	free(p->error);
	p->error = NULL;
	p->err_arg = NULL;
	json_array_clear(p->notices);
	if (p->explained)
		json_array_clear(p->explained);
	return open_conn(p, err);
}

static void *pg_start_common(const struct rb_call *c, struct rb_result *res, int readonly)
{
	struct pg *p = rb_xcalloc(1, sizeof(*p));
	p->c = c;
	p->readonly = readonly;
	p->transaction = readonly || !json_is_false(json_object_get(c->args, "transaction"));
	p->exactly_once = !readonly && json_is_true(json_object_get(c->args, "exactly_once"));
	if (c->explain) {       /* a probe: read only, one transaction, no marker */
		p->explain = p->readonly = p->transaction = 1;
		p->exactly_once = 0;
		p->explained = json_array();
	}
	p->conninfo = json_string_value(json_object_get(c->args, "conn"));
	p->results = json_array();
	p->notices = json_array();
	p->stmts = json_array();
	p->err_index = -1;
	rb_buf_init(&p->names);
	rb_buf_init(&p->addrs);
	json_t *sql = json_object_get(c->args, "sql");
	if (json_is_array(sql)) {
		size_t k;
		json_t *v;
		json_array_foreach(sql, k, v)
			json_array_append_new(p->stmts, json_is_object(v) ? json_incref(v)
					      : json_pack("{s:O}", "sql", v));
	} else {
		json_t *st = json_pack("{s:O}", "sql", sql);
		if (json_object_get(c->args, "params"))
			json_object_set(st, "params", json_object_get(c->args, "params"));
		json_array_append_new(p->stmts, st);
	}
	const char *t = json_string_value(json_object_get(c->args, "statement_timeout"));
	int64_t ms;
	const char *why;
	if (t && rb_duration_parse(t, &ms, &why) == 0)
		p->timeout_ms = ms > 0 ? (long)ms : 0;
	p->deadline_ms = c->deadline_ms;
	p->conn = rb_pool_take(c->run, "pg", p->conninfo);
	if (p->conn) {
		PQsetNoticeReceiver(p->conn, on_notice, p);
		if (!still_open(p->conn)) {
			PQfinish(p->conn);
			p->conn = NULL;
		}
	}
	if (p->conn) {
		p->kept = 1;
		char *err = NULL;
		if (!send_next(p) && (!may_reconnect(p) || reconnect(p, &err) < 0)) {
			finish(p, res, RB_FAILED, err ? err : conn_error(p, "cannot send the statement"));
			free_pg(p, 0);
			return NULL;
		}
		return p;
	}
	char *err = NULL;
	if (open_conn(p, &err) < 0) {
		finish(p, res, RB_FAILED, err);
		free_pg(p, 0);
		return NULL;
	}
	return p;
}

static void *query_start(const struct rb_call *c, struct rb_result *res)
{
	return pg_start_common(c, res, 1);
}

static void *exec_start(const struct rb_call *c, struct rb_result *res)
{
	return pg_start_common(c, res, 0);
}

static int pg_step(void *state, struct pollfd *fds, int *nfds, long *timeout_ms,
		   struct rb_result *res)
{
	struct pg *p = state;
	enum rb_cancel_level cancel = rb_cancelled(p->c->cancel);
	int late = p->deadline_ms && rb_now_ms() >= p->deadline_ms;
	if (cancel || late) {
		if (p->phase != P_CONNECT && p->phase != P_RESOLVE)
			cancel_on_server(p->conn);
		finish(p, res, cancel ? RB_CANCELLED : RB_TIMED_OUT, rb_xstrdup(
			cancel ? "cancelled (and the statement on the server)"
			: "timed out (the statement on the server was cancelled)"));
		free_pg(p, 0);
		return 1;
	}
	if (p->phase == P_RESOLVE) {
		char *err = NULL;
		int done = resolve_hosts(p, &err);
		if (done == 0) {
			fds[0] = (struct pollfd){rb_resolve_fd(p->lookup), POLLIN, 0};
			*nfds = 1;
			*timeout_ms = p->deadline_ms ? (long)(p->deadline_ms - rb_now_ms()) : -1;
			if (*timeout_ms == 0)
				*timeout_ms = 1;
			return 0;
		}
		if (done < 0 || connect_start(p, p->names.s, p->addrs.s, &err) < 0) {
			finish(p, res, RB_FAILED, err);
			free_pg(p, 0);
			return 1;
		}
	}
	int r = 0;
	short events = POLLIN;
	for (;;) {
		if (p->phase == P_CONNECT) {
			PostgresPollingStatusType ps = PQconnectPoll(p->conn);
			if (ps == PGRES_POLLING_FAILED) {
				finish(p, res, RB_FAILED, conn_error(p, "cannot connect"));
				free_pg(p, 0);
				return 1;
			}
			if (ps != PGRES_POLLING_OK) {
				events = ps == PGRES_POLLING_WRITING ? POLLOUT : POLLIN;
				break;
			}
			PQsetnonblocking(p->conn, 1);
			if (!send_next(p)) {
				r = -1;
				break;
			}
		}
		if (p->phase == P_FLUSH) {
			int f = PQflush(p->conn);
			if (f < 0) {
				r = -1;
				break;
			}
			if (f == 1) {
				events = POLLIN | POLLOUT;
				break;
			}
			p->phase = P_READ;
		}
		r = read_results(p);
		if (r != 0 || p->phase != P_FLUSH)     /* over, or waiting for more */
			break;
	}
	if (r < 0) {
		char *err = NULL;
		if (may_reconnect(p) && reconnect(p, &err) == 0) {
			*nfds = 0;
			*timeout_ms = 0;        /* step again at once: the new connection starts */
			return 0;
		}
		finish(p, res, RB_FAILED, err ? err : conn_error(p, "the connection failed"));
		free_pg(p, 0);
		return 1;
	}
	if (r == 1) {
		if (!p->failed && !p->transaction && PQtransactionStatus(p->conn) != PQTRANS_IDLE) {
			/* transaction: false, and a BEGIN without its COMMIT: the connection is
			 * closed, not kept, and the server rolls the statements back */
			p->error = rb_xstrdup("the statements left a transaction open (a BEGIN "
					      "without its COMMIT): it is rolled back");
			p->failed = 1;
		}
		if (p->failed) {
			res->err_arg = p->err_arg;
			res->err_index = p->err_index;
			res->err_pos = p->err_pos;
			finish(p, res, RB_FAILED, p->error);
			p->error = NULL;
		} else {
			finish(p, res, RB_OK, NULL);
		}
		free_pg(p, !p->failed);
		return 1;
	}
	fds[0].fd = PQsocket(p->conn);
	fds[0].events = events;
	fds[0].revents = 0;
	*nfds = 1;
	*timeout_ms = p->deadline_ms ? (long)(p->deadline_ms - rb_now_ms()) : -1;
	if (*timeout_ms == 0)
		*timeout_ms = 1;
	return 0;
}

static const struct rb_output pg_outputs[] = {
	{"rows", "the rows, each a map of column name to value: integers and booleans as such, "
	 "json and jsonb decoded, timestamps in ISO 8601 (UTC, Z), numeric as a string, NULL "
	 "as null, the rest as text"},
	{"columns", "each column's name and type_oid"},
	{"command", "the command tag (\"SELECT 3\", \"DELETE 10\")"},
	{"row_count", "how many rows came back"},
	{"rows_affected", "how many rows the statement inserted, updated, deleted or returned"},
	{"notices", "the server's notices and warnings (RAISE NOTICE), each {severity, message}, "
	 "when it sent any"},
	{NULL, NULL},
};

static const struct rb_output exec_outputs[] = {
	{"rows", "the last statement's rows (as pg.query's)"},
	{"columns", "its columns"},
	{"command", "its command tag"},
	{"row_count", "how many rows it returned"},
	{"rows_affected", "how many rows it changed"},
	{"results", "with a list of statements: each one's {rows, columns, command, row_count, "
	 "rows_affected}"},
	{"notices", "the server's notices and warnings, each {severity, message}"},
	{"committed_before", "exactly_once: true when an earlier attempt (before a crash) had "
	 "committed, so nothing ran now; its rows are not known"},
	{"marker", "exactly_once and committed_before: the marker's key"},
	{NULL, NULL},
};

const struct rb_action act_pg_query = {
	.name = "pg.query",
	.summary = "run one SQL statement in a read-only transaction on PostgreSQL; its rows "
		   "are the output",
	.args = query_args,
	.outputs = pg_outputs,
	.example = "- id: long_queries\n"
		   "  action: pg.query\n"
		   "  with:\n"
		   "    conn: ${{ secrets.db_url }}\n"
		   "    sql: |\n"
		   "      SELECT pid, state, now() - query_start AS running_for\n"
		   "      FROM pg_stat_activity WHERE now() - query_start > $1::interval\n"
		   "    params: [\"5 minutes\"]\n"
		   "    statement_timeout: 10s\n",
	.effects = "none, but for what its read-only transaction does not stop: the statements "
		   "COPY (to a file or a program on the server), CHECKPOINT, ANALYZE, REINDEX, "
		   "LOAD and NOTIFY, and calls of the functions that act on the server or beyond "
		   "it (pg_terminate_backend, pg_cancel_backend, pg_reload_conf, pg_switch_wal, "
		   "pg_stat_reset..., replication slots and origins, backups, advisory locks, "
		   "dblink, lo_export, adminpack's pg_file_*): those have, and the plan says which "
		   "(`--dry-run --probe` sends the others, and a `check:` may use them)",
	.check = query_check,
	.effect = query_effect,
	.start = query_start,
	.step = pg_step,
};

const struct rb_action act_pg_exec = {
	.name = "pg.exec",
	.summary = "run SQL statements that change things on PostgreSQL, in one transaction "
		   "or each alone",
	.args = exec_args,
	.outputs = exec_outputs,
	.example = "- id: expire_sessions\n"
		   "  action: pg.exec\n"
		   "  with:\n"
		   "    conn: ${{ secrets.db_url }}\n"
		   "    sql:\n"
		   "      - sql: DELETE FROM user_sessions WHERE expires_at < now() - $1::interval\n"
		   "        params: [\"7 days\"]\n"
		   "      - ANALYZE user_sessions\n"
		   "- id: vacuum\n"
		   "  action: pg.exec\n"
		   "  with:\n"
		   "    conn: ${{ secrets.db_url }}\n"
		   "    sql: VACUUM (ANALYZE) user_sessions\n"
		   "    transaction: false\n",
	.flags = RB_ACT_SIDE_EFFECTS | RB_ACT_EXPLAINS,
	.check = exec_check,
	.effect = exec_effect,
	.start = exec_start,
	.step = pg_step,
};
