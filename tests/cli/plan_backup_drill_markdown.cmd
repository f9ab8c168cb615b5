plan runbooks/backup-drill.yaml -p stamp=2026-11-23_02-00-00 --format=markdown
