eval -r tests/expr/scope.yaml -p env=prod "fmt(\"%s:%d\", params.env, vars.cutoff)"
