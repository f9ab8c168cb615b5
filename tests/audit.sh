#!/usr/bin/env bash
# The audit log from the outside: keys made by `runbook keygen` (and by openssl),
# a log written by the unit test's writer (test_audit --write-log), checked
# record by record with jq, base64, sha256sum and openssl exactly as
# docs/audit-format.md says, then `runbook audit verify`, `head` and `show`
# on it and on damaged copies.     tests/audit.sh UNIT_DIR
set -uo pipefail
: "${RUNBOOK:?}"
UNIT_DIR="${1:?usage: tests/audit.sh UNIT_DIR}"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
rb() { ${RUNBOOK_WRAP:-} "$RUNBOOK" "$@"; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
unset RUNBOOK_AUDIT_KEY

# --- keygen --------------------------------------------------------------------------
out=$(rb keygen --out "$d/k.pem" 2>&1); rc=$?
id=$(sed -n 's/^.*: Ed25519 private key \([0-9a-f]\{16\}\) (mode 0600)$/\1/p' <<<"$out")
[ $rc -eq 0 ] && [ -n "$id" ] && ok || bad "keygen: $rc $out"
[ "$(sed -n 2p <<<"$out")" = "$d/k.pem.pub: its public key, for keyrings" ] && ok || bad "keygen second line: $out"
[ "$(stat -c %a "$d/k.pem")" = 600 ] && ok || bad "private key mode $(stat -c %a "$d/k.pem")"
[ "$(stat -c %a "$d/k.pem.pub")" = 644 ] && ok || bad "public key mode"
head -n 1 "$d/k.pem" | grep -qx -- '-----BEGIN PRIVATE KEY-----' && ok || bad "not PKCS#8 PEM"
# openssl reads both, and derives the same public key and key id.
cmp -s <(openssl pkey -in "$d/k.pem" -pubout) "$d/k.pem.pub" && ok || bad "openssl's public half differs"
kid=$(openssl pkey -pubin -in "$d/k.pem.pub" -outform DER | tail -c 32 | sha256sum | cut -c 1-16)
[ "$kid" = "$id" ] && ok || bad "key id $id, openssl says $kid"
cp "$d/k.pem" "$d/k.before"
out=$(rb keygen --out "$d/k.pem" 2>&1); rc=$?
[ $rc -eq 1 ] && [ "$out" = "runbook: error: $d/k.pem exists; not replaced (--force replaces it)" ] && ok ||
	bad "keygen over a key: $rc $out"
cmp -s "$d/k.pem" "$d/k.before" && ok || bad "the key was changed"
mkdir "$d/other" && rb keygen --out "$d/other/k.pem" --force >/dev/null && ok || bad "keygen --force (new)"
rb keygen --out "$d/other/k.pem" --force >/dev/null && ok || bad "keygen --force (replace)"
out=$(rb keygen 2>&1); rc=$?
[ $rc -eq 2 ] && [ "$out" = "runbook: error: keygen: no file given (usage: runbook keygen --out FILE)" ] && ok ||
	bad "keygen without --out: $rc $out"

# --- the log, checked with stock tools as docs/audit-format.md does ----------------------
log="$d/audit.jsonl"
${RUNBOOK_WRAP:-} "$UNIT_DIR/test_audit" --write-log "$log" "$d/k.pem" && ok || bad "writing the log"
[ "$(wc -l <"$log")" -eq 6 ] && ok || bad "six lines: $(wc -l <"$log")"
prev=0000000000000000000000000000000000000000000000000000000000000000
for n in 1 2 3 4 5 6; do
	line() { sed -n "${n}p" "$log"; }
	# canonical: jq encodes the record to the same bytes
	cmp -s <(line | tr -d '\n') <(line | jq -jcS .) && ok || bad "line $n: jq encodes it otherwise"
	# The log was synced every two records: the second of each group is signed, over
	# the format's context and its canonical bytes without sig.
	if [ $((n % 2)) -eq 0 ]; then
		{ printf 'runbook audit log v2\n'; line | jq -jcS 'del(.sig)'; } >"$d/signed.bin"
		line | jq -r .sig | base64 -d >"$d/sig.bin"
		v=$(openssl pkeyutl -verify -pubin -inkey "$d/k.pem.pub" -rawin -in "$d/signed.bin" \
			-sigfile "$d/sig.bin" 2>&1)
		[ "$v" = "Signature Verified Successfully" ] && ok || bad "line $n: openssl: $v"
		[ "$(line | jq -r .key_id)" = "$kid" ] && ok || bad "line $n: key_id"
	else
		[ "$(line | jq -c '[.key_id, .sig]')" = '[null,null]' ] && ok || bad "line $n is signed"
	fi
	[ "$(line | jq -r .prev)" = "$prev" ] && ok || bad "line $n: prev is not the hash of line $((n - 1))"
	[ "$(line | jq -r .seq)" = "$n" ] && ok || bad "line $n: seq"
	[ "$(line | jq -r .ts)" = "$(printf '2026-11-23T17:05:05.%03dZ' $((n * 137)))" ] && ok ||
		bad "line $n: ts $(line | jq -r .ts)"
	prev=$(line | tr -d '\n' | sha256sum | cut -d ' ' -f 1)
done
[ "$(tail -n 1 "$log" | jq -r .type)" = run_finished ] && ok || bad "the last record"
# The record with every hard character survives jq's round trip exactly.
want=$(printf '"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\\u007f\xc2\x80\xc2\x85\xc2\x9f\xe2\x80\xa8\xe2\x80\xa9\xef\xbb\xbf\xef\xbf\xbf\xf0\x9f\x98\x80\\"\\\\/~"')
[ "$(sed -n 4p "$log" | jq -c .output)" = "$want" ] && ok || bad "the hard characters: $(sed -n 4p "$log" | jq -c .output)"
[ "$(sed -n 4p "$log" | jq -c 'keys_unsorted')" = '["Zeta","key_id","list","output","prev","run_id","seq","sig","step","ts","type","zeta","état"]' ] && ok ||
	bad "key order: $(sed -n 4p "$log" | jq -c 'keys_unsorted')"
# A record changed by one byte: openssl refuses it too, and so it does the record
# without the context (as format 1 signed it).
{ printf 'runbook audit log v2\n'; sed -n 2p "$log" | sed 's/analyze/analyzf/' | jq -jcS 'del(.sig)'; } >"$d/signed.bin"
sed -n 2p "$log" | jq -r .sig | base64 -d >"$d/sig.bin"
openssl pkeyutl -verify -pubin -inkey "$d/k.pem.pub" -rawin -in "$d/signed.bin" \
	-sigfile "$d/sig.bin" >/dev/null 2>&1 && bad "openssl accepts a changed record" || ok
sed -n 2p "$log" | jq -jcS 'del(.sig)' >"$d/signed.bin"
openssl pkeyutl -verify -pubin -inkey "$d/k.pem.pub" -rawin -in "$d/signed.bin" \
	-sigfile "$d/sig.bin" >/dev/null 2>&1 && bad "openssl accepts a changed record" || ok

# --- runbook audit verify / head / show --------------------------------------------------
head6=$(tail -n 1 "$log" | tr -d '\n' | sha256sum | cut -d ' ' -f 1)
out=$(rb audit verify "$log" --keyring "$d" 2>&1); rc=$?
[ $rc -eq 0 ] && [ "$out" = "$log: ok: 6 records, 1 run, head 6:$head6" ] && ok || bad "verify: $rc $out"
out=$(rb audit verify "$log" --keyring "$d/k.pem.pub" --head "6:$head6" 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "verify with a key file and the head: $rc $out"
out=$(rb audit head "$log" 2>&1); rc=$?
[ $rc -eq 0 ] && [ "$out" = "6:$head6" ] && ok || bad "head: $rc $out"
# The default keyring: STATE_DIR/keys.
mkdir -p "$d/state/keys" && cp "$d/k.pem.pub" "$d/state/keys/"
out=$(RUNBOOK_STATE_DIR="$d/state" rb audit verify "$log" 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "verify with the state dir's keyring: $rc $out"
out=$(rb audit verify "$log" --state-dir "$d/nostate" 2>&1); rc=$?
[ $rc -eq 1 ] && [[ "$out" == *"cannot read keyring $d/nostate/keys"*"--keyring DIR"* ]] && ok ||
	bad "no keyring: $rc $out"
# A key made by openssl signs logs runbook verifies; a keyring without the key does not.
openssl genpkey -algorithm ed25519 -out "$d/other/ossl.pem" 2>/dev/null
${RUNBOOK_WRAP:-} "$UNIT_DIR/test_audit" --write-log "$d/other/ossl.jsonl" "$d/other/ossl.pem" && ok || bad "openssl's key"
out=$(rb audit verify "$d/other/ossl.jsonl" --keyring "$d/other" 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "verify with openssl's key: $rc $out"
out=$(rb audit verify "$log" --keyring "$d/other" 2>&1); rc=$?
[ $rc -eq 1 ] && [ "$out" = "$log:2: error: seq 2: signed by key $kid, which is not in the keyring" ] && ok ||
	bad "unknown key: $rc $out"

expect() {                # expect NAME FILE STATUS OUTPUT [ARGS...]: audit verify's answer
	local name=$1 f=$2 want_rc=$3 want=$4 out rc
	shift 4
	out=$(rb audit verify "$f" --keyring "$d" "$@" 2>&1); rc=$?
	[ $rc -eq "$want_rc" ] && [ "$out" = "$want" ] && ok || bad "$name: $rc $out"
}
# Line 3 is unsigned: the signature at the end of its group (line 4) covers it.
sed '3s/analyze/analyzf/' "$log" >"$d/changed.jsonl"
expect changed "$d/changed.jsonl" 1 "$d/changed.jsonl:3: error: seq 3: not the record that the signature at line 4 covers (the prev of line 4 is another hash): it was changed"
sed '2s/analyze/analyzf/' "$log" >"$d/changed2.jsonl"
expect "changed, signed" "$d/changed2.jsonl" 1 "$d/changed2.jsonl:2: error: seq 2: the signature does not verify with key $kid"
sed '2d' "$log" >"$d/deleted.jsonl"
expect deleted "$d/deleted.jsonl" 1 "$d/deleted.jsonl:2: error: seq 3: seq 3 where 2 was expected (a record missing, repeated or out of order)"
sed '4{h;d};5G' "$log" >"$d/swapped.jsonl"
expect swapped "$d/swapped.jsonl" 1 "$d/swapped.jsonl:4: error: seq 5: seq 5 where 4 was expected (a record missing, repeated or out of order)"
sed '3p' "$log" >"$d/repeated.jsonl"
expect repeated "$d/repeated.jsonl" 1 "$d/repeated.jsonl:4: error: seq 3: seq 3 where 4 was expected (a record missing, repeated or out of order)"
sed '3s/"prev":"[0-9a-f]*"/"prev":"'"$prev"'"/' "$log" >"$d/prev.jsonl"
expect prev "$d/prev.jsonl" 1 "$d/prev.jsonl:3: error: seq 3: not the record that the signature at line 4 covers (the prev of line 4 is another hash): it was changed"
sed '4s/"prev":"[0-9a-f]*"/"prev":"'"$prev"'"/' "$log" >"$d/prev4.jsonl"
expect "prev, signed" "$d/prev4.jsonl" 1 "$d/prev4.jsonl:4: error: seq 4: the signature does not verify with key $kid"
sed '1s/^{/{ /' "$log" >"$d/space.jsonl"
expect "not canonical" "$d/space.jsonl" 1 "$d/space.jsonl:1: error: seq 1: not in canonical form (from column 2)"
# A cut tail: found when it takes run_finished; with the head, found wherever it is.
head -n 4 "$log" >"$d/cut.jsonl"
expect cut "$d/cut.jsonl" 1 "$d/cut.jsonl:5: error: seq 5: run 20261123-170505-00aa has no run_finished at the end of the log (its tail was cut, or it crashed, or it is still running)"
head4=$(sed -n 4p "$log" | tr -d '\n' | sha256sum | cut -d ' ' -f 1)
expect "cut, open allowed" "$d/cut.jsonl" 0 "$d/cut.jsonl: ok: 4 records, 1 run (1 not closed), head 4:$head4" --allow-open
expect "cut, the head" "$d/cut.jsonl" 1 "$d/cut.jsonl:5: error: seq 5: the log ends at seq 4, before the expected head seq 6: its tail was cut" --allow-open --head "6:$head6"
# Cut after an unsigned record: what follows the last signature is named, open or not.
head -n 5 "$log" >"$d/cut5.jsonl"
expect "cut in a group" "$d/cut5.jsonl" 1 "$d/cut5.jsonl:5: error: seq 5: unsigned tail: 1 record after the last signed one (seq 4): a group written without its signed end, as a write cut short leaves it (resuming the run repairs it), or records added without the key" --allow-open
# A torn tail.
cp "$log" "$d/torn.jsonl" && printf '{"key_id":"ab' >>"$d/torn.jsonl"
size=$(stat -c %s "$log")
expect torn "$d/torn.jsonl" 1 "$d/torn.jsonl:7: error: torn tail: 13 bytes at offset $size after seq 6, a write cut short (resuming the run repairs it)"
out=$(rb audit head "$d/torn.jsonl" 2>"$d/err"); rc=$?
[ $rc -eq 0 ] && [ "$out" = "6:$head6" ] &&
	[ "$(cat "$d/err")" = "runbook: warning: $d/torn.jsonl ends in a torn tail after this record (13 bytes at offset $size)" ] &&
	ok || bad "head of a torn log: $rc $out $(cat "$d/err")"
# Several logs: each is reported, the status is the worst.
out=$(rb audit verify "$log" "$d/deleted.jsonl" --keyring "$d" 2>/dev/null); rc=$?
[ $rc -eq 1 ] && [ "$out" = "$log: ok: 6 records, 1 run, head 6:$head6" ] && ok || bad "two logs: $rc $out"

# show: the timeline (the key id is the only thing that changes from run to run).
out=$(rb audit show "$log" 2>&1); rc=$?
want="run 20261123-170505-00aa, key $kid, from 2026-11-23T17:05:05.137Z
  +0:00:00.000   1      run_started                                runbook=evening.yaml steps=1
  +0:00:00.137   2      step_started     analyze                   attempt=1
  +0:00:00.274   3      action_intent    analyze                   action=shell command=\"echo \\\"hi\\\" \\\\ /tmp\"
  +0:00:00.411   4      action_result    analyze                   Zeta=1 list=[\"\",-9007199254740992] output=\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\\u0... zeta=2 état=3
  +0:00:00.548   5      step_finished    analyze       succeeded   duration_ms=1380
  +0:00:00.685   6      run_finished                   succeeded"
[ $rc -eq 0 ] && [ "$out" = "$want" ] && ok || { bad "show"; diff <(echo "$want") <(echo "$out"); }
out=$(rb audit show "$log" --format markdown 2>&1); rc=$?
[ $rc -eq 0 ] && [ "$(sed -n 3p <<<"$out")" = "| time | seq | type | step | status | details |" ] &&
	[ "$(sed -n 6p <<<"$out")" = "| +0:00:00.137 | 2 | step_started | analyze |  | attempt=1 |" ] &&
	[ "$(wc -l <<<"$out")" -eq 10 ] && ok || bad "show markdown: $rc $out"
out=$(rb audit show "$log" --format json 2>&1); rc=$?
[ $rc -eq 0 ] && [ "$(jq -c '[length, .[5].offset_ms, .[5].line, .[3].record.output == ($l | fromjson | .output)]' \
	--arg l "$(sed -n 4p "$log")" <<<"$out")" = '[6,685,6,true]' ] && ok || bad "show json: $rc $out"
out=$(rb audit show - <"$d/torn.jsonl" --format json 2>"$d/err"); rc=$?
[ $rc -eq 1 ] && [ "$(jq -c '.[6]' <<<"$out")" = "{\"error\":\"torn tail: a line without its newline\",\"length\":13,\"line\":7,\"offset\":$size,\"torn\":true}" ] &&
	[ "$(cat "$d/err")" = "-: error: 1 line is not a record" ] && ok || bad "show a torn log: $rc $out $(cat "$d/err")"
# A log whose strings would drive a terminal is shown escaped.
printf '%s\n' '{"seq":1,"ts":"2026-11-23T17:05:05.000Z","type":"x","step":"a\u001b[2Jb","note":"\u202eevil\u0085"}' >"$d/esc.jsonl"
out=$(rb audit show "$d/esc.jsonl" 2>&1); rc=$?
[ $rc -eq 0 ] && [ "$(sed -n 2p <<<"$out")" = '  +0:00:00.000   1      x                "a\u001b[2Jb"              note="\u202eevil\u0085"' ] &&
	ok || bad "show escapes: $rc $out"
# Nothing from a damaged line reaches the terminal raw: not its escapes, not bytes that are not UTF-8.
printf '{"a":1}\033[2J\377\n' >"$d/junk.jsonl"
out=$(rb audit verify "$d/junk.jsonl" --keyring "$d" 2>&1); rc=$?
[ $rc -eq 1 ] && [ "$out" = "$d/junk.jsonl:1: error: not JSON: end of file expected near '?' (column 8)" ] && ok ||
	bad "verify a junk line: $rc $(cat -A <<<"$out")"
out=$(rb audit show "$d/junk.jsonl" 2>/dev/null); rc=$?
[ $rc -eq 1 ] && [ "$out" = "line 1: \"not JSON: end of file expected near '\\u001b'\"" ] && ok ||
	bad "show a junk line: $rc $(cat -A <<<"$out")"

# --- usage -----------------------------------------------------------------------------
usage() {                 # usage OUTPUT ARGS...: exit status 2 and that message
	local want=$1 out rc
	shift
	out=$(rb "$@" 2>&1); rc=$?
	[ $rc -eq 2 ] && [ "$out" = "$want" ] && ok || bad "runbook $*: $rc $out"
}
usage "runbook: error: audit: unknown subcommand 'frob' (expected verify, head, show or hmac)" audit frob
usage "runbook: error: audit verify: no log given (usage: runbook audit verify LOG... [--keyring DIR])" audit verify --keyring "$d"
usage "runbook: error: audit verify: --head 'x' is not SEQ:SHA256 (as 'runbook audit head' prints it)" audit verify "$log" --head x
usage "runbook: error: audit verify: --head is the head of one log; give one LOG" audit verify "$log" "$log" --head "6:$head6"
usage "runbook: error: audit show: unknown format 'xml' (expected text, json or markdown)" audit show "$log" --format xml
usage "runbook: error: audit head: one log at a time" audit head "$log" "$log"
usage "runbook: error: audit verify: unknown option '--frob' (see 'runbook audit verify --help')" audit verify --frob
rb audit >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "audit without a subcommand"
rb audit --help | grep -q '^usage: runbook audit verify' && ok || bad "audit --help"
rb audit show --help | grep -q '^usage: runbook audit verify' && ok || bad "audit show --help"
out=$(rb audit head "$d/missing.jsonl" 2>&1); rc=$?
[ $rc -eq 1 ] && [ "$out" = "runbook: error: cannot open $d/missing.jsonl: No such file or directory" ] && ok ||
	bad "head of a missing log: $rc $out"
out=$(rb audit verify "$d/missing.jsonl" --keyring "$d" 2>&1); rc=$?
[ $rc -eq 1 ] && [ "$out" = "$d/missing.jsonl: error: cannot open $d/missing.jsonl: No such file or directory" ] && ok ||
	bad "verify a missing log: $rc $out"

# --- the engine's logs: a run, a gated run paused and resumed --------------------------
st="$d/state"
mkdir -p "$d/g"
rb run --state-dir "$st" --audit-key "$d/k.pem" -p dir="$d/g" tests/exec/gate.yaml \
	</dev/null >/dev/null 2>&1
[ $? -eq 3 ] && ok || bad "the gated run pauses"
gid=$(ls "$st/runs")
rb audit verify --keyring "$d/k.pem.pub" --state-dir "$st" "$gid" >/dev/null && ok ||
	bad "a paused run verifies"
rb resume --state-dir "$st" --audit-key "$d/k.pem" --approve dangerous "$gid" >/dev/null 2>&1 &&
	ok || bad "the resume past the gate"
out=$(rb audit verify --keyring "$d/k.pem.pub" --state-dir "$st" "$gid" 2>&1) && ok ||
	bad "the resumed run verifies: $out"
glog="$st/runs/$gid/audit.jsonl"
types=$(jq -r .type "$glog" | tr '\n' ' ')
[[ "$types" == "run_started "*"gate_waiting "*"run_finished run_resumed "*"gate_approved "*"run_finished " ]] &&
	ok || bad "the records of a gated run: $types"
[ "$(jq -r 'select(.type == "gate_approved") | .by + " " + .via' "$glog")" = "$(id -un) --approve" ] &&
	ok || bad "who approved, and how"
# Every record of the engine's log checks with stock tools, as the fixed log's do.
prev=0000000000000000000000000000000000000000000000000000000000000000 n=0 signed=0
while IFS= read -r line; do
	n=$((n + 1))
	v="Signature Verified Successfully"
	if [ "$(jq -r 'has("sig")' <<<"$line")" = true ]; then
		{ printf 'runbook audit log v2\n'; printf '%s' "$line" | jq -jcS 'del(.sig)'; } >"$d/signed.bin"
		printf '%s' "$line" | jq -r .sig | base64 -d >"$d/sig.bin"
		v=$(openssl pkeyutl -verify -pubin -inkey "$d/k.pem.pub" -rawin -in "$d/signed.bin" \
			-sigfile "$d/sig.bin" 2>&1)
		signed=$((signed + 1))
	fi
	[ "$v" = "Signature Verified Successfully" ] && [ "$(jq -r .prev <<<"$line")" = "$prev" ] &&
		ok || bad "run log line $n: openssl: $v"
	prev=$(printf '%s' "$line" | sha256sum | cut -d ' ' -f 1)
done <"$glog"
# Signed groups: fewer signatures than records, and the log ends on one.
[ "$signed" -gt 1 ] && [ "$signed" -lt "$n" ] && ok || bad "$signed signatures in $n records"
[ "$(tail -n 1 "$glog" | jq -r 'has("sig")')" = true ] && ok || bad "the log does not end on a signature"
# An action's result binds the output step_finished records, by its SHA-256.
want=$(jq -r 'select(.type == "action_result" and .step == "after") | .output_sha256' "$glog")
got=$(jq -j 'select(.type == "step_finished" and .step == "after") | .output' "$glog" | sha256sum | cut -d ' ' -f 1)
[ -n "$want" ] && [ "$want" = "$got" ] && ok || bad "output_sha256 $want, the output hashes to $got"
# The intent is before the result, and both name the action and the step.
[ "$(jq -r 'select(.step == "after") | .type' "$glog" | tr '\n' ' ')" = "step_started action_intent action_result step_finished " ] &&
	ok || bad "after's records: $(jq -r 'select(.step == "after") | .type' "$glog" | tr '\n' ' ')"
# A tail cut right after a run_finished leaves a closed run: only the kept head finds it.
cp -r "$st/runs/$gid" "$d/cut"
head -n "$(grep -n '"type":"run_finished"' "$glog" | head -n 1 | cut -d: -f1)" "$glog" >"$d/cut/audit.jsonl"
rb audit verify --keyring "$d/k.pem.pub" "$d/cut/audit.jsonl" >/dev/null 2>&1 && ok ||
	bad "cut after the first session, the log alone is a closed run"
out=$(rb audit verify --keyring "$d/k.pem.pub" "$d/cut" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "its tail was cut" <<<"$out" && ok || bad "a cut tail of a run: $rc $out"
# audit hmac proves which value a secret had, with the key only.
out=$(EXEC_TEST_TOKEN=tok-Hm4c rb run --state-dir "$st" --audit-key "$d/k.pem" tests/exec/basics.yaml 2>&1)
bid=$(ls -t "$st/runs" | head -n 1)
# Its step reads it (a var's secret would be in run_started's secrets instead).
rec=$(jq -r 'select(.type == "secret_read" and .secret == "token") | .hmac_sha256' "$st/runs/$bid/audit.jsonl")
[ "$(printf 'tok-Hm4c\n' | rb audit hmac --audit-key "$d/k.pem")" = "$rec" ] && ok ||
	bad "audit hmac of the secret: $rec"
[ "$(printf 'tok-Hm4d' | rb audit hmac --audit-key "$d/k.pem")" != "$rec" ] && ok ||
	bad "another value, another hmac"
! grep -rq tok-Hm4c "$st" && ok || bad "the secret itself is in the state"
out=$(printf x | rb audit hmac --audit-key "$d/k.pem.pub" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "is a public key" <<<"$out" && ok || bad "hmac with a public key: $rc $out"

# A record changed in the middle of a run's log stops every reader of the run (the chain),
# and the resume, before anything runs; verify names the record itself.
es="$d/edited"
mkdir -p "$es/runs" && cp -a "$st/runs/$gid" "$es/runs/"
elog="$es/runs/$gid/audit.jsonl"
n=$(grep -n '"type":"gate_waiting"' "$elog" | head -n 1 | cut -d: -f1)
sed -i "${n}s/\"step\":\"dangerous\"/\"step\":\"dangerouz\"/" "$elog"
cp "$elog" "$d/edited.before"
want="$elog:$((n + 1)): prev is not the SHA-256 of line $n: the journal was changed"
out=$(rb status --state-dir "$es" "$gid" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -qF "$want" <<<"$out" && ok || bad "status of an edited run: $rc $out"
out=$(rb resume --state-dir "$es" --audit-key "$d/k.pem" --from dangerous "$gid" </dev/null 2>&1); rc=$?
[ $rc -ne 0 ] && grep -qF "$want" <<<"$out" && ok || bad "resume of an edited run: $rc $out"
cmp -s "$elog" "$d/edited.before" && ok || bad "the refused resume changed the log"
out=$(rb audit verify --keyring "$d/k.pem.pub" --state-dir "$es" "$gid" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -qF "$elog:$n: error: seq $n: the signature does not verify" <<<"$out" && ok || bad "verify names the edited record: $rc $out"

# What resume trusts: the last record and the snapshot signed by its key or --keyring's.
ts="$d/trust"
mkdir -p "$d/tg"
rb run --state-dir "$ts" --audit-key "$d/k.pem" -p dir="$d/tg" tests/exec/gate.yaml </dev/null >/dev/null 2>&1
tid=$(ls "$ts/runs")
tlog="$ts/runs/$tid/audit.jsonl"
rb keygen --out "$d/k2.pem" >/dev/null 2>&1
id1=$(jq -r .key_id "$tlog" | head -n 1)
cp "$tlog" "$d/trust.before"
out=$(rb resume --state-dir "$ts" --audit-key "$d/k2.pem" --approve dangerous "$tid" </dev/null 2>&1); rc=$?
[ $rc -eq 1 ] && grep -qF "the run's last record does not verify: signed by key $id1, which is not in the keyring (resume with the key that signed it, --audit-key FILE, or trust its public key with --keyring DIR)" <<<"$out" &&
	ok || bad "resume with another key: $rc $out"
cmp -s "$tlog" "$d/trust.before" && [ ! -e "$d/tg/dangerous.count" ] && ok ||
	bad "the refused resume changed the log or ran a step"
# status and runs check the same signatures: with no key of the run's (no host key in $ts,
# no RUNBOOK_AUDIT_KEY) they show it with a warning; with its key they verify it.
tlast=$(wc -l <"$tlog")
out=$(rb status --state-dir "$ts" "$tid" --format json 2>"$d/err"); rc=$?
[ $rc -eq 0 ] && [ "$(jq -c '[.status, .verified]' <<<"$out")" = '["paused",false]' ] &&
	grep -qxF "runbook: warning: run $tid is not verified, as $tlog:$tlast: signed by key $id1, which is not in the keyring (trust the key that signed it with --keyring DIR)" "$d/err" &&
	ok || bad "status of a run signed by a key it does not hold: $rc $out $(cat "$d/err")"
out=$(rb runs --state-dir "$ts" 2>"$d/err"); rc=$?
[ $rc -eq 0 ] && grep -q "^$tid  *paused .*(not verified)$" <<<"$out" &&
	grep -qF "runbook: warning: 1 run is not verified, as $tlog:$tlast: signed by key $id1" "$d/err" &&
	ok || bad "runs of a run signed by a key it does not hold: $rc $out $(cat "$d/err")"
out=$(rb status --state-dir "$ts" "$tid" --keyring "$d/no-such-ring" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -qF "runbook: error: cannot read keyring $d/no-such-ring" <<<"$out" && ok ||
	bad "status with a keyring that is not there: $rc $out"
for how in "--keyring $d/k.pem.pub" "RUNBOOK_AUDIT_KEY=$d/k.pem"; do
	if [ "${how%%=*}" = RUNBOOK_AUDIT_KEY ]; then
		out=$(RUNBOOK_AUDIT_KEY="${how#*=}" rb status --state-dir "$ts" "$tid" -f json 2>"$d/err")
		runs=$(RUNBOOK_AUDIT_KEY="${how#*=}" rb runs --state-dir "$ts" 2>>"$d/err")
	else
		out=$(rb status --state-dir "$ts" "$tid" -f json $how 2>"$d/err")
		runs=$(rb runs --state-dir "$ts" $how 2>>"$d/err")
	fi
	[ "$(jq -c '[.verified, .not_verified]' <<<"$out")" = '[true,null]' ] && [ ! -s "$d/err" ] &&
		! grep -q "not verified" <<<"$runs" && ok || bad "status and runs with $how: $out $runs $(cat "$d/err")"
done
# The snapshot edited (the gate's step taken as done): refused, with the right key too.
cp "$ts/runs/$tid/snapshot.json" "$d/snap.before"
sed -i 's/"awaiting_approval"/"succeeded"        /' "$ts/runs/$tid/snapshot.json"
out=$(rb resume --state-dir "$ts" --audit-key "$d/k.pem" "$tid" </dev/null 2>&1); rc=$?
[ $rc -eq 1 ] && grep -qF "snapshot.json: the snapshot does not verify: the signature does not verify with key $id1" <<<"$out" &&
	ok || bad "resume of an edited snapshot: $rc $out"
out=$(rb status --state-dir "$ts" --keyring "$d/k.pem.pub" "$tid" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -qxF "runbook: error: run $tid: $ts/runs/$tid/snapshot.json: the snapshot does not verify: the signature does not verify with key $id1" <<<"$out" &&
	ok || bad "status of an edited snapshot: $rc $out"
out=$(rb runs --state-dir "$ts" --keyring "$d/k.pem.pub" 2>&1); rc=$?
[ $rc -eq 0 ] && grep -q "^$tid  *unreadable  *(.*snapshot.json: the snapshot does not verify" <<<"$out" &&
	ok || bad "runs of an edited snapshot: $rc $out"
cp "$d/snap.before" "$ts/runs/$tid/snapshot.json"
mkdir -p "$d/ring" && cp "$d/k.pem.pub" "$d/ring/"
out=$(rb resume --state-dir "$ts" --audit-key "$d/k2.pem" --keyring "$d/ring" --approve dangerous "$tid" </dev/null 2>&1); rc=$?
[ $rc -eq 0 ] && [ -e "$d/tg/dangerous.count" ] && ok || bad "resume with --keyring: $rc $out"
cp "$d/k2.pem.pub" "$d/ring/"
[ "$(jq -r 'select(.key_id) | .key_id' "$tlog" | sort -u | wc -l)" -eq 2 ] &&
	rb audit verify --keyring "$d/ring" --state-dir "$ts" "$tid" >/dev/null && ok ||
	bad "the run signed by two keys verifies with both"

# The run's copy of its runbook must be the one run_started recorded, even with its .sha256.
rcopy="$ts/runs/$tid/runbook.yaml"
cp "$rcopy" "$d/copy.before"
printf '  - id: extra\n    run: "true"\n' >>"$rcopy"
sha256sum "$rcopy" | cut -d' ' -f1 >"$ts/runs/$tid/runbook.sha256"
out=$(rb resume --state-dir "$ts" --audit-key "$d/k.pem" --keyring "$d/ring" --from before "$tid" </dev/null 2>&1); rc=$?
[ $rc -eq 1 ] && grep -qF "runbook.yaml is not the runbook the run started with" <<<"$out" && ok ||
	bad "resume with a changed copy of the runbook: $rc $out"
cp "$d/copy.before" "$rcopy"
sha256sum "$rcopy" | cut -d' ' -f1 >"$ts/runs/$tid/runbook.sha256"

# The snapshot's signature checks with stock tools, as docs/state.md shows.
snapf="$ts/runs/$tid/snapshot.json"
sed 's/,"sig":"[^"]*"}$/}/' "$snapf" | tr -d '\n' >"$d/snap.signed"
sed 's/.*,"sig":"\([^"]*\)"}$/\1/' "$snapf" | base64 -d >"$d/snap.sig"
kid=$(jq -r .key_id "$snapf")
kpub="$d/k.pem.pub"; [ "$kid" = "$id1" ] || kpub="$d/k2.pem.pub"
openssl pkeyutl -verify -pubin -inkey "$kpub" -rawin -in "$d/snap.signed" -sigfile "$d/snap.sig" >/dev/null &&
	ok || bad "openssl verifies the snapshot"

# --- the head a run gives out, checked against its log ---------------------------------
hs="$d/headstate"
kid=$(openssl pkey -pubin -in "$d/k.pem.pub" -outform DER | tail -c 32 | sha256sum | cut -c 1-16)
ev=$(rb run --state-dir "$hs" --audit-key "$d/k.pem" --output json tests/exec/foreach.yaml 2>/dev/null | tail -n 1)
hid=$(ls "$hs/runs")
hlog="$hs/runs/$hid/audit.jsonl"
given=$(jq -r .head <<<"$ev")
[ "$(jq -r .event <<<"$ev")" = run_finished ] && [ "$given" = "$(rb audit head "$hlog")" ] &&
	[ "$(jq -r .key_id <<<"$ev")" = "$kid" ] && ok || bad "run_finished gives the log's head: $ev"
[ "$(tail -n 1 "$hlog" | jq -r 'has("sig")')" = true ] && ok || bad "the head is not a signed record"
rb audit verify --keyring "$d/k.pem.pub" --head "$given" "$hlog" >/dev/null && ok ||
	bad "the log verifies against the head its run gave"
# Cut back to an earlier signed record, the log is whole and closed but for the head.
cut=$(grep -n '"sig"' "$hlog" | tail -n 2 | head -n 1 | cut -d: -f1)
head -n "$cut" "$hlog" >"$d/hcut.jsonl"
out=$(rb audit verify --keyring "$d/k.pem.pub" --allow-open --head "$given" "$d/hcut.jsonl" 2>&1); rc=$?
[ $rc -eq 1 ] && [[ "$out" == *"before the expected head seq ${given%%:*}: its tail was cut"* ]] && ok ||
	bad "a cut log against the head: $rc $out"
out=$(rb run --state-dir "$hs" --audit-key "$d/k.pem" tests/exec/foreach.yaml 2>/dev/null | grep 'audit log head')
[[ "$out" =~ audit\ log\ head\ [0-9]+:[0-9a-f]{64}\ \(key\ $kid\) ]] && ok || bad "the text run's head: $out"

# --- an unsigned tail: records whose group lost its signed end ---------------------------
us="$d/unsigned" ug="$d/ug"
mkdir -p "$ug"
rb run --state-dir "$us" --audit-key "$d/k.pem" -p dir="$ug" tests/exec/gate.yaml </dev/null >/dev/null 2>&1
uid=$(ls "$us/runs")
ulog="$us/runs/$uid/audit.jsonl"
n=$(wc -l <"$ulog")
size=$(stat -c %s "$ulog")
# A whole record, chained to the last, without a signature, as a cut group write leaves it.
tail -n 1 "$ulog" | jq -cS --arg prev "$(tail -n 1 "$ulog" | tr -d '\n' | sha256sum | cut -c 1-64)" \
	'{prev: $prev, run_id, seq: (.seq + 1), step: "dangerous", ts, type: "step_started"}' >>"$ulog"
out=$(rb audit verify --keyring "$d/k.pem.pub" "$ulog" 2>&1); rc=$?
[ $rc -eq 1 ] && [[ "$out" == "$ulog:$((n + 1)): error: seq $((n + 1)): unsigned tail: 1 record after the last signed one (seq $n)"* ]] &&
	ok || bad "an unsigned tail: $rc $out"
# status reads the run up to its last signature; resume removes the record, on the record.
rb status --state-dir "$us" "$uid" >/dev/null 2>&1 && ok || bad "status of a run with an unsigned tail"
rb resume --state-dir "$us" --audit-key "$d/k.pem" --approve dangerous "$uid" </dev/null >/dev/null 2>&1 &&
	ok || bad "resume past an unsigned tail"
rep=$(sed -n "$((n + 1))p" "$ulog")
[ "$(jq -r '[.type, .offset, .records, has("sig")] | @tsv' <<<"$rep")" = "$(printf 'log_repaired\t%s\t1\ttrue' "$size")" ] &&
	ok || bad "the repair names what it removed: $rep"
rb audit verify --keyring "$d/k.pem.pub" --state-dir "$us" "$uid" >/dev/null 2>&1 && ok ||
	bad "the repaired run verifies"
[ "$(grep -c '"step":"dangerous","ts"' "$ulog")" -ge 1 ] && [ -e "$ug/dangerous.count" ] && ok ||
	bad "the gated step ran after the repair"

echo "audit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
