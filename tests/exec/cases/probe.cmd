# --dry-run --probe runs what cannot change anything and shows real values and decided
# conditions in the plan; nothing with side effects runs, no run is made, a step reading one
# that was not probed is shown waiting, the probe's events go to stderr, and secrets (also
# through env.X or a param) are shown as ***.  --probe goes only with --dry-run.
PROBE_TOKEN=probe-Secret-81z run --dry-run --probe -p dir=$DIR -p note=probe-Secret-81z tests/exec/probe.yaml
never: probe-Secret-81z
run --probe tests/exec/probe.yaml -p dir=$DIR
