# bench/lib/report.awk - turn the suite's medians into the printed report,
# the ratio and geometric-mean tables and the verdict on each target.
#
# Owns: every number derived from the medians - ratios, geometric means, the
# best peer, the targets - so that the printed table, the CSV/JSON files and
# the charts cannot disagree.  Run by bench/lib/report.sh with -v:
#   allocs   allocator names, space-separated, in table order
#   ref      the allocator whose ratios are reported (liballoc)
#   data     the directory of the .tsv files (each with a header line)
#   rounds   rounds of the timed runs
#   fastpath_max  the largest size (bytes) the fast-path target is judged on
#   quick    1 for a --quick run, whose work is too small for any verdict
# Reads  workloads.tsv medians.tsv metric_medians.tsv callgrind.tsv
#        decay_summary.tsv failures.tsv
# Writes ratios.tsv geomeans.tsv targets.tsv ratios_plot.tsv; prints the
#        report on stdout.
# Ratio = ref's value / the other's value: below 1, ref is faster or smaller.

# ---- reading --------------------------------------------------------------------

# Read data/NAME into rows[NAME, i, column]; returns the row count.
function load(name,   file, line, n, i, f, cols, header) {
    file = data "/" name
    n = 0
    if ((getline line < file) <= 0) return 0
    cols = split(line, header, "\t")
    while ((getline line < file) > 0) {
        n++
        split(line, f, "\t")
        for (i = 1; i <= cols; i++) rows[name, n, header[i]] = f[i]
    }
    close(file)
    return n
}

function read_inputs(   n, i, w, a) {
    n = load("workloads.tsv")
    for (i = 1; i <= n; i++) {
        w = rows["workloads.tsv", i, "workload"]
        workloads[++nw] = w
        timed[w] = rows["workloads.tsv", i, "timed"]
        command[w] = rows["workloads.tsv", i, "command"]
    }
    n = load("medians.tsv")
    for (i = 1; i <= n; i++) {
        w = rows["medians.tsv", i, "workload"]; a = rows["medians.tsv", i, "allocator"]
        value["time", w, a] = rows["medians.tsv", i, "median_time_s"] + 0
        value["rss", w, a] = rows["medians.tsv", i, "median_peak_rss_kib"] / 1024
        runs[w, a] = rows["medians.tsv", i, "runs"]
    }
    nmetric_rows = load("metric_medians.tsv")
    ncallgrind = load("callgrind.tsv")
    ndecay = load("decay_summary.tsv")
    nfail = load("failures.tsv")
}

# ---- helpers ----------------------------------------------------------------------

function has(kind, w, a) { return ((kind, w, a) in value) && value[kind, w, a] > 0 }

function counts_in(kind, w) { return kind == "rss" || timed[w] == 1 }

# The peer with the smallest value for workload w, or "".
function best_peer(kind, w,   k, a, best) {
    best = ""
    for (k = 1; k <= na; k++) {
        a = alloc[k]
        if (a == ref || !has(kind, w, a)) continue
        if (best == "" || value[kind, w, a] < value[kind, w, best]) best = a
    }
    return best
}

function ratio(kind, w, a) {
    return (has(kind, w, ref) && has(kind, w, a)) ? value[kind, w, ref] / value[kind, w, a] : ""
}

function fmt(x, spec) { return x == "" ? "-" : sprintf(spec, x) }

function short(a) { return length(a) > 8 ? substr(a, 1, 8) : a }

# ---- geometric means ------------------------------------------------------------

