/* advice.c - replaying a process's recorded history under other decay
 * times (advice.h).
 *
 * The model.  Between two snapshots the process freed some memory into its
 * dirty pages and reused some of them; what it purged it counted in
 * `purged`.  Only the difference is seen: net = delta(dirty) + delta(purged)
 * is memory freed (net > 0) or reused (net < 0) over the interval.  That
 * flow is what the program did, whatever the decay time, so it is replayed
 * against a pool of dirty pages that decays the way liballoc's does
 * (decay.c: the pages that entered `age` ago count with weight
 * 1 - smoothstep(age / decay time), and what the pool holds beyond that
 * weighted sum is purged).  Each interval is cut into SUBSTEPS, the flow
 * spread evenly over them.  Reuse the pool cannot serve (its pages were
 * purged) is memory faulted in again.
 * The results are time averages over the window: dirty bytes (the
 * resident cost), purged bytes and madvise calls per second (the calls
 * from the bytes one call returned in the window, as recorded when the
 * window purged enough to tell, else DEFAULT_BYTES_PER_CALL), and
 * re-faulted bytes per second.
 *
 * What it leaves out: frees and reuse within one interval cancel out (a
 * finer stats_interval_ms sees more), muzzy pages (the model is for
 * muzzy_decay_ms 0, the default: otherwise a warning says so), and changes
 * of the decay time within the window (the current one is assumed).  So
 * each answer carries the model's replay of the current setting next to
 * what was recorded, and the changes are given against the former, where
 * most of the model's error cancels. */
#include "advice.h"

#include "snapshot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SUBSTEPS 8
#define CHUNKS 512            /* pool entries; the two oldest merge when full */
#define MAX_SAMPLES 4000      /* more are thinned (counters and gauges keep their values) */
#define DEFAULT_BYTES_PER_CALL (512.0 * 1024)   /* liballoc's purges under steady decay, measured */
#define CALIBRATION_BYTES (16.0 * 1048576)       /* purged in the window before its bytes per call are used */

/* The dirty pages, as liballoc's decay sees them (decay.c): how many
 * there are, and a backlog of what entered when.  Purges and reuse lower
 * the count, never the backlog, which only ages. */
typedef struct chunk_s {
  double t, entered;
} chunk_t;

typedef struct pool_s {
  chunk_t c[CHUNKS];   /* oldest first */
  size_t n;
  double total;
} pool_t;

static void pool_add(pool_t *p, double t, double bytes) {
  if (bytes <= 0) return;
  if (p->n == CHUNKS) {   /* merge the two oldest, at the younger one's time: they decay no earlier */
    p->c[1].entered += p->c[0].entered;
    memmove(p->c, p->c + 1, (CHUNKS - 1) * sizeof p->c[0]);
    p->n--;
  }
  p->c[p->n++] = (chunk_t){t, bytes};
  p->total += bytes;
}

/* Reuse: take bytes from the pool; what it did not have.  The backlog
 * stays as it was, as in decay.c, where pages reused and freed again enter
 * the backlog anew: a program that reuses its dirty pages as fast as it
 * frees them raises the limit with every wave and is purged of nothing. */
static double pool_take(pool_t *p, double bytes) {
  double take = p->total < bytes ? p->total : bytes;
  p->total -= take;
  return bytes - take;
}

static double keep(double x) { return x >= 1 ? 0 : x <= 0 ? 1 : 1 - (3 * x * x - 2 * x * x * x); }

/* Purge down to the decay limit at `now`; what was purged. */
static double pool_decay(pool_t *p, double now, int64_t ms) {
  if (ms < 0) return 0;
  double limit = 0;
  size_t gone = 0;
  for (size_t i = 0; ms > 0 && i < p->n; i++) {
    double x = (now - p->c[i].t) * 1000.0 / (double)ms;
    if (x >= 1 && gone == i) gone++;   /* aged out: weight 0 from now on */
    limit += p->c[i].entered * keep(x);
  }
  memmove(p->c, p->c + gone, (p->n - gone) * sizeof p->c[0]);
  p->n = ms > 0 ? p->n - gone : 0;
  double purged = p->total > limit ? p->total - limit : 0;
  p->total -= purged;
  return purged;
}

void advice_replay(const advice_sample_t *s, size_t n, int64_t ms, double bytes_per_madvise, advice_result_t *out) {
  *out = (advice_result_t){0};
  if (n < 2 || s[n - 1].t <= s[0].t) return;
  pool_t *p = calloc(1, sizeof *p);
  if (!p) return;
  pool_add(p, s[0].t, s[0].dirty);   /* what was dirty when the window opened, as if just freed */
  double area = 0, purged = 0, refault = 0;
  for (size_t i = 1; i < n; i++) {
    double dt = s[i].t - s[i - 1].t;
    if (dt <= 0) continue;
    double net = (s[i].dirty - s[i - 1].dirty) + (s[i].purged - s[i - 1].purged);
    for (int k = 1; k <= SUBSTEPS; k++) {
      double now = s[i - 1].t + dt * k / SUBSTEPS;
      if (net > 0) pool_add(p, now, net / SUBSTEPS);
      else refault += pool_take(p, -net / SUBSTEPS);
      purged += pool_decay(p, now, ms);
      area += p->total * dt / SUBSTEPS;
    }
  }
  double span = s[n - 1].t - s[0].t;
  out->dirty_mean = area / span;
  out->purged_per_s = purged / span;
  out->madvise_per_s = purged / (bytes_per_madvise > 0 ? bytes_per_madvise : DEFAULT_BYTES_PER_CALL) / span;
  out->refault_per_s = refault / span;
  free(p);
}

