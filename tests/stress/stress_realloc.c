/* stress_realloc.c - realloc growth and shrinkage in several threads at once.
 *
 * realloc is where an allocator decides between growing in place, moving to
 * another size class, and remapping (mremap) huge blocks; each decision has
 * its own copy length to get right, and every class or mapping boundary is a
 * chance to lose or shift bytes.  Four threads at once:
 *   - grow a string one byte at a time (tens of thousands of reallocs through
 *     every small class), then by random steps of up to 16 KiB, then by
 *     doubling to tens of MiB; the contents are checked at every step;
 *   - grow an array by doubling from 1 element to 32 MiB (alternating realloc
 *     and reallocarray), then shrink it by halving back to 1 element;
 *   - bounce one block between small, large and huge sizes.
 * The blocks are freed by the thread that grew them; cross-thread realloc is
 * covered by stress_xthread.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "stress.h"

#define THREADS 4

/* ---- a string grown step by step ---------------------------------------------- */

/* Character i of the string of `seed`: never 0, so strlen works on it. */
static inline char string_char(uint64_t seed, size_t i)
{
  uint64_t x = (seed ^ i) * 0x9e3779b97f4a7c15ULL;
  return (char)((x >> 56) | 1);
}

/* Check s[from, to) against the string of `seed`; every `step`th byte only. */
static bool check_string_range(const char *s, uint64_t seed, size_t from, size_t to, size_t step)
{
  for (size_t i = from; i < to; i += step)
    if (s[i] != string_char(seed, i)) {
      stress_fail("string %p: byte %zu of %zu is 0x%02x, expected 0x%02x", (const void *)s, i,
                  to, (unsigned char)s[i], (unsigned char)string_char(seed, i));
      return false;
    }
  return true;
}

/* After a move, the old content must have been copied.  An allocator may
 * legitimately move on every realloc, so a full check each time would be
 * quadratic: check both ends and about 256 bytes spread over the middle, and
 * everything whenever the length is a power of two. */
static bool check_string_after_move(const char *s, uint64_t seed, size_t len)
{
  if (len <= 1024 || (len & (len - 1)) == 0)
    return check_string_range(s, seed, 0, len, 1);
  size_t step = len / 256 + 1;
  return check_string_range(s, seed, 0, 256, 1) &&
         check_string_range(s, seed, len - 256, len, 1) &&
         check_string_range(s, seed, 256 + (seed % step), len - 256, step);
}

typedef struct {
  char *s;
  size_t len;      /* characters, not counting the terminator */
  uint64_t seed;
  size_t moves;
} growing_string;

/* Grow to new_len characters (plus terminator) and append the new ones. */
static bool string_grow(growing_string *g, size_t new_len)
{
  char *t = realloc(g->s, new_len + 1);
  if (!t) {
    stress_fail("realloc(%zu) of a string returned NULL", new_len + 1);
    return false;
  }
  bool moved = t != g->s;
  g->s = t;
  if (moved) {
    g->moves++;
    if (!check_string_after_move(t, g->seed, g->len))
      return false;
  } else if (g->len > 0 && !check_string_range(t, g->seed, g->len - 1, g->len, 1)) {
    return false;  /* in place: at least the last old byte must be intact */
  }
  for (size_t i = g->len; i < new_len; i++)
    t[i] = string_char(g->seed, i);
  t[new_len] = '\0';
  g->len = new_len;
  return true;
}

typedef struct {
  uint64_t seed;
  size_t bytewise_to, stepwise_to, doubling_to;
  size_t moves;
} string_arg;

static void *grow_string_thread(void *arg)
{
  string_arg *a = arg;
  stress_rng rng;
  stress_rng_seed(&rng, a->seed);
  growing_string g = {.seed = a->seed};
  bool ok = true;
  while (ok && g.len < a->bytewise_to)
    ok = string_grow(&g, g.len + 1);
  while (ok && g.len < a->stepwise_to)
    ok = string_grow(&g, g.len + stress_rng_range(&rng, 1, 16 * STRESS_KIB));
  while (ok && g.len < a->doubling_to)
    ok = string_grow(&g, g.len * 2);
  if (ok) {
    check_string_after_move(g.s, g.seed, g.len);
    if (strlen(g.s) != g.len)
      stress_fail("strlen of the grown string is %zu, expected %zu", strlen(g.s), g.len);
  }
  free(g.s);
  a->moves = g.moves;
  return NULL;
}

