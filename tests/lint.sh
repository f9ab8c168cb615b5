#!/usr/bin/env bash
# runbook lint, and plan --save / run --plan (issue 20).
#   tests/lint/NAME.yaml -> runbook lint NAME.yaml, expected NAME.out
#   ([stdout], [stderr], [exit N], as tests/golden.sh; UPDATE=1 rewrites them)
# then the saved plan's checks, against a temporary state directory.
# Ends with one line: N passed, N failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${RUNBOOK:=$PWD/build/runbook}"
export NO_COLOR=1 LC_ALL=C TZ=UTC RUNBOOK_NOW=2026-01-01T00:00:00Z
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

check() {                 # check GOLDEN ARGS...
	local golden="$1"; shift
	local rc actual
	${RUNBOOK_WRAP:-} "$RUNBOOK" "$@" >"$T/out" 2>"$T/err" </dev/null
	rc=$?
	actual=$(printf '[stdout]\n%s\n[stderr]\n%s\n[exit %d]' "$(cat "$T/out")" "$(cat "$T/err")" "$rc")
	if [ "${UPDATE:-}" = 1 ]; then
		printf '%s\n' "$actual" >"$golden"
		ok
	elif [ -f "$golden" ] && [ "$actual" = "$(cat "$golden")" ]; then
		ok
	else
		bad "$golden"
		[ -f "$golden" ] && diff -u "$golden" <(printf '%s\n' "$actual") | head -n 40
	fi
}

# --- lint: each warning at its position, each silenced, exit statuses ---------------------
for f in tests/lint/*.yaml; do
	check "${f%.yaml}.out" lint "$f"
done
check tests/lint/json.golden lint --output json tests/lint/sql.yaml tests/lint/clean.yaml \
	tests/lint/invalid.yaml
check tests/lint/several.golden lint tests/lint/clean.yaml tests/lint/insecure.yaml
check tests/lint/missing.golden lint tests/lint/clean.yaml tests/lint/no-such-file.yaml
check tests/lint/usage.golden lint --output yaml tests/lint/clean.yaml

# The guides' runbooks lint clean (what they silence says why, beside the ignore).
if "$RUNBOOK" lint runbooks/*.yaml >"$T/out" 2>&1; then ok; else bad "runbooks/ do not lint clean"; cat "$T/out"; fi
# Every top-level lint ignore in runbooks/ has its reason beside it.
if grep -A8 '^lint:' runbooks/*.yaml | grep -E '^\S+-    - [a-z-]+ *$' >"$T/out"; then
	bad "an ignore without a reason:"; cat "$T/out"
else
	ok
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
