/*
 * Tests interp/lpattern.c: a differential test of find/match/gmatch/gsub
 * against Lua's stock string library (cases in tests/unit/lpattern_cases.lua),
 * and deadline tests showing that pathological patterns are interrupted.
 *
 * Build and run from the repository root:
 *   cc -std=c11 -D_POSIX_C_SOURCE=200809L -Iinterp $(pkg-config --cflags lua5.4) \
 *     tests/unit/test_lpattern.c interp/lpattern.c $(pkg-config --libs lua5.4) -lm \
 *     -o /tmp/test_lpattern && /tmp/test_lpattern
 * Sanitizers:
 *   cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -g -fsanitize=address,undefined \
 *     -fno-omit-frame-pointer -Iinterp $(pkg-config --cflags lua5.4) tests/unit/test_lpattern.c \
 *     interp/lpattern.c $(pkg-config --libs lua5.4) -lm -o /tmp/test_lpattern_asan && \
 *     UBSAN_OPTIONS=halt_on_error=1 /tmp/test_lpattern_asan
 * Valgrind:
 *   cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -g -O1 -Iinterp \
 *     $(pkg-config --cflags lua5.4) tests/unit/test_lpattern.c interp/lpattern.c \
 *     $(pkg-config --libs lua5.4) -lm -o /tmp/test_lpattern_vg && \
 *     valgrind --error-exitcode=1 --leak-check=full /tmp/test_lpattern_vg
 *
 * Usage: test_lpattern [-v] [cases-file]; -v prints the time of each deadline case.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lpattern.h"

#define DEADLINE_MS	200
#define DEADLINE_MSG	"deadline exceeded"

#include "check.h"


/*
 * Loads the cases file (its path is the chunk's argument), runs every case in
 * this state and returns {label1, result1, label2, result2, ...} and the three
 * case counts.  Results are serialised without newlines so that a failure
 * prints on one line.
 */
static const char driver[] =
	"local cases = dofile(...)\n"
	"local function esc(s)\n"
	"	local t = {}\n"
	"	for i = 1, #s do\n"
	"		local b = s:byte(i)\n"
	"		if b >= 32 and b < 127 and b ~= 34 and b ~= 92 then t[#t + 1] = string.char(b)\n"
	"		else t[#t + 1] = '\\\\' .. b .. ';' end\n"
	"	end\n"
	"	return '\"' .. table.concat(t) .. '\"'\n"
	"end\n"
	"local function ser(...)\n"
	"	local t = {}\n"
	"	for i = 1, select('#', ...) do\n"
	"		local v = select(i, ...)\n"
	"		local ty = math.type(v) or type(v)\n"
	"		if ty == 'string' then t[i] = esc(v)\n"
	"		elseif ty == 'float' then t[i] = string.format('float:%.17g', v)\n"
	"		elseif ty == 'integer' or ty == 'boolean' or ty == 'nil' then t[i] = ty .. ':' .. tostring(v)\n"
	"		else t[i] = ty end\n"
	"	end\n"
	"	return '(' .. table.concat(t, ',') .. ')'\n"
	"end\n"
	"local function short(v)\n"
	"	local s = ser(v)\n"
	"	if #s > 40 then s = s:sub(1, 37) .. '...' end\n"
	"	return s\n"
	"end\n"
	"local function gm(s, p, init)\n"
	"	local it = string.gmatch(s, p, init)\n"
	"	local acc = {}\n"
	"	for _ = 1, 1000 do\n"
	"		local r = table.pack(it())\n"
	"		if r.n == 0 then break end\n"
	"		acc[#acc + 1] = ser(table.unpack(r, 1, r.n))\n"
	"	end\n"
	"	return table.concat(acc, ';')\n"
	"end\n"
	"local out = {}\n"
	"local function add(label, ...) out[#out + 1] = label; out[#out + 1] = ser(pcall(...)) end\n"
	"for i, c in ipairs(cases.find) do\n"
	"	local s, p, init, plain = c[1], c[2], c.init, c.plain\n"
	"	local l = 'find[' .. i .. '] ' .. short(s) .. ' ' .. short(p) .. ' ' .. tostring(init) .. ' ' .. tostring(plain)\n"
	"	add(l .. ' find', string.find, s, p, init, plain)\n"
	"	add(l .. ' match', string.match, s, p, init)\n"
	"	add(l .. ' gmatch', gm, s, p, init)\n"
	"	add(l .. ' gsub', string.gsub, s, p, '[%0]')\n"
	"end\n"
	"for i, c in ipairs(cases.gsub) do\n"
	"	add('gsub[' .. i .. '] ' .. short(c[1]) .. ' ' .. short(c[2]) .. ' ' .. tostring(c.n),\n"
	"	    string.gsub, c[1], c[2], c[3], c.n)\n"
	"end\n"
	"for i, code in ipairs(cases.misc) do\n"
	"	add('misc[' .. i .. '] ' .. code, load(code, '=misc'))\n"
	"end\n"
	"return out, #cases.find, #cases.gsub, #cases.misc\n";

