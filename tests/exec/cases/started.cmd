# run.started_at and the run id's time are RUNBOOK_NOW's; every session of a run sees the vars,
# start and id of its first, though the gate is passed after midnight.
RUNBOOK_NOW=2026-01-01T23:59:00Z run tests/exec/started.yaml
RUNBOOK_NOW=2026-01-02T00:05:00Z resume $RUN --approve purge
