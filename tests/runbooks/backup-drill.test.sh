# backup then backup-drill: a real dump restored into a scratch database whose tables match
# the live ones, checked on the server; the scratch database dropped after a drill; a
# corrupted object in the bucket and a backup older than the RPO each fail the drill with an
# alert on every OARS channel, whose body the receiver shows.
f=runbooks/backup-drill.yaml
bucket=$SANDBOX_S3_DIR/personapass-backups
seed=$(ls "$bucket/daily" | head -n 1)
scratch_exists() { sql_db postgres "SELECT count(*) FROM pg_database WHERE datname = 'personapass_drill'"; }

rb run runbooks/backup.yaml --output text >/dev/null 2>&1
is "backup exits 0" "$?" 0
stamp=$(sql_db personapass "SELECT stamp FROM backup_log WHERE status = 'success'")

# The drill, the scratch database kept to look at.
rb run "$f" -p keep_scratch=true --output text >/dev/null 2>&1; rc=$?
is "the drill of the new backup passes" "$rc" 0
is "it restored the newest backup" "$(journal | jq -r 'select(.type == "step_finished" and .step == "evaluate") | .output | fromjson | .stamp')" "$stamp"
for t in users user_sessions audit_logs credentials api_keys verification_requests; do
	is "$t: the restored rows are the live ones" \
		"$(sql_db personapass_drill "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text COLLATE \"C\")) FROM $t t")" \
		"$(sql_db personapass "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text COLLATE \"C\")) FROM $t t")"
done
check "it compared with the manifest, and met RTO and RPO" \
	jq -se 'map(select(.type == "step_finished" and .step == "evaluate"))[0].output | fromjson |
		.against == "the manifest taken with the dump" and (.problems | length) == 0 and .rto_met and .rpo_met' <<<"$(journal)"
is "no alert when the drill passes" "$(alerts / | wc -l)" 0

# Again, as scheduled: the scratch database is gone at the end.
rb run "$f" --output text >/dev/null 2>&1; rc=$?
is "the scheduled drill passes" "$rc" 0
is "the scratch database is dropped" "$(scratch_exists)" 0
check "the downloaded files are gone" test ! -e "/tmp/backup-drill-$(last_run)"

# One byte of the object flipped in the bucket: the checksum catches it before anything
# is restored; every channel is alerted.
obj=$bucket/daily/$stamp/db_backup_$stamp.sql.gz.gpg
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(5000); b = f.read(1); f.seek(5000); f.write(bytes([b[0] ^ 0xff]))' "$obj"
rb run "$f" --output text >/dev/null 2>&1; rc=$?
is "a corrupted backup fails the drill" "$rc" 1
is "nothing was left behind" "$(scratch_exists)" 0
slack=$(alerts /slack/ | jq -r '.json.text')
check "Slack names the checksum mismatch" grep -q "verify_sha256: checksum mismatch: s3://personapass-backups/daily/$stamp/db_backup_$stamp.sql.gz.gpg has SHA-256 $(sha256sum "$obj" | cut -c1-64), the backup recorded" <<<"$slack"
check "PagerDuty got the trigger" jq -se 'length == 1 and (.[0] | (.payload.summary | startswith("Backup drill failed")) and (.payload.summary | test("checksum mismatch")) and .event_action == "trigger" and .routing_key == env.PAGERDUTY_ROUTING_KEY)' <<<"$(alerts /pagerduty/ | jq -c .json)"
check "the generic webhook got it" jq -se 'length == 1 and (.[0] | (.text | test("checksum mismatch")) and (.title | startswith("Backup drill failed")))' <<<"$(alerts /hook/ | jq -c .json)"

# Last night's backup (no checksum object, no manifest): compared with the live database,
# it matches, but it is hours older than the 15-minute RPO.
: >"$SANDBOX_RECEIVER_LOG"
rb run "$f" -p stamp="$seed" --output text >/dev/null 2>&1; rc=$?
is "a backup older than the RPO fails the drill" "$rc" 1
slack=$(alerts /slack/ | jq -r '.json.text')
check "the alert says the tables matched the live database" grep -q '^- 6 tables, 51300 rows restored and matching the live database' <<<"$slack"
check "the alert names the missed RPO" grep -q '^- RPO missed: the backup was [0-9]* min old (target 15 min)' <<<"$slack"
is "the scratch database is dropped after a failed drill" "$(scratch_exists)" 0
