# security-monitoring in the sandbox: quiet when nothing crosses a threshold; a CRITICAL
# vulnerability planted for a deployed image, and a burst of failed logins, each page
# PagerDuty (the event's body checked at the receiver) and fail the run.
f=runbooks/security-monitoring.yaml
evaluate() { journal | jq -c 'select(.type == "step_finished" and .step == "evaluate") | .output | fromjson'; }
pages() { alerts /pagerduty/ | jq -c '.json'; }

out=$(rb run "$f" 2>&1); rc=$?
is "a quiet hour passes" "$rc" 0
[ "$rc" = 0 ] || printf '%s\n' "$out" | tail -n 20
is "no page" "$(pages | wc -l)" 0
is "failed logins in the day, as audit_logs says" "$(evaluate | jq .facts.failed_logins.day)" \
	"$(sql_db personapass "SELECT count(*) FROM audit_logs WHERE action = 'security.failed_login' AND created_at > now() - interval '1 day'")"
is "every deployed image was scanned" "$(evaluate | jq -c '.facts.vulnerabilities | keys')" \
	"$(kubectl get deployments -o json | jq -c '[.items[].spec.template.spec.containers[].image] | unique')"
check "the certificate's days are known" jq -e '.facts.cert_days_left > 7' <<<"$(evaluate)"

# A CRITICAL finding in the image the api runs: PagerDuty gets it.
image=$(kubectl get deployment/api -o json | jq -r '.spec.template.spec.containers[0].image')
jq -n '[{VulnerabilityID: "CVE-2026-0001", PkgName: "openssl", Severity: "CRITICAL", Title: "planted"},
	{VulnerabilityID: "CVE-2026-0002", PkgName: "zlib", Severity: "HIGH"}]' \
	>"$SANDBOX_TRIVY_DIR/$(tr '/:' '__' <<<"$image").json"
: >"$SANDBOX_RECEIVER_LOG"
out=$(rb run "$f" 2>&1); rc=$?
is "a critical vulnerability fails the run" "$rc" 1
is "one PagerDuty event" "$(pages | wc -l)" 1
ev=$(pages | head -n 1)
is "... a trigger" "$(jq -r .event_action <<<"$ev")" trigger
is "... with the routing key" "$(jq -r .routing_key <<<"$ev")" "$PAGERDUTY_ROUTING_KEY"
is "... severity critical" "$(jq -r .payload.severity <<<"$ev")" critical
check "... its summary names the image and the CVE" grep -q "PersonaPass security: $image: CVE-2026-0001 (openssl CRITICAL)" <<<"$(jq -r .payload.summary <<<"$ev")"
is "... its details count the image's findings" "$(jq -cS --arg i "$image" '.payload.custom_details.facts.vulnerabilities[$i]' <<<"$ev")" '{"CRITICAL":1,"HIGH":1}'
check "Slack has the same findings" grep -q ":red_circle: $image: CVE-2026-0001" <<<"$(alerts /slack/ | jq -r '.json.text')"
check "the HIGH one is a warning there" grep -q ":warning: $image: 1 HIGH vulnerabilities" <<<"$(alerts /slack/ | jq -r '.json.text')"
rm -f "$SANDBOX_TRIVY_DIR"/*.json

# A burst of failed logins in the last hour: paged with the count the server has.
sql_db personapass "INSERT INTO audit_logs (id, user_id, action, created_at)
	SELECT 100000 + i, 1 + i % 50, 'security.failed_login', now() - make_interval(mins => i % 30)
	FROM generate_series(1, 60) AS i" >/dev/null
n=$(sql_db personapass "SELECT count(*) FROM audit_logs WHERE action = 'security.failed_login' AND created_at > now() - interval '1 hour'")
: >"$SANDBOX_RECEIVER_LOG"
out=$(rb run "$f" 2>&1); rc=$?
is "a burst of failed logins fails the run" "$rc" 1
check "PagerDuty is told the server's count" grep -q "PersonaPass security: $n failed logins in the last 1h (> 50)" <<<"$(pages | jq -r .payload.summary)"

# The database unreachable: the monitor cannot count, and says so by paging.
: >"$SANDBOX_RECEIVER_LOG"
out=$(DATABASE_URL="postgresql://personapass:x@127.0.0.1:1/personapass" rb run "$f" 2>&1); rc=$?
is "a monitor that cannot count fails" "$rc" 1
check "... and pages why" grep -q 'failed logins could not be counted: .*Connection refused' <<<"$(pages | jq -r .payload.summary)"
