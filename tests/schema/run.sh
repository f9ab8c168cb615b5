#!/usr/bin/env bash
# Checks schema/runbook.schema.json with ajv-cli:
#   - the schema compiles in ajv's strict mode (draft 2020-12);
#   - every runbook that is valid (runbooks/, tests/valid/, tests/cli/data/, tests/expr/, tests/exec/, tests/canary/,
#     tests/redis/, http/, pg/, notify/, crypto/) is valid;
#   - every file listed in tests/schema/reject.list is rejected by the schema AND refused by
#     `build/runbook validate` (exit status 2).
# One line per failure, then `schema: N passed, N failed`; exit status 1 if anything failed.
# Run from the repository root: tests/schema/run.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

SCHEMA=schema/runbook.schema.json
REJECT_LIST=tests/schema/reject.list
RUNBOOK="${RUNBOOK:-build/runbook}"
NODE_PREFIX=build/node
AJV="$NODE_PREFIX/node_modules/.bin/ajv"
AJV_OPTS=(--spec=draft2020 --strict=true -c ajv-formats)

# --- ajv-cli --------------------------------------------------------------------------------
if [[ ! -x "$AJV" || ! -f "$NODE_PREFIX/node_modules/ajv-cli/package.json" ||
      ! -f "$NODE_PREFIX/node_modules/ajv-formats/package.json" ]]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "schema: npm is missing: install Node.js and npm (needed for ajv-cli) to run the schema tests" >&2
        exit 1
    fi
    echo "schema: installing ajv-cli@5 and ajv-formats@3 into $NODE_PREFIX" >&2
    mkdir -p "$NODE_PREFIX"
    if ! npm install --prefix "$NODE_PREFIX" --no-audit --no-fund ajv-cli@5 ajv-formats@3 >&2; then
        echo "schema: npm install of ajv-cli@5 and ajv-formats@3 failed" >&2
        exit 1
    fi
fi
if ! command -v node >/dev/null 2>&1; then
    echo "schema: node is missing: install Node.js to run the schema tests" >&2
    exit 1
fi

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "schema: FAIL $*"; }
summary() { echo "schema: $passed passed, $failed failed"; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# --- 1. the schema compiles in strict mode ---------------------------------------------------
if "$AJV" compile "${AJV_OPTS[@]}" -s "$SCHEMA" >"$TMP/compile" 2>&1; then
    pass
else
    fail "$SCHEMA: does not compile in strict mode: $(grep -v 'is invalid$' "$TMP/compile" | tr '\n' ' ')"
    summary
    exit 1
fi

# verdict FILE...: validates the files with one ajv run and writes "STATUS<TAB>FILE<TAB>DETAIL"
# lines to stdout, STATUS being valid, invalid or error (ajv could not read the file). A file
# ajv cannot read stops ajv-cli altogether, so the files without a verdict are run one by one.
verdict() {
    (($# > 0)) || return 0
    local args=() f out rc
    for f in "$@"; do args+=(-d "$f"); done
    "$AJV" validate "${AJV_OPTS[@]}" -s "$SCHEMA" --errors=text "${args[@]}" >"$TMP/batch" 2>&1 || true
    for f in "$@"; do
        if grep -Fxq -- "$f valid" "$TMP/batch"; then
            printf 'valid\t%s\t\n' "$f"
        elif grep -Fxq -- "$f invalid" "$TMP/batch"; then
            printf 'invalid\t%s\t%s\n' "$f" "$(grep -Fx -A1 -- "$f invalid" "$TMP/batch" | sed -n 2p)"
        else
            rc=0
            out=$("$AJV" validate "${AJV_OPTS[@]}" -s "$SCHEMA" --errors=text -d "$f" 2>&1) || rc=$?
            case $rc in
                0) printf 'valid\t%s\t\n' "$f" ;;
                1) printf 'invalid\t%s\t%s\n' "$f" "$(printf '%s\n' "$out" | grep -Fvx -- "$f invalid" | head -n 1)" ;;
                *) printf 'error\t%s\t%s\n' "$f" "$(printf '%s\n' "$out" | tr '\n' ' ')" ;;
            esac
        fi
    done
}

# --- 2. valid runbooks -----------------------------------------------------------------------
shopt -s nullglob
valid_files=(runbooks/*.yaml tests/valid/*.yaml tests/cli/data/*.yaml tests/expr/*.yaml tests/exec/*.yaml tests/canary/*.yaml
             tests/redis/*.yaml tests/http/*.yaml tests/pg/*.yaml tests/notify/*.yaml tests/crypto/*.yaml)
shopt -u nullglob

while IFS=$'\t' read -r status file detail; do
    case $status in
        valid) pass ;;
        invalid) fail "$file: valid runbook rejected by the schema: $detail" ;;
        *) fail "$file: ajv could not read it: $detail" ;;
    esac
done < <(verdict "${valid_files[@]}")

# --- 3. runbooks the schema and `runbook validate` must reject --------------------------------
reject_files=()
if [[ -f "$REJECT_LIST" ]]; then
    while IFS= read -r line || [[ -n "$line" ]]; do
        line=${line%%#*}
        line=${line#"${line%%[![:space:]]*}"}
        line=${line%"${line##*[![:space:]]}"}
        [[ -n "$line" ]] && reject_files+=("$line")
    done <"$REJECT_LIST"
else
    fail "$REJECT_LIST: missing"
fi

have_runbook=1
if [[ ! -x "$RUNBOOK" ]]; then
    have_runbook=0
    echo "schema: $RUNBOOK missing"
    failed=$((failed + 1))
fi

existing=()
for f in ${reject_files[@]+"${reject_files[@]}"}; do
    if [[ -f "$f" ]]; then existing+=("$f"); else fail "$f: listed in $REJECT_LIST but missing"; fi
done

while IFS=$'\t' read -r status file detail; do
    problems=()
    case $status in
        invalid) ;;
        valid) problems+=("the schema accepts it") ;;
        *) problems+=("ajv could not read it: $detail") ;;
    esac
    if ((have_runbook)); then
        rc=0
        if command -v timeout >/dev/null 2>&1; then
            timeout 30 "$RUNBOOK" validate "$file" >/dev/null 2>&1 || rc=$?
        else
            "$RUNBOOK" validate "$file" >/dev/null 2>&1 || rc=$?
        fi
        ((rc == 2)) || problems+=("$RUNBOOK validate exits with $rc, not 2")
    fi
    if ((${#problems[@]} == 0)); then
        pass
    else
        detail=$(printf '%s; ' "${problems[@]}")
        fail "$file: invalid runbook not refused: ${detail%; }"
    fi
done < <(verdict ${existing[@]+"${existing[@]}"})

summary
((failed == 0))
