#!/usr/bin/env bash
# pg.query and pg.exec against a real PostgreSQL (tests/servers): effects are
# checked on the server with psql, never only from the step's output.
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
if ! servers_start pg; then
	echo "FAIL PostgreSQL did not start"
	echo "pg: 0 passed, 1 failed"
	exit 1
fi
sql() { PGPASSWORD=$RB_TEST_PG_PASSWORD psql -X -qAt -h 127.0.0.1 -p "$RB_TEST_PG_PORT" -U rb_admin rb_test -c "$1"; }
st="$tmp/state"
run() { rb run --state-dir "$st" "$@"; }
# The last run's record of a step's end, as JSON.
finished() { grep -h "\"step\":\"$1\"" "$st/runs/$(ls -t "$st/runs" | head -n 1)/audit.jsonl" | grep '"type":"step_finished"' | tail -n 1; }

# Typed values, and params as data: the value that looks like SQL is stored as it is.
out=$(run tests/pg/types.yaml 2>&1)
check "a run of pg.exec and pg.query succeeds" [ $? -eq 0 ]
check "the values come back typed (see the lua step)" grep -q 'typed: succeeded' <<<"$out"
check "the server has the rows" [ "$(sql 'SELECT count(*) FROM items')" = 2 ]
check "a param is data, never SQL" [ "$(sql 'SELECT name FROM items WHERE id = 1')" = "it's; DROP TABLE items; --" ]

# One transaction: the second statement fails, so the first is not there.
out=$(run tests/pg/rollback.yaml 2>&1)
check "a failing statement fails the step" [ $? -eq 1 ]
check "its error names the statement, the SQLSTATE and the detail" grep -q 'statement 2: duplicate key value violates unique constraint "items_pkey" (SQLSTATE 23505); detail: Key (id)=(1) already exists.' <<<"$out"
check "the transaction was rolled back on the server" [ "$(sql 'SELECT count(*) FROM items WHERE id = 10')" = 0 ]

# pg.query cannot write, whatever its SQL says.
out=$(run tests/pg/readonly.yaml 2>&1)
check "pg.query refuses a DELETE (read-only transaction)" grep -q 'cannot execute DELETE in a read-only transaction (SQLSTATE 25006)' <<<"$out"
check "the rows are still on the server" [ "$(sql 'SELECT count(*) FROM items')" = 2 ]
check "the plan says pg.query has no side effects" bash -c "'$RUNBOOK' plan --format json tests/pg/readonly.yaml | jq -e '.steps[0].side_effects == false'"

# A SQL error at its position in the runbook.
out=$(run tests/pg/position.yaml 2>&1)
check "a SQL error points at its line and column in the runbook" grep -qF "tests/pg/position.yaml:12:16: column \"nmae\" of relation \"items\" does not exist (SQLSTATE 42703)" <<<"$out"

# The connection is reset between steps, and there is one for the run.
out=$(run tests/pg/session.yaml 2>&1)
check "SET ROLE and search_path do not leak into the next step, on one connection" grep -q 'same: succeeded' <<<"$out"

# The conninfo's options are the session's, under the fixed ones.
export RB_TEST_PG_OPTIONS_URL="$RB_TEST_PG_URL?application_name=rb-options-test&options=-csearch_path%3Drb_opt_schema,public%20-cTimeZone%3DEurope/Berlin"
out=$(run tests/pg/options.yaml 2>&1)
check "the conninfo's search_path and application_name are the session's" grep -q 'same: succeeded' <<<"$out"

# Statements run alone that leave a transaction open fail the step: it is rolled back.
out=$(run tests/pg/left_open.yaml 2>&1)
check "a BEGIN without its COMMIT fails the step, saying so" grep -q 'left_open: failed (continuing).*: the statements left a transaction open (a BEGIN without its COMMIT): it is rolled back' <<<"$out"
check "... and only the committed row is on the server" [ "$(sql 'SELECT array_agg(n) FROM opent')" = '{2}' ]

# VACUUM runs with transaction: false, and fails in a transaction.
out=$(run tests/pg/vacuum.yaml 2>&1)
check "VACUUM runs alone (transaction: false)" grep -q 'vacuum: succeeded' <<<"$out"
check "VACUUM, CREATE and DROP DATABASE run alone with a timeout too" grep -q 'vacuum_timed: succeeded' <<<"$out"
check "VACUUM in a transaction fails with the server's words" grep -q 'VACUUM cannot run inside a transaction block (SQLSTATE 25001)' <<<"$out"

