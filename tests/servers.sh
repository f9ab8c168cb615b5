#!/usr/bin/env bash
# The real servers of tests/servers/ that the network actions are tested
# against, checked with the real clients (psql, redis-cli, curl): each answers
# as tests/servers/README.md says, refuses who it must, and servers_stop, the
# trap or the watchdog leaves no process and no directory, also when the suite
# is killed or a start fails halfway.  Needs no runbook binary.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/servers/servers.sh
tmp=$(mktemp -d)
trap 'servers_stop; rm -rf "$tmp"' EXIT
pass=0 fail=0
check() {                 # check DESCRIPTION COMMAND...
	if "${@:2}" >/dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $1"; fi
}
gone() {                  # gone PID...: none runs (a zombie waiting for init is gone)
	local p s
	for p; do
		s=$(ps -o stat= -p "$p" 2>/dev/null) || continue
		[[ $s == Z* ]] || return 1
	done
}
eventually() {            # eventually COMMAND...: true within 10 s
	local i
	for ((i = 0; i < 100; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}
empty() { [ -z "$(ls -A "$1")" ]; }                # empty DIR
unnamed() { [ -z "$(pgrep -f "$1")" ]; }           # unnamed PATH: no process names it
their_pids() {            # their_pids DIR: every server's and the watchdog's pid
	cat "$1"/*.pid 2>/dev/null
	if [ -s "$1/pg/data/postmaster.pid" ]; then
		local pm
		pm=$(head -n 1 "$1/pg/data/postmaster.pid")
		echo "$pm"
		pgrep -P "$pm"
	fi
}
export PGPASSFILE=/dev/null PGCONNECT_TIMEOUT=10   # only the passwords given here

start=$(date +%s%N)
servers_start pg redis http
check "servers_start pg redis http" [ $? -eq 0 ]
ms=$((($(date +%s%N) - start) / 1000000))
check "they start in under 15 s (took $ms ms)" [ "$ms" -lt 15000 ]
dir=$RB_TEST_SERVERS_DIR
for v in RB_TEST_PG_URL RB_TEST_PG_HOST RB_TEST_PG_PORT RB_TEST_PG_USER RB_TEST_PG_PASSWORD \
	RB_TEST_PG_DB RB_TEST_PG_APP_URL RB_TEST_PG_APP_USER RB_TEST_PG_APP_PASSWORD \
	RB_TEST_REDIS_URL RB_TEST_REDIS_PORT RB_TEST_REDIS_PASSWORD RB_TEST_REDIS_APP_URL \
	RB_TEST_HTTP_URL RB_TEST_HTTPS_URL RB_TEST_HTTPS_EXPIRED_URL RB_TEST_HTTPS_MTLS_URL \
	RB_TEST_CA_FILE RB_TEST_CLIENT_CERT RB_TEST_CLIENT_KEY RB_TEST_HTTP_LOG; do
	check "$v is exported" bash -c "[ -n \"\${$v:-}\" ]"
done

# --- PostgreSQL ---------------------------------------------------------------
q() { psql -X -A -t -v ON_ERROR_STOP=1 "$@"; }
check "psql with RB_TEST_PG_URL" [ "$(q "$RB_TEST_PG_URL" -c 'select 1')" = 1 ]
check "its user, database, host and port" [ "$(q "$RB_TEST_PG_URL" -c \
	"select current_user || ' ' || current_database() || ' ' || inet_server_addr() || ' ' || inet_server_port()")" = \
	"$RB_TEST_PG_USER $RB_TEST_PG_DB 127.0.0.1/32 $RB_TEST_PG_PORT" ]
check "with the separate coordinates" [ "$(PGPASSWORD=$RB_TEST_PG_PASSWORD q -h "$RB_TEST_PG_HOST" \
	-p "$RB_TEST_PG_PORT" -U "$RB_TEST_PG_USER" -d "$RB_TEST_PG_DB" -c 'select 2')" = 2 ]
check "the first user is a superuser" [ "$(q "$RB_TEST_PG_URL" -c 'select rolsuper from pg_roles where rolname = current_user')" = t ]
check "the second is not" [ "$(q "$RB_TEST_PG_APP_URL" -c 'select rolsuper from pg_roles where rolname = current_user')" = f ]
check "the second can create a table in public" q "$RB_TEST_PG_APP_URL" -c 'create table t (id int); insert into t values (1); drop table t'
out=$(q "$RB_TEST_PG_APP_URL" -c 'create database nope' 2>&1)
check "and cannot create a database" grep -q 'permission denied' <<<"$out"
out=$(q "postgresql://$RB_TEST_PG_USER:wrong@127.0.0.1:$RB_TEST_PG_PORT/$RB_TEST_PG_DB" -c 'select 1' 2>&1)
check "a wrong password is refused" grep -q 'password authentication failed' <<<"$out"
out=$(env -u PGPASSWORD psql -X -w "postgresql://$RB_TEST_PG_USER@127.0.0.1:$RB_TEST_PG_PORT/$RB_TEST_PG_DB" -c 'select 1' 2>&1)
check "no password is refused" grep -q 'no password supplied' <<<"$out"
check "host connections use scram-sha-256" [ "$(q "$RB_TEST_PG_URL" -c \
	"select count(*) from pg_hba_file_rules where type = 'host' and auth_method <> 'scram-sha-256'")" = 0 ]
check "it listens on 127.0.0.1 only" [ "$(q "$RB_TEST_PG_URL" -c 'show listen_addresses')" = 127.0.0.1 ]
check "fsync is off" [ "$(q "$RB_TEST_PG_URL" -c 'show fsync')" = off ]
check "its data is in the temporary directory" [ "$(q "$RB_TEST_PG_URL" -c 'show data_directory')" = "$dir/pg/data" ]
pm=$(head -n 1 "$dir/pg/data/postmaster.pid")
if [ "$(id -u)" -eq 0 ]; then
	check "as root, it runs as an unprivileged user" [ "$(ps -o user= -p "$pm")" = rbtest ]
else
	check "it runs as us" [ "$(ps -o uid= -p "$pm" | tr -d ' ')" = "$(id -u)" ]
fi

# --- Redis ----------------------------------------------------------------------
r() { redis-cli --no-auth-warning -h 127.0.0.1 -p "$RB_TEST_REDIS_PORT" "$@"; }
check "redis-cli with the password" [ "$(REDISCLI_AUTH=$RB_TEST_REDIS_PASSWORD r ping)" = PONG ]
check "redis-cli with RB_TEST_REDIS_URL sets" [ "$(redis-cli --no-auth-warning -u "$RB_TEST_REDIS_URL" set k v)" = OK ]
check "and gets" [ "$(redis-cli --no-auth-warning -u "$RB_TEST_REDIS_URL" get k)" = v ]
check "refused without the password" grep -q NOAUTH <<<"$(r get k 2>&1)"
check "refused with a wrong one" grep -q WRONGPASS <<<"$(r -a wrong get k 2>&1)"
check "the second user writes app:*" [ "$(redis-cli --no-auth-warning -u "$RB_TEST_REDIS_APP_URL" set app:k v)" = OK ]
check "and nothing else" grep -q NOPERM <<<"$(redis-cli --no-auth-warning -u "$RB_TEST_REDIS_APP_URL" set k w 2>&1)"
check "nor dangerous commands" grep -q NOPERM <<<"$(redis-cli --no-auth-warning -u "$RB_TEST_REDIS_APP_URL" flushall 2>&1)"
check "it saves nothing" [ "$(REDISCLI_AUTH=$RB_TEST_REDIS_PASSWORD r config get save | tail -n 1)" = "" ]
check "no append-only file" [ "$(REDISCLI_AUTH=$RB_TEST_REDIS_PASSWORD r config get appendonly | tail -n 1)" = no ]
check "it listens on 127.0.0.1 only" [ "$(REDISCLI_AUTH=$RB_TEST_REDIS_PASSWORD r config get bind | tail -n 1)" = 127.0.0.1 ]

# --- HTTP -----------------------------------------------------------------------
H=$RB_TEST_HTTP_URL
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
check "/health" [ "$(curl -sf "$H/health")" = '{"status": "ok"}' ]
check "/status is JSON" jq -e '.status == "ok" and .listener == "http"' <<<"$(curl -sf "$H/status")"
check "the plain listener is on 127.0.0.1" [ "$(curl -s -o /dev/null -w '%{remote_ip}' "$H/health")" = 127.0.0.1 ]
for code in 200 201 204 301 400 404 418 500 503; do
	check "/status/$code" [ "$(status "$H/status/$code")" = "$code" ]
done
check "HEAD has headers and no body" [ "$(curl -sI "$H/big?bytes=100" | tr -d '\r' | grep -i '^content-length')" = "Content-Length: 100" ]

urls=()
for i in $(seq 100); do urls+=(-o /dev/null -w '%{num_connects}\n' "$H/health"); done
t0=$(date +%s%N)
conns=$(curl -sf "${urls[@]}" | sort | uniq -c | tr -s ' ' | tr '\n' ' ')
ms=$((($(date +%s%N) - t0) / 1000000))
check "100 requests on one kept-alive connection ($conns)" [ "$conns" = " 99 0  1 1 " ]
check "with no wait between them ($ms ms; Nagle's is 40 ms each)" [ "$ms" -lt 2000 ]
head -c 2000000 /dev/urandom >"$tmp/up"
t=$(curl -sf -o "$tmp/echo" -w '%{time_total}' -H 'Expect: 100-continue' --data-binary @"$tmp/up" "$H/echo")
check "100 Continue at once (curl waits 1 s for it; $t s)" awk -v t="$t" 'BEGIN { exit !(t < 0.9) }'
check "a 2 MB body: its length and sha256, its first MiB" jq -e --arg s "$(sha256sum <"$tmp/up" | cut -c 1-64)" \
	'.body_length == 2000000 and .body_sha256 == $s and .body_truncated and (.body | @base64d | length) > 0' "$tmp/echo"

out=$(curl -sf -X PATCH -H 'X-One: 1' -H 'Content-Type: application/json' --data-binary '{"a":[1,"é"]}' "$H/echo?x=1&x=2&y=")
check "/echo: the method" jq -e '.method == "PATCH"' <<<"$out"
check "/echo: the path and query" jq -e '.path == "/echo" and .query == {"x": ["1", "2"], "y": [""]} and .query_string == "x=1&x=2&y="' <<<"$out"
check "/echo: the headers" jq -e '.headers["x-one"] == "1" and (.raw_headers | index([["X-One", "1"]]))' <<<"$out"
check "/echo: the body, and as JSON" jq -e '.body == "{\"a\":[1,\"é\"]}" and .body_encoding == "utf-8" and .json == {"a": [1, "é"]}' <<<"$out"
out=$(printf 'caf\351\000' | curl -sf --data-binary @- "$H/echo")
check "/echo: a body not UTF-8 in base64" jq -e '.body_encoding == "base64" and .body == "Y2Fm6QA=" and .body_length == 5' <<<"$out"
check "/echo: any method" jq -e '.method == "PURGE"' <<<"$(curl -sf -X PURGE "$H/echo")"

check "/retry-after/2: 429 first" [ "$(status -H 'X-Test-Key: ra1' "$H/retry-after/2")" = 429 ]
check "with Retry-After: 2" grep -qx 'Retry-After: 2' <<<"$(curl -s -D - -o /dev/null -H 'X-Test-Key: ra2' "$H/retry-after/2" | tr -d '\r')"
check "200 after" [ "$(status -H 'X-Test-Key: ra1' "$H/retry-after/2")" = 200 ]
check "counted by X-Test-Key" [ "$(status -H 'X-Test-Key: ra3' "$H/retry-after/2")" = 429 ]
check "Retry-After as an HTTP date" grep -q '^Retry-After: [A-Z][a-z][a-z], [0-9][0-9] ' <<<"$(curl -s -D - -o /dev/null -H 'X-Test-Key: ra4' "$H/retry-after/3?format=date" | tr -d '\r')"
codes=$(for i in 1 2 3 4; do status -H 'X-Test-Key: fl1' "$H/flaky/2"; echo; done | tr '\n' ' ')
check "/flaky/2: 503 twice, then 200 ($codes)" [ "$codes" = "503 503 200 200 " ]
check "/flaky/2 for another key starts again" [ "$(status -H 'X-Test-Key: fl2' "$H/flaky/2")" = 503 ]

t=$(curl -sf -o /dev/null -w '%{time_total}' "$H/slow?ms=400")
check "/slow?ms=400 takes 0.4 s ($t)" awk -v t="$t" 'BEGIN { exit !(t >= 0.4 && t < 5) }'
curl -s -m 0.2 "$H/slow?ms=2000" >/dev/null 2>&1
check "a client's timeout on /slow (curl 28)" [ $? -eq 28 ]
out=$(curl -sf -w ' %{time_total} %{time_starttransfer}' "$H/drip?bytes=5&ms=150")
read -r body total first <<<"$out"
check "/drip sends its bytes ($body)" [ "$body" = "....." ]
check "slowly, after the headers ($first, $total)" awk -v a="$first" -v t="$total" 'BEGIN { exit !(t >= 0.7 && t - a >= 0.5) }'
curl -s "$H/close" >/dev/null 2>&1
check "/close: the body ends early (curl 18)" [ $? -eq 18 ]
curl -s "$H/close?at=start" >/dev/null 2>&1
check "/close?at=start: no reply at all (curl 52)" [ $? -eq 52 ]
size=$(curl -sf -o /dev/null -w '%{size_download}' "$H/big?bytes=1073741824")
check "/big: 1 GB streamed ($size)" [ "$size" = 1073741824 ]
rss=$(ps -o rss= -p "$(<"$dir/http.pid")" | tr -d ' ')
check "without holding it in memory (rss $rss KiB)" [ "$rss" -lt 102400 ]
check "/big: its bytes" [ "$(curl -sf "$H/big?bytes=20")" = 0123456789abcdef0123 ]
out=$(curl -sf -D "$tmp/h" "$H/json-invalid")
check "/json-invalid says it is JSON" grep -qi '^content-type: application/json' "$tmp/h"
check "and is not" bash -c '! jq . >/dev/null 2>&1 <<<"$1"' _ "$out"
curl -sf -D "$tmp/h" -o "$tmp/latin1" "$H/latin1"
check "/latin1 says so" grep -qi 'charset=iso-8859-1' "$tmp/h"
check "and is not UTF-8" bash -c '! iconv -f UTF-8 -t UTF-8 "$1" >/dev/null 2>&1' _ "$tmp/latin1"
check "/latin1 in Latin-1" [ "$(iconv -f ISO-8859-1 -t UTF-8 "$tmp/latin1")" = "café crème brûlée" ]
check "/redirect: 302" [ "$(status "$H/redirect?to=/health")" = 302 ]
check "with its Location" grep -qx 'Location: /health' <<<"$(curl -s -D - -o /dev/null "$H/redirect?to=/health" | tr -d '\r')"
check "followed" [ "$(curl -sfL "$H/redirect?to=/health")" = '{"status": "ok"}' ]
check "/redirect?code=307" [ "$(status "$H/redirect?to=/health&code=307")" = 307 ]

check "/auth/basic with its credentials" [ "$(status -u "$RB_TEST_HTTP_BASIC_USER:$RB_TEST_HTTP_BASIC_PASSWORD" "$H/auth/basic")" = 200 ]
check "/auth/basic with a wrong password: 401" [ "$(status -u "$RB_TEST_HTTP_BASIC_USER:x" "$H/auth/basic")" = 401 ]
check "/auth/basic without: 401 and a challenge" grep -qi '^WWW-Authenticate: Basic' <<<"$(curl -s -D - -o /dev/null "$H/auth/basic")"
check "/auth/bearer with its token" [ "$(status -H "Authorization: Bearer $RB_TEST_HTTP_BEARER_TOKEN" "$H/auth/bearer")" = 200 ]
check "/auth/bearer with another: 401" [ "$(status -H "Authorization: Bearer x$RB_TEST_HTTP_BEARER_TOKEN" "$H/auth/bearer")" = 401 ]
check "/auth/bearer without: 401" [ "$(status "$H/auth/bearer")" = 401 ]

check "/slack: ok" [ "$(curl -sf -H 'Content-Type: application/json' -d '{"text":"deploy done"}' "$H/slack/T0/B0/xyz")" = ok ]
check "/slack: the form payload= too" [ "$(curl -sf --data-urlencode 'payload={"text":"hi"}' "$H/slack/T0/B0/xyz")" = ok ]
check "/slack: no text is 400 no_text" [ "$(curl -s -w ' %{http_code}' -d '{"channel":"x"}' "$H/slack/T0/B0/xyz")" = "no_text 400" ]
check "/slack: not JSON is 400 invalid_payload" [ "$(curl -s -w ' %{http_code}' -d 'nope' "$H/slack/T0/B0/xyz")" = "invalid_payload 400" ]
check "/slack: GET is 405" [ "$(status "$H/slack/T0/B0/xyz")" = 405 ]
pd() { curl -s -w '\n%{http_code}' -H 'Content-Type: application/json' -d "$1" "$H/pagerduty/v2/enqueue"; }
out=$(pd '{"routing_key":"R0123","event_action":"trigger","payload":{"summary":"disk full","source":"db1","severity":"critical"}}')
check "/pagerduty: a trigger is 202" [ "$(tail -n 1 <<<"$out")" = 202 ]
check "with a dedup_key" jq -e '.status == "success" and (.dedup_key | length) == 32' <<<"$(head -n 1 <<<"$out")"
out=$(pd '{"routing_key":"R0123","event_action":"resolve","dedup_key":"d-1"}')
check "/pagerduty: a resolve keeps its dedup_key" jq -e '.dedup_key == "d-1"' <<<"$(head -n 1 <<<"$out")"
out=$(pd '{"event_action":"trigger","payload":{"summary":"s","source":"s","severity":"info"}}')
check "/pagerduty: no routing_key is 400" [ "$(tail -n 1 <<<"$out")" = 400 ]
check "saying so" jq -e '.status == "invalid event" and (.errors[0] | test("routing_key"))' <<<"$(head -n 1 <<<"$out")"
check "/pagerduty: no event_action is 400" [ "$(pd '{"routing_key":"R"}' | tail -n 1)" = 400 ]
check "/pagerduty: a bad severity is 400" [ "$(pd '{"routing_key":"R","event_action":"trigger","payload":{"summary":"s","source":"s","severity":"bad"}}' | tail -n 1)" = 400 ]
check "/hook: a POST is 200" jq -e '.ok and .received_bytes == 7' <<<"$(curl -sf -d '{"a":1}' "$H/hook/deploys")"
check "/hook: GET is 405" [ "$(status "$H/hook/deploys")" = 405 ]

first=$(curl -sf -D "$tmp/h1" -H 'Idempotency-Key: k1' -d 'order 1' "$H/idem")
again=$(curl -sf -D "$tmp/h2" -H 'Idempotency-Key: k1' -d 'order 1' "$H/idem")
check "/idem: the same key answers the first answer" [ "$first" = "$again" ]
check "/idem: marked as replayed" grep -qi '^Idempotent-Replayed: true' "$tmp/h2"
check "the first was not" bash -c '! grep -qi "^Idempotent-Replayed" "$1"' _ "$tmp/h1"
other=$(curl -sf -H 'Idempotency-Key: k2' -d 'order 1' "$H/idem")
check "/idem: another key, another id" [ "$(jq .id <<<"$other")" != "$(jq .id <<<"$first")" ]
check "/idem: a key reused for another body is 422" [ "$(status -H 'Idempotency-Key: k1' -d 'order 2' "$H/idem")" = 422 ]

check "DELETE /_requests clears" jq -e '.cleared > 0' <<<"$(curl -sf -X DELETE "$H/_requests")"
check "and the log is empty" [ ! -s "$RB_TEST_HTTP_LOG" ]
curl -sf -H 'X-Rec: 1' -d 'first body' "$H/hook/a?n=1" >/dev/null
printf '\377\376' | curl -sf -X PUT --data-binary @- "$H/hook/b" >/dev/null
out=$(curl -sf "$H/_requests")
check "/_requests: what the server received, in order" jq -e 'length == 2 and .[0].path == "/hook/a" and .[1].path == "/hook/b"' <<<"$out"
check "with method, query, headers and body" jq -e '.[0] | .method == "POST" and .query.n == ["1"] and .headers["x-rec"] == "1" and .body == "first body"' <<<"$out"
check "a body not UTF-8 in base64" jq -e '.[1] | .method == "PUT" and .body_encoding == "base64" and .body == "//4="' <<<"$out"
check "and the time" jq -e 'all(.time | test("^20[0-9-]+T[0-9:.]+Z$"))' <<<"$out"
check "/_requests?path= filters" jq -e 'length == 1' <<<"$(curl -sf "$H/_requests?path=/hook/b")"
check "the log file holds the same, a line each" [ "$(jq -s -c . "$RB_TEST_HTTP_LOG")" = "$(jq -c . <<<"$out")" ]

# --- TLS -----------------------------------------------------------------------
check "https verifies with the test CA" [ "$(curl -sf --cacert "$RB_TEST_CA_FILE" "$RB_TEST_HTTPS_URL/health")" = '{"status": "ok"}' ]
check "also by the name localhost" curl -sf --cacert "$RB_TEST_CA_FILE" "https://localhost:$RB_TEST_HTTPS_PORT/health"
curl -s "$RB_TEST_HTTPS_URL/health" >/dev/null 2>&1
check "https without the CA is refused (curl 60)" [ $? -eq 60 ]
out=$(curl -sS --cacert "$RB_TEST_CA_FILE" "$RB_TEST_HTTPS_EXPIRED_URL/health" 2>&1)
check "the expired certificate is refused" grep -q 'certificate has expired' <<<"$out"
check "its server answers otherwise" curl -sfk "$RB_TEST_HTTPS_EXPIRED_URL/health"
check "the expired certificate ended yesterday" bash -c '! openssl x509 -checkend 0 -noout -in "$1" && openssl x509 -checkend -172800 -noout -in "$1"' _ "$RB_TEST_EXPIRED_CERT"
check "the others are valid" openssl verify -CAfile "$RB_TEST_CA_FILE" "$RB_TEST_SERVER_CERT" "$RB_TEST_CLIENT_CERT"
out=$(curl -sf --cacert "$RB_TEST_CA_FILE" --cert "$RB_TEST_CLIENT_CERT" --key "$RB_TEST_CLIENT_KEY" "$RB_TEST_HTTPS_MTLS_URL/echo")
check "mTLS with the client certificate" jq -e '.listener == "https_mtls" and .client_cert.commonName == "runbook test client"' <<<"$out"
check "mTLS without it is refused" bash -c '! curl -sf --cacert "$1" "$2/health"' _ "$RB_TEST_CA_FILE" "$RB_TEST_HTTPS_MTLS_URL"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/self.key" \
	-out "$tmp/self.pem" -days 1 -subj /CN=stranger >/dev/null 2>&1
check "mTLS with a certificate of another CA is refused" bash -c '! curl -sf --cacert "$1" --cert "$3" --key "$4" "$2/health"' \
	_ "$RB_TEST_CA_FILE" "$RB_TEST_HTTPS_MTLS_URL" "$tmp/self.pem" "$tmp/self.key"
check "the https listener records its requests too" jq -e 'any(.listener == "https")' <<<"$(curl -sf "$H/_requests")"

# --- stopping -------------------------------------------------------------------
pids=$(their_pids "$dir")
check "there are processes to stop ($(wc -w <<<"$pids"))" [ "$(wc -w <<<"$pids")" -ge 5 ]
servers_stop
check "servers_stop leaves no process" gone $pids
check "nor its directory" [ ! -e "$dir" ]
left=$(pgrep -f "$dir")
check "nor a process naming it ($left)" [ -z "$left" ]
servers_stop
check "servers_stop a second time" [ $? -eq 0 ]

# A suite killed while its servers run: SIGTERM runs its trap; SIGKILL leaves
# it to the watchdog.
cat >"$tmp/suite.sh" <<'EOF'
. tests/servers/servers.sh
trap servers_stop EXIT
servers_start pg redis http || exit 1
echo "$RB_TEST_SERVERS_DIR" >"$1.tmp" && mv "$1.tmp" "$1"
while :; do sleep 0.1; done
EOF
for sig in TERM KILL; do
	bash "$tmp/suite.sh" "$tmp/$sig.dir" </dev/null >"$tmp/$sig.log" 2>&1 &
	pid=$!
	eventually [ -s "$tmp/$sig.dir" ]
	d=$(<"$tmp/$sig.dir")
	pids=$(their_pids "$d")
	kill -"$sig" "$pid"
	wait "$pid" 2>/dev/null   # not its "Killed" notice
	check "a suite killed by SIG$sig: started ($(wc -w <<<"$pids") processes)" [ "$(wc -w <<<"$pids")" -ge 5 ]
	check "a suite killed by SIG$sig leaves no process" eventually gone $pids
	check "nor its directory" eventually [ ! -e "$d" ]
done

# A suite killed in the middle of starting them (initdb, pg_ctl start): in a
# TMPDIR of its own (that PostgreSQL's user can pass through), to see that
# nothing is left in it.
kt=$(mktemp -d)
chmod 711 "$kt"
trap 'servers_stop; rm -rf "$tmp" "$kt"' EXIT
for delay in 0.4 0.8; do
	TMPDIR=$kt bash "$tmp/suite.sh" "$tmp/during.dir" </dev/null >/dev/null 2>&1 &
	pid=$!
	sleep "$delay"
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null
	check "a suite killed ${delay}s into its start leaves no directory" eventually empty "$kt"
	check "nor a process naming one" eventually unnamed "$kt/"
done

# A suite under set -eu whose server died before the stop: servers_stop, twice,
# stops the others and does not stop the suite.
cat >"$tmp/strict.sh" <<'EOF'
set -euo pipefail
. tests/servers/servers.sh
trap servers_stop EXIT
servers_start redis http
echo "$RB_TEST_SERVERS_DIR" >"$1"
kill "$(<"$RB_TEST_SERVERS_DIR/redis.pid")"
sleep 0.2
servers_stop
servers_stop
echo stopped
EOF
out=$(bash "$tmp/strict.sh" "$tmp/strict.dir" 2>&1)
check "a set -e suite goes on after servers_stop ($out)" [ "$out" = stopped ]
check "with nothing left" [ ! -e "$(<"$tmp/strict.dir")" ]

# A start that fails halfway (no PostgreSQL where it looks) stops what started.
RB_TEST_PG_BIN=/nonexistent servers_start redis http pg 2>"$tmp/err"
check "a start that fails says so" [ $? -ne 0 ]
check "naming what failed" grep -q 'no PostgreSQL in /nonexistent' "$tmp/err"
dir=$RB_TEST_SERVERS_DIR
pids=$(their_pids "$dir")
check "Redis and HTTP had started" [ "$(wc -w <<<"$pids")" -eq 3 ]
servers_stop
check "servers_stop after it leaves no process" gone $pids
check "nor its directory" [ ! -e "$dir" ]

echo "servers: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
