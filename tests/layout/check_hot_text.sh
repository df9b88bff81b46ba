#!/bin/sh
# check_hot_text.sh LIB HOT_LIST ORDERED - liballoc.so's hot text.
#
# The list (liballoc/hot-functions.txt, from bench/hot-functions) must
# still name the library's functions: at least 90% of its names are found
# (a rename makes a name vanish and its function fall out of the hot
# window; bench/hot-functions writes the list again).  With ORDERED=1 (the
# library was linked with lld, the list and hot-text.ld) the functions
# found must lie in one 64 KiB window, and _init, which ld.so runs at load,
# must start it (on a 64 KiB boundary) rather than follow the whole text,
# at a file offset on a 64 KiB boundary too.
set -eu
lib=$1 list=$2 ordered=$3
syms=$(mktemp) hot=$(mktemp)
trap 'rm -f "$syms" "$hot"' EXIT
nm -S --defined-only "$lib" | awk 'NF == 4 && ($3 == "t" || $3 == "T") {print $4, $1, $2}' | sort > "$syms"
# name address size, for each listed function the library has (a static
# name may appear twice, once per file)
grep -v '^#' "$list" | sort -u | join - "$syms" > "$hot"
wanted=$(grep -v '^#' "$list" | grep -c .)
found=$(cut -d" " -f1 "$hot" | sort -u | wc -l)
echo "hot functions: $found of $wanted found in $lib"
if [ $((found * 10)) -lt $((wanted * 9)) ]; then
  echo "FAIL: fewer than 90% of the hot functions exist; run bench/hot-functions BUILD" >&2
  exit 1
fi
[ "$ordered" = 1 ] || exit 0
lo= hi=0
for entry in $(awk '{print $2 ":" $3}' "$hot"); do
  a=$((0x${entry%:*})) e=$((0x${entry%:*} + 0x${entry#*:}))
  if [ -z "$lo" ] || [ "$a" -lt "$lo" ]; then lo=$a; fi
  if [ "$e" -gt "$hi" ]; then hi=$e; fi
done
span="$lo $hi $((hi - lo))"
echo "hot span (start end bytes): $span"
set -- $span
if [ $(($1 / 65536)) -ne $((($2 - 1) / 65536)) ]; then
  echo "FAIL: the hot functions span $3 bytes over more than one 64 KiB window" >&2
  exit 1
fi
init=$(nm --defined-only "$lib" | awk '$3 == "_init" {print $1}')
init=${init:+$((0x$init))}
if [ -z "$init" ] || [ "$init" -gt "$1" ] || [ $((init % 65536)) -ne 0 ]; then
  echo "FAIL: _init ($init) does not start the hot functions' window ($1)" >&2
  exit 1
fi
# The executable segment's file offset and address alike modulo 64 KiB:
# the page cache's large folios are aligned in the file.
skew=$(readelf -lW "$lib" | awk '$1 == "LOAD" && / R E / {print $2 " " $3}')
set -- $skew
if [ -z "$skew" ] || [ $((($2 - $1) % 65536)) -ne 0 ]; then
  echo "FAIL: the text's file offset and address differ modulo 64 KiB ($skew)" >&2
  exit 1
fi
echo "ok"
