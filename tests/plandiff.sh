#!/usr/bin/env bash
# runbook plan --diff OLD NEW and --base REV FILE (docs/cli.md, "Comparing two plans").
#   tests/plandiff/NAME.old.yaml, NAME.new.yaml (and NAME.args: more arguments) -> the
#   diff in each format, expected in NAME.text.out, NAME.json.out, NAME.markdown.out
#   (as tests/golden.sh: "[stdout]", "[stderr]", "[exit N]"); UPDATE=1 rewrites them.
# Then what each case must find (destructive kinds, renames, order), the exit statuses
# (0 no change, 1 changes, 2 error), --base in a real two-commit git repository,
# --split of a long diff, and every runbook of runbooks/ against itself.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${RUNBOOK:?}"
case $RUNBOOK in /*) ;; *) RUNBOOK=$PWD/$RUNBOOK ;; esac
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rb() { ${RUNBOOK_WRAP:-} "$RUNBOOK" "$@"; }
# Secret values in the environment never reach a diff (a plan never reads them).
export DATABASE_URL='postgres://app:hunter2-s3cret@db/app' REDIS_URL='redis://:hunter2-s3cret@r'
export SLACK_WEBHOOK_URL='https://hooks.example.com/hunter2-s3cret'

golden() {                # golden FILE ARGS...: run in tests/plandiff, compare with FILE
	local g="$1" out err rc actual
	shift
	out=$(cd tests/plandiff && rb "$@" 2>"$tmp/err" </dev/null)
	rc=$?
	actual=$(printf '[stdout]\n%s\n[stderr]\n%s\n[exit %d]' "$out" "$(cat "$tmp/err")" "$rc")
	if [[ "$actual" == *hunter2* ]]; then
		bad "$g: a secret's value in the output"
	fi
	if [ "${UPDATE:-}" = 1 ]; then
		printf '%s\n' "$actual" >"$g"
		ok
	elif [ -f "$g" ] && [ "$actual" = "$(cat "$g")" ]; then
		ok
	else
		bad "$g"
		if [ -f "$g" ]; then
			diff -u "$g" <(printf '%s\n' "$actual") | head -n 40
		else
			echo "  (no golden file; run with UPDATE=1 and review it)"
		fi
	fi
}

# --- the goldens: every kind of change, in the three formats -----------------------
for old in tests/plandiff/*.old.yaml; do
	name=$(basename "${old%.old.yaml}")
	args=()
	[ -f "tests/plandiff/$name.args" ] && read -ra args <"tests/plandiff/$name.args"
	for fmt in text json markdown; do
		golden "tests/plandiff/$name.$fmt.out" plan --diff "$name.old.yaml" "$name.new.yaml" \
			--format "$fmt" "${args[@]}"
	done
done

# --- what each case must find --------------------------------------------------------
json() {                  # json NAME: the JSON diff of a case
	local args=()
	[ -f "tests/plandiff/$1.args" ] && read -ra args <"tests/plandiff/$1.args"
	(cd tests/plandiff && rb plan --diff "$1.old.yaml" "$1.new.yaml" --format json "${args[@]}")
}
expect() {                # expect NAME JQ WANT
	local got
	got=$(json "$1" | jq -c "$2")
	[ "$got" = "$3" ] && ok || bad "$1: $2 gave $got, expected $3"
}
kinds='[.destructive[].what] | unique'
expect added "$kinds" '["side_effects"]'
expect added '[.steps[] | [.change, .id]]' '[["added","restart"]]'
expect removed '[.steps[] | [.change, .id]]' '[["removed","verify"]]'
expect removed "$kinds" '[]'
expect renamed '[.steps[] | select(.renamed_from) | [.renamed_from, .id]]' '[["count","health"]]'
expect renamed '.summary | [.renamed, .added, .removed]' '[1,0,0]'
expect reorder '.summary | [.changed, .added, .removed, .renamed, .reordered, .settings]' \
	'[0,0,0,0,1,0]'
expect reorder '[.steps[] | [.id, .moved.after]]' '[["clean_tmp",null]]'
expect action '[.steps[] | select(.id == "ping") | .fields[].path | join(".")] | .[:2]' \
	'["action","form"]'
expect condition '[.steps[].fields[] | select(.path == ["if"]) | .new.expression]' \
	'["params.env == \"staging\"","params.env ~= \"dev\""]'
expect foreach "$kinds" '["for_each_wider"]'
expect foreach '[.destructive[] | select(.step == "restart") | .value] | .[0]' '["web3","web4"]'
expect retry "$kinds" '["retry_removed","timeout_removed"]'
expect gate "$kinds" '["gate_conditional","gate_removed"]'
expect undo "$kinds" '["check_removed","undo_removed"]'
expect needs '[.steps[].fields[] | [.path[0], .old, .new]]' '[["needs",["migrate"],["stop"]]]'
expect settings "$kinds" '["lock_removed","rollback_off","window_removed"]'
expect settings '[.settings[].path[1]]' '["description","lock","schedule","window","timeout","rollback"]'
expect values '[.settings[] | select(.path[0] == "secrets") | [.path[1], .old.source, .new.source]]' \
	'[["db_url","DATABASE_URL","/run/secrets/db_url"],["api_token","/run/secrets/api_token",null],["slack",null,"SLACK_WEBHOOK_URL"]]'
expect sideeffects "$kinds" '["side_effects"]'
expect sql '[.destructive[] | [.what, .value]]' \
	'[["sql","DELETE FROM sessions"],["sql","TRUNCATE audit_log"],["sql","DROP TABLE IF EXISTS sessions_2024"],["sql","FLUSHALL"]]'
expect sql '[.destructive[0].text]' '["SQL that deletes without WHERE"]'
expect onfailure '[.steps[] | [.change, .id, .section]]' \
	'[["changed","page","on_failure"],["added","rollback","on_failure"]]'
expect same '[.changed, .summary.text]' '[false,"no changes"]'
expect params '[.settings[] | [.path[1], .new]]' '[["replicas",3]]'

# The summary line comes first, then the destructive changes, then the details.
md=$(cd tests/plandiff && rb plan --diff gate.old.yaml gate.new.yaml --format markdown)
[ "$(sed -n 3p <<<"$md")" = '**3 steps changed, 1 added, 0 removed, 1 reordered; 2 destructive changes**' ] &&
	ok || bad "markdown: the summary is not line 3: $(sed -n 3p <<<"$md")"
d=$(grep -n '^### Destructive changes' <<<"$md" | cut -d: -f1)
s=$(grep -n '^<details>' <<<"$md" | head -n 1 | cut -d: -f1)
[ -n "$d" ] && [ -n "$s" ] && [ "$d" -lt "$s" ] && ok || bad "markdown: destructive changes not before the details"
[ "$(grep -c '^<details>' <<<"$md")" = "$(grep -c '^</details>' <<<"$md")" ] && ok ||
	bad "markdown: a <details> left open"

# --- exit statuses and errors ----------------------------------------------------------
status() {                # status WANT GREP ARGS...: the exit status, and GREP on stderr (-: empty)
	local want="$1" pat="$2" rc
	shift 2
	(cd tests/plandiff && rb "$@" >"$tmp/out" 2>"$tmp/err")
	rc=$?
	if [ "$rc" = "$want" ] && { [ "$pat" = - ] && [ ! -s "$tmp/err" ] || grep -qE -- "$pat" "$tmp/err"; }; then
		ok
	else
		bad "runbook $*: exit $rc (expected $want), stderr: $(head -c 300 "$tmp/err")"
	fi
}
printf 'runbook: broken\nversion: 1\nsteps:\n  - id: a\n    run: echo\n    retires: 3\n' \
	>"$tmp/broken.yaml"
status 2 "^$tmp/broken.yaml:6:5: error: unknown step key 'retires'" plan --diff same.old.yaml "$tmp/broken.yaml"
status 2 "^$tmp/broken.yaml:6:5: error: " plan --diff "$tmp/broken.yaml" same.new.yaml
status 2 "^nosuch.yaml: error: " plan --diff nosuch.yaml same.new.yaml
status 2 'plan: --diff takes two files' plan --diff same.old.yaml
status 2 'plan: --diff takes two files' plan --diff a.yaml b.yaml c.yaml
status 2 "unknown format 'yaml'" plan --diff same.old.yaml same.new.yaml --format yaml
status 2 'plan: --split needs --format markdown' plan --diff same.old.yaml same.new.yaml --split "$tmp/x"
status 2 "plan: --max-bytes: '100' is not a number of bytes" plan --diff same.old.yaml \
	same.new.yaml --format markdown --split "$tmp/x" --max-bytes 100
status 2 'plan: --split and --max-bytes go with --diff or --base' plan same.old.yaml --split "$tmp/x"
status 2 "unknown param 'nope'" plan --diff same.old.yaml same.new.yaml -p nope=1
status 2 "param 'replicas' is required" plan --diff params.old.yaml params.new.yaml -p app=api
status 2 'plan: one file at a time' plan same.old.yaml same.new.yaml
status 0 - plan --diff same.old.yaml same.new.yaml
[ "$(cat "$tmp/out")" = "$(printf 'plan diff: same.old.yaml -> same.new.yaml\nno changes')" ] && ok ||
	bad "no change: $(cat "$tmp/out")"
status 1 - plan --diff reorder.old.yaml reorder.new.yaml

# --- --base in a real git repository -------------------------------------------------------
repo=$tmp/repo
mkdir -p "$repo/ops"
g() { git -C "$repo" -c user.name=test -c user.email=test@example.com "$@" >/dev/null 2>&1; }
g init -q
cp tests/plandiff/gate.old.yaml "$repo/ops/maint.yaml"
g add ops/maint.yaml && g commit -qm one
cp tests/plandiff/gate.new.yaml "$repo/ops/maint.yaml"
cp tests/plandiff/added.new.yaml "$repo/ops/new.yaml"
g add ops && g commit -qm two
base() {                  # base DIR ARGS...: runbook plan --base ... run in DIR
	local dir="$1"
	shift
	(cd "$dir" && rb plan "$@" 2>"$tmp/err")
}
out=$(base "$repo" --base HEAD~1 ops/maint.yaml)
rc=$?
want=$(cd tests/plandiff && rb plan --diff gate.old.yaml gate.new.yaml | tail -n +2)
[ "$rc" = 1 ] && [ "$(tail -n +2 <<<"$out")" = "$want" ] && ok ||
	bad "--base HEAD~1: exit $rc, not the diff of the two files: $out $(cat "$tmp/err")"
[ "$(head -n 1 <<<"$out")" = 'plan diff: HEAD~1:ops/maint.yaml -> ops/maint.yaml' ] && ok ||
	bad "--base: the old side is not named REV:PATH: $(head -n 1 <<<"$out")"
# from a subdirectory: the path is made relative to the repository's top
out=$(base "$repo/ops" --base HEAD~1 maint.yaml --format json | jq -c '[.old.file, .new.file]')
[ "$out" = '["HEAD~1:ops/maint.yaml","maint.yaml"]' ] && ok || bad "--base from ops/: $out $(cat "$tmp/err")"
out=$(base "$repo" --base HEAD ops/maint.yaml)
rc=$?
[ "$rc" = 0 ] && [ "$(tail -n 1 <<<"$out")" = 'no changes' ] && ok || bad "--base HEAD: exit $rc: $out"
# a file that is not there at REV is new: every step added
out=$(base "$repo" --base HEAD~1 ops/new.yaml --format json)
rc=$?
[ "$rc" = 1 ] && [ "$(jq -c '[.old, .summary.added, .summary.text]' <<<"$out")" = \
	'[null,2,"a new runbook: 0 steps changed, 2 added, 0 removed; 1 destructive change"]' ] &&
	ok || bad "--base, a new file: exit $rc: $out $(cat "$tmp/err")"
# ... in every format: the side that is not there is "(none)"
out=$(base "$repo" --base HEAD~1 ops/new.yaml)
rc=$?
[ "$rc" = 1 ] && [ "$(head -n 1 <<<"$out")" = 'plan diff: (none) -> ops/new.yaml' ] && ok ||
	bad "--base, a new file, text: exit $rc: $out $(cat "$tmp/err")"
out=$(base "$repo" --base HEAD~1 ops/new.yaml --format markdown)
rc=$?
[ "$rc" = 1 ] && grep -q '^(none) → `ops/new.yaml`' <<<"$out" && ok ||
	bad "--base, a new file, markdown: exit $rc: $out $(cat "$tmp/err")"
# a change in the working tree, and a file removed from it
sed -i 's/echo maintenance/echo "maintenance at 02:00"/' "$repo/ops/maint.yaml"
out=$(base "$repo" --base HEAD ops/maint.yaml --format json | jq -c '[.steps[] | .id]')
[ "$out" = '["announce"]' ] && ok || bad "--base HEAD, a change not committed: $out"
g rm -q ops/new.yaml
out=$(base "$repo" --base HEAD ops/new.yaml --format json)
rc=$?
[ "$rc" = 1 ] && [ "$(jq -c '[.new, .summary.removed]' <<<"$out")" = '[null,2]' ] && ok ||
	bad "--base, a file removed: exit $rc: $out $(cat "$tmp/err")"
for fmt in text markdown; do
	out=$(base "$repo" --base HEAD ops/new.yaml --format $fmt)
	rc=$?
	[ "$rc" = 1 ] && grep -q 'the runbook is removed' <<<"$out" && grep -q '(none)$' <<<"$out" && ok ||
		bad "--base, a file removed, $fmt: exit $rc: $out $(cat "$tmp/err")"
done
base "$repo" --base HEAD~1 ops/nothing.yaml >/dev/null
rc=$?
[ "$rc" = 2 ] && grep -q 'neither in the working tree nor at HEAD~1' "$tmp/err" && ok ||
	bad "--base, a file in neither: exit $rc: $(cat "$tmp/err")"
base "$repo" --base no-such-rev ops/maint.yaml >/dev/null
rc=$?
[ "$rc" = 2 ] && grep -q "'no-such-rev' is not a commit" "$tmp/err" && ok ||
	bad "--base, an unknown revision: exit $rc: $(cat "$tmp/err")"
base "$repo" --base --output ops/maint.yaml >/dev/null
[ $? = 2 ] && grep -q "'--output' is not a revision" "$tmp/err" && ok ||
	bad "--base, an option as the revision: $(cat "$tmp/err")"
mkdir -p "$tmp/norepo"
cp tests/plandiff/same.old.yaml "$tmp/norepo/x.yaml"
GIT_CEILING_DIRECTORIES=$tmp base "$tmp/norepo" --base HEAD x.yaml >/dev/null
[ $? = 2 ] && grep -q 'cannot find the git repository of x.yaml' "$tmp/err" && ok ||
	bad "--base outside a repository: $(cat "$tmp/err")"
# an invalid runbook at REV: its errors at REV:PATH:LINE:COL, exit 2
cp "$tmp/broken.yaml" "$repo/ops/broken.yaml"
g add ops/broken.yaml && g commit -qm broken
cp tests/plandiff/same.old.yaml "$repo/ops/broken.yaml"
base "$repo" --base HEAD ops/broken.yaml >/dev/null
[ $? = 2 ] && grep -q "^HEAD:ops/broken.yaml:6:5: error: unknown step key 'retires'" "$tmp/err" &&
	ok || bad "--base, invalid at REV: $(cat "$tmp/err")"

# --- --split: a long diff in parts, a code block across each cut ----------------------------
{
	printf 'runbook: big\nversion: 1\nredact:\n  patterns: {token: "QXJ-[QXJ]{12}"}\n'
	printf 'secrets:\n  db: {env: DATABASE_URL}\nsteps:\n'
	printf '  - id: hello\n    run: echo hello\n'
} >"$tmp/big.old.yaml"
{
	cat "$tmp/big.old.yaml"
	printf '  - id: backfill\n    action: pg.exec\n    with:\n      conn: ${{ secrets.db }}\n'
	printf '      sql: |\n'
	for i in $(seq -w 1 150); do
		printf '        UPDATE accounts SET tier = %s WHERE id = %s; -- QXJ-QXJQXJQXJQXJ\n' "$i" "$i"
	done
	printf '        DELETE FROM accounts_%s;\n' old
	# one line longer than a part: cut inside its fence, never inside a token
	printf '  - id: tokens\n    run: echo'
	for i in $(seq 1 200); do printf ' QXJ-QXJQXJQXJQXJ'; done
	printf '\n'
} >"$tmp/big.new.yaml"
whole=$(rb plan --diff "$tmp/big.old.yaml" "$tmp/big.new.yaml" --format markdown)
parts=$(rb plan --diff "$tmp/big.old.yaml" "$tmp/big.new.yaml" --format markdown \
	--split "$tmp/parts" --max-bytes 1500)
rc=$?
n=$(ls "$tmp/parts" | wc -l)
[ "$rc" = 1 ] && [ "$n" -gt 5 ] && [ "$parts" = "$(for i in $(seq 1 "$n"); do echo "$tmp/parts/part-$i.md"; done)" ] &&
	ok || bad "--split: exit $rc, $n parts, printed: $parts"
nbad=0
for i in $(seq 1 "$n"); do
	f=$tmp/parts/part-$i.md
	[ "$(wc -c <"$f")" -le 1500 ] || { nbad=$((nbad + 1)); echo "  part $i: $(wc -c <"$f") bytes"; }
	grep -q 'QXJ' "$f" && { nbad=$((nbad + 1)); echo "  part $i: holds what the pattern hides"; }
	# every fence closed, every <details> closed, in the part itself
	awk '/^ *```/ {
		line = $0; sub(/^ */, "", line); indent = length($0) - length(line)
		run = line; sub(/[^`].*$/, "", run)
		if (indent > 3) next
		if (!open) { open = 1; len = length(run) }
		else if (length(run) >= len && line ~ /^`+ *$/) open = 0
	} END { exit open }' "$f" || { nbad=$((nbad + 1)); echo "  part $i: a fence left open"; }
	[ "$(grep -c '^<details>' "$f")" = "$(grep -c '^</details>' "$f")" ] ||
		{ nbad=$((nbad + 1)); echo "  part $i: a <details> left open"; }
	if [ "$i" -gt 1 ]; then
		[ "$(head -n 1 "$f")" = "<sub>part $i of $n</sub>" ] || { nbad=$((nbad + 1)); echo "  part $i: no header"; }
	fi
	if [ "$i" -lt "$n" ]; then
		[ "$(tail -n 1 "$f")" = "<sub>continued in part $((i + 1)) of $n</sub>" ] ||
			{ nbad=$((nbad + 1)); echo "  part $i: no footer"; }
	fi
