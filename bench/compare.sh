#!/usr/bin/env bash
# Two builds of lsock, one run: the library of commit BEFORE and the working tree's, each
# built with the working tree's bench/ the same way, measured in turns. Round k runs
# `lsock-bench --rounds 1` of one build and then of the other (the order alternates, so neither
# always runs first), each against raw syscalls in the same process, so that the two figures
# of a round are taken seconds apart in the same machine state.
#
#   bench/compare.sh BEFORE [ROUNDS] [ONLY] [IMPLS]          (make bench-compare)
#
# ROUNDS: pairs of runs (default 5). ONLY: lsock-bench's --only list (default the workloads of
# the table). IMPLS: lsock-bench's --impl (default raw,lsock: raw is the control). BENCH_ARGS
# in the environment is passed on to every run (e.g. BENCH_ARGS='--cpus 0,1').
#
# For every row it prints medians over the rounds of after/before, turned so that above 1 is
# faster (a latency's before/after, a throughput's after/before): of lsock's own figure; of
# raw's (the same code in both builds: how far the machine moved between the two runs of a
# round); and of lsock/raw (lsock's figure against raw's measured seconds before it in the
# same run: the machine's drift between the runs cancels out). "better" counts the rounds in
# which lsock/raw was the better after. A row is "slower" when both lsock's median and the
# lsock/raw median are below 0.97 and lsock/raw was better after in fewer than half the
# rounds; "faster" the other way round; "level" otherwise. A BEFORE whose lsock.h lacks lsock_loop_set_busy_poll or
# lsock_socket_write_owned is built with -DBENCH_NO_BUSY_POLL / -DBENCH_NO_WRITE_OWNED: its
# busy-poll row runs without busy polling, its write_owned row writes with lsock_socket_write.
# BEFORE must have the benchmark build (LSOCK_BUILD_BENCH and the lsock_static library); an
# older one fails to build, and the build's log says why.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -ge 1 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2; }
before_rev=$1
rounds=${2:-5}
only=${3:-pingpong,blocking,stream,refill,connrate,fanin}
impls=${4:-raw,lsock}
case $rounds in '' | *[!0-9]* | 0) echo "compare: ROUNDS must be a positive number" >&2; exit 2 ;; esac
sha=$(git rev-parse --verify --quiet "$before_rev^{commit}") ||
    { echo "compare: $before_rev is not a commit here" >&2; exit 2; }

work=build-compare
rm -rf "$work"
mkdir -p "$work/before-src" "$work/after-src" "$work/data"
git archive "$sha" | tar -x -C "$work/before-src"
# The working tree as it is (committed or not): what `make bench` would measure.
# (tracked files deleted from the working tree are left out: they are not part of it).
git ls-files -co --exclude-standard -z | grep -zv "^$work/" |
    while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done |
    xargs -0 -r cp --parents -t "$work/after-src" --
rm -rf "$work/before-src/bench"
cp -r bench "$work/before-src/bench"

build() { # $1 source tree, $2 build dir
    local defs=""
    grep -q lsock_loop_set_busy_poll "$1/include/lsock.h" || defs+=" -DBENCH_NO_BUSY_POLL"
    grep -q lsock_socket_write_owned "$1/include/lsock.h" || defs+=" -DBENCH_NO_WRITE_OWNED"
    cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DLSOCK_BUILD_BENCH=ON \
        -DLSOCK_BUILD_TESTS=OFF -DLSOCK_BUILD_EXAMPLES=OFF -DLSOCK_BUILD_TOOLS=OFF \
        -DCMAKE_C_FLAGS="$defs" >"$2.log" 2>&1 &&
        cmake --build "$2" --target lsock-bench -j "$(nproc)" >>"$2.log" 2>&1 ||
        { echo "compare: building $1 failed; see $2.log" >&2; tail -20 "$2.log" >&2; exit 1; }
    echo "compare: built $2/bench/lsock-bench${defs:+ with$defs}"
}
build "$work/before-src" "$work/before"
build "$work/after-src" "$work/after"

run() { # $1 before|after, $2 round
    "$work/$1/bench/lsock-bench" --no-sizes --only "$only" --impl "$impls" --rounds 1 \
        --table-data "$work/data/$1-$2.dat" ${BENCH_ARGS:-} >"$work/data/$1-$2.log" 2>&1 ||
        { echo "compare: the $1 build failed in round $2; see $work/data/$1-$2.log" >&2; exit 1; }
}
for ((k = 1; k <= rounds; k++)); do
    if ((k % 2)); then run before "$k"; run after "$k"; else run after "$k"; run before "$k"; fi
    echo "compare: round $k of $rounds done"
done

echo
echo "lsock: $(git log -1 --format='%h %s' "$sha" | cut -c1-60) (before)"
echo "       the working tree at $(git log -1 --format=%h HEAD) (after), $rounds rounds in turns${BENCH_ARGS:+, $BENCH_ARGS}"
awk -v rounds="$rounds" '
function med(a, n,    i, j, t) { # sorts a[1..n] in place
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
FNR == 1 { split(FILENAME, p, "/"); file = p[length(p)]; side = (file ~ /^before/) ? "b" : "a";
           k = file; sub(/^[a-z]+-/, "", k); sub(/\.dat$/, "", k) }
/^#/ { next }
{
    n1 = index($0, "\""); rest = substr($0, n1 + 1); n2 = index(rest, "\"");
    name = substr(rest, 1, n2 - 1); split(substr(rest, n2 + 1), f, " ");
    if (!(name in seen)) { seen[name] = 1; order[++nrows] = name }
    raw[side, name, k] = f[3]; ls[side, name, k] = f[4]; lower[name] = f[6]
}
END {
    printf "\n%-38s %9s %9s %11s %6s  %s\n", "workload", "lsock a/b", "raw a/b", "lsock/raw", "better", "verdict"
    for (i = 1; i <= nrows; i++) {
        name = order[i]; n = 0; wins = 0
        for (k = 1; k <= rounds; k++) {
            if (!(("b", name, k) in ls) || !(("a", name, k) in ls)) continue
            lb = ls["b", name, k]; la = ls["a", name, k]; rb = raw["b", name, k]; ra = raw["a", name, k]
            n++; L[n] = lower[name] ? lb / la : la / lb; R[n] = lower[name] ? rb / ra : ra / rb
            Q[n] = L[n] / R[n]; if (Q[n] > 1) wins++
        }
        if (!n) continue
        ml = med(L, n); mr = med(R, n); mq = med(Q, n)
        slow = ml < 0.97 && mq < 0.97 && wins < n / 2
        fast = ml > 1.03 && mq > 1.03 && wins > n / 2
        verdict = slow ? "slower" : fast ? "faster" : "level"
        printf "%-38s %9.3f %9.3f %11.3f %3d/%-2d  %s\n", name, ml, mr, mq, wins, n, verdict
        if (slow) nslow++
    }
    printf "\n%d of %d rows slower after\n", nslow, nrows
}' "$work"/data/*.dat
