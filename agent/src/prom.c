/* prom.c - the Prometheus exposition.
 *
 * Names follow Prometheus conventions and come from the statistics list in
 * alloc_shm.h: liballoc_<name> with _bytes for byte units, _seconds for
 * times (converted from ns), _ratio for derived ratios (unless the name
 * ends in it already), _total for counters.  Each process is one series
 * per metric, labelled with pid, start_time, exe and comm; its effective
 * configuration is exported as liballoc_config_*.  Live processes come
 * from the collector's memory (the newest snapshot of each).  Host totals
 * are liballoc_host_*: sums of the byte gauges and counters, and per size
 * class (labelled size) the totals of host.h's HOST_CLASS_TOTALS: per host,
 * not per process, so their series do not multiply with the processes.
 * allocd's own health is allocd_*. */
#include "prom.h"

#include "snapshot.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct buf_s {
  char *data;
  size_t len, cap;
  bool failed;
} buf_t;

__attribute__((format(printf, 2, 3))) static void put(buf_t *b, const char *fmt, ...) {
  if (b->failed) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = true;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap * 2 + (size_t)n + 1;
    char *d = realloc(b->data, cap);
    if (!d) {
      b->failed = true;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
}

/* A label value: backslash, quote and newline escaped. */
static void put_label(buf_t *b, const char *s) {
  for (; s && *s; s++) {
    if (*s == '\\' || *s == '"') put(b, "\\%c", *s);
    else if (*s == '\n') put(b, "\\n");
    else put(b, "%c", *s);
  }
}

/* Prometheus wants base units in names: a "_ns" or "_ms" ending becomes
 * "_seconds" (and the value is converted by the caller). */
static int strip_unit(const char *name) {
  size_t n = strlen(name);
  return n > 3 && (strcmp(name + n - 3, "_ns") == 0 || strcmp(name + n - 3, "_ms") == 0) ? (int)n - 3 : (int)n;
}

static void metric_name(const metric_info_t *m, char *out, size_t size) {
  const char *suffix = "";
  if (strcmp(m->unit, "bytes") == 0) suffix = "_bytes";
  else if (strcmp(m->unit, "nanoseconds") == 0) suffix = "_seconds";
  else if (strcmp(m->unit, "ratio") == 0 && !strstr(m->name, "ratio")) suffix = "_ratio";
  snprintf(out, size, "liballoc_%.*s%s%s", strip_unit(m->name), m->name, suffix,
           strcmp(m->type, "counter") == 0 ? "_total" : "");
}

/* A live process's series: its label set (rendered once) and values. */
typedef struct series_s {
  char *labels;
  double v[SNAP_NMETRICS];
  int64_t config[ALLOC_SHM_NCONFIG];   /* ALLOC_SHM_CONFIG order */
  double time_s;                       /* the snapshot's wall-clock time */
  cgroup_mem_t cgroup;                 /* its memory cgroup (pressure.h) */
} series_t;

static char *render_labels(const collector_live_t *l) {
  buf_t b = {malloc(512), 0, 512, false};
  if (!b.data) return NULL;
  put(&b, "{pid=\"%d\",start_time=\"%llu\",exe=\"", l->pid, (unsigned long long)l->start_time);
  put_label(&b, l->exe);
  put(&b, "\",comm=\"");
  put_label(&b, l->comm);
  put(&b, "\"}");
  if (b.failed) free(b.data);
  return b.failed ? NULL : b.data;
}

/* Host totals of the byte gauges and the counters: liballoc_host_*. */
static void put_host_totals(buf_t *b, const series_t *ser, size_t n) {
  for (int i = 0; i < SNAP_NSTATS; i++) {
    const metric_info_t *m = &snap_metrics[i];
    if (strcmp(m->unit, "bytes") != 0 && strcmp(m->type, "counter") != 0) continue;
    char name[96], host[112];
    metric_name(m, name, sizeof name);
    snprintf(host, sizeof host, "liballoc_host_%s", name + strlen("liballoc_"));
    double sum = 0;
    for (size_t k = 0; k < n; k++) sum += ser[k].v[i];
    put(b, "# HELP %s Sum over the live processes: %s\n# TYPE %s %s\n%s %.0f\n", host, m->help, host, m->type, host, sum);
  }
}

/* liballoc_host_class_<field>{size="N"}: the collector's totals of the
 * last tick, by size. */
static void put_host_classes(buf_t *b, collector_t *c) {
  host_class_t cls[ALLOC_SHM_MAX_CLASSES];
  size_t n = collector_host_classes(c, cls, ALLOC_SHM_MAX_CLASSES);
#define X(field, help)                                                                                      \
  put(b, "# HELP liballoc_host_class_" #field " %s\n# TYPE liballoc_host_class_" #field " gauge\n", help);    \
  for (size_t i = 0; i < n; i++)                                                                            \
    put(b, "liballoc_host_class_" #field "{size=\"%llu\"} %llu\n", (unsigned long long)cls[i].size,          \
        (unsigned long long)cls[i].field);
  HOST_CLASS_TOTALS(X)
#undef X
}

static void put_process_metrics(buf_t *b, const series_t *ser, size_t n) {
  for (int i = 0; i < SNAP_NMETRICS; i++) {
    const metric_info_t *m = &snap_metrics[i];
    char name[96];
    metric_name(m, name, sizeof name);
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, m->help, name, m->type);
    bool ns = strcmp(m->unit, "nanoseconds") == 0, ratio = i >= SNAP_NSTATS;
    for (size_t k = 0; k < n; k++) {
      if (ratio || ns) put(b, "%s%s %.9g\n", name, ser[k].labels, ser[k].v[i] / (ns ? 1e9 : 1.0));
      else put(b, "%s%s %.0f\n", name, ser[k].labels, ser[k].v[i]);
    }
  }
  /* A publisher that stops (a frozen or wedged process) keeps its last
   * values above; its snapshot time is what shows it: alert on its age. */
  put(b, "# HELP liballoc_snapshot_timestamp_seconds Wall-clock time the newest snapshot read was taken\n"
         "# TYPE liballoc_snapshot_timestamp_seconds gauge\n");
  for (size_t k = 0; k < n; k++) put(b, "liballoc_snapshot_timestamp_seconds%s %.3f\n", ser[k].labels, ser[k].time_s);
}

/* liballoc_config_<knob>: numbers as they are (times in seconds, -1 for
 * never), booleans 0/1, modes as their index in ALLOC_SHM_MODES_<knob>. */
static void put_config(buf_t *b, const series_t *ser, size_t n, const char *knob, const char *help, int idx) {
  int base = strip_unit(knob);
  bool ms = base != (int)strlen(knob);
  char name[96];
  snprintf(name, sizeof name, "liballoc_config_%.*s%s", base, knob, ms ? "_seconds" : "");
  put(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
  for (size_t k = 0; k < n; k++) {
    int64_t v = ser[k].config[idx];
    if (ms && v >= 0) put(b, "%s%s %.3f\n", name, ser[k].labels, v / 1000.0);
    else put(b, "%s%s %lld\n", name, ser[k].labels, (long long)v);
  }
}

static void put_config_metrics(buf_t *b, const series_t *ser, size_t n) {
  int idx = 0;
#define X(knob, kind, help) put_config(b, ser, n, #knob, help, idx++);
  ALLOC_SHM_CONFIG(X)
#undef X
}

/* allocd's own metrics without labels, each declared once: name, type,
 * help and value (an expression of `k`, the collector's counters, or of
 * `agent`, the HTTP server's and rules thread's), printed with up to 15
 * significant digits: counters exact below 10^15.
 * docs/metrics.md lists every name; agent.e2e's test_metrics checks the
 * exposition and that list agree. */
/* Each process's memory cgroup, liballoc_cgroup_memory_*, with the
 * process's labels so that they join its statistics (usage against the
 * limit, next to resident and dirty); processes whose cgroup could not be
 * read have none.  The stall totals come from v2's memory.pressure. */
static void put_cgroup_metrics(buf_t *b, const series_t *ser, size_t n) {
#define X(field, type, unit, help)                                                                      \
  {                                                                                                     \
    const char *name = strcmp(#unit, "bytes") == 0 ? "liballoc_cgroup_memory_" #field "_bytes"        \
                       : strcmp(#type, "counter") == 0 ? "liballoc_cgroup_memory_" #field "_total"     \
                                                       : "liballoc_cgroup_memory_" #field;            \
    put(b, "# HELP %s " help "\n# TYPE %s " #type "\n", name, name);                                  \
    for (size_t k = 0; k < n; k++)                                                                      \
      if (ser[k].cgroup.known)                                                                          \
        put(b, "%s%s %llu\n", name, ser[k].labels, (unsigned long long)ser[k].cgroup.field);           \
  }
  CGROUP_MEM_FIELDS(X)
#undef X
  put(b, "# HELP liballoc_cgroup_memory_pressure_stalled_seconds_total Time tasks of the process's cgroup were"
         " stalled on memory (v2 memory.pressure; kind some: at least one, full: all)\n"
         "# TYPE liballoc_cgroup_memory_pressure_stalled_seconds_total counter\n");
  for (size_t k = 0; k < n; k++) {
    const psi_t *p = &ser[k].cgroup.psi;
    if (!ser[k].cgroup.known || !p->known) continue;
    const char *labels = ser[k].labels + 1;   /* past the '{' */
    put(b, "liballoc_cgroup_memory_pressure_stalled_seconds_total{kind=\"some\",%s %.6f\n", labels, p->some_us / 1e6);
    put(b, "liballoc_cgroup_memory_pressure_stalled_seconds_total{kind=\"full\",%s %.6f\n", labels, p->full_us / 1e6);
  }
}

/* The host's memory pressure (PSI), as node_exporter's names have it but
 * under allocd_, so both can be scraped. */
static void put_host_pressure(buf_t *b, const psi_t *p) {
  if (!p->known) return;
  put(b, "# HELP allocd_host_memory_pressure_stalled_seconds_total Time tasks of the host were stalled on memory"
         " (/proc/pressure/memory; kind some: at least one, full: all non-idle)\n"
         "# TYPE allocd_host_memory_pressure_stalled_seconds_total counter\n"
         "allocd_host_memory_pressure_stalled_seconds_total{kind=\"some\"} %.6f\n"
         "allocd_host_memory_pressure_stalled_seconds_total{kind=\"full\"} %.6f\n",
      p->some_us / 1e6, p->full_us / 1e6);
  put(b, "# HELP allocd_host_memory_pressure_ratio Share of the last 10 s tasks of the host were stalled on memory\n"
         "# TYPE allocd_host_memory_pressure_ratio gauge\n"
         "allocd_host_memory_pressure_ratio{kind=\"some\"} %.4f\nallocd_host_memory_pressure_ratio{kind=\"full\"} %.4f\n",
      p->some[0], p->full[0]);
}

#define AGENT_METRICS(X)                                                                                            \
  X(allocd_processes, gauge, "Processes allocd collects from", k.processes_alive)                                   \
  X(allocd_ticks_total, counter, "Collection passes", k.ticks)                                                      \
  X(allocd_snapshots_total, counter, "Snapshots read and stored", k.snapshots)                                      \
  X(allocd_stale_segments_removed_total, counter, "Segments of exited processes removed", k.stale_removed)          \
  X(allocd_snapshot_times_replaced_total, counter,                                                                  \
    "Snapshots dated before their process started or in the future, stored under allocd's clock instead",           \
    k.times_replaced)                                                                                               \
  X(allocd_ticks_over_budget_total, counter, "Collection passes that left segments or files for the next pass",     \
    k.ticks_over_budget)                                                                                            \
  X(allocd_db_write_failures_total, counter, "Collection passes the database did not take", k.db_failures)          \
  X(allocd_http_closed_slow_total, counter,                                                                         \
    "HTTP connections closed because reading their request took longer than --request-timeout-s",                   \
    agent->closed_slow)                                                                                             \
  X(allocd_rules_suppressed_total, counter,                                                                         \
    "Rule pushes skipped: their user's processes left too many pushes unanswered within the minute",               \
    agent->rules_suppressed)                                                                                        \
  X(allocd_rule_file_errors, gauge, "Rule files (or the rules directory) refused at their last reading: see GET /api/v1/rules", \
    agent->rule_file_errors)                                                                                        \
  X(allocd_reclaim_returned_bytes_total, counter,                                                                   \
    "Bytes the processes squeezed by the reclamation policy returned (their purged counter after the change)",      \
    agent->reclaim.returned_bytes)                                                                                  \
  X(allocd_reclaim_squeezed_processes, gauge, "Processes running with the decay times the reclamation policy set",  \
    agent->reclaim.squeezed_now)                                                                                    \
  X(allocd_tick_seconds, gauge, "Duration of the last collection pass", k.last_tick_seconds)                        \
  X(allocd_db_write_seconds, gauge, "Duration of the last collection pass's database commit",                       \
    k.last_write_seconds)

static void put_agent_metrics(buf_t *b, collector_t *c, const prom_agent_t *agent) {
  collector_counters_t k;
  collector_counters(c, &k);
  put(b, "# HELP allocd_up 1 while allocd serves\n# TYPE allocd_up gauge\nallocd_up 1\n");
#define X(name, type, help, value) \
  put(b, "# HELP " #name " " help "\n# TYPE " #name " " #type "\n" #name " %.15g\n", (double)(value));
  AGENT_METRICS(X)
#undef X
  put(b, "# HELP allocd_segments_rejected_total Segments refused, by reason\n"
         "# TYPE allocd_segments_rejected_total counter\n");
  for (int i = 0; i < REJECT_NREASONS; i++)
    put(b, "allocd_segments_rejected_total{reason=\"%s\"} %llu\n", collector_reject_names[i],
        (unsigned long long)k.rejected[i]);
  put(b, "# HELP allocd_squatters_removed_total Files under a process's segment or temporary name removed because"
         " they provably were not that process's (no such process, or owned by none of its uids)\n"
         "# TYPE allocd_squatters_removed_total counter\n"
         "allocd_squatters_removed_total{kind=\"segment\"} %llu\nallocd_squatters_removed_total{kind=\"temporary\"} %llu\n",
      (unsigned long long)k.squatters_removed, (unsigned long long)k.temporaries_removed);
  put_host_pressure(b, &k.host_psi);
  put(b, "# HELP allocd_reclaim_actions_total Changes made by the reclamation policy (--reclaim): squeeze sets decay"
         " times to 0 under pressure, restore gives them back, dry_run counts those only logged\n"
         "# TYPE allocd_reclaim_actions_total counter\n"
         "allocd_reclaim_actions_total{action=\"squeeze\"} %llu\nallocd_reclaim_actions_total{action=\"restore\"} %llu\n"
         "allocd_reclaim_actions_total{action=\"dry_run\"} %llu\n",
      (unsigned long long)agent->reclaim.squeezed, (unsigned long long)agent->reclaim.restored,
      (unsigned long long)agent->reclaim.dry_run);
}

/* The live processes that have published a snapshot, as series. */
static series_t *live_series(collector_t *c, collector_live_t **live, size_t *n) {
  size_t count;
  *live = collector_live(c, -1, &count, false);
  series_t *ser = *live ? calloc(count ? count : 1, sizeof *ser) : NULL;
  *n = 0;
  for (size_t i = 0; ser && i < count; i++) {
    const collector_live_t *l = &(*live)[i];
    if (!l->snapshot) continue;
    series_t *s = &ser[*n];
    if (!(s->labels = render_labels(l))) continue;
    snap_metric_values(l->snapshot, s->v);
    s->time_s = (double)l->snapshot->time_ns / 1e9;
    s->cgroup = l->cgroup;
    int k = 0;
#define X(knob, kind, help) s->config[k++] = l->snapshot->config.knob;
    ALLOC_SHM_CONFIG(X)
#undef X
    (*n)++;
  }
  return ser;
}

char *prom_render(collector_t *collector, const prom_agent_t *agent, size_t *len) {
  static _Atomic double last_scrape_seconds;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  buf_t b = {malloc(65536), 0, 65536, false};
  collector_live_t *live;
  size_t n;
  series_t *ser = live_series(collector, &live, &n);
  if (!b.data || !ser) b.failed = true;
  put_host_totals(&b, ser, n);
  put_host_classes(&b, collector);
  put_process_metrics(&b, ser, n);
  put_config_metrics(&b, ser, n);
  put_cgroup_metrics(&b, ser, n);
  put_agent_metrics(&b, collector, agent);
  put(&b, "# HELP allocd_scrape_seconds Time the previous /metrics request took to render\n"
          "# TYPE allocd_scrape_seconds gauge\nallocd_scrape_seconds %.6f\n", (double)last_scrape_seconds);
  for (size_t i = 0; i < n; i++) free(ser[i].labels);
  free(ser);
  free(live);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  last_scrape_seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  if (b.failed) {
    free(b.data);
    return NULL;
  }
  *len = b.len;
  return b.data;
}
