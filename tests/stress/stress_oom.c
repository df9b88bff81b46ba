/* stress_oom.c - running out of memory.
 *
 * With the address space capped (RLIMIT_AS a little above what the process
 * already maps), allocation must fail cleanly: NULL (or ENOMEM from
 * posix_memalign) with errno ENOMEM, never a crash or a corrupted heap.
 *   - one thread allocates blocks of every kind of size (small, large, huge)
 *     until nothing more fits, then every entry point is asked for more
 *     (malloc, calloc, realloc - which must leave its block intact -,
 *     posix_memalign, aligned_alloc); every block kept is still intact, and
 *     once they are freed and the cap lifted the heap works as before;
 *   - four threads do the same at once, each with its own blocks.
 * Not run in sanitizer builds: ASan reserves terabytes of shadow memory, so
 * an address-space cap would starve ASan itself.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "stress.h"

#ifndef ALLOC_TEST_DIRECT

#define MAX_BLOCKS 200000

/* Bytes of address space mapped now (VmSize). */
static size_t mapped_now(void)
{
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  size_t kib = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmSize: %zu kB", &kib) == 1)
      break;
  if (f)
    fclose(f);
  return kib * STRESS_KIB;
}

static struct rlimit saved;

static void cap_address_space(size_t headroom)
{
  assert_int_equal(getrlimit(RLIMIT_AS, &saved), 0);
  struct rlimit cap = saved;
  cap.rlim_cur = mapped_now() + headroom;
  assert_int_equal(setrlimit(RLIMIT_AS, &cap), 0);
}

static void lift_cap(void)
{
  assert_int_equal(setrlimit(RLIMIT_AS, &saved), 0);
}

/* Sizes: mostly small, some large, a few huge. */
static size_t oom_size(stress_rng *rng)
{
  uint64_t r = stress_rng_next(rng) % 100;
  if (r < 70)
    return 16 + stress_rng_next(rng) % 4096;
  if (r < 95)
    return 64 * STRESS_KIB + stress_rng_next(rng) % (512 * STRESS_KIB);
  return 4 * STRESS_MIB + stress_rng_next(rng) % (16 * STRESS_MIB);
}

typedef struct {
  uint64_t seed;
  size_t nblocks, failures_seen;
} oom_args;

/* Fill memory until allocations fail, check that every entry point fails
 * cleanly, check every block and free them. */
static void *exhaust(void *arg)
{
  oom_args *a = arg;
  stress_rng rng;
  stress_rng_seed(&rng, a->seed);
  stress_block *blocks = calloc(MAX_BLOCKS, sizeof *blocks);
  if (!blocks) {
    stress_fail("no room for the block list");
    return NULL;
  }
  size_t n = 0, misses = 0;
  while (n < MAX_BLOCKS && misses < 64) {
    size_t size = oom_size(&rng);
    errno = 0;
    void *p = malloc(size);
    if (!p) {
      if (errno != ENOMEM)
        stress_fail("malloc(%zu) failed with errno %d, not ENOMEM", size, errno);
      misses++;
      continue;
    }
    blocks[n] = (stress_block){p, size, stress_rng_next(&rng)};
    stress_block_fill(&blocks[n++]);
  }
  if (misses < 64)
    stress_fail("the cap was never reached (%zu blocks)", n);
  /* Every entry point, asked for more than can fit. */
  size_t big = 256 * STRESS_MIB;
  errno = 0;
  if (malloc(big) || errno != ENOMEM)
    stress_fail("malloc(256 MiB) under the cap: not NULL/ENOMEM");
  errno = 0;
  if (calloc(big / 16, 16) || errno != ENOMEM)
    stress_fail("calloc(256 MiB) under the cap: not NULL/ENOMEM");
  void *q = NULL;
  if (posix_memalign(&q, 4096, big) != ENOMEM || q)
    stress_fail("posix_memalign(256 MiB) under the cap: not ENOMEM");
  errno = 0;
  if (aligned_alloc(1 << 21, big) || errno != ENOMEM)
    stress_fail("aligned_alloc(256 MiB) under the cap: not NULL/ENOMEM");
  if (n > 0) {
    stress_block *b = &blocks[n / 2];
    errno = 0;
    if (realloc(b->p, big) || errno != ENOMEM)
      stress_fail("realloc to 256 MiB under the cap: not NULL/ENOMEM");
  }
  for (size_t i = 0; i < n; i++)   /* a failed realloc left its block as it was */
    if (stress_block_check(&blocks[i], "block kept through the failures"))
      free(blocks[i].p);
  free(blocks);
  a->nblocks = n;
  a->failures_seen = misses;
  return NULL;
}

static void test_oom_one_thread(void **state)
{
  (void)state;
  cap_address_space(192 * STRESS_MIB);
  oom_args a = {0x0dd5eed, 0, 0};
  exhaust(&a);
  lift_cap();
  stress_note("one thread: %zu blocks before the cap", a.nblocks);
  assert_true(a.nblocks > 100);
  void *p = malloc(64 * STRESS_MIB);   /* room again */
  assert_non_null(p);
  memset(p, 1, 64 * STRESS_MIB);
  free(p);
  assert_int_equal(stress_take_failures(), 0);
}

static void test_oom_four_threads(void **state)
{
  (void)state;
  oom_args a[4];
  for (int i = 0; i < 4; i++)
    a[i] = (oom_args){0xabc0 + (uint64_t)i, 0, 0};
  cap_address_space(320 * STRESS_MIB);   /* thread stacks come out of it too */
  stress_run_threads(4, exhaust, a, sizeof a[0]);
  lift_cap();
  for (int i = 0; i < 4; i++)
    stress_note("thread %d: %zu blocks before the cap", i, a[i].nblocks);
  assert_int_equal(stress_take_failures(), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    STRESS_TEST(test_oom_one_thread),
    STRESS_TEST(test_oom_four_threads),
  };
  STRESS_MAIN("stress_oom", tests);
}

#else

int main(void)
{
  puts("stress_oom: skipped in sanitizer builds (ASan needs the address space)");
  return 77;   /* ctest: skipped */
}

#endif
