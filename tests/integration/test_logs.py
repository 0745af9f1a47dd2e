"""Logs you can find: -o log=FILE (appended, reopened on SIGHUP for
logrotate), -o log_level=, one line per change sent to PrimeHub at info,
one line per GraphQL request at debug, and never the token."""
import json
import os
import re
import signal
import subprocess
import time

from phfs_harness import primehubfs_binary, read_json
from util import save

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z primehubfs\[\d+\]: "


def read_log(path):
    with open(path, errors="replace") as f:
        return f.read()


def wait_for(path, pattern, seconds=10):
    deadline = time.monotonic() + seconds
    while True:
        text = read_log(path) if os.path.exists(path) else ""
        if re.search(pattern, text) or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def change_description(m, image, text):
    spec = read_json(m.p(image, "spec.json"))
    spec["description"] = text
    assert save(m.p(image, "spec.json"), json.dumps(spec, indent=2) + "\n") == 0


def my_comm():
    with open("/proc/self/comm") as f:
        return f.read().strip()


def test_log_file_gets_the_lines_and_each_change(emulator, make_mount, tmp_path):
    log = tmp_path / "phfs.log"
    log.write_text("an older line\n")
    m = make_mount(emulator, f"log={log}")
    text = wait_for(log, "mounted ")
    assert text.startswith("an older line\n")          # appended, not truncated
    assert re.search(STAMP + r"info: mounted " + re.escape(emulator.endpoint), text), text
    # The log went to the file, not to stderr.
    assert "mounted" not in m.log()
    change_description(m, "tf-1", "from the log test")
    assert emulator.image_state("tf-1")["spec"]["description"] == "from the log test"
    text = wait_for(log, "saved image tf-1")
    line = [l for l in text.splitlines() if "saved image tf-1" in l]
    assert len(line) == 1, text
    assert re.search(STAMP + r"info: saved image tf-1: description \(by "
                     + re.escape(my_comm()) + f", pid {os.getpid()}\\): ok$", line[0]), line
    # A refusal is one error line with the reason and who.
    try:
        os.mkdir(m.p("Bad Name"))
    except OSError:
        pass
    text = wait_for(log, "refused Bad Name")
    assert re.search(STAMP + r"error: refused Bad Name: .*pid " + str(os.getpid()), text), text
    # The token is nowhere.
    assert emulator.token not in read_log(log)


def test_sighup_reopens_a_moved_log_file(emulator, make_mount, tmp_path):
    log = tmp_path / "phfs.log"
    m = make_mount(emulator, f"log={log}")
    wait_for(log, "mounted ")
    rotated = tmp_path / "phfs.log.1"
    os.rename(log, rotated)
    m.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    # SIGHUP no longer unmounts (libfuse made it a stop signal).
    assert m.proc.poll() is None and os.path.ismount(m.path)
    change_description(m, "tf-2", "after rotation")
    text = wait_for(log, "saved image tf-2")
    assert "saved image tf-2: description" in text, text
    assert "saved image tf-2" not in read_log(rotated)
    assert "mounted " in read_log(rotated) and "mounted " not in text
    assert oct(os.stat(log).st_mode & 0o777) == "0o600"   # made anew, private
    # A second rotation works the same way.
    os.rename(log, tmp_path / "phfs.log.2")
    m.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    change_description(m, "tf-2", "after the second rotation")
    assert "saved image tf-2" in wait_for(log, "saved image tf-2")
    assert "tf-2" in os.listdir(m.path)


def test_log_level_error_keeps_only_errors(emulator, make_mount, tmp_path):
    log = tmp_path / "phfs.log"
    m = make_mount(emulator, f"log={log}", "log_level=error")
    change_description(m, "tf-1", "quiet")
    assert emulator.image_state("tf-1")["spec"]["description"] == "quiet"
    assert save(m.p("tf-1", "spec.json"), "{not json") != 0
    text = wait_for(log, "refused ")
    assert re.search(STAMP + "error: refused tf-1/spec.json", text), text
    assert "info:" not in text and "saved image" not in text and "mounted" not in text


def test_debug_log_shows_each_graphql_operation_but_no_secrets(emulator, make_mount, tmp_path):
    log = tmp_path / "phfs.log"
    m = make_mount(emulator, f"log={log}", "log_level=debug")
    assert "tf-1" in os.listdir(m.path)
    change_description(m, "tf-1", "a-value-never-logged")
    text = wait_for(log, "mutation PrimehubfsUpdateImage")
    assert re.search(r"debug: graphql query PrimehubfsWhoAmI: HTTP 200 in \d+ ms, sent \d+ "
                     r"bytes, received \d+ bytes", text), text
    assert re.search(r"debug: graphql query PrimehubfsTree: HTTP 200 in \d+ ms", text), text
    assert re.search(r"debug: graphql mutation PrimehubfsUpdateImage: HTTP 200 in \d+ ms",
                     text), text
    assert emulator.token not in text
    assert "a-value-never-logged" not in text      # values are not logged, names are
    assert "Authorization" not in text and "Bearer" not in text
    # One line per request the emulator saw.
    graphql_lines = len(re.findall(r"debug: graphql ", text))
    assert graphql_lines == emulator.stats()["total"], text


def test_unreachable_syslog_is_said_once_and_stderr_is_used(emulator, tmp_path):
    """No /dev/log (as in a container): one warning on stderr before
    daemonizing, then the log goes to stderr.  Run in a mount namespace of
    its own where /dev/log is hidden, so the test means the same on a
    machine that has syslog."""
    d = tmp_path / "mnt"
    d.mkdir()
    empty = tmp_path / "not-a-socket"
    empty.write_text("")
    script = ('if [ -e /dev/log ]; then mount --bind "$EMPTY" /dev/log || exit 99; fi; '
              'exec "$PHFS" "$ENDPOINT" "$MNT" -f -o log=syslog')
    env = dict(os.environ, PRIMEHUB_API_TOKEN=emulator.token, EMPTY=str(empty),
               PHFS=os.path.abspath(primehubfs_binary()), ENDPOINT=emulator.endpoint,
               MNT=str(d))
    out_file = tmp_path / "stderr.txt"
    with open(out_file, "w") as out_fd:
        proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                 script], env=env, stdout=out_fd, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        out = wait_for(out_file, "info: mounted ", seconds=15)
    finally:
        proc.send_signal(signal.SIGTERM)   # unmounts in its own namespace
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out = read_log(out_file)
    assert proc.returncode == 0, out
    assert out.count("syslog is unreachable") == 1, out
    assert out.index("syslog is unreachable") < out.index("info: mounted"), out
