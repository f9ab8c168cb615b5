plan runbooks/backup-verify.yaml -p env=prod --format=markdown
