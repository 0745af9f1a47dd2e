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
    # Once the server answers again, so does the mount.
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
