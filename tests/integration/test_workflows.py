"""Workflows that move whole images between mounts and tools.

Two emulators stand for two PrimeHub servers (say staging and production);
each has its own mount."""
import errno
import json
import os
import subprocess
import time

from phfs_harness import Emulator, read, read_json
from util import errno_of, mutations, ops, save, server_update, wait_shown

CREATE = """mutation($data: ImageCreateInput!) { createImage(data: $data) { id } }"""


def test_diff_of_two_servers_shows_only_real_differences(emulator, make_mount):
    other = Emulator()
    try:
        a = make_mount(emulator)
        b = make_mount(other)
        # The same image made two ways: through the mount on A (PrimeHub
        # stores "" for no pull secret) and by another client on B, then
        # cleared by an update (PrimeHub then reads back null).
        os.mkdir(a.p("same"))
        spec = {"name": "same", "displayName": "same", "description": "one image",
                "type": "cpu", "url": "example/same:1", "urlForGpu": "example/same:1",
                "global": False, "useImagePullSecret": None}
        assert save(a.p("same", "spec.json"), json.dumps(spec, indent=2)) == 0
        out = other.gql(CREATE, {"data": {"name": "same", "displayName": "same",
                                          "description": "one image", "type": "cpu",
                                          "url": "example/same:1",
                                          "useImagePullSecret": "image-x"}})
        assert not out.get("errors"), out
        server_update(other, "same", {"useImagePullSecret": None})
        assert emulator.image_state("same")["spec"].get("pullSecret") == ""
        assert other.image_state("same")["spec"].get("pullSecret") is None
        # The servers differ by host and port: nothing of that in the files.
        diff = subprocess.run(["diff", "-r", "-x", ".status", a.path, b.path],
                              capture_output=True, text=True, timeout=60)
        assert diff.returncode == 0, diff.stdout + diff.stderr
        # A real difference shows, and only it.
        server_update(other, "tf-1", {"description": "changed on B"})
        b2 = make_mount(other)
        diff = subprocess.run(["diff", "-r", "-x", ".status", a.path, b2.path],
                              capture_output=True, text=True, timeout=60)
        assert diff.returncode == 1
        changed = [line for line in diff.stdout.splitlines() if line.startswith(("<", ">"))]
        assert len(changed) == 2 and all("description" in line for line in changed), diff.stdout
        assert read_json(b2.p("tf-1", "spec.json"))["description"] == "changed on B"
    finally:
        other.stop()


