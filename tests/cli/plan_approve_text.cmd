plan tests/cli/data/approve.yaml
