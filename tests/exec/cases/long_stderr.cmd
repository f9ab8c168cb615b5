# Output past 1 MiB goes to the run's output files: stdout up to its last whole line stays in
# the output; output that cannot be written (a symbolic link in its file's place) is counted
# as lost, with why, and the console warns; a step whose stderr was too long to keep whole
# has no reason in its error (its last line is in the spill file).  (The files themselves:
# tests/exec/programs.sh.)
console: warning
EXEC_TEST_STATE=$STATE run tests/exec/long_stderr.yaml
# audit verify checks the run's output files with the log.
audit verify --state-dir $STATE $RUN
