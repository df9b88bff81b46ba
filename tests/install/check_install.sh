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
