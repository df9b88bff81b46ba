/* test_lend.c - sparse slabs lending their free slots to blocks of other
 * sizes (lend.c): a thread thins out slabs of small blocks at random, lets
 * them idle, then allocates bigger blocks; those must land in the holes,
 * with every block intact, counted in their own class and in `allocated`
 * to the byte, freeable by their thread or another, and the lenders must
 * go back to the arena once empty, also after their thread exited.
 *
 * "Idle" is the trimmer's 100 ms of its coarse clock: the tests sleep. */
#include "unit.h"

#include <alloc.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define SMALL 96      /* a class whose slabs may lend */
#define SLABS 32      /* of them, thinned to one block in ten */
#define BIG 1500      /* then blocks of this size */
#define NBIG 600

/* Run fn in a thread of its own (a heap of its own) and wait for it. */
static void run_in_thread(void *(*fn)(void *)) {
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fn, NULL), 0);
  pthread_join(t, NULL);
}

/* The same, for a test of lending (skipped with lend:false). */
static void lending_in_thread(void *(*fn)(void *)) {
  if (!la_opt.lend) skip();
  run_in_thread(fn);
}

static la_stats_t stats(void) {
  la_stats_t st;
  la_stats_gather(&st);
  return st;
}

static void fill(void *p, size_t n, unsigned seed) {
  unsigned char *b = p;
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(seed * 31u + i * 7u);
}

static bool intact(const void *p, size_t n, unsigned seed) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != (unsigned char)(seed * 31u + i * 7u)) return false;
  return true;
}

static size_t nsmall;
static void *small[SLABS * 1024];
static void *big[NBIG];
static size_t big_usable;   /* what `allocated` must grow by */
static unsigned lent;       /* big blocks in lenders */
static size_t lent_usable;  /* what `lent` must grow by */

/* The heap takes and gives back slabs of another class: each take runs
 * the trimmer's look at a few classes' slabs. */
#define OTHER 8192
static void take_slabs(void) {
  static void *other[64 * 32];
  size_t n = 64 * la_class_capacity[la_class_of(OTHER)];
  for (size_t i = 0; i < n && i < sizeof other / sizeof other[0]; i++) other[i] = la_malloc(OTHER);
  for (size_t i = 0; i < n && i < sizeof other / sizeof other[0]; i++) la_free(other[i]);
}

static bool one_in_ten(const void *p) {
  static uint32_t rng = 2024;
  (void)p;
  rng = rng * 1103515245u + 12345u;
  return (rng >> 16) % 10 == 0;
}

static bool across_pages(const void *p) { return (uintptr_t)p % la_page_size + SMALL > la_page_size; }

/* Fill SLABS slabs of SMALL blocks, keep those `keep` says and free the
 * others; then the trimmer sees them, time passes, and it sees them again,
 * unchanged: idle (so they become lenders). */
static void thin_out_keeping(bool (*keep)(const void *)) {
  nsmall = SLABS * la_class_capacity[la_class_of(SMALL)];
  for (size_t i = 0; i < nsmall; i++) fill(small[i] = la_malloc(SMALL), SMALL, (unsigned)i);
  for (size_t i = 0; i < nsmall; i++)
    if (!keep(small[i])) {
      la_free(small[i]);
      small[i] = NULL;
    }
  take_slabs();
  usleep(150000);
  take_slabs();
}

static void thin_out(void) { thin_out_keeping(one_in_ten); }

/* Then NBIG blocks of BIG bytes. */
static void borrow(void) {
  lent = 0;
  big_usable = lent_usable = 0;
  for (unsigned i = 0; i < NBIG; i++) {
    big[i] = la_malloc(BIG);
    fill(big[i], BIG, 7000u + i);
    big_usable += la_malloc_usable_size(big[i]);
    la_slab_t *s = la_slab_of(big[i]);
    lent += s->kind == LA_SLAB_LEND;
    if (s->kind == LA_SLAB_LEND) lent_usable += la_malloc_usable_size(big[i]);
  }
}

