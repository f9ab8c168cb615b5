# daily-health-check in the sandbox: healthy, then each kind of failure is a finding that
# reaches Slack with its reason, and the run fails.
f=runbooks/daily-health-check.yaml

out=$(rb run "$f" --output text 2>&1); rc=$?
is "healthy run exits 0" "$rc" 0
n=$(alerts /slack/ | jq -s 'length')
is "one Slack report" "$n" 1
check "the report says 0 critical" grep -q '0 critical' <<<"$(alerts /slack/ | jq -r '.json.text')"
check "the newest backup is a fact" \
	jq -se 'map(select(.type == "step_finished" and .step == "evaluate"))[0].output | fromjson | .facts.newest_backup | test("db_backup_")' <<<"$(journal)"
check "the audit log verifies" rb audit verify "$(last_run)"

# An unhealthy service: critical, named with the service's own words; the run fails.
sandbox break api >/dev/null
curl -s -X DELETE "$SANDBOX_RECEIVER_URL/_requests" >/dev/null; : >"$SANDBOX_RECEIVER_LOG"
out=$(rb run "$f" --output text 2>&1); rc=$?
is "unhealthy api fails the run" "$rc" 1
text=$(alerts /slack/ | jq -r '.json.text')
check "Slack names the failing /health" grep -q ":red_circle: $PERSONAPASS_API_URL/health failed: HTTP 500" <<<"$text"
check "Slack names the failing /status" grep -q ':red_circle: api /status answered 503: forced unhealthy' <<<"$text"
check "the verdict names it on the console" grep -q 'critical: .*api' <<<"$out"
sandbox heal api >/dev/null

# A service scaled to nothing and Redis stopped answering: each its own finding.
kubectl scale deployment/ai-engine --replicas=0 >/dev/null
: >"$SANDBOX_RECEIVER_LOG"
out=$(REDIS_PASSWORD=wrong-password rb run "$f" --output text 2>&1); rc=$?
is "ai-engine down fails the run" "$rc" 1
text=$(alerts /slack/ | jq -r '.json.text')
check "Slack names ai-engine" grep -q ':red_circle: ai-engine /status answered 503: scaled to 0 replicas' <<<"$text"
check "Slack names Redis with the reason" grep -q ':red_circle: Redis unreachable: .*\(WRONGPASS\|invalid\|auth\)' <<<"$text"
check "the wrong password is not in Slack" bash -c '! grep -q wrong-password <<<"$1"' _ "$text"
kubectl scale deployment/ai-engine --replicas=2 >/dev/null

# No backup in the bucket: critical.
rm -rf "$SANDBOX_S3_DIR/personapass-backups/daily"
: >"$SANDBOX_RECEIVER_LOG"
rb run "$f" --output text >/dev/null 2>&1; rc=$?
is "no backup fails the run" "$rc" 1
check "Slack says there is no backup" grep -q ':red_circle: no backups in s3://personapass-backups/daily/' \
	<<<"$(alerts /slack/ | jq -r '.json.text')"

# The database unreachable: a finding, not a crash of the check.
: >"$SANDBOX_RECEIVER_LOG"
DATABASE_URL="postgresql://personapass:x@127.0.0.1:1/personapass" rb run "$f" --output text >/dev/null 2>&1; rc=$?
is "database down fails the run" "$rc" 1
check "Slack says the database is unreachable" grep -q ':red_circle: database unreachable: ' \
	<<<"$(alerts /slack/ | jq -r '.json.text')"

# A reviewer's dry run: the probes run (they only read), nothing is posted.
: >"$SANDBOX_RECEIVER_LOG"
out=$(rb run "$f" --dry-run --probe 2>&1); rc=$?
is "dry-run --probe exits 0" "$rc" 0
is "dry-run --probe posts nothing" "$(alerts /slack/ | wc -l)" 0
check "the probe shows the database's answer" grep -q 'cache_hit_ratio' <<<"$out"

# Its secrets are in nothing it kept: the webhook, the database URL, Redis's password.
for s in "$SLACK_WEBHOOK_URL" "$DATABASE_URL" "$REDIS_PASSWORD"; do
	check "a secret of the run is in no file of the state directory" bash -c '! grep -rqF -- "$1" "$2"' _ "$s" "$RUNBOOK_STATE_DIR"
done
