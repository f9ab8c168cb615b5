# A var made from a secret is kept out of the log (its HMAC only) and computed again by a
# resume, which goes on when it has the value the run started with, and is refused (exit 2,
# at the var, before anything ran) when it does not (it reads the time).
EXEC_STARTED_TOKEN=tok-Started-7q RUNBOOK_NOW=2026-01-01T23:59:00Z run tests/exec/started_secret.yaml
EXEC_STARTED_TOKEN=tok-Started-7q RUNBOOK_NOW=2026-01-02T00:05:00Z resume $RUN --approve second
never but in the runbook: tok-Started-7q
EXEC_STARTED_TOKEN=tok-Started-7q RUNBOOK_NOW=2026-01-01T23:59:00Z run -p stamp=true tests/exec/started_secret.yaml
EXEC_STARTED_TOKEN=tok-Started-7q RUNBOOK_NOW=2026-01-02T00:05:00Z resume $RUN --approve second
EXEC_STARTED_TOKEN=tok-Started-7q RUNBOOK_NOW=2026-01-01T23:59:00Z resume $RUN --approve second
