/*
 * Lua 5.4 pattern matching (string.find, match, gmatch, gsub) that counts its
 * steps and calls a tick function every RB_LPATTERN_TICK of them, so that a
 * deadline can interrupt it: Lua's count hook never fires inside C functions.
 */
/* Matcher structure follows Lua 5.4.4 lstrlib.c, Copyright (C) 1994-2022 Lua.org, PUC-Rio (MIT licence). */
#include "lpattern.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#define LP_MAXCAPTURES	32	/* LUA_MAXCAPTURES */
#define LP_MAXCCALLS	200	/* recursion limit of match() */
#define LP_ESC		'%'
#define LP_SPECIALS	"^$*+?.([%-"
#define LP_CHUNK	256	/* bytes compared per counted step */

#define CAP_UNFINISHED	(-1)
#define CAP_POSITION	(-2)

#define uchar(c)	((unsigned char)(c))

_Static_assert(sizeof(void *) == sizeof(rb_lpattern_tick_fn),
	       "tick function must fit in a light userdata");

struct match_state {
	const char *src_init;	/* start of subject */
	const char *src_end;	/* end ('\0') of subject */
	const char *p_end;	/* end ('\0') of pattern */
	lua_State *L;
	rb_lpattern_tick_fn tick;
	long budget;		/* steps left before the next tick */
	int matchdepth;		/* control for recursive depth */
	unsigned char level;	/* total number of captures (finished or not) */
	struct {
		const char *init;
		ptrdiff_t len;
	} capture[LP_MAXCAPTURES];
};

struct gmatch_state {
	const char *src;	/* current position */
	const char *p;		/* pattern */
	const char *lastmatch;	/* end of last match */
	struct match_state ms;
};

static const char *match(struct match_state *ms, const char *s, const char *p);

static rb_lpattern_tick_fn upvalue_tick(lua_State *L)
{
	void *ud = lua_touserdata(L, lua_upvalueindex(1));
	rb_lpattern_tick_fn fn;

	memcpy(&fn, &ud, sizeof(fn));
	return fn;
}

static void step(struct match_state *ms)
{
	if (--ms->budget <= 0) {
		ms->budget = RB_LPATTERN_TICK;
		if (ms->tick)
			ms->tick(ms->L);
	}
}

/* memcmp(a, b, n) == 0, one step per LP_CHUNK bytes (at least one step). */
static int counted_memeq(struct match_state *ms, const char *a, const char *b, size_t n)
{
	step(ms);
	while (n > LP_CHUNK) {
		if (memcmp(a, b, LP_CHUNK) != 0)
			return 0;
		a += LP_CHUNK;
		b += LP_CHUNK;
		n -= LP_CHUNK;
		step(ms);
	}
	return memcmp(a, b, n) == 0;
}

static int check_capture(struct match_state *ms, int l)
{
	l -= '1';
	if (l < 0 || l >= ms->level || ms->capture[l].len == CAP_UNFINISHED)
		return luaL_error(ms->L, "invalid capture index %%%d", l + 1);
	return l;
}

static int capture_to_close(struct match_state *ms)
{
	int level = ms->level;

	for (level--; level >= 0; level--)
		if (ms->capture[level].len == CAP_UNFINISHED)
			return level;
	return luaL_error(ms->L, "invalid pattern capture");
}

static const char *class_end(struct match_state *ms, const char *p)
{
	switch (*p++) {
	case LP_ESC:
		if (p == ms->p_end)
			luaL_error(ms->L, "malformed pattern (ends with '%%')");
		return p + 1;
	case '[':
		if (*p == '^')
			p++;
		do {	/* look for a ']' */
			if (p == ms->p_end)
				luaL_error(ms->L, "malformed pattern (missing ']')");
			if (*(p++) == LP_ESC && p < ms->p_end)
				p++;	/* skip escapes (e.g. '%]') */
		} while (*p != ']');
		return p + 1;
	default:
		return p;
	}
}

