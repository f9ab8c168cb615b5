# rollback in the sandbox: after a good update, the previous image serves again; --to-revision
# goes to the one named; with nothing to go back to it changes nothing and alerts Slack.
f=runbooks/rollback.yaml
# The run's id from its console output (last_run cannot tell two runs of one second apart).
rid() { sed -n 's/^[0-9:]* run \([0-9]\{8\}-[0-9]\{6\}-[0-9a-f]*\): .*/\1/p' <<<"$1" | head -n 1; }
log_of() { cat "$RUNBOOK_STATE_DIR/runs/$1/audit.jsonl"; }
image() { cluster_state | jq -r --arg a "$1" '.deployments[$a].image'; }
version() { curl -s "$1/status" | jq -r .version; }

# Nothing to roll back to: refused before anything changes, and Slack hears why.
out=$(rb run "$f" -p app=api --approve undo --output text 2>&1); rc=$?
is "no history fails" "$rc" 1
is "api untouched" "$(cluster_state | jq '.deployments.api.revision')" 1
check "Slack says there is no earlier revision" grep -q 'has_history failed: .*api has no earlier revision' \
	<<<"$(alerts /slack/ | jq -r '.json.text')"

# Two good updates, then a rollback: the previous image (2.4.0) serves again.
for tag in 2.4.0 2.5.0; do
	rb run runbooks/rolling-update.yaml -p app=api -p image_tag=$tag -p settle=0s --approve set_image \
		--output text >/dev/null 2>&1 || bad "rolling-update to $tag failed"
done
is "api runs 2.5.0 before the rollback" "$(image api)" personapass/api:2.5.0
: >"$SANDBOX_RECEIVER_LOG"
out=$(rb run "$f" -p app=api --approve undo --output text 2>&1); rc=$?
is "the rollback succeeds" "$rc" 0
is "the cluster runs the previous image" "$(image api)" personapass/api:2.4.0
is "api /status serves 2.4.0" "$(version "$PERSONAPASS_API_URL")" 2.4.0
check "api /health answers 200" curl -sf "$PERSONAPASS_API_URL/health"
is "no alert on success" "$(alerts /slack/ | wc -l)" 0
check "the summary names both images" jq -se 'map(select(.type == "step_finished" and .step == "summary"))[0].output
	| fromjson | .from_image == "personapass/api:2.5.0" and .image == "personapass/api:2.4.0"' <<<"$(log_of "$(rid "$out")")"
check "the audit log verifies" rb audit verify "$(rid "$out")"

# --to-revision: back to the first revision (2.3.0).
out=$(rb run "$f" -p app=api -p to_revision=1 --approve undo --output text 2>&1); rc=$?
is "the rollback to revision 1 succeeds" "$rc" 0
is "the cluster runs revision 1's image" "$(image api)" personapass/api:2.3.0
is "api /status serves 2.3.0" "$(version "$PERSONAPASS_API_URL")" 2.3.0

# A revision that is not in the history: refused, nothing changed.
rev=$(cluster_state | jq '.deployments.api.revision')
out=$(rb run "$f" -p app=api -p to_revision=99 --approve undo --output text 2>&1); rc=$?
is "an unknown revision fails" "$rc" 1
is "no new revision" "$(cluster_state | jq '.deployments.api.revision')" "$rev"
check "Slack says the revision is unknown" grep -q 'revision 99 is not in the history of api' \
	<<<"$(alerts /slack/ | jq -r '.json.text')"

# Rolling back onto a bad image: the verification fails, Slack hears what serves now.
sandbox break web >/dev/null
rb run runbooks/rolling-update.yaml -p app=web -p image_tag=2.4.0 -p settle=0s -p health_retries=0 \
	--approve set_image --output text >/dev/null 2>&1    # fails its health check and rolls back itself
: >"$SANDBOX_RECEIVER_LOG"
out=$(rb run "$f" -p app=web -p health_retries=0 --approve undo --output text 2>&1); rc=$?
is "an unhealthy result fails the rollback" "$rc" 1
text=$(alerts /slack/ | jq -r '.json.text')
check "Slack names the failed /health" grep -q 'health failed: GET .*/health: status 500' <<<"$text"
check "Slack says the rollback is not undone" grep -q 'it is not undone automatically' <<<"$text"
sandbox heal web >/dev/null
