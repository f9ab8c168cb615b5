#!/usr/bin/env bash
# Maintenance windows and scheduled slots (docs/schedule.md): a run refused outside its window
# (exit 4) unless --ignore-window, which the audit log records with who said it; a run stopped
# at its window's close (no new step starts, the running one ends, exit 4, resumable); resume
# outside the window; Ctrl-C unchanged; run --slot (a slot never runs twice, a held lock is
# exit 5); schedule due; schedule install/uninstall.  The runbooks are tests/window/*.yaml;
# messages are compared with tests/window/*.out (UPDATE=1 rewrites them: review the diff).
# "Now" is RUNBOOK_NOW; the close is on the monotonic clock, so the runs that reach it take
# real seconds (about 10 in all).
set -uo pipefail
: "${RUNBOOK:?}"
cd "$(dirname "$0")/.."
export NO_COLOR=1 LC_ALL=C TZ=UTC
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export RUNBOOK_LOCK_DIR=$tmp/locks
W=tests/window
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
rb() { ${RUNBOOK_WRAP:-} "$RUNBOOK" "$@"; }
# golden NAME TEXT: TEXT is tests/window/NAME.out (paths and run ids made stable).
golden() {
	local got
	got=$(sed -e "s#$tmp#TMP#g" -e 's/[0-9]\{8\}-[0-9]\{6\}-[0-9a-f]\{4\}/RUN_ID/g' <<<"$2")
	if [ -n "${UPDATE:-}" ]; then
		printf '%s\n' "$got" >"$W/$1.out"
	fi
	if [ "$got" = "$(cat "$W/$1.out" 2>/dev/null)" ]; then ok "$1"; else
		bad "$1"; diff <(printf '%s\n' "$got") "$W/$1.out" | head -20
	fi
}
# The records of a run's log, as type[:detail] lines.
records() {
	jq -r '.type + (if .type == "run_finished" then ":" + .status
		elif .type == "window_closed" then ":" + (.running | join(","))
		elif .type == "step_finished" then ":" + .step + ":" + .status else "" end)' "$1"
}
verify() { rb audit verify --keyring "$1/keys" "$1/runs/$2" >/dev/null 2>&1; }

# --- refused outside the window --------------------------------------------------------
st=$tmp/s1
out=$(RUNBOOK_NOW=2026-01-01T01:00:00Z rb run --state-dir "$st" $W/nightly.yaml 2>&1); rc=$?
[ $rc -eq 4 ] && [ ! -d "$st/runs" ] && ok "outside the window: exit 4, no run" ||
	bad "outside the window: exit $rc, $(ls "$st/runs" 2>&1)"
golden refused "$out"
# In the window's zone and in UTC: Paris is UTC+1 in January, and the window crosses midnight.
out=$(RUNBOOK_NOW=2026-01-05T12:00:00Z rb run --state-dir "$st" $W/paris.yaml 2>&1); rc=$?
[ $rc -eq 4 ] && ok "outside a window in Europe/Paris: exit 4" || bad "Paris: exit $rc"
golden refused_paris "$out"
# Sunday 23:30 Paris is 22:30 UTC: inside; Monday 01:30 Paris (00:30 UTC) belongs to Sunday's.
for now in 2026-01-04T22:30:00Z 2026-01-05T00:30:00Z; do
	out=$(RUNBOOK_NOW=$now rb run --state-dir "$st" --output text $W/paris.yaml 2>&1); rc=$?
	[ $rc -eq 0 ] && grep -q 'closes at 2026-01-05T01:00:00Z' <<<"$out" && ok "inside at $now" ||
		bad "inside at $now: exit $rc: $out"
done

# --- --ignore-window: recorded with who said it ----------------------------------------
out=$(RUNBOOK_NOW=2026-01-01T01:00:00Z SUDO_USER=alice USER=mallory rb run --state-dir "$st" \
	--output json --ignore-window $W/nightly.yaml 2>&1); rc=$?
id=$(jq -r 'select(.event == "run_started") | .run' <<<"$out" 2>/dev/null)
log=$st/runs/$id/audit.jsonl
[ $rc -eq 0 ] && ok "--ignore-window: the run starts" || bad "--ignore-window: exit $rc: $out"
jq -se --arg u "$(id -un)" 'map(select(.type == "window_ignored"))[0] | .by == $u and
	.sudo_user == "alice" and .inside == false and .next_open == "2026-01-01T02:00:00Z"' "$log" >/dev/null &&
	ok "window_ignored names the user and SUDO_USER" || bad "window_ignored: $(grep window "$log")"
