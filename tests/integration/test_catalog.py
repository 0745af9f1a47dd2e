"""PrimeHub's group list and pull secrets, asked only when an action needs
them.

The tree lists images alone: the root `groups` field costs PrimeHub a
Keycloak read per group and `secrets` a Kubernetes list, and only two
actions use them: touch in groups/ (a group's id by its name) and a save
that sets a pull secret (is it one).  Everything shown (groups/,
status.json) comes with the images' membership, names included."""
import errno
import json
import os
import subprocess
import time

from phfs_harness import read_json
from util import errno_of, ops, save, server_image


def catalog_asks(emu):
    """Root `groups` / `secrets` fields served since the last reset."""
    o = ops(emu)
    return o.get("groups", 0), o.get("secrets", 0)


def edited(m, image_id, **changes):
    spec = read_json(m.p(image_id, "spec.json"))
    spec.update(changes)
    return json.dumps(spec, indent=2) + "\n"


def touch(path):
    return subprocess.run(["touch", path], capture_output=True, text=True, timeout=30)


def server_groups(emu, image_id):
    return sorted(g["name"] for g in server_image(emu, image_id)["groups"])


def test_reading_everything_asks_neither(emulator, mnt):
    emulator.reset_stats()
    out = subprocess.run(["ls", "-lR", mnt.path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for name in os.listdir(mnt.path):
        if name.startswith("."):
            continue
        read_json(mnt.p(name, "spec.json"))
        read_json(mnt.p(name, "status.json"))
    assert catalog_asks(emulator) == (0, 0), ops(emulator)
    # The names shown come with the membership.
    assert sorted(os.listdir(mnt.p("base-notebook", "groups"))) == [
        "example-group-1", "example-group-2"]
    status = read_json(mnt.p("base-notebook", "status.json"))
    assert sorted((g["name"], g.get("displayName")) for g in status["groups"]) == [
        ("example-group-1", "Example Group 1"), ("example-group-2", "Example Group 2")]


def test_touch_asks_the_group_list_once_per_ttl(emulator, mnt):
    os.listdir(mnt.p("tf-1", "groups"))
    os.listdir(mnt.p("tf-2", "groups"))
    emulator.reset_stats()
    assert touch(mnt.p("tf-1", "groups", "example-group-1")).returncode == 0
    assert catalog_asks(emulator) == (1, 1), ops(emulator)
    assert touch(mnt.p("tf-2", "groups", "example-group-3")).returncode == 0
    assert catalog_asks(emulator) == (1, 1), ops(emulator)
    assert server_groups(emulator, "tf-1") == ["example-group-1"]
    assert server_groups(emulator, "tf-2") == ["example-group-3"]
    # Touching a connected group sends nothing at all.
    emulator.reset_stats()
    assert touch(mnt.p("base-notebook", "groups", "example-group-2")).returncode == 0
    assert touch(mnt.p("tf-1", "groups", "example-group-1")).returncode == 0
    assert ops(emulator) == {}, ops(emulator)
    # rm uses the image's own groups, never the list.
    os.unlink(mnt.p("tf-1", "groups", "example-group-1"))
    assert catalog_asks(emulator) == (0, 0), ops(emulator)
    assert server_groups(emulator, "tf-1") == []


def test_touch_finds_a_group_made_since_the_list(emulator, mnt):
    assert touch(mnt.p("tf-1", "groups", "example-group-1")).returncode == 0
    emulator.add_group("made-just-now", "Made just now")
    # The list kept for ttl (60 s here) lacks it: asked again, found, once
    # the list is a second old (a typo repeated in a loop costs at most
    # one list a second).
    time.sleep(1.2)
    emulator.reset_stats()
    assert touch(mnt.p("tf-1", "groups", "made-just-now")).returncode == 0
    assert catalog_asks(emulator) == (1, 1), ops(emulator)
    assert server_groups(emulator, "tf-1") == ["example-group-1", "made-just-now"]
    assert "made-just-now" in os.listdir(mnt.p("tf-1", "groups"))


def test_touch_of_no_such_group_is_refused_with_a_reason(emulator, mnt):
    before = server_groups(emulator, "tf-1")
    out = touch(mnt.p("tf-1", "groups", "no-such-group"))
    assert out.returncode != 0 and "No such file" in out.stderr, out
    assert server_groups(emulator, "tf-1") == before
    assert "no-such-group" in open(mnt.p("tf-1", ".error")).read()


def test_a_save_asks_secrets_only_when_it_sets_one(emulator, make_mount):
    mnt = make_mount(emulator, ttl=1)
    emulator.reset_stats()
    assert save(mnt.p("tf-1", "spec.json"), edited(mnt, "tf-1", description="plain")) == 0
    assert catalog_asks(emulator) == (0, 0), ops(emulator)
    assert save(mnt.p("tf-1", "spec.json"),
                edited(mnt, "tf-1", useImagePullSecret="image-my-image-registry")) == 0
    assert catalog_asks(emulator) == (1, 1), ops(emulator)
    assert emulator.image_state("tf-1")["spec"]["pullSecret"] == "image-my-image-registry"
    # Keeping the secret it has asks nothing more, even once the list kept
    # (ttl, 1 s here) is too old to use; a secret that is not a registry
    # secret is refused, with the ones that are, and nothing sent.
    time.sleep(1.2)
    text = edited(mnt, "tf-1", description="again")
    emulator.reset_stats()
    assert save(mnt.p("tf-1", "spec.json"), text) == 0
    assert catalog_asks(emulator) == (0, 0), ops(emulator)
    bad = edited(mnt, "tf-1", useImagePullSecret="gitsync-secret-dataset-secret")
    emulator.reset_stats()
    assert save(mnt.p("tf-1", "spec.json"), bad) == errno.EINVAL
    assert "updateImage" not in ops(emulator)
    reason = open(mnt.p("tf-1", ".error")).read()
    assert "gitsync-secret-dataset-secret" in reason and "image-my-image-registry" in reason
    assert emulator.image_state("tf-1")["spec"]["pullSecret"] == "image-my-image-registry"
    assert errno_of(lambda: os.stat(mnt.p("tf-1", "spec.json.rejected"))) == 0
