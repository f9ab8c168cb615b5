plan tests/cli/data/params.yaml
