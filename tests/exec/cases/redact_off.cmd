# pii: false shows addresses and phones; the runbook's own patterns still apply.
run tests/exec/redact_off.yaml
