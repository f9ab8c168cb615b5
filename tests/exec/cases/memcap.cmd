# The Lua memory limit reached while the engine records a step's result: that step fails,
# naming the limit, the step and its position, and the run fails; the steps before it
# succeeded, nothing starts after it, and steps.ID in on_failure says what the journal says.
run tests/exec/memcap.yaml
# An item that does not fit fails its step at its for_each; a var that does not fit refuses
# the run (exit 2) at its value.
run tests/exec/memcap_item.yaml
run tests/exec/memcap_vars.yaml
