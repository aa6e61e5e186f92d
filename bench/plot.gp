# The chart of bench/compare.sh: throughput, p99 latency and server CPU per
# request for each workload, Beacon next to etcd (bars: median over the
# rounds; whiskers: min and max).
#   gnuplot -e "datadir='bench/results/raw-compare-<stamp>'; out='bench/results/<stamp>.png'" bench/plot.gp
# Reads datadir/chart-throughput.dat, chart-latency.dat and chart-cpu.dat,
# written by bench/lib/compare_report.py ("?": the system did not run it).
if (!exists("datadir")) datadir = "."
if (!exists("out")) out = "compare.png"

set terminal pngcairo size 1400,1350 font "DejaVu Sans,10"
set output out
set datafile missing "?"
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set logscale y
set key top right
set xtics rotate by -20 left nomirror
set bars 0.5
set multiplot layout 3,1 title "Beacon (3 nodes) vs etcd 3.4 (3 members), loopback, fsync on: median over the rounds, whiskers min-max"

set title "throughput"
set ylabel "requests/s (log scale)"
plot datadir."/chart-throughput.dat" using 2:3:4:xtic(1) title "Beacon" lc rgb "#1f77b4", \
     "" using 5:6:7 title "etcd" lc rgb "#ff7f0e"

set title "p99 latency (wrk: closed loop, includes queueing; watch: write sent -> watcher has it)"
set ylabel "p99 ms (log scale)"
plot datadir."/chart-latency.dat" using 2:3:4:xtic(1) title "Beacon" lc rgb "#1f77b4", \
     "" using 5:6:7 title "etcd" lc rgb "#ff7f0e"

set title "server CPU per request (utime + stime of the 3 servers over the run / requests)"
set ylabel "CPU us per request (log scale)"
plot datadir."/chart-cpu.dat" using 2:3:4:xtic(1) title "Beacon" lc rgb "#1f77b4", \
     "" using 5:6:7 title "etcd" lc rgb "#ff7f0e"

unset multiplot
