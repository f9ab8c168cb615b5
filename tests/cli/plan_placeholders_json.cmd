plan tests/cli/data/placeholders.yaml -p hosts='["a","b"]' --format json