/* ---- from the database ---------------------------------------------------------- */

/* A metric's points [t, v] (raw) or [t, avg, min, max, last] (rollups). */
static json_t *points_of(store_t *st, int64_t process_id, const char *metric, int64_t from_ms, int64_t to_ms) {
  history_query_t q = {metric, NULL, from_ms, to_ms, 0};
  json_t *h = store_history_json(st, process_id, &q);
  json_t *pts = json_incref(json_object_get(h, "points"));
  json_decref(h);
  return pts;
}

/* Value of a point: a gauge's average, a counter's last. */
static double value_of(json_t *pt, bool counter) {
  size_t cols = json_array_size(pt);
  return json_number_value(json_array_get(pt, cols == 2 ? 1 : counter ? 4 : 1));
}

static advice_sample_t *load(store_t *st, int64_t process_id, int64_t from_ms, int64_t to_ms, size_t *n) {
  json_t *d = points_of(st, process_id, "dirty", from_ms, to_ms), *p = points_of(st, process_id, "purged", from_ms, to_ms),
         *m = points_of(st, process_id, "nmadvise", from_ms, to_ms);
  size_t count = json_array_size(d);
  if (json_array_size(p) < count) count = json_array_size(p);
  if (json_array_size(m) < count) count = json_array_size(m);
  size_t stride = count > MAX_SAMPLES ? (count + MAX_SAMPLES - 1) / MAX_SAMPLES : 1;
  advice_sample_t *s = calloc(count / stride + 2, sizeof *s);
  *n = 0;
  for (size_t i = 0; s && i < count; i += stride) {
    if (i + stride >= count) i = count - 1;   /* always the last one */
    json_t *pd = json_array_get(d, i);
    s[(*n)++] = (advice_sample_t){json_number_value(json_array_get(pd, 0)), value_of(pd, false),
                                  value_of(json_array_get(p, i), true), value_of(json_array_get(m, i), true)};
  }
  json_decref(d);
  json_decref(p);
  json_decref(m);
  return s;
}

static json_t *result_json(const advice_result_t *r) {
  return json_pack("{s:f, s:f, s:f, s:f}", "dirty_mean_bytes", r->dirty_mean, "purged_bytes_per_s", r->purged_per_s,
                   "madvise_per_s", r->madvise_per_s, "refault_bytes_per_s", r->refault_per_s);
}

json_t *advice_json(store_t *st, int64_t process_id, int64_t current_ms, int64_t muzzy_ms, int64_t from_ms,
                    int64_t to_ms, const int64_t *candidates, size_t ncandidates, const char **why) {
  size_t n;
  advice_sample_t *s = load(st, process_id, from_ms, to_ms, &n);
  if (!s || n < 10 || s[n - 1].t - s[0].t < 5) {
    free(s);
    *why = "not enough history in the window yet (at least 10 snapshots over 5 s)";
    return NULL;
  }
  double span = s[n - 1].t - s[0].t, purged = s[n - 1].purged - s[0].purged, calls = s[n - 1].nmadvise - s[0].nmadvise;
  double per_call = calls > 0 && purged >= CALIBRATION_BYTES ? purged / calls : DEFAULT_BYTES_PER_CALL, area = 0;
  for (size_t i = 1; i < n; i++) area += (s[i].dirty + s[i - 1].dirty) / 2 * (s[i].t - s[i - 1].t);
  advice_result_t observed = {area / span, purged / span, calls / span, 0}, model;
  advice_replay(s, n, current_ms, per_call, &model);
  json_t *current = json_pack("{s:I, s:o, s:o}", "dirty_decay_ms", (json_int_t)current_ms, "observed",
                              result_json(&observed), "model", result_json(&model));
  json_object_del(json_object_get(current, "observed"), "refault_bytes_per_s");   /* not recorded */
  json_t *settings = json_array();
  for (size_t i = 0; i < ncandidates; i++) {
    advice_result_t r;
    advice_replay(s, n, candidates[i], per_call, &r);
    json_t *o = result_json(&r);
    json_object_set_new(o, "dirty_decay_ms", json_integer((json_int_t)candidates[i]));
    json_object_set_new(o, "resident_change_bytes", json_real(r.dirty_mean - model.dirty_mean));
    json_object_set_new(o, "madvise_per_s_change", json_real(r.madvise_per_s - model.madvise_per_s));
    json_object_set_new(o, "refault_bytes_per_s_change", json_real(r.refault_per_s - model.refault_per_s));
    json_array_append_new(settings, o);
  }
  json_t *warnings = json_array();
  if (muzzy_ms != 0)
    json_array_append_new(warnings, json_string("muzzy_decay_ms is not 0: the model counts only the dirty stage"));
  if (span < 600)
    json_array_append_new(warnings, json_string("less than 10 minutes of history: the estimate reflects that much"));
  json_t *out = json_pack("{s:f, s:f, s:I, s:f, s:o, s:o, s:o}", "from", s[0].t, "to", s[n - 1].t, "samples",
                          (json_int_t)n, "bytes_per_madvise", per_call, "current", current, "settings", settings,
                          "warnings", warnings);
  free(s);
  return out;
}
