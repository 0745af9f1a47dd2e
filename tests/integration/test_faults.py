"""A failing, dead or hanging server: the mount asks it at a falling rate,
keeps serving the last snapshot, says so once (and once when it is back),
and no operation waits longer than one request timeout.

The harness mounts with -o timeout=5 -o connect_timeout=2, so every
operation must return within BUDGET = timeout + 2 s whatever the server
does.  Faults come from the emulator (POST /-/faults); the emulator counts
every request it receives, faulted ones included, and every connection.
"""
import errno
import json
import os
import subprocess
import time

import pytest

from phfs_harness import read, read_json
from util import save, server_update

TIMEOUT = 5            # -o timeout= of every harness mount
BUDGET = TIMEOUT + 2   # what any one operation may take, whatever the server does
FAILED = "refreshing the image list failed"
RECOVERED = "answers again"

# How often a mount with ttl=1 may ask a failing server for the image list
# during WINDOW seconds.  The store refreshes when the snapshot expires
# (about 1 s), then backs off 1, 2, 4 ... s (+-20%): at most 4 refreshes
# start in 8 s.  Each refresh is one GraphQL query, which the client may
# retry on a transient failure (connection reset, 5xx, a proxy's page)
# inside the same 5 s budget with pauses doubling from 100 ms (+-20%):
# at most 7 attempts.  Without backoff it was thousands a second.
WINDOW = 8
MAX_REFRESHES = 4
MAX_ATTEMPTS = 7
MAX_TREE_REQUESTS = MAX_REFRESHES * MAX_ATTEMPTS


def timed(fn, *args):
    """(result, OSError or None, seconds) of one call."""
    start = time.monotonic()
    try:
        return fn(*args), None, time.monotonic() - start
    except OSError as e:
        return None, e, time.monotonic() - start


def assert_open_files_answer(fds, contents):
    """Each open file's fstat and pread answer at once, with what it held.
    fstat reaches the filesystem as a getattr of the path, without the
    handle (Linux passes none for fstat)."""
    for fd, data in zip(fds, contents):
        st, exc, t = timed(os.fstat, fd)
        assert exc is None and t < 1.0, ("fstat", exc, t)
        assert st.st_size == len(data)
        got, exc, t = timed(os.pread, fd, 1 << 20, 0)
        assert exc is None and t < 1.0, ("pread", exc, t)
        assert got == data


def tree_requests(emu):
    return emu.stats()["operations"].get("images", 0)


def wait_for(predicate, seconds, step=0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def new_log(m, since):
    """The daemon's log lines after the first `since` ones."""
    return m.log().splitlines()[since:]


def idle_spell(emu, mode, **fault):
    """Let the mount's background renewal (due ttl after the last use)
    finish against the healthy server, then turn the fault on and leave the
    mount alone past 3 x ttl: the next call finds an old snapshot, no fetch
    under way and no failure yet, so it waits for ONE fresh fetch, which
    meets the fault."""
    time.sleep(1.5)
    emu.fault(mode, **fault)
    time.sleep(2.5)


def serve_while_failing(m, spec):
    """Loop `ls` and `cat spec.json` every 50 ms for WINDOW seconds: each
    answers the last snapshot at once.  Returns the slowest call."""
    slowest = 0.0
    end = time.monotonic() + WINDOW
    while time.monotonic() < end:
        names, exc, t1 = timed(os.listdir, m.path)
        assert exc is None, exc
        assert "tf-2" in names
        text, exc, t2 = timed(read, m.p("tf-2", "spec.json"))
        assert exc is None, exc
        assert text == spec
        slowest = max(slowest, t1, t2)
        time.sleep(0.05)
    return slowest


# (a) and (b): a server answering errors, or resetting every connection.
@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode,reason", [("http500", "HTTP 500"), ("http502", "502 Bad Gateway"),
                                         ("garbage", "HTTP 200"), ("reset", "reset")])
