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
#   tm_long_s  telemetry: workloads that ran at least this long (s) with
#            telemetry off get a geomean of their own
# Reads  workloads.tsv medians.tsv floor_medians.tsv metric_medians.tsv callgrind.tsv
#        decay_summary.tsv failures.tsv telemetry_variants.tsv
#        telemetry_medians.tsv
# Writes ratios.tsv geomeans.tsv targets.tsv ratios_plot.tsv
#        telemetry_ratios.tsv telemetry_geomeans.tsv; prints the report on
#        stdout.
# Ratio = ref's value / the other's value: below 1, ref is faster or smaller.
# Telemetry ratios = liballoc with telemetry on / off: above 1 is its cost.

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
        value["fastest", w, a] = rows["medians.tsv", i, "fastest_time_s"] + 0
        runs[w, a] = rows["medians.tsv", i, "runs"]
    }
    n = load("floor_medians.tsv")
    for (i = 1; i <= n; i++) {
        w = rows["floor_medians.tsv", i, "workload"]
        floor_time[w] = rows["floor_medians.tsv", i, "median_time_s"] + 0
        floor_name = rows["floor_medians.tsv", i, "allocator"]
    }
    nmetric_rows = load("metric_medians.tsv")
    ncallgrind = load("callgrind.tsv")
    ndecay = load("decay_summary.tsv")
    nfail = load("failures.tsv")
    read_telemetry()
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
        line = sprintf("%-14s", w (kind != "rss" && !timed[w] ? "*" : ""))
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
        common_n[kind], kind != "rss" ? ", * excluded (time is mostly sleep)" : ""
}

