#!/usr/bin/env bash
# Expression and sandbox cases: tests/expr/*.txt and tests/sandbox/*.txt, run
# by `runbook eval --run-tests` with the params and vars of tests/expr/scope.yaml.
set -uo pipefail
: "${RUNBOOK:?}"
pass=0 fail=0
# time.txt once more in a time zone with a half-hour offset: times are UTC whatever TZ says.
for f in tests/expr/*.txt tests/sandbox/*.txt tz:tests/expr/time.txt; do
	tz=UTC
	[[ $f == tz:* ]] && tz=America/St_Johns f=${f#tz:}
	out=$(TZ=$tz ${RUNBOOK_WRAP:-} "$RUNBOOK" eval -r tests/expr/scope.yaml -p env=staging \
		--run-tests "$f" 2>&1)
	rc=$?
	printf '%s\n' "$out" | grep -v ' passed, .* failed$'
	last=$(printf '%s\n' "$out" | tail -n 1)
	p=$(sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' <<<"$last")
	q=$(sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' <<<"$last")
	if [ -z "$p" ]; then
		echo "FAIL $f: no summary (exit $rc)"
		fail=$((fail + 1))
		continue
	fi
	pass=$((pass + p))
	fail=$((fail + q))
	if [ "$rc" -ne 0 ] && [ "$q" -eq 0 ]; then
		echo "FAIL $f: exit $rc"
		fail=$((fail + 1))
	fi
done
echo "expr: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
