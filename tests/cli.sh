#!/usr/bin/env bash
# Command-line checks whose output depends on the machine (library versions),
# so they cannot be golden files.
set -uo pipefail
: "${RUNBOOK:?}"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" --version)
grep -q '^runbook [0-9][0-9.]*$' <<<"$(head -n 1 <<<"$out")" && ok || bad "--version first line: $out"
for lib in libyaml Lua libcurl OpenSSL jansson libpq hiredis; do
	grep -q "$lib [0-9]" <<<"$out" && ok || bad "--version does not name $lib: $out"
done
# The build links all seven libraries, also those no code calls yet.
linked=$(ldd "$RUNBOOK")
for so in libyaml liblua5.4 libcurl libssl libcrypto libjansson libpq libhiredis; do
	grep -q "$so" <<<"$linked" && ok || bad "$RUNBOOK is not linked with $so"
done
# '-' reads the runbook from standard input.
out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" validate - <tests/valid/v_minimal.yaml 2>&1)
[ "$out" = "-: ok (1 step)" ] && ok || bad "validate - : $out"
echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
