"""Group membership fetched where it is shown, and the kernel's caches.

PrimeHub resolves Image.groups by reading every group's role mappings from
Keycloak and matching them per image, so the tree query leaves membership
out: `ls -l` of the root must not pay for it, one image's groups/ costs one
`image` read, and a walk costs that read plus one membership query for every
image.  The kernel keeps entries, attributes and unchanged pages for ttl;
every change made elsewhere must still show within the promised time, with
sizes always equal to what a read returns."""
import json
import os
import re
import subprocess
import time

from phfs_harness import Emulator, read, read_json
from util import ops, save, server_update, sized_read

GROUP_1_NAME = "example-group-1"


def requests_since(emu, before):
    return [r for r in emu.requests()[before:] if r["path"].startswith("/api")]


def group_id(emu, name):
    out = emu.gql("query { groups { id name } }")
    return next(g["id"] for g in out["data"]["groups"] if g["name"] == name)


def connect_elsewhere(emu, image, gid):
    server_update(emu, image, {"groups": {"connect": [{"id": gid}]}})


def fuse_ops(m, opcode):
    """How many FUSE requests of this opcode the daemon has logged (-o debug)."""
    return len(re.findall(rf"opcode: {opcode} ", m.log()))


def test_ls_l_of_root_asks_no_membership(emulator, make_mount):
    m = make_mount(emulator)
    emulator.reset_stats()
    before = len(emulator.requests())
    names = [n for n in os.listdir(m.path) if n != ".status"]
    for n in names:
        os.lstat(m.p(n))
    assert sorted(names) == ["base-notebook", "pytorch-1", "tf-1", "tf-2"]
    reqs = requests_since(emulator, before)
    # The tree only: the images alone in one request (no root `groups` or
    # `secrets`, which cost PrimeHub Keycloak and Kubernetes reads), and
    # no second `images` request (the membership query).
    assert [sorted(r["ops"]) for r in reqs] == [["images"]], reqs
    # Listing an image directory does not fetch its groups either.
    os.listdir(m.p("tf-1"))
    read(m.p("tf-1", "spec.json"))
    assert ops(emulator) == {"images": 1}


def test_one_images_groups_cost_one_image_read(emulator, make_mount):
    m = make_mount(emulator)
    # `ls -l`, then, from another process that has not listed the root,
    # one image's groups: not a walk.
    subprocess.run(["ls", "-l", m.path], check=True, capture_output=True, timeout=30)
    emulator.reset_stats()
    assert sorted(os.listdir(m.p("base-notebook", "groups"))) == [
        "example-group-1", "example-group-2"]
    assert ops(emulator) == {"image": 1}
    # Within ttl: known, nothing more.
    status = read_json(m.p("base-notebook", "status.json"))
    assert sorted(g["name"] for g in status["groups"]) == ["example-group-1", "example-group-2"]
    assert os.stat(m.p("base-notebook", "status.json")).st_size == len(
        read(m.p("base-notebook", "status.json")))
    assert ops(emulator) == {"image": 1}