# ... the account, not what $USER says, and so does run_started
jq -se --arg u "$(id -un)" 'map(select(.type == "run_started"))[0].user == $u' "$log" >/dev/null &&
	ok "run_started names the account, not \$USER" || bad "run_started's user: $(grep run_started "$log")"
jq -se 'map(select(.event == "window_ignored")) | length == 1' <<<"$out" >/dev/null &&
	ok "window_ignored event" || bad "window_ignored event: $out"
verify "$st" "$id" && ok "the log with window_ignored verifies" || bad "audit verify ($id)"

# --- the window closes during the run --------------------------------------------------
st=$tmp/s2
t0=$(date +%s)
out=$(RUNBOOK_NOW=2026-01-01T05:59:58Z rb run --state-dir "$st" --output json $W/nightly.yaml 2>&1); rc=$?
t1=$(date +%s)
id=$(jq -r 'select(.event == "run_started") | .run' <<<"$out" 2>/dev/null)
log=$st/runs/$id/audit.jsonl
[ $rc -eq 4 ] && ok "closed during the run: exit 4" || bad "closed during the run: exit $rc: $out"
[ $((t1 - t0)) -ge 3 ] && ok "the running step went on to its end" || bad "the run took $((t1 - t0)) s"
golden closed_records "$(records "$log")"
jq -se 'map(select(.event == "window_closed"))[0] | .closed_at == "2026-01-01T06:00:00Z"
	and .running == ["slow"]' <<<"$out" >/dev/null && ok "window_closed event" ||
	bad "window_closed event: $out"
jq -se 'map(select(.event == "run_finished"))[0] | .status == "stopped" and .not_run == 1
	and (.resume | test("runbook resume"))' <<<"$out" >/dev/null && ok "run_finished: stopped, resumable" ||
	bad "run_finished: $out"
jq -se 'map(select(.type == "step_started" and .step == "after")) == []' "$log" >/dev/null &&
	ok "the next step did not start" || bad "after started past the close"
verify "$st" "$id" && ok "the stopped run's log verifies" || bad "audit verify ($id)"
out=$(rb runs --state-dir "$st" 2>&1)
grep -q "$id *stopped" <<<"$out" && ok "runs shows it stopped" || bad "runs: $out"

# --- resume ----------------------------------------------------------------------------
out=$(RUNBOOK_NOW=2026-01-01T06:00:05Z rb resume --state-dir "$st" "$id" 2>&1); rc=$?
[ $rc -eq 4 ] && grep -q 'outside its maintenance window' <<<"$out" && ok "resume outside: exit 4" ||
	bad "resume outside: exit $rc: $out"
jq -se 'map(select(.type == "run_resumed")) == []' "$log" >/dev/null && ok "a refused resume writes nothing" ||
	bad "a refused resume wrote to the log"
cp -r "$st" "$tmp/s2b"
out=$(RUNBOOK_NOW=2026-01-01T06:00:05Z rb resume --state-dir "$st" --ignore-window --output text "$id" 2>&1); rc=$?
[ $rc -eq 0 ] && grep -q 'after| after' <<<"$out" && ok "resume --ignore-window runs the rest" ||
	bad "resume --ignore-window: exit $rc: $out"
jq -se 'map(select(.type == "window_ignored"))[0].inside == false' "$log" >/dev/null &&
	ok "resume --ignore-window is recorded" || bad "resume --ignore-window not recorded"
verify "$st" "$id" && ok "the resumed log verifies" || bad "audit verify after resume"
# The next night's window: no override needed.
out=$(RUNBOOK_NOW=2026-01-02T03:00:00Z rb resume --state-dir "$tmp/s2b" --output text "$id" 2>&1); rc=$?
[ $rc -eq 0 ] && grep -q 'after| after' <<<"$out" && ok "resume inside the next window" ||
	bad "resume inside the next window: exit $rc: $out"
jq -se 'map(select(.type == "window_ignored")) == []' "$tmp/s2b/runs/$id/audit.jsonl" >/dev/null &&
	ok "no override recorded inside the window" || bad "window_ignored inside the window"

