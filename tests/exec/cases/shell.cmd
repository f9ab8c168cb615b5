# The shell action and run:: sh -c, argv, env, cwd, stdin, parsed json and lines, a secret
# through the environment (never its command line, nor on disk or the console), exit
# statuses, the failure's telling stderr line (psql's ERROR, else the last line that says
# something, else the last that is not blank; control characters as spaces, cut at 200
# bytes; none for a sensitive step), failed outputs for the steps after, timeouts, a
# command not found.
EXEC_TEST_TOKEN=s3cr3t-XY EXPECTED=s3cr3t-XY run tests/exec/shell.yaml
never: s3cr3t-XY
never: hush-81
