/*
 * The sandboxed Lua state.  Runbook code sees a fresh scope table whose reads
 * fall through to an allow-listed, read-only base environment (as Redis does
 * for scripts).  A capped allocator stops memory bombs; a count hook and the
 * pattern matcher's tick stop runaway loops and patterns at a deadline.
 */
#include "luabox.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "isotime.h"
#include "lpattern.h"
#include "luacodec.h"
#include "luaquote.h"
#include "util.h"

extern char **environ;

struct rb_luabox {
	lua_State *L;
	size_t used, cap;
	size_t base;            /* what it used when made or rebased */
	size_t spare;           /* what the engine's record of a failure may take past cap */
	struct timespec deadline;
	int has_deadline;
	const char *stop;       /* why the code is being stopped: every instruction errors */
	char why[64];           /* the time limit's message */
	long limit_ms;
	const char *(*poll)(void *ud);  /* rb_luabox_set_poll */
	void *poll_ud;
	int64_t next_poll;      /* CLOCK_MONOTONIC_COARSE ms */
	int base_ref;           /* registry ref of the read-only base environment */
	int cache_ref;          /* registry ref of compiled expressions by text */
	size_t cached;
	int chunk_ref;          /* ... and of compiled chunks by text */
	size_t chunks;
};

/*
 * The hook runs every HOOK_COUNT instructions and at every call: a call of a
 * C function (a sort, a string of megabytes, a collection at the memory cap)
 * can take milliseconds, and a loop of them would otherwise run 1,000 of
 * them between two looks at the clock.  The coarse clock (a few ms of
 * resolution) costs a few ns.
 */
enum { HOOK_COUNT = 1000, HOOK_MASK = LUA_MASKCOUNT | LUA_MASKCALL, CACHE_MAX = 4096,
       CHUNK_CACHE_MAX = 16384 };

static struct rb_luabox *box_of(lua_State *L)
{
	return *(struct rb_luabox **)lua_getextraspace(L);
}

static void *box_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct rb_luabox *b = ud;
	size_t old = ptr ? osize : 0;
	if (nsize == 0) {
		free(ptr);
		b->used -= old;
		return NULL;
	}
	if (nsize > old && b->used + (nsize - old) > b->cap + b->spare)
		return NULL;
	void *p = realloc(ptr, nsize);
	if (!p)
		return NULL;
	b->used = b->used - old + nsize;
	return p;
}

static int64_t coarse_ms(struct timespec *now)
{
	clock_gettime(CLOCK_MONOTONIC_COARSE, now);
	return (int64_t)now->tv_sec * 1000 + now->tv_nsec / 1000000;
}

static int past(const struct timespec *now, const struct timespec *t)
{
	return now->tv_sec > t->tv_sec || (now->tv_sec == t->tv_sec && now->tv_nsec >= t->tv_nsec);
}

static void raise_stop(lua_State *L, struct rb_luabox *b)
{
	/*
	 * Once stopping, fire on every instruction: a pcall in a loop can catch
	 * one error, but the loop's next instruction raises again, so the error
	 * climbs out of every pcall to the top.
	 */
	lua_sethook(L, lua_gethook(L), HOOK_MASK, 1);
	luaL_error(L, "%s", b->stop);
}

/* The hook's and the pattern matcher's look: the deadline, and the engine's poll. */
static void tick(lua_State *L)
{
	struct rb_luabox *b = box_of(L);
	struct timespec now;
	if (b->stop)
		raise_stop(L, b);
	int64_t ms = coarse_ms(&now);
	if (b->has_deadline && past(&now, &b->deadline)) {
		snprintf(b->why, sizeof(b->why), "time limit of %ld ms exceeded", b->limit_ms);
		b->stop = b->why;
		raise_stop(L, b);
	}
	if (b->poll && ms >= b->next_poll) {
		b->next_poll = ms + RB_LUABOX_POLL_MS;
		if ((b->stop = b->poll(b->poll_ud)) != NULL)
			raise_stop(L, b);
	}
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	tick(L);
}

static void pattern_tick(lua_State *L)
{
	tick(L);
}

void rb_luabox_set_poll(struct rb_luabox *b, const char *(*poll)(void *ud), void *ud)
{
	b->poll = poll;
	b->poll_ud = ud;
}

/* --- guarded library functions ------------------------------------------ */

/* Call the stock function (upvalue 1) that a guard wraps, with all arguments. */
static int call_wrapped(lua_State *L)
{
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

static int guarded_rep(lua_State *L)
{
	size_t l, lsep;
	luaL_checklstring(L, 1, &l);
	lua_Integer n = luaL_checkinteger(L, 2);
	luaL_optlstring(L, 3, "", &lsep);
	/* Stock rep loops n times even when the result is empty. */
	if (n <= 0 || l + lsep == 0) {
		lua_pushliteral(L, "");
		return 1;
	}
	struct rb_luabox *b = box_of(L);
	if ((lua_Unsigned)n > b->cap / (l + lsep) + 1)
		return luaL_error(L, "string.rep: result larger than the memory limit");
	return call_wrapped(L);
}

static int guarded_move(lua_State *L)
{
	lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
	struct rb_luabox *b = box_of(L);
	if (e >= f && (lua_Unsigned)(e - f) > b->cap / 16)
		return luaL_error(L, "table.move: range too large");
	return call_wrapped(L);
}

static int safe_setmetatable(lua_State *L)
{
	if (lua_type(L, 2) == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "__gc metamethods are not allowed");
		lua_pop(L, 1);
	}
	return call_wrapped(L);
}

