# defaults.retry retries a command, not a pure step (lua, assert), unless its own retry: says
# so; the plan shows it.
run -p dir=$DIR tests/exec/pure_retry.yaml
plan -p dir=$DIR tests/exec/pure_retry.yaml --format json