# A window that closes after every step started stopped nothing: the run succeeded.
st=$tmp/s3
out=$(RUNBOOK_NOW=2026-01-01T05:59:59Z rb run --state-dir "$st" --output json $W/paris.yaml 2>&1); rc=$?
[ $rc -eq 4 ] && ok "paris outside on a Thursday" || bad "paris on a Thursday: exit $rc"
printf 'runbook: one\nversion: 1\nwindow: {start: "02:00", end: "06:00"}\nsteps:\n  - id: s\n    run: sleep 2\n' >"$tmp/one.yaml"
out=$(RUNBOOK_NOW=2026-01-01T05:59:59Z rb run --state-dir "$st" --output json "$tmp/one.yaml" 2>&1); rc=$?
[ $rc -eq 0 ] && jq -se 'map(select(.event == "run_finished"))[0].status == "succeeded"' <<<"$out" >/dev/null &&
	ok "closed after the last step started: succeeded" || bad "closed after the last start: exit $rc: $out"

# A step waiting for its retry at the close is not retried.
out=$(RUNBOOK_NOW=2026-01-01T05:59:59Z rb run --state-dir "$st" --output json $W/retry.yaml 2>&1); rc=$?
[ $rc -eq 4 ] && [ "$(jq -s 'map(select(.event == "step_started")) | length' <<<"$out")" = 1 ] &&
	ok "a retry is not started after the close" || bad "retry at the close: exit $rc: $out"

# --- Ctrl-C is unchanged ---------------------------------------------------------------
st=$tmp/s4
: >"$tmp/int.out"
RUNBOOK_NOW=2026-01-01T03:00:00Z ${RUNBOOK_WRAP:-} "$RUNBOOK" run --state-dir "$st" --output json \
	$W/long.yaml >"$tmp/int.out" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q '"step_started"' "$tmp/int.out" && break; sleep 0.1; done
kill -INT $pid
wait $pid; rc=$?
[ $rc -eq 130 ] && jq -se 'map(select(.event == "run_finished"))[0].status == "interrupted"' "$tmp/int.out" >/dev/null &&
	! grep -q window_closed "$tmp/int.out" && ok "Ctrl-C inside the window: 130, interrupted" ||
	bad "Ctrl-C: exit $rc: $(cat "$tmp/int.out")"

# --- run --slot ------------------------------------------------------------------------
st=$tmp/s5
slot() { RUNBOOK_NOW=$1 rb run --state-dir "$st" --output text --slot "$2" $W/slotted.yaml 2>&1; }
out=$(slot 2026-01-01T03:30:10Z 2026-01-01T03:30:00Z); rc=$?
[ $rc -eq 0 ] && grep -q 'a| ran-a' <<<"$out" && ok "a slot runs" || bad "a slot: exit $rc: $out"
rec=$st/slots/slotted/20260101T033000Z
jq -e '.status == "succeeded" and .slot == "2026-01-01T03:30:00Z" and (.run_id | length) > 0' "$rec" >/dev/null &&
	ok "the slot's record" || bad "slot record: $(cat "$rec")"
out=$(slot 2026-01-01T03:31:00Z 2026-01-01T03:30:00Z); rc=$?
[ $rc -eq 0 ] && ! grep -q 'ran-a' <<<"$out" && [ "$(ls "$st/runs" | wc -l)" = 1 ] &&
	ok "the same slot again: skipped, exit 0" || bad "the same slot again: exit $rc: $out"
golden slot_again "$out"
out=$(slot 2026-01-01T03:31:00Z 2026-01-01T03:31:00Z); rc=$?
[ $rc -eq 2 ] && ok "not a slot of the schedule: exit 2" || bad "not a slot: exit $rc"
out2=$(slot 2026-01-01T03:31:00Z 2026-01-02T03:30:00Z); rc2=$?
out3=$(slot 2026-01-01T03:31:00Z 2026-01-01T03:30); rc3=$?
[ $rc2 -eq 2 ] && [ $rc3 -eq 2 ] && ok "a future slot, a bad time: exit 2" || bad "future $rc2, bad $rc3"
golden slot_errors "$out
$out2
$out3"
# Two at once: one runs, the other is skipped.
(slot 2026-01-02T03:30:05Z 2026-01-02T03:30:00Z >"$tmp/a.out"; echo $? >>"$tmp/a.out") &
(slot 2026-01-02T03:30:05Z 2026-01-02T03:30:00Z >"$tmp/b.out"; echo $? >>"$tmp/b.out") &
wait
n=$(cat "$tmp/a.out" "$tmp/b.out" | grep -c 'a| ran-a')
[ "$n" = 1 ] && [ "$(ls "$st/runs" | wc -l)" = 2 ] && ok "the same slot twice at once: one run" ||
	bad "twice at once: $n runs: $(cat "$tmp/a.out" "$tmp/b.out")"
