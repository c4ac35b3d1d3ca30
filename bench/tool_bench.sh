#!/usr/bin/env bash
# The lsock command against socat: FILE sent with `lsock send NAME FILE` into
# `lsock listen NAME > /dev/null`, and with `socat -u FILE UNIX-CONNECT:PATH` into
# `socat -u UNIX-LISTEN:PATH -` > /dev/null; interleaved, medians of ROUNDS. Target: lsock
# >= 0.9x socat's rate. A benchmark, not a test: it prints, it never fails on the target.
#
#   bench/tool_bench.sh LSOCK_BINARY [MIB] [ROUNDS]      (make bench; BENCH_SHORT=1: 64 MiB)
set -euo pipefail

bin=$1
mib=${2:-1024}
rounds=${3:-5}
if ! command -v socat >/dev/null; then
    echo "tool bench: skipped: socat is not installed (apt-get install socat)"
    exit 0
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/lsock-toolbench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
head -c $((mib * 1024 * 1024)) /dev/zero >"$dir/data"
cat "$dir/data" >/dev/null # in the page cache for both

now_ns() { date +%s%N; }

# One transfer with lsock; prints its rate in MB/s.
run_lsock() {
    local name=$dir/l.sock
    TMPDIR=$dir "$bin" listen "$name" >/dev/null 2>"$dir/l.err" &
    local server=$!
    until grep -q "listening on" "$dir/l.err" 2>/dev/null; do sleep 0.01; done
    local t0
    t0=$(now_ns)
    "$bin" send "$name" "$dir/data" --quiet
    wait "$server"
    echo $(((mib * 1024 * 1024) * 1000 / ($(now_ns) - t0)))
}

run_socat() {
    local path=$dir/s.sock
    rm -f "$path"
    socat -u "UNIX-LISTEN:$path" - >/dev/null &
    local server=$!
    until [ -S "$path" ]; do sleep 0.01; done
    local t0
    t0=$(now_ns)
    socat -u "$dir/data" "UNIX-CONNECT:$path"
    wait "$server"
    echo $(((mib * 1024 * 1024) * 1000 / ($(now_ns) - t0)))
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

l=() s=()
echo -n "lsock send vs socat, $mib MiB, $rounds rounds: "
for _ in $(seq "$rounds"); do
    l+=("$(run_lsock)")
    s+=("$(run_socat)")
    echo -n "."
done
echo
ml=$(median "${l[@]}")
ms=$(median "${s[@]}")
ratio=$(awk -v a="$ml" -v b="$ms" 'BEGIN { printf "%.3f", a / b }')
met=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.9) ? "yes" : "NO" }')
printf '%-40s %10s %10s %8s  %-16s %s\n' workload "lsock" "socat" "ratio" target "met?"
printf '%-40s %10s %10s %8s  %-16s %s\n' "send $mib MiB into listen (MB/s)" "$ml" "$ms" "$ratio" \
    ">= 0.90x socat" "$met"
