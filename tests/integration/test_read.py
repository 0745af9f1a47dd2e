"""The read-only tree (issue: part 1): what ls, stat, cat, find, grep, jq,
cp and tar see on a real mount, checked against what the emulator holds."""
import json
import os
import stat
import subprocess

import pytest

from phfs_harness import Emulator, read, read_json

SAMPLE_IDS = ["base-notebook", "pytorch-1", "tf-1", "tf-2"]
SPEC_KEYS = ["name", "displayName", "description", "type", "url", "urlForGpu", "global",
             "useImagePullSecret"]

FULL = """query($where: ImageWhereUniqueInput!) { image(where: $where) {
  id name displayName description type url urlForGpu global useImagePullSecret
  isReady groups { id name } imageSpec { baseImage pullSecret packages { apt pip conda } cancel }
  jobStatus { phase } logEndpoint } }"""


def server_image(emu, image_id):
    return emu.gql(FULL, {"where": {"id": image_id}})["data"]["image"]


def system_image_ids(emu):
    return sorted(i for i, v in emu.state()["images"].items() if not v["spec"].get("groupName"))


def test_root_lists_every_admin_image(emulator, mnt):
    # Every image, and the mount's own .status.
    assert sorted(os.listdir(mnt.path)) == [".status"] + system_image_ids(emulator)
    assert sorted(os.listdir(mnt.path)) == [".status"] + SAMPLE_IDS


def test_image_directory_entries(mnt):
    assert sorted(os.listdir(mnt.p("base-notebook"))) == ["groups", "spec.json", "status.json"]


def test_spec_json_matches_server(emulator, mnt):
    for image_id in SAMPLE_IDS:
        spec = read_json(mnt.p(image_id, "spec.json"))
        img = server_image(emulator, image_id)
        assert list(spec.keys()) == SPEC_KEYS, image_id
        for key in SPEC_KEYS:
            assert spec[key] == img[key], (image_id, key)


def test_spec_json_is_pretty_and_ends_with_newline(mnt):
    text = read(mnt.p("tf-2", "spec.json")).decode()
    assert text.startswith('{\n  "name": "tf-2",\n')
    assert text.endswith("}\n")


def test_groups_listed_by_name(emulator, mnt):
    assert sorted(os.listdir(mnt.p("base-notebook", "groups"))) == [
        "example-group-1", "example-group-2"]
    ids = sorted(emulator.image_state("base-notebook")["groups"])
    assert ids == sorted(["71ac1e32-65fa-4e8e-a735-ba282e3149b1",
                          "0fdaea59-705a-4546-8d13-2d52511342b0"])
    st = os.stat(mnt.p("base-notebook", "groups", "example-group-1"))
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0


def test_image_without_groups(mnt):
    assert os.listdir(mnt.p("tf-1", "groups")) == []


def test_global_image(emulator, mnt):
    assert read_json(mnt.p("tf-2", "spec.json"))["global"] is True
    assert emulator.image_state("tf-2")["global"] is True
    assert read_json(mnt.p("base-notebook", "spec.json"))["global"] is False


def test_status_json(emulator, mnt):
    status = read_json(mnt.p("tf-2", "status.json"))
    img = server_image(emulator, "tf-2")
    assert status["id"] == "tf-2"
    assert status["isReady"] is img["isReady"] is True
    # Nothing server-specific: the log's URL names the server's host (two
    # servers' copies of one image would always differ); build.log is it.
    assert "logEndpoint" not in status and img["logEndpoint"]
    groups = read_json(mnt.p("base-notebook", "status.json"))["groups"]
    assert sorted(g["name"] for g in groups) == ["example-group-1", "example-group-2"]


def test_custom_build_image(emulator, make_mount):
    created = emulator.gql(
        'mutation($data: ImageCreateInput!) { createImage(data: $data) { id } }',
        {"data": {"name": "my-custom-image", "type": "both", "global": True,
                  "imageSpec": {"baseImage": "jupyter/base-notebook",
                                "packages": {"pip": ["pytest"]}}}})
    assert created["data"]["createImage"]["id"] == "my-custom-image"
    m = make_mount(emulator)
    d = m.p("my-custom-image")
    assert sorted(os.listdir(d)) == ["build.log", "groups", "spec.json", "status.json"]
    spec = read_json(os.path.join(d, "spec.json"))
    assert spec["imageSpec"]["baseImage"] == "jupyter/base-notebook"
    assert spec["imageSpec"]["packages"]["pip"] == ["pytest"]
    assert spec["imageSpec"]["packages"]["apt"] == []
    # url/urlForGpu are build outputs of a custom image: in status.json only.
    assert "url" not in spec and "urlForGpu" not in spec
    status = read_json(os.path.join(d, "status.json"))
    assert status["customBuild"] is True
    assert status["isReady"] is False
    # The plain images have no build.log.
    assert not os.path.exists(m.p("tf-2", "build.log"))


def test_sizes_modes_and_links_are_exact(mnt):
    for image_id in SAMPLE_IDS:
        for name, mode in (("spec.json", 0o644), ("status.json", 0o444)):
            path = mnt.p(image_id, name)
            st = os.stat(path)
            assert st.st_size == len(read(path)), path
            assert stat.S_IMODE(st.st_mode) == mode, path
            assert st.st_nlink == 1
        assert stat.S_ISDIR(os.stat(mnt.p(image_id)).st_mode)
        assert stat.S_ISDIR(os.stat(mnt.p(image_id, "groups")).st_mode)