# A step timeout cancels the statement on the server.
out=$(run tests/pg/sleep.yaml 2>&1)
check "a step timeout stops pg_sleep(30)" grep -q 'slow: failed.*timed out' <<<"$out"
sleep 0.5
check "nothing is left running on the server after a timeout" [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%rb-sleep-marker%' AND pid <> pg_backend_pid()")" = 0 ]
# ... and so does Ctrl-C.
sed 's/timeout: 1s/timeout: 60s/' tests/pg/sleep.yaml >"$tmp/sleep60.yaml"
"$RUNBOOK" run --state-dir "$st" "$tmp/sleep60.yaml" >"$tmp/int.out" 2>&1 &
pid=$!
for _ in $(seq 50); do
	[ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%rb-sleep-marker%' AND state = 'active' AND pid <> pg_backend_pid()")" = 1 ] && break
	sleep 0.1
done
kill -INT $pid
wait $pid
check "Ctrl-C interrupts the run (130)" [ $? -eq 130 ]
sleep 0.5
check "nothing is left running on the server after Ctrl-C" [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%rb-sleep-marker%' AND pid <> pg_backend_pid()")" = 0 ]

# Too many rows fail as they come, not after libpq has held them all in memory (5 million
# rows: 770 MB at its peak before; about 80 MB now, 210 MB under ASan once its quarantine
# of freed memory is kept small: ulimit -v cannot bound an ASan binary's address space).
out=$(ASAN_OPTIONS="${ASAN_OPTIONS:-}:quarantine_size_mb=16" /usr/bin/time -f %M -o "$st.rss" \
	"$RUNBOOK" run --state-dir "$st" tests/pg/many_rows.yaml 2>&1)
check "a statement that returns too many rows fails, saying so" grep -q 'too_many: failed (continuing).*: the statement returned more than 100000 rows: give it a LIMIT' <<<"$out"
check "... at a peak under 400 MB ($(tail -n 1 "$st.rss") KB)" [ "$(tail -n 1 "$st.rss")" -lt 400000 ]
check "... and 100000 rows, as many as are kept, come back whole" grep -q 'counted: succeeded' <<<"$out"

# COPY from or to the client fails its step at once, and the transaction is rolled back.
out=$(timeout -k 5 60 "$RUNBOOK" run --state-dir "$st" tests/pg/copy.yaml 2>&1)
check "a run with COPY steps ends (its failures continue on error)" [ $? -eq 0 ]
check "COPY TO STDOUT fails the step, saying why" grep -q 'copy_out: failed (continuing) in 0\.[0-9]s: COPY TO STDOUT is not supported' <<<"$out"
check "COPY FROM STDIN fails the step, naming the statement" grep -q 'copy_in: failed (continuing) in 0\.[0-9]s: statement 3: COPY FROM STDIN is not supported' <<<"$out"
check "... its transaction rolled back, and the next step runs" grep -q 'rolled_back: succeeded' <<<"$out"
sleep 0.2
check "no session is left in COPY on the server" [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%COPY%' AND pid <> pg_backend_pid()")" = 0 ]

# --dry-run --probe runs pg.query for real, never pg.exec.
out=$(run --dry-run --probe tests/pg/probe.yaml 2>&1)
check "a probe reads with pg.query" grep -q 'count: succeeded' <<<"$out"
check "... and only explains pg.exec" grep -q 'wipe: not probed (it has side effects: explained, not run)' <<<"$out"
check "a probe never runs pg.exec: the rows are there" [ "$(sql 'SELECT count(*) FROM items')" = 2 ]

# What a read-only transaction does not stop has side effects: never probed, never a check.
victim=$tmp/victim.out
PGAPPNAME=rb-victim PGPASSWORD=$RB_TEST_PG_PASSWORD psql -X -qAt -h 127.0.0.1 -p "$RB_TEST_PG_PORT" -U rb_admin rb_test -c 'SELECT pg_sleep(20)' >"$victim" 2>&1 &
vpid=$!
for _ in $(seq 50); do
	[ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rb-victim' AND state = 'active'")" = 1 ] && break
	sleep 0.1
done
made="/tmp/rb-unstopped-$$"
rm -f "$made"
plan=$("$RUNBOOK" plan --format json -p file="$made" tests/pg/unstopped.yaml 2>&1)
check "pg_terminate_backend has side effects in the plan" jq -e '[.steps[] | .side_effects] == [true, false, true, false]' <<<"$plan"
check "... saying what the read-only transaction does not stop" jq -e '.steps[0].does == "a call of PG_TERMINATE_BACKEND, which a read-only transaction does not stop" and .steps[2].does == "COPY, which a read-only transaction does not stop"' <<<"$plan"
out=$(run --dry-run --probe -p file="$made" tests/pg/unstopped.yaml 2>&1)
check "a probe does not run them" grep -q 'kill: not probed (it has side effects)' <<<"$out"
check "... nor one whose SQL, known only then, says so" grep -q 'program: not probed (it has side effects (its arguments, known now, say so))' <<<"$out"
check "... and runs the one that reads" grep -q 'reads: succeeded' <<<"$out"
check "the session the probe would have ended is still there" [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rb-victim'")" = 1 ]
check "the program the probe would have run on the server did not run" [ ! -e "$made" ]
kill "$vpid" 2>/dev/null
wait "$vpid" 2>/dev/null
sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rb-victim'" >/dev/null
cat >"$tmp/kill_check.yaml" <<'YAML'
runbook: kill-check
version: 1
secrets:
  db: {env: RB_TEST_PG_URL}
steps:
  - id: s
    run: "true"
    check:
      action: pg.query
      with: {conn: "${{ secrets.db }}", sql: "SELECT pg_cancel_backend(1)"}
YAML
out=$("$RUNBOOK" validate "$tmp/kill_check.yaml" 2>&1)
check "a check may not call pg_cancel_backend" grep -q "a check must not change anything, and this call of action 'pg.query' has side effects" <<<"$out"

# --dry-run --probe: pg.exec's statements are explained by the real server, never run.
out=$(run --dry-run --probe tests/pg/explain.yaml 2>&1)
check "a probe explains pg.exec's DELETE, with the rows it would touch" grep -qE '1\. DELETE: about [0-9]+ rows?; Seq Scan on items' <<<"$out"
check "... names what EXPLAIN does not take" grep -q '2. VACUUM: not explained (EXPLAIN does not take it)' <<<"$out"
check "... and explains the UPDATE" grep -qE '3\. UPDATE: about [0-9]+ rows?; Seq Scan on items' <<<"$out"
check "nothing ran: the rows are there, unchanged" [ "$(sql "SELECT count(*) FROM items WHERE name = 'x'")" = 0 ]
check "a step after an explained one is not probed" grep -q 'after: not probed (it needs a step that was not probed)' <<<"$out"
out=$(run --dry-run --probe tests/pg/explain_bad.yaml 2>&1)
check "a probe shows SQL that does not fit the real schema, at its position" grep -q 'tests/pg/explain_bad.yaml:10:24: relation "itemz" does not exist (SQLSTATE 42P01)' <<<"$out"

# The server drops the kept connection (a restart, a failover): a read takes a new one.
out=$(run tests/pg/failover.yaml 2>&1)
check "a query after its kept connection was dropped runs on a new one" grep -q 'new_one: succeeded' <<<"$out"
check "a write after its kept connection was dropped while idle runs on a new one" grep -q 'write: succeeded' <<<"$out"
check "... and its effect is on the server" [ "$(sql "SELECT to_regclass('failover_written') IS NOT NULL")" = t ]

# TLS: the server's certificate verified against the CA given (verify-full: its name too);
# a CA that did not sign it is refused before the password is sent.
export RB_TEST_PG_TLS_URL="postgresql://rb_admin:$RB_TEST_PG_PASSWORD@127.0.0.1:$RB_TEST_PG_PORT/rb_test?sslmode=verify-full&sslrootcert=$RB_TEST_CA_FILE"
export RB_TEST_PG_TLS_WRONG_CA_URL="postgresql://rb_admin:$RB_TEST_PG_PASSWORD@127.0.0.1:$RB_TEST_PG_PORT/rb_test?sslmode=verify-full&sslrootcert=$RB_TEST_CLIENT_CERT"
out=$(run --output json tests/pg/tls.yaml 2>&1)
check "pg.query over verified TLS" jq -se 'map(select(.event == "step_finished" and .step == "is_tls"))[0].status == "succeeded"' <<<"$out"
check "a CA that did not sign the server's certificate is refused" jq -se 'map(select(.event == "step_finished" and .step == "untrusted"))[0] | .status == "failed" and (.error | test("certificate verify failed"))' <<<"$out"
check "... and the password is in no event" bash -c '! grep -qF "$RB_TEST_PG_PASSWORD" <<<"$1"' _ "$out"

# A host name is looked up off the engine's thread, then connected to.
export RB_TEST_PG_BAD_URL="postgresql://rb_admin:$RB_TEST_PG_PASSWORD@localhost:$RB_TEST_PG_PORT/rb_test"
out=$(run tests/pg/refused.yaml 2>&1)
check "a conninfo with a host name (localhost) connects" grep -q 'nobody: succeeded' <<<"$out"

# A refused connection and a wrong password: clear failures, the password nowhere.
port=$(_servers_free_port)
export RB_TEST_PG_BAD_URL="postgresql://rb_admin:S3cretWrongPassw0rd@127.0.0.1:$port/rb_test"
out=$(run tests/pg/refused.yaml 2>&1)
check "a refused connection fails the step" [ $? -eq 1 ]
check "... saying so" grep -q 'nobody: failed.*cannot connect: Connection refused' <<<"$out"
export RB_TEST_PG_BAD_URL="postgresql://rb_admin:S3cretWrongPassw0rd@127.0.0.1:$RB_TEST_PG_PORT/rb_test"
out=$(run tests/pg/refused.yaml 2>&1)
check "a wrong password fails the step, saying so" grep -q 'nobody: failed.*password authentication failed for user "rb_admin"' <<<"$out"
check "the wrong password is nowhere in the console" bash -c "! grep -q S3cretWrongPassw0rd <<<'$out'"
check "the wrong password is nowhere in the state directory" bash -c "! grep -rq S3cretWrongPassw0rd '$st'"
check "the real password is nowhere in the state directory" bash -c "! grep -rqF '$RB_TEST_PG_PASSWORD' '$st'"
check "nor in the plan" bash -c "'$RUNBOOK' plan tests/pg/types.yaml | grep -q 'conn: \*\*\*'"

# A password with an unencoded @ spills into the host libpq reads: the name is not shown.
export RB_TEST_PG_BAD_URL="postgresql://rb_admin:Pw@TailOfTheSecretPw@127.0.0.1:$RB_TEST_PG_PORT/rb_test"
out=$(run tests/pg/refused.yaml 2>&1)
check "a host that does not resolve fails the step, not naming it" grep -q "nobody: failed.*cannot resolve the connection's host (not shown: the conninfo is a secret)" <<<"$out"
check "... and no part of the password is in the console" bash -c '! grep -q TailOfTheSecretPw <<<"$1"' _ "$out"
check "... nor in the state directory" bash -c "! grep -rq TailOfTheSecretPw '$st'"

# pg.set_password: only the SCRAM verifier reaches the server (psql's \password).
sql "CREATE ROLE \"odd \"\"name\"\" x\" LOGIN PASSWORD 'OldPassw0rd-rb' VALID UNTIL '2000-01-01'" >/dev/null
sql "ALTER ROLE rb_admin SET log_statement = 'all'" >/dev/null
as_odd() { PGPASSWORD=$1 psql -X -qAt -h 127.0.0.1 -p "$RB_TEST_PG_PORT" -U 'odd "name" x' rb_test -c 'SELECT current_user'; }
export RB_TEST_NEW_PASSWORD='N3w-Passw0rd-rb-Zq9'
out=$(run tests/pg/set_password.yaml 2>&1)
check "pg.set_password succeeds" [ $? -eq 0 ]
check "the role (quotes and spaces in its name) logs in with the new password" [ "$(as_odd "$RB_TEST_NEW_PASSWORD")" = 'odd "name" x' ]
check "... and no longer with the old one" bash -c "! PGPASSWORD=OldPassw0rd-rb psql -X -qAt -h 127.0.0.1 -p $RB_TEST_PG_PORT -U 'odd \"name\" x' rb_test -c 'SELECT 1'"
check "the server holds a SCRAM verifier" [ "$(sql "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'odd \"name\" x'")" = 'SCRAM-SHA-256$' ]
check "valid_until was set (infinity)" [ "$(sql "SELECT rolvaliduntil FROM pg_roles WHERE rolname = 'odd \"name\" x'")" = infinity ]
check "the server's log has the ALTER ROLE, with the verifier" grep -q 'ALTER ROLE "odd ""name"" x" PASSWORD '"'"'SCRAM-SHA-256\$' "$RB_TEST_SERVERS_DIR/pg/server.log"
check "... and never the plaintext" bash -c "! grep -qF '$RB_TEST_NEW_PASSWORD' '$RB_TEST_SERVERS_DIR/pg/server.log'"
check "the plaintext is nowhere in the console" bash -c "! grep -qF '$RB_TEST_NEW_PASSWORD' <<<'$out'"
check "... nor in the state directory (audit log, journal)" bash -c "! grep -rqF '$RB_TEST_NEW_PASSWORD' '$st'"
check "... nor in the plan" bash -c "'$RUNBOOK' plan --format json tests/pg/set_password.yaml | jq -e '.steps[0].with.password == \"***\"' && ! '$RUNBOOK' plan tests/pg/set_password.yaml | grep -qF '$RB_TEST_NEW_PASSWORD'"
check "the plan says what it does, with side effects" bash -c "'$RUNBOOK' plan --format json tests/pg/set_password_bad.yaml | jq -e '.steps[0] | .does == \"sets the password of role no_such_role\" and .side_effects'"
check "its output names the role and the verifier's kind" bash -c "grep -h step_finished '$st/runs/$(ls -t "$st/runs" | head -n 1)/audit.jsonl' | tail -n 1 | jq -e '.output | fromjson | .role == \"odd \\\"name\\\" x\" and .encryption == \"scram-sha-256\"'"
sql "ALTER ROLE rb_admin RESET log_statement" >/dev/null
out=$(run tests/pg/set_password_bad.yaml 2>&1)
check "a role that does not exist fails the step" [ $? -eq 1 ]
check "... at the role in the runbook, with the server's words" grep -qF 'tests/pg/set_password_bad.yaml:11:13: role "no_such_role" does not exist (SQLSTATE 42704)' <<<"$out"
sed 's/password: .*secrets.new_password }}/password: hunter2hunter2/' tests/pg/set_password.yaml >"$tmp/literal.yaml"
out=$("$RUNBOOK" validate "$tmp/literal.yaml" 2>&1)
check "a password written in the runbook is refused" grep -q "argument 'password' of action 'pg.set_password' is a secret" <<<"$out"
# The password may come from a step whose output is a secret (crypto.random, sensitive), not another's.
cat >"$tmp/from_step.yaml" <<'EOF'
runbook: pw-from-step
version: 1
secrets:
  db: {env: RB_TEST_PG_URL}
steps:
  - id: made
    action: crypto.random
  - id: plain
    lua: return 'not-a-secret'
  - id: set
    action: pg.set_password
    with: {conn: "${{ secrets.db }}", role: app, password: "${{ steps.made.output.value }}"}
EOF
check "a password from crypto.random's output validates" "$RUNBOOK" validate "$tmp/from_step.yaml"
sed -i 's/steps.made.output.value/steps.plain.output/' "$tmp/from_step.yaml"
out=$("$RUNBOOK" validate "$tmp/from_step.yaml" 2>&1)
check "... one from a step whose output is no secret is refused" grep -q "argument 'password' of action 'pg.set_password' is a secret" <<<"$out"
out=$(run -p role= tests/pg/set_password.yaml 2>&1)
check "an empty role is refused before anything is sent" grep -q 'an empty role name' <<<"$out"

# The first exactly_once calls of a new marker table, eight at once: they all make it.
for t in 1 2 3; do
	out=$(run --jobs 8 -p table="race_markers_$t" tests/pg/once_race.yaml 2>&1)
	check "eight first exactly_once calls at once (try $t)" grep -q 'first: succeeded' <<<"$out"
	check "... each with its marker" [ "$(sql "SELECT count(*) FROM race_markers_$t")" = 8 ]
done

# Exactly once across crashes: the marker commits with the statements.
sql 'CREATE TABLE ledger (n int); CREATE TABLE ctl (s float8); INSERT INTO ctl VALUES (0)' >/dev/null
out=$(run -p n=1 tests/pg/once.yaml 2>&1)
check "exactly_once: a run inserts its row" [ "$(sql 'SELECT count(*) FROM ledger WHERE n = 1')" = 1 ]
check "... and its marker, with the run and step" [ "$(sql "SELECT count(*) FROM runbook_markers WHERE step = 'pay'")" = 1 ]
# kill -9 while the transaction runs on the server (its COMMIT sent already): the
# server commits it after the client is gone.  The resume's marker waits on the
# old transaction, sees it committed, and runs nothing.
once() {                  # once N SLEEP: start a run, kill -9 it while the server sleeps
	sql "UPDATE ctl SET s = $2" >/dev/null
	"$RUNBOOK" run --state-dir "$st" -p n="$1" tests/pg/once.yaml >/dev/null 2>&1 &
	local pid=$!
	for _ in $(seq 100); do
		[ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'")" = 1 ] && break
		sleep 0.05
	done
	kill -9 $pid
	wait $pid 2>/dev/null
	sql "UPDATE ctl SET s = 0" >/dev/null
	ls -t "$st/runs" | head -n 1
}
id=$(once 2 3)
out=$(rb resume --state-dir "$st" "$id" 2>&1)
check "a resume after kill -9 mid-transaction succeeds without asking" [ $? -eq 0 ]
check "the transaction committed once: one row" [ "$(sql 'SELECT count(*) FROM ledger WHERE n = 2')" = 1 ]
check "the step says it had committed before" bash -c "grep -h step_finished '$st/runs/$id/audit.jsonl' | grep '\"pay\"' | tail -n 1 | jq -e '.output | fromjson | .committed_before'"
# The same, but the old transaction is killed on the server: nothing committed, so it runs.
id=$(once 3 30)
sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'" >/dev/null
out=$(rb resume --state-dir "$st" "$id" 2>&1)
check "... without asking" [ $? -eq 0 ]
check "a resume after the old transaction aborted runs it: one row" [ "$(sql 'SELECT count(*) FROM ledger WHERE n = 3')" = 1 ]
# kill -9 at every journal point of a run of it (tests/kill.sh's points): before and after
# each write and sync, so before the intent is durable, between it and the COMMIT, and
# after the COMMIT before its result is: each resume leaves the row there exactly once.
n=100 crashes=0
for point in before-write after-write after-fdatasync; do
	for visit in $(seq 1 "${PG_CRASH_VISITS:-12}"); do     # make soak-kill: more
		n=$((n + 1))
		{ RUNBOOK_TEST_CRASH=$point:$visit "$RUNBOOK" run --state-dir "$st" -p n=$n \
			tests/pg/once.yaml >/dev/null 2>&1; } 2>/dev/null
		rc=$?
		[ $rc -eq 137 ] || break        # it ran to the end: no more visits of the point
		crashes=$((crashes + 1))
		id=$(ls -t "$st/runs" | head -n 1)
		out=$(rb resume --state-dir "$st" "$id" 2>&1)
		rc=$?
		if grep -q 'nothing to resume; start it again' <<<"$out"; then
			# killed while starting, before any step: nothing ran, and a new run does it
			check "kill at $point:$visit, before the start: no row" [ "$(sql "SELECT count(*) FROM ledger WHERE n = $n")" = 0 ]
			run -p n=$n tests/pg/once.yaml >/dev/null 2>&1
			rc=$?
		fi
		check "kill at $point:$visit, then resume: it ends" [ $rc -eq 0 ]
		check "kill at $point:$visit, then resume: the row once" [ "$(sql "SELECT count(*) FROM ledger WHERE n = $n")" = 1 ]
	done
done
check "the crash points were reached (more than 6 kills)" [ $crashes -gt 6 ]
check "exactly_once makes the step idempotent in the plan" bash -c "'$RUNBOOK' plan --format json -p n=1 tests/pg/once.yaml | jq -e '.steps[0].idempotent'"

echo "pg: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
