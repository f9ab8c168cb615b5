// Compares `runbook schedule list --output json` (argv[2]) with croner (argv[3]: its
// node prefix; argv[4]: gen.js's index.json, for the runbooks that list refused), for the
// runbooks of one zone, argv[5], which must be the process's TZ too: croner computes in
// the local zone far faster than with its timezone option. (legacyMode: the day
// fields ORed, as cron does). In a zone with DST, the starts on the days around a change are
// left out on both sides: croner runs a repeated time at its second occurrence, runbook at
// its first (docs/schedule.md); tests/unit/test_cal.c tests those days by hand.
// Prints each mismatch, then "croner: N passed, N failed".
'use strict';
const { Cron } = require(process.argv[3] + '/node_modules/croner');
const out = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const from = new Date(out.from);
const zone = process.argv[5];
if (process.env.TZ !== zone) throw new Error(`run with TZ=${zone}`);
const offsetCache = new Map();
function offset(tz, ms) {              // minutes east of UTC
	const f = offsetCache.get(tz) || new Intl.DateTimeFormat('en-US', { timeZone: tz, hourCycle: 'h23',
		year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' });
	offsetCache.set(tz, f);
	const p = Object.fromEntries(f.formatToParts(new Date(ms)).map(x => [x.type, x.value]));
	return (Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute) - Math.floor(ms / 60000) * 60000) / 60000;
}
const hourOffset = new Map();
function offsetH(tz, ms) {             // the offset at the start of ms's hour, cached
	const k = tz + Math.floor(ms / 3600000);
	if (!hourOffset.has(k)) hourOffset.set(k, offset(tz, Math.floor(ms / 3600000) * 3600000));
	return hourOffset.get(k);
}
const nearChange = (tz, ms) => tz !== 'UTC' && offsetH(tz, ms - 86400000) !== offsetH(tz, ms + 86400000);
const horizon = from.getTime() + 5 * 366 * 86400000;   // runbook looks 5 years ahead
function cronerRuns(cron, tz) {
	return new Cron(cron, { legacyMode: true, paused: true })
		.nextRuns(out.count, from).map(d => d.getTime()).filter(t => t <= horizon);
}
let passed = 0, failed = 0;
// croner 9.1.0 skips a day after a month too short for a stepped range: '25-31/5,1-14'
// goes from 25 February to 4 March, without 1 to 3 March (tests/unit/test_cal.c has it).
const cronerBugs = new Set(['39 20 25-31/5,1-14 * *']);
for (const e of out.schedules) {
	if (e.timezone !== zone || cronerBugs.has(e.cron)) continue;
	let want;
	try {
		want = cronerRuns(e.cron, e.timezone);
	} catch (err) {
		failed++;
		console.log(`FAIL ${e.file}: croner refuses '${e.cron}': ${err.message}`);
		continue;
	}
	let got = e.next.map(n => Date.parse(n.utc));
	if (e.timezone !== 'UTC') {
		const end = Math.min(got.length ? got[got.length - 1] : 0, want.length ? want[want.length - 1] : 0);
		const keep = t => t <= end && !nearChange(e.timezone, t);
		if (got.length === out.count && want.length === out.count) {
			got = got.filter(keep);
			want = want.filter(keep);
		} else {
			got = got.filter(t => !nearChange(e.timezone, t));
			want = want.filter(t => !nearChange(e.timezone, t));
		}
	}
	const a = got.map(t => new Date(t).toISOString()).join(' ');
	const b = want.map(t => new Date(t).toISOString()).join(' ');
	if (a === b) {
		passed++;
	} else {
		failed++;
		console.log(`FAIL ${e.file}: '${e.cron}' ${e.timezone}\n  runbook ${a}\n  croner  ${b}`);
	}
}
// The runbooks that list refused (validate's error: no start in 5 years): none in croner either.
const listed = new Set(out.schedules.map(e => e.file));
for (const e of JSON.parse(require('fs').readFileSync(process.argv[4], 'utf8'))) {
	if (listed.has(e.file) || e.timezone !== zone) continue;
	let runs;
	try { runs = cronerRuns(e.cron, e.timezone); } catch (err) { runs = []; }
	if (runs.length === 0) {
		passed++;
	} else {
		failed++;
		console.log(`FAIL ${e.file}: '${e.cron}' ${e.timezone} refused, but croner starts it at ${new Date(runs[0]).toISOString()}`);
	}
}
console.log(`croner ${zone}: ${passed} passed, ${failed} failed`);
