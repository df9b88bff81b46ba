/* ctl.c - alloc_ctl(): read and write control values by dotted name, with
 * the semantics of jemalloc's mallctl().
 *
 * One table lists every name, its type and how to read or run it; the
 * documentation (docs/api.md) follows the same table.  Values that can not
 * change while the process runs answer EPERM to a write. */
#include "alloc_internal.h"

#include <alloc.h>
#include <errno.h>
#include <string.h>

enum ctl_type { CTL_SIZE, CTL_SSIZE, CTL_UNSIGNED, CTL_BOOL, CTL_STRING, CTL_U64, CTL_COMMAND };

typedef union ctl_value_u {
  size_t size;
  ssize_t ssize;
  unsigned u;
  bool b;
  const char *s;
  uint64_t u64;
} ctl_value_t;

typedef struct ctl_entry_s {
  const char *name;
  enum ctl_type type;
  void (*read)(ctl_value_t *v);                  /* NULL: not readable */
  int (*write)(const ctl_value_t *v);           /* NULL: read-only */
} ctl_entry_t;

static size_t type_size(enum ctl_type t) {
  switch (t) {
  case CTL_SIZE: return sizeof(size_t);
  case CTL_SSIZE: return sizeof(ssize_t);
  case CTL_UNSIGNED: return sizeof(unsigned);
  case CTL_BOOL: return sizeof(bool);
  case CTL_STRING: return sizeof(const char *);
  case CTL_U64: return sizeof(uint64_t);
  case CTL_COMMAND: return 0;
  }
  return 0;
}

/* ---- readers ------------------------------------------------------------- */

static void read_version(ctl_value_t *v) { v->s = ALLOC_VERSION_STRING; }
static void read_page(ctl_value_t *v) { v->size = la_page_size; }
static void read_narenas(ctl_value_t *v) { v->u = la_narenas; }
static void read_nbins(ctl_value_t *v) { v->u = LA_NCLASSES; }

#define STAT_READER(field)                                                     \
  static void read_stats_##field(ctl_value_t *v) {                            \
    la_stats_t st;                                                             \
    la_stats_gather(&st);                                                      \
    v->size = st.field;                                                        \
  }
STAT_READER(allocated)
STAT_READER(active)
STAT_READER(metadata)
STAT_READER(resident)
STAT_READER(mapped)
STAT_READER(retained)
STAT_READER(dirty)
#undef STAT_READER

static void read_opt_narenas(ctl_value_t *v) { v->u = la_opt.narenas; }
static void read_opt_dirty(ctl_value_t *v) { v->ssize = la_opt.dirty_decay_ms; }
static void read_opt_muzzy(ctl_value_t *v) { v->ssize = la_opt.muzzy_decay_ms; }
static void read_opt_thp(ctl_value_t *v) { v->s = la_thp_mode_name(la_opt.thp); }
static void read_opt_meta_thp(ctl_value_t *v) { v->s = la_meta_thp_mode_name(la_opt.metadata_thp); }
static void read_opt_bg(ctl_value_t *v) { v->b = la_opt.background_thread; }
static void read_opt_telemetry(ctl_value_t *v) { v->b = la_opt.telemetry; }
static void read_opt_telemetry_dir(ctl_value_t *v) { v->s = la_opt.telemetry_dir; }
static void read_opt_interval(ctl_value_t *v) { v->ssize = la_opt.stats_interval_ms; }
static void read_opt_stats_print(ctl_value_t *v) { v->b = la_opt.stats_print; }
static void read_opt_abort_invalid(ctl_value_t *v) { v->b = la_opt.abort_on_invalid_free; }

/* Statistics are always current; "epoch" exists so that code written for
 * jemalloc (write epoch, then read stats) works unchanged. */
static uint64_t epoch = 1;
static void read_epoch(ctl_value_t *v) { v->u64 = __atomic_load_n(&epoch, __ATOMIC_RELAXED); }
static int write_epoch(const ctl_value_t *v) {
  (void)v;
  __atomic_add_fetch(&epoch, 1, __ATOMIC_RELAXED);
  return 0;
}

