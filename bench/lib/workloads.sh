# bench/lib/workloads.sh - sourced by bench/run: run the workloads under
# every allocator, interleaved, and collect wall time, peak RSS and the
# numbers the workloads report about themselves.
#
# Owns: the timed part of the suite.  Runs are INTERLEAVED - round 1: A B C
# D E, round 2: B C D E A, ... - so that a slow phase of this shared machine
# hits every allocator alike instead of one allocator's block of runs, and
# the starting allocator rotates so that none always runs right after the
# same other one (caches, page-cache state, CPU frequency).  Every run's
# stdout must equal that of every other run of the same workload and work
# size: a run that printed something else did not do the same work.
#
# A workload's runner says how it is started:
#   bin:NAME  a program of bench/workloads, ARGS on its command line;
#   sqlite3   `sqlite3 :memory:` reading programs/sqlite_workload.sql, ARGS rows;
#   python3   the real interpreter with PYTHONMALLOC=malloc, ARGS records;
#   redis     redis-server on 127.0.0.1:$REDIS_PORT driven by redis-benchmark,
#             ARGS requests (see run_redis below).
# Results accumulate in $DATA/runs.tsv (workload allocator round wall_s
# peak_rss_kib, under a header), $DATA/metric_runs.tsv (workload allocator
# round metric value), $DATA/series_runs.tsv (workload allocator round t_ms
# rss_kib), $DATA/floor_runs.tsv (the start-up floor, below) and
# $DATA/failures.tsv.

GNU_TIME=/usr/bin/time
RUN_TIMEOUT_S=600                   # one run longer than this is a hang
declare -A EXPECTED_OUTPUT=()       # "workload|args" -> stdout of its first run
declare -A DISABLED=()              # "workload|allocator" -> failed its check run
EXTRA_ENV=()                        # more VAR=value words for the next run
LIBALLOC_FAILURES=0                 # failed runs of liballoc: the exit status

# ---- starting one run -------------------------------------------------------

# measure STDIN CMD...: one bounded run under GNU time.  Sets RUN_RC, RUN_WALL
# (seconds, bash's clock around the run) and RUN_RSS (KiB, the peak RSS
# of the process tree GNU time waited for).
measure() {
  local stdin=$1 start end
  shift
  RUN_RC=0
  start=$EPOCHREALTIME
  "$GNU_TIME" -f '%M' -o "$SCRATCH/rss" timeout -k 5 "$RUN_TIMEOUT_S" "$@" \
    < "$stdin" > "$SCRATCH/out" 2> "$SCRATCH/err" || RUN_RC=$?
  end=$EPOCHREALTIME
  RUN_WALL=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f", e - s }')
  RUN_RSS=$(tail -n 1 "$SCRATCH/rss")
}

