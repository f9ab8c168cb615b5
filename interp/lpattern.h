/*
 * Lua 5.4 string.find/match/gmatch/gsub with a deadline: the same pattern
 * semantics as lstrlib.c, but the matcher calls back every RB_LPATTERN_TICK
 * steps so that a sandbox can stop a pathological pattern.
 */
#ifndef RB_LPATTERN_H
#define RB_LPATTERN_H

#include <lua.h>

/* Match steps between two calls of the tick function. */
#define RB_LPATTERN_TICK 4096

/*
 * Called every RB_LPATTERN_TICK match steps; must raise a Lua error
 * (luaL_error, never returns) when the caller's deadline has passed, else
 * return.
 */
typedef void (*rb_lpattern_tick_fn)(lua_State *L);

/*
 * Sets find, match, gmatch, gsub on the table at stack index idx (normally a
 * copy of the string library), replacing the stock ones.  tick is stored as a
 * light userdata upvalue; it may be NULL for no deadline.
 */
void rb_lpattern_register(lua_State *L, int idx, rb_lpattern_tick_fn tick);

#endif
