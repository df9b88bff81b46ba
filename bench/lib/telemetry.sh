# bench/lib/telemetry.sh - sourced by bench/run: what liballoc's telemetry
# costs the program it runs in.
#
# Owns: the telemetry part (`bench/run --telemetry`; not in the default full
# run, see the usage text).  Telemetry is a thread liballoc starts in every
# process: every stats_interval_ms it gathers the statistics (the arenas,
# the heaps, /proc/self/smaps_rollup) and writes a snapshot into
# /dev/shm/liballoc.<pid>; the first one comes one interval after start-up.
# The timed workloads (those of the workloads part, --only respected; idle,
# which is mostly sleep, is left out) run under liballoc alone with each
# ALLOC_CONF of TELEMETRY_VARIANTS (bench/run: off, 1 Hz, 10 Hz), interleaved
# like the workloads part - round 1: off 1Hz 10Hz, round 2: 1Hz 10Hz off, ...
# - and report.awk divides the medians of the "on" variants by those of "off".
# Before the timed runs, check runs with the --quick work,
# ALLOC_CONF=<variant>,stats_print:true and the binding trace: liballoc must
# serve malloc, print its statistics block with the variant's settings in
# its "options:" line, and warn about nothing (a rejected or renamed option
# would otherwise compare "off" with "off").  A probe then proves that the
# publisher really writes a segment at 10 Hz.  The timed runs must print
# what every other run of the workload printed and warn about nothing.
# Writes $DATA/telemetry_variants.tsv (variant alloc_conf interval_ms),
# $DATA/telemetry_runs.tsv (workload variant round wall_s rss_kib) and
# $DATA/telemetry_medians.tsv (workload variant runs median_time_s
# median_peak_rss_kib); failures go to $DATA/failures.tsv as liballoc's.

TELEMETRY_WORKLOADS=()              # "name|runner|args|timed" of this part
declare -A TELEMETRY_DISABLED=()    # workload -> failed a check run
TM_NAMES=() TM_CONFS=() TM_INTERVALS=()   # TELEMETRY_VARIANTS, by column

# The liballoc of this run (the preload of every telemetry run).
reference_lib() {
  local i
  for i in "${!ALLOC_NAMES[@]}"; do
    [[ ${ALLOC_NAMES[$i]} != "$REFERENCE" ]] || { printf '%s' "${ALLOC_LIBS[$i]}"; return; }
  done
}

# Fill TELEMETRY_WORKLOADS with the timed workloads of RUN_WORKLOADS.
select_telemetry_workloads() {
  local entry name runner args timed
  TELEMETRY_WORKLOADS=()
  for entry in "${RUN_WORKLOADS[@]}"; do
    IFS='|' read -r name runner args timed <<< "$entry"
    if ((timed)); then
      TELEMETRY_WORKLOADS+=("$entry")
    else
      note "telemetry: leave out $name (not timed: its time is mostly sleep)"
    fi
  done
}

split_telemetry_variants() {
  local entry name conf ms
  TM_NAMES=() TM_CONFS=() TM_INTERVALS=()
  for entry in "${TELEMETRY_VARIANTS[@]}"; do
    IFS='|' read -r name conf ms <<< "$entry"
    TM_NAMES+=("$name") TM_CONFS+=("$conf") TM_INTERVALS+=("$ms")
  done
}

