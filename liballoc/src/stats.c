/* stats.c - gathering the allocator's statistics and printing them.
 *
 * Statistics are computed when asked for, from the structures that exist
 * anyway (segment masks, slab counters, the huge table), one arena lock at a
 * time: there is no global stop.  The fast path counts one thing, the frees
 * of a slab's owner, in the slab (owner-only: no atomic, no shared line);
 * allocations are frees plus blocks in use.  Counters owned by other
 * threads are read with relaxed loads and are as fresh as a snapshot needs.
 * A block freed by another thread counts as allocated until its slab's
 * owner collects it (docs/metrics.md).  The names, units and meanings of
 * the statistics are listed once, in alloc_shm.h.
 *
 * alloc_stats_print formats into a stack buffer and never allocates, so it
 * may be called from atexit handlers.  It is not safe in every state: it
 * takes each arena's lock, heaps_lock, huge_lock, meta_lock and the smaps
 * lock (procfs.c) in turn, so it must not be called from a signal handler
 * that may have interrupted the allocator.  All are released before the
 * write callback runs. */
#include "alloc_internal.h"

#include <alloc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void la_stats_gather(la_stats_t *st) {
  la_ensure_init();
  memset(st, 0, sizeof *st);
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    alloc_shm_class_t *k = &st->classes[c];
    k->size = la_class_size[c];
    k->slab_bytes = (uint64_t)la_class_units[c] << LA_UNIT_SHIFT;
    k->blocks_per_slab = la_class_large[c] ? 1 : la_class_capacity[c];
  }
  la_arenas_stats(st);
  la_heaps_stats(st);
  la_huge_stats(st);
  alloc_shm_stats_t *s = &st->s;
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    alloc_shm_class_t *k = &st->classes[c];
    if (st->lent_open[c] > 0) k->nfree += (uint64_t)st->lent_open[c];   /* lent blocks freed (lend.c) */
    if (!la_class_large[c]) continue;
    /* Large frees are not counted: allocations minus the live blocks. */
    k->nfree = k->nmalloc > k->live ? k->nmalloc - k->live : 0;
    s->large_nmalloc += k->nmalloc;
    s->large_nfree += k->nfree;
  }
  s->metadata += la_meta_used();
  s->mapped += la_meta_mapped();
  s->resident = s->active + s->dirty + s->metadata;
  s->foreign_frees = atomic_load_explicit(&la_foreign_frees, memory_order_relaxed);
  s->purged += atomic_load_explicit(&la_trimmed_bytes, memory_order_relaxed);
  s->npurges += atomic_load_explicit(&la_trimmed_slabs, memory_order_relaxed);
  s->nmadvise += atomic_load_explicit(&la_trim_madvises, memory_order_relaxed);
  s->purge_failures = atomic_load_explicit(&la_os_release_failures, memory_order_relaxed);
  s->background_thread = la_purger_running();
  la_limit_stats(s);
}

/* Every published knob's value in force, as the telemetry segment carries
 * them: la_opt's, except narenas, whose option may say 0 (the default count)
 * while the segment carries the count in use. */
