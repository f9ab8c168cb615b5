/*
 * redis.command: one Redis command, or a pipeline of them (in MULTI/EXEC when
 * told), on hiredis, stepped in the engine's poll loop: a non-blocking context
 * whose socket the engine polls, a host name looked up on a thread of its own
 * (never the engine's), and one context per server, database and credentials
 * kept for the run (runctx.h), so that a run of many steps makes one connection.
 *
 * hiredis 0.14 (Debian 12) speaks RESP2 only and has no TLS: for rediss://
 * the action does the socket's I/O itself, through OpenSSL (tls.h), and hiredis
 * formats the commands and reads the replies, as it does for redis:// (where
 * hiredis writes).  What a call does is decided by its commands' names: those the
 * Redis command table says only read (RDS_READS) have no side effects.
 * Messages never hold the password, nor the URL's user.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "action.h"
#include "resolve.h"
#include "tls.h"
#include "runctx.h"
#include "types.h"
#include "util.h"

/* The most reply bytes a call takes: past it, the call fails and the connection is dropped. */
#define RDS_MAX_REPLY   (64L * 1024 * 1024)
/* Looking up, connecting and authenticating take at most this long. */
#define RDS_CONNECT_MS  30000
/* What the plan and the messages name of a pipeline before "and N more". */
#define RDS_NAMES_SHOWN 4

/*
 * The commands that only read: those the Redis 7 command table flags readonly, and the
 * server's reports that carry no write flag, less those that may replicate a change
 * (PFCOUNT) or are called for what they change (TOUCH).  Container commands are listed
 * with their subcommand.  Every other command writes.  One list for the code and the docs.
 */
#define RDS_READS(X, LAST)                                                                 \
	X("ACL CAT") X("ACL GETUSER") X("ACL LIST") X("ACL USERS") X("ACL WHOAMI")         \
	X("BITCOUNT") X("BITFIELD_RO") X("BITPOS") X("CLIENT GETNAME") X("CLIENT ID")      \
	X("CLIENT INFO") X("CLIENT LIST") X("CLUSTER COUNTKEYSINSLOT")                     \
	X("CLUSTER GETKEYSINSLOT") X("CLUSTER INFO") X("CLUSTER KEYSLOT")                  \
	X("CLUSTER MYID") X("CLUSTER NODES") X("CLUSTER SHARDS") X("CLUSTER SLOTS")        \
	X("COMMAND") X("COMMAND COUNT") X("COMMAND DOCS") X("COMMAND GETKEYS")             \
	X("COMMAND INFO") X("COMMAND LIST") X("CONFIG GET") X("DBSIZE") X("DUMP")          \
	X("ECHO") X("EVALSHA_RO") X("EVAL_RO") X("EXISTS") X("EXPIRETIME") X("FCALL_RO")   \
	X("FUNCTION DUMP") X("FUNCTION LIST") X("FUNCTION STATS") X("GEODIST")             \
	X("GEOHASH") X("GEOPOS") X("GEORADIUSBYMEMBER_RO") X("GEORADIUS_RO")               \
	X("GEOSEARCH") X("GET") X("GETBIT") X("GETRANGE") X("HEXISTS") X("HGET")           \
	X("HGETALL") X("HKEYS") X("HLEN") X("HMGET") X("HRANDFIELD") X("HSCAN")            \
	X("HSTRLEN") X("HVALS") X("INFO") X("KEYS") X("LASTSAVE") X("LATENCY DOCTOR")      \
	X("LATENCY HISTOGRAM") X("LATENCY HISTORY") X("LATENCY LATEST") X("LCS")           \
	X("LINDEX") X("LLEN") X("LOLWUT") X("LPOS") X("LRANGE") X("MEMORY DOCTOR")         \
	X("MEMORY MALLOC-STATS") X("MEMORY STATS") X("MEMORY USAGE") X("MGET")             \
	X("MODULE LIST") X("OBJECT ENCODING") X("OBJECT FREQ") X("OBJECT IDLETIME")        \
	X("OBJECT REFCOUNT") X("PEXPIRETIME") X("PING") X("PTTL") X("PUBSUB CHANNELS")     \
	X("PUBSUB NUMPAT") X("PUBSUB NUMSUB") X("PUBSUB SHARDCHANNELS")                    \
	X("PUBSUB SHARDNUMSUB") X("RANDOMKEY") X("ROLE") X("SCAN") X("SCARD")              \
	X("SCRIPT EXISTS") X("SDIFF") X("SINTER") X("SINTERCARD") X("SISMEMBER")           \
	X("SLOWLOG GET") X("SLOWLOG LEN") X("SMEMBERS") X("SMISMEMBER") X("SORT_RO")       \
	X("SRANDMEMBER") X("SSCAN") X("STRLEN") X("SUBSTR") X("SUNION") X("TIME")          \
	X("TTL") X("TYPE") X("XINFO CONSUMERS") X("XINFO GROUPS") X("XINFO STREAM")        \
	X("XLEN") X("XPENDING") X("XRANGE") X("XREAD") X("XREVRANGE") X("ZCARD")           \
	X("ZCOUNT") X("ZDIFF") X("ZINTER") X("ZINTERCARD") X("ZLEXCOUNT") X("ZMSCORE")     \
	X("ZRANDMEMBER") X("ZRANGE") X("ZRANGEBYLEX") X("ZRANGEBYSCORE") X("ZRANK")        \
	X("ZREVRANGE") X("ZREVRANGEBYLEX") X("ZREVRANGEBYSCORE") X("ZREVRANK") X("ZSCAN")  \
	X("ZSCORE") LAST("ZUNION")

#define RDS_ITEM(s)     s,
#define RDS_LISTED(s)   "`" s "`, "
#define RDS_LAST(s)     "`" s "`"

static const char *const reads[] = {RDS_READS(RDS_ITEM, RDS_ITEM) NULL};

/*
 * The commands the action manages itself, refused in command and commands: the
 * connection is kept for the next step and must come back as it went.
 */
