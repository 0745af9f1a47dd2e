"""What PrimeHub does after the API answers, honoured through the mount.

Each case is a behaviour of the real server (its resolvers, its image-build
controller or Keycloak) that the emulator reproduces; the test checks both
what the user is told and what the server then holds (docs/primehub-facts.md).
"""
import errno
import json
import os
import subprocess
import time

from phfs_harness import read, read_json
from util import mutations, save, server_image


def spec_of(mnt, image):
    return read_json(mnt.p(image, "spec.json"))


def test_type_change_keeps_urlforgpu_exactly_as_saved(emulator, mnt):
    path = mnt.p("base-notebook", "spec.json")
    spec = spec_of(mnt, "base-notebook")
    gpu_url = spec["urlForGpu"]
    assert spec["type"] == "both" and gpu_url != spec["url"]

    # To cpu, urlForGpu left as it was: PrimeHub would replace it with url
    # without a word.  Refused, the server unchanged, the reason given.
    spec["type"] = "cpu"
    assert save(path, json.dumps(spec, indent=2)) == errno.EINVAL
    reason = read(mnt.p("base-notebook", ".error")).decode()
    assert 'changing type to "cpu" makes PrimeHub set urlForGpu to the url' in reason
    assert spec["url"] in reason
    held = server_image(emulator, "base-notebook")
    assert (held["type"], held["urlForGpu"]) == ("both", gpu_url)

    # With urlForGpu equal to url in the same save: stored as written.
    spec["urlForGpu"] = spec["url"]
    assert save(path, json.dumps(spec, indent=2)) == 0
    held = server_image(emulator, "base-notebook")
    assert (held["type"], held["url"], held["urlForGpu"]) == ("cpu", spec["url"], spec["url"])

    # Back to "both" with a gpu url: PrimeHub alone would keep the url it
    # holds as urlForGpu; the save sends the file's.
    spec["type"] = "both"
    spec["urlForGpu"] = gpu_url
    assert save(path, json.dumps(spec, indent=2)) == 0
    held = server_image(emulator, "base-notebook")
    assert (held["type"], held["urlForGpu"]) == ("both", gpu_url)
    assert spec_of(mnt, "base-notebook")["urlForGpu"] == gpu_url

    # Back to "both" alone (urlForGpu still equal to url in the file): the
    # server holds exactly that too.
    spec["type"] = "cpu"
    spec["urlForGpu"] = spec["url"]
    assert save(path, json.dumps(spec, indent=2)) == 0
    spec["type"] = "both"
    assert save(path, json.dumps(spec, indent=2)) == 0
    held = server_image(emulator, "base-notebook")
    assert (held["type"], held["urlForGpu"]) == ("both", spec["url"])


CUSTOM = {
    "name": "pkg-image",
    "displayName": "packages",
    "description": None,
    "type": "both",
    "global": False,
    "useImagePullSecret": None,
    "imageSpec": {"baseImage": "jupyter/base-notebook",
                  "packages": {"apt": ["curl"], "pip": ["pytest"], "conda": []}},
}

CREATE = """mutation($data: ImageCreateInput!) { createImage(data: $data) { id } }"""


def test_package_names_the_builder_would_drop_are_refused(emulator, mnt):
    # On create: nothing is sent, the draft is kept, the rule is named.
    os.mkdir(mnt.p("pkg-image"))
    spec = json.loads(json.dumps(CUSTOM))
    spec["imageSpec"]["packages"]["pip"] = ["pytest", "numpy>=1.20"]
    emulator.reset_stats()
    assert save(mnt.p("pkg-image", "spec.json"), json.dumps(spec, indent=2)) == errno.EINVAL
    assert mutations(emulator) == {}
    reason = read(mnt.p("pkg-image", ".error")).decode()
    assert '"numpy>=1.20"' in reason and "image builder" in reason
    assert "numpy>=1.20" in read(mnt.p("pkg-image", "spec.json.rejected")).decode()

    # Written the way the builder keeps it, the image is made.
    spec["imageSpec"]["packages"]["pip"] = ["pytest", "numpy==1.20"]
    assert save(mnt.p("pkg-image", "spec.json"), json.dumps(spec, indent=2)) == 0
    assert mutations(emulator) == {"createImage": 1}

    # On a rebuild: refused, the server keeps what it had.
    spec["imageSpec"]["packages"]["apt"] = ["curl", "pkg[extra]"]
    emulator.reset_stats()
    assert save(mnt.p("pkg-image", "spec.json"), json.dumps(spec, indent=2)) == errno.EINVAL
    assert mutations(emulator) == {}
    held = emulator.image_state("pkg-image")["spec"]["imageSpec"]["packages"]
    assert held["apt"] == ["curl"] and held["pip"] == ["pytest", "numpy==1.20"]


