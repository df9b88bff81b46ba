/* stress_mixed.c - a random workload of every call, in threads.
 *
 * The targeted tests each push one path; real programs interleave all of
 * them, and allocator bugs often need a particular interleaving: a calloc
 * that reuses a block freed remotely, a realloc of a block whose slab was
 * just abandoned, a free that empties a slab while another thread refills the
 * class.  Each thread keeps tables of live blocks and performs a fixed number
 * of random operations (deterministic seeds, so a failure can be re-run):
 *   - a small "hot" table picked most of the time (short lifetimes) and a
 *     big "cold" table picked rarely (long lifetimes);
 *   - allocation by malloc, calloc (checked for zeroes), posix_memalign,
 *     realloc(NULL, n), or malloc using all of malloc_usable_size; sizes
 *     from 1 byte to 256 KiB, mostly small;
 *   - on a live block: check and free, realloc (prefix checked), check only,
 *     or hand it to any thread through the exchange.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "stress.h"

#define THREADS 4
#define HOT_SLOTS 64
#define COLD_SLOTS 4096
#define HOT_MAX (256 * STRESS_KIB)
#define COLD_MAX (16 * STRESS_KIB)   /* bounds the cold table's memory */

static stress_exchange mixed_exchange;

typedef struct {
  uint64_t seed;
  size_t ops;
  size_t counts[8];   /* per kind of operation, for the note */
} mixed_arg;

enum { OP_MALLOC, OP_CALLOC, OP_MEMALIGN, OP_REALLOC_NULL, OP_USABLE, OP_FREE, OP_REALLOC,
       OP_HANDOFF };

/* Allocate into empty slot s, by a random function. */
static void fill_slot(stress_block *s, size_t max, stress_rng *rng, mixed_arg *a)
{
  /* 1 in 64 requests is below the smallest class (1..7 bytes). */
  size_t size = stress_rng_below(rng, 64) == 0 ? stress_rng_range(rng, 1, 7)
                                                : stress_size_skewed(rng, max);
  uint64_t r = stress_rng_below(rng, 100);
  int op = r < 60 ? OP_MALLOC : r < 80 ? OP_CALLOC : r < 88 ? OP_MEMALIGN
         : r < 94 ? OP_REALLOC_NULL : OP_USABLE;
  void *p = NULL;
  switch (op) {
  case OP_MALLOC:
  case OP_USABLE: p = malloc(size); break;
  case OP_CALLOC: p = calloc(size, 1); break;
  case OP_REALLOC_NULL: p = realloc(NULL, size); break;
  case OP_MEMALIGN:
    if (posix_memalign(&p, stress_alignment(rng, 16, 4096), size) != 0)
      p = NULL;
    break;
  }
  a->counts[op]++;
  if (!p) {
    stress_fail("allocation %d of %zu bytes returned NULL", op, size);
    return;
  }
  if (op == OP_CALLOC)
    stress_check_zero(p, size, "calloc");
  /* malloc_usable_size promises the whole of it is usable: use it all, so an
   * overstated size collides with the neighbouring block's pattern. */
  if (op == OP_USABLE)
    size = malloc_usable_size(p);
  *s = (stress_block){.p = p, .size = size, .seed = stress_fresh_seed(rng)};
  stress_block_fill(s);
}

/* Operate on live slot s: free, realloc, check, or hand off. */
static void use_slot(stress_block *s, size_t max, stress_rng *rng, mixed_arg *a)
{
  uint64_t r = stress_rng_below(rng, 100);
  if (r < 15) {  /* check only: the block lives on */
    stress_block_check(s, "live block");
    return;
  }
  if (r < 30) {
    size_t size = stress_size_skewed(rng, max);
    void *q = realloc(s->p, size);
    a->counts[OP_REALLOC]++;
    if (!q) {
      stress_fail("realloc(%zu) returned NULL", size);
      return;  /* the old block is still valid and still ours */
    }
    stress_pattern_check_prefix(q, s->size, s->seed, size, "realloc'ed block");
    *s = (stress_block){.p = q, .size = size, .seed = stress_fresh_seed(rng)};
    stress_block_fill(s);
    return;
  }
  stress_block_check(s, "block to free");
  if (r < 37 && s->size >= STRESS_TAG_MIN) {
    stress_tag_fill(s);
    stress_exchange_put(&mixed_exchange, s->p, stress_rng_next(rng));
    a->counts[OP_HANDOFF]++;
  } else {
    free(s->p);
    a->counts[OP_FREE]++;
  }
  s->p = NULL;
}

static void free_table(stress_block *t, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (t[i].p) {
      stress_block_check(&t[i], "block at the end");
      free(t[i].p);
    }
}

static void *mixed_thread(void *arg)
{
  mixed_arg *a = arg;
  stress_rng rng;
  stress_rng_seed(&rng, a->seed);
  stress_block *hot = calloc(HOT_SLOTS, sizeof *hot);
  stress_block *cold = calloc(COLD_SLOTS, sizeof *cold);
  if (!hot || !cold) {
    stress_fail("calloc of the tables returned NULL");
    free(hot);
    free(cold);
    return NULL;
  }
  for (size_t op = 0; op < a->ops; op++) {
    bool use_hot = stress_rng_below(&rng, 4) != 0;
    stress_block *s = use_hot ? &hot[stress_rng_below(&rng, HOT_SLOTS)]
                              : &cold[stress_rng_below(&rng, COLD_SLOTS)];
    size_t max = use_hot ? HOT_MAX : COLD_MAX;
    if (s->p)
      use_slot(s, max, &rng, a);
    else
      fill_slot(s, max, &rng, a);
  }
  free_table(hot, HOT_SLOTS);
  free_table(cold, COLD_SLOTS);
  free(hot);
  free(cold);
  return NULL;
}

static void test_mixed_random_workload(void **state)
{
  (void)state;
  mixed_arg args[THREADS];
  memset(args, 0, sizeof args);
  for (size_t i = 0; i < THREADS; i++) {
    args[i].seed = 17000 + i;
    args[i].ops = stress_count(600000, 50000);
  }
  double t0 = stress_now();
  stress_run_threads(THREADS, mixed_thread, args, sizeof args[0]);
  stress_exchange_drain(&mixed_exchange);
  size_t totals[8] = {0};
  for (size_t i = 0; i < THREADS; i++)
    for (size_t k = 0; k < 8; k++)
      totals[k] += args[i].counts[k];
  stress_note("mixed: %zu threads x %zu ops: malloc %zu calloc %zu memalign %zu realloc(NULL) %zu "
              "usable %zu free %zu realloc %zu handed off %zu (freed via exchange %zu), %.2f s",
              (size_t)THREADS, args[0].ops, totals[OP_MALLOC], totals[OP_CALLOC],
              totals[OP_MEMALIGN], totals[OP_REALLOC_NULL], totals[OP_USABLE], totals[OP_FREE],
              totals[OP_REALLOC], totals[OP_HANDOFF], atomic_load(&mixed_exchange.freed),
              stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
  assert_int_equal(atomic_load(&mixed_exchange.freed), totals[OP_HANDOFF]);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    STRESS_TEST(test_mixed_random_workload),
  };
  STRESS_MAIN("stress_mixed", tests);
}
