/* prom.h - /metrics: every live process's statistics in the Prometheus
 * text exposition format, plus allocd's own counters. */
#ifndef ALLOCD_PROM_H
#define ALLOCD_PROM_H

#include "collector.h"
#include "reclaim.h"

/* allocd's counters kept outside the collector. */
typedef struct prom_agent_s {
  uint64_t closed_slow;        /* HTTP connections closed as too slow (http_guard.h) */
  uint64_t rules_suppressed;   /* rule pushes skipped (rules.h) */
  uint64_t rule_file_errors;   /* rule files (and directory) refused at their last reading (rules_dir.h) */
  reclaim_counters_t reclaim;  /* the reclamation policy's (reclaim.h) */
} prom_agent_t;

/* The exposition text (malloc'd); NULL if out of memory. */
char *prom_render(collector_t *collector, const prom_agent_t *agent, size_t *len);

#endif
