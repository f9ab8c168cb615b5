/*
 * The expression sandbox's codecs: hash.sha256, hash.hmac_sha256, hash.hex and
 * base64.encode/decode/urlencode/urldecode, by OpenSSL (never written out in a
 * runbook's Lua: a JWT for a check is base64.urlencode(hash.hmac_sha256(k, m))).
 * Strings in, strings out; a digest is its raw bytes.
 */
#include "luacodec.h"

#include <lauxlib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

static int h_sha256(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!EVP_Digest(s, len, md, &n, EVP_sha256(), NULL))
		return luaL_error(L, "hash.sha256: OpenSSL failed");
	lua_pushlstring(L, (const char *)md, n);
	return 1;
}

static int h_hmac_sha256(lua_State *L)
{
	size_t klen, len;
	const char *k = luaL_checklstring(L, 1, &klen);
	const char *s = luaL_checklstring(L, 2, &len);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!HMAC(EVP_sha256(), k, (int)klen, (const unsigned char *)s, len, md, &n))
		return luaL_error(L, "hash.hmac_sha256: OpenSSL failed");
	lua_pushlstring(L, (const char *)md, n);
	return 1;
}

static int h_hex(lua_State *L)
{
	static const char digits[] = "0123456789abcdef";
	size_t len;
	const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, 2 * len);
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[s[i] >> 4];
		out[2 * i + 1] = digits[s[i] & 15];
	}
	luaL_pushresultsize(&b, 2 * len);
	return 1;
}

/* base64 (RFC 4648 section 4), or with url the URL-safe alphabet without padding (section 5). */
static int encode(lua_State *L, int url)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	if (len > (size_t)INT32_MAX / 4 * 3 - 3)
		return luaL_error(L, "base64: the text is too long");
	luaL_Buffer b;
	size_t cap = 4 * ((len + 2) / 3) + 1;
	char *out = luaL_buffinitsize(L, &b, cap);
	int n = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len);
	if (url) {
		while (n > 0 && out[n - 1] == '=')
			n--;
		for (int i = 0; i < n; i++)
			out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	}
	luaL_pushresultsize(&b, (size_t)n);
	return 1;
}

static int b64_char(char c, int url)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (url ? c == '-' || c == '_' : c == '+' || c == '/');
}

/* Strict: the alphabet only, '=' only as the padding at the end; no blanks. */
static int decode(lua_State *L, int url)
{
	const char *name = url ? "base64.urldecode" : "base64.decode";
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	if (len > (size_t)INT32_MAX - 4)
		return luaL_error(L, "%s: the text is too long", name);
	size_t body = len;
	while (body > 0 && len - body < 2 && s[body - 1] == '=')
		body--;
	for (size_t i = 0; i < body; i++)
		if (!b64_char(s[i], url)) {
			if (b64_char(s[i], !url) && s[i] != '=')
				return luaL_error(L, "%s: '%c' at byte %d is %s", name, s[i], (int)i + 1,
						  url ? "not in the URL-safe alphabet"
						  : "the URL-safe alphabet's (base64.urldecode)");
			return luaL_error(L, "%s: byte %d is not base64", name, (int)i + 1);
		}
	if ((len - body && len % 4) || body % 4 == 1 || (!url && len % 4))
		return luaL_error(L, "%s: %d characters is not a whole number of groups of 4", name,
				  (int)len);
	/* The standard alphabet, padded to whole quanta, for OpenSSL's decoder. */
	char *t = lua_newuserdatauv(L, body + 4, 0);
	size_t n = 0;
	for (size_t i = 0; i < body; i++)
		t[n++] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	size_t pad = 0;
	while (n % 4) {
		t[n++] = '=';
		pad++;
	}
	luaL_Buffer b;
	unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, n / 4 * 3 + 1);
	int m = n ? EVP_DecodeBlock(out, (const unsigned char *)t, (int)n) : 0;
	if (m < 0)
		return luaL_error(L, "%s: not base64", name);
	/* EVP_DecodeBlock counts the padding's bytes as zeros: drop them. */
	luaL_pushresultsize(&b, (size_t)m - pad);
	lua_remove(L, -2);              /* the padded copy's userdata */
	return 1;
}

static int b_encode(lua_State *L) { return encode(L, 0); }
static int b_decode(lua_State *L) { return decode(L, 0); }
static int b_urlencode(lua_State *L) { return encode(L, 1); }
static int b_urldecode(lua_State *L) { return decode(L, 1); }

static const luaL_Reg hash_lib[] = {
	{"sha256", h_sha256},
	{"hmac_sha256", h_hmac_sha256},
	{"hex", h_hex},
	{NULL, NULL},
};

static const luaL_Reg base64_lib[] = {
	{"encode", b_encode},
	{"decode", b_decode},
	{"urlencode", b_urlencode},
	{"urldecode", b_urldecode},
	{NULL, NULL},
};

void rb_luacodec_open(lua_State *L, int base, void (*readonly)(lua_State *L))
{
	luaL_newlib(L, hash_lib);
	readonly(L);
	lua_setfield(L, base, "hash");
	luaL_newlib(L, base64_lib);
	readonly(L);
	lua_setfield(L, base, "base64");
}
