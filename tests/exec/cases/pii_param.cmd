# A param the log holds redacted is given again on resume, never run as "<email>": a resume
# without it is refused naming it; a param the log holds is not replaced.
run -p who=dana@example.com -p dir=$DIR tests/exec/pii_param.yaml
never: dana@example
touch: $DIR/fixed
resume $RUN
resume -p dir=/elsewhere $RUN
resume -p who=dana@example.com $RUN
never: dana@example
