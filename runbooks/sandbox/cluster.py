#!/usr/bin/python3
"""The sandbox's stand-in for the PersonaPass cluster (runbooks/sandbox/README.md).

One state file, STATE_DIR/state.json, holds the deployments (image, replicas,
rollout history), the Kubernetes secrets, and the health a tester forced on a
service.  Two programs share it, under an flock:

  cluster.py serve STATE_DIR   the services: web, api, ai-engine and the
                               personachain RPC, each a small HTTP server on
                               its own port (STATE_DIR/ports.json), answering
                               /health and /status from the state;
  bin/kubectl ...              the kubectl subset the runbooks use, editing it.

Python's standard library only.  Nothing here reaches the network but
127.0.0.1.
"""

import base64
import contextlib
import fcntl
import hashlib
import hmac
import http.server
import json
import os
import socket
import sys
import threading
import time

NAMESPACE = "personapass"
SERVICES = ("web", "api", "ai-engine", "personachain")

# Images whose tag holds one of these words misbehave, so that a rollout can
# fail the way real ones do: "crashloop" never becomes ready (rollout status
# fails), "unhealthy" starts but its /health answers 500.
CRASHLOOP, UNHEALTHY = "crashloop", "unhealthy"


def initial_state():
    def dep(image, replicas):
        return {"image": image, "replicas": replicas, "revision": 1,
                "history": [{"revision": 1, "image": image, "cause": "initial"}],
                "restarted_at": now(), "loaded": {}}
    st = {
        "namespace": NAMESPACE,
        "deployments": {
            "web": dep("personapass/web:2.3.0", 2),
            "api": dep("personapass/api:2.3.0", 3),
            "ai-engine": dep("personapass/ai-engine:1.8.1", 2),
            "personachain": dep("personapass/personachain:0.9.4", 1),
        },
        "secrets": {
            "personapass-secrets": {"JWT_SECRET": b64(os.urandom(32).hex())},
            "postgres-secrets": {},
        },
        "forced": {},          # service -> "bad" (sandbox break SERVICE)
        "cronjobs": {"postgres-backup": {"schedule": "0 2 * * *", "last_success": last_0200()}},
    }
    for d in st["deployments"].values():
        d["loaded"] = dict(st["secrets"]["personapass-secrets"])
    return st


def last_0200():
    """When the nightly backup last ran: the latest 02:00 UTC."""
    t = time.time()
    day = t - t % 86400 + 2 * 3600
    if day > t:
        day -= 86400
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day))


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def b64(s):
    return base64.b64encode(s.encode()).decode()


# --- the state file --------------------------------------------------------------

