# Generates a runbook of N steps with params, vars, expressions, explicit and
# implicit dependencies, for the validate and plan benchmarks.
#   awk -v N=10000 -f bench/gen.awk > big.yaml
BEGIN {
	print "runbook: bench-" N
	print "version: 1"
	print "description: generated for the benchmarks"
	print "params:"
	print "  env: {type: string, enum: [dev, staging, prod], default: staging}"
	print "  retention_days: {type: integer, default: 90, min: 1}"
	print "  hosts: {type: list, default: [api-1, api-2, api-3]}"
	print "secrets:"
	print "  token: {env: BENCH_TOKEN}"
	print "vars:"
	print "  prefix: ${{ params.env }}-maintenance"
	print "  cutoff: ${{ params.retention_days * 2 }}"
	print "defaults: {timeout: 5m, retry: {attempts: 2, delay: 1s}}"
	print "steps:"
	for (i = 0; i < N; i++) {
		printf "  - id: s%d\n", i
		printf "    name: Step %d of %d\n", i, N
		if (i % 7 == 3) {
			printf "    lua: |\n"
			printf "      local n = %d\n", i
			printf "      return { n = n, env = params.env, cutoff = vars.cutoff }\n"
		} else if (i % 7 == 5) {
			printf "    action: shell\n"
			printf "    with:\n"
			printf "      command: [echo, \"${{ vars.prefix }}\", \"%d\"]\n", i
			printf "      env: {TOKEN: \"${{ secrets.token }}\"}\n"
		} else {
			printf "    run: echo \"${{ vars.prefix }} step %d keeps ${{ params.retention_days }} days\"\n", i
		}
		if (i >= 1 && i % 3 == 0)
			printf "    needs: [s%d]\n", i - 1
		if (i >= 10 && i % 5 == 0)
			printf "    if: ${{ steps.s%d.status == 'succeeded' and params.env ~= 'prod' }}\n", i - 10
		if (i % 11 == 0)
			printf "    timeout: 30s\n"
	}
}
