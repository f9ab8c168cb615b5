#!/usr/bin/env bash
# Crash tests of the binary: a 55-step run with parallel branches
# (tests/kill/run.yaml) is killed with SIGKILL, at random moments and at the
# journal's points between write, fdatasync, the hand-over of a sync to a supervisor,
# rename and directory fsync
# (RUNBOOK_TEST_CRASH, docs/state.md), then resumed, and its resumes killed
# again, until it completes.  After every kill: no process of the run is left,
# the state reads (`runbook status`, `runbook runs`), no step ran without its
# start in the journal, no finished step ran again.  A resume must refuse,
# naming them, while steps that are not idempotent were in flight; the test
# then answers as an operator would, from the step's side effect (its marker
# file): --skip STEP when it happened, --rerun STEP when not.  At the end: the
# run succeeded, every step has the status and the outputs of a run never
# killed, and every side effect happened exactly once (an idempotent step may
# repeat its own only after a kill found it in flight).
#
#   KILLS=N         go on until N kill points were tried (make soak-kill KILLS=N);
#                   without it the suite stops after about KILL_BUDGET seconds (60)
#   KILL_SEED=N     the seed of the random choices (printed, to replay them)
#   KILL_DETAILS=N  how many failures to show with the run's files (3)
#
# Runs the binary directly, also under `make valgrind` (tests/run does not wrap
# it): a wrapper would take the SIGKILL meant for runbook, and valgrind turns a
# process's SIGKILL to itself into a report of its descriptors.
set -uo pipefail
: "${RUNBOOK:?}"
cd "$(dirname "$0")/.."
book=tests/kill/run.yaml
seed_param=7                    # the runbook's param: all runs compute the same values
KILLS=${KILLS:-0}
budget=${KILL_BUDGET:-60}
rng=${KILL_SEED:-$((($$ * 7919 + $(date +%s)) % 32768))}
RANDOM=$rng
points=(before-write after-write after-fdatasync before-gate before-temp-write after-temp-write
	after-temp-fsync after-rename after-dir-fsync)
compact=7                       # RUNBOOK_TEST_COMPACT_RECORDS: a dozen compactions a run

tmp=$(mktemp -d "${TMPDIR:-/tmp}/runbook-kill.XXXXXX")
mkfifo "$tmp/never"
live=""                         # the runbook in the background, if any
trap '[ -n "$live" ] && kill -9 "$live" 2>/dev/null; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

pass=0 fail=0 kills=0 scenarios=0 shown=0 resumes=0 refusals=0
declare -A fired=()             # kill points tried, by kind
t0=$(date +%s)

# --- assertions ------------------------------------------------------------------

ok() { pass=$((pass + 1)); }
bad() {                         # bad MESSAGE: a failure of the current scenario
	fail=$((fail + 1))
	scen_failed=1
	echo "FAIL [$scen] $*"
}
details() {                     # the run's files, for the first few failures
	[ "$shown" -lt "${KILL_DETAILS:-3}" ] || return 0
	shown=$((shown + 1))
	local dir="$state/runs/${id:-none}"
	echo "  run ${id:-(none)} in $state:"
	ls -la "$dir" 2>&1 | sed 's/^/    /'
	echo "  audit.jsonl, last lines:"
	tail -n 6 "$dir/audit.jsonl" 2>&1 | cut -c1-240 | sed 's/^/    | /'
	[ -f "$dir/snapshot.json" ] && echo "  snapshot.json: $(head -c 240 "$dir/snapshot.json")..."
	echo "  markers: $(cd "$marks" && for f in *; do [ -f "$f" ] && printf '%s=%s ' "$f" "$(wc -l <"$f")"; done)"
	echo "  the last command's output, last lines:"
	tail -n 8 "$tmp/out" | cut -c1-240 | sed 's/^/    > /'
}

# --- the runbook's processes ----------------------------------------------------------

ms() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
rnd() { r=$((RANDOM * $1 / 32768)); }         # rnd N: 0 <= $r < N (no subshell: $RANDOM
					      # must advance in this shell for KILL_SEED to replay)

