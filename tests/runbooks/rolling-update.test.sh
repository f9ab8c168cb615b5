# rolling-update in the sandbox: a good tag deploys and serves; a tag whose /health fails and
# a tag that crash-loops are rolled back (the old version serves again, on the cluster and from
# the service itself) and alert Slack; a tag already deployed changes nothing.
f=runbooks/rolling-update.yaml
# The run's id from its console output (last_run cannot tell two runs of one second apart).
rid() { sed -n 's/^[0-9:]* run \([0-9]\{8\}-[0-9]\{6\}-[0-9a-f]*\): .*/\1/p' <<<"$1" | head -n 1; }
log_of() { cat "$RUNBOOK_STATE_DIR/runs/$1/audit.jsonl"; }
image() { cluster_state | jq -r --arg a "$1" '.deployments[$a].image'; }
version() { curl -s "$1/status" | jq -r .version; }
up() { rb run "$f" -p app="$1" -p image_tag="$2" -p settle=0s -p health_retries=0 --approve set_image --output text; }

# A good tag: deployed, ready, serving, no alert.
out=$(up api 2.4.0 2>&1); rc=$?
is "2.4.0 deploys" "$rc" 0
is "the cluster runs 2.4.0" "$(image api)" personapass/api:2.4.0
is "api /status serves 2.4.0" "$(version "$PERSONAPASS_API_URL")" 2.4.0
is "no alert on success" "$(alerts /slack/ | wc -l)" 0
check "the previous image is an output" \
	jq -se 'map(select(.type == "step_finished" and .step == "deployment"))[0].outputs | fromjson | .image == "personapass/api:2.3.0"' <<<"$(log_of "$(rid "$out")")"
check "the audit log verifies" rb audit verify "$(rid "$out")"

# Without approval and no terminal, the run pauses at the gate and changes nothing.
out=$(rb run "$f" -p app=web -p image_tag=2.4.0 --output text </dev/null 2>&1); rc=$?
is "the gate pauses the run" "$rc" 3
is "nothing changed before the gate" "$(image web)" personapass/web:2.3.0

# The same tag again: the check finds it in place, no new revision, no gate needed.
rev=$(cluster_state | jq '.deployments.api.revision')
out=$(rb run "$f" -p app=api -p image_tag=2.4.0 -p settle=0s --output text </dev/null 2>&1); rc=$?
is "a second run of the same tag succeeds" "$rc" 0
check "it says the image is in place" grep -q 'set_image: satisfied' <<<"$out"
is "no new revision" "$(cluster_state | jq '.deployments.api.revision')" "$rev"

# A failed health check after the update: rolled back, the old version serves again, alerted.
: >"$SANDBOX_RECEIVER_LOG"
out=$(up api 2.5.0-unhealthy 2>&1); rc=$?
is "an unhealthy tag fails the run" "$rc" 1
is "the cluster runs 2.4.0 again" "$(image api)" personapass/api:2.4.0
is "api /status serves 2.4.0 again" "$(version "$PERSONAPASS_API_URL")" 2.4.0
check "api /health answers 200 again" curl -sf "$PERSONAPASS_API_URL/health"
check "the rollback is in the history" \
	jq -e '.deployments.api.history[-1] | .image == "personapass/api:2.4.0" and .cause == "rollout undo"' <<<"$(cluster_state)"
text=$(alerts /slack/ | jq -r '.json.text')
check "Slack names the update" grep -q 'rolling-update of api to personapass/api:2.5.0-unhealthy failed' <<<"$text"
check "Slack names the failed /health" grep -q 'health failed: GET .*/health: status 500' <<<"$text"
check "Slack says what serves now" grep -q 'api /status now: HTTP 200, version 2.4.0\.' <<<"$text"
check "the undo ran in the log" \
	jq -se 'map(select(.type == "step_finished" and .step == "set_image_undo"))[0].status == "succeeded"' <<<"$(log_of "$(rid "$out")")"

# A crash loop: rollout status fails, rolled back the same way.
: >"$SANDBOX_RECEIVER_LOG"
out=$(up web 2.4.0-crashloop 2>&1); rc=$?
is "a crash-looping tag fails the run" "$rc" 1
is "the cluster runs web 2.3.0 again" "$(image web)" personapass/web:2.3.0
is "web /status serves 2.3.0 again" "$(version "$PERSONAPASS_WEB_URL")" 2.3.0
check "Slack names the rollout" grep -q 'rollout_status failed: .*progress deadline' <<<"$(alerts /slack/ | jq -r '.json.text')"

# A tag that is no tag: refused before anything changes.
: >"$SANDBOX_RECEIVER_LOG"
out=$(up ai-engine 'x;rm -rf /' 2>&1); rc=$?
is "a bad tag fails" "$rc" 1
is "ai-engine untouched" "$(image ai-engine)" personapass/ai-engine:1.8.1
check "Slack says the image was not changed" grep -q 'The image was not changed' <<<"$(alerts /slack/ | jq -r '.json.text')"
