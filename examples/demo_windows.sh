#!/usr/bin/env bash
# The demo for a Windows cross build, run under Wine (make test-windows): echo_server by bare
# name with echo_client and blocking_client, then the README's pair and its messages example,
# then readme_descriptors and share_memory passing a file and a file mapping handle.
# Each program is a Windows .exe; they meet on the named pipe \\.\pipe\NAME.
#
#   examples/demo_windows.sh BINDIR        (WINE: the wine command, default wine)
set -euo pipefail

bindir=${1:?usage: demo_windows.sh BINDIR}
wine=${WINE:-wine}
name=lsock-demo-$$
logdir=$(mktemp -d "${TMPDIR:-/tmp}/lsock-demo-win.XXXXXX")
server_pid=

cleanup() {
    local status=$?
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$logdir"
    exit "$status"
}
trap cleanup EXIT

fail() {
    echo "demo: FAILED: $*" >&2
    exit 1
}

run_client() {
    local label=$1 status=0
    shift
    echo "== $label: $*"
    timeout 60 "$wine" "$@" 2>&1 | tr -d '\r' | sed -u "s/^/[$label] /" || status=${PIPESTATUS[0]}
    [ "$status" -eq 0 ] || fail "$label exited with status $status"
}

echo "== echo_server $name 2 (serves two clients, then exits)"
timeout 120 "$wine" "$bindir/echo_server.exe" "$name" 2 >"$logdir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do
    grep -q 'listening on ' "$logdir/server.log" && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$logdir/server.log"; fail "echo_server exited"; }
    sleep 0.1
done
grep -q 'listening on ' "$logdir/server.log" || fail "echo_server is not listening"
tr -d '\r' <"$logdir/server.log" | sed 's/^/[server] /'

run_client echo_client "$bindir/echo_client.exe" "$name"
run_client blocking_client "$bindir/blocking_client.exe" "$name" "hello from blocking_client"
status=0
wait "$server_pid" || status=$?
server_pid=
tr -d '\r' <"$logdir/server.log" | sed 's/^/[server] /'
[ "$status" -eq 0 ] || fail "echo_server exited with status $status"

echo "== readme_event $name-readme (the README's server) with readme_blocking"
timeout 120 "$wine" "$bindir/readme_event.exe" "$name-readme" >"$logdir/readme.log" 2>&1 &
server_pid=$!
ok=
for _ in $(seq 100); do
    if timeout 60 "$wine" "$bindir/readme_blocking.exe" "$name-readme" >"$logdir/client.log" 2>&1; then
        ok=1
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || fail "readme_event exited"
    sleep 0.1
done
tr -d '\r' <"$logdir/client.log" | sed 's/^/[readme_blocking] /'
[ -n "$ok" ] || fail "readme_blocking did not get through"
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=

# The README's messages example: its own server and client, one message between them.
run_client readme_messages "$bindir/readme_messages.exe" "$name-messages"
run_client readme_descriptors "$bindir/readme_descriptors.exe" "$name-descriptors"

# Shared memory: a file mapping passed as one handle (64 MiB under Wine).
echo "== share_memory consume $name-share, then produce"
timeout 120 "$wine" "$bindir/share_memory.exe" consume "$name-share" >"$logdir/share.log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do
    grep -q 'listening on ' "$logdir/share.log" && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$logdir/share.log"; fail "share_memory exited"; }
    sleep 0.1
done
run_client producer "$bindir/share_memory.exe" produce "$name-share" 64
status=0
wait "$server_pid" || status=$?
server_pid=
tr -d '\r' <"$logdir/share.log" | sed 's/^/[consumer] /'
[ "$status" -eq 0 ] || fail "share_memory consume exited with status $status"
echo "== demo passed"
