# bench/lib/ratios.gp - the ratios chart: for every workload, liballoc's
# wall time (top) and peak RSS (bottom) divided by each peer's, one bar per
# peer, on a log scale so that 2x better and 2x worse look alike.  Bars
# below the line at 1 are workloads where liballoc is faster / smaller.
# Called by bench/lib/report.sh with -e: datafile (report.awk's
# ratios_plot.tsv: workload, then `peers` time columns, then `peers` RSS
# columns), output, peers, ref.
set terminal pngcairo size 1400,900 font ",10"
set output output
set datafile separator "\t"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 2
set yrange [0.125:8]
set ytics ("1/8" 0.125, "1/4" 0.25, "1/2" 0.5, "1" 1, "2" 2, "4" 4, "8" 8)
set grid ytics
set xtics rotate by -30 noenhanced
set key top left horizontal noenhanced
set linetype 1 lc rgb "#7570b3"
set linetype 2 lc rgb "#1b9e77"
set linetype 3 lc rgb "#d95f02"
set linetype 4 lc rgb "#e7298a"
set multiplot layout 2,1 title sprintf("%s / peer (below 1: %s better)", ref, ref) noenhanced
set title "wall time (median)" noenhanced
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2 front
plot for [i=2:1+peers] datafile using i:xtic(1) title columnheader(i)
set title "peak RSS (median)" noenhanced
plot for [i=2+peers:1+2*peers] datafile using i:xtic(1) title columnheader(i)
unset multiplot
