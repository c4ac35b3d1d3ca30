#!/usr/bin/env bash
# Renders the charts from the data `make bench` leaves in the build directory (measured now
# when there is none): the message-size chart (pingpong latency and stream throughput of raw
# syscalls, lsock and libuv against message size), the messages chart (lsock's messages
# beside nng's and ZeroMQ's, and lsock's byte pingpong) and the workloads chart (every row of
# the table as lsock/raw and lsock/libuv; with BEFORE, a table file of an earlier build
# measured in the same machine state, its lsock/raw beside today's).
#
#   bench/plot.sh [BUILD_DIR] [OUTPUT.png] [MESSAGES.png] [WORKLOADS.png] [BEFORE]
#                                                                  (make bench-plot)
# An output given as - is not drawn (nor is its data measured).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build-bench}
out=${2:-docs/performance.png}
msg_out=${3:-docs/performance-messages.png}
table_out=${4:-docs/performance-workloads.png}
before=${5:-}
data=$build/bench-sizes.dat
msg_data=$build/bench-messages.dat
table_data=$build/bench-table.dat

if ! command -v gnuplot >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "bench-plot: installing gnuplot-nox"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gnuplot-nox ||
            { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
                --no-install-recommends gnuplot-nox; }
    else
        echo "bench-plot: gnuplot is not installed; install it (apt-get install gnuplot-nox as" \
            "root) and run make bench-plot again" >&2
        exit 1
    fi
fi

if [ "$out" != - ] && [ ! -s "$data" ]; then
    echo "bench-plot: no $data from make bench; measuring the message sizes now"
    "$build/bench/lsock-bench" --only sizes --data "$data" ${BENCH_ARGS:-}
fi

if [ "$msg_out" != - ] && [ ! -s "$msg_data" ]; then
    echo "bench-plot: no $msg_data from make bench; measuring the message workloads now"
    "$build/bench/lsock-bench" --only messages --no-sizes --msg-data "$msg_data" ${BENCH_ARGS:-}
fi

if [ "$table_out" != - ] && [ ! -s "$table_data" ]; then
    echo "bench-plot: no $table_data from make bench; measuring the workloads now"
    "$build/bench/lsock-bench" --no-sizes --only pingpong,blocking,stream,refill,connrate,fanin \
        --table-data "$table_data" ${BENCH_ARGS:-}
fi

mkdir -p "$(dirname "$out")" "$(dirname "$msg_out")" "$(dirname "$table_out")"
if [ "$out" != - ]; then
gnuplot <<GP
set terminal pngcairo size 1200,480 font ",10" noenhanced
set output "$out"
set multiplot layout 1,2 title "lsock vs raw syscalls vs libuv, AF_UNIX stream sockets ($(nproc) cores, $(uname -r))"
set logscale x 2
set grid
set key top left
set xlabel "message / write size (bytes)"
set xtics ("1" 1, "16" 16, "256" 256, "4K" 4096, "64K" 65536, "1M" 1048576)
set title "pingpong round trip (lower is better)"
set ylabel "microseconds per round trip"
set logscale y 10
plot "$data" using 1:2 with linespoints title "raw", \
     "$data" using 1:3 with linespoints title "lsock", \
     "$data" using 1:(\$4 > 0 ? \$4 : NaN) with linespoints title "libuv"
set title "stream throughput (higher is better)"
set ylabel "GB/s"
unset logscale y
plot "$data" using 1:5 with linespoints title "raw", \
     "$data" using 1:6 with linespoints title "lsock", \
     "$data" using 1:(\$7 > 0 ? \$7 : NaN) with linespoints title "libuv"
unset multiplot
GP
echo "bench-plot: wrote $out"
fi

if [ "$msg_out" != - ]; then
gnuplot <<GP
set terminal pngcairo size 1200,420 font ",10" noenhanced
set output "$msg_out"
set multiplot layout 1,3 title "lsock messages vs nng pair1 vs ZeroMQ PAIR over ipc:// ($(nproc) cores, $(uname -r))"
set style fill solid 0.7 border -1
set boxwidth 0.6
set grid ytics
unset key
set yrange [0:*]
set title "round trip, 64 B (lower is better)"
set ylabel "microseconds per round trip"
plot "$msg_data" index 0 using 0:2:xtic(1) with boxes
set title "one way, 64 B messages (higher is better)"
set ylabel "messages per second"
set logscale y 10
set yrange [*:*]
plot "$msg_data" index 1 using 0:2:xtic(1) with boxes
set title "one way, 64 KiB messages (higher is better)"
unset logscale y
set yrange [0:*]
plot "$msg_data" index 2 using 0:2:xtic(1) with boxes
unset multiplot
GP
echo "bench-plot: wrote $msg_out"
fi

# The workloads: one bar per row and ratio; 1.0 is parity. Latency rows are lower-better, the
# others higher-better: the row names say which (us, GB/s...) in the table, here the title.
if [ "$table_out" = - ]; then
    exit 0
fi
if [ -n "$before" ]; then
    plots="\"$table_data\" using 2:xtic(1) title \"lsock/raw\", \
      \"$table_data\" using (\$3 > 0 ? \$3 : NaN) title \"lsock/libuv\", \
      \"$before\" using 2 title \"lsock/raw before\""
else
    plots="\"$table_data\" using 2:xtic(1) title \"lsock/raw\", \
      \"$table_data\" using (\$3 > 0 ? \$3 : NaN) title \"lsock/libuv\""
fi
gnuplot <<GP
set terminal pngcairo size 1400,560 font ",10" noenhanced
set output "$table_out"
set title "lsock / raw syscalls and lsock / libuv per workload, medians of one interleaved run ($(nproc) cores, $(uname -r))\nlatency rows (pingpong, blocking 1 B): lower is better; the others: higher is better"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.7 border -1
set boxwidth 0.9
set grid ytics
set key top right
set logscale y 2
set yrange [0.25:8]
set ytics ("0.25" 0.25, "0.5" 0.5, "0.75" 0.75, "1" 1, "1.25" 1.25, "1.5" 1.5, "2" 2, "4" 4, "8" 8)
set xtics rotate by -35 left
set ylabel "ratio (log scale)"
set arrow from graph 0, first 1 to graph 1, first 1 nohead dashtype 2
plot $plots
GP
echo "bench-plot: wrote $table_out"
