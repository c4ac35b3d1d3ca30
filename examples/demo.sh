#!/usr/bin/env bash
# Runs the examples against each other:
#   1. echo_server (serving 2 clients) with echo_client, then blocking_client;
#   2. readme_event (the README's server) with readme_blocking (the README's client).
#   3. readme_messages (the README's messages example: a server and a client in one process).
#   4. single_instance: a primary, then two later starts that hand it their arguments.
#   5. readme_descriptors (the README's example: a file passed with one message), then
#      share_memory: a producer passes 1 GiB of shared memory (a memfd) to a consumer as one
#      descriptor with one message.
# Every program runs under `timeout`; a server still running at the end is killed. Exit status
# 0 only if every step succeeded.
#
#   examples/demo.sh [BINDIR]        BINDIR holds the built examples (default: build/examples)
set -euo pipefail

bindir=${1:-build/examples}
tmpdir=${TMPDIR:-/tmp}
name=lsock-demo-$$
step_timeout=30   # seconds for each client
server_timeout=90 # seconds for a whole server run (a backstop; the server exits by itself)
ready_timeout=10  # seconds for a server to be ready

for prog in echo_server echo_client blocking_client readme_event readme_blocking readme_messages \
    single_instance readme_descriptors share_memory; do
    if [ ! -x "$bindir/$prog" ]; then
        echo "demo: $bindir/$prog not found; build first (cmake -S . -B build && cmake --build build)" >&2
        exit 2
    fi
done

logdir=$(mktemp -d "$tmpdir/lsock-demo-logs.XXXXXX")
server_pid=
socket_paths=()

cleanup() {
    local status=$?
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        echo "demo: killing server (pid $server_pid)"
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    for path in "${socket_paths[@]+"${socket_paths[@]}"}"; do
        rm -f "$path"
    done
    rm -rf "$logdir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "demo: FAILED: $*" >&2
    exit 1
}

now_ms() {
    date +%s%3N
}

# start_server LOG PROGRAM ARGS...: starts a server in the background, its output copied to
# LOG and to stdout with a "[server]" prefix; sets server_pid.
start_server() {
    local log=$1
    shift
    : >"$log"
    timeout "$server_timeout" "$@" > >(tee -a "$log" | sed -u 's/^/[server] /') 2>&1 &
    server_pid=$!
}

# wait_for_socket PATH: waits until PATH is a socket, for at most ready_timeout seconds; fails
# if the server exits first.
wait_for_socket() {
    local path=$1 deadline=$(($(now_ms) + ready_timeout * 1000))
    until [ -S "$path" ]; do
        kill -0 "$server_pid" 2>/dev/null || fail "the server exited before listening on $path"
        [ "$(now_ms)" -lt "$deadline" ] || fail "no socket at $path after ${ready_timeout}s"
        sleep 0.05
    done
}

# wait_for_exit SECONDS: waits for the server to exit by itself; fails if it does not or if it
# exits non-zero.
wait_for_exit() {
    local deadline=$(($(now_ms) + $1 * 1000)) status=0
    while kill -0 "$server_pid" 2>/dev/null; do
        [ "$(now_ms)" -lt "$deadline" ] || fail "the server did not exit within $1s"
        sleep 0.05
    done
    wait "$server_pid" || status=$?
    server_pid=
    [ "$status" -eq 0 ] || fail "the server exited with status $status"
}

# run_client LABEL PROGRAM ARGS...: runs a client with a time limit, its output prefixed.
run_client() {
    local label=$1 status=0
    shift
    echo
    echo "== $label: $*"
    timeout "$step_timeout" "$@" 2>&1 | sed -u "s/^/[$label] /" || status=${PIPESTATUS[0]}
    [ "$status" -eq 0 ] || fail "$label exited with status $status"
}

