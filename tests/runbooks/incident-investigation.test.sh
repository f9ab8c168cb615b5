# incident-investigation in the sandbox: the bundle holds every piece and its manifest's hashes
# match the files; Slack gets the Veris template filled in with the severity; P1 also pages
# PagerDuty (critical), P3 does not; with the API broken the evidence shows it.
f=runbooks/incident-investigation.yaml
# The run's id from its console output (last_run cannot tell two runs of one second apart).
rid() { sed -n 's/^[0-9:]* run \([0-9]\{8\}-[0-9]\{6\}-[0-9a-f]*\): .*/\1/p' <<<"$1" | head -n 1; }
log_of() { cat "$RUNBOOK_STATE_DIR/runs/$1/audit.jsonl"; }
bundles=$(mktemp -d)
inv() {
	rb run "$f" -p bundle_dir="$bundles" -p "external_status_urls=[\"$SANDBOX_RECEIVER_URL/health\"]" \
		--output text "$@"
}
pieces='00-summary.md 01-pods.txt 02-rollout-history.txt 03-top-pods.txt 04-error-logs.txt 05-health.json 06-dependencies.json 08-failed-logins.json'

# The API broken, and one failing request in its log.
sandbox break api >/dev/null
curl -s "$PERSONAPASS_API_URL/health" >/dev/null
out=$(inv -p severity=P1 -p "impact=Logins fail for most users" -p eta=14:30 2>&1); rc=$?
is "a P1 investigation succeeds" "$rc" 0
b=$bundles/$(rid "$out")
for p in $pieces SHA256SUMS manifest.json; do
	check "the bundle has $p" test -s "$b/$p"
done
check "SHA256SUMS matches the files" bash -c 'cd "$1" && sha256sum -c --quiet SHA256SUMS' _ "$b"
check "the manifest lists every piece with its hash" bash -c '
	cd "$1" && for p in $2; do
		jq -e --arg p "$p" --arg h "$(sha256sum <"$p" | cut -d" " -f1)" \
			"[.files[] | select(.name == \$p and .sha256 == \$h)] | length == 1" manifest.json >/dev/null || { echo "$p"; exit 1; }
	done' _ "$b" "$pieces"
check "the audit log holds the manifest's hash" \
	jq -se --arg h "$(sha256sum <"$b/SHA256SUMS" | cut -d' ' -f1)" \
	'map(select(.type == "step_finished" and .step == "bundle"))[0].output | fromjson | .json.sha256sums == $h' <<<"$(log_of "$(rid "$out")")"
check "the audit log verifies" rb audit verify "$(rid "$out")"

# The evidence shows the broken API.
check "the pods show api not ready" grep -q '^api-[0-9a-f]*-0 *0/1' "$b/01-pods.txt"
check "the health file has api's 500" jq -e '.services.api.status == 500 and .services.web.status == 200' "$b/05-health.json"
check "the error log has api's failed request" grep -q 'level=error .*path=/health status=500' "$b/04-error-logs.txt"
check "the database accepted connections" jq -e '.database.accepting_connections == true and .redis == "PONG"' "$b/06-dependencies.json"
check "failed logins are counted" jq -e --arg n "$(sql_db personapass "SELECT count(*) FROM audit_logs WHERE action = 'security.failed_login' AND created_at > now() - interval '24 hours'")" \
	'.total == ($n | tonumber)' "$b/08-failed-logins.json"
check "the history has every deployment" bash -c 'for d in web api ai-engine personachain; do grep -q "^== $d$" "$1" || exit 1; done' _ "$b/02-rollout-history.txt"

# The Veris initial alert, filled in, on Slack; PagerDuty paged as critical.
text=$(alerts /slack/ | jq -r '.json.text')
check "Slack got the template with the severity" grep -qx '🚨 INCIDENT ALERT - P1' <<<"$text"
for l in 'Service: PersonaPass' 'Impact: Logins fail for most users' 'Status: Investigating' 'ETA: 14:30' 'Updates: #incidents'; do
	check "the template says $l" grep -qxF "$l" <<<"$text"
done
check "Slack names the broken API" grep -q '^- api /health answered 500: forced unhealthy' <<<"$text"
check "Slack names the bundle" grep -qF "Evidence: $b" <<<"$text"
check "PagerDuty paged as critical" jq -se 'length == 1 and .[0].json.payload.severity == "critical"
	and (.[0].json.payload.summary | test("^\\[P1\\] PersonaPass: Logins fail"))' <<<"$(alerts /pagerduty/)"
check "the routing key is not in the log" bash -c '! grep -qF "$1" "$2"' _ "$PAGERDUTY_ROUTING_KEY" \
	"$RUNBOOK_STATE_DIR/runs/$(rid "$out")/audit.jsonl"
sandbox heal api >/dev/null

# P3, everything healthy: Slack only, and nothing abnormal but the failed logins.
: >"$SANDBOX_RECEIVER_LOG"
out=$(inv -p severity=P3 -p "impact=A typo on the settings page" 2>&1); rc=$?
is "a P3 investigation succeeds" "$rc" 0
text=$(alerts /slack/ | jq -r '.json.text')
check "Slack got the P3 template" grep -qx '🚨 INCIDENT ALERT - P3' <<<"$text"
check "no /health finding" bash -c '! grep -q "/health" <<<"$1"' _ "$text"
is "P3 does not page" "$(alerts /pagerduty/ | wc -l)" 0

# The bundle cannot be written: the alert still goes out, then the run fails and says so.
: >"$SANDBOX_RECEIVER_LOG"
touch "$bundles/not-a-dir"
out=$(rb run "$f" -p bundle_dir="$bundles/not-a-dir" -p 'external_status_urls=[]' -p severity=P2 -p impact=x \
	--output text 2>&1); rc=$?
is "an unwritable bundle fails the run" "$rc" 1
text=$(alerts /slack/ | jq -r '.json.text')
check "the alert still went out" grep -q 'INCIDENT ALERT - P2' <<<"$text"
check "and says the bundle was not written" grep -q 'the evidence bundle was NOT written' <<<"$text"
rm -rf "$bundles"
