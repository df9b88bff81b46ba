/* rollup.c - periodic aggregates of the metrics, for the 1-minute and
 * 1-hour tables.  Computed from the snapshots the collector reads anyway,
 * so the database never has to scan raw samples to build them. */
#include "rollup.h"

#include <string.h>

void rollup_init(rollup_t *r, int64_t period_ms) {
  memset(r, 0, sizeof *r);
  r->period_ms = period_ms;
}

bool rollup_add(rollup_t *r, int64_t t_ms, const double v[SNAP_NMETRICS], rollup_t *done) {
  int64_t start = t_ms - t_ms % r->period_ms;
  bool finished = r->n > 0 && start != r->start_ms;
  if (finished) {
    *done = *r;
    r->n = 0;
  }
  if (r->n == 0) {
    r->start_ms = start;
    memcpy(r->min, v, sizeof r->min);
    memcpy(r->max, v, sizeof r->max);
    memset(r->sum, 0, sizeof r->sum);
  }
  for (int i = 0; i < SNAP_NMETRICS; i++) {
    if (v[i] < r->min[i]) r->min[i] = v[i];
    if (v[i] > r->max[i]) r->max[i] = v[i];
    r->sum[i] += v[i];
  }
  memcpy(r->last, v, sizeof r->last);
  r->n++;
  return finished;
}

char *rollup_json(const rollup_t *r) {
  json_t *o = json_object();
  for (int i = 0; i < SNAP_NMETRICS; i++)
    json_object_set_new(o, snap_metrics[i].name,
                        json_pack("[f, f, f, f]", r->min[i], r->max[i], r->sum[i] / r->n, r->last[i]));
  char *text = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return text;
}
