#!/usr/bin/env bash
# compare.sh - time the bench workloads under several allocators, side by side.
#
# Owns: the first allocator comparison of bench/.  Every workload binary is
# one plain program, run unchanged under each allocator by LD_PRELOAD (glibc
# is the run without preload), so the allocator is the only difference.  Runs
# are INTERLEAVED - round 1: A B C D E, round 2: A B C D E, ... - so that a
# slow phase of the machine (another job, thermal throttling) hits every
# allocator alike instead of one allocator's block of runs.  For each run the
# wall time (bash's EPOCHREALTIME around the run) and the peak RSS (GNU
# time's %M) are recorded; the report gives the median of each per
# workload and allocator, and liballoc's ratio to each of them (< 1 means
# liballoc is faster / smaller).  Every run's stdout (operation count and
# checksum) must equal that of the other runs of the same workload: a run
# that computed something else did not do the same work and is an error.
#
# The tables below are the place to extend: a workload is a name, a binary
# in the bench build directory and its arguments for a full and a --quick run.
set -euo pipefail
export LC_ALL=C     # EPOCHREALTIME and printf must use '.' as decimal point

# name | binary | arguments of a full run | arguments of a --quick run
WORKLOADS=(
  "xthread-2t|xthread|2 6000000|2 100000"
  "xthread-8t|xthread|8 1500000|8 25000"
  "churn|churn|400|10"
)

# name | library to preload (empty: the process's own allocator, glibc)
SYSTEM_LIBDIR=/usr/lib/x86_64-linux-gnu
PEER_ALLOCATORS=(
  "glibc|"
  "jemalloc|$SYSTEM_LIBDIR/libjemalloc.so.2"
  "tcmalloc|$SYSTEM_LIBDIR/libtcmalloc_minimal.so.4"
  "mimalloc|$SYSTEM_LIBDIR/libmimalloc.so.2"
)
REFERENCE=liballoc          # the allocator whose ratios are reported
DEFAULT_ROUNDS=5
GNU_TIME=/usr/bin/time

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")

usage() {
  cat <<EOF
usage: $(basename "$0") [options] [LIBALLOC_SO]

Runs each bench workload under glibc, jemalloc, tcmalloc, mimalloc and
liballoc, interleaved over several rounds, and prints per workload the median
wall time and median peak RSS of each allocator and liballoc's ratio to each.
Allocators whose library is missing are skipped with a message.

  LIBALLOC_SO     liballoc to preload (default: $REPO_ROOT/build/liballoc/liballoc.so)
  --quick         1 round with small work: a smoke run, not a measurement
  --rounds N      rounds of interleaved runs (default $DEFAULT_ROUNDS)
  --csv FILE      also write the medians as CSV to FILE
  --bin-dir DIR   where the workload binaries are (default: $REPO_ROOT/build/bench)
  --only NAMES    comma-separated workload names to run (default: all)
  -h, --help      this text

Workloads: $(for w in "${WORKLOADS[@]}"; do printf '%s ' "${w%%|*}"; done)
EOF
}

die() { echo "compare.sh: $*" >&2; exit 2; }
note() { echo "$*" >&2; }

# ---- options ----------------------------------------------------------------

QUICK=0
ROUNDS=
CSV_FILE=
BIN_DIR=$REPO_ROOT/build/bench
ONLY=
LIBALLOC_SO=$REPO_ROOT/build/liballoc/liballoc.so

parse_args() {
  while (($#)); do
    case $1 in
      --quick) QUICK=1 ;;
      --rounds) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive integer"; ROUNDS=$2; shift ;;
      --csv) [[ -n ${2:-} ]] || die "--csv needs a file name"; CSV_FILE=$2; shift ;;
      --bin-dir) [[ -n ${2:-} ]] || die "--bin-dir needs a directory"; BIN_DIR=$2; shift ;;
      --only) [[ -n ${2:-} ]] || die "--only needs workload names"; ONLY=$2; shift ;;
      -h|--help) usage; exit 0 ;;
      -*) usage >&2; die "unknown option '$1'" ;;
      *) LIBALLOC_SO=$1 ;;
    esac
    shift
  done
  if [[ -z $ROUNDS ]]; then
    if ((QUICK)); then ROUNDS=1; else ROUNDS=$DEFAULT_ROUNDS; fi
  fi
}

