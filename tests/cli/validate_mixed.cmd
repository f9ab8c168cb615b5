validate -q tests/valid/v_minimal.yaml tests/invalid/cycle.yaml tests/cli/data/missing.yaml
