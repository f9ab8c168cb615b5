# The reference health check where everything fails (tests/exec/health_stubs: kubectl, aws,
# openssl and curl that fail; a validator RPC that answers an error; Slack kept in a file):
# each probe is a finding with its reason, in the report that goes out; the verdict fails the
# run; the webhook is a secret.
PATH=$PWD/tests/exec/health_stubs:$PATH HEALTH_SLACK=$DIR/slack.json SLACK_WEBHOOK_URL=https://hooks.example/T0-Wh7kQ run runbooks/daily-health-check.yaml
never: Wh7kQ
