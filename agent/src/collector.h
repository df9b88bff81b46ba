/* collector.h - finds the telemetry segments of the processes on this host,
 * reads their new snapshots each tick and writes them to the store. */
#ifndef ALLOCD_COLLECTOR_H
#define ALLOCD_COLLECTOR_H

#include "host.h"
#include "pressure.h"
#include "store.h"

#include <alloc_shm.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct collector_s collector_t;

/* A live process: identity, and its newest snapshot (NULL before the
 * first one is read).  uid, exe and comm are the kernel's (/proc), exe the
 * segment's claim only when the kernel would not tell (exe_verified
 * false); every string is valid UTF-8 without control characters
 * (text.h). */
typedef struct collector_live_s {
  int pid;
  uint64_t start_time, pidns;
  uid_t uid;                   /* real uid, /proc/PID/status */
  bool exe_verified;           /* exe is /proc/PID/exe */
  int64_t process_id, first_seen_ms, last_seen_ms;
  char exe[256], comm[64], version[64];
  alloc_shm_snapshot_t *snapshot;
  cgroup_mem_t cgroup;         /* its memory cgroup (known false if none could be read) */
} collector_live_t;

/* What the API needs to push a change to a live process. */
typedef struct collector_target_s {
  int pid;
  uint64_t start_time;
  int64_t process_id;
  char path[600];           /* its segment */
  char exe[256];            /* /proc/PID/exe, "" when the kernel would not tell:
                               rules match on this, never on the segment's claim */
  uid_t uid;                /* the owner its segment must have */
  alloc_shm_config_t config;   /* as of the newest snapshot */
  bool have_config;
} collector_target_t;

/* Why a segment was refused: the reader module's errors, then the
 * collector's own checks.  Names for /metrics: collector_reject_names. */
enum collector_reject {
  REJECT_OPEN, REJECT_NOT_FILE, REJECT_SIZE, REJECT_MAGIC, REJECT_VERSION, REJECT_LAYOUT, REJECT_IO,
  REJECT_PID_MISMATCH, REJECT_OTHER_NAMESPACE, REJECT_OWNER, REJECT_NREASONS
};
extern const char *const collector_reject_names[REJECT_NREASONS];

/* Counters for /metrics and /api/v1/health. */
typedef struct collector_counters_s {
  uint64_t ticks, snapshots, segments_rejected, stale_removed, processes_exited, db_failures;
  uint64_t squatters_removed, temporaries_removed;   /* files provably not their process's */
  uint64_t times_replaced;      /* snapshot times outside [process start, now + skew] */
  uint64_t ticks_over_budget;   /* ticks that left segments or files for later */
  uint64_t rejected[REJECT_NREASONS];
  uint64_t processes_alive;
  double last_tick_seconds, last_write_seconds;
  psi_t host_psi;               /* /proc/pressure/memory as of the last tick */
} collector_counters_t;

collector_t *collector_new(store_t *store, const char *shm_dir);
/* How long a tick may spend reading segments and judging new files
 * (default 500 ms; allocd gives half its interval).  What is left over
 * waits for the next tick, taken in turn so that nothing starves. */
void collector_set_budget(collector_t *c, int64_t budget_ms);
void collector_free(collector_t *c);

/* One pass: discover, read, store, notice exits.  Called by one thread. */
void collector_tick(collector_t *c);
/* Write the rollups in progress and the newest snapshots (at shutdown). */
void collector_flush(collector_t *c);

bool collector_lookup(collector_t *c, int pid, collector_target_t *out);

/* A copy of the live processes (pid < 0) or of the one with this pid, with
 * their snapshots (size classes only if asked: without them a snapshot's
 * classes[] must not be read), in one block the caller frees; *n of them. */
collector_live_t *collector_live(collector_t *c, int pid, size_t *n, bool with_classes);
/* A live process as the API shows it: identity, stats, fragmentation,
 * config and, if asked, size classes (the shape store.c gives exited ones). */
json_t *collector_live_json(const collector_live_t *l, bool with_classes);
void collector_counters(collector_t *c, collector_counters_t *out);
/* A PSI reading as JSON: {"some": [avg10, avg60, avg300], "full": [...],
 * "some_seconds", "full_seconds"} (shares 0..1, totals in seconds), or null. */
json_t *collector_psi_json(const psi_t *p);

/* The host's totals per size class of the live processes' newest
 * snapshots (as the last tick read them), by size, up to max of
 * them; returns how many. */
size_t collector_host_classes(collector_t *c, host_class_t *out, size_t max);

/* Processes first seen in the last tick that rules have not been applied
 * to yet: up to max of them are copied out and marked as handled. */
int collector_take_new(collector_t *c, collector_target_t *out, int max);

#endif
