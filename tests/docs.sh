#!/usr/bin/env bash
# What is generated or written twice must match what the binary says: the
# actions page, the command sections of docs/cli.md, the schema's actions.
set -uo pipefail
: "${RUNBOOK:?}"
pass=0 fail=0
if [ "${UPDATE:-}" = 1 ]; then
	"$RUNBOOK" actions --format markdown >docs/actions.md
fi
if diff -u docs/actions.md <("$RUNBOOK" actions --format markdown); then
	pass=$((pass + 1))
else
	echo "FAIL docs/actions.md differs from 'runbook actions --format markdown'"
	fail=$((fail + 1))
fi
# Every command in the command table is documented in docs/cli.md.
for c in $("$RUNBOOK" --help | sed -n 's/^  \([a-z]*\) .*/\1/p'); do
	if grep -q "^## \`runbook $c" docs/cli.md; then
		pass=$((pass + 1))
	else
		echo "FAIL docs/cli.md has no section for 'runbook $c'"
		fail=$((fail + 1))
	fi
done
# The hand-written schema's actions match the registry (tests/schema/actions.js).
reg=$(mktemp)
"$RUNBOOK" actions --format json >"$reg"
if out=$(node tests/schema/actions.js schema/runbook.schema.json "$reg" 2>&1); then
	pass=$((pass + 1))
else
	printf '%s\n' "$out" | grep -v ' passed, '
	fail=$((fail + 1))
fi
rm -f "$reg"
echo "docs: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
