# bench/lib/decay.sh - sourced by bench/run: RSS over time of an idle
# process after a burst, for several decay settings, liballoc beside
# jemalloc configured the same way.
#
# Owns: the decay study (`bench/run --decay`, also part of the full run).
# workloads/idle allocates a burst, frees 90% of it, then only samples its
# RSS every 100 ms.  liballoc runs with
#     ALLOC_CONF=dirty_decay_ms:X,muzzy_decay_ms:0
# and jemalloc with
#     MALLOC_CONF=dirty_decay_ms:X,muzzy_decay_ms:0,background_thread:true
# (jemalloc purges an idle process only from its background thread) for
# each X of DECAY_SETTINGS; runs alternate liballoc/jemalloc per setting.
# A setting either allocator rejects is a failure, not a silent default:
# their warnings on stderr are checked.
# Writes $DATA/decay_series.tsv (series t_ms rss_kib) and
# $DATA/decay_summary.tsv (one line per run, see summarize_decay_run).

decay_env_for() {
  local allocator=$1 ms=$2
  case $allocator in
    liballoc) echo "ALLOC_CONF=dirty_decay_ms:$ms,muzzy_decay_ms:0" ;;
    jemalloc) echo "MALLOC_CONF=dirty_decay_ms:$ms,muzzy_decay_ms:0,background_thread:true" ;;
  esac
}

# One line for decay_summary.tsv from the run just made: the RSS right
# before the frees (burst), the live bytes, the RSS at the first sample at or
# after X + 1 s (or at the end when X is -1 or beyond the run), at the end,
# and the share of the freed memory returned by then:
#     (burst_rss - rss_then) / (burst_rss - live).
summarize_decay_run() {
  local series=$1 allocator=$2 ms=$3
  awk -F'\t' -v OFS='\t' -v s="$series" -v a="$allocator" -v ms="$ms" -v err="$SCRATCH/err" '
    BEGIN {
      while ((getline line < err) > 0) {
        split(line, f, " ")
        if (f[1] == "metric") m[f[2]] = f[3]
        if (f[1] == "series") { t[++n] = f[2]; r[n] = f[3] / 1024 }
      }
      at = ms < 0 ? t[n] : ms + 1000
      then_rss = r[n]; then_t = t[n]
      for (i = 1; i <= n; i++) if (t[i] >= at) { then_rss = r[i]; then_t = t[i]; break }
      freed = m["burst_rss_mib"] - m["live_mib"]
      share = freed > 0 ? (m["burst_rss_mib"] - then_rss) / freed : 0
      printf "%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%d\t%.1f\t%.1f\t%.2f\n", s, a, ms, m["live_mib"], \
        m["burst_rss_mib"], m["freed_rss_mib"], then_t, then_rss, r[n], share
    }' >> "$DATA/decay_summary.tsv"
}

# Run idle once for ALLOCATOR with setting MS, record its series.
decay_run() {
  local allocator=$1 lib=$2 ms=$3 series="$1:dirty_decay_ms=$3"
  EXTRA_ENV=("$(decay_env_for "$allocator" "$ms")")
  run_bin "$lib" idle "$DECAY_BURST_MIB $DECAY_SECONDS"
  EXTRA_ENV=()
  if ((RUN_RC != 0)) || grep -q 'Invalid conf\|liballoc: warning: ALLOC_CONF' "$SCRATCH/err"; then
    record_failure "decay" "$allocator" "dirty_decay_ms=$ms" \
      "$(grep -v '^metric \|^series ' "$SCRATCH/err" | tail -n 1)"
    return
  fi
  note "$(printf '  %-30s final RSS %8.1f MiB' "$series" "$(awk '$1 == "metric" && $2 == "final_rss_mib" { print $3 }' "$SCRATCH/err")")"
  awk -v OFS='\t' -v s="$series" '$1 == "series" { print s, $2, $3 }' "$SCRATCH/err" >> "$DATA/decay_series.tsv"
  summarize_decay_run "$series" "$allocator" "$ms"
}

run_decay() {
  local ms allocator lib i
  printf 'series\tt_ms\trss_kib\n' > "$DATA/decay_series.tsv"
  printf 'series\tallocator\tdirty_decay_ms\tlive_mib\tburst_rss_mib\tfreed_rss_mib\tt_check_ms\trss_at_check_mib\tfinal_rss_mib\treturned_share\n' \
    > "$DATA/decay_summary.tsv"
  note "== decay: idle after a ${DECAY_BURST_MIB} MiB burst, ${DECAY_SECONDS} s, dirty_decay_ms in ${DECAY_SETTINGS[*]}"
  for ms in "${DECAY_SETTINGS[@]}"; do
    for allocator in "$REFERENCE" jemalloc; do
      lib=
      for i in "${!ALLOC_NAMES[@]}"; do
        [[ ${ALLOC_NAMES[$i]} != "$allocator" ]] || lib=${ALLOC_LIBS[$i]}
      done
      if [[ -z $lib ]]; then
        note "  skip $allocator: not available"
        continue
      fi
      decay_run "$allocator" "$lib" "$ms"
    done
  done
}
