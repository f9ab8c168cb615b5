plan tests/cli/data/params.yaml -p env=dev -p env=prod
