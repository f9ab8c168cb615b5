# rsa-key-rotation in the sandbox (the api stands in for Veris's signing service, its keys in
# personapass-secrets): a key k0 in place, the rotation ends with only the new key loaded
# and active, as the api serves it and the cluster's secret holds it, the old key archived
# encrypted; a restart that fails rolls the deploy back to k0 alone.
f=runbooks/rsa-key-rotation.yaml
args=(-p namespace=personapass -p secret=personapass-secrets -p "app_url=$PERSONAPASS_API_URL"
	-p dual_key_window=0s -p verification_period=0s -p key_archive=s3://personapass-backups/keys)
tmpd=$(mktemp -d)
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmpd/k0.pem" 2>/dev/null
openssl pkey -in "$tmpd/k0.pem" -pubout -out "$tmpd/k0.pub.pem"
jq -n --rawfile pub "$tmpd/k0.pub.pem" --rawfile priv "$tmpd/k0.pem" \
	'{stringData: {SIGNING_PUBLIC_KEY_k0: $pub, SIGNING_PRIVATE_KEY_k0: $priv, SIGNING_ACTIVE_KID: "k0"}}' |
	kubectl patch secret personapass-secrets --patch-file /dev/stdin >/dev/null
kubectl rollout restart deployment/api >/dev/null
jwks() { curl -s "$PERSONAPASS_API_URL/.well-known/jwks.json"; }
secret_keys() { cluster_state | jq -c '.secrets["personapass-secrets"] | keys | map(select(startswith("SIGNING_")))'; }
fp() { openssl pkey -pubin -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1; }
k0_fp=$(fp <"$tmpd/k0.pub.pem")
is "before: the api serves k0, active" "$(jwks | jq -c '[.active_kid, [.keys[].kid]]')" '["k0",["k0"]]'
is "... with its fingerprint" "$(jwks | jq -r .keys[0].fingerprint)" "$k0_fp"

out=$(rb run "$f" "${args[@]}" --approve all 2>&1); rc=$?
is "the rotation succeeds" "$rc" 0
[ "$rc" = 0 ] || printf '%s\n' "$out" | tail -n 30
kid=$(cluster_state | jq -r '.secrets["personapass-secrets"].SIGNING_ACTIVE_KID' | base64 -d)
check "a new kid is active in the secret" test -n "$kid" -a "$kid" != k0
is "the secret holds only the new key" "$(secret_keys)" "[\"SIGNING_ACTIVE_KID\",\"SIGNING_PRIVATE_KEY_$kid\",\"SIGNING_PUBLIC_KEY_$kid\"]"
new_fp=$(cluster_state | jq -r --arg k "SIGNING_PUBLIC_KEY_$kid" '.secrets["personapass-secrets"][$k]' | base64 -d | fp)
is "the api serves only the new key, active, with its fingerprint" "$(jwks | jq -c '[.active_kid, [.keys[] | .kid, .fingerprint, .can_sign]]')" "[\"$kid\",[\"$kid\",\"$new_fp\",true]]"
check "its kid carries its fingerprint" test "${kid#*-}" = "${new_fp:0:12}"
priv=$(cluster_state | jq -r --arg k "SIGNING_PRIVATE_KEY_$kid" '.secrets["personapass-secrets"][$k]' | base64 -d)
check "the new private key is a 2048-bit RSA key that matches" bash -c 'openssl pkey -text -noout <<<"$1" | grep -q "Private-Key: (2048 bit" && test "$(openssl pkey -pubout <<<"$1" | openssl pkey -pubin -outform DER | sha256sum | cut -d" " -f1)" = "$2"' _ "$priv" "$new_fp"
check "the private key is nowhere in the state directory" bash -c '! grep -rqF "$(sed -n 2p <<<"$1")" "$RUNBOOK_STATE_DIR"' _ "$priv"
check "... nor on the console" bash -c '! grep -qF "$(sed -n 2p <<<"$1")" <<<"$2"' _ "$priv" "$out"
arch=$SANDBOX_S3_DIR/personapass-backups/keys/k0.json.gpg
check "the old key is archived encrypted" test -s "$arch"
check "... and the archive gives k0's public key back" bash -c 'gpg --batch --quiet --pinentry-mode loopback --passphrase-file "$BACKUP_PASSPHRASE_FILE" -d "$1" | jq -r ".data.SIGNING_PUBLIC_KEY_k0" | base64 -d | cmp - "$2"' _ "$arch" "$tmpd/k0.pub.pem"
check "the work directory was shredded" test ! -e "/tmp/rsa-key-rotation-$(last_run)"
check "the plan's steps ran in order: both served, then cutover, then removal" bash -c 'jq -r "select(.type == \"step_finished\" and .status == \"succeeded\") | .step" <<<"$1" | grep -xE "check_dual|check_cutover|check_cleanup" | paste -sd" " | grep -qx "check_dual check_cutover check_cleanup"' _ "$(journal)"
check "Slack has the checklist" grep -q "Veris proof-signing key rotated: k0 -> $kid" <<<"$(alerts /slack/ | jq -r '.json.text')"

# The restart after the deploy never becomes ready: the rollback removes the new key, and
# k0 alone is loaded and active again.
sandbox_reset >/dev/null
jq -n --rawfile pub "$tmpd/k0.pub.pem" --rawfile priv "$tmpd/k0.pem" \
	'{stringData: {SIGNING_PUBLIC_KEY_k0: $pub, SIGNING_PRIVATE_KEY_k0: $priv, SIGNING_ACTIVE_KID: "k0"}}' |
	kubectl patch secret personapass-secrets --patch-file /dev/stdin >/dev/null
kubectl rollout restart deployment/api >/dev/null
kubectl set image deployment/api api=personapass/api:2.3.0-crashloop >/dev/null
out=$(rb run "$f" "${args[@]}" --approve all 2>&1); rc=$?
is "a restart that fails fails the run" "$rc" 1
check "the deploy was undone" grep -q 'deploy_both_undo: succeeded' <<<"$out"
is "the secret holds k0 alone again" "$(secret_keys)" '["SIGNING_ACTIVE_KID","SIGNING_PRIVATE_KEY_k0","SIGNING_PUBLIC_KEY_k0"]'
is "k0 is active" "$(cluster_state | jq -r '.secrets["personapass-secrets"].SIGNING_ACTIVE_KID' | base64 -d)" k0
check "Slack has the incident alert" grep -q 'INCIDENT ALERT - P2' <<<"$(alerts /slack/ | jq -r '.json.text')"
check "... saying it was rolled back" grep -q 'key rotation failed (run .*); cutover pending, finished steps rolled back' <<<"$(alerts /slack/ | jq -r '.json.text')"
rm -rf "$tmpd"
