plan runbooks/evening-maintenance.yaml