# Per allocator over the workloads every allocator has: geo[kind, a].
# Pairwise, ref against each peer over the workloads both have:
# pair_geo[kind, a] (a ratio) and pair_n[kind, a]; against the best peer
# of each workload: pair_geo[kind, "best"].
function compute_geomeans(kind,   i, k, w, a, all, sum, n, b) {
    common_n[kind] = 0
    for (k = 1; k <= na; k++) logsum[kind, alloc[k]] = 0
    for (i = 1; i <= nw; i++) {
        w = workloads[i]
        if (!counts_in(kind, w)) continue
        all = 1
        for (k = 1; k <= na; k++) if (!has(kind, w, alloc[k])) all = 0
        if (!all) continue
        common_n[kind]++
        for (k = 1; k <= na; k++) logsum[kind, alloc[k]] += log(value[kind, w, alloc[k]])
    }
    for (k = 1; k <= na; k++)
        geo[kind, alloc[k]] = common_n[kind] ? exp(logsum[kind, alloc[k]] / common_n[kind]) : ""
    for (k = 1; k <= na + 1; k++) {
        a = k <= na ? alloc[k] : "best"
        if (a == ref) continue
        sum = 0; n = 0
        for (i = 1; i <= nw; i++) {
            w = workloads[i]
            if (!counts_in(kind, w) || !has(kind, w, ref)) continue
            b = a == "best" ? best_peer(kind, w) : a
            if (b == "" || !has(kind, w, b)) continue
            sum += log(value[kind, w, ref] / value[kind, w, b]); n++
        }
        pair_geo[kind, a] = n ? exp(sum / n) : ""
        pair_n[kind, a] = n
    }
}

# ---- printed tables ----------------------------------------------------------------

function print_value_table(kind, title, spec,   i, k, w, a, b, line) {
    printf "\n== %s\n", title
    line = sprintf("%-14s", "workload")
    for (k = 1; k <= na; k++) line = line sprintf(" %9s", short(alloc[k]))
    line = line " |"
    for (k = 1; k <= na; k++) if (alloc[k] != ref) line = line sprintf(" %9s", "/" short(alloc[k]))
    print line sprintf(" %9s %s", "/best", "best peer")
    for (i = 1; i <= nw; i++) {
        w = workloads[i]
        line = sprintf("%-14s", w (kind == "time" && !timed[w] ? "*" : ""))
        for (k = 1; k <= na; k++) line = line sprintf(" %9s", has(kind, w, alloc[k]) ? sprintf(spec, value[kind, w, alloc[k]]) : "-")
        line = line " |"
        for (k = 1; k <= na; k++) if (alloc[k] != ref) line = line sprintf(" %9s", fmt(ratio(kind, w, alloc[k]), "%.2f"))
        b = best_peer(kind, w)
        print line sprintf(" %9s %s", fmt(b == "" ? "" : ratio(kind, w, b), "%.2f"), b)
    }
    line = sprintf("%-14s", "geomean")
    for (k = 1; k <= na; k++) line = line sprintf(" %9s", fmt(geo[kind, alloc[k]], spec))
    line = line " |"
    for (k = 1; k <= na; k++) if (alloc[k] != ref) line = line sprintf(" %9s", fmt(pair_geo[kind, alloc[k]], "%.2f"))
    print line sprintf(" %9s", fmt(pair_geo[kind, "best"], "%.2f"))
    printf "(geomean of values: over the %d workloads every allocator completed%s; of ratios: over the workloads both completed)\n", \
        common_n[kind], kind == "time" ? ", * excluded (time is mostly sleep)" : ""
}

function print_metrics(   i, k, w, a, m, key, seen, order, n, line) {
    if (!nmetric_rows) return
    n = 0
    for (i = 1; i <= nmetric_rows; i++) {
        w = rows["metric_medians.tsv", i, "workload"]; a = rows["metric_medians.tsv", i, "allocator"]
        m = rows["metric_medians.tsv", i, "metric"]
        metric[w, m, a] = rows["metric_medians.tsv", i, "median"]
        if (!((w, m) in seen)) { seen[w, m] = 1; order[++n] = w SUBSEP m }
    }
    printf "\n== Numbers the workloads report about themselves (medians)\n"
    line = sprintf("%-28s", "workload: metric")
    for (k = 1; k <= na; k++) line = line sprintf(" %10s", short(alloc[k]))
    print line
    for (i = 1; i <= n; i++) {
        split(order[i], key, SUBSEP)
        line = sprintf("%-28s", key[1] ": " key[2])
        for (k = 1; k <= na; k++)
            line = line sprintf(" %10s", ((key[1], key[2], alloc[k]) in metric) ? sprintf("%.4g", metric[key[1], key[2], alloc[k]]) : "-")
        print line
    }
}

