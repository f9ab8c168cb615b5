# The sandbox the guides' runbooks run in (runbooks/sandbox/README.md): a real
# PostgreSQL seeded with PersonaPass's tables, a real Redis, the web, api,
# ai-engine and personachain services as local HTTP processes, an alert
# receiver, and stand-ins for kubectl, aws and trivy on a PATH that only the
# sandbox uses.  All on 127.0.0.1, on free ports, in one temporary directory,
# stopped and removed by sandbox_stop (or by a watchdog if the shell that
# started it is killed).  Source it:
#
#   . runbooks/sandbox/sandbox.sh
#   trap sandbox_stop EXIT
#   sandbox_start || exit 1          # exports the variables below
#   sandbox_reset                    # the state of a fresh start, servers kept
#
# Bash only.  Builds on tests/servers/servers.sh.

_sandbox_lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$_sandbox_lib/../../tests/servers/servers.sh"

# sandbox_start: 0 with the sandbox running and its variables exported, or 1
# after saying what failed (sandbox_stop then removes what did start).
sandbox_start() {
	local dir pg_pass i
	servers_start pg redis http || return 1
	dir=$RB_TEST_SERVERS_DIR
	pg_pass=$(_servers_secret)
	export SANDBOX_DIR=$dir
	export SANDBOX_CLUSTER_DIR=$dir/cluster SANDBOX_S3_DIR=$dir/s3 SANDBOX_TRIVY_DIR=$dir/trivy
	export SANDBOX_PG_PORT=$RB_TEST_PG_PORT SANDBOX_REDIS_PORT=$RB_TEST_REDIS_PORT
	export SANDBOX_RECEIVER_URL=$RB_TEST_HTTP_URL SANDBOX_RECEIVER_LOG=$RB_TEST_HTTP_LOG

	# The database: the guide's role and database, seeded once into a template
	# that sandbox_reset copies (a file copy: fast).
	if ! PGPASSWORD=$RB_TEST_PG_PASSWORD psql -X -q -v ON_ERROR_STOP=1 \
		"host=127.0.0.1 port=$RB_TEST_PG_PORT user=rb_admin dbname=postgres" \
		>"$dir/seed.log" 2>&1 <<-EOF
		CREATE ROLE personapass LOGIN CREATEDB PASSWORD '$pg_pass';
		CREATE ROLE analytics_ro LOGIN PASSWORD NULL VALID UNTIL '2025-01-01';
		CREATE ROLE legacy_admin LOGIN SUPERUSER PASSWORD NULL;
		CREATE DATABASE personapass_seed OWNER personapass;
	EOF
	then
		_servers_log "$dir/seed.log"
		return 1
	fi
	if ! PGPASSWORD=$pg_pass psql -X -q -v ON_ERROR_STOP=1 \
		"host=127.0.0.1 port=$RB_TEST_PG_PORT user=personapass dbname=personapass_seed" \
		-f "$_sandbox_lib/seed.sql" >>"$dir/seed.log" 2>&1; then
		_servers_log "$dir/seed.log"
		return 1
	fi
	export SANDBOX_PG_PASSWORD=$pg_pass
	export DATABASE_URL="postgresql://personapass:$pg_pass@127.0.0.1:$RB_TEST_PG_PORT/personapass"
	export PG_ADMIN_URL="postgresql://rb_admin:$RB_TEST_PG_PASSWORD@127.0.0.1:$RB_TEST_PG_PORT/postgres"
	export REDIS_URL="redis://127.0.0.1:$RB_TEST_REDIS_PORT/0" REDIS_PASSWORD=$RB_TEST_REDIS_PASSWORD

	# The services, reading the cluster's state at every request.  Its command
	# line names the directory, so servers_stop finds it.
	mkdir -p "$SANDBOX_CLUSTER_DIR" "$SANDBOX_S3_DIR" "$SANDBOX_TRIVY_DIR" "$dir/secrets" || return 1
	chmod 700 "$dir/secrets"
	/usr/bin/python3 "$_sandbox_lib/cluster.py" init "$SANDBOX_CLUSTER_DIR" || return 1
	/usr/bin/python3 "$_sandbox_lib/cluster.py" serve "$SANDBOX_CLUSTER_DIR" \
		</dev/null >"$dir/cluster.log" 2>&1 &
	echo $! >"$dir/cluster.pid"
	for ((i = 0; i < 250; i++)); do
		[ -s "$SANDBOX_CLUSTER_DIR/ports.json" ] && break
		sleep 0.02
	done
	if [ ! -s "$SANDBOX_CLUSTER_DIR/ports.json" ]; then
		echo "sandbox_start: the services did not start" >&2
		_servers_log "$dir/cluster.log"
		return 1
	fi
	local ports
	ports=$(<"$SANDBOX_CLUSTER_DIR/ports.json")
	_sandbox_port() { jq -r --arg s "$1" '.[$s]' <<<"$ports"; }
	export PERSONAPASS_WEB_URL=http://127.0.0.1:$(_sandbox_port web)
	export PERSONAPASS_API_URL=http://127.0.0.1:$(_sandbox_port api)
	export PERSONAPASS_AI_ENGINE_URL=http://127.0.0.1:$(_sandbox_port ai-engine)
	export PERSONACHAIN_RPC_URL=http://127.0.0.1:$(_sandbox_port personachain)
	unset -f _sandbox_port
	# The guide's disaster recovery names them personapass-api and personapass-web.
	export PERSONAPASS_DR_DEPLOYMENTS='["api","web"]'

	# The alert receiver (tests/servers/httpd.py): Slack, PagerDuty and plain
	# webhooks, every request kept in SANDBOX_RECEIVER_LOG.
	export SLACK_WEBHOOK_URL=$RB_TEST_HTTP_URL/slack/T000/B000/sandbox
	export PAGERDUTY_EVENTS_URL=$RB_TEST_HTTP_URL/pagerduty/v2/enqueue
	export PAGERDUTY_ROUTING_KEY=$(_servers_secret)
	export ALERT_WEBHOOK_URL=$RB_TEST_HTTP_URL/hook/alerts
	export OARS_ALERT_CHANNELS=$(jq -cn --arg s "$SLACK_WEBHOOK_URL" --arg p "$PAGERDUTY_EVENTS_URL" \
		--arg k "$PAGERDUTY_ROUTING_KEY" --arg w "$ALERT_WEBHOOK_URL" \
		'[{id: "ops-slack", type: "slack_webhook", url: $s},
		  {id: "oncall", type: "pagerduty_events_v2", url: $p, routingKey: $k},
		  {id: "audit-hook", type: "generic_webhook", url: $w}]')

	# The TLS endpoint whose certificate the health check reads: the receiver's
	# HTTPS listener, with the sandbox's CA.
	export PERSONAPASS_TLS_HOST=127.0.0.1 PERSONAPASS_TLS_PORT=$RB_TEST_HTTPS_PORT
	export PERSONAPASS_TLS_SERVER_NAME=localhost PERSONAPASS_CA_FILE=$RB_TEST_CA_FILE

	# Last night's backup, as the guide's backup.sh leaves it (pg_dump, gzip,
	# gpg AES256), which sandbox_reset puts in the bucket.
	export BACKUP_PASSPHRASE_FILE=$dir/secrets/backup-passphrase GNUPGHOME=$dir/gnupg
	_servers_secret >"$BACKUP_PASSPHRASE_FILE" && chmod 600 "$BACKUP_PASSPHRASE_FILE"
	mkdir -m 700 "$GNUPGHOME" || return 1
	local at stamp seed
	at=$(( $(date +%s) - ($(date +%s) - 7200) % 86400 ))    # the latest 02:00 UTC
	stamp=$(date -u -d "@$at" +%Y-%m-%d_%H-%M-%S)
	seed=$dir/seed-backup/daily/$stamp
	mkdir -p "$seed" || return 1
	if ! PGPASSWORD=$pg_pass pg_dump -h 127.0.0.1 -p "$RB_TEST_PG_PORT" -U personapass \
		--no-owner personapass_seed 2>>"$dir/seed.log" | gzip |
		gpg --batch --yes --quiet --pinentry-mode loopback --passphrase-file "$BACKUP_PASSPHRASE_FILE" \
			--cipher-algo AES256 --symmetric --output "$seed/db_backup_$stamp.sql.gz.gpg" 2>>"$dir/seed.log"; then
		echo "sandbox_start: the seed backup failed" >&2
		_servers_log "$dir/seed.log"
		return 1
	fi
	touch -d "@$at" "$seed/db_backup_$stamp.sql.gz.gpg" || return 1
	# Runs and their locks stay inside: two sandboxes, or a sandbox and the
	# machine's real runs, never wait for each other's lock.
	export RUNBOOK_STATE_DIR=$dir/runbook RUNBOOK_LOCK_DIR=$dir/locks
	mkdir -p "$RUNBOOK_LOCK_DIR" || return 1
	export PATH=$_sandbox_lib/bin:$PATH
	sandbox_reset || return 1
	_sandbox_env >"$dir/env" && chmod 600 "$dir/env"
	return 0
}

