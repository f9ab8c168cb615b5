#!/usr/bin/env bash
# The guides' runbooks (runbooks/*.yaml) in the sandbox (runbooks/sandbox/):
#   1. each validates, and its plan with the defaults (and the arguments in
#      tests/runbooks/NAME.args, one a line, when there is one) matches
#      tests/runbooks/NAME.plan (UPDATE=1 rewrites them; review the diff);
#   2. each tests/runbooks/NAME.test.sh runs, in a sandbox reset before it: the runbook for
#      real, its failure paths, its effects checked on the servers (psql, redis-cli, the
#      cluster's state, the alert receiver's log), not in its own output.
# A test file is sourced in a subshell with the helpers below; ONLY=NAME runs one.
set -uo pipefail
: "${RUNBOOK:?}"
cd "$(dirname "$0")/.."
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL ${T:-}: $*"; }
# check DESC COMMAND...: one case, passing when COMMAND succeeds.
# Its output is shown only when it fails.
check() {
	local d=$1 out
	shift
	if out=$("$@" 2>&1); then ok; else bad "$d"; printf '%s\n' "$out" | head -n 20; fi
}
# is DESC GOT WANT
is() { if [ "$2" = "$3" ]; then ok; else bad "$1: got '$2', want '$3'"; fi; }

# --- 1. validate and plan, outside the sandbox (the guide's production defaults) -----
for f in runbooks/*.yaml; do
	name=$(basename "$f" .yaml)
	out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" validate "$f" 2>&1) && ok || bad "validate $f: $out"
	golden=tests/runbooks/$name.plan
	# NAME.args: the plan's arguments, one a line (the required params: -p, app=api).
	args=()
	[ -f "tests/runbooks/$name.args" ] && mapfile -t args <"tests/runbooks/$name.args"
	out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" plan "$f" "${args[@]}" 2>&1)
	if [ -n "${UPDATE:-}" ]; then
		printf '%s\n' "$out" >"$golden"
		ok
	elif [ ! -f "$golden" ]; then
		bad "$golden is missing (UPDATE=1 writes it)"
	elif [ "$out" = "$(<"$golden")" ]; then
		ok
	else
		bad "plan of $f differs from $golden:"
		diff <(printf '%s\n' "$out") "$golden" | head -20
	fi
done

# --- 2. in the sandbox ------------------------------------------------------------------
# The real clock: the sandbox's backups, certificates and blocks are dated by it.
unset RUNBOOK_NOW
. runbooks/sandbox/sandbox.sh
trap sandbox_stop EXIT
if ! sandbox_start; then
	echo "runbooks: 0 passed, 1 failed (the sandbox did not start)"
	exit 1
fi
# The helpers of the test files.
rb() { ${RUNBOOK_WRAP:-} "$RUNBOOK" "$@"; }
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$PG_ADMIN_URL" -d personapass -c "$1"; }
sql_db() { psql -X -q -At -v ON_ERROR_STOP=1 "postgresql://rb_admin:$RB_TEST_PG_PASSWORD@127.0.0.1:$SANDBOX_PG_PORT/$1" -c "$2"; }
rcli() { redis-cli -h 127.0.0.1 -p "$SANDBOX_REDIS_PORT" --no-auth-warning -a "$REDIS_PASSWORD" "$@"; }
# alerts [PATH_PREFIX]: what the receiver got, one JSON object a line (path, body as JSON).
alerts() { jq -c --arg p "${1:-/}" 'select(.path | startswith($p)) | {path, json, body}' "$SANDBOX_RECEIVER_LOG"; }
# The newest run's id, and a record of its audit log.
last_run() { ls -1 "$RUNBOOK_STATE_DIR/runs" | sort | tail -n 1; }
journal() { cat "$RUNBOOK_STATE_DIR/runs/$(last_run)/audit.jsonl"; }
cluster_state() { cat "$SANDBOX_CLUSTER_DIR/state.json"; }

for t in tests/runbooks/*.test.sh; do
	T=$(basename "$t" .test.sh)
	[ -n "${ONLY:-}" ] && [ "$ONLY" != "$T" ] && continue
	if ! sandbox_reset; then
		bad "the sandbox could not be reset"
		continue
	fi
	counts=$(mktemp)
	(
		pass=0 fail=0
		trap 'echo "$pass $fail" >"$counts"' EXIT
		. "$t"
	)
	read -r p f <"$counts" || { p=0; f=1; echo "FAIL $T: the test file did not finish"; }
	rm -f "$counts"
	pass=$((pass + p)) fail=$((fail + f))
done
echo "runbooks: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