static int match_class(int c, int cl)
{
	int res;

	switch (tolower(cl)) {
	case 'a': res = isalpha(c); break;
	case 'c': res = iscntrl(c); break;
	case 'd': res = isdigit(c); break;
	case 'g': res = isgraph(c); break;
	case 'l': res = islower(c); break;
	case 'p': res = ispunct(c); break;
	case 's': res = isspace(c); break;
	case 'u': res = isupper(c); break;
	case 'w': res = isalnum(c); break;
	case 'x': res = isxdigit(c); break;
	case 'z': res = (c == 0); break;	/* deprecated, still in 5.4 */
	default: return cl == c;
	}
	return islower(cl) ? res : !res;
}

/* p points at the '[' of a set, ec at its closing ']'. */
static int match_bracket_class(int c, const char *p, const char *ec)
{
	int sig = 1;

	if (*(p + 1) == '^') {
		sig = 0;
		p++;	/* skip the '^' */
	}
	while (++p < ec) {
		if (*p == LP_ESC) {
			p++;
			if (match_class(c, uchar(*p)))
				return sig;
		} else if (*(p + 1) == '-' && p + 2 < ec) {
			p += 2;
			if (uchar(*(p - 2)) <= c && c <= uchar(*p))
				return sig;
		} else if (uchar(*p) == c) {
			return sig;
		}
	}
	return !sig;
}

static int single_match(struct match_state *ms, const char *s, const char *p, const char *ep)
{
	int c;

	if (s >= ms->src_end)
		return 0;
	c = uchar(*s);
	switch (*p) {
	case '.':
		return 1;
	case LP_ESC:
		return match_class(c, uchar(*(p + 1)));
	case '[':
		return match_bracket_class(c, p, ep - 1);
	default:
		return uchar(*p) == c;
	}
}

static const char *match_balance(struct match_state *ms, const char *s, const char *p)
{
	int b, e, cont = 1;

	if (p >= ms->p_end - 1)
		luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
	if (*s != *p)
		return NULL;
	b = *p;
	e = *(p + 1);
	while (++s < ms->src_end) {
		step(ms);
		if (*s == e) {
			if (--cont == 0)
				return s + 1;
		} else if (*s == b) {
			cont++;
		}
	}
	return NULL;	/* string ends out of balance */
}

static const char *max_expand(struct match_state *ms, const char *s, const char *p, const char *ep)
{
	ptrdiff_t i = 0;	/* maximum expansion of the item */

	while (single_match(ms, s + i, p, ep)) {
		step(ms);
		i++;
	}
	/* try to match the rest with the maximum repetitions, then fewer */
	while (i >= 0) {
		const char *res;

		step(ms);
		res = match(ms, s + i, ep + 1);
		if (res)
			return res;
		i--;
	}
	return NULL;
}

static const char *min_expand(struct match_state *ms, const char *s, const char *p, const char *ep)
{
	for (;;) {
		const char *res;

		step(ms);
		res = match(ms, s, ep + 1);
		if (res)
			return res;
		if (!single_match(ms, s, p, ep))
			return NULL;
		s++;	/* try with one more repetition */
	}
}

static const char *start_capture(struct match_state *ms, const char *s, const char *p, int what)
{
	const char *res;
	int level = ms->level;

	if (level >= LP_MAXCAPTURES)
		luaL_error(ms->L, "too many captures");
	ms->capture[level].init = s;
	ms->capture[level].len = what;
	ms->level = level + 1;
	res = match(ms, s, p);
	if (!res)
		ms->level--;	/* undo capture */
	return res;
}

static const char *end_capture(struct match_state *ms, const char *s, const char *p)
{
	int l = capture_to_close(ms);
	const char *res;

	ms->capture[l].len = s - ms->capture[l].init;	/* close capture */
	res = match(ms, s, p);
	if (!res)
		ms->capture[l].len = CAP_UNFINISHED;	/* undo capture */
	return res;
}

static const char *match_capture(struct match_state *ms, const char *s, int l)
{
	size_t len;

	l = check_capture(ms, l);
	len = (size_t)ms->capture[l].len;
	if ((size_t)(ms->src_end - s) >= len &&
	    counted_memeq(ms, ms->capture[l].init, s, len))
		return s + len;
	return NULL;
}

