plan runbooks/evening-maintenance.yaml -p env=staging
