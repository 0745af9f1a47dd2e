"""Load and concurrency, bounded (about a minute on the plain build).

Every test checks the emulator's state against what the successful
operations imply: nothing lost, nothing silently overwritten, nothing
resurrected.  The daemon's memory (VmRSS) must come back near its
baseline.  Sizes come from the environment so CI can choose:
PHFS_LOAD_SECONDS (default 15), PHFS_LOAD_SAVES (default 10000).
"""
import errno
import json
import multiprocessing
import os
import random
import threading
import time

import pytest

from phfs_harness import Emulator, primehubfs_binary, read, read_json
from util import lean_env, save, vm_rss_kib

LOAD_SECONDS = float(os.environ.get("PHFS_LOAD_SECONDS", "15"))
LOAD_SAVES = int(os.environ.get("PHFS_LOAD_SAVES", "10000"))
PROCS = 16
GROUPS = ["example-group-1", "example-group-2", "example-group-3"]
GROUP_IDS = {"example-group-1": "71ac1e32-65fa-4e8e-a735-ba282e3149b1",
             "example-group-2": "0fdaea59-705a-4546-8d13-2d52511342b0",
             "example-group-3": "dc6a0f50-2679-4d6b-b819-8da1b2e1b0f9"}


def edit(path, **changes):
    """Read, change and save through ONE descriptor (what the writer saw is
    what that descriptor read); returns 0 or the errno of the save."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as e:
        return e.errno
    try:
        text = os.pread(fd, 1 << 20, 0)
        try:
            spec = json.loads(text)
        except ValueError:
            os.close(fd)                  # nothing written: nothing is sent
            return "unreadable: %r" % text[:60]
        spec.update(changes)
        data = json.dumps(spec, indent=2).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError as e:
        os.close(fd)
        return e.errno
    try:
        os.close(fd)
    except OSError as e:
        return e.errno
    return 0


# ------------------------------------------------- two mounts, one image

ROUNDS = 6


def open_and_edit(path, changes):
    """Open spec.json, read it and write the change, without saving yet."""
    fd = os.open(path, os.O_RDWR)
    spec = dict(json.loads(os.pread(fd, 1 << 20, 0)), **changes)
    data = json.dumps(spec, indent=2).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    return fd


def close_errno(fd):
    try:
        os.close(fd)
        return 0
    except OSError as e:
        return e.errno


def save_both(fds, stagger=None):
    """Save both (close); with stagger=emu, the second close starts once
    the first save's updateImage has reached the server."""
    results = [None, None]
    barrier = threading.Barrier(2)

    def run(i):
        barrier.wait()
        if i == 1 and stagger is not None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                    "updateImage" in r["ops"] for r in stagger.requests()):
                time.sleep(0.01)
        results[i] = close_errno(fds[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def check_round(emulator, mounts, image, changes, res):
    now = emulator.image_state(image)["spec"]
    assert all(code in (0, errno.EBUSY) for code in res), res
    for i, code in enumerate(res):
        if code == 0:
            for k, v in changes[i].items():
                assert now[k] == v, ("a successful save was overwritten", res, changes, now)
        else:
            # The loser is told, and its text is kept where it was refused.
            kept = json.loads(read(mounts[i].p(image, "spec.json.rejected")))
            assert all(kept[k] == v for k, v in changes[i].items())
    return now


@pytest.mark.timeout(60)
def test_two_mounts_edit_different_fields_at_once(emulator, make_mount):
    """Both saves run at the same moment, each changing its own field: both
    land (neither conflicts with the other), nothing is reverted."""
    mounts = [make_mount(emulator, ttl=1), make_mount(emulator, ttl=1)]
    for r in range(ROUNDS):
        image = ["tf-1", "tf-2", "pytorch-1"][r % 3]
        changes = [{"description": f"A{r}"}, {"displayName": f"B{r}"}]
        fds = [open_and_edit(m.p(image, "spec.json"), c) for m, c in zip(mounts, changes)]
        res = save_both(fds)
        check_round(emulator, mounts, image, changes, res)
        assert res == [0, 0], res


@pytest.mark.timeout(60)
def test_two_mounts_edit_the_same_field(emulator, make_mount):
    """Both opened the same version; the second save runs while the first
    one's updateImage is being applied: it sees the conflict (EBUSY), the
    first one's value stays."""
    mounts = [make_mount(emulator, ttl=1), make_mount(emulator, ttl=1)]
    emulator.control("latency", {"ms": 300})
    try:
        for r in range(3):
            image = ["tf-1", "tf-2", "pytorch-1"][r % 3]
            changes = [{"description": f"A{r}"}, {"description": f"B{r}"}]
            fds = [open_and_edit(m.p(image, "spec.json"), c) for m, c in zip(mounts, changes)]
            emulator.reset_stats()
            res = save_both(fds, stagger=emulator)
            now = check_round(emulator, mounts, image, changes, res)
            assert res == [0, errno.EBUSY], (res, now)
            assert now["description"] == f"A{r}"
    finally:
        emulator.control("latency", {"ms": 0})


@pytest.mark.timeout(60)
def test_one_mount_two_processes_same_field_at_once(emulator, mnt):
    """Two writers on the same mount save the same field at the same
    moment: one wins, the other is told (EBUSY); a daemon can order its own
    saves, so neither is silently overwritten."""
    outcomes = []
    for r in range(ROUNDS):
        image = ["tf-1", "tf-2", "pytorch-1"][r % 3]
        changes = [{"description": f"A{r}"}, {"description": f"B{r}"}]
        fds = [open_and_edit(mnt.p(image, "spec.json"), c) for c in changes]
        res = save_both(fds)
        outcomes.append(res)
        check_round(emulator, [mnt, mnt], image, changes, res)
        assert sorted(res) == [0, errno.EBUSY], (r, res)


@pytest.mark.timeout(60)
def test_one_mount_second_editor_reads_its_own_file(emulator, mnt):
    """Two editors hold one spec.json open for writing: the second reads
    the version it opened, not the first one's unsaved bytes (which the
    kernel's single page cache per file would hand it), so its save
    carries only what it changed itself; both saves land."""
    path = mnt.p("tf-1", "spec.json")
    original = read(path)
    first = open_and_edit(path, {"description": "first, unsaved"})
    second = os.open(path, os.O_RDWR)
    try:
        # The first editor reads its text back: that fills the page cache.
        assert b"first, unsaved" in os.pread(first, 1 << 20, 0)
        seen = os.pread(second, 1 << 20, 0)
        assert seen == original, seen[:200]
        spec = dict(json.loads(seen), displayName="second")
        data = json.dumps(spec, indent=2).encode()
        os.ftruncate(second, 0)
        os.pwrite(second, data, 0)
    finally:
        closed = [close_errno(first), close_errno(second)]
    assert closed == [0, 0], closed
    now = emulator.image_state("tf-1")["spec"]
    assert now["description"] == "first, unsaved", now
    assert now["displayName"] == "second", now


# --------------------------------------------- 16 processes, 100 images

def worker(idx, root, images, seconds, queue):
    rng = random.Random(idx)
    own = [img for k, img in enumerate(images) if k % PROCS == idx]
    neighbours = [img for k, img in enumerate(images) if k % PROCS == (idx + 1) % PROCS]
    log = []          # (kind, image, key, value, errno) in this process's order
    reads = bad_reads = 0
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        r = rng.random()
        if r < 0.3:
            img, value = rng.choice(own), f"p{idx}-{n}"
            log.append(("field", img, "description", value,
                        edit(os.path.join(root, img, "spec.json"), description=value)))
            if isinstance(log[-1][4], str):
                log[-1] = ("read", img, None, log[-1][4], -1)
        elif r < 0.45:
            # displayName of a neighbour's image: two processes save the
            # same image at once, on different fields.
            img, value = rng.choice(neighbours), f"q{idx}-{n}"
            log.append(("field", img, "displayName", value,
                        edit(os.path.join(root, img, "spec.json"), displayName=value)))
            if isinstance(log[-1][4], str):
                log[-1] = ("read", img, None, log[-1][4], -1)
        elif r < 0.7:
            img, g = rng.choice(own), rng.choice(GROUPS)
            path = os.path.join(root, img, "groups", g)
            try:
                if os.path.exists(path):
                    os.unlink(path)
                    log.append(("group", img, g, False, 0))
                else:
                    open(path, "w").close()
                    log.append(("group", img, g, True, 0))
            except OSError as e:
                log.append(("group", img, g, None, e.errno))
        else:
            img = rng.choice(images)
            try:
                json.loads(read(os.path.join(root, img, "spec.json")))
                json.loads(read(os.path.join(root, img, "status.json")))
                reads += 1
            except (OSError, ValueError) as e:
                bad_reads += 1
                log.append(("read", img, None, repr(e), -1))
    queue.put((idx, log, reads, bad_reads))


@pytest.fixture
def emu100():
    """The emulator with 100 synthetic images (CLI --images 100)."""
    emu = Emulator("--images", "100")
    yield emu
    emu.stop()


@pytest.mark.timeout(120)
def test_sixteen_processes_on_a_hundred_images(emu100, make_mount):
    emu = emu100
    if True:
        m = make_mount(emu, ttl=2, env=lean_env())
        before = emu.state()["images"]
        images = sorted(n for n in before if n.startswith("synthetic-"))
        assert len(images) == 100
        for img in images:                          # warm up, then the baseline
            read(m.p(img, "spec.json"))
        time.sleep(1)
        base_rss = vm_rss_kib(m.proc.pid)

        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        procs = [ctx.Process(target=worker, args=(i, m.path, images, LOAD_SECONDS, queue))
                 for i in range(PROCS)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=LOAD_SECONDS + 60) for _ in procs]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0

        after = emu.state()["images"]
        expect_field, expect_group = {}, {}
        failures, reads, bad, torn_edits = [], 0, [], 0
        for idx, log, nreads, nbad in results:
            reads += nreads
            for kind, img, key, value, code in log:
                if kind == "read" and str(value).startswith("unreadable"):
                    # An editor that opened O_RDWR shares the kernel's page
                    # cache (and the file size) with the other writers of
                    # that file, as on a local disk: another writer's
                    # ftruncate can empty what it reads.  It then writes
                    # nothing, so nothing is sent and nothing is lost; the
                    # state check above and below counts it as not done.
                    torn_edits += 1
                elif kind == "read":
                    bad.append((img, value))
                elif code != 0:
                    failures.append((idx, kind, img, key, code))
                elif kind == "field":
                    expect_field[(img, key)] = value      # one writer per (image, field)
                else:
                    expect_group[(img, key)] = value      # one toggler per (image, group)
        for img in images:
            spec = after[img]["spec"]
            for key in ("description", "displayName"):
                want = expect_field.get((img, key), before[img]["spec"].get(key))
                assert spec.get(key) == want, (img, key, spec)
            for g in GROUPS:
                was = GROUP_IDS[g] in before[img]["groups"]
                want = expect_group.get((img, g), was)
                assert (GROUP_IDS[g] in after[img]["groups"]) == want, (img, g)
            assert after[img]["global"] == before[img]["global"], img
        assert reads > 0
        # What the mount shows agrees once its listing is renewed.
        time.sleep(2.5)
        os.listdir(m.path)
        time.sleep(1)
        for img in images[:20]:
            shown = read_json(m.p(img, "spec.json"))
            assert shown.get("description") == after[img]["spec"].get("description"), img
        time.sleep(1)
        rss = vm_rss_kib(m.proc.pid)
        print(f"load: {sum(len(r[1]) for r in results)} changes, {reads} reads, "
              f"{len(failures)} refused, {len(bad)} bad reads, {torn_edits} editors saw "
              f"another writer's truncate, RSS {base_rss} -> {rss} KiB")
        assert rss - base_rss < 24 * 1024, (base_rss, rss)
        # Every read-only read, while others edit the same files, is a whole
        # spec.json (a writer's truncated, unsaved buffer is not what readers
        # see: read-only opens bypass the page cache).
        assert not bad, (len(bad), bad[:5])
        # No fault was injected and no two processes change the same field:
        # every operation succeeds (a refusal means the mount showed a
        # writer something older than its own last save).
        assert not failures, (failures[:10],
                              [l for l in m.log().splitlines() if "refused" in l][:10])


# ---------------------------------------------------- saves racing rmdir

@pytest.mark.timeout(60)
def test_saves_racing_rmdir_never_resurrect(emulator, make_mount):
    m = make_mount(emulator, ttl=60)
    outcomes = []
    for r in range(8):
        name = f"race-{r}"
        os.mkdir(m.p(name))
        spec = read_json(m.p(name, "spec.json"))
        spec.update(url="infuseai/docker-stacks:base-notebook-63fdf50a", description="v0")
        assert save(m.p(name, "spec.json"), json.dumps(spec)) == 0
        assert name in emulator.state()["images"]
        spec = read_json(m.p(name, "spec.json"))       # as PrimeHub holds it now
        spec["description"] = "v1"
        text = json.dumps(spec).encode()
        res = {}
        barrier = threading.Barrier(2)

        def saver():
            fd = os.open(m.p(name, "spec.json"), os.O_RDWR)
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)
            barrier.wait()
            time.sleep(random.random() * 0.004)
            try:
                os.close(fd)
                res["save"] = 0
            except OSError as e:
                res["save"] = e.errno

        def remover():
            barrier.wait()
            time.sleep(random.random() * 0.004)
            try:
                os.rmdir(m.p(name))
                res["rmdir"] = 0
            except OSError as e:
                res["rmdir"] = e.errno

        threads = [threading.Thread(target=saver), threading.Thread(target=remover)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        outcomes.append((res["save"], res["rmdir"]))
        # saved-then-deleted, or deleted-then-ENOENT: never resurrected.
        assert res["rmdir"] == 0, res
        assert res["save"] in (0, errno.ENOENT), (res, m.log()[-400:])
        time.sleep(0.2)
        assert name not in emulator.state()["images"], (r, res)
        assert name not in os.listdir(m.path), (r, res)
    print("save/rmdir outcomes:", outcomes)


# ------------------------------------------------ readers during a save

@pytest.mark.timeout(60)
def test_readers_are_not_blocked_by_a_long_save(emulator, make_mount):
    m = make_mount(emulator, ttl=60)
    others = ["tf-1", "pytorch-1", "base-notebook"]
    for img in others:
        read(m.p(img, "spec.json"))
        os.stat(m.p(img, "status.json"))   # its groups known too
    emulator.control("latency", {"ms": 1000})
    try:
        result = {}

        def long_save():
            spec = read_json(m.p("tf-2", "spec.json"))
            spec["description"] = "saved slowly"
            t = time.monotonic()
            result["code"] = save(m.p("tf-2", "spec.json"), json.dumps(spec))
            result["took"] = time.monotonic() - t

        t = threading.Thread(target=long_save)
        t.start()
        time.sleep(0.2)
        slowest = 0.0
        while t.is_alive():
            for img in others:
                start = time.monotonic()
                json.loads(read(m.p(img, "spec.json")))
                os.stat(m.p(img, "status.json"))
                os.listdir(m.path)
                slowest = max(slowest, time.monotonic() - start)
            time.sleep(0.05)
        t.join()
    finally:
        emulator.control("latency", {"ms": 0})
    assert result["code"] == 0 and result["took"] >= 1.0, result
    assert slowest < 0.2, slowest
    assert emulator.image_state("tf-2")["spec"]["description"] == "saved slowly"


# --------------------------------------- cached readers and a truncating save

def _open_wait_read(path, opened, go, queue):
    """A reader that opens, says so, waits for the word, then reads."""
    with open(path, "rb") as f:
        opened.set()
        go.wait(5)
        time.sleep(0.3)
        queue.put(f.read())


@pytest.mark.timeout(60)
def test_cached_reader_open_across_a_truncating_save(emulator, make_mount):
    """A warm, unchanged spec.json is read through the kernel's page cache
    (keep_cache), and the kernel keeps one size and one page cache per
    file: a writer's ftruncate(0) empties both, and its writes land in
    them.  A reader that opened before the writer and reads while the
    writer saves must still get the whole spec.json it opened, never an
    empty file or the writer's unsaved text."""
    m = make_mount(emulator)
    path = m.p("tf-2", "spec.json")
    before = read(path)
    os.stat(path)
    assert read(path) == before             # now cached by the kernel
    ctx = multiprocessing.get_context("fork")
    opened, go, queue = ctx.Event(), ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_open_wait_read, args=(path, opened, go, queue))
    reader.start()
    try:
        assert opened.wait(10)
        go.set()
        fd = os.open(path, os.O_RDWR)
        try:
            spec = json.loads(os.pread(fd, 1 << 20, 0))
            spec["description"] = "saved while a reader had it open"
            os.ftruncate(fd, 0)
            time.sleep(0.5)                   # the reader reads in here
            os.pwrite(fd, json.dumps(spec, indent=2).encode(), 0)
            time.sleep(0.3)
        finally:
            os.close(fd)
        got = queue.get(timeout=10)
    finally:
        reader.join(10)
    assert got == before
    assert (emulator.image_state("tf-2")["spec"]["description"] ==
            "saved while a reader had it open")


