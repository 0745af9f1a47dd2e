"""The integration suite's harness: a real PrimeHub emulator and a real
primehubfs mount, modelled on sshfs's test/test_sshfs.py.

Every mount runs in the foreground (-f) so its log is captured; unmount()
always unmounts (fusermount3 -u, then -uz as the last resort), waits for the
daemon to exit, and reports a non-zero exit or a sanitizer report in its log.
A module of its own (not conftest) so that test modules import it by a name
no other test directory uses.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# One client for the emulator, shared with its own tests and the benchmark.
sys.path.append(os.path.join(ROOT, "tests", "emulator"))
import emulator_harness  # noqa: E402

TOKEN = emulator_harness.ADMIN_TOKEN
USER_TOKEN = emulator_harness.USER_TOKEN

SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer")


def primehubfs_binary():
    path = os.environ.get("PRIMEHUBFS") or os.path.join(ROOT, "build-test", "src", "primehubfs")
    if not os.access(path, os.X_OK):
        pytest.fail(f"primehubfs binary not found at {path}: build it (tests/run.sh does) "
                    "or set PRIMEHUBFS", pytrace=False)
    return path


class Emulator(emulator_harness.Emulator):
    """The emulator, with gql() answering parsed JSON as another client sees it."""

    token = TOKEN

    def gql(self, query, variables=None, token=None):
        return super().gql(query, variables or {}, token=token or self.token).json


def no_core_dumps():
    """A crashing daemon must die at once: a core dump of a FUSE server can
    wait forever on a page locked by a request to that same server."""
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# Every mount point this test session made, so that the session's last
# clean-up unmounts its own leftovers and never another session's.
MOUNT_DIRS = set()


class Mount:
    """A real primehubfs mount in the foreground, with its log captured."""

    def __init__(self, emulator, *opts, ttl=60, env=None, endpoint=True, wait=True):
        self.dir = tempfile.mkdtemp(prefix="phfs-mnt-")
        MOUNT_DIRS.add(os.path.realpath(self.dir))
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
        # Versions of spec.json (IMAGE/.history) go to a cache of this
        # mount's own, removed at unmount: tests never share one by chance.
        self.cache = tempfile.mkdtemp(prefix="phfs-cache-")
        full_env["XDG_CACHE_HOME"] = self.cache
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
        """Unmount and check that the daemon ended cleanly (once: a test
        that unmounts early gets the same answer again at teardown)."""
        if getattr(self, "_unmounted", None) is not None:
            return self._unmounted
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
        shutil.rmtree(self.cache, ignore_errors=True)
        self._unmounted = (problems, log)
        return problems, log


def read(path):
    with open(path, "rb") as f:
        return f.read()


def read_json(path):
    return json.loads(read(path))