# Its lock held: exit 5, recorded in the slot, never a second concurrent run.
mkdir -p "$RUNBOOK_LOCK_DIR" && chmod 1777 "$RUNBOOK_LOCK_DIR"
# The holder keeps the lock's descriptor from its sleep, so that killing it frees the lock.
( exec 9>>"$RUNBOOK_LOCK_DIR/slotted-lock.lock"; flock 9; sleep 3 9>&- ) &
lockpid=$!
sleep 0.3
out=$(slot 2026-01-03T03:30:05Z 2026-01-03T03:30:00Z); rc=$?
[ $rc -eq 5 ] && [ "$(ls "$st/runs" | wc -l)" = 2 ] && ok "lock held: exit 5, no run" ||
	bad "lock held: exit $rc: $out"
jq -e '.status == "lock_held" and .lock == "slotted-lock" and .exit_status == 5' \
	"$st/slots/slotted/20260103T033000Z" >/dev/null && ok "lock held: the slot's record says so" ||
	bad "lock held record: $(cat "$st/slots/slotted/20260103T033000Z")"
kill $lockpid 2>/dev/null; wait $lockpid 2>/dev/null
# Outside the window: exit 4, the slot is spent.
printf 'runbook: early\nversion: 1\nschedule: "0 1 * * *"\nwindow: {start: "02:00", end: "06:00"}\nsteps: [{id: s, run: "echo s"}]\n' >"$tmp/early.yaml"
out=$(RUNBOOK_NOW=2026-01-01T01:00:00Z rb run --state-dir "$st" --slot 2026-01-01T01:00:00Z "$tmp/early.yaml" 2>&1); rc=$?
# The window filters the schedule: 01:00 is no slot of a 02:00-06:00 window (cal.c).
[ $rc -eq 2 ] && ok "a slot outside the window is no slot" || bad "slot outside the window: exit $rc: $out"
# A symbolic link planted as the runbook's slot directory is not followed.
mkdir -p "$tmp/elsewhere" "$tmp/s6/slots" && ln -s "$tmp/elsewhere" "$tmp/s6/slots/slotted"
out=$(RUNBOOK_NOW=2026-01-01T03:30:10Z rb run --state-dir "$tmp/s6" --slot 2026-01-01T03:30:00Z $W/slotted.yaml 2>&1); rc=$?
[ $rc -eq 1 ] && [ -z "$(ls "$tmp/elsewhere")" ] && grep -q 'not followed' <<<"$out" &&
	ok "a planted link is not followed" || bad "planted link: exit $rc: $out"

# --- schedule due ----------------------------------------------------------------------
st=$tmp/s7 d=$tmp/dir
mkdir -p "$d" && cp $W/slotted.yaml $W/nightly.yaml "$d/"
due() { RUNBOOK_NOW=$1 rb schedule due --state-dir "$st" "${@:2}" "$d" 2>&1; }
out=$(due 2026-01-01T03:29:00Z); rc=$?
golden due_missed "$out"
[ $rc -eq 0 ] && jq -e '.status == "missed"' "$st/slots/slotted/20251231T033000Z" >/dev/null &&
	ok "due: yesterday's slot, past --catch-up, recorded missed" || bad "due missed: exit $rc: $out"
out=$(due 2026-01-01T03:30:20Z); rc=$?
[ $rc -eq 0 ] && grep -q 'a| ran-a' <<<"$out" && ok "due: the slot runs" || bad "due: exit $rc: $out"
out=$(due 2026-01-01T03:31:00Z); rc=$?
[ $rc -eq 0 ] && [ -z "$out" ] && ok "due: nothing due says nothing" || bad "due again: exit $rc: $out"
out=$(due 2026-01-02T05:00:00Z --catch-up 2h); rc=$?
[ $rc -eq 0 ] && grep -q 'a| ran-a' <<<"$out" && ok "due: a catch-up within --catch-up runs" ||
	bad "due catch-up: exit $rc: $out"
