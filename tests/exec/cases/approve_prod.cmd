# In prod the expression gives a prompt: the run pauses there (exit 3); approve: true is a gate
# with the default prompt.
run -p dir=$DIR -p env=prod tests/exec/approve.yaml
resume $RUN --approve prod_only
