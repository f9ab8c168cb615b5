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

# --- plan --save / run --plan: apply only what was reviewed ---------------------------------
S="$T/state"
cp tests/lint/review/deploy.yaml "$T/deploy.yaml"
export REVIEW_TOKEN=s3cr3t-value REVIEW_REGION=us
rb() { ${RUNBOOK_WRAP:-} "$RUNBOOK" "$@"; }
expect() {                # expect STATUS WHAT PATTERN: the last command's status and stderr
	if [ "$rc" = "$1" ] && { [ -z "$3" ] || grep -q -- "$3" "$T/err"; }; then ok; else bad "$2 (exit $rc)"; cat "$T/err"; fi
}
rb plan --save "$T/reviewed.json" "$T/deploy.yaml" -p target=prod >/dev/null 2>"$T/err"; rc=$?
expect 0 "plan --save" ''
hash=$(jq -r .review.sha256 "$T/reviewed.json")
if [[ "$hash" =~ ^[0-9a-f]{64}$ ]]; then ok; else bad "no review.sha256 in the saved plan"; fi
# A secret's source is in the saved plan, never its value.
if grep -q REVIEW_TOKEN "$T/reviewed.json" && ! grep -q s3cr3t "$T/reviewed.json"; then ok; else bad "saved plan and the secret"; fi

# The same runbook and params: it runs, and the audit log holds the reviewed hash.
rb run --plan "$T/reviewed.json" "$T/deploy.yaml" -p target=prod --approve apply \
	--state-dir "$S" --output json >"$T/out" 2>"$T/err"; rc=$?
