# bench/lib/series.gp - an RSS-over-time chart, one line per series: the
# idle-after-burst workload (one series per allocator) and the decay study
# (one per allocator and setting).  Called by bench/lib/report.sh with -e:
# datafile (three tab-separated columns with a header: series name, t_ms,
# rss_kib), output, series (the names, space-separated), title_text and
# colour_step: 1 gives every series its own colour; 2 gives consecutive pairs
# one colour (the decay study: liballoc and jemalloc at the same setting),
# jemalloc's line dashed.  The header line matches no series name, so it is
# never plotted.
set terminal pngcairo size 1200,700 font ",10"
set output output
set datafile separator "\t"
set title title_text noenhanced
set xlabel "seconds since the frees"
set ylabel "RSS (MiB)"
set grid
set key outside right noenhanced
set yrange [0:*]
array colours[6] = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#444444"]
colour(k) = colours[(int((k - 1) / colour_step) % 6) + 1]
dash(k) = strstrt(word(series, k), "jemalloc") && colour_step > 1 ? 2 : 1
plot for [k=1:words(series)] datafile \
     using ($2 / 1000.0):(strcol(1) eq word(series, k) ? $3 / 1024.0 : 1/0) \
     with lines lw 2 lc rgb colour(k) dt dash(k) title word(series, k)