# The environment words of a run: preload, then EXTRA_ENV (set by callers
# for check runs and the decay study), then the runner's own variables.
run_env_words() {
  local lib=$1
  preload_env_words "$lib"
  ((${#EXTRA_ENV[@]} == 0)) || printf '%s\n' "${EXTRA_ENV[@]}"
}

run_bin() {
  local lib=$1 binary=$2 args=$3 words
  mapfile -t words < <(run_env_words "$lib")
  # shellcheck disable=SC2086  # ARGS is a word list on purpose
  measure /dev/null "${words[@]}" "$BIN_DIR/$binary" ${args//@BIN@/$BIN_DIR}
}

run_sqlite3() {
  local lib=$1 rows=$2 words script=$SCRATCH/sqlite-$2.sql
  [[ -f $script ]] || {
    printf 'CREATE TEMP TABLE params(rows); INSERT INTO params VALUES (%d);\n' "$rows"
    cat "$SCRIPT_DIR/programs/sqlite_workload.sql"
  } > "$script"
  mapfile -t words < <(run_env_words "$lib")
  measure "$script" "${words[@]}" sqlite3 :memory:
}

run_python3() {
  local lib=$1 records=$2 words
  mapfile -t words < <(run_env_words "$lib")
  measure /dev/null "${words[@]}" PYTHONMALLOC=malloc "$PYTHON_BIN" \
    "$SCRIPT_DIR/programs/python_workload.py" "$records"
}

# ---- redis ------------------------------------------------------------------

REDIS_PID=

redis_ping() {
  [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

# Start redis-server with preload LIB on 127.0.0.1:$REDIS_PORT and wait until
# it answers (bounded); no persistence, so only memory is exercised.
start_redis() {
  local lib=$1 words tries
  mapfile -t words < <(run_env_words "$lib")
  mkdir -p "$SCRATCH/redis"
  "${words[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
    --save '' --appendonly no --daemonize no --dir "$SCRATCH/redis" --logfile '' \
    > "$SCRATCH/redis.out" 2> "$SCRATCH/redis.err" &
  REDIS_PID=$!
  for ((tries = 0; tries < 200; tries++)); do
    redis_ping && return 0
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.05
  done
  note "redis-server did not start; its log and stderr:"   # --logfile '': the log is stdout
  tail -n 5 "$SCRATCH/redis.out" "$SCRATCH/redis.err" >&2
  stop_redis
  return 1
}

# Ask the server to exit (so that at-exit statistics get printed), then make
# sure it has: bounded wait, SIGKILL as the last resort.
stop_redis() {
  [[ -n $REDIS_PID ]] || return 0
  local tries
  timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave > /dev/null 2>&1 || true
  for ((tries = 0; tries < 100; tries++)); do
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.05
  done
  kill -9 "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=
}

# The server's own mappings must show the library: a preload that did not
# take (or a glibc run without the shim) would show jemalloc only.
redis_has_library() {
  local lib=$1
  [[ -z $lib ]] || grep -qF -- "$lib" "/proc/$REDIS_PID/maps"
}

# run_redis LIB REQUESTS: time redis-benchmark (not preloaded: the client is
# the same for every allocator) against a fresh server; peak RSS is the
# server's VmHWM.  redis-benchmark's requests/s go to the metrics.
run_redis() {
  local lib=$1 requests=$2 start end
  RUN_RC=0 RUN_WALL=0 RUN_RSS=0
  start_redis "$lib" || { RUN_RC=1; return; }
  if ! redis_has_library "$lib"; then
    note "preload check: $lib is not in redis-server's /proc/$REDIS_PID/maps"
    stop_redis; RUN_RC=1; return
  fi
  start=$EPOCHREALTIME
  timeout -k 5 "$RUN_TIMEOUT_S" redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -q \
    -n "$requests" -r "$REDIS_KEYSPACE" -d "$REDIS_VALUE_BYTES" -P "$REDIS_PIPELINE" \
    -t "$REDIS_TESTS" > "$SCRATCH/bench.out" 2>&1 || RUN_RC=$?
  end=$EPOCHREALTIME
  RUN_WALL=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f", e - s }')
  RUN_RSS=$(awk '/^VmHWM:/ { print $2 }' "/proc/$REDIS_PID/status" 2>/dev/null)
  # Gone already: it never served these requests (another server on the
  # port answered); its stderr says why.
  [[ -n $RUN_RSS ]] || { RUN_RC=1 RUN_RSS=0; }
  stop_redis
  cp "$SCRATCH/redis.err" "$SCRATCH/err"
  # "SET: 123.45 requests per second, p50=..." -> metric set_rps 123.45
  tr '\r' '\n' < "$SCRATCH/bench.out" |
    awk -F': ' '/requests per second/ { split($2, w, " "); printf "metric %s_rps %s\n", tolower($1), w[1] }' \
    >> "$SCRATCH/err"
  # The same work under every allocator, whatever the throughput.
  echo "redis requests=$requests tests=$REDIS_TESTS" > "$SCRATCH/out"
  ((RUN_RC != 0)) || grep -q 'requests per second' "$SCRATCH/bench.out" || RUN_RC=1
}

# ---- which workloads can run --------------------------------------------------

# Programs a runner needs; a workload whose tools are missing is skipped.
runner_tools() {
  case $1 in
    bin:*) echo "$BIN_DIR/${1#bin:}" ;;
    sqlite3) echo sqlite3 ;;
    python3) echo "${PYTHON_BIN:-python3}" ;;
    redis) echo redis-server redis-benchmark redis-cli ;;
  esac
}

# Fill RUN_WORKLOADS with "name|runner|args|timed" for this mode.
select_workloads() {
  RUN_WORKLOADS=()
  local entry name runner full quick timed tool missing
  for entry in "${WORKLOADS[@]}"; do
    IFS='|' read -r name runner full quick timed <<< "$entry"
    [[ -z $ONLY || ",$ONLY," == *",$name,"* ]] || continue
    missing=
    for tool in $(runner_tools "$runner"); do
      command -v "$tool" > /dev/null || missing+=" $tool"
    done
    if [[ -n $missing ]]; then
      note "skip workload $name: missing$missing"
      continue
    fi
    RUN_WORKLOADS+=("$name|$runner|$( ((QUICK)) && echo "$quick" || echo "$full")|$timed")
  done
}

# ---- running and recording -----------------------------------------------------

# run_workload RUNNER ARGS LIB: start one run of a workload.
run_workload() {
  local runner=$1 args=$2 lib=$3
  case $runner in
    bin:*) run_bin "$lib" "${runner#bin:}" "$args" ;;
    sqlite3) run_sqlite3 "$lib" "$args" ;;
    python3) run_python3 "$lib" "$args" ;;
    redis) run_redis "$(preload_library "$lib" 1)" "$args" ;;
  esac
}