# ---- what runs --------------------------------------------------------------

# Fill ALLOC_NAMES/ALLOC_LIBS with the allocators that are present.
select_allocators() {
  ALLOC_NAMES=() ALLOC_LIBS=()
  local entry name lib
  for entry in "${PEER_ALLOCATORS[@]}" "$REFERENCE|$LIBALLOC_SO"; do
    name=${entry%%|*} lib=${entry#*|}
    if [[ -n $lib && ! -f $lib ]]; then
      note "skip $name: $lib not found"
      continue
    fi
    ALLOC_NAMES+=("$name")
    ALLOC_LIBS+=("${lib:+$(readlink -f "$lib")}")
  done
}

# Fill RUN_WORKLOADS with "name|binary path|arguments" for this run's mode.
select_workloads() {
  RUN_WORKLOADS=()
  local entry name binary full quick
  for entry in "${WORKLOADS[@]}"; do
    IFS='|' read -r name binary full quick <<< "$entry"
    [[ -z $ONLY || ",$ONLY," == *",$name,"* ]] || continue
    [[ -x $BIN_DIR/$binary ]] ||
      die "workload binary $BIN_DIR/$binary not found: build it (cmake --build build --target $binary) or pass --bin-dir"
    RUN_WORKLOADS+=("$name|$BIN_DIR/$binary|$( ((QUICK)) && echo "$quick" || echo "$full")")
  done
  ((${#RUN_WORKLOADS[@]})) || die "no workload matches --only '$ONLY'"
}

# ---- running ----------------------------------------------------------------

declare -A EXPECTED_OUTPUT=()   # workload -> stdout of its first run
FAILED_RUNS=0

# run_once ROUND WORKLOAD BINARY "ARGS" ALLOCATOR LIB: one timed run; appends
# "workload allocator round wall_s rss_kb" to $RESULTS when it succeeded.
run_once() {
  local round=$1 workload=$2 binary=$3 args=$4 allocator=$5 lib=$6
  local preload=(env -u LD_PRELOAD) start end rc=0 wall rss output
  [[ -z $lib ]] || preload=(env LD_PRELOAD="$lib")
  start=$EPOCHREALTIME
  # shellcheck disable=SC2086  # ARGS is a word list on purpose
  "$GNU_TIME" -f '%M' -o "$SCRATCH/rss" "${preload[@]}" "$binary" $args \
    > "$SCRATCH/out" 2> "$SCRATCH/err" || rc=$?
  end=$EPOCHREALTIME
  output=$(< "$SCRATCH/out")
  if ((rc != 0)); then
    note "FAILED: $workload under $allocator exited with status $rc$( ((rc > 128)) && echo " (signal $((rc - 128)))"); its stderr:"
    tail -n 5 "$SCRATCH/err" >&2
    FAILED_RUNS=$((FAILED_RUNS + 1)); return
  fi
  if [[ -z ${EXPECTED_OUTPUT[$workload]+set} ]]; then
    EXPECTED_OUTPUT[$workload]=$output
  elif [[ $output != "${EXPECTED_OUTPUT[$workload]}" ]]; then
    note "FAILED: $workload under $allocator printed '$output', other runs '${EXPECTED_OUTPUT[$workload]}'"
    FAILED_RUNS=$((FAILED_RUNS + 1)); return
  fi
  wall=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }')
  rss=$(tail -n 1 "$SCRATCH/rss")
  note "$(printf '[round %d/%d] %-12s %-9s %8.3f s %8d KiB' "$round" "$ROUNDS" "$workload" "$allocator" "$wall" "$rss")"
  printf '%s\t%s\t%s\t%s\t%s\n' "$workload" "$allocator" "$round" "$wall" "$rss" >> "$RESULTS"
}

run_all_rounds() {
  local round entry workload binary args i
  for ((round = 1; round <= ROUNDS; round++)); do
    for entry in "${RUN_WORKLOADS[@]}"; do
      IFS='|' read -r workload binary args <<< "$entry"
      for i in "${!ALLOC_NAMES[@]}"; do
        run_once "$round" "$workload" "$binary" "$args" "${ALLOC_NAMES[$i]}" "${ALLOC_LIBS[$i]}"
      done
    done
  done
}

# ---- reporting --------------------------------------------------------------

# Write "workload allocator runs median_wall_s median_rss_kb" lines to $MEDIANS.
compute_medians() {
  local entry workload allocator
  : > "$MEDIANS"
  for entry in "${RUN_WORKLOADS[@]}"; do
    workload=${entry%%|*}
    for allocator in "${ALLOC_NAMES[@]}"; do
      awk -F'\t' -v w="$workload" -v a="$allocator" '
        function median(v, n,   i, j, t) {       # insertion sort; n is small
          for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
          return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        }
        $1 == w && $2 == a { n++; wall[n] = $4 + 0; rss[n] = $5 + 0 }
        END { if (n) printf "%s\t%s\t%d\t%.3f\t%d\n", w, a, n, median(wall, n), median(rss, n) }
      ' "$RESULTS" >> "$MEDIANS"
    done
  done
}

# One table per workload; ratio columns = liballoc's value / this allocator's.
print_report() {
  local entry workload binary args
  echo
  echo "Medians of $ROUNDS interleaved round(s) on $(nproc) CPU(s); ratio = $REFERENCE / allocator (< 1: $REFERENCE better)"
  for entry in "${RUN_WORKLOADS[@]}"; do
    IFS='|' read -r workload binary args <<< "$entry"
    echo
    echo "== $workload: $(basename "$binary") $args"
    awk -F'\t' -v w="$workload" -v ref="$REFERENCE" '
      $1 == w { n++; name[n] = $2; runs[n] = $3; wall[n] = $4; rss[n] = $5
                if ($2 == ref) { rwall = $4; rrss = $5 } }
      function ratio(mine, theirs) { return (rwall == "" || theirs <= 0) ? "-" : sprintf("%.2f", mine / theirs) }
      END {
        printf "%-10s %5s %10s %14s %12s %12s\n", "allocator", "runs", "time (s)", "peak RSS (MiB)", "time ratio", "RSS ratio"
        for (i = 1; i <= n; i++)
          printf "%-10s %5d %10.3f %14.1f %12s %12s\n", name[i], runs[i], wall[i], rss[i] / 1024,
                 ratio(rwall, wall[i]), ratio(rrss, rss[i])
        if (rwall == "") print "(no " ref " results: ratios not available)"
      }' "$MEDIANS"
  done
}

write_csv() {
  {
    echo "workload,allocator,runs,median_wall_s,median_peak_rss_kib"
    tr '\t' ',' < "$MEDIANS"
  } > "$CSV_FILE"
  note "medians written to $CSV_FILE"
}

main() {
  parse_args "$@"
  unset LD_PRELOAD              # only the workloads get a preload, each its own
  [[ -x $GNU_TIME ]] || die "$GNU_TIME not found (Debian package: time)"
  select_allocators
  select_workloads
  SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/alloc-bench.XXXXXX")
  trap 'rm -rf "$SCRATCH"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  RESULTS=$SCRATCH/results.tsv MEDIANS=$SCRATCH/medians.tsv
  : > "$RESULTS"
  note "allocators: ${ALLOC_NAMES[*]}; rounds: $ROUNDS$( ((QUICK)) && echo ' (quick)')"
  run_all_rounds
  compute_medians
  print_report
  [[ -z $CSV_FILE ]] || write_csv
  if ((FAILED_RUNS)); then
    note "$FAILED_RUNS run(s) failed or computed a different result: see FAILED lines above"
    exit 1
  fi
}

main "$@"
