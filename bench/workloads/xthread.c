/* xthread.c - threaded allocation benchmark with cross-thread frees.
 *
 * Usage: xthread THREADS OPS_PER_THREAD [SLOTS_PER_THREAD]
 *
 * Each of THREADS threads runs OPS_PER_THREAD steps over its own table of
 * SLOTS_PER_THREAD (default 4096) object slots.  A step picks a random slot;
 * if it holds an object, that object is, by chance,
 *   - reallocated to a new random size (5%),
 *   - or handed to the next thread through that thread's inbox, which frees
 *     it there: a cross-thread free (20%, objects of >= 32 bytes),
 *   - or freed by this thread (the rest),
 * and then a new object of a random size is put in the slot.  Slots are hit
 * at random, so lifetimes are random too.  Sizes are mostly 8 B .. 4 KiB, 2%
 * up to 64 KiB.  Inboxes are drained every DRAIN_INTERVAL steps, and a
 * thread that has finished its steps keeps draining until all have: else the
 * inbox of an early finisher would pile up the others' hand-offs, and peak
 * RSS would measure thread skew instead of the allocator.
 *
 * This is the pattern that hurts allocators most in producer/consumer
 * programs: memory freed by a thread that did not allocate it, while that
 * thread keeps allocating.  Everything is seeded, so the work is the same
 * under every allocator; the program prints the operation count and a
 * checksum that does not depend on thread scheduling (see bench_common.h).
 * It measures nothing itself: bench/run times it from outside.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "bench_common.h"
#include "bench_probe.h"

#define DEFAULT_SLOTS 4096
#define REALLOC_PERCENT 5
#define HANDOFF_PERCENT 20
#define HANDOFF_MIN_SIZE 32 /* room for tag, link, size and tail mark */
#define DRAIN_INTERVAL 64

/* A handed-off object carries its own queue link and size, after its tag:
 * [0,8) tag  [8,16) next  [16,24) size  ...  [size-8,size) tail mark */
struct handoff {
    uint64_t tag;
    struct handoff *next;
    uint64_t size;
};

struct slot {
    void *ptr;
    size_t size;
    uint64_t tag;
};

struct inbox {
    pthread_mutex_t lock;
    struct handoff *head;
};

struct worker {
    int id;
    struct rng rng;
    uint64_t ops;          /* mallocs + frees + reallocs done by this thread */
    uint64_t checksum;     /* sum of object_value() of the objects it freed */
    uint64_t next_tag;
    struct slot *slots;
    struct inbox inbox;
    struct worker *next_worker;   /* receives this thread's hand-offs */
    char pad[64];                 /* keep workers' hot fields apart */
};

static uint64_t ops_per_thread;
static size_t slots_per_thread;
static atomic_int producers_running;

/* 8 B .. 4 KiB most of the time, with a tail up to 64 KiB. */
static size_t pick_size(struct rng *rng)
{
    uint64_t r = rng_below(rng, 100);
    if (r < 60)
        return rng_size_between(rng, MIN_OBJECT_SIZE, 128);
    if (r < 90)
        return rng_size_between(rng, 129, 1024);
    if (r < 98)
        return rng_size_between(rng, 1025, 4096);
    return rng_size_between(rng, 4097, 65536);
}

/* Tags are unique across threads: thread id in the top bits. */
static uint64_t new_tag(struct worker *w)
{
    return ((uint64_t)(w->id + 1) << 48) | ++w->next_tag;
}

static void fill_slot(struct worker *w, struct slot *s)
{
    s->size = pick_size(&w->rng);
    s->tag = new_tag(w);
    s->ptr = checked_malloc(s->size);
    mark_object(s->ptr, s->size, s->tag);
    w->ops++;
}

static void free_slot(struct worker *w, struct slot *s)
{
    check_object(s->ptr, s->size, s->tag, "local free");
    w->checksum += object_value(s->tag, s->size);
    free(s->ptr);
    s->ptr = NULL;
    w->ops++;
}

static void realloc_slot(struct worker *w, struct slot *s)
{
    size_t old_size = s->size, new_size = pick_size(&w->rng);
    void *p = realloc(s->ptr, new_size);
    if (!p)
        die("realloc(%zu) failed", new_size);
    /* realloc must keep the common prefix: the head mark always, the old
     * tail mark too when the object grew. */
    uint64_t head;
    memcpy(&head, p, sizeof head);
    if (head != s->tag)
        die("realloc lost the head of object tag %#llx", (unsigned long long)s->tag);
    if (new_size >= old_size)
        check_object(p, old_size, s->tag, "realloc grow");
    s->ptr = p;
    s->size = new_size;
    mark_object(p, new_size, s->tag);
    w->ops++;
}

