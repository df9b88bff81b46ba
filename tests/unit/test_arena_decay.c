/* test_arena_decay.c - decay-based purging of the arenas and the huge
 * cache, driven by an injected clock (no sleeps, no purger thread): freed
 * memory stays dirty, decays on the curve, passes through muzzy when asked
 * to, and a decay time changed at run time re-plans what is pending. */
#include "unit.h"

#include <alloc.h>
#include <string.h>

#define MS 1000000ull

static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now; }

static size_t stat(const char *name) {
  size_t v, len = sizeof v;
  assert_int_equal(alloc_ctl(name, &v, &len, NULL, 0), 0);
  return v;
}

static void set_decay(ssize_t dirty, ssize_t muzzy) {
  assert_int_equal(alloc_ctl("opt.dirty_decay_ms", NULL, NULL, &dirty, sizeof dirty), 0);
  assert_int_equal(alloc_ctl("opt.muzzy_decay_ms", NULL, NULL, &muzzy, sizeof muzzy), 0);
}

static int setup(void **state) {
  (void)state;
  la_os_set_clock(fake_clock);
  fake_now = 1000 * MS;
  bool off = false;
  return alloc_ctl("background_thread", NULL, NULL, &off, sizeof off);
}

static int teardown_each(void **state) {
  (void)state;
  la_malloc_trim(0);
  return 0;
}

#define NBLOCKS 64
#define BLOCK (320 * 1024)   /* a large class, above what thread heaps cache */
#define BURST ((size_t)NBLOCKS * BLOCK)
/* At the moment of the frees the curve already lets a sliver go. */
#define MOST_OF_BURST (BURST * 9 / 10)

/* 16 MiB of large blocks, written and freed: all of it becomes dirty. */
static void burst(void) {
  void *b[NBLOCKS];
  for (int i = 0; i < NBLOCKS; i++) {
    b[i] = la_malloc(BLOCK);
    memset(b[i], 1, BLOCK);
  }
  for (int i = 0; i < NBLOCKS; i++) la_free(b[i]);
}

static void run_decay_at(uint64_t ms_from_start, uint64_t start) {
  fake_now = start + ms_from_start * MS;
  la_decay_all(fake_now);
}

static void dirty_memory_decays_on_the_curve(void **state) {
  (void)state;
  set_decay(1000, 0);
  uint64_t start = fake_now;
  size_t purged_before = stat("stats.purged");
  burst();
  run_decay_at(0, start);
  size_t d0 = stat("stats.dirty");
  assert_true(d0 >= MOST_OF_BURST);
  run_decay_at(500, start);
  size_t d500 = stat("stats.dirty");
  assert_true(d500 < d0 * 3 / 4 && d500 > d0 / 4);   /* about half */
  run_decay_at(1100, start);
  assert_int_equal(stat("stats.dirty"), 0);
  assert_int_equal(stat("stats.muzzy"), 0);          /* muzzy_decay_ms:0: straight to purged */
  assert_true(stat("stats.purged") - purged_before >= BURST);
}

static void never_decays_with_minus_one(void **state) {
  (void)state;
  set_decay(-1, 0);
  uint64_t start = fake_now;
  burst();
  run_decay_at(3600 * 1000, start);
  assert_true(stat("stats.dirty") >= BURST);
}

static void zero_purges_at_once(void **state) {
  (void)state;
  set_decay(0, 0);
  burst();
  assert_int_equal(stat("stats.dirty"), 0);   /* purged by the frees themselves */
}

/* dirty -> muzzy (MADV_FREE) over the dirty decay, then muzzy -> purged
 * over the muzzy decay. */
static void muzzy_stage(void **state) {
  (void)state;
  set_decay(100, 1000);
  uint64_t start = fake_now;
  burst();
  run_decay_at(200, start);
  assert_int_equal(stat("stats.dirty"), 0);
  size_t m = stat("stats.muzzy");
  assert_true(m >= MOST_OF_BURST);
  run_decay_at(700, start);
  size_t m2 = stat("stats.muzzy");
  assert_true(m2 < m && m2 > 0);
  run_decay_at(1300, start);
  assert_int_equal(stat("stats.muzzy"), 0);
}

/* Pending pages follow a decay time changed while they wait. */
static void runtime_change_replans(void **state) {
  (void)state;
  set_decay(-1, 0);
  uint64_t start = fake_now;
  burst();
  run_decay_at(1000, start);
  assert_true(stat("stats.dirty") >= BURST);
  set_decay(200, 0);   /* applied at fake 1000 ms */
  run_decay_at(1100, start);
  assert_true(stat("stats.dirty") < BURST);
  run_decay_at(1250, start);
  assert_int_equal(stat("stats.dirty"), 0);
}

/* Freed huge blocks are cached (dirty) and unmapped on the same curve; a
 * cached mapping is reused and then reads as written, so calloc clears it. */
static void huge_cache_decays(void **state) {
  (void)state;
  set_decay(1000, 0);
  uint64_t start = fake_now;
  size_t mapped0 = stat("stats.mapped");
  char *h = la_malloc(32 << 20);
  memset(h, 7, 32 << 20);
  la_free(h);
  assert_true(stat("stats.dirty") >= (32u << 20));
  char *z = la_calloc(1, 32 << 20);        /* reuses the cached mapping */
  assert_ptr_equal(z, h);
  for (size_t i = 0; i < (32u << 20); i += 4096) assert_int_equal(z[i], 0);
  la_free(z);
  run_decay_at(1100, start);
  assert_int_equal(stat("stats.dirty"), 0);
  assert_true(stat("stats.mapped") <= mapped0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_teardown(dirty_memory_decays_on_the_curve, teardown_each),
    cmocka_unit_test_teardown(never_decays_with_minus_one, teardown_each),
    cmocka_unit_test_teardown(zero_purges_at_once, teardown_each),
    cmocka_unit_test_teardown(muzzy_stage, teardown_each),
    cmocka_unit_test_teardown(runtime_change_replans, teardown_each),
    cmocka_unit_test_teardown(huge_cache_decays, teardown_each),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
