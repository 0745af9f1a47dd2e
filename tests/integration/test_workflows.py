"""Workflows that move whole images between mounts and tools.

Two emulators stand for two PrimeHub servers (say staging and production);
each has its own mount."""
import json
import os
import subprocess
import time

from phfs_harness import Emulator, read_json
from util import save, server_update

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
