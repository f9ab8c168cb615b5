validate tests/cli/data/cron_days_or.yaml
