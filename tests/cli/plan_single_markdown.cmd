plan tests/cli/data/single.yaml --format markdown
