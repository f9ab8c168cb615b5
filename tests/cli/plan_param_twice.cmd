plan runbooks/evening-maintenance.yaml -p env=dev -p env=prod
