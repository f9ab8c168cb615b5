plan tests/valid/v_minimal.yaml tests/valid/v_deploy.yaml
