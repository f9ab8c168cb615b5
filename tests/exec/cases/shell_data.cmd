# A ${{ }} value reaches the shell as data wherever it stands (unquoted, quoted, in $( ), in a
# here-document, in a shell action's command, spliced quoted): printed as it is, nothing in it
# run; a secret inside single quotes is expanded.  Inside $(( )) an integer is computed with,
# anything else fails the step at its position.  The intent signs the command and its
# variables, never the secret's value.
EXEC_TEST_TOKEN=tok-Zq81x run tests/exec/shell_data.yaml -p 'v=x; echo INJECTED $(id -un) `id` '"'"'q'"'"' "d" \'
never: INJECTED root
never: tok-Zq81x