# launch ENV... -- ARGS...: runbook ARGS in the background; its pid in $live.
# Its processes carry KILL_MARKS=$marks in their environment, which is how
# survivors are found: a step's sleep has nothing else to recognise it by.
launch() {
	local envs=()
	while [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	env KILL_MARKS="$marks" "${envs[@]}" "$RUNBOOK" "$@" >"$tmp/out" 2>&1 &
	live=$!
}

# reap [DELAY_MS]: SIGKILL the runbook after DELAY_MS (none: let it end), wait;
# $rc is its exit status, 124 when it hung (killed after 60 s by a watchdog that
# waits in `read -t`, so that no sleep of its own outlives it).
# Quiet: bash would report the signal that killed it ("Killed", "Segmentation
# fault") after whichever command it happens during; the test reports it itself.
reap() {
	local wd
	(read -r -t 60 <>"$tmp/never"; : >"$tmp/hung"; kill -9 "$live") &
	wd=$!
	if [ -n "${1:-}" ]; then
		sleep "$(ms "$1")"
		kill -9 "$live"
	fi
	wait "$live"
	rc=$?
	kill "$wd"
	wait "$wd"
	if [ -e "$tmp/hung" ]; then
		rm -f "$tmp/hung"
		rc=124
	fi
	live=""
} 2>/dev/null

survivors() {                   # live processes with this scenario's token
	local f p c s=""
	for f in $(grep -lzxF "KILL_MARKS=$marks" /proc/[0-9]*/environ 2>/dev/null); do
		p=${f#/proc/}
		p=${p%/environ}
		c=$( { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | cut -c1-50)
		[ -n "$c" ] && s+=" $p:$c"
	done
	printf '%s' "$s"
}

no_survivors() {                # the kill took every process of the run with it (5 s)
	local i s
	for i in $(seq 100); do
		s=$(survivors)
		[ -z "$s" ] && { ok; return 0; }
		sleep 0.05
	done
	bad "processes of the run survive it:$s"
}

# --- the run's state ----------------------------------------------------------------

count() { if [ -f "$marks/$1" ]; then wc -l <"$marks/$1"; else echo 0; fi; }
fingerprint() {                 # the side effects so far and the run's files
	(cd "$marks" && wc -l -- * 2>/dev/null)
	cat "$state/runs/$id/audit.jsonl" "$state/runs/$id/snapshot.json" 2>/dev/null | md5sum
}

# read_state: `runbook status` of $id into $run_status, $torn, $started, st[STEP], $results;
# 1 (with $why) when it does not read.
declare -A st=()
read_state() {
	local json out k rest
	json=$("$RUNBOOK" status --state-dir "$state" "$id" --format json 2>"$tmp/err")
	k=$?
	if [ $k -ne 0 ]; then
		why="runbook status exits $k: $(head -c 300 "$tmp/err")"
		return 1
	fi
	if ! out=$(node tests/kill/state.js <<<"$json"); then
		why="runbook status gives no run state: $out"
		return 1
	fi
	st=()
	run_status="" torn="" started="" results=""
	while read -r k rest; do
		case $k in
		status) run_status=$rest ;;
		torn) torn=$rest ;;
		started) started=$rest ;;
		step) st[${rest%% *}]=${rest#* } ;;
		results) results=$rest ;;
		esac
	done <<<"$out"
}

in_flight() { case ${st[$1]:-pending} in running | retrying | interrupted) return 0 ;; esac; return 1; }

