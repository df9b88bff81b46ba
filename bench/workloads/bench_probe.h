/* bench_probe.h - the allocator's own statistics at a chosen moment.
 *
 * Peak RSS says how much memory a run held, not where.  To attribute it,
 * a workload calls stats_probe("after-fill") at the moments that matter;
 * with BENCH_ALLOC_STATS set in the environment (and liballoc preloaded)
 * that prints liballoc's statistics to stderr there, headed by the moment's
 * name.  Without the variable, or under another allocator, it does nothing:
 * the workloads stay plain standard-API programs and the timed runs of
 * bench/run never set it.  The function is looked up in the process's
 * global scope (the preloaded library), so nothing links to liballoc.
 */
#ifndef BENCH_PROBE_H
#define BENCH_PROBE_H

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef void stats_print_fn(void (*)(void *, const char *), void *, const char *);

static inline void stats_probe(const char *when)
{
    static stats_print_fn *print;
    static int looked;
    if (!getenv("BENCH_ALLOC_STATS"))
        return;
    if (!looked) {
        void *self = dlopen(NULL, RTLD_LAZY);
        looked = 1;
        if (self)
            *(void **)&print = dlsym(self, "alloc_stats_print");
    }
    if (!print)
        return;
    fprintf(stderr, "probe %s\n", when);
    fflush(stderr);
    print(NULL, NULL, NULL);
}

#endif /* BENCH_PROBE_H */
