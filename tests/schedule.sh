#!/usr/bin/env bash
# Schedules and windows (docs/schedule.md): `runbook schedule list` against golden files, and
# its start times against two independent implementations:
#   - croner (npm, pinned, installed into build/node-cal like tests/schema/run.sh's ajv):
#     1,000 generated cron expressions (tests/schedule/gen.js, seeded), the next 50 starts
#     from 2026-01-01 in UTC and in Europe/Paris (DST days left out: tests/unit/test_cal.c);
#   - systemd-analyze calendar: the OnCalendar= line runbook writes for each (UTC).
# UPDATE=1 rewrites the golden files tests/schedule/*.out. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${RUNBOOK:=$PWD/build/runbook}"
export NO_COLOR=1 LC_ALL=C TZ=UTC RUNBOOK_NOW=2026-01-01T00:00:00Z
CRONER=croner@9.1.0
NODE_PREFIX=build/node-cal
pass=0 fail=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# golden NAME ARGS...: runbook ARGS against tests/schedule/NAME.out
golden() {
	local name=$1; shift
	local g=tests/schedule/$name.out actual rc
	actual=$(${RUNBOOK_WRAP:-} "$RUNBOOK" "$@" 2>"$TMP/err" </dev/null)
	rc=$?
	actual=$(printf '[stdout]\n%s\n[stderr]\n%s\n[exit %d]' "$actual" "$(cat "$TMP/err")" "$rc")
	if [ "${UPDATE:-}" = 1 ]; then
		printf '%s\n' "$actual" >"$g"; ok
	elif [ -f "$g" ] && [ "$actual" = "$(cat "$g")" ]; then
		ok
	else
		bad "$g"; diff -u "$g" <(printf '%s\n' "$actual") | head -n 30
	fi
}

D=tests/schedule/data
# --- schedule list: text, JSON, DST, windows, errors -----------------------------------------
golden list_runbooks schedule list runbooks --count 3
golden list_paris_spring schedule list $D/paris.yaml --from 2026-03-28T00:00:00Z --count 6
golden list_paris_fall schedule list $D/paris.yaml --from 2026-10-24T00:00:00Z --count 8 -o json
golden list_newyork schedule list $D/newyork.yaml --from 2026-10-01T00:00:00Z --count 3
golden list_leap schedule list $D/leap.yaml --count 5 --output=json
golden list_never schedule list $D/never.yaml
golden validate_never validate $D/never.yaml
golden list_dir schedule list $D/dir --count 2
golden list_from_epoch schedule list $D/leap.yaml --from 1830297600 -n 1
golden bad_count schedule list $D/leap.yaml --count 0
golden bad_from schedule list $D/leap.yaml --from yesterday
golden bad_output schedule list $D/leap.yaml -o yaml
golden bad_sub schedule lsit
golden no_such_file schedule list $D/nonexistent.yaml
golden help schedule --help

# RUNBOOK_NOW is "now"; --from overrides it
a=$(RUNBOOK_NOW=2027-06-01T00:00:00Z "$RUNBOOK" schedule list $D/leap.yaml -n 1 -o json | jq -r '.schedules[0].next[0].utc')
[ "$a" = 2028-02-29T00:00:00Z ] && ok || bad "RUNBOOK_NOW=2027-06-01: first start $a"
a=$(env -u RUNBOOK_NOW "$RUNBOOK" schedule list $D/leap.yaml -n 1 --from 2028-02-29T00:00:00Z -o json | jq -r '.schedules[0].next[0].utc')
[ "$a" = 2032-02-29T00:00:00Z ] && ok || bad "--from 2028-02-29 (strictly after): $a"

# --- croner ---------------------------------------------------------------------------------
if [[ ! -f "$NODE_PREFIX/node_modules/croner/package.json" ]] ||
   ! grep -q '"version": "9.1.0"' "$NODE_PREFIX/node_modules/croner/package.json"; then
	if ! command -v npm >/dev/null 2>&1; then
		echo "schedule: npm is missing: install Node.js and npm (for croner)" >&2
		exit 1
	fi
	echo "schedule: installing $CRONER into $NODE_PREFIX" >&2
	mkdir -p "$NODE_PREFIX"
	npm install --prefix "$NODE_PREFIX" --no-audit --no-fund "$CRONER" >&2 ||
		{ echo "schedule: npm install of $CRONER failed" >&2; exit 1; }
fi
node tests/schedule/gen.js "$TMP/gen" 1000 20 Europe/Paris
${RUNBOOK_WRAP:-} "$RUNBOOK" schedule list "$TMP/gen" --count 50 --from 2026-01-01T00:00:00Z \
	--output json >"$TMP/list.json" 2>"$TMP/list.err"
[ "$(grep -c ': error: ' "$TMP/list.err")" -lt 50 ] && ok ||
	bad "schedule list refused $(grep -c ': error: ' "$TMP/list.err") generated runbooks"
for zone in UTC Europe/Paris; do
	out=$(TZ=$zone node tests/schedule/compare.js "$TMP/list.json" "$PWD/$NODE_PREFIX" \
		"$TMP/gen/index.json" "$zone")
	grep '^FAIL\|^  ' <<<"$out" | head -n 20 | cut -c1-400
	p=$(sed -n 's/^croner .*: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' <<<"$out")
	f=$(sed -n 's/^croner .*: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' <<<"$out")
	[ "${p:-0}" -ge 900 ] && [ "${f:-1}" = 0 ] && ok || bad "croner $zone: ${p:-0} agreed, ${f:-?} differed"
done

# --- systemd-analyze calendar ------------------------------------------------------------
# systemd-analyze is installed by .ci/deps (systemd): its absence fails the comparison.
jq -r '.schedules[] | select(.timezone == "UTC" and .oncalendar != null) | .oncalendar' \
	"$TMP/list.json" | tr '\n' '\0' |
	xargs -0 systemd-analyze calendar --base-time='2026-01-01 00:00:00 UTC' \
		--iterations=50 >"$TMP/sd.txt" 2>&1
out=$(node tests/schedule/systemd.js "$TMP/list.json" "$TMP/sd.txt")
grep '^FAIL\|^  ' <<<"$out" | head -n 20 | cut -c1-400
p=$(sed -n 's/^systemd: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' <<<"$out")
f=$(sed -n 's/^systemd: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' <<<"$out")
[ "${p:-0}" -ge 500 ] && [ "${f:-1}" = 0 ] && ok || bad "systemd: ${p:-0} agreed, ${f:-?} differed"
# the first Sunday, said as systemd says it
a=$("$RUNBOOK" schedule list runbooks/monthly-maintenance.yaml -o json | jq -r '.schedules[0].oncalendar')
[ "$a" = "Sun *-*-01..07 02:00:00 UTC" ] && ok || bad "monthly-maintenance OnCalendar: $a"

echo "schedule: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
