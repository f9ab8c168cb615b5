#!/usr/bin/env bash
# runbook replay on logs made by real runs (tests/replay/fixtures, made by
# tests/replay/make-fixtures.sh and signed with the test key there): each in
# each format against its golden file tests/replay/NAME.{txt,md,json}
# (UPDATE=1 rewrites them), then what must come before a timeline: the log
# verifies (a changed byte, a cut tail, an untrusted key: exit 1, no
# timeline), a shared log needs --run, and the command line's mistakes.
set -uo pipefail
: "${RUNBOOK:?}"
cd "$(dirname "$0")/.."
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
rb() { ${RUNBOOK_WRAP:-} "$RUNBOOK" "$@"; }
dir=tests/replay
fx=$dir/fixtures
ring=(--keyring "$dir/key.pem.pub")
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT

golden() {                      # golden FILE ARGS...: stdout, exit 0 and nothing on stderr
	local want="$1"; shift
	rb replay "$@" >"$d/out" 2>"$d/err"
	local rc=$?
	if [ $rc -ne 0 ] || [ -s "$d/err" ]; then
		bad "replay $*: exit $rc: $(head -c 300 "$d/err")"
		return
	fi
	if [ "${UPDATE:-}" = 1 ]; then
		cp "$d/out" "$want"
		ok
	elif [ -f "$want" ] && cmp -s "$d/out" "$want"; then
		ok
	else
		bad "replay $* differs from $want"
		[ -f "$want" ] && diff -u "$want" "$d/out" | head -n 30
	fi
}

expect() {                      # expect RC STDERR_PATTERN ARGS...: stderr matches, stdout empty
	local want_rc="$1" pat="$2"; shift 2
	rb replay "$@" >"$d/out" 2>"$d/err"
	local rc=$?
	if [ $rc -ne "$want_rc" ]; then
		bad "replay $*: exit $rc, expected $want_rc: $(head -c 300 "$d/err")"
	elif ! grep -qE -- "$pat" "$d/err"; then
		bad "replay $*: stderr does not match '$pat': $(head -c 300 "$d/err")"
	elif [ -s "$d/out" ]; then
		bad "replay $*: printed a timeline: $(head -n 3 "$d/out")"
	else
		ok
	fi
}

# --- the goldens -------------------------------------------------------------------
for name in plain crash gate; do
	golden "$dir/$name.txt" "$fx/$name" "${ring[@]}"
	golden "$dir/$name.md" "$fx/$name" --format markdown "${ring[@]}"
	golden "$dir/$name.json" "$fx/$name" -f json "${ring[@]}"
done
shared=$fx/shared/audit.jsonl
second=$(sed -n '$p' "$shared" | jq -r .run_id)
golden "$dir/shared.txt" "$shared" --run "$second" "${ring[@]}"

# A run by its id in the state directory, with the default keyring STATE_DIR/keys.
id=$(head -n 1 "$fx/plain/audit.jsonl" | jq -r .run_id)
mkdir -p "$d/state/runs/$id" "$d/state/keys"
cp "$fx/plain/"* "$d/state/runs/$id/"
cp "$dir/key.pem.pub" "$d/state/keys/"
rb replay "$id" --state-dir "$d/state" >"$d/out" 2>&1 && cmp -s "$d/out" "$dir/plain.txt" && ok ||
	bad "replay RUN_ID --state-dir: $(head -n 3 "$d/out")"
# The log file itself (no snapshot, so no head check) gives the same timeline.
rb replay "$fx/gate/audit.jsonl" "${ring[@]}" >"$d/out" 2>&1 && cmp -s "$d/out" "$dir/gate.txt" && ok ||
	bad "replay LOG: $(head -n 3 "$d/out")"

# --- the model: what a simulation will look up ------------------------------------
j() { rb replay "$fx/$1" -f json "${ring[@]}" | jq -c "$2"; }
[ "$(j plain '.steps[] | select(.step == "flaky") | [.attempts[] | [.attempt, .status, .retried, .calls[0].exit_code, .error]]')" = \
  '[[1,"failed",true,7,"exit status 7: connection refused"],[2,"succeeded",null,0,null]]' ] && ok || bad "plain: flaky's attempts"
[ "$(j plain '.steps[] | select(.step == "flaky") | .attempts[0].calls[0].output.stderr')" = '"connection refused\n"' ] &&
	ok || bad "plain: a failed call's output"
# A failure the run went on past (continue_on_error) says so.
[ "$(j plain '[.steps[] | select(.status == "failed") | [.step, .continued, .error]]')" = \
  '[["optional_cleanup",true,"exit status 3: no such table: tmp_sessions"]]' ] && ok || bad "plain: continued"
[ "$(j plain '.steps[] | select(.step == "backup") | .attempts[0] | [.for_each, (.calls | length), .calls[1].args.command, .calls[1].args.env.RUNBOOK_ITEM, .calls[1].output.stdout]')" = \
  '[true,3,"echo \"backed up ${RUNBOOK_ITEM}\"","db2","backed up db2\n"]' ] && ok || bad "plain: backup's calls"