# schedule list shows what the state directory says: the last slot started, and the missed
# ones (recorded by due, or due by now and never claimed).
out=$(RUNBOOK_NOW=2026-01-05T04:00:00Z rb schedule list --state-dir "$st" --output json "$d/slotted.yaml")
[ "$(jq -c '.schedules[0] | [.last.slot, .last.status, [.missed[] | [.slot, .recorded]]]' <<<"$out")" = \
	'["2026-01-02T03:30:00Z","succeeded",[["2025-12-31T03:30:00Z",true],["2026-01-03T03:30:00Z",false],["2026-01-04T03:30:00Z",false],["2026-01-05T03:30:00Z",false]]]' ] &&
	ok "schedule list: the last slot and the missed ones" || bad "schedule list history: $out"
out=$(RUNBOOK_NOW=2026-01-05T04:00:00Z rb schedule list --state-dir "$st" "$d/slotted.yaml")
grep -q '^  missed:   2025-12-31T03:30:00Z (recorded missed by schedule due)$' <<<"$out" &&
	grep -q '^            2026-01-04T03:30:00Z (not started)$' <<<"$out" &&
	grep -q '^  last:     2026-01-02T03:30:00Z succeeded, run ' <<<"$out" &&
	ok "schedule list: the history as text" || bad "schedule list text: $out"
out=$(RUNBOOK_NOW=2026-01-05T04:00:00Z rb schedule list --state-dir "$tmp/none" --output json "$d/slotted.yaml")
[ "$(jq -c '.schedules[0] | [.last, .missed]' <<<"$out")" = '[null,[]]' ] &&
	ok "schedule list: never scheduled, nothing missed" || bad "schedule list, no state: $out"
printf 'NOPE\n' >"$d/slotted.params"
out=$(due 2026-01-03T03:30:00Z); rc=$?
[ $rc -eq 2 ] && grep -q 'slotted.params:1:1: error: expected NAME=VALUE' <<<"$out" &&
	ok "due: a bad params file" || bad "due params: exit $rc: $out"
rm "$d/slotted.params"

# --- schedule install / uninstall ------------------------------------------------------
u=$tmp/units
mkdir -p "$u"
inst() { rb schedule "$1" --dir "$u" --runbook /usr/local/bin/runbook --state-dir /var/lib/runbook "${@:2}" "$d" 2>&1; }
out=$(inst install --systemd --randomized-delay 5m); rc=$?
[ $rc -eq 0 ] && [ "$(ls "$u" | wc -l)" = 3 ] && ok "install --systemd: a service, a timer, the manifest" ||
	bad "install: exit $rc: $out"
golden unit_service "$(sed "s#$tmp#TMP#g" "$u/runbook-slotted.service")"
golden unit_timer "$(cat "$u/runbook-slotted.timer")"
# systemd-analyze is installed by .ci/deps (systemd): its absence fails the check.
sed -e "s#/usr/local/bin/runbook#$(command -v true)#" "$u/runbook-slotted.service" >"$tmp/runbook-slotted.service"
cp "$u/runbook-slotted.timer" "$tmp/"
(cd "$tmp" && systemd-analyze verify ./runbook-slotted.timer ./runbook-slotted.service) >/dev/null 2>&1 &&
	ok "systemd-analyze verify" || bad "systemd-analyze verify: $(cd "$tmp" && systemd-analyze verify ./runbook-slotted.timer ./runbook-slotted.service 2>&1)"
echo '# mine' >"$u/keep.service"
cp "$u/runbook-slotted.timer" "$tmp/timer.kept"
echo '# changed' >>"$u/runbook-slotted.timer"
out=$(inst uninstall --systemd); rc=$?
[ $rc -eq 1 ] && [ -f "$u/runbook-slotted.timer" ] && [ ! -f "$u/runbook-slotted.service" ] &&
	ok "uninstall leaves a unit changed since" || bad "uninstall of a changed unit: exit $rc: $out"
cp "$tmp/timer.kept" "$u/runbook-slotted.timer"
out=$(inst uninstall --systemd); rc=$?
[ $rc -eq 0 ] && [ "$(ls "$u")" = keep.service ] && ok "uninstall removes exactly what install wrote" ||
	bad "uninstall: exit $rc: $out: $(ls "$u")"