static const struct refused {
	const char *name;
	const char *why;
} refused[] = {
	{"AUTH", "give the user in the URL and the password in password"},
	{"CLIENT REPLY", "the action reads one reply for each command"},
	{"CLIENT TRACKING", "its messages would reach the next step's commands"},
	{"DISCARD", "give commands with transaction: true, which sends MULTI and EXEC"},
	{"EXEC", "give commands with transaction: true, which sends MULTI and EXEC"},
	{"HELLO", "hiredis 0.14 speaks RESP2 only, and the action authenticates"},
	{"MONITOR", "it turns the connection into a stream of messages"},
	{"MULTI", "give commands with transaction: true, which sends MULTI and EXEC"},
	{"PSUBSCRIBE", "it turns the connection into a stream of messages"},
	{"PSYNC", "it turns the connection into a replication stream"},
	{"PUNSUBSCRIBE", "the connection subscribes to nothing"},
	{"QUIT", "the action keeps the connection for the next step"},
	{"RESET", "the action keeps the connection for the next step"},
	{"SELECT", "give the database in the URL or in db"},
	{"SSUBSCRIBE", "it turns the connection into a stream of messages"},
	{"SUBSCRIBE", "it turns the connection into a stream of messages"},
	{"SUNSUBSCRIBE", "the connection subscribes to nothing"},
	{"SYNC", "it turns the connection into a replication stream"},
	{"UNSUBSCRIBE", "the connection subscribes to nothing"},
	{"UNWATCH", "the connection is kept for the next step, with nothing watched"},
	{"WATCH", "the connection is kept for the next step, with nothing watched"},
	{NULL, NULL},
};

/*
 * The commands that change only the connection's own settings: they run, and the call
 * then closes the connection rather than keep it, so that the next step does not
 * inherit a name or an eviction flag it never asked for.
 */
static const char *const own_settings[] = {
	"CLIENT NO-EVICT", "CLIENT NO-TOUCH", "CLIENT SETINFO", "CLIENT SETNAME", "READONLY",
	"READWRITE", NULL,
};

static const struct rb_arg redis_args[] = {
	{"url", RB_T_STRING, RB_ARG_REQUIRED, NULL, "the server, redis://[USER@]HOST[:PORT][/DB], "
	 "or rediss:// for TLS (no password in it)"},
	{"password", RB_T_STRING, RB_ARG_SECRET, NULL, "sent with AUTH (AUTH USER PASSWORD when "
	 "the URL names a user, Redis 6 and later), from secrets"},
	{"command", RB_T_LIST, RB_ARG_PARTIAL, NULL, "one command: its name and arguments, like "
	 "[GET, key] (strings or numbers)"},
	{"commands", RB_T_LIST, RB_ARG_PARTIAL, NULL, "a list of commands sent as one pipeline "
	 "(not with command)"},
	{"transaction", RB_T_BOOLEAN, 0, NULL, "send commands between MULTI and EXEC: all or none "
	 "is queued, and nothing else runs in between"},
	{"db", RB_T_INTEGER, 0, NULL, "the database, selected on connecting (default 0, or the "
	 "URL's)"},
	{"timeout", RB_T_DURATION, 0, NULL, "the whole call, connecting included (the step's "
	 "timeout bounds it too; connecting alone takes at most 30s)"},
	{"ca_file", RB_T_STRING, 0, NULL, "rediss://: PEM file of the CAs to trust instead of the "
	 "system's"},
	{"client_cert", RB_T_STRING, 0, NULL, "rediss://: PEM file of a client certificate (the "
	 "server's tls-auth-clients)"},
	{"client_key", RB_T_STRING, 0, NULL, "rediss://: PEM file of its private key"},
	{"insecure", RB_T_BOOLEAN, 0, NULL, "rediss://: do not verify the server's certificate "
	 "(the plan says so)"},
	{NULL, 0, 0, NULL, NULL},
};

/* --- arguments ------------------------------------------------------------------------- */

static const char *kind_of(const json_t *v)
{
	return json_is_object(v) ? "a map" : json_is_array(v) ? "a list" : json_is_null(v) ? "null"
	       : json_is_boolean(v) ? "a boolean" : json_is_string(v) ? "a string" : "a number";
}

struct url {
	char *host, *user;
	int port;
	int db;                         /* -1: the URL names none */
	int tls;                        /* rediss:// */
};

static void url_release(struct url *u)
{
	free(u->host);
	free(u->user);
}

/*
 * redis[s]://[USER@]HOST[:PORT][/DB]; 0, or -1 with *why (which holds no part of the
 * URL but its scheme, since a password may be in it).
 */
static int parse_url(const char *s, struct url *u, char **why)
{
	memset(u, 0, sizeof(*u));
	u->port = 6379;
	u->db = -1;
	u->tls = !strncmp(s, "rediss://", 9);
	if (!u->tls && strncmp(s, "redis://", 8)) {
		const char *colon = strstr(s, "://");
		if (colon && colon - s < 16 && colon > s)
			*why = rb_xasprintf("the scheme must be redis or rediss, not %.*s",
					    (int)(colon - s), s);
		else
			*why = rb_xstrdup("expected redis://[USER@]HOST[:PORT][/DB] (or rediss://)");
		return -1;
	}
	const char *p = s + (u->tls ? 9 : 8), *end = p + strcspn(p, "/?#");
	const char *at = memchr(p, '@', (size_t)(end - p));
	if (at) {
		if (memchr(p, ':', (size_t)(at - p))) {
			*why = rb_xstrdup("the URL holds a password: give it in password, from "
					  "secrets, and leave it out of the URL");
			return -1;
		}
		if (at == p) {
			*why = rb_xstrdup("an empty user before @");
			return -1;
		}
		u->user = rb_xstrndup(p, (size_t)(at - p));
		p = at + 1;
	}
	const char *hend;
	if (*p == '[') {                /* [IPv6]:port */
		const char *close = memchr(p, ']', (size_t)(end - p));
		if (!close) {
			*why = rb_xstrdup("an IPv6 address without its closing ]");
			goto bad;
		}
		u->host = rb_xstrndup(p + 1, (size_t)(close - p - 1));
		hend = close + 1;
		if (hend < end && *hend != ':') {
			*why = rb_xstrdup("expected :PORT after the IPv6 address");
			goto bad;
		}
	} else {
		hend = memchr(p, ':', (size_t)(end - p));
		hend = hend ? hend : end;
		u->host = rb_xstrndup(p, (size_t)(hend - p));
	}
	if (!*u->host) {
		*why = rb_xstrdup("the URL has no host");
		goto bad;
	}
	if (hend < end) {               /* :PORT */
		char *e;
		long port = strtol(hend + 1, &e, 10);
		if (e == hend + 1 || e != end || port < 1 || port > 65535) {
			*why = rb_xstrdup("the port must be a number from 1 to 65535");
			goto bad;
		}
		u->port = (int)port;
	}
	if (*end == '?' || *end == '#') {
		*why = rb_xstrdup("the URL has a query or a fragment: give the database in the "
				  "path (/DB) or in db");
		goto bad;
	}
	if (*end == '/' && end[1]) {
		char *e;
		long db = strtol(end + 1, &e, 10);
		if (e == end + 1 || *e || db < 0 || db > 1000000) {
			*why = rb_xstrdup("the path must be a database number (/0, /1, ...)");
			goto bad;
		}
		u->db = (int)db;
	}
	return 0;
bad:
	url_release(u);
	return -1;
}