echo "== echo_server $name 2 (serves two clients, then exits)"
start_server "$logdir/echo_server.log" "$bindir/echo_server" "$name" 2
# The library resolves the name to a path; the server prints it in its "listening on" line.
deadline=$(($(now_ms) + ready_timeout * 1000))
until grep -q 'listening on ' "$logdir/echo_server.log"; do
    kill -0 "$server_pid" 2>/dev/null || fail "echo_server exited before listening"
    [ "$(now_ms)" -lt "$deadline" ] || fail "echo_server not listening after ${ready_timeout}s"
    sleep 0.05
done
path=$(sed -n 's/^listening on \(.*\) ([a-z]* backend)$/\1/p' "$logdir/echo_server.log")
[ -n "$path" ] || fail "cannot read the socket path from the server's output"
socket_paths+=("$path")
wait_for_socket "$path"

run_client echo_client "$bindir/echo_client" "$name"
run_client blocking_client "$bindir/blocking_client" "$name" "hello from blocking_client"
wait_for_exit 10
[ ! -e "$path" ] || fail "echo_server left its socket file $path behind"
echo "== echo_server exited"

# The README's server serves until killed; its socket goes in the same directory.
readme_name=$name-readme
readme_path=$(dirname "$path")/$readme_name
socket_paths+=("$readme_path")
echo
echo "== readme_event $readme_name (the README's server)"
start_server "$logdir/readme_event.log" "$bindir/readme_event" "$readme_name"
wait_for_socket "$readme_path"
run_client readme_blocking "$bindir/readme_blocking" "$readme_name"
kill -0 "$server_pid" 2>/dev/null || fail "readme_event died"
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=

# The README's messages example: its own server and client, one message between them.
messages_name=$name-messages
socket_paths+=("$(dirname "$path")/$messages_name")
run_client readme_messages "$bindir/readme_messages" "$messages_name"

# Single instance: the first start is the primary; two later starts hand it their arguments.
app=org.example.demo-$$
echo
echo "== single_instance --app $app --count 2 (the primary: prints two messages, then exits)"
start_server "$logdir/single_instance.log" "$bindir/single_instance" --app "$app" --count 2
deadline=$(($(now_ms) + ready_timeout * 1000))
until grep -q '^primary ' "$logdir/single_instance.log"; do
    kill -0 "$server_pid" 2>/dev/null || fail "single_instance exited before it was primary"
    [ "$(now_ms)" -lt "$deadline" ] || fail "single_instance not primary after ${ready_timeout}s"
    sleep 0.05
done
run_client second "$bindir/single_instance" --app "$app" open report.txt
run_client third "$bindir/single_instance" --app "$app" --new-window
wait_for_exit 10
grep -q ': open report.txt$' "$logdir/single_instance.log" || fail "the primary missed a message"
grep -q ': --new-window$' "$logdir/single_instance.log" || fail "the primary missed a message"

# The README's descriptors example: a file passed with one message, in one process.
descriptors_name=$name-descriptors
socket_paths+=("$(dirname "$path")/$descriptors_name")
run_client readme_descriptors "$bindir/readme_descriptors" "$descriptors_name"

# Shared memory: the consumer listens; the producer passes it 1 GiB as one descriptor.
share_name=$name-share
socket_paths+=("$(dirname "$path")/$share_name")
echo
echo "== share_memory consume $share_name (takes one block, checks every byte, exits)"
start_server "$logdir/share_memory.log" "$bindir/share_memory" consume "$share_name"
deadline=$(($(now_ms) + ready_timeout * 1000))
until grep -q '^consumer: listening' "$logdir/share_memory.log"; do
    kill -0 "$server_pid" 2>/dev/null || fail "share_memory consume exited before listening"
    [ "$(now_ms)" -lt "$deadline" ] || fail "share_memory consume not listening after ${ready_timeout}s"
    sleep 0.05
done
run_client producer "$bindir/share_memory" produce "$share_name" 1024
wait_for_exit 30
grep -q '(as sent)$' "$logdir/share_memory.log" || fail "the consumer saw other bytes"

echo
echo "== demo passed"
