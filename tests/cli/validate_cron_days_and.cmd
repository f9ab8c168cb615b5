validate tests/cli/data/cron_days_and.yaml
