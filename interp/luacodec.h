#ifndef RB_LUACODEC_H
#define RB_LUACODEC_H

#include <lua.h>

/* hash.* and base64.* into the table at base, each made read-only by readonly. */
void rb_luacodec_open(lua_State *L, int base, void (*readonly)(lua_State *L));

#endif
