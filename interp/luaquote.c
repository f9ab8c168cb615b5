/*
 * The sandbox's quoting helpers: shell.quote and shell.raw for commands,
 * sql.ident and sql.literal for SQL text.  A ${{ }} value reaches a run:
 * command as data already (render.c); these are for the cases that build
 * shell or SQL text on purpose.  They quote, and never run anything.
 */
#include "luaquote.h"

#include <lauxlib.h>
#include <string.h>

#define RAW_META "rb.shell.raw"

/* The string argument 1; text with a NUL byte cannot be quoted for a shell or SQL. */
static const char *check_text(lua_State *L, const char *fn, size_t *len)
{
	const char *s = luaL_tolstring(L, 1, len);
	if (memchr(s, 0, *len))
		luaL_error(L, "%s: the text holds a NUL byte", fn);
	return s;
}

/* s between two q, each q inside doubled (SQL) or closed and escaped (sh). */
static void quote_with(lua_State *L, const char *s, size_t len, char q, const char *inner)
{
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	luaL_addchar(&b, q);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == q)
			luaL_addstring(&b, inner);
		else
			luaL_addchar(&b, s[i]);
	}
	luaL_addchar(&b, q);
	luaL_pushresult(&b);
}

/* One word of sh that is s, whatever it holds: as it is when that is safe (shlex.quote). */
static void sh_word(lua_State *L, const char *s, size_t len)
{
	size_t safe = len ? strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "0123456789_@%+=:,./-") : 1;
	if (safe == len)
		lua_pushlstring(L, s, len);
	else
		quote_with(L, s, len, '\'', "'\\''");
}

/* shell.quote(s): s as one word of sh. */
static int sh_quote(lua_State *L)
{
	size_t len;
	const char *s = check_text(L, "shell.quote", &len);
	sh_word(L, s, len);
	return 1;
}

/* shell.join(list): its items as words of sh, each quoted, with blanks between. */
static int sh_join(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_Integer n = luaL_len(L, 1);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_geti(L, 1, i);
		size_t len;
		const char *s = luaL_tolstring(L, -1, &len);
		if (memchr(s, 0, len))
			return luaL_error(L, "shell.join: item %d holds a NUL byte", (int)i);
		sh_word(L, s, len);
		lua_remove(L, -2);      /* the tostring'd copy */
		lua_remove(L, -2);      /* the item */
		if (i > 1)
			luaL_addchar(&b, ' ');
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	return 1;
}

/* shell.raw(s): s spliced into a run: command as shell text (trusted: validate names it). */
static int sh_raw(lua_State *L)
{
	size_t len;
	const char *s = check_text(L, "shell.raw", &len);
	lua_createtable(L, 1, 0);
	lua_pushlstring(L, s, len);
	lua_rawseti(L, -2, 1);
	luaL_setmetatable(L, RAW_META);
	return 1;
}

static int raw_tostring(lua_State *L)
{
	lua_rawgeti(L, 1, 1);
	return 1;
}

/* sql.ident(s): a quoted SQL identifier, as libpq's PQescapeIdentifier makes it. */
static int sql_ident(lua_State *L)
{
	size_t len;
	const char *s = check_text(L, "sql.ident", &len);
	quote_with(L, s, len, '"', "\"\"");
	return 1;
}

/*
 * sql.literal(s): a quoted SQL string, as libpq's PQescapeLiteral makes it: quotes
 * doubled, and with a backslash in s, E'' with backslashes doubled, which means s
 * whatever standard_conforming_strings says.
 */
static int sql_literal(lua_State *L)
{
	size_t len;
	const char *s = check_text(L, "sql.literal", &len);
	if (!memchr(s, '\\', len)) {
		quote_with(L, s, len, '\'', "''");
		return 1;
	}
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	luaL_addstring(&b, " E'");
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\'' || s[i] == '\\')
			luaL_addchar(&b, s[i]);
		luaL_addchar(&b, s[i]);
	}
	luaL_addchar(&b, '\'');
	luaL_pushresult(&b);
	return 1;
}

static const luaL_Reg shell_lib[] = {
	{"join", sh_join},
	{"quote", sh_quote},
	{"raw", sh_raw},
	{NULL, NULL},
};

static const luaL_Reg sql_lib[] = {
	{"ident", sql_ident},
	{"literal", sql_literal},
	{NULL, NULL},
};

void rb_luaquote_open(lua_State *L, int base, void (*readonly)(lua_State *))
{
	base = lua_absindex(L, base);
	luaL_newmetatable(L, RAW_META);
	lua_pushcfunction(L, raw_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushliteral(L, "shell.raw");
	lua_setfield(L, -2, "__name");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
	luaL_newlib(L, shell_lib);
	readonly(L);
	lua_setfield(L, base, "shell");
	luaL_newlib(L, sql_lib);
	readonly(L);
	lua_setfield(L, base, "sql");
}

const char *rb_luaquote_raw(lua_State *L, int idx, size_t *len)
{
	idx = lua_absindex(L, idx);
	if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
		return NULL;
	luaL_getmetatable(L, RAW_META);
	int same = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	if (!same)
		return NULL;
	lua_rawgeti(L, idx, 1);
	const char *s = lua_tolstring(L, -1, len);
	lua_pop(L, 1);  /* the table keeps the string alive */
	return s;
}