static const char *match(struct match_state *ms, const char *s, const char *p)
{
	if (ms->matchdepth-- == 0)
		luaL_error(ms->L, "pattern too complex");
init:	/* goto instead of tail recursion */
	step(ms);
	if (p != ms->p_end) {
		switch (*p) {
		case '(':	/* start capture */
			if (*(p + 1) == ')')	/* position capture? */
				s = start_capture(ms, s, p + 2, CAP_POSITION);
			else
				s = start_capture(ms, s, p + 1, CAP_UNFINISHED);
			break;
		case ')':	/* end capture */
			s = end_capture(ms, s, p + 1);
			break;
		case '$':
			if (p + 1 != ms->p_end)	/* not the last char of the pattern? */
				goto dflt;
			s = (s == ms->src_end) ? s : NULL;
			break;
		case LP_ESC:
			switch (*(p + 1)) {
			case 'b':	/* balanced string */
				s = match_balance(ms, s, p + 2);
				if (s) {
					p += 4;
					goto init;
				}
				break;
			case 'f': {	/* frontier */
				const char *ep;
				char previous;

				p += 2;
				if (*p != '[')
					luaL_error(ms->L, "missing '[' after '%%f' in pattern");
				ep = class_end(ms, p);
				previous = (s == ms->src_init) ? '\0' : *(s - 1);
				if (!match_bracket_class(uchar(previous), p, ep - 1) &&
				    match_bracket_class(uchar(*s), p, ep - 1)) {
					p = ep;
					goto init;
				}
				s = NULL;
				break;
			}
			case '0': case '1': case '2': case '3': case '4':
			case '5': case '6': case '7': case '8': case '9':
				/* back-reference %0-%9 */
				s = match_capture(ms, s, uchar(*(p + 1)));
				if (s) {
					p += 2;
					goto init;
				}
				break;
			default:
				goto dflt;
			}
			break;
		default:
dflt: {		/* pattern class plus optional suffix */
			const char *ep = class_end(ms, p);	/* optional suffix */

			if (!single_match(ms, s, p, ep)) {
				if (*ep == '*' || *ep == '?' || *ep == '-') {
					p = ep + 1;	/* accept empty */
					goto init;
				}
				s = NULL;	/* '+' or no suffix: fail */
				break;
			}
			switch (*ep) {	/* matched once; handle the suffix */
			case '?': {
				const char *res = match(ms, s + 1, ep + 1);

				if (res) {
					s = res;
				} else {
					p = ep + 1;
					goto init;
				}
				break;
			}
			case '+':	/* 1 match already done */
				s++;
				/* fall through */
			case '*':
				s = max_expand(ms, s, p, ep);
				break;
			case '-':
				s = min_expand(ms, s, p, ep);
				break;
			default:	/* no suffix */
				s++;
				p = ep;
				goto init;
			}
			break;
		}
		}
	}
	ms->matchdepth++;
	return s;
}

/* Plain search of p in s, as lmemfind, counting steps per candidate and chunk. */
static const char *find_plain(struct match_state *ms, const char *s, size_t ls,
			      const char *p, size_t lp)
{
	const char *last;

	if (lp == 0)
		return s;	/* empty strings are everywhere */
	if (lp > ls)
		return NULL;
	last = s + (ls - lp);	/* last possible start */
	while (s <= last) {
		const char *c = memchr(s, *p, (size_t)(last - s) + 1);

		if (!c)
			return NULL;
		if (counted_memeq(ms, c + 1, p + 1, lp - 1))
			return c;
		s = c + 1;
	}
	return NULL;
}

static ptrdiff_t get_onecapture(struct match_state *ms, int i, const char *s,
				const char *e, const char **cap)
{
	ptrdiff_t capl;

	if (i >= ms->level) {
		if (i != 0)
			luaL_error(ms->L, "invalid capture index %%%d", i + 1);
		*cap = s;	/* no captures: the whole match */
		return e - s;
	}
	capl = ms->capture[i].len;
	*cap = ms->capture[i].init;
	if (capl == CAP_UNFINISHED)
		luaL_error(ms->L, "unfinished capture");
	else if (capl == CAP_POSITION)
		lua_pushinteger(ms->L, (ms->capture[i].init - ms->src_init) + 1);
	return capl;
}

static void push_onecapture(struct match_state *ms, int i, const char *s, const char *e)
{
	const char *cap;
	ptrdiff_t l = get_onecapture(ms, i, s, e, &cap);

	if (l != CAP_POSITION)
		lua_pushlstring(ms->L, cap, (size_t)l);
	/* else the position was already pushed */
}