# sandbox_reset: the database, the cluster, the bucket, the scans and the
# receiver as at a fresh start, the servers kept running.  0 or 1.
sandbox_reset() {
	local dir=${SANDBOX_DIR:?no sandbox is running}
	PGPASSWORD=$RB_TEST_PG_PASSWORD psql -X -q -v ON_ERROR_STOP=1 \
		"host=127.0.0.1 port=$SANDBOX_PG_PORT user=rb_admin dbname=postgres" \
		>"$dir/reset.log" 2>&1 <<-EOF || { _servers_log "$dir/reset.log"; return 1; }
		SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		 WHERE datname LIKE 'personapass%' AND datname <> 'personapass_seed';
		SELECT format('DROP DATABASE %I', datname) FROM pg_database
		 WHERE datname LIKE 'personapass%' AND datname <> 'personapass_seed' \\gexec
		ALTER ROLE personapass PASSWORD '$SANDBOX_PG_PASSWORD';
		CREATE DATABASE personapass TEMPLATE personapass_seed OWNER personapass;
	EOF
	redis-cli -h 127.0.0.1 -p "$SANDBOX_REDIS_PORT" --no-auth-warning -a "$REDIS_PASSWORD" \
		FLUSHALL >/dev/null || return 1
	redis-cli -h 127.0.0.1 -p "$SANDBOX_REDIS_PORT" --no-auth-warning -a "$REDIS_PASSWORD" \
		MSET session:seed:1 u1 session:seed:2 u2 cache:home '{"users":2000}' >/dev/null || return 1
	/usr/bin/python3 "$_sandbox_lib/cluster.py" init "$SANDBOX_CLUSTER_DIR" || return 1
	rm -rf "$SANDBOX_S3_DIR" "$SANDBOX_TRIVY_DIR" "$RUNBOOK_STATE_DIR"
	mkdir -p "$SANDBOX_S3_DIR/personapass-backups" "$SANDBOX_TRIVY_DIR" || return 1
	cp -a "$dir/seed-backup/." "$SANDBOX_S3_DIR/personapass-backups/" || return 1
	curl -sf -X DELETE "$SANDBOX_RECEIVER_URL/_requests" >/dev/null || return 1
	: >"$SANDBOX_RECEIVER_LOG"
}

