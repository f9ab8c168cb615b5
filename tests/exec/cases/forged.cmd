# What steps print is shown, not obeyed: control characters as \e, \r, \0 in a step's lines and
# in a gate's prompt, a NUL not the line's end, a CR that ends a line dropped; a gate without
# a terminal pauses (exit 3).
run -p dir=$DIR tests/exec/forged.yaml
