#!/usr/bin/env bash
# notify.* against the tests' HTTP server standing in for Slack, PagerDuty and a
# webhook: the bodies the server received are checked, not the steps' outputs.
set -uo pipefail
: "${RUNBOOK:?}"
cd "$(dirname "$0")/.."
. tests/servers/servers.sh
tmp=$(mktemp -d)
trap 'servers_stop; rm -rf "$tmp"' EXIT
pass=0 fail=0
check() {                 # check DESCRIPTION COMMAND...
	if "${@:2}" >/dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $1"; fi
}
rb() { ${RUNBOOK_WRAP:-} "$RUNBOOK" "$@"; }
if ! servers_start http; then
	echo "FAIL the HTTP server did not start"
	echo "notify: 0 passed, 1 failed"
	exit 1
fi
base=$RB_TEST_HTTP_URL
st="$tmp/state"
received() { curl -s "$base/_requests?path=$1"; }
export RB_TEST_SLACK_URL="$base/slack/T000/B000/sl4ckSecretPath"
export RB_TEST_PD_KEY="R0utingKeySecret0123456789abcdef"
export RB_TEST_HOOK_URL="$base/hook/h00kSecretPath"
export RB_TEST_ALERT_CHANNELS='[{"id": "slack_secops", "type": "slack_webhook", "url": "'"$base"'/slack/T1/B1/chanSecretA"},
 {"id": "pagerduty", "type": "pagerduty_events_v2", "routingKey": "chanR0utingKey456789", "source": "oars-prod", "url": "'"$base"'/pagerduty/v2/enqueue"},
 {"id": "ops_hook", "type": "generic_webhook", "url": "'"$base"'/hook/chanSecretB", "headers": {"X-Team": "ops"}}]'

out=$(rb run --state-dir "$st" -p pd_url="$base/pagerduty/v2/enqueue" tests/notify/alerts.yaml 2>&1)
check "Slack, PagerDuty (trigger, resolve), a webhook and the channels: all sent" grep -q 'check: succeeded' <<<"$out"
check "Slack got the text" bash -c "curl -s '$base/_requests?path=/slack/T000' | jq -e '.[0].body | fromjson | .text == \"Evening maintenance done\"'"
check "PagerDuty got a trigger with the mapped severity and details" bash -c "curl -s '$base/_requests?path=/pagerduty' | jq -e 'map(.body | fromjson | select(.routing_key == \"$RB_TEST_PD_KEY\" and .event_action == \"trigger\")) | .[0] | .payload.severity == \"critical\" and .payload.custom_details.p95_ms == 250'"
check "... and the resolve with the dedup key" bash -c "curl -s '$base/_requests?path=/pagerduty' | jq -e 'map(.body | fromjson | select(.event_action == \"resolve\")) | .[0] | .dedup_key == \"api-health\" and .routing_key == \"$RB_TEST_PD_KEY\"'"
check "the webhook got its JSON" bash -c "curl -s '$base/_requests?path=/hook/h00k' | jq -e '.[0].body | fromjson | .status == \"degraded\"'"
check "the channels: Slack got title and details" bash -c "curl -s '$base/_requests?path=/slack/T1' | jq -e '.[0].body | fromjson | .text | test(\"backup-drill failed\") and test(\"RPO 22\")'"
check "the channels: PagerDuty got SEV2 as error, its source and routing key" bash -c "curl -s '$base/_requests?path=/pagerduty' | jq -e 'map(.body | fromjson | select(.routing_key == \"chanR0utingKey456789\")) | .[0] | .payload.severity == \"error\" and .payload.source == \"oars-prod\"'"
check "the channels: the webhook got its headers and the run id" bash -c "curl -s '$base/_requests?path=/hook/chanSecretB' | jq -e '.[0].headers[\"x-team\"] == \"ops\" and (.[0].body | fromjson | .run_id | test(\"^2026\"))'"
check "only: one channel" [ "$(received /hook/chanSecretB | jq length)" = 2 ]
# The alerts carry the run's audit log head as they were sent: the log up to them is
# checked against that copy.
head=$(received /hook/chanSecretB | jq -r '.[0].body | fromjson | .audit_head')
check "a webhook alert carries the audit log head" grep -qE '^[0-9]+:[0-9a-f]{64} \(key [0-9a-f]{16}\)$' <<<"$head"
check "PagerDuty's custom details carry it too" bash -c "curl -s '$base/_requests?path=/pagerduty' | jq -e 'map(.body | fromjson | select(.routing_key == \"chanR0utingKey456789\")) | .[0] | .payload.custom_details.audit_head | test(\"^[0-9]+:\")'"
check "... and Slack's text" bash -c "curl -s '$base/_requests?path=/slack/T1' | jq -e '.[0].body | fromjson | .text | test(\"audit log head [0-9]+:\")'"
id=$(ls -t "$st/runs" | head -n 1)
check "the run's log verifies against the head an alert carried" rb audit verify --state-dir "$st" --head "${head%% *}" "$id"
for s in sl4ckSecretPath R0utingKeySecret h00kSecretPath chanSecretA chanR0utingKey chanSecretB; do
	check "secret $s is nowhere in the state directory" bash -c "! grep -rq '$s' '$st'"
	check "nor on the console" bash -c "! grep -q '$s' <<<'$out'"
done

# A channel that fails: the step fails, naming it, and the others are still sent.
dead="http://127.0.0.1:$(_servers_free_port)"
export RB_TEST_ALERT_CHANNELS='[{"id": "down", "type": "slack_webhook", "url": "'"$dead"'/slack/x/y/deadSecretPath"},
 {"id": "up", "type": "generic_webhook", "url": "'"$base"'/hook/stillSent"}]'
out=$(rb run --state-dir "$st" tests/notify/down.yaml 2>&1)
check "a channel that cannot be reached fails the step" [ $? -eq 1 ]
check "... naming the channel, not its URL's path" grep -q 'all: failed.*down: POST http://127.0.0.1:[0-9]*/\*\*\*: Failed to connect' <<<"$out"
check "the other channel was still sent" [ "$(received /hook/stillSent | jq length)" = 1 ]
check "the dead URL's path is nowhere" bash -c "! grep -rq deadSecretPath '$st'"
export RB_TEST_ALERT_CHANNELS='[{"id": "x", "type": "carrier_pigeon", "url": "https://example.com/secretPigeon"}]'
out=$(rb run --state-dir "$st" tests/notify/down.yaml 2>&1)
check "an unknown channel type is named, at the argument" grep -q "all: failed.*tests/notify/down.yaml:9:17: argument 'channels' of action 'notify.channels': channel 'x': unknown type" <<<"$out"
check "... without the config's text" bash -c "! grep -q secretPigeon <<<'$out'"

# Channels that are not JSON: jansson quotes up to 20 bytes near the error, a piece of the
# secret that the redactor cannot know (here: an escape that JSON does not have).
export RB_TEST_ALERT_CHANNELS='[{"id": "x", "type": "slack_webhook", "url": "k3y\qSecretHookPath"}]'
out=$(rb run --state-dir "$st" tests/notify/down.yaml 2>&1)
check "channels that are not JSON are refused, saying where" grep -q "all: failed.*argument 'channels' of action 'notify.channels': not JSON (line 1, column [0-9]*: invalid escape)" <<<"$out"
check "... quoting nothing of them" bash -c '! grep -qF "k3y" <<<"$1"' _ "$out"

echo "notify: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
