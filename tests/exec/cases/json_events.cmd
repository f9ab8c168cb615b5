# --output json: one event a line, each with its event, its run and its time; run_finished last.
EXEC_TEST_TOKEN=tok-json-1 run --output json tests/exec/basics.yaml
