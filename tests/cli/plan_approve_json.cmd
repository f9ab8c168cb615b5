plan tests/cli/data/approve.yaml -p env=prod --format json
