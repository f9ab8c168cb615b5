# approve: false and an expression giving nil are no gate, journalled and said as such.
run -p dir=$DIR tests/exec/approve.yaml