/* load: source text only, run in the given env or the read-only base. */
static int safe_load(lua_State *L)
{
	size_t len;
	const char *s = lua_tolstring(L, 1, &len);
	if (!s)
		return luaL_error(L, "load: only strings of source text are allowed");
	const char *name = luaL_optstring(L, 2, "=(load)");
	int st = luaL_loadbufferx(L, s, len, name, "t");
	if (st != LUA_OK) {
		luaL_pushfail(L);
		lua_insert(L, -2);
		return 2;
	}
	if (!lua_isnoneornil(L, 4))
		lua_pushvalue(L, 4);
	else
		lua_rawgeti(L, LUA_REGISTRYINDEX, box_of(L)->base_ref);
	if (!lua_setupvalue(L, -2, 1))
		lua_pop(L, 1);
	return 1;
}

/* --- read-only views ------------------------------------------------------ */

static int ro_index(lua_State *L)
{
	lua_gettable(L, lua_upvalueindex(1));
	if (lua_type(L, -1) == LUA_TTABLE)
		rb_luabox_readonly(L);
	return 1;
}

static int ro_newindex(lua_State *L)
{
	return luaL_error(L, "attempt to modify a read-only table");
}

static int ro_next(lua_State *L)
{
	/* upvalue 1: the real table; iterate it, wrapping nested tables. */
	lua_settop(L, 2);
	if (!lua_next(L, lua_upvalueindex(1)))
		return 0;
	if (lua_type(L, -1) == LUA_TTABLE)
		rb_luabox_readonly(L);
	return 2;
}

static int ro_pairs(lua_State *L)
{
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushcclosure(L, ro_next, 1);
	lua_pushnil(L);
	lua_pushnil(L);
	return 3;
}

static int ro_len(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)luaL_len(L, lua_upvalueindex(1)));
	return 1;
}

void rb_luabox_readonly(lua_State *L)
{
	luaL_checkstack(L, 4, "readonly");
	lua_newtable(L);                        /* proxy */
	lua_createtable(L, 0, 5);               /* its metatable */
	lua_pushvalue(L, -3);
	lua_pushcclosure(L, ro_index, 1);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, ro_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushvalue(L, -3);
	lua_pushcclosure(L, ro_pairs, 1);
	lua_setfield(L, -2, "__pairs");
	lua_pushvalue(L, -3);
	lua_pushcclosure(L, ro_len, 1);
	lua_setfield(L, -2, "__len");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "__rb_target");     /* for C code: see to_json */
	lua_setmetatable(L, -2);
	lua_remove(L, -2);
}

/* Push the table a read-only view at idx shows, or idx itself. */
static void push_target(lua_State *L, int idx)
{
	if (lua_getmetatable(L, idx)) {
		/* rawget: a metatable's own metatable could run user code. */
		lua_pushliteral(L, "__rb_target");
		if (lua_rawget(L, -2) == LUA_TTABLE) {
			lua_remove(L, -2);
			return;
		}
		lua_pop(L, 2);
	}
	lua_pushvalue(L, idx);
}

static void push_json(lua_State *L, const json_t *v);

/* --- helper library ------------------------------------------------------- */

static int json_encode(lua_State *L)
{
	luaL_checkany(L, 1);
	char *err = NULL;
	json_t *j = rb_lua_to_json(L, 1, &err);
	if (!j) {
		lua_pushfstring(L, "json.encode: %s", err);
		free(err);
		return lua_error(L);
	}
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
	json_decref(j);
	if (!s)
		return luaL_error(L, "json.encode: cannot encode");
	lua_pushstring(L, s);
	free(s);
	return 1;
}

static int json_decode(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	json_error_t e;
	json_t *j = json_loadb(s, len, JSON_DECODE_ANY, &e);
	if (!j) {
		/*
		 * jansson quotes the text "near" the error, cut to a few bytes: a
		 * piece of a secret that the redactor, which finds whole values,
		 * would let through.  The line and column say where.
		 */
		char *near = strstr(e.text, " near '");
		if (near)
			*near = '\0';
		return luaL_error(L, "json.decode: %s at line %d column %d", e.text, e.line,
				  e.column);
	}
	push_json(L, j);
	json_decref(j);
	return 1;
}

static const luaL_Reg json_lib[] = {
	{"encode", json_encode},
	{"decode", json_decode},
	{NULL, NULL},
};

static int parse_duration_ms(const char *s, double *ms)
{
	static const struct { const char *unit; double ms; } units[] = {
		{"ms", 1}, {"s", 1e3}, {"m", 60e3}, {"h", 3600e3}, {"d", 86400e3},
	};
	double total = 0;
	if (!*s)
		return -1;
	while (*s) {
		if (*s < '0' || *s > '9')
			return -1;
		double v = 0;
		while (*s >= '0' && *s <= '9')
			v = v * 10 + (*s++ - '0');
		size_t k;
		for (k = 0; k < sizeof(units) / sizeof(units[0]); k++) {
			size_t ul = strlen(units[k].unit);
			if (!strncmp(s, units[k].unit, ul) && !(s[ul] >= 'a' && s[ul] <= 'z')) {
				total += v * units[k].ms;
				s += ul;
				break;
			}
		}
		if (k == sizeof(units) / sizeof(units[0]))
			return -1;
	}
	*ms = total;
	return 0;
}