static int push_captures(struct match_state *ms, const char *s, const char *e)
{
	int i;
	int nlevels = (ms->level == 0 && s) ? 1 : ms->level;

	luaL_checkstack(ms->L, nlevels, "too many captures");
	for (i = 0; i < nlevels; i++)
		push_onecapture(ms, i, s, e);
	return nlevels;
}

static int nospecials(const char *p, size_t l)
{
	size_t upto = 0;

	do {
		if (strpbrk(p + upto, LP_SPECIALS))
			return 0;
		upto += strlen(p + upto) + 1;	/* there may be more after a '\0' */
	} while (upto <= l);
	return 1;
}

static void prep_state(struct match_state *ms, lua_State *L, const char *s, size_t ls,
		       const char *p, size_t lp)
{
	ms->L = L;
	ms->tick = upvalue_tick(L);
	ms->budget = RB_LPATTERN_TICK;
	ms->matchdepth = LP_MAXCCALLS;
	ms->src_init = s;
	ms->src_end = s + ls;
	ms->p_end = p + lp;
	ms->level = 0;
}

/*
 * Unlike stock Lua, also restore matchdepth: an error (or a deadline) inside
 * a gmatch iterator leaves it decremented for the next call.
 */
static void reprep_state(struct match_state *ms)
{
	ms->level = 0;
	ms->matchdepth = LP_MAXCCALLS;
}

static size_t posrelat_i(lua_Integer pos, size_t len)
{
	if (pos > 0)
		return (size_t)pos;
	if (pos == 0)
		return 1;
	if (pos < -(lua_Integer)len)	/* inverted comparison */
		return 1;
	return len + (size_t)pos + 1;
}

static int str_find_aux(lua_State *L, int find)
{
	size_t ls, lp;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	size_t init = posrelat_i(luaL_optinteger(L, 3, 1), ls) - 1;
	struct match_state ms;

	if (init > ls) {	/* start after the end of the subject? */
		luaL_pushfail(L);
		return 1;
	}
	if (find && (lua_toboolean(L, 4) || nospecials(p, lp))) {
		const char *s2;

		prep_state(&ms, L, s, ls, p, lp);
		s2 = find_plain(&ms, s + init, ls - init, p, lp);
		if (s2) {
			lua_pushinteger(L, (s2 - s) + 1);
			lua_pushinteger(L, (lua_Integer)((size_t)(s2 - s) + lp));
			return 2;
		}
	} else {
		const char *s1 = s + init;
		int anchor = (*p == '^');

		if (anchor) {
			p++;
			lp--;
		}
		prep_state(&ms, L, s, ls, p, lp);
		do {
			const char *res;

			reprep_state(&ms);
			res = match(&ms, s1, p);
			if (res) {
				if (find) {
					lua_pushinteger(L, (s1 - s) + 1);
					lua_pushinteger(L, res - s);
					return push_captures(&ms, NULL, 0) + 2;
				}
				return push_captures(&ms, s1, res);
			}
		} while (s1++ < ms.src_end && !anchor);
	}
	luaL_pushfail(L);
	return 1;
}

static int str_find(lua_State *L)
{
	return str_find_aux(L, 1);
}

static int str_match(lua_State *L)
{
	return str_find_aux(L, 0);
}

static int gmatch_aux(lua_State *L)
{
	struct gmatch_state *gm = lua_touserdata(L, lua_upvalueindex(3));
	const char *src;

	gm->ms.L = L;
	for (src = gm->src; src <= gm->ms.src_end; src++) {
		const char *e;

		reprep_state(&gm->ms);
		e = match(&gm->ms, src, gm->p);
		if (e && e != gm->lastmatch) {
			gm->src = gm->lastmatch = e;
			return push_captures(&gm->ms, src, e);
		}
	}
	return 0;
}

static int str_gmatch(lua_State *L)
{
	size_t ls, lp;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	size_t init = posrelat_i(luaL_optinteger(L, 3, 1), ls) - 1;
	struct gmatch_state *gm;

	lua_settop(L, 2);	/* subject and pattern stay alive as upvalues */
	gm = lua_newuserdatauv(L, sizeof(*gm), 0);
	if (init > ls)
		init = ls + 1;	/* avoid overflow in 's + init' */
	prep_state(&gm->ms, L, s, ls, p, lp);
	gm->src = s + init;
	gm->p = p;
	gm->lastmatch = NULL;
	lua_pushcclosure(L, gmatch_aux, 3);
	return 1;
}