# after_kill: the runbook is dead.  Returns 1 when the scenario cannot go on,
# 2 when no run had been created (nothing may have run).
after_kill() {
	kills=$((kills + 1))
	skills=$((skills + 1))
	fired[${point:-random}]=$((${fired[${point:-random}]:-0} + 1))
	no_survivors
	id=$(ls "$state/runs" 2>/dev/null | head -n 1)
	if [ -z "$id" ]; then
		if [ -z "$(ls "$marks")" ]; then ok; else bad "no run was created, yet steps ran: $(ls "$marks")"; fi
		return 2
	fi
	if [ -n "$cut" ]; then
		cut_tail
	fi
	if ! read_state; then
		bad "after the kill the state does not read: $why"
		details
		return 1
	fi
	ok
	if [ -n "$cut" ]; then
		if [ "$torn" = true ]; then ok; else bad "a torn last line is not reported (torn: $torn)"; fi
	fi
	local line
	line=$("$RUNBOOK" runs --state-dir "$state" 2>&1 | grep "^$id ")
	if [ -n "$line" ] && [[ $line != *unreadable* ]]; then ok; else bad "runbook runs: '$line'"; fi
	local s c problems=""
	for s in "${shell_steps[@]}"; do
		c=$(count "$s")
		# Write-ahead: a step runs only once its start is in the journal, and
		# the state keeps it (a snapshot includes the effect of every record).
		if [ "$c" -gt 0 ] && [ "${st[$s]:-pending}" = pending ]; then
			if [ -n "${seen[$s]:-}" ]; then
				problems+=" $s ran and its start was journalled, but the state says pending now;"
			else
				problems+=" $s ran but its start is not in the journal;"
			fi
		fi
		[ "${st[$s]:-pending}" != pending ] && seen[$s]=1
		# A step that had finished never runs again.
		if [ -n "${frozen[$s]:-}" ] && [ "$c" -ne "${frozen[$s]}" ]; then
			problems+=" $s ran again after it finished ($c times, ${frozen[$s]} before);"
		fi
		case ${st[$s]:-} in
		succeeded | skipped | failed) [ -z "${frozen[$s]:-}" ] && frozen[$s]=$c ;;
		esac
		in_flight "$s" && inflight[$s]=$((${inflight[$s]:-0} + 1))
	done
	if [ -z "$problems" ]; then ok; else bad "after the kill:$problems"; details; fi
	return 0
}

# cut_tail: cut the journal's last line short, as a crash in the middle of its
# write(2) would (only after-write kills: the group was written, not synced).
cut_tail() {
	local j="$state/runs/$id/audit.jsonl" size last
	size=$(stat -c %s "$j")
	last=$(tail -n 1 "$j" | wc -c)
	rnd $((last - 1))
	[ "$last" -gt 1 ] && truncate -s $((size - last + 1 + r)) "$j"
}

# --- one scenario ------------------------------------------------------------------------