static void check_everything_intact(void) {
  for (size_t i = 0; i < nsmall; i++)
    if (small[i]) assert_true(intact(small[i], SMALL, (unsigned)i));
  for (unsigned i = 0; i < NBIG; i++) assert_true(intact(big[i], BIG, 7000u + i));
}

static void free_all(void) {
  for (size_t i = 0; i < nsmall; i++) la_free(small[i]);
  for (unsigned i = 0; i < NBIG; i++) la_free(big[i]);
}

static void *thin_borrow_check_free(void *arg) {
  (void)arg;
  la_stats_t before = stats();
  thin_out();
  la_stats_t thinned = stats();
  borrow();
  /* Most of the big blocks fit the holes: 90% of 32 slabs of 96-byte
   * blocks free, runs of 16 slots (1536 bytes) common enough. */
  assert_true(lent >= NBIG / 4);
  check_everything_intact();
  la_stats_t after = stats();
  unsigned cls = la_class_of(BIG);
  assert_int_equal(after.s.allocated - thinned.s.allocated, big_usable);
  assert_int_equal(after.s.lent - thinned.s.lent, lent_usable);   /* the statistics say how much is lent */
  assert_true(after.s.lenders > before.s.lenders);
  assert_int_equal(after.classes[cls].live - before.classes[cls].live, NBIG);
  assert_int_equal(after.classes[cls].nmalloc - before.classes[cls].nmalloc, NBIG);
  /* A lent block's usable size: at least the request; realloc within it
   * stays in place, beyond it moves the contents to a new block. */
  unsigned i = 0;
  while (la_slab_of(big[i])->kind != LA_SLAB_LEND) i++;
  void *p = big[i];
  size_t usable = la_malloc_usable_size(p);
  assert_true(usable >= BIG && usable <= BIG + BIG / 4 + SMALL);
  assert_ptr_equal(la_realloc(p, usable), p);
  void *q = la_realloc(p, 3 * BIG);
  assert_non_null(q);
  assert_true(intact(q, BIG, 7000u + i));
  big[i] = q;
  free_all();
  la_stats_t freed = stats();
  assert_int_equal(freed.s.allocated, before.s.allocated);
  assert_int_equal(freed.s.lent, before.s.lent);
  assert_int_equal(freed.s.lenders, before.s.lenders);
  /* Emptied by their owner, the lenders went back to the arena (the
   * class's current slab stays). */
  assert_true(freed.classes[la_class_of(SMALL)].slabs <= before.classes[la_class_of(SMALL)].slabs + 1);
  assert_int_equal(freed.classes[cls].nfree - before.classes[cls].nfree, NBIG);   /* one by realloc */
  return NULL;
}

static void test_holes_of_sparse_slabs_serve_other_sizes(void **state) {
  (void)state;
  lending_in_thread(thin_borrow_check_free);
}

/* A lender gives back the pages no live block touches, and only those:
 * survivors that start on one page and end on the next keep both. */
static void *keep_blocks_across_pages(void *arg) {
  (void)arg;
  size_t purged = atomic_load(&la_trimmed_bytes);
  thin_out_keeping(across_pages);
  borrow();
  assert_true(atomic_load(&la_trimmed_bytes) > purged);
  check_everything_intact();
  free_all();
  return NULL;
}

static void test_pages_under_survivors_kept(void **state) {
  (void)state;
  if (!la_opt.lend || la_opt.thp == LA_THP_ALWAYS) skip();
  run_in_thread(keep_blocks_across_pages);
}

/* The class comes back: its lenders, lending to no other class by then,
 * become its slabs again (each block through the fast path, not an ask
 * a slot), and hold the class's blocks as before: no new slab. */
