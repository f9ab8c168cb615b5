# Engine basics without processes: lua, assert, wait, conditions and skips, for_each, retries,
# named outputs; a secret and a sensitive step's value are never written nor printed.
EXEC_TEST_TOKEN=tok-Zq81x run tests/exec/basics.yaml
never: tok-Zq81x
never but in the runbook: private-Value-3k9
# --jobs 0 is refused; --dry-run prints the plan and makes no run.
run --jobs 0 tests/exec/basics.yaml
EXEC_TEST_TOKEN=tok-dry-1 run --dry-run tests/exec/basics.yaml
