# The same when the fdatasync that a command's supervisor makes before the exec fails (a pipe
# in place of the log): its intent has no result, a resume asks, --rerun runs it.
in order
RUNBOOK_TEST_FAIL=before-gate:2 run -p dir=$DIR --output text tests/exec/failclosed.yaml
audit verify --allow-open --state-dir $STATE $RUN
resume $RUN
resume --rerun second $RUN
