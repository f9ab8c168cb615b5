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
# A param's env gives its value when -p does not; -p wins; a bad value names the variable.
f=tests/cli/data/param_env.yaml
ev() { ${RUNBOOK_WRAP:-} "$RUNBOOK" eval -r "$f" "$@" 'params.api_url .. " " .. params.retries' 2>&1; }
out=$(ev)
[ "$out" = '"https://api.example.com 3"' ] && ok || bad "param env unset: $out"
out=$(RB_T_API_URL=http://127.0.0.1:9 RB_T_RETRIES=5 ev)
[ "$out" = '"http://127.0.0.1:9 5"' ] && ok || bad "param env set: $out"
out=$(RB_T_API_URL=http://127.0.0.1:9 ev -p api_url=http://x)
[ "$out" = '"http://x 3"' ] && ok || bad "param -p over env: $out"
out=$(RB_T_RETRIES=12 ev); rc=$?
[ $rc -eq 2 ] && grep -q "param_env.yaml:5:3: error: param 'retries' must be at most 9" <<<"$out" && ok ||
	bad "param env out of range ($rc): $out"
out=$(RB_T_RETRIES=many ev); rc=$?
[ $rc -eq 2 ] && grep -q "param_env.yaml:5:3: error: param 'retries' from \$RB_T_RETRIES: " <<<"$out" && ok ||
	bad "param env not an integer ($rc): $out"
out=$(RB_T_API_URL=http://127.0.0.1:9 ${RUNBOOK_WRAP:-} "$RUNBOOK" plan "$f" --format json 2>&1)
jq -e '.params.api_url == "http://127.0.0.1:9"' <<<"$out" >/dev/null && ok || bad "plan shows env param: $out"
printf 'runbook: x\nversion: 1\nparams:\n  a: {type: string, env: "1BAD"}\nsteps: [{id: s, lua: return 1}]\n' >"${TMPDIR:-/tmp}/rb_param_env_bad.yaml"
out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" validate "${TMPDIR:-/tmp}/rb_param_env_bad.yaml" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "rb_param_env_bad.yaml:4:26: error: invalid environment variable name '1BAD'" <<<"$out" && ok ||
	bad "param env bad name ($rc): $out"
rm -f "${TMPDIR:-/tmp}/rb_param_env_bad.yaml"
# command: ${{ EXPR }} giving a list is the argv, as a list written is: words as data.
st=$(mktemp -d)
out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" run --state-dir "$st" --output text tests/cli/data/argv_expr.yaml 2>&1)
grep -q 'from_var| \[a b\]\[c\]\[5\]' <<<"$out" && ok || bad "argv from an expression: $out"
out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" plan tests/cli/data/argv_expr.yaml 2>&1)
grep -qF 'command: ["printf","[%s]","a b","c","5"]' <<<"$out" && ok || bad "plan of an argv from an expression: $out"
out=$(RB_T_ARGV_TOKEN=s3cr3t-argv-value ${RUNBOOK_WRAP:-} "$RUNBOOK" run --state-dir "$st" tests/cli/data/argv_expr_bad.yaml 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q "table_word: failed .*argv_expr_bad.yaml:9:16: command word 2 is a table, not a string" <<<"$out" && ok ||
	bad "a table as a command word ($rc): $out"
out=$(RB_T_ARGV_TOKEN=s3cr3t-argv-value ${RUNBOOK_WRAP:-} "$RUNBOOK" run --state-dir "$st" --jobs 1 tests/cli/data/argv_expr_bad.yaml 2>&1)
grep -q "secret_word: failed .*argv_expr_bad.yaml:14:16: a secret would be in the arguments" <<<"$out" && ! grep -q s3cr3t <<<"$out" && ok ||
	bad "a secret as a command word: $out"
rm -rf "$st"
# A var made from a secret is secret in every field, also a part cut out of the secret.
st=$(mktemp -d)
out=$(RB_T_DB_URL='postgresql://app:Pw-cut-4f9a1c@db.internal/app' ${RUNBOOK_WRAP:-} "$RUNBOOK" run --state-dir "$st" --output text tests/cli/data/secret_table_var.yaml 2>&1)
grep -q 'use| password-given' <<<"$out" && ok || bad "a secret table var's field reaches the command: $out"
! grep -rq 'Pw-cut-4f9a1c' "$st" && ! grep -q 'Pw-cut-4f9a1c' <<<"$out" && ok ||
	bad "a secret table var's field is in the state or the console: $(grep -rl 'Pw-cut-4f9a1c' "$st") $out"
grep -q 'echo_it| \*\*\*' <<<"$out" && ok || bad "a secret table var's field printed is ***: $out"
rm -rf "$st"
# quiet: a step's standard output is not shown as it comes; standard error is; it is captured.
st=$(mktemp -d)
out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" run --state-dir "$st" --output text tests/cli/data/quiet.yaml 2>&1)
! grep -q 'page| ' <<<"$out" && grep -q 'page! a warning on stderr' <<<"$out" && grep -q 'loud| shown' <<<"$out" && ok ||
	bad "quiet hides only its standard output: $out"
grep -q 'items' "$st"/runs/*/audit.jsonl && ok || bad "a quiet step's output is in the log"
out=$(${RUNBOOK_WRAP:-} "$RUNBOOK" run --state-dir "$st" --output json tests/cli/data/quiet.yaml 2>&1)
jq -se 'map(select(.event == "output" and .step == "page")) | length == 1 and .[0].stream == "stderr"' <<<"$out" >/dev/null &&
	jq -se 'map(select(.event == "step_finished" and .step == "read"))[0].status == "succeeded"' <<<"$out" >/dev/null && ok ||
	bad "quiet in --output json: $out"
rm -rf "$st"
echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
