/* prom.h - /metrics: every live process's statistics in the Prometheus
 * text exposition format, plus allocd's own counters. */
#ifndef ALLOCD_PROM_H
#define ALLOCD_PROM_H

#include "collector.h"

/* The exposition text (malloc'd); NULL if out of memory. */
char *prom_render(collector_t *collector, size_t *len);

#endif
