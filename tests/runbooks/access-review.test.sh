# access-review in the sandbox: its findings are what SQL on the server says (legacy_admin a
# superuser, analytics_ro expired, both without a password, every sixth API key unused for
# 90 days, 5 admins); a role added now is found; the database unreachable alerts Slack.
f=runbooks/access-review.yaml
q() { sql_db postgres "$1"; }
finding() { journal | jq -c --arg k "$1" 'select(.type == "step_finished" and .step == "findings") | .output | fromjson | .[$k]'; }
list() { q "SELECT coalesce(json_agg($1 ORDER BY $1), '[]') FROM ($2) x" | jq -c .; }

out=$(rb run "$f" 2>&1); rc=$?
is "the review succeeds" "$rc" 0
[ "$rc" = 0 ] || printf '%s\n' "$out" | tail -n 20
is "superusers as on the server" "$(finding superusers | jq -c sort)" \
	"$(list rolname "SELECT rolname FROM pg_authid WHERE rolsuper AND rolname !~ '^pg_'")"
check "... legacy_admin among them" jq -e 'index("legacy_admin")' <<<"$(finding superusers)"
is "expired roles as on the server" "$(finding expired_roles | jq -c sort)" \
	"$(list rolname "SELECT rolname FROM pg_authid WHERE rolcanlogin AND rolvaliduntil < now()")"
is "... analytics_ro" "$(finding expired_roles)" '["analytics_ro"]'
is "roles logging in without a password as on the server" "$(finding login_without_password | jq -c sort)" \
	"$(list rolname "SELECT rolname FROM pg_authid WHERE rolcanlogin AND rolpassword IS NULL AND rolname !~ '^pg_'")"
is "unused API keys as on the server" "$(finding unused_api_keys | jq -c sort)" \
	"$(sql_db personapass "SELECT json_agg(api_key_id ORDER BY api_key_id) FROM api_keys WHERE expires_at > now() AND (last_used IS NULL OR last_used < now() - interval '90 days')" | jq -c .)"
is "... 50 of them (every sixth)" "$(finding unused_api_keys | jq length)" 50
is "the 5 admins, by id" "$(finding admins | jq -c '[.[].id] | sort')" \
	"$(sql_db personapass "SELECT json_agg(id ORDER BY id) FROM users WHERE role IN ('admin', 'super_admin')" | jq -c .)"
check "their e-mail addresses are redacted in the log (PII)" jq -e 'all(.[]; .email == "<email>")' <<<"$(finding admins)"
check "the role bindings the stand-in cannot list are noted, not a failure" jq -e 'test("role bindings not reviewed")' <<<"$(finding kubernetes_note)"
check "Slack got the review" grep -q 'access review .*: [0-9]* findings' <<<"$(alerts /slack/ | jq -r '.json.text')"
check "... naming legacy_admin" grep -q 'superuser roles (.*legacy_admin' <<<"$(alerts /slack/ | jq -r '.json.text')"

# A superuser created now is found by the next review; fail_on_findings fails the run.
q "CREATE ROLE shadow_admin LOGIN SUPERUSER" >/dev/null
: >"$SANDBOX_RECEIVER_LOG"
out=$(rb run "$f" -p fail_on_findings=true 2>&1); rc=$?
is "fail_on_findings fails a run with findings" "$rc" 1
check "a new superuser is a finding" jq -e 'index("shadow_admin")' <<<"$(finding superusers)"
check "... and one that logs in without a password" jq -e 'index("shadow_admin")' <<<"$(finding login_without_password)"
q "DROP ROLE shadow_admin" >/dev/null

# The database unreachable: the run fails, and Slack hears why.
: >"$SANDBOX_RECEIVER_LOG"
out=$(PG_ADMIN_URL="postgresql://rb_admin:x@127.0.0.1:1/postgres" rb run "$f" 2>&1); rc=$?
is "an unreachable database fails the review" "$rc" 1
text=$(alerts /slack/ | jq -r '.json.text')
check "Slack is told" grep -q 'access review failed (run ' <<<"$text"
check "... with the reason" grep -q '^db_roles: failed: .*Connection refused' <<<"$text"