/* The command's name (and subcommand) as the tables have it: "GET", "CONFIG GET". */
static void command_name(const json_t *argv, char *buf, size_t size)
{
	const char *name = json_string_value(json_array_get(argv, 0));
	const char *sub = json_string_value(json_array_get(argv, 1));
	snprintf(buf, size, "%s%s%s", name ? name : "?", sub ? " " : "", sub ? sub : "");
	for (char *p = buf; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
}

/*
 * Whether a table's entry is the command: its name and subcommand ("CONFIG GET"), or its
 * name alone ("GET"), which stands for every subcommand.  full is command_name's.
 */
static int is_entry(const char *entry, const char *full)
{
	if (!strcmp(entry, full))
		return 1;
	size_t n = strcspn(full, " ");
	return strlen(entry) == n && !strncmp(entry, full, n);
}

/* The command's name for the plan and messages: with its subcommand for a container. */
static void shown_name(const json_t *argv, char *buf, size_t size)
{
	command_name(argv, buf, size);
	size_t n = strcspn(buf, " ");
	if (!buf[n])
		return;
	for (const char *const *t = reads; *t; t++)
		if (strlen(*t) > n && (*t)[n] == ' ' && !strncmp(*t, buf, n))
			return;
	for (const struct refused *x = refused; x->name; x++)
		if (strlen(x->name) > n && x->name[n] == ' ' && !strncmp(x->name, buf, n))
			return;
	buf[n] = '\0';
}

/* Whether the command is one of table's (reads, own_settings). */
static int listed(const char *const *table, const json_t *argv)
{
	char full[128];
	command_name(argv, full, sizeof(full));
	for (const char *const *t = table; *t; t++)
		if (is_entry(*t, full))
			return 1;
	return 0;
}

static const struct refused *command_refused(const json_t *argv)
{
	char full[128];
	command_name(argv, full, sizeof(full));
	for (const struct refused *x = refused; x->name; x++)
		if (is_entry(x->name, full))
			return x;
	return NULL;
}

/*
 * One command's list; 0, or -1 with *e at arg (and index: -1 for command's own items).
 * A null is a value known only at run time (RB_ARG_PARTIAL): start() refuses those left.
 */
static int check_argv(const json_t *argv, const char *arg, int index, struct rb_arg_error *e)
{
	char where[48] = "";
	if (index >= 0)
		snprintf(where, sizeof(where), "command %d: ", index + 1);
	if (json_is_null(argv))
		return 0;
	if (!json_is_array(argv))
		return rb_arg_fail(e, arg, index, rb_xasprintf(
			"%sexpected a list: the command's name and its arguments, like [GET, key], "
			"not %s", where, kind_of(argv)));
	if (!json_array_size(argv))
		return rb_arg_fail(e, arg, index, rb_xasprintf("%san empty command", where));
	size_t k;
	json_t *v;
	json_array_foreach(argv, k, v)
		if (!json_is_string(v) && !json_is_number(v) && !json_is_null(v))
			return rb_arg_fail(e, arg, index >= 0 ? index : (int)k, rb_xasprintf(
				"%sitem %zu: expected a string or a number, not %s", where, k + 1,
				kind_of(v)));
	json_t *first = json_array_get(argv, 0);
	const char *name = json_string_value(first);
	if (json_is_null(first))
		return 0;
	if (!name || !*name)
		return rb_arg_fail(e, arg, index >= 0 ? index : 0, rb_xasprintf(
			"%sthe command's name must be a string", where));
	if (strchr(name, ' '))
		return rb_arg_fail(e, arg, index >= 0 ? index : 0, rb_xasprintf(
			"%sthe name has a space: give the name and each argument as items of the "
			"list, like [CONFIG, GET, maxmemory]", where));
	const struct refused *x = command_refused(argv);
	if (x)
		return rb_arg_fail(e, arg, index >= 0 ? index : 0, rb_xasprintf(
			"%s%s is not allowed here: %s", where, x->name, x->why));
	return 0;
}

static int redis_check(const json_t *args, const json_t *later, struct rb_arg_error *e)
{
	const char *url = json_string_value(json_object_get(args, "url"));
	struct url u = {.db = -1};
	char *why = NULL;
	if (json_object_get(args, "url") && !url)
		return rb_arg_fail(e, "url", -1, rb_xstrdup("expected a string"));
	if (url) {
		if (parse_url(url, &u, &why) < 0)
			return rb_arg_fail(e, "url", -1, why);
		url_release(&u);
	}
	static const char *const tls_args[] = {"ca_file", "client_cert", "client_key", "insecure"};
	for (size_t k = 0; url && !u.tls && k < sizeof(tls_args) / sizeof(*tls_args); k++)
		if (rb_arg_given(args, later, tls_args[k]))
			return rb_arg_fail(e, tls_args[k], -1, rb_xstrdup(
				"goes with a rediss:// URL (TLS)"));
	if (rb_arg_given(args, later, "client_cert") != rb_arg_given(args, later, "client_key"))
		return rb_arg_fail(e, rb_arg_given(args, later, "client_cert") ? "client_cert"
				   : "client_key", -1,
				   rb_xstrdup("client_cert and client_key go together"));
	json_t *db = json_object_get(args, "db");
	if (db && (!json_is_integer(db) || json_integer_value(db) < 0 ||
		   json_integer_value(db) > 1000000))
		return rb_arg_fail(e, "db", -1, rb_xstrdup("expected a database number (0, 1, ...)"));
	if (db && url && u.db >= 0)
		return rb_arg_fail(e, "db", -1, rb_xstrdup("the URL names a database already: give "
							  "it in one place"));
	json_t *cmd = json_object_get(args, "command"), *cmds = json_object_get(args, "commands");
	if (!rb_arg_given(args, later, "command") && !rb_arg_given(args, later, "commands"))
		return rb_arg_fail(e, NULL, -1, rb_xstrdup("needs command (one) or commands (a "
							 "pipeline)"));
	if (cmd && cmds)
		return rb_arg_fail(e, "commands", -1,
				 rb_xstrdup("give command or commands, not both"));
	if (cmd && check_argv(cmd, "command", -1, e) < 0)
		return -1;
	if (cmds) {
		if (!json_is_array(cmds) || !json_array_size(cmds))
			return rb_arg_fail(e, "commands", -1, rb_xasprintf(
				"expected a list of commands, like [[SET, k, v], [EXPIRE, k, 60]], "
				"not %s", json_is_array(cmds) ? "an empty list" : kind_of(cmds)));
		size_t k;
		json_t *v;
		json_array_foreach(cmds, k, v)
			if (check_argv(v, "commands", (int)k, e) < 0)
				return -1;
	}
	json_t *tx = json_object_get(args, "transaction");
	if (tx && !json_is_boolean(tx))
		return rb_arg_fail(e, "transaction", -1, rb_xstrdup("expected true or false"));
	if (json_is_true(tx) && cmd)
		return rb_arg_fail(e, "transaction", -1, rb_xstrdup(
			"goes with commands: one command is atomic already"));
	json_t *t = json_object_get(args, "timeout");
	if (t) {
		int64_t ms = 0;
		const char *w = "expected a duration, like 10s";
		if (!json_is_string(t) || rb_duration_parse(json_string_value(t), &ms, &w) < 0)
			return rb_arg_fail(e, "timeout", -1, rb_xstrdup(w));
		if (ms <= 0)
			return rb_arg_fail(e, "timeout", -1, rb_xstrdup("must be longer than 0"));
	}
	return 0;
}

/* redis[s]://HOST:PORT/DB, for the plan and messages: no user, no password. */
static char *url_shown(const struct url *u, int db)
{
	int v6 = strchr(u->host, ':') != NULL;
	return rb_xasprintf("redis%s://%s%s%s:%d/%d", u->tls ? "s" : "", v6 ? "[" : "", u->host,
			    v6 ? "]" : "", u->port, db);
}

/* "SET", "SET, EXPIRE", "MULTI/EXEC of SET, EXPIRE", "GET and 3 more"... */
static void names_of(struct rb_buf *b, const json_t *cmds, int multi)
{
	if (multi)
		rb_buf_puts(b, "MULTI/EXEC of ");
	size_t n = json_array_size(cmds), k;
	for (k = 0; k < n && k < RDS_NAMES_SHOWN; k++) {
		const json_t *argv = json_array_get(cmds, k);
		char name[128] = "(a command known at run time)";
		if (json_is_string(json_array_get(argv, 0)))
			shown_name(argv, name, sizeof(name));
		rb_buf_printf(b, "%s%s", k ? ", " : "", name);
	}
	if (k < n)
		rb_buf_printf(b, " and %zu more", n - k);
}

static enum rb_effect redis_effect(const json_t *args, const json_t *later, char **what)
{
	(void)later;
	json_t *cmd = json_object_get(args, "command"), *cmds = json_object_get(args, "commands");
	json_t *one = NULL;
	if (cmd) {
		one = json_array();
		json_array_append(one, cmd);
		cmds = one;
	}
	if (!json_is_array(cmds)) {     /* known only at run time: cannot tell */
		json_decref(one);
		return RB_EFFECT_UNKNOWN;
	}
	/* Lists known in part have null where a value is known only at run time (action.h). */
	int writes = 0, unknown = 0;
	size_t k;
	json_t *argv;
	json_array_foreach(cmds, k, argv) {
		if (!json_is_string(json_array_get(argv, 0)))
			unknown = 1;
		else if (!listed(reads, argv))
			writes = 1;
	}
	struct rb_buf b;
	rb_buf_init(&b);
	names_of(&b, cmds, json_is_true(json_object_get(args, "transaction")));
	const char *url = json_string_value(json_object_get(args, "url"));
	struct url u;
	char *why = NULL;
	if (url && parse_url(url, &u, &why) == 0) {
		json_t *db = json_object_get(args, "db");
		char *shown = url_shown(&u, u.db >= 0 ? u.db : json_is_integer(db)
					? (int)json_integer_value(db) : 0);
		rb_buf_printf(&b, " on %s%s", shown, json_is_true(json_object_get(args, "insecure"))
			      ? " (insecure: the certificate is not verified)" : "");
		free(shown);
		url_release(&u);
	}
	free(why);
	*what = rb_buf_detach(&b);
	json_decref(one);
	return writes ? RB_EFFECT_WRITES : unknown ? RB_EFFECT_UNKNOWN : RB_EFFECT_READS;
}

/* --- name lookups, off the engine's thread --------------------------------------------- */

/* --- a call under way ------------------------------------------------------------------ */

enum phase {
	P_LOOKUP,                       /* waiting for the lookup's thread */
	P_CONNECT,                      /* waiting for the socket to connect */
	P_TLS,                          /* rediss://: the TLS handshake under way */
	P_HELLO,                        /* AUTH and SELECT sent, their replies awaited */
	P_SEND,                         /* the commands sent, their replies awaited */
};

struct rds {
	const struct rb_call *c;
	struct url u;
	int db;
	const char *password;
	json_t *cmds;                   /* the commands' lists (command: a list of one) */
	int single, multi;
	int changes_conn;               /* a command changes the connection's settings: close it */
	char *what;                     /* "GET on redis://HOST:PORT/DB", for messages */
	char *target;                   /* the pool's key: server, database, credentials */
	enum phase phase;
	struct rb_resolve *lk;
	struct addrinfo *addrs, *next;  /* the addresses, the next one to try */
	char *conn_err;                 /* why the last address failed */
	redisContext *rc;
	struct rb_tls *tls;             /* rediss://: the session; the action does rc's I/O */
	short tls_wants;                /* what the session waits for (POLLIN, POLLOUT), or 0 */
	int reused;                     /* the context came from the pool */
	int expect;                     /* replies awaited in this phase */
	redisReply **got;
	int ngot;
	size_t bytes;                   /* reply bytes read */
	int64_t deadline_ms, connect_by;
};

/* A connection as the run keeps it between steps. */
struct link {
	redisContext *rc;
	struct rb_tls *tls;
};

static void link_close(void *p)
{
	struct link *l = p;
	rb_tls_free(l->tls);
	redisFree(l->rc);
	free(l);
}

static void drop_replies(struct rds *r)
{
	for (int k = 0; k < r->ngot; k++)
		freeReplyObject(r->got[k]);
	r->ngot = 0;
}

static void free_rds(struct rds *r)
{
	rb_resolve_free(r->lk);
	if (r->addrs)
		freeaddrinfo(r->addrs);
	rb_tls_free(r->tls);
	if (r->rc)
		redisFree(r->rc);
	drop_replies(r);
	free(r->got);
	url_release(&r->u);
	json_decref(r->cmds);
	free(r->what);
	free(r->target);
	free(r->conn_err);
	free(r);
}

/*
 * The call is over: res filled in, r freed.  Returns 1 for step().  A check that failed
 * gave no answer (the server could not be asked, or refused the command): its "no" is
 * a nil reply.
 */
static int finish(struct rds *r, struct rb_result *res, enum rb_outcome outcome, char *err)
{
	res->outcome = outcome == RB_FAILED && r->c->check ? RB_BROKEN : outcome;
	if (err) {
		free(res->error);
		res->error = err;
	}
	free_rds(r);
	return 1;
}

static int fail(struct rds *r, struct rb_result *res, enum rb_outcome outcome, const char *fmt,
		...) __attribute__((format(printf, 4, 5)));

static int fail(struct rds *r, struct rb_result *res, enum rb_outcome outcome, const char *fmt,
		...)
{
	va_list ap;
	va_start(ap, fmt);
	char *why = rb_xvasprintf(fmt, ap);
	va_end(ap);
	char *err = rb_xasprintf("%s: %s", r->what, why);
	free(why);
	return finish(r, res, outcome, err);
}

/*
 * An error reply's text without what it quotes of the command.  Redis quotes the
 * arguments of a command it does not know ("with args beginning with: 'k' 'eyJhbG...'")
 * and an unknown subcommand, cut at 128 bytes: a piece of a secret that the redactor,
 * finding whole values, would let through.  The command's name and index say which.
 */
static void unquote_args(char *s, size_t *n)
{
	char *cut = strstr(s, ", with args beginning with:");
	if (!cut && (cut = strstr(s, "unknown subcommand '")) != NULL)
		cut += strlen("unknown subcommand");
	if (cut) {
		*cut = '\0';
		*n = (size_t)(cut - s);
	}
}

/* A reply as a plain value: strings (not UTF-8: U+FFFD), integers, lists, null, {error}. */
static json_t *decode(const redisReply *x)
{
	size_t n;
	char *s;
	json_t *v;
	switch (x->type) {
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
	case REDIS_REPLY_ERROR:
		s = rb_utf8_lossy(x->str ? x->str : "", x->len, &n);
		if (x->type == REDIS_REPLY_ERROR)
			unquote_args(s, &n);
		v = json_stringn(s, n);
		free(s);
		return x->type == REDIS_REPLY_ERROR ? json_pack("{s:o}", "error", v) : v;
	case REDIS_REPLY_INTEGER:
		return json_integer((json_int_t)x->integer);
	case REDIS_REPLY_ARRAY:
		v = json_array();
		for (size_t k = 0; k < x->elements; k++)
			json_array_append_new(v, decode(x->element[k]));
		return v;
	default:
		return json_null();
	}
}

/* An error reply's text, for a message. */
static char *error_text(const redisReply *x)
{
	size_t n;
	char *s = rb_utf8_lossy(x->str ? x->str : "", x->len, &n);
	unquote_args(s, &n);
	char *vis = rb_visible(s, n, 0);
	free(s);
	return vis;
}

static void name_at(const struct rds *r, size_t i, char *buf, size_t size)
{
	shown_name(json_array_get(r->cmds, i), buf, size);
}

/* A number as Redis reads it: integers as they are, reals in the fewest digits that say them. */
static char *number_text(const json_t *a)
{
	if (json_is_integer(a))
		return rb_xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(a));
	double d = json_real_value(a);
	char *t = NULL;
	for (int prec = 15; prec <= 17; prec++) {
		free(t);
		t = rb_xasprintf("%.*g", prec, d);
		if (strtod(t, NULL) == d)
			break;
	}
	return t;
}

