/* tiny.c - the kind of small program that starts, allocates a little, and
 * exits: what spawn.c runs for the "tiny program" start-up workload.
 *
 * Usage: tiny
 *
 * A command-line tool's life in miniature: copy the environment and the
 * arguments, build a small table of strings, sort it, free it.  About a
 * hundred allocations of 16 B .. 4 KiB, so the time is dominated by the
 * allocator's first-touch costs (constructor, first heap mapping), not by
 * steady-state malloc speed.  Prints nothing: spawn runs it many times.
 */
#include "bench_common.h"

#define ENTRIES 96

extern char **environ;

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
    char *entries[ENTRIES];
    size_t env_count = 0;
    for (char **e = environ; *e && env_count < ENTRIES / 2; e++)
        entries[env_count++] = strdup(*e);
    struct rng rng = { 0x7171ull };
    for (size_t i = env_count; i < ENTRIES; i++) {
        size_t size = rng_size_between(&rng, 16, 4096);
        entries[i] = checked_malloc(size);
        snprintf(entries[i], size, "entry-%zu-%llu", i, (unsigned long long)rng_next(&rng));
    }
    for (size_t i = 0; i < ENTRIES; i++)
        if (!entries[i])
            die("out of memory");
    qsort(entries, ENTRIES, sizeof entries[0], compare_strings);
    for (size_t i = 0; i < ENTRIES; i++)
        free(entries[i]);
    return 0;
}