function print_callgrind(   i, s, a, k, sizes, ns, seen, line) {
    if (!ncallgrind) return
    ns = 0
    for (i = 1; i <= ncallgrind; i++) {
        s = rows["callgrind.tsv", i, "size"]; a = rows["callgrind.tsv", i, "allocator"]
        per_pair[s, a] = rows["callgrind.tsv", i, "per_pair"]
        if (!(s in seen)) { seen[s] = 1; sizes[++ns] = s }
    }
    printf "\n== Fast path: instructions per malloc+free pair (callgrind, marginal)\n"
    line = sprintf("%-8s", "size")
    for (k = 1; k <= na; k++) line = line sprintf(" %9s", short(alloc[k]))
    print line sprintf(" | %s", ref "/mimalloc")
    for (i = 1; i <= ns; i++) {
        s = sizes[i]
        line = sprintf("%-8s", s " B")
        for (k = 1; k <= na; k++) line = line sprintf(" %9s", ((s, alloc[k]) in per_pair) ? per_pair[s, alloc[k]] : "-")
        print line sprintf(" | %s", ((s, ref) in per_pair) && per_pair[s, "mimalloc"] > 0 ? \
            sprintf("%.2f", per_pair[s, ref] / per_pair[s, "mimalloc"]) : "-")
    }
    ncallgrind_sizes = ns
    for (i = 1; i <= ns; i++) callgrind_size[i] = sizes[i]
}

function print_decay(   i) {
    if (!ndecay) return
    printf "\n== Decay: idle after a burst (RSS in MiB; \"then\" = first sample at or after dirty_decay_ms + 1 s)\n"
    printf "%-32s %8s %8s %8s %9s %8s %8s %9s\n", "series", "live", "burst", "freed", "then (s)", "then", "final", "returned"
    for (i = 1; i <= ndecay; i++)
        printf "%-32s %8s %8s %8s %9.1f %8s %8s %8.0f%%\n", rows["decay_summary.tsv", i, "series"], \
            rows["decay_summary.tsv", i, "live_mib"], rows["decay_summary.tsv", i, "burst_rss_mib"], \
            rows["decay_summary.tsv", i, "freed_rss_mib"], rows["decay_summary.tsv", i, "t_check_ms"] / 1000, \
            rows["decay_summary.tsv", i, "rss_at_check_mib"], rows["decay_summary.tsv", i, "final_rss_mib"], \
            100 * rows["decay_summary.tsv", i, "returned_share"]
}

function print_failures(   i) {
    if (!nfail) return
    printf "\n== Failed runs (left out of the numbers above)\n"
    for (i = 1; i <= nfail; i++)
        printf "%s under %s (%s): %s\n", rows["failures.tsv", i, "workload"], rows["failures.tsv", i, "allocator"], \
            rows["failures.tsv", i, "phase"], rows["failures.tsv", i, "why"]
}

# ---- targets ------------------------------------------------------------------------

function target(name, verdict, detail) {
    ntargets++
    printf "%s\t%s\t%s\n", name, verdict, detail > (data "/targets.tsv")
    printf "[%-7s] %s: %s\n", verdict == "yes" ? "HOLDS" : verdict == "no" ? "MISSED" : "n/a", name, detail
}

