#!/usr/bin/env bash
# http.request against the tests' own HTTP(S) server (tests/servers/httpd.py):
# what the server received is checked on the server (/_requests), never only
# from the step's output.
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
if ! servers_start http; then
	echo "FAIL the HTTP server did not start"
	echo "http: 0 passed, 1 failed"
	exit 1
fi
base=$RB_TEST_HTTP_URL
st="$tmp/state"
run() { rb run --state-dir "$st" "$@"; }
last_run() { echo "$st/runs/$(ls -t "$st/runs" | head -n 1)"; }
received() { curl -s "$base/_requests?path=$1"; }      # what the server got, as JSON

out=$(run -p base="$base" tests/http/basic.yaml 2>&1)
check "GET, POST with json, query, headers, bearer and basic auth" grep -q 'check: succeeded' <<<"$out"
check "the server received the POST's JSON body" bash -c "curl -s '$base/_requests?path=/echo' | jq -e '.[-1].body | fromjson | .name == \"it'\\''s\"'"
check "... and the bearer token" bash -c "curl -s '$base/_requests?path=/auth/bearer' | jq -e '.[-1].headers.authorization == \"Bearer $RB_TEST_HTTP_BEARER_TOKEN\"'"
check "the token is nowhere in the state directory" bash -c "! grep -rqF '$RB_TEST_HTTP_BEARER_TOKEN' '$st'"
check "nor is the basic password" bash -c "! grep -rqF '$RB_TEST_HTTP_BASIC_PASSWORD' '$st'"
d=$(last_run)
check "the intent record shows *** for them" bash -c "grep -h action_intent '$d/audit.jsonl' | jq -se 'map(select(.step == \"bearer\"))[0].args | fromjson | .bearer_token == \"***\"'"
check "the plan shows *** for them" bash -c "'$RUNBOOK' plan -p base=x tests/http/basic.yaml | grep -qF 'bearer_token: ***'"

# Arguments: numbers as text, computed values checked against their types, no header injection.
out=$(run -p base="$base" -p evil="$(printf 'v\r\nX-Injected: yes')" tests/http/args.yaml 2>&1)
check "args: numbers and booleans written for strings go as their text" grep -q 'check: succeeded' <<<"$out"
check "a line break in a header's value fails the step, at the argument" grep -q "injected: failed.*args.yaml:28:16: argument 'headers' of action 'http.request': the value of 'X-A' holds a control character" <<<"$out"
check "... and nothing was sent" [ "$(received /echo | jq '[.[] | select(.query.k == ["args-injected"])] | length')" = 0 ]
check "a nil in the query fails the step, at the argument" grep -q "nil_in_query: failed.*args.yaml:34:14: argument 'query' of action 'http.request': value of 'a' must be a string, not nil" <<<"$out"
check "a computed method must be one of the choices" grep -q "bad_method: failed.*argument 'method' of action 'http.request': expected one of GET, HEAD" <<<"$out"
check "a computed timeout must be a duration" grep -q "bad_timeout: failed.*argument 'timeout' of action 'http.request': invalid duration" <<<"$out"
check "... none of them was sent" [ "$(received /echo | jq '[.[] | select((.query.k[0] // "") | test("args-(nil|method|timeout)"))] | length')" = 0 ]
out=$("$RUNBOOK" validate /dev/stdin <<<'{runbook: h, version: 1, steps: [{id: a, action: http.request, with: {url: "http://x/", headers: {"Bad Name": "x"}}}]}' 2>&1)
check "validate refuses a header name that is no token" grep -q "'Bad Name' is not a header name" <<<"$out"

# A body that is not JSON: jansson quotes up to 20 bytes near the error, which may be a
# piece of a secret (an escape JSON does not have, in a password): the message does not.
out=$(run -p base="$base" tests/http/json_quote.yaml 2>&1)
check "a body that is not JSON fails, saying where" grep -q 'not_json: failed.*the body is not valid JSON (line 1, column 6: invalid escape)' <<<"$out"
check "... quoting none of it" bash -c '! grep -qF "k3y" <<<"$1"' _ "$out"

# Connections are kept for the run: as many as ran at once, not libcurl's four a transfer.
curl -s -X DELETE "$base/_requests" >/dev/null
out=$(run --jobs 8 -p base="$base" tests/http/pool.yaml 2>&1)
check "pool: sixteen GETs, eight at a time, succeed" grep -q 'second: succeeded' <<<"$out"
check "... the server saw eight at once on eight connections" [ "$(received /slow | jq '[.[] | select(.query.wave == ["1"]) | .client_port] | unique | length')" = 8 ]
check "... and the next eight on those same eight" [ "$(received /slow | jq '(map(select(.query.wave == ["1"]) | .client_port) | unique) == (map(select(.query.wave == ["2"]) | .client_port) | unique)')" = true ]