void la_stats_config(alloc_shm_config_t *c) {
#define X(name, kind, help) c->name = (int64_t)la_opt.name;
  ALLOC_SHM_CONFIG(X)
#undef X
  c->narenas = la_narenas;
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

/* A config value as JSON (or text: strings unquoted). */
static void out_config(writer_t *w, const char *name, const char *kind, int64_t v, bool json) {
  const char *q = json ? "\"" : "";
  if (strcmp(kind, "BOOL") == 0) out(w, "%s", v ? "true" : "false");
  else if (strcmp(kind, "ENUM") == 0) {
    const char *e = alloc_shm_enum_name(name, v);
    out(w, "%s%s%s", q, e ? e : "?", q);
  } else if (strcmp(kind, "BYTES") == 0 && alloc_shm_bytes_word(name, v)) {
    out(w, "%s%s%s", q, alloc_shm_bytes_word(name, v), q);
  } else out(w, "%lld", (long long)v);
}

static void out_string(writer_t *w, const char *s) {
  out(w, "\"");
  for (const char *p = s; *p; p++) {
    if (*p == '"' || *p == '\\') out(w, "\\%c", *p);
    else if ((unsigned char)*p < 0x20) out(w, "\\u%04x", (unsigned char)*p);
    else out(w, "%c", *p);
  }
  out(w, "\"");
}

/* The knobs the segment does not carry, from la_opt: " name:value" as
 * text, ',"name":value' in JSON (strings quoted). */
static void out_private_knobs(writer_t *w, bool json) {
  for (size_t i = 0; i < la_nknobs; i++) {
    const la_knob_t *k = &la_knobs[i];
    if (k->published) continue;
    char text[LA_PATH_MAX];
    la_knob_format(&la_opt, k, text, sizeof text);
    bool quoted = k->type == LA_KNOB_ENUM || k->type == LA_KNOB_PATH ||
                  (k->type == LA_KNOB_BYTES && text[0] >= 'a');
    if (!json) out(w, " %s:%s", k->name, text);
    else if (!quoted) out(w, ",\"%s\":%s", k->name, text);
    else {
      out(w, ",\"%s\":", k->name);
      out_string(w, text);
    }
  }
}

static double class_utilisation(const alloc_shm_class_t *k) {
  return alloc_shm_ratio(k->live, k->slabs * k->blocks_per_slab);
}

static void print_text(writer_t *w, const la_stats_t *st) {
  const alloc_shm_stats_t *s = &st->s;
  alloc_shm_derived_t d;
  alloc_shm_derive(s, &d);
  alloc_shm_config_t c;
  la_stats_config(&c);
  out(w, "___ Begin liballoc statistics ___\n");
  out(w, "version: %s\npid: %d\npage size: %zu\n", ALLOC_VERSION_STRING, (int)getpid(), la_page_size);
#define X(name, type, unit, help) out(w, "%s: %llu\n", #name, (unsigned long long)s->name);
  ALLOC_SHM_STATS(X)
#undef X
#define X(name, help) out(w, "%s: %.3f\n", #name, d.name);
  ALLOC_SHM_DERIVED(X)
#undef X
  out(w, "options:");
#define X(name, kind, help) out(w, " %s:", #name), out_config(w, #name, #kind, c.name, false);
  ALLOC_SHM_CONFIG(X)
#undef X
  out_private_knobs(w, false);
  out(w, "\n");
  out(w, "size classes in use:\n%10s %10s %8s %8s %10s %7s %12s %12s\n", "size", "slab", "per_slab",
      "slabs", "live", "util", "nmalloc", "nfree");
  for (unsigned i = 0; i < LA_NCLASSES; i++) {
    const alloc_shm_class_t *k = &st->classes[i];
    if (!k->slabs && !k->nmalloc) continue;
    out(w, "%10llu %10llu %8llu %8llu %10llu %6.1f%% %12llu %12llu\n", (unsigned long long)k->size,
        (unsigned long long)k->slab_bytes, (unsigned long long)k->blocks_per_slab,
        (unsigned long long)k->slabs, (unsigned long long)k->live, 100.0 * class_utilisation(k),
        (unsigned long long)k->nmalloc, (unsigned long long)k->nfree);
  }
  out(w, "___ End liballoc statistics ___\n");
}

static void print_json(writer_t *w, const la_stats_t *st) {
  const alloc_shm_stats_t *s = &st->s;
  alloc_shm_derived_t d;
  alloc_shm_derive(s, &d);
  alloc_shm_config_t c;
  la_stats_config(&c);
  const char *sep = "";
  out(w, "{\"version\":\"%s\",\"pid\":%d,\"page_size\":%zu,\"stats\":{", ALLOC_VERSION_STRING,
      (int)getpid(), la_page_size);
#define X(name, type, unit, help) out(w, "%s\"%s\":%llu", sep, #name, (unsigned long long)s->name), sep = ",";
  ALLOC_SHM_STATS(X)
#undef X
  out(w, "},\"derived\":{");
  sep = "";
#define X(name, help) out(w, "%s\"%s\":%.6g", sep, #name, d.name), sep = ",";
  ALLOC_SHM_DERIVED(X)
#undef X
  out(w, "},\"opt\":{");
  sep = "";
#define X(name, kind, help) out(w, "%s\"%s\":", sep, #name), out_config(w, #name, #kind, c.name, true), sep = ",";
  ALLOC_SHM_CONFIG(X)
#undef X
  out_private_knobs(w, true);
  out(w, "},\"classes\":[");
  sep = "";
  for (unsigned i = 0; i < LA_NCLASSES; i++) {
    const alloc_shm_class_t *k = &st->classes[i];
    out(w, "%s{", sep);
    const char *fsep = "";
#define X(name, help) out(w, "%s\"%s\":%llu", fsep, #name, (unsigned long long)k->name), fsep = ",";
    ALLOC_SHM_CLASS(X)
#undef X
    out(w, ",\"utilisation\":%.4f}", class_utilisation(k));
    sep = ",";
  }
  out(w, "]}");
}

LA_EXPORT void alloc_stats_print(void (*write_cb)(void *, const char *), void *cbopaque, const char *opts) {
  writer_t w = {.cb = write_cb ? write_cb : write_stderr, .opaque = cbopaque};
  la_stats_t st;
  la_stats_gather(&st);
  la_proc_memory(&st.s);
  if (opts && strchr(opts, 'J')) print_json(&w, &st);
  else print_text(&w, &st);
  flush(&w);
}
