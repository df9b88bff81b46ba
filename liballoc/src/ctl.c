/* ctl.c - alloc_ctl(): read and write control values by dotted name, with
 * the semantics of jemalloc's mallctl().
 *
 * "opt.<name>" is every knob of ALLOC_SHM_KNOBS (alloc_shm.h), read and
 * written through the knob table (options.c) with the same parser as
 * ALLOC_CONF; the APPLY knobs' hooks are here.  One table lists every other
 * name, its type and how to read, write or run it, and jemalloc's live
 * aliases of knobs; the documentation (docs/api.md) follows the same table.
 * Values that can not change while the process runs answer EPERM to a
 * write.  This is also the entry point the telemetry segment's control area
 * calls. */
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
/* The hooks of ALLOC_SHM_KNOBS' APPLY knobs.  They run under ctl_lock, after
 * the new value is in la_opt, so two concurrent changes cannot interleave
 * between la_opt and the pools they are applied to. */

/* A new decay time re-plans what is pending in every pool, and wakes the
 * purger so that it takes effect at once. */
static int apply_decay(void) {
  la_arenas_set_decay(la_opt.dirty_decay_ms, la_opt.muzzy_decay_ms);
  la_huge_set_decay(la_opt.dirty_decay_ms);
  la_purger_kick();
  if (!la_opt.background_thread) la_decay_all(la_now_ns());
  return 0;
}

int la_apply_dirty_decay_ms(void) { return apply_decay(); }
int la_apply_muzzy_decay_ms(void) { return apply_decay(); }

/* Applies to memory mapped already (free and in use) and to future
 * mappings.  "default" only changes future mappings: the kernel has no
 * advice that undoes MADV_HUGEPAGE or MADV_NOHUGEPAGE. */
int la_apply_thp(void) {
  if (la_opt.thp != LA_THP_DEFAULT) {
    la_arenas_apply_thp(la_opt.thp);
    la_huge_apply_thp(la_opt.thp);
  }
  return 0;
}

int la_apply_metadata_thp(void) {
  la_meta_apply_thp();
  return 0;
}

int la_apply_background_thread(void) { return la_purger_enable(la_opt.background_thread); }

int la_apply_stats_interval_ms(void) {
  la_telemetry_kick();
  return 0;
}

/* ---- knobs as control values ----------------------------------------------- */

static enum ctl_type knob_ctl_type(const la_knob_t *k) {
  switch (k->type) {
  case LA_KNOB_BOOL: return CTL_BOOL;
  case LA_KNOB_INT:
  case LA_KNOB_BYTES: return CTL_SSIZE;
  case LA_KNOB_COUNT: return CTL_UNSIGNED;
  case LA_KNOB_ENUM:
  case LA_KNOB_PATH: return CTL_STRING;
  }
  return CTL_COMMAND;
}

static void knob_read(const la_knob_t *k, ctl_value_t *v) {
  const char *field = (const char *)&la_opt + k->offset;
  switch (k->type) {
  case LA_KNOB_BOOL: v->b = *(const bool *)field; return;
  case LA_KNOB_INT:
  case LA_KNOB_BYTES: v->ssize = *(const ssize_t *)field; return;
  case LA_KNOB_COUNT: v->u = *(const unsigned *)field; return;
  case LA_KNOB_ENUM: v->s = k->modes[*(const int *)field]; return;
  case LA_KNOB_PATH: v->s = field; return;   /* stable: the path is FIXED */
  }
}

/* The value as ALLOC_CONF text, so that a write is checked by the same
 * parser, with the same bounds, as the option at start-up. */
static bool knob_value_text(const la_knob_t *k, const ctl_value_t *v, char *out, size_t len) {
  int n = 0;
  switch (k->type) {
  case LA_KNOB_BOOL: n = snprintf(out, len, "%s", v->b ? "true" : "false"); break;
  case LA_KNOB_INT: n = snprintf(out, len, "%zd", v->ssize); break;
  case LA_KNOB_BYTES:
    if (v->ssize < 0 && -1 - v->ssize >= k->nmodes) return false;   /* no such word */
    la_knob_format_bytes(k, v->ssize, out, len);
    n = (int)strlen(out);
    break;
  case LA_KNOB_COUNT: n = snprintf(out, len, "%u", v->u); break;
  case LA_KNOB_ENUM:
  case LA_KNOB_PATH:
    if (!v->s) return false;
    n = snprintf(out, len, "%s", v->s);
    break;
  }
  return n >= 0 && (size_t)n < len;
}

