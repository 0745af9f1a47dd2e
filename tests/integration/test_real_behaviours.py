"""What PrimeHub does after the API answers, honoured through the mount.

Each case is a behaviour of the real server (its resolvers, its image-build
controller or Keycloak) that the emulator reproduces; the test checks both
what the user is told and what the server then holds (docs/primehub-facts.md).
"""
import errno
import json
import os

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
