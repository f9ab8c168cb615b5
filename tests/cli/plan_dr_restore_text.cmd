plan runbooks/dr-restore.yaml -p restore_date=2026-11-23_02-00-00