function judge_targets(   k, a, worst, worst_peer, detail, i, w, b, r, slow, s, ok, n, d, ms, share) {
    printf "target\tholds\tdetail\n" > (data "/targets.tsv")
    printf "\n== Targets (issue 3)%s\n", quick ? " - QUICK RUN: too little work to judge, shown to exercise the code" : ""
    # 1. time geomean at or below the best peer's: against every peer.
    worst = ""; detail = ""
    for (k = 1; k <= na; k++) {
        a = alloc[k]
        if (a == ref || pair_geo["time", a] == "") continue
        detail = detail sprintf("%s%s %.2f", detail == "" ? "" : ", ", a, pair_geo["time", a])
        if (worst == "" || pair_geo["time", a] > worst) { worst = pair_geo["time", a]; worst_peer = a }
    }
    target("time geomean <= best peer's", worst == "" ? "n/a" : worst <= 1 ? "yes" : "no", \
        "geomean of " ref "/peer time ratios: " detail)
    # 2. no workload slower than 1.25x the best peer.
    slow = ""; n = 0
    for (i = 1; i <= nw; i++) {
        w = workloads[i]
        if (!timed[w]) continue
        b = best_peer("time", w); r = b == "" ? "" : ratio("time", w, b)
        if (r == "") continue
        n++
        if (r > 1.25) slow = slow sprintf("%s%s %.2f (vs %s)", slow == "" ? "" : ", ", w, r, b)
    }
    target("no workload > 1.25x the best peer", n == 0 ? "n/a" : slow == "" ? "yes" : "no", \
        slow == "" ? sprintf("all %d timed workloads within 1.25x", n) : "over: " slow)
    # 3. peak RSS geomean at or below jemalloc's.
    r = pair_geo["rss", "jemalloc"]
    target("peak RSS geomean <= jemalloc's", r == "" ? "n/a" : r <= 1 ? "yes" : "no", \
        r == "" ? "no jemalloc results" : sprintf("geomean of %s/jemalloc peak RSS ratios %.2f over %d workloads", ref, r, pair_n["rss", "jemalloc"]))
    # 4. fragmentation: peak RSS lower than jemalloc's.
    r = ratio("rss", "fragment", "jemalloc")
    target("fragment peak RSS < jemalloc's", r == "" ? "n/a" : r < 1 ? "yes" : "no", \
        r == "" ? "no results" : sprintf("%.1f vs %.1f MiB (ratio %.2f)", value["rss", "fragment", ref], value["rss", "fragment", "jemalloc"], r))
    # 5. fast path: fewer instructions per pair than mimalloc, every small
    # cached size (larger sizes are in the table for information).
    detail = ""; ok = 1; n = 0
    for (i = 1; i <= ncallgrind_sizes; i++) {
        s = callgrind_size[i]
        if (s + 0 > fastpath_max + 0) continue
        if (!((s, ref) in per_pair) || !((s, "mimalloc") in per_pair)) continue
        n++
        detail = detail sprintf("%s%s B %s vs %s", detail == "" ? "" : ", ", s, per_pair[s, ref], per_pair[s, "mimalloc"])
        if (per_pair[s, ref] + 0 >= per_pair[s, "mimalloc"] + 0) ok = 0
    }
    target("fast path < mimalloc's instructions", n == 0 ? "n/a" : ok ? "yes" : "no", \
        n == 0 ? "no callgrind results" : "sizes up to " fastpath_max " B, " ref " vs mimalloc: " detail)
    # 6. start-up at most 1.1x glibc.
    detail = ""; ok = 1; n = 0
    for (i = 1; i <= nw; i++) {
        w = workloads[i]
        if (w !~ /^startup/) continue
        r = ratio("time", w, "glibc")
        if (r == "") continue
        n++
        detail = detail sprintf("%s%s %.2f", detail == "" ? "" : ", ", w, r)
        if (r > 1.1) ok = 0
    }
    target("start-up <= 1.1x glibc", n == 0 ? "n/a" : ok ? "yes" : "no", n == 0 ? "no results" : detail)
    # 7. (mission) an idle process drops back within the decay time: by
    # X + 1 s, at least 80% of the freed memory is returned, for X >= 0.
    detail = ""; ok = 1; n = 0
    for (i = 1; i <= ndecay; i++) {
        if (rows["decay_summary.tsv", i, "allocator"] != ref) continue
        ms = rows["decay_summary.tsv", i, "dirty_decay_ms"]
        if (ms < 0) continue
        share = rows["decay_summary.tsv", i, "returned_share"]
        n++
        detail = detail sprintf("%s%s ms: %.0f%% by %.1f s", detail == "" ? "" : ", ", ms, 100 * share, \
            rows["decay_summary.tsv", i, "t_check_ms"] / 1000)
        if (share < 0.8) ok = 0
    }
    target("idle RSS drops back within decay time", n == 0 ? "n/a" : ok ? "yes" : "no", \
        n == 0 ? "no decay results" : "freed memory returned (>= 80% wanted): " detail)
}

