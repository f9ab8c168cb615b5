# Steps not started yet read as pending and cannot be changed; then as they ended.
run --output json tests/exec/pending.yaml