# ------------------------------------------------------------ leak check

@pytest.mark.timeout(300)
def test_no_leak_after_many_saves(emulator, make_mount):
    # Each save costs the emulator two GraphQL requests (about 15 ms here):
    # 10,000 saves take two to three minutes.  Under ASan, whose allocator
    # keeps memory for itself so that RSS says little, LeakSanitizer checks
    # for real leaks at unmount, and 2,000 saves keep the run bounded.
    with open(primehubfs_binary(), "rb") as f:
        sanitized = b"__asan_init" in f.read()
    saves = min(LOAD_SAVES, 2000) if sanitized else LOAD_SAVES
    m = make_mount(emulator, ttl=60, env=lean_env())
    path = m.p("tf-2", "spec.json")
    spec = read_json(path)
    warmup = min(500, saves // 10)
    for i in range(warmup):
        spec["description"] = f"warm {i}"
        assert save(path, json.dumps(spec)) == 0
    base = vm_rss_kib(m.proc.pid)
    t = time.monotonic()
    for i in range(saves):
        spec["description"] = f"save {i} " + "x" * (i % 300)
        assert save(path, json.dumps(spec)) == 0
    took = time.monotonic() - t
    assert emulator.image_state("tf-2")["spec"]["description"] == spec["description"]
    rss = vm_rss_kib(m.proc.pid)
    print(f"{saves} saves in {took:.1f}s; RSS {base} -> {rss} KiB")
    # A leak of even 100 bytes a save would show as 1 MiB here (plain build).
    assert rss - base < (16 if sanitized else 4) * 1024, (base, rss)
