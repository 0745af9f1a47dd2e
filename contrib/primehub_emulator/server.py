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
delayed or faulted): stats, state, requests, latency, faults, tokens, config,
inject, touch-all, clock, shutdown.

Server cost (costs.py): every GraphQL request is metered (the Keycloak calls
and Kubernetes reads the real server would make) and, with the cost model
on, the time it would take is slept before the answer, holding one lock: the
real server is a single Node process, so its work does not overlap.

Faults (POST /-/faults) either answer instead of running the request
(nothing is applied) or run it (its effects are applied and saved) and then
damage or withhold the answer: the second kind is what makes a client's
"maybe applied" case testable.  ``only`` restricts a fault to requests whose
root fields include one of the names (or "logs" for the log endpoint).

HTTP/1.1 with keep-alive: every response carries Content-Length, and the
number of accepted TCP connections is counted so tests can check that a
client reuses its connection.
"""

import base64
import collections
import json
import socket
import ssl
import struct
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from .costs import CostModel, Meter
from .pipeline import Response, error_body, json_bytes, loads_strict, plain

MAX_BODY = 64 * 1024 * 1024
# Modes that answer instead of running the request: nothing is applied.
FAULTS_INSTEAD = ("http500", "http502", "http503", "http504", "html200", "api_unavailable",
                  "garbage", "reset", "redirect", "body")
# Modes that run the request (its effects are applied, the state file saved)
# and then damage or withhold the answer.
FAULTS_AFTER = ("reset_mid_body", "truncated", "drip", "apply_then_hang", "apply_then_reset")
FAULT_MODES = ("none", "hang", "close_keepalive") + FAULTS_INSTEAD + FAULTS_AFTER
REQUEST_LOG_SIZE = 500

# What nginx (PrimeHub's ingress) answers when the console behind it fails.
PROXY_PAGES = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}
PROXY_PAGE = """<html>
<head><title>%d %s</title></head>
<body>
<center><h1>%d %s</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""
# What an expired session or a misrouted request gets from the SSO in front
# of the console: a 200 login page.
LOGIN_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in to PrimeHub</title></head>
<body><form id="kc-form-login" action="/auth/realms/primehub/login-actions/authenticate"
method="post"><input name="username"><input name="password" type="password">
<input type="submit" value="Sign In"></form></body></html>
"""


class Stats(object):
    def __init__(self):
        self.lock = threading.RLock()
        self.reset()

    def reset(self):
        self.total = 0
        self.operations = {}
        self.logs = 0
        self.requests = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self.keycloak_calls = 0
        self.kubernetes_reads = 0
        self.charged_ms = 0.0
        self.by_op = {}

    def count_cost(self, meter, charged_ms, by_root, entry):
        """Add one request's back-end work (and the time charged for it);
        ``entry`` is its /-/requests record, which gets the ``cost``."""
        with self.lock:
            self.keycloak_calls += meter.keycloak_calls
            self.kubernetes_reads += meter.kubernetes_reads
            self.charged_ms += charged_ms
            for name, counts in meter.by_root.items():
                op = self.by_op.setdefault(name, {"requests": 0, "keycloak_calls": 0,
                                                  "kubernetes_reads": 0, "charged_ms": 0.0})
                op["requests"] += 1
                op["keycloak_calls"] += counts[0]
                op["kubernetes_reads"] += counts[1]
                op["charged_ms"] += by_root.get(name, 0.0)
            if entry is not None:
                entry["cost"] = dict(meter.summary(), charged_ms=round(charged_ms, 3))

    def backend(self):
        with self.lock:
            return {"keycloak_calls": self.keycloak_calls,
                    "kubernetes_reads": self.kubernetes_reads,
                    "charged_ms": round(self.charged_ms, 3),
                    "by_op": {name: dict(op, charged_ms=round(op["charged_ms"], 3))
                              for name, op in sorted(self.by_op.items())}}

    def count_request(self, root_fields):
        with self.lock:
            self.total += 1
            for name in root_fields:
                self.operations[name] = self.operations.get(name, 0) + 1

    def count_log(self):
        with self.lock:
            self.logs += 1

    def record(self, entry):
        entry.setdefault("cost", dict(Meter().summary(), charged_ms=0.0))
        with self.lock:
            self.requests.append(entry)

    def recorded(self):
        with self.lock:
            return [dict(entry, cost=dict(entry["cost"])) for entry in self.requests]


class Fault(object):
    """One request's fault: what was taken from Faults."""

    __slots__ = ("mode", "seconds", "extra")

    def __init__(self, mode, seconds=0.0, extra=None):
        self.mode = mode
        self.seconds = seconds
        self.extra = extra or {}