@contextlib.contextmanager
def state(state_dir, write=False):
    """The state, locked; written back at the end when write is true."""
    path = os.path.join(state_dir, "state.json")
    with open(os.path.join(state_dir, "state.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        with open(path) as f:
            st = json.load(f)
        yield st
        if write:
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(st, f, indent=1, sort_keys=True)
            os.replace(tmp, path)


def log(state_dir, service, line):
    with open(os.path.join(state_dir, "logs", service + ".log"), "a") as f:
        f.write("%s %s\n" % (now(), line))


def health(st, name):
    """(ready, reason) of a deployment as its pods would report it."""
    d = st["deployments"][name]
    if d["replicas"] == 0:
        return False, "scaled to 0 replicas: no endpoints"
    if st["forced"].get(name) == "bad":
        return False, "forced unhealthy (sandbox break %s)" % name
    tag = d["image"].rsplit(":", 1)[-1]
    if CRASHLOOP in tag:
        return False, "CrashLoopBackOff"
    if UNHEALTHY in tag:
        return False, "health check failing"
    return True, ""


def version(d):
    return d["image"].rsplit(":", 1)[-1]


# --- the services ------------------------------------------------------------------

def jwt_ok(token, secret):
    """An HS256 JWT signed with secret, not expired."""
    try:
        head, body, sig = token.split(".")
        want = hmac.new(secret, (head + "." + body).encode(), hashlib.sha256).digest()
        got = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
        if not hmac.compare_digest(want, got):
            return False
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return claims.get("exp", time.time() + 1) > time.time()
    except (ValueError, TypeError):
        return False


class Service(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "personapass-sandbox"
    name = None
    state_dir = None

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, obj):
        body = (json.dumps(obj, indent=None) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        level = "info" if code < 500 else "error"
        log(self.state_dir, self.name, "level=%s method=%s path=%s status=%d" %
            (level, self.command, self.path, code))

    def do_GET(self):
        with state(self.state_dir) as st:
            d = st["deployments"][self.name]
            ok, why = health(st, self.name)
            loaded = d.get("loaded", {})
            d = dict(d)
        path = self.path.split("?", 1)[0]
        if d["replicas"] == 0:
            # What an ingress answers when no pod is behind the service.
            return self.reply(503, {"status": "unavailable", "error": why})
        if path == "/health":
            if ok:
                return self.reply(200, {"status": "ok", "service": self.name,
                                        "version": version(d)})
            return self.reply(500, {"status": "unhealthy", "service": self.name,
                                    "version": version(d), "error": why})
        if path == "/status" and self.name == "personachain":
            # Tendermint's RPC /status, the part the guide reads.
            height = int(time.time()) // 6 % 10_000_000
            return self.reply(200 if ok else 500, {"result": {"sync_info": {
                "latest_block_height": str(height), "catching_up": not ok,
                "latest_block_time": now()}}})
        if path == "/status":
            return self.reply(200 if ok else 503, {
                "status": "ok" if ok else "degraded", "service": self.name,
                "version": version(d), "replicas": d["replicas"],
                "revision": d["revision"], "started_at": d["restarted_at"],
                "error": why or None})
        if path == "/auth/check" and self.name == "api":
            # Accepts a bearer JWT signed with the JWT_SECRET the pods loaded at
            # their last start: a rotated secret counts once they restart.
            auth = self.headers.get("Authorization", "")
            secret = base64.b64decode(loaded.get("JWT_SECRET", "")) if loaded else b""
            if auth.startswith("Bearer ") and secret and jwt_ok(auth[7:], secret):
                return self.reply(200, {"authenticated": True})
            return self.reply(401, {"authenticated": False})
        if path == "/.well-known/jwks.json" and self.name == "api":
            return self.reply(200, signing_keys(loaded))
        return self.reply(404, {"error": "no such path", "path": path})

    do_HEAD = do_GET


# --- the api's proof-signing keys (rsa-key-rotation) ---------------------------------

def signing_keys(loaded):
    """The public keys the api verifies with, from the secrets its pods loaded:
    SIGNING_PUBLIC_KEY_<kid> (a PEM public key, base64 as a secret holds it) for each kid,
    SIGNING_ACTIVE_KID the one it signs with (its SIGNING_PRIVATE_KEY_<kid> loaded too).
    Each key by its kid and fingerprint: the SHA-256 of its DER SubjectPublicKeyInfo,
    as crypto.keypair gives it."""
    keys = []
    active = base64.b64decode(loaded.get("SIGNING_ACTIVE_KID", "")).decode() or None
    for name in sorted(loaded):
        if not name.startswith("SIGNING_PUBLIC_KEY_"):
            continue
        kid = name[len("SIGNING_PUBLIC_KEY_"):]
        try:
            pem = base64.b64decode(loaded[name]).decode()
            body = "".join(l for l in pem.splitlines() if l and not l.startswith("-----"))
            fp = hashlib.sha256(base64.b64decode(body)).hexdigest()
        except (ValueError, UnicodeDecodeError):
            fp = None
        keys.append({"kid": kid, "fingerprint": fp, "active": kid == active,
                     "can_sign": "SIGNING_PRIVATE_KEY_" + kid in loaded})
    return {"keys": keys, "active_kid": active}


def serve(state_dir):
    threads = []
    ports = {}
    for name in SERVICES:
        handler = type("Service_" + name, (Service,), {"name": name, "state_dir": state_dir})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        srv.daemon_threads = True
        ports[name] = srv.server_address[1]
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        threads.append(t)
    tmp = os.path.join(state_dir, "ports.json.tmp")
    with open(tmp, "w") as f:
        json.dump(ports, f)
    os.replace(tmp, os.path.join(state_dir, "ports.json"))
    for t in threads:
        t.join()


def init(state_dir):
    os.makedirs(os.path.join(state_dir, "logs"), exist_ok=True)
    with open(os.path.join(state_dir, "state.json"), "w") as f:
        json.dump(initial_state(), f, indent=1, sort_keys=True)
    for name in SERVICES:
        open(os.path.join(state_dir, "logs", name + ".log"), "w").close()


def pg_ready(state_dir):
    """Whether the sandbox's PostgreSQL and Redis accept connections."""
    out = {}
    for name, var in (("postgres", "SANDBOX_PG_PORT"), ("redis", "SANDBOX_REDIS_PORT")):
        port = os.environ.get(var)
        ok = False
        if port:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", int(port)), 1):
                ok = True
        out[name] = ok
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "init":
        init(sys.argv[2])
    else:
        sys.exit("usage: cluster.py serve|init STATE_DIR")
