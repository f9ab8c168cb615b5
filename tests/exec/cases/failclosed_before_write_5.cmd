# Wherever the disk fills (before-write:5), the console reports no outcome the journal does not have:
# a step's end (or the run's) whose record could not be made durable is shown as not
# recorded, and the run exits 1.
in order
RUNBOOK_TEST_FAIL=before-write:5 run -p dir=$DIR --output text tests/exec/failclosed.yaml