static int time_now(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)floor(rb_now()));
	return 1;
}

static int time_duration(lua_State *L)
{
	const char *s = luaL_checkstring(L, 1);
	double ms;
	if (parse_duration_ms(s, &ms) < 0)
		return luaL_error(L, "time.duration: invalid duration '%s'", s);
	if (fmod(ms, 1000) == 0)
		lua_pushinteger(L, (lua_Integer)(ms / 1000));
	else
		lua_pushnumber(L, ms / 1000);
	return 1;
}

static int time_iso8601(lua_State *L)
{
	double t = luaL_optnumber(L, 1, rb_now());
	char buf[64];
	const char *why;
	if (rb_isotime_format(t, NULL, buf, sizeof(buf), &why) < 0)
		return luaL_error(L, "time.iso8601: time out of range");
	lua_pushstring(L, buf);
	return 1;
}

/*
 * s as an error message quotes it: at most 64 bytes, control characters as
 * '?'.  Pushed on L's stack, which keeps it until the error is raised.
 */
static const char *quoted(lua_State *L, const char *s, size_t len)
{
	char buf[72];
	size_t n = len > 64 ? 64 : len;
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	memcpy(buf + n, "...", len > n ? 4 : 1);
	if (len <= n)
		buf[n] = '\0';
	return lua_pushstring(L, buf);
}

/* An ISO 8601 / RFC 3339 time (isotime.h) as seconds since the epoch. */
static int time_parse(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	double t;
	int whole;
	const char *why;
	if (rb_isotime_parse(s, len, &t, &whole, &why) < 0)
		return luaL_error(L, "time.parse: invalid time '%s': %s", quoted(L, s, len), why);
	if (whole)
		lua_pushinteger(L, (lua_Integer)t);
	else
		lua_pushnumber(L, t);
	return 1;
}

/* strftime in UTC: time.format(t, fmt); fmt defaults to time.iso8601's. */
static int time_format(lua_State *L)
{
	double t = luaL_checknumber(L, 1);
	size_t len;
	const char *fmt = luaL_optlstring(L, 2, NULL, &len);
	char buf[1024];
	const char *why;
	if (fmt && (len > 256 || strlen(fmt) != len))
		return luaL_error(L, "time.format: the format must be text of at most 256 bytes");
	int rc = rb_isotime_format(t, fmt, buf, sizeof(buf), &why);
	if (rc == -2)
		return luaL_error(L, "time.format: the time %s is %s", lua_tostring(L, 1), why);
	if (rc < 0)
		return luaL_error(L, "time.format: invalid format '%s': %s",
				  fmt ? quoted(L, fmt, len) : "", why);
	lua_pushstring(L, buf);
	return 1;
}

static const luaL_Reg time_lib[] = {
	{"now", time_now},
	{"duration", time_duration},
	{"iso8601", time_iso8601},
	{"parse", time_parse},
	{"format", time_format},
	{NULL, NULL},
};

static int h_split(lua_State *L)
{
	size_t len, slen;
	const char *s = luaL_checklstring(L, 1, &len);
	const char *sep = luaL_optlstring(L, 2, ",", &slen);
	if (slen == 0)
		return luaL_error(L, "split: empty separator");
	lua_newtable(L);
	lua_Integer i = 1;
	const char *p = s, *end = s + len;
	for (;;) {
		const char *q = memmem(p, (size_t)(end - p), sep, slen);
		if (!q)
			q = end;
		lua_pushlstring(L, p, (size_t)(q - p));
		lua_rawseti(L, -2, i++);
		if (q == end)
			break;
		p = q + slen;
	}
	return 1;
}

static int h_join(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	size_t slen;
	const char *sep = luaL_optlstring(L, 2, ",", &slen);
	lua_Integer n = luaL_len(L, 1);
	luaL_Buffer buf;
	luaL_buffinit(L, &buf);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_geti(L, 1, i);
		luaL_tolstring(L, -1, NULL);
		lua_remove(L, -2);
		luaL_addvalue(&buf);
		if (i < n)
			luaL_addlstring(&buf, sep, slen);
	}
	luaL_pushresult(&buf);
	return 1;
}

static int h_trim(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	size_t a = 0, e = len;
	while (a < e && strchr(" \t\r\n\f\v", s[a]))
		a++;
	while (e > a && strchr(" \t\r\n\f\v", s[e - 1]))
		e--;
	lua_pushlstring(L, s + a, e - a);
	return 1;
}

/* --- building the base environment ---------------------------------------- */

static const char *const base_allowed[] = {
	"assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber",
	"tostring", "type", "xpcall", "rawequal", "rawlen", "rawget", "getmetatable",
	"_VERSION", NULL,
};

/* Copy the listed fields of the table at src into the table at dst. */
static void copy_fields(lua_State *L, int src, int dst, const char *const *names)
{
	for (; *names; names++) {
		lua_getfield(L, src, *names);
		lua_setfield(L, dst, *names);
	}
}

