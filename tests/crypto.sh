#!/usr/bin/env bash
# The crypto.* actions against the openssl CLI: keys generated of each type
# and checked by `openssl pkey`, their modes and fingerprints, files never
# overwritten unless told, encrypted keys, random secrets that the run hides
# everywhere, certificates read from files and from live `openssl s_server`s
# (a test CA's valid certificate, an expired one, the wrong name), a server
# that never answers (timeout, SIGINT) and a key generation interrupted.
# The runbooks are in tests/crypto/.
set -uo pipefail
: "${RUNBOOK:?}"
cd "$(dirname "$0")/.." || exit 1
d=tests/crypto
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ -n "${CRYPTO_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
pass=0 fail=0
check() {                 # check DESCRIPTION COMMAND...
	if "${@:2}" >/dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $1"; fi
}
all() {                   # all COMMAND... + COMMAND...: each of the commands succeeds
	local a cmd=()
	for a in "$@" +; do
		if [ "$a" = + ]; then
			"${cmd[@]}" || return 1
			cmd=()
		else
			cmd+=("$a")
		fi
	done
}
rb() { ${RUNBOOK_WRAP:-} "$RUNBOOK" "$@"; }
ms() { echo $(($(date +%s%N) / 1000000)); }

# run NAME RUNBOOK ARGS...: a run in a state directory of its own; its console in
# $tmp/NAME.out, its exit status in $rc, its directory in $run.
run() {
	local name=$1 book=$2
	shift 2
	rb run --state-dir "$tmp/st.$name" "$d/$book" "$@" >"$tmp/$name.out" 2>&1 </dev/null
	rc=$?
	run=$(echo "$tmp/st.$name"/runs/*)
}
# out STEP [FILTER]: the output of STEP's last attempt in $run, through jq FILTER.
out() {
	jq -r --arg s "$1" 'select(.type == "step_finished" and .step == $s) | .output' \
		"$run/audit.jsonl" | tail -n 1 | jq -r "${2:-.}"
}
said() { grep -qF -- "$1" "$tmp/$2.out"; }
# The SHA-256 of a key's DER SubjectPublicKeyInfo, as openssl computes it; hex, or b64.
spki() { openssl pkey "$@" -pubout -outform DER 2>/dev/null | sha256sum | cut -c 1-64; }
spki64() { echo "SHA256:$(openssl pkey "$@" -pubout -outform DER | openssl dgst -sha256 -binary | base64 | tr -d =)"; }
no_temp_files() { ! ls -A "$1" | grep -q '^\.runbook-key'; }
# No line of a PEM body (but its BEGIN and END lines) is in the files or directories.
kept_out() { ! grep -rqF -f <(grep -v -- ----- "$1") "${@:2}"; }

# --- key pairs ---------------------------------------------------------------------------
k=$tmp/keys
mkdir -p "$k"
run keys keys.yaml -p dir="$k"
check "the key pairs of each type are made" [ "$rc" -eq 0 ]
for name in rsa rsa2048 ed25519 p256 p384; do
	priv=$k/$name.pem pub=$k/$name.pem.pub
	[ "$name" = p256 ] && pub=$k/p256-public.pem
	check "$name: openssl pkey -check takes the private key" openssl pkey -in "$priv" -check -noout
	check "$name: it is PKCS#8, unencrypted" grep -qx -- '-----BEGIN PRIVATE KEY-----' "$priv"
	check "$name: openssl pkey -pubin takes the public key" openssl pkey -pubin -in "$pub" -noout
	check "$name: the public key is the private key's" cmp <(openssl pkey -in "$priv" -pubout) "$pub"
	check "$name: the private key's mode is 0600" [ "$(stat -c %a "$priv")" = 600 ]
	check "$name: the public key's mode is 0644" [ "$(stat -c %a "$pub")" = 644 ]
	check "$name: the fingerprint is openssl's" [ "$(out "$name" .fingerprint)" = "$(spki -in "$priv")" ]
	check "$name: and its base64 form" [ "$(out "$name" .fingerprint_base64)" = "$(spki64 -in "$priv")" ]
	check "$name: the output names the files" [ "$(out "$name" '.private_key + " " + .public_key')" = "$priv $pub" ]
	check "$name: no line of the private key in the run or its console" kept_out "$priv" "$run" "$tmp/keys.out"
done
check "rsa: 3072 bits by default" bash -c "openssl pkey -in '$k/rsa.pem' -text -noout | head -n 1 | grep -qF '(3072 bit'"
check "rsa: the output says rsa 3072" [ "$(out rsa '.key_type + " " + (.bits | tostring)')" = "rsa 3072" ]
check "rsa2048: 2048 bits" bash -c "openssl pkey -in '$k/rsa2048.pem' -text -noout | head -n 1 | grep -qF '(2048 bit'"
check "ed25519: openssl says ED25519" bash -c "openssl pkey -in '$k/ed25519.pem' -text -noout | grep -q '^ED25519 Private-Key'"
check "ed25519: the output says so" [ "$(out ed25519 .key_type)" = ed25519 ]
check "ec: P-256 by default" bash -c "openssl pkey -in '$k/p256.pem' -text -noout | grep -qx 'NIST CURVE: P-256'"
check "ec: P-384 when asked" bash -c "openssl pkey -in '$k/p384.pem' -text -noout | grep -qx 'NIST CURVE: P-384'"
check "ec: the output names the curve" [ "$(out p384 '.key_type + " " + .curve')" = "ec P-384" ]
check "no temp file is left beside the keys" no_temp_files "$k"
check "fingerprint of a private key is openssl's" [ "$(out fp_private .fingerprint)" = "$(spki -in "$k/rsa2048.pem")" ]
check "fingerprint of its public key is the same" [ "$(out fp_public .fingerprint)" = "$(out fp_private .fingerprint)" ]
check "fingerprint says what the files hold" [ "$(out fp_private .kind) $(out fp_public .kind)" = "private_key public_key" ]
for name in rsa ed25519 p256 p384; do
	check "verify_pair: the $name pair matches" [ "$(out "pair_$name" .matches)" = true ]
	check "verify_pair: the $name fingerprints are equal" [ "$(out "pair_$name" .fingerprint)" = "$(out "pair_$name" .public_fingerprint)" ]
done
check "the run's audit log verifies" rb audit verify --state-dir "$tmp/st.keys" "$(basename "$run")"

# Other PEM forms of keys, as older tools write them.
f=$tmp/forms
mkdir -p "$f"
openssl genrsa -traditional -out "$f/traditional.pem" 2048 2>/dev/null
openssl rsa -in "$f/traditional.pem" -RSAPublicKey_out -out "$f/pkcs1.pub" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -out "$f/ecparam.pem"   # EC PARAMETERS first
for file in traditional.pem pkcs1.pub ecparam.pem; do
	run "form_$file" inspect.yaml -p file="$f/$file"
	want=$(spki -in "$f/$file")
	[ "$file" = pkcs1.pub ] && want=$(spki -in "$f/traditional.pem")
	check "fingerprint of $file" all [ "$rc" -eq 0 ] + [ "$(out fp .fingerprint)" = "$want" ]
done

# --- files never overwritten unless told ---------------------------------------------------
o=$tmp/one
mkdir -p "$o"
run one1 one.yaml -p key="$o/k.pem"
check "a key pair is made" [ "$rc" -eq 0 ]
before=$(cat "$o/k.pem" "$o/k.pem.pub" | sha256sum)
run one2 one.yaml -p key="$o/k.pem"
check "the same private key again: the step fails" [ "$rc" -eq 1 ]
check "saying the file exists" said "$o/k.pem exists: not replaced (overwrite: true replaces it)" one2
check "and the files are as they were" [ "$(cat "$o/k.pem" "$o/k.pem.pub" | sha256sum)" = "$before" ]
mv "$o/k.pem" "$o/k.keep"
run one3 one.yaml -p key="$o/k.pem"
check "a public key in the way: the step fails" [ "$rc" -eq 1 ]
check "naming it" said "$o/k.pem.pub exists" one3
check "and no private key is made" [ ! -e "$o/k.pem" ]
mv "$o/k.keep" "$o/k.pem"
old_fp=$(spki -in "$o/k.pem")
run one4 one.yaml -p key="$o/k.pem" -p overwrite=true -p type=ec
check "overwrite: true replaces them" all [ "$rc" -eq 0 ] + [ "$(spki -in "$o/k.pem")" != "$old_fp" ]
check "with the new key" all [ "$(out plain .fingerprint)" = "$(spki -in "$o/k.pem")" ] + [ "$(out plain .key_type)" = ec ]
check "the new public key is the new private key's" cmp <(openssl pkey -in "$o/k.pem" -pubout) "$o/k.pem.pub"
check "with modes 0600 and 0644" [ "$(stat -c %a "$o/k.pem") $(stat -c %a "$o/k.pem.pub")" = "600 644" ]
check "and no temp file left" no_temp_files "$o"
echo keep >"$o/target"
ln -s "$o/target" "$o/link.pem"
run one5 one.yaml -p key="$o/link.pem"
check "a symbolic link in the way: the step fails" [ "$rc" -eq 1 ]
check "and what it points to is untouched" all [ "$(cat "$o/target")" = keep ] + [ -L "$o/link.pem" ]
run one6 one.yaml -p key="$tmp/no/such/dir/k.pem"
check "a directory that is not there: the step fails" [ "$rc" -eq 1 ]
check "saying where" said "cannot create a file in $tmp/no/such/dir" one6

# --- encrypted private keys ----------------------------------------------------------------
export KEY_PASSPHRASE="pp-$(openssl rand -hex 12)"
e=$tmp/enc
mkdir -p "$e"
run enc one.yaml -p key="$e/k.pem" -p encrypt=true -p type=ec
check "an encrypted key is made" [ "$rc" -eq 0 ]
check "as encrypted PKCS#8" grep -qx -- '-----BEGIN ENCRYPTED PRIVATE KEY-----' "$e/k.pem"
check "openssl opens it with the passphrase" openssl pkey -in "$e/k.pem" -passin env:KEY_PASSPHRASE -check -noout
check "and not with another" bash -c "! openssl pkey -in '$e/k.pem' -passin pass:wrong -noout"
check "its fingerprint is openssl's" [ "$(out encrypted .fingerprint)" = "$(spki -in "$e/k.pem" -passin env:KEY_PASSPHRASE)" ]
check "the passphrase is nowhere in the run" bash -c "! grep -rqF '$KEY_PASSPHRASE' '$run' '$tmp/enc.out'"
run enc_fp inspect.yaml -p file="$e/k.pem" -p with_passphrase=true
check "fingerprint opens it with the passphrase" all [ "$rc" -eq 0 ] + [ "$(out fp_pass .fingerprint)" = "$(spki -in "$e/k.pem" -passin env:KEY_PASSPHRASE)" ]
run enc_nopass inspect.yaml -p file="$e/k.pem"
check "without it: the step fails" [ "$rc" -eq 1 ]
check "saying a passphrase is needed" said "$e/k.pem: the private key is encrypted: give its passphrase" enc_nopass
KEY_PASSPHRASE=not-the-passphrase run enc_wrong inspect.yaml -p file="$e/k.pem" -p with_passphrase=true
check "with a wrong one: the step fails" all [ "$rc" -eq 1 ] + said "$e/k.pem: cannot read the private key" enc_wrong

# --- verify_pair that does not match ---------------------------------------------------------
run pair_other inspect.yaml -p file="$k/rsa.pem" -p other="$k/rsa2048.pem.pub"
check "two rsa keys that are not a pair: the step fails" [ "$rc" -eq 1 ]
check "its output says matches: false" [ "$(out pair .matches)" = false ]
check "and the message says why" said "the private key $k/rsa.pem does not match the public key $k/rsa2048.pem.pub (rsa keys" pair_other
check "with the two fingerprints" [ "$(out pair .public_fingerprint)" = "$(spki -in "$k/rsa2048.pem")" ]
run pair_types inspect.yaml -p file="$k/p256.pem" -p other="$k/ed25519.pem.pub"
check "keys of two types do not match" all [ "$rc" -eq 1 ] + [ "$(out pair .matches)" = false ]
check "the message names the types" said "(ec and ed25519," pair_types
run pair_private inspect.yaml -p file="$k/p256.pem" -p other="$k/p384.pem"
check "a private key given as the public one: refused" all [ "$rc" -eq 1 ] + said "$k/p384.pem is a private key" pair_private
check "no line of a private key in what fails" kept_out "$k/rsa.pem" "$tmp/pair_other.out" "$tmp/st.pair_other"

# --- files that are no keys ----------------------------------------------------------------
printf 'not a key\n' >"$tmp/junk.pem"
mkfifo "$tmp/fifo.pem"
for bad in junk.pem fifo.pem missing.pem; do
	start=$(ms)
	run "bad_$bad" inspect.yaml -p file="$tmp/$bad"
	check "fingerprint of $bad fails" all [ "$rc" -eq 1 ] + [ $(($(ms) - start)) -lt 10000 ]
done
check "it says what is wrong" said "$tmp/junk.pem holds no key or certificate in PEM" bad_junk.pem
check "a FIFO is not read" said "$tmp/fifo.pem is not a regular file" bad_fifo.pem
check "a missing file" said "cannot open $tmp/missing.pem: No such file or directory" bad_missing.pem

# --- random secrets ------------------------------------------------------------------------
r=$tmp/rnd
mkdir -p "$r"
run rnd random.yaml -p dir="$r"
check "random values are made" [ "$rc" -eq 0 ]
hex=$(cat "$r/hex") b64=$(cat "$r/b64") b64url=$(cat "$r/b64url")
check "hex: 16 bytes, 32 hex digits" grep -qxE '[0-9a-f]{32}' "$r/hex"
check "base64 by default: 32 bytes, padded" grep -qxE '[A-Za-z0-9+/]{43}=' "$r/b64"
check "it decodes to 32 bytes" [ "$(base64 -d "$r/b64" | wc -c)" -eq 32 ]
check "base64url: 40 bytes, no padding" grep -qxE '[A-Za-z0-9_-]{54}' "$r/b64url"
check "it decodes to 40 bytes" [ "$( (tr '_-' '/+' <"$r/b64url"; echo ==) | base64 -di 2>/dev/null | wc -c)" -eq 40 ]
for v in "$hex" "$b64" "$b64url"; do
	check "the value ${v:0:6}... is not in the run's files" bash -c "! grep -rqF -- '$v' '$run'"
	check "nor on its console" bash -c "! grep -qF -- '$v' '$tmp/rnd.out'"
done
check "the output says *** for it" all [ "$(out b64 .value)" = '***' ] + [ "$(out b64 .bytes)" = 32 ]
check "a lua step that returns it shows *** too" [ "$(out returned .value)" = '***' ]
check "while it had the value" [ "$(out returned .length)" = 44 ]
check "a command that prints it prints ***" said "copy_out| copied ***" rnd
check "an error message that holds it holds ***" said "the value was ***" rnd
check "the run's audit log verifies" rb audit verify --state-dir "$tmp/st.rnd" "$(basename "$run")"
check "replay does not show it" bash -c "! '$RUNBOOK' replay --state-dir '$tmp/st.rnd' '$(basename "$run")' | grep -qF -- '$hex'"
run rnd2 random.yaml -p dir="$r"
check "another run makes other values" all [ "$(cat "$r/hex")" != "$hex" ] + [ "$(cat "$r/b64")" != "$b64" ]

# --- certificates --------------------------------------------------------------------------
# The test PKI: a CA, a server certificate from it for localhost and 127.0.0.1, one that
# expired (openssl ca takes -startdate and -enddate in the past; x509 -days cannot), and a
# self-signed one as openssl req makes it.
p=$tmp/pki
mkdir -p "$p/ca/new"
(
	cd "$p" || exit 1
	ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
	openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 -subj "/CN=Runbook Test CA"
	openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/O=Runbook Tests/CN=localhost"
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >server.ext
	openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
		-extfile server.ext -out server.pem
	touch ca/index.txt
	echo 1000 >ca/serial
	printf '%s\n' '[ca]' 'default_ca = test' '[test]' 'dir = ./ca' 'database = $dir/index.txt' \
		'new_certs_dir = $dir/new' 'serial = $dir/serial' 'default_md = sha256' \
		'policy = any' 'copy_extensions = copy' '[any]' 'commonName = supplied' >ca.cnf
	openssl req "${ec[@]}" -keyout expired.key -out expired.csr -subj "/CN=localhost" \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
	openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr \
		-startdate 20200101000000Z -enddate 20210101000000Z -notext -out expired.pem
	openssl req -x509 -newkey rsa:2048 -nodes -keyout self.key -out self.pem -days 30 \
		-subj "/O=Self/CN=self.example" \
		-addext "subjectAltName=DNS:self.example,DNS:www.self.example,IP:10.0.0.1"
) >"$tmp/pki.log" 2>&1
check "the test PKI is made (openssl req, x509, ca)" all [ -s "$p/server.pem" ] + [ -s "$p/expired.pem" ] + [ -s "$p/self.pem" ]

# tls_serve NAME CERT KEY: an openssl s_server on a free loopback port, in $port.
# (tests/servers/servers.sh's HTTPS endpoints can stand in for these: their ports and
# RB_TEST_CA_FILE.)
tls_serve() {
	openssl s_server -accept 127.0.0.1:0 -cert "$2" -key "$3" -www </dev/null >"$tmp/$1.log" 2>&1 &
	pids+=($!)
	port=
	for _ in $(seq 100); do
		port=$(sed -n 's/^ACCEPT .*:\([0-9][0-9]*\)$/\1/p' "$tmp/$1.log")
		[ -n "$port" ] && break
		sleep 0.05
	done
}
tls_serve valid "$p/server.pem" "$p/server.key"
valid_port=$port
tls_serve expired "$p/expired.pem" "$p/expired.key"
expired_port=$port
check "the TLS servers listen" all [ -n "$valid_port" ] + [ -n "$expired_port" ]

run certs certs.yaml -p dir="$p" -p port="${valid_port:-0}" -p expired_port="${expired_port:-0}"
check "the certificates are read" [ "$rc" -eq 0 ]
# x509 FIELD FILE: what openssl says of a certificate.
x509() { openssl x509 -in "$2" -noout "-$1" -nameopt RFC2253 | cut -d= -f2-; }
iso() { date -u -d "$1" +%Y-%m-%dT%H:%M:%SZ; }
s=$p/self.pem
check "subject as RFC 2253 writes it" [ "$(out self_signed .subject)" = "$(x509 subject "$s")" ]
check "issuer" [ "$(out self_signed .issuer)" = "$(x509 issuer "$s")" ]
check "common name" [ "$(out self_signed .common_name)" = self.example ]
check "the SANs, names and addresses" [ "$(out self_signed '.sans | join(" ")')" = "self.example www.self.example 10.0.0.1" ]
check "not_before in ISO 8601" [ "$(out self_signed .not_before)" = "$(iso "$(x509 startdate "$s")")" ]
check "not_after in ISO 8601" [ "$(out self_signed .not_after)" = "$(iso "$(x509 enddate "$s")")" ]
# (30 when made in the second it is read)
check "30 days: 29 whole days left" grep -qxE '29|30' <(out self_signed .days_left)
check "not expired" [ "$(out self_signed .expired)" = false ]
check "the serial as openssl writes it" [ "$(out self_signed .serial)" = "$(x509 serial "$s")" ]
check "the fingerprint is the SHA-256 of the DER" [ "$(out self_signed .fingerprint)" = "$(openssl x509 -in "$s" -outform DER | sha256sum | cut -c 1-64)" ]
check "self-signed" [ "$(out self_signed .self_signed)" = true ]
check "is_ca as its basicConstraints say" [ "$(out self_signed .is_ca)" = "$(openssl x509 -in "$s" -noout -ext basicConstraints | grep -q CA:TRUE && echo true || echo false)" ]
check "its public key" [ "$(out self_signed '.public_key | .key_type + " " + (.bits | tostring) + " " + .fingerprint')" = "rsa 2048 $(spki -in "$p/self.key")" ]
check "the signature algorithm" [ "$(out self_signed .signature_algorithm)" = sha256WithRSAEncryption ]
check "a file without ca_file is not verified" [ "$(out self_signed 'has("verified")')" = false ]
check "the CA: a CA, self-signed" [ "$(out ca '[.is_ca, .self_signed] | map(tostring) | join(" ")')" = "true true" ]
check "the server's: neither" [ "$(out file_verified '[.is_ca, .self_signed] | map(tostring) | join(" ")')" = "false false" ]
check "with ca_file, a file verifies" all [ "$(out file_verified .verified)" = true ] + [ "$(out file_verified .verify_error)" = null ]
check "its issuer is the CA" [ "$(out file_verified .issuer)" = "CN=Runbook Test CA" ]
check "an expired file does not verify" [ "$(out file_expired .verified)" = false ]
check "because it expired" [ "$(out file_expired .verify_error)" = "certificate has expired" ]
check "expired, with negative days left" all [ "$(out file_expired .expired)" = true ] + [ "$(out file_expired .days_left)" -lt -1000 ]
check "its dates" [ "$(out file_expired '.not_before + " " + .not_after')" = "2020-01-01T00:00:00Z 2021-01-01T00:00:00Z" ]
check "live: the server's certificate verifies" [ "$(out live .verified)" = true ]
check "live: it is the one served" [ "$(out live .fingerprint)" = "$(openssl x509 -in "$p/server.pem" -outform DER | sha256sum | cut -c 1-64)" ]
check "live: its SANs" [ "$(out live '.sans | join(" ")')" = "localhost 127.0.0.1" ]
check "live: host, port and protocol" [ "$(out live '.host + " " + (.port | tostring) + " " + .protocol')" = "127.0.0.1 $valid_port TLSv1.3" ]
check "live: by name (localhost, sent for SNI) it verifies" [ "$(out live_by_name .verified)" = true ]
check "live: under another name it does not" [ "$(out live_other_name .verify_error)" = "hostname mismatch" ]
check "live: against another CA it does not" [ "$(out live_unknown_ca .verify_error)" = "unable to get local issuer certificate" ]
check "live: an expired certificate is read" [ "$(out live_expired .fingerprint)" = "$(openssl x509 -in "$p/expired.pem" -outform DER | sha256sum | cut -c 1-64)" ]
check "live: and does not verify: it expired" [ "$(out live_expired '.verify_error + " " + (.days_left < 0 | tostring)')" = "certificate has expired true" ]
check "a check that reads a certificate: the step is satisfied" said "as_check: satisfied" certs
run pair_cert inspect.yaml -p file="$p/server.key" -p other="$p/server.pem" -p as=certificate
check "verify_pair: a key and its certificate match" all [ "$rc" -eq 0 ] + [ "$(out pair_cert .matches)" = true ]
run pair_cert2 inspect.yaml -p file="$p/server.key" -p other="$p/ca.pem" -p as=certificate
check "verify_pair: a key and another certificate do not" all [ "$rc" -eq 1 ] + said "does not match the certificate $p/ca.pem" pair_cert2
run cert_fp inspect.yaml -p file="$p/server.pem"
check "fingerprint of a certificate: its key's" [ "$(out fp .fingerprint)" = "$(spki -in "$p/server.key")" ]
check "and the certificate's own" [ "$(out fp .certificate_fingerprint)" = "$(openssl x509 -in "$p/server.pem" -outform DER | sha256sum | cut -c 1-64)" ]

# --- a server that never answers -----------------------------------------------------------
# It takes connections (the backlog) and never speaks: the handshake waits.
/usr/bin/python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
open(sys.argv[1], "w").write(str(s.getsockname()[1])); time.sleep(600)' "$tmp/silent.port" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/silent.port" ] && break; sleep 0.05; done
silent=$(cat "$tmp/silent.port")
start=$(ms)
run silent silent.yaml -p port="$silent" -p timeout=1s
took=$(($(ms) - start))
check "a server that does not answer: the step fails" [ "$rc" -eq 1 ]
check "at its timeout" all [ "$took" -ge 1000 ] + [ "$took" -lt 10000 ]
check "saying so" said "read: failed in 1.0s: 127.0.0.1:$silent: timed out while waiting for the TLS handshake" silent

# interrupt NAME RUNBOOK STEP ARGS...: a run, SIGINT once STEP has started for 100 ms;
# its exit status in $rc, the time from the signal to its end in $took.
interrupt() {
	local name=$1 book=$2 step=$3
	shift 3
	# Run directly: a wrapper (or a function's subshell) would take the signal.
	"$RUNBOOK" run --state-dir "$tmp/st.$name" "$d/$book" "$@" >"$tmp/$name.out" 2>&1 </dev/null &
	local pid=$!
	for _ in $(seq 200); do said "$step: started" "$name" && break; sleep 0.05; done
	sleep 0.1
	local t0
	t0=$(ms)
	kill -INT "$pid"
	wait "$pid"
	rc=$?
	took=$(($(ms) - t0))
}
interrupt cancel silent.yaml read -p port="$silent" -p timeout=30s
check "SIGINT stops a live read at once" all [ "$rc" -eq 130 ] + [ "$took" -lt 3000 ]
check "which is interrupted" said "read: interrupted" cancel
mkdir -p "$tmp/slow"
interrupt slowkey slowkey.yaml big -p dir="$tmp/slow"
check "SIGINT stops an RSA 4096 key's generation at once" all [ "$rc" -eq 130 ] + [ "$took" -lt 3000 ]
check "which writes no file" [ -z "$(ls -A "$tmp/slow")" ]

# A secret made before a resume is not in the log: what reads it after fails, saying so.
run resume resume_secret.yaml
check "the run pauses at its gate, the secrets made" [ "$rc" -eq 3 ]
id=$(basename "$run")
rb resume --state-dir "$tmp/st.resume" "$id" --approve all >"$tmp/resume.out" 2>&1 </dev/null
check "the resume fails" [ $? -eq 1 ]
check "the step that reads crypto.random's value fails, saying why" grep -q "use: failed.*it reads the output of step 'gen', a secret, which a resume does not have" "$tmp/resume.out"
check "... naming the way on" grep -q "run it again, resume --from gen" "$tmp/resume.out"
rb resume --state-dir "$tmp/st.resume" "$id" --from gen --approve all >"$tmp/resume2.out" 2>&1 </dev/null
check "resume --from gen makes it again, and the step that reads it runs" grep -q "use: succeeded" "$tmp/resume2.out"
check "a step that reads a sensitive step's output from before fails the same way" grep -q "use_made: failed.*it reads the output of step 'made', a secret" "$tmp/resume2.out"
check "no step got the mask in place of the value" bash -c "! grep -q '\"output\":3' '$run/audit.jsonl'"

echo "crypto: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
