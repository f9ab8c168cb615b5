/*
 * pg.set_password: set a role's password the way psql's \password does.  The
 * SCRAM verifier is computed here, with libpq's PQencryptPasswordConn (which
 * asks the server for its password_encryption), and only the verifier is sent:
 * ALTER ROLE "role" PASSWORD 'SCRAM-SHA-256$...'.  The plaintext never
 * reaches the server, its logs (log_statement = ddl) or pg_stat_statements.
 *
 * It runs on a worker thread, on a connection of its own (never the run's kept
 * ones: it is rare, and closing it leaves nothing of the call behind), and
 * polls its socket with the cancel's eventfd so that a cancel or the deadline
 * stops it (and the statement on the server).
 */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "action.h"
#include "pg.h"
#include "util.h"

/* NAMEDATALEN - 1: a longer name is truncated by the server, to another role's maybe. */
#define PG_MAX_NAME     63

static const struct rb_arg setpw_args[] = {
	{"conn", RB_T_STRING, RB_ARG_REQUIRED | RB_ARG_SECRET, NULL, "the connection, as a role "
	 "allowed to change the role's password (a superuser, CREATEROLE, or the role itself): "
	 "a postgresql:// URL or a conninfo string, from secrets"},
	{"role", RB_T_STRING, RB_ARG_REQUIRED, NULL, "the role whose password is set (quoted as "
	 "an identifier: any name, as it is written in pg_roles)"},
	{"password", RB_T_STRING, RB_ARG_REQUIRED | RB_ARG_SECRET, NULL, "the new password, from "
	 "secrets or a step's secret output (crypto.random); only its SCRAM verifier is sent"},
	{"valid_until", RB_T_STRING, 0, NULL, "VALID UNTIL: a timestamp the server reads "
	 "(\"2026-04-01T00:00:00Z\") or \"infinity\"; absent: left as it is"},
	{NULL, 0, 0, NULL, NULL},
};

static int setpw_check(const json_t *args, const json_t *later, struct rb_arg_error *e)
{
	(void)later;
	const char *role = rb_arg_str(args, "role");
	if (role && !*role)
		return rb_arg_fail(e, "role", -1, rb_xstrdup("an empty role name"));
	if (role && strlen(role) > PG_MAX_NAME)
		return rb_arg_fail(e, "role", -1, rb_xasprintf(
			"a role name is at most %d bytes (the server would cut it to another "
			"name)", PG_MAX_NAME));
	const char *pw = rb_arg_str(args, "password");
	if (pw && !*pw)     /* the server cannot tell an empty one from its verifier */
		return rb_arg_fail(e, "password", -1, rb_xstrdup("an empty password"));
	const char *vu = rb_arg_str(args, "valid_until");
	if (vu && !*vu)
		return rb_arg_fail(e, "valid_until", -1, rb_xstrdup(
			"an empty time (\"infinity\" for none)"));
	const char *conn = rb_arg_str(args, "conn");
	if (conn) {
		char *why = NULL;
		PQconninfoOption *o = PQconninfoParse(conn, &why);
		if (!o) {
			PQfreemem(why);         /* it quotes the conninfo: the secret stays out */
			return rb_arg_fail(e, "conn", -1, rb_xstrdup(
				"not a postgresql:// URL nor a conninfo string"));
		}
		PQconninfoFree(o);
	}
	return 0;
}

static enum rb_effect setpw_effect(const json_t *args, const json_t *later, char **what)
{
	(void)later;
	const char *role = rb_arg_str(args, "role"), *vu = rb_arg_str(args, "valid_until");
	if (role)
		*what = rb_xasprintf("sets the password of role %s%s%s", role,
				     vu ? ", valid until " : "", vu ? vu : "");
	else
		*what = rb_xstrdup("sets the password of a role known at run time");
	return RB_EFFECT_WRITES;
}

/*
 * Wait for the connection's socket (events), the cancel or the deadline.  0 when
 * the socket is ready, else the outcome that ends the call.
 */