static void test_realloc_string_growth(void **state)
{
  (void)state;
  string_arg args[THREADS];
  for (size_t i = 0; i < THREADS; i++)
    args[i] = (string_arg){
      .seed = 12000 + i,
      .bytewise_to = stress_count(64 * STRESS_KIB, 8 * STRESS_KIB),
      .stepwise_to = stress_count(4 * STRESS_MIB, STRESS_MIB),
      /* Different targets, so the threads are at different sizes at once. */
      .doubling_to = stress_count((16 + 8 * i) * STRESS_MIB, 4 * STRESS_MIB),
    };
  double t0 = stress_now();
  stress_run_threads(THREADS, grow_string_thread, args, sizeof args[0]);
  stress_note("string growth: %zu threads to %zu..%zu MiB, %zu moves in thread 0, %.2f s",
              (size_t)THREADS, args[0].doubling_to >> 20, args[THREADS - 1].doubling_to >> 20,
              args[0].moves, stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
}

/* ---- an array grown by doubling and shrunk by halving ---------------------------- */

static inline uint64_t array_value(uint64_t seed, size_t i)
{
  return stress_mix(seed + i);
}

static bool check_array(const uint64_t *a, uint64_t seed, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (a[i] != array_value(seed, i)) {
      stress_fail("array %p: element %zu of %zu is %#llx, expected %#llx", (const void *)a, i, n,
                  (unsigned long long)a[i], (unsigned long long)array_value(seed, i));
      return false;
    }
  return true;
}

/* realloc or reallocarray to n elements, alternating by step. */
static uint64_t *resize_array(uint64_t *a, size_t n, size_t step)
{
  uint64_t *b = step % 2 ? reallocarray(a, n, sizeof *a) : realloc(a, n * sizeof *a);
  if (!b)
    stress_fail("%s(%zu elements) returned NULL", step % 2 ? "reallocarray" : "realloc", n);
  return b;
}

typedef struct {
  uint64_t seed;
  size_t max_elems;
  size_t rounds;
} array_arg;

/* One round: 1 -> max_elems by doubling, then back to 1 by halving. */
static bool array_round(uint64_t seed, size_t max_elems)
{
  size_t n = 1, step = 0;
  uint64_t *a = malloc(sizeof *a);
  if (!a) {
    stress_fail("malloc(8) returned NULL");
    return false;
  }
  a[0] = array_value(seed, 0);
  for (; n < max_elems; n *= 2, step++) {
    uint64_t *b = resize_array(a, n * 2, step);
    if (!b || !check_array(b, seed, n)) {
      free(b ? b : a);
      return false;
    }
    for (size_t i = n; i < n * 2; i++)
      b[i] = array_value(seed, i);
    a = b;
  }
  for (; n > 1; n /= 2, step++) {
    uint64_t *b = resize_array(a, n / 2, step);
    if (!b || !check_array(b, seed, n / 2)) {
      free(b ? b : a);
      return false;
    }
    a = b;
  }
  free(a);
  return true;
}

static void *array_thread(void *arg)
{
  array_arg *a = arg;
  for (size_t r = 0; r < a->rounds; r++)
    if (!array_round(a->seed + r * 1000, a->max_elems))
      break;
  return NULL;
}

static void test_realloc_array_doubling(void **state)
{
  (void)state;
  array_arg args[THREADS];
  for (size_t i = 0; i < THREADS; i++)
    args[i] = (array_arg){.seed = 13000 + i,
                          .max_elems = 32 * STRESS_MIB / sizeof(uint64_t),
                          .rounds = stress_count(3, 1)};
  double t0 = stress_now();
  stress_run_threads(THREADS, array_thread, args, sizeof args[0]);
  stress_note("array doubling: %zu threads x %zu rounds to 32 MiB, %.2f s", (size_t)THREADS,
              args[0].rounds, stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
}

/* ---- one block bouncing between size ranges ----------------------------------------- */

/* Small, large and huge sizes in an order that makes realloc cross between
 * all of them in both directions, including class edges. */
static const size_t bounce_sizes[] = {
  16, STRESS_MIB, 100, 300 * STRESS_KIB, 24, 5 * STRESS_MIB + 3, 4000, 64 * STRESS_KIB + 1,
  8, 2 * STRESS_MIB, 2 * STRESS_MIB + 1, 4 * STRESS_MIB - 1, 4 * STRESS_MIB + 1, 129,
  128 * STRESS_KIB, 5, 3 * STRESS_MIB, 1,
};
#define NBOUNCE (sizeof bounce_sizes / sizeof bounce_sizes[0])

typedef struct {
  uint64_t seed;
  size_t cycles;
} bounce_arg;

static void *bounce_thread(void *arg)
{
  bounce_arg *a = arg;
  stress_rng rng;
  stress_rng_seed(&rng, a->seed);
  stress_block b = {.p = NULL, .size = 0};
  for (size_t c = 0; c < a->cycles; c++) {
    for (size_t i = 0; i < NBOUNCE; i++) {
      /* Start each cycle at a different point of the list. */
      size_t size = bounce_sizes[(i + c) % NBOUNCE];
      void *q = realloc(b.p, size);  /* realloc(NULL, n) for the first */
      if (!q) {
        stress_fail("realloc(%p, %zu) returned NULL", b.p, size);
        free(b.p);
        return NULL;
      }
      if (b.p)
        stress_pattern_check_prefix(q, b.size, b.seed, size, "bounced block");
      b = (stress_block){.p = q, .size = size, .seed = stress_fresh_seed(&rng)};
      stress_block_fill(&b);
    }
  }
  free(b.p);
  return NULL;
}

static void test_realloc_bounce_between_size_ranges(void **state)
{
  (void)state;
  bounce_arg args[THREADS];
  for (size_t i = 0; i < THREADS; i++)
    args[i] = (bounce_arg){.seed = 14000 + i, .cycles = stress_count(100, 20)};
  double t0 = stress_now();
  stress_run_threads(THREADS, bounce_thread, args, sizeof args[0]);
  stress_note("bounce: %zu threads x %zu cycles of %zu sizes, %.2f s", (size_t)THREADS,
              args[0].cycles, NBOUNCE, stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    STRESS_TEST(test_realloc_string_growth),
    STRESS_TEST(test_realloc_array_doubling),
    STRESS_TEST(test_realloc_bounce_between_size_ranges),
  };
  STRESS_MAIN("stress_realloc", tests);
}