/* Store a new value and apply it; an apply hook that refuses it leaves the
 * old value in force. */
static int knob_write(const la_knob_t *k, const ctl_value_t *v) {
  char text[LA_PATH_MAX], saved[LA_PATH_MAX];
  char *field = (char *)&la_opt + k->offset;
  if (k->change == LA_KNOB_FIXED) return EPERM;
  if (!knob_value_text(k, v, text, sizeof text)) return EINVAL;
  memcpy(saved, field, k->size);
  if (!la_knob_parse(&la_opt, k, text, strlen(text))) return EINVAL;
  int err = k->apply ? k->apply() : 0;
  if (err) memcpy(field, saved, k->size);
  return err;
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

/* Write the heap profile into the telemetry segment's profile area now
 * (alloc_shm.h); "prof.published" then reads its number, which is also
 * what the control area acknowledges as the effective value. */
static int run_prof_publish(const ctl_value_t *v) {
  (void)v;
  uint64_t n;
  return la_telemetry_publish_profile(&n);
}

static void read_prof_published(ctl_value_t *v) { v->u64 = la_prof_last_published(); }
static void read_prof_active(ctl_value_t *v) { v->b = atomic_load(&la_prof_sampling); }

/* Names follow jemalloc: opt.* are the knobs (not listed: every knob of
 * ALLOC_SHM_KNOBS is one, writable when it can change live); these are
 * jemalloc's live names for some of them. */
static const struct {
  const char *name, *knob;
} ctl_aliases[] = {
  {"arenas.dirty_decay_ms", "dirty_decay_ms"},
  {"arenas.muzzy_decay_ms", "muzzy_decay_ms"},
  {"background_thread", "background_thread"},
};

/* Every name that is not a knob. */
static const ctl_entry_t ctl_table[] = {
  {"version", CTL_STRING, read_version, NULL},
  {"epoch", CTL_U64, read_epoch, write_epoch},
  {"arenas.narenas", CTL_UNSIGNED, read_narenas, NULL},
  {"arenas.page", CTL_SIZE, read_page, NULL},
  {"arenas.nbins", CTL_UNSIGNED, read_nbins, NULL},
  {"arena.purge", CTL_COMMAND, NULL, run_purge},
  {"arena.decay", CTL_COMMAND, NULL, run_decay},
  {"thread.tcache.flush", CTL_COMMAND, NULL, run_tcache_flush},
  {"prof.publish", CTL_COMMAND, read_prof_published, run_prof_publish},
  {"prof.published", CTL_U64, read_prof_published, NULL},
  {"prof.active", CTL_BOOL, read_prof_active, NULL},
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
};

static const la_knob_t *find_knob(const char *name) {
  if (strncmp(name, "opt.", 4) == 0) return la_knob_find(name + 4, strlen(name + 4));
  for (size_t i = 0; i < sizeof ctl_aliases / sizeof ctl_aliases[0]; i++)
    if (strcmp(ctl_aliases[i].name, name) == 0) return la_knob_find(ctl_aliases[i].knob, strlen(ctl_aliases[i].knob));
  return NULL;
}

static const ctl_entry_t *find_entry(const char *name) {
  for (size_t i = 0; i < sizeof ctl_table / sizeof ctl_table[0]; i++)
    if (strcmp(ctl_table[i].name, name) == 0) return &ctl_table[i];
  return NULL;
}

/* What a name stands for: a knob (opt.<knob>, or an alias of one) or an
 * entry of ctl_table. */
typedef struct ctl_target_s {
  const char *name;           /* as asked for (messages name it) */
  enum ctl_type type;
  const la_knob_t *knob;      /* a knob, or NULL */
  const ctl_entry_t *entry;   /* when not a knob */
} ctl_target_t;

static bool resolve(const char *name, ctl_target_t *t) {
  const la_knob_t *k = find_knob(name);
  const ctl_entry_t *e = k ? NULL : find_entry(name);
  if (!k && !e) return false;
  *t = (ctl_target_t){.name = name, .knob = k, .entry = k ? NULL : e,
                      .type = k ? knob_ctl_type(k) : e->type};
  return true;
}

static bool target_readable(const ctl_target_t *t) {
  return t->knob || (t->entry->read && t->type != CTL_COMMAND);
}

static bool target_writable(const ctl_target_t *t) {
  return t->knob ? t->knob->change != LA_KNOB_FIXED : t->entry->write != NULL;
}

static void target_read(const ctl_target_t *t, ctl_value_t *v) {
  if (t->knob) knob_read(t->knob, v);
  else t->entry->read(v);
}

static int target_write(const ctl_target_t *t, const ctl_value_t *v) {
  return t->knob ? knob_write(t->knob, v) : t->entry->write(v);
}

static int run_command(const ctl_target_t *t, void *oldp, size_t *oldlenp, void *newp, size_t newlen) {
  if (oldp || oldlenp || newp || newlen) return EPERM;   /* commands take no value */
  return t->entry->write(NULL);
}

static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;

/* fork(): taken first of the allocator's locks (init.c), since its holder
 * applies knobs to every pool under it: the child never sees a change
 * half-applied, nor inherits the lock held. */
void la_ctl_fork_prepare(void) { pthread_mutex_lock(&ctl_lock); }
void la_ctl_fork_parent(void) { pthread_mutex_unlock(&ctl_lock); }
void la_ctl_fork_child(void) { pthread_mutex_init(&ctl_lock, NULL); }

LA_EXPORT int alloc_ctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen) {
  if (!name) return ENOENT;
  la_ensure_init();
  ctl_target_t t;
  if (!resolve(name, &t)) return ENOENT;
  if (t.type == CTL_COMMAND) return run_command(&t, oldp, oldlenp, newp, newlen);
  size_t size = type_size(t.type);
  if (newp && !target_writable(&t)) return EPERM;
  if (newp && newlen != size) return EINVAL;
  if (oldp) {
    if (!oldlenp || *oldlenp != size) return EINVAL;
    if (!target_readable(&t)) return EPERM;
  }
  ctl_value_t before = {0};
  pthread_mutex_lock(&ctl_lock);
  if (oldp) target_read(&t, &before);
  int err = 0;
  if (newp) {
    ctl_value_t v;
    memcpy(&v, newp, size);
    err = target_write(&t, &v);
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
/* A BYTES knob's text ("512M", "cgroup") as its alloc_ctl value. */
static bool bytes_text(const la_knob_t *k, const char *text, ctl_value_t *v) {
  la_options_t o;
  memcpy((char *)&o + k->offset, (const char *)&la_opt + k->offset, k->size);
  if (!la_knob_parse(&o, k, text, strlen(text))) return false;
  memcpy(&v->ssize, (const char *)&o + k->offset, sizeof v->ssize);
  return true;
}

int la_ctl_apply_text(const char *name, const char *value, char *effective, size_t efflen, char *msg,
                      size_t msglen) {
  char full[64];
  ctl_target_t t;
  bool found = false;
  effective[0] = 0;
  if (!strchr(name, '.') && snprintf(full, sizeof full, "opt.%s", name) < (int)sizeof full)
    found = resolve(full, &t);
  if (!found && !resolve(name, &t)) {
    snprintf(msg, msglen, "unknown knob '%s'", name);
    return ENOENT;
  }
  if (!target_writable(&t)) {
    snprintf(msg, msglen, "%s cannot be changed while the process runs", t.name);
    return EPERM;
  }
  ctl_value_t v = {0};
  int err = 0;
  bool bytes = t.knob && t.knob->type == LA_KNOB_BYTES;   /* "512M", "cgroup": the knob's own syntax */
  la_ensure_init();
  pthread_mutex_lock(&ctl_lock);
  if (!(bytes ? bytes_text(t.knob, value, &v) : parse_text(t.type, value, &v))) err = EINVAL;
  else err = target_write(&t, t.type == CTL_COMMAND ? NULL : &v);
  if (t.type != CTL_COMMAND && target_readable(&t)) {   /* the value in force afterwards, changed or not */
    ctl_value_t now = {0};
    target_read(&t, &now);
    if (bytes) la_knob_format_bytes(t.knob, now.ssize, effective, efflen);
    else format_text(t.type, &now, effective, efflen);
  } else if (t.type == CTL_COMMAND && !err && t.entry->read) {   /* a command's result (prof.publish: its number) */
    ctl_value_t now = {0};
    t.entry->read(&now);
    format_text(CTL_U64, &now, effective, efflen);
  }
  pthread_mutex_unlock(&ctl_lock);
  if (err == EINVAL && t.type == CTL_COMMAND) snprintf(msg, msglen, "%s takes no value", t.name);
  else if (err == EINVAL) snprintf(msg, msglen, "invalid value '%s' for %s", value, t.name);
  else if (err) snprintf(msg, msglen, "%s failed: error %d", t.name, err);
  else snprintf(msg, msglen, "ok");
  return err;
}
