/* remotefree.c - most frees by another thread than the allocating one, with
 * more threads than CPUs.
 *
 * Usage: remotefree THREADS BATCHES [BATCH]
 *
 * Each of THREADS threads allocates BATCHES batches of BATCH (default 64)
 * objects of 24 B .. 2 KiB.  It frees one batch in LOCAL_PER_MILLE itself
 * and posts the others to the mailbox of another thread, chosen at random;
 * between batches it empties its own mailbox and frees what the others sent.
 * A mailbox holds at most MAILBOX_CAP batches: a thread that finds the one
 * it chose full empties its own and yields until there is room, so memory
 * in flight stays bounded, no two threads can wait for each other, and the
 * share of remote frees does not depend on the schedule (with a cap but no
 * waiting, a fast allocator's threads fill the mailboxes within their time
 * slice and free locally).  With 8 threads on 2 CPUs, most frees land in
 * heaps whose owners are busy allocating or not running at all.
 *
 * stdout: the object count and a checksum of every freed object (the same
 * under any schedule).  stderr ("metric" lines): remote_share (frees by
 * another thread / all frees), peak_rss_mib, cpu_s.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "bench_common.h"
#include "bench_probe.h"

#define DEFAULT_BATCH 64
#define MAILBOX_CAP 32
#define LOCAL_PER_MILLE 100
#define MIN_SIZE 24          /* room for tag, size and tail mark */
#define MAX_SIZE 2048

/* [0,8) tag  [8,16) size  ...  [size-8,size) tail mark */
struct object {
    uint64_t tag;
    uint64_t size;
};

struct mailbox {
    pthread_mutex_t lock;
    struct object **batches[MAILBOX_CAP];
    int count;
};

struct worker {
    int id;
    struct rng rng;
    struct mailbox mailbox;
    uint64_t checksum;
    uint64_t remote_frees, local_frees;
    char pad[64];
};

static int thread_count;
static uint64_t batches_per_thread, batch_size;
static struct worker *workers;
static atomic_int producers_left;

static uint64_t free_batch(struct object **batch)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < batch_size; i++) {
        struct object *o = batch[i];
        uint64_t tag = o->tag, size = o->size;
        check_object(o, size, tag, "remotefree");
        sum += object_value(tag, size);
        free(o);
    }
    free(batch);
    return sum;
}

static int try_post(struct mailbox *m, struct object **batch)
{
    int posted = 0;
    pthread_mutex_lock(&m->lock);
    if (m->count < MAILBOX_CAP) {
        m->batches[m->count++] = batch;
        posted = 1;
    }
    pthread_mutex_unlock(&m->lock);
    return posted;
}

/* Free every batch waiting in w's mailbox: the remote frees. */
static void drain(struct worker *w)
{
    struct object **taken[MAILBOX_CAP];
    pthread_mutex_lock(&w->mailbox.lock);
    int n = w->mailbox.count;
    memcpy(taken, w->mailbox.batches, (size_t)n * sizeof taken[0]);
    w->mailbox.count = 0;
    pthread_mutex_unlock(&w->mailbox.lock);
    for (int i = 0; i < n; i++)
        w->checksum += free_batch(taken[i]);
    w->remote_frees += (uint64_t)n * batch_size;
}

/* Post to mailbox `to`, emptying our own while it is full. */
static void post(struct worker *w, int to, struct object **batch)
{
    while (!try_post(&workers[to].mailbox, batch)) {
        drain(w);
        sched_yield();
    }
}

static struct object **make_batch(struct worker *w, uint64_t number)
{
    struct object **batch = checked_malloc(batch_size * sizeof *batch);
    for (uint64_t i = 0; i < batch_size; i++) {
        size_t size = rng_size_between(&w->rng, MIN_SIZE, MAX_SIZE);
        uint64_t tag = ((uint64_t)(w->id + 1) << 48) | (number * batch_size + i);
        batch[i] = checked_malloc(size);
        mark_object(batch[i], size, tag);
        batch[i]->size = size;
    }
    return batch;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    for (uint64_t b = 0; b < batches_per_thread; b++) {
        struct object **batch = make_batch(w, b);
        if (thread_count == 1 || rng_below(&w->rng, 1000) < LOCAL_PER_MILLE) {
            w->checksum += free_batch(batch);
            w->local_frees += batch_size;
        } else {
            post(w, (w->id + 1 + (int)rng_below(&w->rng, (uint64_t)thread_count - 1)) % thread_count,
                 batch);
        }
        drain(w);
        if (w->id == 0 && batches_per_thread >= 8 && b % (batches_per_thread / 8) == 0)
            stats_probe("running");     /* eight times; the others keep running */
    }
    /* Keep emptying the mailbox until nobody can post to it any more. */
    atomic_fetch_sub(&producers_left, 1);
    while (atomic_load(&producers_left) > 0) {
        drain(w);
        sched_yield();
    }
    drain(w);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s THREADS BATCHES [BATCH]\n", argv[0]);
        return 2;
    }
    thread_count = (int)parse_count(argv[1], "THREADS", 1, 256);
    batches_per_thread = parse_count(argv[2], "BATCHES", 1, 1ull << 32);
    batch_size = argc == 4 ? parse_count(argv[3], "BATCH", 1, 1u << 20) : DEFAULT_BATCH;

    workers = calloc((size_t)thread_count, sizeof *workers);
    pthread_t *ids = calloc((size_t)thread_count, sizeof *ids);
    if (!workers || !ids)
        die("out of memory");
    atomic_store(&producers_left, thread_count);
    for (int i = 0; i < thread_count; i++) {
        workers[i].id = i;
        workers[i].rng.state = 0x7e307eull + (uint64_t)i;
        pthread_mutex_init(&workers[i].mailbox.lock, NULL);
    }
    for (int i = 0; i < thread_count; i++)
        if (pthread_create(&ids[i], NULL, work, &workers[i]))
            die("pthread_create failed");
    uint64_t checksum = 0, remote = 0, local = 0;
    for (int i = 0; i < thread_count; i++) {
        pthread_join(ids[i], NULL);
        checksum += workers[i].checksum;
        remote += workers[i].remote_frees;
        local += workers[i].local_frees;
    }
    stats_probe("end");
    report_metric("remote_share", (double)remote / (double)(remote + local));
    report_metric("peak_rss_mib", peak_rss_kib() / 1024.0);
    report_cpu_seconds();
    printf("remotefree threads=%d objects=%llu checksum=%016llx\n", thread_count,
           (unsigned long long)(remote + local), (unsigned long long)checksum);
    free(ids);
    free(workers);
    return 0;
}
