/* threadchurn.c - many short-lived threads, some objects outliving them
 * (in the manner of mimalloc-bench's mstress).
 *
 * Usage: threadchurn THREADS CONCURRENT OPS
 *
 * THREADS threads run over the whole program, at most CONCURRENT at a time:
 * the main thread joins the oldest and starts the next.  Each does OPS steps
 * on a table of its own, replacing a random entry with an object of a mixed
 * size (mostly 24 B .. 1 KiB, 5% up to 16 KiB, 1 in 500 up to 256 KiB).
 * Every 16th step it also swaps one object with a shared transfer table:
 * what it takes out, put there by an earlier thread, it frees (a remote
 * free, often into the heap of a thread that has exited).  Before exiting it
 * leaves a quarter of its table in the transfer table and frees the rest.
 * An allocator pays here for creating and tearing down per-thread state a
 * thousand times, and for what an exited thread's heap still holds.
 *
 * stdout: the thread count and a checksum of every freed object (the same
 * whatever the schedule: every object is freed exactly once).  stderr
 * ("metric" lines): rss_end_mib after every thread has exited and the
 * transfer table is emptied (nothing is live then but this program's
 * tables), peak_rss_mib and cpu_s.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "bench_common.h"
#include "bench_probe.h"

#define TABLE_SLOTS 512
#define TRANSFER_SLOTS 4096
#define TRANSFER_EVERY 16
#define KEEP_DIVISOR 4          /* a quarter of a table is left to the next threads */

/* An object's size lives in it, after its tag, so that whoever takes it out
 * of the transfer table can check and free it:
 * [0,8) tag  [8,16) size  ...  [size-8,size) tail mark */
struct object {
    uint64_t tag;
    uint64_t size;
};

struct worker {
    uint64_t index;
    pthread_t thread;
    uint64_t checksum;
};

static uint64_t ops_per_thread;
static _Atomic(struct object *) transfer[TRANSFER_SLOTS];

static size_t mixed_size(struct rng *rng)
{
    uint64_t pick = rng_below(rng, 1000);
    if (pick < 2)
        return rng_size_between(rng, 16384, 262144);
    if (pick < 52)
        return rng_size_between(rng, 1024, 16384);
    return rng_size_between(rng, 24, 1024);
}

static struct object *new_object(struct rng *rng, uint64_t tag)
{
    size_t size = mixed_size(rng);
    struct object *o = checked_malloc(size);
    mark_object(o, size, tag);
    o->size = size;
    return o;
}

static uint64_t drop_object(struct object *o)
{
    uint64_t tag = o->tag, size = o->size;
    check_object(o, size, tag, "threadchurn");
    free(o);
    return object_value(tag, size);
}

/* Put o in a random transfer slot; free what was there. */
static void swap_into_transfer(struct worker *w, struct rng *rng, struct object *o)
{
    struct object *old = atomic_exchange(&transfer[rng_below(rng, TRANSFER_SLOTS)], o);
    if (old)
        w->checksum += drop_object(old);
}

static void *live_briefly(void *arg)
{
    struct worker *w = arg;
    struct rng rng = { 0xc4a2ull + w->index * 0x9e37ull };
    struct object *table[TABLE_SLOTS] = { 0 };
    uint64_t tag = w->index << 32;

    for (uint64_t i = 0; i < ops_per_thread; i++) {
        struct object **slot = &table[rng_below(&rng, TABLE_SLOTS)];
        if (*slot)
            w->checksum += drop_object(*slot);
        *slot = new_object(&rng, ++tag);
        if (i % TRANSFER_EVERY == 0)
            swap_into_transfer(w, &rng, new_object(&rng, ++tag));
    }
    for (size_t k = 0; k < TABLE_SLOTS; k++) {
        if (!table[k])
            continue;
        if (k % KEEP_DIVISOR == 0)
            swap_into_transfer(w, &rng, table[k]);
        else
            w->checksum += drop_object(table[k]);
    }
    return NULL;
}

static void start(struct worker *w)
{
    if (pthread_create(&w->thread, NULL, live_briefly, w))
        die("pthread_create failed");
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s THREADS CONCURRENT OPS\n", argv[0]);
        return 2;
    }
    uint64_t thread_count = parse_count(argv[1], "THREADS", 1, 1u << 20);
    uint64_t concurrent = parse_count(argv[2], "CONCURRENT", 1, 256);
    ops_per_thread = parse_count(argv[3], "OPS", 1, 1ull << 32);

    struct worker *workers = calloc(thread_count, sizeof *workers);
    if (!workers)
        die("out of memory");
    /* A sliding window: thread i starts once thread i - CONCURRENT is joined. */
    for (uint64_t i = 0; i < thread_count; i++) {
        if (i >= concurrent)
            pthread_join(workers[i - concurrent].thread, NULL);
        workers[i].index = i;
        start(&workers[i]);
    }
    for (uint64_t i = thread_count > concurrent ? thread_count - concurrent : 0; i < thread_count; i++)
        pthread_join(workers[i].thread, NULL);

    uint64_t checksum = 0;
    for (size_t k = 0; k < TRANSFER_SLOTS; k++) {
        struct object *o = atomic_exchange(&transfer[k], NULL);
        if (o)
            checksum += drop_object(o);
    }
    for (uint64_t i = 0; i < thread_count; i++)
        checksum += workers[i].checksum;
    stats_probe("end");
    report_metric("rss_end_mib", current_rss_kib() / 1024.0);
    report_metric("peak_rss_mib", peak_rss_kib() / 1024.0);
    report_cpu_seconds();
    printf("threadchurn threads=%llu checksum=%016llx\n", (unsigned long long)thread_count,
           (unsigned long long)checksum);
    free(workers);
    return 0;
}
