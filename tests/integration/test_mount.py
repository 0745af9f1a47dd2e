"""Mount-time behaviour: where the endpoint and token come from, and the
clear one-line refusals when the server cannot be used."""
import json
import os
import subprocess
import tempfile

import pytest

from phfs_harness import USER_TOKEN, Emulator, primehubfs_binary


def try_mount(args, env_extra, timeout=30):
    """Run primehubfs expecting it to refuse; returns (code, output)."""
    d = tempfile.mkdtemp(prefix="phfs-mnt-")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PRIMEHUB_API_TOKEN", "PRIMEHUB_API_ENDPOINT")}
    env["HOME"] = tempfile.mkdtemp(prefix="phfs-home-")
    env.update(env_extra)
    try:
        r = subprocess.run([primehubfs_binary(), *[a if a != "MNT" else d for a in args], "-f"],
                           capture_output=True, text=True, timeout=timeout, env=env,
                           stdin=subprocess.DEVNULL)
        assert not os.path.ismount(d)
        return r.returncode, r.stdout + r.stderr
    finally:
        if os.path.ismount(d):
            subprocess.run(["fusermount3", "-uz", d])
        os.rmdir(d)


def test_bad_token_is_refused_at_mount(emulator):
    code, out = try_mount([emulator.endpoint, "MNT"], {"PRIMEHUB_API_TOKEN": "wrong"})
    assert code != 0
    lines = [l for l in out.splitlines() if l.strip()]
    assert len(lines) == 1, out
    assert "Invalid API Token" in lines[0] and emulator.endpoint in lines[0]


def test_unreachable_endpoint_is_refused_at_mount():
    code, out = try_mount(["http://127.0.0.1:9/api/graphql", "MNT"],
                          {"PRIMEHUB_API_TOKEN": "x"})
    assert code != 0
    assert len(out.strip().splitlines()) == 1, out
    assert "127.0.0.1:9" in out and "connect" in out.lower()


def test_non_admin_is_refused_at_mount(emulator):
    code, out = try_mount([emulator.endpoint, "MNT"], {"PRIMEHUB_API_TOKEN": USER_TOKEN})
    assert code != 0
    assert "not a PrimeHub administrator" in out


def test_missing_endpoint_and_token_explained():
    code, out = try_mount(["MNT"], {})
    assert code != 0 and "no PrimeHub endpoint" in out
    code, out = try_mount(["http://127.0.0.1:9/api/graphql", "MNT"], {})
    assert code != 0 and "no API token" in out


