#!/usr/bin/python3
"""The tests' own HTTP server: it stands in for an API, Slack, PagerDuty and a
generic webhook, records every request it receives, and can be slow, fail or
close early (its paths are listed in tests/servers/README.md).  Standard
library only; started and stopped by tests/servers/servers.sh, never by hand.

  httpd.py --ports FILE --log FILE [--tls DIR]

One process serves every listener, each on 127.0.0.1 and a port of its own
(port 0: the kernel picks a free one), with a thread per connection: plain
HTTP, and with --tls DIR (ca.pem, server.pem/.key, expired.pem/.key) HTTPS,
HTTPS with an expired certificate, and HTTPS that requires a client
certificate signed by the CA.  FILE gets one "NAME PORT" line per listener,
written at once (rename) when all are listening.  /auth/basic and /auth/bearer
expect RB_TEST_HTTP_BASIC_USER, RB_TEST_HTTP_BASIC_PASSWORD and
RB_TEST_HTTP_BEARER_TOKEN from the environment."""

import argparse
import base64
import binascii
import datetime
import email.utils
import hashlib
import hmac
import http.server
import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

# A recorded body keeps this many bytes (with its full length and sha256), so
# that a 1 GB upload is counted, not held in memory or written to the log.
BODY_KEEP = 1 << 20
BLOCK = 256 * 1024            # /big writes this much at a time

log_lock = threading.Lock()   # the request log and the counters below
log_path = None
log_file = None               # open for appending, flushed after each record
counters = {}                 # (route, X-Test-Key) -> requests seen
idem = {}                     # Idempotency-Key -> (fingerprint, status, body)
next_id = [0]


def now_iso():
	t = datetime.datetime.now(datetime.timezone.utc)
	return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def count(route, key):
	"""How many times route was asked with this X-Test-Key, this one included."""
	with log_lock:
		n = counters.get((route, key), 0) + 1
		counters[(route, key)] = n
		return n


def record(rec):
	line = json.dumps(rec, separators=(",", ":")) + "\n"
	with log_lock:
		log_file.write(line)
		log_file.flush()


def recorded():
	with log_lock:
		try:
			with open(log_path, encoding="utf-8") as f:
				return [json.loads(l) for l in f if l.strip()]
		except FileNotFoundError:
			return []


