# monthly-maintenance in the sandbox. `runbook run` and `resume` enforce its window (the first
# Sunday, 02:00-06:00 UTC) by the time RUNBOOK_NOW sets: the test runs it at 03:00 UTC on
# the latest first Sunday (inside), and the Monday after (outside). The sandbox's rows are
# dated by the real clock, so the expected counts are computed by SQL at that same time.
f=runbooks/monthly-maintenance.yaml
d=$(date -u +%Y-%m-%d)
while [ "$(date -u -d "$d" +%a)" != Sun ] || [ "$(date -u -d "$d" +%-d)" -gt 7 ]; do
	d=$(date -u -d "$d - 1 day" +%Y-%m-%d)
done
inside=${d}T03:00:00Z
outside=$(date -u -d "$d + 1 day" +%Y-%m-%d)T03:00:00Z
image() { cluster_state | jq -r --arg d "$1" '.deployments[$d].image'; }
filenode() { sql "SELECT relfilenode FROM pg_class WHERE relname = '$1'"; }
counts() { sql "SELECT (SELECT count(*) FROM audit_logs), (SELECT count(*) FROM user_sessions), (SELECT count(*) FROM verification_requests)"; }
mkdir -p "$SANDBOX_S3_DIR/personapass-backups/monthly"
cp -a "$SANDBOX_S3_DIR/personapass-backups/daily/." "$SANDBOX_S3_DIR/personapass-backups/monthly/"

# --- outside the window: refused before anything starts, nobody told ----------------------
before=$(counts)
runs_before=$(ls "$RUNBOOK_STATE_DIR/runs" 2>/dev/null | wc -l)
out=$(RUNBOOK_NOW=$outside rb run "$f" --approve go --output text 2>&1); rc=$?
is "outside the window: refused" "$rc" 4
check "it says why, and when the next window opens" grep -q "is outside its maintenance window (sun#1 02:00-06:00 UTC): not starting; the next window opens" <<<"$out"
is "outside the window: no run started" "$(ls "$RUNBOOK_STATE_DIR/runs" 2>/dev/null | wc -l)" "$runs_before"
is "outside the window: no row deleted" "$(counts)" "$before"
is "outside the window: no image changed" "$(image api)" personapass/api:2.3.0
is "no alert for a refused start" "$(alerts | wc -l)" 0

# --- inside: the numbers, computed at the run's time --------------------------------------
at="timestamptz '$inside'"
audit_total=$(sql "SELECT count(*) FROM audit_logs")
audit_old=$(sql "SELECT count(*) FROM audit_logs WHERE created_at < $at - interval '365 days'")
sessions_total=$(sql "SELECT count(*) FROM user_sessions")
sessions_old=$(sql "SELECT count(*) FROM user_sessions WHERE expires_at < $at - interval '30 days'")
vr_total=$(sql "SELECT count(*) FROM verification_requests")
vr_old=$(sql "SELECT count(*) FROM verification_requests WHERE created_at < $at - interval '90 days' AND status = 'expired'")
check "the seed has rows for each purge" test "$audit_old" -gt 0 -a "$sessions_old" -gt 0 -a "$vr_old" -gt 0
users_node=$(filenode users) cred_node=$(filenode credentials) idx_node=$(filenode idx_credentials_subject_did)
# web's new image has a CRITICAL finding: it is not deployed.
echo '[{"VulnerabilityID": "CVE-2026-0002", "Severity": "CRITICAL", "PkgName": "libxml2"}]' \
	>"$SANDBOX_TRIVY_DIR/personapass_web_latest.json"
: >"$SANDBOX_RECEIVER_LOG"

out=$(RUNBOOK_NOW=$inside rb run "$f" --output text 2>&1 </dev/null); rc=$?
is "inside the window: the gate pauses the run" "$rc" 3
is "before the gate: nothing deleted" "$(sql "SELECT count(*) FROM audit_logs")" "$audit_total"
check "the gate's prompt has the numbers" grep -q "delete $audit_old audit_logs rows, $sessions_old sessions and $vr_old verification requests" <<<"$(tr '\n' ' ' <<<"$out")"
id=$(sed -n 's/.*to continue: runbook resume \([0-9a-f-]*\) .*/\1/p' <<<"$out")   # (not last_run: ids sort by RUNBOOK_NOW)
out=$(RUNBOOK_NOW=$outside rb resume "$id" --approve go --output text 2>&1); rc=$?
is "resumed after the window: refused" "$rc" 4
is "resumed after the window: nothing deleted" "$(sql "SELECT count(*) FROM audit_logs")" "$audit_total"
out=$(RUNBOOK_NOW=$inside rb resume "$id" --approve go --output text 2>&1); rc=$?
is "approved: the run succeeds" "$rc" 0
is "audit_logs older than a year deleted, exactly" "$(sql "SELECT count(*) FROM audit_logs")" "$((audit_total - audit_old))"
is "sessions expired for 30 days deleted, exactly" "$(sql "SELECT count(*) FROM user_sessions")" "$((sessions_total - sessions_old))"
is "expired verification requests past 90 days deleted, exactly" "$(sql "SELECT count(*) FROM verification_requests")" "$((vr_total - vr_old))"
is "recently expired sessions are kept" "$(sql "SELECT count(*) FROM user_sessions WHERE expires_at < $at - interval '30 days'")" 0
check "VACUUM FULL rewrote users and credentials" test "$(filenode users)" != "$users_node" -a "$(filenode credentials)" != "$cred_node"
check "REINDEX CONCURRENTLY rebuilt idx_credentials_subject_did" test "$(filenode idx_credentials_subject_did)" != "$idx_node"
is "api runs the new image" "$(image api)" personapass/api:latest
is "web's image with a finding is not deployed" "$(image web)" personapass/web:2.3.0
is "the certificate's renewal is requested with the run's time" \
	"$(cluster_state | jq -r '.certificates["personapass-tls"].annotations["cert-manager.io/force-renewal"]')" "$(date -u -d "$inside" +%s)"
text=$(alerts /slack/ | jq -r '.json.text')
check "Slack's report: the numbers and what was not there" bash -c '
	grep -q "deleted: $2 audit_logs .*, $3 user_sessions .*, $4 verification_requests" <<<"$1" &&
	grep -q "not deployed, trivy findings: web (CVE-2026-0002)" <<<"$1" &&
	grep -q "no table presentations to VACUUM FULL" <<<"$1"' _ "$text" "$audit_old" "$sessions_old" "$vr_old"
check "the audit log verifies" rb audit verify "$id"

# --- a new image that fails its health check is rolled back, and the on-call paged ----------
sandbox_reset || bad "sandbox_reset"
mkdir -p "$SANDBOX_S3_DIR/personapass-backups/monthly"
cp -a "$SANDBOX_S3_DIR/personapass-backups/daily/." "$SANDBOX_S3_DIR/personapass-backups/monthly/"
out=$(RUNBOOK_NOW=$inside rb run "$f" --approve go -p image_tag=2.4.0-unhealthy -p 'services=["api"]' --output text 2>&1); rc=$?
is "an unhealthy new image fails the run" "$rc" 1
is "the rollback put the old image back" "$(image api)" personapass/api:2.3.0
is "the rollout history shows the undo" "$(cluster_state | jq -r '.deployments.api.history[-1].cause')" "rollout undo"
check "PagerDuty is paged with the failed health check" jq -se 'length == 1 and (.[0].json.payload.summary | test("api_health failed"))' <<<"$(alerts /pagerduty/)"
