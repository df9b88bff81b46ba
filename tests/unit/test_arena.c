/* test_arena.c - arenas sharing what they hold (arena.c): before an arena
 * maps a segment, another arena's free units serve it, a slab abandoned
 * in another arena is adopted, dirty units no run can use are given
 * back when clean ones are taken, and dirty runs come before untouched
 * ones.  Two arenas, threads started one after the
 * other (heaps take arenas round robin, so consecutive threads alternate);
 * the decay clock is stopped (injected), so nothing freed goes back to the
 * OS meanwhile and `nsegments` counts every mapping. */
#include "unit.h"

#include <alloc.h>
#include <pthread.h>
#include <stdlib.h>

#define MS 1000000ull
#define BLOCK 1024
#define NBLOCKS (24 * 1024)   /* 24 MiB of 1 KiB blocks: six segments' worth */

static uint64_t fake_now = 1000 * MS;
static uint64_t fake_clock(void) { return fake_now; }

static int setup(void **state) {
  (void)state;
  la_os_set_clock(fake_clock);
  bool off = false;
  ssize_t decay = 10000;
  alloc_ctl("opt.background_thread", NULL, NULL, &off, sizeof off);
  alloc_ctl("opt.telemetry", NULL, NULL, &off, sizeof off);
  alloc_ctl("opt.muzzy_decay_ms", NULL, NULL, &decay, sizeof decay);
  la_ensure_init();
  la_narenas = 2;
  return alloc_ctl("opt.dirty_decay_ms", NULL, NULL, &decay, sizeof decay);
}

static size_t segments(void) {
  la_stats_t st;
  la_stats_gather(&st);
  return st.s.nsegments;
}

static void *blocks[NBLOCKS];
static la_arena_t *arena_of[2];

typedef struct job_s {
  int id;
  bool free_all;   /* free what it allocated before exiting */
} job_t;

static void *allocate(void *arg) {
  job_t *job = arg;
  for (int i = 0; i < NBLOCKS; i++) assert_non_null(blocks[i] = la_malloc(BLOCK));
  arena_of[job->id] = la_tls_heap->arena;
  if (job->free_all) {
    for (int i = 0; i < NBLOCKS; i++) la_free(blocks[i]);
    la_heap_flush(la_tls_heap);
  }
  return NULL;
}

static void run(int id, bool free_all) {
  job_t job = {id, free_all};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, allocate, &job), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
}

/* A thread of the other arena allocates what a thread of the first freed:
 * it takes the first arena's free units instead of mapping its own. */
static void free_units_serve_the_other_arena(void **state) {
  (void)state;
  run(0, true);
  size_t before = segments();
  run(1, true);
  assert_ptr_not_equal(arena_of[0], arena_of[1]);
  /* at most one more (a run may start a segment when the others' runs
   * are busy: trylock); without the sharing, six */
  assert_true(segments() <= before + 1);
}

/* Blocks of an exited thread freed by another: a thread of the other arena
 * adopts the abandoned slabs and reuses their free blocks, before the free
 * units of its own arena (left there by the test above). */
static int compare_ptrs(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
  return x < y ? -1 : x > y;
}

static void abandoned_slabs_adopted_from_the_other_arena(void **state) {
  (void)state;
  static la_slab_t *abandoned[NBLOCKS];
  run(0, false);   /* exits with its 24 MiB alive: the slabs are abandoned */
  for (int i = 0; i < NBLOCKS; i++) abandoned[i] = la_slab_of(blocks[i]);
  qsort(abandoned, NBLOCKS, sizeof abandoned[0], compare_ptrs);
  for (int i = 0; i < NBLOCKS; i++) la_free(blocks[i]);   /* remote frees, not collected */
  size_t before = segments();
  run(1, false);
  assert_ptr_not_equal(arena_of[0], arena_of[1]);
  assert_true(segments() <= before + 1);
  int reused = 0;
  for (int i = 0; i < NBLOCKS; i++) {
    la_slab_t *slab = la_slab_of(blocks[i]);
    reused += bsearch(&slab, abandoned, NBLOCKS, sizeof abandoned[0], compare_ptrs) != NULL;
  }
  assert_true(reused > NBLOCKS * 9 / 10);
  for (int i = 0; i < NBLOCKS; i++) la_free(blocks[i]);
}

/* Dirty units that no run can use (single units between used ones) are
 * given back when the arena takes clean units instead: 1 KiB blocks fill
 * one-unit slabs, every other slab is emptied, then 5000-byte blocks
 * (three-unit slabs) need runs the dirty units cannot make.  Without the
 * trade the dirty units stay, the new slabs' pages come on top. */
static void dirty_units_traded_for_clean_ones(void **state) {
  (void)state;
  enum { SMALL = 8192, BIG = 420 };
  static void *small[SMALL], *big[BIG];
  la_malloc_trim(0);   /* every free unit clean: the earlier tests' are not in the way */
  for (int i = 0; i < SMALL; i++) assert_non_null(small[i] = la_malloc(BLOCK));
  for (int i = 0; i < SMALL; i++) {
    uintptr_t unit = ((uintptr_t)la_slab_of(small[i])->start >> LA_UNIT_SHIFT) & (LA_UNITS - 1);
    if (unit % 2 == 0) la_free(small[i]), small[i] = NULL;
  }
  la_stats_t before, after;
  la_stats_gather(&before);
  assert_true(before.s.dirty >= 2u << 20);   /* ~64 single dirty units */
  for (int i = 0; i < BIG; i++) assert_non_null(big[i] = la_malloc(5000));   /* ~2 MiB in 11 slabs */
  la_stats_gather(&after);
  assert_true(after.s.dirty + (1u << 20) <= before.s.dirty);
  for (int i = 0; i < BIG; i++) la_free(big[i]);
  for (int i = 0; i < SMALL; i++) la_free(small[i]);
}