sandbox_stop() {
	# gpg started its agent for the seed backup (and runbooks' gpg calls): stop it
	# by its home, before the directory goes.
	[ -n "${GNUPGHOME:-}" ] && [ -d "$GNUPGHOME" ] && gpgconf --kill gpg-agent >/dev/null 2>&1
	servers_stop
	unset SANDBOX_DIR
}

# The sandbox's variables, as lines a shell can source.
_sandbox_env() {
	local v
	for v in SANDBOX_DIR SANDBOX_CLUSTER_DIR SANDBOX_S3_DIR SANDBOX_TRIVY_DIR SANDBOX_PG_PORT \
		SANDBOX_REDIS_PORT SANDBOX_RECEIVER_URL SANDBOX_RECEIVER_LOG SANDBOX_PG_PASSWORD \
		DATABASE_URL PG_ADMIN_URL REDIS_URL REDIS_PASSWORD PERSONAPASS_WEB_URL \
		PERSONAPASS_API_URL PERSONAPASS_AI_ENGINE_URL PERSONACHAIN_RPC_URL PERSONAPASS_DR_DEPLOYMENTS \
		SLACK_WEBHOOK_URL \
		PAGERDUTY_EVENTS_URL PAGERDUTY_ROUTING_KEY ALERT_WEBHOOK_URL OARS_ALERT_CHANNELS \
		BACKUP_PASSPHRASE_FILE GNUPGHOME PERSONAPASS_TLS_HOST PERSONAPASS_TLS_PORT \
		PERSONAPASS_TLS_SERVER_NAME PERSONAPASS_CA_FILE RUNBOOK_STATE_DIR RUNBOOK_LOCK_DIR PATH RB_TEST_SERVERS_DIR RB_TEST_PG_PASSWORD \
		RB_TEST_PG_PORT RB_TEST_HTTP_URL RB_TEST_HTTP_LOG; do
		printf 'export %s=%q\n' "$v" "${!v}"
	done
}
