set terminal pngcairo size 1400,700 noenhanced font ",11"
set output "bench/results/ratios.png"
set title "StackFs throughput as a ratio to native (same machine, same run); marks: targets"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:*]
set ylabel "ratio to native"
set grid ytics
set key outside top center horizontal
set xtics scale 0 font ",9"
set datafile separator "	"
plot for [i=2:6] "bench/results/ratios.dat" using i:xtic(1) title columnheader(i),                  "bench/results/ratios.dat" using ($0 - 1):7 with points pt 9 ps 2.5 lc rgb "black" title "target"