/* A run of dirty units in a segment other than the fullest one comes
 * before the fullest one's untouched units: 13 MiB of 1 KiB blocks (slabs
 * of one unit), then one whole segment of them freed (63 dirty units),
 * while the last segment's tail and the segments other tests left are
 * untouched (malloc_trim) and fuller.  Ten slabs' worth allocated again
 * must reuse the dirty units, with nothing purged; taking the untouched
 * ones would trade (purge) as many dirty units instead. */
static void dirty_runs_before_untouched_ones(void **state) {
  (void)state;
  enum { MANY = 64 * (63 * 3 + 20), AGAIN = 64 * 10 };
  static void *many[MANY], *again[AGAIN];
  la_malloc_trim(0);
  for (int i = 0; i < MANY; i++) assert_non_null(many[i] = la_malloc(BLOCK));
  /* a segment all of whose 63 units are slabs of these blocks (64 each) */
  uintptr_t whole = 0;
  for (int i = 0; i < MANY && !whole; i += 64) {
    uintptr_t seg = (uintptr_t)la_segment_of(many[i]);
    int in_seg = 0;
    for (int j = 0; j < MANY; j++) in_seg += (uintptr_t)la_segment_of(many[j]) == seg;
    if (in_seg == 64 * (LA_UNITS - 1)) whole = seg;
  }
  assert_true(whole != 0);
  for (int i = 0; i < MANY; i++)
    if ((uintptr_t)la_segment_of(many[i]) == whole) la_free(many[i]), many[i] = NULL;
  la_heap_flush(la_tls_heap);
  la_stats_t before, after;
  la_stats_gather(&before);
  assert_true(before.s.dirty >= 60 * LA_UNIT_SIZE);
  for (int i = 0; i < AGAIN; i++) assert_non_null(again[i] = la_malloc(BLOCK));
  la_stats_gather(&after);
  assert_true(after.s.purged == before.s.purged);
  assert_true(after.s.dirty + 8 * LA_UNIT_SIZE <= before.s.dirty);
  for (int i = 0; i < AGAIN; i++) la_free(again[i]);
  for (int i = 0; i < MANY; i++) la_free(many[i]);
}

/* A thread that has a heap and waits: the process then has two. */
static pthread_barrier_t hold;
static void *keep_a_heap(void *arg) {
  (void)arg;
  la_free(la_malloc(64));
  pthread_barrier_wait(&hold);
  pthread_barrier_wait(&hold);
  return NULL;
}

/* With another thread's heap and the purger running, the trade of
 * dirty_units_traded_for_clean_ones is the purger's to make (in one
 * system call for many runs, la_segments_advise): the dirty units go all
 * the same, a moment later, from the purger's thread. */
static void trades_of_a_threaded_program_go_to_the_purger(void **state) {
  (void)state;
  enum { SMALL = 8192, BIG = 420 };
  static void *small[SMALL], *big[BIG];
  pthread_t other;
  pthread_barrier_init(&hold, NULL, 2);
  assert_int_equal(pthread_create(&other, NULL, keep_a_heap, NULL), 0);
  pthread_barrier_wait(&hold);
  assert_true(la_heaps_several());
  la_malloc_trim(0);
  for (int i = 0; i < SMALL; i++) assert_non_null(small[i] = la_malloc(BLOCK));
  for (int i = 0; i < SMALL; i++) {
    uintptr_t unit = ((uintptr_t)la_slab_of(small[i])->start >> LA_UNIT_SHIFT) & (LA_UNITS - 1);
    if (unit % 2 == 0) la_free(small[i]), small[i] = NULL;
  }
  bool on = true, off = false;
  assert_int_equal(alloc_ctl("opt.background_thread", NULL, NULL, &on, sizeof on), 0);
  while (!la_purger_running()) la_os_sleep_ms(1);
  la_stats_t before, after;
  la_stats_gather(&before);
  assert_true(before.s.dirty >= 2u << 20);
  for (int i = 0; i < BIG; i++) assert_non_null(big[i] = la_malloc(5000));
  for (int waited = 0;; waited++) {   /* the purger pays within a few milliseconds */
    la_stats_gather(&after);
    if (after.s.dirty + (1u << 20) <= before.s.dirty || waited == 5000) break;
    la_os_sleep_ms(1);
  }
  assert_true(after.s.dirty + (1u << 20) <= before.s.dirty);
  assert_int_equal(alloc_ctl("opt.background_thread", NULL, NULL, &off, sizeof off), 0);
  for (int i = 0; i < BIG; i++) la_free(big[i]);
  for (int i = 0; i < SMALL; i++) la_free(small[i]);
  pthread_barrier_wait(&hold);
  pthread_join(other, NULL);
  pthread_barrier_destroy(&hold);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(free_units_serve_the_other_arena),
      cmocka_unit_test(abandoned_slabs_adopted_from_the_other_arena),
      cmocka_unit_test(dirty_units_traded_for_clean_ones),
      cmocka_unit_test(dirty_runs_before_untouched_ones),
      cmocka_unit_test(trades_of_a_threaded_program_go_to_the_purger),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
