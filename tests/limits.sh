#!/usr/bin/env bash
# The documented input limits, on generated files too large to keep in the
# repository: the size limit and the step limit, each just under and just over.
set -uo pipefail
: "${RUNBOOK:?}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pass=0 fail=0

expect() {                # expect NAME STATUS PATTERN FILE
	local out rc
	out=$("$RUNBOOK" validate -q "$4" 2>&1)
	rc=$?
	if [ "$rc" -eq "$2" ] && grep -q -- "$3" <<<"$out"; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL $1: exit $rc, expected $2 and '$3' in:"
		head -n 5 <<<"$out"
	fi
}

steps() {                 # steps N: a runbook of N trivial steps
	awk -v n="$1" 'BEGIN {
		print "runbook: many\nversion: 1\nsteps:"
		for (i = 0; i < n; i++) printf "  - {id: s%d, lua: \"return 1\"}\n", i
	}'
}

steps 50000 >"$dir/at.yaml"
expect "50000 steps" 0 '^$' "$dir/at.yaml"
steps 50001 >"$dir/over.yaml"
expect "50001 steps" 2 'over.yaml:4:3: error: more than 50000 steps' "$dir/over.yaml"

# 16 MiB exactly is allowed, one byte more is not (a long comment pads it).
pad() {
	local head='runbook: big\nversion: 1\nsteps:\n  - {id: a, run: echo}\n#'
	{
		printf "$head"
		head -c $(($1 - 56)) /dev/zero | tr '\0' 'x'
		printf '\n'
	} >"$2"
	[ "$(stat -c %s "$2")" -eq "$1" ] || echo "limits: $2 is not $1 bytes" >&2
}
pad $((16 * 1024 * 1024)) "$dir/at16.yaml"
expect "16 MiB" 0 '^$' "$dir/at16.yaml"
pad $((16 * 1024 * 1024 + 1)) "$dir/over16.yaml"
expect "16 MiB + 1" 2 'over16.yaml: error: file is larger than the limit of 16 MiB' "$dir/over16.yaml"

# Depth: 64 levels of nesting are allowed, 65 are not.
nest() {
	awk -v d="$1" 'BEGIN {
		s = ""; for (i = 0; i < d; i++) s = s "["; for (i = 0; i < d; i++) s = s "]"
		print "runbook: deep\nversion: 1\nvars:\n  x: " s "\nsteps:\n  - {id: a, run: echo}"
	}'
}
nest 62 >"$dir/d62.yaml"     # the root mapping and vars are two levels more
expect "depth 64" 0 '^$' "$dir/d62.yaml"
nest 63 >"$dir/d63.yaml"
expect "depth 65" 2 'd63.yaml:4:.*: error: collections nested deeper than 64 levels' "$dir/d63.yaml"

echo "limits: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
