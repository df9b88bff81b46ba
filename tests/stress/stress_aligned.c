/* stress_aligned.c - large blocks and aligned allocations in threads.
 *
 * Large blocks (64 KiB .. 64 MiB) come from a different path than small ones
 * in most allocators: whole pages or units carved from segments, or mappings
 * of their own, returned to the OS (munmap/madvise) on free.  Aligned
 * allocations over-allocate and trim, or look for an aligned run; both must
 * give back a pointer that free() (and realloc, malloc_usable_size) can still
 * map to its metadata.  Several threads, each keeping a few blocks alive:
 *   - large blocks of every allocation function (malloc, calloc,
 *     posix_memalign, aligned_alloc, memalign, valloc), alignments 16 B ..
 *     2 MiB, some handed to other threads to be freed;
 *   - many small and medium blocks (1 B .. 128 KiB) with alignments 16 B ..
 *     2 MiB, the case where alignment is much larger than the size.
 * Every block is checked for its alignment, for malloc_usable_size >= the
 * request, for zeroes when it came from calloc, and for its pattern.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stress.h"

#define THREADS 4

enum alloc_fn { FN_MALLOC, FN_CALLOC, FN_POSIX_MEMALIGN, FN_ALIGNED_ALLOC, FN_MEMALIGN, FN_VALLOC,
                FN_COUNT };

static const char *const fn_names[FN_COUNT] = {"malloc", "calloc", "posix_memalign",
                                               "aligned_alloc", "memalign", "valloc"};

typedef struct {
  void *p;
  size_t size;
  size_t align;       /* what the function guarantees */
  enum alloc_fn fn;
} request;

/* Allocate size bytes with function fn (alignment `align` where it takes
 * one) and check what comes back.  Returns NULL after recording a failure. */
static void *allocate_checked(request *r)
{
  void *p = NULL;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  switch (r->fn) {
  case FN_MALLOC: p = malloc(r->size); r->align = 16; break;
  case FN_CALLOC: p = calloc(1, r->size); r->align = 16; break;
  case FN_POSIX_MEMALIGN: {
    int rc = posix_memalign(&p, r->align, r->size);
    if (rc != 0)
      p = NULL;
    break;
  }
  case FN_ALIGNED_ALLOC: p = aligned_alloc(r->align, r->size); break;
  case FN_MEMALIGN: p = memalign(r->align, r->size); break;
  case FN_VALLOC: p = valloc(r->size); r->align = page; break;
  default: break;
  }
  if (!p) {
    stress_fail("%s(size %zu, alignment %zu) failed", fn_names[r->fn], r->size, r->align);
    return NULL;
  }
  /* malloc and calloc: glibc's guarantee on x86-64 is 16, but sizes below 16
   * only need 8 (C's "suitably aligned for any object that fits"). */
  size_t need = (r->fn <= FN_CALLOC && r->size < 16) ? 8 : r->align;
  stress_check_alignment(p, need, fn_names[r->fn]);
  size_t usable = malloc_usable_size(p);
  if (usable < r->size)
    stress_fail("%s(%zu): malloc_usable_size is %zu", fn_names[r->fn], r->size, usable);
  if (r->fn == FN_CALLOC)
    stress_check_zero(p, r->size, "calloc");
  r->p = p;
  return p;
}

/* ---- large blocks --------------------------------------------------------------- */

#define LARGE_SLOTS 4
#define LARGE_MIN (64 * STRESS_KIB)
#define LARGE_MAX (64 * STRESS_MIB)

static stress_exchange large_exchange;

typedef struct {
  uint64_t seed;
  size_t ops;
} large_arg;

static void *large_thread(void *arg)
{
  large_arg *a = arg;
  stress_rng rng;
  stress_rng_seed(&rng, a->seed);
  stress_block slots[LARGE_SLOTS];
  memset(slots, 0, sizeof slots);
  for (size_t op = 0; op < a->ops; op++) {
    stress_block *s = &slots[stress_rng_below(&rng, LARGE_SLOTS)];
    if (s->p) {
      /* Hand one in four to whichever thread next uses the same exchange
       * slot; free the rest here. */
      if (stress_rng_below(&rng, 4) == 0) {
        stress_block_check(s, "large block");
        stress_tag_fill(s);
        stress_exchange_put(&large_exchange, s->p, stress_rng_next(&rng));
      } else {
        stress_block_check(s, "large block");
        free(s->p);
      }
      s->p = NULL;
      continue;
    }
    request r = {.size = stress_size_log_skewed(&rng, LARGE_MIN, LARGE_MAX),
                 .align = stress_alignment(&rng, 16, 2 * STRESS_MIB),
                 .fn = (enum alloc_fn)stress_rng_below(&rng, FN_COUNT)};
    if (!allocate_checked(&r))
      continue;
    *s = (stress_block){.p = r.p, .size = r.size, .seed = stress_fresh_seed(&rng)};
    stress_block_fill(s);
  }
  for (size_t i = 0; i < LARGE_SLOTS; i++)
    if (slots[i].p) {
      stress_block_check(&slots[i], "large block");
      free(slots[i].p);
    }
  return NULL;
}