/* Give the object in `s` to the next thread, which will check and free it. */
static void hand_off_slot(struct worker *w, struct slot *s)
{
    check_object(s->ptr, s->size, s->tag, "hand-off");
    struct handoff *h = s->ptr;
    h->size = s->size;
    struct inbox *box = &w->next_worker->inbox;
    pthread_mutex_lock(&box->lock);
    h->next = box->head;
    box->head = h;
    pthread_mutex_unlock(&box->lock);
    s->ptr = NULL;
}

/* Free everything other threads handed to w (the cross-thread frees). */
static void drain_inbox(struct worker *w)
{
    pthread_mutex_lock(&w->inbox.lock);
    struct handoff *h = w->inbox.head;
    w->inbox.head = NULL;
    pthread_mutex_unlock(&w->inbox.lock);
    while (h) {
        struct handoff *next = h->next;
        check_object(h, h->size, h->tag, "cross-thread free");
        w->checksum += object_value(h->tag, h->size);
        free(h);
        w->ops++;
        h = next;
    }
}

static void step(struct worker *w)
{
    struct slot *s = &w->slots[rng_below(&w->rng, slots_per_thread)];
    if (s->ptr) {
        uint64_t r = rng_below(&w->rng, 100);
        if (r < REALLOC_PERCENT) {
            realloc_slot(w, s);
            return;
        }
        if (r < REALLOC_PERCENT + HANDOFF_PERCENT && s->size >= HANDOFF_MIN_SIZE)
            hand_off_slot(w, s);
        else
            free_slot(w, s);
    }
    fill_slot(w, s);
}

/* Every hand-off happens before its producer's decrement of
 * producers_running, so once it reads 0, one more drain gets the last ones. */
static void keep_draining_until_all_done(struct worker *w)
{
    const struct timespec pause = { 0, 50 * 1000 };   /* 50 us: little backlog, little spinning */
    for (;;) {
        int running = atomic_load_explicit(&producers_running, memory_order_acquire);
        drain_inbox(w);
        if (running == 0)
            return;
        nanosleep(&pause, NULL);
    }
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    w->slots = calloc(slots_per_thread, sizeof *w->slots);
    if (!w->slots)
        die("cannot allocate the slot table");
    for (uint64_t i = 0; i < ops_per_thread; i++) {
        step(w);
        if (i % DRAIN_INTERVAL == 0)
            drain_inbox(w);
        if (w->id == 0 && i == ops_per_thread / 2)
            stats_probe("midway");      /* the others keep running: near the peak */
    }
    for (size_t i = 0; i < slots_per_thread; i++)
        if (w->slots[i].ptr)
            free_slot(w, &w->slots[i]);
    free(w->slots);
    atomic_fetch_sub_explicit(&producers_running, 1, memory_order_release);
    keep_draining_until_all_done(w);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s THREADS OPS_PER_THREAD [SLOTS_PER_THREAD]\n", argv[0]);
        return 2;
    }
    int threads = (int)parse_count(argv[1], "THREADS", 1, 1024);
    ops_per_thread = parse_count(argv[2], "OPS_PER_THREAD", 1, UINT64_MAX / 4);
    slots_per_thread = argc > 3 ? parse_count(argv[3], "SLOTS_PER_THREAD", 1, 1u << 24)
                                : DEFAULT_SLOTS;

    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    if (!workers || !ids)
        die("out of memory");
    atomic_store(&producers_running, threads);
    for (int i = 0; i < threads; i++) {
        workers[i].id = i;
        workers[i].rng.state = 0x5eed0000ull + (uint64_t)i;
        workers[i].next_worker = &workers[(i + 1) % threads];
        pthread_mutex_init(&workers[i].inbox.lock, NULL);
    }
    for (int i = 0; i < threads; i++)
        if (pthread_create(&ids[i], NULL, run_worker, &workers[i]))
            die("pthread_create failed");

    uint64_t ops = 0, checksum = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(ids[i], NULL);
        ops += workers[i].ops;
        checksum += workers[i].checksum;
    }
    printf("xthread threads=%d ops=%llu checksum=%016llx\n", threads,
           (unsigned long long)ops, (unsigned long long)checksum);
    free(ids);
    free(workers);
    return 0;
}