static void *come_back(void *arg) {
  (void)arg;
  thin_out();
  unsigned cls = la_class_of(SMALL);
  la_stats_t thinned = stats();
  borrow();
  for (unsigned i = 0; i < NBIG; i++) la_free(big[i]);
  size_t lenders = 0;
  for (size_t i = 0; i < nsmall; i++) lenders += small[i] && la_slab_of(small[i])->kind == LA_SLAB_LEND;
  assert_true(lenders > 0);
  for (size_t i = 0; i < nsmall; i++)
    if (!small[i]) fill(small[i] = la_malloc(SMALL), SMALL, (unsigned)i);
  for (size_t i = 0; i < nsmall; i++) {
    assert_true(intact(small[i], SMALL, (unsigned)i));
    assert_int_equal(la_slab_of(small[i])->kind, LA_SLAB_SMALL);
  }
  assert_true(stats().classes[cls].slabs <= thinned.classes[cls].slabs + 1);
  for (size_t i = 0; i < nsmall; i++) la_free(small[i]);
  return NULL;
}

static void test_class_that_comes_back_takes_its_lenders_back(void **state) {
  (void)state;
  lending_in_thread(come_back);
}

/* The class comes back while its lenders still lend to another: each
 * lender serves it from a free list of its free slots that the heap's bin
 * points at (the fast path pops it, where an ask a slot took the slow path
 * for every block), with every block intact and counted; the slots left
 * on the list go back to lending when the bin moves on. */
static void *come_back_around_lent_blocks(void *arg) {
  (void)arg;
  thin_out();
  unsigned cls = la_class_of(SMALL);
  borrow();
  assert_true(lent >= NBIG / 4);
  la_stats_t borrowed = stats();
  static bool again[SLABS * 1024];
  size_t refilled = 0, from_lenders = 0, served = 0;
  for (size_t i = 0; i < nsmall; i++) {
    if (small[i]) continue;
    fill(small[i] = la_malloc(SMALL), SMALL, (unsigned)i);
    again[i] = true;
    refilled++;
    la_slab_t *s = la_slab_of(small[i]);
    if (s->kind != LA_SLAB_LEND) continue;
    if (!from_lenders++) {
      /* Freed by its thread, a block of the serving lender goes back on
       * the list: the next malloc has it again, as from a plain slab. */
      la_free(small[i]);
      assert_ptr_equal(la_malloc(SMALL), small[i]);
      fill(small[i], SMALL, (unsigned)i);
    }
    served += la_tls_heap->bins[cls] == s;
  }
  assert_true(from_lenders > refilled / 2);
  assert_true(served * 10 > from_lenders * 9);
  check_everything_intact();
  la_stats_t full = stats();
  assert_int_equal(full.classes[cls].live - borrowed.classes[cls].live, refilled);
  assert_int_equal(full.s.allocated - borrowed.s.allocated, refilled * la_class_size[cls]);
  /* New slabs only for the slots the lent blocks hold. */
  uint64_t grown = full.classes[cls].slabs - borrowed.classes[cls].slabs;
  assert_true(grown <= 1 || (grown - 1) * la_class_capacity[cls] * SMALL <= (uint64_t)lent * (BIG + BIG / 4));
  for (size_t i = 0; i < nsmall; i++)
    if (again[i]) {
      la_free(small[i]);
      small[i] = NULL;
      again[i] = false;
    }
  for (unsigned i = 0; i < NBIG; i++) la_free(big[i]);
  borrow();   /* the holes lend again */
  assert_true(lent >= NBIG / 4);
  check_everything_intact();
  free_all();
  return NULL;
}

static void test_class_that_comes_back_around_lent_blocks_served_by_fast_path(void **state) {
  (void)state;
  lending_in_thread(come_back_around_lent_blocks);
}

/* A lent block covers the slots its request needs, not its class's size
 * (a shorter run fits more holes), but at least as many as tell its class
 * from the class below (frees and statistics know it by its length). */