[ "$(j plain '.steps[] | select(.step == "backup") | [.items[] | .index]')" = '[0,1,2]' ] && ok || bad "plain: backup's items"
[ "$(j plain '.steps[] | select(.step == "prod_only") | [.status, .error, (.attempts | length)]')" = \
  '["skipped","its condition is false",0]' ] && ok || bad "plain: the skipped step"
[ "$(j plain '[.steps[] | select(.step == "report") | .attempts[0] | has("action"), (.calls | length)]')" = '[false,0]' ] &&
	ok || bad "plain: an inline action has no calls"
[ "$(j crash '[.run.sessions[] | [.kind, .ended, .user]]')" = '[["started","crashed","alice"],["resumed","finished","bob"]]' ] &&
	ok || bad "crash: sessions"
[ "$(j crash '.run.sessions[0].repairs | [length, .[0].length]')" = '[1,30]' ] && ok || bad "crash: the torn tail repaired"
[ "$(j crash '.steps[] | select(.step == "migrate") | [.attempts[] | [.attempt, .session, .status, .calls[0].status, .calls[0].output.stdout]]')" = \
  '[[1,1,"crashed",null,null],[1,2,"succeeded","succeeded","applied 3 migrations\n"]]' ] && ok || bad "crash: migrate's attempts"
[ "$(j gate '.steps[] | select(.step == "drop_old") | .gate | [.decision, .by, .via, .waited_ms > 1000]')" = \
  '["approved","bob","--approve",true]' ] && ok || bad "gate: the gate"
# Every call with an output_sha256 whose text is in the log has its output, and it hashes to it.
for name in plain crash gate; do
	n=$(rb replay "$fx/$name" -f json "${ring[@]}" |
		jq -r '.steps[].attempts[].calls[] | select(.output) | [.output_sha256, (.output | tojson | @base64)] | @tsv' |
		while IFS=$'\t' read -r sha out; do
			[ "$(base64 -d <<<"$out" | jq -jcS . | sha256sum | cut -c 1-64)" = "$sha" ] || echo x
		done | wc -l)
	[ "$n" -eq 0 ] && ok || bad "$name: $n outputs do not hash to their output_sha256"
	[ "$(rb replay "$fx/$name" -f json "${ring[@]}" | jq '[.steps[].attempts[].calls[] | select(.output)] | length')" -ge 2 ] &&
		ok || bad "$name: fewer than two calls have their output"
done

# --- verification comes first -------------------------------------------------------
cp -r "$fx/plain" "$d/changed"
sed -i '5s/db2/dB2/' "$d/changed/audit.jsonl"
expect 1 "^$d/changed/audit.jsonl:5: error: seq 5: " "$d/changed" "${ring[@]}"
cp -r "$fx/crash" "$d/cut"
sed -i '$d' "$d/cut/audit.jsonl"
expect 1 "^$d/cut/audit.jsonl:[0-9]+: error: " "$d/cut" "${ring[@]}"
rb keygen --out "$d/other.pem" >/dev/null
expect 1 "not in the keyring" "$fx/gate" --keyring "$d/other.pem.pub"
expect 1 "keys.*(give the trusted public keys with --keyring DIR)" "$fx/gate" --state-dir "$d/nowhere"

# --- runs, arguments ------------------------------------------------------------------
expect 2 "^runbook: error: replay: $shared holds 2 runs; pick one with --run ID \(.*$second\)$" "$shared" "${ring[@]}"
expect 1 "^runbook: error: run 20990101-000000-0000 is not in $shared \(it holds .*\)$" "$shared" --run 20990101-000000-0000 "${ring[@]}"
expect 1 "^runbook: error: no run 20990101-000000-0000 in $d/state/runs, and no log file of that name$" 20990101-000000-0000 --state-dir "$d/state"
expect 1 "cannot open" "$d/none/audit.jsonl" "${ring[@]}"
expect 2 "^runbook: error: replay: no run given \(usage: runbook replay RUN_ID\|RUN_DIR\|LOG\)$"
expect 2 "^runbook: error: replay: unknown format 'xml' \(expected text, markdown or json\)$" "$fx/plain" --format xml
expect 2 "^runbook: error: replay: one run at a time$" "$fx/plain" "$fx/gate"
expect 2 "^runbook: error: replay: unknown option '--bogus'" "$fx/plain" --bogus
expect 2 "^runbook: error: replay: option '--run' needs a value$" "$fx/plain" --run

# --- --simulate: the runbooks as they are now, with the recorded results -------------------
# failed: a run that failed before its last steps, whose arguments hold run.id, run.started_at
# and each for_each item's output: the same runbook takes the same path (exit 0).
for f in plain crash gate failed; do
	golden "$dir/simulate-$f.txt" "$fx/$f" --simulate "${ring[@]}"
