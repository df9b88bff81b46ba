/* test_sizeclass.c - the size classes: ordering, rounding waste, the lookup
 * table, slab shapes and aligned classes. */
#include "unit.h"

static int setup(void **state) {
  (void)state;
  la_os_init();
  la_sizeclass_init();
  return 0;
}

static void classes_increase_and_align(void **state) {
  (void)state;
  for (unsigned c = 1; c < LA_NCLASSES; c++) {
    assert_true(la_class_size[c] > la_class_size[c - 1]);
    assert_int_equal(la_class_size[c] % LA_MIN_ALIGN, 0);
  }
  assert_int_equal(la_class_size[LA_NCLASSES - 1], LA_MAX_CLASS_SIZE);
}

/* class_of(s) is the smallest class that holds s, for every size up to
 * 64 KiB and a sample above. */
static void class_of_is_smallest_fit(void **state) {
  (void)state;
  for (size_t s = 0; s <= LA_MAX_CLASS_SIZE; s += s < 65536 ? 1 : 997) {
    unsigned c = la_class_of(s);
    assert_true(c < LA_NCLASSES);
    assert_true(la_class_size[c] >= s);
    if (c > 0) assert_true(la_class_size[c - 1] < s);
  }
}

/* Above 128 bytes the rounding waste stays under 25% (in fact 20%). */
static void rounding_waste_bounded(void **state) {
  (void)state;
  for (size_t s = 129; s <= LA_MAX_CLASS_SIZE; s += 1 + s / 4096) {
    size_t cs = la_class_size[la_class_of(s)];
    assert_true((cs - s) * 5 <= cs);
  }
}

/* Two to eight kilobytes plus a header of up to an eighth (sqlite's 4096 +
 * 272 page-cache entries) round up by at most 12.5%, not to the next
 * quarter step; a kilobyte plus up to 16 bytes (sqlite's 1024 + 8) by at
 * most 1.5%. */
static void just_above_a_power_of_two_rounds_tight(void **state) {
  (void)state;
  for (size_t p = 2048; p <= 8192; p <<= 1)
    for (size_t s = p + 1; s <= p + p / 8; s++) {
      size_t cs = la_class_size[la_class_of(s)];
      assert_true((cs - s) * 8 <= s);
    }
  for (size_t s = 1025; s <= 1040; s++) assert_true((la_class_size[la_class_of(s)] - s) * 64 <= s);
}

static void powers_of_two_are_exact(void **state) {
  (void)state;
  for (size_t s = 16; s <= LA_MAX_CLASS_SIZE; s <<= 1) assert_int_equal(la_class_size[la_class_of(s)], s);
}

/* The ranges of the heap's direct[] entries (indexed by (size+7)/8 on the
 * malloc fast path) that each class owns: a class that starts above
 * LA_SMALL_LUT_MAX owns none (1280 owns the entries of 1041..1152). */
static void lookup_table_matches(void **state) {
  (void)state;
  for (size_t s = 0; s <= LA_SMALL_LUT_MAX; s++) {
    unsigned c = la_class_of(s), i = (unsigned)((s + 7) >> 3);
    assert_int_equal(la_class_of(i * 8), c);
    assert_true(la_class_direct_first[c] <= i && i <= la_class_direct_last[c]);
  }
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    if (c > 0 && la_class_size[c - 1] >= LA_SMALL_LUT_MAX) assert_int_equal(la_class_direct_last[c], 0);
    else
      for (unsigned i = la_class_direct_first[c]; i <= la_class_direct_last[c]; i++)
        assert_int_equal(la_class_of(i * 8), c);
  }
}

/* Every class fits its slab; small classes waste at most 1/64 of it and
 * slabs of one block are the large classes. */
static void slab_shapes(void **state) {
  (void)state;
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    size_t bytes = (size_t)la_class_units[c] * LA_UNIT_SIZE;
    assert_true(la_class_units[c] >= 1 && la_class_units[c] <= LA_MAX_SLAB_UNITS);
    assert_int_equal(la_class_capacity[c], bytes / la_class_size[c]);
    assert_true(la_class_capacity[c] >= 1);
    assert_int_equal(la_class_large[c], la_class_capacity[c] == 1);
    if (la_class_size[c] <= 16384) assert_true((bytes % la_class_size[c]) * 64 <= bytes);
  }
  assert_int_equal(la_class_size[la_class_of(16384)], 16384);  /* not 20 KiB */
}

static void aligned_classes(void **state) {
  (void)state;
  for (size_t align = 32; align <= LA_UNIT_SIZE; align <<= 1)
    for (size_t s = 1; s <= 3 * LA_UNIT_SIZE; s = s * 3 + 1) {
      unsigned c = la_class_for_aligned(s, align);
      assert_true(la_class_size[c] >= s);
      assert_int_equal(la_class_size[c] % align, 0);
    }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(classes_increase_and_align), cmocka_unit_test(class_of_is_smallest_fit),
    cmocka_unit_test(rounding_waste_bounded),     cmocka_unit_test(powers_of_two_are_exact),
    cmocka_unit_test(lookup_table_matches),       cmocka_unit_test(slab_shapes),
    cmocka_unit_test(aligned_classes),            cmocka_unit_test(just_above_a_power_of_two_rounds_tight),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
