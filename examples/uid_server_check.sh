#!/usr/bin/env bash
# Runs uid_server with a client of the same user (admitted: its line comes back) and, when
# root and setpriv are available, one running as nobody (rejected: the server says "denied" and
# closes, so the client fails).
#
#   examples/uid_server_check.sh [BINDIR]      (default: build/examples)
set -euo pipefail

bindir=${1:-build/examples}
dir=$(mktemp -d "/tmp/lsock-uid-check.XXXXXX")
chmod 0755 "$dir"
log=$dir/server.log
name=$dir/uid.sock
server_pid=
cleanup() {
    local status=$?
    [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
    rm -rf "$dir"
    exit "$status"
}
trap cleanup EXIT
fail() {
    echo "uid_server_check: FAILED: $*" >&2
    [ ! -f "$log" ] || sed 's/^/[server] /' "$log" >&2
    exit 1
}

other=0
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then other=1; fi
timeout 60 "$bindir/uid_server" "$name" $((1 + other)) >"$log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do [ -S "$name" ] && break; sleep 0.05; done
[ -S "$name" ] || fail "no socket at $name"

timeout 20 "$bindir/blocking_client" "$name" "hello from uid $(id -u)" ||
    fail "a client of the same user was not served"
if [ "$other" = 1 ]; then
    if timeout 20 setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$bindir/blocking_client" "$name" "hello from nobody" >"$dir/nobody.log" 2>&1; then
        fail "a client running as nobody was served"
    fi
    sed 's/^/[nobody] /' "$dir/nobody.log"
fi
wait "$server_pid" || fail "uid_server exited with an error"
server_pid=
grep -q "^admitted pid [0-9]* uid $(id -u)\$" "$log" || fail "no 'admitted' line"
if [ "$other" = 1 ]; then
    grep -q "^rejected pid [0-9]* uid 65534: not uid $(id -u)\$" "$log" || fail "no 'rejected' line"
else
    echo "uid_server_check: not root or no setpriv: the rejection was not tried"
fi
sed 's/^/[server] /' "$log"
echo "uid_server_check: passed"
