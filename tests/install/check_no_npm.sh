#!/usr/bin/env bash
# check_no_npm.sh SOURCE_DIR - the README's plain build on a checkout
# without the dashboard's npm packages: a copy of the sources without
# dashboards/node_modules (nor .git or build trees) configures with one
# message saying the dashboard is skipped, builds (`cmake --build`, every
# target, tests included), and installs; then check_install.sh checks the
# installed tree, whose allocd answers / with "the dashboard is not
# installed".
set -euo pipefail
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/src"
tar -C "$src" --exclude=./dashboards/node_modules --exclude='./build*' --exclude=./.git --exclude=./.cache \
  -cf - . | tar -C "$tmp/src" -xf -
[ ! -e "$tmp/src/dashboards/node_modules" ]

cmake -S "$tmp/src" -B "$tmp/src/build" >"$tmp/configure.log"
lines=$(grep -c 'dashboard: not built' "$tmp/configure.log" || true)
[ "$lines" = 1 ] || { echo "expected one 'dashboard: not built' line, got $lines:"; cat "$tmp/configure.log"; exit 1; }
grep 'dashboard: not built' "$tmp/configure.log"
cmake --build "$tmp/src/build" -j2 >"$tmp/build.log" 2>&1 || { tail -30 "$tmp/build.log"; exit 1; }
echo "== built without dashboards/node_modules"
bash "$src/tests/install/check_install.sh" "$tmp/src/build" "$src/tests/install"
