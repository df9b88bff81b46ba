# bench/lib/report.sh - sourced by bench/run: print the report and write the
# results directory (CSV, JSON, PNG charts).
#
# Owns: the form of the results.  The numbers come from report.awk (one
# place computes every ratio and mean); this file turns its tab-separated
# tables into CSV and JSON, draws the charts with gnuplot, and copies it all
# into $RESULTS_DIR:
#   report.txt         the printed report
#   runs.csv           every timed run
#   medians.csv        median time and peak RSS per workload and allocator
#   floor_runs.csv, floor_medians.csv   start-up runs with glibc preloaded
#   ratios.csv         liballoc / each peer and / the best peer, per workload
#   geomeans.csv       geometric means, per allocator and of the ratios
#   metrics.csv        numbers the workloads report (RSS/live, rps, ...)
#   callgrind.csv      instructions per malloc+free pair
#   idle_series.csv    RSS over time of the idle workload, per allocator
#   decay_series.csv, decay_summary.csv   the decay study
#   telemetry_variants.csv, telemetry_runs.csv, telemetry_medians.csv,
#   telemetry_ratios.csv, telemetry_geomeans.csv   the telemetry overhead
#                      (liballoc with telemetry on / off; header-only when
#                      that part did not run)
#   targets.csv        the verdict on each target
#   failures.csv       runs that failed (peers' bugs included)
#   results.json       all of the above in one object, plus the machine
#   tables.md          the time and peak RSS tables as docs/performance.md
#                      shows them (report_md.py)
#   ratios.png, idle_rss.png, decay_rss.png   (when gnuplot is installed)

TELEMETRY_TABLES=(telemetry_variants telemetry_runs telemetry_medians telemetry_ratios telemetry_geomeans)

write_workload_list() {
  local entry name runner args timed
  printf 'workload\trunner\tcommand\ttimed\n' > "$DATA/workloads.tsv"
  for entry in "${RUN_WORKLOADS[@]}"; do
    IFS='|' read -r name runner args timed <<< "$entry"
    printf '%s\t%s\t%s\t%s\n' "$name" "$runner" "${args//@BIN@\//}" "$timed" >> "$DATA/workloads.tsv"
  done
}

# TSV (header first) to CSV, quoting fields that need it.
tsv_to_csv() {
  awk -F'\t' '{
    for (i = 1; i <= NF; i++) {
      f = $i
      if (f ~ /[",]/) { gsub(/"/, "\"\"", f); f = "\"" f "\"" }
      printf "%s%s", f, (i < NF ? "," : "\n")
    }
  }' "$1"
}

# TSV (header first) to a JSON array of objects; numbers stay numbers and
# "-" (no value) becomes null.
tsv_to_json_array() {
  awk -F'\t' '
    function json(v) {
      if (v == "-" || v == "") return "null"
      if (v ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/) return v
      gsub(/\\/, "\\\\", v); gsub(/"/, "\\\"", v)
      return "\"" v "\""
    }
    NR == 1 { for (i = 1; i <= NF; i++) h[i] = $i; next }
    { printf "%s\n    {", (NR > 2 ? "," : "")
      for (i = 1; i <= NF; i++) printf "%s\"%s\": %s", (i > 1 ? ", " : ""), h[i], json($i)
      printf "}" }
    END { printf "%s]", (NR > 1 ? "\n  " : "") }
    BEGIN { printf "[" }' "$1"
}

# The machine description (key TAB value) as one JSON object.
machine_json() {
  awk -F'\t' '
    function q(v) { gsub(/\\/, "\\\\", v); gsub(/"/, "\\\"", v); return "\"" v "\"" }
    { printf "%s\n    %s: %s", (NR > 1 ? "," : "{"), q($1), q($2) }
    END { printf "\n  }" }' "$1"
}

write_json() {
  local table
  {
    printf '{\n  "machine": %s' "$(machine_json "$DATA/machine.tsv")"
    printf ',\n  "allocators": [%s]' "$(printf '"%s",' "${ALLOC_NAMES[@]}" | sed 's/,$//')"
    printf ',\n  "reference": "%s"' "$REFERENCE"
    for table in workloads runs medians floor_runs floor_medians ratios geomeans metric_medians callgrind \
                 idle_series decay_series decay_summary "${TELEMETRY_TABLES[@]}" targets failures; do
      printf ',\n  "%s": %s' "$table" "$(tsv_to_json_array "$DATA/$table.tsv")"
    done
    printf '\n}\n'
  } > "$RESULTS_DIR/results.json"
}

write_csvs() {
  local table
  for table in runs medians floor_runs floor_medians ratios geomeans callgrind idle_series decay_series decay_summary \
               "${TELEMETRY_TABLES[@]}" targets failures; do
    tsv_to_csv "$DATA/$table.tsv" > "$RESULTS_DIR/$table.csv"
  done
  tsv_to_csv "$DATA/metric_medians.tsv" > "$RESULTS_DIR/metrics.csv"
  cp "$DATA/machine.tsv" "$RESULTS_DIR/machine.tsv"
}

