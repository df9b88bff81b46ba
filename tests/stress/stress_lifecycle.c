/* stress_lifecycle.c - threads that come and go.
 *
 * A thread-caching allocator gives each thread a heap and must hand that
 * heap's memory back (or to an "abandoned" list) when the thread exits, while
 * blocks the thread allocated stay valid and freeable by anyone, forever.
 * Hundreds of short-lived threads exercise heap creation and teardown, the
 * reuse of abandoned slabs, and remote frees into slabs whose owner is gone:
 *   - waves of short-lived threads (joinable and detached) that free some of
 *     their blocks, hand some to the main thread and leave the rest to a thread
 *     of the next wave;
 *   - a thread exits holding blocks that a later thread frees while a third
 *     allocates the same sizes (likely adopting the dead thread's slabs);
 *   - thread-specific-data destructors that allocate and free after the
 *     allocator's own per-thread teardown may already have run;
 *   - threads cancelled while looping on malloc/free: if the allocator ever
 *     reaches a cancellation point while holding a lock, the process
 *     deadlocks afterwards (caught by a watchdog here).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stress.h"

#define WAVE_MAX_BLOCK (32 * STRESS_KIB)

/* An array of blocks, itself malloc'ed by whoever built it, so that freeing
 * it elsewhere is one more cross-thread free. */
typedef struct {
  stress_block *blocks;
  size_t count;
} block_list;

static void check_and_free_list(block_list *l, const char *who)
{
  for (size_t i = 0; i < l->count; i++) {
    stress_block_check(&l->blocks[i], who);
    free(l->blocks[i].p);
  }
  free(l->blocks);
  l->blocks = NULL;
  l->count = 0;
}

static bool list_alloc(block_list *l, size_t capacity)
{
  l->count = 0;
  l->blocks = malloc(capacity * sizeof *l->blocks);
  if (!l->blocks)
    stress_fail("malloc(%zu) for a block list returned NULL", capacity * sizeof *l->blocks);
  return l->blocks != NULL;
}

/* ---- waves of short-lived threads -------------------------------------------- */

/* Signalled by detached threads as their last action; the main thread waits
 * for the count to drop to zero.  The threads then still run their exit path
 * (TSD destructors, heap teardown) while main frees their blocks.  Static, so
 * that a thread still inside pthread_mutex_unlock never touches a dead stack
 * frame. */
static struct {
  pthread_mutex_t lock;
  pthread_cond_t done;
  size_t running;
} detached_countdown = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

typedef struct {
  uint64_t seed;
  size_t objects;
  block_list orphans_in;   /* left by the previous wave's thread, now exited */
  block_list handed;       /* to the main thread */
  block_list orphans_out;  /* to the next wave's thread */
  bool detached;           /* signal detached_countdown when done */
} wave_arg;

static void *wave_thread(void *arg)
{
  wave_arg *a = arg;
  stress_rng rng;
  stress_rng_seed(&rng, a->seed);

  check_and_free_list(&a->orphans_in, "block of an exited thread");

  block_list mine;
  if (list_alloc(&mine, a->objects) && list_alloc(&a->handed, a->objects) &&
      list_alloc(&a->orphans_out, a->objects)) {
    for (size_t i = 0; i < a->objects; i++) {
      stress_block b = {.size = stress_size_skewed(&rng, WAVE_MAX_BLOCK),
                        .seed = stress_fresh_seed(&rng)};
      b.p = malloc(b.size);
      if (!b.p) {
        stress_fail("malloc(%zu) returned NULL", b.size);
        break;
      }
      stress_block_fill(&b);
      /* A third each: freed here (below), handed to main, left behind. */
      switch (stress_rng_below(&rng, 3)) {
      case 0: mine.blocks[mine.count++] = b; break;
      case 1: a->handed.blocks[a->handed.count++] = b; break;
      default: a->orphans_out.blocks[a->orphans_out.count++] = b; break;
      }
    }
  }
  /* Free our own third in reverse order of allocation. */
  for (size_t i = mine.count; i-- > 0;) {
    stress_block_check(&mine.blocks[i], "own block");
    free(mine.blocks[i].p);
  }
  free(mine.blocks);

  /* After the signal `a` belongs to the main thread again: no access. */
  if (a->detached) {
    pthread_mutex_lock(&detached_countdown.lock);
    if (--detached_countdown.running == 0)
      pthread_cond_signal(&detached_countdown.done);
    pthread_mutex_unlock(&detached_countdown.lock);
  }
  return NULL;
}

