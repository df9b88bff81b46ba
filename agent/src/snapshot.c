/* snapshot.c - naming the numbers of a telemetry snapshot.  Everything here
 * is generated from alloc_shm.h's X-macro lists, so a statistic added there
 * appears in the history, the API and /metrics without other changes. */
#include "snapshot.h"

#include <stdio.h>
#include <string.h>

const metric_info_t snap_metrics[SNAP_NMETRICS] = {
  ALLOC_SHM_STATS(METRIC_INFO)
#define X(name, help) {#name, METRIC_TYPE_GAUGE, METRIC_UNIT_RATIO, help},
  ALLOC_SHM_DERIVED(X)
#undef X
};

const metric_set_t snap_set = {snap_metrics, SNAP_NMETRICS};

int metric_set_index(const metric_set_t *set, const char *name) {
  for (int i = 0; i < set->n; i++)
    if (strcmp(set->info[i].name, name) == 0) return i;
  return -1;
}

int snap_metric_index(const char *name) { return metric_set_index(&snap_set, name); }

void snap_metric_values(const alloc_shm_snapshot_t *s, double out[SNAP_NMETRICS]) {
  int i = 0;
#define X(name, ...) out[i++] = (double)s->stats.name;
  ALLOC_SHM_STATS(X)
#undef X
  alloc_shm_derived_t d;
  alloc_shm_derive(&s->stats, &d);
#define X(name, help) out[i++] = d.name;
  ALLOC_SHM_DERIVED(X)
#undef X
}

json_t *snap_metrics_json(const alloc_shm_snapshot_t *s) {
  double v[SNAP_NMETRICS];
  snap_metric_values(s, v);
  json_t *o = json_object();
  for (int i = 0; i < SNAP_NMETRICS; i++) {
    if (i < SNAP_NSTATS) json_object_set_new(o, snap_metrics[i].name, json_integer((json_int_t)v[i]));
    else json_object_set_new(o, snap_metrics[i].name, json_real(v[i]));
  }
  return o;
}

static json_t *config_value(const char *knob, const char *kind, int64_t v) {
  if (strcmp(kind, "BOOL") == 0) return json_boolean(v);
  if (strcmp(kind, "ENUM") == 0) {
    const char *name = alloc_shm_enum_name(knob, v);
    return name ? json_string(name) : json_integer(v);
  }
  if (strcmp(kind, "BYTES") == 0 && alloc_shm_bytes_word(knob, v)) return json_string(alloc_shm_bytes_word(knob, v));
  return json_integer(v);
}

json_t *snap_config_json(const alloc_shm_config_t *c) {
  json_t *o = json_object();
#define X(name, kind, help) json_object_set_new(o, #name, config_value(#name, #kind, c->name));
  ALLOC_SHM_CONFIG(X)
#undef X
  return o;
}

bool snap_config_knob(const char *knob, const char **kind) {
#define X(name, k, help)                                                                         \
  if (strcmp(knob, #name) == 0) {                                                                \
    if (kind) *kind = #k;                                                                        \
    return true;                                                                                 \
  }
  ALLOC_SHM_CONFIG(X)
#undef X
  return false;
}

bool snap_config_text(const alloc_shm_config_t *c, const char *knob, char *out, size_t size) {
#define X(name, kind, help)                                                                      \
  if (strcmp(knob, #name) == 0) {                                                                \
    json_t *v = config_value(#name, #kind, c->name);                                             \
    if (json_is_string(v)) snprintf(out, size, "%s", json_string_value(v));                      \
    else if (json_is_boolean(v)) snprintf(out, size, "%s", json_is_true(v) ? "true" : "false");  \
    else snprintf(out, size, "%lld", (long long)c->name);                                        \
    json_decref(v);                                                                              \
    return true;                                                                                 \
  }
  ALLOC_SHM_CONFIG(X)
#undef X
  return false;
}

json_t *snap_classes_json(const alloc_shm_snapshot_t *s) {
  json_t *a = json_array();
  uint64_t n = s->nclasses < ALLOC_SHM_MAX_CLASSES ? s->nclasses : ALLOC_SHM_MAX_CLASSES;
  for (uint64_t i = 0; i < n; i++) {
    const alloc_shm_class_t *k = &s->classes[i];
    if (!k->slabs && !k->nmalloc) continue;
    json_t *o = json_object();
#define X(name, help) json_object_set_new(o, #name, json_integer((json_int_t)k->name));
    ALLOC_SHM_CLASS(X)
#undef X
    json_object_set_new(o, "utilisation", json_real(alloc_shm_ratio(k->live, k->slabs * k->blocks_per_slab)));
    json_array_append_new(a, o);
  }
  return a;
}

json_t *snap_full_json(const alloc_shm_snapshot_t *s) {
  return json_pack("{s:I, s:f, s:o, s:o, s:o}", "number", (json_int_t)s->number, "time",
                   (double)s->time_ns / 1e9, "stats", snap_metrics_json(s), "config",
                   snap_config_json(&s->config), "classes", snap_classes_json(s));
}
