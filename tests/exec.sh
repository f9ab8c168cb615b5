#!/usr/bin/env bash
# The engine on real runbooks (tests/exec/*.yaml): exit statuses, what runs print and the
# journal each run leaves in its state directory.  The cases are data: tests/exec/cases/NAME.cmd
# gives commands, one a line, run in a state directory of the case's own, and NAME.out what
# each must give; UPDATE=1 rewrites the .out files (review the diff).  What needs a program
# (signals, timing, runs at once, file permissions, files changed under a run) is in
# tests/exec/programs.sh, run after the cases.  `bash tests/exec.sh NAME...` runs those cases
# alone; `--part K/N` runs the K-th of N parts (the programs are the last).
#
# A line of NAME.cmd is one of
#   [VAR=VALUE ...] COMMAND ARG... [<FILE]
#                       `runbook COMMAND ARG...` (shell words; run, resume, runs and status
#                       get --state-dir $STATE), its standard input FILE or /dev/null.
#                       NAME.out has a block for it: "$ " and the line, its exit status, its
#                       stdout and stderr, the records it added to a run's journal and, when
#                       they changed, the files in $DIR.  Each block is one comparison.
#   never: TEXT         TEXT is in nothing printed so far, nor in any file under $STATE.
#   never but in the runbook: TEXT
#                       the same, but for the runbook's copies (runbook.yaml), which hold it.
#   same: FILE FILE     the two files hold the same bytes.
#   not listed: NAME    $DIR/NAME is left out of the files (what is in it depends on timing).
#   touch: FILE         makes FILE (a fix that lets a run go on, between two commands).
#   console: REGEX      the next command shows only the console lines that match REGEX
#                       (grep -E), where the rest depends on timing.
#   in order            journals and console lines keep their order across steps (for
#                       runbooks whose steps run one at a time), not grouped by step.
#   # ...               a comment.
# In the words, $STATE and $DIR (a scratch directory for the runbooks) are the case's, and
# $RUN is the run the last command that started one started; in NAME.out, the case's runs
# are numbered (20260101-000000-#1).  What of the output is compared (times, paths, run ids
# and parallel steps made stable) is in tests/exec/stable.jq.
set -uo pipefail
: "${RUNBOOK:?}"
cd "$(dirname "$0")/.."
# Runbook locks are machine-wide: this suite's are its own, apart from any other run's.
export RUNBOOK_LOCK_DIR
RUNBOOK_LOCK_DIR=$(mktemp -d)/locks
tmp=''
trap 'rm -rf "${RUNBOOK_LOCK_DIR%/locks}" ${tmp:+"$tmp"}' EXIT
user=$(id -un)
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
check() {                 # check DESCRIPTION COMMAND...: the command succeeds
	if "${@:2}" >/dev/null 2>&1; then ok "$1"; else bad "$1"; fi
}

