# An approval gate without a terminal: the run does what does not depend on it, pauses (exit 3),
# journals the prompt and says how to go on; runs and status show it paused.  A resume without
# --approve pauses again; --approve of an unknown step or one without a gate is refused; resume
# --approve STEP runs it once, with who and how journalled.  resume --from STEP runs it and
# what depends on it again, not what comes before; --from an unknown step is refused.
run -p dir=$DIR tests/exec/gate.yaml
runs
status $RUN
resume $RUN
resume $RUN --approve nosuch
resume $RUN --approve before
resume $RUN --approve dangerous
resume $RUN --from dangerous --approve all
resume $RUN --from nosuch
