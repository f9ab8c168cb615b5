# run: commands run in bash -eo pipefail (sh -e with shell: sh): a failure inside a pipeline or
# in the middle of a script fails the step, and what comes after does not run; POSIX sh keeps
# its pipelines, for run: and the shell action; a step's env: reaches its command.
run tests/exec/shell_options.yaml
# env: goes only with run:
validate - <tests/exec/cases/env_lua.yaml