# The start-up floor (workloads.sh): glibc behind a preloaded library.
function print_floor(   i, w, g) {
    if (!length(floor_time)) return
    printf "\n== Start-up floor: glibc's malloc through a preloaded library (%s), what preloading alone costs\n", floor_name
    printf "%-14s %10s %10s %10s %14s %14s\n", "workload", "glibc", "floor", ref, "floor/glibc", ref "/floor"
    for (i = 1; i <= nw; i++) {
        w = workloads[i]
        if (!(w in floor_time) || !has("time", w, "glibc") || !has("time", w, ref)) continue
        g = value["time", w, "glibc"]
        printf "%-14s %10.3f %10.3f %10.3f %14.2f %14.2f\n", w, g, floor_time[w], value["time", w, ref], \
            floor_time[w] / g, value["time", w, ref] / floor_time[w]
    }
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

# ---- telemetry overhead ----------------------------------------------------------------
# Variant 1 (tvar[1], telemetry off) is the baseline; tm_target is the index
# of the 1 Hz variant (interval 1000 ms), the one the target is about.

function read_telemetry(   n, i, w, v, t) {
    ntv = load("telemetry_variants.tsv")
    tm_target = 0
    for (i = 1; i <= ntv; i++) {
        tvar[i] = rows["telemetry_variants.tsv", i, "variant"]
        tint[i] = rows["telemetry_variants.tsv", i, "interval_ms"] + 0
        if (tint[i] == 1000) tm_target = i
    }
    n = load("telemetry_medians.tsv")
    ntw = 0
    for (i = 1; i <= n; i++) {
        w = rows["telemetry_medians.tsv", i, "workload"]; v = rows["telemetry_medians.tsv", i, "variant"]
        if (!(w in tm_seen)) { tm_seen[w] = 1; tmw[++ntw] = w }
        tval["time", w, v] = rows["telemetry_medians.tsv", i, "median_time_s"] + 0
        tval["rss", w, v] = rows["telemetry_medians.tsv", i, "median_peak_rss_kib"] / 1024
    }
    # The spread of the off runs' times: what a ratio must beat to mean anything.
    n = load("telemetry_runs.tsv")
    for (i = 1; i <= n; i++) {
        if (rows["telemetry_runs.tsv", i, "variant"] != tvar[1]) continue
        w = rows["telemetry_runs.tsv", i, "workload"]; t = rows["telemetry_runs.tsv", i, "wall_s"] + 0
        toff_runs[w]++
        if (!(w in tmin) || t < tmin[w]) tmin[w] = t
        if (!(w in tmax) || t > tmax[w]) tmax[w] = t
    }
}

# (slowest - fastest) / median of the off runs of w, or "" (fewer than 2).
function tm_spread(w) {
    return toff_runs[w] > 1 && thas("time", w, 1) ? (tmax[w] - tmin[w]) / tval["time", w, tvar[1]] : ""
}

# The median of tm_spread over the workloads, or "".
function tm_median_spread(   i, j, n, v, t) {
    n = 0
    for (i = 1; i <= ntw; i++) if (tm_spread(tmw[i]) != "") v[++n] = tm_spread(tmw[i])
    for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
    return n == 0 ? "" : n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}

function thas(kind, w, k) { return ((kind, w, tvar[k]) in tval) && tval[kind, w, tvar[k]] > 0 }

# Variant k / off for workload w, or "".
function tm_ratio(kind, w, k) {
    return (thas(kind, w, 1) && thas(kind, w, k)) ? tval[kind, w, tvar[k]] / tval[kind, w, tvar[1]] : ""
}

# Ran at least tm_long_s with telemetry off.
function tm_long(w) { return thas("time", w, 1) && tval["time", w, tvar[1]] >= tm_long_s }

# About how many snapshots variant k publishes in the off run's time of w
# (the first one interval after start-up); "" when it is off.
function tm_snapshots(w, k) {
    return tint[k] > 0 && thas("time", w, 1) ? int(tval["time", w, tvar[1]] * 1000 / tint[k]) : ""
}

# Every variant has a median for workload w.
function tm_complete(kind, w,   k) {
    for (k = 1; k <= ntv; k++) if (!thas(kind, w, k)) return 0
    return 1
}

# Geomeans of variant k's ratios over the workloads of set "all" or "long"
# that every variant completed: tgeo[set, kind, k] ("" when none) and
# tgeo_n[set, kind].
function compute_tm_geomeans(   s, j, k, i, w, sum, n, sets, kinds) {
    split("all long", sets, " "); split("time rss", kinds, " ")
    for (s = 1; s <= 2; s++) for (j = 1; j <= 2; j++) {
        n = 0
        for (k = 2; k <= ntv; k++) sum[k] = 0
        for (i = 1; i <= ntw; i++) {
            w = tmw[i]
            if ((sets[s] == "long" && !tm_long(w)) || !tm_complete(kinds[j], w)) continue
            n++
            for (k = 2; k <= ntv; k++) sum[k] += log(tm_ratio(kinds[j], w, k))
        }
        for (k = 2; k <= ntv; k++) tgeo[sets[s], kinds[j], k] = n ? exp(sum[k] / n) : ""
        tgeo_n[sets[s], kinds[j]] = n
    }
}

# Workloads (space-separated) with off time below SECONDS, or at least it.
function tm_names(below, seconds,   i, w, out) {
    out = ""
    for (i = 1; i <= ntw; i++) {
        w = tmw[i]
        if (!thas("time", w, 1) || (tval["time", w, tvar[1]] < seconds) != below) continue
        out = out (out == "" ? "" : ", ") w
    }
    return out
}

function print_telemetry(   i, k, w, line, head, set, label, short_ones, long_ones, snaps) {
    if (!ntw) return
    printf "\n== Telemetry overhead: %s alone, ratio = telemetry on / off (medians of %s interleaved round(s))\n", ref, rounds
    head = sprintf("%-14s %9s %7s |", "workload", tvar[1] " (s)", "spread")
    for (k = 2; k <= ntv; k++) head = head sprintf(" %9s", tvar[k] "/" tvar[1])
    head = head sprintf(" | %9s", tvar[1] " (MiB)")
    for (k = 2; k <= ntv; k++) head = head sprintf(" %9s", tvar[k] "/" tvar[1])
    snaps = ""
    for (k = 2; k <= ntv; k++) snaps = snaps " " tvar[k]
    print head " | snapshots" snaps
    for (i = 1; i <= ntw; i++) {
        w = tmw[i]
        line = sprintf("%-14s %9s %7s |", w (tm_long(w) ? "+" : ""), thas("time", w, 1) ? sprintf("%.3f", tval["time", w, tvar[1]]) : "-", \
            tm_spread(w) == "" ? "-" : sprintf("%.0f%%", 100 * tm_spread(w)))
        for (k = 2; k <= ntv; k++) line = line sprintf(" %9s", fmt(tm_ratio("time", w, k), "%.3f"))
        line = line sprintf(" | %9s", thas("rss", w, 1) ? sprintf("%.1f", tval["rss", w, tvar[1]]) : "-")
        for (k = 2; k <= ntv; k++) line = line sprintf(" %9s", fmt(tm_ratio("rss", w, k), "%.3f"))
        line = line " |"
        for (k = 2; k <= ntv; k++) line = line sprintf(" %" (k == 2 ? length("snapshots " tvar[k]) : length(tvar[k])) "s", tm_snapshots(w, k))
        print line
    }
    for (set = 1; set <= 2; set++) {
        label = set == 1 ? "all" : "long"
        line = sprintf("%-32s |", sprintf("geomean, %s (%d)", set == 1 ? "all" : ">= " tm_long_s " s", tgeo_n[label, "time"]))
        for (k = 2; k <= ntv; k++) line = line sprintf(" %9s", tgeo[label, "time", k] == "" ? "n/a" : sprintf("%.3f", tgeo[label, "time", k]))
        line = line sprintf(" | %9s", "")
        for (k = 2; k <= ntv; k++) line = line sprintf(" %9s", tgeo[label, "rss", k] == "" ? "n/a" : sprintf("%.3f", tgeo[label, "rss", k]))
        print line
    }
    short_ones = tm_names(1, 1); long_ones = tm_names(0, tm_long_s)
    printf "%s", wrap(sprintf("Spread: (slowest - fastest) / median of the %s runs; a ratio nearer to 1 than that " \
        "may be noise.  Snapshots: about how many each variant publishes in the %s run's time.  The first " \
        "comes one interval after start-up, so the workloads under 1 s never publish at 1 Hz (%s): their 1 Hz " \
        "ratio is the cost of starting and stopping the publisher thread only.  + ran >= %s s with telemetry off " \
        "(%s): their geomean is the steady cost of publishing%s.", tvar[1], tvar[1], \
        short_ones == "" ? "none" : short_ones, tm_long_s, long_ones == "" ? "none" : long_ones, \
        long_ones == "" ? " (n/a: none in this " (quick ? "quick " : "") "run)" : ""), 100)
}

# TEXT folded into lines of at most WIDTH characters, at spaces.
function wrap(text, width,   n, i, words, out, line) {
    n = split(text, words, " ")
    out = ""; line = ""
    for (i = 1; i <= n; i++) {
        if (line != "" && length(line) + 1 + length(words[i]) > width) { out = out line "\n"; line = "" }
        line = line (line == "" ? "" : " ") words[i]
    }
    return out line "\n"
}

function write_telemetry_tables(   f, i, k, w, line, set, label) {
    f = data "/telemetry_ratios.tsv"
    line = "workload\toff_time_s\toff_time_spread\toff_peak_rss_mib\tlong"
    for (k = 2; k <= ntv; k++) line = line "\ttime_ratio_" tvar[k] "\trss_ratio_" tvar[k] "\tsnapshots_" tvar[k]
    print line > f
    for (i = 1; i <= ntw; i++) {
        w = tmw[i]
        line = sprintf("%s\t%s\t%s\t%s\t%d", w, thas("time", w, 1) ? sprintf("%.4f", tval["time", w, tvar[1]]) : "-", \
            fmt(tm_spread(w), "%.4f"), thas("rss", w, 1) ? sprintf("%.1f", tval["rss", w, tvar[1]]) : "-", tm_long(w))
        for (k = 2; k <= ntv; k++)
            line = line sprintf("\t%s\t%s\t%s", fmt(tm_ratio("time", w, k), "%.4f"), fmt(tm_ratio("rss", w, k), "%.4f"), tm_snapshots(w, k))
        print line > f
    }
    f = data "/telemetry_geomeans.tsv"
    printf "workloads\tvariant\tcount\ttime_ratio_geomean\trss_ratio_geomean\n" > f
    for (set = 1; set <= 2; set++) {
        label = set == 1 ? "all" : "long"
        for (k = 2; k <= ntv; k++)
            printf "%s\t%s\t%d\t%s\t%s\n", set == 1 ? "all" : ">= " tm_long_s " s off", tvar[k], tgeo_n[label, "time"], \
                fmt(tgeo[label, "time", k], "%.4f"), fmt(tgeo[label, "rss", k], "%.4f") > f
    }
}

# ---- targets ------------------------------------------------------------------------

function target(name, verdict, detail) {
    ntargets++
    printf "%s\t%s\t%s\n", name, verdict, detail > (data "/targets.tsv")
    printf "[%-7s] %s: %s\n", verdict == "yes" ? "HOLDS" : verdict == "no" ? "MISSED" : "n/a", name, detail
}

# The timed workloads where ref's `kind` (time or fastest) is over `limit`
# times the best peer's, as "w r (vs peer), ..."; nslow_judged = how many
# workloads had a ratio.
function slower_than(kind, limit,   i, w, b, r, slow) {
    slow = ""; nslow_judged = 0
    for (i = 1; i <= nw; i++) {
        w = workloads[i]
        if (!timed[w]) continue
        b = best_peer(kind, w); r = b == "" ? "" : ratio(kind, w, b)
        if (r == "") continue
        nslow_judged++
        if (r > limit) slow = slow sprintf("%s%s %.2f (vs %s)", slow == "" ? "" : ", ", w, r, b)
    }
    return slow
}

function judge_targets(   k, a, worst, worst_peer, detail, i, w, b, r, slow, fast, s, ok, n, d, ms, share) {
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
    # 2. no workload slower than 1.25x the best peer: judged on the medians;
    # the fastest runs' view follows, since interference only adds time.
    slow = slower_than("time", 1.25); n = nslow_judged
    fast = slower_than("fastest", 1.25)
    target("no workload > 1.25x the best peer", n == 0 ? "n/a" : slow == "" ? "yes" : "no", \
        (slow == "" ? sprintf("all %d timed workloads within 1.25x", n) : "over: " slow) \
        (nslow_judged == 0 ? "" : fast == "" ? "; fastest runs: all within 1.25x" : "; fastest runs over: " fast))
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
        if (w in floor_time && has("time", w, "glibc"))
            detail = detail sprintf(" (preloading alone %.2f)", floor_time[w] / value["time", w, "glibc"])
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
    # 8. telemetry at 1 Hz costs under 1% of the time.  Judged on the geomean
    # of 1Hz/off over ALL the timed workloads, not only those that ran >= 2 s
    # (whose geomean is in the detail): at the full work sizes few or none of
    # them run that long under liballoc (the longest take ~1.7 s), which would
    # leave the target n/a or resting on one or two ratios whose noise on this
    # machine is larger than 1%; and the publisher thread is started in every
    # process, so what a program pays for telemetry includes its start and
    # stop, which the short workloads (start-up ones above all) measure.
    r = tm_target ? tgeo["all", "time", tm_target] : ""
    if (r == "") detail = ntw ? "no 1 Hz results" : "telemetry part not run (bench/run --telemetry)"
    else {
        d = tgeo["long", "time", tm_target]
        detail = sprintf("geomean of 1 Hz / off time over %d workloads %.3f (%+.1f%%); over the %d that ran >= %s s: %s; " \
            "median spread of the off runs %s", tgeo_n["all", "time"], r, 100 * (r - 1), tgeo_n["long", "time"], tm_long_s, \
            d == "" ? "n/a" : sprintf("%.3f (%+.1f%%)", d, 100 * (d - 1)), fmt(tm_median_spread() == "" ? "" : 100 * tm_median_spread(), "%.0f%%"))
    }
    target("telemetry overhead < 1% at 1 Hz", r == "" ? "n/a" : r < 1.01 ? "yes" : "no", detail)
}

# ---- machine-readable tables ----------------------------------------------------------

function write_ratio_tables(   i, k, w, a, bt, br, bf, f, line) {
    f = data "/ratios.tsv"
    printf "workload\tversus\ttime_ratio\trss_ratio\tfastest_time_ratio\n" > f
    for (i = 1; i <= nw; i++) {
        w = workloads[i]
        for (k = 1; k <= na; k++) {
            a = alloc[k]
            if (a == ref) continue
            printf "%s\t%s\t%s\t%s\t%s\n", w, a, fmt(ratio("time", w, a), "%.4f"), fmt(ratio("rss", w, a), "%.4f"), \
                fmt(ratio("fastest", w, a), "%.4f") > f
        }
        bt = best_peer("time", w); br = best_peer("rss", w); bf = best_peer("fastest", w)
        printf "%s\tbest peer (time: %s, rss: %s, fastest: %s)\t%s\t%s\t%s\n", w, bt, br, bf, \
            fmt(bt == "" ? "" : ratio("time", w, bt), "%.4f"), fmt(br == "" ? "" : ratio("rss", w, br), "%.4f"), \
            fmt(bf == "" ? "" : ratio("fastest", w, bf), "%.4f") > f
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
    split("time rss fastest", kinds, " ")
    for (i = 1; i <= 3; i++)
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
    compute_geomeans("fastest")
    printf "Medians of %s interleaved round(s) (the small processes of SMALL_WORKLOADS: several runs a round); ratio = %s / other (below 1: %s faster or smaller)\n", rounds, ref, ref
    if (nw) {
        print_value_table("time", "Wall time (s)", "%.3f")
        print_value_table("rss", "Peak RSS (MiB)", "%.1f")
        print_value_table("fastest", "Wall time, fastest run (s): interference on a shared machine only adds time", "%.3f")
    }
    print_floor()
    print_metrics()
    print_callgrind()
    print_decay()
    compute_tm_geomeans()
    print_telemetry()
    judge_targets()
    print_failures()
    write_ratio_tables()
    write_telemetry_tables()
}
