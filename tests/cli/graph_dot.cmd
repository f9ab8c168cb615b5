graph runbooks/evening-maintenance.yaml
