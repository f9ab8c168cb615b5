// Compares the UTC starts of `runbook schedule list --output json` (argv[2]) with what
// `systemd-analyze calendar --iterations=N` gives for their "oncalendar" lines (argv[3]: its
// output, the lines given in the order of the list). Prints each mismatch, then
// "systemd: N passed, N failed".
'use strict';
const fs = require('fs');
const out = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const blocks = fs.readFileSync(process.argv[3], 'utf8').split(/\n(?=\s*Original form:|\s*Normalized form:)/)
	.filter(b => /Normalized form:/.test(b));
const horizon = Date.parse(out.from) + 5 * 366 * 86400000;
const entries = out.schedules.filter(e => e.timezone === 'UTC' && e.oncalendar !== null);
let passed = 0, failed = 0;
if (blocks.length !== entries.length) {
	console.log(`FAIL systemd-analyze gave ${blocks.length} answers for ${entries.length} lines`);
	failed++;
}
entries.forEach((e, i) => {
	const b = blocks[i] || '';
	const want = [...b.matchAll(/(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) UTC/g)]
		.map(m => Date.parse(`${m[1]}T${m[2]}Z`)).filter(t => t <= horizon);
	const got = e.next.map(n => Date.parse(n.utc));
	const a = got.map(t => new Date(t).toISOString()).join(' ');
	const w = want.map(t => new Date(t).toISOString()).join(' ');
	if (a === w) {
		passed++;
	} else {
		failed++;
		console.log(`FAIL ${e.file}: '${e.cron}' as '${e.oncalendar}'\n  runbook ${a}\n  systemd ${w}`);
	}
});
console.log(`systemd: ${passed} passed, ${failed} failed`);
