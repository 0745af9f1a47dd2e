"""Fixtures for the integration suite: a real PrimeHub emulator and a real
primehubfs mount, modelled on sshfs's test/test_sshfs.py and conftest.py.

Every mount runs in the foreground (-f) so its log is captured; teardown
always unmounts (fusermount3 -u, then -uz as the last resort), waits for the
daemon to exit, and fails the test if it exited non-zero or its log shows a
sanitizer report.  Every test has a timeout (pytest-timeout, see
pytest.ini), so a hang fails instead of stalling CI.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMULATOR = os.path.join(ROOT, "contrib", "primehub-emulator")
TOKEN = "test-admin-token"
USER_TOKEN = "test-user-token"

SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer")


def primehubfs_binary():
    path = os.environ.get("PRIMEHUBFS") or os.path.join(ROOT, "build-test", "src", "primehubfs")
    if not os.access(path, os.X_OK):
        pytest.fail(f"primehubfs binary not found at {path}: build it (tests/run.sh does) "
                    "or set PRIMEHUBFS", pytrace=False)
    return path


class Emulator:
    """A running contrib/primehub-emulator and a small client for it."""

    def __init__(self, *args, token=TOKEN):
        self.token = token
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", EMULATOR, "--port", "0", "--clock", "manual",
             "--token", token, "--user-token", USER_TOKEN, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self._first_line(timeout=30)
        if not line.startswith("http"):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            pytest.fail(f"emulator did not start: {line!r} {err}")
        self.endpoint = line.strip()
        self.base = self.endpoint.rsplit("/api/graphql", 1)[0]

    def _first_line(self, timeout):
        import select
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline() if ready else ""

    def _request(self, method, path, body=None, headers=None, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def gql(self, query, variables=None, token=None):
        """Send a GraphQL document as another client would; returns the JSON."""
        status, body = self._request(
            "POST", "/api/graphql", {"query": query, "variables": variables or {}},
            {"Authorization": f"Bearer {token or self.token}"})
        return json.loads(body)

    def control(self, path, body=None):
        status, data = self._request("POST" if body is not None else "GET", "/-/" + path, body)
        assert status == 200, (path, status, data)
        return json.loads(data) if data else None

    def state(self):
        return self.control("state")

    def image_state(self, image_id):
        return self.state()["images"].get(image_id)

    def stats(self):
        return self.control("stats")

    def reset_stats(self):
        self.control("stats/reset", {})

    def advance(self, seconds):
        self.control("clock/advance", {"seconds": seconds})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


def no_core_dumps():
    """A crashing daemon must die at once: a core dump of a FUSE server can
    wait forever on a page locked by a request to that same server."""
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class Mount:
    """A real primehubfs mount in the foreground, with its log captured."""

    def __init__(self, emulator, *opts, ttl=60, env=None, endpoint=True, wait=True):
        self.dir = tempfile.mkdtemp(prefix="phfs-mnt-")
        self.logfile = tempfile.NamedTemporaryFile(prefix="phfs-log-", suffix=".txt", delete=False)
        self.path = self.dir
        args = [primehubfs_binary()]
        if endpoint:
            args.append(emulator.endpoint)
        args += [self.dir, "-f", "-o", f"ttl={ttl}", "-o", "timeout=5", "-o", "connect_timeout=2"]
        for o in opts:
            args += ["-o", o]
        full_env = dict(os.environ)
        full_env.pop("PRIMEHUB_API_ENDPOINT", None)
        full_env["PRIMEHUB_API_TOKEN"] = emulator.token if emulator else TOKEN
        full_env["HOME"] = full_env.get("PHFS_TEST_HOME", tempfile.gettempdir())
        if env is not None:
            full_env.update(env)
            for k, v in env.items():
                if v is None:
                    full_env.pop(k)
        self.proc = subprocess.Popen(args, stdout=self.logfile, stderr=subprocess.STDOUT,
                                     env=full_env, stdin=subprocess.DEVNULL,
                                     preexec_fn=no_core_dumps)
        self.mounted = False
        if wait:
            self.wait_mounted()

    def wait_mounted(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.ismount(self.dir):
                self.mounted = True
                return
            if self.proc.poll() is not None:
                pytest.fail(f"primehubfs exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        pytest.fail(f"primehubfs did not mount within {timeout}s:\n{self.log()}")

    def log(self):
        with open(self.logfile.name, errors="replace") as f:
            return f.read()

    def p(self, *parts):
        return os.path.join(self.dir, *parts)

    def unmount(self):
        """Unmount and check that the daemon ended cleanly."""
        problems = []
        if os.path.ismount(self.dir):
            r = subprocess.run(["fusermount3", "-u", self.dir], capture_output=True, text=True)
            if r.returncode != 0:
                time.sleep(0.5)
                r = subprocess.run(["fusermount3", "-u", self.dir], capture_output=True, text=True)
            if r.returncode != 0:
                problems.append(f"fusermount3 -u failed: {r.stderr.strip()}")
                subprocess.run(["fusermount3", "-uz", self.dir], capture_output=True)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = "killed"
            problems.append("primehubfs did not exit after unmount")
        log = self.log()
        if self.mounted and code != 0:
            problems.append(f"primehubfs exited with {code}")
        if SANITIZER_RE.search(log):
            problems.append("sanitizer report in the daemon's log")
        try:
            os.rmdir(self.dir)
        except OSError:
            pass
        self.logfile.close()
        os.unlink(self.logfile.name)
        return problems, log


@pytest.fixture
def emulator():
    emu = Emulator()
    yield emu
    emu.stop()


@pytest.fixture
def make_mount():
    """Factory: make_mount(emulator, *opts, ttl=60) -> Mount; all unmounted at teardown."""
    mounts = []

    def factory(emu, *opts, **kw):
        m = Mount(emu, *opts, **kw)
        mounts.append(m)
        return m

    yield factory
    failures = []
    for m in mounts:
        problems, log = m.unmount()
        if problems:
            failures.append("; ".join(problems) + "\n--- daemon log ---\n" + log[-6000:])
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


@pytest.fixture
def mnt(emulator, make_mount):
    """The common case: a mount of a fresh emulator with a long ttl."""
    return make_mount(emulator)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def read_json(path):
    return json.loads(read(path))


def pytest_sessionfinish(session, exitstatus):
    """Last line of defence: no test run leaves a primehubfs mount behind."""
    try:
        with open("/proc/mounts") as f:
            leftovers = [line.split()[1] for line in f
                         if line.split()[2].startswith("fuse") and "phfs-mnt-" in line.split()[1]]
    except OSError:
        return
    for path in leftovers:
        subprocess.run(["fusermount3", "-uz", path], capture_output=True)
