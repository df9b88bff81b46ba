/* test_segment.c - a segment's units: the segment map, taking and
 * releasing runs, the preference for dirty units, alignment, and purging. */
#include "unit.h"

#include <string.h>

static la_segment_t *seg;

static int setup(void **state) {
  (void)state;
  la_os_init();
  la_options_defaults(&la_opt);
  la_sizeclass_init();
  seg = la_segment_create(NULL, NULL);
  return seg ? 0 : -1;
}

/* What the arena does when it purges every dirty unit of a segment. */
static size_t purge_all(la_segment_t *s) {
  la_purge_stats_t st = {0};
  uint64_t done = la_segment_advise_runs(s, s->dirty_units, false, &st);
  s->dirty_units &= ~done;
  return st.purged;
}

static int teardown(void **state) {
  (void)state;
  la_segment_destroy(seg);
  return 0;
}

static void segment_is_aligned_and_mapped(void **state) {
  (void)state;
  assert_int_equal((uintptr_t)seg % LA_SEG_SIZE, 0);
  assert_int_equal(la_segmap_kind(seg), LA_MAP_SEGMENT);
  assert_int_equal(la_segmap_kind((uint8_t *)seg + LA_SEG_SIZE - 1), LA_MAP_SEGMENT);
  assert_int_equal(la_segmap_kind(NULL), LA_MAP_NONE);
  assert_int_equal(la_segmap_kind((void *)~(uintptr_t)0), LA_MAP_NONE);
  assert_true(la_segment_is_empty(seg));
  assert_int_equal(seg->max_run, LA_UNITS - 1);   /* unit 0 is the header */
}

static void take_and_release_runs(void **state) {
  (void)state;
  int u = la_segment_find_run(seg, LA_UNITS - 1, 1);
  assert_int_equal(u, 1);
  la_slab_t *all = la_segment_take_run(seg, 1, LA_UNITS - 1);
  assert_true(all->zeroed);
  assert_int_equal(seg->used_units, ~0ull);
  assert_int_equal(la_segment_find_run(seg, 1, 1), -1);
  assert_ptr_equal(la_slab_of(la_unit_address(seg, 37) + 5), all);
  all->kind = LA_SLAB_SMALL;
  la_segment_touch(seg, la_unit_address(seg, 37) + 5, 1);   /* what carving does */
  assert_int_equal(la_segment_release_run(seg, all), (uint64_t)1 << 37);
  assert_true(la_segment_is_empty(seg));
  assert_ptr_equal(la_slab_of(la_unit_address(seg, 37)), &la_slab_invalid);
  assert_int_equal(seg->dirty_units, (uint64_t)1 << 37);   /* the others were never written */
  purge_all(seg);
  assert_int_equal(seg->resident[37], 0);
}

/* A small slab's units that it never carved go back clean, and read as
 * zero when taken again; a large block's are dirty (written anywhere). */
static void untouched_units_are_released_clean(void **state) {
  (void)state;
  la_slab_t *a = la_segment_take_run(seg, 40, 4);
  a->kind = LA_SLAB_SMALL;
  la_segment_touch(seg, la_unit_address(seg, 40), 100);
  assert_int_equal(la_segment_release_run(seg, a), (uint64_t)1 << 40);
  la_slab_t *b = la_segment_take_run(seg, 41, 3);
  assert_true(b->zeroed);
  b->kind = LA_SLAB_LARGE;
  assert_int_equal(la_segment_release_run(seg, b), la_bits_run_mask(41, 3));
  purge_all(seg);
}

/* After a purge the freed units are clean; a run released later is dirty
 * and is the one handed out next, even though clean runs come first. */
static void dirty_units_are_preferred(void **state) {
  (void)state;
  assert_int_equal(seg->dirty_units, 0);
  la_slab_t *a = la_segment_take_run(seg, 10, 4);
  memset(la_unit_address(seg, 10), 0xab, 4 * LA_UNIT_SIZE);
  la_segment_release_run(seg, a);
  assert_int_equal(la_segment_find_run(seg, 2, 1), 10);
  la_slab_t *b = la_segment_take_run(seg, 10, 2);
  assert_false(b->zeroed);
  assert_int_equal(la_segment_find_run(seg, 2, 1), 12);   /* the rest of the dirty run */
  la_segment_release_run(seg, b);
}

static void aligned_runs(void **state) {
  (void)state;
  for (unsigned align = 1; align <= 32; align <<= 1) {
    int u = la_segment_find_run(seg, 3, align);
    assert_true(u > 0);
    assert_int_equal(u % align, 0);
  }
}

static void purge_returns_pages_as_zero(void **state) {
  (void)state;
  la_slab_t *a = la_segment_take_run(seg, 20, 2);
  uint8_t *p = la_unit_address(seg, 20);
  memset(p, 0x5a, 2 * LA_UNIT_SIZE);
  la_segment_release_run(seg, a);
  size_t purged = purge_all(seg);
  assert_true(purged >= 2 * LA_UNIT_SIZE);
  assert_int_equal(seg->dirty_units, 0);
  la_slab_t *b = la_segment_take_run(seg, 20, 2);
  assert_true(b->zeroed);
  for (size_t i = 0; i < 2 * LA_UNIT_SIZE; i += 4096) assert_int_equal(p[i], 0);
  la_segment_release_run(seg, b);
  purge_all(seg);
}

/* Units given back lazily (MADV_FREE) may keep their contents: a run that
 * takes one is not known to be zero. */
static void muzzy_units_are_not_zeroed(void **state) {
  (void)state;
  la_slab_t *a = la_segment_take_run(seg, 30, 1);
  memset(la_unit_address(seg, 30), 0x11, LA_UNIT_SIZE);
  la_segment_release_run(seg, a);
  la_purge_stats_t st = {0};
  uint64_t done = la_segment_advise_runs(seg, seg->dirty_units, true, &st);
  assert_int_equal(done, (uint64_t)1 << 30);
  assert_int_equal(st.nmadvise, 1);
  seg->dirty_units &= ~done;
  seg->muzzy_units |= done;
  la_slab_t *b = la_segment_take_run(seg, 30, 1);
  assert_false(b->zeroed);
  assert_int_equal(seg->muzzy_units, 0);
  b->kind = LA_SLAB_SMALL;   /* carving nothing, it still gives back a unit that may hold data */
  assert_int_equal(la_segment_release_run(seg, b), (uint64_t)1 << 30);
  purge_all(seg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(segment_is_aligned_and_mapped), cmocka_unit_test(take_and_release_runs),
    cmocka_unit_test(untouched_units_are_released_clean),
    cmocka_unit_test(dirty_units_are_preferred),    cmocka_unit_test(aligned_runs),
    cmocka_unit_test(purge_returns_pages_as_zero), cmocka_unit_test(muzzy_units_are_not_zeroed),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