/* Put a read-only view of a copy of library lib under name in base. */
static void add_lib(lua_State *L, int base, const char *name, const char *const *only)
{
	lua_getglobal(L, name);
	int lib = lua_gettop(L);
	lua_newtable(L);
	int copy = lua_gettop(L);
	if (only) {
		copy_fields(L, lib, copy, only);
	} else {
		lua_pushnil(L);
		while (lua_next(L, lib)) {
			lua_pushvalue(L, -2);
			lua_insert(L, -2);
			lua_settable(L, copy);
		}
	}
	lua_remove(L, lib);
	lua_pushvalue(L, -1);
	rb_luabox_readonly(L);
	lua_setfield(L, base, name);
	lua_pop(L, 1);
}

static void wrap(lua_State *L, int tbl, const char *name, lua_CFunction f)
{
	lua_getfield(L, tbl, name);
	lua_pushcclosure(L, f, 1);
	lua_setfield(L, tbl, name);
}

static void build_base(struct rb_luabox *b)
{
	lua_State *L = b->L;
	static const char *const os_ok[] = {"time", "clock", "date", "difftime", NULL};

	luaL_openlibs(L);
	lua_newtable(L);
	int base = lua_gettop(L);
	lua_pushglobaltable(L);
	int g = lua_gettop(L);
	copy_fields(L, g, base, base_allowed);
	lua_getfield(L, g, "setmetatable");
	lua_pushcclosure(L, safe_setmetatable, 1);
	lua_setfield(L, base, "setmetatable");
	lua_pushcfunction(L, safe_load);
	lua_setfield(L, base, "load");

	/* string: no dump; deadline-aware patterns; bounded rep. */
	lua_getfield(L, g, "string");
	int str = lua_gettop(L);
	lua_pushnil(L);
	lua_setfield(L, str, "dump");
	rb_lpattern_register(L, str, pattern_tick);
	wrap(L, str, "rep", guarded_rep);
	lua_pop(L, 1);
	lua_getfield(L, g, "table");
	wrap(L, lua_gettop(L), "move", guarded_move);
	lua_pop(L, 1);

	add_lib(L, base, "string", NULL);
	add_lib(L, base, "table", NULL);
	add_lib(L, base, "math", NULL);
	add_lib(L, base, "utf8", NULL);
	add_lib(L, base, "coroutine", NULL);
	add_lib(L, base, "os", os_ok);

	/* The string metatable: methods from the guarded library, and hidden. */
	lua_pushliteral(L, "");
	lua_getmetatable(L, -1);
	lua_getfield(L, g, "string");
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 2);

	luaL_newlib(L, json_lib);
	rb_luabox_readonly(L);
	lua_setfield(L, base, "json");
	luaL_newlib(L, time_lib);
	rb_luabox_readonly(L);
	lua_setfield(L, base, "time");
	rb_luaquote_open(L, base, rb_luabox_readonly);
	rb_luacodec_open(L, base, rb_luabox_readonly);
	lua_getfield(L, base, "string");
	lua_getfield(L, -1, "format");
	lua_setfield(L, base, "fmt");
	lua_pop(L, 1);
	lua_pushcfunction(L, h_split);
	lua_setfield(L, base, "split");
	lua_pushcfunction(L, h_join);
	lua_setfield(L, base, "join");
	lua_pushcfunction(L, h_trim);
	lua_setfield(L, base, "trim");

	/* env: the process environment, read-only. */
	lua_newtable(L);
	for (char **e = environ; *e; e++) {
		const char *eq = strchr(*e, '=');
		if (!eq)
			continue;
		lua_pushlstring(L, *e, (size_t)(eq - *e));
		lua_pushstring(L, eq + 1);
		lua_rawset(L, -3);
	}
	rb_luabox_readonly(L);
	lua_setfield(L, base, "env");

	lua_pop(L, 1);                          /* the real globals */
	rb_luabox_readonly(L);
	b->base_ref = luaL_ref(L, LUA_REGISTRYINDEX);

	/* Nothing may reach the real globals: empty them. */
	lua_pushglobaltable(L);
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		lua_pop(L, 1);
		lua_pushvalue(L, -1);
		lua_pushnil(L);
		lua_rawset(L, -4);
	}
	lua_pop(L, 1);
	lua_pushnil(L);
	lua_setfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
	lua_pushnil(L);
	lua_setfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
}

struct rb_luabox *rb_luabox_new(size_t mem_cap)
{
	struct rb_luabox *b = rb_xcalloc(1, sizeof(*b));
	b->cap = mem_cap ? mem_cap : RB_LUA_MEM_DEFAULT;
	/* Building the base needs some room even under a tiny cap. */
	size_t cap = b->cap;
	b->cap = cap > 4 * 1024 * 1024 ? cap : 4 * 1024 * 1024;
	b->L = lua_newstate(box_alloc, b);
	if (!b->L) {
		free(b);
		return NULL;
	}
	*(struct rb_luabox **)lua_getextraspace(b->L) = b;
	lua_setwarnf(b->L, NULL, NULL);
	build_base(b);
	lua_newtable(b->L);
	b->cache_ref = luaL_ref(b->L, LUA_REGISTRYINDEX);
	lua_newtable(b->L);
	b->chunk_ref = luaL_ref(b->L, LUA_REGISTRYINDEX);
	lua_gc(b->L, LUA_GCCOLLECT);
	b->cap = cap > b->used ? cap : b->used + 1024 * 1024;
	b->base = b->used;
	return b;
}

