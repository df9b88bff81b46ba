/* snapshot.h - a telemetry snapshot's numbers by name, and as JSON.
 * The names and their order come from alloc_shm.h's lists: the statistics,
 * then the derived ratios, form the "metrics" the history keeps. */
#ifndef ALLOCD_SNAPSHOT_H
#define ALLOCD_SNAPSHOT_H

#include <alloc_shm.h>
#include <jansson.h>
#include <stdbool.h>

#define SNAP_NSTATS   ALLOC_SHM_NSTATS
#define SNAP_NMETRICS (ALLOC_SHM_NSTATS + (0 ALLOC_SHM_DERIVED(ALLOC_SHM_COUNT_ONE)))

typedef struct metric_info_s {
  const char *name;
  const char *type;   /* "gauge" or "counter" */
  const char *unit;   /* "bytes", "count", "nanoseconds", "ratio" */
  const char *help;
} metric_info_t;

/* A metric_info_t from an X(name, TYPE, UNIT, help) list entry. */
#define METRIC_INFO(name, type, unit, help) {#name, METRIC_TYPE_##type, METRIC_UNIT_##unit, help},
#define METRIC_UNIT_BYTES "bytes"
#define METRIC_UNIT_COUNT "count"
#define METRIC_UNIT_NANOSECONDS "nanoseconds"
#define METRIC_UNIT_RATIO "ratio"
#define METRIC_TYPE_GAUGE "gauge"
#define METRIC_TYPE_COUNTER "counter"

extern const metric_info_t snap_metrics[SNAP_NMETRICS];

/* A list of metrics a history table stores: a process's (snap_set) or the
 * host's (host.h).  No set has more than SNAP_NMETRICS. */
typedef struct metric_set_s {
  const metric_info_t *info;
  int n;
} metric_set_t;

extern const metric_set_t snap_set;

/* Index of a metric of the set by name, or -1. */
int metric_set_index(const metric_set_t *set, const char *name);

/* Index of a metric by name, or -1. */
int snap_metric_index(const char *name);

/* Every metric's value, in snap_metrics order. */
void snap_metric_values(const alloc_shm_snapshot_t *s, double out[SNAP_NMETRICS]);

/* {metric: value} for every metric. */
json_t *snap_metrics_json(const alloc_shm_snapshot_t *s);
/* {knob: value}: numbers, booleans, mode names. */
json_t *snap_config_json(const alloc_shm_config_t *c);
/* [{size, slab_bytes, ..., utilisation}] for the classes in use. */
json_t *snap_classes_json(const alloc_shm_snapshot_t *s);
/* Everything: time, number, stats, config, classes. */
json_t *snap_full_json(const alloc_shm_snapshot_t *s);

/* Is `knob` a configuration knob of the snapshot (ALLOC_SHM_CONFIG)? */
bool snap_config_knob(const char *knob, const char **kind);
/* The knob's value in the snapshot as text, as the process would print it. */
bool snap_config_text(const alloc_shm_config_t *c, const char *knob, char *out, size_t size);

#endif
