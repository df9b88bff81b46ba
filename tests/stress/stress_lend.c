/* stress_lend.c - blocks of many sizes in the free space of sparse slabs
 * (liballoc's lenders, lend.c), freed by the thread that made them and by
 * another.
 *
 * Each round, a producer fills slabs with small blocks, frees nine in ten
 * at random and lets the rest idle (the slabs become lenders once two of
 * the trimmer's looks 100 ms apart, each made when the heap takes a slab,
 * saw them unchanged); then it allocates blocks of 200 B to 4 KiB, most of
 * which land in the holes.  Of those it frees a third itself (frees into
 * its own lenders, and lending again), keeps a third to the end and hands
 * a third to a consumer, which checks each, reads its usable size,
 * reallocs one in four (a foreign lent block, grown or shrunk) and frees
 * it (remote frees, which the owner takes when it next lends).  Then the
 * small sizes come back while the kept blocks live in the holes (lenders
 * serving their own class from free lists), a third of them handed to the
 * consumer too.  The survivors are checked and freed at the end of the
 * round.  Under the
 * system allocator it is just a producer/consumer test.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stress.h"

#define QUEUE 256

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  stress_block items[QUEUE];
  size_t head, count;
  bool done;
} queue;

static void queue_put(queue *q, stress_block b)
{
  pthread_mutex_lock(&q->lock);
  while (q->count == QUEUE)
    pthread_cond_wait(&q->cond, &q->lock);
  q->items[(q->head + q->count++) % QUEUE] = b;
  pthread_cond_broadcast(&q->cond);
  pthread_mutex_unlock(&q->lock);
}

/* The next block, or false once the producer is done and the queue empty. */
static bool queue_take(queue *q, stress_block *b)
{
  pthread_mutex_lock(&q->lock);
  while (!q->count && !q->done)
    pthread_cond_wait(&q->cond, &q->lock);
  bool got = q->count != 0;
  if (got) {
    *b = q->items[q->head];
    q->head = (q->head + 1) % QUEUE;
    q->count--;
    pthread_cond_broadcast(&q->cond);
  }
  pthread_mutex_unlock(&q->lock);
  return got;
}

static void queue_close(queue *q)
{
  pthread_mutex_lock(&q->lock);
  q->done = true;
  pthread_cond_broadcast(&q->cond);
  pthread_mutex_unlock(&q->lock);
}

static bool make(stress_rng *rng, stress_block *b, size_t lo, size_t hi)
{
  b->size = stress_rng_range(rng, lo, hi);
  b->seed = stress_fresh_seed(rng);
  b->p = malloc(b->size);
  if (!b->p) {
    stress_fail("malloc(%zu) returned NULL", b->size);
    return false;
  }
  stress_block_fill(b);
  return true;
}

static void check_and_free(stress_block *b, const char *who)
{
  stress_block_check(b, who);
  free(b->p);
}

/* Take and give back slabs of 8 KiB blocks: each take is a look of the
 * trimmer's at the heap's sparse slabs. */
static void take_slabs(void)
{
  enum { N = 2048 };
  void *p[N];
  for (size_t i = 0; i < N; i++)
    p[i] = malloc(8192);
  for (size_t i = 0; i < N; i++)
    free(p[i]);
}

/* A thread's seed and the queue between the two. */
typedef struct {
  uint64_t seed;
  queue *q;
} role_arg;

static void *producer(void *argp)
{
  role_arg *arg = argp;
  stress_rng rng;
  stress_rng_seed(&rng, arg->seed);
  size_t nsmall = stress_count(40000, 8000), nbig = stress_count(20000, 4000);
  stress_block *small = calloc(nsmall, sizeof *small), *kept = calloc(nbig, sizeof *kept);
  if (!small || !kept) {
    stress_fail("calloc of the tables failed");
    queue_close(arg->q);
    return NULL;
  }
  for (size_t i = 0; i < nsmall; i++)
    if (!make(&rng, &small[i], 64, 200)) {
      nsmall = i;
      break;
    }
  for (size_t i = 0; i < nsmall; i++)
    if (stress_rng_below(&rng, 10)) {
      check_and_free(&small[i], "thinned small block");
      small[i].p = NULL;
    }
  take_slabs();
  usleep(150000);
  take_slabs();
  size_t nkept = 0;
  for (size_t i = 0; i < nbig; i++) {
    stress_block b;
    if (!make(&rng, &b, 200, 4096))
      break;
    switch (stress_rng_below(&rng, 3)) {
    case 0: check_and_free(&b, "block freed by its thread"); break;
    case 1: kept[nkept++] = b; break;
    default: queue_put(arg->q, b); break;
    }
  }
  /* The small classes come back around the kept blocks (their lenders
   * serve them from free lists); a third of them go to the consumer. */
  for (size_t i = 0; i < nsmall; i++) {
    if (small[i].p || !make(&rng, &small[i], 64, 200))
      continue;
    if (stress_rng_below(&rng, 3) == 0) {
      queue_put(arg->q, small[i]);
      small[i].p = NULL;
    }
  }
  queue_close(arg->q);
  for (size_t i = 0; i < nkept; i++)
    check_and_free(&kept[i], "kept block");
  for (size_t i = 0; i < nsmall; i++)
    if (small[i].p)
      check_and_free(&small[i], "surviving small block");
  free(kept);
  free(small);
  return NULL;
}

static void *consumer(void *argp)
{
  role_arg *arg = argp;
  stress_rng rng;
  stress_rng_seed(&rng, arg->seed);
  stress_block b;
  while (queue_take(arg->q, &b)) {
    stress_block_check(&b, "handed-over block");
    if (malloc_usable_size(b.p) < b.size)
      stress_fail("usable size %zu of a handed-over block of %zu", malloc_usable_size(b.p), b.size);
    if (stress_rng_below(&rng, 4) == 0) {
      size_t size = stress_rng_range(&rng, 100, 6000);
      void *p = realloc(b.p, size);
      if (!p) {
        stress_fail("realloc(%p, %zu) returned NULL", b.p, size);
        free(b.p);
        continue;
      }
      stress_pattern_check_prefix(p, b.size, b.seed, size, "realloc'ed handed-over block");
      b.p = p;
      b.size = size;
      b.seed = stress_fresh_seed(&rng);
      stress_block_fill(&b);
    }
    check_and_free(&b, "handed-over block");
  }
  return NULL;
}

static void test_lent_blocks_freed_here_and_there(void **state)
{
  (void)state;
  size_t rounds = stress_count(3, 2);
  double t0 = stress_now();
  for (size_t r = 0; r < rounds; r++) {
    queue q = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    role_arg pa = {.seed = 9100 + r, .q = &q};
    role_arg ca = {.seed = 9200 + r, .q = &q};
    pthread_t p, c;
    if (pthread_create(&p, NULL, producer, &pa) || pthread_create(&c, NULL, consumer, &ca)) {
      stress_fail("pthread_create failed");
      break;
    }
    pthread_join(p, NULL);
    pthread_join(c, NULL);
  }
  stress_note("lend: %zu rounds, %.2f s", rounds, stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    STRESS_TEST(test_lent_blocks_freed_here_and_there),
  };
  STRESS_MAIN("stress_lend", tests);
}
