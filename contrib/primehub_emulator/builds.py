"""The image-builder controller and the build clock.

PrimeHub builds custom images (those with ``spec.imageSpec``) in a Kubernetes
job that a separate controller runs; the GraphQL server only reads the job's
condition back (``status.jobCondition``) and streams the build pod's log.
Here the controller is a pure function of a clock: a build is ``Pending`` for
its first 5 clock-seconds, ``Running`` until 30, then ``Succeeded`` (or
``Failed`` when the base image names ``fail``).  With ``--clock manual`` the
clock moves only when a test says so, which makes every phase reachable
deterministically and without sleeping.
"""

import hashlib
import json
import math
import re
import threading
import time

REGISTRY = "registry.primehub.local/primehub"
# The secret the builder pushes with (primehub-controller's configuration):
# on success the controller sets the image's pullSecret to it, so the built
# image can be pulled.  It is not one of the image pull secrets the API lists.
PUSH_SECRET = "primehub-image-builder-push"
PENDING_SECONDS = 5
DONE_SECONDS = 30
TERMINAL = ("Succeeded", "Failed", "Cancelled")


class Clock(object):
    """Build clock.  ``manual``: starts at the wall time of process start (or
    the saved value) and moves only through advance().  ``real``: wall time
    plus whatever was advanced."""

    def __init__(self, mode="real", start=None):
        self.mode = mode
        self._lock = threading.Lock()
        self._offset = 0.0
        self._manual_now = float(int(start if start is not None else time.time()))
        self._started = time.monotonic()

    def now(self):
        with self._lock:
            if self.mode == "manual":
                return self._manual_now
            return time.time() + self._offset

    def stamp(self):
        """The server's wall clock, for updateTime: PrimeHub stamps it when
        the request arrives, and real time passes between two requests even
        while a manual build clock stands still (two saves a second apart get
        two stamps, as on a real server)."""
        with self._lock:
            if self.mode == "manual":
                return self._manual_now + (time.monotonic() - self._started)
            return time.time() + self._offset

    def advance(self, seconds):
        with self._lock:
            if self.mode == "manual":
                self._manual_now += seconds
            else:
                self._offset += seconds

    def restore(self, saved_now):
        """Continue a manual clock where a saved state left it."""
        if saved_now is None:
            return
        with self._lock:
            if self.mode == "manual":
                self._manual_now = float(saved_now)


