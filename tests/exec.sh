#!/usr/bin/env bash
# The engine on real runbooks (tests/exec/*.yaml): exit statuses, the events,
# and the journal each run leaves in its state directory.
set -uo pipefail
: "${RUNBOOK:?}"
state=$(mktemp -d)
# Runbook locks are machine-wide: this suite's are its own, apart from any other run's.
export RUNBOOK_LOCK_DIR
RUNBOOK_LOCK_DIR=$(mktemp -d)/locks
trap 'rm -rf "$state" "${RUNBOOK_LOCK_DIR%/locks}"' EXIT
pass=0 fail=0
check() {                 # check DESCRIPTION COMMAND...
	if "${@:2}" >/dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $1"; fi
}
journal() { jq -c -f tests/records.jq "$state"/runs/"$(ls -t "$state"/runs | head -n 1)"/audit.jsonl; }
has() { grep -q -- "$1" <<<"$(journal)"; }
order() {                 # order A B: the first line matching A comes before B's
	local a b
	a=$(journal | grep -n -- "$1" | head -n 1 | cut -d: -f1)
	b=$(journal | grep -n -- "$2" | head -n 1 | cut -d: -f1)
	[ -n "$a" ] && [ -n "$b" ] && [ "$a" -lt "$b" ]
}
run() { ${RUNBOOK_WRAP:-} "$RUNBOOK" run --state-dir "$state" "$@"; }

# basics
out=$(EXEC_TEST_TOKEN=tok-Zq81x run tests/exec/basics.yaml 2>&1)
rc=$?
check "basics exits 0" [ $rc -eq 0 ]
check "lua output journalled" has '"step":"square","status":"succeeded","attempt":1,"output":{[^}]*"sq":9'
check "assert passed" has '"step":"check","status":"succeeded"'
check "wait ran" has '"step":"pause","status":"succeeded"'
check "false condition skips" has '"step":"big","status":"skipped"'
check "a skipped dependency skips" has '"step":"after_big","status":"skipped"'
check "its own if runs it anyway" has '"step":"report","status":"succeeded"'
check "it sees the skip" has '"step":"report".*"big":"skipped"'
check "named outputs" has '"outputs":{"big_status":"skipped"}'
check "for_each collects outputs" has '"step":"tens","status":"succeeded","attempt":1,"output":\[10,20,30\]'
check "three attempts" has '"step":"flaky","status":"failed","attempt":3'
check "two retries journalled" [ "$(journal | grep -c '"event":"step_retry","step":"flaky"')" -eq 2 ]
check "secret redacted in the journal" has '"token":"\*\*\*"'
check "secret never on disk" bash -c "! grep -rq tok-Zq81x '$state'"
check "secret never printed" bash -c "! grep -q tok-Zq81x <<<'$out'"
check "run finished journalled" has '"event":"run_finished","status":"succeeded"'
check "a sensitive step's output is journalled as ***" has '"step":"private","status":"succeeded","attempt":1,"output":"\*\*\*","outputs":"\*\*\*"'
check "its dependents see the real value" has '"step":"uses_private","status":"succeeded","attempt":1,"output":"length 17"'
check "the value is nowhere in the journal" bash -c "! grep -rq --exclude=runbook.yaml private-Value-3k9 '$state'"
check "every step started before it finished" order '"event":"step_started","step":"tens"' '"step":"tens","status"'

# A ${{ }} value reaches the shell as data wherever it stands (issue: values
# pasted into sh -c as code); a secret inside single quotes is expanded.
hostile='x; echo INJECTED $(id -un) `id` '"'"'q'"'"' "d" \'
out=$(EXEC_TEST_TOKEN=tok-Zq81x run tests/exec/shell_data.yaml -p "v=$hostile" 2>&1)
check "values as data: the run succeeds" [ $? -eq 0 ]
check "nothing injected ran" bash -c "! grep -q 'INJECTED root' <<<'${out//\'/}'"
n=$(grep -cF "[x; echo INJECTED \$(id -un) \`id\` 'q' \"d\" \\]" <<<"$out")
check "unquoted, in \$( ), in a shell action's command and spliced quoted: the value as it is" [ "$n" -eq 4 ]
for w in "in dq " "in sq " "doc "; do
	check "and [$w...] too" grep -qF "[${w}x; echo INJECTED \$(id -un) \`id\` 'q' \"d\" \\]" <<<"$out"
done
check "a secret inside single quotes reaches the command" grep -q 'secret_in_sq| 16$' <<<"$out"
check "an integer inside \$(( )) is computed with" grep -q 'arith| 41$' <<<"$out"
check "anything else there fails the step, at its position" \
	grep -q 'arith_not_integer: failed.*shell_data.yaml:[0-9]*:[0-9]*: a value inside \$(( )) must be an integer' <<<"$out"
check "the intent signs the command and its variables" has '"event":"action_intent","step":"places".*"RUNBOOK_PARAMS_V":"x; echo INJECTED'
check "and never the secret's value" bash -c "! grep -rq tok-Zq81x '$state'"

# run: commands run in bash -eo pipefail (sh -e with shell: sh), with the step's env:
out=$(run tests/exec/shell_options.yaml 2>&1)
check "shell options: the run goes on" [ $? -eq 0 ]
check "a failure inside a pipeline fails the step" has '"step":"pipeline","status":"failed"'
check "a failure in the middle of a script stops it" has '"step":"middle","status":"failed"'
check "and what comes after does not run" bash -c "! grep -q 'not reached' <<<'$out'"
check "shell: sh keeps POSIX sh's pipelines" has '"step":"posix","status":"succeeded"'
check "so does the shell action's shell: sh" has '"step":"action_sh","status":"succeeded"'
check "a step's env: reaches its command" grep -q 'with_env| hello, a b$' <<<"$out"
out=$(printf 'runbook: x\nversion: 1\nsteps:\n  - id: a\n    lua: return 1\n    env: {A: b}\n' | "$RUNBOOK" validate - 2>&1)
check "env: goes only with run:" grep -q "^-:6:10: error: 'env' goes only with 'run'" <<<"$out"

# failure, rollback, on_failure
run tests/exec/failure.yaml >/dev/null 2>&1
check "a failed run exits 1" [ $? -eq 1 ]
check "the failing step" has '"step":"boom","status":"failed"'
check "nothing after it starts" bash -c "! grep -q '\"step\":\"never\"' <<<'$(journal)'"
check "undo second before first" order '"step":"second_back","status":"succeeded"' '"step":"first_undo","status":"succeeded"'
check "no undo for a step without one" bash -c "! grep -q no_undo_undo <<<'$(journal)'"
check "on_failure runs after the rollback" order '"step":"first_undo","status"' '"step":"notify","status"'
check "on_failure sees the failure" has '"output":"failed failed"'
check "on_failure order" order '"step":"notify","status"' '"step":"notify_after","status"'
check "run failed journalled" has '"event":"run_finished","status":"failed"'

# json events: one object a line, each with an event and the run
out=$(EXEC_TEST_TOKEN=tok-json-1 run --output json tests/exec/basics.yaml 2>/dev/null)
check "json events parse" node -e '
	const lines = require("fs").readFileSync(0, "utf8").trim().split("\n");
	for (const l of lines) { const e = JSON.parse(l); if (!e.event || !e.run || !e.time) process.exit(1); }
	if (JSON.parse(lines[lines.length - 1]).event !== "run_finished") process.exit(1);' <<<"$out"

# What steps print is shown, not obeyed: control characters as \e, \r, \0 in text lines
out=$(run -p dir="$state" tests/exec/forged.yaml 2>&1)
check "a gate without a terminal pauses" [ $? -eq 3 ]
check "a step's escape sequences are shown in its line" grep -qF 'target| prod-db?\r\e[2K\e[1A\e]0;pwned\aharmless-db' <<<"$out"
check "and in the gate's prompt" grep -qF 'drop: waiting for approval: DROP DATABASE prod-db?\r\e[2K\e[1A\e]0;pwned\aharmless-db\n' <<<"$out"
check "a NUL is shown, not the line's end; a CR that ends it is dropped" grep -q 'nul| before\\0after$' <<<"$out"
check "no control character reaches the output" bash -c '! tr -d "\n\t" | LC_ALL=C grep -q "[[:cntrl:]]"' <<<"$out"

# A NUL from an expression is refused at run time, before anything is signed
no_intent() { ! grep -q "\"event\":\"action_intent\",\"step\":\"$1\"" <<<"$(journal)"; }
for w in "command:16:19:from an expression in the command" "arg:22:12:from an expression in 'env'" \
	"prompt:25:14:from an expression in the prompt" \
	"secret:29:15:from an expression in the command"; do
	IFS=: read -r step line col what <<<"$w"
	out=$(EXEC_NUL_TOKEN=tok-nul-9 run -p dir="$state" -p what="$step" tests/exec/nul.yaml 2>&1)
	check "a NUL in $step fails the run" [ $? -eq 1 ]
	check "at its position" grep -qF ": tests/exec/nul.yaml:$line:$col: NUL character (\0) $what, which would end there" <<<"$out"
	check "nothing of $step is signed" no_intent "$step"
	check "nor run" [ ! -e "$state/$step.ran" ]
done

# bad input: a secret that a var reads is read as the run starts
out=$(run tests/exec/lazy_secrets.yaml 2>&1)
check "a missing secret exits 2" [ $? -eq 2 ]
check "a missing secret names its declaration" grep -q 'lazy_secrets.yaml:11:3: error: secret .token.: environment variable EXEC_TEST_TOKEN is not set' <<<"$out"
out=$(EXEC_TEST_TOKEN=abc run tests/exec/lazy_secrets.yaml 2>&1)
check "a secret too short to redact exits 2" [ $? -eq 2 ]
check "a refused run leaves no run directory" [ "$(ls "$state/runs" | wc -l)" -eq "$(grep -l run_started "$state"/runs/*/audit.jsonl | wc -l)" ]
check "and says why" grep -q 'lazy_secrets.yaml:11:3: error: secret .token. is shorter than 4 characters' <<<"$out"
# A step's secrets are read when it is about to run: a missing pager key that only
# prod's steps use does not stop a dev run, and is never read there.
out=$(EXEC_TEST_TOKEN=tok-Lz93 run tests/exec/lazy_secrets.yaml 2>&1)
check "a secret only a skipped step needs is not needed" [ $? -eq 0 ]
check "the var's secret is read as the run starts" has '"event":"run_started".*"secrets":{"token":{"hmac_sha256":"[0-9a-f]\{64\}"}}'
check "no other secret is read" bash -c "! grep -q secret_read <<<'$(journal)'"
out=$(EXEC_TEST_TOKEN=tok-Lz93 run tests/exec/lazy_secrets.yaml -p fail=true 2>&1)
check "nor by a skipped on_failure step" has '"step":"page","status":"skipped"'
check "a secret an if reads is read before it: the step fails, closed" \
	has '"step":"page_extra","status":"failed",.*"error":"tests/exec/lazy_secrets.yaml:12:3: secret .extra.: environment variable EXEC_TEST_EXTRA is not set"'
out=$(EXEC_TEST_TOKEN=tok-Lz93 EXEC_TEST_EXTRA=ext-Lz93-x run tests/exec/lazy_secrets.yaml -p fail=true 2>&1)
check "read for the step that needs it, by its HMAC" has '"event":"secret_read","step":"page_extra","hmac_sha256":"[0-9a-f]\{64\}","secret":"extra"'
check "before the step's if is decided" order '"event":"secret_read"' '"step":"page_extra","status":"succeeded"'
check "the secret read late is redacted too" bash -c "! grep -rq ext-Lz93-x '$state'"
out=$(EXEC_TEST_TOKEN=tok-Lz93 run tests/exec/lazy_secrets.yaml -p env=prod 2>&1)
check "when the step runs, a missing secret fails it (exit 1)" [ $? -eq 1 ]
check "with the secret's position" grep -q "prod_only: failed in [0-9.]*s: tests/exec/lazy_secrets.yaml:10:3: secret 'pager_key': cannot open '/nonexistent/runbook-test/pager_key': No such file or directory" <<<"$out"
check "the step did not start" bash -c "! grep -q '\"step_started\",\"step\":\"prod_only\"' <<<'$(journal)'"
out=$(EXEC_TEST_TOKEN=tok-Lz93 EXEC_TEST_EXTRA=ext-Lz93-y run tests/exec/lazy_secrets.yaml -p env=unnamed 2>&1)
check "a secret reached without its name (_ENV) is read when reached" has '"step":"unnamed","status":"succeeded","attempt":1,"output":10'
out=$(EXEC_TEST_TOKEN=tok-Lz93 run tests/exec/lazy_secrets.yaml -p env=unnamed 2>&1)
check "or fails its step, never a silent nil" grep -q "unnamed: failed in [0-9.]*s: tests/exec/lazy_secrets.yaml:12:3: secret 'extra'" <<<"$out"
check "--jobs 0 is refused" bash -c "! '$RUNBOOK' run --jobs 0 tests/exec/basics.yaml"
before=$(ls "$state/runs" | wc -l)
out=$(EXEC_TEST_TOKEN=tok-dry-1 run --dry-run tests/exec/basics.yaml 2>&1)
check "--dry-run prints the plan" grep -q '^Plan: exec-basics' <<<"$out"
check "--dry-run creates no run" [ "$(ls "$state/runs" | wc -l)" -eq "$before" ]

