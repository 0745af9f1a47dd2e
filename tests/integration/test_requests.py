"""Round trips, counted by the emulator (exact, so asserted): two requests
for a whole cold walk (the tree, and every image's groups for status.json
and groups/), none for a warm one, one mutation per save, connections
reused, one refresh at a time, and freshness within the ttl."""
import json
import os
import threading
import time

from phfs_harness import Emulator, read, read_json
from util import mutations, ops, save, server_update, sized_read


def walk(root):
    """ls -lR plus cat of every file: what grep -r or tar would do."""
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lstat(os.path.join(dirpath, name))
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                f.read()
            n += 1
    return n


def test_cold_walk_is_two_requests_and_warm_walk_none(make_mount):
    emu = Emulator("--images", "1000")
    try:
        m = make_mount(emu)
        emu.reset_stats()
        before = len(emu.requests())
        files = walk(m.path)
        assert files >= 2 * 1004   # every spec.json and status.json at least
        stats = emu.stats()
        assert stats["total"] == 2, stats
        assert stats["operations"] == {"images": 2}
        # The tree, then, as the process that listed the root wants an
        # image's groups (a walk), one membership query (images alone) for
        # all: never one `image` read per image.
        assert [sorted(r["ops"]) for r in emu.requests()[before:]] == [["images"], ["images"]]
        emu.reset_stats()
        walk(m.path)
        assert emu.stats()["total"] == 0
    finally:
        emu.stop()


def test_own_save_is_one_mutation_and_no_listing(emulator, mnt):
    walk(mnt.path)             # everything known, membership included
    spec = read_json(mnt.p("tf-1", "spec.json"))
    spec["description"] = "counted"
    emulator.reset_stats()
    assert save(mnt.p("tf-1", "spec.json"), json.dumps(spec)) == 0
    # One fresh read of that image (the conflict check), one mutation.
    assert ops(emulator) == {"image": 1, "updateImage": 1}
    emulator.reset_stats()
    assert read_json(mnt.p("tf-1", "spec.json"))["description"] == "counted"
    walk(mnt.path)
    assert emulator.stats()["total"] == 0


def test_connections_are_reused(emulator, mnt):
    spec = read_json(mnt.p("tf-1", "spec.json"))
    emulator.reset_stats()
    for i in range(50):
        spec["description"] = f"save {i}"
        assert save(mnt.p("tf-1", "spec.json"), json.dumps(spec)) == 0
    stats = emulator.stats()
    assert stats["operations"]["updateImage"] == 50
    # The 50 reads before the saves share one kept-alive connection; each
    # change goes out on a connection of its own, because libcurl resends a
    # request whose reused connection dies unanswered, and a change must
    # never reach PrimeHub twice.  So 50 + 1, not 100.
    assert stats["operations"]["image"] == 50
    assert stats["connections"] <= 50 + 2, stats


def test_change_by_someone_else_shows_within_ttl(emulator, make_mount):
    m = make_mount(emulator, ttl=2)
    path = m.p("tf-2", "spec.json")
    assert read_json(path)["description"] == "TensorFlow 2.5.0 (Python 3.7)"
    server_update(emulator, "tf-2", {"description": "changed elsewhere, and longer than before"})
    start = time.monotonic()
    seen = None
    while time.monotonic() - start < 6:
        size, data = sized_read(path)
        assert size == len(data)                     # never a size/content mismatch
        spec = json.loads(data)                      # never torn or padded
        if spec["description"].startswith("changed elsewhere"):
            seen = time.monotonic() - start
            break
        time.sleep(0.1)
    assert seen is not None and seen <= 2 + 1.5, seen


def test_stale_readers_share_one_refresh(make_mount):
    emu = Emulator("--images", "40")
    try:
        m = make_mount(emu, ttl=1)
        names = sorted(n for n in os.listdir(m.path) if n != ".status")[:32]
        for n in names:
            read(m.p(n, "spec.json"))
        emu.control("latency", {"ms": 300})
        time.sleep(1.3)          # stale now
        emu.reset_stats()
        errors = []

        def reader(name):
            try:
                read(m.p(name, "spec.json"))
            except OSError as e:
                errors.append(e)

        threads = [threading.Thread(target=reader, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        time.sleep(0.8)          # let the one refresh finish
        assert not errors
        assert ops(emu).get("images", 0) <= 1, ops(emu)
    finally:
        emu.stop()
