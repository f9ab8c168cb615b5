/*
 * The sandbox's quoting helpers (shell.quote, shell.raw, sql.ident,
 * sql.literal), registered by luabox.c.
 */
#ifndef RB_LUAQUOTE_H
#define RB_LUAQUOTE_H

#include <lua.h>
#include <stddef.h>

/* Sets shell and sql in the table at base, each made read-only by readonly. */
void rb_luaquote_open(lua_State *L, int base, void (*readonly)(lua_State *));

/* The text of a shell.raw() value at idx, or NULL when it is something else. */
const char *rb_luaquote_raw(lua_State *L, int idx, size_t *len);

#endif