# SIGINT stops a run: exit 130, the running step interrupted, the run journalled.
# (Run directly: a wrapper would take the signal.)
"$RUNBOOK" run --state-dir "$state" tests/exec/slow.yaml >"$state/sigint.out" 2>&1 &
pid=$!
for _ in $(seq 50); do has '"step":"long_wait","attempt":1' 2>/dev/null && break; sleep 0.1; done
kill -INT $pid
wait $pid
check "SIGINT exits 130" [ $? -eq 130 ]
check "the running step is interrupted" has '"step":"long_wait","status":"interrupted"'
check "the step after it never started" bash -c "! grep -q '\"step\":\"after\"' <<<'$(journal)'"
check "the run is journalled as interrupted" has '"event":"run_finished","status":"interrupted"'
check "its last line counts the step as interrupted, not failed" \
	grep -q 'interrupted in .*s: 0 succeeded, 0 failed, 1 interrupted, 0 skipped, 1 not run$' "$state/sigint.out"
sid=$(ls -t "$state"/runs | head -n 1)
check "runs counts it the same way" \
	grep -q "^$sid  *interrupted  *exec-slow  *0 succeeded, 0 failed, 1 interrupted, 0 skipped, 1 not run$" \
	<<<"$("$RUNBOOK" runs --state-dir "$state")"

# SIGHUP (a dropped SSH session) is an interruption too, not a crash: exit 129, the run
# journalled as interrupted, and a resume goes on without a run_crashed.  Under nohup
# (SIGHUP ignored) the run goes on.
hdir=$(mktemp -d)
"$RUNBOOK" run --state-dir "$state" -p dir="$hdir" tests/exec/hangup.yaml >"$hdir/out" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q 'hold: started' "$hdir/out" && break; sleep 0.1; done
kill -HUP $pid
wait $pid
check "SIGHUP exits 129" [ $? -eq 129 ]
check "the running step is interrupted by SIGHUP" has '"step":"hold","status":"interrupted"'
check "the hung-up run is journalled as interrupted" has '"event":"run_finished","status":"interrupted"'
hid=$(ls -t "$state"/runs | head -n 1)
touch "$hdir/go"
out=$("$RUNBOOK" resume --state-dir "$state" "$hid" </dev/null 2>&1)
check "a hung-up run resumes" [ $? -eq 0 ]
check "and says it was not a crash" bash -c "! grep -q run_crashed '$state/runs/$hid/audit.jsonl'"
check "but resumed" grep -q run_resumed "$state/runs/$hid/audit.jsonl"
check "the step after it ran once" [ "$(cat "$hdir/after.count")" = after ]
rm -f "$hdir/go"
# A file of its own: the first run's "hold: started" must not be taken for this one's (a
# SIGHUP before the subshell's trap would run the suite's EXIT trap there).
(trap '' HUP; exec "$RUNBOOK" run --state-dir "$state" -p dir="$hdir" tests/exec/hangup.yaml) \
	>"$hdir/out.nohup" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q 'hold: started' "$hdir/out.nohup" && break; sleep 0.1; done
kill -HUP $pid
touch "$hdir/go"
wait $pid
check "under nohup SIGHUP is ignored" [ $? -eq 0 ]
rm -rf "$hdir"

