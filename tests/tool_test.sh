#!/usr/bin/env bash
# End-to-end tests of the lsock command: each CASE runs the built binary against itself (or a
# real Qt server), every client under `timeout` and every server killed at the end (or by a
# watchdog after 120 s), and exits 0 when it passed, 77 when it is skipped (with the reason),
# else 1 with what went wrong.
#
#   tests/tool_test.sh LSOCK_BINARY CASE [QT_PEER]
#
# Under Wine (LSOCK_TOOL_WINE=1) the binary is lsock.exe, run with wine, and names are pipes.
set -uo pipefail

bin=$1
case_name=$2
qt_peer=${3:-}
run=("$bin")
wine=${LSOCK_TOOL_WINE:-0}
if [ "$wine" = 1 ]; then run=(wine "$bin"); fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/lsock-tool.XXXXXX")
name=lsock-tool-$$-$RANDOM
export TMPDIR=$dir
pids=()
# watchdog PID: kills PID after 120 s if the test has not (its own output goes nowhere, so
# that it never keeps the test's output open).
watchdogs=()
watchdog() {
    (sleep 120 && kill -9 -- -"$1") </dev/null >/dev/null 2>&1 &
    watchdogs+=($!)
}
cleanup() {
    for p in "${watchdogs[@]+"${watchdogs[@]}"}"; do kill -9 "$p" 2>/dev/null; done
    for p in "${pids[@]+"${pids[@]}"}"; do kill -9 -- -"$p" "$p" 2>/dev/null; done
    for p in "${pids[@]+"${pids[@]}"}"; do wait "$p" 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT
fail() {
    echo "tool_test $case_name: FAILED: $*" >&2
    for f in "$dir"/*.log; do [ -f "$f" ] && sed "s|^|[$(basename "$f")] |" "$f" >&2; done
    exit 1
}
skip() {
    echo "skipped: $*"
    exit 77
}
now_ms() { date +%s%3N; }
lsock() { timeout 60 "${run[@]}" "$@"; }

# start LOG ARGS...: runs "lsock ARGS" in the background, in a process group of its own; waits
# until it listens. The cleanup kills the whole group: killing one process would leave the rest
# running (`wine` is a script that starts the program as its child), and under Wine the test's
# end would wait for them.
start() {
    local log=$1
    shift
    (exec setsid "${run[@]}" "$@" </dev/null >"$log" 2>"$log.err") &
    pids+=($!)
    watchdog "$!"
    local deadline=$(($(now_ms) + 20000))
    until grep -q "listening on" "$log.err" 2>/dev/null; do
        kill -0 "${pids[-1]}" 2>/dev/null || fail "the server exited: $(cat "$log.err")"
        [ "$(now_ms)" -lt "$deadline" ] || fail "the server did not listen within 20 s"
        sleep 0.02
    done
}

# A socket file with no server: a listener killed with SIGKILL leaves its file.
make_stale() {
    (exec setsid "${run[@]}" listen "$1" </dev/null >"$dir/stale.log" 2>&1) &
    local pid=$! deadline=$(($(now_ms) + 20000))
    pids+=("$pid")
    until [ -S "$dir/$1" ]; do
        [ "$(now_ms)" -lt "$deadline" ] || fail "no socket file at $dir/$1"
        sleep 0.02
    done
    kill -9 -- -"$pid"
    wait "$pid" 2>/dev/null
    [ -S "$dir/$1" ] || fail "no stale socket file at $dir/$1"
}

case $case_name in
echo_round_trip)
    start "$dir/server.log" listen "$name" --echo
    out=$(printf 'one\ntwo\n' | lsock connect "$name" -q 1) || fail "connect failed"
    [ "$out" = $'one\ntwo' ] || fail "echoed \"$out\""
    ;;
message_round_trip)
    start "$dir/server.log" listen "$name" --echo --message
    out=$(printf 'first line\n\nthird\n' | lsock connect "$name" --message -q 1) ||
        fail "connect failed"
    [ "$out" = $'first line\n\nthird' ] || fail "echoed \"$out\""
    ;;
send_50_mib_to_listen_byte_for_byte)
    mib=50
    [ "$wine" = 1 ] && mib=5 # every pipe operation is a request to the Wine server
    head -c $((mib * 1024 * 1024)) /dev/urandom >"$dir/data"
    start "$dir/received" listen "$name"
    lsock send "$name" "$dir/data" --quiet || fail "send failed"
    wait "${pids[-1]}" || fail "listen exited with an error"
    cmp "$dir/data" "$dir/received" || fail "the bytes differ"
    ;;
listen_keep_serves_clients_one_after_another)
    start "$dir/received" listen "$name" --keep
    printf 'a' | lsock send "$name" --quiet || fail "first send"
    printf 'b' | lsock send "$name" --quiet || fail "second send"
    deadline=$(($(now_ms) + 20000))
    until [ "$(cat "$dir/received")" = ab ]; do
        [ "$(now_ms)" -lt "$deadline" ] || fail "received \"$(cat "$dir/received")\""
        sleep 0.02
    done
    ;;
progress_bar_last_line_shows_100_percent_and_the_byte_count)
    head -c 3000000 /dev/zero >"$dir/data"
    start "$dir/received" listen "$name"
    lsock send "$name" "$dir/data" --progress 2>"$dir/progress" || fail "send failed"
    last=$(tr '\r' '\n' <"$dir/progress" | grep -v '^$' | tail -1)
    [[ $last == *"100%"* && $last == *"2.9 MiB of 2.9 MiB"* ]] || fail "last line: $last"
    ;;
probe_live_absent)
    out=$(lsock probe "$name")
    st=$?
    [ "$out/$st" = absent/2 ] || fail "absent: $out/$st"
    start "$dir/server.log" listen "$name" --echo
    out=$(lsock probe "$name")
    st=$?
    [ "$out/$st" = live/0 ] || fail "live: $out/$st"
    ;;
probe_live_stale_absent)
    out=$(lsock probe "$name")
    st=$?
    [ "$out/$st" = absent/2 ] || fail "absent: $out/$st"
    make_stale "$name"
    out=$(lsock probe "$name")
    st=$?
    [ "$out/$st" = stale/1 ] || fail "stale: $out/$st"
    rm -f "$dir/$name"
    start "$dir/server.log" listen "$name" --echo
    out=$(lsock probe "$name")
    st=$?
    [ "$out/$st" = live/0 ] || fail "live: $out/$st"
    ;;
rm_removes_stale_refuses_live_and_leaves_non_sockets)
    make_stale "$name"
    lsock rm "$name" >/dev/null || fail "rm of a stale file failed"
    [ ! -e "$dir/$name" ] || fail "the stale file is still there"
    start "$dir/server.log" listen "$name" --echo
    err=$(lsock rm "$name" 2>&1)
    st=$?
    [ $st = 1 ] || fail "rm of a live server exited $st"
    [[ $err == *"a server is listening"* ]] || fail "rm said: $err"
    [ -S "$dir/$name" ] || fail "the live server's file was removed"
    echo data >"$dir/plain"
    err=$(lsock rm plain 2>&1)
    st=$?
    [ $st = 1 ] && [[ $err == *"not a socket"* ]] || fail "rm of a regular file: $st $err"
    [ -f "$dir/plain" ] || fail "a regular file was removed"
    ;;
ls_shows_a_live_server_and_a_stale_file)
    make_stale "$name-stale"
    start "$dir/server.log" listen "$name-live" --echo
    out=$(lsock ls) || fail "ls failed"
    echo "$out"
    echo "$out" | grep -Eq "^live +[0-9]+ +[^ ]+ +$dir/$name-live\$" || fail "no live line"
    echo "$out" | grep -Eq "^stale +- +[^ ]+ +$dir/$name-stale\$" || fail "no stale line"
    ;;
connect_to_a_missing_server_fails_naming_the_reason)
    err=$(echo x | lsock connect "$name" 2>&1)
    st=$?
    [ $st = 1 ] || fail "exit $st"
    [ "$err" = "lsock connect: Server not found ($dir/$name does not exist)" ] ||
        [[ $err == "lsock connect: Server not found"* ]] || fail "said: $err"
    ;;
connect_to_a_qt_echo_server_by_bare_name)
    [ -n "$qt_peer" ] && [ -x "$qt_peer" ] || skip "no Qt peer built (install qtbase5-dev)"
    # qt_peer ends when its stdin does: give it one that stays open until the test ends.
    mkfifo "$dir/qt.in"
    sleep 60 >"$dir/qt.in" &
    pids+=($!)
    timeout 60 "$qt_peer" server "$name" <"$dir/qt.in" >"$dir/qt.log" 2>&1 &
    pids+=($!)
    deadline=$(($(now_ms) + 20000))
    until grep -q '^listening' "$dir/qt.log"; do
        [ "$(now_ms)" -lt "$deadline" ] || fail "the Qt server did not listen"
        sleep 0.02
    done
    out=$(printf 'line from lsock\nclose\n' | lsock connect "$name") || fail "connect failed"
    [ "$out" = $'hello 1\necho from lsock' ] || fail "the Qt server said \"$out\""
    ;;
usage_errors_exit_2)
    for args in "" "frob" "probe" "listen" "connect" "send" "rm" "probe x --frob" \
        "listen x --access nobody" "listen x --access" "connect x -q" "connect x -q -1" \
        "connect x -q 1x" "send x f extra" "send x --quiet --progress" "listen x --echo --keep" \
        "probe ''" "ls a b" "connect x --echo"; do
        eval "set -- $args"
        err=$(lsock "$@" 2>&1)
        st=$?
        [ $st = 2 ] || fail "\"lsock $args\" exited $st: $err"
        [[ $err == *"usage: lsock COMMAND"* ]] || fail "\"lsock $args\" printed no usage: $err"
    done
    ;;
help_and_version)
    lsock --version | grep -Eq '^lsock [0-9]+\.[0-9]+\.[0-9]+$' || fail "--version"
    lsock --help | grep -q 'usage: lsock COMMAND' || fail "--help"
    for c in listen connect send probe rm ls; do
        out=$(lsock "$c" --help) || fail "$c --help exited non-zero"
        [[ $out == "lsock $c"* ]] || fail "$c --help: $out"
        [[ $out == *"--same-user"* ]] || fail "$c --help does not name --same-user"
    done
    ;;
*)
    echo "tool_test: no case $case_name" >&2
    exit 2
    ;;
esac
echo "tool_test $case_name: ok"
exit 0
