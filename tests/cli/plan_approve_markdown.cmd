plan tests/cli/data/approve.yaml --format markdown
