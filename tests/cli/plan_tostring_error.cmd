plan tests/cli/data/tostring_error.yaml
