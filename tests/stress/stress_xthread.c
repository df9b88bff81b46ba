/* stress_xthread.c - blocks freed by a thread other than the one that
 * allocated them.
 *
 * Cross-thread frees are the hardest path of a thread-caching allocator: the
 * freeing thread does not own the slab, so the block goes through an atomic
 * remote-free list that the owner collects later, racing with the owner's own
 * allocations and frees.  Two shapes of traffic:
 *   - producer/consumer: producers allocate mixed sizes (8 B .. 256 KiB,
 *     mostly small) and pass batches through a mutex-protected queue to
 *     consumers, which check, sometimes realloc (a foreign block) and free;
 *   - a ring: every thread allocates for its right neighbour through a
 *     lock-free inbox and frees what its left neighbour allocated, so every
 *     thread is at once an owner receiving remote frees and a remote freer.
 * About 1.5 million objects at scale 1.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "stress.h"

#define MAX_BLOCK (256 * STRESS_KIB)

/* Allocate a block of a skewed random size and fill it with a fresh pattern. */
static bool make_block(stress_rng *rng, stress_block *b)
{
  b->size = stress_size_skewed(rng, MAX_BLOCK);
  b->seed = stress_fresh_seed(rng);
  b->p = malloc(b->size);
  if (!b->p) {
    stress_fail("malloc(%zu) returned NULL", b->size);
    return false;
  }
  stress_block_fill(b);
  return true;
}

/* Check a block received from another thread, and free it; one in
 * `realloc_every` is first realloc'ed (grown or shrunk) by the receiver, which
 * must preserve the prefix although the block belongs to another thread. */
static void check_and_free_foreign(stress_block *b, stress_rng *rng, unsigned realloc_every)
{
  stress_block_check(b, "cross-thread block");
  if (stress_rng_below(rng, realloc_every) == 0) {
    size_t new_size = stress_size_skewed(rng, MAX_BLOCK);
    void *q = realloc(b->p, new_size);
    if (!q) {
      stress_fail("realloc(%p, %zu) of a foreign block returned NULL", b->p, new_size);
      free(b->p);
      return;
    }
    stress_pattern_check_prefix(q, b->size, b->seed, new_size, "realloc'ed cross-thread block");
    b->p = q;
    b->size = new_size;
  }
  free(b->p);
}

/* ---- producer/consumer through a bounded mutex queue ----------------------- */

#define BATCH 64
#define QUEUE_CAP 128

/* A batch is itself malloc'ed by the producer and freed by the consumer. */
typedef struct {
  size_t count;
  stress_block blocks[BATCH];
} batch;

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  batch *ring[QUEUE_CAP];
  size_t head, count;
  bool closed;
} batch_queue;

static void queue_init(batch_queue *q)
{
  memset(q, 0, sizeof *q);
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->not_empty, NULL);
  pthread_cond_init(&q->not_full, NULL);
}

static void queue_destroy(batch_queue *q)
{
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->not_empty);
  pthread_cond_destroy(&q->not_full);
}

