#!/usr/bin/env bash
# Terminal behaviour, in a real terminal (tmux): colour on a TTY, none with
# NO_COLOR, none when the output is not a terminal.
set -uo pipefail
: "${RUNBOOK:?}"
command -v tmux >/dev/null || { echo "tty: tmux is missing (make deps installs it)"; echo "tty: 0 passed, 1 failed"; exit 1; }
sock="runbook-tty-$$"
n=0
bin=$(cd "$(dirname "$RUNBOOK")" && pwd)/$(basename "$RUNBOOK")
pass=0 fail=0
trap 'for i in $(seq 0 "$n"); do tmux -L "$sock-$i" kill-server 2>/dev/null; done' EXIT

# run_in_tmux ENV COMMAND: the screen, with escape sequences, after it ran.  A tmux
# server that did not come up (a busy machine) is tried again, up to three times.
run_in_tmux() {
	local try screen
	for try in 1 2 3; do
		n=$((n + 1))
		tmux -L "$sock-$n" new-session -d -x 200 -y 50 \
			"env -u NO_COLOR $1 $2; echo __done__; sleep 30" 2>/dev/null
		for _ in $(seq 300); do
			tmux -L "$sock-$n" capture-pane -p 2>/dev/null | grep -q __done__ && break
			sleep 0.1
		done
		screen=$(tmux -L "$sock-$n" capture-pane -p -e 2>/dev/null)
		tmux -L "$sock-$n" kill-server 2>/dev/null
		grep -q __done__ <<<"$screen" && break
		echo "tty: no screen from tmux (try $try), again" >&2
	done
	printf '%s\n' "$screen"
}

