/* test_heap.c - thread heaps (heap.c): what a heap caches decays like the
 * rest of free memory, heaps of exiting threads are always abandoned,
 * their slabs keep no page they did not use, sparse slabs give back their
 * free pages, the emptied slabs of classes no longer used go back to
 * the arena, and slabs other threads freed into are shared.
 *
 * Decay is driven by an injected clock and by calling the purger's pass
 * (la_decay_all) directly, with the purger thread off: no sleeps.  The
 * cache of an idle thread is taken with the membarrier handshake, so those
 * tests are skipped where the kernel refuses membarrier. */
#include "unit.h"

#include <alloc.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MS 1000000ull
#define LARGE (128 * 1024)   /* a large class the heap caches */
#define PARKED (96 * 1024)   /* a small class of big blocks: its emptied slab is parked */

static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now; }

static la_stats_t stats(void) {
  la_stats_t st;
  la_stats_gather(&st);
  return st;
}

/* Run fn in a thread of its own (a heap of its own) and wait for it. */
static void run_in_thread_arg(void *(*fn)(void *), void *arg) {
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
  pthread_join(t, NULL);
}

static void run_in_thread(void *(*fn)(void *)) { run_in_thread_arg(fn, NULL); }

static int setup(void **state) {
  (void)state;
  la_os_set_clock(fake_clock);
  fake_now = 1000 * MS;
  bool off = false;
  ssize_t decay = 1000, zero = 0;
  alloc_ctl("opt.background_thread", NULL, NULL, &off, sizeof off);
  alloc_ctl("opt.muzzy_decay_ms", NULL, NULL, &zero, sizeof zero);
  return alloc_ctl("opt.dirty_decay_ms", NULL, NULL, &decay, sizeof decay);
}

static void decay_at(uint64_t ms) {
  fake_now += ms * MS;
  la_decay_all(fake_now);
}

/* ---- an idle thread's caches ----------------------------------------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int phase;   /* 1: cached, 2: take them again, 3: done */
static void *first_large, *first_parked;

static void wait_phase(int p) {
  pthread_mutex_lock(&lock);
  while (phase < p) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
}

static void set_phase(int p) {
  pthread_mutex_lock(&lock);
  phase = p;
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&lock);
}

/* Cache a large block and park a slab, idle, then allocate both again. */
static void *idle_owner(void *arg) {
  (void)arg;
  first_large = la_malloc(LARGE);
  first_parked = la_malloc(PARKED);
  memset(first_large, 1, LARGE);
  memset(first_parked, 1, PARKED);
  la_free(first_large);
  la_free(first_parked);
  set_phase(1);
  wait_phase(2);
  void *a = la_malloc(LARGE), *b = la_malloc(PARKED);
  memset(a, 2, LARGE);
  memset(b, 2, PARKED);
  la_free(a);
  la_free(b);
  set_phase(3);
  return NULL;
}

static void test_idle_caches_decay(void **state) {
  (void)state;
  if (!la_os_membarrier_register()) skip();
  phase = 0;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, idle_owner, NULL), 0);
  wait_phase(1);
  size_t cached = stats().s.tcache;
  assert_true(cached >= LARGE + PARKED);
  decay_at(0);     /* the purger's first look at the heap */
  decay_at(200);   /* untouched for less than a quarter of the decay time */
  assert_int_equal(stats().s.tcache, cached);
  decay_at(100);   /* now more: taken back, to the arena's dirty units */
  la_stats_t st = stats();
  assert_true(st.s.tcache + LARGE + PARKED <= cached);
  assert_true(st.s.dirty >= LARGE + PARKED);
  decay_at(1000);   /* and the arena's decay gives them back */
  assert_true(stats().s.dirty < LARGE);
  set_phase(2);     /* the owner carries on from an empty cache */
  wait_phase(3);
  pthread_join(t, NULL);
}

