"""Who may act with the admin's token: access through the mount (kernel
permission checks, owners, modes, allow_other), the token itself (never in a
log, a file of the mount, the environment of the process or a core), TLS
verification, redirects, and the token reloaded from its file.

Tests that act as another user run a child as uid/gid 65534 (nobody) with
setpriv; the mount is root's (the suite runs as root)."""
import errno
import http.server
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time

import pytest

from phfs_harness import Emulator, TOKEN, primehubfs_binary, read, read_json
from util import mutations, save

import emulator_harness

NOBODY = 65534
IMAGE = "base-notebook"          # connected to example-group-1 and example-group-2
NEW_TOKEN = "rotated-admin-token-0123456789"


def need(tool):
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is needed for this test (Debian: util-linux / fuse3)", pytrace=False)
    return path


# A child run as nobody: performs the operations named on its command line
# and prints, per operation, "ok" or the errno name it got.
AS_OTHER = r"""
import errno, json, os, sys
mnt, image = sys.argv[1], sys.argv[2]
d = os.path.join(mnt, image)
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
def write_spec():
    with open(os.path.join(d, "spec.json"), "r+") as f:
        spec = json.load(f)
        spec["description"] = "changed by uid %d" % os.getuid()
        f.seek(0); f.truncate(); f.write(json.dumps(spec, indent=2))
def touch(p):
    open(p, "a").close()
out = {}
attempt("read_spec", lambda: json.load(open(os.path.join(d, "spec.json"))))
attempt("read_status", lambda: json.load(open(os.path.join(d, "status.json"))))
attempt("listdir", lambda: os.listdir(mnt))
for op in sys.argv[3:]:
    if op == "write_spec": attempt(op, write_spec)
    elif op == "mkdir": attempt(op, lambda: os.mkdir(os.path.join(mnt, "made-by-other")))
    elif op == "rmdir": attempt(op, lambda: os.rmdir(os.path.join(mnt, "tf-1")))
    elif op == "touch_group": attempt(op, lambda: touch(os.path.join(d, "groups", "example-group-3")))
    elif op == "touch_existing_group":
        attempt(op, lambda: os.utime(os.path.join(d, "groups", "example-group-1")))
    elif op == "rm_group": attempt(op, lambda: os.unlink(os.path.join(d, "groups", "example-group-2")))
    elif op == "rename_spec":
        attempt(op, lambda: os.rename(os.path.join(d, "spec.json"), os.path.join(d, "x.json")))
    elif op == "create_scratch": attempt(op, lambda: touch(os.path.join(d, "scratch.txt")))
    elif op == "chmod": attempt(op, lambda: os.chmod(os.path.join(d, "spec.json"), 0o666))
    elif op == "truncate": attempt(op, lambda: os.truncate(os.path.join(d, "spec.json"), 0))
print(json.dumps(out))
"""


def as_other(*argv, uid=NOBODY, timeout=30, **kw):
    setpriv = need("setpriv")
    return subprocess.run([setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           *argv], capture_output=True, text=True, timeout=timeout, **kw)


def other_user_ops(m, *ops):
    r = as_other("/usr/bin/python3", "-c", AS_OTHER, m.path, IMAGE, *ops, cwd="/")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def state_without_clock(emu):
    s = emu.state()
    s.pop("clock", None)
    return s


# --------------------------------------------------------------- access

def test_files_belong_to_the_mounting_user_and_modes_tell_the_truth(emulator, make_mount):
    m = make_mount(emulator)
    # scandir first, so the attributes come from READDIRPLUS, then stat.
    with os.scandir(m.p(IMAGE)) as it:
        listed = {e.name: e.stat(follow_symlinks=False) for e in it}
    for st in listed.values():
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert stat.S_IMODE(listed["spec.json"].st_mode) == 0o644
    assert stat.S_IMODE(listed["status.json"].st_mode) == 0o444
    assert stat.S_ISDIR(listed["groups"].st_mode) and stat.S_IMODE(listed["groups"].st_mode) == 0o755
    for p, mode in [(m.path, 0o755), (m.p(IMAGE), 0o755), (m.p(IMAGE, "groups"), 0o755),
                    (m.p(IMAGE, "groups", "example-group-1"), 0o644),
                    (m.p(IMAGE, "status.json"), 0o444), (m.p(IMAGE, "spec.json"), 0o644)]:
        st = os.stat(p)
        assert stat.S_IMODE(st.st_mode) == mode, p
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), p
    # The kernel enforces the modes now, for the owner too.
    with pytest.raises(PermissionError):
        open(m.p(IMAGE, "status.json"), "w")


