"""Saving spec.json: what is sent, what is refused and how the user is told.
Every refusal is checked against the emulator's state (unchanged), the errno,
the .error file and the kept draft."""
import errno
import json
import os

import pytest

from phfs_harness import read, read_json
from util import mutations, ops, save, server_image, server_update


def edited(mnt, image_id, **changes):
    spec = read_json(mnt.p(image_id, "spec.json"))
    spec.update(changes)
    return json.dumps(spec, indent=2) + "\n"


def test_change_one_field_sends_only_that_field(emulator, mnt):
    before = emulator.image_state("tf-2")
    text = edited(mnt, "tf-2", description="new text")
    emulator.reset_stats()
    assert save(mnt.p("tf-2", "spec.json"), text) == 0
    after = emulator.image_state("tf-2")
    assert after["spec"]["description"] == "new text"
    for key in ("displayName", "type", "url", "urlForGpu"):
        assert after["spec"].get(key) == before["spec"].get(key), key
    assert after["global"] is True
    assert mutations(emulator) == {"updateImage": 1}
    assert "images" not in ops(emulator)  # no listing after one's own save
    # A fresh cat shows what PrimeHub holds now, at once.
    assert read_json(mnt.p("tf-2", "spec.json"))["description"] == "new text"
    assert os.stat(mnt.p("tf-2", "spec.json")).st_size == len(read(mnt.p("tf-2", "spec.json")))


def test_unchanged_save_sends_nothing(emulator, mnt):
    text = read(mnt.p("base-notebook", "spec.json"))
    emulator.reset_stats()
    assert save(mnt.p("base-notebook", "spec.json"), text) == 0
    # Same content, other formatting: still nothing.
    compact = json.dumps(json.loads(text), separators=(",", ":"))
    assert save(mnt.p("base-notebook", "spec.json"), compact) == 0
    assert emulator.stats()["total"] == 0


def test_open_truncate_without_writing_sends_nothing(emulator, mnt):
    os.listdir(mnt.path)   # the mount has its snapshot; what follows must add nothing
    emulator.reset_stats()
    fd = os.open(mnt.p("tf-1", "spec.json"), os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert emulator.stats()["total"] == 0
    assert read_json(mnt.p("tf-1", "spec.json"))["name"] == "tf-1"


def test_pull_secret_survives_an_update(emulator, mnt):
    """PrimeHub clears useImagePullSecret from any update that leaves it out."""
    assert save(mnt.p("tf-1", "spec.json"),
                edited(mnt, "tf-1", useImagePullSecret="image-my-image-registry")) == 0
    assert save(mnt.p("tf-1", "spec.json"), edited(mnt, "tf-1", description="keeps it")) == 0
    # Set by someone else after the mount's snapshot was taken: still kept.
    server_update(emulator, "pytorch-1", {"useImagePullSecret": "image-my-image-registry"})
    assert save(mnt.p("pytorch-1", "spec.json"),
                edited(mnt, "pytorch-1", description="keeps theirs")) == 0
    assert emulator.image_state("pytorch-1")["spec"]["pullSecret"] == "image-my-image-registry"
    st = emulator.image_state("tf-1")
    assert st["spec"]["description"] == "keeps it"
    assert st["spec"]["pullSecret"] == "image-my-image-registry"


def test_url_change_keeps_url_for_gpu(emulator, mnt):
    """Changing url on a 'both' image would make PrimeHub overwrite urlForGpu."""
    gpu = read_json(mnt.p("tf-2", "spec.json"))["urlForGpu"]
    assert save(mnt.p("tf-2", "spec.json"),
                edited(mnt, "tf-2", url="infuseai/docker-stacks:tensorflow-notebook-v2-6")) == 0
    st = emulator.image_state("tf-2")["spec"]
    assert st["url"] == "infuseai/docker-stacks:tensorflow-notebook-v2-6"
    assert st["urlForGpu"] == gpu


def test_set_a_valid_pull_secret(emulator, mnt):
    assert save(mnt.p("tf-1", "spec.json"),
                edited(mnt, "tf-1", useImagePullSecret="image-my-image-registry")) == 0
    assert emulator.image_state("tf-1")["spec"]["pullSecret"] == "image-my-image-registry"


REFUSALS = [
    # (what the user saves, errno, words the reason must contain)
    ('{"name": "tf-1", ', errno.EINVAL, "line"),
    ('["tf-1"]', errno.EINVAL, "object"),
    (None, errno.EINVAL, "urll"),                     # a typo'd field
    (None, errno.EINVAL, "global"),                   # wrong type
    (None, errno.EINVAL, "type should be one of"),    # tpu
    (None, errno.EINVAL, "name"),                     # renamed inside the file
    (None, errno.EINVAL, "url"),                      # not an image reference
    (None, errno.EINVAL, "useImagePullSecret"),       # not a kubernetes secret
]


@pytest.mark.parametrize("case", range(len(REFUSALS)))
def test_bad_save_is_refused_and_explained(emulator, mnt, case):
    text, code, words = REFUSALS[case]
    spec = read_json(mnt.p("tf-1", "spec.json"))
    if text is None:
        bad = dict(spec)
        if words == "urll":
            bad["urll"] = bad.pop("url")
        elif words == "global":
            bad["global"] = "yes"
        elif words.startswith("type"):
            bad["type"] = "tpu"
        elif words == "name":
            bad["name"] = "tf-one"
        elif words == "url":
            bad["url"] = "Not A Valid Reference!"
        elif words == "useImagePullSecret":
            bad["useImagePullSecret"] = "gitsync-secret-dataset-secret"  # opaque, not a pull secret
        text = json.dumps(bad, indent=2)
    before = emulator.state()
    emulator.reset_stats()
    assert save(mnt.p("tf-1", "spec.json"), text) == code
    assert mutations(emulator) == {}
    assert emulator.state() == before
    reason = read(mnt.p("tf-1", ".error")).decode()
    assert words in reason and "tf-1/spec.json" in reason
    assert reason.count("\n") == 1  # one line
    # Nothing the user typed is lost.
    assert read(mnt.p("tf-1", "spec.json.rejected")).decode() == text
    # spec.json itself still shows the server's version.
    assert read_json(mnt.p("tf-1", "spec.json")) == spec
    # The next good save empties .error and drops the draft.
    assert save(mnt.p("tf-1", "spec.json"), edited(mnt, "tf-1", description="ok")) == 0
    assert not os.path.exists(mnt.p("tf-1", ".error"))
    assert not os.path.exists(mnt.p("tf-1", "spec.json.rejected"))


def test_too_large_is_efbig(emulator, mnt):
    before = emulator.state()
    big = '{"description": "' + "x" * (1024 * 1024 + 10) + '"}'
    assert save(mnt.p("tf-1", "spec.json"), big) == errno.EFBIG
    assert emulator.state() == before
    assert "bytes" in read(mnt.p("tf-1", ".error")).decode()


def test_saving_what_cat_showed_always_works(emulator, make_mount):
    """Odd values the server holds (PrimeHub stores any type string, any url)
    are not re-validated when the user leaves them alone."""
    server_update(emulator, "pytorch-1", {"type": "", "url": "Not A Valid Reference"})
    m = make_mount(emulator)
    spec = read_json(m.p("pytorch-1", "spec.json"))
    assert spec["type"] == "" and spec["url"] == "Not A Valid Reference"
    assert save(m.p("pytorch-1", "spec.json"), read(m.p("pytorch-1", "spec.json"))) == 0
    spec["description"] = "only this changed"
    assert save(m.p("pytorch-1", "spec.json"), json.dumps(spec)) == 0
    st = emulator.image_state("pytorch-1")["spec"]
    assert st["description"] == "only this changed"
    assert st["type"] == "" and st["url"] == "Not A Valid Reference"


def test_conflicting_change_is_refused(emulator, mnt):
    path = mnt.p("tf-2", "spec.json")
    fd = os.open(path, os.O_RDWR)
    base = json.loads(os.pread(fd, 1 << 20, 0))
    # Someone else changes the description meanwhile.
    server_update(emulator, "tf-2", {"description": "theirs",
                                     "useImagePullSecret": None})
    mine = dict(base, description="mine")
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(mine).encode(), 0)
    with pytest.raises(OSError) as e:
        os.close(fd)
    assert e.value.errno == errno.EBUSY
    assert emulator.image_state("tf-2")["spec"]["description"] == "theirs"
    assert "description" in read(mnt.p("tf-2", ".error")).decode()