/* Append a command's list to the context's buffer. */
static void append(redisContext *rc, const json_t *argv)
{
	size_t n = json_array_size(argv);
	const char **v = rb_xcalloc(n, sizeof(*v));
	size_t *len = rb_xcalloc(n, sizeof(*len));
	char **made = rb_xcalloc(n, sizeof(*made));
	for (size_t k = 0; k < n; k++) {
		const json_t *a = json_array_get(argv, k);
		if (json_is_string(a)) {
			v[k] = json_string_value(a);
			len[k] = json_string_length(a);
		} else {
			v[k] = made[k] = number_text(a);
			len[k] = strlen(made[k]);
		}
	}
	redisAppendCommandArgv(rc, (int)n, v, len);
	for (size_t k = 0; k < n; k++)
		free(made[k]);
	free(made);
	free(len);
	free(v);
}

static int pending_out(const struct rds *r)
{
	return r->rc->obuf && *r->rc->obuf;
}

/* rc's error, for a failure of the I/O the action does itself (rediss://). */
static int io_error(struct rds *r, char *why)
{
	r->rc->err = REDIS_ERR_IO;
	snprintf(r->rc->errstr, sizeof(r->rc->errstr), "%s", why);
	free(why);
	return -1;
}

/* Write what is buffered, as far as the socket takes it; -1 on an error (rc->errstr). */
static int flush(struct rds *r)
{
	int done = 0;
	if (!r->tls)
		return redisBufferWrite(r->rc, &done) == REDIS_OK ? 0 : -1;
	r->tls_wants = 0;
	while (pending_out(r)) {
		char *why;
		ssize_t n = rb_tls_write(r->tls, r->rc->obuf, sdslen(r->rc->obuf), &r->tls_wants,
					 &why);
		if (n < 0)
			return why ? io_error(r, why) : 0;
		sdsrange(r->rc->obuf, n, -1);
	}
	return 0;
}

