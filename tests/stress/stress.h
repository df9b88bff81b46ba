/* stress.h - helpers shared by liballoc's threaded stress tests.
 *
 * The stress tests only use the standard malloc API, so the same sources run
 * three ways:
 *   - normally: built without liballoc, run with LD_PRELOAD=liballoc.so; each
 *     binary first checks that liballoc really is the process allocator;
 *   - ALLOC_SANITIZE builds: tests/common/direct.h is force-included, which
 *     renames malloc & co. to liballoc's la_* entry points and defines
 *     ALLOC_TEST_DIRECT; the tests then run under ASan+UBSan;
 *   - against the system allocator, to check the tests themselves: set
 *     ALLOC_STRESS_SYSTEM_MALLOC=1 to skip the "liballoc is loaded" check, e.g.
 *       gcc -O2 -fno-builtin -D_GNU_SOURCE tests/stress/stress_mixed.c \
 *           tests/stress/stress_common.c -lcmocka -lpthread -o /tmp/m
 *       ALLOC_STRESS_SYSTEM_MALLOC=1 /tmp/m
 *
 * What the helpers provide:
 *   - workload scaling (ALLOC_STRESS_SCALE, a factor: 0.25 runs a quarter of
 *     the iterations, 4 four times as many; direct/ASan builds default to 0.25);
 *   - a deterministic RNG and size distributions skewed to small sizes;
 *   - data patterns: every block is filled with a pattern derived from a seed
 *     its owner keeps, and checked before it is freed.  Small blocks are filled
 *     completely; big ones at their head, their tail and at a stride, which
 *     still touches every page (or every 4th page of very big blocks), so two
 *     blocks that overlap are caught without writing gigabytes;
 *   - "tagged" blocks that carry their size and seed in a 16-byte header, for
 *     blocks handed to a thread that cannot know them otherwise;
 *   - an exchange: a set of atomic slots through which threads pass tagged
 *     blocks to be checked and freed by whichever thread picks them up;
 *   - failure recording usable from any thread (and from a forked child):
 *     cmocka's assertions longjmp and must only run on the main thread, so
 *     worker threads call stress_fail() and the test asserts at the end that
 *     no failure was recorded;
 *   - the per-test teardown: malloc_trim(0), then a check that the heap is
 *     still usable.
 */
#ifndef ALLOC_STRESS_H
#define ALLOC_STRESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define STRESS_KIB ((size_t)1 << 10)
#define STRESS_MIB ((size_t)1 << 20)
#define STRESS_GIB ((size_t)1 << 30)

/* ---- scaling -------------------------------------------------------------- */

/* The factor applied to iteration counts (see the top of this file). */
double stress_scale(void);

/* n scaled by stress_scale(), never below `floor` (and never below 1). */
size_t stress_count(size_t n, size_t floor);

/* ---- deterministic randomness --------------------------------------------- */

