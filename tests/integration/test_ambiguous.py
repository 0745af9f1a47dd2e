"""Answers lost after the request went out: the server may have applied the
mutation.  primehubfs never sends it again; it re-reads the image and tells
the user what PrimeHub now holds (the emulator applies the request, then
withholds the answer: apply_then_hang / apply_then_reset; or does not run it
at all: reset / http503)."""
import errno
import json
import os
import threading
import time

import pytest

from phfs_harness import read, read_json
from util import save

APPLIED = ["apply_then_hang", "apply_then_reset"]
NOT_APPLIED = ["reset", "http503"]


def fault(emulator, mode, op):
    # apply_then_hang holds longer than the mount's timeout=2.
    emulator.fault(mode, count=1, seconds=6, only=[op])


def sent(emulator, op):
    """How many requests carrying mutation `op` reached the emulator."""
    return sum(1 for r in emulator.requests() if op in r["ops"])


def edited(m, image_id, **changes):
    spec = read_json(m.p(image_id, "spec.json"))
    spec.update(changes)
    return json.dumps(spec, indent=2) + "\n"


@pytest.mark.parametrize("mode", APPLIED)
def test_save_applied_but_answer_lost_is_success(emulator, make_mount, mode):
    m = make_mount(emulator, "timeout=2")
    text = edited(m, "tf-1", displayName="landed anyway")
    fault(emulator, mode, "updateImage")
    start = time.monotonic()
    assert save(m.p("tf-1", "spec.json"), text) == 0
    assert time.monotonic() - start < 2 * 2 + 4
    assert sent(emulator, "updateImage") == 1
    assert emulator.image_state("tf-1")["spec"]["displayName"] == "landed anyway"
    assert read_json(m.p("tf-1", "spec.json"))["displayName"] == "landed anyway"
    assert not os.path.exists(m.p("tf-1", ".error"))
    assert not os.path.exists(m.p("tf-1", "spec.json.rejected"))
    assert "the answer was lost but PrimeHub applied the save" in m.log()


@pytest.mark.parametrize("mode", NOT_APPLIED)
def test_save_not_applied_is_eio_and_says_nothing_changed(emulator, make_mount, mode):
    m = make_mount(emulator, "timeout=2")
    text = edited(m, "tf-1", displayName="never landed")
    before = emulator.state()
    fault(emulator, mode, "updateImage")
    assert save(m.p("tf-1", "spec.json"), text) == errno.EIO
    assert sent(emulator, "updateImage") == 1
    assert emulator.state() == before
    err = read(m.p("tf-1", ".error")).decode()
    assert "EIO" in err
    if mode == "reset":
        # Reset after sending: the re-read shows the old values.
        assert "has not applied the save: nothing was changed" in err
    assert read(m.p("tf-1", "spec.json.rejected")).decode() == text


def test_save_whose_reread_fails_too_says_unknown(emulator, make_mount):
    """The update's answer never comes and the server is gone by the time
    it is re-read: nobody can tell whether it was applied, and .error says
    so instead of claiming a refusal."""
    m = make_mount(emulator, "timeout=2")
    text = edited(m, "tf-1", displayName="who knows")
    emulator.fault("apply_then_hang", seconds=30, only=["updateImage"])

    def fail_rereads():
        # Once the update is held, every image() read fails.
        deadline = time.monotonic() + 10
        while sent(emulator, "updateImage") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        emulator.fault("http500", only=["image"])

    switcher = threading.Thread(target=fail_rereads)
    switcher.start()
    try:
        code = save(m.p("tf-1", "spec.json"), text)
    finally:
        switcher.join()
        emulator.fault("none")
    assert code == errno.EIO
    assert sent(emulator, "updateImage") == 1
    err = read(m.p("tf-1", ".error")).decode()
    assert "whether the save was applied is unknown" in err
    assert "cat spec.json shows the server's state" in err
    assert read(m.p("tf-1", "spec.json.rejected")).decode() == text


