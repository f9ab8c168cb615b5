# weekly-health-report in the sandbox: the markdown file is written where report_dir says,
# its user numbers are those SQL gives on the server for the same period (RUNBOOK_NOW pins
# the run's time), its security count is the API log lines planted in the period; a service
# down and the database unreachable are lines in the report, the latter fails the run.
f=runbooks/weekly-health-report.yaml
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
dir=$SANDBOX_DIR/reports
file=$dir/weekly-health-report-${now%%T*}.md
# row NAME: the value of NAME in the report's table
row() { sed -n "s/^| $1 | \([0-9]*\) |$/\1/p" "$file"; }
p="timestamptz '$now' - interval '7 days'" q="timestamptz '$now'"

# Security events: 3 in the period, 2 older than 7 days, and ordinary lines.
log=$SANDBOX_CLUSTER_DIR/logs/api.log
ts() { date -u -d "$1" +%Y-%m-%dT%H:%M:%SZ; }
{
	echo "$(ts '10 days ago') level=warn event=security.failed_login user=7"
	echo "$(ts '8 days ago') level=warn event=security.failed_login user=8"
	echo "$(ts '3 days ago') level=warn event=security.failed_login user=9"
	echo "$(ts '2 days ago') level=info method=GET path=/health status=200"
	echo "$(ts '1 day ago') level=error event=security.token_reuse user=10"
	echo "$(ts '1 hour ago') level=warn event=security.failed_login user=11"
} >>"$log"

out=$(RUNBOOK_NOW=$now rb run "$f" -p report_dir="$dir" --output text 2>&1); rc=$?
is "the report runs" "$rc" 0
check "the file is there" test -s "$file"
is "total users match SQL" "$(row total_users)" "$(sql "SELECT count(*) FROM users")"
is "new users in 7 days match SQL" "$(row new_users)" "$(sql "SELECT count(*) FROM users WHERE created_at >= $p AND created_at < $q")"
is "active users in 7 days match SQL" "$(row active_users)" \
	"$(sql "SELECT count(DISTINCT user_id) FROM user_sessions WHERE created_at >= $p AND created_at < $q")"
is "new sessions in 7 days match SQL" "$(row new_sessions)" "$(sql "SELECT count(*) FROM user_sessions WHERE created_at >= $p AND created_at < $q")"
check "the numbers are not all zero" test "$(row new_users)" -gt 0 -a "$(row new_sessions)" -gt 0
check "3 security events in the period, by kind" bash -c 'grep -q "^3 lines of the API log in 7 days mention \"security\"" "$1" &&
	grep -q "^- security.failed_login: 2$" "$1" && grep -q "^- security.token_reuse: 1$" "$1"' _ "$file"
check "each service's version and uptime" bash -c 'grep -q "^| api | ok | 2.3.0 | .* | 0d 0h [0-9]*m |$" "$1" &&
	grep -q "^| ai-engine | ok | 1.8.1 |" "$1"' _ "$file"
check "node usage as kubectl top gives it" grep -q '^| node-b | 2240m | 56% | 9830Mi | 61% |$' "$file"
check "the run's output is the same markdown" bash -c 'diff <(jq -sj "map(select(.type == \"step_finished\" and .step == \"report\"))[0].output | fromjson | .markdown" <<<"$1") "$2"' _ "$(journal)" "$file"
check "Slack got the report" grep -q '^| total_users | ' <<<"$(alerts /slack/ | jq -r '.json.text')"

# ai-engine down and the database unreachable: both in the report, the run fails.
kubectl scale deployment/ai-engine --replicas=0 >/dev/null
rm -f "$file"
out=$(RUNBOOK_NOW=$now DATABASE_URL="postgresql://personapass:x@127.0.0.1:1/personapass" \
	rb run "$f" -p report_dir="$dir" --output text 2>&1); rc=$?
is "no database: the run fails" "$rc" 1
check "no database: the file is written all the same" grep -q '^- database: ' "$file"
check "ai-engine down is a line of the report" grep -q '^| ai-engine | HTTP 503 scaled to 0 replicas' "$file"
