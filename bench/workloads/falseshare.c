/* falseshare.c - false sharing of small objects between threads.
 *
 * Usage: falseshare THREADS ROUNDS OBJECTS PASSES
 *
 * Threads that each write heavily to their own small objects run at full
 * speed only if no cache line holds objects of two threads; when it does,
 * the line bounces between CPUs on every write (tens of times slower).
 * Whether that happens is the allocator's doing, in two ways, and each round
 * runs both:
 *
 *   active:  all threads allocate OBJECTS objects of 8..32 B at the same
 *            time (a barrier starts them together).  An allocator whose
 *            threads share a free list or a bump region hands out
 *            neighbouring bytes to different threads.
 *   passive: the main thread allocates THREADS*OBJECTS such objects in a
 *            row and deals them out round-robin (object i to thread
 *            i % THREADS), as a dispatcher hands requests to workers.  Each
 *            worker frees its objects and allocates as many new ones of the
 *            same sizes.  An allocator that recycles a freed block into the
 *            freeing thread's cache gives the worker back bytes whose
 *            neighbours belong to another worker; one that returns remote
 *            frees to the owner does not.
 *
 * After allocating, each thread makes PASSES passes over its objects,
 * incrementing the first word of each, then frees them.  The program prints
 * the write count and a checksum (object marks plus final counter values);
 * it measures no time itself.
 */
#include <pthread.h>

#include "bench_common.h"

#define MIN_SIZE 8
#define MAX_SIZE 32

struct object {
    uint64_t *ptr;
    size_t size;
    uint64_t tag;
};

struct worker {
    int id;
    struct rng rng;
    struct object *objects;         /* OBJECTS of them */
    uint64_t checksum;
    uint64_t writes;
    char pad[64];                   /* keep the workers' own fields apart */
};

static int thread_count;
static uint64_t rounds, objects_per_thread, passes;
static pthread_barrier_t start_line, dealt;
static struct object *dealer_batch;  /* the passive phase's objects, by the main thread */

static void allocate_object(struct object *o, size_t size, uint64_t tag)
{
    o->size = size;
    o->tag = tag;
    o->ptr = checked_malloc(size);
    mark_object(o->ptr, size, tag);
}

/* The hot loop: every pass writes every object once.  volatile keeps each
 * write a store to memory, which is what false sharing punishes. */
static void hammer(struct worker *w)
{
    for (uint64_t p = 0; p < passes; p++)
        for (uint64_t i = 0; i < objects_per_thread; i++) {
            volatile uint64_t *word = w->objects[i].ptr;
            *word += 1;
        }
    w->writes += passes * objects_per_thread;
}

/* Check, fold into the checksum and free every object of w.  The counter
 * was incremented `passes` times from the tag. */
static void release_all(struct worker *w)
{
    for (uint64_t i = 0; i < objects_per_thread; i++) {
        struct object *o = &w->objects[i];
        uint64_t counter = *o->ptr;
        if (counter != o->tag + passes)
            die("object tag %#llx: counter %llu, expected %llu", (unsigned long long)o->tag,
                (unsigned long long)counter, (unsigned long long)(o->tag + passes));
        *o->ptr = o->tag;               /* restore the head mark for the check */
        check_object(o->ptr, o->size, o->tag, "falseshare");
        w->checksum += object_value(o->tag, o->size);
        free(o->ptr);
    }
}

static uint64_t object_tag(int thread, uint64_t round, int phase, uint64_t index)
{
    return ((uint64_t)(thread + 1) << 56) | (round << 24) | ((uint64_t)phase << 23) | index;
}

static void active_phase(struct worker *w, uint64_t round)
{
    pthread_barrier_wait(&start_line);
    for (uint64_t i = 0; i < objects_per_thread; i++)
        allocate_object(&w->objects[i], rng_size_between(&w->rng, MIN_SIZE, MAX_SIZE),
                        object_tag(w->id, round, 0, i));
    hammer(w);
    release_all(w);
}