void rb_luabox_rebase(struct rb_luabox *b)
{
	lua_gc(b->L, LUA_GCCOLLECT);
	b->cap += b->used > b->base ? b->used - b->base : 0;
	b->base = b->used;
}

void rb_luabox_free(struct rb_luabox *b)
{
	if (!b)
		return;
	lua_close(b->L);
	free(b);
}

lua_State *rb_luabox_state(struct rb_luabox *b)
{
	return b->L;
}

static int scope_newindex(lua_State *L)
{
	const char *k = lua_tostring(L, 2);
	return luaL_error(L, "assignment to undeclared global '%s' (use 'local')",
			  k ? k : "?");
}

/*
 * The scope is an empty table: every write to it goes through __newindex and
 * fails.  Reads go to a hidden table of fields (params, vars, _G ...), then
 * to the read-only base.
 */
void rb_luabox_push_scope(struct rb_luabox *b)
{
	lua_State *L = b->L;
	lua_newtable(L);                        /* the scope */
	lua_createtable(L, 0, 3);               /* its metatable */
	lua_createtable(L, 0, 8);               /* the fields */
	lua_createtable(L, 0, 1);
	lua_rawgeti(L, LUA_REGISTRYINDEX, b->base_ref);
	lua_setfield(L, -2, "__index");
	lua_setmetatable(L, -2);
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "_G");
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, scope_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);
}

void rb_luabox_set(lua_State *L, int scope, const char *name)
{
	scope = lua_absindex(L, scope);
	lua_getmetatable(L, scope);
	lua_getfield(L, -1, "__index");
	lua_rotate(L, -3, -1);                  /* the value to the top */
	lua_setfield(L, -2, name);
	lua_pop(L, 2);
}

/*
 * The engine's writes into the state.  Each allocates (the value, a table, a
 * key), so each runs protected: reaching the memory limit there is an error
 * the engine reports, never a panic, and never a value that silently stays
 * what it was.
 */
enum store_kind { STORE_VALUE, STORE_VIEW, STORE_TABLE };

struct store {
	enum store_kind kind;
	const char *name;
	const json_t *v;        /* STORE_VALUE, STORE_VIEW: the value, or NULL for nil */
	int in_scope;           /* the target (argument 2) is a scope: its fields table */
	int ref;                /* STORE_TABLE: the new table's registry ref */
	const char *const *names; /* STORE_VALUE: or the same value under each of these, */
	size_t nnames;          /* so many */
};

static int store_protected(lua_State *L)
{
	struct store *s = lua_touserdata(L, 1);
	if (s->in_scope) {                      /* the scope's hidden fields */
		lua_getmetatable(L, 2);
		lua_getfield(L, -1, "__index");
		lua_replace(L, 2);
	}
	lua_settop(L, 2);
	if (s->kind == STORE_TABLE) {
		lua_newtable(L);
		lua_pushvalue(L, -1);
		s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
		rb_luabox_readonly(L);
	} else if (s->v) {
		push_json(L, s->v);
		if (s->kind == STORE_VIEW)
			rb_luabox_readonly(L);
	} else {
		lua_pushnil(L);
	}
	for (size_t k = 0; k < s->nnames; k++) {
		lua_pushvalue(L, -1);
		lua_setfield(L, 2, s->names[k]);
	}
	if (!s->nnames)
		lua_setfield(L, 2, s->name);
	return 0;
}

/* target[name] = what s says, target the value at idx; -1 at the memory limit. */
static int store(struct rb_luabox *b, int idx, struct store *s)
{
	lua_State *L = b->L;
	idx = lua_absindex(L, idx);
	if (!lua_checkstack(L, 4))
		return -1;
	lua_pushcfunction(L, store_protected);
	lua_pushlightuserdata(L, s);
	lua_pushvalue(L, idx);
	if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
		lua_pop(L, 1);
		return -1;
	}
	return 0;
}

int rb_luabox_set_json(struct rb_luabox *b, int scope, const char *name, const json_t *v,
		       int view)
{
	struct store s = {view ? STORE_VIEW : STORE_VALUE, name, v, 1, LUA_NOREF, NULL, 0};
	return store(b, scope, &s);
}

int rb_luabox_set_table(struct rb_luabox *b, int scope, const char *name, int *ref)
{
	struct store s = {STORE_TABLE, name, NULL, 1, LUA_NOREF, NULL, 0};
	if (store(b, scope, &s) < 0)
		return -1;
	*ref = s.ref;
	return 0;
}

int rb_luabox_ref_set_json(struct rb_luabox *b, int ref, const char *name, const json_t *v,
			   int spare)
{
	struct store s = {STORE_VALUE, name, v, 0, LUA_NOREF, NULL, 0};
	lua_rawgeti(b->L, LUA_REGISTRYINDEX, ref);
	if (spare) {
		/* What freeing can give back first: the failed write's garbage. */
		lua_gc(b->L, LUA_GCCOLLECT);
		b->spare = RB_LUA_MEM_SPARE;
	}
	int r = store(b, -1, &s);
	b->spare = 0;
	lua_pop(b->L, 1);
	return r;
}