def test_concurrent_change_to_another_field_is_kept(emulator, mnt):
    path = mnt.p("tf-2", "spec.json")
    fd = os.open(path, os.O_RDWR)
    base = json.loads(os.pread(fd, 1 << 20, 0))
    server_update(emulator, "tf-2", {"displayName": "Renamed by the web UI"})
    mine = dict(base, description="mine")
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(mine).encode(), 0)
    os.close(fd)
    st = emulator.image_state("tf-2")["spec"]
    assert st["description"] == "mine"
    assert st["displayName"] == "Renamed by the web UI"


def test_image_deleted_meanwhile_is_enoent(emulator, mnt):
    text = edited(mnt, "tf-1", description="too late")
    out = emulator.gql('mutation($w: ImageWhereUniqueInput!) { deleteImage(where: $w) { id } }',
                       {"w": {"id": "tf-1"}})
    assert not out.get("errors")
    assert save(mnt.p("tf-1", "spec.json"), text) == errno.ENOENT
    assert "tf-1" not in emulator.state()["images"]
    assert read(mnt.p("tf-1", "spec.json.rejected")).decode() == text


def test_server_failure_is_eio_and_keeps_the_draft(emulator, mnt):
    text = edited(mnt, "tf-1", description="while the server fails")
    before = emulator.state()
    emulator.control("faults", {"mode": "http500"})
    try:
        assert save(mnt.p("tf-1", "spec.json"), text) == errno.EIO
    finally:
        emulator.control("faults", {"mode": "none"})
    assert emulator.state() == before
    assert read(mnt.p("tf-1", "spec.json.rejected")).decode() == text
    assert "EIO" in read(mnt.p("tf-1", ".error")).decode()


def test_hanging_server_times_out(emulator, make_mount):
    import time
    m = make_mount(emulator, "timeout=2")
    text = edited(m, "tf-1", description="never arrives")
    emulator.control("faults", {"mode": "hang", "seconds": 30})
    try:
        start = time.monotonic()
        code = save(m.p("tf-1", "spec.json"), text)
        elapsed = time.monotonic() - start
    finally:
        emulator.control("faults", {"mode": "none"})
    assert code == errno.EIO
    assert elapsed < 10
    assert "time" in read(m.p("tf-1", ".error")).decode().lower()


def test_unreachable_server_is_eio(emulator, mnt):
    text = edited(mnt, "tf-1", description="nobody listens")
    emulator.stop()
    assert save(mnt.p("tf-1", "spec.json"), text) == errno.EIO
    reason = read(mnt.p("tf-1", ".error")).decode()
    assert "connect" in reason and "[EIO]" in reason
    assert read(mnt.p("tf-1", "spec.json.rejected")).decode() == text
    # Reading still works from the last snapshot.
    assert read_json(mnt.p("tf-1", "spec.json"))["name"] == "tf-1"
