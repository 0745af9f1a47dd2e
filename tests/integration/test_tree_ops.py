"""mkdir/rmdir of images, touch/rm in groups/, renames, and rm -r: each
checked against the emulator's state."""
import errno
import json
import os
import subprocess

import pytest

from phfs_harness import read, read_json
from util import mutations, ops, save, server_update

G1 = "71ac1e32-65fa-4e8e-a735-ba282e3149b1"   # example-group-1
G3 = "dc6a0f50-2679-4d6b-b819-8da1b2e1b0f9"   # example-group-3


def test_mkdir_makes_a_pending_image_created_on_first_save(emulator, mnt):
    emulator.reset_stats()
    os.mkdir(mnt.p("my-first-image"))
    assert "my-first-image" in os.listdir(mnt.path)
    assert "my-first-image" not in emulator.state()["images"]   # local only
    assert mutations(emulator) == {}
    spec = read_json(mnt.p("my-first-image", "spec.json"))
    assert spec["name"] == "my-first-image" and spec["type"] == "both"
    spec.update(displayName="Learning how to create an image from SDK",
                description="base-notebook with python 3.7",
                url="infuseai/docker-stacks:base-notebook-63fdf50a",
                urlForGpu="infuseai/docker-stacks:base-notebook-63fdf50a-gpu")
    spec["global"] = True
    assert save(mnt.p("my-first-image", "spec.json"), json.dumps(spec, indent=2)) == 0
    st = emulator.image_state("my-first-image")
    assert st["spec"]["url"] == "infuseai/docker-stacks:base-notebook-63fdf50a"
    assert st["spec"]["urlForGpu"] == "infuseai/docker-stacks:base-notebook-63fdf50a-gpu"
    assert st["global"] is True
    assert mutations(emulator) == {"createImage": 1}
    assert read_json(mnt.p("my-first-image", "status.json"))["isReady"] is True


def test_pending_image_with_staged_groups(emulator, mnt):
    os.mkdir(mnt.p("with-groups"))
    open(mnt.p("with-groups", "groups", "example-group-1"), "w").close()
    assert os.listdir(mnt.p("with-groups", "groups")) == ["example-group-1"]
    assert "with-groups" not in emulator.state()["images"]
    text = read(mnt.p("with-groups", "spec.json"))
    assert save(mnt.p("with-groups", "spec.json"), text) == 0   # the template as is
    st = emulator.image_state("with-groups")
    assert st["groups"] == [G1]
    assert os.listdir(mnt.p("with-groups", "groups")) == ["example-group-1"]


def test_mkdir_bad_name_and_taken_name(emulator, mnt):
    with pytest.raises(OSError) as e:
        os.mkdir(mnt.p("Bad_Name"))
    assert e.value.errno == errno.EINVAL
    assert "[name] should be lower case alphanumeric" in read(mnt.p(".error")).decode()
    with pytest.raises(FileExistsError):
        os.mkdir(mnt.p("tf-2"))
    os.mkdir(mnt.p("good-name"))
    assert not os.path.exists(mnt.p(".error"))   # a success empties it


def test_create_of_a_name_taken_meanwhile_is_eexist(emulator, mnt):
    """Someone else created the name after our snapshot: the save says so."""
    os.mkdir(mnt.p("raced"))
    out = emulator.gql('mutation($d: ImageCreateInput!) { createImage(data: $d) { id } }',
                       {"d": {"name": "raced", "description": "theirs"}})
    assert not out.get("errors")
    text = read(mnt.p("raced", "spec.json"))
    assert save(mnt.p("raced", "spec.json"), text) == errno.EEXIST
    assert emulator.image_state("raced")["spec"]["description"] == "theirs"
    assert "already" in read(mnt.p("raced", ".error")).decode()


def test_rmdir_pending_sends_nothing(emulator, mnt):
    os.mkdir(mnt.p("scratch-image"))
    emulator.reset_stats()
    os.rmdir(mnt.p("scratch-image"))
    assert "scratch-image" not in os.listdir(mnt.path)
    assert emulator.stats()["total"] == 0


def test_rmdir_deletes_the_image(emulator, mnt):
    os.rmdir(mnt.p("base-notebook"))
    assert "base-notebook" not in emulator.state()["images"]
    assert "base-notebook" not in os.listdir(mnt.path)
    with pytest.raises(FileNotFoundError):
        os.stat(mnt.p("base-notebook", "spec.json"))