/* A thread that keeps using its cache keeps it, however long. */
static void test_busy_cache_kept(void **state) {
  (void)state;
  if (!la_os_membarrier_register()) skip();
  la_free(la_malloc(LARGE));
  decay_at(0);
  for (int i = 0; i < 10; i++) {
    decay_at(200);
    assert_true(la_tls_heap->large_cached_bytes >= LARGE);
    la_free(la_malloc(LARGE));   /* from the cache, back to it */
  }
  decay_at(0);     /* idle from now on: the purger sees the last use */
  decay_at(300);
  assert_int_equal(la_tls_heap->large_cached_bytes, 0);
}

/* An emptied current slab of big blocks is parked and taken back by the
 * next malloc of its class: the same block, without the arena. */
static void test_parked_slab_reused(void **state) {
  (void)state;
  void *p = la_malloc(PARKED);
  la_free(p);
  la_heap_t *heap = la_tls_heap;
  unsigned cls = la_class_of(PARKED);
  assert_non_null(heap->parked[cls]);
  assert_ptr_equal(heap->bins[cls], &la_slab_empty);   /* out of the fast path */
  void *q = la_malloc(PARKED);
  assert_ptr_equal(q, p);
  assert_null(heap->parked[cls]);
  la_free(q);
  la_heap_flush(heap);
  assert_null(heap->parked[cls]);
}

/* ---- stale pages of a slab on reused units ---------------------------------
 * A thread fills slabs of 64-byte blocks and frees them: those that are not
 * its current slab go back to the arena, dirty, every page resident.  It
 * then takes one block of a class with slabs of as many units, which lands
 * on those units, and exits holding it.  The abandoned slab must keep
 * resident only what it carved, not the pages of the slab before it. */

#define FILL 64
static unsigned keep_cls;
static void *kept;
static size_t resident_in_use;

static size_t resident_pages(const la_slab_t *s) {
  size_t len = (size_t)s->nunits << LA_UNIT_SHIFT, n = 0;
  unsigned char vec[(LA_UNIT_SIZE * LA_UNITS) / 4096];
  assert_int_equal(mincore(s->start, len, vec), 0);
  for (size_t i = 0; i < len / la_page_size; i++) n += vec[i] & 1;
  return n;
}

static void *fill_then_keep_one(void *arg) {
  (void)arg;
  static void *p[3 * LA_UNITS * LA_UNIT_SIZE / FILL];
  size_t n = 3 * la_class_capacity[la_class_of(FILL)];
  assert_true(n <= sizeof p / sizeof p[0]);
  for (size_t i = 0; i < n; i++) memset(p[i] = la_malloc(FILL), 1, FILL);
  for (size_t i = 0; i < n; i++) la_free(p[i]);
  kept = la_malloc(la_class_size[keep_cls]);
  memset(kept, 2, la_class_size[keep_cls]);
  resident_in_use = resident_pages(la_slab_of(kept));
  return NULL;
}

/* A class of blocks of `from` bytes or more whose slabs take as many
 * units as FILL's. */
static void pick_keep_class(size_t from) {
  unsigned fill_cls = la_class_of(FILL);
  for (keep_cls = la_class_of(from); keep_cls < LA_NCLASSES; keep_cls++)
    if (!la_class_large[keep_cls] && la_class_units[keep_cls] == la_class_units[fill_cls]) break;
  assert_true(keep_cls < LA_NCLASSES);
}

static void test_abandoned_slab_keeps_no_stale_page(void **state) {
  (void)state;
  if (la_opt.thp == LA_THP_ALWAYS) skip();
  pick_keep_class(700);
  run_in_thread(fill_then_keep_one);
  la_slab_t *s = la_slab_of(kept);
  /* while its thread ran, the slab held the pages of the one before */
  assert_true(resident_in_use > ((size_t)s->nunits << LA_UNIT_SHIFT) / la_page_size / 2);
  size_t carved = (s->reserved * la_class_size[keep_cls] + la_page_size - 1) / la_page_size + 1;
  assert_in_range(resident_pages(s), 1, carved);
  la_free(kept);
}

/* The same, but the thread frees its block before it exits: the emptied
 * slab goes back to the arena as it is, its units dirty and counted, for
 * the next slab to reuse or the decay to purge - not purged there and then
 * (each madvise of a process with threads interrupts every CPU it runs on:
 * threadchurn's thousand exits spent a tenth of their time so). */
