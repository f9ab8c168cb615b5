# The plan shows run.status in on_failure steps as known during the run.  (An interrupted run:
# tests/exec/programs.sh.)
plan -p dir=$DIR tests/exec/interrupt.yaml
