# A failing step stops the run (exit 1): nothing after it starts, the steps with an undo are
# undone in reverse order, then on_failure runs, in order, and sees the failure.  The run's
# last line, runs and status count its main steps alike, its on_failure steps left out.
in order
run tests/exec/failure.yaml
runs
status $RUN
status $RUN -f json
