#!/usr/bin/env bash
# The canary test: random secrets (a 32-character value, an RSA key in PEM, a
# JSON document with a nested password, a 4-character secret) and PII are
# planted anew each time, the runbooks in tests/canary/ use them in every way
# the language allows, and every file under the state directory and
# everything any command printed is searched for every form of every canary:
# raw, each line of the PEM, base64 at the three alignments (standard and
# URL-safe, by pieces so that wrapped output is caught), hex in both cases,
# URL-encoded, JSON-escaped once and twice.  A 3-character secret must be
# refused.  The runs must also have used the values (verify_* steps compare
# hashes), or the test could pass by never touching them.
set -uo pipefail
: "${RUNBOOK:?}"
RUNBOOK=$(realpath "$RUNBOOK")
src=$(cd "$(dirname "$0")" && pwd)/canary
work=$(mktemp -d)
. "$src/../servers/servers.sh"
trap 'servers_stop; [ -n "${CANARY_KEEP:-}" ] || rm -rf "$work"' EXIT
cd "$work" || exit 1
state=$work/state out=$work/printed
mkdir -p "$out"
pass=0 fail=0
check() {                 # check DESCRIPTION COMMAND...
	if "${@:2}" >/dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $1"; fi
}
rb() { ${RUNBOOK_WRAP:-} "$RUNBOOK" "$@"; }
rnd() { openssl rand -base64 96 | tr -dc A-Za-z0-9 | head -c "$1"; }
sha() { printf %s "$1" | sha256sum | cut -c1-64; }

# --- the canaries -------------------------------------------------------------------
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out pem.key 2>/dev/null
export CANARY_RAND CANARY_JSON CANARY_SHORT CANARY_EMAIL CANARY_PHONE
# Letters first: json.decode's error used to quote the letters a value starts with.
CANARY_RAND=$(openssl rand -base64 96 | tr -dc A-Za-z | head -c 12)$(rnd 20)
pw=$(rnd 24)
CANARY_JSON=$(jq -cn --arg pw "$pw" --arg u "svc-$(rnd 12)" \
	'{user: $u, db: {host: "db.internal", port: 5432, password: $pw}}')
