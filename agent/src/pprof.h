/* pprof.h - a process's heap profile (alloc_shm.h's profile area, read and
 * validated by alloc_shm_prof_read) as pprof's profile.proto, gzip'ed,
 * which `go tool pprof`, Parca and Grafana Pyroscope read, and as the top
 * call sites in JSON for the API's ?format=json and allocctl.
 *
 * Five sample types, in this order: alloc_objects/count,
 * alloc_space/bytes, inuse_objects/count, inuse_space/bytes,
 * pinned_space/bytes; the default is inuse_space; period_type space/bytes
 * with period = the sampling mean (prof_sample_bytes).  A location's
 * address is the return address minus 1 (inside the call instruction),
 * which is also the address symbolized, so a tool re-symbolizing from the
 * mappings' build IDs lands on the same line. */
#ifndef ALLOCD_PPROF_H
#define ALLOCD_PPROF_H

#include "symbolize.h"

#include <alloc_shm_reader.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define PPROF_NVALUES 5
extern const char *const pprof_value_names[PPROF_NVALUES];   /* "alloc_objects", ... */

typedef struct pprof_s pprof_t;

/* How to symbolize: sym NULL gives addresses only. */
typedef struct pprof_symbols_s {
  symbolizer_t *sym;
  const char *main_exe;     /* the kernel's path of the executable, or NULL */
  uid_t owner;              /* the process's uid (symbolize.h's rules) */
  uint64_t deadline_ms;     /* CLOCK_MONOTONIC: addresses only after it */
} pprof_symbols_t;

/* Build the profile's tables (strings, mappings, locations, functions,
 * samples) from a validated profile.  NULL when out of memory. */
pprof_t *pprof_build(const alloc_shm_prof_t *p, const pprof_symbols_t *how);
/* The same, minus `base` (an earlier profile of the same process: same
 * addresses): each stack's values minus those of base's stack with the
 * same frames; base's stacks absent now appear with negative values. */
pprof_t *pprof_build_diff(const alloc_shm_prof_t *p, const alloc_shm_prof_t *base, const pprof_symbols_t *how);
void pprof_free(pprof_t *pp);

/* The profile.proto, gzip-compressed, in a malloc'ed buffer, with
 * default_sample_type the value of index `default_value` (inuse_space for
 * /heap, alloc_space for /allocs, as Go serves them); false when out of
 * memory. */
bool pprof_encode(const pprof_t *pp, int default_value, uint8_t **out, size_t *len);

/* The top call sites (innermost frame: function, file:line) by value
 * `sort` (an index of pprof_value_names), at most `top`, with the heaviest
 * stack through each, and the profile's totals. */
json_t *pprof_top_json(const pprof_t *pp, int sort, int top);

/* The profile as a flame graph's tree for value `value`: {"name": "all",
 * "value": total, "children": [{"name", "value", "children"}, ...]},
 * outermost frames first, a function inlined at a call site a frame of
 * its own; children sorted by value.  Frames below 1/1000 of the total
 * are left out (their value stays in their parent's), and at most
 * FLAME_NODES nodes are built, so the answer stays small. */
#define FLAME_NODES 4000
json_t *pprof_flame_json(const pprof_t *pp, int value);

/* Index of a value name, or -1. */
int pprof_value_index(const char *name);

/* Symbolization figures of the last build: locations, of which symbolized,
 * and the modules whose file could not be used (first reason). */
void pprof_stats(const pprof_t *pp, size_t *locations, size_t *symbolized, const char **unsymbolized_why);

#endif