#define SHORT 1300   /* class 1536; 14 slots of 96 B would say class 1280 */
static void *sized_by_request(void *arg) {
  (void)arg;
  thin_out();
  unsigned cls = la_class_of(SHORT);
  la_stats_t thinned = stats();
  void *p = NULL, *other[NBIG];
  unsigned n = 0;
  while (n < NBIG && !p) {
    void *q = la_malloc(SHORT);
    if (la_slab_of(q)->kind == LA_SLAB_LEND) p = q;
    else other[n++] = q;
  }
  assert_non_null(p);
  size_t slot = la_slab_of(p)->block_size, usable = la_malloc_usable_size(p);
  assert_true(usable >= SHORT && usable % slot == 0);
  assert_true(usable < la_class_size[cls]);
  assert_true(usable - slot + 1 > la_class_size[cls - 1]);
  fill(p, usable, 99);
  la_stats_t one = stats();
  assert_int_equal(one.classes[cls].live - thinned.classes[cls].live, n + 1);
  la_free(p);
  la_stats_t none = stats();
  assert_int_equal(one.classes[cls].live - none.classes[cls].live, 1);
  assert_int_equal(one.s.allocated - none.s.allocated, usable);
  for (unsigned i = 0; i < n; i++) la_free(other[i]);
  for (size_t i = 0; i < nsmall; i++) la_free(small[i]);
  return NULL;
}

static void test_lent_block_sized_by_its_request(void **state) {
  (void)state;
  lending_in_thread(sized_by_request);
}

/* A lender lends the shortest run that holds a block: survivors every 82
 * slots leave runs of 16 (as many as a BIG block takes) and 64 free
 * slots in turn, and the blocks must all take 16-slot runs, leaving the
 * long ones for long blocks (next fit took the long run after each
 * short one). */
static size_t slot_of(const void *p) {
  const la_slab_t *s = la_slab_of(p);
  return (size_t)((const uint8_t *)p - s->start) / s->block_size;
}

static bool short_and_long_runs(const void *p) { return slot_of(p) % 82 == 0 || slot_of(p) % 82 == 17; }

static void *best_fit_holes(void *arg) {
  (void)arg;
  thin_out_keeping(short_and_long_runs);
  borrow();
  assert_true(lent >= NBIG / 4);
  unsigned in_short = 0, lenders = 0;
  for (unsigned i = 0; i < NBIG; i++) {
    if (la_slab_of(big[i])->kind != LA_SLAB_LEND || la_slab_of(big[i])->block_size != SMALL) continue;
    lenders++;
    in_short += slot_of(big[i]) % 82 == 1;
  }
  assert_true(lenders > 0);
  assert_true(in_short >= (lenders < 8 * SLABS ? lenders : 8 * SLABS));
  check_everything_intact();
  free_all();
  return NULL;
}

static void test_shortest_run_that_fits_lent(void **state) {
  (void)state;
  lending_in_thread(best_fit_holes);
}

/* The heap bins a lender by the block its longest free run surely holds
 * (la_lend_longest), so that a lender above the first bin an ask looks at
 * holds the block: a take must leave the longest run exact, not as it was
 * before the cut.  The runs are worked out here from the blocks' own sizes
 * (la_lend_block_size) after every take. */
static size_t true_longest_run(const la_slab_t *s) {
  size_t longest = 0, run = 0;
  for (size_t i = 0; i < s->capacity; i++) {
    size_t n = la_lend_block_size(s, s->start + i * s->block_size);
    if (!n) {
      longest = ++run > longest ? run : longest;
      continue;
    }
    run = 0;
    i += n / s->block_size - 1;
  }
  return longest;
}

/* Blocks of BIG bytes until the lenders are full, each lender's longest
 * run checked after each take; best fit cuts the longest run only once no
 * shorter one holds the block, near the end, and the test counts those
 * cuts (the longest run shorter than the lender's last). */
