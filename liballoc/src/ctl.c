/* ctl.c - alloc_ctl(): read and write control values by dotted name, with
 * the semantics of jemalloc's mallctl().
 *
 * One table lists every name, its type and how to read, write or run it;
 * the documentation (docs/api.md) follows the same table.  Values that can
 * not change while the process runs answer EPERM to a write.  This is also
 * the entry point the telemetry segment's control area calls. */
#include "alloc_internal.h"

#include <alloc.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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
    v->size = (size_t)st.s.field;                                                \
  }
STAT_READER(allocated)
STAT_READER(active)
STAT_READER(metadata)
STAT_READER(resident)
STAT_READER(mapped)
STAT_READER(retained)
STAT_READER(dirty)
STAT_READER(muzzy)
STAT_READER(purged)
STAT_READER(npurges)
STAT_READER(nmadvise)
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
static void read_opt_detect_double_free(ctl_value_t *v) { v->b = la_opt.detect_double_free; }
static void read_bg_running(ctl_value_t *v) { v->b = la_purger_running(); }

/* Statistics are always current; "epoch" exists so that code written for
 * jemalloc (write epoch, then read stats) works unchanged. */
static uint64_t epoch = 1;
static void read_epoch(ctl_value_t *v) { v->u64 = __atomic_load_n(&epoch, __ATOMIC_RELAXED); }
static int write_epoch(const ctl_value_t *v) {
  (void)v;
  __atomic_add_fetch(&epoch, 1, __ATOMIC_RELAXED);
  return 0;
}

/* ---- live knobs ---------------------------------------------------------- */
/* Writers run under ctl_lock, so two concurrent changes cannot interleave
 * between la_opt and the pools they are applied to. */

static bool valid_decay(ssize_t ms) {
  return ms >= -1 && ms <= ((ssize_t)1 << 40);
}

/* A new decay time re-plans what is pending in every pool, and wakes the
 * purger so that it takes effect at once. */
static void apply_decay(void) {
  la_arenas_set_decay(la_opt.dirty_decay_ms, la_opt.muzzy_decay_ms);
  la_huge_set_decay(la_opt.dirty_decay_ms);
  la_purger_kick();
  if (!la_opt.background_thread) la_decay_all(la_now_ns());
}

static int write_dirty(const ctl_value_t *v) {
  if (!valid_decay(v->ssize)) return EINVAL;
  la_opt.dirty_decay_ms = v->ssize;
  apply_decay();
  return 0;
}

static int write_muzzy(const ctl_value_t *v) {
  if (!valid_decay(v->ssize)) return EINVAL;
  la_opt.muzzy_decay_ms = v->ssize;
  apply_decay();
  return 0;
}

static int parse_mode(const char *s, const char *(*name)(int)) {
  if (!s) return -1;
  for (int m = 0; m < 3; m++)
    if (strcmp(s, name(m)) == 0) return m;
  return -1;
}

/* Applies to memory mapped already (free and in use) and to future
 * mappings.  "default" only changes future mappings: the kernel has no
 * advice that undoes MADV_HUGEPAGE or MADV_NOHUGEPAGE. */
static int write_thp(const ctl_value_t *v) {
  int mode = parse_mode(v->s, la_thp_mode_name);
  if (mode < 0) return EINVAL;
  la_opt.thp = mode;
  if (mode != LA_THP_DEFAULT) {
    la_arenas_apply_thp(mode);
    la_huge_apply_thp(mode);
  }
  return 0;
}

static int write_meta_thp(const ctl_value_t *v) {
  int mode = parse_mode(v->s, la_meta_thp_mode_name);
  if (mode < 0) return EINVAL;
  la_opt.metadata_thp = mode;
  la_meta_apply_thp();
  return 0;
}

static int write_bg(const ctl_value_t *v) { return la_purger_enable(v->b); }

static int write_interval(const ctl_value_t *v) {
  if (v->ssize < 10 || v->ssize > 86400000) return EINVAL;
  la_opt.stats_interval_ms = v->ssize;
  la_telemetry_kick();
  return 0;
}

static int write_stats_print(const ctl_value_t *v) {
  la_opt.stats_print = v->b;
  return 0;
}