/* Send the phase's commands and await as many replies. */
static void send_phase(struct rds *r, enum phase phase, int expect)
{
	r->phase = phase;
	r->expect = expect;
	drop_replies(r);
	free(r->got);
	r->got = rb_xcalloc((size_t)expect, sizeof(*r->got));
}

/* Queue the call's commands (in MULTI/EXEC when told) and write them. */
static int send_commands(struct rds *r)
{
	size_t n = json_array_size(r->cmds);
	if (r->multi)
		redisAppendCommand(r->rc, "MULTI");
	for (size_t k = 0; k < n; k++)
		append(r->rc, json_array_get(r->cmds, k));
	if (r->multi)
		redisAppendCommand(r->rc, "EXEC");
	send_phase(r, P_SEND, (int)n + (r->multi ? 2 : 0));
	return flush(r);
}

/* A new connection: AUTH and SELECT first, when needed, alone, so nothing runs if they fail. */
static int send_hello(struct rds *r)
{
	int n = 0;
	if (r->password) {
		if (r->u.user) {
			const char *v[3] = {"AUTH", r->u.user, r->password};
			size_t len[3] = {4, strlen(r->u.user), strlen(r->password)};
			redisAppendCommandArgv(r->rc, 3, v, len);
		} else {
			const char *v[2] = {"AUTH", r->password};
			size_t len[2] = {4, strlen(r->password)};
			redisAppendCommandArgv(r->rc, 2, v, len);
		}
		n++;
	}
	if (r->db) {
		redisAppendCommand(r->rc, "SELECT %d", r->db);
		n++;
	}
	if (!n)
		return send_commands(r);
	send_phase(r, P_HELLO, n);
	return flush(r);
}

