# What tests/exec.sh compares of a run: its journal's records (after tests/records.jq) or
# its console lines, reduced to what is the same on every machine and every run.  Nothing
# here says what a record must hold (not every record is signed, for one): it only drops or
# masks what differs between runs, and puts what parallel steps did in one fixed order.
#   jq -s  -c -f tests/exec/stable.jq --arg mode journal ARGS        (records, one a line)
#   jq -Rs -r -f tests/exec/stable.jq --arg mode console|text ARGS   (text)
# ARGS: --arg order grouped|ordered --arg tmp DIR --arg runs RUNS --arg user NAME.  ordered
# keeps the order of the steps' records and lines; DIR is the case's directory, holding its
# state directory (state) and scratch (dir); RUNS the ids of the case's runs in the order
# they started, shown as 20260101-000000-#1, -#2...; NAME the user running the tests.

# Text: the case's paths by name, run ids without their random bits, key ids, PIDs.
def paths: split($tmp + "/state") | join("$STATE") | split($tmp + "/dir") | join("$DIR")
	| split($tmp) | join("$TMP");
def ids: reduce ($runs | split(" ") | to_entries[] | select(.value != "")) as $r (.;
		split($r.value) | join($r.value[0:15] + "-#\($r.key + 1)"))
	| gsub("(?<t>[0-9]{8}-[0-9]{6})-[0-9a-f]{4}"; "\(.t)-xxxx")
	| gsub("key (?<i>id )?[0-9a-f]{16}"; "key \(.i // "")<key-id>") | gsub("PID [0-9]+"; "PID <pid>");
def text: paths | ids | split("approved by \($user) ") | join("approved by $USER ");
def lines: split("\n") | if .[-1] == "" then .[:-1] else . end;
# Hashes (of what holds times, or signed), and a Lua limit's time left when it was reached.
def masks: gsub("[0-9a-f]{64}"; "<sha256>")
	| gsub("time limit of [0-9]+ ms"; "time limit of # ms");
# A string this long is a step's big output: its start and its length say enough.
def short: if length > 2000 then .[0:200] + "... (\(length) characters)" else . end;

# Keys the log sets (signatures only on some records) and hashes of what may differ go; the
# text of every value is made stable.
def stable_values:
	walk(if type == "object" then del(.key_id, .sig)
		| with_entries(if (.key | test("sha256$")) and (.value | type) == "string"
				and (.value | test("^[0-9a-f]{64}$"))
			then .value = "<sha256>" else . end)
	     elif type == "string" then text | masks | short
	     else . end);

# Parallel steps: between two records (or lines) of the run itself (STEP gives null), each
# step's own in their order, the steps by name; the items of a for_each step by index
# (ITEM), in the places its items' records take.
def items_in_place(item):
	. as $g
	| [range(length) | select(($g[.] | item) != null)] as $at
	| ([$g[$at[]]] | sort_by(item)) as $sorted
	| reduce range($at | length) as $i ($g; .[$at[$i]] = $sorted[$i]);
def by_step(step; item; each):
	. as $xs
	| [foreach range(length) as $i (0; if ($xs[$i] | step) == null then . + 1 else . end;
		($xs[$i] | step) as $s
		| {k: [., if $s == null then 0 else 1 end, $s // ""], x: $xs[$i]})]
	| group_by(.k) | map(map(.x) | items_in_place(item) | each) | add // [];

def journal:
	map(del(.pid, .host, .user, .version, .duration_ms)
		| if .by == $user then .by = "$USER" else . end
		| stable_values)
	| if $order == "ordered" then . else by_step(.step; .index; .) end;

# A console line: "HH:MM:SS step: event", "HH:MM:SS step| stdout", "HH:MM:SS step! stderr"
# ("step[N]|" for item N), a line of the run or of a command, or an --output json event.  A
# command's stdout and stderr come through two pipes, its items' at once: between two events
# of its step, its lines go by item, stdout before stderr.  (tests/exec.sh cuts long output
# before: jq would take minutes.)
def line_of:
	if startswith("{") and (try (fromjson | type == "object") catch false) then
		fromjson | {json: ., step: .step,
			item: (if .event == "output" then null else .index end),
			out: (if .event == "output" then [.index // -1, .stream == "stderr"] else null end)}
	else {text: .}
		+ ((capture("^[0-9]{2}:[0-9]{2}:[0-9]{2} (?<step>[A-Za-z0-9_.-]+)(\\[(?<i>[0-9]+)\\])?(?<sep>: |[|!] ?)")
			| {step, out: (if .sep[0:1] == ":" then null
				else [(.i // "-1" | tonumber), .sep[0:1] == "!"] end)})
		   // {step: null, out: null})
		| .item = (if .out == null
			then (.text | capture(": item (?<i>[0-9]+) of ") | .i | tonumber) // null
			else null end)
	end;
def streams:
	. as $xs
	| [foreach range(length) as $i (0; if $xs[$i].out == null then . + 1 else . end;
		{k: [., $xs[$i].step, $xs[$i].out], x: $xs[$i]})]
	| group_by(.k) | map(map(.x)) | add // [];
def sorted_keys:
	walk(if type == "object" then to_entries | sort_by(.key) | from_entries else . end);
def volatile: walk(if type == "object" then del(.duration_ms, .pid)
		| with_entries(if (.key | test("(^|_)key(_id)?$")) and (.value | type) == "string"
			and (.value | test("^[0-9a-f]{16}$")) then .value = "<key-id>" else . end)
	else . end);
def show:
	if .json then .json | volatile | (if has("time") then .time = "<time>" else . end)
		| stable_values | sorted_keys | tojson
	else .text | sub("^[0-9]{2}:[0-9]{2}:[0-9]{2} "; "hh:mm:ss ") | text | masks | short
		| gsub("[0-9]+\\.[0-9]+s\\b"; "#.#s")
	end;
# What a command prints: a JSON document (status -f json, plan --format json) with its keys
# sorted, or lines.
def console:
	if test("^[\\[{]") and (try (fromjson | true) catch false) then
		fromjson | volatile | stable_values | sorted_keys
	else lines | map(line_of)
		| (if $order == "ordered" then streams else by_step(.step; .item; streams) end)
		| map(show) | join("\n")
	end;

if $mode == "console" then console
elif $mode == "text" then lines | map(text) | join("\n")
else journal[] end
