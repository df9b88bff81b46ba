#!/usr/bin/env bash
# shell_workload.sh - the bash/coreutils/awk workload of the program tests.
#
# run_program.sh starts this with `bash` under the allocator under test, and
# every command below inherits LD_PRELOAD: bash (associative arrays, string
# building), seq, awk, sort (large buffers, threads for big inputs), uniq,
# join and sha256sum.  Each step prints a digest or a short excerpt, so a
# wrong byte shows up as a different stdout line.  run_program.sh sets
# LC_ALL=C, so sort and awk compare bytes the same way in every run.
set -euo pipefail

# 300k lines of generated "key group word" records.
seq 1 300000 | awk '{ print ($1 * 7919) % 100003, $1 % 97, "w" ($1 * 31) % 1009 }' > data.txt
echo "data $(wc -l < data.txt) lines $(sha256sum < data.txt | cut -c1-16)"

# Numeric and multi-key sorts over the whole file.
echo "sort-n $(sort -n -k1,1 -k2,2n data.txt | sha256sum | cut -c1-16)"
echo "sort-words $(sort -k3,3 -k1,1n data.txt | sha256sum | cut -c1-16)"
sort -k3,3 data.txt | awk '{ print $3 }' | uniq -c | sort -k1,1nr -k2,2 | awk 'NR <= 5'   # awk reads all: no SIGPIPE race as with head

# awk associative arrays: per-group sums, printed in sorted order.
awk '{ sum[$2] += $1; words[$3]++ } END { for (g in sum) print g, sum[g]; print "distinct-words", length(words) }' data.txt \
    | sort -k1,1 > groups.txt
echo "groups $(wc -l < groups.txt) $(sha256sum < groups.txt | cut -c1-16)"

# join two sorted derived files.
awk '$2 < 10 { print $1, $3 }' data.txt | sort -k1,1 > left.txt
awk '$2 > 80 { print $1, $2 }' data.txt | sort -k1,1 > right.txt
echo "join $(join left.txt right.txt | wc -l) $(join left.txt right.txt | sha256sum | cut -c1-16)"

# bash's own allocations: an associative array and string growth.
declare -A seen=()
text=""
for ((i = 0; i < 20000; i++)); do
    key="k$(( (i * 7919) % 4099 ))"
    seen[$key]=$(( ${seen[$key]:-0} + i ))
    (( i % 100 == 0 )) && text+="${key}:${seen[$key]};"
done
echo "bash keys ${#seen[@]} text ${#text} $(printf '%s' "$text" | sha256sum | cut -c1-16)"
