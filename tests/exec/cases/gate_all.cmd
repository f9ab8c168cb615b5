# --approve all runs a gated runbook through.
run -p dir=$DIR --approve all tests/exec/gate.yaml