static int write_abort_invalid(const ctl_value_t *v) {
  la_opt.abort_on_invalid_free = v->b;
  return 0;
}

/* ---- commands ------------------------------------------------------------ */

static int run_purge(const ctl_value_t *v) {
  (void)v;
  la_arenas_purge();
  la_huge_purge();
  return 0;
}

static int run_decay(const ctl_value_t *v) {
  (void)v;
  la_decay_all(la_now_ns());
  return 0;
}

static int run_tcache_flush(const ctl_value_t *v) {
  (void)v;
  la_heap_flush(la_tls_heap);
  return 0;
}

/* Names follow jemalloc: opt.* are the options (writable here when they can
 * change live), arenas.* and background_thread are jemalloc's live names for
 * the same knobs. */
static const ctl_entry_t ctl_table[] = {
  {"version", CTL_STRING, read_version, NULL},
  {"epoch", CTL_U64, read_epoch, write_epoch},
  {"arenas.narenas", CTL_UNSIGNED, read_narenas, NULL},
  {"arenas.page", CTL_SIZE, read_page, NULL},
  {"arenas.nbins", CTL_UNSIGNED, read_nbins, NULL},
  {"arenas.dirty_decay_ms", CTL_SSIZE, read_opt_dirty, write_dirty},
  {"arenas.muzzy_decay_ms", CTL_SSIZE, read_opt_muzzy, write_muzzy},
  {"arena.purge", CTL_COMMAND, NULL, run_purge},
  {"arena.decay", CTL_COMMAND, NULL, run_decay},
  {"thread.tcache.flush", CTL_COMMAND, NULL, run_tcache_flush},
  {"background_thread", CTL_BOOL, read_opt_bg, write_bg},
  {"stats.allocated", CTL_SIZE, read_stats_allocated, NULL},
  {"stats.active", CTL_SIZE, read_stats_active, NULL},
  {"stats.metadata", CTL_SIZE, read_stats_metadata, NULL},
  {"stats.resident", CTL_SIZE, read_stats_resident, NULL},
  {"stats.mapped", CTL_SIZE, read_stats_mapped, NULL},
  {"stats.retained", CTL_SIZE, read_stats_retained, NULL},
  {"stats.dirty", CTL_SIZE, read_stats_dirty, NULL},
  {"stats.muzzy", CTL_SIZE, read_stats_muzzy, NULL},
  {"stats.purged", CTL_SIZE, read_stats_purged, NULL},
  {"stats.npurges", CTL_SIZE, read_stats_npurges, NULL},
  {"stats.nmadvise", CTL_SIZE, read_stats_nmadvise, NULL},
  {"stats.background_thread.running", CTL_BOOL, read_bg_running, NULL},
  {"opt.narenas", CTL_UNSIGNED, read_opt_narenas, NULL},
  {"opt.dirty_decay_ms", CTL_SSIZE, read_opt_dirty, write_dirty},
  {"opt.muzzy_decay_ms", CTL_SSIZE, read_opt_muzzy, write_muzzy},
  {"opt.thp", CTL_STRING, read_opt_thp, write_thp},
  {"opt.metadata_thp", CTL_STRING, read_opt_meta_thp, write_meta_thp},
  {"opt.background_thread", CTL_BOOL, read_opt_bg, write_bg},
  {"opt.telemetry", CTL_BOOL, read_opt_telemetry, NULL},
  {"opt.telemetry_dir", CTL_STRING, read_opt_telemetry_dir, NULL},
  {"opt.stats_interval_ms", CTL_SSIZE, read_opt_interval, write_interval},
  {"opt.stats_print", CTL_BOOL, read_opt_stats_print, write_stats_print},
  {"opt.abort_on_invalid_free", CTL_BOOL, read_opt_abort_invalid, write_abort_invalid},
  {"opt.detect_double_free", CTL_BOOL, read_opt_detect_double_free, NULL},
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

static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;

void la_ctl_fork_child(void) { pthread_mutex_init(&ctl_lock, NULL); }

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
  pthread_mutex_lock(&ctl_lock);
  if (oldp) e->read(&before);
  int err = 0;
  if (newp) {
    ctl_value_t v;
    memcpy(&v, newp, size);
    err = e->write(&v);
  }
  pthread_mutex_unlock(&ctl_lock);
  if (err) return err;
  if (oldp) memcpy(oldp, &before, size);
  return 0;
}

