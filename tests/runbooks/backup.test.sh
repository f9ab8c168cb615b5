# backup in the sandbox: a real dump, encrypted, uploaded with its checksum and manifest,
# read back and logged in backup_log; an upload that does not read back as it was sent is
# removed again, the failure logged and Slack alerted.
f=runbooks/backup.yaml
bucket=$SANDBOX_S3_DIR/personapass-backups
pgopts='-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 -c extra_float_digits=3'

rb run "$f" --output text >/dev/null 2>&1; rc=$?
is "backup exits 0" "$rc" 0
run1=$(last_run)
stamp=$(sql_db personapass "SELECT stamp FROM backup_log WHERE status = 'success' AND run_id = '$run1'")
obj=$bucket/daily/$stamp/db_backup_$stamp.sql.gz.gpg
check "backup_log has the run's row, named as backup.sh names it" grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]{2}-[0-9]{2}-[0-9]{2}$' <<<"$stamp"
check "the encrypted dump is in the bucket" test -s "$obj"
check "its .sha256 object matches it" bash -c 'cd "$(dirname "$1")" && sha256sum -c --quiet "$1.sha256"' _ "$obj"
is "backup_log holds its SHA-256 and size" "$(sql_db personapass "SELECT sha256 || ' ' || bytes FROM backup_log WHERE run_id = '$run1'")" \
	"$(sha256sum "$obj" | cut -d' ' -f1) $(stat -c %s "$obj")"
dump=$(gpg --batch --quiet --pinentry-mode loopback --passphrase-file "$BACKUP_PASSPHRASE_FILE" --decrypt "$obj" | gunzip -c)
check "it decrypts with the passphrase to a complete dump" grep -q '^-- PostgreSQL database dump complete' <<<"$dump"
check "it is AES256 encrypted" bash -c 'gpg --batch --list-packets --pinentry-mode loopback --passphrase-file "$BACKUP_PASSPHRASE_FILE" "$1" 2>&1 | grep -q "symkey enc packet: version 4, cipher 9"' _ "$obj"
is "the dump holds every user" "$(sed -n '/^COPY public.users /,/^\\\.$/p' <<<"$dump" | wc -l)" "$(( $(sql_db personapass 'SELECT count(*) FROM users') + 2 ))"
man=$bucket/daily/$stamp/manifest.json
is "the manifest counts the users" "$(jq '.tables["public.users"].rows' "$man")" "$(sql_db personapass 'SELECT count(*) FROM users')"
is "the manifest's checksum is the server's" "$(jq -r '.tables["public.audit_logs"].md5' "$man")" \
	"$(PGOPTIONS=$pgopts sql_db personapass "SELECT md5(string_agg(t::text, E'\n' ORDER BY t::text COLLATE \"C\")) FROM audit_logs t")"
is "the manifest lists the six tables" "$(jq '.tables | length' "$man")" 6
is "the Kubernetes configuration is in config/STAMP/" "$(jq '.items | length' "$bucket/config/$stamp/k8s_config_deployments.json")" 4
check "the local files are gone" test ! -e "/tmp/personapass-backup-$run1"
is "no alert on success" "$(alerts /slack/ | wc -l)" 0
check "the audit log verifies" rb audit verify "$run1"
check "the database password is nowhere in the run's state" bash -c '! grep -rqF "$1" "$2"' _ "$SANDBOX_PG_PASSWORD" "$RUNBOOK_STATE_DIR"

# The object reads back changed (a stand-in aws flips the first byte of what it downloads):
# the run fails, removes what it uploaded, logs the failure and tells Slack why.
mkdir -p "$SANDBOX_DIR/flip"
cat >"$SANDBOX_DIR/flip/aws" <<-EOS
	#!/bin/bash
	if [ "\${!#}" = - ]; then "$PWD/runbooks/sandbox/bin/aws" "\$@" | { printf X; tail -c +2; }; else exec "$PWD/runbooks/sandbox/bin/aws" "\$@"; fi
EOS
chmod +x "$SANDBOX_DIR/flip/aws"
sleep 1    # the next run's stamp is a new second
PATH=$SANDBOX_DIR/flip:$PATH rb run "$f" --output text >/dev/null 2>&1; rc=$?
is "a backup that reads back changed fails" "$rc" 1
run2=$(last_run)
stamp2=$(sql_db personapass "SELECT stamp FROM backup_log WHERE run_id = '$run2'")
is "backup_log records the failure" "$(sql_db personapass "SELECT status || ' ' || split_part(error, ':', 1) FROM backup_log WHERE run_id = '$run2'")" "failed verify_upload"
check "what it uploaded was removed" bash -c '! ls "$1"/* 2>/dev/null | grep -q .' _ "$bucket/daily/$stamp2"
check "the earlier backup is untouched" bash -c 'cd "$(dirname "$1")" && sha256sum -c --quiet "$1.sha256"' _ "$obj"
check "the local files are gone" test ! -e "/tmp/personapass-backup-$run2"
text=$(alerts /slack/ | jq -r '.json.text')
check "Slack names the failed check" grep -q "^- verify_upload failed: the object in s3://personapass-backups/daily/$stamp2/ has SHA-256" <<<"$text"
check "Slack says the upload was removed" grep -q 'what it uploaded was removed' <<<"$text"
