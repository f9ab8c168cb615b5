# evening-maintenance in the sandbox: it deletes exactly the expired sessions and the audit
# rows past 90 days, counted by SQL before the run with the run's own cutoff (RUNBOOK_NOW
# pins it); the first purge is far larger than a night's share, so the audit purge waits at
# its gate (nothing of audit_logs deleted) and the run is resumed with --approve; no backup:
# no audit row deleted, Slack and PagerDuty told.
f=runbooks/evening-maintenance.yaml
# The run's time is inside its window (18:00-22:00 UTC), which run and resume enforce: the
# latest 19:00 UTC, for every run and resume here.
now=$(date -u -d "$(date -u +%Y-%m-%d) 19:00" +%Y-%m-%dT%H:%M:%SZ)
[ "$(date -u -d "$now" +%s)" -le "$(date -u +%s)" ] || now=$(date -u -d "$now - 1 day" +%Y-%m-%dT%H:%M:%SZ)
cut="timestamptz '$now' - interval '90 days'"
ids() { sql "SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM $1"; }

# --- no backup: the audit purge does not run, the run fails, Slack and PagerDuty hear it --
mv "$SANDBOX_S3_DIR/personapass-backups/daily" "$SANDBOX_DIR/daily.kept"
audit_before=$(sql "SELECT count(*) FROM audit_logs")
out=$(RUNBOOK_NOW=$now rb run "$f" --output text 2>&1); rc=$?
is "no backup: the run fails" "$rc" 1
is "no backup: no audit row deleted" "$(sql "SELECT count(*) FROM audit_logs")" "$audit_before"
is "no backup: the expired sessions are purged all the same" \
	"$(sql "SELECT count(*) FROM user_sessions WHERE expires_at < timestamptz '$now'")" 0
check "Slack's report names the missing backup" grep -q ':red_circle: backup: .*no db_backup_\*.sql.gz.gpg in s3://personapass-backups/daily/' \
	<<<"$(alerts /slack/ | jq -r '.json.text')"
check "PagerDuty is paged with the reason" jq -se 'length == 1 and (.[0].json.payload.summary | test("verdict failed: critical: backup"))
	and .[0].json.event_action == "trigger"' <<<"$(alerts /pagerduty/)"
mv "$SANDBOX_DIR/daily.kept" "$SANDBOX_S3_DIR/personapass-backups/daily"
sandbox_reset || bad "sandbox_reset"

# --- the real run: exact counts, computed by SQL before it ---------------------------------
audit_total=$(sql "SELECT count(*) FROM audit_logs")
audit_old=$(sql "SELECT count(*) FROM audit_logs WHERE created_at < $cut")
audit_recent_ids=$(sql "SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM audit_logs WHERE created_at >= $cut")
sessions_total=$(sql "SELECT count(*) FROM user_sessions")
sessions_expired=$(sql "SELECT count(*) FROM user_sessions WHERE expires_at < timestamptz '$now'")
sessions_live_ids=$(sql "SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM user_sessions WHERE expires_at >= timestamptz '$now'")
check "the seed has old audit rows and expired sessions to purge" test "$audit_old" -gt 1000 -a "$sessions_expired" -gt 1000
# A HIGH finding planted for the api image: a warning in the report, not a failure.
echo '[{"VulnerabilityID": "CVE-2026-0001", "Severity": "HIGH", "PkgName": "openssl"}]' \
	>"$SANDBOX_TRIVY_DIR/personapass_api_latest.json"

out=$(RUNBOOK_NOW=$now rb run "$f" --output text 2>&1 </dev/null); rc=$?
is "an unusually large purge pauses at its gate" "$rc" 3
id=$(last_run)
is "paused: no audit row deleted yet" "$(sql "SELECT count(*) FROM audit_logs")" "$audit_total"
is "paused: the expired sessions are gone (no gate for them)" \
	"$(sql "SELECT count(*) FROM user_sessions")" "$((sessions_total - sessions_expired))"
check "the gate's prompt gives the exact number" grep -q "Delete $audit_old of $audit_total audit_logs rows" <<<"$out"

out=$(RUNBOOK_NOW=$now rb resume "$id" --approve purge_audit_logs --output text 2>&1); rc=$?
is "resumed with --approve: the run succeeds" "$rc" 0
is "audit_logs: exactly the old rows deleted" "$(sql "SELECT count(*) FROM audit_logs")" "$((audit_total - audit_old))"
is "audit_logs: no row past the cutoff is left" "$(sql "SELECT count(*) FROM audit_logs WHERE created_at < $cut")" 0
is "audit_logs: the recent rows are untouched" "$(ids audit_logs)" "$audit_recent_ids"
is "user_sessions: the live ones are untouched" "$(ids user_sessions)" "$sessions_live_ids"
is "each purge committed once (its marker)" "$(sql "SELECT count(*) FROM runbook_markers WHERE run_id = '$id'")" 2
check "VACUUM ran on both tables" test "$(sql "SELECT count(*) FROM pg_stat_user_tables
	WHERE relname IN ('audit_logs', 'user_sessions') AND last_vacuum IS NOT NULL")" = 2