# SIGTERM (a service manager stopping a scheduled run): the on_failure steps run, and see that
# the run was interrupted (run.status); no rollback; a second signal kills them and skips the
# rest, or, before they start, skips them all; alone, they get 15 s.
idir=$(mktemp -d)
interrupt() {             # interrupt OUT [-p ...]: run interrupt.yaml, SIGTERM once it works
	local out="$1"; shift
	"$RUNBOOK" run --state-dir "$state" -p dir="$idir" "$@" tests/exec/interrupt.yaml >"$out" 2>&1 &
	ipid=$!
	for _ in $(seq 100); do grep -q 'work| working' "$out" && break; sleep 0.1; done
	kill -TERM $ipid
}
interrupt "$idir/once"
wait $ipid
check "an interrupted run still exits 143" [ $? -eq 143 ]
check "its on_failure step ran and saw the run interrupted" [ "$(cat "$idir/alert.out")" = "interrupted interrupted" ]
check "and the on_failure steps after it" [ -e "$idir/after.out" ]
check "the run is journalled as interrupted" has '"event":"run_finished","status":"interrupted"'
check "nothing was rolled back" [ ! -e "$idir/undo.out" ]
rm -f "$idir"/*.out
interrupt "$idir/twice" -p slow_alert=true
for _ in $(seq 100); do grep -q 'alert| alerting' "$idir/twice" && break; sleep 0.1; done
t0=$(date +%s%N)
kill -TERM $ipid
wait $ipid
rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "a second SIGTERM stops the on_failure steps at once" [ $rc -eq 143 -a $ms -lt 3000 ]
check "the running one is interrupted" has '"step":"alert","status":"interrupted"'
check "the rest are skipped" [ ! -e "$idir/after.out" ]
check "and it says so" grep -q 'interrupted again: killing the on_failure steps, skipping the rest' "$idir/twice"
rm -f "$idir"/*.out
interrupt "$idir/early" -p stubborn=true
sleep 0.5
kill -TERM $ipid
wait $ipid
rc=$?
check "a second SIGTERM before the on_failure steps skips them" [ $rc -eq 143 -a ! -e "$idir/alert.out" ]
check "saying so" grep -q 'interrupted again: the on_failure steps do not run' "$idir/early"
rm -f "$idir"/*.out
interrupt "$idir/bound" -p slow_alert=true
t0=$(date +%s%N)
wait $ipid
rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "on_failure steps after an interrupt are stopped after 15 s" [ $rc -eq 143 -a $ms -ge 14000 -a $ms -lt 25000 ]
check "saying why" grep -q 'the on_failure steps of the interrupted run did not end within 15s: stopping them' "$idir/bound"
check "the plan shows run.status in on_failure steps as known during the run" \
	grep -q '"RUNBOOK_RUN_STATUS":"<known during the run>"' \
	<<<"$("$RUNBOOK" plan -p dir="$idir" tests/exec/interrupt.yaml)"
rm -rf "$idir"

# A command in the scheduler's poll loop that ignores SIGTERM: the first SIGINT asks it to
# stop (SIGTERM, then 5 s of grace), a second kills it at once, and nothing of it is left.
"$RUNBOOK" run --state-dir "$state" tests/exec/stubborn.yaml >"$state/int2.out" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q 'stubborn| ready' "$state/int2.out" && break; sleep 0.1; done
kill -INT $pid
sleep 1
check "a first SIGINT leaves a command that ignores SIGTERM its grace" kill -0 $pid
t0=$(date +%s%N)
kill -INT $pid
wait $pid
rc=$?
t1=$(date +%s%N)
check "a second SIGINT ends the run at once (exit 130)" [ $rc -eq 130 -a $(( (t1 - t0) / 1000000 )) -lt 2000 ]
check "the command is killed" bash -c "! pgrep -f 'sleep 31[.]7'"
check "the step is interrupted" grep -q 'stubborn: interrupted' "$state/int2.out"

# Commands at once in the poll loop: each timeout fires at its own time (the loop wakes for
# the nearest, not at its 1 s tick), while another command streams its lines.
out=$(run --jobs 4 tests/exec/timeouts.yaml 2>&1)
for t in 300 600 900; do
	ms=$(jq -r "select(.type == \"step_finished\" and .step == \"t$t\") | .duration_ms" \
		"$state"/runs/"$(ls -t "$state"/runs | head -n 1)"/audit.jsonl)
	check "a ${t}ms timeout among others stops its command in time ($ms ms)" \
		[ -n "$ms" -a "$ms" -ge $t -a "$ms" -lt $((t + 500)) ]
	check "and says so" has "\"step\":\"t$t\",\"status\":\"failed\".*\"error\":\"timed out after ${t}ms\""
done
check "the command beside them streams all its lines" \
	bash -c "[ \$(grep -c '^[0-9:]* talk| line [123]\$' <<<'$out') -eq 3 ]"
check "and succeeds" has '"step":"talk","status":"succeeded"'

# A failing Lua chunk names its place in the runbook.
out=$(run tests/exec/lua_errors.yaml 2>&1)
check "a block chunk's error names its line and column" \
	grep -q "block: failed (continuing) in [0-9.]*s: tests/exec/lua_errors.yaml:11:7: attempt to index a nil value (local 'y')" <<<"$out"
check "a quoted one's" grep -q 'quoted: failed (continuing) in [0-9.]*s: tests/exec/lua_errors.yaml:14:11: attempt to perform arithmetic on a nil value' <<<"$out"
check "action: lua's code" grep -q 'via_action: failed (continuing) in [0-9.]*s: tests/exec/lua_errors.yaml:21:9: nope' <<<"$out"
check "a check's" grep -q 'checked: failed (continuing) in [0-9.]*s: check: tests/exec/lua_errors.yaml:26:9: attempt to concatenate a nil value' <<<"$out"
check "a broken check fails its step, which does not run" bash -c "! grep -q '\"step\":\"checked\",\"attempt\"' <<<'$(journal)'"
check "a check that raises error() with no position is broken too" \
	grep -q 'checked_bare: failed in [0-9.]*s: check: no position' <<<"$out"
check "in the audit log too" has '"step":"block","status":"failed",.*"error":"tests/exec/lua_errors.yaml:11:7: attempt to index'

# The Lua memory limit reached while the engine records a step's result: that step fails,
# naming the limit, the step and its position; the run fails (continue_on_error or not), and
# steps.ID never keeps what it was before (on_failure's report reads what was journalled).
out=$(run tests/exec/memcap.yaml 2>&1)
check "reaching the memory limit fails the run (exit 1)" [ $? -eq 1 ]
mc=$(journal | jq -r 'select(.event == "step_finished" and .status == "failed") | .step' | head -n 1)
mline=$(grep -n "id: $mc," tests/exec/memcap.yaml | cut -d: -f1)
check "a step fails as the limit is reached ($mc)" [ -n "$mc" -a "$mc" != s1 ]
check "its error names the limit, the step and its position" \
	grep -q "$mc: failed in [0-9.]*s: tests/exec/memcap.yaml:$mline:5: memory limit of 64 MiB exceeded while recording step '$mc'\$" <<<"$out"
check "in the audit log too" has "\"step\":\"$mc\",\"status\":\"failed\",.*\"error\":\"tests/exec/memcap.yaml:$mline:5: memory limit of 64 MiB"
check "the steps before it succeeded" [ "$(journal | jq -r 'select(.event == "step_finished" and .status == "succeeded") | .step' | grep -c '^s')" -eq $((${mc#s} - 1)) ]
started=$(journal | jq -r 'select(.event == "step_started" and (.step | test("^s[0-9]"))) | .step' | tr '\n' ' ')
check "nothing starts after it" [ "$started" = "$(seq -f 's%g' -s ' ' 1 "${mc#s}") " ]
check "steps.ID says what the journal says, for every step" bash -c '[ -n "$1" ] && [ "$1" = "$2" ]' _ \
	"$(journal | jq -Sc 'select(.event == "step_finished" and .step == "report") | .output | with_entries(select(.value != "pending"))')" \
	"$(journal | jq -Ssc 'map(select(.event == "step_finished" and .step != "report") | {(.step): .status}) | add')"
out=$(run tests/exec/memcap_item.yaml 2>&1)
check "an item that does not fit fails the run" [ $? -eq 1 ]
check "... and its step, naming the limit, the item and the step at its for_each" \
	grep -q "each: failed in [0-9.]*s: tests/exec/memcap_item.yaml:24:15: memory limit of 64 MiB exceeded while setting item 1 of 2 for step 'each'\$" <<<"$out"
out=$(run tests/exec/memcap_vars.yaml 2>&1)
check "a var that does not fit refuses the run (exit 2)" [ $? -eq 2 ]
check "... naming the limit and the var at its value" \
	grep -q "^tests/exec/memcap_vars.yaml:[0-9]*:8: error: memory limit of 64 MiB exceeded while setting var 'v[0-9]*'\$" <<<"$out"

# Lua runs on the engine's thread; while it loops the engine acts on timeouts and signals
# and streams the other steps' output.  Each event line is stamped as it arrives (us).
stamp() { while IFS= read -r l; do printf '%s %s\n' "${EPOCHREALTIME/./}" "$l"; done; }
t0=$(date +%s%N)
run --output json tests/exec/lua_timeout.yaml 2>/dev/null | stamp >"$state/spin.json"
t1=$(date +%s%N)
check "a looping lua: step with timeout: 1s times out" \
	grep -q '"step":"spin","status":"failed",.*"error":"timed out after 1s"' "$state/spin.json"
check "so does a loop of costly C calls (a sort)" \
	grep -q '"step":"sorts","status":"failed",.*"error":"timed out after 1s"' "$state/spin.json"
check "and a check, which gave no answer: its step fails without running" \
	grep -q '"step":"checked","status":"failed",.*"error":"check: ' "$state/spin.json"
# Each step's own duration (the journal's), not the run's wall clock, which a wrapper such
# as valgrind stretches: a 1 s timeout ends each loop within 10 s (before: 52 s; a sort
# is one C call, which valgrind makes last seconds).
slowest=$(jq -s '[.[] | select(.type == "step_finished" and (.step == "spin" or .step == "sorts" or
	.step == "checked")) | .duration_ms] | max' "$state/runs/$(ls -t "$state/runs" | head -n 1)/audit.jsonl")
check "each loop stops within a generous bound of its 1 s timeout (slowest ${slowest} ms)" \
	[ "${slowest:-99999}" -lt 10000 ]
# talk prints a line every 0.1 s for 1 s, beside spin's 1 s loop.
at() { grep -m 1 -- "$1" "$state/spin.json" | cut -d' ' -f1; }     # at PATTERN: its arrival (us)
before=$(sed -n '/"step":"spin","status"/q;/"event":"output","step":"talk"/p' "$state/spin.json")
n=$(grep -c . <<<"$before")
check "a command's lines arrive while a lua: step loops ($n of 10)" [ "$n" -ge 4 ]
spread=$(( ($(tail -n 1 <<<"$before" | cut -d' ' -f1) + 0 - $(head -n 1 <<<"$before" | cut -d' ' -f1) - 0) / 1000 ))
check "... as they are printed, not at once when it ends (over $spread ms)" [ "$spread" -ge 250 ]
before=$(sed -n '/"event":"check","step":"checked"/q;/"event":"output","step":"talk"/p' "$state/spin.json")
check "and while a check loops" [ "$(grep -c . <<<"$before")" -eq 10 ]
# It ended while the check looped: its duration is until then, not until its end was recorded.
took=$(cut -d' ' -f2- "$state/spin.json" | jq -r 'select(.step == "talk" and .event == "step_finished") | .duration_ms')
lines=$(( ($(at '"line":"line 10"') + 0 - $(at '"event":"step_started","step":"talk"') - 0) / 1000 ))
check "a command that ended while Lua ran has its own duration ($took ms, its lines over $lines ms)" \
	[ -n "$took" -a "${took:-0}" -lt $((lines + 500)) ]

# ... and while an expression loops (spin's condition, for the 1 s an expression may take).
RB_SPIN=expr run --output json tests/exec/lua_spin.yaml 2>/dev/null | stamp >"$state/spin.json"
check "an expression that loops stops at its limit" \
	grep -q '"step":"spin","status":"failed",.*"error":"if: expression failed: time limit of 1000 ms exceeded"' "$state/spin.json"
before=$(sed -n '/"step":"spin","status"/q;/"event":"output","step":"talk"/p' "$state/spin.json")
spread=$(( ($(tail -n 1 <<<"$before" | cut -d' ' -f1) + 0 - $(head -n 1 <<<"$before" | cut -d' ' -f1) - 0) / 1000 ))
check "a command's lines arrive as they are printed meanwhile ($(grep -c . <<<"$before") over $spread ms)" \
	[ "$spread" -ge 250 ]

t0=$(date +%s%N)
out=$(run tests/exec/lua_run_timeout.yaml 2>&1)
rc=$?
t1=$(date +%s%N)
check "the run's timeout cancels a looping lua: step ($(( (t1 - t0) / 1000000 )) ms for 1 s)" \
	[ $rc -eq 1 -a $(( (t1 - t0) / 1000000 )) -lt 5000 ]
check "... which fails as cancelled" has '"step":"spin","status":"failed",.*"error":"cancelled"'

# A signal while Lua loops (RB_SPIN: in a step, its check, its condition) stops the run at
# once, journalled as interrupted; the resumed run (nothing loops) finishes.
spin_signal() {           # spin_signal WHERE SIGNAL STATUS
	RB_SPIN=$1 "$RUNBOOK" run --state-dir "$state" tests/exec/lua_spin.yaml >"$state/sig.out" 2>&1 &
	local pid=$! rc t0 t1
	for _ in $(seq 100); do grep -q 'talk| line 2' "$state/sig.out" && break; sleep 0.05; done
	t0=$(date +%s%N)
	kill -"$2" $pid
	wait $pid
	rc=$?
	t1=$(date +%s%N)
	check "SIG$2 while Lua loops in its $1: the run stops at once ($(( (t1 - t0) / 1000000 )) ms)" \
		[ $rc -eq "$3" -a $(( (t1 - t0) / 1000000 )) -lt 4000 ]
	check "... journalled as interrupted" has '"event":"run_finished","status":"interrupted"'
}
spin_signal step TERM 143
check "the lua: step is interrupted" has '"step":"spin","status":"interrupted"'
out=$("$RUNBOOK" resume "$(ls -t "$state"/runs | head -n 1)" --state-dir "$state" 2>&1)
check "resumed, the run succeeds" [ $? -eq 0 ]
check "... the lua: step runs again" has '"step":"spin","status":"succeeded","attempt":1,"output":"done"'
spin_signal check INT 130
check "the step whose check loops is interrupted" has '"step":"spin","status":"interrupted"'
spin_signal expr TERM 143
lacks() { ! has "$1"; }
check "the step whose condition loops is not run (nor failed)" lacks '"step":"spin"'

# shell: forms, env, cwd, stdin, parse, exit codes, timeouts, secrets
out=$(EXEC_TEST_TOKEN=s3cr3t-XY EXPECTED=s3cr3t-XY run tests/exec/shell.yaml 2>&1)
check "shell runbook exits 0" [ $? -eq 0 ]
check "sh -c output" has '"step":"hello","status":"succeeded","attempt":1,"output":{"exit_code":0,"stderr":"to stderr\\n","stdout":"hello \\n"}'
check "stderr streamed with its prefix" grep -q '^[0-9:]* hello! to stderr$' <<<"$out"
check "argv, env, cwd and stdin" has '"stdout":"hi from /tmp\\nline from stdin"'
check "parse json" has '"json":{"n":\[1,2,3\]}'
check "parse lines" has '"lines":\["a","b","c"\]'
check "parsed outputs in Lua" has '"step":"use_them","status":"succeeded","attempt":1,"output":6'
check "the secret reached the command" has '"step":"secret","status":"succeeded"'
check "not through its command line" has 'RUNBOOK_SECRET_0'
check "the secret is nowhere on disk" bash -c "! grep -rq s3cr3t-XY '$state'"
check "the secret is never printed" bash -c "! grep -q s3cr3t-XY <<<'$out'"
check "exit status" has '"step":"exit_three","status":"failed".*"error":"exit status 3"'
check "a failure the run goes on past says so" has '"step":"exit_three","status":"failed".*"continued":true'
check "a failure ends with the last line of stderr" \
	has '"step":"says_why","status":"failed".*"error":"exit status 7: ERROR: connection refused"'
check "a failed step's output is there for the steps after it" \
	has '"step":"reads_why","status":"succeeded","attempt":1,"output":"failed 7 ERROR: connection refused"'
check "a failed item's too, in the list of its step's items" \
	has '"step":"reads_items","status":"succeeded","attempt":1,"output":\[0,2\]'
check "the failed step's record has it" has '"event":"step_finished","step":"says_why","status":"failed","attempt":1,"output":{"exit_code":7,'
check "on the console too" grep -q 'says_why: failed (continuing) in .*s: exit status 7: ERROR: connection refused$' <<<"$out"
check "psql's ERROR line is the reason, not its caret" \
	grep -q 'says_why_psql: failed (continuing) in .*s: exit status 1: psql:/tmp/q.sql:3: ERROR:  relation "missing_table" does not exist$' <<<"$out"
check "also with a HINT after it" has '"step":"says_why_hint","status":"failed",.*"error":"exit status 1: ERROR:  column \\"nme\\" does not exist"'
check "else the last line that says something" has '"step":"says_why_last_words","status":"failed",.*"error":"exit status 2: connection reset by peer"'
check "else the last line that is not blank" has '"step":"says_only_a_caret","status":"failed",.*"error":"exit status 3: \^"'
# The failed call's output is in its action_result, bound by its SHA-256.
ar=$(jq -c 'select(.type == "action_result" and .step == "says_why")' "$state/runs/$(ls -t "$state/runs" | head -n 1)/audit.jsonl")
check "a failed call's output is in its action_result" \
	[ "$(jq -r '.output | fromjson | .stderr' <<<"$ar")" = "$(printf 'starting\nERROR: connection refused\n\n')" ]
check "bound by its output_sha256" [ "$(jq -j .output <<<"$ar" | sha256sum | cut -d' ' -f1)" = "$(jq -r .output_sha256 <<<"$ar")" ]
check "its control characters become spaces" \
	grep -qF '"error":"exit status 5: bad thing  [31mred [0m"' <<<"$(journal)"
check "a long line is cut at 200 bytes, between characters" \
	has '"step":"says_a_lot","status":"failed".*"error":"exit status 8: a\(é\)\{99\}\.\.\.",'
check "a sensitive step's stderr stays out of its error" \
	has '"step":"keeps_quiet","status":"failed".*"error":"exit status 4",'
check "and out of everything printed" bash -c "! grep -q hush-81 <<<'$out'"
check "and out of the run's files" bash -c "! grep -rq hush-81 '$state'"
check "timeout" has '"step":"too_slow","status":"failed".*"error":"timed out after 300ms"'
check "command not found" has "cannot run 'no-such-command-runbook': command not found"
out=$(EXEC_TEST_STATE=$state run tests/exec/long_stderr.yaml 2>&1)
check "output that cannot be written out is counted as lost, with why" \
	has '"step":"drowned","status":"succeeded",.*"stdout_rest":{"bytes":940324,"error":"a symbolic link is in its place, or in place of its directory: not followed","lost":940324}'
check "and the console warns of it" grep -qF 'drowned: warning: 940324 bytes of stdout could not be written to output/drowned.stdout (a symbolic link is in its place, or in place of its directory: not followed): they are lost' <<<"$out"
check "not when stderr was too long to keep whole (its last line is in the spill file)" \
	has '"step":"says_too_much","status":"failed".*"error":"exit status 6",'
lrun="$state/runs/$(ls -t "$state/runs" | head -n 1)"
check "which has it" grep -q '^the real reason$' "$lrun/output/says_too_much.stderr"
# The output names each file with the length and SHA-256 of what it holds: the log binds it.
rest() { jq -r --arg s "$1" --arg k "$2" 'select(.type == "step_finished" and .step == $s) |
	.output | fromjson | .[$k] | "\(.file) \(.bytes) \(.sha256)"' "$lrun/audit.jsonl"; }
for sk in "long_output stdout_rest" "long_output stderr_rest"; do
	read -r file bytes sha <<<"$(rest $sk)"
	check "$sk: names its file, its length and its SHA-256" \
		bash -c "[ -f '$lrun/$file' ] && [ \$(stat -c %s '$lrun/$file') = '$bytes' ] &&
			 [ \$(sha256sum <'$lrun/$file' | cut -d' ' -f1) = '$sha' ]"
done
lid=$(basename "$lrun")
check "audit verify of the run checks those files" \
	bash -c "'$RUNBOOK' audit verify --state-dir '$state' $lid | grep -q ', 3 output files$'"
cp "$lrun/output/long_output.stdout" "$state/kept.stdout"
printf 'changed' | dd of="$lrun/output/long_output.stdout" bs=1 seek=100 conv=notrunc 2>/dev/null
out2=$("$RUNBOOK" audit verify --state-dir "$state" "$lid" 2>&1)
check "a file changed since the run fails it, named" \
	bash -c "[ $? -eq 1 ] && grep -qF '$lrun/output/long_output.stdout: error: its SHA-256 is not the one $lrun/audit.jsonl:' <<<'$out2'"
rm "$lrun/output/long_output.stdout"
out2=$("$RUNBOOK" audit verify --state-dir "$state" "$lid" 2>&1)
check "so does a file removed" \
	bash -c "[ $? -eq 1 ] && grep -qF '$lrun/output/long_output.stdout: error: No such file or directory, and $lrun/audit.jsonl:' <<<'$out2'"
mv "$state/kept.stdout" "$lrun/output/long_output.stdout"
# Up to its last whole line: a line (and a secret on it) is not cut between the two.
check "the first MiB stays in the output, up to its last whole line" \
	[ "$(jq -r 'select(.type == "step_finished" and .step == "long_output") | .output | fromjson |
		.stdout | length' "$lrun/audit.jsonl")" = "$(seq 1 300000 | head -c 1048576 | sed '$d' | wc -c)" ]
check "the file starts with the line the first MiB ends in" \
	[ "$(head -n 1 "$lrun/output/long_output.stdout")" = "$(seq 1 300000 | head -c 1048576 | wc -l | xargs -I{} expr {} + 1)" ]

# A step that ignores SIGTERM and leaves a daemon still ends within
# timeout + grace + 1 s, leaving no process behind.
marker=$((RANDOM % 900 + 100)).$((RANDOM % 900 + 100))
run -p marker="$marker" tests/exec/tree.yaml >/dev/null 2>&1
check "the stubborn tree is stopped" has '"step":"stubborn","status":"failed".*"timed out after 500ms"'
ms=$(journal | sed -n 's/.*"step":"stubborn","status":"failed".*"duration_ms":\([0-9]*\).*/\1/p')
check "within timeout + grace + 1 s (took ${ms:-?} ms)" [ "${ms:-99999}" -lt 6500 ]
check "no process of it is left" bash -c "! pgrep -f 'slee[p] $marker' >/dev/null"

