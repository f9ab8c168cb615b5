# dr-restore in the sandbox: a full run swaps the restored copy in and keeps the old one; a
# run killed with SIGKILL after the restore committed resumes without restoring twice; a
# failed health check rolls everything back. Checked in PostgreSQL, in the cluster's state
# and in what Slack received.
f=runbooks/dr-restore.yaml
args=(-p 'deployments=["api","web"]' -p settle=1s)
# After the backup a user signs up: the restored database does not have them, the old one does.
fresh_backup() {
	rb run runbooks/backup.yaml --output text >/dev/null 2>&1 || return 1
	sql_db personapass "INSERT INTO users VALUES (999999, 'late@example.com', 'did:persona:late', 'user', now(), NULL)"
}
late_in() { sql_db "$1" "SELECT count(*) FROM users WHERE id = 999999"; }
db_mark() { sql_db postgres "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = '$1'"; }
dbs() { sql_db postgres "SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database WHERE datname LIKE 'personapass%' AND datname <> 'personapass_seed'"; }
replicas() { cluster_state | jq -r '[.deployments.api.replicas, .deployments.web.replicas] | join(" ")'; }

# --- a full run, the gate approved in advance
fresh_backup >/dev/null
is "backup exits 0" "$?" 0
stamp=$(sql_db personapass "SELECT stamp FROM backup_log WHERE status = 'success'")
rb run "$f" "${args[@]}" --approve all --output text >/dev/null 2>&1; rc=$?
is "dr-restore exits 0" "$rc" 0
run1=$(last_run)
is "the databases after the swap" "$(dbs)" "personapass personapass_old"
is "personapass holds the backup restored by this run" "$(db_mark personapass)" "$stamp $run1"
is "the restored database lacks the write after the backup" "$(late_in personapass)" 0
is "the old database is kept, with it" "$(late_in personapass_old)" 1
is "the restored users" "$(sql_db personapass 'SELECT count(*) FROM users')" 2000
is "api and web run with their replicas again" "$(replicas)" "3 2"
check "the API is healthy" curl -sf "$PERSONAPASS_API_URL/health"
check "Slack got the report" grep -q "^:white_check_mark: PersonaPass restored from backup $stamp (run $run1)" <<<"$(alerts /slack/ | jq -r '.json.text')"
check "the audit log verifies" rb audit verify "$run1"

# --- killed with SIGKILL once the restore committed, before the swap; resumed
sandbox_reset
fresh_backup >/dev/null
stamp=$(sql_db personapass "SELECT stamp FROM backup_log WHERE status = 'success'")
"$RUNBOOK" run "$f" "${args[@]}" --output text >/dev/null 2>&1 &
pid=$!
for ((i = 0; i < 1500; i++)); do      # 30 s at most: a loaded machine
	[ -n "$(db_mark personapass_restore 2>/dev/null)" ] && break
	sleep 0.02
done
kill -9 "$pid" 2>/dev/null
{ wait "$pid"; } 2>/dev/null; rc=$?
run2=$(last_run)
check "the run died (SIGKILL) or paused at the gate" grep -qxE '137|3' <<<"$rc"
is "the restore had committed" "$(db_mark personapass_restore)" "$stamp $run2"
is "nothing was swapped yet" "$(dbs)" "personapass personapass_restore"
is "the services were not stopped" "$(replicas)" "3 2"
rb resume "$run2" --approve scale_down --output text >/dev/null 2>&1; rc=$?
is "the resume exits 0" "$rc" 0
is "the restore ran once: one action_intent" \
	"$(journal | jq -s 'map(select(.type == "action_intent" and .step == "restore" and (.check | not))) | length')" 1
is "personapass is the restored copy" "$(db_mark personapass)" "$stamp $run2"
is "the late write is only in the old database" "$(late_in personapass) $(late_in personapass_old)" "0 1"
is "the restored users" "$(sql_db personapass 'SELECT count(*) FROM users')" 2000
is "api and web run again" "$(replicas)" "3 2"

# --- the API unhealthy after the swap: rolled back to the old database
sandbox_reset
fresh_backup >/dev/null
sandbox break api >/dev/null
rb run "$f" "${args[@]}" --approve all --output text >/dev/null 2>&1; rc=$?
is "a failed health check fails the run" "$rc" 1
is "the old database is personapass again, the restored copy dropped" "$(dbs)" "personapass"
is "it has the late write" "$(late_in personapass)" 1
is "api and web run with their replicas again" "$(replicas)" "3 2"
text=$(alerts /slack/ | jq -r '.json.text')
check "Slack names the health check" grep -q '^- health_check failed: .*500' <<<"$text"
check "Slack says it rolled back" grep -q '^- rolled back: personapass is the old database again' <<<"$text"
sandbox heal api >/dev/null