done
[ "$nbad" = 0 ] && ok || bad "--split: $nbad problems in the parts"
grep -q '<token>' "$tmp/parts/part-1.md" "$tmp/parts/part-$n.md" && ok || bad "--split: the pattern's placeholder is missing"
# A fence open at a cut is opened again at the top of the next part.
reopened=0
for i in $(seq 2 "$n"); do
	sed -n 5p "$tmp/parts/part-$i.md" | grep -q '^  ```' && reopened=$((reopened + 1))
done
[ "$reopened" -gt 2 ] && ok || bad "--split: no part starts inside a reopened fence ($reopened)"
# Nothing lost nor repeated: the text without the lines a split adds (fences, details,
# markers, blank lines) and without line ends (a line cut in a fence) is the whole's.
content() { grep -vE '^( {0,3}```|<details>|</details>|<sub>|$)' | tr -d '\n'; }
[ "$(content <<<"$whole")" = "$(cat "$tmp/parts"/part-{1..99}.md 2>/dev/null | content)" ] && ok ||
	bad "--split: the parts do not hold the whole diff"
# The default limit holds this diff in one part; the parts of the last split are removed.
rb plan --diff "$tmp/big.old.yaml" "$tmp/big.new.yaml" --format markdown --split "$tmp/parts" >/dev/null
[ "$(ls "$tmp/parts")" = part-1.md ] && [ "$(cat "$tmp/parts/part-1.md")" = "$whole" ] && ok ||
	bad "--split with the default limit: $(ls "$tmp/parts")"

# --- the runbooks of runbooks/ against themselves: no change --------------------------------
declare -A need=(
	[incident-investigation]='-p severity=P2 -p impact=none'
	[rollback]='-p app=api' [rolling-update]='-p app=api -p image_tag=2.4.0'
)
for f in runbooks/*.yaml; do
	n=$(basename "$f" .yaml)
	read -ra extra <<<"${need[$n]:-}"
	out=$(rb plan --diff "$f" "$f" "${extra[@]}" 2>&1)
	rc=$?
	[ "$rc" = 0 ] && [ "$(tail -n 1 <<<"$out")" = 'no changes' ] && ok || bad "$f against itself: exit $rc: $out"
done

echo "plandiff: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
