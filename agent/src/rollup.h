/* rollup.h - min, max, average and last of every metric over a period
 * (a minute, an hour), accumulated in memory as snapshots arrive; for a
 * process's metrics or the host's (a metric_set_t, snapshot.h). */
#ifndef ALLOCD_ROLLUP_H
#define ALLOCD_ROLLUP_H

#include "pack.h"
#include "snapshot.h"

#include <stdint.h>

typedef struct rollup_s {
  const metric_set_t *set;   /* whose metrics: the arrays' first set->n count */
  int64_t period_ms;   /* 60000 or 3600000 */
  int64_t start_ms;    /* start of the period being accumulated */
  int n;               /* snapshots in it */
  double min[SNAP_NMETRICS], max[SNAP_NMETRICS], sum[SNAP_NMETRICS], last[SNAP_NMETRICS];
} rollup_t;

void rollup_init(rollup_t *r, int64_t period_ms);   /* a process's metrics (snap_set) */
void rollup_init_set(rollup_t *r, int64_t period_ms, const metric_set_t *set);
/* Add a sample of r->set->n values.  True when it starts a new period: the
 * finished one is left in *done (to be written) before the sample is added. */
bool rollup_add(rollup_t *r, int64_t t_ms, const double *v, rollup_t *done);
/* Fold `older` (the same period's earlier snapshots) into r: counts and
 * sums add, extremes widen, r's last value stays.  A metric `older` lacks
 * (NaN: written by an allocd without it) keeps r's values. */
void rollup_merge(rollup_t *r, const rollup_t *older);
/* The packed row of the history tables (pack.h): every metric's last
 * value, then the minima, maxima and averages relative to it.  Averages of
 * byte and count metrics are rounded to whole units. */
#define ROLLUP_PACK_MAX (4 * SNAP_NMETRICS * PACK_MAX)
size_t rollup_pack(const rollup_t *r, uint8_t *out);

#endif
