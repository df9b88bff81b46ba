/* test_bitmap.c - the unit masks: run finding and longest runs, checked
 * against a bit-by-bit reference on random and edge-case masks. */
#include "unit.h"

static uint64_t ref_run_starts(uint64_t bits, unsigned k) {
  uint64_t r = 0;
  for (unsigned i = 0; i + k <= 64; i++) {
    bool all = true;
    for (unsigned j = i; j < i + k; j++) all = all && (bits >> j & 1);
    if (all) r |= (uint64_t)1 << i;
  }
  return r;
}

static unsigned ref_longest(uint64_t bits) {
  unsigned best = 0, cur = 0;
  for (unsigned i = 0; i < 64; i++) {
    cur = (bits >> i & 1) ? cur + 1 : 0;
    if (cur > best) best = cur;
  }
  return best;
}

static uint64_t next_random(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void run_starts_match_reference(void **state) {
  (void)state;
  uint64_t seed = 88172645463325252ull;
  uint64_t edge[] = {0, ~0ull, 1, 1ull << 63, 0x5555555555555555ull, 0xff00ff00ff00ff00ull, ~1ull};
  for (unsigned t = 0; t < 3000; t++) {
    uint64_t bits = t < 7 ? edge[t] : next_random(&seed);
    if (t % 3 == 0) bits |= next_random(&seed);   /* denser masks: longer runs */
    for (unsigned k = 1; k <= 64; k++) assert_int_equal(la_bits_run_starts(bits, k), ref_run_starts(bits, k));
  }
}

static void longest_run_matches_reference(void **state) {
  (void)state;
  uint64_t seed = 1234567;
  for (unsigned t = 0; t < 20000; t++) {
    uint64_t bits = next_random(&seed);
    if (t & 1) bits |= next_random(&seed) | next_random(&seed);
    assert_int_equal(la_bits_longest_run(bits), ref_longest(bits));
  }
  assert_int_equal(la_bits_longest_run(0), 0);
  assert_int_equal(la_bits_longest_run(~0ull), 64);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(run_starts_match_reference),
    cmocka_unit_test(longest_run_matches_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
