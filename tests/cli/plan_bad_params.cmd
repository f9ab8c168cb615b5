plan tests/cli/data/params.yaml -p env=qa -p retention_days=abc -p retension_days=3 -p services=api -p flush_cache=yes -p settle_time=30 -p badparam
