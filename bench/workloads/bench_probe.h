/* bench_probe.h - the allocator's own statistics at a chosen moment.
 *
 * Peak RSS says how much memory a run held, not where.  To attribute it,
 * a workload calls stats_probe("grown") at the moments that matter; with
 * BENCH_ALLOC_STATS set in the environment that prints "probe NAME" and the
 * allocator's malloc_stats() report to stderr there (glibc's extension,
 * which liballoc, jemalloc and tcmalloc provide too; hugereuse's
 * HUGEREUSE_STATS does the same).  With BENCH_ALLOC_STATS=trim it then
 * calls malloc_trim(0) and prints the report again, headed "probe NAME
 * trimmed": the difference is what the allocator held and could give back
 * at once (liballoc's trim also collects the remote frees of abandoned
 * slabs and returns the emptied ones).  Trimming changes the rest of the
 * run, so compare only the first probe's figures with an untrimmed run.
 * bench/run never sets the variable: the timed runs are unchanged.
 */
#ifndef BENCH_PROBE_H
#define BENCH_PROBE_H

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void stats_probe(const char *when)
{
    const char *mode = getenv("BENCH_ALLOC_STATS");
    if (!mode)
        return;
    fprintf(stderr, "probe %s\n", when);
    fflush(stderr);
    malloc_stats();
    if (strcmp(mode, "trim") == 0) {
        malloc_trim(0);
        fprintf(stderr, "probe %s trimmed\n", when);
        fflush(stderr);
        malloc_stats();
    }
}

#endif /* BENCH_PROBE_H */