# ---- machine-readable tables ----------------------------------------------------------

function write_ratio_tables(   i, k, w, a, bt, br, f, line) {
    f = data "/ratios.tsv"
    printf "workload\tversus\ttime_ratio\trss_ratio\n" > f
    for (i = 1; i <= nw; i++) {
        w = workloads[i]
        for (k = 1; k <= na; k++) {
            a = alloc[k]
            if (a == ref) continue
            printf "%s\t%s\t%s\t%s\n", w, a, fmt(ratio("time", w, a), "%.4f"), fmt(ratio("rss", w, a), "%.4f") > f
        }
        bt = best_peer("time", w); br = best_peer("rss", w)
        printf "%s\tbest peer (time: %s, rss: %s)\t%s\t%s\n", w, bt, br, \
            fmt(bt == "" ? "" : ratio("time", w, bt), "%.4f"), fmt(br == "" ? "" : ratio("rss", w, br), "%.4f") > f
    }
    f = data "/ratios_plot.tsv"      # wide, for gnuplot: "-" is missing
    line = "workload"
    for (k = 1; k <= na; k++) if (alloc[k] != ref) line = line "\ttime/" alloc[k]
    for (k = 1; k <= na; k++) if (alloc[k] != ref) line = line "\trss/" alloc[k]
    print line > f
    for (i = 1; i <= nw; i++) {
        w = workloads[i]
        line = w
        for (k = 1; k <= na; k++) if (alloc[k] != ref) line = line "\t" (timed[w] ? fmt(ratio("time", w, alloc[k]), "%.4f") : "-")
        for (k = 1; k <= na; k++) if (alloc[k] != ref) line = line "\t" fmt(ratio("rss", w, alloc[k]), "%.4f")
        print line > f
    }
    f = data "/geomeans.tsv"
    printf "kind\tallocator\tgeomean\tworkloads\tratio_geomean\tratio_workloads\n" > f
    split("time rss", kinds, " ")
    for (i = 1; i <= 2; i++)
        for (k = 1; k <= na + 1; k++) {
            a = k <= na ? alloc[k] : "best"
            printf "%s\t%s\t%s\t%d\t%s\t%s\n", kinds[i], a == "best" ? "best peer" : a, \
                a == "best" ? "-" : fmt(geo[kinds[i], a], "%.4f"), common_n[kinds[i]], \
                a == ref ? "1" : fmt(pair_geo[kinds[i], a], "%.4f"), a == ref ? common_n[kinds[i]] : pair_n[kinds[i], a] > f
        }
}

BEGIN {
    FS = "\t"
    na = split(allocs, alloc, " ")
    read_inputs()
    compute_geomeans("time")
    compute_geomeans("rss")
    printf "Medians of %s interleaved round(s); ratio = %s / other (below 1: %s faster or smaller)\n", rounds, ref, ref
    if (nw) {
        print_value_table("time", "Wall time (s)", "%.3f")
        print_value_table("rss", "Peak RSS (MiB)", "%.1f")
    }
    print_metrics()
    print_callgrind()
    print_decay()
    judge_targets()
    print_failures()
    write_ratio_tables()
}
