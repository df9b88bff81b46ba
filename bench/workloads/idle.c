/* idle.c - an idle process after a burst: does the memory go back?
 *
 * Usage: idle BURST_MIB SECONDS
 *
 * A service handles a burst (a batch job, a traffic spike), then goes quiet.
 * This program allocates BURST_MIB MiB in small and medium blocks
 * (16 B .. 32 KiB), frees 90% of them, and then does nothing but sample its
 * resident set size every 100 ms for SECONDS seconds.  Whether RSS falls,
 * and how fast, depends only on the allocator's purging (decay, a
 * background thread) since the program makes no more calls into it.
 *
 * The survivors are the blocks allocated last (the last tenth), not a
 * random tenth: a random tenth of small blocks leaves a live block on
 * nearly every page, and then no allocator could return anything - the
 * question here is whether free pages are returned, not fragmentation
 * (fragment.c asks that).
 *
 * stderr gets "series T_MS RSS_KIB" lines (T_MS from the end of the frees)
 * and "metric" lines: live_mib (bytes still allocated), burst_rss_mib,
 * freed_rss_mib (right after the frees) and final_rss_mib.  stdout has the
 * block count and checksum.
 */
#include <time.h>

#include "bench_common.h"

#define SAMPLE_MS 100
#define KEEP_TENTHS 1

struct block {
    void *ptr;
    size_t size;
};

/* Small and medium sizes, small ones most often. */
static size_t pick_burst_size(struct rng *rng)
{
    uint64_t r = rng_below(rng, 100);
    if (r < 70)
        return rng_size_between(rng, 16, 512);
    if (r < 95)
        return rng_size_between(rng, 513, 4096);
    return rng_size_between(rng, 4097, 32768);
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

static uint64_t release_block(struct block *b, uint64_t tag)
{
    check_object(b->ptr, b->size, tag, "idle");
    free(b->ptr);
    return object_value(tag, b->size);
}

static void add_ms(struct timespec *t, long ms)
{
    t->tv_nsec += ms * 1000000L;
    while (t->tv_nsec >= 1000000000L) {
        t->tv_nsec -= 1000000000L;
        t->tv_sec++;
    }
}

/* Print RSS every SAMPLE_MS for `seconds`, on an absolute schedule so that
 * the time of printing does not drift the samples. */
static uint64_t sample_rss(uint64_t seconds)
{
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    uint64_t rss = 0, samples = seconds * 1000 / SAMPLE_MS;
    for (uint64_t i = 0; i <= samples; i++) {
        rss = current_rss_kib();
        fprintf(stderr, "series %llu %llu\n", (unsigned long long)(i * SAMPLE_MS),
                (unsigned long long)rss);
        add_ms(&next, SAMPLE_MS);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
            ;
    }
    return rss;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s BURST_MIB SECONDS\n", argv[0]);
        return 2;
    }
    uint64_t burst = parse_count(argv[1], "BURST_MIB", 1, 1u << 16) << 20;
    uint64_t seconds = parse_count(argv[2], "SECONDS", 0, 3600);

    struct rng rng = { 0x1d1eull };
    size_t capacity = burst / 16 + 1, count = 0;
    struct block *blocks = calloc(capacity, sizeof *blocks);
    if (!blocks)
        die("out of memory");
    uint64_t allocated = 0, live = 0, checksum = 0;
    while (allocated < burst && count < capacity) {
        struct block *b = &blocks[count++];
        b->size = pick_burst_size(&rng);
        b->ptr = checked_malloc(b->size);
        memset(b->ptr, (int)(count & 0xff), b->size);   /* resident, as used memory is */
        mark_object(b->ptr, b->size, count);
        allocated += b->size;
    }
    report_metric("burst_rss_mib", current_rss_kib() / 1024.0);
    size_t first_kept = count - count * KEEP_TENTHS / 10;
    for (size_t i = 0; i < first_kept; i++)
        checksum += release_block(&blocks[i], i + 1);
    for (size_t i = first_kept; i < count; i++)
        live += blocks[i].size;
    live += count * sizeof *blocks;      /* the table itself is live too */
    report_metric("live_mib", mib(live));
    report_metric("freed_rss_mib", current_rss_kib() / 1024.0);

    uint64_t final_rss = sample_rss(seconds);
    report_metric("final_rss_mib", final_rss / 1024.0);

    for (size_t i = first_kept; i < count; i++)
        checksum += release_block(&blocks[i], i + 1);
    free(blocks);
    printf("idle blocks=%zu checksum=%016llx\n", count, (unsigned long long)checksum);
    return 0;
}