/* ---- the same, with values as text (the telemetry control area) --------- */

static bool parse_text(enum ctl_type t, const char *text, ctl_value_t *v) {
  char *end;
  errno = 0;
  switch (t) {
  case CTL_SSIZE: {
    long long x = strtoll(text, &end, 10);
    if (errno || end == text || *end) return false;
    v->ssize = (ssize_t)x;
    return true;
  }
  case CTL_SIZE:
  case CTL_UNSIGNED:
  case CTL_U64: {
    if (text[0] == '-') return false;
    unsigned long long x = strtoull(text, &end, 10);
    if (errno || end == text || *end || (t == CTL_UNSIGNED && x > 0xffffffffull)) return false;
    if (t == CTL_SIZE) v->size = (size_t)x;
    else if (t == CTL_UNSIGNED) v->u = (unsigned)x;
    else v->u64 = x;
    return true;
  }
  case CTL_BOOL:
    if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0) v->b = true;
    else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0) v->b = false;
    else return false;
    return true;
  case CTL_STRING:
    v->s = text;
    return true;
  case CTL_COMMAND:
    return text[0] == 0;
  }
  return false;
}

static void format_text(enum ctl_type t, const ctl_value_t *v, char *out, size_t len) {
  switch (t) {
  case CTL_SSIZE: snprintf(out, len, "%zd", v->ssize); break;
  case CTL_SIZE: snprintf(out, len, "%zu", v->size); break;
  case CTL_UNSIGNED: snprintf(out, len, "%u", v->u); break;
  case CTL_U64: snprintf(out, len, "%llu", (unsigned long long)v->u64); break;
  case CTL_BOOL: snprintf(out, len, "%s", v->b ? "true" : "false"); break;
  case CTL_STRING: snprintf(out, len, "%s", v->s ? v->s : ""); break;
  case CTL_COMMAND: snprintf(out, len, "%s", ""); break;
  }
}

/* Apply `name` = `value` given as text: a knob of the telemetry segment
 * ("dirty_decay_ms", looked up as "opt.dirty_decay_ms") or any alloc_ctl
 * name ("opt.thp", "arena.purge" with an empty value).  Returns 0 or an
 * errno value, with the reason in `msg` and the value after the change in
 * `effective`.  Runs the same write functions as alloc_ctl, under its lock. */
int la_ctl_apply_text(const char *name, const char *value, char *effective, size_t efflen, char *msg,
                      size_t msglen) {
  char full[64];
  const ctl_entry_t *e = NULL;
  effective[0] = 0;
  if (!strchr(name, '.') && snprintf(full, sizeof full, "opt.%s", name) < (int)sizeof full)
    e = find_entry(full);
  if (!e) e = find_entry(name);
  if (!e) {
    snprintf(msg, msglen, "unknown knob '%s'", name);
    return ENOENT;
  }
  if (!e->write) {
    snprintf(msg, msglen, "%s cannot be changed while the process runs", e->name);
    return EPERM;
  }
  ctl_value_t v = {0};
  int err = 0;
  la_ensure_init();
  pthread_mutex_lock(&ctl_lock);
  if (!parse_text(e->type, value, &v)) err = EINVAL;
  else err = e->write(e->type == CTL_COMMAND ? NULL : &v);
  ctl_value_t now = {0};
  if (e->read) {   /* the value in force afterwards, changed or not */
    e->read(&now);
    format_text(e->type, &now, effective, efflen);
  }
  pthread_mutex_unlock(&ctl_lock);
  if (err == EINVAL && e->type == CTL_COMMAND) snprintf(msg, msglen, "%s takes no value", e->name);
  else if (err == EINVAL) snprintf(msg, msglen, "invalid value '%s' for %s", value, e->name);
  else if (err) snprintf(msg, msglen, "%s failed: error %d", e->name, err);
  else snprintf(msg, msglen, "ok");
  return err;
}
