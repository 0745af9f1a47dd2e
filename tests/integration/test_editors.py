"""Every common way of saving, driven with the real program on a real mount:
the change arrives on the server, and no scratch file reaches it."""
import json
import os
import shlex
import subprocess
import sys
import tempfile

import pytest

from phfs_harness import read, read_json
from util import Tmux, mutations, need, save

OLD = "TensorFlow 1.15.4 (Python 3.7)"  # tf-1's description


def check_saved(emulator, mnt, new, image_id="tf-1"):
    st = emulator.state()
    assert st["images"][image_id]["spec"]["description"] == new
    # No editor scratch file became an image, and nothing else changed.
    assert set(st["images"]) == {"base-notebook", "pytorch-1", "tf-1", "tf-2"}
    assert mutations(emulator) == {"updateImage": 1}
    assert read_json(mnt.p(image_id, "spec.json"))["description"] == new


def leftovers(mnt, image_id="tf-1"):
    """Scratch files the tool left behind in the image directory."""
    return sorted(set(os.listdir(mnt.p(image_id))) -
                  {"spec.json", "status.json", "groups", ".error", "spec.json.rejected"})


def vim(mnt, *settings, new="edited with vim", image_id="tf-1"):
    need("vim")
    cmd = ["vim", "-u", "NONE", "-i", "NONE", "-N"]
    for s in settings:
        cmd += ["-c", f"set {s}"]
    t = Tmux(shlex.join(cmd + [mnt.p(image_id, "spec.json")]), cwd=mnt.p(image_id))
    try:
        t.wait_for('"name"')
        t.keys(f":%s/{OLD.replace('(', '.').replace(')', '.')}/{new}/", "Enter")
        t.keys(":w", "Enter")
        t.wait_for("written")
        t.keys(":q", "Enter")
        t.wait_exit()
    finally:
        t.kill()


def test_vim_defaults(emulator, mnt):
    emulator.reset_stats()
    vim(mnt)
    check_saved(emulator, mnt, "edited with vim")
    assert leftovers(mnt) == []   # swap file and 4913 probe gone


@pytest.mark.parametrize("mode", ["yes", "no"])
def test_vim_backupcopy(emulator, mnt, mode):
    emulator.reset_stats()
    vim(mnt, f"backupcopy={mode}", "backup")
    check_saved(emulator, mnt, "edited with vim")


def test_vim_refused_save_says_so(emulator, mnt):
    need("vim")
    before = emulator.state()
    t = Tmux(f"vim -u NONE -i NONE -N {mnt.p('tf-1', 'spec.json')}", cwd=mnt.p("tf-1"))
    try:
        t.wait_for('"name"')
        t.keys(':%s/"both"/"tpu"/', "Enter")
        t.keys(":w", "Enter")
        t.wait_for("E")   # vim prints an error (E667 Fsync failed or E512)
        t.keys(":q!", "Enter")
        t.wait_exit()
    finally:
        t.kill()
    assert emulator.state() == before
    assert "type should be one of" in read(mnt.p("tf-1", ".error")).decode()
    assert '"tpu"' in read(mnt.p("tf-1", "spec.json.rejected")).decode()


def test_nano(emulator, mnt):
    need("nano")
    emulator.reset_stats()
    t = Tmux(f"nano --ignorercfiles {mnt.p('tf-1', 'spec.json')}", cwd=mnt.p("tf-1"))
    try:
        t.wait_for('"name"')
        t.keys("C-\\")
        t.wait_for("Search")
        t.literal("1.15.4 (Python")
        t.keys("Enter")
        t.wait_for("Replace with")
        t.literal("edited with nano (Python")
        t.keys("Enter")
        t.wait_for("Replace this instance")
        t.keys("a")
        t.keys("C-s")
        t.wait_for("Wrote")
        t.keys("C-x")
        t.wait_exit()
    finally:
        t.kill()
    check_saved(emulator, mnt, "TensorFlow edited with nano (Python 3.7)")


def test_emacs_batch(emulator, mnt):
    need("emacs")
    emulator.reset_stats()
    home = tempfile.mkdtemp(prefix="phfs-emacs-home-")
    # displayName holds the same text: replace the description's only.
    lisp = ('(progn (find-file "%s") (goto-char (point-min)) '
            '(search-forward "\\"description\\": \\"%s") '
            '(replace-match "\\"description\\": \\"edited with emacs" t t) '
            '(save-buffer) (kill-emacs 0))' % (mnt.p("tf-1", "spec.json"), OLD))
    r = subprocess.run(["emacs", "-Q", "--batch", "--eval", lisp], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, HOME=home))
    assert r.returncode == 0, r.stderr
    check_saved(emulator, mnt, "edited with emacs")


def test_sed_in_place(emulator, mnt):
    emulator.reset_stats()
    subprocess.run(["sed", "-i", f"s/{OLD.replace('(', '.').replace(')', '.')}/edited with sed/",
                    mnt.p("tf-1", "spec.json")], check=True, timeout=30)
    check_saved(emulator, mnt, "edited with sed")
    assert leftovers(mnt) == []


