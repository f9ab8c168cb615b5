# capacity-analysis in the sandbox: each month's new and total users are those SQL counts on
# the server for that month (RUNBOOK_NOW pins the run's time), the node figures are kubectl
# top's, and the recommendation follows the thresholds: none at the guide's 70%/80%, scale
# now at 30%.
f=runbooks/capacity-analysis.yaml
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
analysis() { jq -sc 'map(select(.type == "step_finished" and .step == "analysis"))[0].output | fromjson' <<<"$(journal)"; }

out=$(RUNBOOK_NOW=$now rb run "$f" --output text 2>&1); rc=$?
is "the analysis runs" "$rc" 0
a=$(analysis)
is "12 months, the current one last" "$(jq -r '.months | length, .[-1].month' <<<"$a" | paste -sd' ')" "12 ${now:0:7}"
bad_months=0
while read -r month new total; do
	start="timestamptz '$month-01T00:00:00Z'"
	want_new=$(sql "SELECT count(*) FROM users WHERE created_at >= $start AND created_at < $start + interval '1 month' AND created_at < timestamptz '$now'")
	want_total=$(sql "SELECT count(*) FROM users WHERE created_at < least($start + interval '1 month', timestamptz '$now')")
	[ "$new $total" = "$want_new $want_total" ] || { bad_months=$((bad_months + 1)); echo "$month: got $new $total, SQL says $want_new $want_total"; }
done < <(jq -r '.months[] | "\(.month) \(.new_users) \(.total_users)"' <<<"$a")
is "every month's new and total users match SQL" "$bad_months" 0
is "the last total is every user" "$(jq -r '.months[-1].total_users' <<<"$a")" "$(sql "SELECT count(*) FROM users")"
top=$(kubectl top nodes --no-headers)
is "node CPU in millicores is kubectl top's sum" "$(jq -r .cpu_millicores <<<"$a")" "$(awk '{sub("m","",$2); s+=$2} END {print s}' <<<"$top")"
is "cluster CPU percent is the nodes' average" "$(jq -r .cpu_percent <<<"$a")" "$(awk '{sub("%","",$3); s+=$3} END {printf "%.1f", s/NR}' <<<"$top")"
is "cluster memory percent is the nodes' average" "$(jq -r .memory_percent <<<"$a")" "$(awk '{sub("%","",$5); s+=$5} END {printf "%.1f", s/NR}' <<<"$top")"
is "at 70%/80%: no scaling" "$(jq -r '[.scale_now, .add_nodes] | join(" ")' <<<"$a")" "false 0"
check "Slack got the recommendation" grep -q '^- No scaling needed: cluster CPU 35.3% (threshold 70%)' <<<"$(alerts /slack/ | jq -r '.json.text')"

RUNBOOK_NOW=$now rb run "$f" -p cpu_threshold=30 -p notify=false --output text >/dev/null 2>&1; rc=$?
is "a lower threshold runs too" "$rc" 0
a=$(analysis)
is "at 30% CPU: scale now, add 2 nodes" "$(jq -r '[.scale_now, .add_nodes] | join(" ")' <<<"$a")" "true 2"
is "the nodes over it are named" "$(jq -r '.hot_nodes | join(";")' <<<"$a")" "node-b (CPU 56%, memory 61%)"
check "the recommendation says so" grep -q '^Scale now: add 2 nodes (cluster CPU 35.3% / threshold 30%' <<<"$(jq -r .recommendation <<<"$a")"