def test_emulator_builder_drops_names_as_primehub_does(emulator, mnt):
    """Another client (the web console) can still send such names: the build
    leaves them out without a word and succeeds, as PrimeHub's does."""
    data = {"name": "console-made", "type": "both", "global": False,
            "imageSpec": {"baseImage": "jupyter/base-notebook",
                          "packages": {"apt": [], "conda": [],
                                       "pip": ["requests", "torch==1.8+cpu"]}}}
    out = emulator.gql(CREATE, {"data": data})
    assert not out.get("errors"), out
    emulator.advance(40)
    status = read_json(mnt.p("console-made", "status.json"))
    assert status["buildPhase"] == "Succeeded"
    log = read(mnt.p("console-made", "build.log")).decode()
    assert "Collecting requests" in log
    assert "torch" not in log
    # The spec still says what was asked for: that is what PrimeHub shows.
    spec = read_json(mnt.p("console-made", "spec.json"))
    assert spec["imageSpec"]["packages"]["pip"] == ["requests", "torch==1.8+cpu"]


def build_log_of(emulator, mnt, name):
    emulator.advance(40)   # finished: the whole log, packages included
    return read(mnt.p(name, "build.log")).decode()


def test_a_quick_fix_after_create_is_built_not_ignored(emulator, make_mount):
    """PrimeHub's builder ignores a rebuild stamped in the same second as
    the build before it; the mount makes the fix count."""
    m = make_mount(emulator, ttl=1)
    os.mkdir(m.p("pkg-image"))
    spec = json.loads(json.dumps(CUSTOM))
    assert save(m.p("pkg-image", "spec.json"), json.dumps(spec, indent=2)) == 0
    first = emulator.image_state("pkg-image")["spec"]["imageSpec"]["updateTime"]
    spec["imageSpec"]["packages"]["pip"] = ["pytest", "numpy"]
    emulator.reset_stats()
    assert save(m.p("pkg-image", "spec.json"), json.dumps(spec, indent=2)) == 0
    held = emulator.image_state("pkg-image")["spec"]["imageSpec"]
    assert held["packages"]["pip"] == ["pytest", "numpy"]
    assert held["updateTime"][:19] > first[:19]
    log = build_log_of(emulator, m, "pkg-image")
    assert "Collecting numpy" in log, log


def test_emulator_ignores_a_rebuild_in_the_same_second(emulator, mnt):
    """The emulator's builder is as strict as PrimeHub's: without the
    mount's care, the fix above is shown but not built."""
    create = """mutation($data: ImageCreateInput!) {
      createImage(data: $data) { id imageSpec { updateTime } } }"""
    rebuild = """mutation($data: ImageSpecUpdateInput!, $where: ImageWhereUniqueInput!) {
      rebuildImage(data: $data, where: $where) { id imageSpec { updateTime } } }"""
    spec = {"baseImage": "jupyter/base-notebook",
            "packages": {"apt": [], "conda": [], "pip": ["pytest"]}}
    fixed = dict(spec, packages={"apt": [], "conda": [], "pip": ["pytest", "numpy"]})
    for attempt in range(5):   # until both land in one second of the server's clock
        name = "quick-%d" % attempt
        out = emulator.gql(create, {"data": {"name": name, "type": "both", "imageSpec": spec}})
        assert not out.get("errors"), out
        t1 = out["data"]["createImage"]["imageSpec"]["updateTime"]
        out = emulator.gql(rebuild, {"where": {"id": name}, "data": fixed})
        assert not out.get("errors"), out
        if out["data"]["rebuildImage"]["imageSpec"]["updateTime"][:19] == t1[:19]:
            break
    else:
        raise AssertionError("never two requests within one second")
    log = build_log_of(emulator, mnt, name)
    assert emulator.image_state(name)["spec"]["imageSpec"]["packages"]["pip"] == \
        ["pytest", "numpy"]
    assert "Collecting pytest" in log and "numpy" not in log, log