# What the "options:" line of liballoc's statistics must contain under
# ALLOC_CONF value CONF: each of its key:value pairs, as words.
options_line_matches() {
  local conf=$1 stderr_file=$2 line pair
  line=" $(grep -m1 '^options: ' "$stderr_file") "
  for pair in ${conf//,/ }; do
    [[ $line == *" $pair "* ]] || return 1
  done
}

# One check run of workload ENTRY (--quick work) under variant index V;
# sets TELEMETRY_PROBLEM to why it failed, or "".
telemetry_check_run() {
  local entry=$1 v=$2 lib=$3 name runner args timed quick_args conf
  IFS='|' read -r name runner args timed <<< "$entry"
  quick_args=$(quick_args_of "$name")
  conf=${TM_CONFS[$v]}
  rm -f "$SCRATCH"/bindings.*
  EXTRA_ENV=(LD_DEBUG=bindings "LD_DEBUG_OUTPUT=$SCRATCH/bindings" "ALLOC_CONF=$conf,stats_print:true")
  # redis: LD_DEBUG would trace the whole server; run_redis checks its maps.
  [[ $runner != redis ]] || EXTRA_ENV=("${EXTRA_ENV[@]:2}")
  run_workload "$runner" "$quick_args" "$lib"
  EXTRA_ENV=()
  judge_run "$name|$quick_args"
  TELEMETRY_PROBLEM=$RUN_PROBLEM
  [[ -z $TELEMETRY_PROBLEM ]] || return 0
  if [[ $runner != redis ]] && ! check_preload_took_effect "$REFERENCE" "$lib" "$SCRATCH/bindings" "$SCRATCH/err"; then
    TELEMETRY_PROBLEM="the preload did not take effect"
  elif ! grep -qF -- "$LIBALLOC_STATS_BANNER" "$SCRATCH/err"; then
    TELEMETRY_PROBLEM="liballoc printed no statistics block"
  elif grep -q 'liballoc: warning' "$SCRATCH/err"; then
    TELEMETRY_PROBLEM=$(grep -m1 'liballoc: warning' "$SCRATCH/err")
  elif ! options_line_matches "$conf" "$SCRATCH/err"; then
    TELEMETRY_PROBLEM="its options line does not say $conf: $(grep -m1 '^options: ' "$SCRATCH/err")"
  fi
}

# Whether a setting is taken does not depend on the workload, and whether
# liballoc serves a workload does not depend on the setting: the first
# workload is checked under every variant, the others under the last one
# (telemetry on, every key set) - a few seconds, not one run per pair.
check_telemetry_variants() {
  local entry name v lib=$1 first=1 variants
  note "== telemetry: checking that liballoc serves every workload and takes every variant's settings"
  for entry in "${TELEMETRY_WORKLOADS[@]}"; do
    name=${entry%%|*}
    variants=$((${#TM_NAMES[@]} - 1))
    ((first == 0)) || variants=${!TM_NAMES[*]}
    first=0
    for v in $variants; do
      telemetry_check_run "$entry" "$v" "$lib"
      [[ -n $TELEMETRY_PROBLEM ]] || continue
      record_failure "$name" "$REFERENCE" "telemetry check, ${TM_NAMES[$v]}" "$TELEMETRY_PROBLEM"
      TELEMETRY_DISABLED[$name]=1
    done
    note "$(printf '  %-14s %s' "$name" "$([[ -n ${TELEMETRY_DISABLED[$name]:-} ]] && echo 'FAILED: left out' ||
      echo "ok for: $(for v in $variants; do printf '%s ' "${TM_NAMES[$v]}"; done)")")"
  done
  rm -f "$SCRATCH"/bindings.*
}

# The publisher must really publish: idle (TELEMETRY_PROBE_ARGS: a small
# burst, then 1 s of sleep) runs with the fastest variant and its own
# telemetry_dir, and its segment liballoc.<pid> must appear while it runs;
# then the probe is ended (SIGTERM: its segment goes with $dir).  A
# directory of our own: a stale /dev/shm/liballoc.<pid> left by a killed
# process of the same pid would prove nothing.
# publisher_cpu PID SEGMENT INTERVAL_MS: the CPU time the publisher thread
# (liballoc-stats) spent per snapshot while the probe ran, from the thread's
# schedstat (ns) and the segment's count of published snapshots: a figure
# that does not drown in the machine's noise as wall times do.  Written to
# $DATA/telemetry_publisher.tsv and to the log.
publisher_cpu() {
  local pid=$1 seg=$2 ms=$3 task="" t cpu0 cpu1 n0 n1 i
  sleep 0.3   # past the first snapshot
  for t in /proc/"$pid"/task/*; do
    [[ $(cat "$t/comm" 2>/dev/null) == liballoc-stats ]] && task=$t
  done
  [[ -n $task ]] || return 0
  published() { od -An -t u8 -j 504 -N 8 "$seg" 2>/dev/null | tr -d ' '; }
  cpu0=$(cut -d' ' -f1 "$task/schedstat" 2>/dev/null) n0=$(published)
  for ((i = 0; i < 20; i++)); do sleep 0.1; kill -0 "$pid" 2>/dev/null || return 0; done
  cpu1=$(cut -d' ' -f1 "$task/schedstat" 2>/dev/null) n1=$(published)
  [[ -n $cpu0 && -n $cpu1 && -n $n0 && -n $n1 ]] && ((n1 > n0)) || return 0
  printf 'interval_ms\tsnapshots\tcpu_ns\tus_per_snapshot\tcore_share_at_1hz\n' > "$DATA/telemetry_publisher.tsv"
  awk -v ms="$ms" -v n=$((n1 - n0)) -v c=$((cpu1 - cpu0)) -v OFS='\t' 'BEGIN {
    us = c / n / 1000; print ms, n, c, sprintf("%.1f", us), sprintf("%.5f", us / 1e6) }' >> "$DATA/telemetry_publisher.tsv"
  note "  probe: publisher CPU $(awk 'NR == 2 { print $4 " us per snapshot (" $5 * 100 "% of one core at 1 Hz)" }' \
    "$DATA/telemetry_publisher.tsv"), over $((n1 - n0)) snapshots"
}

telemetry_probe() {
  local lib=$1 v fastest=-1 dir=$SCRATCH/telemetry words pid seen=0 tries
  for v in "${!TM_NAMES[@]}"; do
    if ((TM_INTERVALS[v] > 0)) && { ((fastest < 0)) || ((TM_INTERVALS[v] < TM_INTERVALS[fastest])); }; then
      fastest=$v
    fi
  done
  ((fastest >= 0)) || return 0
  mkdir -p "$dir"
  EXTRA_ENV=("ALLOC_CONF=${TM_CONFS[$fastest]},telemetry_dir:$dir")
  mapfile -t words < <(run_env_words "$lib")
  EXTRA_ENV=()
  # shellcheck disable=SC2086  # the arguments are a word list on purpose
  "${words[@]}" "$BIN_DIR/idle" $TELEMETRY_PROBE_ARGS > /dev/null 2> "$SCRATCH/probe.err" &
  pid=$!      # env execs idle: the same pid
  for ((tries = 0; tries < 350; tries++)); do   # the publisher starts after the first second
    [[ ! -e $dir/liballoc.$pid ]] || { seen=1; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  ((seen)) && publisher_cpu "$pid" "$dir/liballoc.$pid" "${TM_INTERVALS[$fastest]}"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if ((seen)); then
    note "  probe: idle at ${TM_NAMES[$fastest]} published its segment $dir/liballoc.$pid"
  else
    record_failure telemetry-probe "$REFERENCE" "idle at ${TM_NAMES[$fastest]}" \
      "no segment liballoc.$pid appeared in $dir while it ran$(grep -m1 'liballoc: warning' "$SCRATCH/probe.err" | sed 's/^/: /')"
  fi
  rm -rf "$dir"
}

# One timed run of workload ENTRY under variant index V in round ROUND.
telemetry_timed_run() {
  local entry=$1 v=$2 round=$3 lib=$4 name runner args timed variant
  IFS='|' read -r name runner args timed <<< "$entry"
  [[ -z ${TELEMETRY_DISABLED[$name]:-} ]] || return 0
  variant=${TM_NAMES[$v]}
  EXTRA_ENV=("ALLOC_CONF=${TM_CONFS[$v]}")
  run_workload "$runner" "$args" "$lib"
  EXTRA_ENV=()
  judge_run "$name|$args"
  # A warning (say, the segment could not be created) means this run did
  # not do what its variant says.
  [[ -n $RUN_PROBLEM ]] || ! grep -q 'liballoc: warning' "$SCRATCH/err" ||
    RUN_PROBLEM=$(grep -m1 'liballoc: warning' "$SCRATCH/err")
  if [[ -n $RUN_PROBLEM ]]; then
    record_failure "$name" "$REFERENCE" "telemetry $variant, round $round" "$RUN_PROBLEM"
    return 0
  fi
  note "$(printf '[round %d/%d] %-14s %-5s %8.3f s %9d KiB' "$round" "$ROUNDS" "$name" "$variant" "$RUN_WALL" "$RUN_RSS")"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$variant" "$round" "$RUN_WALL" "$RUN_RSS" >> "$DATA/telemetry_runs.tsv"
}

run_telemetry() {
  local lib round entry k v n=${#TELEMETRY_VARIANTS[@]}
  lib=$(reference_lib)
  split_telemetry_variants
  printf 'variant\talloc_conf\tinterval_ms\n' > "$DATA/telemetry_variants.tsv"
  printf '%s\n' "${TELEMETRY_VARIANTS[@]}" | tr '|' '\t' >> "$DATA/telemetry_variants.tsv"
  printf 'workload\tvariant\tround\twall_s\tpeak_rss_kib\n' > "$DATA/telemetry_runs.tsv"
  check_telemetry_variants "$lib"
  telemetry_probe "$lib"
  note "== telemetry: ${#TELEMETRY_WORKLOADS[@]} workloads x $n variants (${TM_NAMES[*]}) x $ROUNDS rounds, liballoc, interleaved"
  for ((round = 1; round <= ROUNDS; round++)); do
    for entry in "${TELEMETRY_WORKLOADS[@]}"; do
      for ((k = 0; k < n; k++)); do
        v=$(((round - 1 + k) % n))
        telemetry_timed_run "$entry" "$v" "$round" "$lib"
      done
    done
  done
  compute_telemetry_medians
}

compute_telemetry_medians() {
  {
    printf 'workload\tvariant\truns\tmedian_time_s\tmedian_peak_rss_kib\n'
    median_time_and_rss "$DATA/telemetry_runs.tsv" |
      sort_like_workloads "$(printf '%s\n' "${TELEMETRY_WORKLOADS[@]}" | cut -d'|' -f1 | tr '\n' ' ')" \
        "${TM_NAMES[*]}"
  } > "$DATA/telemetry_medians.tsv"
}