check() {                 # check NAME yes|no SCREEN
	local has=no
	grep -qE $'\033\\[(1;)?31m' <<<"$3" && has=yes
	if [ "$has" = "$2" ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL $1: colour expected: $2"
		head -n 5 <<<"$3"
	fi
}

screen=$(run_in_tmux "" "$bin validate tests/invalid/cycle.yaml")
check "diagnostics on a terminal are coloured" yes "$screen"
grep -q 'cycle.yaml:5:9: ' <<<"$(sed $'s/\033\\[[0-9;]*m//g' <<<"$screen")" && pass=$((pass + 1)) ||
	{ fail=$((fail + 1)); echo "FAIL the coloured message is the same text"; }
screen=$(run_in_tmux "NO_COLOR=1" "$bin validate tests/invalid/cycle.yaml")
check "NO_COLOR turns colour off" no "$screen"
screen=$(run_in_tmux "" "$bin validate tests/invalid/cycle.yaml 2>&1 | cat")
check "no colour when not a terminal" no "$screen"
screen=$(run_in_tmux "" "$bin plan tests/cli/data/placeholders.yaml")
grep -q $'\033\\[1mPlan: ' <<<"$screen" && pass=$((pass + 1)) ||
	{ fail=$((fail + 1)); echo "FAIL the plan is bold on a terminal"; head -n 3 <<<"$screen"; }

# Approval gates on a terminal: the prompt is asked, and the answer decides.
# start_tmux COMMAND: a session running COMMAND, then printing its exit status
start_tmux() {
	n=$((n + 1))
	tmux -L "$sock-$n" new-session -d -x 200 -y 50 \
		"env -u NO_COLOR $1; echo __rc=\$?__; sleep 30" 2>/dev/null
}
screen_now() { tmux -L "$sock-$n" capture-pane -p 2>/dev/null; }
wait_for() {              # wait_for TEXT: until the screen shows it (30 s at most)
	for _ in $(seq 300); do
		screen_now | grep -qF -- "$1" && return 0
		sleep 0.1
	done
	return 1
}
expect() {                # expect NAME TEXT: the screen shows TEXT
	if wait_for "$2"; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL $1: no '$2' on the screen:"
		screen_now | grep -v '^$' | tail -n 8
	fi
}
tmp=$(mktemp -d)
trap 'for i in $(seq 0 "$n"); do tmux -L "$sock-$i" kill-server 2>/dev/null; done; rm -rf "$tmp"' EXIT
gate="$bin run --state-dir $tmp/state -p dir=$tmp tests/exec/gate.yaml"

start_tmux "$gate"
expect "the gate asks on a terminal" "dangerous needs approval: Drop the old tables in $tmp?"
[ "$(screen_now | grep -c 'Drop the old tables')" = 1 ] && pass=$((pass + 1)) ||
	{ fail=$((fail + 1)); echo "FAIL the gate's prompt is shown once:"; screen_now | grep -v '^$'; }
expect "the live view says the step waits" "dangerous: waiting for approval"
tmux -L "$sock-$n" send-keys "maybe" Enter
expect "an unclear answer is asked again" "please answer y or n"
tmux -L "$sock-$n" send-keys "y" Enter
expect "y approves and the run succeeds" "__rc=0__"
expect "the approval is shown" "dangerous: approved by"
[ "$(cat "$tmp/after.count" 2>/dev/null)" = after ] && pass=$((pass + 1)) ||
	{ fail=$((fail + 1)); echo "FAIL the steps after the gate ran"; }
tmux -L "$sock-$n" kill-server

rm -f "$tmp"/*.count
start_tmux "$gate"
expect "the gate asks again in a new run" "approve? [y/n]"
tmux -L "$sock-$n" send-keys "n" Enter
expect "n rejects and the run fails" "__rc=1__"
expect "saying who rejected it" "s: not approved (rejected by"
[ ! -e "$tmp/dangerous.count" ] && pass=$((pass + 1)) ||
	{ fail=$((fail + 1)); echo "FAIL a rejected step does not run"; }
tmux -L "$sock-$n" kill-server

start_tmux "$gate"
expect "asked a third time" "approve? [y/n]"
tmux -L "$sock-$n" send-keys C-d
expect "end of input pauses the run" "__rc=3__"
expect "and prints how to continue" "to continue: runbook resume"
tmux -L "$sock-$n" kill-server

start_tmux "$gate"
expect "asked a fourth time" "approve? [y/n]"
tmux -L "$sock-$n" send-keys C-c
expect "Ctrl-C at the prompt interrupts the run" "__rc=130__"
tmux -L "$sock-$n" kill-server

# With on_failure steps: they run after Ctrl-C at the question, which is not asked again.
start_tmux "$bin run --state-dir $tmp/state -p dir=$tmp tests/exec/gate_on_failure.yaml"
expect "a gate of a runbook with on_failure steps asks" "approve? [y/n]"
tmux -L "$sock-$n" send-keys C-c
expect "Ctrl-C at it interrupts the run, after its on_failure steps" "__rc=130__"
expect "... and says how to continue, past the gate" "--approve dangerous"
[ "$(screen_now | grep -c 'approve? \[y/n\]')" = 1 ] && pass=$((pass + 1)) ||
	{ fail=$((fail + 1)); echo "FAIL the gate was asked again after Ctrl-C:"; screen_now | grep -v '^$' | tail -n 12; }
[ "$(cat "$tmp/told.count" 2>/dev/null)" = told ] && pass=$((pass + 1)) ||
	{ fail=$((fail + 1)); echo "FAIL the on_failure step did not run after Ctrl-C at the gate"; }
[ ! -e "$tmp/dangerous.count" ] && pass=$((pass + 1)) ||
	{ fail=$((fail + 1)); echo "FAIL the gated step ran after Ctrl-C"; }
tmux -L "$sock-$n" kill-server

# The live view: a footer with the running steps, their elapsed time and last
# output line, and a summary; gone when the run ends.
live="$bin run --state-dir $tmp/state tests/exec/live.yaml"
start_tmux "$live"
expect "the footer shows the running step and its output" "slow   "
expect "with its latest output line" "working on part 2"
expect "and a summary line" "[1/2] 1 running"
expect "finished steps are listed above it" "✓ quick"
expect "the run ends" "__rc=0__"
if screen_now | grep -q "running ·"; then
	fail=$((fail + 1)); echo "FAIL the footer is gone after the run"; screen_now | grep -v '^$' | tail -n 5
else
	pass=$((pass + 1))
fi
expect "the end of the run is shown" "succeeded in"
tmux -L "$sock-$n" kill-server

start_tmux "$live -p seconds=30"
expect "a long step runs" "working on part 1"
tmux -L "$sock-$n" send-keys C-c
expect "Ctrl-C in the live view interrupts the run" "__rc=130__"
expect "the step is shown interrupted" "! slow"
expect "and how to continue" "to continue: runbook resume"
tmux -L "$sock-$n" kill-server

start_tmux "$live --output text"
expect "--output text prints timestamped lines on a terminal too" "slow: started"
expect "and ends" "__rc=0__"
if screen_now | grep -qE '^[0-9]{2}:[0-9]{2}:[0-9]{2} run .* succeeded'; then
	pass=$((pass + 1))
else
	fail=$((fail + 1)); echo "FAIL --output text lines have the time"
fi
tmux -L "$sock-$n" kill-server

# What an approver sees cannot be forged: a step's output with escape sequences
# (CR, erase the line, go up, retitle) in a gate's prompt, the live view and
# --output text lines is shown as \r, \e, \a, not obeyed.
forged="$bin run --state-dir $tmp/state -p dir=$tmp tests/exec/forged.yaml"
shown='prod-db?\r\e[2K\e[1A\e]0;pwned\aharmless-db'
start_tmux "$forged"
expect "a step's escape sequences in a gate's prompt are shown" "drop needs approval: DROP DATABASE $shown"
expect "and in the live view's lines" "target| $shown"
expect "the question follows" "approve? [y/n]"
title=$(tmux -L "$sock-$n" display-message -p '#{pane_title}')
[ "$title" != pwned ] && pass=$((pass + 1)) ||
	{ fail=$((fail + 1)); echo "FAIL a step's output retitled the terminal"; }
tmux -L "$sock-$n" send-keys "n" Enter
expect "the forged gate is rejected" "__rc=1__"
tmux -L "$sock-$n" kill-server

start_tmux "$forged --output text"
expect "--output text lines show the escape sequences" "target| $shown"
expect "and the gate's prompt too" "drop needs approval: DROP DATABASE $shown"
tmux -L "$sock-$n" send-keys "n" Enter
expect "rejected again" "__rc=1__"
tmux -L "$sock-$n" kill-server

# Keys typed before a gate's question are no answer to it.
start_tmux "$forged -p delay=2"
expect "the step before the gate runs" "target"
tmux -L "$sock-$n" send-keys "y" Enter
expect "the gate asks after it" "approve? [y/n]"
sleep 1.5
if screen_now | grep -qE 'approved by|__rc='; then
	fail=$((fail + 1)); echo "FAIL a y typed before the question approved the gate"
	screen_now | grep -v '^$' | tail -n 8
else
	pass=$((pass + 1))
fi
tmux -L "$sock-$n" send-keys "n" Enter
expect "the answer given after the question counts" "__rc=1__"
[ ! -e "$tmp/drop.count" ] && pass=$((pass + 1)) ||
	{ fail=$((fail + 1)); echo "FAIL the gated step did not run"; }
tmux -L "$sock-$n" kill-server

echo "tty: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