/* ---- commands ------------------------------------------------------------ */

static int run_purge(const ctl_value_t *v) {
  (void)v;
  la_arenas_purge();
  return 0;
}

static int run_tcache_flush(const ctl_value_t *v) {
  (void)v;
  la_heap_flush(la_tls_heap);
  return 0;
}

static const ctl_entry_t ctl_table[] = {
  {"version", CTL_STRING, read_version, NULL},
  {"epoch", CTL_U64, read_epoch, write_epoch},
  {"arenas.narenas", CTL_UNSIGNED, read_narenas, NULL},
  {"arenas.page", CTL_SIZE, read_page, NULL},
  {"arenas.nbins", CTL_UNSIGNED, read_nbins, NULL},
  {"arena.purge", CTL_COMMAND, NULL, run_purge},
  {"thread.tcache.flush", CTL_COMMAND, NULL, run_tcache_flush},
  {"stats.allocated", CTL_SIZE, read_stats_allocated, NULL},
  {"stats.active", CTL_SIZE, read_stats_active, NULL},
  {"stats.metadata", CTL_SIZE, read_stats_metadata, NULL},
  {"stats.resident", CTL_SIZE, read_stats_resident, NULL},
  {"stats.mapped", CTL_SIZE, read_stats_mapped, NULL},
  {"stats.retained", CTL_SIZE, read_stats_retained, NULL},
  {"stats.dirty", CTL_SIZE, read_stats_dirty, NULL},
  {"opt.narenas", CTL_UNSIGNED, read_opt_narenas, NULL},
  {"opt.dirty_decay_ms", CTL_SSIZE, read_opt_dirty, NULL},
  {"opt.muzzy_decay_ms", CTL_SSIZE, read_opt_muzzy, NULL},
  {"opt.thp", CTL_STRING, read_opt_thp, NULL},
  {"opt.metadata_thp", CTL_STRING, read_opt_meta_thp, NULL},
  {"opt.background_thread", CTL_BOOL, read_opt_bg, NULL},
  {"opt.telemetry", CTL_BOOL, read_opt_telemetry, NULL},
  {"opt.telemetry_dir", CTL_STRING, read_opt_telemetry_dir, NULL},
  {"opt.stats_interval_ms", CTL_SSIZE, read_opt_interval, NULL},
  {"opt.stats_print", CTL_BOOL, read_opt_stats_print, NULL},
  {"opt.abort_on_invalid_free", CTL_BOOL, read_opt_abort_invalid, NULL},
};

static const ctl_entry_t *find_entry(const char *name) {
  for (size_t i = 0; i < sizeof ctl_table / sizeof ctl_table[0]; i++)
    if (strcmp(ctl_table[i].name, name) == 0) return &ctl_table[i];
  return NULL;
}

static int run_command(const ctl_entry_t *e, void *oldp, size_t *oldlenp, void *newp, size_t newlen) {
  if (oldp || oldlenp || newp || newlen) return EPERM;   /* commands take no value */
  return e->write(NULL);
}

LA_EXPORT int alloc_ctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen) {
  if (!name) return ENOENT;
  la_ensure_init();
  const ctl_entry_t *e = find_entry(name);
  if (!e) return ENOENT;
  if (e->type == CTL_COMMAND) return run_command(e, oldp, oldlenp, newp, newlen);
  size_t size = type_size(e->type);
  if (newp && !e->write) return EPERM;
  if (newp && newlen != size) return EINVAL;
  if (oldp) {
    if (!oldlenp || *oldlenp != size) return EINVAL;
    if (!e->read) return EPERM;
  }
  ctl_value_t before = {0};
  if (oldp) e->read(&before);
  if (newp) {
    ctl_value_t v;
    memcpy(&v, newp, size);
    int err = e->write(&v);
    if (err) return err;
  }
  if (oldp) memcpy(oldp, &before, size);
  return 0;
}
