#!/usr/bin/env bash
# Documentation that is generated must match what the binary says.
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
echo "docs: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
