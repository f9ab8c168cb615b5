#!/usr/bin/env bash
# The processes a run starts (interp/proc.h): none for a runbook whose steps start
# none; the spawner and its supervisors for one whose steps or checks may; and none
# left behind when the run ends.
set -uo pipefail
: "${RUNBOOK:?}"
tmp=$(mktemp -d)
pass=0 fail=0
runner=
trap '[ -n "$runner" ] && kill "$runner" 2>/dev/null; rm -rf "$tmp"' EXIT
is() { if [ "$2" = "$3" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $1: got '$2', want '$3'"; fi; }

# children RUNBOOK: the names of the runner's child processes while its first step
# (wait 2s) runs, sorted, one line
children() {
	"$RUNBOOK" run --state-dir "$tmp/state" "$1" >/dev/null 2>&1 &
	runner=$!
	local names=
	for _ in $(seq 100); do                 # the run is under way once its log is
		ls "$tmp"/state/runs/*/audit.jsonl >/dev/null 2>&1 && break
		sleep 0.05
	done
	sleep 0.5                               # (the spawner forks its pool meanwhile)
	names=$(for c in $(cat /proc/"$runner"/task/*/children 2>/dev/null); do
		cat /proc/"$c"/comm 2>/dev/null; done | sort -u | tr '\n' ' ')
	wait "$runner"
	runner=
	rm -rf "$tmp/state"
	echo "${names% }"
}

head='runbook: procs
version: 1
steps:
  - id: pause
    action: wait
    with: {duration: 2s}'
printf '%s\n  - {id: add, needs: [pause], lua: return 1 + 1}\n' "$head" >"$tmp/lua.yaml"
printf '%s\n  - {id: list, needs: [pause], run: "true"}\n' "$head" >"$tmp/shell.yaml"
cat >"$tmp/check.yaml" <<YAML
$head
  - id: made
    needs: [pause]
    lua: return 1
    check: {run: "true"}
YAML

is "a runbook without process steps starts no process" "$(children "$tmp/lua.yaml")" ""
is "a runbook with a run: step starts the spawner" "$(children "$tmp/shell.yaml")" "rb-spawner"
is "a check with run: counts too" "$(children "$tmp/check.yaml")" "rb-spawner"
# Run from a directory of its own, which its processes inherit: none is left there.
mkdir "$tmp/cwd"
(cd "$tmp/cwd" && "$RUNBOOK" run --state-dir "$tmp/state" "$tmp/shell.yaml" >/dev/null 2>&1)
sleep 0.2
is "the run ends with its spawner and supervisors gone" \
	"$(for p in $(pgrep '^rb-(spawner|step)$'); do readlink /proc/"$p"/cwd; done | grep -c "^$tmp/cwd")" 0

echo "procs: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
