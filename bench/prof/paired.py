#!/usr/bin/env python3
"""bench/prof/paired.py - the paired view of bench/prof/run's time part.

Reads "workload off_ms on_ms" lines, one per round (the two runs of a
round ran back to back, so a slow minute of the shared machine weighs on
both), and prints for each workload the median of the rounds' on/off
ratios with a 90% bootstrap interval of that median, then the geomean of
those medians with its interval (every workload's rounds resampled
together, 2000 times, from a fixed seed: the same input prints the same
figures).  The interval is how sure one run is of its own rounds, not a
bound on the cost: on this shared machine two runs an hour apart gave
sqlite3 [0.940, 0.980] and [1.004, 1.111] (docs/metrics.md), so a claim
wants several runs, each with its interval.
"""
import math
import random
import sys

RESAMPLES = 2000


def median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def interval(samples):
    s = sorted(samples)
    return s[int(0.05 * len(s))], s[int(0.95 * len(s)) - 1]


def main():
    ratios = {}
    for line in sys.stdin:
        name, off, on = line.split()
        if float(off) > 0:
            ratios.setdefault(name, []).append(float(on) / float(off))
    if not ratios:
        return
    rng = random.Random(1)
    boot = {name: [median(rng.choices(r, k=len(r))) for _ in range(RESAMPLES)] for name, r in ratios.items()}
    print(f"{'workload':<14} {'paired':>7} {'90% interval':>15} {'rounds':>6}")
    for name, r in ratios.items():
        lo, hi = interval(boot[name])
        print(f"{name:<14} {median(r):7.3f} {'[%.3f, %.3f]' % (lo, hi):>15} {len(r):6d}")
    names = list(ratios)
    geo = lambda meds: math.exp(sum(math.log(m) for m in meds) / len(meds))
    lo, hi = interval([geo([boot[n][i] for n in names]) for i in range(RESAMPLES)])
    print(f"geomean of the paired medians: {geo([median(ratios[n]) for n in names]):.3f} "
          f"[{lo:.3f}, {hi:.3f}] ({len(names)} workloads)")


if __name__ == "__main__":
    main()
