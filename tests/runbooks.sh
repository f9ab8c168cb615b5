#!/usr/bin/env bash
# The guides' runbooks (runbooks/*.yaml) in the sandbox (runbooks/sandbox/):
#   1. each validates, and its plan with the defaults (and the arguments in
#      tests/runbooks/NAME.args, one a line, when there is one) matches
#      tests/runbooks/NAME.plan (UPDATE=1 rewrites them; review the diff);
#   2. make demo and the sandbox's start, stop and Ctrl-C leave nothing behind;
#   3. each tests/runbooks/NAME.test.sh runs, in a sandbox reset before it: the runbook for
#      real, its failure paths, its effects checked on the servers (psql, redis-cli, the
#      cluster's state, the alert receiver's log), not in its own output.
# A test file is sourced in a subshell with the helpers below; ONLY=NAME runs one (and
# ONLY=itself the checks of part 2 alone); LANES=N runs N sandboxes at once (3); TIMES=1
# prints how long each test file took.
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

# --- 2. the sandbox itself: make demo, a start and stop, Ctrl-C, the stand-ins ----------------
# Each in a TMPDIR of its own, so that what it leaves is found by name.
sandbox_itself() {
own_tmp=$(mktemp -d) && chmod 711 "$own_tmp"   # PostgreSQL's user must reach its directory
left() { pgrep -af -- "$own_tmp/" | grep -v pgrep; }
none_left() { [ -z "$(left)" ] && [ -z "$(ls -A "$own_tmp")" ]; }
out=$(TMPDIR=$own_tmp runbooks/sandbox/run demo "$RUNBOOK" 2>&1); rc=$?
is "make demo's run exits 0" "$rc" 0
check "the demo shows the plan" grep -q '^Plan: daily-health-check' <<<"$out"
check "the demo's run succeeds" grep -q 'run [0-9a-f-]* succeeded' <<<"$out"
check "the demo shows what Slack got" grep -q '^PersonaPass daily health check .*: 0 critical' <<<"$out"
check "the demo verifies the log" grep -q 'audit.jsonl: ok: [0-9]* records, 1 run' <<<"$out"
check "the demo replays the run" grep -q '^timeline' <<<"$out"
check "the demo leaves nothing running or on disk" none_left
out=$(TMPDIR=$own_tmp runbooks/sandbox/run demo "$RUNBOOK" 2>&1); rc=$?
is "make demo runs again cleanly" "$rc" 0
check "the second demo leaves nothing either" none_left
# Ctrl-C (SIGINT to the process group, as a terminal sends it) while a command runs inside.
set -m                            # its own process group, as a terminal's foreground job
# (this part runs in the background, where bash ignores SIGINT: give it back its default)
TMPDIR=$own_tmp env --default-signal=INT runbooks/sandbox/run exec sleep 60 >/dev/null 2>&1 &
pid=$!
set +m
for ((i = 0; i < 600; i++)); do     # until the command runs inside
	pgrep -g "$pid" -f '^sleep 60$' >/dev/null && break
	sleep 0.05
done
kill -INT -- -"$pid"
wait "$pid"; rc=$?
is "Ctrl-C ends the sandbox with 130" "$rc" 130
check "Ctrl-C leaves nothing running or on disk" none_left
# make sandbox in a terminal (tmux): its shell reaches the sandbox, exit stops it all.
if command -v tmux >/dev/null; then
	sock=rbsandbox-$$
	own_home=$(mktemp -d)         # the shell's history goes there, not in own_tmp
	screen() { tmux -L "$sock" capture-pane -p -S -200 2>/dev/null; }
	wait_screen() {           # wait_screen PATTERN: 0 once the screen shows it (30 s at most)
		local i
		for ((i = 0; i < 600; i++)); do
			screen | grep -q -- "$1" && return 0
			sleep 0.05
		done
		return 1
	}
	tmux -L "$sock" new-session -d -x 160 -y 50 \
		"cd $(printf %q "$PWD") && TMPDIR=$own_tmp HOME=$own_home PATH=$(printf %q "$(dirname "$RUNBOOK")"):\$PATH runbooks/sandbox/run shell; echo __ended__ \$?; sleep 30"
	check "make sandbox shows its prompt" wait_screen '^(sandbox) '
	tmux -L "$sock" send-keys "runbook run runbooks/daily-health-check.yaml --output text >/dev/null 2>&1; echo RC=\$?" Enter
	check "a runbook runs in the sandbox's shell" wait_screen '^RC=0'
	tmux -L "$sock" send-keys "type kubectl" Enter
	check "kubectl is the sandbox's" wait_screen "kubectl is $PWD/runbooks/sandbox/bin/kubectl"
	tmux -L "$sock" send-keys "exit" Enter
	check "exit ends make sandbox with 0" wait_screen '^__ended__ 0'
	check "exit leaves nothing running or on disk" none_left
	tmux -L "$sock" kill-server 2>/dev/null
	rm -rf "$own_home"
else
	bad "tmux is missing (make deps installs it)"
fi
# The stand-ins refuse to run outside a sandbox, and say so.
out=$(env -u SANDBOX_CLUSTER_DIR runbooks/sandbox/bin/kubectl get pods 2>&1); rc=$?
check "kubectl outside a sandbox refuses ($rc): $out" grep -q 'no sandbox is running' <<<"$out"
out=$(env -u SANDBOX_S3_DIR runbooks/sandbox/bin/aws s3 ls s3://x/ 2>&1); rc=$?
is "aws outside a sandbox exits 255" "$rc" 255
rm -rf "$own_tmp"
}

# --- 3. in the sandbox ------------------------------------------------------------------
# The real clock: the sandbox's backups, certificates and blocks are dated by it.
unset RUNBOOK_NOW
. runbooks/sandbox/sandbox.sh
# The helpers of the test files.
rb() { ${RUNBOOK_WRAP:-} "$RUNBOOK" "$@"; }
sql_db() { psql -X -q -At -v ON_ERROR_STOP=1 "postgresql://rb_admin:$RB_TEST_PG_PASSWORD@127.0.0.1:$SANDBOX_PG_PORT/$1" -c "$2"; }
sql() { sql_db personapass "$1"; }        # as the superuser, on the database personapass
rcli() { redis-cli -h 127.0.0.1 -p "$SANDBOX_REDIS_PORT" --no-auth-warning -a "$REDIS_PASSWORD" "$@"; }
# alerts [PATH_PREFIX]: what the receiver got, one JSON object a line (path, body as JSON).
alerts() { jq -c --arg p "${1:-/}" 'select(.path | startswith($p)) | {path, json, body}' "$SANDBOX_RECEIVER_LOG"; }
# The newest run's id, and a record of its audit log.
# (ids sort by their second only: the newest directory is the last one started or resumed)
last_run() { basename "$(ls -1td "$RUNBOOK_STATE_DIR"/runs/*/ | head -n 1)"; }
journal() { cat "$RUNBOOK_STATE_DIR/runs/$(last_run)/audit.jsonl"; }
cluster_state() { cat "$SANDBOX_CLUSTER_DIR/state.json"; }

# One test file in a sandbox reset for it; its counts added to the lane's.
run_test() {
	local t=$1 counts p f t0=$SECONDS
	T=$(basename "$t" .test.sh)
	if ! sandbox_reset; then
		bad "the sandbox could not be reset"
		return
	fi
	counts=$(mktemp)
	(
		pass=0 fail=0
		trap 'echo "$pass $fail" >"$counts"' EXIT
		. "$t"
	)
	read -r p f <"$counts" || { p=0; f=1; echo "FAIL $T: the test file did not finish"; }
	[ -n "${TIMES:-}" ] && echo "time $T: $((SECONDS - t0)) s"
	rm -f "$counts"
	pass=$((pass + p)) fail=$((fail + f))
}

# The test files wait on servers more than they compute: LANES sandboxes (3) take them
# from one queue, beside the checks of the sandbox itself; each lane's output is shown
# whole once all have ended.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in tests/runbooks/*.test.sh; do
	[ -n "${ONLY:-}" ] && [ "$ONLY" != "$(basename "$t" .test.sh)" ] && continue
	echo "$t"
done >"$work/queue"
take() {                          # the next test file of the queue, or nothing
	(
		flock 9
		head -n 1 "$work/queue"
		sed -i 1d "$work/queue"
	) 9>"$work/queue.lock"
}
lane() {
	pass=0 fail=0
	unset RB_TEST_SERVERS_DIR SANDBOX_DIR
	trap "sandbox_stop; echo \"\$pass \$fail\" >$(printf %q "$work/$1.counts")" EXIT
	if ! sandbox_start; then
		bad "the sandbox of lane $1 did not start"
		exit
	fi
	local t
	while t=$(take) && [ -n "$t" ]; do
		run_test "$t"
	done
}
parts=()
if [ -z "${ONLY:-}" ] || [ "$ONLY" = itself ]; then
	parts+=(itself)
	( pass=0 fail=0; trap 'echo "$pass $fail" >"$work/itself.counts"' EXIT; sandbox_itself ) \
		>"$work/itself.log" 2>&1 &
fi
lanes=${LANES:-3}
[ -n "${ONLY:-}" ] && lanes=1
[ -s "$work/queue" ] || lanes=0
for ((i = 1; i <= lanes; i++)); do
	parts+=("$i")
	(lane "$i") >"$work/$i.log" 2>&1 &
done
wait
for l in "${parts[@]}"; do
	cat "$work/$l.log"
	read -r p f <"$work/$l.counts" 2>/dev/null || { p=0; f=1; echo "FAIL: lane $l ended without its counts"; }
	pass=$((pass + p)) fail=$((fail + f))
done
echo "runbooks: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
