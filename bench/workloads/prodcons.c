/* prodcons.c - producer/consumer benchmark: one thread frees what another
 * allocated, all the time.
 *
 * Usage: prodcons PAIRS MESSAGES_PER_PAIR
 *
 * PAIRS producer threads each allocate MESSAGES_PER_PAIR messages (24 B ..
 * 2 KiB mostly, 2% up to 16 KiB: the sizes of requests, log lines, queue
 * items), mark them and push them into a bounded single-producer/
 * single-consumer ring; the pair's consumer thread pops, checks and frees
 * them.  Unlike xthread, where a fifth of the frees are remote, here EVERY
 * free is remote: it measures how an allocator returns memory to the thread
 * that owns it (or lets the consumer keep it) and whether the producer's
 * memory grows while the consumer lags.
 *
 * The ring is lock-free (one writer index, one reader index); a thread that
 * finds it full or empty yields its CPU instead of spinning, which matters
 * on a 2-CPU machine with more threads than CPUs.  Prints the message count
 * and a checksum that does not depend on scheduling.
 *
 * Threads are pinned: both threads of pair k to the k-th CPU the process
 * may use (counting round), so each pair takes turns on its CPU - the
 * producer fills the ring, yields, the consumer empties it - and every free
 * is still another thread's.  Left to the scheduler, where it happened to
 * place the threads decided the run: under every allocator of bench/run
 * runs took either about 0.3 s or 1.0-1.9 s (2 CPUs), and with each pair
 * split across two CPUs the same happened from one minute to the next
 * (each thread's yield then hands its CPU to a thread of the other pair).
 * Cross-CPU frees are xthread's and remotefree's subject.
 * PRODCONS_NO_PIN=1 leaves placement to the scheduler.
 */
#define _GNU_SOURCE   /* pthread_setaffinity_np, CPU_SET */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "bench_common.h"

#define RING_SLOTS 1024                 /* a power of two */
#define CACHE_LINE 64

struct message {
    uint64_t tag;
    uint64_t size;
};

/* The two indices live on separate cache lines: producer and consumer would
 * otherwise slow each other down in a way that has nothing to do with the
 * allocator. */
struct ring {
    _Alignas(CACHE_LINE) atomic_size_t head;   /* next slot to write */
    _Alignas(CACHE_LINE) atomic_size_t tail;   /* next slot to read */
    _Alignas(CACHE_LINE) struct message *slots[RING_SLOTS];
};

struct pair {
    int id;
    uint64_t messages;
    struct ring ring;
    uint64_t checksum;      /* written by the consumer */
};

/* Mostly 24 B .. 2 KiB, a tail up to 16 KiB. */
static size_t pick_message_size(struct rng *rng)
{
    uint64_t r = rng_below(rng, 100);
    if (r < 70)
        return rng_size_between(rng, 24, 256);   /* >= 24: tag, size, tail mark */
    if (r < 98)
        return rng_size_between(rng, 257, 2048);
    return rng_size_between(rng, 2049, 16384);
}

static void ring_push(struct ring *ring, struct message *m)
{
    size_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    while (head - atomic_load_explicit(&ring->tail, memory_order_acquire) == RING_SLOTS)
        sched_yield();
    ring->slots[head % RING_SLOTS] = m;
    atomic_store_explicit(&ring->head, head + 1, memory_order_release);
}

static struct message *ring_pop(struct ring *ring)
{
    size_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    while (atomic_load_explicit(&ring->head, memory_order_acquire) == tail)
        sched_yield();
    struct message *m = ring->slots[tail % RING_SLOTS];
    atomic_store_explicit(&ring->tail, tail + 1, memory_order_release);
    return m;
}

/* The CPUs the process may use, in order, and whether to pin at all. */
static cpu_set_t allowed;
static int nallowed;

static void pin_to_slot(int slot)
{
    if (nallowed == 0)
        return;
    int want = slot % nallowed;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &allowed) && want-- == 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            pthread_setaffinity_np(pthread_self(), sizeof one, &one);   /* best effort */
            return;
        }
    }
}

static void *produce(void *arg)
{
    struct pair *p = arg;
    pin_to_slot(p->id);
    struct rng rng = { 0x9d0d0ce5ull + (uint64_t)p->id };
    for (uint64_t i = 0; i < p->messages; i++) {
        size_t size = pick_message_size(&rng);
        struct message *m = checked_malloc(size);
        uint64_t tag = ((uint64_t)(p->id + 1) << 48) | (i + 1);
        mark_object(m, size, tag);
        m->size = size;                 /* bytes 8..16: the size travels along */
        ring_push(&p->ring, m);
    }
    return NULL;
}

static void *consume(void *arg)
{
    struct pair *p = arg;
    pin_to_slot(p->id);
    uint64_t checksum = 0;
    for (uint64_t i = 0; i < p->messages; i++) {
        struct message *m = ring_pop(&p->ring);
        size_t size = m->size;
        check_object(m, size, m->tag, "consumer");
        checksum += object_value(m->tag, size);
        free(m);
    }
    p->checksum = checksum;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PAIRS MESSAGES_PER_PAIR\n", argv[0]);
        return 2;
    }
    int pairs = (int)parse_count(argv[1], "PAIRS", 1, 256);
    uint64_t messages = parse_count(argv[2], "MESSAGES_PER_PAIR", 1, UINT64_MAX / 4);
    const char *no_pin = getenv("PRODCONS_NO_PIN");
    if (!(no_pin && *no_pin && strcmp(no_pin, "0") != 0) &&
        sched_getaffinity(0, sizeof allowed, &allowed) == 0)
        nallowed = CPU_COUNT(&allowed);

    struct pair *all = aligned_alloc(CACHE_LINE, sizeof *all * (size_t)pairs);
    pthread_t *threads = calloc(2 * (size_t)pairs, sizeof *threads);
    if (!all || !threads)
        die("out of memory");
    memset(all, 0, sizeof *all * (size_t)pairs);
    for (int i = 0; i < pairs; i++) {
        all[i].id = i;
        all[i].messages = messages;
        if (pthread_create(&threads[2 * i], NULL, consume, &all[i]) ||
            pthread_create(&threads[2 * i + 1], NULL, produce, &all[i]))
            die("pthread_create failed");
    }
    uint64_t checksum = 0;
    for (int i = 0; i < 2 * pairs; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < pairs; i++)
        checksum += all[i].checksum;
    printf("prodcons pairs=%d messages=%llu checksum=%016llx\n", pairs,
           (unsigned long long)(messages * (uint64_t)pairs), (unsigned long long)checksum);
    free(threads);
    free(all);
    return 0;
}
