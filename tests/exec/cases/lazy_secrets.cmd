# A var's secret is read as the run starts: missing or too short to redact, the run is refused
# (exit 2) at its declaration, and leaves no run.
run tests/exec/lazy_secrets.yaml
EXEC_TEST_TOKEN=abc run tests/exec/lazy_secrets.yaml
# A step's secrets are read when it is about to run: one only a skipped step needs is never
# read, nor by a skipped on_failure step; one an if reads is read before it (the step fails,
# closed, when it is missing), journalled with its HMAC, redacted.
EXEC_TEST_TOKEN=tok-Lz93 run tests/exec/lazy_secrets.yaml
EXEC_TEST_TOKEN=tok-Lz93 run tests/exec/lazy_secrets.yaml -p fail=true
EXEC_TEST_TOKEN=tok-Lz93 EXEC_TEST_EXTRA=ext-Lz93-x run tests/exec/lazy_secrets.yaml -p fail=true
never: ext-Lz93-x
# A missing secret fails the step that needs it, with its position, before it starts.
EXEC_TEST_TOKEN=tok-Lz93 run tests/exec/lazy_secrets.yaml -p env=prod
# One reached without its name (_ENV) is read when reached, or fails its step, never a nil.
EXEC_TEST_TOKEN=tok-Lz93 EXEC_TEST_EXTRA=ext-Lz93-y run tests/exec/lazy_secrets.yaml -p env=unnamed
EXEC_TEST_TOKEN=tok-Lz93 run tests/exec/lazy_secrets.yaml -p env=unnamed