int rb_luabox_ref_set_json_all(struct rb_luabox *b, int ref, const char *const *names,
			       size_t n, const json_t *v)
{
	struct store s = {STORE_VALUE, NULL, v, 0, LUA_NOREF, names, n};
	if (!n)
		return 0;
	lua_rawgeti(b->L, LUA_REGISTRYINDEX, ref);
	int r = store(b, -1, &s);
	lua_pop(b->L, 1);
	return r;
}

size_t rb_luabox_mem_mib(const struct rb_luabox *b)
{
	return b->cap / (1024 * 1024);
}

/* "name:LINE: message" -> message, *line = LINE. */
static char *strip_chunk(const char *msg, const char *chunk, int *line)
{
	size_t cl = strlen(chunk);
	*line = 0;
	if (!strncmp(msg, chunk, cl) && msg[cl] == ':') {
		char *end;
		long l = strtol(msg + cl + 1, &end, 10);
		if (end != msg + cl + 1 && *end == ':') {
			*line = (int)l;
			msg = end + 1;
			while (*msg == ' ')
				msg++;
		}
	}
	return rb_xstrdup(msg);
}

struct compile_args {
	const char *code;
	size_t len;
	int is_expr;
};

/*
 * Runs protected, so that running out of memory while compiling is an error
 * and not a panic.  Code is cached by its text: the same few expressions
 * (params.env, vars.prefix ...) come back in every step, and the chunks the
 * loader checked run in the state it hands over (rb_runbook_take_box).  A
 * full cache starts again empty.
 */
static int do_compile(lua_State *L)
{
	const struct compile_args *a = lua_touserdata(L, 1);
	struct rb_luabox *b = box_of(L);
	int ref = a->is_expr ? b->cache_ref : b->chunk_ref;
	size_t *n = a->is_expr ? &b->cached : &b->chunks;
	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
	lua_pushlstring(L, a->code, a->len);
	if (lua_rawget(L, -2) == LUA_TFUNCTION)
		return 1;
	lua_pop(L, 1);
	if (!a->is_expr) {
		if (luaL_loadbufferx(L, a->code, a->len, "=lua", "t") != LUA_OK)
			return lua_error(L);
	} else {
		/* "return " on the same line keeps Lua's line numbers ours. */
		luaL_Buffer buf;
		luaL_buffinit(L, &buf);
		luaL_addstring(&buf, "return ");
		luaL_addlstring(&buf, a->code, a->len);
		luaL_pushresult(&buf);
		size_t l2;
		const char *s = lua_tolstring(L, -1, &l2);
		if (luaL_loadbufferx(L, s, l2, "=expr", "t") != LUA_OK)
			return lua_error(L);
		lua_remove(L, -2);
	}
	if (++*n > (a->is_expr ? CACHE_MAX : CHUNK_CACHE_MAX)) {
		lua_newtable(L);
		lua_rawseti(L, LUA_REGISTRYINDEX, ref);
		*n = 0;
	} else {
		lua_pushlstring(L, a->code, a->len);
		lua_pushvalue(L, -2);
		lua_rawset(L, -4);
	}
	return 1;
}

/* Push the function for code, or return -1 with *err and *line. */
static int compile(struct rb_luabox *b, const char *code, size_t len, int is_expr,
		   char **err, int *line)
{
	lua_State *L = b->L;
	struct compile_args a = {code, len, is_expr};
	if (!lua_checkstack(L, 8)) {
		*err = rb_xstrdup("Lua stack exhausted");
		*line = 0;
		return -1;
	}
	lua_pushcfunction(L, do_compile);
	lua_pushlightuserdata(L, &a);
	int st = lua_pcall(L, 1, 1, 0);
	if (st == LUA_OK)
		return 0;
	const char *m = lua_tostring(L, -1);
	*err = strip_chunk(m ? m : "syntax error", is_expr ? "expr" : "lua", line);
	lua_pop(L, 1);
	if (st == LUA_ERRMEM) {
		free(*err);
		*err = rb_xasprintf("memory limit of %zu MiB exceeded", b->cap / (1024 * 1024));
		*line = 0;
	}
	return -1;
}

static int is_reserved(const char *s, size_t n)
{
	static const char *const words[] = {
		"and", "break", "do", "else", "elseif", "end", "false", "for", "function",
		"goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
		"true", "until", "while", NULL,
	};
	for (const char *const *w = words; *w; w++)
		if (strlen(*w) == n && !memcmp(*w, s, n))
			return 1;
	return 0;
}

/*
 * Whether code is a plain path such as "params.env" or "vars.a.b": names that
 * are not reserved words, joined by dots.  Such an expression is valid by
 * construction, and most expressions are like it, so checking it needs no
 * compiler.
 */
static int is_plain_path(const char *code, size_t len)
{
	size_t i = 0;
	while (i < len && (code[i] == ' ' || code[i] == '\t'))
		i++;
	while (len > i && (code[len - 1] == ' ' || code[len - 1] == '\t'))
		len--;
	if (i == len)
		return 0;
	for (;;) {
		size_t start = i;
		if (!(isalpha((unsigned char)code[i]) || code[i] == '_'))
			return 0;
		while (i < len && (isalnum((unsigned char)code[i]) || code[i] == '_'))
			i++;
		if (is_reserved(code + start, i - start))
			return 0;
		if (i == len)
			return 1;
		if (code[i] != '.' || i + 1 == len)
			return 0;
		i++;
	}
}

