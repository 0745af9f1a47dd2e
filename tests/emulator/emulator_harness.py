"""Client harness for the emulator tests (urllib only): start
contrib/primehub-emulator on a free port with the manual build clock, talk to
it, stop it.  Kept out of conftest.py so test modules can import it by a name
that no other test directory uses.
"""
import http.client
import json
import os
import select
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMULATOR = os.path.join(ROOT, "contrib", "primehub-emulator")
ADMIN_TOKEN = "emulator-test-admin"
USER_TOKEN = "emulator-test-user"
HTTP_TIMEOUT = 20


class Reply:
    """An HTTP answer: status, headers, raw body, and the body as JSON if it is."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body.decode("utf-8"))
        except ValueError:
            self.json = None

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    @property
    def data(self):
        return self.json.get("data") if isinstance(self.json, dict) else None

    @property
    def errors(self):
        return self.json.get("errors") if isinstance(self.json, dict) else None

    def __repr__(self):
        return "Reply(%d, %r)" % (self.status, self.body[:500])


class Emulator:
    """A running emulator process plus a urllib client for it."""

    def __init__(self, *args, startup_timeout=30, tls=None):
        """``tls=(certfile, keyfile)`` serves https; the harness then trusts
        that certificate (and only it) for its own calls."""
        self.args = args
        self.tls = tls
        self.ssl_context = None
        extra = []
        if tls is not None:
            extra = ["--tls-cert", tls[0], "--tls-key", tls[1]]
            self.ssl_context = ssl.create_default_context(cafile=tls[0])
        self.started = time.monotonic()
        # stderr goes to a file, not a pipe: nobody reads it while the
        # emulator runs, and a full pipe would stop the emulator.
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", EMULATOR, "--port", "0", "--clock", "manual",
             "--token", ADMIN_TOKEN, "--user-token", USER_TOKEN] + extra + list(args),
            stdout=subprocess.PIPE, stderr=self.stderr_file)
        ready, _, _ = select.select([self.proc.stdout], [], [], startup_timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        self.startup_seconds = time.monotonic() - self.started
        if not line.startswith(("http://", "https://")):
            self.stop()
            raise RuntimeError("emulator did not start: %r %r" % (line, self.stderr_text()))
        self.endpoint = line.strip()
        self.base = self.endpoint[:-len("/api/graphql")]

    # ------------------------------------------------------------ http

    def request(self, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT):
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, data=body, method=method)
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context) as resp:
                return Reply(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.headers, exc.read())

    def gql(self, query, variables=None, token=ADMIN_TOKEN, operation_name=None,
            form=False, timeout=HTTP_TIMEOUT):
        """POST a document.  ``form=True`` posts it as the official CLI does:
        form-encoded, variables as a JSON string, no operationName."""
        headers = {}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        if form:
            fields = {"query": query}
            if variables is not None:
                fields["variables"] = json.dumps(variables)
            body = urllib.parse.urlencode(fields).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            payload = {"query": query, "variables": variables, "operationName": operation_name}
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        return self.request("POST", "/api/graphql", body, headers, timeout=timeout)

    def ok(self, query, variables=None, **kw):
        """A request that must succeed without errors; returns ``data``."""
        reply = self.gql(query, variables, **kw)
        assert reply.status == 200 and not reply.errors, reply
        return reply.data

    def control(self, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        reply = self.request("POST" if body is not None else "GET", "/-/" + path, data,
                             {"Content-Type": "application/json"})
        assert reply.status == 200, reply
        return reply.json

    def state(self):
        return self.control("state")

    def image_state(self, image_id):
        return self.state()["images"].get(image_id)

    def stats(self):
        return self.control("stats")

    def reset_stats(self):
        return self.control("stats/reset", {})

    def advance(self, seconds):
        return self.control("clock/advance", {"seconds": seconds})

    # ------------------------------------------------- fault injection

    def fault(self, mode, count=None, seconds=0, only=None, **extra):
        """POST /-/faults: the next ``count`` requests (all, without it)
        whose root fields include one of ``only`` (or the log endpoint for
        "logs"; every request without it) suffer ``mode``.  ``extra``:
        ``status``, ``location`` (redirect), ``body``, ``content_type``."""
        payload = dict(extra)
        payload.update({"mode": mode, "count": count, "seconds": seconds, "only": only})
        return self.control("faults", payload)

    def requests(self):
        """GET /-/requests: the last 500 requests to /api/..., oldest first:
        [{"method", "path", "ops", "auth", "fault"}]."""
        return self.control("requests")

    def tokens(self, revoke=None, add=None):
        """POST /-/tokens: revoke a token and/or add {"token": T, "user": NAME}."""
        payload = {}
        if revoke is not None:
            payload["revoke"] = revoke
        if add is not None:
            payload["add"] = add
        return self.control("tokens", payload)

    def config(self, **settings):
        """POST /-/config (GET without arguments): ``graphqlHost``."""
        return self.control("config", settings if settings else None)

    def inject(self, images):
        """POST /-/inject: store [{"name", "spec"}] bypassing every rule."""
        return self.control("inject", {"images": images})

    def add_group(self, name, display_name=None):
        """POST /-/groups: a group made in Keycloak; returns {"id", "name"}."""
        return self.control("groups", {"name": name, "displayName": display_name})

    def connection(self, timeout=HTTP_TIMEOUT):
        """A raw http.client connection (https with the trusted cert)."""
        host, port = urllib.parse.urlsplit(self.base).netloc.rsplit(":", 1)
        if self.ssl_context is not None:
            return http.client.HTTPSConnection(host, int(port), timeout=timeout,
                                               context=self.ssl_context)
        return http.client.HTTPConnection(host, int(port), timeout=timeout)

    def address(self):
        host, port = urllib.parse.urlsplit(self.base).netloc.rsplit(":", 1)
        return host, int(port)

    def stderr_text(self):
        try:
            self.stderr_file.seek(0)
            return self.stderr_file.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    # -------------------------------------------------------- lifecycle

    def wait(self, timeout=10):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()


def make_self_signed_cert(directory, name="emulator"):
    """A self-signed certificate for 127.0.0.1 and localhost (CN and
    subjectAltName), made with the openssl command: returns (cert, key)."""
    cert = os.path.join(directory, name + "-cert.pem")
    key = os.path.join(directory, name + "-key.pem")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed (Debian package openssl)")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
                    "-addext", "extendedKeyUsage=serverAuth"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    return cert, key