@pytest.mark.parametrize("mode", APPLIED)
def test_create_applied_but_answer_lost_adopts_the_image(emulator, make_mount, mode):
    m = make_mount(emulator, "timeout=2")
    os.mkdir(m.p("adopted"))
    os.close(os.open(m.p("adopted", "groups", "example-group-1"), os.O_CREAT | os.O_WRONLY))
    spec = read_json(m.p("adopted", "spec.json"))
    spec.update(url="infuseai/docker-stacks:base-notebook-63fdf50a", description="first")
    fault(emulator, mode, "createImage")
    assert save(m.p("adopted", "spec.json"), json.dumps(spec)) == 0
    assert sent(emulator, "createImage") == 1
    st = emulator.image_state("adopted")
    assert st is not None and st["spec"]["description"] == "first"
    assert "PrimeHub created it" in m.log()
    # Later saves of the directory are updates, not EEXIST.
    assert save(m.p("adopted", "spec.json"), edited(m, "adopted", description="second")) == 0
    assert emulator.image_state("adopted")["spec"]["description"] == "second"
    assert sent(emulator, "createImage") == 1
    assert os.listdir(m.p("adopted", "groups")) == ["example-group-1"]


def test_create_not_applied_stays_pending(emulator, make_mount):
    m = make_mount(emulator, "timeout=2")
    os.mkdir(m.p("not-made"))
    spec = read_json(m.p("not-made", "spec.json"))
    spec.update(url="infuseai/docker-stacks:base-notebook-63fdf50a")
    fault(emulator, "reset", "createImage")
    assert save(m.p("not-made", "spec.json"), json.dumps(spec)) == errno.EIO
    assert sent(emulator, "createImage") == 1
    assert "not-made" not in emulator.state()["images"]
    assert "has not applied the creation" in read(m.p("not-made", ".error")).decode()
    # Still pending: the next save creates it.
    assert save(m.p("not-made", "spec.json"), json.dumps(spec)) == 0
    assert "not-made" in emulator.state()["images"]


@pytest.mark.parametrize("mode", APPLIED)
def test_rmdir_applied_but_answer_lost_succeeds(emulator, make_mount, mode):
    m = make_mount(emulator, "timeout=2")
    fault(emulator, mode, "deleteImage")
    os.rmdir(m.p("tf-1"))
    assert sent(emulator, "deleteImage") == 1
    assert "tf-1" not in emulator.state()["images"]
    assert "tf-1" not in os.listdir(m.path)


def test_rmdir_not_applied_is_eio(emulator, make_mount):
    m = make_mount(emulator, "timeout=2")
    fault(emulator, "reset", "deleteImage")
    with pytest.raises(OSError) as e:
        os.rmdir(m.p("tf-1"))
    assert e.value.errno == errno.EIO
    assert sent(emulator, "deleteImage") == 1
    assert "tf-1" in emulator.state()["images"]
    assert "has not applied the deletion" in read(m.p(".error")).decode()


@pytest.mark.parametrize("mode", APPLIED)
def test_touch_and_rm_in_groups_with_answer_lost(emulator, make_mount, mode):
    m = make_mount(emulator, "timeout=2")
    before = list(emulator.image_state("tf-2").get("groups") or [])
    fault(emulator, mode, "updateImage")
    os.close(os.open(m.p("tf-2", "groups", "example-group-1"), os.O_CREAT | os.O_WRONLY))
    assert sent(emulator, "updateImage") == 1
    assert "example-group-1" in os.listdir(m.p("tf-2", "groups"))
    assert len(emulator.image_state("tf-2")["groups"]) == len(before) + 1
    fault(emulator, mode, "updateImage")
    os.unlink(m.p("tf-2", "groups", "example-group-1"))
    assert sent(emulator, "updateImage") == 2
    assert "example-group-1" not in os.listdir(m.p("tf-2", "groups"))
    assert list(emulator.image_state("tf-2").get("groups") or []) == before
    assert not os.path.exists(m.p("tf-2", ".error"))