#define WAVE_SIZE 32

/* Run one wave of n threads, detached or joined, and wait for all of them. */
static void run_wave(wave_arg *args, size_t n, bool detached)
{
  pthread_mutex_lock(&detached_countdown.lock);
  detached_countdown.running = n;
  pthread_mutex_unlock(&detached_countdown.lock);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  if (detached)
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);

  pthread_t tids[WAVE_SIZE];
  size_t started = 0;
  for (size_t i = 0; i < n; i++) {
    args[i].detached = detached;
    int rc = pthread_create(&tids[i], &attr, wave_thread, &args[i]);
    if (rc != 0) {
      stress_fail("pthread_create: %s", strerror(rc));
      break;
    }
    started++;
  }
  if (detached) {
    pthread_mutex_lock(&detached_countdown.lock);
    detached_countdown.running -= n - started;
    while (detached_countdown.running > 0)
      pthread_cond_wait(&detached_countdown.done, &detached_countdown.lock);
    pthread_mutex_unlock(&detached_countdown.lock);
  } else {
    for (size_t i = 0; i < started; i++)
      pthread_join(tids[i], NULL);
  }
  pthread_attr_destroy(&attr);
}

static void test_waves_of_short_lived_threads(void **state)
{
  (void)state;
  size_t nthreads = stress_count(500, 64);
  size_t per_thread = stress_count(3000, 600);
  wave_arg args[WAVE_SIZE];
  memset(args, 0, sizeof args);
  double t0 = stress_now();
  size_t waves = 0;

  for (size_t done = 0; done < nthreads; done += WAVE_SIZE, waves++) {
    size_t n = nthreads - done < WAVE_SIZE ? nthreads - done : WAVE_SIZE;
    for (size_t i = 0; i < n; i++) {
      args[i].seed = 5000 + done + i;
      args[i].objects = per_thread;
      args[i].orphans_in = args[i].orphans_out;  /* from the previous wave */
      args[i].orphans_out = (block_list){0};
    }
    run_wave(args, n, waves % 2 == 1);
    /* The threads have exited (or are exiting): their memory must stay valid. */
    for (size_t i = 0; i < n; i++)
      check_and_free_list(&args[i].handed, "block handed to main");
  }
  for (size_t i = 0; i < WAVE_SIZE; i++) {
    check_and_free_list(&args[i].orphans_in, "leftover orphan");
    check_and_free_list(&args[i].orphans_out, "leftover orphan");
  }
  stress_note("waves: %zu threads in %zu waves, %zu objects each, %.2f s", nthreads, waves,
              per_thread, stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
}

/* ---- blocks of an exited thread freed later, while others allocate ------------- */

#define ORPHAN_SIZES 6
static const size_t orphan_sizes[ORPHAN_SIZES] = {16, 48, 200, 1024, 5000, 20000};

typedef struct {
  size_t objects;
  uint64_t seed;
  block_list blocks;
} orphan_arg;

/* Allocate blocks of a few size classes, free every other one (so the dead
 * thread's slabs are partly free, partly live), keep the rest and exit. */
static void *allocate_and_exit(void *arg)
{
  orphan_arg *a = arg;
  stress_rng rng;
  stress_rng_seed(&rng, a->seed);
  if (!list_alloc(&a->blocks, a->objects))
    return NULL;
  for (size_t i = 0; i < a->objects; i++) {
    stress_block b = {.size = orphan_sizes[i % ORPHAN_SIZES], .seed = stress_fresh_seed(&rng)};
    b.p = malloc(b.size);
    if (!b.p) {
      stress_fail("malloc(%zu) returned NULL", b.size);
      break;
    }
    stress_block_fill(&b);
    if (i % 2) {
      stress_block_check(&b, "own block");
      free(b.p);
    } else {
      a->blocks.blocks[a->blocks.count++] = b;
    }
  }
  return NULL;
}

static void *free_orphans(void *arg)
{
  orphan_arg *a = arg;
  check_and_free_list(&a->blocks, "block of an exited thread");
  return NULL;
}

/* Allocates the same sizes as the dead thread, checks them (any overlap with a
 * block not yet freed by free_orphans shows up as a damaged pattern) and
 * keeps them for the main thread to free. */
static void *allocate_same_sizes(void *arg)
{
  return allocate_and_exit(arg);
}

static void test_exited_thread_blocks_freed_later(void **state)
{
  (void)state;
  size_t rounds = stress_count(40, 10);
  size_t objects = stress_count(10000, 3000);
  double t0 = stress_now();
  for (size_t r = 0; r < rounds; r++) {
    orphan_arg dead = {.objects = objects, .seed = 7000 + r};
    stress_run_threads(1, allocate_and_exit, &dead, sizeof dead);

    /* Now one thread frees the dead thread's blocks while another allocates
     * from the same classes. */
    orphan_arg args[2] = {dead, {.objects = objects, .seed = 8000 + r}};
    pthread_t freer, allocator;
    assert_int_equal(pthread_create(&freer, NULL, free_orphans, &args[0]), 0);
    assert_int_equal(pthread_create(&allocator, NULL, allocate_same_sizes, &args[1]), 0);
    pthread_join(freer, NULL);
    pthread_join(allocator, NULL);
    check_and_free_list(&args[1].blocks, "block allocated after a thread exited");
  }
  stress_note("exited-thread blocks: %zu rounds of %zu objects, %.2f s", rounds, objects,
              stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
}

/* ---- malloc in thread-specific-data destructors ---------------------------------- */

static pthread_key_t tsd_key;
static atomic_size_t tsd_destructor_calls;

/* Runs at thread exit, possibly after the allocator's own per-thread
 * destructor.  Re-setting the value makes glibc run another destructor round
 * (up to PTHREAD_DESTRUCTOR_ITERATIONS), so allocation also happens after a
 * round in which the allocator's teardown certainly ran. */
static void tsd_destructor(void *value)
{
  stress_block *b = value;
  stress_block_check(b, "TSD value");
  size_t round = b->seed & 3;
  free(b->p);
  free(b);
  atomic_fetch_add(&tsd_destructor_calls, 1);
  if (round >= 2)
    return;
  stress_block *next = malloc(sizeof *next);
  if (!next) {
    stress_fail("malloc in a TSD destructor returned NULL");
    return;
  }
  next->size = 100 + 1000 * round;
  next->seed = (stress_mix(round + 1) & ~(uint64_t)3) | (round + 1);
  next->p = malloc(next->size);
  if (!next->p) {
    stress_fail("malloc in a TSD destructor returned NULL");
    free(next);
    return;
  }
  stress_block_fill(next);
  pthread_setspecific(tsd_key, next);
}

static void *thread_with_tsd(void *arg)
{
  (void)arg;
  /* Allocate first, so the allocator's per-thread state exists (and its own
   * destructor is registered) before we set our value. */
  void *warm = malloc(64);
  free(warm);
  stress_block *b = malloc(sizeof *b);
  if (!b) {
    stress_fail("malloc returned NULL");
    return NULL;
  }
  b->size = 5000;
  b->seed = stress_mix((uintptr_t)b) & ~(uint64_t)3;  /* round 0 */
  b->p = malloc(b->size);
  if (!b->p) {
    stress_fail("malloc returned NULL");
    free(b);
    return NULL;
  }
  stress_block_fill(b);
  pthread_setspecific(tsd_key, b);
  return NULL;
}

static void test_malloc_in_tsd_destructors(void **state)
{
  (void)state;
  size_t nthreads = stress_count(200, 40);
  assert_int_equal(pthread_key_create(&tsd_key, tsd_destructor), 0);
  atomic_store(&tsd_destructor_calls, 0);
  for (size_t done = 0; done < nthreads; done += 8)
    stress_run_threads(8, thread_with_tsd, (void *)&tsd_key, 0);
  pthread_key_delete(tsd_key);
  STRESS_ASSERT_NO_FAILURES();
  /* Three rounds per thread: the original value and two re-sets. */
  size_t waves = (nthreads + 7) / 8;
  assert_int_equal(atomic_load(&tsd_destructor_calls), waves * 8 * 3);
}

/* ---- threads cancelled while allocating ------------------------------------------- */

#define CANCEL_SLOTS 64

typedef struct {
  uint64_t seed;
  stress_block slots[CANCEL_SLOTS];
  atomic_size_t ops;
} cancel_arg;

/* Cleanup handler: a cancelled thread frees what it holds on its way out. */
static void free_slots(void *arg)
{
  cancel_arg *a = arg;
  for (size_t i = 0; i < CANCEL_SLOTS; i++) {
    if (a->slots[i].p) {
      stress_block_check(&a->slots[i], "block of a cancelled thread");
      free(a->slots[i].p);
      a->slots[i].p = NULL;
    }
  }
}

static void *allocate_until_cancelled(void *arg)
{
  cancel_arg *a = arg;
  stress_rng rng;
  stress_rng_seed(&rng, a->seed);
  pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, NULL);
  pthread_cleanup_push(free_slots, a);
  for (;;) {
    stress_block *s = &a->slots[stress_rng_below(&rng, CANCEL_SLOTS)];
    /* Only pthread_testcancel is a cancellation point of ours; the slot is
     * always consistent when we reach it. */
    if (s->p) {
      stress_block_check(s, "own block");
      void *p = s->p;
      s->p = NULL;
      free(p);
    } else {
      size_t size = stress_size_skewed(&rng, 4 * STRESS_MIB);
      void *p = malloc(size);
      if (p) {
        stress_block b = {.p = p, .size = size, .seed = stress_fresh_seed(&rng)};
        stress_block_fill(&b);
        *s = b;
      } else {
        stress_fail("malloc(%zu) returned NULL", size);
      }
    }
    atomic_fetch_add_explicit(&a->ops, 1, memory_order_relaxed);
    pthread_testcancel();
  }
  pthread_cleanup_pop(0);
  return NULL;
}

/* After the cancellations: every size class and path must still work, from
 * this thread and from a new one. */
static void *allocate_every_kind(void *arg)
{
  (void)arg;
  stress_rng rng;
  stress_rng_seed(&rng, 99);
  for (size_t shift = 3; shift <= 23; shift++) {
    stress_block b = {.size = ((size_t)1 << shift) + 8, .seed = stress_fresh_seed(&rng)};
    b.p = malloc(b.size);
    if (!b.p) {
      stress_fail("malloc(%zu) after cancellations returned NULL", b.size);
      continue;
    }
    stress_block_fill(&b);
    stress_block_check(&b, "after cancellations");
    free(b.p);
  }
  return NULL;
}

/* Run fn on a new thread; if it has not finished within `seconds`, the
 * allocator is deadlocked: report and abort (a hung test would only end at
 * ctest's timeout, without saying why). */
static void run_with_watchdog(void *(*fn)(void *), const char *what, int seconds)
{
  pthread_t t;
  if (pthread_create(&t, NULL, fn, NULL) != 0) {
    stress_fail("%s: pthread_create failed", what);
    return;
  }
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += seconds;
  int rc = pthread_timedjoin_np(t, NULL, &deadline);
  if (rc == ETIMEDOUT) {
    stress_fail("%s: no progress in %d s: allocator deadlocked", what, seconds);
    abort();
  }
}

#define CANCEL_THREADS 6

static void test_threads_cancelled_while_allocating(void **state)
{
  (void)state;
  size_t rounds = stress_count(30, 8);
  for (size_t r = 0; r < rounds; r++) {
    cancel_arg *args = calloc(CANCEL_THREADS, sizeof *args);
    assert_non_null(args);
    pthread_t tids[CANCEL_THREADS];
    for (size_t i = 0; i < CANCEL_THREADS; i++) {
      args[i].seed = 9000 + r * CANCEL_THREADS + i;
      assert_int_equal(pthread_create(&tids[i], NULL, allocate_until_cancelled, &args[i]), 0);
    }
    /* Let them get going: cancel at different points of their loops. */
    struct timespec pause = {.tv_nsec = (long)(1 + r % 5) * 1000 * 1000};
    nanosleep(&pause, NULL);
    for (size_t i = 0; i < CANCEL_THREADS; i++)
      pthread_cancel(tids[i]);
    for (size_t i = 0; i < CANCEL_THREADS; i++) {
      void *ret;
      pthread_join(tids[i], &ret);
      if (ret != PTHREAD_CANCELED)
        stress_fail("thread %zu was not cancelled", i);
    }
    free(args);
    run_with_watchdog(allocate_every_kind, "allocation after cancellations", 30);
  }
  allocate_every_kind(NULL);
  STRESS_ASSERT_NO_FAILURES();
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    STRESS_TEST(test_waves_of_short_lived_threads),
    STRESS_TEST(test_exited_thread_blocks_freed_later),
    STRESS_TEST(test_malloc_in_tsd_destructors),
    STRESS_TEST(test_threads_cancelled_while_allocating),
  };
  STRESS_MAIN("stress_lifecycle", tests);
}