NO_FAULT = Fault("none")


class Faults(object):
    """What the next GraphQL/log requests suffer (POST /-/faults)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.set("none")

    def set(self, mode, count=None, seconds=0.0, only=None, extra=None):
        with self.lock:
            self.mode = mode
            self.count = count
            self.seconds = seconds
            self.only = None if only is None else set(only)
            self.extra = dict(extra or {})

    def take(self, ops, for_logs=False):
        """Consume one faulted request, if this one is concerned: ``ops`` are
        its GraphQL root fields.  Returns a Fault (NO_FAULT if untouched)."""
        with self.lock:
            if self.mode == "none":
                return NO_FAULT
            if self.only is not None:
                if for_logs:
                    concerned = "logs" in self.only
                else:
                    concerned = any(op in self.only for op in ops)
                if not concerned:
                    return NO_FAULT
            fault = Fault(self.mode, self.seconds, self.extra)
            if self.count is not None:
                self.count -= 1
                if self.count <= 0:
                    self.mode, self.count, self.only, self.extra = "none", None, None, {}
            return fault

    def view(self):
        with self.lock:
            view = dict(self.extra)
            view.update({"mode": self.mode, "count": self.count, "seconds": self.seconds,
                         "only": None if self.only is None else sorted(self.only)})
            return view


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

    def handle_error(self, request, client_address):
        """A client that goes away (or fails the TLS handshake) is normal
        under test; a traceback per connection would also fill a stderr pipe
        nobody reads.  Anything else is a bug and is shown."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ValueError)):
            if self.app is not None and self.app.verbose:
                sys.stderr.write("%s: connection ended: %r\n" % (client_address[0], exc))
            return
        sys.stderr.write("primehub-emulator: internal error with %s:\n%s"
                         % (client_address[0], traceback.format_exc()))

    def use_tls(self, certfile, keyfile):
        """Serve https.  The handshake happens in the connection's thread
        (Handler.setup), so a client that never completes it blocks nobody."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        self.socket = context.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)


class App(object):
    """Everything the handler needs, wired by __main__."""

    def __init__(self, store, service, admin_token, user_token=None, latency_ms=0,
                 verbose=False, cost_model=None):
        self.store = store
        self.service = service
        by_name = {u["username"]: u["id"] for u in store.users}
        self.user_ids = by_name
        self.tokens = {admin_token: by_name["phadmin"]}
        if user_token:
            self.tokens[user_token] = by_name["phuser"]
        self.latency_ms = latency_ms
        self.verbose = verbose
        self.cost_model = cost_model if cost_model is not None else CostModel()
        # The real server is one Node process: charged time is slept holding
        # this, so two expensive requests take twice as long, not as long.
        self.cpu_lock = threading.Lock()
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
    tls_handshake_timeout = 10

    # ------------------------------------------------------------ basics

    @property
    def app(self):
        return self.server.app

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.tls_handshake_timeout)
            self.request.do_handshake()
            self.request.settimeout(None)
        BaseHTTPRequestHandler.setup(self)

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

    def _send_head(self, response, extra_headers=None):
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def _send(self, response, extra_headers=None):
        self._send_head(response, extra_headers)
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _json(self, status, value):
        self._send(Response(status, json_bytes(value)))

    def _reset(self):
        """Abort the connection with a TCP RST (SO_LINGER 0, then close).
        The read side's file object holds a reference to the socket, so it is
        closed first, or close() would not close anything."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()
        except OSError:
            pass
        sock.close()

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
                self._graphql(path, split.query, body)
            elif path.startswith("/api/logs/images/") and path.endswith("/job"):
                image_id = unquote(path[len("/api/logs/images/"):-len("/job")])
                self._logs(path, image_id, split.query)
            else:
                self._send(plain(404, "Not Found"))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug here must not kill the connection silently
            sys.stderr.write("primehub-emulator: internal error: %r\n" % (exc,))
            traceback.print_exc()
            try:
                self._send(plain(500, "Internal Server Error"))
            except OSError:
                self.close_connection = True

    # ------------------------------------------------- delay and faults

    def _delay_and_fault(self, path, ops, for_logs=False):
        """Apply /-/latency, take the fault this request suffers (the
        request's root fields ``ops`` decide it when the fault has ``only``)
        and record the request for /-/requests.  Returns the Fault; when
        ``answered`` is set on it the fault already answered."""
        app = self.app
        if app.latency_ms > 0:
            app.stopping.wait(app.latency_ms / 1000.0)
        fault = app.faults.take(ops, for_logs)
        self._entry = {"method": self.command, "path": path, "ops": list(ops),
                       "auth": self.headers.get("Authorization") is not None,
                       "fault": None if fault.mode == "none" else fault.mode,
                       "cost": dict(Meter().summary(), charged_ms=0.0)}
        app.stats.record(self._entry)
        return fault

    def _answer_instead(self, fault, for_logs=False):
        """The modes that answer without running the request.  Returns True
        if the request was answered (or aborted) here."""
        mode = fault.mode
        if mode == "hang":
            self.app.stopping.wait(fault.seconds)
            return False
        if mode not in FAULTS_INSTEAD:
            return False
        if mode == "http500":
            self._send(plain(500, "Internal Server Error"))
        elif mode in ("http502", "http503", "http504"):
            status = int(mode[4:])
            reason = PROXY_PAGES[status]
            self._send(Response(status, PROXY_PAGE % (status, reason, status, reason),
                                "text/html"))
        elif mode == "html200":
            self._send(Response(200, LOGIN_PAGE, "text/html; charset=utf-8"))
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
        elif mode == "reset":
            self._reset()
        elif mode == "redirect":
            status = fault.extra.get("status", 307)
            location = fault.extra.get("location", "")
            self._send(plain(status, "Redirecting to %s" % location, {"Location": location}))
        elif mode == "body":
            if "body_base64" in fault.extra:
                body = base64.b64decode(fault.extra["body_base64"])
            else:
                # surrogateescape: "\udcff" in the text is the raw byte 0xff,
                # so a test can send invalid UTF-8.
                body = fault.extra.get("body", "").encode("utf-8", "surrogateescape")
            self._send(Response(fault.extra.get("status", 200), body,
                                fault.extra.get("content_type", "application/json")))
        return True

    def _deliver(self, response, fault):
        """Send the answer of a request that ran, damaged as ``fault`` says."""
        mode = fault.mode
        app = self.app
        if mode == "close_keepalive":
            self._send(response, {"Connection": "close"})
            self.close_connection = True
        elif mode == "truncated":
            # The real Content-Length, half the body, then an orderly close.
            self._send_head(response)
            self.wfile.write(response.body[:len(response.body) // 2])
            self.close_connection = True
        elif mode == "reset_mid_body":
            self._send_head(response)
            self.wfile.write(response.body[:len(response.body) // 2])
            self._reset()
        elif mode == "drip":
            interval = fault.seconds if fault.seconds > 0 else 2.0
            self._send_head(response)
            self.close_connection = True
            body = response.body
            for i in range(len(body)):
                if i and app.stopping.wait(interval):
                    return
                self.wfile.write(body[i:i + 1])
        elif mode == "apply_then_hang":
            app.stopping.wait(fault.seconds)
            self.close_connection = True
        elif mode == "apply_then_reset":
            self._reset()
        else:
            self._send(response)

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

    def _graphql(self, path, query_string, body):
        app = self.app
        if self.command == "GET":
            parsed = parse_qs(query_string, keep_blank_values=True)
            params = {k: v[0] for k, v in parsed.items()}
            decode_error = None
        elif self.command == "POST":
            params, decode_error = self._decode_body(body)
        else:
            params, decode_error = {}, None

        # The document is parsed before the fault is decided: ``only``
        # selects by root field (a document that does not parse has none).
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

        fault = self._delay_and_fault(path, fields)
        if self._answer_instead(fault):
            return
        meter = Meter()
        response = self._graphql_response(params, decode_error, meter)
        self._charge(meter)
        self._deliver(response, fault)

    def _charge(self, meter):
        """Account the request's back-end work and take the time the real
        server would (costs.py), one request at a time."""
        app = self.app
        charged_ms, by_root = app.cost_model.charges(meter)
        app.stats.count_cost(meter, charged_ms, by_root, self._entry)
        if charged_ms > 0:
            with app.cpu_lock:
                app.stopping.wait(charged_ms / 1000.0)

    def _graphql_response(self, params, decode_error, meter):
        if decode_error is not None:
            # koa-bodyparser runs before Apollo, so a malformed body is
            # refused before authentication is even looked at.
            return decode_error
        user, auth_error = self._authenticate()
        if auth_error:
            return Response(500, json_bytes({"errors": [error_body(auth_error,
                                                                   "INTERNAL_SERVER_ERROR")]}))
        if self.command not in ("GET", "POST"):
            return plain(405, "Apollo Server supports only GET/POST requests.",
                         {"Allow": "GET, POST"})
        if not params:
            if self.command == "GET":
                return plain(400, "GET query missing.")
            return plain(500, "POST body missing. Did you forget use body-parser middleware?")
        if isinstance(params, list):
            return self._batch(params, user, meter)
        return self.app.service.handle(self.command, params, user, meter)

    def _batch(self, items, user, meter):
        """Apollo 2 batching: one result per item, HTTP errors folded in.
        The items share one context, so one meter."""
        results = []
        for item in items:
            response = self.app.service.handle("POST", item if isinstance(item, dict) else {},
                                               user, meter)
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
            return Response(403, html, "text/html; charset=utf-8")
        return Response(status, json_bytes({"code": code, "message": message}))

    def _logs(self, path, image_id, query_string):
        app = self.app
        app.stats.count_log()
        if self.command != "GET":
            app.stats.record({"method": self.command, "path": path, "ops": [],
                              "auth": self.headers.get("Authorization") is not None,
                              "fault": None})
            self._send(plain(405, "Method Not Allowed", {"Allow": "GET, HEAD"}))
            return
        fault = self._delay_and_fault(path, [], for_logs=True)
        if self._answer_instead(fault, for_logs=True):
            return
        self._deliver(self._logs_response(image_id, query_string), fault)

    def _logs_response(self, image_id, query_string):
        app = self.app
        header = self.headers.get("Authorization") or ""
        if "Bearer" not in header:
            return self._koa_error(403, "INTERNAL_ERROR", "request not authorized")
        user = app.user_for(header.replace("Bearer ", "", 1))
        if user is None:
            # A plain Error from the token cache: the handler's default 500.
            return self._koa_error(500, "INTERNAL_ERROR", "Invalid API Token")
        store = app.store
        with store.lock:
            image = store.images.get(image_id)
            if image is None:
                return self._koa_error(400, "RESOURCE_NOT_FOUND", store.logical_error(image_id))
            group_name = image["spec"].get("groupName")
            if not user["isAdmin"] and not store.is_group_admin(user["username"], group_name):
                return self._koa_error(403, "INTERNAL_ERROR", "request not authorized")
            job, text = store.build_log(image_id)
        if job is None:
            message = ('imagespecjobs.primehub.io "%s" not found' % image_id
                       if store.errors == "v3" else "HTTP request failed")
            return self._koa_error(400, "RESOURCE_NOT_FOUND", message)
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
        return Response(200, text, "text/plain; charset=utf-8")

    # ----------------------------------------------------------- control

    def _set_faults(self, payload):
        """POST /-/faults; returns an error text or None."""
        mode = payload.get("mode", "none")
        count = payload.get("count")
        seconds = payload.get("seconds", 0)
        if seconds is None:
            seconds = 0
        only = payload.get("only")
        extra = {k: v for k, v in payload.items()
                 if k not in ("mode", "count", "seconds", "only")}
        if mode not in FAULT_MODES:
            return "mode must be one of %s" % ", ".join(FAULT_MODES)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or count < 1):
            return "count must be an integer >= 1"
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            return "seconds must be a number >= 0"
        if only is not None and (not isinstance(only, list)
                                 or not all(isinstance(o, str) for o in only)):
            return "only must be a list of root field names or \"logs\""
        status = extra.get("status")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)
                                   or not 100 <= status <= 599):
            return "status must be an HTTP status code"
        if mode == "redirect" and not isinstance(extra.get("location"), str):
            return "redirect needs a location"
        if mode == "body" and not isinstance(extra.get("body", ""), str):
            return "body must be a string"
        if "body_base64" in extra:
            try:
                base64.b64decode(extra["body_base64"], validate=True)
            except (TypeError, ValueError):
                return "body_base64 must be base64"
        try:
            extra.get("body", "").encode("utf-8", "surrogateescape")
        except (AttributeError, UnicodeEncodeError):
            return "body must be text (lone surrogates \\udc80-\\udcff stand for bytes)"
        if not isinstance(extra.get("content_type", ""), str):
            return "content_type must be a string"
        if mode == "none":
            self.app.faults.set("none")
        else:
            self.app.faults.set(mode, count, float(seconds), only, extra)
        return None

    def _set_tokens(self, payload):
        """POST /-/tokens {"revoke": TOKEN} and/or {"add": {"token", "user"}}."""
        app = self.app
        add = payload.get("add")
        revoke = payload.get("revoke")
        if add is None and revoke is None:
            return 'give "revoke": TOKEN or "add": {"token": T, "user": NAME}'
        if add is not None:
            if not isinstance(add, dict) or not isinstance(add.get("token"), str) \
                    or not add["token"] or add.get("user", "phadmin") not in app.user_ids:
                return 'add must be {"token": T, "user": one of %s}' % ", ".join(
                    sorted(app.user_ids))
        if revoke is not None and not isinstance(revoke, str):
            return "revoke must be a token"
        if revoke is not None:
            app.tokens.pop(revoke, None)
        if add is not None:
            app.tokens[add["token"]] = app.user_ids[add.get("user", "phadmin")]
        return None

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
                                 "logs": app.stats.logs,
                                 "backend": app.stats.backend()})
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
            error = self._set_faults(payload)
            if error:
                self._json(400, {"error": error})
                return
            # ASCII-escaped: a hostile ``body`` may hold lone surrogates.
            self._send(Response(200, json.dumps(app.faults.view())))
        elif path == "/-/faults" and method == "GET":
            self._send(Response(200, json.dumps(app.faults.view())))
        elif path == "/-/requests" and method == "GET":
            self._json(200, app.stats.recorded())
        elif path == "/-/tokens" and method == "POST":
            error = self._set_tokens(payload)
            if error:
                self._json(400, {"error": error})
                return
            self._json(200, {"tokens": len(app.tokens)})
        elif path == "/-/config" and method in ("GET", "POST"):
            if method == "POST":
                host = payload.get("graphqlHost")
                if not isinstance(host, str) or not host:
                    self._json(400, {"error": "graphqlHost must be a URL string"})
                    return
                app.store.set_graphql_host(host)
            self._json(200, {"graphqlHost": app.store.base_url})
        elif path == "/-/inject" and method == "POST":
            images = payload.get("images")
            if not isinstance(images, list) or not all(
                    isinstance(i, dict) and isinstance(i.get("name"), str)
                    and isinstance(i.get("spec", {}), dict) for i in images):
                self._json(400, {"error": 'images must be [{"name": string, "spec": object}]'})
                return
            try:
                json_bytes(images)
            except UnicodeEncodeError:
                # Stored, a lone surrogate would break every later answer and
                # the state file; invalid UTF-8 goes through the "body" fault.
                self._json(400, {"error": "images must be valid Unicode (no lone surrogates)"})
                return
            app.store.inject_images(images)
            self._json(200, {"injected": [i["name"] for i in images]})
        elif path == "/-/groups" and method == "POST":
            name, display = payload.get("name"), payload.get("displayName")
            if not isinstance(name, str) or not name or not (
                    display is None or isinstance(display, str)):
                self._json(400, {"error": 'expected {"name": string, "displayName": string}'})
                return
            group = app.store.add_group(name, display)
            if group is None:
                self._json(409, {"error": "a group named %s exists" % name})
                return
            self._json(200, {"id": group["id"], "name": name})
        elif path == "/-/touch-all" and method == "POST":
            field = payload.get("field", "description")
            suffix = payload.get("suffix")
            if field not in app.store.TOUCH_FIELDS:
                self._json(400, {"error": "field must be one of %s"
                                          % ", ".join(app.store.TOUCH_FIELDS)})
                return
            if suffix is not None and not isinstance(suffix, str):
                self._json(400, {"error": "suffix must be a string"})
                return
            try:
                json_bytes(suffix)
            except UnicodeEncodeError:
                self._json(400, {"error": "suffix must be valid Unicode (no lone surrogates)"})
                return
            self._json(200, {"changed": app.store.touch_all(field, suffix)})
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
