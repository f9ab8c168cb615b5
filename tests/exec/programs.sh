# The checks of tests/exec.sh that need a program, sourced by it after the data cases (its
# check, ok and bad count them): signals, timing, runs at once, killed runners, locks and
# keys with the wrong owner or mode, files changed under a run, system calls.  Each works in
# the state directory $state, on the newest run there unless it names one.
state=$(mktemp -d)
trap 'rm -rf "${RUNBOOK_LOCK_DIR%/locks}" ${tmp:+"$tmp"} "$state"' EXIT
journal() { jq -c -f tests/records.jq "$state"/runs/"$(ls -t "$state"/runs | head -n 1)"/audit.jsonl; }
has() { grep -q -- "$1" <<<"$(journal)"; }
run() { ${RUNBOOK_WRAP:-} "$RUNBOOK" run --state-dir "$state" "$@"; }

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
# the nearest, not at its 1 s tick).  (What they say: tests/exec/cases/timeouts.out.)
run --jobs 4 tests/exec/timeouts.yaml >/dev/null 2>&1
for t in 300 600 900; do
	ms=$(jq -r "select(.type == \"step_finished\" and .step == \"t$t\") | .duration_ms" \
		"$state"/runs/"$(ls -t "$state"/runs | head -n 1)"/audit.jsonl)
	check "a ${t}ms timeout among others stops its command in time ($ms ms)" \
		[ -n "$ms" -a "$ms" -ge $t -a "$ms" -lt $((t + 500)) ]
done

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


# The failed call's output is in its action_result (tests/exec/cases/shell.out), bound by
# its SHA-256.
EXEC_TEST_TOKEN=s3cr3t-XY EXPECTED=s3cr3t-XY run tests/exec/shell.yaml >/dev/null 2>&1
ar=$(jq -c 'select(.type == "action_result" and .step == "says_why")' "$state/runs/$(ls -t "$state/runs" | head -n 1)/audit.jsonl")
check "a failed call's output is bound by its output_sha256" \
	[ "$(jq -j .output <<<"$ar" | sha256sum | cut -d' ' -f1)" = "$(jq -r .output_sha256 <<<"$ar")" ]

# Output past 1 MiB in the run directory (tests/exec/cases/long_stderr.out has the run): the
# output names each file with the length and SHA-256 of what it holds, which the log binds.
EXEC_TEST_STATE=$state run tests/exec/long_stderr.yaml >/dev/null 2>&1
lrun="$state/runs/$(ls -t "$state/runs" | head -n 1)"
check "a step's stderr too long to keep whole has its last line in the spill file" \
	grep -q '^the real reason$' "$lrun/output/says_too_much.stderr"
rest() { jq -r --arg s "$1" --arg k "$2" 'select(.type == "step_finished" and .step == $s) |
	.output | fromjson | .[$k] | "\(.file) \(.bytes) \(.sha256)"' "$lrun/audit.jsonl"; }
for sk in "long_output stdout_rest" "long_output stderr_rest"; do
	read -r file bytes sha <<<"$(rest $sk)"
	check "$sk: names its file, its length and its SHA-256" \
		bash -c "[ -f '$lrun/$file' ] && [ \$(stat -c %s '$lrun/$file') = '$bytes' ] &&
			 [ \$(sha256sum <'$lrun/$file' | cut -d' ' -f1) = '$sha' ]"
done
# Up to its last whole line: a line (and a secret on it) is not cut between the two.
check "the file starts with the line the first MiB ends in" \
	[ "$(head -n 1 "$lrun/output/long_output.stdout")" = "$(seq 1 300000 | head -c 1048576 | wc -l | xargs -I{} expr {} + 1)" ]
lid=$(basename "$lrun")
cp "$lrun/output/long_output.stdout" "$state/kept.stdout"
printf 'changed' | dd of="$lrun/output/long_output.stdout" bs=1 seek=100 conv=notrunc 2>/dev/null
out2=$("$RUNBOOK" audit verify --state-dir "$state" "$lid" 2>&1)
check "a file changed since the run fails audit verify, named" \
	bash -c "[ $? -eq 1 ] && grep -qF '$lrun/output/long_output.stdout: error: its SHA-256 is not the one $lrun/audit.jsonl:' <<<'$out2'"
rm "$lrun/output/long_output.stdout"
out2=$("$RUNBOOK" audit verify --state-dir "$state" "$lid" 2>&1)
check "so does a file removed" \
	bash -c "[ $? -eq 1 ] && grep -qF '$lrun/output/long_output.stdout: error: No such file or directory, and $lrun/audit.jsonl:' <<<'$out2'"
mv "$state/kept.stdout" "$lrun/output/long_output.stdout"

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

# check: resume lets the check decide about a step that was in flight when its runner was
# killed.
cdir=$(mktemp -d)
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
rm -rf "$cdir"

# for_each items: at most `concurrency` at once, but more than one, each once.
fdir=$(mktemp -d)
run -p dir="$fdir" tests/exec/foreach.yaml >/dev/null 2>&1
check "never more items at once than its concurrency" bash -c "! grep -qv '^[123]$' '$fdir/seen'"
check "but more than one" grep -q '^[23]$' "$fdir/seen"
check "every item ran once" [ "$(wc -l <"$fdir/seen")" -eq 6 ]
rm -rf "$fdir"

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

# A long run compacts its journal: a snapshot, and records continuing after it.
awk 'BEGIN { print "runbook: many\nversion: 1\nsteps:"
	for (i = 0; i < 600; i++) printf "  - {id: s%d, lua: \"return %d\"}\n", i, i }' >"$state/many.yaml"
run --jobs 8 "$state/many.yaml" >/dev/null 2>&1
check "600 steps succeed" [ $? -eq 0 ]
dir="$state/runs/$(ls -t "$state/runs" | head -n 1)"
check "the journal was compacted" grep -q '"format":"runbook-snapshot"' "$dir/snapshot.json"
check "the snapshot has every step" [ "$(grep -o '"status":"succeeded"' "$dir/snapshot.json" | wc -l)" -ge 400 ]
check "records continue after the snapshot" grep -q '"type":"run_finished"' "$dir/audit.jsonl"

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
# The key ids of the newest run's signed records (not every record need carry one).
last_kid() {
	jq -r '.key_id // empty' "$kstate/runs/$(ls -t "$kstate/runs" | head -n 1)/audit.jsonl" | sort -u
}
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