# What a command prints between two events of its step: its first and last 5 lines of each
# stream, and how many between them are not shown.
cut_output() {
	awk '
	function flush(k, i, from) {
		if (n[k] > 10) print at[k] k " ... (" n[k] - 10 " lines not shown)"
		from = n[k] > 10 ? n[k] - 4 : 6
		for (i = from; i <= n[k]; i++) print ring[k, i % 5]
		n[k] = 0
	}
	function flush_step(s, k) {
		for (k in n)
			if (index(k, s) == 1 && substr(k, length(s) + 1) ~ /^(\[[0-9]+\])?[|!]$/) flush(k)
	}
	match($0, /^[0-9][0-9]:[0-9][0-9]:[0-9][0-9] [A-Za-z0-9_.-]+(\[[0-9]+\])?[|!]/) {
		k = substr($0, 10, RLENGTH - 9); at[k] = substr($0, 1, 9)
		if (++n[k] <= 5) print; else ring[k, n[k] % 5] = $0
		next
	}
	match($0, /^[0-9][0-9]:[0-9][0-9]:[0-9][0-9] [A-Za-z0-9_.-]+: /) {
		flush_step(substr($0, 10, RLENGTH - 11)); print; next
	}
	{ for (k in n) flush(k); print }
	END { for (k in n) flush(k) }'
}
stable() {                # stable ORDER [console|text]: stdin (records, or text) made stable
	jq "$( [ $# = 1 ] && echo -sc || echo -Rsr)" -f tests/exec/stable.jq --arg order "$1" \
		--arg mode "${2:-journal}" --arg tmp "$tmp" --arg user "$user" --arg runs "${runs[*]}"
}
last_seq() {              # last_seq AUDIT_JSONL: the seq of its last whole record, 0 if none
	jq -Rn '[inputs | fromjson? | .seq // empty] | max // 0' "$1" 2>/dev/null || echo 0
}
files() {                 # files DIR UNLISTED...: each file, its lines indented (or its size)
	local dir=$1 f size; shift
	(cd "$dir" && find . -type f | sort) | while IFS= read -r f; do
		f=${f#./}
		[[ " $* " == *" $f "* ]] && continue
		size=$(stat -c %s "$dir/$f")
		if [ "$size" -eq 0 ]; then
			echo "$f (empty)"
		elif [ "$size" -gt 4096 ] || ! grep -Iq . "$dir/$f"; then
			echo "$f ($size bytes)"
		else
			echo "$f"
			sed 's/^/  /' "$dir/$f"
			[ -z "$(tail -c 1 "$dir/$f")" ] || echo "  (no newline at the end)"
		fi
	done
}

# run_case FILE: the case's commands and checks, each block compared with NAME.out.
run_case() {
	local cmdfile=$1 name expected
	[ -f "$cmdfile" ] || { bad "$cmdfile: no such case"; return; }
	name=$(basename "$cmdfile" .cmd)
	expected=${cmdfile%.cmd}.out
	tmp=$(mktemp -d)
	local STATE=$tmp/state DIR=$tmp/dir RUN='' runs=() order=grouped console='' unlisted=()
	local shown='' n=0 line
	mkdir "$DIR"
	: >"$tmp/printed"
	while IFS= read -r line || [ -n "$line" ]; do
		case $line in
		'' | '#'*) ;;
		'never: '* | 'never but in the runbook: '*)
			local text=${line#*: } skip=()
			[[ $line == 'never: '* ]] || skip=(--exclude=runbook.yaml)
			if ! grep -qF -- "$text" "$tmp/printed" &&
				! grep -rqaF "${skip[@]}" -- "$text" "$STATE" 2>/dev/null; then
				ok "$name: ${line%%: *} $text"
			else
				bad "$name: ${line%%: *} $text (found)"
			fi ;;
		'same: '*)
			local pair
			eval "pair=(${line#same: })"
			check "$name: same ${line#same: }" cmp -s "${pair[0]}" "${pair[1]}" ;;
		'not listed: '*) unlisted+=("${line#not listed: }") ;;
		'touch: '*) eval "touch ${line#touch: }" ;;
		'in order') order=ordered ;;
		'console: '*) console=${line#console: } ;;
		*)
			n=$((n + 1))
			run_command "$line" >"$tmp/block.$n"
			console='' ;;
		esac
	done <"$cmdfile"
	local i
	if [ "${UPDATE:-}" = 1 ]; then
		for ((i = 1; i <= n; i++)); do cat "$tmp/block.$i"; done >"$expected"
		for ((i = 1; i <= n; i++)); do ok "$name #$i: written to $expected"; done
	else
		for ((i = 1; i <= n; i++)); do
			local what="$name #$i: $(head -n 1 "$tmp/block.$i" | cut -c 3-)"
			if [ ! -f "$expected" ]; then
				bad "$what (no $expected: run with UPDATE=1 and review it)"
			elif cmp -s "$tmp/block.$i" <(awk -v n=$i '/^\$ / { b++ } b == n' "$expected"); then
				ok "$what"
			else
				bad "$what"
				diff -u <(awk -v n=$i '/^\$ / { b++ } b == n' "$expected") "$tmp/block.$i" |
					tail -n +3 | head -n 60
			fi
		done
		if [ -f "$expected" ] && [ "$(grep -c '^\$ ' "$expected")" -ne "$n" ]; then
			bad "$name: $expected has $(grep -c '^\$ ' "$expected") blocks for $n commands"
		fi
	fi
	rm -rf "$tmp"
	tmp=''
}

