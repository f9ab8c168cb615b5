# A run's audit log (audit.jsonl) as the engine's records, for the tests' greps:
# without the log's own keys, "type" as "event" first, then the step's keys in
# a fixed order, and the values recorded as JSON text decoded.
def dec: if type == "string" then (fromjson? // .) else . end;
def text_keys: ["output", "outputs", "params", "vars", "args", "calls"];
. as $r
| ["step", "index", "status", "attempt", "prompt", "by", "via", "output", "outputs"] as $first
| {event: .type}
  + reduce $first[] as $k ({};
      if $r | has($k) then . + {($k): ($r[$k] | if (text_keys | index([$k])) then dec else . end)}
      else . end)
  + ($r | del(.type, .seq, .ts, .run_id, .prev, .key_id, .sig) | del(.[$first[]])
        | with_entries(.key as $k | if (text_keys | index([$k])) then .value = (.value | dec) else . end))