# The burst size of this run's idle workload (its first argument).
idle_burst_mib() {
  local entry
  for entry in "${RUN_WORKLOADS[@]}"; do
    [[ ${entry%%|*} != idle ]] || { entry=${entry#*|*|}; echo "${entry%% *}"; return; }
  done
}

# Draw the charts when gnuplot exists and there is something to draw.
draw_charts() {
  if ! command -v gnuplot > /dev/null; then
    note "skip charts: gnuplot not installed"
    return
  fi
  local peers=() name series
  for name in "${ALLOC_NAMES[@]}"; do [[ $name == "$REFERENCE" ]] || peers+=("$name"); done
  if (($(wc -l < "$DATA/medians.tsv") > 1)); then
    gnuplot -e "datafile='$DATA/ratios_plot.tsv'; output='$RESULTS_DIR/ratios.png'; peers=${#peers[@]}; ref='$REFERENCE'" \
      "$SCRIPT_DIR/lib/ratios.gp" 2> "$SCRATCH/gnuplot.err" || { cat "$SCRATCH/gnuplot.err" >&2; note "ratios chart failed"; }
  fi
  if (($(wc -l < "$DATA/idle_series.tsv") > 1)); then
    gnuplot -e "datafile='$DATA/idle_series.tsv'; output='$RESULTS_DIR/idle_rss.png'; series='${ALLOC_NAMES[*]}'; colour_step=1; title_text='Idle after a burst of $(idle_burst_mib) MiB, 90% freed, default settings (median of $ROUNDS round(s))'" \
      "$SCRIPT_DIR/lib/series.gp" 2> "$SCRATCH/gnuplot.err" || { cat "$SCRATCH/gnuplot.err" >&2; note "idle chart failed"; }
  fi
  if (($(wc -l < "$DATA/decay_series.tsv") > 1)); then
    series=$(awk -F'\t' 'NR > 1 && !seen[$1]++ { printf "%s ", $1 }' "$DATA/decay_series.tsv")
    gnuplot -e "datafile='$DATA/decay_series.tsv'; output='$RESULTS_DIR/decay_rss.png'; series='$series'; colour_step=2; title_text='Idle after a burst of ${DECAY_BURST_MIB} MiB, 90% freed: dirty_decay_ms settings (muzzy 0; jemalloc with background_thread)'" \
      "$SCRIPT_DIR/lib/series.gp" 2> "$SCRATCH/gnuplot.err" || { cat "$SCRATCH/gnuplot.err" >&2; note "decay chart failed"; }
  fi
}

report_and_save() {
  write_workload_list
  local table
  for table in failures callgrind decay_series decay_summary telemetry_variants telemetry_runs telemetry_medians; do
    [[ -f $DATA/$table.tsv ]] || case $table in
      failures) printf 'workload\tallocator\tphase\twhy\n' > "$DATA/failures.tsv" ;;
      callgrind) printf 'size\tallocator\tir_n1\tir_n2\tper_pair\n' > "$DATA/callgrind.tsv" ;;
      decay_series) printf 'series\tt_ms\trss_kib\n' > "$DATA/decay_series.tsv" ;;
      decay_summary) printf 'series\tallocator\tdirty_decay_ms\tlive_mib\tburst_rss_mib\tfreed_rss_mib\tt_check_ms\trss_at_check_mib\tfinal_rss_mib\treturned_share\n' > "$DATA/decay_summary.tsv" ;;
      telemetry_variants) printf 'variant\talloc_conf\tinterval_ms\n' > "$DATA/telemetry_variants.tsv" ;;
      telemetry_runs) printf 'workload\tvariant\tround\twall_s\tpeak_rss_kib\n' > "$DATA/telemetry_runs.tsv" ;;
      telemetry_medians) printf 'workload\tvariant\truns\tmedian_time_s\tmedian_peak_rss_kib\n' > "$DATA/telemetry_medians.tsv" ;;
    esac
  done
  mkdir -p "$RESULTS_DIR"
  {
    printf 'Machine: %s CPUs, %s, %s GiB, Linux %s, %s; THP %s\n' \
      "$(grep -P '^cpus\t' "$DATA/machine.tsv" | cut -f2)" "$(grep -P '^cpu_model\t' "$DATA/machine.tsv" | cut -f2)" \
      "$(grep -P '^memory_gib\t' "$DATA/machine.tsv" | cut -f2)" "$(grep -P '^kernel\t' "$DATA/machine.tsv" | cut -f2)" \
      "$(grep -P '^glibc\t' "$DATA/machine.tsv" | cut -f2)" "$(grep -P '^thp\t' "$DATA/machine.tsv" | cut -f2)"
    printf 'Peers: jemalloc %s, tcmalloc %s, mimalloc %s; liballoc %s\n' \
      "$(grep -P '^jemalloc\t' "$DATA/machine.tsv" | cut -f2)" "$(grep -P '^tcmalloc\t' "$DATA/machine.tsv" | cut -f2)" \
      "$(grep -P '^mimalloc\t' "$DATA/machine.tsv" | cut -f2)" "$(grep -P '^liballoc\t' "$DATA/machine.tsv" | cut -f2)"
    awk -v allocs="${ALLOC_NAMES[*]}" -v ref="$REFERENCE" -v data="$DATA" -v rounds="$ROUNDS" \
      -v fastpath_max="$CALLGRIND_TARGET_MAX" -v quick="$QUICK" -v tm_long_s="$TELEMETRY_LONG_S" \
      -f "$SCRIPT_DIR/lib/report.awk"
  } > "$DATA/report.txt"
  cat "$DATA/report.txt"
  cp "$DATA/report.txt" "$RESULTS_DIR/report.txt"
  write_csvs
  write_json
  if command -v python3 > /dev/null; then
    python3 "$SCRIPT_DIR/lib/report_md.py" "$RESULTS_DIR" > "$RESULTS_DIR/tables.md" || die "report_md.py failed"
  else
    note "skip tables.md: python3 not installed"
  fi
  draw_charts
  note "results written to $RESULTS_DIR"
}
