# key-rotation in the sandbox: the new database password works and the old does not (psql on
# the server), the api accepts a JWT signed with the new secret and refuses the old one, the
# API keys are extended once; then a failed restart rolls everything back.
f=runbooks/key-rotation.yaml
# An HS256 token signed with the JWT_SECRET (base64 in the secret) of secret $1 in the cluster.
token() {
	cluster_state | python3 -c '
import base64, hashlib, hmac, json, sys, time
key = base64.b64decode(json.load(sys.stdin)["secrets"]["personapass-secrets"]["JWT_SECRET"])
enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
h = enc(b"{\"alg\":\"HS256\",\"typ\":\"JWT\"}") + "." + enc(json.dumps({"sub": "test", "exp": int(time.time()) + 300}).encode())
print(h + "." + enc(hmac.new(key, h.encode(), hashlib.sha256).digest()))'
}
auth() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$PERSONAPASS_API_URL/auth/check"; }
login() { PGPASSWORD=$1 psql -X -qAt -h 127.0.0.1 -p "$SANDBOX_PG_PORT" -U personapass personapass -c 'SELECT current_user' 2>&1; }
db_secret() { cluster_state | jq -r '.secrets["postgres-secrets"].POSTGRES_PASSWORD // empty' | base64 -d; }

old_token=$(token)
is "before: the api accepts the current token" "$(auth "$old_token")" 200
old_pw=$SANDBOX_PG_PASSWORD
soon=$(sql_db personapass "SELECT count(*) FROM api_keys WHERE expires_at < now() + interval '30 days'")
is "before: 30 API keys expire within 30 days" "$soon" 30
soon_ids=$(sql_db personapass "SELECT string_agg(quote_literal(api_key_id), ',') FROM api_keys WHERE expires_at < now() + interval '30 days'")
others=$(sql_db personapass "SELECT md5(string_agg(api_key_id || expires_at::text, ',' ORDER BY api_key_id)) FROM api_keys WHERE api_key_id NOT IN ($soon_ids)")
restarted=$(cluster_state | jq -r '.deployments.api.restarted_at')
sleep 1         # the restart's time is to the second

out=$(rb run "$f" --approve all 2>&1); rc=$?
is "the rotation succeeds" "$rc" 0
[ "$rc" = 0 ] || printf '%s\n' "$out" | tail -n 30
new_pw=$(db_secret)
check "postgres-secrets holds a new password" test -n "$new_pw" -a "$new_pw" != "$old_pw"
is "the new password logs in on the server" "$(login "$new_pw")" personapass
check "the old password is refused on the server" bash -c '! PGPASSWORD=$1 psql -X -qAt -h 127.0.0.1 -p "$SANDBOX_PG_PORT" -U personapass personapass -c "SELECT 1"' _ "$old_pw"
check "the server holds a SCRAM verifier" test "$(sql_db personapass "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'personapass'")" = 'SCRAM-SHA-256$'
check "the api restarted" test "$(cluster_state | jq -r '.deployments.api.restarted_at')" != "$restarted"
is "the api refuses a token signed with the old secret" "$(auth "$old_token")" 401
is "the api accepts a token signed with the new secret" "$(auth "$(token)")" 200
is "no API key expires within 30 days any more" "$(sql_db personapass "SELECT count(*) FROM api_keys WHERE expires_at < now() + interval '30 days'")" 0
is "those 30 keys now expire in 90 days" "$(sql_db personapass "SELECT count(*) FROM api_keys WHERE api_key_id IN ($soon_ids) AND expires_at BETWEEN now() + interval '89 days' AND now() + interval '91 days'")" 30
is "no other key changed" "$(sql_db personapass "SELECT md5(string_agg(api_key_id || expires_at::text, ',' ORDER BY api_key_id)) FROM api_keys WHERE api_key_id NOT IN ($soon_ids)")" "$others"
is "the exactly-once marker is in the database" "$(sql_db personapass "SELECT count(*) FROM runbook_markers WHERE step = 'extend_api_keys'")" 1
check "Slack got the report" grep -q 'PersonaPass key rotation (run .*) done' <<<"$(alerts /slack/ | jq -r '.json.text')"
check "no new secret is in the state directory" bash -c '! grep -rqF -e "$1" -e "$2" "$RUNBOOK_STATE_DIR"' _ "$new_pw" "$(cluster_state | jq -r '.secrets["personapass-secrets"].JWT_SECRET' | base64 -d)"
check "... nor on the console" bash -c '! grep -qF -e "$1" <<<"$2"' _ "$new_pw" "$out"
check "the audit log verifies" rb audit verify "$(last_run)"

# A restart that fails (an image that never becomes ready): the run fails, and the rollback
# puts the old verifier, the old secrets and the api back as they were.
sandbox_reset >/dev/null
kubectl set image deployment/api api=personapass/api:2.3.0-crashloop >/dev/null
old_token=$(token)
old_secret=$(cluster_state | jq -r '.secrets["personapass-secrets"].JWT_SECRET')
verifier=$(sql_db personapass "SELECT rolpassword FROM pg_authid WHERE rolname = 'personapass'")
out=$(rb run "$f" --approve all 2>&1); rc=$?
is "a failed restart fails the run" "$rc" 1
check "the rollback ran the undo steps" grep -q 'set_db_password_undo: succeeded' <<<"$out"
is "the old password logs in again" "$(login "$SANDBOX_PG_PASSWORD")" personapass
is "... with its very verifier back" "$(sql_db personapass "SELECT rolpassword FROM pg_authid WHERE rolname = 'personapass'")" "$verifier"
is "JWT_SECRET is the old one again" "$(cluster_state | jq -r '.secrets["personapass-secrets"].JWT_SECRET')" "$old_secret"
is "POSTGRES_PASSWORD, absent before, is removed again" "$(cluster_state | jq -r '.secrets["postgres-secrets"] | has("POSTGRES_PASSWORD")')" false
check "Slack was told it failed and was undone" grep -q 'key rotation failed (run .*); its finished steps were undone' <<<"$(alerts /slack/ | jq -r '.json.text')"

# Refused at the gate: nothing changes.
sandbox_reset >/dev/null
out=$(rb run "$f" </dev/null 2>&1); rc=$?
is "without --approve the run pauses at its gates" "$rc" 3
is "the password is untouched while it waits" "$(login "$SANDBOX_PG_PASSWORD")" personapass