is "Redis: the cache's keys are gone" "$(rcli --raw EXISTS cache:home)" 0
is "Redis: the sessions are kept (no FLUSHDB)" "$(rcli --raw EXISTS session:seed:1 session:seed:2)" 2
check "the api and web logs were rotated" test -e "$SANDBOX_CLUSTER_DIR/logs/api.log.1" -a -e "$SANDBOX_CLUSTER_DIR/logs/web.log.1"
text=$(alerts /slack/ | jq -r '.json.text')
check "Slack's report: 0 critical, the deletions and the finding" bash -c '
	grep -q "evening maintenance (prod, run .*): 0 critical, 1 warnings" <<<"$1" &&
	grep -q "audit_logs older than .*: $2 of $3 ($2 rows)" <<<"$1" &&
	grep -q "expired user_sessions: $4 ($4 rows)" <<<"$1" &&
	grep -q "1 keys of cache:\* deleted" <<<"$1" &&
	grep -q "CVE-2026-0001 HIGH" <<<"$1" || { echo "the report: $1"; false; }' _ "$text" "$audit_old" "$audit_total" "$sessions_expired"
is "no page on success" "$(alerts /pagerduty/ | wc -l)" 0
check "the audit log verifies" rb audit verify "$id"

# --- run again: nothing left to delete, no gate, nothing deleted twice ---------------------
: >"$SANDBOX_RECEIVER_LOG"
RUNBOOK_NOW=$now rb run "$f" --output text >/dev/null 2>&1 </dev/null; rc=$?
is "a second run needs no gate and succeeds" "$rc" 0
is "the second run deletes nothing more" "$(sql "SELECT count(*) FROM audit_logs")" "$((audit_total - audit_old))"

# --- killed (SIGKILL) while its DELETE waits on a lock: the server commits it after the
# client is gone; resume finds the marker and does not delete again --------------------
sandbox_reset || bad "sandbox_reset"
audit_total=$(sql "SELECT count(*) FROM audit_logs")
audit_old=$(sql "SELECT count(*) FROM audit_logs WHERE created_at < $cut")
PGAPPNAME=rb_test_lock psql -X -q "postgresql://rb_admin:$RB_TEST_PG_PASSWORD@127.0.0.1:$SANDBOX_PG_PORT/personapass" \
	-c "BEGIN" -c "LOCK TABLE audit_logs IN SHARE MODE" -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
holder=$!
# The run starts once the lock is held, or on a loaded machine it may delete first.
for _ in $(seq 300); do
	[ "$(sql "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'rb_test_lock' AND l.relation = 'audit_logs'::regclass AND l.granted")" = 1 ] && break
	sleep 0.1
done
RUNBOOK_NOW=$now ${RUNBOOK_WRAP:-} "$RUNBOOK" run "$f" --approve all --output text >/dev/null 2>&1 &
runner=$!
waiting=
for _ in $(seq 600); do            # (the steps before it take a while on a loaded machine)
	waiting=$(sql "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM audit_logs%'")
	[ "$waiting" = 1 ] && break
	sleep 0.1
done
is "the audit purge waits on the lock" "$waiting" 1
kill -KILL "$runner"; wait "$runner" 2>/dev/null
id=$(last_run)
sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rb_test_lock'" >/dev/null
wait "$holder" 2>/dev/null
for _ in $(seq 100); do
	[ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'DELETE FROM audit_logs%' AND state <> 'idle'")" = 0 ] && break
	sleep 0.1
done
is "the killed run's purge committed on the server" "$(sql "SELECT count(*) FROM audit_logs")" "$((audit_total - audit_old))"
out=$(RUNBOOK_NOW=$now rb resume "$id" --approve purge_audit_logs --output text 2>&1); rc=$?   # a gate is asked again
is "resume after SIGKILL succeeds" "$rc" 0
check "resume found the purge committed before" jq -se \
	'map(select(.type == "step_finished" and .step == "purge_audit_logs"))[-1].output | fromjson | .committed_before == true' <<<"$(journal)"
is "the purge committed once (one marker)" "$(sql "SELECT count(*) FROM runbook_markers WHERE run_id = '$id' AND step = 'purge_audit_logs'")" 1
is "nothing more deleted" "$(sql "SELECT count(*) FROM audit_logs")" "$((audit_total - audit_old))"
