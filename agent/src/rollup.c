/* rollup.c - periodic aggregates of the metrics, for the 1-minute and
 * 1-hour tables.  Computed from the snapshots the collector reads anyway,
 * so the database never has to scan raw samples to build them. */
#include "rollup.h"

#include <math.h>
#include <string.h>

void rollup_init_set(rollup_t *r, int64_t period_ms, const metric_set_t *set) {
  memset(r, 0, sizeof *r);
  r->set = set;
  r->period_ms = period_ms;
}

void rollup_init(rollup_t *r, int64_t period_ms) { rollup_init_set(r, period_ms, &snap_set); }

bool rollup_add(rollup_t *r, int64_t t_ms, const double *v, rollup_t *done) {
  int64_t start = t_ms - t_ms % r->period_ms;
  bool finished = r->n > 0 && start != r->start_ms;
  if (finished) {
    *done = *r;
    r->n = 0;
  }
  if (r->n == 0) {
    r->start_ms = start;
    memcpy(r->min, v, r->set->n * sizeof *v);
    memcpy(r->max, v, r->set->n * sizeof *v);
    memset(r->sum, 0, sizeof r->sum);
  }
  for (int i = 0; i < r->set->n; i++) {
    if (v[i] < r->min[i]) r->min[i] = v[i];
    if (v[i] > r->max[i]) r->max[i] = v[i];
    r->sum[i] += v[i];
  }
  memcpy(r->last, v, r->set->n * sizeof *v);
  r->n++;
  return finished;
}

void rollup_merge(rollup_t *r, const rollup_t *older) {
  if (older->n == 0) return;
  int n = r->n + older->n;
  for (int i = 0; i < r->set->n; i++) {
    if (isnan(older->sum[i]) || isnan(older->min[i]) || isnan(older->max[i])) {
      r->sum[i] = r->n ? r->sum[i] / r->n * n : older->sum[i];   /* r's average over the whole count */
      continue;
    }
    if (r->n == 0 || older->min[i] < r->min[i]) r->min[i] = older->min[i];
    if (r->n == 0 || older->max[i] > r->max[i]) r->max[i] = older->max[i];
    r->sum[i] += older->sum[i];
    if (r->n == 0) r->last[i] = older->last[i];
  }
  r->n = n;
}

size_t rollup_pack(const rollup_t *r, uint8_t *out) {
  double avg[SNAP_NMETRICS];
  int n = r->set->n;
  for (int i = 0; i < n; i++) {
    avg[i] = r->n ? r->sum[i] / r->n : 0;
    if (strcmp(r->set->info[i].unit, METRIC_UNIT_RATIO) != 0) avg[i] = round(avg[i]);
  }
  size_t len = pack_values(r->last, n, NULL, out);
  len += pack_values(r->min, n, r->last, out + len);
  len += pack_values(r->max, n, r->last, out + len);
  return len + pack_values(avg, n, r->last, out + len);
}