def test_tail_f_follows_a_build_log(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    os.mkdir(m.p("followed"))
    spec = {"name": "followed", "displayName": "f", "description": None, "type": "both",
            "global": False, "useImagePullSecret": None,
            "imageSpec": {"baseImage": "jupyter/base-notebook",
                          "packages": {"apt": ["curl"], "pip": ["pytest"], "conda": []}}}
    assert save(m.p("followed", "spec.json"), json.dumps(spec, indent=2)) == 0
    emulator.advance(8)                     # Running: the first lines are there
    tail = subprocess.Popen(["tail", "-n", "+1", "-f", m.p("followed", "build.log")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen = b""
        os.set_blocking(tail.stdout.fileno(), False)

        def wait_for(text, timeout=10):
            nonlocal seen
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = tail.stdout.read()
                if chunk:
                    seen += chunk
                if text in seen:
                    return
                time.sleep(0.1)
            raise AssertionError(f"{text!r} not followed; tail printed {seen!r}")

        wait_for(b"FROM jupyter/base-notebook")
        assert b"Successfully tagged" not in seen
        emulator.advance(17)                # more lines while it runs
        wait_for(b"Collecting pytest")
        emulator.advance(10)                # done: the last lines
        wait_for(b"Successfully tagged")
        final = open(m.p("followed", "build.log"), "rb").read()
        assert seen == final, (seen, final)   # every line once, nothing cut
        assert tail.poll() is None          # still following, no error
    finally:
        tail.kill()
        tail.wait(timeout=10)
    assert b"truncated" not in tail.stderr.read()


SETTINGS = ("displayName", "description", "type", "url", "urlForGpu", "global")


def settings(emu, name):
    held = emu.state()["images"][name]
    spec = held["spec"]
    return ({k: spec.get(k) for k in ("displayName", "description", "type", "url",
                                      "urlForGpu")},
            held["global"], sorted(held["groups"]))


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def test_cp_r_copies_an_image_within_a_server(emulator, mnt):
    out = run(["cp", "-r", mnt.p("base-notebook"), mnt.p("bn-copy")])
    assert out.returncode == 0, out.stderr
    assert settings(emulator, "bn-copy") == settings(emulator, "base-notebook")
    assert settings(emulator, "bn-copy")[2], "the groups came along"
    assert read_json(mnt.p("bn-copy", "spec.json"))["name"] == "bn-copy"
    # Nothing of the copy's derived files reached the server or stayed here.
    assert sorted(os.listdir(mnt.p("bn-copy"))) == ["groups", "spec.json", "status.json"]
    # cp -a (times, modes) too, and Python's copytree.
    out = run(["cp", "-a", mnt.p("tf-1"), mnt.p("tf-1-a")])
    assert out.returncode == 0, out.stderr
    assert settings(emulator, "tf-1-a") == settings(emulator, "tf-1")
    out = run(["/usr/bin/python3", "-c",
               "import shutil, sys; shutil.copytree(*sys.argv[1:], dirs_exist_ok=True)",
               mnt.p("base-notebook"), mnt.p("bn-tree")])
    assert out.returncode == 0, out.stderr
    assert settings(emulator, "bn-tree") == settings(emulator, "base-notebook")


def test_promote_an_image_to_another_server(emulator, make_mount):
    prod = Emulator()
    try:
        a = make_mount(emulator)
        b = make_mount(prod)
        os.mkdir(a.p("promoted"))
        spec = {"name": "promoted", "displayName": "to promote", "description": "staging ok",
                "type": "both", "url": "registry.staging.example/team/img:1",
                "urlForGpu": "registry.staging.example/team/img:1-gpu", "global": False,
                "useImagePullSecret": None}
        assert save(a.p("promoted", "spec.json"), json.dumps(spec, indent=2)) == 0
        open(a.p("promoted", "groups", "example-group-1"), "a").close()
        # cp -r, rewriting the registry on the way (the README's recipe).
        out = run(["sh", "-c", 'set -e; tmp=$(mktemp -d); cp -r "$1" "$tmp/"; '
                   'sed -i "s#registry.staging.example#registry.prod.example#g" '
                   '"$tmp/promoted/spec.json"; cp -r "$tmp/promoted" "$2/"; rm -rf "$tmp"',
                   "sh", a.p("promoted"), b.path])
        assert out.returncode == 0, out.stderr
        held, is_global, groups = settings(prod, "promoted")
        assert held["url"] == "registry.prod.example/team/img:1"
        assert held["urlForGpu"] == "registry.prod.example/team/img:1-gpu"
        assert held["description"] == "staging ok" and groups == settings(emulator, "promoted")[2]
        # rsync -a, and rsync --inplace, to a third name each.
        for opts, name in ((["-a"], "promoted-rsync"), (["-a", "--inplace"], "promoted-inplace")):
            out = run(["rsync", *opts, a.p("promoted") + "/", b.p(name)])
            assert out.returncode == 0, (opts, out.stderr)
            assert settings(prod, name)[2] == groups, opts
            assert settings(prod, name)[0]["url"] == "registry.staging.example/team/img:1"
    finally:
        prod.stop()


def test_notes_of_a_refused_save_travel_harmlessly(emulator, make_mount):
    """An image directory holding .error and spec.json.rejected (a refused
    save) copies to another server with cp -r, cp -a and rsync -a: the notes
    are taken and dropped, the settings arrive."""
    prod = Emulator()
    try:
        a = make_mount(emulator)
        b = make_mount(prod)
        spec = read_json(a.p("tf-2", "spec.json"))
        assert save(a.p("tf-2", "spec.json"), json.dumps(dict(spec, colour="blue"))) == \
            errno.EINVAL
        assert {".error", "spec.json.rejected"} <= set(os.listdir(a.p("tf-2")))
        want = settings(emulator, "tf-2")[0]
        for cmd, name in ((["cp", "-r"], "copied-r"), (["cp", "-a"], "copied-a"),
                          (["rsync", "-a"], "copied-rsync")):
            src = a.p("tf-2") + ("/" if cmd[0] == "rsync" else "")
            out = run([*cmd, src, b.p(name)])
            assert out.returncode == 0, (cmd, out.stderr)
            assert settings(prod, name)[0] == want, cmd
            assert ".error" not in os.listdir(b.p(name)), cmd
    finally:
        prod.stop()


def test_a_group_missing_on_the_target_fails_the_copy_loudly(make_mount):
    staging = Emulator("--groups", "1")       # has synthetic-group-001; prod does not
    prod = Emulator()
    try:
        a = make_mount(staging)
        b = make_mount(prod)
        open(a.p("tf-1", "groups", "synthetic-group-001"), "a").close()
        prod.reset_stats()
        out = run(["cp", "-r", a.p("tf-1"), b.p("tf-1-staged")])
        assert out.returncode != 0
        assert "synthetic-group-001" in out.stderr, out.stderr
        # Whatever order cp copies in, nothing is made half-way: no image
        # without the group, and the reason names it.
        assert "tf-1-staged" not in prod.state()["images"]
        assert [k for k in prod.stats()["operations"] if k.endswith("Image")] == []
        reason = open(b.p("tf-1-staged", ".error")).read()
        assert "'synthetic-group-001'" in reason and "nothing was created" in reason, reason
        # The directory stays pending; removing it leaves nothing behind.
        os.rmdir(b.p("tf-1-staged"))
        assert not os.path.exists(b.p("tf-1-staged"))
        # When cp happens to copy spec.json first (it copies in the order
        # of inode numbers, here the order things were first looked up),
        # the image is made, then the group fails: cp fails naming it, and
        # .error says so.
        a2 = make_mount(staging)
        os.stat(a2.p("tf-1", "spec.json"))
        os.stat(a2.p("tf-1", "status.json"))
        os.stat(a2.p("tf-1", "groups"))
        out = run(["cp", "-r", a2.p("tf-1"), b.p("tf-1-later")])
        assert out.returncode != 0 and "synthetic-group-001" in out.stderr, out.stderr
        held = prod.state()["images"]["tf-1-later"]
        assert held["groups"] == []
        assert "no group is named 'synthetic-group-001'" in \
            open(b.p("tf-1-later", ".error")).read()
    finally:
        staging.stop()
        prod.stop()


def test_tar_restores_a_deleted_image(emulator, mnt, tmp_path):
    before = settings(emulator, "base-notebook")
    tarball = tmp_path / "bn.tar"
    assert run(["tar", "-cf", str(tarball), "-C", mnt.path, "base-notebook"]).returncode == 0
    os.rmdir(mnt.p("base-notebook"))
    assert "base-notebook" not in emulator.state()["images"]
    out = run(["tar", "-xf", str(tarball), "-C", mnt.path])
    assert out.returncode == 0, out.stderr
    assert settings(emulator, "base-notebook") == before


GIT = ["git", "-c", "user.name=admin", "-c", "user.email=admin@example.com"]


def backup_with_git(m, backup):
    """cp -r MNT ~/images-backup && git commit: the backup the README shows."""
    out = run(["cp", "-r", m.path, str(backup)])
    assert out.returncode == 0, out.stderr
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "images"]):
        out = run([*GIT, "-C", str(backup), *args])
        assert out.returncode == 0, out.stderr


def change_everything(emulator, m):
    """What happens after a backup: an edit on the server, a group
    connected and one disconnected, an image deleted, an image created."""
    server_update(emulator, "tf-1", {"description": "broken by a later change"})
    os.unlink(m.p("base-notebook", "groups", "example-group-1"))
    open(m.p("tf-2", "groups", "example-group-3"), "w").close()
    os.rmdir(m.p("pytorch-1"))
    os.mkdir(m.p("made-later"))
    spec = read_json(m.p("made-later", "spec.json"))
    spec["url"] = "docker.io/example/made-later:1"
    assert save(m.p("made-later", "spec.json"), json.dumps(spec)) == 0



def test_backup_with_git_and_restore_with_rsync_delete(emulator, make_mount, tmp_path):
    m = make_mount(emulator, ttl=1)
    backup = tmp_path / "images-backup"
    backup_with_git(m, backup)
    saved = {n: settings(emulator, n) for n in emulator.state()["images"]}
    change_everything(emulator, m)
    assert {n: settings(emulator, n) for n in emulator.state()["images"]} != saved
    wait_shown(m, "tf-1", "description", "broken by a later change")
    out = run(["rsync", "-a", "--delete", "--exclude", ".git",
               str(backup) + "/", m.path + "/"])
    assert out.returncode == 0, out.stderr
    # The server is back at the backup: edits undone, the deleted image
    # back, the new one deleted, group links as they were.
    assert {n: settings(emulator, n) for n in emulator.state()["images"]} == saved
    assert not os.path.exists(m.p("made-later"))
    # Run again: nothing to do, nothing sent.
    emulator.reset_stats()
    time.sleep(1.2)
    out = run(["rsync", "-a", "--delete", "--exclude", ".git",
               str(backup) + "/", m.path + "/"])
    assert out.returncode == 0, out.stderr
    assert mutations(emulator) == {}, ops(emulator)


def test_restore_with_cp_r_over_the_mount_keeps_git_local(emulator, make_mount, tmp_path):
    """cp -r backup/. MNT/ copies .git and .status too: the copy succeeds,
    .git stays on this machine (never an image), .status is unchanged."""
    m = make_mount(emulator, ttl=1)
    backup = tmp_path / "images-backup"
    backup_with_git(m, backup)
    saved = {n: settings(emulator, n) for n in ("tf-1", "base-notebook", "pytorch-1")}
    server_update(emulator, "tf-1", {"description": "broken by a later change"})
    os.unlink(m.p("base-notebook", "groups", "example-group-1"))
    os.rmdir(m.p("pytorch-1"))
    wait_shown(m, "tf-1", "description", "broken by a later change")
    out = run(["cp", "-r", str(backup) + "/.", m.path + "/"])
    assert out.returncode == 0, out.stderr
    for name, want in saved.items():
        assert settings(emulator, name) == want, name
    assert not [n for n in emulator.state()["images"] if n.startswith(".")]
    assert ".git" not in os.listdir(m.path)          # not an image
    assert os.path.isdir(m.p(".git", "objects"))     # but the copy's own view holds
    assert os.path.getsize(m.p(".git", "HEAD")) == 0  # and nothing of it is kept
    assert b"state: ok" in read(m.p(".status"))        # the mount's own, untouched
    # rsync without --exclude: its temporary files and renames, the same;
    # with --delete it also lists what it made under .git and keeps it.
    for opts in (["-a"], ["-a", "--delete"]):
        out = run(["rsync", *opts, str(backup) + "/", m.path + "/"])
        assert out.returncode == 0, (opts, out.stderr)
        for name, want in saved.items():
            assert settings(emulator, name) == want, (opts, name)
    assert sorted(os.listdir(m.p(".git"))) == sorted(os.listdir(backup / ".git"))


def test_only_copy_tools_write_beside_the_images(emulator, mnt):
    """A name at the top that begins with a dot is never an image: a person
    or a script that makes one is refused and told why (it would not last)."""
    assert errno_of(lambda: os.mkdir(mnt.p(".notes"))) == errno.EINVAL   # not an image name
    assert "alphanumeric" in read(mnt.p(".error")).decode()
    assert errno_of(lambda: open(mnt.p(".notes.txt"), "w").close()) == errno.EPERM
    assert "copy tool" in read(mnt.p(".error")).decode()
    assert not [n for n in emulator.state()["images"] if n.startswith(".")]


def test_dry_run_checks_and_plans_everything_and_sends_nothing(emulator, make_mount):
    m = make_mount(emulator, "dry_run")
    before = emulator.state()["images"]
    emulator.reset_stats()
    # A save: planned (the fresh read a save compares with happens), not sent.
    spec = read_json(m.p("tf-1", "spec.json"))
    spec["description"] = "what if"
    assert save(m.p("tf-1", "spec.json"), json.dumps(spec, indent=2)) == errno.ECANCELED
    line = open(m.p("tf-1", ".error")).read()
    assert "dry run (-o dry_run): nothing was sent; it would send updateImage" in line, line
    assert '"description":"what if"' in line
    # Bad content is refused as usual, before any plan.
    spec["type"] = "tpu"
    assert save(m.p("tf-1", "spec.json"), json.dumps(spec, indent=2)) == errno.EINVAL
    # A create, a group connect, a delete: each described, none sent.
    os.mkdir(m.p("would-be"))
    new = {"name": "would-be", "type": "cpu", "url": "example/w:1", "urlForGpu": "example/w:1"}
    assert save(m.p("would-be", "spec.json"), json.dumps(new)) == errno.ECANCELED
    assert "would send createImage" in open(m.p("would-be", ".error")).read()
    out = run(["touch", m.p("tf-2", "groups", "example-group-1")])
    assert out.returncode != 0
    assert "would send updateImage" in open(m.p("tf-2", ".error")).read()
    assert errno_of(lambda: os.rmdir(m.p("tf-2"))) == errno.ECANCELED
    # Nothing changed on the server; the log says what would have gone.
    assert [k for k in emulator.stats()["operations"] if k[0].islower() and
            k.endswith("Image") and k != "image"] == []
    assert emulator.state()["images"] == before
    assert "dry run: would send deleteImage" in m.log()



def test_changes_lists_what_this_mount_sent(emulator, mnt):
    assert open(mnt.p(".changes")).read() == ""
    assert ".changes" not in os.listdir(mnt.path)
    out = run(["sed", "-i", "s/TensorFlow 1.15.4 (Python 3.7)\",$/renamed by sed\",/",
               mnt.p("tf-1", "spec.json")])
    assert out.returncode == 0, out.stderr
    assert run(["touch", mnt.p("tf-2", "groups", "example-group-1")]).returncode == 0
    assert run(["rm", mnt.p("base-notebook", "groups", "example-group-2")]).returncode == 0
    os.mkdir(mnt.p("fresh"))
    assert save(mnt.p("fresh", "spec.json"),
                json.dumps({"type": "cpu", "url": "example/fresh:1"})) == 0
    os.rmdir(mnt.p("pytorch-1"))
    spec = read_json(mnt.p("tf-2", "spec.json"))
    spec["type"] = "tpu"                      # refused before sending: not a change
    assert save(mnt.p("tf-2", "spec.json"), json.dumps(spec)) == errno.EINVAL
    lines = open(mnt.p(".changes")).read().splitlines()
    assert len(lines) == 5, lines
    # sed's pattern matches both lines that end in that text.
    assert 'tf-1 updateImage displayName: "TensorFlow 1.15.4 (Python 3.7)" -> ' \
           '"renamed by sed"; description: "TensorFlow 1.15.4 (Python 3.7)" -> ' \
           '"renamed by sed" (by sed, pid ' in lines[0], lines[0]
    assert lines[0].endswith(": ok")
    assert "tf-2 updateImage groups: +example-group-1 (by touch" in lines[1]
    assert "base-notebook updateImage groups: -example-group-2 (by rm" in lines[2]
    assert "fresh createImage type: 'cpu'; url: 'example/fresh:1'" in lines[3]
    assert "pytorch-1 deleteImage (by " in lines[4] and lines[4].endswith(": ok")
    # What the server did matches each line.
    state = emulator.state()["images"]
    assert "pytorch-1" not in state and "fresh" in state
    assert os.stat(mnt.p(".changes")).st_size == len(open(mnt.p(".changes"), "rb").read())


# ------------------------------------------------------------ history, undo

def versions(m, image):
    return sorted(os.listdir(m.p(image, ".history")))


def test_history_keeps_what_was_changed_and_cp_undoes_it(emulator, make_mount, tmp_path):
    m = make_mount(emulator, f"history_dir={tmp_path}", ttl=1)
    spec_path = m.p("tf-1", "spec.json")
    original = read(spec_path)
    assert versions(m, "tf-1") == []                 # nothing changed here yet
    # A save keeps the version it changes and the version it made.
    spec = json.loads(original)
    spec["description"] = "one"
    assert save(spec_path, json.dumps(spec)) == 0
    assert len(versions(m, "tf-1")) == 2
    # Another admin's change is kept when this mount next shows it ...
    server_update(emulator, "tf-1", {"description": "two"})
    wait_shown(m, "tf-1", "description", "two")
    # ... and sed -i builds on it.
    out = run(["sed", "-i", 's/"displayName": "[^"]*"/"displayName": "sed was here"/', spec_path])
    assert out.returncode == 0, out.stderr
    names = versions(m, "tf-1")
    assert len(names) == 4, names
    texts = [read(m.p("tf-1", ".history", n)) for n in names]
    assert texts[0] == original
    assert [json.loads(t)["description"] for t in texts] == [
        json.loads(original)["description"], "one", "two", "two"]
    assert json.loads(texts[3])["displayName"] == "sed was here"
    # Names are times (UTC, ms), in order; files are read-only.
    assert all(n.endswith("Z.json") and n[4] == "-" and n[10] == "T" for n in names)
    assert errno_of(lambda: open(m.p("tf-1", ".history", names[0]), "w").close()) == errno.EACCES
    assert errno_of(lambda: os.unlink(m.p("tf-1", ".history", names[0]))) == errno.EPERM
    assert errno_of(lambda: os.rmdir(m.p("tf-1", ".history"))) == errno.EPERM
    # Not part of the image directory: copies, backups and diffs skip it.
    assert ".history" not in os.listdir(m.p("tf-1"))
    # Undo: copy the first version back.
    out = run(["cp", m.p("tf-1", ".history", names[0]), spec_path])
    assert out.returncode == 0, out.stderr
    held = emulator.state()["images"]["tf-1"]["spec"]
    assert held["description"] == json.loads(original)["description"]
    assert held["displayName"] == json.loads(original)["displayName"]
    # On disk, per server, and still there for the next mount.
    server_dirs = os.listdir(tmp_path)
    assert len(server_dirs) == 1 and "api_graphql" in server_dirs[0]
    on_disk = sorted(os.listdir(tmp_path / server_dirs[0] / "tf-1"))
    assert on_disk == versions(m, "tf-1") and len(on_disk) == 5
    problems, log = m.unmount()
    assert not problems, log
    m2 = make_mount(emulator, f"history_dir={tmp_path}")
    assert versions(m2, "tf-1") == on_disk


def test_reading_alone_keeps_no_history(emulator, make_mount, tmp_path):
    """Reading every spec.json of a server writes nothing to disk; the
    history is bounded by -o history_keep."""
    m = make_mount(emulator, f"history_dir={tmp_path}", "history_keep=3")
    for name in os.listdir(m.path):
        if not name.startswith("."):
            json.loads(read(m.p(name, "spec.json")))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    spec_path = m.p("tf-2", "spec.json")
    for i in range(5):
        spec = read_json(spec_path)
        spec["description"] = f"edit {i}"
        assert save(spec_path, json.dumps(spec)) == 0
    names = versions(m, "tf-2")
    assert len(names) == 3
    assert [json.loads(read(m.p("tf-2", ".history", n)))["description"] for n in names] == [
        "edit 2", "edit 3", "edit 4"]


def test_no_history_when_asked(emulator, make_mount, tmp_path):
    m = make_mount(emulator, f"history_dir={tmp_path}", "history_keep=0")
    spec = read_json(m.p("tf-2", "spec.json"))
    spec["description"] = "not kept"
    assert save(m.p("tf-2", "spec.json"), json.dumps(spec)) == 0
    assert not os.path.exists(m.p("tf-2", ".history"))
    assert list(tmp_path.iterdir()) == []
