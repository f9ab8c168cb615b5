# A resume's last line counts the whole run, and runs the same (no "other" for on_failure).
run tests/exec/counts.yaml
resume $RUN --approve two
runs
