# check: a step whose check fails (a lua check that returns false) runs; a second run finds it
# in place, "satisfied", not run again, and its dependents see that.
run -p dir=$DIR tests/exec/check.yaml
run -p dir=$DIR tests/exec/check.yaml
