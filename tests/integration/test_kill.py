"""SIGKILL of the daemon in the middle of a save.

The server holds either the old or the new image (never a mix of fields),
the mount point answers ENOTCONN, `fusermount3 -u` clears it, and a fresh
mount on the same directory works at once.  The emulator's latency keeps
the save's requests in flight long enough to kill the daemon during them.
"""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from unittest import mock

import pytest

from phfs_harness import Emulator, Mount, read_json

LATENCY_MS = 2000
SAVER = r"""
import json, os, sys
path, text = sys.argv[1], sys.argv[2].encode()
fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
os.write(fd, text)
try:
    os.close(fd)
except OSError as e:
    print(e.errno)
    sys.exit(3)
print(0)
"""


def mount_on(emu, directory, **kw):
    """A Mount on a given (existing) directory."""
    with mock.patch("tempfile.mkdtemp", return_value=directory):
        return Mount(emu, **kw)


def wait_for_request(emu, op, deadline):
    while time.monotonic() < deadline:
        if any(op in r["ops"] for r in emu.requests()):
            return True
        time.sleep(0.05)
    return False


def force_unmount(m):
    subprocess.run(["fusermount3", "-uz", m.dir], capture_output=True, timeout=20)
    if m.proc.poll() is None:
        m.proc.kill()
    m.proc.wait(timeout=10)


# Short, so that the kernel's cached attributes of the dead mount run out soon.
KILL_TTL = 2


@pytest.mark.timeout(90)
@pytest.mark.parametrize("when", ["update-in-flight", "applied-not-answered"])
def test_sigkill_mid_save(when):
    emu = Emulator()
    m = m2 = saver = None
    try:
        m = Mount(emu, ttl=KILL_TTL)
        spec = read_json(m.p("tf-2", "spec.json"))
        old = emu.image_state("tf-2")["spec"]
        new = dict(spec, description="new description", displayName="New display name")
        if when == "update-in-flight":
            emu.control("latency", {"ms": LATENCY_MS})
        else:
            # The server applies updateImage, then holds the answer back.
            emu.fault("apply_then_hang", seconds=15, only=["updateImage"])
        emu.reset_stats()
        saver = subprocess.Popen([sys.executable, "-c", SAVER, m.p("tf-2", "spec.json"),
                                  json.dumps(new, indent=2)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        if when == "update-in-flight":
            # The read-back of the image is answered; updateImage is sent
            # and waits out the server's latency when the daemon dies.
            assert wait_for_request(emu, "image", deadline)
            time.sleep(LATENCY_MS / 1000 / 2)
        else:
            assert wait_for_request(emu, "updateImage", deadline)
            time.sleep(0.3)
        os.kill(m.proc.pid, signal.SIGKILL)
        m.proc.wait(timeout=10)

        # The saving process is not left hanging; its save was not
        # reported as done (the daemon died before it could know).
        out, err = saver.communicate(timeout=20)
        assert saver.returncode == 3, (out, err)
        assert int(out) in (errno.ECONNABORTED, errno.ENOTCONN, errno.EIO), out

        # The mount point says the daemon is gone: at once for anything
        # that asks the daemon, and for stat once the kernel's cached
        # attributes (kept for ttl) have run out.
        with pytest.raises(OSError) as e:
            os.listdir(m.path)
        assert e.value.errno == errno.ENOTCONN
        time.sleep(KILL_TTL + 0.1)
        with pytest.raises(OSError) as e:
            os.stat(m.path)
        assert e.value.errno == errno.ENOTCONN

        # The server finishes what it was doing: old or new, never a mix.
        emu.control("latency", {"ms": 0})
        emu.fault("none")
        time.sleep(LATENCY_MS / 1000 + 0.5)
        now = emu.image_state("tf-2")["spec"]
        fields = ("description", "displayName")
        assert [now.get(k) for k in fields] in ([old.get(k) for k in fields],
                                                [new[k] for k in fields]), now
        for k in ("type", "url", "urlForGpu"):
            assert now.get(k) == old.get(k), k
        if when == "applied-not-answered":
            assert now["description"] == new["description"]
        assert emu.image_state("tf-2")["global"] is True

        # fusermount3 -u clears it, and a new mount works at once.
        r = subprocess.run(["fusermount3", "-u", m.dir], capture_output=True, text=True,
                           timeout=20)
        assert r.returncode == 0, r.stderr
        assert not os.path.ismount(m.dir)
        t = time.monotonic()
        m2 = mount_on(emu, m.dir, ttl=60)
        assert read_json(m2.p("tf-2", "spec.json"))["description"] == now["description"]
        assert time.monotonic() - t < 5
        problems, log = m2.unmount()
        m2 = None
        assert not problems, log
    finally:
        if saver and saver.poll() is None:
            saver.kill()
            saver.wait()
        for mount in (m2, m):
            if mount is not None:
                force_unmount(mount)
        if m is not None:
            try:
                os.rmdir(m.dir)
            except OSError:
                pass
        emu.stop()


def test_unmount_during_a_refresh_that_changed_everything():
    """The refresher outlives the FUSE loop: a refresh that finds every
    image changed must not tell the kernel anything once the mount is going
    (no write to a closed /dev/fuse, no use of a destroyed session)."""
    emu = Emulator("--images", "4000", "--cost-model", "off")
    try:
        for attempt in range(3):
            m = Mount(emu, ttl=1)
            names = [n for n in os.listdir(m.path) if n.startswith("synthetic-")]
            for n in names[:2000]:
                os.stat(m.p(n, "spec.json"))        # entries the kernel holds
            emu.control("touch-all", {"suffix": f" (round {attempt})"})
            time.sleep(1.05 + 0.3 * attempt)          # the refresh is under way
            os.stat(m.path)
            problems, log = m.unmount()
            assert not problems, (problems, log[-3000:])
            assert "Bad file descriptor" not in log, log[-3000:]
    finally:
        emu.stop()
