#!/bin/sh
# check_hot_text.sh LIB HOT_LIST ORDERED - liballoc.so's hot text.
#
# The list (liballoc/hot-functions.txt, from bench/hot-functions) must
# still name the library's functions: at least 90% of its names are found
# (a rename makes a name vanish and its function fall out of the hot
# window; bench/hot-functions writes the list again).  With ORDERED=1 (the
# library was linked with lld and the list) the functions found must lie in
# one span of at most 64 KiB + 12 KiB (they start where the text does, and
# the text's first window may be partial), and _init, which ld.so runs at
# load, must come before them rather than after the whole text.
set -eu
lib=$1 list=$2 ordered=$3
syms=$(mktemp)
trap 'rm -f "$syms"' EXIT
nm -S --defined-only "$lib" | awk 'NF == 4 && ($3 == "t" || $3 == "T") {print $4, $1, $2}' | sort > "$syms"
wanted=$(grep -v '^#' "$list" | grep -c .)
found=$(grep -v '^#' "$list" | sort -u | join - "$syms" | wc -l)
echo "hot functions: $found of $wanted found in $lib"
if [ $((found * 10)) -lt $((wanted * 9)) ]; then
  echo "FAIL: fewer than 90% of the hot functions exist; run bench/hot-functions BUILD" >&2
  exit 1
fi
[ "$ordered" = 1 ] || exit 0
lo= hi=0
for entry in $(grep -v '^#' "$list" | sort -u | join - "$syms" | awk '{print $2 ":" $3}'); do
  a=$((0x${entry%:*})) e=$((0x${entry%:*} + 0x${entry#*:}))
  if [ -z "$lo" ] || [ "$a" -lt "$lo" ]; then lo=$a; fi
  if [ "$e" -gt "$hi" ]; then hi=$e; fi
done
span="$lo $hi $((hi - lo))"
echo "hot span (start end bytes): $span"
set -- $span
if [ "$3" -gt $((76 * 1024)) ]; then
  echo "FAIL: the hot functions span $3 bytes, more than 76 KiB: not laid out together" >&2
  exit 1
fi
init=$(readelf -SW "$lib" | sed 's/^ *\[ *[0-9]*\] *//' | awk '$1 == ".init" {print $3}')
init=${init:+$((0x$init))}
if [ -z "$init" ] || [ "$init" -gt "$1" ]; then
  echo "FAIL: .init ($init) is not before the hot functions ($1)" >&2
  exit 1
fi
echo "ok"
