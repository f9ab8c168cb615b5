validate --strict tests/valid/v_minimal.yaml
