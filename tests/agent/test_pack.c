/* test_pack.c - the packed rows of allocd's history tables (pack.h,
 * rollup_pack, chunk.h): values come back exactly, steady rollups and
 * chunks of steady samples stay small, and truncated or random bytes are
 * refused without reading past the row; a period's rollup merged from two
 * parts (an allocd restart in the middle) equals the rollup of the whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "chunk.h"
#include "pack.h"
#include "rollup.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N 64

static void assert_same(double a, double b) {
  if (isnan(a)) assert_true(isnan(b));
  else assert_memory_equal(&a, &b, sizeof a);   /* bit for bit, -0.0 included */
}

static void values_round_trip(void **state) {
  (void)state;
  const double special[] = {0, -0.0, 1, -1, 0.5, 1e-300, 123456789012345.0, 9007199254740992.0,
                            9007199254740993.0 * 2, -9007199254740992.0, 1.8446744073709552e19, NAN,
                            INFINITY, -INFINITY, 0.98964233398437496};
  double v[N], out[N];
  uint8_t buf[N * PACK_MAX];
  srand(7);
  for (int round = 0; round < 200; round++) {
    for (int i = 0; i < N; i++) {
      if (round == 0) v[i] = special[i % (int)(sizeof special / sizeof *special)];
      else if (i % 3 == 0) v[i] = (double)(rand() % 1000000) * (rand() % 2 ? 1 : -1);
      else if (i % 3 == 1) v[i] = (double)rand() / RAND_MAX;
      else v[i] = ldexp((double)rand(), rand() % 40);
    }
    size_t len = pack_values(v, N, NULL, buf), pos = 0;
    assert_true(len <= sizeof buf);
    assert_true(unpack_values(buf, len, &pos, N, NULL, out));
    assert_int_equal(pos, len);
    for (int i = 0; i < N; i++) assert_same(v[i], out[i]);
  }
}

static void relative_to_a_base(void **state) {
  (void)state;
  double base[N], v[N], out[N];
  uint8_t buf[N * PACK_MAX];
  for (int i = 0; i < N; i++) {
    base[i] = i % 4 == 3 ? 0.25 : 1e12 + i;   /* a fractional base counts as 0 */
    v[i] = i % 2 ? base[i] : 1e12 - i;
  }
  size_t len = pack_values(v, N, base, buf), pos = 0;
  assert_true(unpack_values(buf, len, &pos, N, base, out));
  for (int i = 0; i < N; i++) assert_same(v[i], out[i]);
  for (int i = 0; i < N; i++) v[i] = base[i] = (double)(1ULL << 40) + i;
  assert_int_equal(pack_values(v, N, base, buf), N);   /* equal to the base: one byte each */
}

/* Every metric constant over the minute: min, max and avg cost a byte each. */
static void steady_rollup_is_small(void **state) {
  (void)state;
  rollup_t r, done;
  rollup_init(&r, 60000);
  double v[SNAP_NMETRICS];
  for (int i = 0; i < SNAP_NMETRICS; i++) v[i] = i < SNAP_NSTATS ? 3e9 + i : 0.125;
  for (int t = 0; t < 60; t++) rollup_add(&r, t * 1000, v, &done);
  uint8_t buf[ROLLUP_PACK_MAX];
  size_t len = rollup_pack(&r, buf), pos = 0;
  assert_true(len <= (size_t)(SNAP_NSTATS * 5 + (SNAP_NMETRICS - SNAP_NSTATS) * 9 + 3 * SNAP_NMETRICS * 9));
  double last[SNAP_NMETRICS], min[SNAP_NMETRICS];
  assert_true(unpack_values(buf, len, &pos, SNAP_NMETRICS, NULL, last));
  assert_true(unpack_values(buf, len, &pos, SNAP_NMETRICS, last, min));
  for (int i = 0; i < SNAP_NMETRICS; i++) assert_same(v[i], last[i]), assert_same(v[i], min[i]);
}

/* Hostile bytes: every prefix of a row and random rows fail or decode,
 * never read past the end (ASan build checks that). */
static void truncated_and_random_rows(void **state) {
  (void)state;
  double v[N], out[N];
  for (int i = 0; i < N; i++) v[i] = i % 2 ? i * 1e6 : 1.0 / (i + 3);
  uint8_t buf[N * PACK_MAX];
  size_t len = pack_values(v, N, NULL, buf);
  for (size_t cut = 0; cut < len; cut++) {
    uint8_t *copy = malloc(cut ? cut : 1);
    memcpy(copy, buf, cut);
    size_t pos = 0;
    assert_false(unpack_values(copy, cut, &pos, N, NULL, out));
    assert_true(pos <= cut);
    free(copy);
  }
  srand(11);
  for (int round = 0; round < 20000; round++) {
    size_t n = (size_t)(rand() % 64);
    uint8_t *junk = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) junk[i] = (uint8_t)(rand() % 4 ? rand() : 0xff);
    size_t pos = 0;
    unpack_values(junk, n, &pos, 8, v, out);
    assert_true(pos <= n);
    free(junk);
  }
  uint8_t eleven[11];   /* a varint longer than 64 bits */
  memset(eleven, 0x80, sizeof eleven);
  size_t pos = 0;
  assert_false(unpack_values(eleven, sizeof eleven, &pos, 1, NULL, out));
}