/* splitmix64's finaliser: a cheap bijective mix of 64 bits. */
static inline uint64_t stress_mix(uint64_t x)
{
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

typedef struct {
  uint64_t state;
} stress_rng;

static inline void stress_rng_seed(stress_rng *rng, uint64_t seed)
{
  rng->state = stress_mix(seed + 0x9e3779b97f4a7c15ULL);
}

static inline uint64_t stress_rng_next(stress_rng *rng)
{
  rng->state += 0x9e3779b97f4a7c15ULL;
  return stress_mix(rng->state);
}

/* Uniform in [0, n); n > 0.  The modulo bias is irrelevant here. */
static inline uint64_t stress_rng_below(stress_rng *rng, uint64_t n)
{
  return stress_rng_next(rng) % n;
}

/* Uniform in [lo, hi]. */
static inline size_t stress_rng_range(stress_rng *rng, size_t lo, size_t hi)
{
  return lo + (size_t)stress_rng_below(rng, (uint64_t)(hi - lo) + 1);
}

/* A request size in [8, max], skewed to small sizes the way real programs
 * are: about 70% up to 256 B, 20% up to 4 KiB, the rest up to `max`; 1 in 32
 * draws is a size at an interesting boundary (a power of two, or one byte
 * either side of it), so size-class edges get hit often. */
size_t stress_size_skewed(stress_rng *rng, size_t max);

/* A size in [lo, hi] whose logarithm is skewed towards lo: most draws are
 * close to lo, few are near hi.  For large-block tests. */
size_t stress_size_log_skewed(stress_rng *rng, size_t lo, size_t hi);

/* A power-of-two alignment in [min, max], small alignments more likely. */
size_t stress_alignment(stress_rng *rng, size_t min, size_t max);

/* A fresh seed, unique in the process: the thread's RNG mixed with a counter,
 * so two live blocks never share a pattern even if they share an address. */
uint64_t stress_fresh_seed(stress_rng *rng);

/* ---- failures --------------------------------------------------------------- */

/* Record a failure and print it (the first few only) to stderr.  Safe from any
 * thread and from a forked child: it formats into a stack buffer and write()s,
 * so it neither allocates nor takes stdio locks. */
void stress_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Failures recorded since the last call; resets the count. */
unsigned stress_take_failures(void);

/* Failures recorded so far, without resetting the count. */
unsigned stress_failure_count(void);

/* Forget failures inherited from the parent (for a forked child). */
void stress_reset_failures(void);

/* In a test body (main thread): fail the test if any thread recorded a
 * failure. */
#define STRESS_ASSERT_NO_FAILURES() assert_int_equal(stress_take_failures(), 0)

/* Print an informational line (test name, counts, seconds). */
void stress_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic seconds, for the informational notes only: no test asserts
 * timings. */
double stress_now(void);

/* ---- data patterns ---------------------------------------------------------- */

/* Fill `n` bytes at p with the pattern of `seed`.  Which bytes are written
 * depends only on n (see the top of the file). */
void stress_pattern_fill(void *p, size_t n, uint64_t seed);

/* Check the bytes that stress_pattern_fill(p, n, seed) wrote, but only those
 * below `limit` (pass n to check everything): after a realloc that shrank a
 * block, or grew it, only the old prefix is defined.  On a mismatch records a
 * failure naming `who` and returns false. */
bool stress_pattern_check_prefix(const void *p, size_t n, uint64_t seed, size_t limit,
                                 const char *who);

static inline bool stress_pattern_check(const void *p, size_t n, uint64_t seed, const char *who)
{
  return stress_pattern_check_prefix(p, n, seed, n, who);
}

/* Check that calloc'ed memory reads as zero: all of it up to 64 KiB, above
 * that the first and last 4 KiB and one word in every 64 bytes. */
bool stress_check_zero(const void *p, size_t n, const char *who);

/* Check that p is aligned to `align` (a power of two). */
bool stress_check_alignment(const void *p, size_t align, const char *who);

/* A live block as its owner remembers it. */
typedef struct {
  void *p;
  size_t size;
  uint64_t seed;
} stress_block;

static inline void stress_block_fill(const stress_block *b)
{
  stress_pattern_fill(b->p, b->size, b->seed);
}

static inline bool stress_block_check(const stress_block *b, const char *who)
{
  return stress_pattern_check(b->p, b->size, b->seed, who);
}

/* ---- tagged blocks ------------------------------------------------------------ */

/* Tagged blocks start with a header {size, seed}, followed by the pattern of
 * `seed` over the remaining size - 16 bytes. */
#define STRESS_TAG_MIN ((size_t)16)

/* Write the header and the pattern; b->size >= STRESS_TAG_MIN. */
void stress_tag_fill(const stress_block *b);

/* Check a tagged block whose size and seed are only known from its header.
 * Returns false (and records a failure) when the header is implausible or the
 * pattern is damaged. */
bool stress_tag_check(const void *p, const char *who);

/* ---- exchange ------------------------------------------------------------------ */

#define STRESS_EXCHANGE_SLOTS 64

/* Slots holding tagged blocks in transit between threads.  Zero-initialise. */
typedef struct {
  _Atomic(void *) slot[STRESS_EXCHANGE_SLOTS];
  atomic_size_t freed;  /* blocks checked and freed by a thread that did not
                           allocate them (or may not have) */
} stress_exchange;

/* Put the tagged block p into a slot chosen by `r`; whatever block was there
 * is taken out, checked and freed by the calling thread. */
void stress_exchange_put(stress_exchange *x, void *p, uint64_t r);

/* Take every block out of the exchange, check and free it.  Returns how many
 * blocks were freed. */
size_t stress_exchange_drain(stress_exchange *x);

/* ---- threads --------------------------------------------------------------------- */

/* Run fn on n threads, thread i getting (char *)args + i * arg_size, and join
 * them all.  A thread that cannot be created is a recorded failure. */
void stress_run_threads(size_t n, void *(*fn)(void *), void *args, size_t arg_size);

/* ---- cmocka plumbing ----------------------------------------------------------- */

/* Check that liballoc is the process allocator (dlsym(RTLD_DEFAULT,
 * "alloc_ctl") finds it, and malloc resolves into the same object).  Always
 * true in direct builds; skipped with ALLOC_STRESS_SYSTEM_MALLOC=1.  Prints why
 * on failure; main() returns non-zero then. */
bool stress_require_liballoc(const char *program);

/* Teardown for every test: malloc_trim(0) must work, and afterwards blocks of
 * every kind of size can still be allocated, written, checked and freed. */
int stress_teardown_trim(void **state);

/* Run a cmocka group after the liballoc check; the body of every main(). */
#define STRESS_MAIN(name, tests)                                     \
  do {                                                               \
    if (!stress_require_liballoc(name))                              \
      return 1;                                                      \
    stress_note("%s: scale %.3g", name, stress_scale());             \
    return cmocka_run_group_tests_name(name, tests, NULL, NULL);     \
  } while (0)

#define STRESS_TEST(fn) cmocka_unit_test_teardown(fn, stress_teardown_trim)

#endif /* ALLOC_STRESS_H */
