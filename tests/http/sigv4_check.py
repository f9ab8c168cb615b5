#!/usr/bin/python3
"""Checks an AWS Signature V4 the way S3 does, from a request recorded by
tests/servers/httpd.py (/_requests): python3 sigv4_check.py SECRET < request.json
Exit 0 when the signature is the one the secret key makes."""
import hashlib, hmac, json, sys, urllib.parse

secret = sys.argv[1]
req = json.load(sys.stdin)
h = req["headers"]
auth = h["authorization"]
algo, rest = auth.split(" ", 1)
parts = dict(p.strip().split("=", 1) for p in rest.split(","))
cred = parts["Credential"].split("/")
date, region, service = cred[1], cred[2], cred[3]
signed = parts["SignedHeaders"].split(";")
query = sorted(urllib.parse.parse_qsl(req["query_string"], keep_blank_values=True))
canonical = "\n".join([
    req["method"],
    urllib.parse.quote(req["path"], safe="/~"),
    "&".join("%s=%s" % (urllib.parse.quote(k, safe="~"), urllib.parse.quote(v, safe="~")) for k, v in query),
    "".join("%s:%s\n" % (k, " ".join(h[k].split())) for k in signed),
    ";".join(signed),
    h.get("x-amz-content-sha256") or hashlib.sha256(req["body"].encode()).hexdigest(),
])
scope = "/".join(cred[1:])
to_sign = "\n".join([algo, h["x-amz-date"], scope, hashlib.sha256(canonical.encode()).hexdigest()])
k = ("AWS4" + secret).encode()
for m in (date, region, service, "aws4_request"):
    k = hmac.new(k, m.encode(), hashlib.sha256).digest()
want = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
sys.exit(0 if hmac.compare_digest(want, parts["Signature"]) else 1)