int rb_luabox_check(struct rb_luabox *b, const char *code, size_t len, int is_expr,
		    char **err, int *line)
{
	if (is_expr && is_plain_path(code, len))
		return 0;
	if (compile(b, code, len, is_expr, err, line) < 0)
		return -1;
	lua_pop(b->L, 1);
	return 0;
}

static char *error_text(lua_State *L, int st, struct rb_luabox *b, int is_expr, int *line)
{
	if (st == LUA_ERRMEM) {
		*line = 0;
		return rb_xasprintf("memory limit of %zu MiB exceeded",
				    b->cap / (1024 * 1024));
	}
	int t = lua_type(L, -1);
	if (t == LUA_TSTRING || t == LUA_TNUMBER)
		return strip_chunk(lua_tostring(L, -1), is_expr ? "expr" : "lua", line);
	*line = 0;
	return rb_xasprintf("(error object is a %s value)", lua_typename(L, t));
}

static void arm_deadline(struct rb_luabox *b, long ms)
{
	struct timespec now;
	b->next_poll = coarse_ms(&now) + RB_LUABOX_POLL_MS;
	clock_gettime(CLOCK_MONOTONIC, &b->deadline);
	b->deadline.tv_sec += ms / 1000;
	b->deadline.tv_nsec += (ms % 1000) * 1000000L;
	if (b->deadline.tv_nsec >= 1000000000L) {
		b->deadline.tv_sec++;
		b->deadline.tv_nsec -= 1000000000L;
	}
	b->has_deadline = 1;
	b->stop = NULL;
	b->limit_ms = ms;
	lua_sethook(b->L, count_hook, HOOK_MASK, HOOK_COUNT);
}

static void disarm_deadline(struct rb_luabox *b)
{
	lua_sethook(b->L, NULL, 0, 0);
	b->has_deadline = 0;
	b->stop = NULL;
}

int rb_luabox_eval(struct rb_luabox *b, int scope, const char *code, size_t len,
		   int is_expr, long ms, char **err, int *line)
{
	lua_State *L = b->L;
	scope = lua_absindex(L, scope);
	if (compile(b, code, len, is_expr, err, line) < 0)
		return -1;
	lua_pushvalue(L, scope);
	lua_setupvalue(L, -2, 1);
	arm_deadline(b, ms);
	int st = lua_pcall(L, 0, 1, 0);
	disarm_deadline(b);
	if (st == LUA_OK)
		return 0;
	*err = error_text(L, st, b, is_expr, line);
	lua_pop(L, 1);
	return -1;
}

/* --- Lua <-> JSON ----------------------------------------------------------- */

enum { JSON_MAX_DEPTH = 64 };

static json_t *table_json(lua_State *L, int idx, int depth, char **err);

static json_t *to_json(lua_State *L, int idx, int depth, char **err)
{
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		return json_null();
	case LUA_TBOOLEAN:
		return json_boolean(lua_toboolean(L, idx));
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			return json_integer((json_int_t)lua_tointeger(L, idx));
		if (!isfinite(lua_tonumber(L, idx))) {
			*err = rb_xstrdup("cannot convert NaN or infinity to JSON");
			return NULL;
		}
		return json_real(lua_tonumber(L, idx));
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		json_t *j = json_stringn(s, len);
		if (!j)
			*err = rb_xstrdup("string is not valid UTF-8");
		return j;
	}
	case LUA_TTABLE:
		break;
	default:
		*err = rb_xasprintf("cannot convert a %s to JSON", luaL_typename(L, idx));
		return NULL;
	}
	if (depth >= JSON_MAX_DEPTH) {
		*err = rb_xstrdup("table nested too deeply (or cyclic)");
		return NULL;
	}
	luaL_checkstack(L, 6, "json");
	push_target(L, idx);
	idx = lua_gettop(L);
	json_t *out = table_json(L, idx, depth, err);
	lua_pop(L, 1);
	return out;
}

static int cmp_key(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * o with its keys in byte order: a Lua table's traversal order changes from
 * one process to the next (its string hashes are seeded at random), and a plan,
 * a log or a golden file must read the same every time.
 */
static json_t *sorted_keys(json_t *o)
{
	size_t n = json_object_size(o), i = 0;
	if (n < 2)
		return o;
	const char **keys = rb_xmalloc(n * sizeof(*keys));
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
		keys[i++] = k;
	qsort(keys, n, sizeof(*keys), cmp_key);
	json_t *out = json_object();
	for (i = 0; i < n; i++)
		json_object_set(out, keys[i], json_object_get(o, keys[i]));
	free(keys);
	json_decref(o);
	return out;
}

static json_t *table_json(lua_State *L, int idx, int depth, char **err)
{
	/* A table whose keys are exactly 1..n is an array; {} is an empty array. */
	lua_Integer n = 0;
	int is_array = 1;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1)
			n++;
		else
			is_array = 0;
	}
	if (is_array && n > 0 && lua_rawlen(L, idx) != (lua_Unsigned)n)
		is_array = 0;
	json_t *out = is_array ? json_array() : json_object();
	if (is_array) {
		for (lua_Integer i = 1; i <= n; i++) {
			lua_rawgeti(L, idx, i);
			json_t *v = to_json(L, -1, depth + 1, err);
			lua_pop(L, 1);
			if (!v)
				goto fail;
			json_array_append_new(out, v);
		}
		return out;
	}
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		int kt = lua_type(L, -2);
		if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
			*err = rb_xasprintf("cannot convert a table with %s keys to JSON",
					    lua_typename(L, kt));
			lua_pop(L, 2);
			goto fail;
		}
		lua_pushvalue(L, -2);
		const char *k = lua_tostring(L, -1);    /* converts the copy only */
		json_t *v = to_json(L, -2, depth + 1, err);
		if (!v) {
			lua_pop(L, 3);
			goto fail;
		}
		json_object_set_new(out, k, v);
		lua_pop(L, 2);
	}
	return sorted_keys(out);
