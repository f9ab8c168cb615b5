# E-mail addresses, phone numbers and a runbook's own patterns are hidden in what a run prints
# (stdout and stderr lines, a Lua error, json events) and writes, and in plans, with no secret
# in the run; versions, ports and times stay.
run -p who=carol@example.com tests/exec/redact.yaml
run --output json tests/exec/redact.yaml
plan -p who=carol@example.com tests/exec/redact.yaml
plan --format json tests/exec/redact.yaml
never but in the runbook: @example
never but in the runbook: 1234567
never but in the runbook: TICKET-123456
never but in the runbook: TICKET-654321