def test_failing_server_is_asked_rarely_and_reads_go_on(emulator, make_mount, mode, reason):
    m = make_mount(emulator, ttl=1)
    spec = read(m.p("tf-2", "spec.json"))
    assert "tf-2" in os.listdir(m.path)
    lines = len(m.log().splitlines())
    emulator.reset_stats()
    # Only the listing fails: it is all the readers below need.
    emulator.fault(mode, only=["images"])
    try:
        slowest = serve_while_failing(m, spec)
        stats = emulator.stats()
    finally:
        emulator.fault("none")
    tree = stats["operations"].get("images", 0)
    assert 1 <= tree <= MAX_TREE_REQUESTS, stats
    if mode == "reset":
        # Each reset ends its connection: every attempt is a new connect.
        assert stats["connections"] <= MAX_TREE_REQUESTS, stats
    assert slowest < 2.0, slowest  # at once: never a timeout of its own
    log = new_log(m, lines)
    failed = [line for line in log if FAILED in line]
    assert len(failed) == 1, log
    assert reason in failed[0], failed  # the first failure says why
    assert not any(RECOVERED in line for line in log), log
    # The log is not flooded by any other layer either.
    assert len(log) <= 5, log

    # The server is back and another admin changes the image: the mount
    # notices by itself (the next retry is at most ~5 s away), says once
    # that PrimeHub answers again, and shows the change.
    server_update(emulator, "tf-2", {"description": "changed after the outage"})
    assert wait_for(lambda: read_json(m.p("tf-2", "spec.json"))["description"] ==
                    "changed after the outage", 15)
    log = new_log(m, lines)
    assert sum(RECOVERED in line for line in log) == 1, log
    assert sum(FAILED in line for line in log) == 1, log


