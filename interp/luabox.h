/*
 * The Lua sandbox: one lua_State per run (or per plan) with a byte cap on its
 * allocator, a deadline checked by a count hook and inside pattern matching,
 * and an environment built from an allow-list.  The real globals are never
 * reachable from runbook code.
 */
#ifndef RB_LUABOX_H
#define RB_LUABOX_H

#include <jansson.h>
#include <lua.h>
#include <stddef.h>

enum {
	RB_LUA_MEM_DEFAULT = 64 * 1024 * 1024,
	RB_EXPR_MS_DEFAULT = 1000,
	RB_LUA_MEM_SPARE = 64 * 1024,   /* rb_luabox_ref_set_json's spare */
	RB_LUABOX_POLL_MS = 10,         /* rb_luabox_set_poll's period */
};

struct rb_luabox;

struct rb_luabox *rb_luabox_new(size_t mem_cap);
void rb_luabox_free(struct rb_luabox *b);
/* The memory b uses now (its compiled code) is not counted against its cap from now on. */
void rb_luabox_rebase(struct rb_luabox *b);
lua_State *rb_luabox_state(struct rb_luabox *b);

/*
 * While runbook code runs (rb_luabox_eval, rb_luabox_tostring) for longer than
 * RB_LUABOX_POLL_MS, call poll(ud) every RB_LUABOX_POLL_MS or so, from the
 * hook (or the pattern matcher), on the thread that runs it: the engine, whose
 * thread Lua holds, acts on signals and steps its other calls there.  poll must
 * not touch the Lua state.  A message returned stops the code with that error
 * (as its deadline does: no pcall catches it).
 */
void rb_luabox_set_poll(struct rb_luabox *b, const char *(*poll)(void *ud), void *ud);

/*
 * Compile without running: code is an expression (is_expr) or a chunk.
 * Returns 0, or -1 with *err (malloc'd, without chunk prefix) and *line, the
 * line within code (1-based).
 */
int rb_luabox_check(struct rb_luabox *b, const char *code, size_t len, int is_expr,
		    char **err, int *line);

/*
 * Push a new scope table: reads fall through to the sandbox's globals,
 * assignments to globals are errors, its metatable is protected.  The caller
 * sets params, vars, steps ... on it with rb_luabox_set_readonly or rawset.
 */
void rb_luabox_push_scope(struct rb_luabox *b);

/* Pop the value at the top of the stack into scope[name], bypassing the
   scope's guard against new globals. */
void rb_luabox_set(lua_State *L, int scope, const char *name);

/*
 * The engine's writes into the state, protected: each returns -1 when it
 * would pass the memory limit, with target[name] unchanged, else 0.
 * rb_luabox_set_json: scope[name] = v (nil when v is NULL), a read-only view
 * of it when view.
 */
int rb_luabox_set_json(struct rb_luabox *b, int scope, const char *name, const json_t *v,
		       int view);
/* scope[name] = a read-only view of a new empty table, whose registry ref is *ref. */
int rb_luabox_set_table(struct rb_luabox *b, int scope, const char *name, int *ref);
/*
 * t[name] = v (nil when v is NULL), t the table that registry ref holds.  With
 * spare, after a full collection, the write may pass the limit by
 * RB_LUA_MEM_SPARE: for the small record that says the limit was reached.
 */
int rb_luabox_ref_set_json(struct rb_luabox *b, int ref, const char *name, const json_t *v,
			   int spare);
/*
 * t[names[k]] = v for each of the n names: one value, one table when v is an
 * object, that Lua may read only through read-only views (steps.X, say).
 */
int rb_luabox_ref_set_json_all(struct rb_luabox *b, int ref, const char *const *names,
			       size_t n, const json_t *v);
/* The memory limit in MiB, for messages. */
size_t rb_luabox_mem_mib(const struct rb_luabox *b);

/* Replace the table at the top of the stack with a read-only view of it. */
void rb_luabox_readonly(lua_State *L);

/*
 * Evaluate code (an expression if is_expr, else a chunk whose return value is
 * the result) with the scope at stack index scope, within ms milliseconds.
 * On success pushes one value and returns 0; on failure returns -1 with *err
 * and *line as rb_luabox_check.
 */
int rb_luabox_eval(struct rb_luabox *b, int scope, const char *code, size_t len,
		   int is_expr, long ms, char **err, int *line);

/*
 * Lua value <-> JSON, protected (a memory error is a failure, not an abort).
 * rb_lua_to_json returns NULL with *err; rb_lua_push_json returns -1 with
 * nothing pushed.
 */
json_t *rb_lua_to_json(lua_State *L, int idx, char **err);
int rb_lua_push_json(lua_State *L, const json_t *v);

/* tostring() of the value at idx, protected and under the expression
   deadline (__tostring is user code); malloc'd, or NULL with *err. */
char *rb_luabox_tostring(struct rb_luabox *b, int idx, size_t *len, char **err);

/* Seconds since the epoch: RUNBOOK_NOW (epoch or RFC 3339) when set, plus
   the shift rb_now_shift set (0 unless a plan is being made at another time). */
double rb_now(void);
void rb_now_shift(double seconds);

#endif