record_failure() {
  local workload=$1 allocator=$2 phase=$3 why=$4
  note "FAILED: $workload under $allocator ($phase): $why"
  printf '%s\t%s\t%s\t%s\n' "$workload" "$allocator" "$phase" "${why//$'\t'/ }" >> "$DATA/failures.tsv"
  [[ $allocator != "$REFERENCE" ]] || LIBALLOC_FAILURES=$((LIBALLOC_FAILURES + 1))
}

# Did the run just made succeed and print what the other runs of KEY
# ("workload|args") printed?  Sets RUN_PROBLEM to why not, or to "".  (A
# variable, not output: EXPECTED_OUTPUT must be updated in this shell.)
judge_run() {
  local key=$1 output
  RUN_PROBLEM=
  if ((RUN_RC != 0)); then
    RUN_PROBLEM=$(printf 'exit status %d%s: %s' "$RUN_RC" \
      "$( ((RUN_RC > 128)) && echo " (signal $((RUN_RC - 128)))")" \
      "$(grep -v '^metric \|^series ' "$SCRATCH/err" | tail -n 1)")
    return
  fi
  output=$(< "$SCRATCH/out")
  if [[ -z ${EXPECTED_OUTPUT[$key]+set} ]]; then
    EXPECTED_OUTPUT[$key]=$output
  elif [[ $output != "${EXPECTED_OUTPUT[$key]}" ]]; then
    RUN_PROBLEM="printed '$output', other runs '${EXPECTED_OUTPUT[$key]}'"
  fi
}

# Append this run's metric and series lines to the data files.
save_metrics() {
  local workload=$1 allocator=$2 round=$3
  awk -v w="$workload" -v a="$allocator" -v r="$round" -v OFS='\t' '
    $1 == "metric" && NF == 3 { print w, a, r, $2, $3 >> m }
    $1 == "series" && NF == 3 { print w, a, r, $2, $3 >> s }
  ' m="$DATA/metric_runs.tsv" s="$DATA/series_runs.tsv" "$SCRATCH/err"
}

# ---- the check pass -------------------------------------------------------------

# Before any timed run, each workload runs once under each allocator with
# its quick work size and the dynamic linker's binding trace on: the
# allocator must really be the one serving malloc (common.sh), and the run
# must succeed.  A peer that fails here is left out of that workload (a
# peer's bug is a finding, not a reason to stop); liballoc failing is an
# error of the suite.
check_preloads() {
  local entry name runner args timed quick_args i lib problem
  note "== checking that every preload takes effect"
  for entry in "${RUN_WORKLOADS[@]}"; do
    IFS='|' read -r name runner args timed <<< "$entry"
    quick_args=$(quick_args_of "$name")
    for i in "${!ALLOC_NAMES[@]}"; do
      lib=${ALLOC_LIBS[$i]}
      rm -f "$SCRATCH"/bindings.*
      EXTRA_ENV=(LD_DEBUG=bindings "LD_DEBUG_OUTPUT=$SCRATCH/bindings")
      [[ ${ALLOC_NAMES[$i]} != "$REFERENCE" ]] || EXTRA_ENV+=(ALLOC_CONF=stats_print:true)
      # redis: LD_DEBUG would trace the whole server; its maps are checked instead.
      [[ $runner != redis ]] || EXTRA_ENV=("${EXTRA_ENV[@]:2}")
      run_workload "$runner" "$quick_args" "$lib"
      EXTRA_ENV=()
      judge_run "$name|$quick_args"
      problem=$RUN_PROBLEM
      if [[ -z $problem && $runner != redis ]]; then
        check_preload_took_effect "${ALLOC_NAMES[$i]}" "$lib" "$SCRATCH/bindings" "$SCRATCH/err" ||
          problem="the preload did not take effect"
      elif [[ -z $problem && ${ALLOC_NAMES[$i]} == "$REFERENCE" ]]; then
        grep -qF -- "$LIBALLOC_STATS_BANNER" "$SCRATCH/err" ||
          problem="redis-server printed no liballoc statistics block"
      fi
      if [[ -n $problem ]]; then
        record_failure "$name" "${ALLOC_NAMES[$i]}" check "$problem"
        DISABLED["$name|${ALLOC_NAMES[$i]}"]=1
      fi
    done
    note "$(printf '  %-14s ok for: %s' "$name" "$(enabled_allocators_of "$name")")"
  done
  rm -f "$SCRATCH"/bindings.*
}

