#!/usr/bin/env bash
# check_install.sh BUILD_DIR SOURCE_DIR - install liballoc from BUILD_DIR
# into a temporary prefix, check the installed files, and build and run a
# consumer through find_package (shared and static) and through pkg-config.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$prefix/lib
for f in "$libdir/liballoc.so" "$libdir/liballoc.a" "$prefix/include/alloc.h" \
         "$libdir/cmake/liballoc/liballocConfig.cmake" "$libdir/pkgconfig/liballoc.pc"; do
  [ -e "$f" ] || { echo "missing after install: $f"; exit 1; }
done
soname=$(objdump -p "$libdir/liballoc.so" | awk '/SONAME/ {print $2}')
[ "$soname" = "liballoc.so.0" ] || { echo "unexpected soname '$soname'"; exit 1; }

echo "== find_package consumer"
cmake -S "$src/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
LD_LIBRARY_PATH=$libdir "$tmp/consumer/consumer_shared"
"$tmp/consumer/consumer_static"
if ldd "$tmp/consumer/consumer_static" | grep -q liballoc; then
  echo "consumer_static links liballoc.so dynamically"; exit 1
fi

echo "== pkg-config consumer"
export PKG_CONFIG_PATH=$libdir/pkgconfig
cc "$src/consumer/consumer.c" $(pkg-config --cflags --libs liballoc) -o "$tmp/pc_consumer"
LD_LIBRARY_PATH=$libdir "$tmp/pc_consumer"

# allocd finds the dashboard of its own install with no --static-dir
# (../share/allocd/www from its directory), also once the tree is moved;
# without a built dashboard, / says it is not installed.
echo "== installed allocd serves its dashboard without flags"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
serve_root() {   # serve_root PREFIX: start PREFIX/sbin/allocd, print GET /'s status and body
  local port state=$tmp/state.$RANDOM pid code
  port=$(free_port)
  mkdir -p "$state"
  "$1/sbin/allocd" --listen "127.0.0.1:$port" --db "$state/db" --token-file "$state/token" --shm-dir "$state" \
    --log-level warn &
  pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/api/v1/health" >/dev/null && break; sleep 0.1; done
  code=$(curl -s -o "$state/root" -w '%{http_code}' "http://127.0.0.1:$port/")
  kill "$pid"; wait "$pid" || true
  echo "$code"; cat "$state/root"
}
check_root() {   # check_root PREFIX
  local out
  out=$(serve_root "$1")
  if [ "$dashboard" = ON ]; then
    [ "$out" = "$(printf '200\n'; cat "$1/share/allocd/www/index.html")" ] ||
      { echo "GET / from $1/sbin/allocd is not $1/share/allocd/www/index.html: ${out:0:300}"; exit 1; }
  else
    [ ! -e "$1/share/allocd/www" ] || { echo "a dashboard was installed though none was built"; exit 1; }
    grep -q '^404$' <<<"$out" && grep -q 'the dashboard is not installed' <<<"$out" ||
      { echo "GET / without a dashboard: ${out:0:300}"; exit 1; }
  fi
}
dashboard=$(sed -n 's/^ALLOC_DASHBOARD:INTERNAL=//p' "$build/CMakeCache.txt")
check_root "$prefix"
mv "$prefix" "$tmp/moved"
check_root "$tmp/moved"
echo "ok (dashboard $dashboard)"