static int verbose;
static unsigned long nticks;
static int deadline_armed;
static struct timespec deadline;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void tick_count(lua_State *L)
{
	(void)L;
	nticks++;
}

static void tick_deadline(lua_State *L)
{
	struct timespec ts;

	nticks++;
	if (!deadline_armed)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (ts.tv_sec > deadline.tv_sec ||
	    (ts.tv_sec == deadline.tv_sec && ts.tv_nsec >= deadline.tv_nsec))
		luaL_error(L, DEADLINE_MSG);
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void arm_deadline(long ms)
{
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += ms / 1000;
	deadline.tv_nsec += (ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	deadline_armed = 1;
}

/* stock: plain luaL_openlibs; else the string table gets our functions. */
static lua_State *new_state(int stock, rb_lpattern_tick_fn tick)
{
	lua_State *L = luaL_newstate();

	if (!L) {
		fprintf(stderr, "luaL_newstate failed\n");
		return NULL;
	}
	luaL_openlibs(L);
	if (!stock) {
		lua_getglobal(L, "string");
		rb_lpattern_register(L, -1, tick);
		lua_pop(L, 1);
	}
	return L;
}

/* Leaves the driver's result array on the stack; returns 0 on error. */
static int run_driver(lua_State *L, const char *cases, int *nfind, int *ngsub, int *nmisc)
{
	if (luaL_loadbuffer(L, driver, sizeof(driver) - 1, "=driver") != LUA_OK ||
	    (lua_pushstring(L, cases), lua_pcall(L, 1, 4, 0)) != LUA_OK) {
		printf("FAIL driver: %s\n", lua_tostring(L, -1));
		lua_pop(L, 1);
		return 0;
	}
	*nfind = (int)lua_tointeger(L, -3);
	*ngsub = (int)lua_tointeger(L, -2);
	*nmisc = (int)lua_tointeger(L, -1);
	lua_pop(L, 3);
	return 1;
}

static void print_trunc(const char *what, const char *s)
{
	size_t n = strlen(s);

	printf(" %s=%.*s%s", what, n > 400 ? 400 : (int)n, s, n > 400 ? "..." : "");
}

/* Compares the result arrays on top of A and B; returns the number of cases. */
static int compare_results(lua_State *A, lua_State *B, const char *what)
{
	lua_Integer n = luaL_len(A, -1), m = luaL_len(B, -1), i;

	CHECK(n == m, "%s: %lld results vs %lld", what, (long long)n, (long long)m);
	for (i = 1; i + 1 <= n && i + 1 <= m; i += 2) {
		const char *la, *lb, *ra, *rb;
		int same;

		lua_rawgeti(A, -1, i);
		lua_rawgeti(A, -2, i + 1);
		lua_rawgeti(B, -1, i);
		lua_rawgeti(B, -2, i + 1);
		la = lua_tostring(A, -2);
		ra = lua_tostring(A, -1);
		lb = lua_tostring(B, -2);
		rb = lua_tostring(B, -1);
		same = la && lb && ra && rb && strcmp(la, lb) == 0 && strcmp(ra, rb) == 0;
		if (same) {
			npass++;
		} else {
			nfail++;
			printf("FAIL %s %s:", what, la ? la : "?");
			print_trunc("stock", ra ? ra : "?");
			print_trunc("ours", rb ? rb : "?");
			putchar('\n');
		}
		lua_pop(A, 2);
		lua_pop(B, 2);
	}
	return (int)(n / 2);
}

static void differential(const char *cases)
{
	lua_State *stock = new_state(1, NULL);
	lua_State *ours = new_state(0, tick_count);
	lua_State *untimed = new_state(0, NULL);
	int sf = 0, sg = 0, sm = 0, of = 0, og = 0, om = 0, uf = 0, ug = 0, um = 0;
	int ncmp;

	if (!stock || !ours || !untimed) {
		CHECK(0, "cannot create Lua states");
		goto out;
	}
	nticks = 0;
	if (!run_driver(stock, cases, &sf, &sg, &sm) || !run_driver(ours, cases, &of, &og, &om) ||
	    !run_driver(untimed, cases, &uf, &ug, &um)) {
		nfail++;
		goto out;
	}
	CHECK(sf + sg + sm >= 150, "only %d differential cases", sf + sg + sm);
	CHECK(sf == of && sg == og && sm == om && sf == uf && sg == ug && sm == um,
	      "case counts differ");
	ncmp = compare_results(stock, ours, "diff");
	CHECK(nticks > 0, "tick never called in the differential run");
	/* rb_lpattern_register with a NULL tick must behave the same */
	compare_results(stock, untimed, "diff(NULL tick)");
	if (verbose)
		printf("differential: %d find cases (each via find, match, gmatch, gsub), "
		       "%d gsub cases, %d misc chunks: %d comparisons, %lu ticks\n",
		       sf, sg, sm, ncmp, nticks);
out:
	if (stock)
		lua_close(stock);
	if (ours)
		lua_close(ours);
	if (untimed)
		lua_close(untimed);
}

struct deadline_case {
	const char *name;
	const char *code;
};

static const struct deadline_case deadline_cases[] = {
	{ "find .-.-.-.-b$", "return ('a'):rep(1e4):find('.-.-.-.-b$')" },
	{ "match .-.-.-.-b$", "return ('a'):rep(1e4):match('.-.-.-.-b$')" },
	{ "gmatch .-.-.-.-b$", "for m in ('a'):rep(1e4):gmatch('.-.-.-.-b$') do end" },
	{ "gsub .-.-.-.-b$", "return ('a'):rep(1e4):gsub('.-.-.-.-b$', 'x')" },
	{ "plain find 1MB needle in 4MB", "return S:find(P, 1, true)" },
	{ "find 1MB needle in 4MB, no specials", "return S:find(P)" },
	{ "find (.*)%1b back-reference", "return S2:find('(.*)%1b')" },
	{ "find %b() unbalanced", "return B:find('%b()')" },
};

static void deadlines(void)
{
	lua_State *L = new_state(0, tick_deadline);
	size_t i;

	if (!L) {
		CHECK(0, "cannot create Lua state");
		return;
	}
	deadline_armed = 0;
	if (luaL_dostring(L, "S = ('a'):rep(4 << 20)\n"
			  "P = ('a'):rep((1 << 20) - 1) .. 'b'\n"
			  "S2 = ('a'):rep(1 << 16)\n"
			  "B = ('('):rep(1 << 20)\n") != LUA_OK) {
		CHECK(0, "setup: %s", lua_tostring(L, -1));
		lua_close(L);
		return;
	}
	for (i = 0; i < sizeof(deadline_cases) / sizeof(deadline_cases[0]); i++) {
		const struct deadline_case *c = &deadline_cases[i];
		char code[256];
		double t0, elapsed;
		int ok;
		const char *msg;

		snprintf(code, sizeof(code), "return pcall(function() %s end)", c->code);
		if (luaL_loadstring(L, code) != LUA_OK) {
			CHECK(0, "%s: %s", c->name, lua_tostring(L, -1));
			lua_pop(L, 1);
			continue;
		}
		arm_deadline(DEADLINE_MS);
		t0 = now();
		ok = lua_pcall(L, 0, 2, 0) == LUA_OK;
		elapsed = now() - t0;
		deadline_armed = 0;
		if (!ok) {
			CHECK(0, "%s: pcall itself failed: %s", c->name, lua_tostring(L, -1));
			lua_pop(L, 1);
			continue;
		}
		msg = lua_tostring(L, -1);
		CHECK(!lua_toboolean(L, -2), "%s: no error", c->name);
		CHECK(msg && ends_with(msg, ": " DEADLINE_MSG), "%s: error is '%s', not the tick's",
		      c->name, msg ? msg : "(not a string)");
		CHECK(elapsed < 1.0, "%s: took %.3f s", c->name, elapsed);
		CHECK(elapsed >= DEADLINE_MS / 1000.0 * 0.99, "%s: stopped early (%.3f s)",
		      c->name, elapsed);
		if (verbose)
			printf("deadline: %-40s %.3f s\n", c->name, elapsed);
		lua_pop(L, 2);
	}
	/* the state still works after the interruptions, with and without a deadline */
	arm_deadline(DEADLINE_MS);
	if (luaL_dostring(L, "local s = S:sub(1, 100) .. 'b'\n"
			  "local a, b = s:find('a-b$')\n"
			  "local n = 0 for _ in s:gmatch('a') do n = n + 1 end\n"
			  "return a, b, n, (s:gsub('a', '')), s:match('(a+)b'):len(),\n"
			  "       ((S .. 'xb'):find('xb', 1, true))") != LUA_OK) {
		CHECK(0, "after deadline: %s", lua_tostring(L, -1));
	} else {
		CHECK(lua_tointeger(L, -6) == 1 && lua_tointeger(L, -5) == 101 &&
		      lua_tointeger(L, -4) == 100 && strcmp(lua_tostring(L, -3), "b") == 0 &&
		      lua_tointeger(L, -2) == 100 && lua_tointeger(L, -1) == (4 << 20) + 1,
		      "after deadline: wrong results");
	}
	deadline_armed = 0;
	lua_close(L);
}

int main(int argc, char **argv)
{
	const char *cases = "tests/unit/lpattern_cases.lua";
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-v") == 0)
			verbose = 1;
		else
			cases = argv[i];
	}
	differential(cases);
	deadlines();
	printf("lpattern: %d passed, %d failed\n", npass, nfail);
	return nfail ? 1 : 0;
}
