# bench/lib/callgrind.sh - sourced by bench/run: instructions per
# malloc+free pair on the fast path, counted by valgrind's callgrind.
#
# Owns: the fast-path numbers.  Wall-clock timing of a ~20-instruction path
# drowns in the noise of a shared 2-CPU machine and there are no hardware
# counters here, but callgrind's instruction count is the same on every run.
# workloads/pair does N malloc+free pairs of one size with one other block
# of that size kept live; it runs for N1 and N2 pairs and
#     (Ir(N2) - Ir(N1)) / (N2 - N1)
# is the marginal cost of one pair: start-up, the allocator's initialisation
# and exit cancel out.  The preload is set on valgrind's command line
# (LD_PRELOAD=lib valgrind ... ./pair), which valgrind passes to the guest;
# `valgrind env LD_PRELOAD=...` would measure env instead.
# Writes $DATA/callgrind.tsv: size allocator ir_n1 ir_n2 per_pair.

# Total instructions of `pair N SIZE` under LIB (empty: glibc), or "".
callgrind_total() {
  local lib=$1 n=$2 size=$3 words
  mapfile -t words < <(preload_env_words "$lib")
  timeout -k 5 300 "${words[@]}" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    "$BIN_DIR/pair" "$n" "$size" 2> "$SCRATCH/callgrind.err" > /dev/null || return 0
  awk '/Collected :/ { print $NF }' "$SCRATCH/callgrind.err"
}

run_callgrind() {
  local size i ir1 ir2 per_pair
  printf 'size\tallocator\tir_n1\tir_n2\tper_pair\n' > "$DATA/callgrind.tsv"
  if ! command -v valgrind > /dev/null; then
    note "skip callgrind: valgrind not installed"
    return
  fi
  note "== callgrind: instructions per malloc+free pair, N = $CALLGRIND_N1 and $CALLGRIND_N2"
  for size in "${CALLGRIND_SIZES[@]}"; do
    for i in "${!ALLOC_NAMES[@]}"; do
      ir1=$(callgrind_total "${ALLOC_LIBS[$i]}" "$CALLGRIND_N1" "$size")
      ir2=$(callgrind_total "${ALLOC_LIBS[$i]}" "$CALLGRIND_N2" "$size")
      if [[ -z $ir1 || -z $ir2 ]]; then
        record_failure "pair-$size" "${ALLOC_NAMES[$i]}" callgrind \
          "$(tail -n 1 "$SCRATCH/callgrind.err")"
        continue
      fi
      per_pair=$(awk -v a="$ir1" -v b="$ir2" -v n1="$CALLGRIND_N1" -v n2="$CALLGRIND_N2" \
        'BEGIN { printf "%.1f", (b - a) / (n2 - n1) }')
      note "$(printf '  %6s B  %-9s %7s instructions per pair' "$size" "${ALLOC_NAMES[$i]}" "$per_pair")"
      printf '%s\t%s\t%s\t%s\t%s\n' "$size" "${ALLOC_NAMES[$i]}" "$ir1" "$ir2" "$per_pair" >> "$DATA/callgrind.tsv"
    done
  done
}