static uint8_t *emptied_start;
static size_t emptied_len;

static void *fill_then_empty(void *arg) {
  fill_then_keep_one(arg);
  la_slab_t *s = la_slab_of(kept);
  emptied_start = s->start;
  emptied_len = (size_t)s->nunits << LA_UNIT_SHIFT;
  la_free(kept);
  return NULL;
}

static void test_emptied_slab_left_dirty_at_exit(void **state) {
  (void)state;
  if (la_opt.thp == LA_THP_ALWAYS) skip();
  la_arenas_set_decay(-1, -1);   /* no purge but this test's */
  pick_keep_class(900);   /* not the class above: its slab is abandoned, and would be adopted */
  run_in_thread(fill_then_empty);
  unsigned char vec[(LA_UNIT_SIZE * LA_UNITS) / 4096];
  assert_int_equal(mincore(emptied_start, emptied_len, vec), 0);
  size_t resident = 0, pages = emptied_len / la_page_size;
  for (size_t i = 0; i < pages; i++) resident += vec[i] & 1;
  assert_true(resident_in_use > pages / 2);   /* it held the slab before's pages */
  assert_true(resident > pages / 2);          /* and still does */
  la_stats_t st;
  la_stats_gather(&st);
  assert_true(st.s.dirty >= emptied_len);
  la_arenas_purge();
  la_arenas_set_decay(la_opt.dirty_decay_ms, la_opt.muzzy_decay_ms);
}

/* ---- emptied current slabs of classes no longer used ----------------------
 * In a thread of its own: a class filled one slab and freed it all (its
 * emptied current slab stays with the heap), another was used once and
 * freed, a third is allocated and freed between every step.  The thread
 * then allocates enough of a fourth class to take many slabs from the
 * arena: the first class's emptied slab goes back to the arena, the other
 * two keep theirs. */

#define IDLE_BIG 1024      /* filled and emptied: given back */
#define IDLE_FEW 3072      /* one block carved: kept */
#define IDLE_BUSY 512      /* in use all along: kept */
#define IDLE_FILLER 64     /* takes the new slabs */

static la_slab_t *idle_slab, *few_slab, *busy_slab;
static bool idle_heads[3];   /* still its class's current slab */

static void *move_on_to_other_sizes(void *arg) {
  (void)arg;
  la_heap_t *heap = NULL;
  unsigned big = la_class_of(IDLE_BIG), few = la_class_of(IDLE_FEW), busy = la_class_of(IDLE_BUSY);
  size_t n = la_class_capacity[big];
  void **p = la_malloc(n * sizeof *p);
  for (size_t i = 0; i < n; i++) memset(p[i] = la_malloc(IDLE_BIG), 1, IDLE_BIG);
  idle_slab = la_slab_of(p[0]);
  for (size_t i = 0; i < n; i++) la_free(p[i]);
  la_free(p);
  void *q = la_malloc(IDLE_FEW);
  few_slab = la_slab_of(q);
  la_free(q);
  heap = la_tls_heap;
  assert_ptr_equal(heap->queues[big].head, idle_slab);   /* kept at first */
  size_t per_slab = la_class_capacity[la_class_of(IDLE_FILLER)];
  size_t filler_n = 4 * LA_NCLASSES * per_slab;   /* a slab taken per capacity */
  void **f = la_malloc(filler_n * sizeof *f);
  for (size_t i = 0; i < filler_n; i++) {
    f[i] = la_malloc(IDLE_FILLER);
    if (i % per_slab == 0) {
      void *b = la_malloc(IDLE_BUSY);
      busy_slab = la_slab_of(b);
      la_free(b);
    }
  }
  idle_heads[0] = heap->queues[big].head == idle_slab;
  idle_heads[1] = heap->queues[few].head == few_slab;
  idle_heads[2] = heap->queues[busy].head == busy_slab;
  for (size_t i = 0; i < filler_n; i++) la_free(f[i]);
  la_free(f);
  return NULL;
}

