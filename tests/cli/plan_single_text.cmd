plan tests/cli/data/single.yaml
