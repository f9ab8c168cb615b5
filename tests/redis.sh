#!/usr/bin/env bash
# redis.command against a real redis-server on loopback, started here (in a
# temporary directory, on a free port, with a password and an ACL user, as
# tests/servers/servers.sh starts its own, whose RB_TEST_REDIS_* this suite
# uses when it is there) and stopped by the EXIT trap.  Effects are checked on
# the server with redis-cli, never only from a step's output.  The runbooks
# are in tests/redis/; tests/redis/fake.js is a server that misbehaves.
# The last line is "redis: N passed, N failed".
set -uo pipefail
: "${RUNBOOK:?}"
cd "$(dirname "$0")/.." || exit 1
work=$(mktemp -d)
state=$work/state out=$work/printed
mkdir -p "$out"
pass=0 fail=0 redis_pid="" own_pid="" fake_pid="" bg_pid=""

cleanup() {
	[ -n "$bg_pid" ] && kill -KILL "$bg_pid" 2>/dev/null
	[ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
	[ -n "$redis_pid" ] && kill -CONT "$redis_pid" 2>/dev/null
	if [ -n "$own_pid" ]; then
		kill "$own_pid" 2>/dev/null
		wait "$own_pid" 2>/dev/null
	fi
	declare -F servers_stop >/dev/null && servers_stop
	rm -rf "$work"
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
check() {                 # check DESCRIPTION COMMAND...
	if "${@:2}" >/dev/null 2>&1; then ok; else bad "$1"; fi
}
same() {                  # same DESCRIPTION EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then ok; else bad "$1: expected '$2', got '$3'"; fi
}
has() {                   # has DESCRIPTION FILE_OR_TEXT REGEX
	if grep -Eq -- "$3" <<<"$2"; then ok; else bad "$1: no /$3/ in: ${2:0:300}"; fi
}
rb() { ${RUNBOOK_WRAP:-} "$RUNBOOK" "$@"; }
# runrb NAME ARGS...: runbook ARGS, all it prints in $out/NAME; its status in $rc, the
# run's id in $run
runrb() {
	local name=$1
	shift
	rb "$@" >"$out/$name" 2>&1 </dev/null
	rc=$?
	run=$(sed -n 's/^[0-9:]* run \([0-9a-z-]*\): .*/\1/p' "$out/$name" | head -n 1)
}
status_of() { rb status "$1" --state-dir "$state" --format json 2>/dev/null; }
# field RUN STEP FIELD: a step's status, error or output (as compact JSON)
field() {
	status_of "$1" | jq -c --arg s "$2" --arg f "$3" '.steps[] | select(.step == $s) | .[$f]'
}
error_of() { status_of "$1" | jq -r --arg s "$2" '.steps[] | select(.step == $s) | .error'; }
free_port() {
	node -e 'const s = require("net").createServer().listen(0, "127.0.0.1",
		() => { console.log(s.address().port); s.close(); })'
}
secret() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

# --- the server --------------------------------------------------------------------
start_own_redis() {
	local d=$work/redis port try i
	mkdir -m 700 "$d"
	RB_TEST_REDIS_PASSWORD=$(secret) RB_TEST_REDIS_APP_PASSWORD=$(secret)
	for try in 1 2 3 4 5; do
		port=$(free_port)
		cat >"$d/redis.conf" <<-EOF
		port $port
		bind 127.0.0.1
		requirepass $RB_TEST_REDIS_PASSWORD
		user rb_app on >$RB_TEST_REDIS_APP_PASSWORD ~app:* &* +@all -@dangerous
		save ""
		appendonly no
		dir $d
		EOF
		redis-server "$d/redis.conf" </dev/null >"$d/redis.log" 2>&1 &
		own_pid=$!
		for ((i = 0; i < 200; i++)); do
			kill -0 "$own_pid" 2>/dev/null || break
			[ "$(REDISCLI_AUTH=$RB_TEST_REDIS_PASSWORD redis-cli -p "$port" ping \
				2>/dev/null)" = PONG ] && break 2
			sleep 0.05
		done
		kill "$own_pid" 2>/dev/null
		wait "$own_pid" 2>/dev/null
		own_pid="" port=""
	done
	[ -n "$port" ] || { cat "$d/redis.log" >&2; return 1; }
	export RB_TEST_REDIS_HOST=127.0.0.1 RB_TEST_REDIS_PORT=$port RB_TEST_REDIS_PASSWORD
	export RB_TEST_REDIS_APP_USER=rb_app RB_TEST_REDIS_APP_PASSWORD
}
if [ -f tests/servers/servers.sh ]; then
	. tests/servers/servers.sh
	servers_start redis http || { echo "redis: 0 passed, 1 failed"; exit 1; }
else
	start_own_redis || { echo "redis: 0 passed, 1 failed"; exit 1; }
fi
rcli() {
	REDISCLI_AUTH=$RB_TEST_REDIS_PASSWORD redis-cli -h "$RB_TEST_REDIS_HOST" \
		-p "$RB_TEST_REDIS_PORT" "$@"
}
redis_pid=$(rcli INFO server | tr -d '\r' | sed -n 's/^process_id://p')
connections() { rcli INFO stats | tr -d '\r' | sed -n 's/^total_connections_received://p'; }
P=(-p "host=$RB_TEST_REDIS_HOST" -p "port=$RB_TEST_REDIS_PORT")
export REDIS_WRONG_PASSWORD
REDIS_WRONG_PASSWORD=$(secret)

# --- validate and plan -------------------------------------------------------------
check "the runbooks of tests/redis validate" rb validate -q tests/redis/*.yaml

# --- a run: set and get, a pipeline, a transaction, db, ACL user, a check ------------
printf '\377\376ok' | rcli -x SET rt:bin >/dev/null
before=$(connections)
runrb basics run --state-dir "$state" --jobs 1 tests/redis/basics.yaml "${P[@]}"
same "basics: exit status" 0 "$rc"
# One connection a server, database and user: db 0, db 3, rb_app, localhost (the
# INFO call that counts is one more).
same "basics: connections made" 4 "$(($(connections) - before - 1))"
same "basics: SET is on the server" "hello wörld" "$(rcli GET rt:k)"
same "basics: GET's output" '{"reply":"hello wörld"}' "$(field "$run" get output)"
same "basics: the pipeline's output" '[1,42,"42",[],null,4,["a","2","1.5","0.1"],"PONG"]' \
	"$(field "$run" pipe output | jq -c '.replies[1:]')"
same "basics: the pipeline on the server" "42 a 2 1.5 0.1" \
	"$(rcli GET rt:c) $(rcli LRANGE rt:l 0 -1 | tr '\n' ' ' | sed 's/ $//')"
same "basics: MULTI/EXEC's output is EXEC's" '{"replies":["OK",10,"10"]}' \
	"$(field "$run" tx output)"
same "basics: the transaction on the server" 10 "$(rcli GET rt:t)"
same "basics: integers as YAML 1.2 reads them" "1234 15 31 8 12345678901234567890 -5" \
	"$(rcli LRANGE rt:n 0 -1 | tr '\n' ' ' | sed 's/ $//')"
same "basics: db: 3 selects database 3" "three" "$(rcli -n 3 GET rt:d3)"
same "basics: nothing in database 0" 0 "$(rcli EXISTS rt:d3)"
same "basics: the URL's /3 too" '{"reply":"three"}' "$(field "$run" db3_url output)"
same "basics: bytes that are not UTF-8 are U+FFFD" '{"reply":"\ufffd\ufffdok"}' \
	"$(field "$run" binary output | jq -c --ascii-output .)"
same "basics: AUTH USER PASSWORD" '{"replies":["OK","rb_app"]}' "$(field "$run" app_user output)"
same "basics: the ACL user's key" 7 "$(rcli GET app:x)"
same "basics: a host name, looked up" '{"reply":1}' "$(field "$run" by_name output)"
same "basics: a nil check says not in place: the step ran" '"succeeded"' \
	"$(field "$run" flag status)"
same "basics: ... and set its key" on "$(rcli GET rt:flag)"
clients() { rcli INFO clients | tr -d '\r' | sed -n 's/^connected_clients://p'; }
for ((i = 0; i < 40; i++)); do
	[ "$(clients)" = 1 ] && break
	sleep 0.05
done
same "basics: no connection left open after the run" 1 "$(clients)"
runrb basics2 run --state-dir "$state" --jobs 1 tests/redis/basics.yaml "${P[@]}"
same "basics again: exit status" 0 "$rc"
same "basics again: the check finds the flag" '"satisfied"' "$(field "$run" flag status)"

runrb session run --state-dir "$state" --jobs 1 tests/redis/session.yaml "${P[@]}"
same "a connection's settings (CLIENT SETNAME) do not reach the next step" 0 "$rc"
has "... which sees none" "$(cat "$out/session")" 'clean: succeeded'

# --- one connection for a run of many steps ----------------------------------------
{
	printf 'runbook: redis-many\nversion: 1\nparams:\n  host: {type: string}\n'
	printf '  port: {type: string}\nsecrets:\n  pw: {env: RB_TEST_REDIS_PASSWORD}\nsteps:\n'
	for i in $(seq 1 40); do
		printf '  - id: g%d\n    action: redis.command\n' "$i"
		printf '    with: {url: "redis://${{ params.host }}:${{ params.port }}/0", '
		printf 'password: "${{ secrets.pw }}", command: [GET, "rt:k"]}\n'
	done
} >"$work/many.yaml"
before=$(connections)
runrb many run --state-dir "$state" --jobs 1 "$work/many.yaml" "${P[@]}"
same "40 steps: exit status" 0 "$rc"
same "40 steps: one connection" 1 "$(($(connections) - before - 1))"
same "40 steps: every step read" 40 \
	"$(status_of "$run" | jq '[.steps[] | select(.output.reply == "hello wörld")] | length')"

# --- --dry-run --probe: what reads is sent, what writes is not ---------------------
rcli DEL rt:probe rt:probe_count >/dev/null
rcli SET rt:k "hello wörld" >/dev/null
runrb probe run --dry-run --probe --state-dir "$state" tests/redis/probe.yaml "${P[@]}"
same "probe: exit status" 0 "$rc"
has "probe: the reads were sent" "$(cat "$out/probe")" 'output: \{"replies":\["hello wörld",-1\]\}'
has "probe: SET is shown, with side effects" "$(cat "$out/probe")" \
	'^  write  redis.command  \[side effects\]'
has "probe: a transaction that writes too" "$(cat "$out/probe")" \
	'^  write_in_tx  redis.command  \[side effects\]'
same "probe: SET did not reach the server" 0 "$(rcli EXISTS rt:probe)"
same "probe: nor INCR" 0 "$(rcli EXISTS rt:probe_count)"

# --- failures: each a clear step failure -------------------------------------------
node tests/redis/fake.js "$work/fake.port" &
fake_pid=$!
for ((i = 0; i < 100; i++)); do
	[ -s "$work/fake.port" ] && break
	sleep 0.05
done
closed=$(free_port)
rcli SET rt:k "hello wörld" >/dev/null
export REDIS_LONG_TOKEN
REDIS_LONG_TOKEN=$(for _ in 1 2 3 4 5 6 7; do secret; done | head -c 200)
runrb errors run --state-dir "$state" --jobs 1 tests/redis/errors.yaml "${P[@]}" \
	-p "closed_port=$closed" -p "fake_port=$(cat "$work/fake.port")"
check "errors: the run ends, no crash ($rc)" test "$rc" -le 1
at="redis://$RB_TEST_REDIS_HOST:$RB_TEST_REDIS_PORT/0"
wrongtype="WRONGTYPE Operation against a key holding the wrong kind of value"
same "an error reply" "LPOP on $at: $wrongtype" "$(error_of "$run" wrong_type)"
same "an error in a pipeline" \
	"SET, LPOP, SET on $at: command 2 (LPOP): $wrongtype (the other commands ran)" \
	"$(error_of "$run" pipe_error)"
same "... in its place in the replies" "{\"replies\":[\"OK\",{\"error\":\"$wrongtype\"},\"OK\"]}" \
	"$(field "$run" pipe_error output)"
same "... and the others ran" "1 2" "$(rcli GET rt:p1) $(rcli GET rt:p2)"
has "a transaction refused as queued" "$(error_of "$run" tx_aborted)" \
	"^MULTI/EXEC of SET, INCR, SET on $at: the transaction did not run: command 2 \(INCR\): \
ERR wrong number of arguments"
same "... ran nothing" 0 "$(rcli EXISTS rt:x1 rt:x2)"
has "an error inside EXEC" "$(error_of "$run" tx_runtime)" \
	"command 2 \(LPOP\): WRONGTYPE .* \(the transaction's other commands ran\)$"
same "... after which the others ran" 2 "$(rcli EXISTS rt:y1 rt:y2)"
has "SELECT known at run time is refused, at its place" "$(error_of "$run" refused_later)" \
	"^tests/redis/errors.yaml:[0-9]+:[0-9]+: argument 'command' of action 'redis.command': \
SELECT is not allowed here"
same "an item that is nil" "GET on $at: item 2 is nil" "$(error_of "$run" nil_item)"
has "a wrong password" "$(error_of "$run" wrong_password)" \
	"^SET on $at: authentication failed: WRONGPASS invalid username-password pair"
same "... sent nothing else" 0 "$(rcli EXISTS rt:wp)"
has "no password" "$(error_of "$run" no_password)" "^SET on $at: NOAUTH Authentication required"
same "a refused connection" \
	"PING on redis://127.0.0.1:$closed/0: cannot connect: Connection refused" \
	"$(error_of "$run" refused_port)"
has "a host that does not resolve" "$(error_of "$run" unknown_host)" \
	"^PING on redis://no-such-host.invalid:$RB_TEST_REDIS_PORT/0: \
(cannot resolve host no-such-host.invalid: |timed out)"
same "a server that closes mid-reply" \
	"GET on redis://127.0.0.1:$(cat "$work/fake.port")/0: the server closed the connection" \
	"$(error_of "$run" mid_reply)"
has "a server that sends garbage" "$(error_of "$run" garbage)" "GET on .*: protocol error: "
same "an unknown command, its arguments not quoted" \
	"SETT on $at: command 1 (SETT): ERR unknown command 'SETT'" "$(error_of "$run" unknown_command)"
same "... neither in its reply" '{"replies":[{"error":"ERR unknown command '"'SETT'"'"}]}' \
	"$(field "$run" unknown_command output)"
check "no piece of the token is in the state directory" bash -c '! grep -rqF "${1:0:24}" "$2"' _ "$REDIS_LONG_TOKEN" "$state"
check "... nor in what the run printed" bash -c '! grep -qF "${1:0:24}" "$2"' _ "$REDIS_LONG_TOKEN" "$out/errors"
for s in unknown_command wrong_type pipe_error tx_aborted tx_runtime refused_later nil_item wrong_password \
	no_password refused_port unknown_host mid_reply garbage; do
	same "$s failed" '"failed"' "$(field "$run" "$s" status)"
done

# --- a server that stops answering (kill -STOP), then the timeout -------------------
kill -STOP "$redis_pid"
t0=$(date +%s%N)
# (A run that waited for ever would be killed at 60s, and fail below.)
RUNBOOK_WRAP="timeout -s KILL 60 ${RUNBOOK_WRAP:-}" \
	runrb stopped run --state-dir "$state" --jobs 1 tests/redis/stopped.yaml "${P[@]}"
t1=$(date +%s%N)
kill -CONT "$redis_pid"
same "stopped: the run fails" 1 "$rc"
has "stopped: the step's timeout" "$(error_of "$run" get)" "timed out"
has "stopped: the action's timeout" "$(error_of "$run" own_timeout)" "^GET on $at: timed out$"
ms=$(((t1 - t0) / 1000000))
check "stopped: both in about 2s ($ms ms; valgrind is slower)" test "$ms" -lt 20000
same "stopped: the server answers again" PONG "$(rcli PING)"

# --- Ctrl-C cancels a command that waits for ever ----------------------------------
"$RUNBOOK" run --state-dir "$state" tests/redis/block.yaml "${P[@]}" >"$out/block" 2>&1 </dev/null &
bg_pid=$!
for ((i = 0; i < 200; i++)); do
	rcli CLIENT LIST | grep -q 'cmd=blpop' && break
	sleep 0.05
done
has "Ctrl-C: BLPOP waits on the server" "$(rcli CLIENT LIST)" 'cmd=blpop'
kill -INT "$bg_pid"
wait "$bg_pid"
rc=$? bg_pid=""
same "Ctrl-C: exit status" 130 "$rc"
run=$(sed -n 's/^[0-9:]* run \([0-9a-z-]*\): .*/\1/p' "$out/block" | head -n 1)
same "Ctrl-C: the step is interrupted" '"interrupted"' "$(field "$run" wait_job status)"
for ((i = 0; i < 40; i++)); do
	rcli CLIENT LIST | grep -q 'cmd=blpop' || break
	sleep 0.05
done
same "Ctrl-C: the connection is closed on the server" 0 "$(rcli CLIENT LIST | grep -c 'cmd=blpop')"

# --- rediss://: TLS to the server's tls-port ----------------------------------------
if [ -n "${RB_TEST_REDISS_URL:-}" ]; then
	T=(-p "url=$RB_TEST_REDISS_URL" -p "ca=$RB_TEST_CA_FILE" -p "cert=$RB_TEST_CLIENT_CERT"
	   -p "key=$RB_TEST_CLIENT_KEY")
	rcli DEL tls:k tls:n >/dev/null
	before=$(connections)
	runrb tls run --state-dir "$state" --jobs 1 tests/redis/tls.yaml "${T[@]}"
	same "rediss: exit status" 0 "$rc"
	# set, get and pipe on one kept connection; mtls and insecure trust the server
	# otherwise: one each (the INFO call that counts is one more).
	same "rediss: connections made" 3 "$(($(connections) - before - 1))"
	same "rediss: SET is on the server" "over TLS" "$(rcli GET tls:k)"
	same "rediss: GET's output" '{"reply":"over TLS"}' "$(field "$run" get output)"
	same "rediss: MULTI/EXEC" '{"replies":[1,2,"2"]}' "$(field "$run" pipe output)"
	same "rediss: with a client certificate" '{"reply":"over TLS"}' "$(field "$run" mtls output)"
	same "rediss: insecure, not verified" '{"reply":"PONG"}' "$(field "$run" insecure output)"

	# A listener that takes the connection and never says a word.
	silent_port=$(free_port)
	node -e 'require("net").createServer(() => {}).listen(+process.argv[1], "127.0.0.1")' \
		"$silent_port" &
	bg_pid=$!
	for ((i = 0; i < 100; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$silent_port") 2>/dev/null && break
		sleep 0.05
	done
	expired_port=${RB_TEST_HTTPS_EXPIRED_URL##*:}
	expired_port=${expired_port%%/*}
	runrb tls_bad run --state-dir "$state" --jobs 1 tests/redis/tls_bad.yaml \
		-p "url=$RB_TEST_REDISS_URL" -p "plain=rediss://127.0.0.1:$RB_TEST_REDIS_PORT/0" \
		-p "expired=rediss://127.0.0.1:$expired_port/0" \
		-p "silent=rediss://127.0.0.1:$silent_port/0" -p "ca=$RB_TEST_CA_FILE" \
		-p "bad_cert=$RB_TEST_EXPIRED_CERT" -p "bad_key=$RB_TEST_EXPIRED_KEY"
	kill "$bg_pid" 2>/dev/null
	bg_pid=""
	check "rediss failures: the run ends, no crash ($rc)" test "$rc" -le 1
	tat="rediss://127.0.0.1:$RB_TEST_REDISS_PORT/0"
	has "rediss: a server the system's CAs do not trust" "$(error_of "$run" untrusted)" \
		"^SET on $tat: the TLS handshake failed: the server's certificate: (unable to get local issuer certificate|self-signed certificate in certificate chain)$"
	has "rediss: an expired certificate" "$(error_of "$run" expired)" \
		"^PING on rediss://127.0.0.1:$expired_port/0: the TLS handshake failed: the server's certificate: certificate has expired$"
	# (TLS 1.3: the client's handshake is over when the server refuses its certificate;
	# the next write fails, and the server's alert says why)
	has "rediss: a client certificate the server refuses" "$(error_of "$run" bad_client)" \
		"^SET on $tat: the server closed the connection: .*certificate"
	same "rediss: ... nothing was written" 0 "$(rcli EXISTS tls:bad)"
	has "rediss: a ca_file that cannot be read" "$(error_of "$run" no_ca_file)" \
		"^PING on $tat: ca_file /nonexistent/ca.pem: No such file or directory$"
	has "rediss: a server silent in the handshake, to the timeout" "$(error_of "$run" silent)" \
		"^PING on rediss://127.0.0.1:$silent_port/0: timed out in the TLS handshake$"
	has "rediss: a port that does not speak TLS, to the timeout" "$(error_of "$run" plain_port)" \
		"^SET on rediss://127.0.0.1:$RB_TEST_REDIS_PORT/0: timed out in the TLS handshake$"
	for s in untrusted plain_port expired bad_client no_ca_file silent; do
		same "rediss: $s failed" '"failed"' "$(field "$run" "$s" status)"
	done
else
	bad "rediss: the test server has no TLS port (RB_TEST_REDISS_URL)"
fi

# --- the passwords appear nowhere ---------------------------------------------------
runrb plan_basics plan tests/redis/basics.yaml "${P[@]}"
for r in $(ls "$state/runs"); do
	rb status "$r" --state-dir "$state" >"$out/status-$r" 2>&1
	rb status "$r" --state-dir "$state" --format json >"$out/status-json-$r" 2>&1
	rb replay "$r" --state-dir "$state" >"$out/replay-$r" 2>&1
done
check "the runs were kept" test "$(ls "$state/runs" | wc -l)" -ge 6
for name in RB_TEST_REDIS_PASSWORD RB_TEST_REDIS_APP_PASSWORD REDIS_WRONG_PASSWORD; do
	v=${!name}
	if grep -rqF -- "$v" "$state" "$out"; then
		bad "$name is in: $(grep -rlF -- "$v" "$state" "$out" | head -n 3 | tr '\n' ' ')"
	else
		ok
	fi
done
has "the intent records write the password as ***" "$(cat "$state"/runs/*/audit.jsonl)" \
	'\\"password\\":\\"\*\*\*\\"'

echo "redis: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
