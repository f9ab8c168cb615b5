# A NUL from an expression is refused at run time, at its position, before anything of the
# step is signed or run: in a command, an action's argument, a prompt, a secret's value.
EXEC_NUL_TOKEN=tok-nul-9 run -p dir=$DIR -p what=command tests/exec/nul.yaml
EXEC_NUL_TOKEN=tok-nul-9 run -p dir=$DIR -p what=arg tests/exec/nul.yaml
EXEC_NUL_TOKEN=tok-nul-9 run -p dir=$DIR -p what=prompt tests/exec/nul.yaml
EXEC_NUL_TOKEN=tok-nul-9 run -p dir=$DIR -p what=secret tests/exec/nul.yaml
