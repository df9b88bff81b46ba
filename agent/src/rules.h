/* rules.h - persistent configuration policies: {exe_glob, config,
 * canary_pct} rows applied automatically to matching processes when they
 * appear, from a thread of their own (a push waits for the process). */
#ifndef ALLOCD_RULES_H
#define ALLOCD_RULES_H

#include "collector.h"
#include "store.h"

#include <jansson.h>

typedef struct rules_s rules_t;

rules_t *rules_start(store_t *store, collector_t *collector, unsigned push_timeout_ms);
/* New processes may be waiting (called after each collection tick). */
void rules_kick(rules_t *r);
/* Waits for the pushes in progress (each ends within the push timeout). */
void rules_stop(rules_t *r);
/* Rule pushes skipped because their user's processes left too many
 * pushes unanswered within a minute. */
uint64_t rules_suppressed(rules_t *r);

/* Check a rule given to the API: {"exe_glob": "...", "config": {...},
 * "canary_pct": 1..100 (optional, default 100)}.  NULL if fine, else why. */
const char *rules_validate(json_t *rule, char *buf, size_t size);

/* Does the rule's glob match this executable?  A glob without '/' is
 * matched against the base name, one with '/' against the whole path. */
bool rules_match(const char *glob, const char *exe);

/* Is the process in the rule's canary share?  A stable hash of (pid, start
 * time, rule) below canary_pct out of 100. */
bool rules_in_canary(int pid, uint64_t start_time, int64_t rule_id, int canary_pct);

#endif
