/* larson.c - a server simulation in the manner of Larson and Krishnan's
 * benchmark: threads come and go, and each inherits its predecessor's
 * objects.
 *
 * Usage: larson CHAIRS GENERATIONS SLOTS OPS [MIN_SIZE MAX_SIZE]
 *
 * CHAIRS chains of threads run side by side.  Each chair owns a table of
 * SLOTS objects of random sizes in [MIN_SIZE, MAX_SIZE] (default 16..1024).
 * The thread sitting in a chair does OPS steps, each replacing a random slot:
 * free the object there, allocate a new one of a random size.  Then it
 * starts its successor and exits; the successor joins it and carries on
 * with the same table, GENERATIONS threads per chair in all.  So most frees
 * of a generation are of objects that a thread now gone allocated: remote
 * frees into the heap of an exited thread, the case where an allocator must
 * either adopt the dead thread's memory or keep it.  (The original
 * benchmark measures a fixed time and counts operations; here the work is
 * fixed and bench/run measures time, so every allocator does the same.)
 *
 * stdout: the step count and a checksum of every freed object.  stderr
 * ("metric" lines): live_mib at the end (the tables' objects), rss_mib
 * then, rss_over_live, peak_rss_mib and cpu_s.
 */
#include <pthread.h>
#include <semaphore.h>

#include "bench_common.h"
#include "bench_probe.h"

#define DEFAULT_MIN_SIZE 16
#define DEFAULT_MAX_SIZE 1024

struct slot {
    void *ptr;
    uint32_t size;
    uint64_t tag;
};

struct chair {
    int id;
    uint64_t generation;        /* of the thread sitting now */
    struct rng rng;             /* carried over: the run does not depend on scheduling */
    struct slot *slots;
    uint64_t next_tag;
    uint64_t checksum;
    uint64_t live_bytes;
    pthread_t predecessor;      /* the thread the sitting one must join */
    char pad[64];               /* keep the chairs' hot fields apart */
};

static uint64_t generations, slot_count, ops_per_thread;
static size_t min_size, max_size;
static sem_t chairs_done;       /* posted by the last thread of each chair */

static void fill_slot(struct chair *c, struct slot *s)
{
    s->size = (uint32_t)rng_size_between(&c->rng, min_size, max_size);
    s->tag = ((uint64_t)(c->id + 1) << 48) | ++c->next_tag;
    s->ptr = checked_malloc(s->size);
    mark_object(s->ptr, s->size, s->tag);
    c->live_bytes += s->size;
}

static void empty_slot(struct chair *c, struct slot *s)
{
    check_object(s->ptr, s->size, s->tag, "larson");
    c->checksum += object_value(s->tag, s->size);
    c->live_bytes -= s->size;
    free(s->ptr);
}

static void *sit(void *arg);

/* Hand the chair to a new thread; it will join this one. */
static void pass_chair(struct chair *c)
{
    pthread_t successor;
    c->predecessor = pthread_self();
    if (pthread_create(&successor, NULL, sit, c))
        die("pthread_create failed");
}

static void *sit(void *arg)
{
    struct chair *c = arg;
    if (c->generation > 0 && pthread_join(c->predecessor, NULL))
        die("pthread_join failed");
    for (uint64_t i = 0; i < ops_per_thread; i++) {
        struct slot *s = &c->slots[rng_below(&c->rng, slot_count)];
        empty_slot(c, s);
        fill_slot(c, s);
    }
    if (++c->generation < generations) {
        pass_chair(c);
    } else {
        c->predecessor = pthread_self();    /* main joins the last one */
        sem_post(&chairs_done);
    }
    return NULL;
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: %s CHAIRS GENERATIONS SLOTS OPS [MIN_SIZE MAX_SIZE]\n", argv[0]);
        return 2;
    }
    int chair_count = (int)parse_count(argv[1], "CHAIRS", 1, 256);
    generations = parse_count(argv[2], "GENERATIONS", 1, 1u << 20);
    slot_count = parse_count(argv[3], "SLOTS", 1, 1u << 24);
    ops_per_thread = parse_count(argv[4], "OPS", 0, 1ull << 32);
    min_size = argc == 7 ? parse_count(argv[5], "MIN_SIZE", MIN_OBJECT_SIZE, 1u << 24) : DEFAULT_MIN_SIZE;
    max_size = argc == 7 ? parse_count(argv[6], "MAX_SIZE", min_size, 1u << 24) : DEFAULT_MAX_SIZE;

    struct chair *chairs = calloc((size_t)chair_count, sizeof *chairs);
    if (!chairs || sem_init(&chairs_done, 0, 0))
        die("out of memory");
    /* The tables are filled by the main thread, as a server's start-up
     * fills its caches: the first generation's frees are remote too. */
    for (int i = 0; i < chair_count; i++) {
        struct chair *c = &chairs[i];
        c->id = i;
        c->rng.state = 0x1a450ull + (uint64_t)i;
        c->slots = calloc(slot_count, sizeof *c->slots);
        if (!c->slots)
            die("out of memory");
        for (uint64_t k = 0; k < slot_count; k++)
            fill_slot(c, &c->slots[k]);
    }
    for (int i = 0; i < chair_count; i++) {
        pthread_t first;
        if (pthread_create(&first, NULL, sit, &chairs[i]))
            die("pthread_create failed");
    }
    for (int i = 0; i < chair_count; i++)
        sem_wait(&chairs_done);

    uint64_t live = 0, steps = 0, checksum = 0;
    for (int i = 0; i < chair_count; i++) {
        pthread_join(chairs[i].predecessor, NULL);
        live += chairs[i].live_bytes;
    }
    uint64_t rss_kib = current_rss_kib();
    stats_probe("end");
    report_metric("live_mib", mib(live));
    report_metric("rss_mib", rss_kib / 1024.0);
    report_metric("rss_over_live", (double)rss_kib * 1024.0 / (double)live);
    report_metric("peak_rss_mib", peak_rss_kib() / 1024.0);
    for (int i = 0; i < chair_count; i++) {
        for (uint64_t k = 0; k < slot_count; k++)
            empty_slot(&chairs[i], &chairs[i].slots[k]);
        steps += chairs[i].generation * ops_per_thread;
        checksum += chairs[i].checksum;
        free(chairs[i].slots);
    }
    report_cpu_seconds();
    printf("larson chairs=%d steps=%llu checksum=%016llx\n", chair_count,
           (unsigned long long)steps, (unsigned long long)checksum);
    sem_destroy(&chairs_done);
    free(chairs);
    return 0;
}