expect 0 "run --plan of the reviewed plan" ''
log=$(ls "$S"/runs/*/audit.jsonl | head -n 1)
if [ "$(jq -r 'select(.type == "run_started") | .plan_sha256' "$log")" = "$hash" ]; then ok; else bad "run_started has no plan_sha256 $hash"; jq -c 'select(.type == "run_started")' "$log"; fi
if [ "$(jq -r 'select(.type == "gate_approved") | .plan_sha256' "$log")" = "$hash" ]; then ok; else bad "gate_approved has no plan_sha256"; jq -c 'select(.type == "gate_approved")' "$log"; fi
if rb audit verify "$log" --state-dir "$S" >"$T/out" 2>&1; then ok; else bad "audit verify"; cat "$T/out"; fi
if ! grep -q s3cr3t "$log"; then ok; else bad "the secret's value in the audit log"; fi

# A gate passed on resume is not in this session: a run paused at the gate, then approved.
rb run --plan "$T/reviewed.json" "$T/deploy.yaml" -p target=prod --state-dir "$T/s2" \
	--output json >"$T/out" 2>"$T/err"; rc=$?
expect 3 "run --plan paused at the gate" ''
run2=$(ls "$T/s2/runs")
rb resume "$run2" --approve apply --state-dir "$T/s2" >"$T/out" 2>"$T/err"; rc=$?
expect 0 "resume --approve of the reviewed run" ''
log2="$T/s2/runs/$run2/audit.jsonl"
if [ "$(jq -r 'select(.type == "gate_approved") | .plan_sha256' "$log2")" = "$hash" ]; then ok; else bad "gate_approved on resume has no plan_sha256"; jq -c 'select(.type == "gate_approved")' "$log2"; fi

refused() {               # refused WHAT PATTERN ARGS...: exit 6, nothing started
	local what="$1" pat="$2"; shift 2
	rb run --plan "$T/reviewed.json" "$T/deploy.yaml" --state-dir "$T/s3" "$@" \
		>"$T/out" 2>"$T/err"; rc=$?
	expect 6 "$what" "$pat"
	if [ ! -d "$T/s3/runs" ] || [ -z "$(ls "$T/s3/runs")" ]; then ok; else bad "$what: a run started"; fi
}
refused "another param" "params.target differs from the reviewed plan: reviewed \"prod\", now \"qa\"" -p target=qa
REVIEW_REGION=ap refused "an env value a param reads" "params.region differs" -p target=prod
cp "$T/deploy.yaml" "$T/deploy.orig"
sed -i 's/preparing/Preparing/' "$T/deploy.yaml"
refused "a byte of the runbook" "the runbook's bytes differ from the reviewed plan's" -p target=prod
cp "$T/deploy.orig" "$T/deploy.yaml"
REVIEW_TOKEN=other rb run --plan "$T/reviewed.json" "$T/deploy.yaml" -p target=prod --dry-run \
	>"$T/out" 2>"$T/err"; rc=$?
expect 0 "another secret value is no difference (its source is the same)" ''

# Values made from the time the run starts are listed as such and not compared (their
# expressions are in the runbook's bytes); the rest still are.
timed() {                 # timed NOW ARGS...: run --plan of the timed runbook at NOW
	local now=$1; shift
	RUNBOOK_NOW=$now rb run --plan "$T/timed.json" tests/lint/review/timed.yaml \
		--state-dir "$T/s4" "$@" >"$T/out" 2>"$T/err"; rc=$?
}
RUNBOOK_NOW=2026-03-01T02:00:00Z rb plan --save "$T/timed.json" tests/lint/review/timed.yaml \
	>/dev/null 2>"$T/err"; rc=$?
expect 0 "plan --save of a runbook with values of its start time" ''
td=$(jq -c '.time_dependent' "$T/timed.json")
[ "$td" = '["vars.cutoff","steps[0].with.env.RUNBOOK_VARS_CUTOFF","steps[1].with.env.RUNBOOK_RUN_STARTED_AT"]' ] && ok ||
	bad "time_dependent: $td"
timed 2026-03-08T02:00:00Z
expect 0 "run --plan a week later" ''
grep -q 'purging what is older than 2025-12-08T02:00:00Z' "$T/out" && ok || { bad "the run's own cutoff"; cat "$T/out"; }
timed 2026-03-08T02:00:00Z -p days=30
expect 6 "run --plan with another param" "params.days differs"
jq '.time_dependent = ["vars.cutoff","steps"]' "$T/timed.json" >"$T/timed2.json"
mv "$T/timed2.json" "$T/timed.json"
timed 2026-03-08T02:00:00Z
expect 2 "a saved plan whose time_dependent was widened" "do not match its review.sha256"

# A tampered or broken plan file: an error (2), before anything runs.
jq '.params.target = "qa"' "$T/reviewed.json" >"$T/tampered.json"
rb run --plan "$T/tampered.json" "$T/deploy.yaml" -p target=qa --state-dir "$T/s3" >"$T/out" 2>"$T/err"; rc=$?
expect 2 "a tampered plan" "do not match its review.sha256"
printf '{"format": "runbook-plan", "format_version": 1, "review": {"sha256": "%s"}, "review": 1}' "$hash" >"$T/dup.json"
rb run --plan "$T/dup.json" "$T/deploy.yaml" >"$T/out" 2>"$T/err"; rc=$?
expect 2 "a duplicate key" "duplicate object key"
printf '{"format": "runbook-plan", "format_version": 1' >"$T/cut.json"
rb run --plan "$T/cut.json" "$T/deploy.yaml" >"$T/out" 2>"$T/err"; rc=$?
expect 2 "a cut plan" "cut.json:1:.*: error: not a saved plan"
echo '[1]' >"$T/list.json"
rb run --plan "$T/list.json" "$T/deploy.yaml" >"$T/out" 2>"$T/err"; rc=$?
expect 2 "not an object" "not a saved plan of this version"
jq 'del(.review)' "$T/reviewed.json" >"$T/nohash.json"
rb run --plan "$T/nohash.json" "$T/deploy.yaml" >"$T/out" 2>"$T/err"; rc=$?
expect 2 "no hash" "has no review.sha256"
head -c $((16 * 1024 * 1024 + 1)) /dev/zero >"$T/big.json"
rb run --plan "$T/big.json" "$T/deploy.yaml" >"$T/out" 2>"$T/err"; rc=$?
expect 2 "a plan over the size limit" "big.json: error: larger than 16 MiB"
rb run --plan "$T/missing.json" "$T/deploy.yaml" >"$T/out" 2>"$T/err"; rc=$?
expect 2 "a missing plan" "missing.json: error"

echo "lint: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
