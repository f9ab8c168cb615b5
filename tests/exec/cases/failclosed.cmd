# Fail closed: a disk that fills up (ENOSPC injected at the third write of the audit log, the
# group with the second step's intent) keeps the second step from starting; the run stops
# (exit 1) saying why, and its log verifies up to there.  The first step's end was never
# recorded: a resume asks, one that takes it as done runs the second, and the log verifies,
# closed, a crash marker between the sessions.
in order
RUNBOOK_TEST_FAIL=before-write:3 run -p dir=$DIR --output text tests/exec/failclosed.yaml
audit verify --allow-open --state-dir $STATE $RUN
resume $RUN
resume --skip first $RUN
audit verify --state-dir $STATE $RUN
# A bad RUNBOOK_TEST_FAIL is refused.
RUNBOOK_TEST_FAIL=nowhere:1 run -p dir=$DIR tests/exec/failclosed.yaml