static int wait_sock(const struct rb_call *c, PGconn *conn, short events)
{
	for (;;) {
		if (rb_cancelled(c->cancel))
			return RB_CANCELLED;
		long ms = 1000;
		if (c->deadline_ms) {
			int64_t left = c->deadline_ms - rb_now_ms();
			if (left <= 0)
				return RB_TIMED_OUT;
			if (left < ms)
				ms = (long)left;
		}
		struct pollfd fds[2] = {{PQsocket(conn), events, 0}, {c->cancel->fd, POLLIN, 0}};
		int r = poll(fds, c->cancel->fd >= 0 ? 2 : 1, (int)ms);
		if (r < 0 && errno != EINTR)
			return RB_BROKEN;
		if (r > 0 && fds[0].revents)
			return 0;
	}
}

static int fail(struct rb_result *res, enum rb_outcome o, char *msg)
{
	res->outcome = o;
	res->error = msg;
	return 0;
}

static char *stopped(int o, const char *doing)
{
	return rb_xasprintf("%s %s", o == RB_CANCELLED ? "cancelled while" : "timed out while",
			    doing);
}

/* The server's words on an error: message (SQLSTATE), detail, hint. */
static char *server_error(const PGresult *r)
{
	struct rb_buf b;
	rb_buf_init(&b);
	rb_pg_error_words(&b, r, "ALTER ROLE failed");
	return rb_buf_detach(&b);
}

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		PQfreemem(s);
	}
}

