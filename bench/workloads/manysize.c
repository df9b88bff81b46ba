/* manysize.c - memory freed in one range of sizes, wanted next in another
 * (in the manner of sh8bench's many sizes and orders of freeing).
 *
 * Usage: manysize THREADS ROUNDS BATCH_MIB
 *
 * Each thread, in each round, allocates a batch of about BATCH_MIB MiB of
 * blocks from one band of sizes, writes them, and then frees the batch of
 * the round before, so two batches of different bands are live at a time.
 * The bands are 16..128 B, 128 B..1 KiB, 1..8 KiB, 8..64 KiB and
 * 64..512 KiB; a thread takes them in turn, starting at its own.  The old
 * batch is freed forward, backward or in a random order, by turns.  An
 * allocator that reuses what a freed band leaves for the next band stays
 * near two batches per thread; one that keeps memory for the sizes it was
 * freed in grows towards five.
 *
 * stdout: the block count and a checksum.  stderr ("metric" lines): live_mib
 * (the most bytes live at once), peak_rss_mib, rss_end_mib (everything
 * freed), cpu_s.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "bench_common.h"
#include "bench_probe.h"

#define BANDS 5

static const size_t band_min[BANDS] = { 16, 128, 1024, 8192, 65536 };

struct batch {
    void **ptrs;
    uint32_t *sizes;
    size_t count;
};

struct worker {
    int id;
    struct rng rng;
    uint64_t blocks, checksum;
    pthread_t thread;
};

static uint64_t rounds, batch_bytes;
static atomic_uint_fast64_t live_bytes, most_live;

static void add_live(int64_t delta)
{
    uint64_t now = atomic_fetch_add(&live_bytes, (uint64_t)delta) + (uint64_t)delta;
    uint64_t most = atomic_load(&most_live);
    while (now > most && !atomic_compare_exchange_weak(&most_live, &most, now))
        ;
}

static void fill_batch(struct worker *w, struct batch *b, int band, uint64_t round)
{
    size_t lo = band_min[band], hi = 8 * lo, bytes = 0;
    b->count = 0;
    while (bytes < batch_bytes) {
        size_t size = rng_size_between(&w->rng, lo, hi);
        uint64_t tag = ((uint64_t)(w->id + 1) << 56) | (round << 32) | b->count;
        void *p = checked_malloc(size);
        memset(p, (int)(tag & 0xff), size);     /* every page resident, as used memory is */
        mark_object(p, size, tag);
        b->ptrs[b->count] = p;
        b->sizes[b->count++] = (uint32_t)size;
        bytes += size;
    }
    w->blocks += b->count;
    add_live((int64_t)bytes);
}

static void free_one(struct worker *w, struct batch *b, size_t i, uint64_t *bytes)
{
    uint64_t tag;
    memcpy(&tag, b->ptrs[i], sizeof tag);
    check_object(b->ptrs[i], b->sizes[i], tag, "manysize");
    w->checksum += object_value(tag, b->sizes[i]);
    *bytes += b->sizes[i];
    free(b->ptrs[i]);
}

/* Forward, backward or in a random order (a shuffled index), by turns. */
static void free_batch(struct worker *w, struct batch *b, uint64_t round)
{
    uint64_t bytes = 0;
    if (round % 3 == 0) {
        for (size_t i = 0; i < b->count; i++)
            free_one(w, b, i, &bytes);
    } else if (round % 3 == 1) {
        for (size_t i = b->count; i-- > 0;)
            free_one(w, b, i, &bytes);
    } else {
        for (size_t i = b->count; i > 1; i--) {     /* Fisher-Yates on the pointers */
            size_t j = (size_t)rng_below(&w->rng, i);
            void *p = b->ptrs[i - 1];
            uint32_t s = b->sizes[i - 1];
            b->ptrs[i - 1] = b->ptrs[j], b->sizes[i - 1] = b->sizes[j];
            b->ptrs[j] = p, b->sizes[j] = s;
        }
        for (size_t i = 0; i < b->count; i++)
            free_one(w, b, i, &bytes);
    }
    add_live(-(int64_t)bytes);
    b->count = 0;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    size_t capacity = batch_bytes / band_min[0] + 1;
    struct batch batches[2];
    for (int k = 0; k < 2; k++) {
        batches[k].ptrs = checked_malloc(capacity * sizeof *batches[k].ptrs);
        batches[k].sizes = checked_malloc(capacity * sizeof *batches[k].sizes);
        batches[k].count = 0;
    }
    for (uint64_t r = 0; r < rounds; r++) {
        fill_batch(w, &batches[r % 2], (int)((r + (uint64_t)w->id) % BANDS), r);
        if (r > 0)
            free_batch(w, &batches[(r + 1) % 2], r);
        if (w->id == 0 && r == rounds / 2)
            stats_probe("half-way");
    }
    free_batch(w, &batches[(rounds + 1) % 2], rounds);
    for (int k = 0; k < 2; k++) {
        free(batches[k].ptrs);
        free(batches[k].sizes);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s THREADS ROUNDS BATCH_MIB\n", argv[0]);
        return 2;
    }
    int thread_count = (int)parse_count(argv[1], "THREADS", 1, 64);
    rounds = parse_count(argv[2], "ROUNDS", 1, 1u << 20);
    batch_bytes = parse_count(argv[3], "BATCH_MIB", 1, 1024) << 20;

    struct worker *workers = calloc((size_t)thread_count, sizeof *workers);
    if (!workers)
        die("out of memory");
    for (int i = 0; i < thread_count; i++) {
        workers[i].id = i;
        workers[i].rng.state = 0x5b8e7c4ull + (uint64_t)i;
        if (pthread_create(&workers[i].thread, NULL, run, &workers[i]))
            die("pthread_create failed");
    }
    uint64_t blocks = 0, checksum = 0;
    for (int i = 0; i < thread_count; i++) {
        pthread_join(workers[i].thread, NULL);
        blocks += workers[i].blocks;
        checksum += workers[i].checksum;
    }
    stats_probe("end");
    report_metric("live_mib", atomic_load(&most_live) / (1024.0 * 1024.0));
    report_metric("peak_rss_mib", peak_rss_kib() / 1024.0);
    report_metric("rss_end_mib", current_rss_kib() / 1024.0);
    report_cpu_seconds();
    printf("manysize threads=%d blocks=%llu checksum=%016llx\n", thread_count,
           (unsigned long long)blocks, (unsigned long long)checksum);
    free(workers);
    return 0;
}