/* Connect to the next address; 0 under way, -1 when none is left (r->conn_err). */
static int connect_next(struct rds *r)
{
	while (r->next) {
		struct addrinfo *ai = r->next;
		r->next = ai->ai_next;
		char ip[NI_MAXHOST];
		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, ip, sizeof(ip), NULL, 0,
				NI_NUMERICHOST))
			continue;
		/* A numeric address: hiredis's own getaddrinfo does not block on it. */
		redisContext *rc = redisConnectNonBlock(ip, r->u.port);
		if (!rc) {
			free(r->conn_err);
			r->conn_err = rb_xstrdup("out of memory");
			continue;
		}
		if (rc->err) {
			free(r->conn_err);
			r->conn_err = rb_xstrdup(rc->errstr);
			redisFree(rc);
			continue;
		}
		r->rc = rc;
		r->phase = P_CONNECT;
		return 0;
	}
	if (!r->conn_err)
		r->conn_err = rb_xstrdup("no address to connect to");
	return -1;
}

/* A kept connection the server has closed since (it reads as EOF or holds stray bytes). */
static int still_open(redisContext *rc)
{
	char b;
	if (rc->err || (rc->obuf && *rc->obuf))
		return 0;
	ssize_t n = recv(rc->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void *redis_start(const struct rb_call *c, struct rb_result *res)
{
	struct rds *r = rb_xcalloc(1, sizeof(*r));
	r->c = c;
	const json_t *a = c->args;
	char *why = NULL;
	if (parse_url(json_string_value(json_object_get(a, "url")), &r->u, &why) < 0) {
		res->outcome = RB_BROKEN;
		res->error = rb_xasprintf("url: %s", why);
		free(why);
		free(r);
		return NULL;
	}
	json_t *db = json_object_get(a, "db");
	r->db = r->u.db >= 0 ? r->u.db : db ? (int)json_integer_value(db) : 0;
	r->password = json_string_value(json_object_get(a, "password"));
	json_t *cmd = json_object_get(a, "command");
	r->single = cmd != NULL;
	r->cmds = cmd ? json_pack("[O]", cmd) : json_incref(json_object_get(a, "commands"));
	r->multi = json_is_true(json_object_get(a, "transaction"));
	struct rb_buf b;
	rb_buf_init(&b);
	if (r->cmds)
		names_of(&b, r->cmds, r->multi);
	char *shown = url_shown(&r->u, r->db);
	rb_buf_printf(&b, "%son %s", r->cmds ? " " : "", shown);
	free(shown);
	r->what = rb_buf_detach(&b);
	if (!r->cmds) {
		finish(r, res, RB_BROKEN, rb_xstrdup("needs command or commands"));
		return NULL;
	}
	size_t k, i;
	json_t *argv, *v;
	json_array_foreach(r->cmds, k, argv) {
		if (!json_is_array(argv)) {
			fail(r, res, RB_BROKEN, "command %zu is nil", k + 1);
			return NULL;
		}
		r->changes_conn |= listed(own_settings, argv);
		json_array_foreach(argv, i, v)
			if (json_is_null(v)) {
				char at[48] = "";
				if (!r->single)
					snprintf(at, sizeof(at), "command %zu: ", k + 1);
				fail(r, res, RB_BROKEN, "%sitem %zu is nil", at, i + 1);
				return NULL;
			}
	}
	if (r->u.user && !r->password) {
		fail(r, res, RB_BROKEN, "the URL names a user, and no password is given");
		return NULL;
	}
	/* One connection for a server, database and credentials (hashed: not kept in clear). */
	char hex[65] = "";
	if (r->password)
		rb_sha256_hex(r->password, strlen(r->password), hex);
	hex[16] = '\0';
	/* With TLS, one for each way of trusting the server too. */
	const char *ca = rb_arg_str(a, "ca_file"), *cert = rb_arg_str(a, "client_cert");
	r->target = rb_xasprintf("%s:%d/%d %s %s %s %s %s %d", r->u.host, r->u.port, r->db,
				 r->u.user ? r->u.user : "-", hex, r->u.tls ? "tls" : "tcp",
				 ca ? ca : "-", cert ? cert : "-",
				 json_is_true(json_object_get(a, "insecure")));
	r->deadline_ms = c->deadline_ms;
	int64_t now = rb_now_ms(), ms;
	const char *t = json_string_value(json_object_get(a, "timeout")), *w;
	if (t && rb_duration_parse(t, &ms, &w) == 0 && ms > 0 &&
	    (!r->deadline_ms || now + ms < r->deadline_ms))
		r->deadline_ms = now + ms;
	r->connect_by = now + RDS_CONNECT_MS;

	struct link *kept;
	while ((kept = rb_pool_take(c->run, "redis", r->target)) && !still_open(kept->rc))
		link_close(kept);
	if (kept) {
		r->rc = kept->rc;
		r->tls = kept->tls;
		free(kept);
		r->reused = 1;
		if (send_commands(r) < 0) {
			fail(r, res, RB_FAILED, "%s", r->rc->errstr);
			return NULL;
		}
		return r;
	}
	/* A numeric address is taken as it is; a name is looked up on a thread. */
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	char port[16];
	snprintf(port, sizeof(port), "%d", r->u.port);
	if (getaddrinfo(r->u.host, port, &hints, &r->addrs) == 0) {
		r->next = r->addrs;
		if (connect_next(r) < 0) {
			fail(r, res, RB_FAILED, "cannot connect: %s", r->conn_err);
			return NULL;
		}
		return r;
	}
	r->addrs = NULL;
	char *err = NULL;
	if (!(r->lk = rb_resolve_start(r->u.host, port, NULL, &err))) {
		fail(r, res, RB_BROKEN, "%s", err);
		free(err);
		return NULL;
	}
	r->phase = P_LOOKUP;
	return r;
}

/* The replies of AUTH and SELECT: -1 with the call over when one is an error. */
static int hello_done(struct rds *r, struct rb_result *res)
{
	int k = 0;
	if (r->password) {
		if (r->got[k]->type == REDIS_REPLY_ERROR) {
			char *e = error_text(r->got[k]);
			fail(r, res, RB_FAILED, "authentication failed: %s", e);
			free(e);
			return -1;
		}
		k++;
	}
	if (r->db && r->got[k]->type == REDIS_REPLY_ERROR) {
		char *e = error_text(r->got[k]);
		fail(r, res, RB_FAILED, "cannot select database %d: %s", r->db, e);
		free(e);
		return -1;
	}
	return 0;
}

/* The commands' replies: the output, the first error, and the connection back to the pool. */
static int commands_done(struct rds *r, struct rb_result *res)
{
	const redisReply *const *got = (const redisReply *const *)r->got;
	size_t n = json_array_size(r->cmds);
	char *err = NULL;
	json_t *replies = NULL;
	char name[128];
	if (r->multi) {
		const redisReply *exec = got[n + 1];
		if (exec->type == REDIS_REPLY_ARRAY && exec->elements == n) {
			got = (const redisReply *const *)exec->element;
		} else {
			/* EXECABORT: a command was refused as it was queued, and none ran. */
			size_t bad;
			for (bad = 0; bad < n && got[bad + 1]->type != REDIS_REPLY_ERROR; bad++)
				;
			const redisReply *why = bad < n ? got[bad + 1] : exec;
			char *e = error_text(why);
			if (bad < n)
				name_at(r, bad, name, sizeof(name));
			if (bad < n)
				err = rb_xasprintf("%s: the transaction did not run: command %zu "
						   "(%s): %s", r->what, bad + 1, name, e);
			else
				err = rb_xasprintf("%s: the transaction did not run: %s", r->what,
						   exec->type == REDIS_REPLY_ERROR ? e
						   : "EXEC gave no replies");
			free(e);
			goto give;
		}
	}
	replies = json_array();
	for (size_t k = 0; k < n; k++) {
		json_array_append_new(replies, decode(got[k]));
		if (got[k]->type == REDIS_REPLY_ERROR && !err) {
			char *e = error_text(got[k]);
			name_at(r, k, name, sizeof(name));
			if (r->single)
				err = rb_xasprintf("%s: %s", r->what, e);
			else
				err = rb_xasprintf("%s: command %zu (%s): %s%s", r->what, k + 1,
						   name, e, n == 1 ? "" : r->multi
						   ? " (the transaction's other commands ran)"
						   : " (the other commands ran)");
			free(e);
		}
	}
	if (r->single && r->c->check) {        /* in place unless the reply is nil */
		res->output = json_incref(json_array_get(replies, 0));
		json_decref(replies);
	} else if (r->single) {
		res->output = json_pack("{s:O}", "reply", json_array_get(replies, 0));
		json_decref(replies);
	} else {
		res->output = json_pack("{s:o}", "replies", replies);
	}
give:
	/* Every reply read and nothing more: the connection is as it came, keep it; not when a
	 * command changed its settings (CLIENT SETNAME), which the next step would inherit. */
	if (r->rc->reader->pos >= r->rc->reader->len && !pending_out(r) && !r->changes_conn &&
	    !(r->tls && rb_tls_pending(r->tls))) {
		struct link *l = rb_xcalloc(1, sizeof(*l));
		l->rc = r->rc;
		l->tls = r->tls;
		rb_pool_give(r->c->run, "redis", r->target, l, link_close);
		r->rc = NULL;
		r->tls = NULL;
	}
	return finish(r, res, err ? RB_FAILED : RB_OK, err);
}

/*
 * Read what the socket has and take the replies it completes: 1 when all the phase
 * awaits are in, 0 when more are to come, -1 with *why on an error.
 */
static int read_replies(struct rds *r, char **why)
{
	char buf[64 * 1024];
	for (;;) {
		ssize_t n;
		if (r->tls) {
			r->tls_wants = 0;
			if ((n = rb_tls_read(r->tls, buf, sizeof(buf), &r->tls_wants, why)) < 0) {
				if (*why)
					return -1;
				break;
			}
		} else if ((n = read(r->rc->fd, buf, sizeof(buf))) < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			*why = rb_xstrdup(strerror(errno));
			return -1;
		}
		if (n == 0) {
			*why = rb_xasprintf("the server closed the connection%s",
					    r->reused && !r->bytes ? " (kept from an earlier step)"
					    : "");
			return -1;
		}
		r->bytes += (size_t)n;
		if (r->bytes > RDS_MAX_REPLY) {
			*why = rb_xasprintf("the replies are larger than %ld MiB",
					    RDS_MAX_REPLY / (1024 * 1024));
			return -1;
		}
		if (redisReaderFeed(r->rc->reader, buf, (size_t)n) != REDIS_OK) {
			*why = rb_xstrdup("out of memory");
			return -1;
		}
		/* Drained, most likely: poll says when there is more, but not of what the TLS
		   session holds decrypted already. */
		if ((size_t)n < sizeof(buf) && !(r->tls && rb_tls_pending(r->tls)))
			break;
	}
	while (r->ngot < r->expect) {
		void *x = NULL;
		if (redisGetReplyFromReader(r->rc, &x) != REDIS_OK) {
			*why = rb_xasprintf("protocol error: %s", r->rc->errstr);
			return -1;
		}
		if (!x)
			break;
		r->got[r->ngot++] = x;
	}
	return r->ngot == r->expect;
}

static int redis_step(void *state, struct pollfd *fds, int *nfds, long *timeout_ms,
		      struct rb_result *res)
{
	struct rds *r = state;
	short revents = *nfds ? fds[0].revents : 0;
	int64_t now = rb_now_ms();
	if (rb_cancelled(r->c->cancel))         /* the connection goes: nothing is left open */
		return fail(r, res, RB_CANCELLED, "cancelled");
	if (r->deadline_ms && now >= r->deadline_ms)
		return fail(r, res, RB_TIMED_OUT, "timed out%s", r->phase == P_LOOKUP
			    ? " looking the host up" : r->phase == P_CONNECT ? " connecting"
			    : r->phase == P_TLS ? " in the TLS handshake" : "");
	if (r->phase != P_SEND && now >= r->connect_by)
		return fail(r, res, RB_FAILED, "cannot connect within %ds", RDS_CONNECT_MS / 1000);
	char *why = NULL;
	switch (r->phase) {
	case P_LOOKUP: {
		int done = rb_resolve_result(r->lk, &r->addrs, &why);
		if (done == 0)
			break;
		if (done < 0) {
			int rv = fail(r, res, RB_FAILED, "%s", why);
			free(why);
			return rv;
		}
		rb_resolve_free(r->lk);
		r->lk = NULL;
		r->next = r->addrs;
		if (connect_next(r) < 0)
			return fail(r, res, RB_FAILED, "cannot connect: %s", r->conn_err);
		break;
	}
	case P_CONNECT: {
		if (!revents)
			break;
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(r->rc->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			free(r->conn_err);
			r->conn_err = rb_xstrdup(strerror(err));
			redisFree(r->rc);
			r->rc = NULL;
			if (connect_next(r) < 0)
				return fail(r, res, RB_FAILED, "cannot connect: %s", r->conn_err);
			break;
		}
		if (r->u.tls) {
			const json_t *a = r->c->args;
			struct rb_tls_opts o = {r->u.host, rb_arg_str(a, "ca_file"),
						rb_arg_str(a, "client_cert"),
						rb_arg_str(a, "client_key"),
						json_is_true(json_object_get(a, "insecure"))};
			if (!(r->tls = rb_tls_new(r->rc->fd, &o, &why))) {
				int rv = fail(r, res, RB_BROKEN, "%s", why);
				free(why);
				return rv;
			}
			r->phase = P_TLS;
		} else if (send_hello(r) < 0) {
			return fail(r, res, RB_FAILED, "%s", r->rc->errstr);
		}
		if (r->phase != P_TLS)
			break;
		/* the handshake starts at once */
	}
	/* fall through */
	case P_TLS: {
		int done = rb_tls_handshake(r->tls, &r->tls_wants, &why);
		if (done < 0) {
			int rv = fail(r, res, RB_FAILED, "%s", why);
			free(why);
			return rv;
		}
		if (done && send_hello(r) < 0)
			return fail(r, res, RB_FAILED, "%s", r->rc->errstr);
		break;
	}
	case P_HELLO:
	case P_SEND:
		/* TLS may want to read before it can write: any event lets a write go on. */
		if ((revents & POLLOUT || (r->tls && revents && pending_out(r))) && flush(r) < 0)
			return fail(r, res, RB_FAILED, "%s", r->rc->errstr);
		if (revents & (POLLIN | POLLHUP | POLLERR)) {
			int got = read_replies(r, &why);
			if (got < 0) {
				fail(r, res, RB_FAILED, "%s", why);
				free(why);
				return 1;
			}
			if (got && r->phase == P_SEND)
				return commands_done(r, res);
			if (got) {
				if (hello_done(r, res) < 0)
					return 1;
				if (send_commands(r) < 0)
					return fail(r, res, RB_FAILED, "%s", r->rc->errstr);
			}
		}
		break;
	}
	*nfds = 1;
	if (r->phase == P_LOOKUP)
		fds[0] = (struct pollfd){rb_resolve_fd(r->lk), POLLIN, 0};
	else if (r->phase == P_CONNECT)
		fds[0] = (struct pollfd){r->rc->fd, POLLOUT, 0};
	else if (r->phase == P_TLS)
		fds[0] = (struct pollfd){r->rc->fd, r->tls_wants, 0};
	else
		fds[0] = (struct pollfd){r->rc->fd, (short)(POLLIN | r->tls_wants |
							    (pending_out(r) ? POLLOUT : 0)), 0};
	int64_t until = r->phase != P_SEND ? r->connect_by : 0;
	if (r->deadline_ms && (!until || r->deadline_ms < until))
		until = r->deadline_ms;
	*timeout_ms = until ? (long)(until - now > 0 ? until - now : 0) : -1;
	return 0;
}

static const struct rb_output redis_outputs[] = {
	{"reply", "command: its reply, decoded: a status or a bulk string as a string (bytes "
	 "that are not UTF-8 become U+FFFD), an integer, a list (RESP2: HGETALL gives [field, "
	 "value, ...]), nil as null; an error reply fails the step. As a check, the output is "
	 "the reply itself: a nil reply (GET of a missing key) says not in place; an error "
	 "reply, or a server that cannot be reached, gives no answer"},
	{"replies", "commands: the replies in order (with transaction: EXEC's), decoded the same "
	 "way, an error reply as {error: \"...\"}, which fails the step after the others ran"},
	{NULL, NULL},
};

const struct rb_action act_redis_command = {
	.name = "redis.command",
	.summary = "send a Redis command, or a pipeline of them (in MULTI/EXEC with "
		   "transaction); the replies are the output",
	.args = redis_args,
	.outputs = redis_outputs,
	.effects = "the commands that only read have none (`--dry-run --probe` sends them, and a "
		   "`check:` may use them); a pipeline has none when none of its commands has. "
		   "They are those of the Redis command table flagged readonly, and the server's "
		   "reports without a write flag, by name and, for container commands, subcommand: "
		   RDS_READS(RDS_LISTED, RDS_LAST) ". Every other command has side effects, and "
		   "so has a command whose name is known only at run time. How a call connects, "
		   "what replies become and which commands are refused: [Redis](redis.md)",
	.example = "- id: flag_on\n"
		   "  action: redis.command\n"
		   "  with:\n"
		   "    url: redis://cache.internal:6379/0\n"
		   "    password: ${{ secrets.redis_password }}\n"
		   "    command: [SET, maintenance, \"on\", EX, 3600]\n"
		   "- id: queue_depth\n"
		   "  action: redis.command\n"
		   "  with:\n"
		   "    url: redis://cache.internal:6379/0\n"
		   "    password: ${{ secrets.redis_password }}\n"
		   "    commands: [[LLEN, jobs:pending], [LLEN, jobs:failed]]\n"
		   "  outputs:\n"
		   "    pending: ${{ output.replies[1] }}\n",
	.flags = RB_ACT_SIDE_EFFECTS,
	.check = redis_check,
	.effect = redis_effect,
	.start = redis_start,
	.step = redis_step,
};
