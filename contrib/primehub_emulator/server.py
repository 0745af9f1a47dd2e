"""HTTP front end: PrimeHub's endpoints plus the test-control endpoints.

PrimeHub endpoints (behaviour of the console's Koa app and Apollo Server 2):

* ``/api/graphql`` (GET/POST): authentication happens in Apollo's context
  factory, before anything else, so a missing or bad token is an HTTP 500 with
  a JSON ``errors`` body whatever the request held.  Bodies are decoded as
  koa-bodyparser does (JSON or form-encoded; anything else is "no body").
* ``/api/logs/images/<id>/job`` (GET): the build log, plain text.  Errors go
  through the console's Koa error handler: JSON ``{"code", "message"}``, or
  an HTML page for a 403 when the client accepts HTML.

Control endpoints under ``/-/`` (loopback clients only, no auth, never
delayed or faulted): stats, state, latency, faults, clock, shutdown.

HTTP/1.1 with keep-alive: every response carries Content-Length, and the
number of accepted TCP connections is counted so tests can check that a
client reuses its connection.
"""

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from .pipeline import Response, error_body, json_bytes, loads_strict, plain

MAX_BODY = 64 * 1024 * 1024
FAULT_MODES = ("none", "http500", "api_unavailable", "hang", "garbage")


class Stats(object):
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.total = 0
        self.operations = {}
        self.logs = 0

    def count_request(self, root_fields):
        with self.lock:
            self.total += 1
            for name in root_fields:
                self.operations[name] = self.operations.get(name, 0) + 1

    def count_log(self):
        with self.lock:
            self.logs += 1


