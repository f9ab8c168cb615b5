plan tests/cli/data/crypto.yaml
