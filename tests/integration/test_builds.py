"""Custom builds: creating with imageSpec, following the build in status.json
and build.log, rebuilding on an imageSpec change, cancelling with
"cancel": true.  The emulator's builder runs on a clock the tests drive."""
import errno
import json
import os
import time

from phfs_harness import read, read_json
from util import mutations, save

SPEC = {
    "name": "my-custom-image",
    "displayName": "My custom image",
    "description": None,
    "type": "both",
    "global": True,
    "useImagePullSecret": None,
    "imageSpec": {"baseImage": "jupyter/base-notebook",
                  "packages": {"apt": ["curl"], "pip": ["pytest"], "conda": []}},
}


def wait_for(predicate, timeout=8):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def create_custom(emulator, m, spec=SPEC):
    os.mkdir(m.p(spec["name"]))
    emulator.reset_stats()
    assert save(m.p(spec["name"], "spec.json"), json.dumps(spec, indent=2)) == 0
    assert mutations(emulator) == {"createImage": 1}


def phase(m, name="my-custom-image"):
    return read_json(m.p(name, "status.json"))["buildPhase"]


def test_create_custom_image_and_follow_the_build(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    create_custom(emulator, m)
    st = emulator.image_state("my-custom-image")
    assert st["spec"]["imageSpec"]["baseImage"] == "jupyter/base-notebook"
    assert st["spec"]["imageSpec"]["packages"]["pip"] == ["pytest"]
    assert "url" not in st["spec"]
    spec = read_json(m.p("my-custom-image", "spec.json"))
    assert spec["imageSpec"]["packages"] == {"apt": ["curl"], "pip": ["pytest"], "conda": []}
    assert "url" not in spec
    assert "build.log" in os.listdir(m.p("my-custom-image"))
    assert read_json(m.p("my-custom-image", "status.json"))["customBuild"] is True

    wait_for(lambda: phase(m) == "Pending")
    emulator.advance(10)
    wait_for(lambda: phase(m) == "Running")
    log = read(m.p("my-custom-image", "build.log")).decode()
    assert "jupyter/base-notebook" in log
    emulator.advance(30)
    wait_for(lambda: phase(m) == "Succeeded")
    status = read_json(m.p("my-custom-image", "status.json"))
    assert status["isReady"] is True and status["url"]
    assert emulator.image_state("my-custom-image")["spec"]["url"] == status["url"]
    # build.log's size is what it serves, whatever the moment.
    data = read(m.p("my-custom-image", "build.log"))
    assert data and b"\0" not in data


def test_changing_packages_rebuilds(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    create_custom(emulator, m)
    emulator.advance(40)
    wait_for(lambda: phase(m) == "Succeeded")
    spec = read_json(m.p("my-custom-image", "spec.json"))
    spec["imageSpec"]["packages"]["pip"] = ["pytest", "numpy"]
    emulator.reset_stats()
    assert save(m.p("my-custom-image", "spec.json"), json.dumps(spec, indent=2)) == 0
    assert mutations(emulator) == {"rebuildImage": 1}
    st = emulator.image_state("my-custom-image")
    assert st["spec"]["imageSpec"]["packages"]["pip"] == ["pytest", "numpy"]
    wait_for(lambda: phase(m) == "Pending")


def test_cancel_build(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    create_custom(emulator, m)
    emulator.advance(10)
    wait_for(lambda: phase(m) == "Running")
    spec = read_json(m.p("my-custom-image", "spec.json"))
    assert spec["imageSpec"]["cancel"] is False
    spec["imageSpec"]["cancel"] = True
    emulator.reset_stats()
    assert save(m.p("my-custom-image", "spec.json"), json.dumps(spec, indent=2)) == 0
    assert mutations(emulator) == {"cancelImageBuild": 1}
    assert emulator.image_state("my-custom-image")["spec"]["imageSpec"]["cancel"] is True
    wait_for(lambda: phase(m) == "Cancelled")


def test_failed_build_shows_in_status(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    spec = dict(SPEC, name="will-fail",
                imageSpec={"baseImage": "example/fail-base", "packages": {"pip": ["x"]}})
    create_custom(emulator, m, spec)
    emulator.advance(40)
    wait_for(lambda: phase(m, "will-fail") == "Failed")


def test_custom_image_rules(emulator, mnt):
    os.mkdir(mnt.p("bad-custom"))
    before = emulator.state()
    spec = dict(SPEC, name="bad-custom", url="jupyter/base-notebook:latest")
    assert save(mnt.p("bad-custom", "spec.json"), json.dumps(spec)) == errno.EINVAL
    assert "imageSpec cannot use with url and urlForGpu" in read(
        mnt.p("bad-custom", ".error")).decode()
    spec = dict(SPEC, name="bad-custom", imageSpec={"packages": {"pip": ["x"]}})
    assert save(mnt.p("bad-custom", "spec.json"), json.dumps(spec)) == errno.EINVAL
    assert "baseImage is required" in read(mnt.p("bad-custom", ".error")).decode()
    spec = dict(SPEC, name="bad-custom",
                imageSpec={"baseImage": "jupyter/base-notebook", "packages": {"npm": ["x"]}})
    assert save(mnt.p("bad-custom", "spec.json"), json.dumps(spec)) == errno.EINVAL
    assert "packages" in read(mnt.p("bad-custom", ".error")).decode()
    assert emulator.state() == before
    assert "bad-custom" in os.listdir(mnt.path)   # still pending, nothing lost


def test_status_shows_the_phase_as_it_changes_without_a_refresh(emulator, make_mount):
    """While an image builds, its status.json follows the phase within about
    a second, although the list is fresh for a minute (ttl=60): the image
    alone is read again, at most once a second, only while it builds."""
    m = make_mount(emulator, ttl=60)
    create_custom(emulator, m)
    assert phase(m) == "Pending"
    emulator.reset_stats()
    emulator.advance(10)
    t = time.monotonic()
    wait_for(lambda: phase(m) == "Running", timeout=5)
    assert time.monotonic() - t < 2.5
    emulator.advance(30)
    wait_for(lambda: phase(m) == "Succeeded", timeout=5)
    ops = emulator.stats()["operations"]
    assert "images" not in ops, ops                    # no read of the whole list
    polls = ops.get("image", 0)
    assert 1 <= polls <= 8, ops                        # ~1 a second, not 1 per read
    # Done: reading it now costs nothing.
    emulator.reset_stats()
    for _ in range(20):
        assert phase(m) == "Succeeded"
    assert emulator.stats()["operations"] == {}
    # Nor does a plain image, once its groups are known (one read).
    read(m.p("tf-1", "status.json"))
    emulator.reset_stats()
    for _ in range(5):
        read(m.p("tf-1", "status.json"))
        time.sleep(0.3)
    assert "image" not in emulator.stats()["operations"]