static void test_idle_emptied_slab_given_back(void **state) {
  (void)state;
  assert_true(la_class_capacity[la_class_of(IDLE_FEW)] >= 8);   /* one block is under a quarter */
  run_in_thread(move_on_to_other_sizes);
  assert_false(idle_heads[0]);
  assert_true(idle_heads[1]);
  assert_true(idle_heads[2]);
}

/* The heap's caches the same way: a cached large block and a parked slab
 * of classes no longer asked for go back once the heap has taken enough
 * slabs; those of a class taken again meanwhile stay. */

#define IDLE_LARGE (192 * 1024)   /* a cached large block, then idle */
#define BUSY_LARGE LARGE          /* cached, and taken back all along */

static bool idle_cached[3];   /* still cached: the idle large class, the parked slab, the busy class */

static void *leave_caches_idle(void *arg) {
  (void)arg;
  unsigned idle = la_class_of(IDLE_LARGE), parked = la_class_of(PARKED), busy = la_class_of(BUSY_LARGE);
  assert_true(la_class_large[idle] && la_class_large[busy] && !la_class_large[parked]);
  la_free(la_malloc(IDLE_LARGE));
  la_free(la_malloc(PARKED));
  la_free(la_malloc(BUSY_LARGE));
  la_heap_t *heap = la_tls_heap;
  assert_non_null(heap->large_cache[idle]);
  assert_non_null(heap->parked[parked]);
  size_t per_slab = la_class_capacity[la_class_of(IDLE_FILLER)];
  size_t filler_n = 4 * 64 * per_slab;   /* a slab taken per capacity */
  void **f = la_malloc(filler_n * sizeof *f);
  for (size_t i = 0; i < filler_n; i++) {
    f[i] = la_malloc(IDLE_FILLER);
    if (i % per_slab == 0) la_free(la_malloc(BUSY_LARGE));
  }
  idle_cached[0] = heap->large_cache[idle] != NULL;
  idle_cached[1] = heap->parked[parked] != NULL;
  idle_cached[2] = heap->large_cache[busy] != NULL;
  for (size_t i = 0; i < filler_n; i++) la_free(f[i]);
  la_free(f);
  return NULL;
}

static void test_idle_caches_given_back(void **state) {
  (void)state;
  run_in_thread(leave_caches_idle);
  assert_false(idle_cached[0]);
  assert_false(idle_cached[1]);
  assert_true(idle_cached[2]);
}

/* ---- sparse slabs trimmed by the slabs taken, not only by time ----------
 * The clock stands still here (fake_clock): a thread leaves one block in
 * each of a few slabs of small blocks, then takes several hundred slabs of
 * another class.  Those sparse slabs must give their free pages back even
 * though no time passed (a fast program changes phase within the trimmer's
 * 100 ms). */

#define SPARSE 64
#define SPARSE_SLABS 4
#define TAKER 1024

static la_slab_t *sparse_slabs[SPARSE_SLABS];
static uint64_t sparse_trimmed[SPARSE_SLABS];

static void *thin_out_then_take_slabs(void *arg) {
  (void)arg;
  size_t per_slab = la_class_capacity[la_class_of(SPARSE)], n = SPARSE_SLABS * per_slab;
  void **p = la_malloc(n * sizeof *p);
  for (size_t i = 0; i < n; i++) memset(p[i] = la_malloc(SPARSE), 1, SPARSE);
  for (size_t i = 0; i < n; i++) {
    if (i % per_slab == 0) sparse_slabs[i / per_slab] = la_slab_of(p[i]);
    else la_free(p[i]);
  }
  size_t taker_n = 2 * 256 * la_class_capacity[la_class_of(TAKER)];
  void **t = la_malloc(taker_n * sizeof *t);
  for (size_t i = 0; i < taker_n; i++) t[i] = la_malloc(TAKER);
  for (unsigned k = 0; k < SPARSE_SLABS; k++) sparse_trimmed[k] = sparse_slabs[k]->trimmed;
  for (size_t i = 0; i < taker_n; i++) la_free(t[i]);
  for (size_t i = 0; i < n; i += per_slab) la_free(p[i]);
  la_free(t);
  la_free(p);
  return NULL;
}

