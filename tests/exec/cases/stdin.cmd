# A run started from standard input (run -) resumes from its own copy of the runbook; the
# resume's standard input (another runbook here) is not read.
run -p dir=$DIR - <tests/exec/gate.yaml
resume --approve dangerous $RUN <tests/exec/basics.yaml
same: tests/exec/gate.yaml $STATE/runs/$RUN/runbook.yaml
