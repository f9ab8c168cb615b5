# Commands at once in the poll loop: each is stopped by its own timeout, saying so, while
# another command streams all its lines and succeeds.  (That each stops in time:
# tests/exec/programs.sh.)
run --jobs 4 tests/exec/timeouts.yaml