# (b) a dead server: nothing listens any more.
def test_dead_server_reads_go_on_and_the_log_says_so_once(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    spec = read(m.p("tf-2", "spec.json"))
    assert "tf-2" in os.listdir(m.path)
    lines = len(m.log().splitlines())
    emulator.stop()
    slowest = serve_while_failing(m, spec)
    assert slowest < 2.0, slowest  # at once: never a timeout of its own
    log = new_log(m, lines)
    failed = [line for line in log if FAILED in line]
    assert len(failed) == 1, log
    assert "connect" in failed[0].lower(), failed
    assert len(log) <= 5, log


# (c) a server that hangs, met after an idle spell.
def test_hanging_server_after_idle_spell_costs_one_timeout(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    spec_path = m.p("tf-1", "spec.json")
    spec = read(spec_path)
    names = sorted(os.listdir(m.path))
    before = emulator.image_state("tf-1")
    try:
        idle_spell(emulator, "hang", seconds=30)
        st, exc, t = timed(os.stat, spec_path)
        assert exc is None and t < BUDGET, (exc, t)
        assert st.st_size == len(spec)
        text, exc, t = timed(read, spec_path)
        assert exc is None and t < BUDGET, (exc, t)
        assert text == spec
        listing, exc, t = timed(os.listdir, m.path)
        assert exc is None and t < BUDGET, (exc, t)
        assert sorted(listing) == names
        # Only the save needs the network: it fails within one timeout,
        # and the text is kept.
        start = time.monotonic()
        r = subprocess.run(["sed", "-i", "-E",
                            's/"description": "[^"]*"/"description": "sed while hung"/',
                            spec_path], capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - start
        assert r.returncode != 0, r
        assert elapsed < BUDGET, elapsed
        assert "Input/output error" in r.stderr, r.stderr
        assert b'"description": "sed while hung"' in read(m.p("tf-1", "spec.json.rejected"))
        assert read(spec_path) == spec
    finally:
        emulator.fault("none")
    assert emulator.image_state("tf-1") == before


# (d) files already open never wait on the network.
def test_open_files_answer_while_another_call_waits_on_a_hung_fetch(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    fds = [os.open(m.p("tf-2", name), os.O_RDONLY) for name in ("spec.json", "status.json")]
    waiter = None
    try:
        contents = [os.pread(fd, 1 << 20, 0) for fd in fds]
        idle_spell(emulator, "hang", seconds=30)
        start = time.monotonic()
        waiter = subprocess.Popen(["stat", m.p("tf-1", "spec.json")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        assert waiter.poll() is None  # it is waiting on the hung server
        assert_open_files_answer(fds, contents)
        assert waiter.wait(timeout=BUDGET + 5) == 0  # the old snapshot, in the end
        assert time.monotonic() - start < BUDGET
    finally:
        emulator.fault("none")
        if waiter is not None and waiter.poll() is None:
            waiter.kill()
            waiter.wait()
        for fd in fds:
            os.close(fd)


def test_reads_go_on_while_several_calls_wait_on_a_hung_server(emulator, make_mount):
    """One thread reads requests and answers them itself; another takes over
    when a request has taken 1 ms.  Three calls stuck at once on the hung
    server hold three threads, and open files are still answered."""
    m = make_mount(emulator, ttl=1)
    others = sorted(n for n in os.listdir(m.path) if n != "tf-2" and not n.startswith("."))[:3]
    assert len(others) == 3, others
    fds = [os.open(m.p("tf-2", name), os.O_RDONLY) for name in ("spec.json", "status.json")]
    waiters = []
    try:
        contents = [os.pread(fd, 1 << 20, 0) for fd in fds]
        idle_spell(emulator, "hang", seconds=30)
        start = time.monotonic()
        for name in others:
            waiters.append(subprocess.Popen(["stat", m.p(name, "spec.json")],
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        assert [w.poll() for w in waiters] == [None] * 3  # all wait on the hung server
        for _ in range(20):
            assert_open_files_answer(fds, contents)
        for w in waiters:
            assert w.wait(timeout=BUDGET + 5) == 0  # the old snapshot, in the end
        assert time.monotonic() - start < BUDGET + 1
    finally:
        emulator.fault("none")
        for w in waiters:
            if w.poll() is None:
                w.kill()
                w.wait()
        for fd in fds:
            os.close(fd)


# (e) every operation is bounded under every kind of broken answer.
@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["reset_mid_body", "truncated", "drip", "http503",
                                  "close_keepalive"])
def test_every_operation_returns_within_the_timeout(emulator, make_mount, mode):
    m = make_mount(emulator, ttl=1)
    spec_path = m.p("tf-1", "spec.json")
    shown = read_json(spec_path)
    # What has been shown stays readable: the groups too (they are
    # fetched where they are shown, not with the list).
    os.listdir(m.p("tf-1", "groups"))
    draft = json.dumps(dict(shown, description="saved under " + mode), indent=2) + "\n"
    before = emulator.image_state("tf-1")
    results = {}
    try:
        idle_spell(emulator, mode, seconds=2 if mode == "drip" else 0)
        calls = [
            ("stat /", os.stat, m.path),
            ("ls /", os.listdir, m.path),
            ("stat spec.json", os.stat, spec_path),
            ("cat spec.json", read, spec_path),
            ("cat status.json", read, m.p("tf-1", "status.json")),
            ("ls groups", os.listdir, m.p("tf-1", "groups")),
            ("save spec.json", save, spec_path, draft),
            ("cat spec.json again", read, spec_path),
        ]
        for name, fn, *args in calls:
            value, exc, t = timed(fn, *args)
            results[name] = (value if name == "save spec.json" else None, exc, round(t, 2))
            assert t < BUDGET, (name, t, results)
    finally:
        emulator.fault("none")
    # Reads never fail while a snapshot exists.
    for name, (value, exc, _) in results.items():
        if name != "save spec.json":
            assert exc is None, (name, exc)
    code = results["save spec.json"][0]
    after = emulator.image_state("tf-1")
    want = dict(before["spec"], description="saved under " + mode)
    if mode == "close_keepalive":
        # Answers arrive whole: everything works, one connection a request.
        assert code == 0, results
        assert after["spec"] == want
    else:
        assert code in (0, errno.EIO), results
        # Whatever the answer's fate, the server holds the old image or
        # the new one, never a mix.
        assert after["spec"] in (before["spec"], want), after
        if code == errno.EIO and after["spec"] == before["spec"]:
            assert read(m.p("tf-1", "spec.json.rejected")).decode() == draft