fail:
	json_decref(out);
	return NULL;
}

/*
 * The public conversions run protected: converting touches Lua (allocation,
 * the stack) and an error outside a protected call would abort the process.
 */
struct conversion {
	const json_t *in;
	json_t *out;
	char *err;
};

static int to_json_protected(lua_State *L)
{
	struct conversion *c = lua_touserdata(L, 1);
	c->out = to_json(L, 2, 0, &c->err);        /* the value is the argument */
	return 0;
}

json_t *rb_lua_to_json(lua_State *L, int idx, char **err)
{
	struct conversion c = {0};
	idx = lua_absindex(L, idx);
	if (!lua_checkstack(L, 4)) {
		*err = rb_xstrdup("Lua stack exhausted");
		return NULL;
	}
	lua_pushcfunction(L, to_json_protected);
	lua_pushlightuserdata(L, &c);
	lua_pushvalue(L, idx);
	int rc = lua_pcall(L, 2, 0, 0);
	if (rc != LUA_OK) {
		/* The memory limit, or what a view's metamethods ran into (the time limit). */
		const char *m = lua_tostring(L, -1);
		*err = rc == LUA_ERRMEM || !m ? rb_xstrdup("out of memory converting a value to JSON")
		       : rb_xasprintf("converting a value to JSON: %s", m);
		lua_pop(L, 1);
		json_decref(c.out);
		free(c.err);
		return NULL;
	}
	if (!c.out)
		*err = c.err;
	return c.out;
}

static int push_json_protected(lua_State *L)
{
	const struct conversion *c = lua_touserdata(L, 1);
	push_json(L, c->in);
	return 1;
}

int rb_lua_push_json(lua_State *L, const json_t *v)
{
	struct conversion c = {.in = v};
	if (!lua_checkstack(L, 4))
		return -1;
	lua_pushcfunction(L, push_json_protected);
	lua_pushlightuserdata(L, &c);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		lua_pop(L, 1);
		return -1;
	}
	return 0;
}

static int tostring_protected(lua_State *L)
{
	luaL_tolstring(L, 1, NULL);
	return 1;
}

char *rb_luabox_tostring(struct rb_luabox *b, int idx, size_t *len, char **err)
{
	lua_State *L = b->L;
	idx = lua_absindex(L, idx);
	if (!lua_checkstack(L, 4)) {
		*err = rb_xstrdup("Lua stack exhausted");
		return NULL;
	}
	lua_pushcfunction(L, tostring_protected);
	lua_pushvalue(L, idx);
	/* __tostring is user code: it gets the usual deadline. */
	arm_deadline(b, RB_EXPR_MS_DEFAULT);
	int st = lua_pcall(L, 1, 1, 0);
	disarm_deadline(b);
	if (st != LUA_OK) {
		int line;
		*err = error_text(L, st, b, 1, &line);
		lua_pop(L, 1);
		return NULL;
	}
	const char *s = lua_tolstring(L, -1, len);
	char *out = rb_xstrndup(s, *len);
	lua_pop(L, 1);
	return out;
}

static void push_json(lua_State *L, const json_t *v)
{
	luaL_checkstack(L, 4, "json");
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *x;
		lua_createtable(L, 0, (int)json_object_size(v));
		json_object_foreach((json_t *)v, k, x) {
			push_json(L, x);
			lua_setfield(L, -2, k);
		}
		break;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *x;
		lua_createtable(L, (int)json_array_size(v), 0);
		json_array_foreach((json_t *)v, i, x) {
			push_json(L, x);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		break;
	}
	case JSON_STRING:
		lua_pushlstring(L, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		lua_pushinteger(L, (lua_Integer)json_integer_value(v));
		break;
	case JSON_REAL:
		lua_pushnumber(L, json_real_value(v));
		break;
	case JSON_TRUE:
		lua_pushboolean(L, 1);
		break;
	case JSON_FALSE:
		lua_pushboolean(L, 0);
		break;
	default:
		lua_pushnil(L);
		break;
	}
}

static double now_shift;

void rb_now_shift(double seconds)
{
	now_shift = seconds;
}

static double now(void)
{
	const char *s = getenv("RUNBOOK_NOW");
	if (s && *s) {
		char *end;
		errno = 0;
		double v = strtod(s, &end);
		if (!errno && *end == '\0')
			return v;
		struct tm tm;
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
		if (end && (*end == 'Z' || *end == '\0'))
			return (double)timegm(&tm);
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double rb_now(void)
{
	return now() + now_shift;
}
