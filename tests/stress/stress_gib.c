/* stress_gib.c - blocks of a gigabyte and more.
 *
 * Sizes this big exercise the arithmetic of the huge path: rounding up to
 * pages or segments, alignment by over-mapping and trimming, mremap-based
 * realloc, and size fields or shifts that overflow 32 bits.  Only a handful of
 * bytes spread over each block are touched, so resident memory stays at a few
 * pages although gigabytes of address space are in use:
 *   - malloc(1 GiB), touch one byte in pages spread over the block, realloc
 *     to 1.5 GiB and check the bytes survived, touch the new part, shrink to
 *     512 MiB and to 64 KiB, check again, free;
 *   - a dirty 1 GiB block freed and then calloc'ed again must read as zero
 *     (an allocator that caches huge mappings must not skip the clearing);
 *   - aligned_alloc(1 GiB, 1 GiB + 1) and posix_memalign(1 GiB, small):
 *     aligned, usable at both ends;
 *   - two threads each allocating 1 GiB blocks at once and freeing each
 *     other's.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "stress.h"

#define PROBES 16

/* Offsets of the probed bytes of an n-byte block: spread evenly, each at a
 * different position within its page, and the last byte.  The first probe is
 * well past the start: the tests put a full pattern there. */
static size_t probe_offset(size_t n, size_t i)
{
  if (i == 0)
    return n / (2 * PROBES) + 123;
  if (i == PROBES - 1)
    return n - 1;
  return i * (n / PROBES) + (i * 577) % 4096;
}

static unsigned char probe_value(uint64_t seed, size_t i)
{
  return (unsigned char)(stress_mix(seed + i) | 1);  /* never 0: zero is "lost" */
}

static void write_probes(unsigned char *p, size_t n, uint64_t seed)
{
  for (size_t i = 0; i < PROBES; i++)
    p[probe_offset(n, i)] = probe_value(seed, i);
}

/* Check the probes written for an n-byte block, those below limit only. */
static bool check_probes(const unsigned char *p, size_t n, uint64_t seed, size_t limit,
                         const char *who)
{
  for (size_t i = 0; i < PROBES; i++) {
    size_t o = probe_offset(n, i);
    if (o < limit && p[o] != probe_value(seed, i)) {
      stress_fail("%s: byte %zu of %p is 0x%02x, expected 0x%02x", who, o, (const void *)p, p[o],
                  probe_value(seed, i));
      return false;
    }
  }
  return true;
}

static void test_gib_malloc_realloc_grow_and_shrink(void **state)
{
  (void)state;
  const size_t gib = STRESS_GIB, grown = gib + gib / 2, shrunk = 64 * STRESS_KIB;
  unsigned char *p = malloc(gib);
  assert_non_null(p);
  assert_true(malloc_usable_size(p) >= gib);
  /* The first 64 KiB fully (they must survive the shrink), probes elsewhere. */
  write_probes(p, gib, 1);
  stress_pattern_fill(p, shrunk, 7);
  assert_true(check_probes(p, gib, 1, gib, "1 GiB block"));

  unsigned char *q = realloc(p, grown);
  assert_non_null(q);
  assert_true(malloc_usable_size(q) >= grown);
  assert_true(check_probes(q, gib, 1, gib, "1 GiB block grown to 1.5 GiB"));
  assert_true(stress_pattern_check(q, shrunk, 7, "start of the grown block"));
  /* The new half-gigabyte is writable, up to the last byte. */
  write_probes(q + gib, grown - gib, 2);
  assert_true(check_probes(q + gib, grown - gib, 2, grown - gib, "grown part"));
  assert_true(check_probes(q, gib, 1, gib, "1 GiB block grown to 1.5 GiB"));

  /* Shrink in two steps: huge to huge (probes below 512 MiB survive), then
   * to a size other paths serve. */
  unsigned char *h = realloc(q, gib / 2);
  assert_non_null(h);
  assert_true(check_probes(h, gib, 1, gib / 2, "1.5 GiB block shrunk to 512 MiB"));
  assert_true(stress_pattern_check(h, shrunk, 7, "1.5 GiB block shrunk to 512 MiB"));
  unsigned char *r = realloc(h, shrunk);
  assert_non_null(r);
  assert_true(stress_pattern_check(r, shrunk, 7, "1.5 GiB block shrunk to 64 KiB"));
  free(r);
  STRESS_ASSERT_NO_FAILURES();
}