quick_args_of() {
  local entry name runner full quick timed
  for entry in "${WORKLOADS[@]}"; do
    IFS='|' read -r name runner full quick timed <<< "$entry"
    [[ $name != "$1" ]] || { printf '%s' "$quick"; return; }
  done
}

enabled_allocators_of() {
  local name
  for name in "${ALLOC_NAMES[@]}"; do
    [[ -n ${DISABLED["$1|$name"]:-} ]] || printf '%s ' "$name"
  done
}

# ---- the timed rounds -------------------------------------------------------------

# One run of workload ENTRY as ALLOCATOR, preloading LIB, in round ROUND.
# Its time and RSS go to RUNS_FILE: runs.tsv, whose runs also keep the
# numbers the workload prints about itself, or floor_runs.tsv (below).
timed_run() {
  local entry=$1 allocator=$2 lib=$3 round=$4 runs_file=$5 name runner args timed
  IFS='|' read -r name runner args timed <<< "$entry"
  [[ -z ${DISABLED["$name|$allocator"]:-} ]] || return 0
  run_workload "$runner" "$args" "$lib"
  judge_run "$name|$args"
  if [[ -n $RUN_PROBLEM ]]; then
    record_failure "$name" "$allocator" "round $round" "$RUN_PROBLEM"
    return 0
  fi
  note "$(printf '[round %d/%d] %-14s %-9s %8.3f s %9d KiB' "$round" "$ROUNDS" "$name" \
    "$allocator" "$RUN_WALL" "$RUN_RSS")"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$allocator" "$round" "$RUN_WALL" "$RUN_RSS" >> "$runs_file"
  [[ $runs_file != "$DATA/runs.tsv" ]] || save_metrics "$name" "$allocator" "$round"
}

# ---- the start-up floor ----------------------------------------------------------
# Preloading any library costs a process's start-up something: the dynamic
# linker opens, maps and relocates one more object and binds malloc's
# callers to it.  No preloaded allocator can start a process as fast as
# glibc alone.  So the start-up workloads also run, in each round's
# rotation, with the glibc shim preloaded: glibc's malloc behind a preloaded
# library's malloc symbols, what an allocator that did no work of its own
# would cost.  Those runs go to $DATA/floor_runs.tsv (allocator
# $FLOOR_NAME), apart from the allocators' table; the report compares both
# liballoc and the floor with glibc.

FLOOR_NAME=glibc-preloaded

has_floor() { [[ $1 == startup* && -f $GLIBC_SHIM ]]; }

# Rotations of ENTRY in each round: SMALL_REPEATS for the small processes
# of SMALL_WORKLOADS (bench/run), except in a --quick run.
repeats_of() {
  local small
  ((QUICK)) && { echo 1; return; }
  for small in "${SMALL_WORKLOADS[@]}"; do
    [[ ${1%%|*} != "$small" ]] || { echo "$SMALL_REPEATS"; return; }
  done
  echo 1
}

