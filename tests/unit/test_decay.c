/* test_decay.c - the decay curve, driven by explicit times: a burst fades
 * out smoothly over the decay time, 0 purges at once, -1 never, and a new
 * decay time re-plans what is pending. */
#include "unit.h"

#define MS 1000000ull   /* ns */

static int setup(void **state) {
  (void)state;
  la_decay_init_weights();
  return 0;
}

static void burst_fades_over_decay_time(void **state) {
  (void)state;
  la_decay_t d;
  la_decay_init(&d, 1000, 0);
  assert_true(la_decay_limit(&d, 0, 10000) >= 9990);   /* new pages stay */
  size_t prev = 10000;
  for (uint64_t t = 50; t <= 1100; t += 50) {
    size_t lim = la_decay_limit(&d, t * MS, prev);
    assert_true(lim <= prev);                           /* never grows */
    if (t == 250) assert_true(lim > 7000 && lim < 9000);  /* smoothstep: slow start */
    if (t == 500) assert_true(lim > 4000 && lim < 6000);  /* halfway */
    if (t == 750) assert_true(lim > 1000 && lim < 3000);
    la_decay_purged(&d, lim);
    prev = lim;
  }
  assert_int_equal(prev, 0);                            /* all gone after 1 s */
}

static void zero_and_never(void **state) {
  (void)state;
  la_decay_t now, never;
  la_decay_init(&now, 0, 0);
  la_decay_init(&never, -1, 0);
  assert_int_equal(la_decay_limit(&now, 0, 5000), 0);
  assert_int_equal(la_decay_limit(&never, 3600000 * MS, 5000), SIZE_MAX);
  assert_int_equal(la_decay_next_deadline(&never, 5000), 0);
  assert_int_equal(la_decay_next_deadline(&now, 0), 0);
}

/* Reused pages (the count going down) do not create new backlog, and
 * pages freed later decay on their own schedule. */
static void later_pages_decay_later(void **state) {
  (void)state;
  la_decay_t d;
  la_decay_init(&d, 1000, 0);
  la_decay_limit(&d, 0, 1000);
  size_t lim = la_decay_limit(&d, 900 * MS, 1000 + 1000);   /* 1000 more at 900 ms */
  assert_true(lim > 1000 && lim < 1100);                    /* old nearly gone, new kept */
  la_decay_purged(&d, lim);
  lim = la_decay_limit(&d, 1400 * MS, lim);
  assert_true(lim > 300 && lim < 700);                      /* new ones halfway */
  la_decay_purged(&d, lim);
  assert_int_equal(la_decay_limit(&d, 2000 * MS, lim), 0);
}

/* A new decay time applies to pending pages proportionally. */
static void new_decay_time_replans(void **state) {
  (void)state;
  la_decay_t d;
  la_decay_init(&d, 10000, 0);
  size_t lim = la_decay_limit(&d, 0, 8000);
  lim = la_decay_limit(&d, 5000 * MS, lim);   /* halfway through 10 s */
  assert_true(lim > 3000 && lim < 5000);
  la_decay_purged(&d, lim);
  la_decay_set_ms(&d, 1000, 5000 * MS);       /* now 1 s: halfway through 1 s */
  size_t after = la_decay_limit(&d, 5500 * MS, lim);
  assert_true(after < lim / 2);
  la_decay_purged(&d, after);
  assert_int_equal(la_decay_limit(&d, 6100 * MS, after), 0);
  la_decay_set_ms(&d, -1, 6100 * MS);
  assert_int_equal(la_decay_limit(&d, 9999999 * MS, 42), SIZE_MAX);
}

static void deadlines(void **state) {
  (void)state;
  la_decay_t d;
  la_decay_init(&d, 1000, 7 * MS);
  assert_int_equal(la_decay_next_deadline(&d, 0), 0);                 /* nothing pending */
  assert_int_equal(la_decay_next_deadline(&d, 10), 7 * MS + 5 * MS);  /* next 5 ms epoch */
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(burst_fades_over_decay_time), cmocka_unit_test(zero_and_never),
    cmocka_unit_test(later_pages_decay_later),     cmocka_unit_test(new_decay_time_replans),
    cmocka_unit_test(deadlines),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
