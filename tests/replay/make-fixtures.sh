#!/usr/bin/env bash
# Makes the logs tests/replay.sh replays, by real runs of the runbooks here,
# signed with the test key key.pem, and copies each run's audit.jsonl and
# snapshot.json to fixtures/NAME/.  Run it again only when the engine's records
# change, then `UPDATE=1 bash tests/replay.sh` and review the goldens' diff:
# times, run ids and pids differ with every run.
#   RUNBOOK=build/runbook bash tests/replay/make-fixtures.sh
#
#   plain    a for_each, a retry, a failing continue_on_error step, named
#            outputs, a step skipped by its condition
#   crash    SIGKILL while `migrate` runs, a torn tail added as a crash in a
#            write leaves it, then resume --rerun migrate (which repairs it)
#   gate     paused at an approval gate (exit 3), then resume --approve
#   shared   two runs of gate.yaml in one --audit-log (no run directory)
#   failed   a run that fails before its last steps (failed.yaml)
# Names as arguments make only those fixtures (the others stay as committed).
set -euo pipefail
unset RUNBOOK_NOW                # the times of real runs
only=" ${*:-plain crash gate shared failed} "
want() { [[ "$only" == *" $1 "* ]]; }
cd "$(dirname "$0")/../.."
: "${RUNBOOK:=build/runbook}"
here=tests/replay
# A fixed directory, so that the params the goldens show do not change.
work=/tmp/runbook-replay-fixtures
rm -rf "$work" && mkdir -p "$work"
# A private key must be 0600 to sign (git checks it out 0644).
key=$work/key.pem
install -m 600 $here/key.pem "$key"
state=$work/state
rb() { "$RUNBOOK" "$@" --state-dir "$state" --audit-key "$key" --output text </dev/null; }
newest() { ls -t "$state/runs" | head -n 1; }
keep() {                        # keep NAME RUN_ID
	rm -rf "$here/fixtures/$1" && mkdir -p "$here/fixtures/$1"
	cp "$state/runs/$2/audit.jsonl" "$state/runs/$2/snapshot.json" "$here/fixtures/$1/"
	echo "fixtures/$1: run $2, $(wc -l <"$here/fixtures/$1/audit.jsonl") records"
}
export USER=alice

# plain: one session.
if want plain; then
USER=alice rb run $here/plain.yaml -p dir="$work" >/dev/null
keep plain "$(newest)"
fi

# crash: killed while migrate sleeps (its action_intent is durable), then resumed.
if want crash; then
(USER=alice rb run $here/crash.yaml -p dir="$work" >/dev/null 2>&1) &
runner=$!
log=""
for _ in $(seq 200); do
	log=$(ls "$state"/runs/*/audit.jsonl 2>/dev/null | xargs -r grep -l '"step":"migrate","ts":"[^"]*","type":"action_intent"' || true)
	[ -n "$log" ] && break
	sleep 0.05
done
[ -n "$log" ] || { echo "make-fixtures: migrate never started" >&2; exit 1; }
sleep 0.3
pkill -9 -P "$runner" runbook || true     # the runbook process, a child of the subshell
wait "$runner" || true
id=$(basename "$(dirname "$log")")
# What a crash in the middle of a write leaves: a line cut short, which the
# resume cuts off and records (log_repaired).
printf '{"attempt":1,"key_id":"1963fa7' >>"$log"
USER=bob rb resume "$id" --rerun migrate >/dev/null
keep crash "$id"
fi

# gate: paused, then approved by bob on resume.
if want gate; then
USER=alice rb run $here/gate.yaml >/dev/null && { echo "make-fixtures: gate did not pause" >&2; exit 1; }
id=$(newest)
sleep 1.2                       # a wait for the approval the timeline can show
USER=bob rb resume "$id" --approve drop_old >/dev/null
keep gate "$id"
fi

# shared: two runs in one --audit-log.
if want shared; then
USER=alice rb run $here/gate.yaml --approve all --audit-log "$work/shared.jsonl" >/dev/null
sleep 1.1                       # a new run id (they are by the second)
USER=carol rb run $here/gate.yaml --approve drop_old -p table=sessions_2024 \
	--audit-log "$work/shared.jsonl" >/dev/null
rm -rf "$here/fixtures/shared" && mkdir -p "$here/fixtures/shared"
cp "$work/shared.jsonl" "$here/fixtures/shared/audit.jsonl"
echo "fixtures/shared: $(jq -r .run_id "$here/fixtures/shared/audit.jsonl" | sort -u | tr '\n' ' ')"
fi

# failed: fails at migrate (exit 1); on_failure runs, verify and announce never do.
if want failed; then
USER=alice rb run $here/failed.yaml >/dev/null && { echo "make-fixtures: failed did not fail" >&2; exit 1; }
keep failed "$(newest)"
fi
rm -rf "$work"
