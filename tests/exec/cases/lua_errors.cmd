# A failing Lua chunk names its place in the runbook: a block, a quoted one, action: lua's
# code, a check's (which fails its step unrun), on the console and in the journal; a check
# that raises error() with no position is broken too.
run tests/exec/lua_errors.yaml