run_all_rounds() {
  local round entry k i j reps slots n=${#ALLOC_NAMES[@]}
  note "== timed runs: ${#RUN_WORKLOADS[@]} workloads x $n allocators x $ROUNDS rounds, interleaved"
  for ((round = 1; round <= ROUNDS; round++)); do
    for entry in "${RUN_WORKLOADS[@]}"; do
      slots=$n
      ! has_floor "${entry%%|*}" || slots=$((n + 1))   # the floor takes its turn in the rotation
      reps=$(repeats_of "$entry")
      for ((j = 0; j < reps; j++)); do
        for ((k = 0; k < slots; k++)); do
          i=$((((round - 1) * reps + j + k) % slots))
          if ((i == n)); then
            timed_run "$entry" "$FLOOR_NAME" "$GLIBC_SHIM" "$round" "$DATA/floor_runs.tsv"
          else
            timed_run "$entry" "${ALLOC_NAMES[$i]}" "${ALLOC_LIBS[$i]}" "$round" "$DATA/runs.tsv"
          fi
        done
      done
    done
  done
}

# ---- medians ----------------------------------------------------------------------

# The median of the last column per distinct value of the other columns, in
# order of first appearance, with the count of values before the median.
median_by_key() {
  awk -F'\t' -v OFS='\t' '
    function median(key,   n, i, j, t, v) {
      n = count[key]
      for (i = 1; i <= n; i++) v[i] = vals[key, i]
      for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
      return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    {
      key = $1; for (i = 2; i < NF; i++) key = key OFS $i
      if (!(key in count)) order[++keys] = key
      vals[key, ++count[key]] = $NF + 0
    }
    END { for (k = 1; k <= keys; k++) print order[k], count[order[k]], median(order[k]) }'
}

# From RUNS (a header, then workload allocator round wall_s rss_kib; the
# telemetry part has a variant for the allocator): workload allocator runs
# median_wall_s median_rss_kib, in no particular order.
median_time_and_rss() {
  join -t $'\t' \
    <(tail -n +2 "$1" | cut -f1,2,4 | median_by_key | awk -F'\t' -v OFS='\t' '{ print $1 "|" $2, $3, $4 }' | sort -t $'\t' -k1,1) \
    <(tail -n +2 "$1" | cut -f1,2,5 | median_by_key | awk -F'\t' -v OFS='\t' '{ print $1 "|" $2, $4 }' | sort -t $'\t' -k1,1) |
    tr '|' '\t'
}

# medians.tsv: workload allocator runs time_s peak_rss_kib;
# metric_medians.tsv: workload allocator metric runs value;
# idle_series.tsv: allocator t_ms rss_kib (median over rounds at each time).
# Median lines on stdin, each with the fastest wall time of its runs in
# RUNS (a header, then workload allocator round wall_s ...) appended.
with_fastest_time() {
  awk -F'\t' -v OFS='\t' '
    NR == FNR { if (FNR > 1 && (!(($1, $2) in t) || $4 + 0 < t[$1, $2])) t[$1, $2] = $4 + 0; next }
    { print $0, t[$1, $2] }' "$1" -
}

compute_medians() {
  {
    printf 'workload\tallocator\truns\tmedian_time_s\tmedian_peak_rss_kib\tfastest_time_s\n'
    median_time_and_rss "$DATA/runs.tsv" | with_fastest_time "$DATA/runs.tsv" | sort_like_workloads
  } > "$DATA/medians.tsv"
  {
    printf 'workload\tallocator\tmetric\truns\tmedian\n'
    cut -f1,2,4,5 "$DATA/metric_runs.tsv" | median_by_key
  } > "$DATA/metric_medians.tsv"
  {
    printf 'workload\tallocator\truns\tmedian_time_s\tmedian_peak_rss_kib\n'
    median_time_and_rss "$DATA/floor_runs.tsv" | sort_like_workloads "" "$FLOOR_NAME"
  } > "$DATA/floor_medians.tsv"
  {
    printf 'allocator\tt_ms\trss_kib\n'
    awk -F'\t' -v OFS='\t' '$1 == "idle" { print $2, $4, $5 }' "$DATA/series_runs.tsv" |
      median_by_key | cut -f1,2,4
  } > "$DATA/idle_series.tsv"
}

# Order workload/allocator lines as the WORKLOADS and allocator tables do;
# or by the space-separated names in $1 (workloads) and $2 (the values of
# the second column, e.g. the telemetry variants).
sort_like_workloads() {
  awk -F'\t' -v OFS='\t' -v wl="${1:-$(printf '%s\n' "${RUN_WORKLOADS[@]}" | cut -d'|' -f1 | tr '\n' ' ')}" \
      -v al="${2:-${ALLOC_NAMES[*]}}" '
    BEGIN { n = split(wl, w, " "); for (i = 1; i <= n; i++) wi[w[i]] = i
            m = split(al, a, " "); for (i = 1; i <= m; i++) ai[a[i]] = i }
    { print wi[$1] * 100 + ai[$2], $0 }' | sort -n -k1,1 | cut -f2-
}
