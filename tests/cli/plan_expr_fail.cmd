plan tests/cli/data/expr_fail.yaml