def phase(m, name):
    return read_json(m.p(name, "status.json"))["buildPhase"]


def wait_phase(m, name, want, timeout=8):
    """The mount shows what the server holds within ttl (1 s here)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = phase(m, name)
        if seen == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name}: phase {seen!r}, not {want!r}")


def create_custom(m, name, base):
    """mkdir NAME and save a custom build of base through the mount."""
    os.mkdir(m.p(name))
    spec = json.loads(json.dumps(CUSTOM))
    spec["name"] = name
    spec["imageSpec"]["baseImage"] = base
    assert save(m.p(name, "spec.json"), json.dumps(spec, indent=2)) == 0


def touch(path):
    return subprocess.run(["touch", path], capture_output=True, text=True, timeout=30)


def test_touch_rebuild_retries_a_failed_build(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    create_custom(m, "flaky", "example/fail-base")
    # While it builds: refused, nothing sent, the reason given.
    emulator.advance(6)
    wait_phase(m, "flaky", "Running")
    emulator.reset_stats()
    out = touch(m.p("flaky", "rebuild"))
    assert out.returncode != 0 and "busy" in out.stderr.lower(), out
    assert mutations(emulator) == {}
    assert "is under way (Running)" in read(m.p("flaky", ".error")).decode()
    emulator.advance(40)
    wait_phase(m, "flaky", "Failed")
    before = emulator.image_state("flaky")["spec"]["imageSpec"]
    # Once ended: the same imageSpec built again, no change needed.
    out = touch(m.p("flaky", "rebuild"))
    assert out.returncode == 0, out.stderr
    assert mutations(emulator) == {"rebuildImage": 1}
    after = emulator.image_state("flaky")["spec"]["imageSpec"]
    assert after["packages"] == before["packages"] and after["baseImage"] == before["baseImage"]
    assert after["updateTime"] > before["updateTime"]
    wait_phase(m, "flaky", "Pending")
    # Not listed: ls, cp -r and tar see the image as before.
    assert "rebuild" not in os.listdir(m.p("flaky"))


def test_touch_rebuild_of_a_plain_image_is_refused(emulator, mnt):
    emulator.reset_stats()
    out = touch(mnt.p("tf-1", "rebuild"))
    assert out.returncode != 0
    assert mutations(emulator) == {}
    # rebuildImage would have quietly turned it into a custom build.
    assert server_image(emulator, "tf-1")["imageSpec"] is None
    assert "not a custom build" in read(mnt.p("tf-1", ".error")).decode()


def test_build_log_after_a_cancel_says_so(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    os.mkdir(m.p("pkg-image"))
    spec = json.loads(json.dumps(CUSTOM))
    assert save(m.p("pkg-image", "spec.json"), json.dumps(spec, indent=2)) == 0
    emulator.advance(6)
    spec = spec_of(m, "pkg-image")
    spec["imageSpec"]["cancel"] = True
    assert save(m.p("pkg-image", "spec.json"), json.dumps(spec, indent=2)) == 0
    wait_phase(m, "pkg-image", "Cancelled")
    log = read(m.p("pkg-image", "build.log")).decode()
    assert "the build was cancelled, and PrimeHub removed its job and log" in log, log
    assert os.stat(m.p("pkg-image", "build.log")).st_size == len(log.encode())
    # And a cancelled build can be started again with touch.
    assert touch(m.p("pkg-image", "rebuild")).returncode == 0
    wait_phase(m, "pkg-image", "Pending")


def test_unknown_build_phase_is_shown(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    create_custom(m, "lost-pod", "example/unknown-node")
    emulator.advance(6)
    wait_phase(m, "lost-pod", "Unknown")
    assert emulator.gql('query { image(where: {id: "lost-pod"}) { jobStatus { phase } } }')[
        "data"]["image"]["jobStatus"]["phase"] == "Unknown"


def test_a_name_held_by_a_leftover_role_is_explained(emulator, mnt):
    """PrimeHub creates the Keycloak role img:NAME before the Kubernetes
    object and keeps it when Kubernetes rejects the object: the name is
    then refused for good while no image has it."""
    out = emulator.gql(CREATE, {"data": {"name": "orphan", "type": "both", "imageSpec": {
        "packages": {"apt": [], "conda": [], "pip": ["x"]}}}})   # no baseImage: rejected
    assert out.get("errors"), out
    assert "orphan" not in emulator.state()["images"]
    os.mkdir(mnt.p("orphan"))
    spec = {"name": "orphan", "displayName": "o", "description": None, "type": "both",
            "url": "example/o:1", "urlForGpu": "example/o:1", "global": False,
            "useImagePullSecret": None}
    emulator.reset_stats()
    assert save(mnt.p("orphan", "spec.json"), json.dumps(spec, indent=2)) == errno.EEXIST
    assert mutations(emulator) == {"createImage": 1}
    reason = read(mnt.p("orphan", ".error")).decode()
    assert "held by a role img:orphan left in Keycloak" in reason, reason
    assert "Resource already exist" in reason
    assert "orphan" not in emulator.state()["images"]
    assert json.loads(read(mnt.p("orphan", "spec.json.rejected")))["url"] == "example/o:1"


def test_the_mount_never_leaves_such_a_role_behind(emulator, mnt):
    """What Kubernetes would reject is refused before anything is sent."""
    os.mkdir(mnt.p("no-base"))
    spec = {"name": "no-base", "displayName": "n", "description": None, "type": "both",
            "global": False, "useImagePullSecret": None,
            "imageSpec": {"packages": {"apt": [], "conda": [], "pip": ["x"]}}}
    emulator.reset_stats()
    assert save(mnt.p("no-base", "spec.json"), json.dumps(spec, indent=2)) == errno.EINVAL
    assert mutations(emulator) == {}
    assert "baseImage is required" in read(mnt.p("no-base", ".error")).decode()
    # Nothing was sent, so no role was made: the name can still be used.
    spec["imageSpec"]["baseImage"] = "jupyter/base-notebook"
    assert save(mnt.p("no-base", "spec.json"), json.dumps(spec, indent=2)) == 0
    assert "no-base" in emulator.state()["images"]


def test_a_finished_build_rewrites_the_pull_secret(emulator, make_mount):
    """On success PrimeHub's builder sets useImagePullSecret to its push
    secret: an open editor's unrelated save still works and keeps it; a save
    that changes it is told why it holds that value."""
    m = make_mount(emulator, ttl=1)
    os.mkdir(m.p("pkg-image"))
    path = m.p("pkg-image", "spec.json")
    assert save(path, json.dumps(CUSTOM, indent=2)) == 0
    opened = spec_of(m, "pkg-image")               # as an editor holds it
    assert opened["useImagePullSecret"] in (None, "")
    emulator.advance(40)
    wait_phase(m, "pkg-image", "Succeeded")
    pushed = emulator.image_state("pkg-image")["spec"]["pullSecret"]
    assert pushed and not pushed.startswith("image-")
    # The editor saves an unrelated change over the text it opened.
    edited = dict(opened, description="after the build")
    assert save(path, json.dumps(edited, indent=2)) == 0
    held = emulator.image_state("pkg-image")["spec"]
    assert held["description"] == "after the build"
    assert held["pullSecret"] == pushed
    # A change of useImagePullSecret to something that is no pull secret.
    now = spec_of(m, "pkg-image")
    assert now["useImagePullSecret"] == pushed
    now["useImagePullSecret"] = "my-secret"
    assert save(path, json.dumps(now, indent=2)) == errno.EINVAL
    reason = read(m.p("pkg-image", ".error")).decode()
    assert "image builder sets useImagePullSecret to its push secret" in reason, reason
    assert emulator.image_state("pkg-image")["spec"]["pullSecret"] == pushed
