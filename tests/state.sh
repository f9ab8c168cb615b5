#!/usr/bin/env bash
# The state directory as someone else may leave it (docs/state.md): files
# planted or forged in a run's directory, symlinks, hostile names and bytes.
# What the engine cannot verify it refuses, saying why, and changes nothing.
set -uo pipefail
: "${RUNBOOK:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() {                 # check DESCRIPTION COMMAND...
	if "${@:2}" >/dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $1"; fi
}
rb() { ${RUNBOOK_WRAP:-} "$RUNBOOK" "$@"; }
sha() { sha256sum | cut -c 1-64; }

# A forged audit.jsonl.repair, as if a crash had left a torn tail's repair half
# done: its record follows the log's last (seq, prev, offset, the torn bytes)
# but its signature is not the key's.  Resume refuses it, naming the file, and
# the run is as it was: nothing merged, nothing chained over it.
st="$tmp/forged"
rb run --state-dir "$st" -p dir=/nonexistent tests/exec/failclosed.yaml >/dev/null 2>&1
id=$(ls "$st/runs")
d="$st/runs/$id"
torn='{"key_id":"ab'
printf '%s' "$torn" >>"$d/audit.jsonl"
size=$(stat -c %s "$d/audit.jsonl")
off=$((size - ${#torn}))
last=$(head -c "$off" "$d/audit.jsonl" | tail -n 1)
jq -cjS -n --argjson seq "$(($(jq .seq <<<"$last") + 1))" --arg prev "$(printf '%s' "$last" | sha)" \
	--arg kid "$(jq -r .key_id <<<"$last")" --arg run "$id" --argjson off "$off" \
	--argjson len "${#torn}" --arg tsha "$(printf '%s' "$torn" | sha)" \
	--arg data "$(printf '%s' "$torn" | base64)" --arg sig "$(printf '%086d==' 0 | tr 0 A)" \
	'{type: "log_repaired", offset: $off, length: $len, sha256: $tsha, data: $data, seq: $seq,
	  prev: $prev, key_id: $kid, run_id: $run, ts: "2026-01-01T00:00:00.000Z", sig: $sig}' \
	>"$d/audit.jsonl.repair"
echo >>"$d/audit.jsonl.repair"
cp -a "$d" "$tmp/forged.before"
out=$(rb resume --state-dir "$st" "$id" 2>&1)
check "resume refuses a forged repair file" [ $? -ne 0 ]
check "it names the file and why" grep -qF "$d/audit.jsonl.repair: its record does not verify" <<<"$out"
check "the run is unchanged" diff -r "$tmp/forged.before" "$d"
check "the log still ends in its torn tail" bash -c "tail -c ${#torn} '$d/audit.jsonl' | grep -qxF '$torn'"

# NUL bytes in a step's output: JSON writes them as \u0000, and every reader of
# what the engine wrote takes them back (run, status, resume, audit verify with
# the output file past 1 MiB, replay).
st="$tmp/nul"
mkdir -p "$tmp/nuldir"
out=$(rb run --state-dir "$st" -p dir="$tmp/nuldir" tests/state/nul.yaml 2>&1)
check "a run whose output holds NUL runs (and fails at its gate)" [ $? -eq 1 ]
check "the console shows the NUL, not a cut line" grep -qF 'list| p\0q\0' <<<"$out"
id=$(ls "$st/runs")
d="$st/runs/$id"
check "the output file keeps the bytes past 1 MiB" cmp "$d/output/big.stdout" <(printf 'z\0z')
check "status reads it" rb status --state-dir "$st" "$id"
check "audit verify checks it, with its output file" bash -c "'$RUNBOOK' audit verify --state-dir '$st' '$id' | grep -q '1 output file'"
check "replay shows it" bash -c "'$RUNBOOK' replay --state-dir '$st' '$id' | grep -qF 'stdout: p\u0000q\u0000'"
touch "$tmp/nuldir/go"
out=$(rb resume --state-dir "$st" "$id" 2>&1)
check "resume reads it back" [ $? -eq 0 ]
check "with its NUL bytes, in Lua" bash -c "jq -r 'select(.type==\"step_finished\" and .step==\"count\") | .output' '$d/audit.jsonl' | grep -qxF '{\"n\":4,\"second\":0}'"
check "audit verify after the resume" rb audit verify --state-dir "$st" "$id"
check "replay after the resume" rb replay --state-dir "$st" "$id"
check "the output file is unchanged" cmp "$d/output/big.stdout" <(printf 'z\0z')

# Files the engine creates in a run are created, never opened through a
# symbolic link planted in their place or in place of output/: the link's
# target is untouched and the run says why.  An earlier attempt's output file
# is kept (the audit log binds it); the next attempt's takes the next name.
spill_run() {             # spill_run NAME: a run of spill.yaml that failed once, in $st
	st="$tmp/$1"
	mkdir -p "$st.dir"
	rb run --state-dir "$st" -p dir="$st.dir" tests/state/spill.yaml >/dev/null 2>&1
	id=$(ls "$st/runs")
	d="$st/runs/$id"
	touch "$st.dir/go"
}
spill_run spill
check "the first attempt's output file" cmp "$d/output/big.stdout" <(echo first)
out=$(rb resume --state-dir "$st" "$id" 2>&1)
check "a second attempt runs" [ $? -eq 0 ]
check "the first attempt's file is kept" cmp "$d/output/big.stdout" <(echo first)
check "the second's has the next name" cmp "$d/output/big.stdout.2" <(echo second)
check "its record names it" grep -q '"file\\":\\"output/big.stdout.2\\"' "$d/audit.jsonl"
check "the run verifies, both files bound" bash -c "'$RUNBOOK' audit verify --state-dir '$st' '$id' | grep -q '2 output files'"

spill_run link
echo theirs >"$tmp/victim"
rm "$d/output/big.stdout"
ln -s "$tmp/victim" "$d/output/big.stdout"
out=$(rb resume --state-dir "$st" "$id" 2>&1)
check "a symlink in place of the output file is not followed" cmp "$tmp/victim" <(echo theirs)
check "the run says why" grep -q 'could not be written to output/big.stdout (a symbolic link is in its place' <<<"$out"
check "verify does not follow it either" bash -c "'$RUNBOOK' audit verify --state-dir '$st' '$id' 2>&1 | grep -q 'big.stdout: error: a symbolic link (not followed)'"

spill_run dirlink
mkdir "$tmp/victimdir"
mv "$d/output" "$d/output.moved"
ln -s "$tmp/victimdir" "$d/output"
out=$(rb resume --state-dir "$st" "$id" 2>&1)
check "a symlink in place of output/ is not followed" [ -z "$(ls -A "$tmp/victimdir")" ]
check "and the run says why" grep -q 'could not be written to output/big.stdout (a symbolic link is in its place, or in place of its directory' <<<"$out"

spill_run loglink
cp "$d/audit.jsonl" "$tmp/log.copy"
cp "$d/audit.jsonl" "$tmp/log.before"
rm "$d/audit.jsonl"
ln -s "$tmp/log.copy" "$d/audit.jsonl"
out=$(rb resume --state-dir "$st" "$id" 2>&1)
check "resume refuses a symlink in place of the log" [ $? -ne 0 ]
check "saying so" grep -qF "$d/audit.jsonl: a symbolic link, not followed" <<<"$out"
check "the link's target is unchanged" cmp "$tmp/log.copy" "$tmp/log.before"

st="$tmp/lock"
mkdir -p "$st/locks"
chmod 1777 "$st/locks"
ln -s "$tmp/lock.victim" "$st/locks/state-test.lock"
out=$(RUNBOOK_LOCK_DIR="$st/locks" rb run --state-dir "$st" tests/state/lock.yaml 2>&1)
check "a symlink in place of a lock file is refused" [ $? -ne 0 ]
check "saying so" grep -q 'the lock file .*state-test.lock is a symbolic link' <<<"$out"
check "its target is not created" [ ! -e "$tmp/lock.victim" ]

# What audit show and replay read is bounded: a line longer than any record
# (/dev/zero has none) stops them with an error, and so does a log past the
# 256 MiB replay keeps in memory; neither may take the memory there is.
# The bound is ulimit -v; a sanitizer's build reserves more address space than that to
# start at all, and is bounded by its own hard_rss_limit_mb instead.
bounded() {
	if ( ulimit -v 1000000; "$RUNBOOK" --version ) >/dev/null 2>&1; then
		( ulimit -v 1000000; timeout 60 "$RUNBOOK" "$@" )
	else
		ASAN_OPTIONS="${ASAN_OPTIONS:-}:hard_rss_limit_mb=1000" timeout 60 "$RUNBOOK" "$@"
	fi
}
out=$(bounded audit show /dev/zero 2>&1)
check "audit show /dev/zero fails" [ $? -eq 1 ]
check "saying the line is too long" grep -qx '/dev/zero: error: line 1 is longer than 16777216 bytes, which no audit log holds: stopped reading there' <<<"$out"
out=$(bounded replay /dev/zero 2>&1)
check "replay /dev/zero fails" [ $? -eq 1 ]
check "saying where" grep -qx '/dev/zero:1: error: a line longer than 16777216 bytes, which no audit log holds: not read further' <<<"$out"
out=$(yes '{}' | head -c 270000000 | "$RUNBOOK" replay - 2>&1)
check "replay of a log past 256 MiB fails" [ $? -eq 1 ]
check "saying so" grep -qx -- '-: error: larger than 256 MiB, the most replay reads (runbook audit verify reads any size)' <<<"$out"

# Names planted in runs/ and bytes planted in a run's files never reach the
# terminal raw: runs skips a name that is not a run id, with a warning that
# shows it escaped, and what it prints from a run's files is escaped too.
st="$tmp/names"
rb run --state-dir "$st" tests/state/lock.yaml >/dev/null 2>&1
mkdir -p "$st/runs/"$'evil\e[31mred\nline' "$st/runs/20260101-000000-00bb"
printf '\e]0;pwned\a\e[2J\n{"seq":1}\n' >"$st/runs/20260101-000000-00bb/audit.jsonl"
out=$(rb runs --state-dir "$st" 2>&1)
check "runs still lists the run" grep -q '^[0-9]\{8\}-[0-9]\{6\}-[0-9a-f]\{4\} *succeeded *state-lock ' <<<"$out"
check "nothing it prints holds a control character" bash -c "! LC_ALL=C grep -q \$'[\\x01-\\x09\\x0b-\\x1f\\x7f]' <<<\"\$1\"" _ "$out"
check "a name that is not a run id is skipped, shown escaped" grep -qF "$st/runs/evil\e[31mred\nline is not a run (its name is not a run id): skipped" <<<"$out"
check "a run's bytes quoted in a reason are escaped" grep -qF "near '\e')" <<<"$out"
out=$(rb status --state-dir "$st" 20260101-000000-00bb 2>&1)
check "status escapes them too" bash -c "grep -qF \"near '\\e')\" <<<\"\$1\" && ! grep -q \$'\\x1b' <<<\"\$1\"" _ "$out"

# A secret file is kept whole, NUL bytes and all: redacted whole, seen whole
# by Lua and by its HMAC; refused where a NUL would cut it (a command's
# environment), and refused when it cannot be a value (not UTF-8, too large).
st="$tmp/secret"
mkdir -p "$tmp/sec"
printf 'abcd\0efgh-Zq9\n' >"$tmp/sec/bin.secret"
here=$PWD
runbook=$(realpath "$RUNBOOK")         # run from the secret's directory
out=$(cd "$tmp/sec" && ${RUNBOOK_WRAP:-} "$runbook" run --state-dir "$st" "$here/tests/state/secret.yaml" 2>&1)
check "a secret holding NUL runs" [ $? -eq 0 ]
d="$st/runs/$(ls "$st/runs")"
check "printed whole, it is redacted whole" bash -c "jq -r 'select(.type==\"step_finished\" and .step==\"show\") | .output | fromjson | .stdout' '$d/audit.jsonl' | grep -qx '\*\*\*'"
check "no part of it is on disk" bash -c "! grep -raq efgh-Zq9 '$st'"
check "nor printed" bash -c "! grep -q efgh-Zq9 <<<\"\$1\"" _ "$out"
check "Lua sees all 13 bytes" bash -c "jq -r 'select(.type==\"step_finished\" and .step==\"len\") | .output' '$d/audit.jsonl' | grep -qx 13"
check "its HMAC is of all of it" [ "$(jq -r 'select(.type=="secret_read" and .secret=="bin") | .hmac_sha256' "$d/audit.jsonl")" = \
	"$(printf 'abcd\0efgh-Zq9' | "$RUNBOOK" audit hmac --state-dir "$st")" ]
out=$(cd "$tmp/sec" && ${RUNBOOK_WRAP:-} "$runbook" run --state-dir "$st" "$here/tests/state/secret_env.yaml" 2>&1)
check "into a command's environment it is refused" [ $? -eq 1 ]
check "saying why" grep -q 'env: failed in .*: NUL character (.0) from an expression in the command' <<<"$out"
printf '\xff\xfesecret' >"$tmp/sec/bad.secret"
out=$(cd "$tmp/sec" && ${RUNBOOK_WRAP:-} "$runbook" run --state-dir "$st" "$here/tests/state/secret_bad.yaml" 2>&1)
check "a secret file that is not UTF-8 is refused" [ $? -eq 2 ]
check "at its declaration, saying where" grep -qx "$here/tests/state/secret_bad.yaml:5:3: error: secret 'bad': bad.secret is not UTF-8 text (byte 1 is not): give a binary secret encoded, in base64 say" <<<"$out"
head -c 1048577 /dev/zero | tr '\0' s >"$tmp/sec/bad.secret"
out=$(cd "$tmp/sec" && ${RUNBOOK_WRAP:-} "$runbook" run --state-dir "$st" "$here/tests/state/secret_bad.yaml" 2>&1)
check "a secret file larger than 1 MiB is refused, not cut" grep -qx "$here/tests/state/secret_bad.yaml:5:3: error: secret 'bad': bad.secret is larger than 1 MiB" <<<"$out"

echo "state: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
