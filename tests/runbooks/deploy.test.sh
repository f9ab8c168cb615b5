# deploy in the sandbox: the migrations' effects are on the server, recorded in
# _prisma_migrations; a second deploy applies nothing twice; every service restarted and its
# /status verified; a broken migration leaves nothing behind and alerts; an edited one stops
# the deploy before anything runs.
f=runbooks/deploy.yaml
# The run's id from its console output (last_run cannot tell two runs of one second apart).
rid() { sed -n 's/^[0-9:]* run \([0-9]\{8\}-[0-9]\{6\}-[0-9a-f]*\): .*/\1/p' <<<"$1" | head -n 1; }
log_of() { cat "$RUNBOOK_STATE_DIR/runs/$1/audit.jsonl"; }
db() { sql_db personapass "$1"; }
restarted() { cluster_state | jq -c '.deployments | {web: .web.restarted_at, api: .api.restarted_at, "ai-engine": .["ai-engine"].restarted_at}'; }
before=$(restarted)
sleep 1    # restarted_at has a resolution of one second

out=$(rb run "$f" --approve migrate --output text 2>&1); rc=$?
is "the deploy succeeds" "$rc" 0
is "users.mfa_enabled exists" "$(db "SELECT data_type FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'mfa_enabled'")" boolean
is "its index exists" "$(db "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_mfa_enabled_idx'")" 1
is "the backfill ran" "$(db "SELECT count(*) FILTER (WHERE reviewed_at IS NOT NULL) = count(*) FILTER (WHERE status = 'verified') AND count(reviewed_at) > 0 FROM verification_requests")" t
is "both recorded with prisma's checksums" \
	"$(db "SELECT string_agg(migration_name || ' ' || checksum || ' ' || applied_steps_count, ',' ORDER BY migration_name) FROM _prisma_migrations WHERE finished_at IS NOT NULL")" \
	"$(for d in runbooks/migrations/*/; do n=$(basename "$d"); s=$(sha256sum <"$d/migration.sql" | cut -d' ' -f1); printf '%s %s %s,' "$n" "$s" "$([ "$n" = 20260101090000_add_users_mfa ] && echo 2 || echo 3)"; done | sed 's/,$//')"
is "the audited migration ran once" "$(db "SELECT count(*) FROM audit_logs WHERE action = 'schema.migration'")" 1
after=$(restarted)
check "every service restarted" jq -en --argjson b "$before" --argjson a "$after" '[$b | keys[] | $a[.] > $b[.]] | all'
check "verify read every /status" jq -se 'map(select(.type == "step_finished" and .step == "verify"))[0].output
	| fromjson | .services | length == 3' <<<"$(log_of "$(rid "$out")")"
is "no alert on success" "$(alerts /slack/ | wc -l)" 0

# A second deploy: nothing pending, no gate, nothing applied twice.
out=$(rb run "$f" --output text </dev/null 2>&1); rc=$?
is "a second deploy succeeds without approval" "$rc" 0
check "it needed no gate" grep -q 'migrate: no approval needed' <<<"$out"
is "still one row per migration" "$(db "SELECT count(*) FROM _prisma_migrations")" 2
is "the audited migration still ran once" "$(db "SELECT count(*) FROM audit_logs WHERE action = 'schema.migration'")" 1

# A broken migration after a good one: the good one commits, the broken one leaves nothing.
dir=$(mktemp -d)
cp -r runbooks/migrations/. "$dir/"
mkdir "$dir/20260103090000_add_nickname" "$dir/20260104090000_broken"
printf 'ALTER TABLE "users" ADD COLUMN "nickname" TEXT;\n' >"$dir/20260103090000_add_nickname/migration.sql"
printf 'ALTER TABLE "users" ADD COLUMN "locale" TEXT;\nALTER TABLE "no_such_table" ADD COLUMN "x" INT;\n' \
	>"$dir/20260104090000_broken/migration.sql"
: >"$SANDBOX_RECEIVER_LOG"
before=$(restarted)
out=$(rb run "$f" -p migrations_dir="$dir" --approve migrate --output text 2>&1); rc=$?
is "a broken migration fails the deploy" "$rc" 1
is "the good one committed" "$(db "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'nickname'")" 1
is "the broken one left no column" "$(db "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'locale'")" 0
is "and no row" "$(db "SELECT count(*) FROM _prisma_migrations WHERE migration_name = '20260104090000_broken'")" 0
is "no service restarted" "$(restarted)" "$before"
text=$(alerts /slack/ | jq -r '.json.text')
check "Slack names the error" grep -q 'migrate failed: .*relation "no_such_table" does not exist' <<<"$text"
check "Slack names what committed" grep -q 'committed in this run: 20260103090000_add_nickname (pending' <<<"$text"

# An applied migration edited afterwards: stopped before anything runs.
rm -r "$dir/20260104090000_broken"
echo '-- edited' >>"$dir/20260101090000_add_users_mfa/migration.sql"
: >"$SANDBOX_RECEIVER_LOG"
out=$(rb run "$f" -p migrations_dir="$dir" --approve migrate --output text 2>&1); rc=$?
is "an edited migration fails the deploy" "$rc" 1
check "Slack says it was modified" grep -q 'migration 20260101090000_add_users_mfa was modified after it was applied' \
	<<<"$(alerts /slack/ | jq -r '.json.text')"
rm -rf "$dir"

# An unhealthy service after the restart: the deploy fails and says which.
sandbox break ai-engine >/dev/null
: >"$SANDBOX_RECEIVER_LOG"
out=$(rb run "$f" -p status_retries=0 --output text </dev/null 2>&1); rc=$?
is "an unhealthy service fails the deploy" "$rc" 1
check "Slack names ai-engine's /status" grep -q 'verify failed: .*ai-engine /status answered 503' \
	<<<"$(alerts /slack/ | jq -r '.json.text')"
sandbox heal ai-engine >/dev/null
