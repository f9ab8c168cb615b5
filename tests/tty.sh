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

# run_in_tmux ENV COMMAND: the screen, with escape sequences, after it ran
run_in_tmux() {
	n=$((n + 1))
	tmux -L "$sock-$n" new-session -d -x 200 -y 50 \
		"env -u NO_COLOR $1 $2; echo __done__; sleep 30" 2>/dev/null
	for _ in $(seq 100); do
		tmux -L "$sock-$n" capture-pane -p 2>/dev/null | grep -q __done__ && break
		sleep 0.1
	done
	tmux -L "$sock-$n" capture-pane -p -e 2>/dev/null
	tmux -L "$sock-$n" kill-server 2>/dev/null
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

echo "tty: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
