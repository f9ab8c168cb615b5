# runs lists every run, verified with the state directory's host key; status names a run, its
# steps, why one failed or was skipped and how long it took, and verifies it; an unknown run
# is refused.  (The runs start a second apart: runs lists them newest first.)
run tests/exec/failure.yaml
EXEC_TEST_TOKEN=tok-Zq81x RUNBOOK_NOW=2026-01-01T00:00:01Z run tests/exec/basics.yaml
runs
status $RUN
status $RUN -f json
status 20000101-000000-0000