out=$(run -p base="$base" tests/http/statuses.yaml 2>&1)
check "statuses: unexpected fails, expected passes, 429 and 503 retried" grep -q 'check: succeeded' <<<"$out"
check "a 500 says its status" grep -q "server_error: failed.*GET $base/status/500: status 500" <<<"$out"
check "the 429 was sent twice, after its Retry-After" [ "$(received /retry-after/1 | jq 'length')" -ge 2 ]

dead="http://127.0.0.1:$(_servers_free_port)"
out=$(run -p base="$base" -p dead="$dead" tests/http/faults.yaml 2>&1)
check "faults: every one a clear failure, the run goes on" grep -q 'check: succeeded' <<<"$out"
check "a refused connection says so" grep -q "refused: failed.*GET $dead/health: Failed to connect" <<<"$out"
check "a slow server is stopped at the step's timeout" grep -q 'slow: failed.*timed out' <<<"$out"
check "a reply cut short says so" grep -qE 'closed: failed.*(Transferred a partial file|transfer closed|Server returned nothing|Received HTTP/0.9)' <<<"$out"
check "a body past max_body fails, saying so" grep -q 'big: failed.*the body is larger than 2000000 bytes (max_body)' <<<"$out"
check "invalid JSON fails, saying where" grep -q 'invalid_json: failed.*the body is not valid JSON (line 1' <<<"$out"
d=$(last_run)
check "a body past 1 MiB is spilled whole to the run's files" [ "$(stat -c %s "$d/output/spilled.body")" = 1500000 ]

out=$(run -p https="$RB_TEST_HTTPS_URL" -p expired="$RB_TEST_HTTPS_EXPIRED_URL" \
	-p mtls="$RB_TEST_HTTPS_MTLS_URL" -p ca="$RB_TEST_CA_FILE" -p cert="$RB_TEST_CLIENT_CERT" \
	-p key="$RB_TEST_CLIENT_KEY" tests/http/tls.yaml 2>&1)
check "TLS: verified with ca_file, refused untrusted and expired, insecure when told, mTLS" grep -q 'check: succeeded' <<<"$out"
check "an expired certificate is named as such" grep -q 'expired: failed.*certificate has expired' <<<"$out"
check "the plan flags insecure" bash -c "'$RUNBOOK' plan -p https=x -p expired=https://e.example -p mtls=x -p ca=x -p cert=x -p key=x tests/http/tls.yaml | grep -q 'insecure: the certificate is not verified'"

out=$(run -p base="$base" -p https="$RB_TEST_HTTPS_URL" -p ca="$RB_TEST_CA_FILE" tests/http/redirect.yaml 2>&1)
check "redirects: followed when told, not otherwise, never from https to http" grep -q 'check: succeeded' <<<"$out"
out=$(run -p base="$base" -p other="http://localhost:$RB_TEST_HTTP_PORT" tests/http/redirect_secret.yaml 2>&1)
check "redirects: headers that hold a secret go to the same origin only" grep -q 'check: succeeded' <<<"$out"
check "... another host is not followed, saying why" grep -q 'elsewhere: failed.*status 302 redirects to another host, and headers holds a secret: not followed' <<<"$out"
check "... and the other host received nothing" [ "$(received /echo | jq '[.[] | select(.query.k == ["rs-elsewhere"])] | length')" = 0 ]

# A GET as a step's check, and in a probe: reads run, writes do not.
mkdir -p "$tmp/checkdir"
out=$(run -p base="$base" -p dir="$tmp/checkdir" tests/http/check.yaml 2>&1)
check "a GET that succeeds says the step is in place: it does not run" [ ! -e "$tmp/checkdir/already-ran" ]
check "a GET that fails says it is not: the step runs" [ -e "$tmp/checkdir/needed-ran" ]
curl -s -X DELETE "$base/_requests" >/dev/null
out=$(rb run --dry-run --probe -p base="$base" -p dir="$tmp/checkdir" tests/http/check.yaml 2>&1)
check "a probe sends the GET" grep -q 'read: succeeded' <<<"$out"
check "... and not the POST" grep -q 'write: not probed (it has side effects)' <<<"$out"
check "the server saw no POST" [ "$(received /hook/probe-write | jq length)" = 0 ]

