"""What PrimeHub does after the API answers, honoured through the mount.

Each case is a behaviour of the real server (its resolvers, its image-build
controller or Keycloak) that the emulator reproduces; the test checks both
what the user is told and what the server then holds (docs/primehub-facts.md).
"""
import errno
import json

from phfs_harness import read, read_json
from util import save, server_image


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