def test_uid_gid_options_reach_stat_and_readdirplus(emulator, make_mount):
    m = make_mount(emulator, "uid=1234", "gid=5678")
    with os.scandir(m.p(IMAGE)) as it:
        listed = {e.name: e.stat(follow_symlinks=False) for e in it}
    assert {(st.st_uid, st.st_gid) for st in listed.values()} == {(1234, 5678)}
    with os.scandir(m.path) as it:
        assert {(e.stat().st_uid, e.stat().st_gid) for e in it} == {(1234, 5678)}
    st = os.stat(m.p(IMAGE, "spec.json"))
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert stat.S_IMODE(st.st_mode) == 0o644       # uid= does not change modes


def test_without_allow_other_other_users_cannot_even_look(emulator, make_mount):
    m = make_mount(emulator)
    r = as_other("/usr/bin/python3", "-c", "import os, sys; os.listdir(sys.argv[1])", m.path,
                 cwd="/")
    assert r.returncode != 0 and "PermissionError" in r.stderr


MUTATING_OPS = ["write_spec", "mkdir", "rmdir", "touch_group", "touch_existing_group",
                "rm_group", "rename_spec", "create_scratch", "chmod", "truncate"]


def test_allow_other_lets_others_read_and_change_nothing(emulator, make_mount):
    before = state_without_clock(emulator)
    m = make_mount(emulator, "allow_other")
    emulator.reset_stats()
    out = other_user_ops(m, *MUTATING_OPS)
    assert out["read_spec"] == "ok" and out["read_status"] == "ok" and out["listdir"] == "ok"
    for op in MUTATING_OPS:
        assert out[op] in ("EACCES", "EPERM"), (op, out[op])
    # sed -i as another user: its temp file cannot be made in the directory.
    r = as_other(need("sed"), "-i", "s/Base/Changed/", m.p(IMAGE, "spec.json"), cwd="/")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    assert mutations(emulator) == {}
    assert state_without_clock(emulator) == before
    assert not os.path.exists(m.p("made-by-other"))
    assert "tf-1" in os.listdir(m.path)
    # One warning at mount says what allow_other means.
    lines = [ln for ln in m.log().splitlines() if "allow_other" in ln]
    assert len(lines) == 1, m.log()
    assert "warning" in lines[0] and "acts as phadmin on PrimeHub" in lines[0]


def test_umask_option_is_a_deliberate_grant(emulator, make_mount):
    m = make_mount(emulator, "allow_other", "umask=0000")
    emulator.reset_stats()
    out = other_user_ops(m, "write_spec")
    assert out["write_spec"] == "ok", out
    assert emulator.image_state(IMAGE)["spec"]["description"] == f"changed by uid {NOBODY}"
    assert mutations(emulator) == {"updateImage": 1}


# ------------------------------------------------------------ the token