class Faults(object):
    """What the next GraphQL/log requests suffer (POST /-/faults)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.mode = "none"
        self.count = None
        self.seconds = 0.0

    def set(self, mode, count=None, seconds=0.0):
        with self.lock:
            self.mode = mode
            self.count = count
            self.seconds = seconds

    def take(self):
        """Consume one faulted request: returns (mode, seconds)."""
        with self.lock:
            if self.mode == "none":
                return "none", 0.0
            mode, seconds = self.mode, self.seconds
            if self.count is not None:
                self.count -= 1
                if self.count <= 0:
                    self.mode, self.count = "none", None
            return mode, seconds

    def view(self):
        with self.lock:
            return {"mode": self.mode, "count": self.count, "seconds": self.seconds}


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, app):
        self.app = app
        self.connections = 0
        self._conn_lock = threading.Lock()
        ThreadingHTTPServer.__init__(self, address, Handler)

    def process_request(self, request, client_address):
        with self._conn_lock:
            self.connections += 1
        ThreadingHTTPServer.process_request(self, request, client_address)


class App(object):
    """Everything the handler needs, wired by __main__."""

    def __init__(self, store, service, admin_token, user_token=None, latency_ms=0,
                 verbose=False):
        self.store = store
        self.service = service
        by_name = {u["username"]: u["id"] for u in store.users}
        self.tokens = {admin_token: by_name["phadmin"]}
        if user_token:
            self.tokens[user_token] = by_name["phuser"]
        self.latency_ms = latency_ms
        self.verbose = verbose
        self.stats = Stats()
        self.faults = Faults()
        self.stopping = threading.Event()
        self.server = None

    def user_for(self, token):
        user_id = self.tokens.get(token)
        return self.store.user_by_id(user_id) if user_id else None

    def shutdown_async(self):
        """server.shutdown() blocks until serve_forever returns, so it must
        not run on the serving thread (nor in a signal handler)."""
        self.stopping.set()
        if self.server is not None:
            threading.Thread(target=self.server.shutdown, daemon=True).start()


def _accepts_html(accept):
    """Koa ctx.accepts('html'): true without an Accept header, or when any
    of text/html, text/*, */* is acceptable."""
    if not accept:
        return True
    for part in accept.split(","):
        fields = part.strip().split(";")
        media = fields[0].strip().lower()
        quality = 1.0
        for param in fields[1:]:
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media in ("text/html", "text/*", "*/*") and quality > 0:
            return True
    return False


FORBIDDEN_PAGE = """<!DOCTYPE html>
<html><head><title>PrimeHub</title></head>
<body><div id="root"><p>%s</p><a href="/api/oidc/logout">logout</a></div></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY the body of
    # a small answer on a kept-alive connection waits for the client's
    # delayed ACK (~40 ms).  Node's HTTP server, which PrimeHub runs on,
    # sets no-delay too.
    disable_nagle_algorithm = True
    server_version = "primehub-emulator"
    sys_version = ""

    # ------------------------------------------------------------ basics

    @property
    def app(self):
        return self.server.app

    def log_message(self, fmt, *args):
        if self.app.verbose:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response):
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _json(self, status, value):
        self._send(Response(status, json_bytes(value)))

    # ----------------------------------------------------------- routing

    def do_GET(self):
        self._route()

    def do_POST(self):
        self._route()

    def do_PUT(self):
        self._route()

    def do_DELETE(self):
        self._route()

    def do_PATCH(self):
        self._route()

    def _route(self):
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self._send(plain(413, "Payload Too Large"))
            self.close_connection = True
            return
        split = urlsplit(self.path)
        path = split.path
        try:
            if path.startswith("/-/"):
                self._control(path, body)
            elif path == "/api/graphql":
                self._graphql(split.query, body)
            elif path.startswith("/api/logs/images/") and path.endswith("/job"):
                image_id = unquote(path[len("/api/logs/images/"):-len("/job")])
                self._logs(image_id, split.query)
            else:
                self._send(plain(404, "Not Found"))
        except BrokenPipeError:
            self.close_connection = True
        except Exception as exc:  # a bug here must not kill the connection silently
            sys.stderr.write("primehub-emulator: internal error: %r\n" % (exc,))
            self._send(plain(500, "Internal Server Error"))

    # ------------------------------------------------- delay and faults

    def _delay_and_fault(self, for_logs=False):
        """Apply /-/latency and /-/faults.  Returns True if a fault already
        answered the request."""
        app = self.app
        if app.latency_ms > 0:
            app.stopping.wait(app.latency_ms / 1000.0)
        mode, seconds = app.faults.take()
        if mode == "none":
            return False
        if mode == "hang":
            app.stopping.wait(seconds)
            return False
        if mode == "http500":
            self._send(plain(500, "Internal Server Error"))
        elif mode == "garbage":
            self._send(Response(200, b"<html><body>upstream garbage \x00\xff{\"data\":",
                                "application/json"))
        elif mode == "api_unavailable":
            if for_logs:
                self._json(500, {"code": "API_UNAVAILABLE",
                                 "message": "An internal server error occurred"})
            else:
                self._json(200, {"errors": [error_body("An internal server error occurred",
                                                       "API_UNAVAILABLE")], "data": None})
        return True

    # ----------------------------------------------------------- graphql

    def _authenticate(self):
        """console app.ts ``authenticate`` as seen through Apollo's context:
        (user, None) or (None, error message)."""
        header = self.headers.get("Authorization") or ""
        if "Bearer" not in header:
            return None, "Context creation failed: request not authorized"
        token = header.replace("Bearer ", "", 1)
        user = self.app.user_for(token)
        if user is None:
            return None, "Context creation failed: Invalid API Token"
        return user, None

    def _decode_body(self, body):
        """koa-bodyparser: JSON and form bodies; anything else is no body.
        Returns (params or None, error Response or None)."""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype in ("application/json", "application/json-patch+json",
                     "application/vnd.api+json", "application/csp-report"):
            text = body.decode("utf-8", "replace").strip()
            if not text:
                return {}, None
            try:
                value = loads_strict(text)
            except ValueError as exc:
                return None, Response(400, json_bytes({"code": "INTERNAL_ERROR",
                                                       "message": str(exc)}))
            if not isinstance(value, (dict, list)):
                return None, Response(400, json_bytes({
                    "code": "INTERNAL_ERROR",
                    "message": "invalid JSON, only supports object and array"}))
            return value, None
        if ctype == "application/x-www-form-urlencoded":
            parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            return {k: (v[0] if len(v) == 1 else v) for k, v in parsed.items()}, None
        return {}, None

    def _graphql(self, query_string, body):
        app = self.app
        if self.command == "GET":
            parsed = parse_qs(query_string, keep_blank_values=True)
            params = {k: v[0] for k, v in parsed.items()}
            decode_error = None
        elif self.command == "POST":
            params, decode_error = self._decode_body(body)
        else:
            params, decode_error = {}, None

        if isinstance(params, list):
            fields = []
            for item in params:
                if isinstance(item, dict):
                    fields += app.service.root_fields(item.get("query"), item.get("operationName"))
        elif isinstance(params, dict):
            fields = app.service.root_fields(params.get("query"), params.get("operationName"))
        else:
            fields = []
        app.stats.count_request(fields)

        if self._delay_and_fault():
            return
        if decode_error is not None:
            # koa-bodyparser runs before Apollo, so a malformed body is
            # refused before authentication is even looked at.
            self._send(decode_error)
            return
        user, auth_error = self._authenticate()
        if auth_error:
            self._json(500, {"errors": [error_body(auth_error, "INTERNAL_SERVER_ERROR")]})
            return
        if self.command not in ("GET", "POST"):
            self._send(plain(405, "Apollo Server supports only GET/POST requests.",
                             {"Allow": "GET, POST"}))
            return
        if not params:
            if self.command == "GET":
                self._send(plain(400, "GET query missing."))
            else:
                self._send(plain(500, "POST body missing. Did you forget use body-parser "
                                      "middleware?"))
            return
        if isinstance(params, list):
            self._send(self._batch(params, user))
            return
        self._send(app.service.handle(self.command, params, user))

    def _batch(self, items, user):
        """Apollo 2 batching: one result per item, HTTP errors folded in."""
        results = []
        for item in items:
            response = self.app.service.handle("POST", item if isinstance(item, dict) else {},
                                               user)
            if response.content_type.startswith("application/json"):
                results.append(json.loads(response.body.decode("utf-8")))
            else:
                results.append({"errors": [error_body(response.body.decode("utf-8"),
                                                      "INTERNAL_SERVER_ERROR")]})
        return Response(200, json_bytes(results))

    # -------------------------------------------------------------- logs

    def _koa_error(self, status, code, message):
        if status == 403 and _accepts_html(self.headers.get("Accept")):
            html = FORBIDDEN_PAGE % message
            self._send(Response(403, html, "text/html; charset=utf-8"))
        else:
            self._json(status, {"code": code, "message": message})

    def _logs(self, image_id, query_string):
        app = self.app
        app.stats.count_log()
        if self.command != "GET":
            self._send(plain(405, "Method Not Allowed", {"Allow": "GET, HEAD"}))
            return
        if self._delay_and_fault(for_logs=True):
            return
        header = self.headers.get("Authorization") or ""
        if "Bearer" not in header:
            self._koa_error(403, "INTERNAL_ERROR", "request not authorized")
            return
        user = app.user_for(header.replace("Bearer ", "", 1))
        if user is None:
            # A plain Error from the token cache: the handler's default 500.
            self._koa_error(500, "INTERNAL_ERROR", "Invalid API Token")
            return
        store = app.store
        with store.lock:
            image = store.images.get(image_id)
            if image is None:
                self._koa_error(400, "RESOURCE_NOT_FOUND", store.logical_error(image_id))
                return
            group_name = image["spec"].get("groupName")
            if not user["isAdmin"] and not store.is_group_admin(user["username"], group_name):
                self._koa_error(403, "INTERNAL_ERROR", "request not authorized")
                return
            job, text = store.build_log(image_id)
        if job is None:
            message = ('imagespecjobs.primehub.io "%s" not found' % image_id
                       if store.errors == "v3" else "HTTP request failed")
            self._koa_error(400, "RESOURCE_NOT_FOUND", message)
            return
        params = parse_qs(query_string, keep_blank_values=True)
        tail = (params.get("tailLines") or [None])[0]
        if tail is not None:
            try:
                tail = int(tail)
            except ValueError:
                tail = None
        if tail is not None and tail >= 0:
            lines = text.splitlines(True)
            text = "".join(lines[len(lines) - tail:]) if tail else ""
        self._send(Response(200, text, "text/plain; charset=utf-8"))

    # ----------------------------------------------------------- control

    def _control(self, path, body):
        app = self.app
        host = self.client_address[0]
        if not (host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")):
            self._send(plain(403, "control endpoints are loopback only"))
            return
        try:
            payload = json.loads(body.decode("utf-8")) if body.strip() else {}
        except ValueError:
            self._json(400, {"error": "body is not JSON"})
            return
        if not isinstance(payload, dict):
            payload = {}
        method = self.command
        if path == "/-/stats" and method == "GET":
            with app.stats.lock:
                self._json(200, {"total": app.stats.total,
                                 "operations": dict(app.stats.operations),
                                 "connections": self.server.connections,
                                 "logs": app.stats.logs})
        elif path == "/-/stats/reset" and method == "POST":
            with app.stats.lock:
                app.stats.reset()
            with self.server._conn_lock:
                self.server.connections = 0
            self._json(200, {"total": 0, "operations": {}, "connections": 0, "logs": 0})
        elif path == "/-/state" and method == "GET":
            self._json(200, app.store.state_view())
        elif path == "/-/latency" and method == "POST":
            ms = payload.get("ms", 0)
            if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms < 0:
                self._json(400, {"error": "ms must be a number >= 0"})
                return
            app.latency_ms = ms
            self._json(200, {"ms": app.latency_ms})
        elif path == "/-/faults" and method == "POST":
            mode = payload.get("mode", "none")
            count = payload.get("count")
            seconds = payload.get("seconds", 0)
            if mode not in FAULT_MODES or (count is not None and not isinstance(count, int)) \
                    or not isinstance(seconds, (int, float)):
                self._json(400, {"error": "mode must be one of %s; count an integer; seconds "
                                          "a number" % ", ".join(FAULT_MODES)})
                return
            app.faults.set(mode, count if mode != "none" else None, float(seconds))
            self._json(200, app.faults.view())
        elif path == "/-/clock/advance" and method == "POST":
            try:
                seconds = float(payload.get("seconds", 0))
            except (TypeError, ValueError):
                self._json(400, {"error": "seconds must be a number"})
                return
            now = app.store.advance_clock(seconds)
            self._json(200, {"clock": now, "mode": app.store.clock.mode})
        elif path == "/-/shutdown" and method == "POST":
            self._json(200, {"shutdown": True})
            self.close_connection = True
            app.shutdown_async()
        else:
            self._send(plain(404, "Not Found"))


class EmulatorHTTPServer6(EmulatorHTTPServer):
    address_family = socket.AF_INET6


def bind(host, port):
    """Bind (port 0 picks a free port); the App is attached afterwards, once
    the address (which goes into every logEndpoint) is known."""
    cls = EmulatorHTTPServer6 if ":" in host else EmulatorHTTPServer
    return cls((host, port), None)


def attach(server, app):
    server.app = app
    app.server = server


def wait_forever(server, poll=0.1):
    try:
        server.serve_forever(poll_interval=poll)
    finally:
        server.server_close()