class Handler(http.server.BaseHTTPRequestHandler):
	protocol_version = "HTTP/1.1"     # keep-alive, so clients can reuse connections
	server_version = "runbook-test-httpd/1"
	timeout = 120                     # an idle or stuck connection frees its thread
	# A reply leaves in one write (handle_one_request flushes after it; the
	# streaming paths flush themselves), with no wait for Nagle's algorithm:
	# two writes, headers then body, cost 40 ms a request on a kept-alive
	# connection (the client's delayed ACK) or a send each.
	wbufsize = 1 << 16
	disable_nagle_algorithm = True

	def __getattr__(self, name):      # every method, also unknown ones, is served
		if name.startswith("do_"):
			return self.handle_any
		raise AttributeError(name)

	def handle_expect_100(self):       # the client waits for it: send it now
		ok = super().handle_expect_100()
		self.wfile.flush()
		return ok

	def log_request(self, code="-", size="-"):
		pass                          # RB_TEST_HTTP_LOG has every request already

	def log_message(self, fmt, *args):
		sys.stderr.write("%s %s %s\n" % (now_iso(), self.server.name, fmt % args))

	# --- reading the request -------------------------------------------------
	def read_body(self):
		"""The body (Content-Length or chunked): the first BODY_KEEP bytes,
		the whole length and its sha256."""
		h = hashlib.sha256()
		kept = bytearray()
		total = 0

		def take(chunk):
			nonlocal total
			h.update(chunk)
			total += len(chunk)
			if len(kept) < BODY_KEEP:
				kept.extend(chunk[:BODY_KEEP - len(kept)])

		def read_exact(n):
			while n > 0:
				chunk = self.rfile.read(min(n, 65536))
				if not chunk:
					raise ConnectionError("the client closed the request body early")
				take(chunk)
				n -= len(chunk)

		if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
			while True:
				size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
				if size == 0:
					while self.rfile.readline(8192).strip():   # trailers
						pass
					break
				read_exact(size)
				self.rfile.readline(8)                         # CRLF after a chunk
		else:
			read_exact(int(self.headers.get("Content-Length") or 0))
		return bytes(kept), total, h.hexdigest()

	def describe(self, body, length, sha):
		"""The request as the tests see it: in /echo, in the log, in /_requests."""
		u = urllib.parse.urlsplit(self.path)
		headers = {}
		for k, v in self.headers.items():
			k = k.lower()
			headers[k] = headers[k] + ", " + v if k in headers else v
		rec = {
			"time": now_iso(),
			"listener": self.server.name,
			"client_port": self.client_address[1],   # one a connection: reuse shows
			"method": self.command,
			"path": u.path,
			"query": urllib.parse.parse_qs(u.query, keep_blank_values=True),
			"query_string": u.query,
			"headers": headers,
			"raw_headers": [[k, v] for k, v in self.headers.items()],
			"body_length": length,
			"body_sha256": sha,
			"body_truncated": length > len(body),
		}
		try:
			rec["body"] = body.decode("utf-8")
			rec["body_encoding"] = "utf-8"
		except UnicodeDecodeError:
			rec["body"] = base64.b64encode(body).decode()
			rec["body_encoding"] = "base64"
		if "json" in headers.get("content-type", "") and not rec["body_truncated"]:
			try:
				rec["json"] = json.loads(body)
			except ValueError:
				pass
		cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
		rec["client_cert"] = dict(x[0] for x in cert["subject"]) if cert else None
		return rec

	# --- answering -----------------------------------------------------------
	def reply(self, status, body=b"", ctype="application/json", headers=()):
		if isinstance(body, (dict, list)):
			body = (json.dumps(body) + "\n").encode()
		elif isinstance(body, str):
			body = body.encode()
		self.send_response(status)
		for k, v in headers:
			self.send_header(k, v)
		if status in (204, 304):
			body = b""
		else:
			self.send_header("Content-Type", ctype)
			self.send_header("Content-Length", str(len(body)))
		self.end_headers()
		if self.command != "HEAD":
			self.wfile.write(body)

	def only(self, *methods):
		"""Answers 405 and returns False unless the method is one of these."""
		if self.command in methods:
			return True
		self.reply(405, {"error": "method not allowed"}, headers=[("Allow", ", ".join(methods))])
		return False

	def handle_any(self):
		try:
			body, length, sha = self.read_body()
		except (ValueError, ConnectionError, OSError) as e:
			self.log_message("bad request body: %s", e)
			self.close_connection = True
			return
		u = urllib.parse.urlsplit(self.path)
		path, q = u.path, urllib.parse.parse_qs(u.query, keep_blank_values=True)
		rec = self.describe(body, length, sha)
		if path != "/_requests":
			record(rec)
		try:
			self.route(path, q, body, rec)
		except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout) as e:
			self.log_message("client went away: %s", e)    # a client that timed out
			self.close_connection = True

	def route(self, path, q, body, rec):
		arg = lambda name, default: q.get(name, [default])[0]
		test_key = self.headers.get("X-Test-Key", "")
		parts = path.strip("/").split("/")

		if path == "/health":
			return self.reply(200, {"status": "ok"})
		if path == "/status":
			return self.reply(200, {"status": "ok", "service": "runbook-test-httpd",
			                        "listener": self.server.name, "time": now_iso()})
		if path == "/echo":
			return self.reply(200, rec)
		if path == "/pattern":
			# total bytes of "x" with the text put at byte at: a secret laid across a cut
			total, at, text = int(arg("total", "0")), int(arg("at", "0")), arg("with", "").encode()
			body = (b"x" * at + text + b"x" * max(0, total - at - len(text)))[:max(total, at + len(text))]
			return self.reply(200, body, ctype="application/octet-stream")
		if len(parts) == 2 and parts[0] == "status" and parts[1].isdigit():
			code = int(parts[1])
			if not 200 <= code <= 599:
				return self.reply(400, {"error": "status must be 200 to 599"})
			return self.reply(code, {"status": code})
		if len(parts) == 2 and parts[0] == "retry-after" and parts[1].isdigit():
			n = count(path, test_key)
			if n == 1:
				secs = int(parts[1])
				value = str(secs)
				if arg("format", "") == "date":
					value = email.utils.formatdate(time.time() + secs, usegmt=True)
				return self.reply(429, {"error": "rate limited", "attempt": n},
				                  headers=[("Retry-After", value)])
			return self.reply(200, {"status": "ok", "attempt": n})
		if len(parts) == 2 and parts[0] == "flaky" and parts[1].isdigit():
			n = count(path, test_key)
			if n <= int(parts[1]):
				return self.reply(503, {"error": "unavailable", "attempt": n})
			return self.reply(200, {"status": "ok", "attempt": n})
		if path == "/slow":
			ms = int(arg("ms", "1000"))
			time.sleep(ms / 1000)
			return self.reply(200, {"slept_ms": ms})
		if path == "/drip":
			return self.drip(int(arg("bytes", "10")), int(arg("ms", "100")), int(arg("chunk", "1")))
		if path == "/close":
			return self.close_early(arg("at", "body"))
		if path == "/big":
			return self.big(int(arg("bytes", str(1 << 20))))
		if path == "/json-invalid":
			return self.reply(200, b'{"status": "ok", "items": [1, 2,', ctype="application/json")
		if path == "/latin1":
			return self.reply(200, "caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode("latin-1"),
			                  ctype="text/plain; charset=iso-8859-1")
		if path == "/redirect":
			to = arg("to", "")
			if not to:
				return self.reply(400, {"error": "to= is required"})
			return self.reply(int(arg("code", "302")), {"location": to}, headers=[("Location", to)])
		if path == "/auth/basic":
			return self.auth_basic()
		if path == "/auth/bearer":
			return self.auth_bearer()
		if parts[0] == "slack" and len(parts) > 1:
			return self.only("POST") and self.slack(body)
		if path == "/pagerduty/v2/enqueue":
			return self.only("POST") and self.pagerduty(rec)
		if parts[0] == "hook" and len(parts) > 1:
			return self.only("POST", "PUT", "PATCH") and self.reply(200, {"ok": True, "received_bytes": rec["body_length"]})
		if path == "/idem":
			return self.idempotent(rec)
		if path == "/_requests":
			if self.command == "DELETE":
				with log_lock:
					n = 0
					try:
						with open(log_path, "r+", encoding="utf-8") as f:
							n = sum(1 for _ in f)
							f.truncate(0)
					except FileNotFoundError:
						pass
				return self.reply(200, {"cleared": n})
			if not self.only("GET", "HEAD"):
				return
			prefix = arg("path", "")
			return self.reply(200, [r for r in recorded() if r["path"].startswith(prefix)])
		return self.reply(404, {"error": "not found", "path": path})

	# --- the misbehaving endpoints -------------------------------------------
	def drip(self, n, ms, chunk):
		"""n bytes, chunk at a time, ms milliseconds before each chunk."""
		self.send_response(200)
		self.send_header("Content-Type", "application/octet-stream")
		self.send_header("Content-Length", str(n))
		self.end_headers()
		self.wfile.flush()
		if self.command == "HEAD":
			return
		sent = 0
		while sent < n:
			time.sleep(ms / 1000)
			k = min(max(chunk, 1), n - sent)
			self.wfile.write(b"." * k)
			self.wfile.flush()
			sent += k

	def close_early(self, at):
		"""at=body: headers promise 1000 bytes, 10 come, then the connection
		closes; at=start: it closes before any byte of a reply."""
		if at != "start":
			self.send_response(200)
			self.send_header("Content-Type", "text/plain")
			self.send_header("Content-Length", "1000")
			self.end_headers()
			self.wfile.write(b"0123456789")
			self.wfile.flush()
		self.close_connection = True
		try:
			self.connection.shutdown(socket.SHUT_RDWR)
		except OSError:
			pass

	def big(self, n):
		self.send_response(200)
		self.send_header("Content-Type", "application/octet-stream")
		self.send_header("Content-Length", str(n))
		self.end_headers()
		if self.command == "HEAD":
			return
		block = b"0123456789abcdef" * (BLOCK // 16)
		while n > 0:
			k = min(n, len(block))
			self.wfile.write(block[:k] if k < len(block) else block)
			n -= k

	# --- the services it stands in for ---------------------------------------
	def auth_basic(self):
		user = os.environ.get("RB_TEST_HTTP_BASIC_USER")
		password = os.environ.get("RB_TEST_HTTP_BASIC_PASSWORD")
		got = self.headers.get("Authorization", "")
		if user and password and got[:6].lower() == "basic ":
			try:
				u, _, p = base64.b64decode(got[6:].strip(), validate=True).decode().partition(":")
			except (binascii.Error, UnicodeDecodeError):
				u, p = "", ""
			if hmac.compare_digest(u.encode(), user.encode()) and hmac.compare_digest(p.encode(), password.encode()):
				return self.reply(200, {"authenticated": True, "user": u})
		return self.reply(401, {"error": "unauthorized"},
		                  headers=[("WWW-Authenticate", 'Basic realm="runbook-test"')])

	def auth_bearer(self):
		token = os.environ.get("RB_TEST_HTTP_BEARER_TOKEN")
		got = self.headers.get("Authorization", "")
		if token and got[:7].lower() == "bearer " and hmac.compare_digest(got[7:].strip().encode(), token.encode()):
			return self.reply(200, {"authenticated": True})
		return self.reply(401, {"error": "unauthorized"},
		                  headers=[("WWW-Authenticate", 'Bearer realm="runbook-test"')])

	def slack(self, body):
		"""An incoming webhook: a JSON object with text (or blocks or
		attachments), or the form field payload= holding one; Slack's answers.
		Like Slack, it takes a JSON body whatever its Content-Type."""
		try:
			form = urllib.parse.parse_qs(body.decode())
			msg = json.loads(form["payload"][0] if "payload" in form else body)
			if not isinstance(msg, dict):
				raise ValueError
		except (ValueError, KeyError, UnicodeDecodeError):
			return self.reply(400, "invalid_payload", ctype="text/plain")
		if not (msg.get("text") or msg.get("blocks") or msg.get("attachments")):
			return self.reply(400, "no_text", ctype="text/plain")
		return self.reply(200, "ok", ctype="text/plain")

	def pagerduty(self, rec):
		"""The Events API v2: what it checks and how it answers."""
		ev = rec.get("json")
		errors = []
		if not isinstance(ev, dict):
			errors.append("Event object is not valid JSON")
			ev = {}
		if not isinstance(ev.get("routing_key"), str) or not ev.get("routing_key"):
			errors.append("'routing_key' is missing or blank")
		action = ev.get("event_action")
		if action not in ("trigger", "acknowledge", "resolve"):
			errors.append("'event_action' is missing or invalid")
		if action == "trigger":
			p = ev.get("payload")
			if not isinstance(p, dict):
				errors.append("'payload' is missing or invalid")
			else:
				for field in ("summary", "source"):
					if not isinstance(p.get(field), str) or not p.get(field):
						errors.append("'payload.%s' is missing or blank" % field)
				if p.get("severity") not in ("critical", "error", "warning", "info"):
					errors.append("'payload.severity' is missing or invalid")
		elif action in ("acknowledge", "resolve") and not ev.get("dedup_key"):
			errors.append("'dedup_key' is missing or blank")
		if errors:
			return self.reply(400, {"status": "invalid event", "message": "Event object is invalid",
			                        "errors": errors})
		return self.reply(202, {"status": "success", "message": "Event processed",
		                        "dedup_key": ev.get("dedup_key") or uuid.uuid4().hex})

	def idempotent(self, rec):
		"""Creates a thing (201, a new id); the same Idempotency-Key again
		answers the first answer, with Idempotent-Replayed: true, or 422 when
		the request is not the same one."""
		key = self.headers.get("Idempotency-Key")
		fingerprint = (self.command, rec["body_sha256"])
		with log_lock:
			first = idem.get(key) if key is not None else None
			if first is None:
				next_id[0] += 1
				answer = {"id": next_id[0], "idempotency_key": key}
				if key is not None:
					idem[key] = (fingerprint, answer)
		if first is None:
			return self.reply(201, answer)
		if first[0] != fingerprint:
			return self.reply(422, {"error": "Idempotency-Key reused with a different request"})
		return self.reply(201, first[1], headers=[("Idempotent-Replayed", "true")])


class Server(http.server.ThreadingHTTPServer):
	daemon_threads = True
	allow_reuse_address = True
	request_queue_size = 512          # many clients at once (--jobs 50) without SYN drops

	def __init__(self, name, ctx):
		self.name = name
		self.ctx = ctx
		super().__init__(("127.0.0.1", 0), Handler)

	def server_bind(self):
		# HTTPServer's would look up the address's name (getfqdn), which can be slow.
		socketserver.TCPServer.server_bind(self)
		self.server_name, self.server_port = self.server_address[:2]

	def finish_request(self, request, client_address):
		if self.ctx is None:
			return super().finish_request(request, client_address)
		# The TLS handshake happens here, in the connection's thread, so that a
		# slow or refused handshake never holds up the listener.
		request.settimeout(Handler.timeout)
		try:
			conn = self.ctx.wrap_socket(request, server_side=True)
		except (ssl.SSLError, OSError) as e:
			sys.stderr.write("%s %s handshake failed: %s\n" % (now_iso(), self.name, e))
			return
		try:
			self.RequestHandlerClass(conn, client_address, self)
		finally:
			try:
				conn.shutdown(socket.SHUT_RDWR)
			except OSError:
				pass
			conn.close()

	def handle_error(self, request, client_address):
		sys.stderr.write("%s %s error from %s: %s\n" % (now_iso(), self.name, client_address, sys.exc_info()[1]))


def tls_context(d, name, client_ca=False):
	ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
	ctx.load_cert_chain(os.path.join(d, name + ".pem"), os.path.join(d, name + ".key"))
	if client_ca:
		ctx.verify_mode = ssl.CERT_REQUIRED
		ctx.load_verify_locations(os.path.join(d, "ca.pem"))
	return ctx


def main():
	global log_path, log_file
	ap = argparse.ArgumentParser(description="the tests' HTTP server")
	ap.add_argument("--ports", required=True)
	ap.add_argument("--log", required=True)
	ap.add_argument("--tls")
	a = ap.parse_args()
	log_path = a.log
	log_file = open(log_path, "a", encoding="utf-8")

	listeners = [("http", None)]
	if a.tls:
		listeners += [("https", tls_context(a.tls, "server")),
		              ("https_expired", tls_context(a.tls, "expired")),
		              ("https_mtls", tls_context(a.tls, "server", client_ca=True))]
	servers = [Server(name, ctx) for name, ctx in listeners]
	for s in servers:
		threading.Thread(target=s.serve_forever, name=s.name, daemon=True).start()
	tmp = a.ports + ".tmp"
	with open(tmp, "w") as f:
		for s in servers:
			f.write("%s %d\n" % (s.name, s.server_port))
	os.rename(tmp, a.ports)
	sys.stderr.write("%s listening: %s\n" % (now_iso(), ", ".join(
		"%s on %d" % (s.name, s.server_port) for s in servers)))
	sys.stderr.flush()
	threading.Event().wait()          # until SIGTERM (its default action ends us)


if __name__ == "__main__":
	main()