static void add_s(struct match_state *ms, luaL_Buffer *b, const char *s, const char *e)
{
	size_t l;
	lua_State *L = ms->L;
	const char *news = lua_tolstring(L, 3, &l);
	const char *p;

	while ((p = memchr(news, LP_ESC, l)) != NULL) {
		luaL_addlstring(b, news, (size_t)(p - news));
		p++;	/* skip ESC */
		if (*p == LP_ESC) {
			luaL_addchar(b, *p);
		} else if (*p == '0') {
			luaL_addlstring(b, s, (size_t)(e - s));
		} else if (isdigit(uchar(*p))) {
			const char *cap;
			ptrdiff_t resl = get_onecapture(ms, *p - '1', s, e, &cap);

			if (resl == CAP_POSITION)
				luaL_addvalue(b);
			else
				luaL_addlstring(b, cap, (size_t)resl);
		} else {
			luaL_error(L, "invalid use of '%c' in replacement string", LP_ESC);
		}
		l -= (size_t)(p + 1 - news);
		news = p + 1;
	}
	luaL_addlstring(b, news, l);
}

/* Adds the replacement of match s..e to b; returns whether it changed anything. */
static int add_value(struct match_state *ms, luaL_Buffer *b, const char *s,
		     const char *e, int tr)
{
	lua_State *L = ms->L;

	switch (tr) {
	case LUA_TFUNCTION: {
		int n;

		lua_pushvalue(L, 3);
		n = push_captures(ms, s, e);
		lua_call(L, n, 1);
		break;
	}
	case LUA_TTABLE:
		push_onecapture(ms, 0, s, e);	/* the first capture is the key */
		lua_gettable(L, 3);
		break;
	default:	/* LUA_TNUMBER or LUA_TSTRING */
		add_s(ms, b, s, e);
		return 1;
	}
	if (!lua_toboolean(L, -1)) {	/* nil or false: keep the original */
		lua_pop(L, 1);
		luaL_addlstring(b, s, (size_t)(e - s));
		return 0;
	}
	if (!lua_isstring(L, -1))
		return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
	luaL_addvalue(b);
	return 1;
}

static int str_gsub(lua_State *L)
{
	size_t srcl, lp;
	const char *src = luaL_checklstring(L, 1, &srcl);
	const char *p = luaL_checklstring(L, 2, &lp);
	const char *lastmatch = NULL;	/* end of last match */
	int tr = lua_type(L, 3);
	lua_Integer max_s = luaL_optinteger(L, 4, (lua_Integer)srcl + 1);
	int anchor = (*p == '^');
	lua_Integer n = 0;
	int changed = 0;
	struct match_state ms;
	luaL_Buffer b;

	luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING ||
			 tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
			 "string/function/table");
	luaL_buffinit(L, &b);
	if (anchor) {
		p++;
		lp--;
	}
	prep_state(&ms, L, src, srcl, p, lp);
	while (n < max_s) {
		const char *e;

		reprep_state(&ms);
		e = match(&ms, src, p);
		if (e && e != lastmatch) {
			n++;
			changed = add_value(&ms, &b, src, e, tr) | changed;
			src = lastmatch = e;
		} else if (src < ms.src_end) {
			luaL_addchar(&b, *src++);
		} else {
			break;
		}
		if (anchor)
			break;
	}
	if (!changed) {
		lua_pushvalue(L, 1);
	} else {
		luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
		luaL_pushresult(&b);
	}
	lua_pushinteger(L, n);
	return 2;
}

void rb_lpattern_register(lua_State *L, int idx, rb_lpattern_tick_fn tick)
{
	static const luaL_Reg fns[] = {
		{ "find", str_find },
		{ "match", str_match },
		{ "gmatch", str_gmatch },
		{ "gsub", str_gsub },
		{ NULL, NULL },
	};
	void *ud;

	memcpy(&ud, &tick, sizeof(ud));
	lua_pushvalue(L, idx);
	lua_pushlightuserdata(L, ud);
	luaL_setfuncs(L, fns, 1);
	lua_pop(L, 1);
}