/* Samples split at every point into an earlier and a later part: the
 * later part merged with the earlier equals the rollup of all of them; a
 * metric the earlier part lacks (NaN, an older layout) keeps the later
 * part's values. */
static void merged_halves_equal_the_whole(void **state) {
  (void)state;
  enum { SAMPLES = 40 };
  static double v[SAMPLES][SNAP_NMETRICS];
  srand(11);
  for (int k = 0; k < SAMPLES; k++)
    for (int i = 0; i < SNAP_NMETRICS; i++) v[k][i] = (double)(rand() % 100000);
  for (int cut = 0; cut <= SAMPLES; cut++) {
    rollup_t whole, early, late, done;
    rollup_init(&whole, 60000);
    rollup_init(&early, 60000);
    rollup_init(&late, 60000);
    for (int k = 0; k < SAMPLES; k++) {
      rollup_add(&whole, 1000 * k, v[k], &done);
      rollup_add(k < cut ? &early : &late, 1000 * k, v[k], &done);
    }
    rollup_merge(&late, &early);
    assert_int_equal(late.n, whole.n);
    for (int i = 0; i < SNAP_NMETRICS; i++) {
      assert_true(late.min[i] == whole.min[i] && late.max[i] == whole.max[i] && late.last[i] == whole.last[i]);
      assert_true(late.sum[i] == whole.sum[i]);   /* integers: exact */
    }
  }
  rollup_t late, older, done;
  rollup_init(&late, 60000);
  rollup_init(&older, 60000);
  rollup_add(&late, 0, v[0], &done);
  rollup_add(&late, 1000, v[1], &done);
  older.n = 3;
  for (int i = 0; i < SNAP_NMETRICS; i++) older.min[i] = older.max[i] = older.sum[i] = older.last[i] = NAN;
  rollup_merge(&late, &older);
  assert_int_equal(late.n, 5);
  for (int i = 0; i < SNAP_NMETRICS; i++) {
    assert_true(fabs(late.sum[i] / late.n - (v[0][i] + v[1][i]) / 2) < 1e-6);   /* the later part's average */
    assert_true(late.last[i] == v[1][i]);
  }
}

/* A chunk of samples written one after the other reads back bit for bit:
 * times and numbers (steps of any size, backwards included), and values
 * that stay, move a little, jump, or are doubles, NaN and -0.0. */
static void chunk_round_trip(void **state) {
  (void)state;
  enum { SAMPLES = 200, NV = 43 };
  static double v[SAMPLES][NV];
  static int64_t t[SAMPLES];
  static uint64_t number[SAMPLES];
  static uint8_t blob[SAMPLES * CHUNK_ENTRY_MAX(NV)];
  const double special[] = {NAN, -0.0, 0.123456789, INFINITY, 1e300, 18446744073709551615.0};
  srand(13);
  for (int k = 0; k < SAMPLES; k++) {
    t[k] = k ? t[k - 1] + (k % 17 == 0 ? -5 : rand() % 3000) : 1796337017392;
    number[k] = k ? number[k - 1] + (k % 29 == 0 ? UINT64_MAX / 3 : 1) : 7;
    for (int i = 0; i < NV; i++) {
      double prev = k ? v[k - 1][i] : 1000000;
      v[k][i] = i % 5 == 0 ? prev : i % 5 == 1 ? prev + rand() % 100 : i % 5 == 2 ? (double)rand() * rand()
              : i % 5 == 3 ? (double)rand() / RAND_MAX : special[(k + i) % 6];
    }
  }
  size_t len = pack_values(v[0], NV, NULL, blob);
  for (int k = 1; k < SAMPLES; k++) len += chunk_append(t[k - 1], number[k - 1], v[k - 1], t[k], number[k], v[k], NV, NULL, NULL, blob + len);
  static chunk_reader_t r;
  assert_true(chunk_first(&r, blob, len, NV, t[0], number[0], NULL, NULL));
  for (int k = 0; k < SAMPLES; k++) {
    if (k) assert_true(chunk_next(&r));
    assert_true(r.t == t[k] && r.number == number[k]);
    for (int i = 0; i < NV; i++) assert_same(v[k][i], r.v[i]);
  }
  assert_false(chunk_next(&r));
  assert_true(chunk_at_end(&r));
}

/* A sample whose values did not move costs its time and number steps and
 * the bitmap: 2 + 1 + 6 bytes for 43 values. */