# kill -9 of the runner takes its steps with it.
marker=$((RANDOM % 900 + 100)).$((RANDOM % 900 + 100))
"$RUNBOOK" run --state-dir "$state" -p marker="$marker" tests/exec/tree.yaml >/dev/null 2>&1 &
pid=$!
disown $pid              # no "Killed" notice from bash
for _ in $(seq 50); do pgrep -f "slee[p] $marker" >/dev/null && break; sleep 0.1; done
kill -9 $pid
while kill -0 $pid 2>/dev/null; do sleep 0.05; done
for _ in $(seq 30); do pgrep -f "slee[p] $marker" >/dev/null || break; sleep 0.1; done
check "after kill -9 of the runner no step process survives" bash -c "! pgrep -f 'slee[p] $marker' >/dev/null"

# An approval gate without a terminal: the run does what does not depend on
# it, pauses (exit 3) and says how to go on; resume --approve passes it.
gdir=$(mktemp -d)
out=$(run -p dir="$gdir" tests/exec/gate.yaml </dev/null 2>&1)
check "a run at a gate pauses with exit 3" [ $? -eq 3 ]
check "the steps before the gate ran" [ -e "$gdir/before.count" ]
check "the steps beside the gate ran" [ -e "$gdir/independent.count" ]
check "the gated step did not run" [ ! -e "$gdir/dangerous.count" ]
check "the wait is journalled with its prompt" has "\"event\":\"gate_waiting\",\"step\":\"dangerous\",\"prompt\":\"Drop the old tables in $gdir?\""
check "the run is journalled as paused" has '"event":"run_finished","status":"paused"'
gid=$(basename "$(dirname "$(grep -l '"runbook":"exec-gate"' "$state"/runs/*/audit.jsonl)")")
check "it prints the command that continues" grep -q "^[0-9:]* to continue: runbook resume $gid --state-dir $state --approve dangerous$" <<<"$out"
check "runs lists it as paused" grep -q "^$gid  *paused  *exec-gate" <<<"$("$RUNBOOK" runs --state-dir "$state")"
check "status shows the step awaiting approval" grep -q "^  dangerous  *awaiting_approval" <<<"$("$RUNBOOK" status --state-dir "$state" "$gid")"
out=$("$RUNBOOK" resume --state-dir "$state" "$gid" </dev/null 2>&1)
check "resume without --approve pauses again" [ $? -eq 3 ]
check "and keeps what ran" grep -q '^resume: keeping before independent$' <<<"$out"
out=$("$RUNBOOK" resume --state-dir "$state" "$gid" --approve nosuch 2>&1)
check "--approve of an unknown step is refused" [ $? -eq 2 ]
check "naming it" grep -q "approve: no step 'nosuch'" <<<"$out"
out=$("$RUNBOOK" resume --state-dir "$state" "$gid" --approve before 2>&1)
check "--approve of a step without a gate is refused" [ $? -eq 2 ]
check "saying so" grep -q "step 'before' has no approval gate" <<<"$out"
out=$("$RUNBOOK" resume --state-dir "$state" "$gid" --approve dangerous </dev/null 2>&1)
check "resume --approve STEP finishes the run" [ $? -eq 0 ]
check "the approval is journalled with who and how" has "\"event\":\"gate_approved\",\"step\":\"dangerous\",\"by\":\"${USER:-$(id -un)}\",\"via\":\"--approve\""
check "the gated step ran once" [ "$(cat "$gdir/dangerous.count")" = dangerous ]
check "and what follows it" [ -e "$gdir/after.count" ]
check "the steps before the gate ran once" [ "$(wc -l <"$gdir/before.count")" -eq 1 ]
rm -f "$gdir"/*.count
run -p dir="$gdir" --approve all tests/exec/gate.yaml </dev/null >/dev/null 2>&1
check "--approve all runs it through" [ $? -eq 0 ]
check "every step ran" [ "$(cat "$gdir"/*.count | wc -l)" -eq 4 ]
# approve: false and an expression giving nil or false are no gate, journalled as such; true
# is a gate with the default prompt; a value that is no prompt fails the step, even --approve'd.
adir=$(mktemp -d)
out=$(run -p dir="$adir" tests/exec/approve.yaml </dev/null 2>&1)
check "conditional gates that do not apply let the run through" [ $? -eq 0 ]
check "every step ran" [ "$(cat "$adir"/*.count | sort | tr '\n' ' ')" = "default never odd prod " ]
check "approve: false is journalled as no gate" has '"event":"gate_not_needed","step":"never_gated","approve":false'
check "an expression giving nil too" has '"event":"gate_not_needed","step":"prod_only","approve":null'
check "and said" grep -q '^[0-9:]* prod_only: no approval needed (approve gave nil)$' <<<"$out"
check "no gate waited" bash -c "! grep -q gate_waiting <<<'$(journal)'"
rm -f "$adir"/*.count
out=$(run -p dir="$adir" -p env=prod tests/exec/approve.yaml </dev/null 2>&1)
check "in prod the gate applies (exit 3)" [ $? -eq 3 ]
check "with the expression's prompt" has '"event":"gate_waiting","step":"prod_only","prompt":"Deploy to prod?"'
check "the ungated steps ran" [ "$(cat "$adir"/*.count | sort | tr '\n' ' ')" = "never odd " ]
aid=$(sed -n 's/^[0-9:]* run \([0-9a-f-]*\): exec-approve.*/\1/p' <<<"$out")
out=$("$RUNBOOK" resume --state-dir "$state" "$aid" --approve prod_only </dev/null 2>&1)
check "approve: true pauses with the default prompt" grep -q "^[0-9:]* default_prompt: waiting for approval: Run step 'default_prompt'?\$" <<<"$out"
rm -f "$adir"/*.count
out=$(run -p dir="$adir" -p env=odd --approve odd tests/exec/approve.yaml </dev/null 2>&1)
check "an approve that gives a number fails the run" [ $? -eq 1 ]
check "at its position" grep -q "odd: failed in .*: tests/exec/approve.yaml:21:14: approve must give a prompt (a string), true, false or nil, not a number$" <<<"$out"
check "and the step did not run" [ ! -e "$adir/odd.count" ]
rm -rf "$adir"

# defaults.retry retries a command, not a pure step (lua, assert) unless its own retry: says so.
pdir=$(mktemp -d)
run -p dir="$pdir" tests/exec/pure_retry.yaml >/dev/null 2>&1
check "a command takes defaults.retry" has '"step":"command","status":"failed","attempt":3'
check "a lua step does not" has '"step":"chunk","status":"failed","attempt":1,'
check "nor an assert step" has '"step":"check","status":"failed","attempt":1,'
check "its own retry: does" has '"step":"asks_for_it","status":"failed","attempt":2,'
check "the plan shows it" [ "$("$RUNBOOK" plan -p dir="$pdir" tests/exec/pure_retry.yaml --format json |
	jq -c '[.steps[] | .retry.attempts]')" = '[3,1,1,2]' ]
rm -rf "$pdir"

# run.started_at and the run id's time are RUNBOOK_NOW's when it is set, as time.now() is.
out=$(RUNBOOK_NOW=2026-01-01T23:59:00Z run tests/exec/started.yaml </dev/null 2>&1)
check "a run that starts at 23:59 pauses at its gate" [ $? -eq 3 ]
sid=$(sed -n 's/^[0-9:]* run \([0-9a-f-]*\): exec-started.*/\1/p' <<<"$out")
check "run.started_at is RUNBOOK_NOW" grep -q "^[0-9:]* archive| archive 2026-01-01 23:59 started 1767311940 id $sid\$" <<<"$out"
check "and so is the run id's time" grep -q '^20260101-235900-[0-9a-f]\{4\}$' <<<"$sid"
# Every session of a run sees what its first one fixed: run.id, run.started_at and the vars,
# though the gate is passed after midnight (the vars are in run_started and the snapshots).
out=$(RUNBOOK_NOW=2026-01-02T00:05:00Z "$RUNBOOK" resume --state-dir "$state" "$sid" --approve purge </dev/null 2>&1)
check "the resume after midnight succeeds" [ $? -eq 0 ]
check "and sees the first session's vars, start and id" \
	grep -q "^[0-9:]* purge| purge 2026-01-01 23:59 started 1767311940 id $sid\$" <<<"$out"
check "run_started records the vars and the start" \
	grep -q '"started_at":1767311940,.*"vars":"{\\"today\\":\\"2026-01-01 23:59\\"}"' "$state/runs/$sid/audit.jsonl"
# A var made from a secret is kept out of the log (its HMAC only), computed again by a resume,
# which refuses to go on when it is not the value the run started with.
export EXEC_STARTED_TOKEN=tok-Started-7q
out=$(RUNBOOK_NOW=2026-01-01T23:59:00Z run tests/exec/started_secret.yaml </dev/null 2>&1)
check "a run with a secret var pauses" [ $? -eq 3 ]
ssid=$(sed -n 's/^[0-9:]* run \([0-9a-f-]*\): exec-started-secret.*/\1/p' <<<"$out")
check "run_started holds the secret var's HMAC" \
	grep -q '"vars":"{}","vars_hmac":{"auth":{"hmac_sha256":"[0-9a-f]\{64\}"}}' "$state/runs/$ssid/audit.jsonl"
out=$(RUNBOOK_NOW=2026-01-02T00:05:00Z "$RUNBOOK" resume --state-dir "$state" "$ssid" --approve second </dev/null 2>&1)
check "a secret var computed again to the same value goes on" [ $? -eq 0 ]
check "with its value hidden" grep -q '^[0-9:]* second| second with \*\*\*$' <<<"$out"
check "which is never written" bash -c "! grep -rq --exclude=runbook.yaml tok-Started-7q '$state'"
out=$(RUNBOOK_NOW=2026-01-01T23:59:00Z run -p stamp=true tests/exec/started_secret.yaml </dev/null 2>&1)
ssid=$(sed -n 's/^[0-9:]* run \([0-9a-f-]*\): exec-started-secret.*/\1/p' <<<"$out")
out=$(RUNBOOK_NOW=2026-01-02T00:05:00Z "$RUNBOOK" resume --state-dir "$state" "$ssid" --approve second </dev/null 2>&1)
check "a secret var that reads the time is refused on a later resume (exit 2)" [ $? -eq 2 ]
check "at the var, saying why" grep -q "^tests/exec/started_secret.yaml:11:3: error: var 'auth' does not have the value the run started with: .*it depends on the time" <<<"$out"
check "before anything ran" [ "$(grep -c '"step":"second"' "$state/runs/$ssid/audit.jsonl")" -eq 1 ]
out=$(RUNBOOK_NOW=2026-01-01T23:59:00Z "$RUNBOOK" resume --state-dir "$state" "$ssid" --approve second </dev/null 2>&1)
check "the same value goes on" [ $? -eq 0 ]
unset EXEC_STARTED_TOKEN
# resume --from STEP runs STEP and what depends on it again, even after success.
gid=$(basename "$(dirname "$(grep -l '"runbook":"exec-gate"' $(ls -t "$state"/runs/*/audit.jsonl) | head -n 1)")")
out=$("$RUNBOOK" resume --state-dir "$state" "$gid" --from dangerous --approve all </dev/null 2>&1)
check "resume --from finishes" [ $? -eq 0 ]
check "it says what runs again" grep -q '^resume: running again dangerous (--from) after (after a step that runs again)$' <<<"$out"
check "the step ran again" [ "$(wc -l <"$gdir/dangerous.count")" -eq 2 ]
check "and the one after it" [ "$(wc -l <"$gdir/after.count")" -eq 2 ]
check "but not the one before" [ "$(wc -l <"$gdir/before.count")" -eq 1 ]
out=$("$RUNBOOK" resume --state-dir "$state" "$gid" --from nosuch 2>&1)
check "--from an unknown step is refused" [ $? -eq 2 ]
rm -rf "$gdir"

# check: a step whose effect is in place already is "satisfied" and not run;
# resume lets the check decide about a step that was in flight.
cdir=$(mktemp -d)
run -p dir="$cdir" tests/exec/check.yaml >/dev/null 2>&1
check "a run with checks succeeds" [ $? -eq 0 ]
check "a check that fails runs the step" [ "$(cat "$cdir/create.count")" = created ]
check "a lua check that returns false runs the step" has '"step":"compute","status":"succeeded","attempt":1,"output":42'
out=$(run -p dir="$cdir" tests/exec/check.yaml 2>&1)
check "the second run succeeds" [ $? -eq 0 ]
check "the step in place is satisfied" has '"step":"create","status":"satisfied","attempt":0'
check "and did not run again" [ "$(wc -l <"$cdir/create.count")" -eq 1 ]
check "the console says so" grep -q 'create: satisfied: its check says it is in place' <<<"$out"
check "its dependents see satisfied" has '"step":"report","status":"succeeded","attempt":1,"output":"satisfied"'
"$RUNBOOK" run --state-dir "$state" -p dir="$cdir" -p slow=true tests/exec/check.yaml >"$cdir/out" 2>&1 &
cpid=$!
disown $cpid
for _ in $(seq 100); do [ -e "$cdir/slow.done" ] && break; sleep 0.1; done
kill -9 $cpid
while kill -0 $cpid 2>/dev/null; do sleep 0.05; done
cid=$(basename "$(dirname "$(grep -l 'slow\\":true' "$state"/runs/*/audit.jsonl)")")
out=$("$RUNBOOK" resume --state-dir "$state" "$cid" 2>&1)
check "resume of a crashed step with a check needs no --rerun" [ $? -eq 0 ]
check "it says the check decides" grep -q 'running again slow (running; its check decides)' <<<"$out"
check "the check found it done" grep -q 'slow: satisfied' <<<"$out"
check "the step did not run twice" [ "$(wc -l <"$cdir/slow.count")" -eq 1 ]
# A check that cannot answer stops its step; exit 1 is a "no".
out=$(run -p dir="$cdir" tests/exec/check_noanswer.yaml 2>&1)
check "checks without an answer: the run goes on (continue_on_error)" [ $? -eq 0 ]
check "exit 1 says no: the step ran" [ -e "$cdir/says_no.ran" ]
for s in not_found unreachable hangs lua_hangs; do
	check "$s: the check gave no answer, the step did not run" [ ! -e "$cdir/$s.ran" ]
	check "$s: it failed, saying why" has "\"step\":\"$s\",\"status\":\"failed\".*\"error\":\"check: "
done
check "with the check's own message" grep -q 'unreachable: failed.*check: exit status 2: could not connect to server' <<<"$out"
rm -rf "$cdir"

# for_each items are units: at most `concurrency` at once, each journalled,
# and the ones done are not run again by a retry or a resume.
fdir=$(mktemp -d)
# Compacting every 5 records: resume must find params and items in the snapshot.
out=$(RUNBOOK_TEST_COMPACT_RECORDS=5 run -p dir="$fdir" tests/exec/foreach.yaml 2>&1)
check "a for_each step that fails an item fails the run" [ $? -eq 1 ]
check "never more items at once than its concurrency" bash -c "! grep -qv '^[123]$' '$fdir/seen'"
check "but more than one" grep -q '^[23]$' "$fdir/seen"
check "every item ran once" [ "$(wc -l <"$fdir/seen")" -eq 6 ]
check "the journal was compacted" [ -e "$(dirname "$(grep -l '"runbook":"exec-foreach"' "$state"/runs/*/snapshot.json)")/audit.jsonl" ]
check "a retry runs only the item that failed" [ "$(cat "$fdir"/flaky.* | tr -d '\n')" = abccd ]
check "the failed item is named" grep -q 'broken: failed in .*: item 3 of 4: exit status 1' <<<"$out"
check "items after a failed one are not started" [ ! -e "$fdir/broken.s" ]
fid=$(basename "$(dirname "$(grep -l '"runbook":"exec-foreach"' "$state"/runs/*/snapshot.json)")")
touch "$fdir/fixed"
out=$("$RUNBOOK" resume --state-dir "$state" "$fid" 2>&1)
check "resume finishes the for_each step" [ $? -eq 0 ]
check "it says how many items are done" grep -q '^resume: running again broken (failed; 2 items done)$' <<<"$out"
check "the items done before did not run again" [ "$(cat "$fdir"/broken.p "$fdir"/broken.q | wc -l)" -eq 2 ]
check "the failed item and the rest ran" [ "$(cat "$fdir"/broken.r "$fdir"/broken.s | wc -l)" -eq 3 ]
check "each item is journalled" [ "$(journal | grep -c '"event":"item_finished","step":"broken","index":[23],"status":"succeeded"')" -eq 2 ]
check "the output has every item, in order" has '"step":"broken","status":"succeeded","attempt":1,"output":\[{[^]]*},{[^]]*},{[^]]*},{[^]]*}\],"outputs":{"n":4}'
rm -rf "$fdir"

# --dry-run --probe runs what cannot change anything, and the plan shows real
# values and decided conditions; nothing with side effects runs, and a step
# that reads one that did not run is shown, not failed.
pdir=$(mktemp -d)
out=$(PROBE_TOKEN=probe-Secret-81z "$RUNBOOK" run --state-dir "$pdir/state" --dry-run --probe -p dir="$pdir" -p note=probe-Secret-81z tests/exec/probe.yaml 2>"$pdir/err")
check "a probe exits 0" [ $? -eq 0 ]
check "nothing with side effects ran" [ -z "$(ls "$pdir" | grep -- -ran)" ]
check "no run directory was made" [ ! -e "$pdir/state" ]
check "a step without side effects ran" grep -q '^      probed: succeeded$' <<<"$out"
check "its outputs are shown" grep -q '^        outputs: {"n":5}$' <<<"$out"
check "a condition on its output is decided" grep -q 'if: steps.count.outputs.n > 3  => true' <<<"$out"
check "the false one too, and its step is skipped" grep -q 'small  run  \[side effects\]  \[skipped: small is false\]' <<<"$out"
check "the skip reaches what needs it" grep -q 'after_small  lua  \[skipped: small is false\]' <<<"$out"
check "a lua step reads the probed value" grep -q '^        output: found 5$' <<<"$out"
check "a check shows a step already in place" grep -q '^      probed: satisfied$' <<<"$out"
check "a step reading one with side effects is not probed" grep -q 'uses_changed: not probed (it needs a step that was not probed)' "$pdir/err"
check "and the plan shows it waiting for it" grep -q -A2 '^  uses_changed  lua' <<<"$out"
check "the probe's events go to stderr" grep -q 'changed: not probed (it has side effects)' "$pdir/err"
check "a probe reads secrets, and shows them as ***" grep -q '"stdout":"token is \*\*\*\\n"' <<<"$out"
printf '%s' "$out" >"$pdir/out"
check "and never prints them" bash -c "! grep -q probe-Secret-81z '$pdir/out' '$pdir/err'"
check "nor when they reach a step through env.X or a param" grep -q '^      env: {"RUNBOOK_ENV_PROBE_TOKEN":"\*\*\*","RUNBOOK_PARAMS_NOTE":"\*\*\*"}$' <<<"$out"
check "the params line hides it too" grep -q '^  params: dir=".*" note="\*\*\*"$' <<<"$out"
out=$("$RUNBOOK" run --probe tests/exec/probe.yaml -p dir="$pdir" 2>&1)
check "--probe without --dry-run is refused" [ $? -eq 2 ]
check "saying so" grep -q 'probe goes with --dry-run' <<<"$out"
rm -rf "$pdir"

# A secret printed base64-, hex-encoded or line by line (a PEM key) is redacted
# too, on the console and in the journal.
edir=$(mktemp -d)
key=$(printf -- '-----BEGIN TEST KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END TEST KEY-----')
ENC_TOKEN=enc-Secret-Q7w9z ENC_KEY="$key" run tests/exec/encodings.yaml >"$edir/out" 2>&1
check "a run printing encoded secrets succeeds" [ $? -eq 0 ]
for form in enc-Secret-Q7w9z "$(printf %s enc-Secret-Q7w9z | base64)" "$(printf xx%s enc-Secret-Q7w9z | base64 | cut -c5-20)" \
	"$(printf %s enc-Secret-Q7w9z | od -An -tx1 | tr -d ' \n')" MIIEvQIBADANBgkqhkiG9w0BAQEFAASC; do
	check "no '$form' on the console" bash -c "! grep -qF -- '$form' '$edir/out'"
	check "nor in the journal" bash -c "! grep -rqF -- '$form' '$state'"
done
check "the plain one is masked" grep -q 'leak| plain \*\*\*$' "$edir/out"
rm -rf "$edir"

# A held lock keeps a second run out (exit 1, naming the lock) unless it may
# wait long enough; the run's timeout stops a run; on_failure still runs.
"$RUNBOOK" run --state-dir "$state" tests/exec/locked.yaml >/dev/null 2>&1 &
holder=$!
for _ in $(seq 50); do has '"runbook":"exec-locked"' 2>/dev/null && break; sleep 0.1; done
out=$(run tests/exec/limits.yaml 2>&1)
check "a held lock exits 1" [ $? -eq 1 ]
check "and names the lock" grep -q "lock 'exec-limits-test' is held by another run" <<<"$out"
kill -INT $holder
wait $holder
out=$(run --lock-timeout 5s tests/exec/limits.yaml 2>&1)
check "a timed-out run fails" [ $? -eq 1 ]
check "the lock was free again" grep -q 'the run.s timeout of 500ms has passed' <<<"$out"
dir=$(dirname "$(grep -l '"runbook":"exec-limits"' "$state"/runs/*/audit.jsonl | head -n 1)")
records=$(jq -c -f tests/records.jq "$dir/audit.jsonl")
check "the running step is stopped" grep -q '"step":"slow","status":"failed"' <<<"$records"
check "nothing after it starts" bash -c "! grep -q '\"step\":\"never\"' '$dir/audit.jsonl'"
check "on_failure runs after a timeout" grep -q '"output":"cleaned up after failed"' <<<"$records"

# A lock is machine-wide, not per state directory: a run in another state directory (another
# working directory) holding it keeps this one out, and is named by its PID.
lstate=$(mktemp -d)
"$RUNBOOK" run --state-dir "$lstate" tests/exec/locked.yaml >"$lstate/out" 2>&1 &
holder=$!
for _ in $(seq 50); do grep -q 'hold: started' "$lstate/out" && break; sleep 0.1; done
out=$(run tests/exec/limits.yaml 2>&1)
check "a lock held from another state directory exits 1" [ $? -eq 1 ]
check "naming the lock, its holder and its file" grep -qF "lock 'exec-limits-test' is held by another run (PID $holder, $RUNBOOK_LOCK_DIR/exec-limits-test.lock)" <<<"$out"
check "the lock directory is made like /tmp" [ "$(stat -c %a:%U "$RUNBOOK_LOCK_DIR")" = 1777:$(id -un) ]
check "the lock file readable by all, so other users can lock it too" \
	[ "$(stat -c %a "$RUNBOOK_LOCK_DIR/exec-limits-test.lock")" = 644 ]
kill -INT $holder
wait $holder
# A lock file or directory planted by someone else is refused, never followed or trusted.
printf 'runbook: exec-planted\nversion: 1\nlock: planted\nsteps:\n  - id: a\n    lua: return 1\n' \
	>"$lstate/planted.yaml"
planted() {               # planted DESCRIPTION MESSAGE: the run is refused, saying MESSAGE
	local out rc
	out=$(run "$lstate/planted.yaml" 2>&1); rc=$?
	check "$1: refused" [ $rc -eq 1 ]
	check "$1: says why" grep -qF -- "$2" <<<"$out"
	check "$1: nothing ran" bash -c "! grep -q exec-planted '$state'/runs/*/audit.jsonl"
}
echo keep >"$lstate/target"
ln -s "$lstate/target" "$RUNBOOK_LOCK_DIR/planted.lock"
planted "a symbolic link" "the lock file $RUNBOOK_LOCK_DIR/planted.lock is a symbolic link: refusing to follow it"
check "its target is untouched" [ "$(cat "$lstate/target")" = keep ]
rm "$RUNBOOK_LOCK_DIR/planted.lock"
touch "$RUNBOOK_LOCK_DIR/planted.lock" && chown nobody "$RUNBOOK_LOCK_DIR/planted.lock"
planted "a lock file of another user" "the lock file $RUNBOOK_LOCK_DIR/planted.lock is unsafe: it is owned by uid $(id -u nobody), not by you or root"
rm "$RUNBOOK_LOCK_DIR/planted.lock"
ln "$lstate/target" "$RUNBOOK_LOCK_DIR/planted.lock"
planted "a hard link" "the lock file $RUNBOOK_LOCK_DIR/planted.lock is unsafe: it has 2 links"
rm "$RUNBOOK_LOCK_DIR/planted.lock"
mkfifo "$RUNBOOK_LOCK_DIR/planted.lock"
planted "a FIFO" "the lock file $RUNBOOK_LOCK_DIR/planted.lock is unsafe: it is not a regular file"
rm "$RUNBOOK_LOCK_DIR/planted.lock"
chmod 777 "$RUNBOOK_LOCK_DIR"
planted "a directory others may write, not sticky" "the lock directory $RUNBOOK_LOCK_DIR may be written by others and is not sticky (mode 0777)"
chmod 1777 "$RUNBOOK_LOCK_DIR" && chown nobody "$RUNBOOK_LOCK_DIR"
planted "a directory of another user" "the lock directory $RUNBOOK_LOCK_DIR is owned by uid $(id -u nobody), not by you or root"
chown "$(id -u)" "$RUNBOOK_LOCK_DIR"
mv "$RUNBOOK_LOCK_DIR" "$RUNBOOK_LOCK_DIR.real" && ln -s "$RUNBOOK_LOCK_DIR.real" "$RUNBOOK_LOCK_DIR"
planted "a directory that is a link" "the lock directory $RUNBOOK_LOCK_DIR is not a directory (a symbolic link or a file): refusing it"
rm "$RUNBOOK_LOCK_DIR" && mv "$RUNBOOK_LOCK_DIR.real" "$RUNBOOK_LOCK_DIR"
out=$(run "$lstate/planted.yaml" 2>&1)
check "once they are gone the run takes the lock" [ $? -eq 0 ]
rm -rf "$lstate"

# A run started from standard input (run -) resumes from its own copy of the runbook; the
# resume's standard input (another runbook here) is not read.
sdir=$(mktemp -d)
run -p dir="$sdir" - <tests/exec/gate.yaml >/dev/null 2>&1
check "run - pauses at its gate" [ $? -eq 3 ]
sid=$(basename "$(dirname "$(grep -l '"file":"-".*"runbook":"exec-gate"' "$state"/runs/*/audit.jsonl)")")
out=$("$RUNBOOK" resume --state-dir "$state" --approve dangerous "$sid" <tests/exec/basics.yaml 2>&1)
check "a run from standard input resumes" [ $? -eq 0 ]
check "past its gate" grep -q 'dangerous: succeeded' <<<"$out"
for c in before independent dangerous after; do
	check "$c ran once" [ "$(cat "$sdir/$c.count")" = "$c" ]
done
check "its copy of the runbook is the one it ran" cmp -s tests/exec/gate.yaml "$state/runs/$sid/runbook.yaml"
rm -rf "$sdir"

# Two operators resume one paused run while another run holds its lock: the first resume
# takes the run's hold before it reads the run and decides, so the second fails at once,
# naming the first's PID, and the gated step that is not idempotent runs once.
tdir=$(mktemp -d)
run -p dir="$tdir" tests/exec/resume_locked.yaml </dev/null >/dev/null 2>&1
check "the locked run pauses at its gate" [ $? -eq 3 ]
lrid=$(basename "$(dirname "$(grep -l '"runbook":"exec-resume-locked"' "$state"/runs/*/audit.jsonl)")")
run -p dir="$tdir" tests/exec/lock_holder.yaml </dev/null >"$tdir/holder.out" 2>&1 &
holder=$!
for _ in $(seq 100); do grep -q 'hold: started' "$tdir/holder.out" && break; sleep 0.1; done
"$RUNBOOK" resume --state-dir "$state" --lock-timeout 60s --approve dangerous "$lrid" \
	</dev/null >"$tdir/a.out" 2>&1 &
ra=$!
for _ in $(seq 100); do grep -q 'waiting for lock' "$tdir/a.out" && break; sleep 0.1; done
"$RUNBOOK" resume --state-dir "$state" --lock-timeout 60s --approve dangerous "$lrid" \
	</dev/null >"$tdir/b.out" 2>&1 &
rb=$!
# The second either gives up at once (as it must) or waits for the lock too (as it did).
for _ in $(seq 100); do kill -0 $rb 2>/dev/null || break; grep -q 'waiting for lock' "$tdir/b.out" && break; sleep 0.1; done
touch "$tdir/go"
wait $holder
wait $ra
rca=$?
wait $rb
rcb=$?
check "the first resume runs the gated step" [ $rca -eq 0 ]
check "the second resume of the run fails" [ $rcb -eq 1 ]
check "saying the run is held, by the first's PID" grep -qF "run $state/runs/$lrid is open in another runbook process (PID $ra): it is being run or resumed" "$tdir/b.out"
check "before deciding anything" bash -c "! grep -q '^resume:' '$tdir/b.out'"
check "the step that must run once ran once" [ "$(cat "$tdir/dangerous.count")" = dangerous ]
check "the step before it was kept" [ "$(cat "$tdir/before.count")" = before ]
check "the journal has one resume" [ "$(grep -c '"type":"run_resumed"' "$state/runs/$lrid/audit.jsonl")" -eq 1 ]
rm -rf "$tdir"

# resume: a failed run goes on where it stopped once the cause is fixed;
# finished steps are not run again.
rdir=$(mktemp -d)
run -p dir="$rdir" tests/exec/resume.yaml >/dev/null 2>&1
check "the run fails at gate" [ $? -eq 1 ]
rid=$(basename "$(dirname "$(grep -l '"runbook":"exec-resume"' "$state"/runs/*/audit.jsonl)")")
touch "$rdir/fixed"
"$RUNBOOK" resume --state-dir "$state" "$rid" >"$rdir/out" 2>&1 &
rpid=$!
for _ in $(seq 50); do grep -q 'slow: started' "$rdir/out" && break; sleep 0.1; done
kill -INT $rpid
wait $rpid
check "an interrupted resume exits 130" [ $? -eq 130 ]
check "resume says what it keeps" grep -q '^resume: keeping first' "$rdir/out"
check "and what it runs again" grep -q '^resume: running again gate (failed)' "$rdir/out"
check "the finished step did not run twice" [ "$(wc -l <"$rdir/first.count")" -eq 1 ]
out=$("$RUNBOOK" resume --state-dir "$state" "$rid" 2>&1)
check "a step in flight that is not idempotent stops resume" [ $? -eq 2 ]
check "and resume names it" grep -q 'not idempotent.*: slow$' <<<"$out"
cp tests/exec/resume.yaml "$rdir/changed.yaml"
out=$("$RUNBOOK" resume --state-dir "$state" --skip slow "$rid" 2>&1)
check "resume --skip finishes the run" [ $? -eq 0 ]
check "the idempotent step ran again by itself" grep -q 'running again.*idem (interrupted)' <<<"$out"
check "the skipped step is journalled as kept" has '"event":"run_resumed"'
out=$("$RUNBOOK" status --state-dir "$state" "$rid")
check "the run is finished" grep -q "^run $rid: exec-resume, succeeded" <<<"$out"
check "a step kept from before the resume keeps its time" grep -q '^  first  *succeeded  *1 attempt  *[0-9]*\.[0-9]s$' <<<"$out"
check "finished steps never ran twice" [ "$(wc -l <"$rdir/first.count")" -eq 1 ]
check "resuming a finished run does nothing" grep -q 'nothing to resume' <<<"$("$RUNBOOK" resume --state-dir "$state" "$rid")"
rm -rf "$rdir"

# A changed runbook file is refused unless --force.
cp tests/exec/failure.yaml "$state/changing.yaml"
run "$state/changing.yaml" >/dev/null 2>&1
cid=$(basename "$(dirname "$(grep -l '"file":"'"$state"'/changing.yaml"' "$state"/runs/*/audit.jsonl)")")
sed -i 's/with: {that: false, message: the check failed}/with: {that: true}/' "$state/changing.yaml"
out=$("$RUNBOOK" resume --state-dir "$state" "$cid" 2>&1)
check "a changed file is refused" grep -q 'has changed since the run started' <<<"$out"
out=$("$RUNBOOK" resume --state-dir "$state" --force "$cid" 2>&1)
check "--force runs the file as it is now" [ $? -eq 0 ]
check "and the fixed step passes" grep -q 'boom: succeeded' <<<"$out"
check "steps the rollback undid run again" grep -q 'running again.* first (undone)' <<<"$out"

# runs and status read the runs back, verified with the state dir's host key.
out=$("$RUNBOOK" runs --state-dir "$state" 2>"$state/runs.err")
check "runs lists every run" [ "$(grep -c '^20' <<<"$out")" -eq "$(ls "$state/runs" | wc -l)" ]
check "each verified with the host key" bash -c "[ ! -s '$state/runs.err' ] && ! grep -q 'not verified' <<<'$out'"
check "runs shows a failed run" grep -q ' failed  *exec-failure ' <<<"$out"
id=$(basename "$(dirname "$(grep -l '"runbook":"exec-basics"' "$state"/runs/*/audit.jsonl | head -n 1)")")
out=$("$RUNBOOK" status --state-dir "$state" "$id")
check "status names the run" grep -q "^run $id: exec-basics, succeeded" <<<"$out"
check "status lists the steps" grep -q '^  flaky  *failed  *3 attempts' <<<"$out"
check "status says why a step failed and how long it took" \
	grep -q '^  flaky  *failed  *3 attempts  *[0-9]*\.[0-9]s  tests/exec/basics.yaml:37:10: flaky step fails$' <<<"$out"
check "and why a step was skipped" grep -q '^  big  *skipped  *0 attempts  its condition is false$' <<<"$out"
check "status verifies it" [ "$("$RUNBOOK" status --state-dir "$state" "$id" -f json 2>&1 | jq .verified)" = true ]
check "status of an unknown run fails" bash -c "! '$RUNBOOK' status --state-dir '$state' 20000101-000000-0000 2>/dev/null"

# runs and status count the steps exactly as the run's last line does, by one function: the
# main steps of the whole run (those kept by a resume too), never on_failure or undo steps.
cstate=$(mktemp -d)
last() { sed -n "s/^[0-9:]* run [0-9a-f-]* $1 in [0-9.]*s: //p"; }
line=$("$RUNBOOK" run --state-dir "$cstate" tests/exec/failure.yaml 2>&1 | last failed)
check "a failed run's last line counts its main steps only" [ "$line" = "3 succeeded, 1 failed, 0 skipped, 1 not run" ]
check "runs counts it the same, its on_failure steps left out" \
	grep -q " failed  *exec-failure  *$line\$" <<<"$("$RUNBOOK" runs --state-dir "$cstate")"
cid=$(ls "$cstate/runs")
check "status too" grep -q "^run $cid: exec-failure, failed: $line\$" <<<"$("$RUNBOOK" status --state-dir "$cstate" "$cid")"
check "status --format json has the counts" \
	[ "$("$RUNBOOK" status --state-dir "$cstate" "$cid" -f json | jq -c .counts)" = '{"succeeded":3,"failed":1,"interrupted":0,"skipped":0,"not_run":1,"running":0}' ]
rm -rf "$cstate/runs"
"$RUNBOOK" run --state-dir "$cstate" tests/exec/counts.yaml </dev/null >/dev/null 2>&1
cid=$(ls "$cstate/runs")
line=$("$RUNBOOK" resume --state-dir "$cstate" "$cid" --approve two </dev/null 2>&1 | last succeeded)
check "a resume's last line counts the whole run" [ "$line" = "2 succeeded, 0 failed, 0 skipped, 0 not run" ]
check "runs counts a succeeded run the same (no 'other' for its on_failure step)" \
	grep -q "^$cid  *succeeded  *exec-counts  *$line\$" <<<"$("$RUNBOOK" runs --state-dir "$cstate")"
rm -rf "$cstate"

# A long run compacts its journal: a snapshot, and records continuing after it.
awk 'BEGIN { print "runbook: many\nversion: 1\nsteps:"
	for (i = 0; i < 600; i++) printf "  - {id: s%d, lua: \"return %d\"}\n", i, i }' >"$state/many.yaml"
run --jobs 8 "$state/many.yaml" >/dev/null 2>&1
check "600 steps succeed" [ $? -eq 0 ]
dir="$state/runs/$(ls -t "$state/runs" | head -n 1)"
check "the journal was compacted" grep -q '"format":"runbook-snapshot"' "$dir/snapshot.json"
check "the snapshot has every step" [ "$(grep -o '"status":"succeeded"' "$dir/snapshot.json" | wc -l)" -ge 400 ]
check "records continue after the snapshot" grep -q '"type":"run_finished"' "$dir/audit.jsonl"

# redact: e-mail addresses, phone numbers and a runbook's own patterns are hidden
# in what a run prints and writes, with no secret in the run; pii: false shows them.
rstate=$(mktemp -d)
out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" run --state-dir "$rstate" -p who=carol@example.com tests/exec/redact.yaml 2>&1)
check "redact runs" [ $? -eq 0 ]
check "a printed address, phone and ticket are replaced" grep -q 'say| mail <email> or call <phone> about <ticket>' <<<"$out"
check "a param's address is replaced in stderr lines" grep -q 'say! owner <email>' <<<"$out"
check "and in a Lua error" grep -q 'cannot reach <email> (<ticket>)' <<<"$out"
check "versions, ports and times stay" bash -c "grep -rq --exclude=runbook.yaml 'version 1.2.3, port 8080, run 2026-01-01T00:00:00Z' '$rstate'"
check "no address, phone or ticket under the state dir" bash -c "! grep -rqaE --exclude=runbook.yaml '@example|1234567|TICKET-[0-9]' '$rstate'"
check "none printed" bash -c "! grep -qE '@example|1234567|TICKET-[0-9]' <<<'$out'"
out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" run --output json --state-dir "$rstate" tests/exec/redact.yaml 2>&1)
check "json events: replaced" bash -c "grep -q '\"line\":\"mail <email> or call <phone> about <ticket>\"' <<<'$out' && ! grep -q '@example' <<<'$out'"
out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" plan -p who=carol@example.com tests/exec/redact.yaml 2>&1)
check "the plan replaces them too" bash -c "grep -q 'params: who=\"<email>\"' <<<'$out' && ! grep -qE '@example|1234567|TICKET-[0-9]' <<<'$out'"
out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" plan --format json tests/exec/redact.yaml 2>&1)
check "and the json plan, which stays json" bash -c "jq -e '.params.who == \"<email>\"' <<<'$out'"
out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" run --state-dir "$rstate" tests/exec/redact_off.yaml 2>&1)
check "pii: false shows addresses and phones" grep -q 'say| mail alice@example.com or call +49 30 1234567 about <ticket>' <<<"$out"
rm -rf "$rstate"

# Fail closed: a disk that fills up (injected: ENOSPC at the third write of the
# audit log, the group with the second step's action_intent) keeps the second
# step's side effect from starting; the run stops with a clear error, and a
# resume once there is room again runs it.
fdir=$(mktemp -d)
fstate=$(mktemp -d)
fail_closed() {             # fail_closed POINT:N ERROR STEP_ERROR: the run stops, saying ERROR
	rm -rf "$fstate" "$fdir"/*
	out=$(RUNBOOK_TEST_FAIL=$1 "$RUNBOOK" run --state-dir "$fstate" -p dir="$fdir" \
		--output text tests/exec/failclosed.yaml 2>&1)
	check "$1: a log that cannot be made durable fails the run" [ $? -eq 1 ]
	check "$1: it says why" grep -q "error: cannot write the audit log: $2; stopping the run" <<<"$out"
	check "$1: the step before it ran" [ -e "$fdir/first" ]
	check "$1: the step whose intent was not durable never started" [ ! -e "$fdir/second" ]
	check "$1: and is failed as such" grep -q "second: failed in .*: not started: $3" <<<"$out"
	fid=$(ls "$fstate/runs")
	check "$1: the log verifies up to the failure" \
		"$RUNBOOK" audit verify --allow-open --state-dir "$fstate" "$fid"
}
fail_closed before-write:3 '.*audit.jsonl: No space left on device' \
	'the audit log cannot be written'
out=$("$RUNBOOK" resume --state-dir "$fstate" "$fid" 2>&1)
check "the first step's end was never recorded: resume asks" grep -q 'not idempotent.*: first$' <<<"$out"
out=$("$RUNBOOK" resume --state-dir "$fstate" --skip first "$fid" 2>&1)
check "a resume that takes it as done runs the second" [ $? -eq 0 ]
check "which ran now" [ -e "$fdir/second" ]
check "the resumed run verifies, closed" "$RUNBOOK" audit verify --state-dir "$fstate" "$fid"
check "a crash marker separates the sessions" grep -q '"type":"run_crashed"' "$fstate/runs/$fid/audit.jsonl"
# The same when the fdatasync that a command's supervisor makes before the exec fails
# (injected: the second step's supervisor gets a pipe, whose fdatasync fails for real).
fail_closed before-gate:2 "cannot sync .*/audit.jsonl before 'second' starts: Invalid argument" \
	'the audit log cannot be made durable'
out=$("$RUNBOOK" resume --state-dir "$fstate" "$fid" 2>&1)
check "its intent has no result: resume asks" grep -q 'not idempotent.*: second$' <<<"$out"
out=$("$RUNBOOK" resume --state-dir "$fstate" --rerun second "$fid" 2>&1)
check "a resume that reruns it runs it" [ -e "$fdir/second" ]
out=$(RUNBOOK_TEST_FAIL=nowhere:1 "$RUNBOOK" run --state-dir "$fstate" -p dir="$fdir" tests/exec/failclosed.yaml 2>&1)
check "a bad RUNBOOK_TEST_FAIL is refused" grep -q "RUNBOOK_TEST_FAIL='nowhere:1': expected POINT:N" <<<"$out"
# The console reports no outcome that the journal does not have: wherever the disk
# fills, a step's end (or the run's) whose record could not be made durable is shown
# as not recorded, and the run exits 1.
console_recorded() {      # console_recorded OUTPUT RUN_DIR
	local line
	while IFS= read -r line; do
		[[ $line =~ ^[0-9:]+\ ([a-z_0-9]+):\ (succeeded|failed|skipped|interrupted)\  ]] || continue
		[[ $line == *"(not recorded: the audit log cannot be written)" ]] && continue
		jq -se --arg s "${BASH_REMATCH[1]}" --arg st "${BASH_REMATCH[2]}" \
			'any(.[]; .type == "step_finished" and .step == $s and .status == $st)' \
			"$2/audit.jsonl" >/dev/null || return 1
	done <<<"$1"
	grep -q '^[0-9:]* run .* in [0-9.]*s: .*(its end is not recorded' <<<"$1" ||
		jq -se 'any(.[]; .type == "run_finished")' "$2/audit.jsonl" >/dev/null
}
for p in before-write:3 before-write:4 before-write:5 after-write:4 before-gate:2; do
	rm -rf "$fstate" "$fdir"/*
	out=$(RUNBOOK_TEST_FAIL=$p "$RUNBOOK" run --state-dir "$fstate" -p dir="$fdir" \
		--output text tests/exec/failclosed.yaml 2>&1)
	check "$p: the run exits 1" [ $? -eq 1 ]
	check "$p: the console reports only what the journal recorded" \
		console_recorded "$out" "$fstate/runs/$(ls "$fstate/runs")"
	check "$p: and says what it could not record" grep -q 'not recorded' <<<"$out"
done
check "a step's end not recorded is said so" grep -q '^[0-9:]* second: succeeded in [0-9.]*s (not recorded: the audit log cannot be written)$' \
	<(rm -rf "$fstate" "$fdir"/*; RUNBOOK_TEST_FAIL=before-write:4 "$RUNBOOK" run --state-dir "$fstate" \
	  -p dir="$fdir" --output text tests/exec/failclosed.yaml 2>&1)
rm -rf "$fstate" "$fdir"/*
out=$(RUNBOOK_TEST_FAIL=before-write:4 "$RUNBOOK" run --state-dir "$fstate" -p dir="$fdir" \
	--output json tests/exec/failclosed.yaml 2>/dev/null)
check "json: a not_recorded event in place of its step_finished" \
	jq -se 'map(select(.step == "second" and (.event == "step_finished" or .event == "not_recorded")))
		| length == 1 and .[0].event == "not_recorded" and .[0].record == "step_finished"
		  and .[0].status == "succeeded"' <<<"$out"
# An outcome waits for its record to be durable, not for the next command to end: its
# supervisor's sync before the exec is enough (docs/state.md).
qstate=$(mktemp -d)
"$RUNBOOK" run --state-dir "$qstate" --output text tests/exec/quiet.yaml >"$qstate/out" 2>&1 &
qpid=$!
sleep 2
check "a step's end shows while the next command runs" grep -q 'first: succeeded in' "$qstate/out"
check "then the next step's start" bash -c "awk '/first: succeeded/ {a = NR} /quiet: started/ {b = NR} END {exit !(a && b && a < b)}' '$qstate/out'"
check "and the command is still running" bash -c "! grep -q 'quiet: succeeded' '$qstate/out'"
wait "$qpid"
check "then it ends" grep -q 'quiet: succeeded in' "$qstate/out"
rm -rf "$qstate"
check "json: run_finished counts it apart" \
	jq -se 'map(select(.event == "run_finished"))[0] | .status == "failed" and .succeeded == 1
		and .not_recorded == 1 and .recorded == false' <<<"$out"
rm -rf "$fdir" "$fstate"

# Each command's records are durable before it runs, seen in the system calls: a step
# alone is synced by its supervisor right before the exec (docs/state.md), a batch of
# steps by the runner, once, before any of them.
dstate=$(mktemp -d)
durable() {                 # durable JOBS: how the fdatasyncs and execs of a run interleave
	rm -rf "$dstate/s"
	# (LeakSanitizer cannot work under ptrace: make asan finds leaks in the other tests.)
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
		strace -f -qq -e trace=fdatasync,execve -o "$dstate/trace" \
		${RUNBOOK_WRAP:-} "$RUNBOOK" run --state-dir "$dstate/s" --jobs "$1" \
		tests/exec/durable.yaml >/dev/null 2>&1 || return 1
	# "S" for a completed fdatasync by the runner (the first to sync: the run's creation),
	# "s" by another process, "x" an exec
	awk '/fdatasync\(/ && !runner { runner = $1 }
	     /fdatasync\(.*= 0$/ || /<\.\.\. fdatasync resumed>.*= 0$/ { printf "%s", $1 == runner ? "S" : "s" }
	     /execve\("\/bin\/true"/ { printf "x" }' "$dstate/trace"
}
seq1=$(durable 1)
check "--jobs 1: each command's own sync by its supervisor comes right before it ($seq1)" \
	grep -Eq '^S+(sx){3}S+$' <<<"$seq1"
seq4=$(durable 4)
check "--jobs 4: the runner's sync before all three, no other ($seq4)" grep -Eq '^S+x[xS]*$' <<<"$seq4"
rm -rf "$dstate"

# A param the log holds redacted is given again on resume, never run as "<email>".
pdir=$(mktemp -d)
pstate=$(mktemp -d)
"$RUNBOOK" run --state-dir "$pstate" -p who=dana@example.com -p dir="$pdir" tests/exec/pii_param.yaml >/dev/null 2>&1
check "the run with a PII param fails at its flaky step" [ $? -eq 1 ]
pid_=$(ls "$pstate/runs")
check "the address is not in the log" bash -c "! grep -rq dana@example "$pstate""
touch "$pdir/fixed"
out=$("$RUNBOOK" resume --state-dir "$pstate" "$pid_" 2>&1)
check "resume without it is refused" [ $? -eq 2 ]
check "naming the param" grep -q "param 'who' is redacted in the run's log (<email>); give it again: -p who=VALUE" <<<"$out"
out=$("$RUNBOOK" resume --state-dir "$pstate" -p dir=/elsewhere "$pid_" 2>&1)
check "a param the log holds is not replaced" grep -q "resume: -p dir: the run's params stand" <<<"$out"
out=$("$RUNBOOK" resume --state-dir "$pstate" -p who=dana@example.com "$pid_" 2>&1)
check "given again, the resume runs" [ $? -eq 0 ]
check "with the real value" grep -qx 'dana@example.com' "$pdir/notified"
check "still not in the log" bash -c "! grep -rq dana@example "$pstate""
rm -rf "$pdir" "$pstate"

# The signing key: the host's, made on first use with a notice; or RUNBOOK_AUDIT_KEY's;
# or --audit-key's, which wins.
kstate=$(mktemp -d)
out=$("$RUNBOOK" run --state-dir "$kstate" tests/exec/foreach.yaml 2>/dev/null)
check "the first run makes the host key" [ -s "$kstate/keys/host.pem" ] && [ -s "$kstate/keys/host.pem.pub" ]
hid=$(openssl pkey -in "$kstate/keys/host.pem" -pubout -outform DER | tail -c 32 | sha256sum | cut -c 1-16)
check "and says so in an event, naming it and its id" grep -qx "[0-9:]* created $kstate/keys/host.pem, the audit key of this host (key id $hid), to sign run logs; give $kstate/keys/host.pem.pub to those who verify them" <<<"$out"
check "with mode 0600" [ "$(stat -c %a "$kstate/keys/host.pem")" = 600 ]
out=$("$RUNBOOK" run --state-dir "$kstate" tests/exec/foreach.yaml 2>/dev/null)
check "the next run uses it, quietly" bash -c '! grep -q "audit key of this host"' <<<"$out"
last_kid() { jq -r "select(.key_id) | .key_id" "$kstate/runs/$(ls -t "$kstate/runs" | head -n 1)/audit.jsonl" | sort -u; }
check "its records carry the host key's id" [ "$(last_kid)" = "$hid" ]
"$RUNBOOK" keygen --out "$kstate/env.pem" >/dev/null
"$RUNBOOK" keygen --out "$kstate/opt.pem" >/dev/null
eid=$(openssl pkey -in "$kstate/env.pem" -pubout -outform DER | tail -c 32 | sha256sum | cut -c 1-16)
oid=$(openssl pkey -in "$kstate/opt.pem" -pubout -outform DER | tail -c 32 | sha256sum | cut -c 1-16)
RUNBOOK_AUDIT_KEY="$kstate/env.pem" "$RUNBOOK" run --state-dir "$kstate" tests/exec/foreach.yaml >/dev/null 2>&1
check "RUNBOOK_AUDIT_KEY signs" [ "$(last_kid)" = "$eid" ]
RUNBOOK_AUDIT_KEY="$kstate/env.pem" "$RUNBOOK" run --state-dir "$kstate" --audit-key "$kstate/opt.pem" tests/exec/foreach.yaml >/dev/null 2>&1
check "--audit-key wins" [ "$(last_kid)" = "$oid" ]
out=$("$RUNBOOK" run --state-dir "$kstate" --audit-key "$kstate/opt.pem.pub" tests/exec/foreach.yaml 2>&1)
check "a public key cannot sign: refused before the run" [ $? -ne 0 ] && grep -q "a public key cannot sign" <<<"$out"
# A private key that group or others may read, or that another user owns, is refused (as
# ssh refuses an unprotected private key file), wherever it comes from; no run is made.
# (foreach.yaml fails by design: exit 1 either way; the message and the runs tell.)
nruns=$(ls "$kstate/runs" | wc -l)
chmod 644 "$kstate/opt.pem"
out=$("$RUNBOOK" run --state-dir "$kstate" --audit-key "$kstate/opt.pem" tests/exec/foreach.yaml 2>&1)
check "a world-readable private key is refused" [ $? -eq 1 ]
check "saying why and how to fix it" grep -qF "audit key: $kstate/opt.pem: permissions 0644 are too open for a private key (group or others have access to it); refusing to use it: chmod 600 $kstate/opt.pem" <<<"$out"
chmod 640 "$kstate/keys/host.pem"
out=$("$RUNBOOK" run --state-dir "$kstate" tests/exec/foreach.yaml 2>&1)
check "a group-readable host key is refused" [ $? -eq 1 ]
check "naming it" grep -qF "audit key: $kstate/keys/host.pem: permissions 0640 are too open" <<<"$out"
chmod 600 "$kstate/keys/host.pem"
chown nobody "$kstate/env.pem"
out=$(RUNBOOK_AUDIT_KEY="$kstate/env.pem" "$RUNBOOK" run --state-dir "$kstate" tests/exec/foreach.yaml 2>&1)
check "a private key another user owns is refused" [ $? -eq 1 ]
check "naming its owner" grep -qF "audit key: $kstate/env.pem: the private key is owned by uid $(id -u nobody), not by you (uid $(id -u)): another user may know or replace it; refusing to use it" <<<"$out"
check "no run was made with them" [ "$(ls "$kstate/runs" | wc -l)" -eq "$nruns" ]
"$RUNBOOK" run --state-dir "$kstate" tests/exec/foreach.yaml >/dev/null 2>&1
check "the host key signs again once it is 0600" [ "$(last_kid)" = "$hid" ]
check "its public half is readable by all" [ "$(stat -c %a "$kstate/keys/host.pem.pub")" = 644 ]
check "and verifies the log" "$RUNBOOK" audit verify --keyring "$kstate/keys/host.pem.pub" \
	"$kstate/runs/$(ls -t "$kstate/runs" | head -n 1)"
rm -rf "$kstate"

# Output spilled to the run directory is redacted before it reaches the disk.
sstate=$(mktemp -d)
EXEC_TEST_TOKEN=spill-Tk7mQ2vX9 "$RUNBOOK" run --state-dir "$sstate" tests/exec/spill.yaml >/dev/null 2>&1
check "a step with 1.2 MB of output succeeds" [ $? -eq 0 ]
sfile=$(ls "$sstate"/runs/*/output/chatty.stdout 2>/dev/null)
check "its output past 1 MiB is in the run directory" [ -s "$sfile" ]
check "the secret's line there is masked" grep -q 'the token is \*\*\*$' "$sfile"
check "also the last line, without a newline" grep -q 'no newline at the end: \*\*\*$' "$sfile"
check "no form of the secret is on disk" bash -c "! grep -raqF -e spill-Tk7mQ2vX9 -e $(printf spill-Tk7mQ2vX9 | base64 | cut -c 1-12) '$sstate'"
check "masks that are shorter than the secrets lose no bytes" [ "$(jq -r \
	'select(.type == "step_finished") | .output | fromjson | .stdout_rest | has("lost")' \
	"$sstate"/runs/*/audit.jsonl)" = false ]
rm -rf "$sstate"

# The reference health check where everything fails (tests/exec/health_stubs: kubectl,
# aws, openssl and curl that fail; a validator RPC that answers an error; Slack kept in a
# file): each probe is a finding with its reason, in the report that goes out.
hstate=$(mktemp -d)
PATH="$PWD/tests/exec/health_stubs:$PATH" HEALTH_SLACK="$hstate/slack.json" \
	SLACK_WEBHOOK_URL=https://hooks.example/T0-Wh7kQ "$RUNBOOK" run --state-dir "$hstate" \
	runbooks/daily-health-check.yaml >"$hstate/out.txt" 2>&1
check "the failing health check fails (exit 1)" [ $? -eq 1 ]
report=$(jq -r .text "$hstate/slack.json" 2>/dev/null)
check "evaluate reads the failed probes" grep -q '^[0-9:]* evaluate: succeeded' "$hstate/out.txt"
check "its report goes out, not a generic alert" grep -q '^PersonaPass daily health check .*: 7 critical, 3 warnings$' <<<"$report"
check "a failed pipeline is a finding (kubectl | sed)" \
	grep -qF ':warning: kubectl top pods failed (metrics-server?): exit 1: error: You must be logged in to the server (Unauthorized)' <<<"$report"
check "and (aws | tail)" grep -qF ':red_circle: cannot list s3://personapass-backups/: exit 1: An error occurred (AccessDenied)' <<<"$report"
check "an RPC answer without a result is a finding" \
	grep -qF ':red_circle: blockchain RPC http://localhost:26657 gave no sync_info: {"code":-32603,"message":"Internal error"}' <<<"$report"
check "each /status probe that failed, by its URL" [ "$(grep -c '^:red_circle: http://.*/status failed: curl: (6) Could not resolve host' <<<"$report")" -eq 2 ]
check "after one failed, the others are probed too" grep -q '^:red_circle: http://ai-engine/status failed' <<<"$report"
check "and one that answers is no finding" [ "$(grep -c 'api/status' <<<"$report")" -eq 0 ]
for f in 'kubectl get pods failed' 'database unreachable' 'TLS handshake with api.personapass.id failed' \
	'kubectl top nodes failed (metrics-server?)' 'kubectl get cronjobs failed'; do
	check "finding: $f" grep -qF "$f: exit 1: " <<<"$report"
done
check "the verdict fails on them" grep -q '^[0-9:]* verdict: failed in .*: critical: kubectl get pods failed' "$hstate/out.txt"
check "the webhook is a secret" bash -c "! grep -rq Wh7kQ '$hstate/runs' '$hstate/out.txt'"
rm -rf "$hstate"

echo "exec: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
