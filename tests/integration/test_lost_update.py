"""A lost update: a program reads spec.json, another admin changes the image
on the server, the mount's snapshot renews (ttl=1), and only then does the
program write back the text it made from what it read.  Its save must be
compared with what it READ, so the other admin's change survives (a
different field) or the save is refused with EBUSY (the same field)."""
import errno
import json
import os
import subprocess
import sys
import textwrap
import time

from phfs_harness import Emulator, read, read_json
from util import Tmux, need, server_update, wait_shown

# The writer: reads spec.json, says so, waits for a line on stdin, then
# writes back its text with the changes given in argv[2] (JSON), either in
# place with O_TRUNC or as sed -i does (a temp file in the same directory
# renamed over spec.json).  Prints "ok" or the errno name.
WRITER = textwrap.dedent("""
    import errno, json, os, sys
    path, changes, how = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    with open(path) as f:
        spec = json.load(f)
    print("read", flush=True)
    sys.stdin.readline()
    spec.update(changes)
    text = json.dumps(spec, indent=2) + "\\n"
    try:
        if how == "trunc":
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        else:
            tmp = os.path.join(os.path.dirname(path), "sedAbC123")
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, path)
        print("ok", flush=True)
    except OSError as e:
        print(errno.errorcode[e.errno], flush=True)
""")



def write_after_change(emulator, mnt, how, changes, theirs, image_id="tf-2", meanwhile=None):
    w = subprocess.Popen([sys.executable, "-c", WRITER, mnt.p(image_id, "spec.json"),
                          json.dumps(changes), how],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline().strip() == "read"
        server_update(emulator, image_id, theirs)
        field, value = next(iter(theirs.items()))
        wait_shown(mnt, image_id, field, value)
        if meanwhile:
            meanwhile()
        time.sleep(1.2)                       # past ttl once more
        w.stdin.write("go\n")
        w.stdin.flush()
        out = w.stdout.readline().strip()
        assert w.wait(timeout=30) == 0
        return out
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()


def test_write_in_place_keeps_the_other_admins_change(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    assert write_after_change(emulator, m, "trunc", {"displayName": "mine"},
                              {"description": "the other admin's"}) == "ok"
    st = emulator.image_state("tf-2")["spec"]
    assert st["displayName"] == "mine"
    assert st["description"] == "the other admin's"


def test_temp_file_renamed_over_keeps_the_other_admins_change(emulator, make_mount):
    m = make_mount(emulator, ttl=1)
    assert write_after_change(emulator, m, "rename", {"displayName": "mine"},
                              {"description": "the other admin's"}) == "ok"
    st = emulator.image_state("tf-2")["spec"]
    assert st["displayName"] == "mine"
    assert st["description"] == "the other admin's"
    assert "sedAbC123" not in os.listdir(m.p("tf-2"))


def test_sed_i_after_a_change_keeps_it(emulator, make_mount):
    """The real sed -i: it reads spec.json and renames its temp file over it
    at once, so the other admin's change has to be in what it read; what
    matters is that sed's save does not revert it."""
    m = make_mount(emulator, ttl=1)
    server_update(emulator, "tf-2", {"description": "the other admin's"})
    wait_shown(m, "tf-2", "description", "the other admin's")
    subprocess.run(["sed", "-i", 's/"displayName": ".*"/"displayName": "by sed"/',
                    m.p("tf-2", "spec.json")], check=True, timeout=30)
    st = emulator.image_state("tf-2")["spec"]
    assert st["displayName"] == "by sed"
    assert st["description"] == "the other admin's"


def test_same_field_changed_by_both_is_ebusy(emulator, make_mount):
    for how in ("trunc", "rename"):
        m = make_mount(emulator, ttl=1)
        out = write_after_change(emulator, m, how, {"description": f"mine ({how})"},
                                 {"description": f"theirs ({how})"})
        assert out == "EBUSY", how
        assert emulator.image_state("tf-2")["spec"]["description"] == f"theirs ({how})"
        err = read(m.p("tf-2", ".error")).decode()
        assert "description" in err and "EBUSY" in err
        assert json.loads(read(m.p("tf-2", "spec.json.rejected")))["description"] == \
            f"mine ({how})"


def test_after_a_conflict_a_fresh_read_saves(emulator, make_mount):
    """The refused process re-reads (as vim's :e! does) and saves: that
    save is compared with what it read the second time."""
    m = make_mount(emulator, ttl=1)
    path = m.p("tf-2", "spec.json")
    first = read_json(path)
    server_update(emulator, "tf-2", {"description": "theirs"})
    wait_shown(m, "tf-2", "description", "theirs")
    time.sleep(1.2)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, json.dumps(dict(first, description="mine")).encode())
    try:
        os.close(fd)
        raise AssertionError("the conflicting save was accepted")
    except OSError as e:
        assert e.errno == errno.EBUSY
    again = read_json(path)
    assert again["description"] == "theirs"
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, json.dumps(dict(again, description="mine after all")).encode())
    os.close(fd)
    assert emulator.image_state("tf-2")["spec"]["description"] == "mine after all"


def test_vim_keeps_a_change_made_while_it_was_open(emulator, make_mount):
    """vim reads spec.json when it starts and writes much later (re-reading
    the file for its backup first): its save is compared with what it
    showed when it started."""
    m = make_mount(emulator, ttl=1)
    need("vim")
    t = Tmux(f"vim -u NONE -i NONE -N {m.p('tf-2', 'spec.json')}", cwd=m.p("tf-2"))
    try:
        t.wait_for('"name"')
        server_update(emulator, "tf-2", {"description": "the other admin's"})
        wait_shown(m, "tf-2", "description", "the other admin's")
        time.sleep(1.2)
        t.keys(':%s/"displayName": "[^"]*"/"displayName": "by vim"/', "Enter")
        t.keys(":w", "Enter")
        # vim sees the newer mtime and asks; the user says yes, and the
        # save must still keep the other admin's change.
        t.wait_for("Do you really want to write")
        t.keys("y")
        t.wait_for("B written")
        t.keys(":q", "Enter")
        t.wait_exit()
    finally:
        t.kill()
    st = emulator.image_state("tf-2")["spec"]
    assert st["displayName"] == "by vim"
    assert st["description"] == "the other admin's"


def test_a_reader_of_every_image_does_not_evict_the_writer(make_mount):
    """grep -r over 400 images (more than the 256 remembered readers)
    meanwhile: the writer's memory of what it read survives."""
    emu = Emulator("--images", "400")
    try:
        m = make_mount(emu, ttl=1)

        def grep_everything():
            r = subprocess.run(["grep", "-rl", "--include=spec.json", "name", m.path],
                               capture_output=True, text=True, timeout=60)
            assert r.stdout.count("spec.json") >= 400

        assert write_after_change(emu, m, "trunc", {"displayName": "mine"},
                                  {"description": "the other admin's"},
                                  meanwhile=grep_everything) == "ok"
        st = emu.image_state("tf-2")["spec"]
        assert st["displayName"] == "mine"
        assert st["description"] == "the other admin's"
    finally:
        emu.stop()