def test_walk_costs_one_membership_query(make_mount):
    emu = Emulator("--images", "300")
    try:
        m = make_mount(emu)
        os.listdir(m.path)
        emu.reset_stats()
        before = len(emu.requests())
        out = subprocess.run(["ls", "-lR", m.path], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        statuses = subprocess.run(
            ["sh", "-c", f'cat "{m.path}"/*/status.json'], capture_output=True, timeout=120)
        assert statuses.returncode == 0
        reqs = requests_since(emu, before)
        # ls -lR listed the root and then wants an image's groups: a walk,
        # so one request brings every image's groups at once (`images`
        # alone), and no single-image read comes before it.
        assert [r["ops"] for r in reqs] == [["images"]], reqs
        # And the groups shown are the server's.
        state = emu.state()
        names = [n for n in state["images"] if n.startswith("synthetic-")][:20]
        names.append("base-notebook")
        for name in names:
            shown = read_json(m.p(name, "status.json"))
            listed = sorted(os.listdir(m.p(name, "groups")))
            assert sorted(g["name"] for g in shown["groups"]) == listed
            assert sorted(g["id"] for g in shown["groups"]) == \
                sorted(state["images"][name]["groups"])
        assert any(state["images"][n]["groups"] for n in names)
        # Still within ttl: that checking cost nothing more.
        assert len(requests_since(emu, before)) == 1
    finally:
        emu.stop()


def test_a_shell_glob_of_every_status_json_costs_one_membership_query(make_emulator,
                                                                     make_mount):
    emu = make_emulator("--images", "100")
    m = make_mount(emu)
    before = len(emu.requests())
    # The shell lists the root to expand the glob; cat, its child, reads
    # the files a moment later: a walk from the first file on.
    out = subprocess.run(["sh", "-c", f'cat "{m.path}"/*/status.json | wc -c'],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and int(out.stdout) > 0, out
    assert [r["ops"] for r in requests_since(emu, before)] == [["images"], ["images"]]


def test_interactive_ls_then_one_status_json_is_one_image_read(make_emulator, make_mount):
    emu = make_emulator("--images", "100")
    m = make_mount(emu)
    subprocess.run(["ls", "-l", m.path], check=True, capture_output=True, timeout=30)
    time.sleep(1.2)   # typing the next command
    before = len(emu.requests())
    subprocess.run(["cat", m.p("base-notebook", "status.json")], check=True,
                   capture_output=True, timeout=30)
    assert [r["ops"] for r in requests_since(emu, before)] == [["image"]]


def test_membership_change_elsewhere_shows_within_ttl(emulator, make_mount):
    m = make_mount(emulator, ttl=2)
    gid = group_id(emulator, GROUP_1_NAME)
    groups_dir = m.p("tf-2", "groups")
    status = m.p("tf-2", "status.json")
    assert os.listdir(groups_dir) == []
    assert read_json(status)["groups"] == []
    connect_elsewhere(emulator, "tf-2", gid)
    start = time.monotonic()
    seen = None
    while time.monotonic() - start < 6:
        listed = os.listdir(groups_dir)
        size, data = sized_read(status)
        assert size == len(data)
        shown = [g["name"] for g in json.loads(data)["groups"]]
        if listed == [GROUP_1_NAME] and shown == [GROUP_1_NAME]:
            seen = time.monotonic() - start
            break
        time.sleep(0.1)
    assert seen is not None and seen <= 2 + 1.5, seen
    # The kernel's cached entry for the group name agrees.
    assert os.path.exists(os.path.join(groups_dir, GROUP_1_NAME))


def test_touching_a_connected_group_sends_nothing_after_membership_is_known(emulator, mnt):
    os.listdir(mnt.p("base-notebook", "groups"))
    emulator.reset_stats()
    with open(mnt.p("base-notebook", "groups", GROUP_1_NAME), "a"):
        pass
    assert ops(emulator) == {}


def test_unchanged_file_is_read_from_the_page_cache(emulator, make_mount):
    m = make_mount(emulator, "debug")
    path = m.p("tf-1", "spec.json")
    first = read(path)                 # the kernel knew its size: this read fills the cache
    reads = fuse_ops(m, "READ")
    assert reads >= 1
    for _ in range(5):
        assert read(path) == first
    assert fuse_ops(m, "READ") == reads, "warm reads of an unchanged file reached the daemon"
    # Listings are kept by the kernel too: listed again, nothing reaches
    # the daemon, let alone the network.
    assert sorted(os.listdir(m.p("tf-1"))) == ["groups", "spec.json", "status.json"]
    before, listed = len(emulator.requests()), listing_ops(m)
    for _ in range(3):
        assert sorted(os.listdir(m.p("tf-1"))) == ["groups", "spec.json", "status.json"]
    assert len(emulator.requests()) == before
    after = listing_ops(m)
    for op in ("OPENDIR", "READDIR", "READDIRPLUS", "LOOKUP"):
        assert after[op] == listed[op], (op, listed, after)


def test_own_save_is_never_hidden_by_the_page_cache(emulator, make_mount):
    m = make_mount(emulator)
    path = m.p("tf-1", "spec.json")
    for _ in range(3):
        read(path)                     # cached now
    spec = json.loads(read(path))
    spec["description"] = "a longer description saved through the mount, then read back"
    with open(path, "w") as f:
        f.write(json.dumps(spec, indent=4))   # not the mount's own layout
    data = read(path)
    assert os.stat(path).st_size == len(data)
    assert json.loads(data)["description"] == spec["description"]
    # What is read back is the server's text in the mount's layout, not the
    # bytes the writer left in the page cache.
    assert data.decode() != json.dumps(spec, indent=4)
    # A refused save leaves the server's text, not the refused bytes.
    refused = save(path, '{"name": "tf-1", "type": "not-a-type"}')
    assert refused != 0
    again = read(path)
    assert json.loads(again)["description"] == spec["description"]
    assert os.stat(path).st_size == len(again)


def test_many_changes_elsewhere_all_show_within_ttl(make_mount):
    emu = Emulator("--images", "150")
    try:
        m = make_mount(emu, ttl=2)
        names = sorted(n for n in os.listdir(m.path) if n.startswith("synthetic-"))[:120]
        assert len(names) == 120
        for _ in range(2):                    # warm: entries, attributes and pages cached
            for n in names:
                read(m.p(n, "spec.json"))
                os.stat(m.p(n, "spec.json"))
        for n in names:                       # more than one invalidation batch
            server_update(emu, n, {"description": f"changed elsewhere: {n} " + "x" * 40})
        start = time.monotonic()
        pending = set(names)
        while pending and time.monotonic() - start < 8:
            for n in sorted(pending):
                p = m.p(n, "spec.json")
                size, data = sized_read(p)
                assert size == len(data), (n, size, len(data))
                if (json.loads(data)["description"] or "").startswith("changed elsewhere"):
                    pending.discard(n)
            time.sleep(0.1)
        assert not pending, f"{len(pending)} not shown after {time.monotonic() - start:.1f}s"
        assert time.monotonic() - start <= 2 + 2.5
    finally:
        emu.stop()


# ---- listings kept by the kernel (no directory handles: fs_ll.c) ----

LISTING_OPS = ("OPENDIR", "READDIR", "READDIRPLUS", "RELEASEDIR", "LOOKUP", "GETATTR")


def listing_ops(m):
    return {op: fuse_ops(m, op) for op in LISTING_OPS}


def walk(path):
    subprocess.run(["find", path, "-name", "spec.json"], check=True, capture_output=True,
                   timeout=60)
    subprocess.run(["du", "-s", path], check=True, capture_output=True, timeout=60)


def test_warm_walk_is_served_by_the_kernel(make_emulator, make_mount):
    emu = make_emulator("--images", "50")
    m = make_mount(emu, "debug")
    walk(m.path)
    walk(m.path)                        # listings and attributes cached by now
    before, requests = listing_ops(m), len(emu.requests())
    walk(m.path)
    after = listing_ops(m)
    more = {k: after[k] - before[k] for k in after}
    # Nothing asked, no directory opened.  The kernel lists from its cache:
    # of the 101 directories (cold: two listing requests each, per walker)
    # it may drop a cached page now and then (the root was seen re-read in
    # about one walk in twenty), never the lot.
    assert len(emu.requests()) == requests
    assert more["OPENDIR"] == 0 and fuse_ops(m, "OPENDIR") <= 1, more  # the first: ENOSYS
    assert more["READDIR"] + more["READDIRPLUS"] <= 4, more
    assert more["LOOKUP"] <= 2, more


def test_refused_save_shows_its_error_in_a_cached_listing_at_once(emulator, make_mount):
    m = make_mount(emulator)
    d = m.p("tf-1")
    for _ in range(2):
        assert sorted(os.listdir(d)) == ["groups", "spec.json", "status.json"]
    assert save(m.p("tf-1", "spec.json"), '{"name": "tf-1", "type": "not-a-type"}') != 0
    listed = sorted(os.listdir(d))
    assert listed == [".error", "groups", "spec.json", "spec.json.rejected", "status.json"]
    # A good save takes them away again, at once too.
    spec = read_json(m.p("tf-1", "spec.json"))
    spec["description"] = "fixed"
    assert save(m.p("tf-1", "spec.json"), json.dumps(spec)) == 0
    assert sorted(os.listdir(d)) == ["groups", "spec.json", "status.json"]
    # The top: a refused mkdir's reason shows in a cached listing of it.
    top = sorted(os.listdir(m.path))
    assert ".error" not in top
    try:
        os.mkdir(m.p("Not_A_Valid_Name!"))
    except OSError:
        pass
    else:
        raise AssertionError("mkdir of an invalid image name succeeded")
    assert ".error" in os.listdir(m.path)


def test_images_made_and_deleted_elsewhere_show_in_a_cached_listing(emulator, make_mount):
    m = make_mount(emulator, ttl=2)
    for _ in range(2):
        assert "pytorch-1" in os.listdir(m.path)
    emulator.gql('mutation($data: ImageCreateInput!) { createImage(data: $data) { id } }',
                 {"data": {"name": "made-elsewhere", "type": "cpu", "url": "made/elsewhere:1"}})
    emulator.gql('mutation($w: ImageWhereUniqueInput!) { deleteImage(where: $w) { id } }',
                 {"w": {"id": "pytorch-1"}})
    start = time.monotonic()
    while time.monotonic() - start < 8:
        listed = os.listdir(m.path)
        if "made-elsewhere" in listed and "pytorch-1" not in listed:
            break
        time.sleep(0.1)
    assert "made-elsewhere" in listed and "pytorch-1" not in listed, listed
    assert time.monotonic() - start <= 2 + 1.5


def test_a_mount_used_only_through_cached_listings_is_still_renewed(make_emulator,
                                                                    make_mount):
    emu = make_emulator("--images", "20")
    m = make_mount(emu, ttl=2)
    walk(m.path)
    emu.reset_stats()
    # Eight seconds of `ls -l` (the kernel answers from its caches between
    # expiries): the snapshot is renewed about every ttl all along.
    start = time.monotonic()
    while time.monotonic() - start < 8:
        subprocess.run(["ls", "-l", m.path], check=True, capture_output=True, timeout=30)
        time.sleep(0.2)
    renewals = ops(emu).get("images", 0)
    assert 2 <= renewals <= 5, ops(emu)
