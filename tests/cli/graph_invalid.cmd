graph tests/invalid/cycle.yaml