#define MANY 4096
static void *longest_after_takes(void *arg) {
  (void)arg;
  static void *many[MANY];
  static struct {
    const la_slab_t *slab;
    size_t longest;
  } seen[4 * SLABS];
  thin_out();
  unsigned n = 0, checked = 0, cuts = 0, nseen = 0;
  for (unsigned not_lent = 0; n < MANY && not_lent < 64; n++) {
    many[n] = la_malloc(BIG);
    const la_slab_t *s = la_slab_of(many[n]);
    if (s->kind != LA_SLAB_LEND) {
      not_lent++;
      continue;
    }
    size_t runs = true_longest_run(s), longest = la_lend_longest(s);
    assert_int_equal(longest, runs > 1 ? (runs - 1) * s->block_size : 0);
    checked++;
    unsigned k = 0;
    while (k < nseen && seen[k].slab != s) k++;
    if (k == nseen && nseen < 4 * SLABS) seen[nseen++].slab = s;
    else if (k < nseen) cuts += longest < seen[k].longest;
    if (k < nseen) seen[k].longest = longest;
  }
  assert_true(checked >= NBIG / 2);
  assert_true(cuts >= SLABS);
  for (unsigned i = 0; i < n; i++) la_free(many[i]);
  for (size_t i = 0; i < nsmall; i++) la_free(small[i]);
  return NULL;
}

static void test_longest_run_exact_after_each_take(void **state) {
  (void)state;
  lending_in_thread(longest_after_takes);
}

/* A lent block freed twice, or by an interior pointer, is an invalid free
 * and changes nothing. */
static void *misuse(void *arg) {
  (void)arg;
  thin_out();
  borrow();
  unsigned i = 0;
  while (i < NBIG && la_slab_of(big[i])->kind != LA_SLAB_LEND) i++;
  assert_true(i < NBIG);
  size_t invalid = atomic_load(&la_foreign_frees);
  la_free((char *)big[i] + SMALL);   /* inside the block, on a slot boundary */
  assert_int_equal(atomic_load(&la_foreign_frees), invalid + 1);
  la_free(big[i]);
  la_free(big[i]);
  assert_int_equal(atomic_load(&la_foreign_frees), invalid + 2);
  big[i] = la_malloc(BIG);   /* the hole serves again */
  fill(big[i], BIG, 7000u + i);
  check_everything_intact();
  free_all();
  return NULL;
}

static void test_invalid_frees_of_lent_blocks_refused(void **state) {
  (void)state;
  lending_in_thread(misuse);
}

/* The thread that lent exits with its blocks alive; another thread frees
 * them (into the abandoned lenders), and malloc_trim gives the emptied
 * lenders back. */
static void *thin_and_borrow(void *arg) {
  (void)arg;
  thin_out();
  borrow();
  return NULL;
}

static void test_abandoned_lenders_emptied_by_other_threads(void **state) {
  (void)state;
  if (!la_opt.lend) skip();
  la_stats_t before = stats();
  run_in_thread(thin_and_borrow);
  assert_true(lent >= NBIG / 4);
  check_everything_intact();
  free_all();
  la_malloc_trim(0);   /* sweeps the abandoned slabs */
  la_stats_t after = stats();
  assert_int_equal(after.s.allocated, before.s.allocated);
  assert_int_equal(after.classes[la_class_of(SMALL)].slabs, before.classes[la_class_of(SMALL)].slabs);
}

static int setup(void **state) {
  (void)state;
  bool off = false;
  return alloc_ctl("opt.background_thread", NULL, NULL, &off, sizeof off);
}

int main(void) {
  la_ensure_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_holes_of_sparse_slabs_serve_other_sizes),
      cmocka_unit_test(test_pages_under_survivors_kept),
      cmocka_unit_test(test_class_that_comes_back_takes_its_lenders_back),
      cmocka_unit_test(test_class_that_comes_back_around_lent_blocks_served_by_fast_path),
      cmocka_unit_test(test_lent_block_sized_by_its_request),
      cmocka_unit_test(test_shortest_run_that_fits_lent),
      cmocka_unit_test(test_longest_run_exact_after_each_take),
      cmocka_unit_test(test_invalid_frees_of_lent_blocks_refused),
      cmocka_unit_test(test_abandoned_lenders_emptied_by_other_threads),
  };
  return cmocka_run_group_tests_name("lend", tests, setup, NULL);
}
