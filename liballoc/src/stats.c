/* stats.c - gathering the allocator's statistics and printing them.
 *
 * Statistics are computed when asked for, from the structures that exist
 * anyway (segment masks, slab counters, the huge table), one arena lock at a
 * time: there is no global stop and nothing is counted on the fast path.
 * Counters owned by other threads are read with relaxed loads and are as
 * fresh as a snapshot needs.  A block freed by another thread counts as
 * allocated until its slab's owner collects it (docs/metrics.md).
 *
 * alloc_stats_print formats into a stack buffer and never allocates, so it
 * is safe in atexit handlers and while the heap is in any state. */
#include "alloc_internal.h"

#include <alloc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void la_stats_gather(la_stats_t *st) {
  la_ensure_init();
  memset(st, 0, sizeof *st);
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    st->classes[c].size = la_class_size[c];
    st->classes[c].units_per_slab = la_class_units[c];
    st->classes[c].blocks_per_slab = la_class_capacity[c];
  }
  la_arenas_stats(st);
  la_huge_stats(st);
  st->metadata += la_meta_used();
  st->mapped += la_meta_mapped();
  st->resident = st->active + st->dirty + st->muzzy + st->metadata;
  st->nheaps = la_heaps_count();
  st->foreign_frees = atomic_load_explicit(&la_foreign_frees, memory_order_relaxed);
  st->background_thread = la_purger_running();
}

/* ---- output -------------------------------------------------------------- */

typedef struct writer_s {
  void (*cb)(void *, const char *);
  void *opaque;
  size_t len;
  char buf[2048];
} writer_t;

static void write_stderr(void *opaque, const char *text) {
  (void)opaque;
  la_os_write_stderr(text, strlen(text));
}

static void flush(writer_t *w) {
  if (!w->len) return;
  w->buf[w->len] = 0;
  w->cb(w->opaque, w->buf);
  w->len = 0;
}

__attribute__((format(printf, 2, 3))) static void out(writer_t *w, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
  if (w->len + len >= sizeof w->buf) flush(w);
  memcpy(w->buf + w->len, line, len);
  w->len += len;
}

/* The totals, in one order for both formats: name, value. */
#define LA_STAT_TOTALS(X)                                                      \
  X(allocated) X(active) X(metadata) X(resident) X(mapped) X(retained)         \
  X(dirty) X(muzzy) X(npurges) X(nmadvise) X(purged) X(large_count)          \
  X(large_bytes) X(huge_count) X(huge_bytes)                                 \
  X(narenas) X(nheaps) X(nsegments) X(foreign_frees)

static void print_text(writer_t *w, const la_stats_t *st) {
  out(w, "___ Begin liballoc statistics ___\n");
  out(w, "version: %s\npid: %d\npage size: %zu\n", ALLOC_VERSION_STRING, (int)getpid(), la_page_size);
#define X(name) out(w, "%s: %zu\n", #name, (size_t)st->name);
  LA_STAT_TOTALS(X)
#undef X
  out(w, "background_thread: %s\n", st->background_thread ? "running" : "stopped");
  const la_options_t *o = &la_opt;
  out(w, "options: narenas:%u dirty_decay_ms:%zd muzzy_decay_ms:%zd thp:%s metadata_thp:%s "
         "background_thread:%s telemetry:%s telemetry_dir:%s stats_interval_ms:%zd\n",
      o->narenas, o->dirty_decay_ms, o->muzzy_decay_ms, la_thp_mode_name(o->thp),
      la_meta_thp_mode_name(o->metadata_thp), o->background_thread ? "true" : "false",
      o->telemetry ? "true" : "false", o->telemetry_dir, o->stats_interval_ms);
  out(w, "size classes in use:\n%10s %6s %8s %8s %10s %7s\n", "size", "units", "per_slab", "slabs",
      "live", "util");
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    const la_class_stats_t *k = &st->classes[c];
    if (!k->slabs) continue;
    size_t cap = (size_t)k->slabs * k->blocks_per_slab;
    size_t live = k->live_blocks;
    out(w, "%10zu %6u %8u %8zu %10zu %6.1f%%\n", k->size, k->units_per_slab, k->blocks_per_slab,
        k->slabs, live, cap ? 100.0 * (double)live / (double)cap : 0.0);
  }
  out(w, "___ End liballoc statistics ___\n");
}

static void print_json(writer_t *w, const la_stats_t *st) {
  out(w, "{\"version\":\"%s\",\"pid\":%d,\"page_size\":%zu,\"stats\":{", ALLOC_VERSION_STRING,
      (int)getpid(), la_page_size);
  const char *sep = "";
#define X(name) out(w, "%s\"%s\":%zu", sep, #name, (size_t)st->name), sep = ",";
  LA_STAT_TOTALS(X)
#undef X
  out(w, ",\"background_thread\":%s", st->background_thread ? "true" : "false");
  const la_options_t *o = &la_opt;
  out(w, "},\"opt\":{\"narenas\":%u,\"dirty_decay_ms\":%zd,\"muzzy_decay_ms\":%zd,\"thp\":\"%s\","
         "\"metadata_thp\":\"%s\",\"background_thread\":%s,\"telemetry\":%s,",
      o->narenas, o->dirty_decay_ms, o->muzzy_decay_ms, la_thp_mode_name(o->thp),
      la_meta_thp_mode_name(o->metadata_thp), o->background_thread ? "true" : "false",
      o->telemetry ? "true" : "false");
  /* telemetry_dir is validated as a path; escape the two JSON specials */
  out(w, "\"telemetry_dir\":\"");
  for (const char *p = o->telemetry_dir; *p; p++) {
    if (*p == '"' || *p == '\\') out(w, "\\%c", *p);
    else if ((unsigned char)*p < 0x20) out(w, "\\u%04x", (unsigned char)*p);
    else out(w, "%c", *p);
  }
  out(w, "\",\"stats_interval_ms\":%zd},\"classes\":[", o->stats_interval_ms);
  sep = "";
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    const la_class_stats_t *k = &st->classes[c];
    size_t live = k->live_blocks;
    out(w, "%s{\"size\":%zu,\"units_per_slab\":%u,\"blocks_per_slab\":%u,\"slabs\":%zu,\"live\":%zu}", sep,
        k->size, k->units_per_slab, k->blocks_per_slab, k->slabs, live);
    sep = ",";
  }
  out(w, "]}");
}

LA_EXPORT void alloc_stats_print(void (*write_cb)(void *, const char *), void *cbopaque, const char *opts) {
  writer_t w = {.cb = write_cb ? write_cb : write_stderr, .opaque = cbopaque};
  la_stats_t st;
  la_stats_gather(&st);
  if (opts && strchr(opts, 'J')) print_json(&w, &st);
  else print_text(&w, &st);
  flush(&w);
}
