plan runbooks/daily-health-check.yaml
