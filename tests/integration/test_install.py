"""Installed as an administrator installs it: `meson install` (staged with
--destdir), the manual, mount(8) with `-t fuse.primehubfs` and with an fstab
line (`mount -T`), a user mount through fstab, and the systemd unit.

mount(8) finds primehubfs only in the shell's default path (it removes PATH
before running /sbin/mount.fuse3, which starts the program through /bin/sh),
so the staged /usr/local/bin is bind-mounted over the real one inside a
private mount namespace (unshare -m): the test mounts exactly what
`meson install` installs without touching the machine.  Every mount made in
a namespace is unmounted by a trap in that namespace, and the test then
checks that no primehubfs process is left.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from phfs_harness import ROOT, TOKEN, primehubfs_binary

MAN = os.path.join(ROOT, "docs", "primehubfs.1")
# The shell's built-in search path, which is all mount.fuse3 gets from mount(8).
DEFAULT_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]


def need(tool):
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} is missing: tests/run.sh installs it", pytrace=False)
    return path


def run(args, timeout=60, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


@pytest.fixture
def mount_env():
    """The environment of an administrator's shell, without our settings.
    A daemon started by mount(8) has no stderr, so a sanitizer build
    (tests/run.sh's second pass) writes its reports to files, which must
    not appear."""
    logdir = tempfile.mkdtemp(prefix="phfs-sanlog-")
    os.chmod(logdir, 0o1777)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PRIMEHUB_API_TOKEN", "PRIMEHUB_API_ENDPOINT")}
    env["HOME"] = tempfile.mkdtemp(prefix="phfs-home-")
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        env[var] = ":".join(filter(None, [env.get(var), f"log_path={logdir}/report"]))
    yield env
    reports = {}
    for name in os.listdir(logdir):
        with open(os.path.join(logdir, name), errors="replace") as f:
            reports[name] = f.read()[-4000:]
    shutil.rmtree(logdir)
    shutil.rmtree(env["HOME"])
    assert not reports, f"sanitizer report from a daemon started by mount(8): {reports}"


@pytest.fixture(scope="module")
def stage():
    """`meson install --destdir` of the build that made $PRIMEHUFS."""
    need("meson")
    builddir = os.path.dirname(os.path.dirname(primehubfs_binary()))
    dest = tempfile.mkdtemp(prefix="phfs-stage-")
    r = run(["meson", "install", "-C", builddir, "--no-rebuild", "--destdir", dest], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    yield dest
    shutil.rmtree(dest, ignore_errors=True)


def staged(stage, *parts):
    return os.path.join(stage, "usr", "local", *parts)


@pytest.fixture
def token_file():
    fd, path = tempfile.mkstemp(prefix="phfs-token-")
    os.write(fd, (TOKEN + "\n").encode())
    os.close(fd)
    os.chmod(path, 0o600)
    yield path
    os.unlink(path)


def daemons_on(mountpoint):
    """Pids of processes whose command line names this (unique) mount point."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if mountpoint.encode() in args and any(a.endswith(b"primehubfs") for a in args[:1]):
            pids.append(int(pid))
    return pids


def in_namespace(stage, mountpoint, script, env, timeout=60):
    """Run `script` (sh) in a private mount namespace where the staged
    /usr/local/bin and man pages are the real ones.  A trap unmounts
    $MNT whatever happens; afterwards no daemon may be left."""
    need("unshare")
    prologue = f"""
set -eu
cleanup() {{
    if findmnt -rn "$MNT" >/dev/null 2>&1; then
        umount "$MNT" 2>/dev/null || umount -l "$MNT"
    fi
}}
trap cleanup EXIT
mount --bind '{staged(stage, "bin")}' /usr/local/bin
mount --bind '{staged(stage, "share", "man")}' /usr/local/share/man
"""
    env = dict(env, MNT=mountpoint)
    try:
        r = run(["unshare", "-m", "--propagation", "private", "sh", "-c", prologue + script],
                timeout=timeout, env=env)
    finally:
        deadline = time.monotonic() + 10
        while daemons_on(mountpoint) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = daemons_on(mountpoint)
        for pid in left:
            os.kill(pid, 9)
    assert not left, f"primehubfs still running after unmount: {left}"
    return r


def admin_images(emu):
    return sorted(i for i, v in emu.state()["images"].items() if not v["spec"].get("groupName"))


# ---------------------------------------------------------------- the manual

def test_man_page_renders_without_warnings():
    need("man")
    need("groff")
    env = dict(os.environ, MANWIDTH="80")
    r = run(["man", "--warnings", "-l", MAN], env=env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "primehubfs - mount a PrimeHub server" in r.stdout
    r = run(["groff", "-man", "-ww", "-z", MAN])
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


def rendered_man():
    r = run(["man", "-l", MAN], env=dict(os.environ, MANWIDTH="200"))
    assert r.returncode == 0, r.stderr
    return re.sub(r"\s+", " ", r.stdout)


def help_text():
    r = run([primehubfs_binary(), "--help"])
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_every_help_option_is_in_the_man_page_with_its_default():
    """--help and the manual cannot drift apart: each option of primehubfs's
    own section (and the libfuse options the manual promises) is in both,
    with the same default."""
    man = rendered_man()
    own = help_text().split("primehubfs options:", 1)[1].split("\n\n", 1)[0]
    options = re.findall(r"^\s+(-o [a-z_]+=?|-[a-zA-Z](?=[ ,])|--[a-z]+)(.*)$", own, re.M)
    names = [o for o, _ in options]
    assert {"-o config=", "-o token_file=", "-o ttl=", "-o timeout=", "-f", "-d", "-s",
            "-h", "-V"} <= set(names), names
    for opt, rest in options:
        assert opt in man, f"{opt} is in --help but not in primehubfs(1)"
        default = re.search(r"\(default ([^)]+)\)", rest)
        if default:
            entry = man.split(opt, 1)[1][:300]
            assert f"Default: {default.group(1)}." in entry, (opt, entry)
    # And the other way: every -o option the manual lists as primehubfs's own.
    section = man.split("primehubfs options", 1)[1].split("FUSE options that matter", 1)[0]
    for opt in set(re.findall(r"-o [a-z_]+=?", section)):
        assert opt in own, f"primehubfs(1) documents {opt}, --help does not"
    full_help = help_text()
    for opt in ("-o allow_other", "-o uid=", "-o gid=", "-o umask="):
        assert opt in full_help and opt in man, opt


# ---------------------------------------------------------------- install

def test_meson_install_puts_everything_where_it_is_looked_for(stage):
    binary = staged(stage, "bin", "primehubfs")
    assert os.access(binary, os.X_OK), os.listdir(staged(stage))
    assert "/usr/local/bin" in DEFAULT_PATH
    assert os.path.isfile(staged(stage, "share", "man", "man1", "primehubfs.1"))
    examples = staged(stage, "share", "doc", "primehubfs", "examples")
    assert sorted(os.listdir(examples)) == [
        "fstab.example", "primehubfs.env.example", "primehubfs@.service"]
    with open(os.path.join(examples, "primehubfs@.service")) as f:
        unit = f.read()
    assert "ExecStart=/usr/local/bin/primehubfs %f -f -o token_file=" in unit
    # The token is read from its file, never put on the command line or in the unit.
    assert "PRIMEHUB_API_TOKEN" not in re.sub(r"(?m)^#.*$", "", unit)
    r = run([binary, "--version"])
    assert r.returncode == 0 and "primehubfs version" in r.stdout


def test_installed_man_page_is_found_by_man(stage, tmp_path):
    r = in_namespace(stage, str(tmp_path / "unused"),
                     'man -w primehubfs; MANWIDTH=80 man --warnings primehubfs 2>&1 >/dev/null',
                     dict(os.environ))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and lines[0].startswith("/usr/local/") and lines[0].endswith("primehubfs.1")
    assert lines[1:] == [], lines  # rendering the installed page printed no warning


# ---------------------------------------------------------------- mount(8)

def test_mount_t_fuse_primehubfs_finds_the_installed_program(stage, emulator, token_file,
                                                              mount_env):
    mnt = tempfile.mkdtemp(prefix="phfs-mnt-")
    script = """
mount -t fuse.primehubfs "$ENDPOINT" "$MNT" -o token_file="$TOKEN_FILE"
findmnt -rn -o FSTYPE "$MNT"
ls "$MNT"
umount "$MNT"
findmnt -rn "$MNT" || echo unmounted
"""
    env = dict(mount_env, PATH="/usr/bin:/bin", ENDPOINT=emulator.endpoint,
               TOKEN_FILE=token_file)
    try:
        r = in_namespace(stage, mnt, script, env)
    finally:
        os.rmdir(mnt)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.split()
    assert out[0] == "fuse.primehubfs", r.stdout
    assert out[1:-1] == admin_images(emulator)
    assert out[-1] == "unmounted"
    assert not os.path.ismount(mnt)


def write_fstab(line):
    fd, path = tempfile.mkstemp(prefix="phfs-fstab-")
    os.write(fd, ("# a test fstab\n" + line + "\n").encode())
    os.close(fd)
    os.chmod(path, 0o644)
    return path


def test_fstab_line_with_noauto_user_netdev_automount(stage, emulator, token_file, mount_env):
    """The documented fstab line, through mount(8) with a temporary fstab
    (mount -T); mount(8) keeps noauto, user, _netdev and x-systemd.* to
    itself and primehubfs gets token_file."""
    mnt = tempfile.mkdtemp(prefix="phfs-mnt-")
    fstab = write_fstab(f"{emulator.endpoint} {mnt} fuse.primehubfs "
                        "noauto,user,_netdev,x-systemd.automount,x-systemd.idle-timeout=10min,"
                        f"token_file={token_file} 0 0")
    script = """
mount -T "$FSTAB" "$MNT"
findmnt -rn -o FSTYPE,OPTIONS "$MNT"
ls "$MNT"
cat "$MNT/tf-1/spec.json" >/dev/null
umount "$MNT"
findmnt -rn "$MNT" || echo unmounted
"""
    try:
        r = in_namespace(stage, mnt, script, dict(mount_env, FSTAB=fstab))
    finally:
        os.rmdir(mnt)
        os.unlink(fstab)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.split()
    assert out[0] == "fuse.primehubfs"
    # `user` implies nosuid,nodev,noexec: mount(8) read the line's options.
    assert {"nosuid", "nodev", "noexec"} <= set(out[1].split(",")), out[1]
    assert out[2:-1] == admin_images(emulator)
    assert out[-1] == "unmounted"
    assert emulator.stats()["operations"].get("me", 0) >= 1  # the mount-time admin check


def test_fstab_with_absolute_path_for_other_prefixes(emulator, token_file, mount_env):
    """Installed outside the shell's default path: the type `fuse` and the
    source PATH#ENDPOINT, as primehubfs(1) says.  Uses the build's binary."""
    mnt = tempfile.mkdtemp(prefix="phfs-mnt-")
    binary = os.path.abspath(primehubfs_binary())
    fstab = write_fstab(f"{binary}#{emulator.endpoint} {mnt} fuse noauto,_netdev,"
                        f"token_file={token_file} 0 0")
    try:
        r = run(["mount", "-T", fstab, mnt], timeout=30, env=mount_env)
        assert r.returncode == 0, r.stderr
        assert sorted(os.listdir(mnt)) == [".status"] + admin_images(emulator)
    finally:
        if os.path.ismount(mnt):
            u = run(["umount", mnt], timeout=30)
            if u.returncode != 0:
                run(["fusermount3", "-uz", mnt])
        deadline = time.monotonic() + 10
        while daemons_on(mnt) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = daemons_on(mnt)
        for pid in left:
            os.kill(pid, 9)
        os.rmdir(mnt)
        os.unlink(fstab)
    assert not left


def test_user_mount_from_fstab_runs_as_that_user(stage, emulator, tmp_path, mount_env):
    """`user` in fstab: an ordinary user (nobody) mounts with `mount DIR`,
    primehubfs runs as that user, and she unmounts with umount.  The fstab
    is the real path /etc/fstab inside the namespace (mount -T is root's)."""
    nobody = 65534
    mnt = tempfile.mkdtemp(prefix="phfs-mnt-")
    os.chown(mnt, nobody, nobody)
    # mount.fuse3 sets HOME=/root for a user whose HOME mount(8) removed, so
    # a user's mount names her config file (as the manual's example does).
    home = tempfile.mkdtemp(prefix="phfs-home-")  # pytest's tmp_path is root's alone
    os.chmod(home, 0o755)
    config = os.path.join(home, "config.json")
    with open(config, "w") as f:
        f.write('{"api-token": "%s"}\n' % TOKEN)
    os.chown(config, nobody, nobody)
    os.chmod(config, 0o600)
    fstab = write_fstab(f"{emulator.endpoint} {mnt} fuse.primehubfs "
                        f"noauto,user,_netdev,config={config} 0 0")
    as_nobody = f"setpriv --reuid={nobody} --regid={nobody} --clear-groups"
    script = f"""
mount --bind "$FSTAB" /etc/fstab
# This machine's /dev/fuse is 0600 (a container); Debian's is 0666, which is
# what lets libfuse hand the mount to fusermount3.  Give the namespace that.
if [ "$(stat -c %a /dev/fuse)" != 666 ]; then
    mknod -m 666 "$FUSEDEV" c 10 229
    mount --bind "$FUSEDEV" /dev/fuse
fi
{as_nobody} mount "$MNT"
findmnt -rn -o FSTYPE "$MNT"
ps -o uid= -p "$(pgrep -f -x "primehubfs $ENDPOINT $MNT .*" | head -1)"
{as_nobody} ls "$MNT"
{as_nobody} umount "$MNT"
findmnt -rn "$MNT" || echo unmounted
"""
    env = dict(mount_env, FSTAB=fstab, ENDPOINT=emulator.endpoint,
               FUSEDEV=str(tmp_path / "fuse"))
    try:
        r = in_namespace(stage, mnt, script, env)
    finally:
        os.rmdir(mnt)
        os.unlink(fstab)
        shutil.rmtree(home)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.split()
    assert out[0] == "fuse.primehubfs"
    assert out[1] == str(nobody), "primehubfs did not run as the user who mounted"
    assert out[2:-1] == admin_images(emulator)
    assert out[-1] == "unmounted"


# ---------------------------------------------------------------- systemd

def test_systemd_unit_verifies(stage, tmp_path):
    """systemd cannot run here; systemd-analyze verify checks the template
    (syntax, the ExecStart program exists and is executable, the man page
    in Documentation= exists) for the instance of /mnt/primehub."""
    need("systemd-analyze")
    examples = staged(stage, "share", "doc", "primehubfs", "examples")
    unit = tmp_path / "primehubfs@.service"
    shutil.copy(os.path.join(examples, "primehubfs@.service"), unit)
    instance = run(["systemd-escape", "--path", "/mnt/primehub"]).stdout.strip()
    assert instance == "mnt-primehub"
    r = in_namespace(stage, str(tmp_path / "unused"),
                     f'systemd-analyze verify "{tmp_path}/primehubfs@{instance}.service" 2>&1',
                     dict(os.environ))
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr


def fstab_example_lines():
    """The entries of contrib/fstab.example, commented out or not."""
    with open(os.path.join(ROOT, "contrib", "fstab.example")) as f:
        return [line.lstrip("#").strip() for line in f if line.lstrip("#").startswith("http")]


def test_fstab_example_lines_make_the_systemd_units_they_promise(tmp_path):
    """systemd reads fstab through systemd-fstab-generator (which takes the
    file from $SYSTEMD_FSTAB): the boot line becomes a mount wanted by
    remote-fs.target (_netdev, nofail), the x-systemd.automount line an
    automount point with an idle timeout and no mount at boot (noauto), and
    systemd-analyze verify accepts what it generates."""
    need("systemd-analyze")
    generator = next((p for p in ("/lib/systemd/system-generators/systemd-fstab-generator",
                                  "/usr/lib/systemd/system-generators/systemd-fstab-generator")
                      if os.access(p, os.X_OK)), None)
    assert generator, "systemd-fstab-generator is missing: tests/run.sh installs systemd"
    boot, automount, user = fstab_example_lines()
    assert "fuse.primehubfs" in boot and "_netdev" in boot and "noauto" not in boot
    assert "noauto" in user.split()[3] and "user" in user.split()[3].split(",")

    def generate(line):
        out = tmp_path / str(len(os.listdir(tmp_path)))
        out.mkdir()
        fstab = out / "fstab"
        fstab.write_text(line + "\n")
        r = run([generator, str(out), str(out), str(out)],
                env=dict(os.environ, SYSTEMD_FSTAB=str(fstab), SYSTEMD_LOG_LEVEL="warning"))
        assert r.returncode == 0, r.stderr
        return out

    out = generate(boot)
    assert (out / "remote-fs.target.wants" / "mnt-primehub.mount").exists()
    unit = (out / "mnt-primehub.mount").read_text()
    assert "Type=fuse.primehubfs" in unit and "What=https://primehub.example.com/api/graphql" in unit
    r = run(["systemd-analyze", "verify", str(out / "mnt-primehub.mount")])
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr

    out = generate(automount)
    assert (out / "remote-fs.target.requires" / "mnt-primehub.automount").exists()
    assert not (out / "remote-fs.target.wants").exists()  # noauto: not mounted at boot
    assert "TimeoutIdleSec=10min" in (out / "mnt-primehub.automount").read_text()
    r = run(["systemd-analyze", "verify", str(out / "mnt-primehub.mount"),
             str(out / "mnt-primehub.automount")])
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