# run_command LINE: runs it (in run_case's variables) and prints its block.
run_command() {
	local line=$1 words=() envs=() input=/dev/null state_used='' d
	if [[ $line =~ ^(.*[^ ])\ +\<([^ ]+)$ ]]; then
		eval "input=${BASH_REMATCH[2]}"
		eval "words=(${BASH_REMATCH[1]})"
	else
		eval "words=($line)"
	fi
	while [[ ${words[0]} =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do
		envs+=("${words[0]}")
		words=("${words[@]:1}")
	done
	case ${words[0]} in
	run | resume | runs | status) words=("${words[0]}" --state-dir "$STATE" "${words[@]:1}") ;;
	esac
	[[ " ${words[*]} " == *"$STATE"* ]] && state_used=1
	declare -A seq_before=()
	for d in "$STATE"/runs/*/; do
		seq_before[$d]=0
		[ -f "$d/audit.jsonl" ] && seq_before[$d]=$(last_seq "$d/audit.jsonl")
	done
	env "${envs[@]}" ${RUNBOOK_WRAP:-} "$RUNBOOK" "${words[@]}" <"$input" >"$tmp/out" 2>"$tmp/err"
	local rc=$? new=()
	for d in $(ls -dtr "$STATE"/runs/*/ 2>/dev/null); do
		[ -n "${seq_before[$d]:-}" ] && continue
		new+=("$d")
		RUN=$(basename "$d")
		runs+=("$RUN")
	done
	cat "$tmp/out" "$tmp/err" >>"$tmp/printed"
	echo "\$ $line"
	echo "[exit $rc]"
	local stream
	for stream in out err; do
		[ -s "$tmp/$stream" ] || continue
		if [ -z "$console" ]; then
			echo "[std$stream]"
			cut_output <"$tmp/$stream" | stable "$order" console
		else
			echo "[std$stream: lines matching $console]"
			cut_output <"$tmp/$stream" | stable "$order" console | grep -E -- "$console"
		fi
	done
	for d in $(ls -dtr "$STATE"/runs/*/ 2>/dev/null); do
		if [[ " ${new[*]} " == *" $d "* ]]; then
			echo "[run files]"
			(cd "$d" && find . -type f | sort | sed "s|^\./||") | stable "$order" text
		fi
		[ -f "$d/audit.jsonl" ] || continue
		local from=${seq_before[$d]:-0}
		[ "$(last_seq "$d/audit.jsonl")" -gt "$from" ] || continue
		echo "[journal]"
		jq -Rc --argjson from "$from" \
			'fromjson? // {type: "(not a JSON record)"} | select((.seq // 1e9) > $from)' \
			"$d/audit.jsonl" | jq -c -f tests/records.jq | stable "$order"
	done
	local now
	now=$(files "$DIR" "${unlisted[@]}" | stable "$order" text)
	if [ "$now" != "$shown" ]; then
		echo "[files]"
		printf '%s\n' "${now:-(none)}"
		shown=$now
	fi
	[ -z "$state_used" ] || [ -d "$STATE" ] || echo "[no state directory]"
}

# All the cases and the programs; --part K/N (N >= 2): the K-th of N - 1 shares of the
# cases, the programs being part N; or NAME...: those cases alone.
case "${1:-}" in
--part)
	k=${2%/*} n=${2#*/} i=0
	for c in tests/exec/cases/*.cmd; do
		[ $((i++ % (n - 1) + 1)) -eq "$k" ] && run_case "$c"
	done
	[ "$k" -eq "$n" ] && . tests/exec/programs.sh ;;
'')
	for c in tests/exec/cases/*.cmd; do run_case "$c"; done
	. tests/exec/programs.sh ;;
*)
	for c in "$@"; do run_case "tests/exec/cases/${c%.cmd}.cmd"; done ;;
esac
echo "exec: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
