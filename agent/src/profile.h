/* profile.h - a live process's heap profile, on request: ask the process
 * for it through the control area ("prof.publish"), read and validate the
 * profile area, symbolize it and render it as pprof or JSON. */
#ifndef ALLOCD_PROFILE_H
#define ALLOCD_PROFILE_H

#include "collector.h"
#include "store.h"
#include "symbolize.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct profile_query_s {
  bool json;          /* ?format=json: the top call sites, else gzip'ed pprof */
  int sort, top;      /* JSON: pprof_value_names index, how many sites */
  int default_value;  /* pprof: the default sample type's index */
  int64_t base_ms;    /* ?base=T: minus the stored profile at or before T (0: none) */
} profile_query_t;

typedef struct profile_result_s {
  int status;               /* HTTP status */
  char *body;               /* malloc'ed: the profile, or a JSON {"error": ...} */
  size_t len;
  bool pprof;               /* body is a gzip'ed profile.proto */
  char filename[64];        /* for Content-Disposition */
} profile_result_t;

/* Ask `target` for its heap profile and render it (blocks up to
 * timeout_ms waiting for the process, then up to SYMBOLIZE_MS
 * symbolizing).  Never fails without a result: out->status and out->body
 * say what happened (409 profiling off or no profiler, 502 a bad
 * segment or profile, 503 busy or the process not running its publisher,
 * 504 no answer in time). */
void profile_heap(symbolizer_t *sym, store_t *store, const collector_target_t *target, const profile_query_t *q,
                  unsigned timeout_ms, profile_result_t *out);

/* The history (--profile-interval): a thread that asks every live process
 * for its profile at most once per interval_ms and stores those with
 * profiling on (schema/005_profiles.sql).  One request at a time, at most
 * KEEP_PER_PASS per pass, each bounded by timeout_ms: a process that does
 * not answer costs the keeper its timeout, and is not asked again before
 * its next interval.  NULL when interval_ms is 0 (off). */
typedef struct profile_keeper_s profile_keeper_t;
profile_keeper_t *profile_keeper_start(store_t *store, collector_t *collector, int64_t interval_ms, unsigned timeout_ms);
void profile_keeper_stop(profile_keeper_t *k);

#endif
