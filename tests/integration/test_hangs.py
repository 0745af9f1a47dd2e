"""Never hang: every network wait is bounded by -o timeout, and a reader
that gives up (Ctrl-C) is let go at once."""
import errno
import os
import signal
import subprocess
import time

import pytest


def test_listing_from_a_hung_server_fails_within_the_timeout(emulator, make_mount):
    m = make_mount(emulator, "timeout=2")
    emulator.control("faults", {"mode": "hang", "seconds": 30})
    try:
        start = time.monotonic()
        with pytest.raises(OSError) as e:
            os.listdir(m.path)
        elapsed = time.monotonic() - start
    finally:
        emulator.control("faults", {"mode": "none"})
    assert e.value.errno == errno.EIO
    assert elapsed < 6, elapsed
    assert "in time" in m.log()
    # Right after the failure the mount answers at once with its reason
    # instead of asking again; a second later it asks again, and works.
    start = time.monotonic()
    with pytest.raises(OSError):
        os.listdir(m.path)
    assert time.monotonic() - start < 0.5
    time.sleep(1.1)
    assert "tf-2" in os.listdir(m.path)


def test_ctrl_c_lets_a_waiting_reader_go(emulator, make_mount):
    m = make_mount(emulator, "timeout=20")
    emulator.control("faults", {"mode": "hang", "seconds": 30})
    try:
        p = subprocess.Popen(["cat", m.p("tf-2", "spec.json")], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        assert p.poll() is None   # waiting on the (hung) server
        start = time.monotonic()
        p.send_signal(signal.SIGINT)
        p.wait(timeout=10)
        elapsed = time.monotonic() - start
    finally:
        emulator.control("faults", {"mode": "none"})
    assert elapsed < 2, elapsed   # not the 20 s timeout


def test_server_errors_on_listing_are_eio(emulator, make_mount):
    m = make_mount(emulator)
    emulator.control("faults", {"mode": "garbage"})
    try:
        with pytest.raises(OSError) as e:
            os.listdir(m.path)
    finally:
        emulator.control("faults", {"mode": "none"})
    assert e.value.errno == errno.EIO


def test_open_files_never_wait_on_a_hung_server(emulator, make_mount):
    """fstat and pread of files already open answer from what the handle
    holds, even after an idle spell while the server hangs."""
    m = make_mount(emulator, "timeout=5", ttl=1)
    fds = [os.open(m.p("tf-2", name), os.O_RDONLY) for name in ("spec.json", "status.json")]
    try:
        sizes = [os.fstat(fd).st_size for fd in fds]
        emulator.control("faults", {"mode": "hang", "seconds": 30})
        time.sleep(3.5)                       # idle spell: > 3 x ttl
        for fd, size in zip(fds, sizes):
            start = time.monotonic()
            assert os.fstat(fd).st_size == size
            data = os.pread(fd, 1 << 16, 0)
            assert time.monotonic() - start < 1.0
            assert len(data) == size and data.startswith(b"{")
    finally:
        emulator.control("faults", {"mode": "none"})
        for fd in fds:
            os.close(fd)


def test_a_failing_server_is_asked_at_a_falling_rate(emulator, make_mount):
    """While the server answers 500, a mount in use retries with backoff
    (not in a loop), keeps serving the last listing, and says so once."""
    m = make_mount(emulator, ttl=1)
    assert "tf-2" in os.listdir(m.path)
    emulator.control("stats/reset", {})
    emulator.control("faults", {"mode": "http500"})
    try:
        end = time.monotonic() + 8
        while time.monotonic() < end:
            assert "tf-2" in os.listdir(m.path)   # the last snapshot, at once
            time.sleep(0.05)
        tree_requests = emulator.stats()["operations"].get("images", 0)
    finally:
        emulator.control("faults", {"mode": "none"})
    # ttl 1 s, then refreshes backing off 1, 2, 4 s (+-20%), each asking
    # at most 4 times (3 quick retries): a dozen at most, never thousands.
    assert 2 <= tree_requests <= 12, tree_requests
    assert m.log().count("refreshing the image list failed") == 1
    # It recovers by itself, and says so once.
    emulator.control("faults", {"mode": "none"})
    deadline = time.monotonic() + 10
    while "answers again" not in m.log() and time.monotonic() < deadline:
        os.listdir(m.path)
        time.sleep(0.2)
    assert m.log().count("answers again") == 1
