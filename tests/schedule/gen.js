// Writes N runbooks with generated cron schedules to DIR (tests/schedule.sh): each
// expression twice, {cron, timezone: UTC} and {cron, timezone: ZONE}. Deterministic:
// a seeded generator (mulberry32). Usage: node gen.js DIR N SEED ZONE
'use strict';
const fs = require('fs');
const [dir, n, seed, zone] = [process.argv[2], +process.argv[3], +process.argv[4], process.argv[5]];
let s = seed >>> 0;
function rnd() {            // mulberry32
	s = (s + 0x6D2B79F5) >>> 0;
	let t = s;
	t = Math.imul(t ^ (t >>> 15), t | 1);
	t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
	return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
const pick = a => a[int(0, a.length - 1)];
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

// One item of a field lo..hi: a value, a range, a step; names sometimes.
function item(lo, hi, names, nameBase) {
	const v = () => { const x = int(lo, hi); return names && rnd() < 0.3 && x - nameBase < names.length ? names[x - nameBase] : String(x); };
	const r = rnd();
	if (r < 0.45) return v();
	const a = int(lo, hi), b = int(a, hi);
	const name = x => names && rnd() < 0.3 && x - nameBase < names.length ? names[x - nameBase] : String(x);
	if (r < 0.75) return name(a) + '-' + name(b);
	return a + '-' + b + '/' + int(1, Math.max(1, Math.floor((hi - lo) / 2)));
}
function field(lo, hi, names, nameBase, pStar, star) {
	const r = rnd();
	if (r < pStar) return '*';
	if (star && r < pStar + 0.1) return '*/' + int(2, Math.max(2, Math.floor((hi - lo) / 2)));
	const k = rnd() < 0.7 ? 1 : int(2, 3);
	const items = [];
	for (let i = 0; i < k; i++) items.push(item(lo, hi, names, nameBase));
	return items.join(',');
}
function dow(allowStarStep) {
	const r = rnd();
	if (r < 0.25) {        // #n and #L
		const k = rnd() < 0.7 ? 1 : 2, items = [];
		for (let i = 0; i < k; i++)
			items.push((rnd() < 0.5 ? pick(DAYS) : String(int(0, 7))) + '#' + pick(['1', '2', '3', '4', '5', 'L']));
		return items.join(',');
	}
	return field(0, 7, DAYS, 0, 0.35, allowStarStep);
}
fs.mkdirSync(dir, { recursive: true });
const index = [];
for (let i = 0; i < n; i++) {
	const minute = field(0, 59, null, 0, 0.1, true);
	const hour = field(0, 23, null, 0, 0.25, true);
	const month = field(1, 12, MONTHS, 1, 0.5, true);
	// cron ORs the day fields when both are restricted; a '*/n' there is "unrestricted"
	// to cron (and to runbook) but not to croner, so it comes only with the other as '*'.
	let dom = field(1, 31, null, 0, 0.5, false), dw;
	if (dom === '*') {
		dw = dow(true);
		if (dw === '*' && rnd() < 0.3) dom = '*/' + int(2, 10);
	} else {
		dw = rnd() < 0.5 ? '*' : dow(false);
	}
	const cron = [minute, hour, dom, month, dw].join(' ');
	const id = String(i).padStart(4, '0');
	for (const tz of ['UTC', zone]) {
		const file = `${dir}/c${id}-${tz.replace('/', '_')}.yaml`;
		fs.writeFileSync(file, `runbook: c${id}\nversion: 1\nschedule: {cron: "${cron}", timezone: ${tz}}\nsteps:\n  - id: x\n    lua: return 1\n`);
		index.push({ file, cron, timezone: tz });
	}
}
fs.writeFileSync(`${dir}/index.json`, JSON.stringify(index));