echo '# not ours' >"$u/runbook-slotted.timer"
out=$(inst install --systemd); rc=$?
[ $rc -eq 1 ] && [ "$(cat "$u/runbook-slotted.timer")" = '# not ours' ] &&
	ok "install never replaces a file it did not write" || bad "install over a file: exit $rc: $out"
rm "$u/runbook-slotted.timer"
out=$(inst install --cron --print); rc=$?
golden crontab "$(sed "s#$tmp#TMP#g" <<<"$out")"
# Into a crontab: CRONTAB stands for crontab(1), on a file of ours.
printf '#!/bin/sh\nif [ "$1" = -l ]; then cat "%s" 2>/dev/null; else cat >"%s"; fi\n' "$tmp/tab" "$tmp/tab" >"$tmp/crontab"
chmod +x "$tmp/crontab"
printf 'MAILTO=ops\n0 1 * * * backup\n' >"$tmp/tab"
CRONTAB=$tmp/crontab inst install --cron >/dev/null && CRONTAB=$tmp/crontab inst install --cron >/dev/null
[ "$(grep -c '^# BEGIN runbook' "$tmp/tab")" = 1 ] && grep -q '^0 1 \* \* \* backup$' "$tmp/tab" &&
	ok "install --cron twice: one block, the rest kept" || bad "crontab: $(cat "$tmp/tab")"
CRONTAB=$tmp/crontab inst uninstall --cron >/dev/null
[ "$(cat "$tmp/tab")" = "$(printf 'MAILTO=ops\n0 1 * * * backup')" ] && ok "uninstall --cron removes the block" ||
	bad "uninstall --cron: $(cat "$tmp/tab")"

# What a file's or a directory's name holds never becomes a directive or a job: % is no
# systemd specifier, and a newline is refused before anything is written.
pd="$tmp/pct%h" && mkdir -p "$pd" "$tmp/u3" "$tmp/u4" && cp $W/slotted.yaml "$pd/"
out=$(rb schedule install --systemd --dir "$tmp/u3" "$pd" 2>&1); rc=$?
[ $rc -eq 0 ] && grep -qx "WorkingDirectory=$tmp/pct%%h" "$tmp/u3/runbook-slotted.service" &&
	grep -q "^ExecStart=.* \"$tmp/pct%%h/slotted.yaml\"$" "$tmp/u3/runbook-slotted.service" &&
	ok "install: a % in a path is written %%" || bad "install with %: exit $rc: $out $(cat "$tmp/u3"/*.service)"
nl=$(printf 'x\nExecStartPre=touch %s/pwned\n.yaml' "$tmp" | tr / _)
sed 's/runbook: slotted/runbook: other/' $W/slotted.yaml >"$pd/$nl"
for how in "--systemd --dir $tmp/u4" "--cron --print"; do
	out=$(rb schedule install $how "$pd" 2>&1); rc=$?
	[ $rc -eq 2 ] && grep -q 'a control character in a path cannot be written' <<<"$out" &&
		! grep -q ExecStartPre <<<"$(cat "$tmp/u4"/* 2>/dev/null; echo "$out" | grep -v error)" &&
		ok "install $how: a newline in a file name is refused" || bad "install $how, newline: exit $rc: $out"
done
[ -z "$(ls "$tmp/u4")" ] && ok "install: nothing written for a refused name" || bad "install wrote: $(ls "$tmp/u4")"

# A slot's record planted in the state directory is shown, not obeyed by the terminal.
ps=$tmp/s8/slots/slotted && mkdir -p "$ps"
printf '{"slot":"2026-01-01T03:30:00Z","status":"\\u001b]0;pwned\\u0007ok","run_id":"x\\u001b[2J"}' >"$ps/20260101T033000Z"
out=$(RUNBOOK_NOW=2026-01-02T04:00:00Z rb schedule list --state-dir "$tmp/s8" $W/slotted.yaml 2>&1)
out2=$(slot_in() { RUNBOOK_NOW=2026-01-01T03:31:00Z rb run --state-dir "$tmp/s8" --output text --slot 2026-01-01T03:30:00Z $W/slotted.yaml 2>&1; }; slot_in)
! grep -q $'\x1b' <<<"$out$out2" && grep -q 'last:     2026-01-01T03:30:00Z \\e\]0;pwned' <<<"$out" &&
	grep -q 'claimed before (\\e\]0;pwned' <<<"$out2" &&
	ok "a planted slot record: its escapes shown, not sent" || bad "planted slot record: $out $out2"

echo "window: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
