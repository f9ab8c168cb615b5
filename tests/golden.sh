#!/usr/bin/env bash
# Golden tests: each case is a command and the exact output it must give.
#   tests/invalid/NAME.yaml  ->  runbook validate NAME.yaml, expected NAME.out
#   tests/cli/NAME.cmd       ->  runbook ARGS (one line, shell words), expected NAME.out
# NAME.out holds "[stdout]", the output, "[stderr]", the errors, and "[exit N]".
set -uo pipefail
: "${RUNBOOK:?}"
pass=0 fail=0

check() {                 # check GOLDEN ARGS...
	local golden="$1"; shift
	local out err rc actual
	out=$(mktemp) err=$(mktemp)
	${RUNBOOK_WRAP:-} "$RUNBOOK" "$@" >"$out" 2>"$err" </dev/null
	rc=$?
	actual=$(printf '[stdout]\n%s\n[stderr]\n%s\n[exit %d]' "$(cat "$out")" "$(cat "$err")" "$rc")
	rm -f "$out" "$err"
	if [ "${UPDATE:-}" = 1 ]; then
		printf '%s\n' "$actual" >"$golden"
		pass=$((pass + 1))
	elif [ -f "$golden" ] && [ "$actual" = "$(cat "$golden")" ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL $golden"
		if [ -f "$golden" ]; then
			diff -u "$golden" <(printf '%s\n' "$actual") | head -n 40
		else
			echo "  (no golden file; run make test UPDATE=1 and review it)"
		fi
	fi
}

for f in tests/invalid/*.yaml; do
	check "${f%.yaml}.out" validate "$f"
done
for f in tests/cli/*.cmd; do
	[ -e "$f" ] || continue
	eval "args=($(cat "$f"))"
	check "${f%.cmd}.out" "${args[@]}"
done
echo "golden: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