/* Free the dealt objects and allocate replacements of the same sizes. */
static void passive_phase(struct worker *w, uint64_t round)
{
    pthread_barrier_wait(&dealt);
    for (uint64_t i = 0; i < objects_per_thread; i++) {
        struct object *dealt_one = &dealer_batch[i * (uint64_t)thread_count + (uint64_t)w->id];
        check_object(dealt_one->ptr, dealt_one->size, dealt_one->tag, "dealt");
        w->checksum += object_value(dealt_one->tag, dealt_one->size);
        free(dealt_one->ptr);
    }
    for (uint64_t i = 0; i < objects_per_thread; i++) {
        size_t size = dealer_batch[i * (uint64_t)thread_count + (uint64_t)w->id].size;
        allocate_object(&w->objects[i], size, object_tag(w->id, round, 1, i));
    }
    hammer(w);
    release_all(w);
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    for (uint64_t r = 0; r < rounds; r++) {
        active_phase(w, r);
        passive_phase(w, r);
        pthread_barrier_wait(&start_line);   /* the dealer reuses its table */
    }
    return NULL;
}

/* The main thread's part of a round: deal a batch, in allocation order. */
static void deal_batch(struct rng *rng, uint64_t round)
{
    uint64_t total = objects_per_thread * (uint64_t)thread_count;
    for (uint64_t i = 0; i < total; i++)
        allocate_object(&dealer_batch[i], rng_size_between(rng, MIN_SIZE, MAX_SIZE),
                        object_tag(thread_count, round, 1, i));
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s THREADS ROUNDS OBJECTS PASSES\n", argv[0]);
        return 2;
    }
    thread_count = (int)parse_count(argv[1], "THREADS", 1, 64);
    rounds = parse_count(argv[2], "ROUNDS", 1, 1u << 20);
    objects_per_thread = parse_count(argv[3], "OBJECTS", 1, 1u << 16);  /* tags: index < 2^23 */
    passes = parse_count(argv[4], "PASSES", 1, UINT64_MAX / (1u << 20));

    struct worker *workers = calloc((size_t)thread_count, sizeof *workers);
    pthread_t *ids = calloc((size_t)thread_count, sizeof *ids);
    dealer_batch = calloc(objects_per_thread * (uint64_t)thread_count, sizeof *dealer_batch);
    if (!workers || !ids || !dealer_batch)
        die("out of memory");
    /* Threads plus the main thread meet at both barriers. */
    pthread_barrier_init(&start_line, NULL, (unsigned)thread_count + 1);
    pthread_barrier_init(&dealt, NULL, (unsigned)thread_count + 1);
    for (int i = 0; i < thread_count; i++) {
        workers[i].id = i;
        workers[i].rng.state = 0xfa15e5a7ull + (uint64_t)i;
        workers[i].objects = calloc(objects_per_thread, sizeof *workers[i].objects);
        if (!workers[i].objects)
            die("out of memory");
        if (pthread_create(&ids[i], NULL, run_worker, &workers[i]))
            die("pthread_create failed");
    }
    struct rng dealer_rng = { 0xdea1e5ull };
    for (uint64_t r = 0; r < rounds; r++) {
        pthread_barrier_wait(&start_line);        /* active phase runs */
        deal_batch(&dealer_rng, r);
        pthread_barrier_wait(&dealt);             /* passive phase runs */
        pthread_barrier_wait(&start_line);        /* round over */
    }
    uint64_t writes = 0, checksum = 0;
    for (int i = 0; i < thread_count; i++) {
        pthread_join(ids[i], NULL);
        writes += workers[i].writes;
        checksum += workers[i].checksum;
        free(workers[i].objects);
    }
    printf("falseshare threads=%d writes=%llu checksum=%016llx\n", thread_count,
           (unsigned long long)writes, (unsigned long long)checksum);
    pthread_barrier_destroy(&start_line);
    pthread_barrier_destroy(&dealt);
    free(dealer_batch);
    free(ids);
    free(workers);
    return 0;
}
