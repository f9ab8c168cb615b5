plan runbooks/evening-maintenance.yaml -p env=prod -p retention_days=120 -p flush_mode=flushdb --format markdown
