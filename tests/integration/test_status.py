"""/.status: the mount's health at its top, for scripts and humans, without
the log and without asking the server."""
import errno
import os
import subprocess
import time

import pytest

from phfs_harness import primehubfs_binary


def status(m):
    with open(m.p(".status")) as f:
        text = f.read()
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        assert sep or line.endswith(":"), line
        fields[key.rstrip(":")] = value
    return text, fields


def test_status_fields(emulator, make_mount):
    m = make_mount(emulator)
    names = os.listdir(m.path)
    assert ".status" in names and "tf-2" in names
    text, f = status(m)
    version = subprocess.run([primehubfs_binary(), "--version"], capture_output=True,
                             text=True, timeout=10).stdout.split()[2]
    assert f["endpoint"] == emulator.endpoint
    assert f["user"] == "phadmin"
    assert f["version"] == version
    assert f["state"] == "ok" and f["last_error"] == ""
    assert f["failures_in_a_row"] == "0" and int(f["fetches"]) >= 1
    assert f["last_fetch"].endswith("Z") and 0 <= int(f["last_fetch_age_seconds"]) < 30
    assert int(f["images"]) == len(emulator.state()["images"])
    # Every request the mount sent is counted (the emulator saw only this
    # mount), and the bytes moved.
    assert int(f["requests"]) == emulator.stats()["total"] >= 2
    assert f["request_failures"] == "0"
    assert int(f["bytes_sent"]) > 0 and int(f["bytes_received"]) > 0
    # Reading it asks the server nothing.
    before = emulator.stats()["total"]
    for _ in range(5):
        status(m)
    assert emulator.stats()["total"] == before
    # Read-only, 0444, not removable, not a name for a new image.
    st = os.stat(m.p(".status"))
    assert oct(st.st_mode & 0o777) == "0o444"
    with pytest.raises(PermissionError):
        open(m.p(".status"), "w")
    with pytest.raises(PermissionError):
        os.unlink(m.p(".status"))
    with pytest.raises(OSError) as e:
        os.mkdir(m.p(".status"))
    assert e.value.errno in (errno.EEXIST, errno.EINVAL)
    assert ".status" not in emulator.state()["images"]
    # fstat of the open file is the size of what it reads (also after the
    # kernel's attribute cache expired and it asks again).
    fd = os.open(m.p(".status"), os.O_RDONLY)
    try:
        time.sleep(1.2)
        size = os.fstat(fd).st_size
        data = b""
        while chunk := os.read(fd, 7):
            data += chunk
        assert size == len(data) and data.startswith(b"endpoint: ")
    finally:
        os.close(fd)


def wait_state(m, want, seconds=20):
    deadline = time.monotonic() + seconds
    while True:
        os.listdir(m.path)  # a look at the tree starts a refresh when stale
        text, f = status(m)
        if f["state"] == want or time.monotonic() > deadline:
            return text, f
        time.sleep(0.3)


def test_status_shows_a_failing_refresh_and_the_recovery(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    # Nothing fetched yet: reading .status does not fetch either.
    text, f = status(m)
    assert f["state"] == "starting" and f["last_fetch"] == "never", text
    assert f["last_fetch_age_seconds"] == "-1"
    assert "tf-2" in os.listdir(m.path)
    text, f = status(m)
    assert f["state"] == "ok", text
    emulator.fault("http500", only=["images"])
    time.sleep(1.2)
    text, f = wait_state(m, "failing")
    assert f["state"] == "failing", text
    assert int(f["failures_in_a_row"]) >= 1
    assert "500" in f["last_error"], text
    assert int(f["images"]) == 4  # still served from the last good fetch
    last_ok = f["last_fetch"]
    emulator.fault("none")
    text, f = wait_state(m, "ok", seconds=40)
    assert f["state"] == "ok" and f["last_error"] == "", text
    assert f["last_fetch"] >= last_ok and f["failures_in_a_row"] == "0"


def test_the_token_is_nowhere_in_the_mount(emulator, make_mount):
    m = make_mount(emulator)
    assert "tf-2" in os.listdir(m.path)
    r = subprocess.run(["grep", "-r", "-F", "-l", emulator.token, m.path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == "", r.stdout + r.stderr
    # grep did read .status (and the rest): the same walk finds the user.
    r = subprocess.run(["grep", "-r", "-F", "-l", "phadmin", m.path],
                       capture_output=True, text=True, timeout=60)
    assert os.path.join(m.path, ".status") in r.stdout.splitlines(), r.stdout


def test_status_answers_at_once_while_the_server_hangs(emulator, make_mount):
    import threading
    m = make_mount(emulator, ttl=1)
    assert "tf-2" in os.listdir(m.path)
    emulator.fault("hang", seconds=8, only=["images"])
    try:
        time.sleep(1.2)
        looker = threading.Thread(target=lambda: os.listdir(m.path), daemon=True)
        looker.start()      # a refresh now waits on the hung server
        time.sleep(0.5)
        start = time.monotonic()
        text, f = status(m)
        assert time.monotonic() - start < 1.0
        assert f["images"] == "4" and f["endpoint"] == emulator.endpoint
        looker.join(timeout=20)
    finally:
        emulator.fault("none")
