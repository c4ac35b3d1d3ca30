#!/usr/bin/env bash
# Runs activated_server under systemd-socket-activate (when installed): a client of the same
# user gets its line back; one running as nobody (when root with setpriv) is closed unserved.
# Without the tool, the server is started by hand and listens on its own.
#
#   examples/activated_server_check.sh [BINDIR]      (default: build/examples)
set -euo pipefail

bindir=${1:-build/examples}
dir=$(mktemp -d "/tmp/lsock-activated-check.XXXXXX")
chmod 0755 "$dir"
log=$dir/server.log
name=$dir/activated.sock
pid=
cleanup() {
    local status=$?
    [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
    rm -rf "$dir"
    exit "$status"
}
trap cleanup EXIT
fail() {
    echo "activated_server_check: FAILED: $*" >&2
    [ ! -f "$log" ] || sed 's/^/[server] /' "$log" >&2
    exit 1
}

other=0
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then other=1; fi
if command -v systemd-socket-activate >/dev/null; then
    # Only the same-user client ends as a client: the other is closed before it is queued.
    timeout 60 systemd-socket-activate -l "$name" --fdname=echo \
        "$bindir/activated_server" echo 1 >"$log" 2>&1 &
    expect="activated on $name"
else
    echo "activated_server_check: systemd-socket-activate missing: the server listens itself"
    other=0
    timeout 60 "$bindir/activated_server" "$name" 1 >"$log" 2>&1 &
    expect="listening on $name"
fi
pid=$!
# Ready once the socket accepts: systemd-socket-activate says "Listening on" after listen();
# the server started by hand says "listening on" after its own.
for _ in $(seq 200); do grep -qi "listening on" "$log" && break; sleep 0.05; done
grep -qi "listening on" "$log" || fail "nothing listens at $name"
# Open to every user, so that the other user reaches the server's own check.
[ "$other" = 0 ] || chmod 0777 "$name"

if [ "$other" = 1 ]; then
    if timeout 20 setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$bindir/blocking_client" "$name" "hello from nobody" >"$dir/nobody.log" 2>&1; then
        fail "a client running as nobody was served"
    fi
    sed 's/^/[nobody] /' "$dir/nobody.log"
fi
timeout 20 "$bindir/blocking_client" "$name" "hello from uid $(id -u)" ||
    fail "a client of the same user was not served"
wait "$pid" || fail "activated_server exited with an error"
pid=
grep -qx "$expect" "$log" || fail "no '$expect' line"
echo "activated_server_check: ok"
