/*
 * libFuzzer target: the expression sandbox's codecs (luacodec.h) on any bytes.
 * base64.decode and base64.urldecode refuse with an error or give bytes that
 * encode back to text as long as the input (less padding, for the URL form); encode then decode
 * gives the bytes back; the digests have their sizes.  Nothing is read past.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "luacodec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void nothing(lua_State *L)
{
	(void)L;
}

/* fn(s) in a protected call: its string result (pushed), or nothing on an error. */
static int call(lua_State *L, const char *lib, const char *fn, const char *s, size_t len)
{
	lua_getglobal(L, lib);
	lua_getfield(L, -1, fn);
	lua_remove(L, -2);
	lua_pushlstring(L, s, len);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		if (!lua_isstring(L, -1))
			abort();
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_isstring(L, -1))
		abort();
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static lua_State *L;
	if (!L) {
		L = luaL_newstate();
		lua_pushglobaltable(L);
		rb_luacodec_open(L, lua_gettop(L), nothing);
		lua_pop(L, 1);
	}
	const char *s = (const char *)data;
	static const char *const enc[] = {"encode", "urlencode"}, *const dec[] = {"decode", "urldecode"};
	for (int url = 0; url < 2; url++) {
		/* bytes -> text -> the same bytes */
		if (!call(L, "base64", enc[url], s, size))
			abort();
		size_t tl;
		const char *t = lua_tolstring(L, -1, &tl);
		if (!call(L, "base64", dec[url], t, tl))
			abort();
		size_t bl;
		const char *b = lua_tolstring(L, -1, &bl);
		if (bl != size || memcmp(b, s, size))
			abort();
		lua_pop(L, 2);
		/* text -> bytes, or an error: what decodes encodes back to the text */
		if (call(L, "base64", dec[url], s, size)) {
			const char *d = lua_tolstring(L, -1, &bl);
			if (!call(L, "base64", enc[url], d, bl))
				abort();
			/* the same length as the text (less its padding, in the URL form) */
			(void)lua_tolstring(L, -1, &tl);
			size_t want = size;
			while (url && want > 0 && s[want - 1] == '=')
				want--;
			if (tl != want)
				abort();
			lua_pop(L, 2);
		}
	}
	if (!call(L, "hash", "sha256", s, size) || lua_rawlen(L, -1) != 32)
		abort();
	lua_pop(L, 1);
	lua_getglobal(L, "hash");
	lua_getfield(L, -1, "hmac_sha256");
	lua_pushlstring(L, s, size / 2);
	lua_pushlstring(L, s + size / 2, size - size / 2);
	if (lua_pcall(L, 2, 1, 0) != LUA_OK || lua_rawlen(L, -1) != 32)
		abort();
	lua_pop(L, 2);
	return 0;
}
