// JSON to lines for tests/kill.sh.
//   node state.js     reads `runbook status RUN_ID --format json` and prints
//     status STATUS           the run's
//     torn true|false         whether the journal ends in a torn line
//     started true|false      whether the run's start is known (its runbook)
//     step ID STATUS          each step the journal knows, in its order
//     results JSON            every step's named outputs and the final step's
//                             output, keys sorted: equal for equal results
//                   and exits 1 when the input is not a run's state;
//   node state.js plan   reads `runbook plan --format json` and prints
//     shell ID true|false     each run: step and whether it is idempotent
"use strict";

function sorted(v) {
	if (Array.isArray(v)) return v.map(sorted);
	if (v && typeof v === "object") {
		const o = {};
		for (const k of Object.keys(v).sort()) o[k] = sorted(v[k]);
		return o;
	}
	return v;
}

let st;
if (process.argv[2] === "plan") {
	const plan = JSON.parse(require("fs").readFileSync(0, "utf8"));
	for (const s of plan.steps)
		if (s.form === "run") console.log("shell " + s.id + " " + s.idempotent);
	process.exit(0);
}
try {
	st = JSON.parse(require("fs").readFileSync(0, "utf8"));
} catch (e) {
	console.log("error " + e.message);
	process.exit(1);
}
if (!st || typeof st.status !== "string" || !Array.isArray(st.steps)) {
	console.log("error not a run's state");
	process.exit(1);
}
console.log("status " + st.status);
console.log("torn " + (st.torn === true));
console.log("started " + (typeof st.runbook === "string"));
const results = {};
for (const s of st.steps) {
	console.log("step " + s.step + " " + s.status);
	if (s.outputs !== undefined) results[s.step] = s.outputs;
	if (s.step === "final" && s.output !== undefined) results["final.output"] = s.output;
}
console.log("results " + JSON.stringify(sorted(results)));
