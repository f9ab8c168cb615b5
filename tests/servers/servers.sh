# Real servers for the tests of the network actions: PostgreSQL, Redis and the
# tests' own HTTP(S) server (httpd.py), on 127.0.0.1, on free ports, in one
# temporary directory, with generated passwords and TLS material.  Source it:
#
#   . tests/servers/servers.sh
#   trap servers_stop EXIT          # bash runs it on exit, SIGTERM, SIGHUP, Ctrl-C
#   servers_start pg redis http || exit 1
#
# servers_start exports RB_TEST_* (tests/servers/README.md lists them);
# servers_stop stops all it started and removes the directory, is safe to call
# twice and after a start that failed halfway.  Nothing may be left running:
# if the shell that started the servers dies without its trap (SIGKILL), a
# watchdog in a session of its own stops them within a second.  Call
# servers_start in the shell itself, never inside $( ): the servers are its
# children.  Works under set -eu.  Bash only; needs no runbook binary.

_servers_lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_servers_py=/usr/bin/python3    # not a pyenv shim that PATH may put first

# servers_start [pg] [redis] [http] [tls]: starts those asked (all three when
# none are) and exports their coordinates; 0, or 1 after saying on stderr what
# failed (the suite's EXIT trap then stops what did start).  tls alone makes
# the certificates without a server; http makes them too.
servers_start() {
	local what
	[ $# -gt 0 ] || set -- pg redis http
	for what in "$@"; do
		case $what in
		pg | redis | http | tls) ;;
		*) echo "servers_start: unknown server '$what' (pg, redis, http, tls)" >&2; return 1 ;;
		esac
	done
	_servers_init || return 1
	for what in "$@"; do
		"_servers_start_$what" || { echo "servers_start: $what did not start" >&2; return 1; }
	done
	return 0
}

# servers_stop: stops every server started from RB_TEST_SERVERS_DIR, then
# removes it.  Always 0.
servers_stop() {
	local dir=${RB_TEST_SERVERS_DIR:-} pid
	[ -n "$dir" ] || return 0
	# Never remove a directory that this library did not make.
	if [ ! -f "$dir/.rbservers" ]; then
		unset RB_TEST_SERVERS_DIR
		return 0
	fi
	_servers_stop_pg "$dir"
	for pid in "$dir/redis.pid" "$dir/http.pid"; do
		[ -s "$pid" ] && _servers_end "$(<"$pid")"
	done
	# The watchdog last, so that it is there to finish a stop cut short.  It
	# is a session leader: its group holds it and its tail.
	if [ -s "$dir/watchdog.pid" ]; then
		pid=$(<"$dir/watchdog.pid")
		[ "$pid" = "$BASHPID" ] || _servers_end "$pid" group
	fi
	# What still names the directory in its command line: a start that the
	# suite was killed in the middle of (initdb, pg_ctl, a postmaster not yet
	# in its pid file).  The random path is ours alone (as a regular
	# expression: TMPDIR may hold a '.' or a '+').
	for pid in $(pgrep -f -- "$(printf '%s/' "$dir" | sed 's/[][\.*^$+?(){}|]/\\&/g')"); do
		[ "$pid" = "$BASHPID" ] || _servers_end "$pid"
	done
	rm -rf "$dir" || :
	unset RB_TEST_SERVERS_DIR
	return 0
}

# --- shared ------------------------------------------------------------------

_servers_init() {
	local dir=${RB_TEST_SERVERS_DIR:-} i owner=$BASHPID   # not in the & below: its own
	[ -n "$dir" ] && [ -f "$dir/.rbservers" ] && return 0   # a second servers_start
	dir=$(mktemp -d "${TMPDIR:-/tmp}/rbservers.XXXXXX") || return 1
	: >"$dir/.rbservers"
	export RB_TEST_SERVERS_DIR=$dir
	# The watchdog waits for this shell to end; if it ends without calling
	# servers_stop (killed), the watchdog calls it.  Its own session keeps it
	# out of the signals sent to the suite's process group.
	setsid /bin/bash -c 'echo $$ >"$1/watchdog.pid"
		tail --pid="$2" -s 0.5 -f /dev/null
		. "$3/servers.sh"
		RB_TEST_SERVERS_DIR=$1 servers_stop' rbservers-watchdog "$dir" "$owner" "$_servers_lib" \
		</dev/null >/dev/null 2>&1 &
	for ((i = 0; i < 100; i++)); do
		[ -s "$dir/watchdog.pid" ] && return 0
		sleep 0.02
	done
	echo "servers_start: the watchdog did not start" >&2
	return 1
}