# resume_until_done: resume (each resume perhaps killed again) until the run ends.
resume_until_done() {
	local attempt flags names want s before after out
	for attempt in $(seq 12); do
		# Steps in flight that are not idempotent: resume must refuse and name them.
		want=""
		for s in "${nonidem[@]}"; do in_flight "$s" && want+=" $s"; done
		flags=()
		if [ -n "$want" ]; then
			before=$(fingerprint)
			out=$(timeout -s KILL 60 "$RUNBOOK" resume --state-dir "$state" "$id" 2>&1)
			rc=$?
			refusals=$((refusals + 1))
			names=$(sed -n 's/.*may have done part of their work: *//p' <<<"$out" | tr ' ' '\n' | sort | tr '\n' ' ')
			if [ $rc -eq 2 ] && [ "$names" = "$(tr ' ' '\n' <<<"${want# }" | sort | tr '\n' ' ')" ]; then
				ok
			else
				bad "resume with$want in flight: exit $rc, names '$names'; it must refuse (2) and name them"
				printf '%s\n' "$out" >"$tmp/out"
				details
			fi
			after=$(fingerprint)
			if [ $rc -eq 0 ]; then
				return 0        # it ran them without being asked: failed above
			elif [ $rc -ne 2 ]; then
				return 1
			fi
			if [ "$before" = "$after" ]; then ok; else bad "the refused resume changed the run or ran steps"; fi
			# The operator's answer: done if its side effect happened, else run it again.
			for s in $want; do
				if [ "$(count "$s")" -gt 0 ]; then
					flags+=(--skip "$s")
					skipped[$s]=1
				else
					flags+=(--rerun "$s")
				fi
			done
		fi
		local envs=() delay=""
		if [ "$skills" -lt 3 ] && [ $((RANDOM % 2)) -eq 0 ]; then
			if [ "$kind" = random ]; then
				rnd $((ref_ms * 8 / 10))
				delay=$r
			else
				rnd $(((cap[$point] + 1) / 2))
				envs+=("RUNBOOK_TEST_CRASH=$point:$((1 + r))")
			fi
		fi
		[ -n "$compact_env" ] && envs+=("$compact_env")
		cut=""
		launch "${envs[@]}" -- resume --state-dir "$state" --jobs "$jobs" "${flags[@]}" "$id"
		reap $delay
		resumes=$((resumes + 1))
		if [ $rc -eq 0 ]; then
			ok
			return 0
		fi
		if [ $rc -ne 137 ]; then
			bad "resume exits $rc$(grep -m1 -E 'error|: failed' "$tmp/out" | sed 's/^/: /')"
			details
			return 1
		fi
		after_kill || return 1
	done
	bad "the run is not done after 12 resumes"
	return 1
}

# scenario KIND [POINT]: KIND is random (killed after a random delay) or crash
# (RUNBOOK_TEST_CRASH=POINT:N).
scenario() {
	kind=$1 point=${2:-}
	scenarios=$((scenarios + 1))
	base="$tmp/$scenarios"
	state="$base/state" marks="$base/marks"
	mkdir -p "$marks"
	frozen=() inflight=() skipped=() seen=()
	scen_failed=0 skills=0 id="" cut=""
	jobs=$((2 ** (1 + RANDOM % 3)))
	compact_env=""
	[ $((RANDOM % 3)) -ne 0 ] && compact_env="RUNBOOK_TEST_COMPACT_RECORDS=$compact"
	local n="" envs=() delay=""
	if [ "$kind" = random ]; then
		rnd $((ref_ms * 12 / 10))
		delay=$r
		scen="#$scenarios random ${delay}ms jobs=$jobs${compact_env:+ compact=$compact}"
	else
		case $point in before-write | after-write | after-fdatasync | before-gate) ;; *)
			compact_env="RUNBOOK_TEST_COMPACT_RECORDS=$compact" ;;
		esac
		rnd "${cap[$point]}"
		n=$((1 + r))
		[ -z "${visited[$point]:-}" ] && n=1
		visited[$point]=1
		envs+=("RUNBOOK_TEST_CRASH=$point:$n")
		[ "$point" = after-write ] && [ $((RANDOM % 2)) -eq 0 ] && cut=1
		scen="#$scenarios $point:$n${cut:+ torn} jobs=$jobs${compact_env:+ compact=$compact}"
	fi
	[ -n "$compact_env" ] && envs+=("$compact_env")

	local tries r
	for tries in 1 2 3; do
		launch "${envs[@]}" -- run --state-dir "$state" --jobs "$jobs" -p seed=$seed_param "$book"
		reap $delay
		if [ $rc -eq 0 ]; then
			# The kill came too late, or the point was never reached so many times.
			[ "$kind" = crash ] && [ "$n" -gt 1 ] && cap[$point]=$((n - 1))
			id=$(ls "$state/runs" | head -n 1)
			read_state || { bad "the state does not read: $why"; return; }
			break
		fi
		if [ $rc -ne 137 ]; then
			bad "run exits $rc"
			details
			return
		fi
		after_kill
		r=$?
		[ $r -eq 1 ] && return
		# Killed before the run existed: run it again, uninterrupted.
		[ $r -eq 0 ] || { state="$state.again" delay="" envs=(${compact_env:+"$compact_env"}); continue; }
		# A run that died before its start was journalled knows no params:
		# resume must complete it or refuse cleanly, saying why (then nothing
		# ran: the test starts the run again).
		if [ "$started" = false ]; then
			launch -- resume --state-dir "$state" "$id"
			reap
			if [ $rc -eq 0 ]; then
				ok
				read_state || { bad "the state does not read: $why"; return; }
				break
			elif { [ $rc -eq 1 ] || [ $rc -eq 2 ]; } && grep -q '^runbook: error: ' "$tmp/out" &&
			     ! grep -q 'Sanitizer\|runtime error' "$tmp/out"; then
				ok
				state="$state.again" delay="" envs=(${compact_env:+"$compact_env"})
				continue
			fi
			bad "resume of a run killed before its start was journalled exits $rc"
			details
			return
		fi
		resume_until_done || return
		break
	done
	final_checks
}