# A secret laid across every cut of a big body: around the 1 MiB kept in the output, less
# the redactor's reach, and the spill file's chunks.  Nothing of it is in what the run kept.
export RB_TEST_CUT_SECRET="CutS3cretZ9$(openssl rand -hex 10)"
ats=$(for k in 1040370 1044470 1044480 1044490 1048560 1048570 1048576 1048580 1052670 1100000; do printf '%s,' $k; done)
out=$(run -p base="$base" -p ats="[${ats%,}]" tests/http/cuts.yaml 2>&1)
check "bodies with a secret across the cuts are taken" grep -q 'kept: succeeded' <<<"$out"
d=$(last_run)
check "their files are spilled" [ "$(ls "$d/output" | grep -c '^big\.[0-9]*\.body$')" = 10 ]
check "each has the secret masked, once" bash -c "for f in '$d'/output/big.*.body; do [ \"\$(grep -ao '\*\*\*' \"\$f\" | wc -l)\" = 1 ] || exit 1; done"
for piece in "${RB_TEST_CUT_SECRET:0:10}" "${RB_TEST_CUT_SECRET: -10}" "${RB_TEST_CUT_SECRET:8:12}"; do
	check "no piece of the secret ($piece) in the run's files" bash -c "! grep -rqaF '$piece' '$d'"
done

# The same Idempotency-Key for every attempt and resume of a call; another run, another key.
curl -s -X DELETE "$base/_requests" >/dev/null
run -p base="$base" tests/http/idem.yaml >/dev/null 2>&1
id=$(basename "$(last_run)")
key1=$(received /idem | jq -r '.[0].headers["idempotency-key"]')
check "idempotency_key sends a key" [ ${#key1} -eq 32 ]
run -p base="$base" tests/http/idem.yaml >/dev/null 2>&1
key2=$(received /idem | jq -r '.[1].headers["idempotency-key"]')
check "another run sends another key" [ "$key1" != "$key2" ]
check "the key is the call's: run, step, check (rb_call_key)" [ "$key1" = "$(printf '%s\ncreate\n0' "$id" | sha256sum | cut -c 1-32)" ]

# Ctrl-C aborts a request under way.
"$RUNBOOK" run --state-dir "$st" -p base="$base" tests/http/slowpoke.yaml >"$tmp/int.out" 2>&1 &
pid=$!
sleep 1
kill -INT $pid
wait $pid
check "Ctrl-C stops a request under way (130)" [ $? -eq 130 ]
check "... at once" grep -qE 'wait_for_it: interrupted after [01]\.' "$tmp/int.out"

# A URL from secrets: its path (a webhook's key) is nowhere, not even in an error.
export RB_TEST_HOOK_URL="http://127.0.0.1:$(_servers_free_port)/hooks/T000/B000/XyZsecretHookKey123"
out=$(run tests/http/secret_url.yaml 2>&1)
check "a failed request to a secret URL fails" grep -q 'post: failed' <<<"$out"
check "its message shows the host, not the path" grep -q 'POST http://127.0.0.1:[0-9]*/\*\*\*: Failed to connect' <<<"$out"
check "the secret path is nowhere in the state directory" bash -c "! grep -rq XyZsecretHookKey123 '$st'"

# AWS Signature V4 (S3-compatible storage): the request is signed, the secret key is not sent.
export RB_TEST_AWS_SECRET="wJalrXUtnFEMIK7MDENGbPxRfiCYsEcretKey0123"
out=$(run -p base="$base" tests/http/sigv4.yaml 2>&1)
check "a PUT signed with SigV4 is sent" grep -q 'put: succeeded' <<<"$out"
auth=$(received /hook/bucket | jq -r '.[-1].headers.authorization')
check "its Authorization is AWS4-HMAC-SHA256 with the key id, region and service" grep -qE '^AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEKEY/[0-9]{8}/eu-west-1/s3/aws4_request, SignedHeaders=[a-z0-9;-]*host[a-z0-9;-]*, Signature=[0-9a-f]{64}$' <<<"$auth"
check "it has the date and the body's hash" bash -c "curl -s '$base/_requests?path=/hook/bucket' | jq -e '.[-1].headers | has(\"x-amz-date\") and .[\"x-amz-content-sha256\"] == \"'$(printf 'the backup' | sha256sum | cut -c1-64)'\"'"
check "the signature is the one the secret key makes (checked as S3 does)" bash -c "curl -s '$base/_requests?path=/hook/bucket' | jq '.[-1]' | /usr/bin/python3 tests/http/sigv4_check.py '$RB_TEST_AWS_SECRET'"
check "... and not one another key makes" bash -c "! curl -s '$base/_requests?path=/hook/bucket' | jq '.[-1]' | /usr/bin/python3 tests/http/sigv4_check.py wrongSecret"
check "the secret key was not sent" bash -c "! curl -s '$base/_requests' | grep -q '$RB_TEST_AWS_SECRET'"

echo "http: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