_servers_alive() {             # _servers_alive PID: running, and not a zombie
	local state
	[ -r "/proc/$1/stat" ] || return 1
	state=$(sed 's/^.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ]
}

# _servers_end PID [group]: SIGTERM (to its process group with group), SIGKILL
# if it still runs after 5 s, and reaps it when it is this shell's child.
_servers_end() {
	local pid=$1 target=$1 i
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	[ "${2:-}" = group ] && target=-$pid
	kill -TERM -- "$target" 2>/dev/null || :
	for ((i = 0; i < 100; i++)); do
		_servers_alive "$pid" || break
		sleep 0.05
	done
	_servers_alive "$pid" && { kill -KILL -- "$target" 2>/dev/null || :; }
	wait "$pid" 2>/dev/null || :   # its status is not ours (and would stop a set -e caller)
	return 0
}

_servers_free_port() {         # a port free on 127.0.0.1 now (the kernel's pick)
	"$_servers_py" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

_servers_secret() {            # 32 random hex digits
	od -An -tx1 -N16 /dev/urandom | tr -d ' \n'
}

_servers_log() {               # _servers_log FILE: its end, on stderr, to say why
	[ -s "$1" ] || return 0
	echo "servers_start: the end of $1:" >&2
	tail -n 15 "$1" | sed 's/^/  /' >&2
}

# --- PostgreSQL ----------------------------------------------------------------

# PostgreSQL refuses to run as root, so as root it runs as the user rbtest
# (created when missing; RB_TEST_PG_OS_USER names another), otherwise as us.
_servers_pg_user() {
	local u=${RB_TEST_PG_OS_USER:-rbtest}
	[ "$(id -u)" -eq 0 ] || return 0
	if ! id -u "$u" >/dev/null 2>&1; then
		# Another suite may create it at the same moment: check again after.
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$u" >/dev/null 2>&1 || id -u "$u" >/dev/null 2>&1 ||
			{ echo "servers_start: cannot create the user $u for PostgreSQL" >&2; return 1; }
	fi
	echo "$u"
}

_servers_pg_as() {             # _servers_pg_as DIR USER CMD...: in DIR, as USER ('' = us)
	local d=$1 u=$2
	shift 2
	if [ -n "$u" ]; then
		(cd "$d" && runuser -u "$u" -- "$@")
	else
		(cd "$d" && "$@")
	fi
}

_servers_start_pg() {
	local d=$RB_TEST_SERVERS_DIR/pg bin=${RB_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}
	local u port="" try pass app_pass
	if [ ! -x "$bin/pg_ctl" ]; then
		echo "servers_start: no PostgreSQL in $bin (install postgresql, or set RB_TEST_PG_BIN)" >&2
		return 1
	fi
	u=$(_servers_pg_user) || return 1
	_servers_start_tls || return 1      # it also speaks TLS, with the test CA's certificate
	mkdir -m 700 "$d" || return 1
	if [ -n "$u" ]; then
		# It must reach its directory; what else is here stays in 0700 directories.
		chmod 711 "$RB_TEST_SERVERS_DIR" && chown "$u:" "$d" || return 1
		if ! runuser -u "$u" -- test -w "$d"; then
			echo "servers_start: the user $u cannot write $d (is TMPDIR private?)" >&2
			return 1
		fi
	fi
	pass=$(_servers_secret)
	app_pass=$(_servers_secret)
	echo "$pass" >"$d/pwfile"
	[ -z "$u" ] || chown "$u:" "$d/pwfile"
	# Password for TCP (scram-sha-256); the socket, in this 0700 directory, trusts.
	if ! _servers_pg_as "$d" "$u" "$bin/initdb" -D "$d/data" -U rb_admin --pwfile="$d/pwfile" \
		--auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C -N >"$d/initdb.log" 2>&1; then
		_servers_log "$d/initdb.log"
		return 1
	fi
	rm -f "$d/pwfile"
	cp "$RB_TEST_SERVER_CERT" "$d/data/server.crt" && cp "$RB_TEST_SERVER_KEY" "$d/data/server.key" &&
		chmod 600 "$d/data/server.key" || return 1
	[ -z "$u" ] || chown "$u:" "$d/data/server.crt" "$d/data/server.key" || return 1
	cat >>"$d/data/postgresql.conf" <<-EOF

	# tests/servers/servers.sh: a throwaway server on loopback, fast, not durable
	listen_addresses = '127.0.0.1'
	unix_socket_directories = '$d'
	password_encryption = scram-sha-256
	fsync = off
	synchronous_commit = off
	full_page_writes = off
	shared_buffers = 32MB
	max_connections = 200
	ssl = on
	EOF
	for try in 1 2 3 4 5; do
		port=$(_servers_free_port) || return 1
		: >"$d/server.log"
		[ -z "$u" ] || chown "$u:" "$d/server.log"
		_servers_pg_as "$d" "$u" "$bin/pg_ctl" -D "$d/data" -l "$d/server.log" -o "-p $port" \
			-w -t 30 start >"$d/pg_ctl.log" 2>&1 && break
		port=""
		# Someone took the port between our pick and its bind: pick again.
		grep -q 'Address already in use' "$d/server.log" || break
	done
	if [ -z "$port" ]; then
		_servers_log "$d/pg_ctl.log"
		_servers_log "$d/server.log"
		return 1
	fi
	if ! PGPASSWORD=$pass PGCONNECT_TIMEOUT=10 psql -X -q -v ON_ERROR_STOP=1 \
		"host=127.0.0.1 port=$port user=rb_admin dbname=postgres" >"$d/setup.log" 2>&1 <<-EOF
		CREATE ROLE rb_app LOGIN PASSWORD '$app_pass';
		CREATE DATABASE rb_test;
		\\connect rb_test
		GRANT USAGE, CREATE ON SCHEMA public TO rb_app;
	EOF
	then
		_servers_log "$d/setup.log"
		return 1
	fi
	export RB_TEST_PG_HOST=127.0.0.1 RB_TEST_PG_PORT=$port RB_TEST_PG_DB=rb_test
	export RB_TEST_PG_USER=rb_admin RB_TEST_PG_PASSWORD=$pass
	export RB_TEST_PG_URL="postgresql://rb_admin:$pass@127.0.0.1:$port/rb_test"
	export RB_TEST_PG_APP_USER=rb_app RB_TEST_PG_APP_PASSWORD=$app_pass
	export RB_TEST_PG_APP_URL="postgresql://rb_app:$app_pass@127.0.0.1:$port/rb_test"
}

_servers_stop_pg() {           # _servers_stop_pg DIR
	local d=$1/pg pid u=""
	[ -s "$d/data/postmaster.pid" ] || return 0
	pid=$(head -n 1 "$d/data/postmaster.pid")
	[ "$(id -u)" -eq 0 ] && [ "$(stat -c %u "$d")" != 0 ] && u=$(stat -c %U "$d")
	_servers_pg_as "$d" "$u" "${RB_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}/pg_ctl" \
		-D "$d/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || :
	# pg_ctl made the server a session leader, not our child; SIGQUIT is its
	# immediate shutdown, should pg_ctl have failed.
	if _servers_alive "$pid"; then
		kill -QUIT "$pid" 2>/dev/null || :
		_servers_end "$pid"
	fi
	return 0
}

# --- Redis ---------------------------------------------------------------------

_servers_start_redis() {
	local d=$RB_TEST_SERVERS_DIR/redis port="" tport try i pid pass app_pass
	local t=$RB_TEST_SERVERS_DIR/tls
	_servers_start_tls || return 1
	mkdir -m 700 "$d" || return 1
	pass=$(_servers_secret)
	app_pass=$(_servers_secret)
	for try in 1 2 3 4 5; do
		port=$(_servers_free_port) || return 1
		tport=$(_servers_free_port) || return 1
		# TLS beside plain TCP (rediss://), with the test CA's server certificate;
		# a client certificate is checked when one is sent.
		cat >"$d/redis.conf" <<-EOF
		# tests/servers/servers.sh: a throwaway server on loopback, nothing saved
		port $port
		tls-port $tport
		tls-cert-file $t/server.pem
		tls-key-file $t/server.key
		tls-ca-cert-file $t/ca.pem
		tls-auth-clients optional
		bind 127.0.0.1
		protected-mode yes
		requirepass $pass
		user rb_app on >$app_pass ~app:* &* +@all -@dangerous
		save ""
		appendonly no
		daemonize no
		dir $d
		logfile ""
		EOF
		redis-server "$d/redis.conf" </dev/null >"$d/redis.log" 2>&1 &
		pid=$!
		echo "$pid" >"$RB_TEST_SERVERS_DIR/redis.pid"
		for ((i = 0; i < 200; i++)); do
			_servers_alive "$pid" || break
			[ "$(REDISCLI_AUTH=$pass redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && break 2
			sleep 0.05
		done
		_servers_end "$pid"
		rm -f "$RB_TEST_SERVERS_DIR/redis.pid"
		grep -q 'Address already in use' "$d/redis.log" || { port=""; break; }
		port=""
	done
	if [ -z "$port" ]; then
		_servers_log "$d/redis.log"
		return 1
	fi
	export RB_TEST_REDIS_HOST=127.0.0.1 RB_TEST_REDIS_PORT=$port RB_TEST_REDIS_PASSWORD=$pass
	export RB_TEST_REDIS_URL="redis://default:$pass@127.0.0.1:$port/0"
	export RB_TEST_REDIS_APP_USER=rb_app RB_TEST_REDIS_APP_PASSWORD=$app_pass
	export RB_TEST_REDIS_APP_URL="redis://rb_app:$app_pass@127.0.0.1:$port/0"
	export RB_TEST_REDISS_PORT=$tport RB_TEST_REDISS_URL="rediss://127.0.0.1:$tport/0"
}

# --- TLS material ----------------------------------------------------------------

# A test CA; server.pem (127.0.0.1 and localhost, 30 days), expired.pem (the
# same names, ended yesterday), client.pem (client auth): EC P-256, made by
# the openssl command, dated by the real clock.
_servers_start_tls() {
	local t=$RB_TEST_SERVERS_DIR/tls
	[ -f "$t/client.pem" ] && return 0     # http after tls, or tls twice
	mkdir -m 700 "$t" || return 1
	if ! (cd "$t" && _servers_tls_make) >"$t/openssl.log" 2>&1; then
		_servers_log "$t/openssl.log"
		return 1
	fi
	export RB_TEST_CA_FILE=$t/ca.pem
	export RB_TEST_SERVER_CERT=$t/server.pem RB_TEST_SERVER_KEY=$t/server.key
	export RB_TEST_EXPIRED_CERT=$t/expired.pem RB_TEST_EXPIRED_KEY=$t/expired.key
	export RB_TEST_CLIENT_CERT=$t/client.pem RB_TEST_CLIENT_KEY=$t/client.key
}

# In the tls directory; fails at the first failure (set -e would not: bash
# ignores it in a function called from a condition).
_servers_tls_make() {
	umask 077
	cat >openssl.cnf <<-'EOF'
	[ req ]
	distinguished_name = dn
	prompt = no
	[ dn ]
	CN = unused
	[ ca_ext ]
	basicConstraints = critical, CA:TRUE
	keyUsage = critical, keyCertSign, cRLSign
	subjectKeyIdentifier = hash
	[ server_ext ]
	basicConstraints = critical, CA:FALSE
	keyUsage = critical, digitalSignature
	extendedKeyUsage = serverAuth
	subjectAltName = IP:127.0.0.1, DNS:localhost
	subjectKeyIdentifier = hash
	authorityKeyIdentifier = keyid
	[ client_ext ]
	basicConstraints = critical, CA:FALSE
	keyUsage = critical, digitalSignature
	extendedKeyUsage = clientAuth
	subjectKeyIdentifier = hash
	authorityKeyIdentifier = keyid
	[ ca ]
	default_ca = test_ca
	[ test_ca ]
	dir = .
	database = index.txt
	new_certs_dir = issued
	serial = serial
	default_md = sha256
	policy = any_name
	unique_subject = no
	email_in_dn = no
	[ any_name ]
	commonName = supplied
	EOF
	: >index.txt && mkdir issued && echo 1000 >serial &&
	openssl req -x509 -config openssl.cnf -extensions ca_ext -newkey ec \
		-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 365 \
		-subj "/CN=runbook test CA" &&
	_servers_tls_issue server "/CN=127.0.0.1" server_ext -days 30 &&
	# openssl x509 has no -not_after before OpenSSL 3.4; openssl ca takes dates.
	_servers_tls_issue expired "/CN=127.0.0.1" server_ext \
		-startdate "$(date -u -d '2 days ago' +%Y%m%d%H%M%SZ)" \
		-enddate "$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)" &&
	_servers_tls_issue client "/CN=runbook test client" client_ext -days 30
}

_servers_tls_issue() {         # _servers_tls_issue NAME SUBJECT EXTENSIONS DATES...
	local name=$1 subj=$2 ext=$3
	shift 3
	openssl req -new -config openssl.cnf -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$name.key" -out "$name.csr" -subj "$subj" &&
	openssl ca -batch -notext -config openssl.cnf -cert ca.pem -keyfile ca.key \
		-extensions "$ext" -in "$name.csr" -out "$name.pem" "$@"
}

# --- HTTP --------------------------------------------------------------------------

_servers_start_http() {
	local d=$RB_TEST_SERVERS_DIR/http i pid name port
	_servers_start_tls || return 1
	mkdir -m 700 "$d" || return 1
	export RB_TEST_HTTP_BASIC_USER=rb_user RB_TEST_HTTP_BASIC_PASSWORD=$(_servers_secret)
	export RB_TEST_HTTP_BEARER_TOKEN=$(_servers_secret)
	export RB_TEST_HTTP_LOG=$d/requests.jsonl
	"$_servers_py" "$_servers_lib/httpd.py" --ports "$d/ports" --log "$RB_TEST_HTTP_LOG" \
		--tls "$RB_TEST_SERVERS_DIR/tls" </dev/null >"$d/httpd.log" 2>&1 &
	pid=$!
	echo "$pid" >"$RB_TEST_SERVERS_DIR/http.pid"
	# It binds port 0 itself and writes its ports when every listener listens.
	for ((i = 0; i < 200; i++)); do
		[ -s "$d/ports" ] && break
		_servers_alive "$pid" || break
		sleep 0.05
	done
	if [ ! -s "$d/ports" ]; then
		_servers_log "$d/httpd.log"
		return 1
	fi
	while read -r name port; do
		case $name in
		http) export RB_TEST_HTTP_PORT=$port RB_TEST_HTTP_URL=http://127.0.0.1:$port ;;
		https) export RB_TEST_HTTPS_PORT=$port RB_TEST_HTTPS_URL=https://127.0.0.1:$port ;;
		https_expired) export RB_TEST_HTTPS_EXPIRED_URL=https://127.0.0.1:$port ;;
		https_mtls) export RB_TEST_HTTPS_MTLS_URL=https://127.0.0.1:$port ;;
		esac
	done <"$d/ports"
}
