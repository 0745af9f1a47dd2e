"""Issue 9 (scale) rows of the primehubfs benchmark; run.py calls them.

S1  cold `ls -l` of the root at 1k, 10k, 100k images vs the floor
    (curl of the same request + `ls -l` with the snapshot warm and the
    kernel's caches dropped)
S2  no cliff: 100k and 300k images mounted, listed and walked; daemon RSS
    steady vs peak during a refresh in which every image changed
S3  that refresh at 100k: how long, and the worst stat latency meanwhile
S4  warm walks at 10k (cat, grep -rl, find, du) vs a tmpfs copy
S5  server cost with the emulator's cost model (200 x 20, 2,000 x 100)

R is run.py's module (its Emulator, Mount, Row, helpers): passed in, not
imported, because run.py runs as __main__.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROBER = os.path.join(HERE, "prober.py")


def kib(n_bytes):
    return n_bytes / 1024.0


def status_kb(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def reset_peak(pid):
    """VmHWM := VmRSS (Linux >= 4.0: echo 5 > /proc/PID/clear_refs)."""
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5\n")


class LogTail(threading.Thread):
    """Follows the daemon's log file and stamps each new line with
    time.monotonic() when it is seen (polled every 2 ms): the daemon's
    lines carry no time of their own."""

    def __init__(self, path):
        threading.Thread.__init__(self, daemon=True)
        self.path = path
        self.lines = []  # (monotonic, text)
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        with open(self.path, errors="replace") as f:
            f.seek(0, os.SEEK_END)
            buf = ""
            while not self.stop.is_set():
                chunk = f.read()
                if chunk:
                    now = time.monotonic()
                    buf += chunk
                    *done, buf = buf.split("\n")
                    with self.lock:
                        self.lines += [(now, line) for line in done]
                else:
                    time.sleep(0.002)

    def find(self, pattern, after=0.0):
        with self.lock:
            for t, line in self.lines:
                if t >= after:
                    m = re.search(pattern, line)
                    if m:
                        return t, m
        return None, None


TREE_LINE = r"graphql query PrimehubfsTree: HTTP (\d+) in (\d+) ms, sent \d+ bytes, received (\d+) bytes"


class Scale:
    def __init__(self, bench, R):
        self.b = bench
        self.R = R
        self.rows = []
        self.notes = []
        self.logdir = bench.logdir

    # ------------------------------------------------------------ helpers
    def row(self, *a, **kw):
        r = self.R.Row(*a, **kw)
        self.rows.append(r)
        self.R.progress(" | ".join(str(c) for c in r.cells))
        return r

    def note(self, text):
        self.notes.append(text)

    def emulator(self, n, extra=()):
        self.R.progress("starting the emulator with %s synthetic images %s"
                        % (self.R.fmt_n(n), " ".join(extra)))
        return self.R.Emulator(n, self.logdir, extra)

    def body_file(self, name, query, variables=None):
        path = os.path.join(self.logdir, name + ".json")
        with open(path, "w") as f:
            json.dump({"query": query, "variables": variables or {}}, f)
        return path

    def tree_body(self):
        path = os.path.join(self.logdir, "tree-request.json")
        with open(path, "w") as f:
            json.dump(self.R.tree_request(), f)
        return path

    def curl(self, emu, body_path, out="/dev/null"):
        t, p = self.R.timed(self.R.curl_command(emu, body_path, out), timeout=600)
        if p.stdout.strip() != "200":
            raise self.R.BenchError("curl got HTTP %s" % p.stdout)
        return t

    def ls_l(self, path):
        t, _ = self.R.timed(["/bin/sh", "-c", "ls -l %s > /dev/null" % shlex.quote(path)],
                            timeout=900)
        return t

    # ------------------------------------------------------------------ S1
    def cold_ls(self, n, runs):
        """Cold `ls -l` of the root vs the floor: one curl of the daemon's tree
        request + `ls -l` of the same mount with the snapshot warm and the
        kernel's caches dropped.  The emulator answers both from its response
        cache (warmed by one untimed curl), so neither side pays its Python
        rendering of the answer."""
        R = self.R
        if not R.drop_caches_allowed():
            self.row("S1. cold ls -l of the root vs floor", n, "-", "not run: needs root "
                     "for /proc/sys/vm/drop_caches", target="<= 1.25x", met="-")
            return
        emu = self.emulator(n)
        try:
            body = self.tree_body()
            ans = os.path.join(self.logdir, "tree-answer.json")
            t_uncached = self.curl(emu, body, ans)
            size = os.path.getsize(ans)
            os.unlink(ans)
            cold, warm, curl, reqs = [], [], [], []
            for r in range(runs):
                t_c = self.curl(emu, body)
                m = self.b.mount(emu, ttl=600)
                try:
                    s0 = emu.stats()
                    cold.append(self.ls_l(m.dir))
                    reqs.append(R.delta(s0, emu.stats()))
                    R.expire_kernel_caches()
                    s1 = emu.stats()
                    warm.append(self.ls_l(m.dir))
                    if R.delta(s1, emu.stats())["total"]:
                        raise R.BenchError("ls -l of a warm snapshot made requests")
                finally:
                    m.unmount()
                curl.append(t_c)
        finally:
            emu.stop()
        if n == max(self.b.args.ls_sizes):
            self._tmpfs_ls(n)
        floor = R.median(curl) + R.median(warm)
        ratio = R.median(cold) / floor
        worst = max(reqs, key=lambda d: d["total"])
        judged = n <= 100000  # the issue sets 1.25x at 1k, 10k and 100k
        self.row("S1. cold ls -l of the root (fresh mount, %d runs)" % runs, n, R.fmt_ops(worst),
                 R.fmt_s(R.median(cold)),
                 baseline="floor %s = curl %s + warm ls -l %s"
                 % (R.fmt_s(floor), R.fmt_s(R.median(curl)), R.fmt_s(R.median(warm))),
                 ratio="%.2fx" % ratio,
                 target="<= 1.25x" if judged else "(info: <= 1.25x is set up to 100,000)",
                 met=R.yes(ratio <= 1.25) if judged else "-")
        self.note("S1 at N=%s: cold ls -l %s; curl %s (answer %s bytes; uncached by the "
                  "emulator %s, not used); warm ls -l after drop_caches %s."
                  % (R.fmt_n(n), ", ".join(R.fmt_s(x) for x in cold),
                     ", ".join(R.fmt_s(x) for x in curl), R.fmt_n(size), R.fmt_s(t_uncached),
                     ", ".join(R.fmt_s(x) for x in warm)))

    def _tmpfs_ls(self, n):
        """For the analysis: ls -l of n directories on tmpfs (no FUSE)."""
        R = self.R
        d = tempfile.mkdtemp(prefix="phfs-bench-dirs-", dir="/dev/shm")
        try:
            for i in range(n):
                os.mkdir(os.path.join(d, "synthetic-%05d" % i))
            self.ls_l(d)
            times = [self.ls_l(d) for _ in range(3)]
        finally:
            shutil.rmtree(d, ignore_errors=True)
        self.note("S1: `ls -l` of %s empty directories on tmpfs (no FUSE, caches hot) takes %s "
                  "(median of 3): what listing and formatting cost by themselves."
                  % (R.fmt_n(n), R.fmt_s(R.median(times))))

    # ------------------------------------------------------------ S2 + S3
    def big_mount(self, n, refresh_judged):
        """Mount n images, ls the root, walk (find -maxdepth 2, cat a sample),
        steady RSS; then every image changes (/-/touch-all) and the refresh
        that follows is watched: its time (S3), the worst stat latency of a
        prober process meanwhile (S3), the daemon's peak RSS (S2)."""
        emu = self.emulator(n)
        try:
            self._big_mount(emu, n, refresh_judged)
        finally:
            emu.stop()

    def _big_mount(self, emu, n, refresh_judged):
        R = self.R
        has_touch = self._touch_all_works(emu)  # before the answer is cached
        body = self.tree_body()
        ans = os.path.join(self.logdir, "tree-answer.json")
        t_server = self.curl(emu, body, ans)  # also fills the emulator's response cache
        size = os.path.getsize(ans)
        os.unlink(ans)
        # The refresh comes when the snapshot expires (a used one is renewed
        # as it expires): ttl must outlast the walk (and the changes, when
        # they are made one mutation at a time).
        ttl = max(30, int(n / 2500)) + (0 if has_touch else 20 + int(n / 1500))
        m = self.b.mount(emu, ttl=ttl, opts=("log_level=debug",))
        tail = LogTail(m.logpath)
        tail.start()
        prober = None
        try:
            t0 = time.monotonic()
            t_ls = self.ls_l(m.dir)
            after_ls = status_kb(m.proc.pid)
            ids = sorted(e for e in os.listdir(m.dir) if not e.startswith("."))
            if len(ids) != n + 4:
                raise R.BenchError("the root lists %d images, expected %d" % (len(ids), n + 4))
            q = shlex.quote(m.dir)
            t_find, p = R.timed(["/bin/sh", "-c", "find %s -maxdepth 2 | wc -l" % q],
                                timeout=1800)
            entries = int(p.stdout.split()[0])
            step = max(1, len(ids) // 200)
            sample = ids[::step]
            names = " ".join(shlex.quote(os.path.join(m.dir, i, f)) for i in sample
                             for f in ("spec.json", "status.json"))
            t_cat, p = R.timed(["/bin/sh", "-c", "cat %s | wc -c" % names], timeout=900)
            walked = time.monotonic() - t0
            time.sleep(0.5)
            steady = status_kb(m.proc.pid)
            _, fetch = tail.find(TREE_LINE)
            first_fetch_ms = int(fetch.group(2)) if fetch else None

            # every image changes; the emulator renders the new answer once
            # (curl, untimed) so that the refresh measures the daemon
            watch = "synthetic-00001" if "synthetic-00001" in ids else ids[0]
            watch_path = m.p(watch, "spec.json")
            suffix = " (touched %d)" % time.monotonic_ns()
            t_touch0 = time.monotonic()
            if has_touch:
                changed = emu.control("touch-all", {"field": "description",
                                                    "suffix": suffix}).get("changed")
                how = "POST /-/touch-all"
            else:
                changed = self._touch_by_mutations(emu, suffix, last=watch)
                how = ("updateImage mutations, 1,000 per request (the emulator has no "
                       "/-/touch-all yet)")
            t_touched = time.monotonic() - t_touch0
            t_server_new = self.curl(emu, body)
            want = emu.state()["images"][watch]["spec"].get("description")
            names_file = os.path.join(self.logdir, "prober-names-%d.txt" % n)
            with open(names_file, "w") as f:
                f.write("\n".join(ids))
            out_file = os.path.join(self.logdir, "prober-%d.json" % n)
            stop_file = os.path.join(self.logdir, "prober-%d.stop" % n)
            if os.path.exists(stop_file):
                os.unlink(stop_file)
            reset_peak(m.proc.pid)
            t_touch = time.monotonic()
            # the renewal comes about ttl after the first fetch: the prober
            # starts 3 s before (it pauses 1 ms per loop, yet takes CPU)
            t_first, _ = tail.find(TREE_LINE)
            if t_first:
                time.sleep(max(0.0, t_first + ttl - 3 - time.monotonic()))
            prober = subprocess.Popen([R.PYTHON, PROBER, m.dir, names_file, out_file,
                                       stop_file], stdin=subprocess.DEVNULL)
            # poll the watched file until it shows the new text
            seen = None
            deadline = t0 + ttl + 120 + n / 2000.0
            polls = 0
            while time.monotonic() < deadline:
                try:
                    with open(watch_path, "rb") as f:
                        text = f.read()
                    polls += 1
                    if json.loads(text).get("description") == want:
                        seen = time.monotonic()
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.005)
            time.sleep(1.0)  # the prober goes on a little after the change shows
            with open(stop_file, "w"):
                pass
            prober.wait(timeout=60)
            prober = None
            with open(out_file) as f:
                probe = json.load(f)
            peak = status_kb(m.proc.pid)
            t_log, mline = tail.find(TREE_LINE, after=t_touch)
        finally:
            tail.stop.set()
            if prober is not None:
                prober.kill()
                prober.wait()
            problems = m.unmount()
        with open(m.logpath, errors="replace") as f:
            bad_writes = sum(1 for line in f if "fuse: writing device" in line)
        if bad_writes or problems:
            self.note("S2/S3 at N=%s: the daemon's log has %s line(s) `fuse: writing device: "
                      "...` (notifications written to a closed /dev/fuse)%s."
                      % (R.fmt_n(n), R.fmt_n(bad_writes),
                         ("; at unmount: " + "; ".join(problems)) if problems else ""))
        answer_kib = kib(size)
        per_image = steady["VmRSS"] / float(n)
        allowed = steady["VmRSS"] + 1.5 * answer_kib
        self.row("S2. no cliff: mount, ls -l, find -maxdepth 2 (%s entries), cat %d files; "
                 "steady RSS" % (R.fmt_n(entries), 2 * len(sample)), n, "-",
                 "%s KiB (%.2f KiB/image); ls -l %s, find %s, cat %s"
                 % (R.fmt_n(steady["VmRSS"]), per_image, R.fmt_s(t_ls), R.fmt_s(t_find),
                    R.fmt_s(t_cat)),
                 baseline="2.5 KiB x %s = %s KiB" % (R.fmt_n(n), R.fmt_n(int(2.5 * n))),
                 ratio="%.2fx" % (per_image / 2.5), target="<= 2.5 KiB/image",
                 met=R.yes(per_image <= 2.5))
        self.row("S2. peak RSS during a refresh in which every image changed", n, "-",
                 "VmHWM %s KiB (+%s KiB over steady)"
                 % (R.fmt_n(peak["VmHWM"]), R.fmt_n(peak["VmHWM"] - steady["VmRSS"])),
                 baseline="steady %s + 1.5 x answer %s KiB = %s KiB"
                 % (R.fmt_n(steady["VmRSS"]), R.fmt_n(int(answer_kib)), R.fmt_n(int(allowed))),
                 ratio="%.2fx of answer" % ((peak["VmHWM"] - steady["VmRSS"]) / answer_kib),
                 target="peak <= steady + 1.5 x answer",
                 met=R.yes(peak["VmHWM"] <= allowed))
        fetch_ms = int(mline.group(2)) if mline else None
        if seen is not None and fetch_ms is not None:
            start = t_log - fetch_ms / 1000.0
            refresh = seen - start
            after_fetch = seen - t_log
        else:
            refresh = after_fetch = None
        window = [p for p in probe["slow"] if refresh is not None and
                  start - 0.05 <= p[0] <= seen + 1.0]
        worst = probe["max"]
        # The refresh's 0.5 s is set at --refresh-n (100,000); at other sizes
        # the row is information.  No stat may wait 50 ms at any size.
        self.row("S3. refresh, every image changed (touch-all %s): fetch to new text shown"
                 % R.fmt_n(changed or 0), n, "1 (tree)",
                 R.fmt_s(refresh) if refresh is not None else "new text never shown",
                 baseline="fetch+decode %s, then publish until shown %s"
                 % (R.fmt_s(fetch_ms / 1000.0) if fetch_ms is not None else "?",
                    R.fmt_s(after_fetch)),
                 ratio="-",
                 target="<= 0.5 s" if refresh_judged else "(info: <= 0.5 s is set at 100,000)",
                 met=R.yes(refresh is not None and refresh <= 0.5) if refresh_judged else "-")
        self.row("S3. worst stat (root, then images in turn) in a prober process meanwhile",
                 n, "-", "max %s (%s stats, %d > 50 ms)"
                 % (R.fmt_s(worst), R.fmt_n(probe["count"]), probe["over50"]),
                 baseline="median %s" % R.fmt_s(probe["median"]), ratio="-",
                 target="<= 50 ms", met=R.yes(worst <= 0.05))
        self.note("S2/S3 at N=%s: every description changed by %s in %s (%s done %s after the "
                  "walk began, ttl %d s)." % (R.fmt_n(n), how, R.fmt_s(t_touched),
                                              R.fmt_n(changed or 0),
                                              R.fmt_s(t_touch - t0), ttl))
        self.note("S2/S3 at N=%s: tree answer %s bytes (emulator renders it in %s, after the "
                  "touch-all %s; the daemon's refresh was answered from the emulator's cache); "
                  "first fetch in the daemon's log %s ms; ttl %d s; RSS after the first ls -l %s "
                  "KiB (VmHWM %s KiB); walk took %s; RSS after the walk %s KiB, VmHWM before the refresh %s KiB, after the refresh VmRSS %s KiB; "
                  "refresh: the daemon logged the tree fetch (%s ms) %s after the touch-all, the "
                  "new text showed %s after that line (%d polls); prober: %s stats, median %s, "
                  "max %s, %d over 50 ms (%d of them between the fetch start and 1 s after the "
                  "new text showed; slowest: %s)."
                  % (R.fmt_n(n), R.fmt_n(size), R.fmt_s(t_server), R.fmt_s(t_server_new),
                     first_fetch_ms, ttl, R.fmt_n(after_ls["VmRSS"]),
                     R.fmt_n(after_ls["VmHWM"]), R.fmt_s(walked), R.fmt_n(steady["VmRSS"]),
                     R.fmt_n(steady["VmHWM"]), R.fmt_n(peak["VmRSS"]), fetch_ms,
                     R.fmt_s(t_log - t_touch) if t_log else "never",
                     R.fmt_s(after_fetch), polls, R.fmt_n(probe["count"]),
                     R.fmt_s(probe["median"]), R.fmt_s(worst), probe["over50"], len(window),
                     ", ".join("%s %s" % (R.fmt_s(p[1]), p[2])
                               for p in sorted(probe["slow"], key=lambda p: -p[1])[:3])
                     or "-"))

    def _touch_by_mutations(self, emu, suffix, last):
        """What /-/touch-all does, by updateImage mutations (1,000 aliased
        per request), the watched image last."""
        state = emu.state()["images"]
        ids = sorted(i for i in state if i != last) + [last]
        for k in range(0, len(ids), 1000):
            doc = "mutation BenchTouch {" + " ".join(
                "m%d: updateImage(where: {id: %s}, data: {description: %s}) { id }"
                % (j, json.dumps(i), json.dumps((state[i]["spec"].get("description") or "")
                                                + suffix))
                for j, i in enumerate(ids[k:k + 1000])) + "}"
            emu.gql(doc)
        return len(ids)

    def _touch_all_works(self, emu):
        try:
            emu.control("touch-all", {"field": "description", "suffix": ""})
            return True
        except self.R.BenchError:
            return False

    # ------------------------------------------------------------------ S4
    WALKS = [
        ("cat */spec.json", "cat */spec.json | wc -c"),
        ("grep -rl gpu", "grep -rl gpu . | wc -l"),
        ("find -name spec.json", "find . -name spec.json | wc -l"),
        ("du -s", "du -s . > /dev/null; echo ok"),
    ]

    def warm_walks(self, n, runs):
        R = self.R
        emu = self.emulator(n)
        copy = tempfile.mkdtemp(prefix="phfs-bench-copy-", dir="/dev/shm")
        try:
            m = self.b.mount(emu, ttl=3600)
            try:
                t_cp, _ = R.timed(["cp", "-r", m.dir + "/.", copy], timeout=900)
                s0 = emu.stats()
                for label, cmd in self.WALKS:
                    t_m, out_m = self._walk(m.dir, cmd, runs)
                    t_c, out_c = self._walk(copy, cmd, runs)
                    if out_m != out_c:
                        raise R.BenchError("%s: the mount gives %r, the copy %r"
                                           % (label, out_m, out_c))
                    ratio = R.median(t_m) / R.median(t_c)
                    self.row("S4. warm %s (within ttl, %d runs after one)" % (label, runs), n,
                             "-", R.fmt_s(R.median(t_m)),
                             baseline="tmpfs copy %s" % R.fmt_s(R.median(t_c)),
                             ratio="%.2fx" % ratio, target="<= 2x", met=R.yes(ratio <= 2))
                    self.note("S4 %s at N=%s: mount %s; tmpfs copy %s (output %s)."
                              % (label, R.fmt_n(n), ", ".join(R.fmt_s(x) for x in t_m),
                                 ", ".join(R.fmt_s(x) for x in t_c), out_m))
                d = R.delta(s0, emu.stats())
            finally:
                m.unmount()
        finally:
            shutil.rmtree(copy, ignore_errors=True)
            emu.stop()
        self._walk_fuse_ops(emu_n=n)
        self.note("S4 at N=%s: `cp -r` of the mount into /dev/shm took %s (the copy's source "
                  "for the baseline); requests during the warm walks: %s."
                  % (R.fmt_n(n), R.fmt_s(t_cp), R.fmt_ops(d)))

    def _walk_fuse_ops(self, emu_n):
        """FUSE requests of each warm walk (a -d mount; untimed)."""
        R = self.R
        emu = self.emulator(emu_n)
        try:
            m = self.b.mount(emu, ttl=3600, debug=True)
            try:
                for label, cmd in self.WALKS:
                    R.timed(["/bin/bash", "-o", "pipefail", "-c", cmd], timeout=900, cwd=m.dir)
                counts = []
                for label, cmd in self.WALKS:
                    start = len(m.log_tail(n=1 << 31))
                    R.timed(["/bin/bash", "-o", "pipefail", "-c", cmd], timeout=900, cwd=m.dir)
                    text = m.log_tail(n=1 << 31)[start:]
                    ops = {}
                    for op in re.findall(r"opcode: ([A-Z_]+)", text):
                        ops[op] = ops.get(op, 0) + 1
                    counts.append("%s: %s (%s)" % (label, R.fmt_n(sum(ops.values())), ", ".join(
                        "%s %d" % kv for kv in sorted(ops.items(), key=lambda kv: -kv[1]))))
            finally:
                m.unmount()
        finally:
            emu.stop()
        self.note("S4: FUSE requests of each warm walk at N=%s (second run, daemon -d log): %s."
                  % (R.fmt_n(emu_n), "; ".join(counts)))

    def _walk(self, where, cmd, runs):
        R = self.R
        times = []
        out = None
        for r in range(runs + 1):
            t, p = R.timed(["/bin/bash", "-o", "pipefail", "-c", cmd], timeout=900, cwd=where)
            if r:
                times.append(t)
            out = p.stdout.strip()
        return times, out

    # ------------------------------------------------------------------ S5
    IDS_QUERY = "query { images(mode: SYSTEM_ONLY) { id } }"
    FULL_QUERY = ("query { images(mode: SYSTEM_ONLY) { id name displayName description url "
                  "urlForGpu type global groups { id name } } }")

    def backend(self, emu):
        b = emu.stats().get("backend")
        if b is None:
            raise self.R.BenchError("the emulator's /-/stats has no \"backend\"")
        return b

    def charged(self, emu, body):
        """charged_ms and keycloak calls of one curl of body."""
        emu.reset()
        t = self.curl(emu, body)
        b = self.backend(emu)
        return b["charged_ms"], b["keycloak_calls"], t

    def server_cost(self, n, groups, ttl=5):
        R = self.R
        if not R.emulator_has("--cost-model") or not R.emulator_has("--groups"):
            self.row("S5. server cost (cost model)", "%s x %d" % (R.fmt_n(n), groups), "-",
                     "not run: the emulator has no --cost-model / --groups yet",
                     target="-", met="-")
            return
        label = "%s x %d" % (R.fmt_n(n), groups)
        emu = self.emulator(n, ["--groups", str(groups), "--cost-model", "on"])
        try:
            ids_body = self.body_file("q-ids", self.IDS_QUERY)
            full_body = self.body_file("q-full", self.FULL_QUERY)
            memb_doc = R.source_doc("DOC_MEMBERSHIP")
            ref_ids, _, t_ids = self.charged(emu, ids_body)
            ref_full, kc_full, t_full = self.charged(emu, full_body)
            ref_tree, kc_tree, t_tree = self.charged(emu, self.tree_body())
            if memb_doc:
                memb_body = self.body_file("q-membership", memb_doc, {"mode": "SYSTEM_ONLY"})
                ref_memb, kc_memb, t_memb = self.charged(emu, memb_body)
            else:
                ref_memb = kc_memb = t_memb = None

            # (a) cold ls -l of the root
            m = self.b.mount(emu, ttl=60)
            try:
                emu.reset()
                t_ls = self.ls_l(m.dir)
                b = self.backend(emu)
                d = emu.stats()
            finally:
                m.unmount()
            ratio = b["charged_ms"] / ref_ids if ref_ids else float("inf")
            self.row("S5a. cold ls -l of the root: charged server time", label,
                     R.fmt_ops(d),
                     "%.0f ms (%d Keycloak calls; ls -l %s)"
                     % (b["charged_ms"], b["keycloak_calls"], R.fmt_s(t_ls)),
                     baseline="images { id } %.0f ms" % ref_ids, ratio="%.2fx" % ratio,
                     target="<= 1.5x", met=R.yes(ratio <= 1.5))
            self.note("S5a at %s: %s." % (label, self._by_op(b)))

            # (b) a mount in use for 3 x ttl
            m = self.b.mount(emu, ttl=ttl)
            try:
                ids = sorted(e for e in os.listdir(m.dir) if not e.startswith("."))
                emu.reset()
                t0 = time.monotonic()
                k = 0
                loops = 0
                while time.monotonic() - t0 < 3 * ttl:
                    t_loop = time.monotonic()
                    os.listdir(m.dir)
                    R.run(["ls", "-l", m.dir], timeout=120)
                    for i in range(10):
                        R.read_bytes(m.p(ids[k % len(ids)], "spec.json"))
                        k += 1
                    loops += 1
                    time.sleep(max(0, 0.5 - (time.monotonic() - t_loop)))
                span = time.monotonic() - t0
                b = self.backend(emu)
                d = emu.stats()
            finally:
                m.unmount()
            per_ttl = b["charged_ms"] * ttl / span
            ratio = per_ttl / ref_full if ref_full else float("inf")
            # The issue sets this target at 2,000 x 100.  Smaller, one
            # images { id } per ttl (what any fresh listing costs) is
            # already a large share of the full query: shown, not judged.
            judged = (n, groups) == (2000, 100)
            floor = ref_ids / ref_full if ref_full else float("inf")
            self.row("S5b. mount in use %.0f s (ttl=%d; ls -l + 10 spec.json every 0.5 s): "
                     "charged per ttl" % (span, ttl), label,
                     R.fmt_ops(d),
                     "%.0f ms per ttl (%.0f ms in all)" % (per_ttl, b["charged_ms"]),
                     baseline="full query with groups %.0f ms%s"
                     % (ref_full, "" if judged else
                        " (images { id } alone: %.0f ms, %.1f%%)" % (ref_ids, 100 * floor)),
                     ratio="%.1f%%" % (100 * ratio),
                     target="<= 10%" if judged else "(info: <= 10% is set at 2,000 x 100)",
                     met=R.yes(ratio <= 0.10) if judged else "-")
            self.note("S5b at %s: %d loops in %.1f s; %s." % (label, loops, span, self._by_op(b)))

            # (c) ls -lR + cat */status.json: membership
            m = self.b.mount(emu, ttl=60)
            try:
                emu.reset()
                q = shlex.quote(m.dir)
                t_walk, _ = R.timed(["/bin/sh", "-c", "ls -lR %s > /dev/null && cd %s && "
                                     "cat */status.json > /dev/null" % (q, q)], timeout=900)
                b = self.backend(emu)
                d = emu.stats()
                reqs = emu.control("requests")
                state = emu.state()
                ids = sorted(state["images"])
                gname = {g["id"]: g["name"] for g in state["groups"]}
                step = max(1, len(ids) // 25)
                wrong = []
                checked = 0
                for i in ids[::step]:
                    want = set(gname.get(g, g) for g in state["images"][i]["groups"])
                    got = set(e for e in os.listdir(m.p(i, "groups")) if not e.startswith("."))
                    checked += 1
                    if got != want and got != set(state["images"][i]["groups"]):
                        wrong.append((i, sorted(got), sorted(want)))
            finally:
                m.unmount()
            # Which requests asked for membership: an `images` request with
            # more Keycloak calls than the tree request (curl, above) resolved
            # Image.groups (a role-mapping read per group); an `image`
            # request reads one image with its groups.
            gql = [r for r in reqs if isinstance(r, dict) and r.get("path") == "/api/graphql"]
            cost = lambda r: r.get("cost") or {}
            list_memb = [r for r in gql if "images" in r.get("ops", [])
                         and cost(r).get("keycloak_calls", 0) > kc_tree]
            single = [r for r in gql if r.get("ops") == ["image"]]
            memb_ms = sum(cost(r).get("charged_ms", 0) for r in list_memb + single)
            memb_kc = sum(cost(r).get("keycloak_calls", 0) for r in list_memb + single)
            ratio = memb_ms / ref_memb if ref_memb else None
            ok = len(list_memb) <= 1 and not wrong and ratio is not None and ratio <= 1.0
            self.row("S5c. ls -lR + cat */status.json: membership cost (groups/ of %d "
                     "images checked against /-/state)" % checked, label,
                     R.fmt_ops(d),
                     "%d list + %d single-image membership request(s): %.0f ms charged, %d "
                     "Keycloak calls; %d wrong groups/; walk %s (%.0f ms charged in all)"
                     % (len(list_memb), len(single), memb_ms, memb_kc, len(wrong),
                        R.fmt_s(t_walk), b["charged_ms"]),
                     baseline=("1 membership query %.0f ms, %d Keycloak calls"
                               % (ref_memb, kc_memb)) if kc_memb is not None else "-",
                     ratio=("%.2fx" % ratio) if ratio is not None else "-",
                     target="<= 1 membership query (1.0x); groups/ correct", met=R.yes(ok))
            self.note("S5c at %s: %s; requests: %s%s."
                      % (label, self._by_op(b), "; ".join(
                          "%s %s Keycloak/%.0f ms" % ("+".join(r.get("ops", [])),
                                                     cost(r).get("keycloak_calls"),
                                                     cost(r).get("charged_ms", 0)) for r in gql),
                         ("; wrong: %r" % wrong[:3]) if wrong else ""))
            self.note("S5 references at %s (curl, cost model on): `images { id }` %.0f ms "
                      "charged (%s wall), full query with groups %.0f ms charged, %d Keycloak "
                      "calls (%s wall), the daemon's tree request %.0f ms, %d Keycloak calls (%s wall)%s."
                      % (label, ref_ids, R.fmt_s(t_ids), ref_full, kc_full, R.fmt_s(t_full),
                         ref_tree, kc_tree, R.fmt_s(t_tree),
                         (", the daemon's membership query %.0f ms, %d Keycloak calls (%s wall)"
                          % (ref_memb, kc_memb, R.fmt_s(t_memb))) if kc_memb is not None
                         else ""))
        finally:
            emu.stop()

    @staticmethod
    def _by_op(b):
        ops = b.get("by_op") or {}
        return "by root field: " + (", ".join(
            "%s %s req / %s Keycloak / %.0f ms" % (k, v.get("requests"), v.get("keycloak_calls"),
                                                  v.get("charged_ms", 0))
            for k, v in sorted(ops.items())) or "-")