def test_token_is_in_no_log_and_no_file(emulator, make_mount):
    m = make_mount(emulator, "debug")
    spec_path = m.p(IMAGE, "spec.json")
    spec = read_json(spec_path)
    spec["description"] = "saved with -d"
    assert save(spec_path, json.dumps(spec, indent=2)) == 0
    assert save(spec_path, '{"name": "base-notebook", "type": "nonsense"}') == errno.EINVAL
    assert "type" in read(m.p(IMAGE, ".error")).decode()    # the refusal left a reason
    open(m.p(IMAGE, "groups", "example-group-3"), "w").close()
    os.unlink(m.p(IMAGE, "groups", "example-group-3"))
    with pytest.raises(OSError):
        os.mkdir(m.p("Bad Name"))
    assert emulator.image_state(IMAGE)["spec"]["description"] == "saved with -d"
    r = subprocess.run(["grep", "-r", "-l", "-a", TOKEN, m.path], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1, (r.stdout, r.stderr)  # 1: searched everything, found nothing
    log = m.log()
    assert "debug" in log.lower() or "unique:" in log    # -d really logged the FUSE calls
    assert TOKEN not in log
    # Nor in what the process shows of itself: argv, and the environment
    # block (cleared in place after the token was read).
    pid = m.proc.pid
    assert TOKEN.encode() not in read(f"/proc/{pid}/cmdline")
    assert TOKEN.encode() not in read(f"/proc/{pid}/environ")
    assert b"PRIMEHUB_API_TOKEN=" in read(f"/proc/{pid}/environ")


def _mount_fuse_fd(mnt, uid):
    """Mount a FUSE file system on mnt as root (like mount.fuse3's
    drop_privileges) and return the /dev/fuse descriptor for the daemon,
    which then runs unprivileged with the mount point /dev/fd/N."""
    import ctypes
    fd = os.open("/dev/fuse", os.O_RDWR)
    libc = ctypes.CDLL(None, use_errno=True)
    opts = f"fd={fd},rootmode=40000,user_id={uid},group_id={uid},default_permissions"
    if libc.mount(b"primehubfs", mnt.encode(), b"fuse.primehubfs", 0, opts.encode()) != 0:
        e = ctypes.get_errno()
        os.close(fd)
        pytest.fail(f"mount(2) of a FUSE file system failed: {os.strerror(e)}", pytrace=False)
    return fd


def test_daemon_is_not_dumpable(emulator):
    """Run by an unprivileged user (nobody), the daemon is still not
    dumpable: its /proc files belong to root, so that same user can read
    neither its environment nor its memory (nor attach a debugger)."""
    top = tempfile.mkdtemp(prefix="phfs-nobody-")
    os.chmod(top, 0o755)
    mnt = os.path.join(top, "mnt")
    os.mkdir(mnt)
    os.chown(mnt, NOBODY, NOBODY)
    logf = open(os.path.join(top, "log.txt"), "w+")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent",
           "PRIMEHUB_API_TOKEN": TOKEN}
    fd = _mount_fuse_fd(mnt, NOBODY)
    proc = None
    try:
        proc = subprocess.Popen([need("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}",
                                 "--clear-groups", primehubfs_binary(), emulator.endpoint,
                                 f"/dev/fd/{fd}", "-f", "-o", "timeout=5"],
                                stdout=logf, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, pass_fds=(fd,))
        os.close(fd)
        fd = None
        # Mounted already; wait until the daemon answers (as nobody: the
        # mount has no allow_other, so root may not look).
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, f"exited {proc.returncode}: {read(logf.name)!r}"
            r = as_other("/bin/ls", mnt, cwd="/")
            if r.returncode == 0 and IMAGE in r.stdout.split():
                break
            assert time.monotonic() < deadline, f"no answer: {r.stderr} {read(logf.name)!r}"
            time.sleep(0.1)
        with open(f"/proc/{proc.pid}/status") as f:
            uids = [ln for ln in f if ln.startswith("Uid:")][0].split()[1:]
        assert uids[0] == str(NOBODY)                               # it runs as nobody ...
        assert os.stat(f"/proc/{proc.pid}/environ").st_uid == 0    # ... yet root owns its files
        r = as_other("/bin/cat", f"/proc/{proc.pid}/environ", cwd="/")
        assert r.returncode != 0 and "Permission denied" in r.stderr
        assert TOKEN not in r.stdout
        # For comparison: an ordinary process of nobody's is readable by nobody.
        r = as_other("/bin/sh", "-c", "cat /proc/$$/environ", cwd="/")
        assert r.returncode == 0
    finally:
        if fd is not None:
            os.close(fd)
        subprocess.run(["umount", mnt], capture_output=True)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        logf.close()
        log = read(logf.name)
        shutil.rmtree(top, ignore_errors=True)
    assert code == 0, log
    assert TOKEN.encode() not in log


def test_token_file_others_can_read_draws_one_warning(emulator, make_mount, tmp_path):
    tok = tmp_path / "token"
    tok.write_text(TOKEN + "\n")
    tok.chmod(0o644)
    m = make_mount(emulator, f"token_file={tok}", env={"PRIMEHUB_API_TOKEN": None})
    warnings = [ln for ln in m.log().splitlines() if "chmod 600" in ln]
    assert len(warnings) == 1, m.log()
    assert str(tok) in warnings[0] and "mode 0644" in warnings[0]
    assert IMAGE in os.listdir(m.path)
    tok.chmod(0o600)
    m2 = make_mount(emulator, f"token_file={tok}", env={"PRIMEHUB_API_TOKEN": None})
    assert "chmod 600" not in m2.log() and "warning" not in m2.log()


def test_token_with_a_line_break_is_refused(emulator, make_mount):
    m = make_mount(emulator, env={"PRIMEHUB_API_TOKEN": TOKEN + "\r\nX-Evil: 1"}, wait=False)
    assert m.proc.wait(timeout=15) != 0
    assert "PRIMEHUB_API_TOKEN" in m.log() and "control character" in m.log()
    assert emulator.stats()["total"] == 0


def test_revoked_token_is_eacces_and_a_new_token_file_is_picked_up(emulator, make_mount,
                                                                   tmp_path):
    tok = tmp_path / "token"
    tok.write_text(TOKEN + "\n")
    tok.chmod(0o600)
    m = make_mount(emulator, f"token_file={tok}", ttl=1, env={"PRIMEHUB_API_TOKEN": None})
    spec_path = m.p(IMAGE, "spec.json")
    spec = read_json(spec_path)
    emulator.tokens(revoke=TOKEN)
    time.sleep(1.5)                                   # the snapshot has expired
    spec["description"] = "after revocation"
    assert save(spec_path, json.dumps(spec, indent=2)) == errno.EACCES
    assert "token" in read(m.p(IMAGE, ".error")).decode().lower()
    assert "reject" in m.log().lower() or "invalid api token" in m.log().lower()
    assert emulator.image_state(IMAGE)["spec"]["description"] != "after revocation"

    emulator.tokens(add={"token": NEW_TOKEN, "user": "phadmin"})
    tok.write_text(NEW_TOKEN + "\n")
    emulator.reset_stats()
    spec["description"] = "with the new token"
    assert save(spec_path, json.dumps(spec, indent=2)) == 0
    assert emulator.image_state(IMAGE)["spec"]["description"] == "with the new token"
    assert mutations(emulator) == {"updateImage": 1}
    assert NEW_TOKEN not in m.log() and TOKEN not in m.log()


# ------------------------------------------------------------------ TLS

@pytest.fixture
def tls_emulator(tmp_path):
    cert, key = emulator_harness.make_self_signed_cert(str(tmp_path))
    emu = Emulator(tls=(cert, key))
    emu.cert = cert
    yield emu
    emu.stop()


def test_tls_self_signed_is_refused_without_cafile(tls_emulator, make_mount):
    assert tls_emulator.endpoint.startswith("https://")
    m = make_mount(tls_emulator, wait=False)
    assert m.proc.wait(timeout=20) != 0
    lines = [ln for ln in m.log().splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert re.search(r"certificate|TLS|SSL", lines[0]), lines[0]
    assert not os.path.ismount(m.path)


def test_tls_with_cafile_mounts(tls_emulator, make_mount):
    m = make_mount(tls_emulator, f"cafile={tls_emulator.cert}")
    assert IMAGE in os.listdir(m.path)
    assert read_json(m.p(IMAGE, "spec.json"))["name"] == IMAGE


def test_no_option_turns_tls_verification_off(emulator):
    r = subprocess.run([primehubfs_binary(), "--help"], capture_output=True, text=True,
                       timeout=10)
    assert "insecure" not in r.stdout + r.stderr
    assert "verification is always on" in r.stdout


# ------------------------------------------------------------ redirects

class _Recorder(http.server.BaseHTTPRequestHandler):
    def _record(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _record

    def log_message(self, *args):
        pass


class _Redirector(http.server.BaseHTTPRequestHandler):
    def _redirect(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.hits += 1
        self.send_response(307)
        self.send_header("Location", self.server.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _redirect

    def log_message(self, *args):
        pass


def _serve(handler, **attrs):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for k, v in attrs.items():
        setattr(srv, k, v)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def recorder():
    srv = _serve(_Recorder, seen=[])
    yield srv
    srv.shutdown()
    srv.server_close()


def test_redirect_is_not_followed_and_the_token_stays_home(recorder, make_mount):
    target = f"http://127.0.0.1:{recorder.server_address[1]}"
    redir = _serve(_Redirector, target=target, hits=0)
    try:
        class Fake:
            endpoint = f"http://127.0.0.1:{redir.server_address[1]}/api/graphql"
            token = TOKEN
        m = make_mount(Fake, wait=False)
        assert m.proc.wait(timeout=20) != 0
        log = m.log()
        assert redir.hits >= 1
        assert re.search(r"redirect|307", log, re.I), log
        assert recorder.seen == []
        assert TOKEN not in log
    finally:
        redir.shutdown()
        redir.server_close()


def test_build_log_never_sends_the_token_where_log_endpoint_points(emulator, make_mount,
                                                                   recorder):
    emulator.config(graphqlHost=f"http://127.0.0.1:{recorder.server_address[1]}")
    m = make_mount(emulator, ttl=1)
    spec = {"name": "my-custom-image", "type": "both", "global": False,
            "imageSpec": {"baseImage": "jupyter/base-notebook",
                          "packages": {"apt": ["curl"], "pip": [], "conda": []}}}
    os.mkdir(m.p("my-custom-image"))
    assert save(m.p("my-custom-image", "spec.json"), json.dumps(spec)) == 0
    emulator.advance(10)
    deadline = time.monotonic() + 8
    text = b""
    while time.monotonic() < deadline:
        text = read(m.p("my-custom-image", "build.log"))
        if b"jupyter/base-notebook" in text:
            break
        time.sleep(0.2)
    assert recorder.seen == []                  # the token never went there
    assert b"jupyter/base-notebook" in text     # the log came from the endpoint's origin


# ----------------------------------------------------------------- logs

def test_names_cannot_forge_or_colour_log_lines(emulator, make_mount):
    m = make_mount(emulator)
    evil = "evil\x1b[31mred\u202eetalp\nprimehubfs: info: forged"
    with pytest.raises(OSError):
        os.mkdir(m.p(evil))
    time.sleep(0.2)
    log = m.log()
    assert "\x1b" not in log and "\u202e" not in log
    assert not any(ln.startswith("primehubfs: info: forged") for ln in log.splitlines())
    # The refusal was logged, with the name escaped on one line.
    assert re.search(r"evil\\x1b\[31mred\\u202eetalp\\nprimehubfs: info: forged", log), log
