# An approve that gives a number fails its step at its position, --approve'd or not, unrun.
run -p dir=$DIR -p env=odd --approve odd tests/exec/approve.yaml