def test_help_and_version():
    r = subprocess.run([primehubfs_binary(), "--help"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0
    for word in ("token_file", "ttl=", "config=", ".error", "spec.json.rejected"):
        assert word in r.stdout
    r = subprocess.run([primehubfs_binary(), "--version"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0 and "primehubfs version" in r.stdout


def test_poll_us_out_of_range_is_refused(emulator):
    code, out = try_mount([emulator.endpoint, "MNT", "-o", "poll_us=20000"],
                          {"PRIMEHUB_API_TOKEN": emulator.token})
    assert code != 0
    lines = [l for l in out.splitlines() if l.strip()]
    assert len(lines) == 1 and "poll_us=20000" in lines[0] and "0 to 10000" in lines[0], out


def daemon_environ(m):
    """The daemon's environment (readable by root only: it is not dumpable)."""
    with open("/proc/%d/environ" % m.proc.pid, "rb") as f:
        return dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)


def test_the_daemon_asks_for_huge_pages_unless_told_otherwise(emulator, make_mount):
    """It starts itself once more (same pid) with malloc's huge-page tunables,
    and leaves a GLIBC_TUNABLES it was given alone.  (glibc rewrites the
    variable in place at start, keeping only the tunables children inherit:
    arena_max and mxfast are applied but no longer shown.)"""
    m = make_mount(emulator, env={"GLIBC_TUNABLES": None})
    assert b"glibc.malloc.hugetlb=1" in daemon_environ(m).get(b"GLIBC_TUNABLES", b"")
    assert "tf-1" in os.listdir(m.path)
    mine = make_mount(emulator, env={"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})
    assert daemon_environ(mine).get(b"GLIBC_TUNABLES") == b"glibc.malloc.hugetlb=0"
    assert "tf-1" in os.listdir(mine.path)


def write_config(path, endpoint, token):
    with open(path, "w") as f:
        json.dump({"endpoint": endpoint, "api-token": token,
                   "group": {"id": None, "name": None, "displayName": None}}, f)


def test_config_file_env_and_token_file_precedence(emulator, make_mount, tmp_path):
    home = tmp_path / "home"
    (home / ".primehub").mkdir(parents=True)
    default_cfg = home / ".primehub" / "config.json"
    token_file = tmp_path / "token"
    other_cfg = tmp_path / "other.json"

    # 1. Everything from ~/.primehub/config.json.
    write_config(default_cfg, emulator.endpoint, emulator.token)
    m = make_mount(emulator, endpoint=False,
                   env={"HOME": str(home), "PRIMEHUB_API_TOKEN": None})
    assert "tf-2" in os.listdir(m.path)

    # 2. token_file beats the config file's api-token.
    write_config(default_cfg, emulator.endpoint, "wrong-token")
    token_file.write_text(emulator.token + "\n")
    m = make_mount(emulator, f"token_file={token_file}", endpoint=False,
                   env={"HOME": str(home), "PRIMEHUB_API_TOKEN": None})
    assert "tf-2" in os.listdir(m.path)

    # 3. PRIMEHUB_API_TOKEN beats the config file's api-token...
    m = make_mount(emulator, endpoint=False,
                   env={"HOME": str(home), "PRIMEHUB_API_TOKEN": emulator.token})
    assert "tf-2" in os.listdir(m.path)
    # ...and -o token_file (the command line) beats PRIMEHUB_API_TOKEN.
    m = make_mount(emulator, f"token_file={token_file}", endpoint=False,
                   env={"HOME": str(home), "PRIMEHUB_API_TOKEN": "wrong-env-token"})
    assert "tf-2" in os.listdir(m.path)
    assert "token from token_file" in m.log(), m.log()
    # A token_file that cannot be read is refused, never replaced by the
    # environment's (good) token.
    code, out = try_mount(["MNT", "-o", f"token_file={tmp_path}/nonexistent"],
                          {"HOME": str(home), "PRIMEHUB_API_TOKEN": emulator.token})
    assert code == 1 and "nonexistent" in out and "No such file" in out, out

    # 4. PRIMEHUB_API_ENDPOINT beats the config file's endpoint...
    write_config(default_cfg, "http://127.0.0.1:9/api/graphql", emulator.token)
    m = make_mount(emulator, endpoint=False,
                   env={"HOME": str(home), "PRIMEHUB_API_TOKEN": None,
                        "PRIMEHUB_API_ENDPOINT": emulator.endpoint})
    assert "tf-2" in os.listdir(m.path)
    # ...and the command line beats PRIMEHUB_API_ENDPOINT.
    m = make_mount(emulator, env={"HOME": str(home), "PRIMEHUB_API_TOKEN": None,
                                  "PRIMEHUB_API_ENDPOINT": "http://127.0.0.1:9/api/graphql"})
    assert "tf-2" in os.listdir(m.path)

    # 5. -o config= names another file.
    write_config(other_cfg, emulator.endpoint, emulator.token)
    m = make_mount(emulator, f"config={other_cfg}", endpoint=False,
                   env={"HOME": str(home), "PRIMEHUB_API_TOKEN": None})
    assert "tf-2" in os.listdir(m.path)


def test_sigterm_unmounts_cleanly(emulator, make_mount):
    import signal
    import time
    m = make_mount(emulator)
    assert "tf-2" in os.listdir(m.path)
    # The kernel sends RELEASEDIR after close() returns; let it arrive, or
    # libfuse (not primehubfs) leaks its handle of the listing at exit and
    # the sanitizer run reports it.
    time.sleep(0.3)
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(timeout=10) == 0
    deadline = time.monotonic() + 5
    while os.path.ismount(m.path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.ismount(m.path)


def test_sigterm_with_a_file_open(emulator, make_mount):
    """Files whose release never comes (the loop ends first) are still
    freed: under the sanitizers a leak fails the unmount check.  (Open
    directories are freed the same way, but libfuse leaks its own handle of
    one, so no test holds a directory open across the end.)"""
    import signal
    m = make_mount(emulator)
    f = open(m.p("tf-1", "spec.json"), "rb")
    assert f.read(1) == b"{"
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(timeout=10) == 0
    try:
        f.close()
    except OSError:
        pass      # the mount is gone: ENOTCONN


def test_a_healthy_mount_logs_no_warning(emulator, make_mount):
    """Quiet when healthy: no warning from us or from libfuse (3.14 used to
    complain about a thread limit nobody set at every mount)."""
    m = make_mount(emulator)
    assert "tf-2" in os.listdir(m.path)
    log = m.log()
    assert "Ignoring invalid" not in log
    assert "warning" not in log.lower(), log


def test_the_source_names_the_server(emulator, make_mount):
    """findmnt, df and mount show which server is mounted, so two mounts of
    two servers can be told apart."""
    m = make_mount(emulator)
    out = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", m.path],
                         capture_output=True, text=True, timeout=10).stdout.split()
    assert out == [emulator.endpoint, "fuse.primehubfs"]


# ------------------------------------------------ refusals at mount time

def one_line(out):
    lines = [l for l in out.splitlines() if l.strip()]
    assert len(lines) == 1, out
    return lines[0]


def test_endpoint_without_a_mount_point_is_explained(emulator):
    code, out = try_mount([emulator.endpoint], {"PRIMEHUB_API_TOKEN": emulator.token})
    assert code == 1
    assert "no mount point given" in one_line(out), out


def test_a_regular_file_as_mount_point_is_refused(emulator, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    code, out = try_mount([emulator.endpoint, str(f)], {"PRIMEHUB_API_TOKEN": emulator.token})
    assert code == 1
    assert "not a directory" in one_line(out) and str(f) in out
    assert not os.path.ismount(f) and f.read_text() == "x"


def test_a_non_empty_mount_point_is_refused_unless_nonempty(emulator):
    import time
    d = tempfile.mkdtemp(prefix="phfs-full-")
    keep = os.path.join(d, "keep.txt")
    open(keep, "w").close()
    proc = None
    try:
        code, out = try_mount([emulator.endpoint, d], {"PRIMEHUB_API_TOKEN": emulator.token})
        assert code == 1
        assert "not empty" in one_line(out) and "-o nonempty" in out
        assert not os.path.ismount(d)
        assert emulator.stats()["total"] == 0  # refused before asking the server
        # With consent it mounts over the file (nonempty is ours: libfuse 3
        # would reject it as unknown).
        env = dict(os.environ, PRIMEHUB_API_TOKEN=emulator.token)
        proc = subprocess.Popen([primehubfs_binary(), emulator.endpoint, d, "-f", "-o",
                                 "nonempty"], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 15
        while not os.path.ismount(d) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.ismount(d), proc.poll()
        assert "tf-2" in os.listdir(d) and "keep.txt" not in os.listdir(d)
    finally:
        if os.path.ismount(d):
            subprocess.run(["fusermount3", "-u", d], timeout=10)
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if os.path.ismount(d):
            subprocess.run(["fusermount3", "-uz", d])
    assert proc.returncode == 0
    assert os.listdir(d) == ["keep.txt"]
    os.unlink(keep)
    os.rmdir(d)


def test_a_mounted_directory_is_not_mounted_again(emulator, make_mount):
    m = make_mount(emulator)
    assert "tf-2" in os.listdir(m.path)
    code, out = try_mount([emulator.endpoint, m.path], {"PRIMEHUB_API_TOKEN": emulator.token})
    assert code == 1
    assert "already a mount point" in one_line(out), out
    # Still one mount, still working.
    r = subprocess.run(["findmnt", "-rn", "-o", "TARGET", m.path], capture_output=True,
                       text=True, timeout=10)
    assert r.stdout.split() == [m.path]
    assert "tf-2" in os.listdir(m.path)


def test_endpoint_answering_404_gets_a_hint(emulator):
    code, out = try_mount([emulator.base + "/graphql", "MNT"],
                          {"PRIMEHUB_API_TOKEN": emulator.token})
    assert code == 1
    line = one_line(out)
    assert "404" in line and "does the URL end in /api/graphql?" in line, line


# ------------------------------------------------------------ honest df

def test_df_counts_images_and_the_scratch_budget(emulator, make_mount):
    m = make_mount(emulator)
    emulator.reset_stats()
    # Before anything was fetched: no images known, and df fetches nothing.
    sv = os.statvfs(m.path)
    assert sv.f_files == 0 and emulator.stats()["total"] == 0
    images = [n for n in os.listdir(m.path) if not n.startswith(".")]
    assert len(images) == 4
    emulator.reset_stats()
    sv = os.statvfs(m.path)
    assert emulator.stats()["total"] == 0
    assert (sv.f_files, sv.f_ffree, sv.f_favail) == (len(images), 0, 0)
    # Blocks: the budget of local scratch files (128 MiB), free what is unused.
    assert sv.f_blocks * sv.f_frsize == 128 * 1024 * 1024
    assert sv.f_bavail == sv.f_bfree == sv.f_blocks
    with open(m.p("tf-1", "scratch.bin"), "wb") as f:
        f.write(b"x" * (1024 * 1024))
    sv2 = os.statvfs(m.path)
    assert sv.f_bavail - sv2.f_bavail == 1024 * 1024 // sv.f_frsize
    os.unlink(m.p("tf-1", "scratch.bin"))
    assert os.statvfs(m.path).f_bavail == sv.f_blocks
    # df -i (here its inode columns) shows the image count as the inodes used.
    out = subprocess.run(["df", "--output=itotal,iused", m.path], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == [str(len(images)), str(len(images))], out.stdout
    # A new image on the server shows after the next refresh, not before.
    assert emulator.stats()["total"] == 0