static int setpw_run(const struct rb_call *c, struct rb_result *res)
{
	const char *conninfo = rb_arg_str(c->args, "conn");
	const char *role = rb_arg_str(c->args, "role");
	const char *pw = rb_arg_str(c->args, "password");
	const char *vu = rb_arg_str(c->args, "valid_until");
	if (!conninfo || !role || !pw)
		return fail(res, RB_BROKEN, rb_xstrdup("conn, role and password are needed"));
	const char *keys[] = {"dbname", "client_encoding", "fallback_application_name",
			      "connect_timeout", NULL};
	const char *vals[] = {conninfo, "UTF8", "runbook", "30", NULL};
	PGconn *conn = PQconnectStartParams(keys, vals, 1);
	if (!conn || PQstatus(conn) == CONNECTION_BAD) {
		fail(res, RB_FAILED, rb_pg_conn_error(conn, "cannot connect"));
		PQfinish(conn);
		return 0;
	}
	PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
	while (ps != PGRES_POLLING_OK) {
		int o = wait_sock(c, conn, ps == PGRES_POLLING_READING ? POLLIN : POLLOUT);
		if (o) {
			fail(res, o, stopped(o, "connecting"));
			PQfinish(conn);
			return 0;
		}
		ps = PQconnectPoll(conn);
		if (ps == PGRES_POLLING_FAILED) {
			fail(res, RB_FAILED, rb_pg_conn_error(conn, "cannot connect"));
			PQfinish(conn);
			return 0;
		}
	}
	/* NULL: the server's password_encryption (one SHOW), as psql's \password. */
	char *verifier = PQencryptPasswordConn(conn, pw, role, NULL);
	if (!verifier) {
		fail(res, RB_FAILED,
		     rb_pg_conn_error(conn, "cannot compute the password's verifier"));
		PQfinish(conn);
		return 0;
	}
	char *ident = PQescapeIdentifier(conn, role, strlen(role));
	char *lit = PQescapeLiteral(conn, verifier, strlen(verifier));
	char *until = vu ? PQescapeLiteral(conn, vu, strlen(vu)) : NULL;
	char algo[32];
	snprintf(algo, sizeof(algo), "%s", !strncmp(verifier, "SCRAM-SHA-256$", 14)
		 ? "scram-sha-256" : !strncmp(verifier, "md5", 3) ? "md5" : "unknown");
	wipe_free(verifier);
	if (!ident || !lit || (vu && !until)) {
		fail(res, RB_FAILED, rb_pg_conn_error(conn, "cannot quote the statement"));
		PQfreemem(ident);
		wipe_free(lit);
		PQfreemem(until);
		PQfinish(conn);
		return 0;
	}
	char *sql = rb_xasprintf("ALTER ROLE %s PASSWORD %s%s%s", ident, lit,
				 until ? " VALID UNTIL " : "", until ? until : "");
	PQfreemem(ident);
	wipe_free(lit);
	PQfreemem(until);
	PQsetnonblocking(conn, 1);
	int sent = PQsendQuery(conn, sql);
	explicit_bzero(sql, strlen(sql));
	free(sql);
	if (!sent) {
		fail(res, RB_FAILED, rb_pg_conn_error(conn, "cannot send the statement"));
		PQfinish(conn);
		return 0;
	}
	for (;;) {
		int f = PQflush(conn);
		if (f < 0 || !PQconsumeInput(conn)) {
			fail(res, RB_FAILED, rb_pg_conn_error(conn, "the connection failed"));
			PQfinish(conn);
			return 0;
		}
		if (!f && !PQisBusy(conn))
			break;
		int o = wait_sock(c, conn, f ? POLLIN | POLLOUT : POLLIN);
		if (o) {
			PGcancel *k = PQgetCancel(conn);
			char err[256];
			if (k) {
				PQcancel(k, err, sizeof(err));
				PQfreeCancel(k);
			}
			fail(res, o, rb_xasprintf("%s (and the statement on the server)",
						  o == RB_CANCELLED ? "cancelled" : "timed out"));
			PQfinish(conn);
			return 0;
		}
	}
	PGresult *r;
	char *err = NULL;
	int state_undefined = 0;
	while ((r = PQgetResult(conn))) {
		if (PQresultStatus(r) != PGRES_COMMAND_OK && !err) {
			const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			state_undefined = st && !strcmp(st, "42704");   /* undefined_object */
			err = server_error(r);
		}
		PQclear(r);
	}
	PQfinish(conn);
	if (err) {
		if (state_undefined) {          /* no such role: at the role argument */
			res->err_arg = "role";
			res->err_index = -1;
			res->err_pos = 1;
		}
		return fail(res, RB_FAILED, err);
	}
	res->outcome = RB_OK;
	res->output = json_pack("{s:s, s:s, s:s}", "role", role, "command", "ALTER ROLE",
				"encryption", algo);
	if (vu)
		json_object_set_new(res->output, "valid_until", json_string(vu));
	return 0;
}

static const struct rb_output setpw_outputs[] = {
	{"role", "the role"},
	{"command", "\"ALTER ROLE\""},
	{"encryption", "the verifier's kind, as the server's password_encryption chose: "
	 "scram-sha-256 or md5"},
	{"valid_until", "the VALID UNTIL given, when one was"},
	{NULL, NULL},
};

const struct rb_action act_pg_set_password = {
	.name = "pg.set_password",
	.summary = "set a PostgreSQL role's password as psql's \\password does: only its SCRAM "
		   "verifier, computed here, reaches the server",
	.args = setpw_args,
	.outputs = setpw_outputs,
	.example = "- id: new_password\n"
		   "  action: crypto.random\n"
		   "  with: {bytes: 24, encoding: base64url}\n"
		   "- id: set_password\n"
		   "  action: pg.set_password\n"
		   "  with:\n"
		   "    conn: ${{ secrets.pg_admin_url }}\n"
		   "    role: personapass\n"
		   "    password: ${{ steps.new_password.output.value }}\n"
		   "    valid_until: infinity\n",
	/* The same password again sets the same password: safe to run again. */
	.flags = RB_ACT_SIDE_EFFECTS | RB_ACT_IDEMPOTENT,
	.check = setpw_check,
	.effect = setpw_effect,
	.run = setpw_run,
};
