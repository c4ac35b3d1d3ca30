#!/bin/sh
# Checks that README.md shows examples/readme_*.c verbatim: each file must appear as the code
# block that follows a "<!-- compiled: examples/FILE.c -->" line.
#
#   examples/check_readme.sh [SOURCE_DIR]
set -eu

root=${1:-$(dirname "$0")/..}
readme=$root/README.md
tmp=$(mktemp "${TMPDIR:-/tmp}/lsock-readme.XXXXXX")
trap 'rm -f "$tmp"' EXIT

status=0
found=0
for path in "$root"/examples/readme_*.c; do
    [ -e "$path" ] || continue
    found=$((found + 1))
    file=examples/${path##*/}
    awk -v marker="<!-- compiled: $file -->" '
        $0 == marker { state = 1; next }
        state == 1 && /^```/ { state = 2; next }
        state == 2 && /^```[ \t]*$/ { done = 1; exit }
        state == 2 { print }
        END { if (!done) exit 1 }
    ' "$readme" >"$tmp" || {
        echo "README.md: no code block marked <!-- compiled: $file -->"
        status=1
        continue
    }
    if diff -u "$path" "$tmp"; then
        echo "README.md: $file is in sync"
    else
        echo "README.md: the code block for $file differs from the file (diff above)"
        status=1
    fi
done
if [ "$found" -eq 0 ]; then
    echo "no examples/readme_*.c under $root"
    status=1
fi
exit $status
