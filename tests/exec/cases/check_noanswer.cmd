# A check that gives no answer (not found, unreachable, hangs, a Lua check out of time) fails
# its step unrun, saying why with the check's own message; exit 1 is a "no": the step runs.
run -p dir=$DIR tests/exec/check_noanswer.yaml