def test_write_temp_then_rename(emulator, mnt):
    """What VS Code's atomic save, gedit and Python's os.replace do."""
    emulator.reset_stats()
    spec = read_json(mnt.p("tf-1", "spec.json"))
    spec["description"] = "edited with os.replace"
    tmp = mnt.p("tf-1", ".spec.json.tmp1234")
    with open(tmp, "w") as f:
        json.dump(spec, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, mnt.p("tf-1", "spec.json"))
    check_saved(emulator, mnt, "edited with os.replace")
    assert leftovers(mnt) == []


def test_rename_of_bad_content_fails_and_keeps_the_temp(emulator, mnt):
    before = emulator.state()
    tmp = mnt.p("tf-1", "new.json")
    with open(tmp, "w") as f:
        f.write('{"name": "tf-1", "type": "tpu"}')
    with pytest.raises(OSError):
        os.replace(tmp, mnt.p("tf-1", "spec.json"))
    assert emulator.state() == before
    assert os.path.exists(tmp)


def test_cp_over_spec(emulator, mnt, tmp_path):
    emulator.reset_stats()
    spec = read_json(mnt.p("tf-1", "spec.json"))
    spec["description"] = "edited with cp"
    src = tmp_path / "spec.json"
    src.write_text(json.dumps(spec, indent=2))
    subprocess.run(["cp", str(src), mnt.p("tf-1", "spec.json")], check=True, timeout=30)
    check_saved(emulator, mnt, "edited with cp")


def test_shell_redirection_and_tee(emulator, mnt, tmp_path):
    spec = read_json(mnt.p("tf-1", "spec.json"))
    spec["description"] = "edited with >"
    src = tmp_path / "a.json"
    src.write_text(json.dumps(spec))
    emulator.reset_stats()
    subprocess.run(["sh", "-c", f"cat {src} > {mnt.p('tf-1', 'spec.json')}"], check=True,
                   timeout=30)
    check_saved(emulator, mnt, "edited with >")

    spec["description"] = "edited with tee"
    emulator.reset_stats()
    subprocess.run(["tee", mnt.p("tf-1", "spec.json")], input=json.dumps(spec), text=True,
                   check=True, timeout=30, capture_output=True)
    check_saved(emulator, mnt, "edited with tee")

    # >> of white space: valid JSON, unchanged, nothing sent.
    emulator.reset_stats()
    subprocess.run(["sh", "-c", f"echo >> {mnt.p('tf-1', 'spec.json')}"], check=True,
                   timeout=30)
    assert emulator.stats()["total"] == 0
    # >> of more JSON: refused, and the shell cannot say so, but .error does.
    before = emulator.state()
    subprocess.run(["sh", "-c", f"echo '{{\"x\": 1}}' >> {mnt.p('tf-1', 'spec.json')}"],
                   timeout=30)
    assert emulator.state() == before
    assert "JSON" in read(mnt.p("tf-1", ".error")).decode()
    assert read(mnt.p("tf-1", "spec.json.rejected")).decode().endswith('{"x": 1}\n')


def test_vim_creates_a_new_image(emulator, mnt):
    """mkdir, then fill in the template with vim and :wq: the image exists."""
    need("vim")
    os.mkdir(mnt.p("from-vim"))
    emulator.reset_stats()
    t = Tmux(f"vim -u NONE -i NONE -N {mnt.p('from-vim', 'spec.json')}", cwd=mnt.p("from-vim"))
    try:
        t.wait_for('"name"')
        t.keys(':%s/"url": null/"url": "jupyter\\/base-notebook:latest"/', "Enter")
        t.keys(":wq", "Enter")
        t.wait_exit()
    finally:
        t.kill()
    st = emulator.image_state("from-vim")
    assert st is not None and st["spec"]["url"] == "jupyter/base-notebook:latest"
    assert mutations(emulator) == {"createImage": 1}
    assert leftovers(mnt, "from-vim") == []
    assert read_json(mnt.p("from-vim", "status.json"))["isReady"] is True


def test_copying_an_image_into_a_new_directory(emulator, mnt, tmp_path):
    """The way to 'rename': copy the settings into a new directory; the
    new image's name is the directory's, whatever the copied name says."""
    os.mkdir(mnt.p("tf-1-copy"))
    spec = read_json(mnt.p("tf-1", "spec.json"))
    assert spec["name"] == "tf-1"
    src = tmp_path / "spec.json"
    src.write_text(json.dumps(spec, indent=2))
    subprocess.run(["cp", str(src), mnt.p("tf-1-copy", "spec.json")], check=True, timeout=30)
    assert read_json(mnt.p("tf-1-copy", "spec.json"))["name"] == "tf-1-copy"
    assert "tf-1" in emulator.state()["images"]          # the original is untouched
    st = emulator.image_state("tf-1-copy")["spec"]
    assert st["url"] == spec["url"] and st["displayName"] == spec["displayName"]
