# E-mail addresses, phone numbers and a runbook's own patterns are hidden in what a run prints
# (stdout and stderr lines, a Lua error, json events) and writes, and in plans, with no secret
# in the run; versions, ports and times stay.
run -p who=carol@example.com tests/exec/redact.yaml
run --output json tests/exec/redact.yaml
plan -p who=carol@example.com tests/exec/redact.yaml
plan --format json tests/exec/redact.yaml
never: @example
never: 1234567
never: TICKET-123456
never: TICKET-654321
