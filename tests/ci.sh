#!/usr/bin/env bash
# docs/ci.md's pull-request workflow, as printed there: its review script run in a real git
# repository of two branches made here, and its workflow files parsed as YAML.
set -uo pipefail
: "${RUNBOOK:?}"
cd "$(dirname "$0")/.."
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# The blocks that follow a marker comment in docs/ci.md.
block() {                 # block MARKER: the fenced block after the line that starts with MARKER
	awk -v m="$1" 'index($0, m) == 1 { found = 1; next }
		found && /^```/ { if (inside) exit; inside = 1; next }
		inside { print }' docs/ci.md
}
block '<!-- review-runbooks.sh' >"$T/review-runbooks.sh"
block '<!-- runbooks.yml' >"$T/runbooks.yml"
[ -s "$T/review-runbooks.sh" ] && ok || bad "docs/ci.md: no review-runbooks.sh block"

# The workflow is YAML, checks out the whole history and runs the script, then posts its
# comments in order.
if python3 - "$T/runbooks.yml" <<'EOF'
import sys, yaml
w = yaml.safe_load(open(sys.argv[1]))
steps = w["jobs"]["review"]["steps"]
assert w["permissions"]["pull-requests"] == "write"
assert steps[0]["with"]["fetch-depth"] == 0
runs = "\n".join(s.get("run", "") for s in steps)
assert 'bash ci/review-runbooks.sh "origin/$GITHUB_BASE_REF" plan-review' in runs
assert "done <plan-review/comments.txt" in runs and "gh pr comment" in runs
EOF
then ok; else bad "docs/ci.md: the GitHub Actions workflow"; fi
awk '/^review-runbooks:/ { on = 1 } on && /^```/ { exit } on { print }' docs/ci.md >"$T/gitlab.yml"
if python3 -c 'import sys, yaml; j = yaml.safe_load(open(sys.argv[1]))["review-runbooks"]; assert any("review-runbooks.sh" in s for s in j["script"])' "$T/gitlab.yml"; then
	ok
else
	bad "docs/ci.md: the GitLab job"
fi

# runbook on PATH, as CI installs it (under a wrapper when there is one).
mkdir -p "$T/bin"
printf '#!/bin/sh\nexec %s %q "$@"\n' "${RUNBOOK_WRAP:-}" "$(realpath "$RUNBOOK")" >"$T/bin/runbook"
chmod +x "$T/bin/runbook"
export PATH="$T/bin:$PATH"

# The repository: main with four runbooks, then a branch.
R="$T/repo"
git init -q -b main "$R"
g() { git -C "$R" -c user.name=ci -c user.email=ci@example.com "$@"; }
mkdir -p "$R/runbooks" "$R/ci"
cp "$T/review-runbooks.sh" "$R/ci/review-runbooks.sh"
cat >"$R/runbooks/purge.yaml" <<'EOF'
runbook: purge
version: 1
defaults: {timeout: 1m}
secrets:
  db: {env: DATABASE_URL}
steps:
  - id: purge
    approve: Purge the expired sessions?
    action: pg.exec
    with:
      conn: ${{ secrets.db }}
      sql: DELETE FROM sessions WHERE expires_at < now()
EOF
cat >"$R/runbooks/same.yaml" <<'EOF'
runbook: same
version: 1
steps:
  - id: hello
    run: echo hello
EOF
cat >"$R/runbooks/old.yaml" <<'EOF'
runbook: old
version: 1
steps:
  - id: bye
    run: echo bye
EOF
cat >"$R/runbooks/deploy.yaml" <<'EOF'
runbook: deploy
version: 1
params:
  env: {type: string, required: true}
steps:
  - id: deploy
    run: echo "deploying ${{ params.env }}"
EOF
echo "env=staging" >"$R/runbooks/deploy.params"
g add -A && g commit -qm "the runbooks"
g checkout -q -b change
# The branch: the gate removed (destructive), a comment only, a runbook removed, one added,
# the deploy changed.
sed -i '/approve:/d' "$R/runbooks/purge.yaml"
sed -i '1i # a comment changes no plan' "$R/runbooks/same.yaml"
g rm -q runbooks/old.yaml
cat >"$R/runbooks/new.yaml" <<'EOF'
runbook: new
version: 1
steps:
  - id: check
    run: echo check
EOF
sed -i 's/deploying/Deploying/' "$R/runbooks/deploy.yaml"
g add -A && g commit -qm "the change"
# ... and main moves on after the branch left it: not the branch's change.
g checkout -q main
sed -i 's/hello/hello, world/' "$R/runbooks/same.yaml"
g commit -qam "main moves on"
g checkout -q change

review() {                # review BASE: run the script in the repository; $rc, $R/out, $R/err
	(cd "$R" && bash ci/review-runbooks.sh "$1" review >"$R/out" 2>"$R/err"); rc=$?
}
review main
[ "$rc" = 1 ] && ok || { bad "changes: exit $rc, not 1"; cat "$R/out" "$R/err"; }
n=$(wc -l <"$R/review/comments.txt")
[ "$n" = 4 ] && ok || { bad "4 comments (purge, old, new, deploy), not $n"; cat "$R/review/comments.txt"; }
all=$(cd "$R" && cat $(cat review/comments.txt))
grep -q 'its approval gate is removed' <<<"$all" && ok || bad "the removed gate is not shown"
grep -q '## Plan diff: `purge`' <<<"$all" && ok || bad "no comment for purge"
grep -q 'the runbook is removed' <<<"$all" && ok || bad "the removed runbook is not shown"
grep -q 'a new runbook' <<<"$all" && ok || bad "the added runbook is not shown"
grep -q 'Deploying' <<<"$all" && ok || bad "the deploy's change is not shown (its params from deploy.params)"
! grep -q 'same' <<<"$all" && ok || bad "a comment-only change, or main's later change, is shown"
# The destructive change comes before the details, in the first lines of its comment.
purge=$(cd "$R" && grep -l '`purge`' $(cat review/comments.txt) | head -n 1)
awk '/Destructive changes/ { d = NR } /<details>/ && !s { s = NR } END { exit !(d && d < s) }' \
	"$R/$purge" && ok || bad "the destructive changes are not at the top"

# A lint warning fails the review (2), at its position; so does an invalid runbook.
cat >>"$R/runbooks/new.yaml" <<'EOF'
  - id: wipe
    action: redis.command
    with: {url: "redis://127.0.0.1:6379/0", command: [FLUSHALL]}
EOF
review main
[ "$rc" = 2 ] && ok || bad "a lint warning: exit $rc, not 2"
grep -q 'runbooks/new.yaml:[0-9]*:[0-9]*: warning: .*\[redis-flush\]' "$R/out" "$R/err" && ok ||
	{ bad "the lint warning and its position"; cat "$R/out" "$R/err"; }
printf 'steps: [\n' >"$R/runbooks/new.yaml"
review main
[ "$rc" = 2 ] && ok || bad "an invalid runbook: exit $rc, not 2"
grep -q 'runbooks/new.yaml:[0-9]*:[0-9]*: error: ' "$R/err" && ok || { bad "the error and its position"; cat "$R/err"; }

# Nothing changed since the base: 0 and no comment.
g checkout -q -- runbooks/new.yaml 2>/dev/null
review HEAD
[ "$rc" = 0 ] && ok || { bad "no change: exit $rc, not 0"; cat "$R/out" "$R/err"; }
[ ! -s "$R/review/comments.txt" ] && ok || bad "no change: comments were written"
# A base git does not know: 2.
review no-such-branch
[ "$rc" = 2 ] && ok || bad "an unknown base: exit $rc, not 2"

echo "ci: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
