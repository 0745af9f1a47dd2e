"""Helpers for driving real programs against a mount."""
import errno
import json
import os
import shutil
import subprocess
import time
import uuid

IMAGE_QUERY = """query($where: ImageWhereUniqueInput!) { image(where: $where) {
  id name displayName description type url urlForGpu global useImagePullSecret
  groups { id name } imageSpec { baseImage pullSecret packages { apt pip conda } cancel }
  jobStatus { phase } } }"""

UPDATE = """mutation($data: ImageUpdateInput!, $where: ImageWhereUniqueInput!) {
  updateImage(data: $data, where: $where) { id } }"""


def save(path, data, flags=os.O_WRONLY | os.O_TRUNC):
    """Write and close like a careful program; returns 0 or the errno that
    write/close reported."""
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(path, flags)
    try:
        try:
            os.write(fd, data)
        except OSError as e:
            return e.errno
    finally:
        try:
            os.close(fd)
        except OSError as e:
            return e.errno
    return 0


def errno_of(fn):
    """The errno fn() raised, 0 when it raised nothing."""
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0


def server_update(emu, image_id, data):
    """Another client changing an image (as the web UI or the CLI would)."""
    out = emu.gql(UPDATE, {"where": {"id": image_id}, "data": data})
    assert not out.get("errors"), out
    return out


def server_image(emu, image_id):
    return emu.gql(IMAGE_QUERY, {"where": {"id": image_id}})["data"]["image"]


def ops(emu):
    """GraphQL operations served since the last reset, by root field."""
    return emu.stats()["operations"]


def mutations(emu):
    return {k: v for k, v in ops(emu).items()
            if k in ("createImage", "updateImage", "deleteImage", "rebuildImage",
                     "cancelImageBuild")}


class Tmux:
    """A terminal program in a detached tmux session: type keys, read the screen."""

    def __init__(self, cmd, cwd=None, env=None):
        self.sock = "phfs-" + uuid.uuid4().hex[:8]
        self.name = "t"
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["TERM"] = "xterm"
        subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null", "new-session", "-d",
                        "-s", self.name, "-x", "160", "-y", "50", cmd],
                       check=True, cwd=cwd, env=full_env, timeout=20)

    def keys(self, *keys):
        subprocess.run(["tmux", "-L", self.sock, "send-keys", "-t", self.name, *keys],
                       check=True, timeout=20)

    def literal(self, text):
        subprocess.run(["tmux", "-L", self.sock, "send-keys", "-t", self.name, "-l", text],
                       check=True, timeout=20)

    def screen(self):
        r = subprocess.run(["tmux", "-L", self.sock, "capture-pane", "-p", "-t", self.name],
                           capture_output=True, text=True, timeout=20)
        return r.stdout

    def alive(self):
        return subprocess.run(["tmux", "-L", self.sock, "has-session", "-t", self.name],
                              capture_output=True, timeout=20).returncode == 0

    def wait_for(self, text, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.screen():
                return True
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared on screen:\n{self.screen()}")

    def wait_exit(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return
            time.sleep(0.1)
        screen = self.screen()
        self.kill()
        raise AssertionError(f"program did not exit:\n{screen}")

    def kill(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=20)


def need(program):
    path = shutil.which(program)
    if not path:
        raise AssertionError(f"{program} is not installed: tests/run.sh installs it")
    return path


def lean_env():
    """Environment for a daemon whose memory is measured: under ASan, freed
    memory would sit in its quarantine (256 MiB) and look like a leak; real
    leaks are LeakSanitizer's to report at unmount.  Harmless otherwise."""
    opts = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (opts + ":" if opts else "") +
            "quarantine_size_mb=0:allocator_release_to_os_interval_ms=0"}


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_shown(mnt, image_id, field, value, timeout=10):
    """Until the mount's spec.json shows another client's change (within
    about ttl), read by this process, not by the tool under test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(os.path.join(mnt.path, image_id, "spec.json"), "rb") as f:
            if json.loads(f.read()).get(field) == value:
                return
        time.sleep(0.1)
    raise AssertionError(f"{image_id}: the mount never showed {field}={value!r}")


def sized_read(path, tries=5):
    """(st_size, bytes read) describing one version of a file that may change.

    A change made elsewhere reaches the kernel whenever the refresher has its
    answer, and that can fall between a stat and the read after it: the stat
    shows the old size, the read the new text.  Any filesystem has that race;
    it is not a size/content mismatch.  So the pair counts only when stat
    gives the same size before and after the read.  A size that stays wrong
    gives the same wrong size both times and is returned for the caller to
    compare; one that never settles fails here."""
    for _ in range(tries):
        before = os.stat(path).st_size
        with open(path, "rb") as f:
            data = f.read()
        if os.stat(path).st_size == before:
            return before, data
    raise AssertionError(f"{path}: its size changed across each of {tries} reads")
