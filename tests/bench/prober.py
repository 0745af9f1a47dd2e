#!/usr/bin/python3
"""Prober of the benchmark's row S3 (a process of its own, so that the
benchmark's threads do not delay it): stat of the mount's root, then of one
image directory after another (names from a file, in turn), with 1 ms pauses
(the machine has two cores), until STOPFILE exists.  Writes JSON to OUT: count, max, median, over50
(stats over 50 ms) and slow (each stat over 20 ms: [monotonic start, seconds,
path]).

Usage: prober.py MOUNT NAMESFILE OUT STOPFILE
"""
import json
import os
import statistics
import sys
import time


def main(mount, names_file, out, stop_file):
    with open(names_file) as f:
        names = [line for line in f.read().split("\n") if line]
    times = []
    slow = []
    k = 0
    t_check = 0.0
    while True:
        for path in (mount, os.path.join(mount, names[k % len(names)])):
            t0 = time.monotonic()
            try:
                os.stat(path)
            except OSError:
                pass
            t = time.monotonic() - t0
            times.append(t)
            if t > 0.02:
                slow.append([t0, t, path])
        k += 1
        time.sleep(0.001)  # two cores: a spinning prober would slow the daemon it measures
        if time.monotonic() - t_check > 0.05:
            t_check = time.monotonic()
            if os.path.exists(stop_file):
                break
    with open(out, "w") as f:
        json.dump({"count": len(times), "max": max(times), "median": statistics.median(times),
                   "over50": sum(1 for t in times if t > 0.05), "slow": slow}, f)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
