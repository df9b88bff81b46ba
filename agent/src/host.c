/* host.c - the host's series, summed from the live processes' newest
 * snapshots (host.h).  Bounded work per tick: one pass over the processes
 * and a sort of them by executable; at most HOST_EXES executables get a
 * series of their own, so the rows written per tick do not grow with the
 * number of distinct programs a user can start. */
#include "host.h"

#include "pack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const metric_info_t host_metrics[HOST_NMETRICS] = {HOST_METRICS(METRIC_INFO)};
const metric_set_t host_set = {host_metrics, HOST_NMETRICS};

void host_add(host_sum_t *sum, const alloc_shm_stats_t *s) {
  sum->v[HOST_allocated] += (double)s->allocated;
  sum->v[HOST_active] += (double)s->active;
  sum->v[HOST_resident] += (double)s->resident;
  sum->v[HOST_kernel_rss] += (double)s->kernel_rss;
  /* resident is an estimate that may lag allocated by a moment: a process
   * never wastes less than nothing */
  sum->v[HOST_wasted] += s->resident > s->allocated ? (double)(s->resident - s->allocated) : 0;
  sum->v[HOST_processes] += 1;
}

void host_merge(host_sum_t *into, const host_sum_t *from) {
  for (int i = 0; i < HOST_NMETRICS; i++) into->v[i] += from->v[i];
}

void host_finish(host_sum_t *sum) {
  double active = sum->v[HOST_active];
  sum->v[HOST_fragmentation] = active > 0 ? 1 - sum->v[HOST_allocated] / active : 0;
}

typedef struct proc_ref_s {
  const alloc_shm_snapshot_t *snap;
  const char *exe;
} proc_ref_t;

static int by_exe(const void *a, const void *b) {
  return strcmp(((const proc_ref_t *)a)->exe, ((const proc_ref_t *)b)->exe);
}

static int by_wasted_desc(const void *a, const void *b) {
  double x = ((const host_sum_t *)a)->v[HOST_wasted], y = ((const host_sum_t *)b)->v[HOST_wasted];
  return x < y ? 1 : x > y ? -1 : strcmp(((const host_sum_t *)a)->key, ((const host_sum_t *)b)->key);
}

/* One sum per distinct executable, into groups (n of them at most). */
static size_t group_by_exe(proc_ref_t *refs, size_t n, host_sum_t *groups) {
  qsort(refs, n, sizeof *refs, by_exe);
  size_t ng = 0;
  for (size_t i = 0; i < n; i++) {
    if (i == 0 || strcmp(refs[i].exe, refs[i - 1].exe) != 0) {
      memset(&groups[ng], 0, sizeof groups[ng]);
      snprintf(groups[ng].key, sizeof groups[ng].key, HOST_SERIES_EXE "%s", refs[i].exe);
      ng++;
    }
    host_add(&groups[ng - 1], &refs[i].snap->stats);
  }
  return ng;
}

size_t host_sums(const alloc_shm_snapshot_t *const *snaps, const char *const *exes, size_t n, host_sum_t *out) {
  host_sum_t *host = &out[0];
  memset(host, 0, sizeof *host);
  snprintf(host->key, sizeof host->key, HOST_SERIES_HOST);
  proc_ref_t *refs = malloc((n ? n : 1) * sizeof *refs);
  host_sum_t *groups = malloc((n ? n : 1) * sizeof *groups);
  size_t count = 1;
  if (refs && groups) {
    for (size_t i = 0; i < n; i++) refs[i] = (proc_ref_t){snaps[i], exes[i]};
    size_t ng = group_by_exe(refs, n, groups);
    qsort(groups, ng, sizeof *groups, by_wasted_desc);
    host_sum_t other = {.key = HOST_SERIES_OTHER};
    for (size_t g = 0; g < ng; g++) {
      host_merge(host, &groups[g]);
      if (g < HOST_EXES) out[count++] = groups[g];
      else host_merge(&other, &groups[g]);
    }
    if (ng > HOST_EXES) out[count++] = other;
  } else {   /* out of memory: the host's total at least */
    for (size_t i = 0; i < n; i++) host_add(host, &snaps[i]->stats);
  }
  for (size_t i = 0; i < count; i++) host_finish(&out[i]);
  free(refs);
  free(groups);
  return count;
}

size_t host_add_classes(host_class_t *cls, size_t ncls, size_t max, const alloc_shm_snapshot_t *s) {
  uint64_t n = s->nclasses < ALLOC_SHM_MAX_CLASSES ? s->nclasses : ALLOC_SHM_MAX_CLASSES;
  size_t next = 0;   /* where the next class likely is: every liballoc lists its classes by size */
  for (uint64_t i = 0; i < n; i++) {
    const alloc_shm_class_t *k = &s->classes[i];
    if (!k->slabs) continue;
    /* the totals are kept by size too, so a search from the last match
     * finds it at once, not after half of them (1000 processes x 69
     * classes a tick); a segment in another order costs the full search */
    size_t at = next < ncls && cls[next].size == k->size ? next : 0;
    while (at < ncls && cls[at].size != k->size) at++;
    if (at == ncls) {
      if (ncls == max) continue;   /* sizes beyond any liballoc's classes: a hostile segment */
      cls[ncls++] = (host_class_t){.size = k->size};
    }
    next = at + 1;
    uint64_t capacity = k->slabs * k->blocks_per_slab;
    cls[at].live_blocks += k->live;
    cls[at].capacity_blocks += capacity;
    cls[at].slab_bytes += k->slabs * k->slab_bytes;
    cls[at].free_bytes += capacity > k->live ? (capacity - k->live) * k->size : 0;
  }
  return ncls;
}

static int by_size(const void *a, const void *b) {
  uint64_t x = ((const host_class_t *)a)->size, y = ((const host_class_t *)b)->size;
  return x < y ? -1 : x > y;
}

void host_sort_classes(host_class_t *cls, size_t n) { qsort(cls, n, sizeof *cls, by_size); }

size_t host_pack_classes(const alloc_shm_snapshot_t *s, uint8_t *out) {
  double v[1 + HOST_NCLASS_FIELDS * ALLOC_SHM_MAX_CLASSES];
  uint64_t n = s->nclasses < ALLOC_SHM_MAX_CLASSES ? s->nclasses : ALLOC_SHM_MAX_CLASSES;
  int count = 1;
  for (uint64_t i = 0; i < n; i++) {
    const alloc_shm_class_t *k = &s->classes[i];
    if (!k->slabs) continue;
#define X(field) v[count++] = (double)k->field;
    HOST_CLASS_FIELDS(X)
#undef X
  }
  v[0] = (count - 1) / HOST_NCLASS_FIELDS;
  return pack_values(v, count, NULL, out);
}
