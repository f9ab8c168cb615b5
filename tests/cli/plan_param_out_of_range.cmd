plan tests/cli/data/params.yaml -p env=prod -p retention_days=0 -p settle_time=2h