static void test_sparse_slabs_trimmed_without_time_passing(void **state) {
  (void)state;
  if (la_opt.thp == LA_THP_ALWAYS) skip();
  bool lend = la_opt.lend;
  la_opt.lend = false;   /* trimming alone: lending would take the pages back (test_lend.c) */
  run_in_thread(thin_out_then_take_slabs);
  la_opt.lend = lend;
  unsigned trimmed = 0;
  for (unsigned k = 0; k < SPARSE_SLABS; k++) trimmed += sparse_trimmed[k] != 0;
  /* every one but the current slab, which is being allocated from */
  assert_true(trimmed >= SPARSE_SLABS - 1);
}

/* ---- what other threads freed is shared ------------------------------------
 * A thread fills four slabs of one class and queues three of them behind
 * its current one again: the first with one block freed, the second half
 * emptied by its own frees, the third half emptied by another thread's.
 * When its current slab runs out, the third goes to the arena (it would
 * otherwise wait for its owner alone), and the next thread that needs a
 * slab of the class is served from it; the second, freed into by its
 * owner only, stays with its owner (trimming and lending work there). */

#define SHARED 64
static pthread_barrier_t share_step;
static la_slab_t *share_own_sparse, *share_remote_sparse;
static void **share_blocks;
static size_t share_n;
static la_heap_t *share_owner;
static bool share_still_queued[2];

static bool queued(const la_heap_t *heap, const la_slab_t *slab) {
  for (const la_slab_t *s = heap->queues[slab->cls].head; s; s = s->next)
    if (s == slab) return true;
  return false;
}

static void *share_owner_thread(void *arg) {
  (void)arg;
  size_t cap = la_class_capacity[la_class_of(SHARED)];
  share_n = 4 * cap;
  share_blocks = la_malloc(share_n * sizeof *share_blocks);
  share_owner = la_tls_heap;   /* made by its first malloc */
  la_slab_t *slabs[4] = {0};
  unsigned nslabs = 0;
  for (size_t i = 0; i < share_n; i++) {
    memset(share_blocks[i] = la_malloc(SHARED), 1, SHARED);
    la_slab_t *s = la_slab_of(share_blocks[i]);
    if (nslabs < 4 && (!nslabs || slabs[nslabs - 1] != s)) slabs[nslabs++] = s;
  }
  assert_int_equal(nslabs, 4);
  share_own_sparse = slabs[1];
  share_remote_sparse = slabs[2];
  /* one block of each full slab freed by the owner queues it again; half
   * of the second freed by the owner too */
  size_t freed_by_owner[3] = {0};
  for (size_t i = 0; i < share_n; i++) {
    la_slab_t *s = la_slab_of(share_blocks[i]);
    unsigned k = s == slabs[0] ? 0 : s == slabs[1] ? 1 : s == slabs[2] ? 2 : 3;
    if (k == 3 || freed_by_owner[k] >= (k == 1 ? cap / 2 : 1)) continue;
    la_free(share_blocks[i]);
    share_blocks[i] = NULL;
    freed_by_owner[k]++;
  }
  pthread_barrier_wait(&share_step);   /* the other thread frees half of slabs[2] */
  pthread_barrier_wait(&share_step);
  la_slab_t *current = share_owner->queues[la_class_of(SHARED)].head;
  void *extra[1024];
  size_t nextra = 0;
  do memset(extra[nextra] = la_malloc(SHARED), 2, SHARED);
  while (la_slab_of(extra[nextra++]) == current && nextra < 1024);
  share_still_queued[0] = queued(share_owner, share_own_sparse);
  share_still_queued[1] = queued(share_owner, share_remote_sparse);
  pthread_barrier_wait(&share_step);   /* another thread takes a slab */
  pthread_barrier_wait(&share_step);
  while (nextra) la_free(extra[--nextra]);
  return NULL;
}

