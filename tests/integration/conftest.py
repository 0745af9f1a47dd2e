"""Fixtures for the integration suite (see phfs_harness.py).  Every test has
a timeout (pytest-timeout, tests/pytest.ini), so a hang fails instead of
stalling CI, and every mount is unmounted at teardown, also on failure.
"""
import subprocess

import pytest

import phfs_harness
from phfs_harness import Emulator, Mount


@pytest.fixture
def emulator():
    emu = Emulator()
    yield emu
    emu.stop()


@pytest.fixture
def make_emulator():
    """Factory: make_emulator(*args) -> Emulator (e.g. "--images", "300");
    all stopped at teardown.  Ask for it before make_mount, so that mounts
    are unmounted before their server stops."""
    emus = []

    def factory(*args):
        emu = Emulator(*args)
        emus.append(emu)
        return emu

    yield factory
    for emu in emus:
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


def pytest_sessionfinish(session, exitstatus):
    """Last line of defence: this test run leaves no primehubfs mount of its
    own behind (and touches nobody else's: other runs may share the machine)."""
    try:
        with open("/proc/mounts") as f:
            leftovers = [line.split()[1] for line in f
                         if line.split()[2].startswith("fuse")
                         and line.split()[1] in phfs_harness.MOUNT_DIRS]
    except OSError:
        return
    for path in leftovers:
        subprocess.run(["fusermount3", "-uz", path], capture_output=True)
