/* reclaim.h - the reclamation policy: under memory pressure (the host's,
 * or a cgroup's near its limit) allocd makes the processes that hold the
 * most free memory give it back, cheapest first, and restores their
 * settings when the pressure is gone.  Off unless --reclaim says on or
 * dry-run. */
#ifndef ALLOCD_RECLAIM_H
#define ALLOCD_RECLAIM_H

#include "collector.h"
#include "store.h"

#include <stdint.h>

enum reclaim_mode { RECLAIM_OFF, RECLAIM_DRY_RUN, RECLAIM_ON };

typedef struct reclaim_config_s {
  enum reclaim_mode mode;
  double psi;           /* host or cgroup PSI "some" 10 s share that is pressure (0.10) */
  double usage;         /* a cgroup at this share of its limit (or high) is under pressure (0.90) */
  int64_t hold_ms;      /* pressure gone this long: settings restored (30 s) */
  unsigned push_timeout_ms;
} reclaim_config_t;

typedef struct reclaim_counters_s {
  uint64_t squeezed, restored, dry_run;   /* actions taken, and those only logged */
  uint64_t returned_bytes;                /* what the squeezed processes gave back */
  uint64_t squeezed_now;                  /* processes running with allocd's settings */
} reclaim_counters_t;

typedef struct reclaim_s reclaim_t;

/* NULL when the mode is off (or out of memory): the other calls take NULL. */
reclaim_t *reclaim_start(store_t *store, collector_t *collector, const reclaim_config_t *cfg);
/* A collection tick ended: look again (at most every RECLAIM_PASS_MS). */
void reclaim_kick(reclaim_t *r);
/* Restores the settings of the processes still squeezed, then stops. */
void reclaim_stop(reclaim_t *r);
void reclaim_counters(reclaim_t *r, reclaim_counters_t *out);

#endif