static void *share_taker_thread(void *arg) {
  bool *served = arg;
  size_t cap = la_class_capacity[la_class_of(SHARED)];
  void **p = la_malloc(cap * sizeof *p);
  for (size_t i = 0; i < cap; i++) {
    memset(p[i] = la_malloc(SHARED), 3, SHARED);
    if (la_slab_of(p[i]) == share_remote_sparse) *served = true;
  }
  for (size_t i = 0; i < cap; i++) la_free(p[i]);
  la_free(p);
  return NULL;
}

static void test_remote_freed_slab_shared(void **state) {
  (void)state;
  pthread_barrier_init(&share_step, NULL, 2);
  pthread_t owner;
  assert_int_equal(pthread_create(&owner, NULL, share_owner_thread, NULL), 0);
  pthread_barrier_wait(&share_step);
  size_t cap = la_class_capacity[la_class_of(SHARED)], freed = 0;
  for (size_t i = 0; i < share_n && freed < cap / 2; i++)
    if (share_blocks[i] && la_slab_of(share_blocks[i]) == share_remote_sparse) {
      la_free(share_blocks[i]);   /* remote frees, not collected yet */
      share_blocks[i] = NULL;
      freed++;
    }
  pthread_barrier_wait(&share_step);
  pthread_barrier_wait(&share_step);   /* the owner's current slab ran out */
  assert_true(share_still_queued[0]);
  assert_false(share_still_queued[1]);
  assert_ptr_equal(atomic_load(&share_own_sparse->owner), share_owner);
  assert_null(atomic_load(&share_remote_sparse->owner));
  bool served = false;
  run_in_thread_arg(share_taker_thread, &served);
  assert_true(served);
  pthread_barrier_wait(&share_step);
  pthread_join(owner, NULL);
  pthread_barrier_destroy(&share_step);
  for (size_t i = 0; i < share_n; i++) la_free(share_blocks[i]);
  la_free(share_blocks);
}

/* ---- late destructors ---------------------------------------------------- */

static pthread_key_t late_key;

/* Runs in every round of key destructors (it sets its value again, so
 * glibc runs all PTHREAD_DESTRUCTOR_ITERATIONS rounds); liballoc's own
 * destructor, whose key was made first, runs before it in each round. */
static void late_destructor(void *value) {
  void *p = la_malloc(200);
  memset(p, 3, 200);
  la_free(p);
  pthread_setspecific(late_key, value);
}

static int late_tid;

static void *late_thread(void *arg) {
  (void)arg;
  late_tid = (int)syscall(SYS_gettid);
  la_free(la_malloc(64));
  pthread_setspecific(late_key, (void *)1);
  return NULL;
}

static void test_late_destructor_heap_abandoned(void **state) {
  (void)state;
  la_free(la_malloc(64));   /* this thread's heap exists */
  assert_int_equal(pthread_key_create(&late_key, late_destructor), 0);
  size_t before = stats().s.nheaps;
  run_in_thread(late_thread);
  /* pthread_join returns when the thread's tid is cleared, a moment before
   * the kernel has let go of the thread; a pass meanwhile would only put
   * the heap off for 10 ms (EXITED_RETRY_NS). */
  la_os_wait_thread_gone(late_tid);
  decay_at(10);   /* the purger's pass abandons heaps of threads that are gone */
  assert_int_equal(stats().s.nheaps, before);
  pthread_key_delete(late_key);
}

int main(void) {
  la_ensure_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_abandoned_slab_keeps_no_stale_page),
      cmocka_unit_test(test_emptied_slab_left_dirty_at_exit),
      cmocka_unit_test(test_parked_slab_reused),
      cmocka_unit_test(test_idle_emptied_slab_given_back),
      cmocka_unit_test(test_idle_caches_given_back),
      cmocka_unit_test(test_sparse_slabs_trimmed_without_time_passing),
      cmocka_unit_test(test_busy_cache_kept),
      cmocka_unit_test(test_idle_caches_decay),
      cmocka_unit_test(test_late_destructor_heap_abandoned),
      cmocka_unit_test(test_remote_freed_slab_shared),
  };
  return cmocka_run_group_tests_name("heap", tests, setup, NULL);
}
