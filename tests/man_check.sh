#!/bin/sh
# Renders the man page with groff's warnings on (-ww): any warning fails it.
#
#   tests/man_check.sh docs/lsock.1
set -eu
command -v groff >/dev/null || {
    echo "skipped: groff is not installed (apt-get install groff-base)"
    exit 77
}
warnings=$(groff -man -ww -Tutf8 "$1" 2>&1 >/dev/null)
if [ -n "$warnings" ]; then
    echo "$warnings"
    exit 1
fi
echo "man page renders without warnings: $1"