def iso_time(seconds):
    """moment.utc().milliseconds(0).toISOString(): ms always zero."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(int(seconds)))


def _digest(text, length):
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


# What primehub-controller keeps of a package name (filterIllegalPackages);
# any other name is left out of the Dockerfile without a word, and the build
# still succeeds.
LEGAL_PACKAGE = re.compile(r"[a-zA-Z0-9\-_:=.]+")  # whole name: Go's $ is the very end


def legal_packages(packages):
    return {k: [p for p in (packages.get(k) or []) if isinstance(p, str) and LEGAL_PACKAGE.fullmatch(p)]
            for k in ("apt", "conda", "pip")}


def new_job(name, image_spec, now):
    """A build job for ``image_spec`` starting at clock time ``now``.

    The tag is a hash of what is built (base image, packages, base pull
    secret), as an image builder would derive it.  Package names the
    controller does not accept are dropped, as it drops them."""
    packages = legal_packages(image_spec.get("packages") or {})
    content = json.dumps({
        "baseImage": image_spec.get("baseImage"),
        "pullSecret": image_spec.get("pullSecret"),
        "packages": {k: packages.get(k) or [] for k in ("apt", "conda", "pip")},
    }, sort_keys=True)
    tag = _digest(content, 10)
    base = image_spec.get("baseImage") or ""
    return {
        "image": "%s/%s:%s" % (REGISTRY, name, tag),
        "jobName": "image-%s-%s" % (name, _digest(content + repr(now), 5)),
        "baseImage": base,
        "packages": {k: list(packages.get(k) or []) for k in ("apt", "conda", "pip")},
        "start": now,
        "end": None,
        "phase": "Pending",
        "fail": "fail" in base.lower(),
        # A build pod whose state the node cannot report: PrimeHub shows the
        # pod's phase, Unknown, until it is resolved.
        "unknown": "unknown" in base.lower(),
    }


def phase_at(job, now):
    """The phase the controller reports for ``job`` at clock time ``now``."""
    if job["phase"] in TERMINAL:
        return job["phase"]
    elapsed = now - job["start"]
    if elapsed < PENDING_SECONDS:
        return "Pending"
    if job.get("unknown"):
        return "Unknown"
    if elapsed < DONE_SECONDS:
        return "Running"
    return "Failed" if job["fail"] else "Succeeded"


def job_condition(job):
    return {"image": job["image"], "jobName": job["jobName"], "phase": job["phase"]}


def _log_lines(job, name):
    base = job["baseImage"]
    pk = job["packages"]
    steps = 2 + sum(1 for k in ("apt", "conda", "pip") if pk[k])
    lines = ["Step 1/%d : FROM %s" % (steps, base)]
    if job["fail"]:
        lines += [
            "Pulling image %s" % base,
            "ERROR: pull access denied for %s, repository does not exist or may require "
            "'docker login'" % base,
            "ERROR: build failed: base image %s could not be pulled" % base,
        ]
        return lines
    lines.append(" ---> %s" % _digest("base" + base, 12))
    step = 2
    if pk["apt"]:
        lines.append("Step %d/%d : RUN apt-get update && apt-get install -y "
                     "--no-install-recommends %s" % (step, steps, " ".join(pk["apt"])))
        lines.append(" ---> Running in %s" % _digest("apt" + job["jobName"], 12))
        lines.append("Reading package lists...")
        lines += ["Setting up %s ..." % p for p in pk["apt"]]
        lines.append(" ---> %s" % _digest("apt-layer" + job["image"], 12))
        step += 1
    if pk["conda"]:
        lines.append("Step %d/%d : RUN conda install --quiet --yes %s"
                     % (step, steps, " ".join(pk["conda"])))
        lines.append(" ---> Running in %s" % _digest("conda" + job["jobName"], 12))
        lines += ["  %s installed" % p for p in pk["conda"]]
        lines.append(" ---> %s" % _digest("conda-layer" + job["image"], 12))
        step += 1
    if pk["pip"]:
        lines.append("Step %d/%d : RUN pip install --no-cache-dir %s"
                     % (step, steps, " ".join(pk["pip"])))
        lines.append(" ---> Running in %s" % _digest("pip" + job["jobName"], 12))
        lines += ["Collecting %s" % p for p in pk["pip"]]
        lines.append("Successfully installed %s" % " ".join(pk["pip"]))
        lines.append(" ---> %s" % _digest("pip-layer" + job["image"], 12))
        step += 1
    lines.append("Step %d/%d : LABEL io.primehub.image=%s" % (step, steps, name))
    lines.append("Successfully built %s" % _digest("built" + job["image"], 12))
    lines.append("Successfully tagged %s" % job["image"])
    lines.append("Pushed %s" % job["image"])
    return lines


def log_text(job, name, now):
    """The build pod's log at clock time ``now``.

    Pending: no output yet.  Running: a growing prefix (the final
    "Successfully ..." lines only appear once the build has succeeded).
    Finished: everything.  Cancelled: what had been written when cancelled."""
    lines = _log_lines(job, name)
    phase = job["phase"]
    at = now if phase not in TERMINAL else (job["end"] if job["end"] is not None else now)
    elapsed = at - job["start"]
    if phase in ("Succeeded", "Failed"):
        shown = lines
    elif elapsed < PENDING_SECONDS:
        shown = []
    else:
        growing = lines[:-3] if not job["fail"] else lines[:1]
        fraction = min(1.0, (elapsed - PENDING_SECONDS) / float(DONE_SECONDS - PENDING_SECONDS))
        count = max(1, int(math.ceil(fraction * len(growing))))
        shown = growing[:count]
    return "".join(line + "\n" for line in shown)
