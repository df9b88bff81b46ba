#!/usr/bin/env python3
"""report_md.py - a bench/run results directory as the Markdown tables of
docs/performance.md.

Usage: bench/lib/report_md.py RESULTS_DIR

Reads medians.csv, geomeans.csv and floor_medians.csv (written by
bench/run's report) and prints three tables: wall time (medians), peak RSS
(medians, MiB) and wall time (fastest run), each with liballoc / the best
peer and which peer that is, and the geomean row bench/run computed; then
the start-up floor line.  The numbers are bench/run's own: nothing here is
measured, rounded differently or left out, so the published tables are
what the run said: the ratios to the best peer and its name come from
ratios.csv (report.awk's best_peer), not worked out again here.
"""
import csv
import os
import re
import sys

PEERS = ["glibc", "jemalloc", "tcmalloc", "mimalloc"]
ALLOCATORS = PEERS + ["liballoc"]
KINDS = [  # (geomeans.csv kind, medians.csv column, ratios.csv column, title, scale, digits)
    ("time", "median_time_s", "time_ratio", "Wall time (s), medians", 1.0, 3),
    ("rss", "median_peak_rss_kib", "rss_ratio", "Peak RSS (MiB), medians", 1 / 1024.0, 1),
    ("fastest", "fastest_time_s", "fastest_time_ratio", "Wall time (s), fastest of the {runs} runs", 1.0, 3),
]
UNTIMED = {"idle"}  # its time is mostly sleep: marked, left out of time geomeans


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def best_peers(ratios):
    """{workload: {kind: (ratio text, peer)}} from ratios.csv's rows
    "best peer (time: P, rss: P, fastest: P)"."""
    best = {}
    for row in ratios:
        names = dict(re.findall(r"(\w+): (\w+)", row["versus"])) if row["versus"].startswith("best peer") else None
        if not names:
            continue
        best[row["workload"]] = {kind: (row[column], names.get(kind, "-")) for kind, _, column, *_ in KINDS}
    return best


def table(medians, geomeans, best, kind, column, title, scale, digits):
    workloads = []
    values = {}
    for row in medians:
        if row["allocator"] not in ALLOCATORS:
            continue
        if row["workload"] not in values:
            workloads.append(row["workload"])
            values[row["workload"]] = {}
        v = number(row.get(column))
        values[row["workload"]][row["allocator"]] = v * scale if v is not None else None
    fmt = "%%.%df" % digits
    out = ["#### " + title, "", "| workload | " + " | ".join(ALLOCATORS) + " | /best | best peer |",
           "|---" * (len(ALLOCATORS) + 3) + "|"]
    for w in workloads:
        v = values[w]
        text, peer = best.get(w, {}).get(kind, ("", "-"))
        ratio = "%.2f" % number(text) if number(text) is not None else "-"
        name = w + "*" if w in UNTIMED and kind != "rss" else w
        cells = [fmt % v[a] if v.get(a) is not None else "-" for a in ALLOCATORS]
        out.append("| %s | %s | %s | %s |" % (name, " | ".join(cells), ratio, peer or "-"))
    g = {r["allocator"]: r for r in geomeans if r["kind"] == kind}
    if g:
        cells = [fmt % number(g[a]["geomean"]) if a in g and number(g[a]["geomean"]) is not None else "-" for a in ALLOCATORS]
        best = number(g.get("best peer", {}).get("ratio_geomean"))
        out.append("| **geomean** | %s | %s |  |" % (" | ".join(cells), "%.2f" % best if best is not None else "-"))
    return "\n".join(out)


def floor_line(medians, floors):
    by = {(r["workload"], r["allocator"]): number(r["median_time_s"]) for r in medians}
    parts = []
    for row in floors:
        w, floor = row["workload"], number(row["median_time_s"])
        glibc, mine = by.get((w, "glibc")), by.get((w, "liballoc"))
        if floor and glibc and mine:
            parts.append("%s %.3f s, %.2f× glibc, liballoc %.2f× the floor" % (w, floor, floor / glibc, mine / floor))
    if not parts:
        return ""
    return "Start-up floor (glibc's malloc behind a preloaded library): " + "; ".join(parts) + "."


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: %s RESULTS_DIR\n" % sys.argv[0])
        return 2
    d = sys.argv[1]
    try:
        medians = read_csv(os.path.join(d, "medians.csv"))
        geomeans = read_csv(os.path.join(d, "geomeans.csv"))
        best = best_peers(read_csv(os.path.join(d, "ratios.csv")))
    except OSError as e:
        sys.stderr.write("report_md: %s\n" % e)
        return 1
    floors_path = os.path.join(d, "floor_medians.csv")
    floors = read_csv(floors_path) if os.path.exists(floors_path) else []
    counts = [int(r["runs"]) for r in medians if r.get("runs", "").isdigit()]
    # the small processes run more often than the others (bench/run, SMALL_REPEATS)
    runs = "%d-%d" % (min(counts), max(counts)) if counts and min(counts) != max(counts) else max(counts, default=0)
    blocks = []
    for kind, column, _, title, scale, digits in KINDS:
        blocks.append(table(medians, geomeans, best, kind, column, title.format(runs=runs), scale, digits))
    line = floor_line(medians, floors)
    if line:
        blocks.append(line)
    print("\n\n".join(blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