static void test_large_blocks_in_threads(void **state)
{
  (void)state;
  large_arg args[THREADS];
  for (size_t i = 0; i < THREADS; i++)
    args[i] = (large_arg){.seed = 15000 + i, .ops = stress_count(400, 80)};
  double t0 = stress_now();
  stress_run_threads(THREADS, large_thread, args, sizeof args[0]);
  size_t left = stress_exchange_drain(&large_exchange);
  stress_note("large blocks: %zu threads x %zu ops, %zu freed via exchange (%zu by main), %.2f s",
              (size_t)THREADS, args[0].ops, atomic_load(&large_exchange.freed), left,
              stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
}

/* ---- small blocks with large alignments ----------------------------------------------- */

#define ALIGNED_SLOTS 256

static stress_exchange aligned_exchange;

typedef struct {
  uint64_t seed;
  size_t ops;
} aligned_arg;

/* Sizes 1 B .. 128 KiB, mostly small; alignments 16 B .. 2 MiB, mostly
 * small (a 2 MiB-aligned 24-byte block may cost its allocator 2 MiB). */
static request random_aligned_request(stress_rng *rng)
{
  static const enum alloc_fn aligned_fns[] = {FN_POSIX_MEMALIGN, FN_ALIGNED_ALLOC, FN_MEMALIGN};
  request r = {.fn = aligned_fns[stress_rng_below(rng, 3)]};
  r.size = stress_rng_below(rng, 8) == 0 ? stress_rng_range(rng, 1, 15)
                                         : stress_size_skewed(rng, 128 * STRESS_KIB);
  r.align = stress_rng_below(rng, 8) == 0 ? stress_alignment(rng, 4096, 2 * STRESS_MIB)
                                          : stress_alignment(rng, 16, 2048);
  return r;
}

static void *aligned_thread(void *arg)
{
  aligned_arg *a = arg;
  stress_rng rng;
  stress_rng_seed(&rng, a->seed);
  stress_block *slots = calloc(ALIGNED_SLOTS, sizeof *slots);
  if (!slots) {
    stress_fail("calloc(slots) returned NULL");
    return NULL;
  }
  for (size_t op = 0; op < a->ops; op++) {
    stress_block *s = &slots[stress_rng_below(&rng, ALIGNED_SLOTS)];
    if (s->p) {
      stress_block_check(s, "aligned block");
      if (s->size >= STRESS_TAG_MIN && stress_rng_below(&rng, 8) == 0) {
        stress_tag_fill(s);
        stress_exchange_put(&aligned_exchange, s->p, stress_rng_next(&rng));
      } else {
        free(s->p);
      }
      s->p = NULL;
      continue;
    }
    request r = random_aligned_request(&rng);
    if (!allocate_checked(&r))
      continue;
    *s = (stress_block){.p = r.p, .size = r.size, .seed = stress_fresh_seed(&rng)};
    stress_block_fill(s);
  }
  for (size_t i = 0; i < ALIGNED_SLOTS; i++)
    if (slots[i].p) {
      stress_block_check(&slots[i], "aligned block");
      free(slots[i].p);
    }
  free(slots);
  return NULL;
}

static void test_aligned_blocks_in_threads(void **state)
{
  (void)state;
  aligned_arg args[THREADS];
  for (size_t i = 0; i < THREADS; i++)
    args[i] = (aligned_arg){.seed = 16000 + i, .ops = stress_count(100000, 10000)};
  double t0 = stress_now();
  stress_run_threads(THREADS, aligned_thread, args, sizeof args[0]);
  stress_exchange_drain(&aligned_exchange);
  stress_note("aligned blocks: %zu threads x %zu ops, %zu freed via exchange, %.2f s",
              (size_t)THREADS, args[0].ops, atomic_load(&aligned_exchange.freed),
              stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    STRESS_TEST(test_large_blocks_in_threads),
    STRESS_TEST(test_aligned_blocks_in_threads),
  };
  STRESS_MAIN("stress_aligned", tests);
}