done
# simulate-changed.yaml is plain.yaml changed: exit 1 and every difference named.
rb replay "$fx/plain" --simulate --runbook "$dir/simulate-changed.yaml" "${ring[@]}" >"$d/sim" 2>&1
rc=$?
[ $rc -eq 1 ] && ok || bad "a changed runbook simulates with exit $rc"
if [ "${UPDATE:-}" = 1 ]; then cp "$d/sim" "$dir/simulate-changed.txt"; fi
cmp -s "$d/sim" "$dir/simulate-changed.txt" && ok || { bad "simulate-changed.txt differs"; diff -u "$dir/simulate-changed.txt" "$d/sim" | head -20; }
grep -q '^  condition  flaky: ran then (succeeded); now it would be skipped: its condition is false$' "$d/sim" &&
	ok || bad "a changed condition (ran then, skipped now)"
grep -q '^  condition  prod_only: was skipped then; now it would run$' "$d/sim" && ok ||
	bad "a changed condition (skipped then, runs now)"
grep -q '^  argument   backup\[2\]: command was "echo \\"backed up ${RUNBOOK_ITEM}\\"", now "echo \\"saved ${RUNBOOK_ITEM} to ${RUNBOOK_PARAMS_ENV}\\""$' "$d/sim" &&
	grep -q '^  argument   backup\[2\]: env was {"RUNBOOK_ITEM":"db2"}, now {"RUNBOOK_ITEM":"db2","RUNBOOK_PARAMS_ENV":"staging"}$' "$d/sim" &&
	ok || bad "a changed argument"
grep -q '^  added      notify: ' "$d/sim" && ok || bad "an added step"
grep -q '^  removed    optional_cleanup: failed then' "$d/sim" && ok || bad "a removed step"
rb replay "$fx/plain" --simulate --runbook "$dir/simulate-changed.yaml" --format json "${ring[@]}" >"$d/sim.json"
[ "$(jq -r '[.same_path, (.differences | length), (.differences | map(.kind) | unique | join(","))] | @tsv' "$d/sim.json")" = "$(printf 'false\t11\tadded,argument,condition,removed')" ] &&
	ok || bad "simulate --format json: $(head -c 300 "$d/sim.json")"
# A failed call's recorded output stands in for it too: a step that reads it takes the same
# path; a step that fails now where it succeeded then is a difference of outcome.
sed 's/backed_up = #steps.backup.output}/backed_up = #steps.backup.output, cleanup = steps.optional_cleanup.output.exit_code}/' \
	"$dir/plain.yaml" >"$d/reads-failed.yaml"
rb replay "$fx/plain" --simulate --runbook "$d/reads-failed.yaml" "${ring[@]}" >"$d/out" 2>&1
rc=$?
[ $rc -eq 0 ] && grep -q '^the same path: ' "$d/out" && ok || bad "a failed call's output in a simulation: $rc $(head -c 300 "$d/out")"
sed 's/backed_up = #steps.backup.output}/backed_up = #steps.backup.output, oops = steps.optional_cleanup.output.exit_code.x}/' \
	"$dir/plain.yaml" >"$d/fails-now.yaml"
rb replay "$fx/plain" --simulate --runbook "$d/fails-now.yaml" "${ring[@]}" >"$d/out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q '^  outcome    report: succeeded then; now it would have failed: .*attempt to index a number value' "$d/out" &&
	ok || bad "a step that fails now: $rc $(head -c 400 "$d/out")"
# Nothing ran: the commands of the fixture would have written here.
rb replay "$fx/crash" --simulate "${ring[@]}" --format markdown | grep -q '^### Simulation of run ' && ok || bad "simulate --format markdown"
# The recorded params must fit the runbook as it is now.
sed 's/  dir: {type: string, required: true}/  target: {type: string, required: true}/; s/params\.dir/params.target/g' "$dir/plain.yaml" >"$d/noparam.yaml"
rb replay "$fx/plain" --simulate --runbook "$d/noparam.yaml" "${ring[@]}" >"$d/out" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "param dir: given to the run; the runbook takes no such param now" "$d/out" &&
	grep -q "missing required param 'target'\|param 'target'" "$d/out" && ok || bad "simulate with a param gone: $rc $(head -c 300 "$d/out")"
expect 2 "^runbook: error: replay: --runbook goes with --simulate$" "$fx/plain" --runbook "$dir/plain.yaml"
rb replay "$fx/plain" --simulate --runbook "$d/missing.yaml" "${ring[@]}" >"$d/out" 2>&1
[ $? -eq 1 ] && grep -q "cannot open" "$d/out" && ok || bad "simulate with a missing runbook"
# A secret read when a step needed it (a secret_read record) is among the run's secrets.
EXEC_TEST_TOKEN=tok-Rp1x EXEC_TEST_EXTRA=ext-Rp1x rb run --state-dir "$d/st" tests/exec/lazy_secrets.yaml \
	-p fail=true >/dev/null 2>&1
rb replay --state-dir "$d/st" "$(ls "$d/st/runs")" >"$d/out" 2>&1
grep -q '^  secrets    extra, token$' "$d/out" && ok || bad "secrets read late in replay: $(grep secrets "$d/out")"
rb replay --help | grep -q '^usage: runbook replay ' && ok || bad "replay --help"
rb --help | grep -q '^  replay ' && ok || bad "replay is not in runbook --help"

echo "replay: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
