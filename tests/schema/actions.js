// The JSON Schema is written by hand; this checks its action part against the
// registry in the binary (runbook actions --format json), so the two cannot
// drift: the same action names, the same arguments, the same required ones.
//   node tests/schema/actions.js SCHEMA REGISTRY_JSON
'use strict';
const fs = require('fs');
const schema = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const registry = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
let pass = 0, fail = 0;
const check = (ok, what) => {
  if (ok) pass++; else { fail++; console.log(`FAIL ${what}`); }
};
const same = (a, b) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

// Every enum of action names in the schema lists exactly the registry's actions.
const names = registry.map((a) => a.name);
const enums = [];
(function walk(o) {
  if (o && typeof o === 'object') {
    if (o.properties && o.properties.action && Array.isArray(o.properties.action.enum))
      enums.push(o.properties.action.enum);
    Object.values(o).forEach(walk);
  }
})(schema);
check(enums.length > 0, 'the schema has an enum of action names');
enums.forEach((e) => check(same(e, names), `action enum ${JSON.stringify(e)} is ${JSON.stringify(names)}`));

for (const a of registry) {
  const w = schema.$defs[`with_${a.name}`];
  check(w !== undefined, `$defs/with_${a.name} exists`);
  if (!w) continue;
  check(same(Object.keys(w.properties || {}), a.args.map((g) => g.name)),
    `with_${a.name} has the arguments ${a.args.map((g) => g.name)}`);
  check(same(w.required || [], a.args.filter((g) => g.required).map((g) => g.name)),
    `with_${a.name} requires ${a.args.filter((g) => g.required).map((g) => g.name)}`);
}
// A check may use exactly the actions without side effects (those whose arguments decide
// are refused by further clauses, for the calls that write).
const banned = schema.$defs.check.not.anyOf[0].properties.action.anyOf.map((c) => c.const);
check(same(banned, registry.filter((a) => a.side_effects === true).map((a) => a.name)),
  `a check refuses exactly the actions with side effects: ${banned}`);
registry.filter((a) => a.side_effects === 'by arguments').forEach((a) =>
  check(schema.$defs.check.not.anyOf.some((c) => c.properties.action.const === a.name),
    `a check refuses the calls of ${a.name} that write`));
console.log(`actions: ${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
