/* host.h - the host's own series: what the collector sums over the live
 * processes each tick (allocated, resident, kernel RSS, wasted bytes,
 * fragmentation, number of processes), for the host as a whole and for
 * each executable, and the per-size-class totals /metrics exports. */
#ifndef ALLOCD_HOST_H
#define ALLOCD_HOST_H

#include "snapshot.h"

#include <alloc_shm.h>
#include <stddef.h>
#include <stdint.h>

/* X(name, type, unit, help): the host series' metrics, in stored order. */
#define HOST_METRICS(X)                                                                                  \
  X(allocated, GAUGE, BYTES, "Sum of allocated over the live processes")                                 \
  X(active, GAUGE, BYTES, "Sum of active over the live processes")                                       \
  X(resident, GAUGE, BYTES, "Sum of the allocators' resident estimate over the live processes")          \
  X(kernel_rss, GAUGE, BYTES, "Sum of the kernel's RSS over the live processes")                         \
  X(wasted, GAUGE, BYTES, "Free but resident: sum of resident - allocated over the live processes")      \
  X(fragmentation, GAUGE, RATIO, "1 - allocated/active over the live processes")                         \
  X(processes, GAUGE, COUNT, "Live processes that published a snapshot")

enum host_metric {
#define X(name, ...) HOST_##name,
  HOST_METRICS(X)
#undef X
  HOST_NMETRICS
};

extern const metric_set_t host_set;

/* Series keys: the whole host, one executable ("exe:" + path), and the
 * executables beyond the HOST_EXES with the most wasted bytes, together. */
#define HOST_SERIES_HOST "host"
#define HOST_SERIES_EXE "exe:"
#define HOST_SERIES_OTHER "other"
/* The executable of processes whose path the kernel would not give: their
 * segments' claims are not trusted to put them in another program's series. */
#define HOST_EXE_UNVERIFIED "(unverified)"
#define HOST_EXES 16
#define HOST_KEY_MAX 272   /* "exe:" + a 256-byte path */

/* One series' sums over a tick: add every process, then finish. */
typedef struct host_sum_s {
  char key[HOST_KEY_MAX];
  double v[HOST_NMETRICS];
} host_sum_t;

void host_add(host_sum_t *sum, const alloc_shm_stats_t *s);
void host_finish(host_sum_t *sum);   /* the ratio, once the sums are in */
void host_merge(host_sum_t *into, const host_sum_t *from);   /* before finishing */

/* A snapshot's processes -> the host's sum and one sum per executable,
 * HOST_EXES of them at most (those wasting most) plus "other": out holds
 * HOST_EXES + 2; returns how many were written.  exes[i] is snaps[i]'s
 * executable.  O(n log n) in the processes. */
size_t host_sums(const alloc_shm_snapshot_t *const *snaps, const char *const *exes, size_t n, host_sum_t *out);

/* Per size class, over the live processes (for /metrics), X(field, help):
 * /metrics exports each as liballoc_host_class_<field>{size="..."}. */
#define HOST_CLASS_TOTALS(X)                                                                             \
  X(live_blocks, "Blocks handed out and not freed in this size class, over the live processes")          \
  X(capacity_blocks, "Blocks the slabs of this size class hold, over the live processes")                \
  X(slab_bytes, "Bytes the slabs of this size class pin, over the live processes")                       \
  X(free_bytes, "Bytes of free blocks in the slabs of this size class, over the live processes")

typedef struct host_class_s {
  uint64_t size;
#define X(field, help) uint64_t field;
  HOST_CLASS_TOTALS(X)
#undef X
} host_class_t;

/* Add a snapshot's classes into cls (nclasses of them, by size); returns the new count. */
size_t host_add_classes(host_class_t *cls, size_t ncls, size_t max, const alloc_shm_snapshot_t *s);
void host_sort_classes(host_class_t *cls, size_t n);   /* by size */

/* A snapshot's classes in use, packed (pack.h) for the class history:
 * their count, then per class HOST_CLASS_FIELDS. */
#define HOST_CLASS_FIELDS(X) X(size) X(slab_bytes) X(blocks_per_slab) X(slabs) X(live)
#define HOST_NCLASS_FIELDS (0 HOST_CLASS_FIELDS(ALLOC_SHM_COUNT_ONE))
#define HOST_CLASSES_PACK_MAX ((1 + HOST_NCLASS_FIELDS * ALLOC_SHM_MAX_CLASSES) * 10)
size_t host_pack_classes(const alloc_shm_snapshot_t *s, uint8_t *out);

#endif