static void queue_push(batch_queue *q, batch *b)
{
  pthread_mutex_lock(&q->lock);
  while (q->count == QUEUE_CAP)
    pthread_cond_wait(&q->not_full, &q->lock);
  q->ring[(q->head + q->count) % QUEUE_CAP] = b;
  q->count++;
  pthread_cond_signal(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

/* Next batch, or NULL once the queue is closed and empty. */
static batch *queue_pop(batch_queue *q)
{
  pthread_mutex_lock(&q->lock);
  while (q->count == 0 && !q->closed)
    pthread_cond_wait(&q->not_empty, &q->lock);
  batch *b = NULL;
  if (q->count > 0) {
    b = q->ring[q->head];
    q->head = (q->head + 1) % QUEUE_CAP;
    q->count--;
    pthread_cond_signal(&q->not_full);
  }
  pthread_mutex_unlock(&q->lock);
  return b;
}

static void queue_close(batch_queue *q)
{
  pthread_mutex_lock(&q->lock);
  q->closed = true;
  pthread_cond_broadcast(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

typedef struct {
  batch_queue *queue;
  size_t objects;      /* producer: how many to make; consumer: how many freed */
  uint64_t seed;
} pc_arg;

static void *producer(void *arg)
{
  pc_arg *a = arg;
  stress_rng rng;
  stress_rng_seed(&rng, a->seed);
  size_t made = 0;
  while (made < a->objects) {
    batch *b = malloc(sizeof *b);
    if (!b) {
      stress_fail("malloc(batch) returned NULL");
      return NULL;
    }
    b->count = 0;
    while (b->count < BATCH && made < a->objects) {
      if (make_block(&rng, &b->blocks[b->count]))
        b->count++;
      made++;
    }
    queue_push(a->queue, b);
  }
  return NULL;
}

static void *consumer(void *arg)
{
  pc_arg *a = arg;
  stress_rng rng;
  stress_rng_seed(&rng, a->seed);
  batch *b;
  while ((b = queue_pop(a->queue))) {
    for (size_t i = 0; i < b->count; i++)
      check_and_free_foreign(&b->blocks[i], &rng, 16);
    a->objects += b->count;
    free(b);
  }
  return NULL;
}

#define PRODUCERS 3
#define CONSUMERS 3

static void test_producer_consumer_cross_thread_free(void **state)
{
  (void)state;
  size_t total = stress_count(1000000, 20000);
  batch_queue q;
  queue_init(&q);
  pc_arg prod[PRODUCERS], cons[CONSUMERS];
  pthread_t pt[PRODUCERS], ct[CONSUMERS];
  double t0 = stress_now();

  for (size_t i = 0; i < CONSUMERS; i++) {
    cons[i] = (pc_arg){.queue = &q, .objects = 0, .seed = 1000 + i};
    assert_int_equal(pthread_create(&ct[i], NULL, consumer, &cons[i]), 0);
  }
  for (size_t i = 0; i < PRODUCERS; i++) {
    prod[i] = (pc_arg){.queue = &q, .objects = total / PRODUCERS, .seed = 2000 + i};
    assert_int_equal(pthread_create(&pt[i], NULL, producer, &prod[i]), 0);
  }
  for (size_t i = 0; i < PRODUCERS; i++)
    pthread_join(pt[i], NULL);
  queue_close(&q);
  size_t consumed = 0;
  for (size_t i = 0; i < CONSUMERS; i++) {
    pthread_join(ct[i], NULL);
    consumed += cons[i].objects;
  }
  queue_destroy(&q);

  stress_note("producer/consumer: %zu objects in %.2f s", consumed, stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
  assert_int_equal(consumed, (total / PRODUCERS) * PRODUCERS);
}

/* ---- a ring of threads with lock-free inboxes ---------------------------------- */

/* A node is malloc'ed by the sender and freed by the receiver, like the
 * block it describes. */
typedef struct node {
  struct node *next;
  stress_block block;
} node;

/* Multi-producer, single-consumer inbox: a Treiber stack that the owner
 * empties with one exchange, so there is no ABA problem. */
typedef struct {
  _Atomic(node *) top;
  atomic_size_t pending;
} inbox;

static void inbox_push(inbox *in, node *n)
{
  /* Count first, so `pending` never drops below the real backlog. */
  atomic_fetch_add_explicit(&in->pending, 1, memory_order_relaxed);
  node *top = atomic_load_explicit(&in->top, memory_order_relaxed);
  do {
    n->next = top;
  } while (!atomic_compare_exchange_weak_explicit(&in->top, &top, n, memory_order_release,
                                                  memory_order_relaxed));
}

#define RING_THREADS 4
/* A sender waits (draining its own inbox) while its neighbour has this many
 * blocks unclaimed, so memory stays bounded when the neighbour is not
 * scheduled. */
#define RING_BACKLOG 4096

typedef struct {
  inbox *inboxes;      /* RING_THREADS of them */
  size_t index;
  size_t objects;      /* to send; also to receive */
  size_t received;
  stress_rng rng;
} ring_arg;

/* Free everything in our inbox; returns how many blocks were freed. */
static size_t drain_inbox(ring_arg *a)
{
  inbox *in = &a->inboxes[a->index];
  node *n = atomic_exchange_explicit(&in->top, NULL, memory_order_acquire);
  size_t count = 0;
  while (n) {
    node *next = n->next;
    check_and_free_foreign(&n->block, &a->rng, 32);
    free(n);
    n = next;
    count++;
  }
  atomic_fetch_sub_explicit(&in->pending, count, memory_order_relaxed);
  a->received += count;
  return count;
}

static void send_one(ring_arg *a)
{
  inbox *right = &a->inboxes[(a->index + 1) % RING_THREADS];
  while (atomic_load_explicit(&right->pending, memory_order_relaxed) > RING_BACKLOG) {
    if (drain_inbox(a) == 0)
      sched_yield();
  }
  node *n = malloc(sizeof *n);
  if (!n) {
    stress_fail("malloc(node) returned NULL");
    return;
  }
  if (!make_block(&a->rng, &n->block)) {
    free(n);
    return;
  }
  inbox_push(right, n);
}

static void *ring_thread(void *arg)
{
  ring_arg *a = arg;
  for (size_t sent = 0; sent < a->objects; sent++) {
    send_one(a);
    if (sent % 32 == 31)
      drain_inbox(a);
  }
  /* Our left neighbour sends exactly as many as we did (a failed allocation
   * is a recorded failure; give up waiting for it then). */
  while (a->received < a->objects) {
    if (drain_inbox(a) == 0) {
      if (stress_failure_count()) {
        stress_fail("ring thread %zu: gave up waiting after a failure", a->index);
        break;
      }
      sched_yield();
    }
  }
  return NULL;
}

static void test_ring_neighbour_frees(void **state)
{
  (void)state;
  size_t per_thread = stress_count(500000, 10000) / RING_THREADS;
  inbox inboxes[RING_THREADS];
  ring_arg args[RING_THREADS];
  for (size_t i = 0; i < RING_THREADS; i++) {
    atomic_init(&inboxes[i].top, NULL);
    atomic_init(&inboxes[i].pending, 0);
    args[i] = (ring_arg){.inboxes = inboxes, .index = i, .objects = per_thread};
    stress_rng_seed(&args[i].rng, 3000 + i);
  }
  double t0 = stress_now();
  stress_run_threads(RING_THREADS, ring_thread, args, sizeof args[0]);
  stress_note("ring: %zu objects in %.2f s", per_thread * RING_THREADS, stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
  for (size_t i = 0; i < RING_THREADS; i++) {
    assert_int_equal(args[i].received, per_thread);
    assert_null(atomic_load(&inboxes[i].top));
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    STRESS_TEST(test_producer_consumer_cross_thread_free),
    STRESS_TEST(test_ring_neighbour_frees),
  };
  STRESS_MAIN("stress_xthread", tests);
}
