plan tests/cli/data/placeholders.yaml
