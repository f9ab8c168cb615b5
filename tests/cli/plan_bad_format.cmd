plan tests/valid/v_minimal.yaml --format yaml
