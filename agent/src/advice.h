/* advice.h - what another dirty_decay_ms would have done: the recorded
 * history of a process replayed under other decay times (the model is in
 * advice.c and docs/tuning.md). */
#ifndef ALLOCD_ADVICE_H
#define ALLOCD_ADVICE_H

#include "store.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* One recorded snapshot: its time (s) and the dirty gauge and the purged
 * and nmadvise counters. */
typedef struct advice_sample_s {
  double t, dirty, purged, nmadvise;
} advice_sample_t;

typedef struct advice_result_s {
  double dirty_mean;       /* bytes, time-weighted */
  double purged_per_s;     /* bytes returned to the kernel per second */
  double madvise_per_s;    /* system calls that takes, per second */
  double refault_per_s;    /* bytes reused after they were returned: faulted in again */
} advice_result_t;

/* Replay the samples' flow of freed and reused memory under decay time ms
 * (-1: never, 0: at once).  bytes_per_madvise converts purged bytes to
 * calls. */
void advice_replay(const advice_sample_t *s, size_t n, int64_t ms, double bytes_per_madvise, advice_result_t *out);

/* The advice for a process over [from_ms, to_ms] for each candidate decay
 * time (and the current one), or NULL with why. */
json_t *advice_json(store_t *st, int64_t process_id, int64_t current_ms, int64_t muzzy_ms, int64_t from_ms,
                    int64_t to_ms, const int64_t *candidates, size_t ncandidates, const char **why);

#endif