def test_missing_names_are_enoent(mnt):
    for path in (mnt.p("no-such-image"), mnt.p("no-such-image", "spec.json"),
                 mnt.p("tf-2", "nothing"), mnt.p("tf-2", "groups", "example-group-1"),
                 mnt.p("tf-2", "build.log"), mnt.p(".error"), mnt.p("tf-2", ".error"),
                 mnt.p("tf-2", "spec.json.rejected")):
        with pytest.raises(FileNotFoundError):
            os.stat(path)
    with pytest.raises(FileNotFoundError):
        open(mnt.p("no-such-image", "spec.json"))


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True, **kw)


def test_common_tools(emulator, mnt, tmp_path):
    ls = run(["ls", "-l", mnt.p("base-notebook")]).stdout
    assert "spec.json" in ls and "status.json" in ls and "groups" in ls
    found = run(["find", mnt.path, "-name", "spec.json"]).stdout.split()
    assert sorted(found) == sorted(mnt.p(i, "spec.json") for i in SAMPLE_IDS)
    grep = run(["grep", "-rl", "tensorflow-notebook-v2-5-0", mnt.path]).stdout.split()
    assert mnt.p("tf-2", "spec.json") in grep
    cat = run(["sh", "-c", f"cat {mnt.path}/*/spec.json"]).stdout
    assert cat.count('"name"') == 4
    copy = tmp_path / "copy"
    run(["cp", "-r", mnt.path, str(copy)])
    assert json.loads((copy / "tf-2" / "spec.json").read_text()) == read_json(
        mnt.p("tf-2", "spec.json"))
    assert sorted(os.listdir(copy / "base-notebook" / "groups")) == [
        "example-group-1", "example-group-2"]
    tar = subprocess.run(["tar", "cf", str(tmp_path / "all.tar"), "-C", mnt.path, "."],
                         capture_output=True, text=True, timeout=60)
    assert tar.returncode == 0, tar.stderr  # no "file changed as we read it", no short reads
    names = run(["tar", "tf", str(tmp_path / "all.tar")]).stdout.split()
    assert "./tf-2/spec.json" in names and "./base-notebook/groups/example-group-2" in names


def test_jq_reads_spec(mnt):
    if not os.path.exists("/usr/bin/jq"):
        pytest.fail("jq is missing: tests/run.sh installs it")
    out = run(["jq", "-r", ".displayName", mnt.p("tf-2", "spec.json")]).stdout.strip()
    assert out == "TensorFlow 2.5.0 (Python 3.7)"


def test_thousand_images_all_listed(make_mount):
    emu = Emulator("--images", "1000")
    try:
        m = make_mount(emu)
        names = [n for n in os.listdir(m.path) if n != ".status"]
        assert len(names) == 1004
        assert sorted(names) == system_image_ids(emu)
        # Every one is complete and exact.
        for name in names[::97]:
            p = m.p(name, "spec.json")
            assert os.stat(p).st_size == len(read(p))
            assert read_json(p)["name"] == name
    finally:
        emu.stop()


ODD_GROUPS = {"aaaaaaaa-0000-4000-8000-000000000001": "team/a",
              "aaaaaaaa-0000-4000-8000-000000000002": "evil\n2026 forged line\x1b[31m",
              "aaaaaaaa-0000-4000-8000-000000000003": "..",
              "aaaaaaaa-0000-4000-8000-000000000004": "rtl\u202egnp.exe"}


def test_odd_group_names_from_the_server_are_skipped(make_mount, tmp_path):
    """Group names that cannot be file names (a '/', '..') or are unsafe on a
    terminal are left out of groups/ with one warning, instead of failing the
    whole listing; such a group is still reachable by its id."""
    state = tmp_path / "state.json"
    emu = Emulator("--state", str(state))
    emu.stop()
    data = json.loads(state.read_text())
    template = next(g for g in data["groups"] if g["name"] == "example-group-1")
    for gid, name in ODD_GROUPS.items():
        data["groups"].append(dict(template, id=gid, name=name, displayName=name))
    data["roles"]["img:tf-2"] = list(data["roles"].get("img:tf-2", [])) + list(ODD_GROUPS)
    state.write_text(json.dumps(data))
    emu = Emulator("--state", str(state))
    try:
        m = make_mount(emu)
        for _ in range(3):                     # warned once, not per listing
            listed = os.listdir(m.p("tf-2", "groups"))
        assert not set(listed) & set(ODD_GROUPS.values())
        assert len(listed) == len(emu.state()["images"]["tf-2"]["groups"]) - len(ODD_GROUPS)
        assert m.log().count("not listed") == 1
        # By id: stat and rm work; the server forgets the link.
        gid = "aaaaaaaa-0000-4000-8000-000000000001"
        os.stat(m.p("tf-2", "groups", gid))
        os.unlink(m.p("tf-2", "groups", gid))
        assert gid not in emu.state()["images"]["tf-2"]["groups"]
    finally:
        emu.stop()


def test_error_file_is_terminal_safe(mnt):
    """A name with a newline or an escape sequence never forges a line in
    .error or reaches the terminal raw."""
    bad = "a\nb\x1b[2J"
    try:
        os.mkdir(mnt.p(bad))
    except OSError:
        pass
    text = read(mnt.p(".error")).decode()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "\x1b" not in text and "a\\nb\\x1b[2J" in text