CANARY_SHORT="k$(rnd 2)~"
CANARY_EMAIL="canary.$(rnd 8 | tr A-Z a-z)@example.com"
CANARY_PHONE="+49 30 $((1000000 + RANDOM * 20))"
pem=$(cat pem.key)
check "the canaries are what they should be" [ ${#CANARY_RAND} -eq 32 -a ${#pw} -eq 24 -a \
	${#CANARY_SHORT} -eq 4 -a "$(wc -l <pem.key)" -gt 20 ]
params=(-p "rand_sha=$(sha "$CANARY_RAND")" -p "pem_sha=$(sha "$pem")" -p "json_sha=$(sha "$CANARY_JSON")"
	-p "pw_sha=$(sha "$pw")" -p "short_sha=$(sha "$CANARY_SHORT")")

# --- the runs -------------------------------------------------------------------------
records() { jq -c -f "$src/../records.jq" "$state/runs/$1/audit.jsonl"; }
run_id() { sed -n 's/.*run \([0-9]\{8\}-[0-9]\{6\}-[0-9a-f]*\).*/\1/p' "$1" | head -n 1; }

rb run --state-dir "$state" "${params[@]}" "$src/use.yaml" >"$out/run.txt" 2>&1
check "use.yaml pauses at its gate (exit 3)" [ $? -eq 3 ]
id=$(run_id "$out/run.txt")
recs=$(records "$id")
for s in verify_run verify_env verify_stdin verify_lua; do
	check "$s: the value a step got is the real one" \
		grep -q "\"step\":\"$s\",\"status\":\"succeeded\"" <<<"$recs"
done
for s in echo_raw echo_encoded items lua_items private uses_private as_json from_json lua_uses pii; do
	check "$s succeeded" grep -q "\"step\":\"$s\",\"status\":\"succeeded\"" <<<"$recs"
done
for s in fails_in_shell lua_error lua_error_raw lua_runtime_error expr_error decode_error if_error retried; do
	check "$s failed" grep -q "\"step\":\"$s\",\"status\":\"failed\"" <<<"$recs"
done
check "the encodings were printed (and masked)" grep -q 'echo_encoded| \*\*\*' "$out/run.txt"
check "the e-mail address was replaced" grep -q 'pii| contact <email> or <phone>' "$out/run.txt"
check "a sensitive step's lines are masked" grep -q 'private| \*\*\*$' "$out/run.txt"
check "its value is masked where used" grep -q 'uses_private| private was \*\*\*$' "$out/run.txt"
check "the gate's prompt is masked" grep -q 'gate: waiting for approval: deploy with \*\*\*?' "$out/run.txt"
rb resume --state-dir "$state" "$id" --approve gate >"$out/resume-gate.txt" 2>&1
check "resume past the gate finishes the run (its failures continue on error)" [ $? -eq 0 ]
check "the gate's step ran with the value" grep -q 'gate| approved with \*\*\*' "$out/resume-gate.txt"

rb run --state-dir "$state" --output json --approve all --audit-log "$state/shared-audit.jsonl" \
	"${params[@]}" "$src/use.yaml" \
	>"$out/run-json.txt" 2>"$out/run-json.err"
check "use.yaml with json events" [ $? -eq 0 ]
check "the json events parse" jq -e 'select(.event == "run_finished")' "$out/run-json.txt"
rb run --state-dir "$state" --dry-run --probe "${params[@]}" "$src/use.yaml" >"$out/probe.txt" 2>&1
check "--dry-run --probe runs" [ $? -eq 0 ]
check "the probe ran the verify steps" grep -q 'verify_lua: succeeded' "$out/probe.txt"
rb plan "${params[@]}" "$src/use.yaml" >"$out/plan.txt" 2>&1
check "plan" [ $? -eq 0 ]
rb plan --format json "${params[@]}" "$src/use.yaml" >"$out/plan-json.txt" 2>&1
rb plan --format markdown -p "who=$CANARY_EMAIL" "${params[@]}" "$src/use.yaml" >"$out/plan-md.txt" 2>&1
check "plan -p with an unknown param is refused, naming no value" [ $? -eq 2 ]

rb run --state-dir "$state" "$src/fail.yaml" >"$out/fail.txt" 2>&1
check "fail.yaml fails" [ $? -eq 1 ]
fid=$(run_id "$out/fail.txt")
check "its error was the failing command's" grep -q 'flaky! not fixed, token \*\*\*' "$out/fail.txt"
check "on_failure ran" grep -q 'report| flaky is failed; token \*\*\*' "$out/fail.txt"
touch fixed
rb resume --state-dir "$state" "$fid" >"$out/fail-resume.txt" 2>&1
check "resume after the fix succeeds" [ $? -eq 0 ]
check "the resumed run used the key" grep -q '"step":"after","status":"succeeded"' <<<"$(records "$fid")"
rb resume --state-dir "$state" --output json "$fid" >"$out/fail-resume-again.txt" 2>&1

rb run --state-dir "$state" "$src/cuts.yaml" >"$out/cuts.txt" 2>&1
check "cuts.yaml runs (its failing step continues on error)" [ $? -eq 0 ]
cid=$(run_id "$out/cuts.txt")
check "the cut output is masked on the console" grep -q '^.* pieces| \*\*\* \*\*\* ' "$out/cuts.txt"
check "and the message of the failed command" grep -q 'message: failed.*: 0*\*\*\*$' "$out/cuts.txt"
# What is kept and what is spilled add up to all the command wrote: nothing
# was lost at the cuts (lengths of the raw output, before the masks).
check "nothing lost where the output was cut" grep -q \
	'"step":"sizes","status":"succeeded","attempt":1,"output":\[1048637,1048599,1444001\]' \
	<<<"$(records "$cid")"
rb run --state-dir "$state" --output json "$src/cuts.yaml" >"$out/cuts-json.txt" 2>&1
check "cuts.yaml with json events" [ $? -eq 0 ]

rb run --state-dir "$state" "$src/refused.yaml" >"$out/refused.txt" 2>&1
check "a var that fails refuses the run (exit 2)" [ $? -eq 2 ]
check "its message is there, the value masked" grep -q 'error: expression failed: cannot use \*\*\*' "$out/refused.txt"
CANARY_SHORT="k$(rnd 1)~" rb run --state-dir "$state" "${params[@]}" "$src/use.yaml" >"$out/short.txt" 2>&1
check "a 3-character secret is refused: the step that reads it fails (exit 1)" [ $? -eq 1 ]
check "at its declaration" grep -q "verify_run: failed in [0-9.]*s: .*use.yaml:16:3: secret 'short' is shorter than 4 characters" "$out/short.txt"

# The network actions, against real servers: the canaries go out in requests, SQL
# params and alerts, and come back in outputs, notices and the servers' errors.
if servers_start pg http; then
	export CANARY_HOOK="$RB_TEST_HTTP_URL/hook/$(rnd 16)"
	rb run --state-dir "$state" -p base="$RB_TEST_HTTP_URL" \
		-p dead="http://127.0.0.1:$(_servers_free_port)" "$src/actions.yaml" >"$out/actions.txt" 2>&1
	check "actions.yaml runs (its failures continue on error)" [ $? -eq 0 ]
	aid=$(run_id "$out/actions.txt")
	for s in verify_http verify_pg pg_notice alert; do
		check "$s succeeded" grep -q "\"step\":\"$s\",\"status\":\"succeeded\"" <<<"$(records "$aid")"
	done
	for s in http_dead pg_error alert_dead; do
		check "$s failed" grep -q "\"step\":\"$s\",\"status\":\"failed\"" <<<"$(records "$aid")"
	done
	check "the webhook received the canary" bash -c "curl -s '$RB_TEST_HTTP_URL/_requests?path=/hook/' | grep -qF '$CANARY_RAND'"
	rb run --state-dir "$state" --dry-run --probe -p base="$RB_TEST_HTTP_URL" -p dead=http://127.0.0.1:9 \
		"$src/actions.yaml" >"$out/actions-probe.txt" 2>&1
	check "actions.yaml probes" [ $? -eq 0 ]
	rb plan -p base="$RB_TEST_HTTP_URL" -p dead=http://127.0.0.1:9 "$src/actions.yaml" >"$out/actions-plan.txt" 2>&1
else
	check "the test servers start" false
fi

for r in "$state"/runs/*/; do
	r=$(basename "$r")
	rb status --state-dir "$state" "$r" >"$out/status-$r.txt" 2>&1
	check "status $r" [ $? -eq 0 ]
	rb status --state-dir "$state" --output json "$r" >"$out/status-json-$r.txt" 2>&1
done
rb runs --state-dir "$state" >"$out/runs.txt" 2>&1
check "runs lists the runs" [ "$(grep -c canary- "$out/runs.txt")" -eq 7 ]
# The signed audit logs, whatever their names: each one is shown.
while IFS= read -r -d '' log; do
	rb audit show "$log" >"$out/audit-$(echo "$log" | md5sum | cut -c1-8).txt" 2>&1
	check "audit show ${log#"$state"/}" [ $? -eq 0 ]
done < <(find "$state" -name '*audit*.jsonl' -print0)
check "the shared audit log was written" [ -s "$state/shared-audit.jsonl" ]
for r in "$state"/runs/*/; do
	check "audit verify $(basename "$r")" rb audit verify --state-dir "$state" "$r"
done

# --- the forms ----------------------------------------------------------------------
# forms.tsv: LABEL<TAB>TEXT.  Encodings are searched by 20-character pieces (every
# 10): the redactor may leave up to 11 characters at each edge of a wrapped line.
forms=$work/forms.tsv
: >"$forms"
form() { printf '%s\t%s\n' "$1" "$2" >>"$forms"; }
pieces() {                # pieces LABEL TEXT
	local t=$2 i
	if [ ${#t} -le 20 ]; then form "$1" "$t"; return; fi
	for ((i = 0; i + 20 <= ${#t}; i += 10)); do form "$1" "${t:i:20}"; done
}
b64() { printf '%s%s' "$2" "$1" | base64 -w0; }
add_forms() {             # add_forms NAME VALUE [pii: not in hex or base64]
	local name=$1 v=$2 pad skip e
	if [[ $v != *$'\n'* ]]; then
		form "$name raw" "$v"
		# a message that quotes a value cut short (jansson's "near '...'")
		if [ ${#v} -ge 24 ] && [[ $v != "{"* ]]; then
			form "$name first 12" "${v:0:12}"
			form "$name last 12" "${v: -12}"
		fi
	else
		while IFS= read -r line; do
			[[ $line == -----* ]] || form "$name line" "$line"
		done <<<"$v"
	fi
	e=$(jq -n --arg v "$v" '$v | tojson' | sed 's/^"//; s/"$//')
	form "$name json-escaped" "$e"
	form "$name json-escaped twice" "$(jq -n --arg v "$e" '$v | tojson' | sed 's/^"//; s/"$//')"
	form "$name url-encoded" "$(jq -rn --arg v "$v" '$v | @uri')"
	form "$name url-encoded upper" "$(printf %s "$v" | xxd -p -c0 | sed 's/../%&/g' | tr a-f A-F)"
	[ $# -lt 3 ] || return 0
	pieces "$name hex" "$(printf %s "$v" | xxd -p -c0)"
	pieces "$name HEX" "$(printf %s "$v" | xxd -p -c0 | tr a-f A-F)"
	for pad in 0 1 2; do
		# pad bytes in front: their characters and the mixed one go, and the
		# last group (padding, or the bytes after the value) too.
		skip=$(((pad * 8 + 5) / 6))
		e=$(b64 "$v" "$(head -c "$pad" /dev/zero | tr '\0' x)")
		e=${e:skip}
		e=${e%%=*}
		e=${e:0:${#e}-4}
		[ ${#e} -ge 6 ] || continue
		pieces "$name base64+$pad" "$e"
		pieces "$name base64url+$pad" "$(tr '+/' '-_' <<<"$e")"
	done
}
add_forms rand "$CANARY_RAND"
add_forms pem "$pem"
add_forms json "$CANARY_JSON"
add_forms password "$pw"
add_forms short "$CANARY_SHORT"
add_forms email "$CANARY_EMAIL" pii
add_forms phone "$CANARY_PHONE" pii
form "private (rand reversed)" "$(rev <<<"$CANARY_RAND")"
check "there are forms to search for" [ "$(wc -l <"$forms")" -gt 200 ]
cut -f2 "$forms" | sort -u >"$work/needles"

# --- the search -----------------------------------------------------------------------
# Every file under the state directory (binary-safe), and everything printed.
labels=$(cut -f1 "$forms" | sort -u)
nfiles=0
while IFS= read -r -d '' f; do
	nfiles=$((nfiles + 1))
	hits=$(grep -aoF -f "$work/needles" "$f" | sort -u)
	where=${f#"$work"/}
	while IFS= read -r label; do
		leaked=$(awk -F'\t' -v l="$label" 'NR == FNR { h[$0] = 1; next } $1 == l && ($2 in h) { print $2; exit }' \
			<(printf '%s\n' "$hits") "$forms")
		if [ -z "$leaked" ]; then
			pass=$((pass + 1))
		else
			fail=$((fail + 1))
			echo "FAIL $label leaked in $where: ${leaked:0:40}"
		fi
	done <<<"$labels"
done < <(find "$state" "$out" -type f -print0)
check "the search covered the runs' files and the printed output" [ "$nfiles" -ge 20 ]
# The search can fail: it finds leaks that are planted outside the searched places.
base64 pem.key >"$work/leak-pem-b64"
printf 'x%s' "$CANARY_JSON" | base64 -w 76 >"$work/leak-json-b64"
printf %s "$pw" | xxd -p | tr a-f A-F >"$work/leak-pw-hex"
for f in leak-pem-b64 leak-json-b64 leak-pw-hex; do
	check "the search finds $f" grep -aqF -f "$work/needles" "$work/$f"
done

echo "canary: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