static void unchanged_sample_is_small(void **state) {
  (void)state;
  double v[43];
  for (int i = 0; i < 43; i++) v[i] = 1e9 + i;
  uint8_t out[CHUNK_ENTRY_MAX(43)];
  assert_int_equal(chunk_append(1000, 5, v, 2000, 6, v, 43, NULL, NULL, out), 2 + 1 + 6);
}

/* Truncated chunks and random bytes end the reading (chunk_at_end false)
 * without reading past the BLOB. */
static void truncated_and_random_chunks(void **state) {
  (void)state;
  enum { NV = 43 };
  double a[NV], b[NV];
  for (int i = 0; i < NV; i++) a[i] = i * 1000.0, b[i] = i % 2 ? a[i] + 77 : 0.5;
  uint8_t blob[3 * CHUNK_ENTRY_MAX(NV)];
  size_t first = pack_values(a, NV, NULL, blob);
  size_t len = first + chunk_append(0, 0, a, 1000, 1, b, NV, NULL, NULL, blob + first);
  static chunk_reader_t r;
  for (size_t cut = 0; cut < len; cut++) {
    uint8_t *copy = malloc(cut ? cut : 1);   /* exactly cut bytes: ASan sees any read past them */
    memcpy(copy, blob, cut);
    if (chunk_first(&r, copy, cut, NV, 0, 0, NULL, NULL)) {
      assert_false(chunk_next(&r));
      assert_true(chunk_at_end(&r) == (cut == first));   /* cut after the first sample: a chunk of one */
    }
    free(copy);
  }
  srand(17);
  for (int round = 0; round < 2000; round++) {
    size_t n = (size_t)(rand() % 300);
    uint8_t *junk = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) junk[i] = (uint8_t)rand();
    if (chunk_first(&r, junk, n, NV, 0, 0, NULL, NULL))
      while (chunk_next(&r)) assert_true(r.pos <= n);
    assert_true(r.pos <= n);
    free(junk);
  }
  assert_false(chunk_first(&r, blob, len, 0, 0, 0, NULL, NULL));
  assert_false(chunk_first(&r, blob, len, CHUNK_MAX_VALUES + 1, 0, 0, NULL, NULL));
}

/* A guess for the tests: value 2 is value 0 / value 1 (a ratio of two
 * statistics), when value 1 is not 0; ctx counts the calls. */
static void guess_quotient(const void *ctx, const double *row, double *guess) {
  ++*(int *)ctx;
  if (row[1] != 0) guess[2] = row[0] / row[1];
}

/* A value computed from the sample's others, as the guess computes it,
 * costs only its bit, and reads back bit for bit; one that is not (a
 * writer that computed it otherwise) is written out and reads back too. */
static void guessed_values(void **state) {
  (void)state;
  enum { SAMPLES = 50 };
  double v[SAMPLES][3];
  srand(19);
  for (int k = 0; k < SAMPLES; k++) {
    v[k][0] = 1000 + rand() % 5000, v[k][1] = k % 7 ? 4000 + rand() % 5000 : 0;
    v[k][2] = k % 11 == 5 ? 0.25 : v[k][1] ? v[k][0] / v[k][1] : 0;
  }
  uint8_t blob[SAMPLES * CHUNK_ENTRY_MAX(3)], plain[SAMPLES * CHUNK_ENTRY_MAX(3)];
  int calls = 0;
  size_t len = pack_values(v[0], 3, NULL, blob), plen = len;
  for (int k = 1; k < SAMPLES; k++) {
    len += chunk_append(k, k, v[k - 1], k + 1, k + 1, v[k], 3, guess_quotient, &calls, blob + len);
    plen += chunk_append(k, k, v[k - 1], k + 1, k + 1, v[k], 3, NULL, NULL, plain + plen);
  }
  assert_int_equal(calls, SAMPLES - 1);
  assert_true(len + 8 * (SAMPLES / 2) < plen);   /* most quotients not written out: 9 bytes each */
  static chunk_reader_t r;
  assert_true(chunk_first(&r, blob, len, 3, 1, 1, guess_quotient, &calls));
  for (int k = 0; k < SAMPLES; k++) {
    if (k) assert_true(chunk_next(&r));
    for (int i = 0; i < 3; i++) assert_same(v[k][i], r.v[i]);
  }
  assert_true(chunk_at_end(&r));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(values_round_trip),
    cmocka_unit_test(relative_to_a_base),
    cmocka_unit_test(steady_rollup_is_small),
    cmocka_unit_test(truncated_and_random_rows),
    cmocka_unit_test(merged_halves_equal_the_whole),
    cmocka_unit_test(chunk_round_trip),
    cmocka_unit_test(unchanged_sample_is_small),
    cmocka_unit_test(truncated_and_random_chunks),
    cmocka_unit_test(guessed_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