def test_rm_r_changes_nothing_and_says_why(emulator, mnt):
    before = emulator.state()
    r = subprocess.run(["rm", "-rf", mnt.p("base-notebook")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0
    assert emulator.state() == before          # no group was disconnected
    assert sorted(os.listdir(mnt.p("base-notebook", "groups"))) == [
        "example-group-1", "example-group-2"]
    assert "rmdir" in read(mnt.p("base-notebook", ".error")).decode()


RM_R_LIKE = {
    "find-delete": ["find", "{img}", "-delete"],
    "rmtree-ignore-errors": ["/usr/bin/python3", "-c",
                             "import shutil, sys; shutil.rmtree(sys.argv[1], ignore_errors=True)",
                             "{img}"],
    "rm-rf": ["rm", "-rf", "{img}"],
}


@pytest.mark.parametrize("tool", sorted(RM_R_LIKE))
def test_recursive_removers_never_delete_the_image(emulator, mnt, tool):
    """find -delete and shutil.rmtree go on to rmdir the image after its
    files refused to go; that rmdir is refused too, so nothing changes."""
    before = emulator.state()
    cmd = [a.replace("{img}", mnt.p("base-notebook")) for a in RM_R_LIKE[tool]]
    subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert emulator.state() == before          # still there, groups and all
    assert "deleteImage" not in mutations(emulator)
    assert "base-notebook" in os.listdir(mnt.path)
    if tool != "rm-rf":                        # rm -r never tries the rmdir
        assert "use rmdir base-notebook" in read(mnt.p(".error")).decode()
    # A deliberate rmdir by another process still deletes it.
    subprocess.run(["rmdir", mnt.p("base-notebook")], check=True, timeout=30)
    assert "base-notebook" not in emulator.state()["images"]


def test_rename_image_is_eperm(emulator, mnt):
    with pytest.raises(PermissionError):
        os.rename(mnt.p("tf-1"), mnt.p("tf-one"))
    assert "cannot be renamed" in read(mnt.p(".error")).decode()
    assert "tf-1" in emulator.state()["images"]


def test_touch_connects_and_rm_disconnects(emulator, mnt):
    emulator.reset_stats()
    subprocess.run(["touch", mnt.p("tf-1", "groups", "example-group-3")], check=True, timeout=30)
    assert emulator.image_state("tf-1")["groups"] == [G3]
    assert os.listdir(mnt.p("tf-1", "groups")) == ["example-group-3"]
    assert mutations(emulator) == {"updateImage": 1}
    # Touching a connected group changes nothing and sends nothing.
    emulator.reset_stats()
    subprocess.run(["touch", mnt.p("tf-1", "groups", "example-group-3")], check=True, timeout=30)
    assert mutations(emulator) == {}
    os.unlink(mnt.p("tf-1", "groups", "example-group-3"))
    assert emulator.image_state("tf-1")["groups"] == []
    assert os.listdir(mnt.p("tf-1", "groups")) == []


def test_touch_by_group_id(emulator, mnt):
    open(mnt.p("tf-1", "groups", G1), "w").close()
    assert emulator.image_state("tf-1")["groups"] == [G1]
    assert os.listdir(mnt.p("tf-1", "groups")) == ["example-group-1"]


def test_touch_unknown_group_is_enoent(emulator, mnt):
    before = emulator.state()
    with pytest.raises(FileNotFoundError):
        open(mnt.p("tf-1", "groups", "no-such-group"), "w")
    assert emulator.state() == before
    assert "no-such-group" in read(mnt.p("tf-1", ".error")).decode()


def test_group_change_keeps_pull_secret(emulator, mnt):
    """The CLI's add-group clears useImagePullSecret; primehubfs must not."""
    server_update(emulator, "tf-1", {"useImagePullSecret": "image-my-image-registry"})
    open(mnt.p("tf-1", "groups", "example-group-1"), "w").close()
    st = emulator.image_state("tf-1")
    assert st["groups"] == [G1]
    assert st["spec"]["pullSecret"] == "image-my-image-registry"


def test_read_only_files_refuse_writes(mnt):
    with pytest.raises(PermissionError):
        open(mnt.p("tf-1", "status.json"), "w")
    with pytest.raises(PermissionError):
        os.unlink(mnt.p("tf-1", "spec.json"))
    with pytest.raises(PermissionError):
        os.rename(mnt.p("tf-1", "spec.json"), mnt.p("tf-1", "spec.json~"))
    with pytest.raises(PermissionError):
        os.symlink("x", mnt.p("tf-1", "link"))
    # chmod/chown/utime on spec.json are accepted as no-ops (cp -p, editors).
    os.chmod(mnt.p("tf-1", "spec.json"), 0o600)
    os.utime(mnt.p("tf-1", "spec.json"))
    assert os.stat(mnt.p("tf-1", "spec.json")).st_mode & 0o777 == 0o644


def test_scratch_files_stay_local(emulator, mnt):
    path = mnt.p("tf-1", "notes.txt")
    with open(path, "w") as f:
        f.write("hello")
    with open(path, "r+") as f:
        f.seek(10)
        f.write("world")
    data = read(path)
    assert data == b"hello\0\0\0\0\0world"
    os.truncate(path, 5)
    assert read(path) == b"hello"
    os.rename(path, mnt.p("tf-1", "notes2.txt"))
    assert "notes2.txt" in os.listdir(mnt.p("tf-1"))
    assert emulator.state()["images"].keys() == {"base-notebook", "pytorch-1", "tf-1", "tf-2"}
    os.unlink(mnt.p("tf-1", "notes2.txt"))
    assert "notes2.txt" not in os.listdir(mnt.p("tf-1"))


def test_scratch_files_are_bounded(emulator, mnt):
    made = 0
    with pytest.raises(OSError) as e:
        for i in range(100):
            open(mnt.p("tf-2", f"scratch-{i}"), "w").close()
            made += 1
    assert e.value.errno == errno.ENOSPC
    assert made == 64
    assert "at most 64 scratch files" in read(mnt.p("tf-2", ".error")).decode()
    for i in range(made):
        os.unlink(mnt.p("tf-2", f"scratch-{i}"))
    assert sorted(os.listdir(mnt.p("tf-2"))) == [".error", "groups", "spec.json", "status.json"]


def test_files_cannot_be_made_at_the_top(emulator, mnt):
    with pytest.raises(PermissionError):
        open(mnt.p("notes.txt"), "w")
    assert "mkdir" in read(mnt.p(".error")).decode()