final_checks() {
	if ! read_state; then
		bad "at the end the state does not read: $why"
		return
	fi
	if [ "$run_status" = succeeded ]; then ok; else bad "the run ended $run_status"; fi
	local s c problems=""
	for s in "${all_steps[@]}"; do
		if [ -n "${skipped[$s]:-}" ]; then
			case ${st[$s]:-} in succeeded | skipped) ;; *) problems+=" $s (--skip) is ${st[$s]:-missing};" ;; esac
		elif [ "${st[$s]:-}" != "${ref_status[$s]}" ]; then
			problems+=" $s is ${st[$s]:-missing}, not ${ref_status[$s]};"
		fi
	done
	if [ -z "$problems" ]; then ok; else bad "statuses:$problems"; fi
	problems=""
	for s in "${shell_steps[@]}"; do
		c=$(count "$s")
		if [ -n "${idem[$s]}" ]; then
			if [ "$c" -lt "${ref_count[$s]}" ] || [ "$c" -gt $((${ref_count[$s]} + ${inflight[$s]:-0})) ]; then
				problems+=" $s ran $c times (in flight at ${inflight[$s]:-0} kills);"
			fi
		elif [ "$c" -ne "${ref_count[$s]}" ]; then
			problems+=" $s ran $c times, not ${ref_count[$s]};"
		fi
	done
	if [ -z "$problems" ]; then ok; else bad "side effects:$problems"; fi
	if [ "$results" = "$ref_results" ]; then
		ok
	else
		bad "the outputs differ from the uninterrupted run's: $(diff <(tr , '\n' <<<"$ref_results") <(tr , '\n' <<<"$results") | grep '^[<>]' | head -n 6 | tr '\n' ' ')"
	fi
	# However often it was killed and resumed, its audit log verifies, its tail included.
	local v
	if v=$("$RUNBOOK" audit verify --keyring "$state/keys" "$state/runs/$id" 2>&1); then
		ok
	else
		bad "the audit log does not verify: $v"
	fi
	[ "$scen_failed" -eq 0 ] || details
	no_survivors
}

# --- the reference: one run never interrupted -------------------------------------------

all_steps=() shell_steps=() nonidem=()
declare -A idem=() ref_status=() ref_count=() frozen=() inflight=() skipped=() seen=() cap=() visited=()
while read -r _ s i; do
	shell_steps+=("$s")
	if [ "$i" = true ]; then idem[$s]=1; else idem[$s]=""; nonidem+=("$s"); fi
done < <("$RUNBOOK" plan "$book" -p seed=$seed_param --format json | node tests/kill/state.js plan)

scen="reference" state="$tmp/ref/state" marks="$tmp/ref/marks" id=""
mkdir -p "$marks"
start=$(date +%s%N)
launch -- run --state-dir "$state" -p seed=$seed_param "$book"
reap
ref_ms=$((($(date +%s%N) - start) / 1000000))
id=$(ls "$state/runs" 2>/dev/null | head -n 1)
if [ $rc -ne 0 ] || ! read_state || [ "$run_status" != succeeded ] || [ "${#st[@]}" -ne 55 ]; then
	bad "the reference run failed (exit $rc, ${run_status:-no state})"
	details
	echo "kill: $pass passed, $fail failed"
	exit 1
fi
ok
ref_results=$results
for s in "${!st[@]}"; do
	all_steps+=("$s")
	ref_status[$s]=${st[$s]}
done
for s in "${shell_steps[@]}"; do ref_count[$s]=$(count "$s"); done
for p in "${points[@]}"; do
	case $p in *write | after-fdatasync | before-gate) cap[$p]=60 ;; *) cap[$p]=16 ;; esac
done
echo "reference run: ${ref_ms} ms, ${#all_steps[@]} steps (${#shell_steps[@]} shell, ${#nonidem[@]} not idempotent); seed $rng"

# --- kill, resume, check; again -------------------------------------------------------

# Crash points and random moments by turns, each point in turn; at least two
# rounds of the points, then until the budget or KILLS is reached.
i=0
while :; do
	if [ "$KILLS" -gt 0 ]; then
		[ "$kills" -ge "$KILLS" ] && break
		[ $((i % 100)) -eq 0 ] && [ "$i" -gt 0 ] &&
			echo "... $kills kill points, $fail failures, $(($(date +%s) - t0)) s"
	elif [ "$i" -ge $((4 * ${#points[@]})) ] && [ $(($(date +%s) - t0)) -ge "$budget" ]; then
		break
	fi
	if [ $((i % 2)) -eq 0 ]; then
		scenario crash "${points[$((i / 2 % ${#points[@]}))]}"
	else
		scenario random
	fi
	rm -rf "$base"
	i=$((i + 1))
done

summary=""
for k in random "${points[@]}"; do summary+=" $k ${fired[$k]:-0},"; done
echo "kill points tried: $kills in $scenarios scenarios, $resumes resumes, $refusals refusals to resume (by kind:${summary%,}) in $(($(date +%s) - t0)) s"
echo "kill: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