static void test_gib_calloc_after_dirty_free_is_zero(void **state)
{
  (void)state;
  const size_t gib = STRESS_GIB;
  for (int round = 0; round < 3; round++) {
    unsigned char *p = malloc(gib);
    assert_non_null(p);
    write_probes(p, gib, 10 + (uint64_t)round);
    free(p);
    unsigned char *z = calloc(1, gib);
    assert_non_null(z);
    for (size_t i = 0; i < PROBES; i++) {
      size_t o = probe_offset(gib, i);
      if (z[o] != 0)
        stress_fail("calloc(1 GiB) after freeing a dirty 1 GiB block: byte %zu is 0x%02x", o,
                    z[o]);
    }
    /* Whole first and last pages, where recycled headers would be. */
    stress_check_zero(z, 4096, "calloc(1 GiB), first page");
    stress_check_zero(z + gib - 4096, 4096, "calloc(1 GiB), last page");
    free(z);
  }
  /* calloc's size multiplication must detect overflow, even here (volatile:
   * hide the constant product from the compiler's warning). */
  volatile size_t factor = (size_t)1 << 35;
  errno = 0;
  void *o = calloc(gib, factor);
  assert_null(o);
  assert_int_equal(errno, ENOMEM);
  STRESS_ASSERT_NO_FAILURES();
}

static void test_gib_aligned(void **state)
{
  (void)state;
  const size_t gib = STRESS_GIB;
  unsigned char *p = aligned_alloc(gib, gib + 1);
  assert_non_null(p);
  assert_int_equal((uintptr_t)p & (gib - 1), 0);
  assert_true(malloc_usable_size(p) >= gib + 1);
  p[0] = 0x5a;
  p[gib] = 0xa5;  /* the last requested byte */
  assert_int_equal(p[0], 0x5a);
  assert_int_equal(p[gib], 0xa5);

  /* A second one while the first is alive: alignment must not depend on the
   * address space being empty. */
  void *s = NULL;
  assert_int_equal(posix_memalign(&s, gib, 100), 0);
  assert_non_null(s);
  assert_int_equal((uintptr_t)s & (gib - 1), 0);
  memset(s, 0x33, 100);
  free(p);
  free(s);
}

/* ---- two threads, each freeing the other's 1 GiB blocks --------------------------- */

typedef struct {
  pthread_barrier_t *barrier;
  unsigned char **mine, **theirs;
  uint64_t seed, their_seed;
  size_t rounds;
} gib_arg;

static void *gib_thread(void *arg)
{
  gib_arg *a = arg;
  for (size_t r = 0; r < a->rounds; r++) {
    unsigned char *p = malloc(STRESS_GIB);
    if (!p)
      stress_fail("malloc(1 GiB) in a thread returned NULL");
    else
      write_probes(p, STRESS_GIB, a->seed + r);
    *a->mine = p;
    pthread_barrier_wait(a->barrier);  /* both blocks published */
    unsigned char *q = *a->theirs;
    if (q) {
      check_probes(q, STRESS_GIB, a->their_seed + r, STRESS_GIB, "other thread's 1 GiB block");
      free(q);
    }
    pthread_barrier_wait(a->barrier);  /* both read before the next round */
  }
  return NULL;
}

static void test_gib_blocks_freed_by_other_thread(void **state)
{
  (void)state;
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, 2);
  unsigned char *blocks[2] = {NULL, NULL};
  size_t rounds = stress_count(4, 2);
  gib_arg args[2] = {
    {.barrier = &barrier, .mine = &blocks[0], .theirs = &blocks[1], .seed = 100,
     .their_seed = 200, .rounds = rounds},
    {.barrier = &barrier, .mine = &blocks[1], .theirs = &blocks[0], .seed = 200,
     .their_seed = 100, .rounds = rounds},
  };
  stress_run_threads(2, gib_thread, args, sizeof args[0]);
  pthread_barrier_destroy(&barrier);
  STRESS_ASSERT_NO_FAILURES();
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    STRESS_TEST(test_gib_malloc_realloc_grow_and_shrink),
    STRESS_TEST(test_gib_calloc_after_dirty_free_is_zero),
    STRESS_TEST(test_gib_aligned),
    STRESS_TEST(test_gib_blocks_freed_by_other_thread),
  };
  STRESS_MAIN("stress_gib", tests);
}
