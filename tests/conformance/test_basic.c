/* test_basic.c - the unaligned entry points: malloc, free, calloc, realloc,
 * reallocarray, malloc_usable_size and malloc_trim, plus blocks that glibc
 * allocates on the program's behalf (strdup, getline, asprintf, ...).
 *
 * Semantics checked are those of C11/C17, POSIX and glibc 2.36: ENOMEM with
 * NULL for sizes above PTRDIFF_MAX or overflowing products, a failed realloc
 * leaves the old block untouched, malloc(0) gives a unique freeable pointer,
 * alignment of 16 bytes for requests of 16 bytes or more. */
#include "conformance.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Sizes that cross liballoc's internal boundaries (small classes, 64 KiB
 * units, 2 MiB largest class, 4 MiB segments, huge mappings) and glibc's
 * (tcache, mmap threshold). */
static const size_t boundary_sizes[] = {
  1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 64, 100, 127, 128, 129, 160, 255, 256,
  257, 1000, 1023, 1024, 1025, 4095, 4096, 4097, 8192, 10000, 16383, 16384, 16385,
  32768, 65535, 65536, 65537, 100000, 131071, 131072, 131073, 262144, 500000,
  1 * MiB - 1, 1 * MiB, 1 * MiB + 1, 2 * MiB - 1, 2 * MiB, 2 * MiB + 1,
  4 * MiB - 1, 4 * MiB, 4 * MiB + 1, 8 * MiB + 3, 16 * MiB,
};

/* ---- malloc and free ---------------------------------------------------- */

static void malloc_zero_returns_unique_freeable_pointers(void **state) {
  (void)state;
  enum { N = 200 };
  void *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = malloc(opaque(0));
    assert_non_null(p[i]);
  }
  /* Unique: every live malloc(0) result is a distinct object. */
  for (int i = 0; i < N; i++)
    for (int j = i + 1; j < N; j++) assert_ptr_not_equal(p[i], p[j]);
  for (int i = 0; i < N; i++) free(p[i]);
}

static void free_null_is_noop(void **state) {
  (void)state;
  void *volatile null = NULL;
  errno = 1234;
  for (int i = 0; i < 1000; i++) free(null);
  /* free must not disturb errno (POSIX 2024; glibc does not either). */
  assert_int_equal(errno, 1234);
  void *p = malloc(opaque(64));
  assert_non_null(p);
  free(p);
}

/* One impossible request must give NULL and errno ENOMEM. */
static void expect_malloc_enomem(size_t size) {
  errno = 0;
  void *p = keep(malloc(opaque(size)));
  if (p != NULL) fail_msg("malloc(%zu) returned %p", size, p);
  assert_int_equal(errno, ENOMEM);
}

static void malloc_impossible_sizes_fail_with_enomem(void **state) {
  (void)state;
  expect_malloc_enomem(SIZE_MAX);
  expect_malloc_enomem((size_t)PTRDIFF_MAX + 1);
  /* Near SIZE_MAX: rounding up to a class, page or segment must not wrap
   * around to a small size. */
  expect_malloc_enomem(SIZE_MAX - 1);
  expect_malloc_enomem(SIZE_MAX - 15);
  expect_malloc_enomem(SIZE_MAX - 4095);
  expect_malloc_enomem(SIZE_MAX - 4 * MiB + 1);
  expect_malloc_enomem(SIZE_MAX / 2 + 4 * MiB);
  /* Not impossible by type, but far beyond any address space. */
  expect_malloc_enomem((size_t)1 << 62);
}

static void malloc_small_requests_are_8_aligned(void **state) {
  (void)state;
  /* Many live blocks per size so that more than the first slot is seen. */
  enum { PER_SIZE = 300 };
  static void *p[PER_SIZE];
  for (size_t size = 1; size < 16; size++) {
    for (int i = 0; i < PER_SIZE; i++) {
      p[i] = malloc(opaque(size));
      assert_non_null(p[i]);
      if (!is_aligned(p[i], 8)) fail_msg("malloc(%zu) = %p is not 8-aligned", size, p[i]);
      memset(p[i], 0x5a, size);
    }
    for (int i = 0; i < PER_SIZE; i++) free(p[i]);
  }
}

static void check_16_aligned(size_t size, void *p) {
  if (p == NULL) fail_msg("malloc(%zu) failed", size);
  if (!is_aligned(p, 16)) fail_msg("malloc(%zu) = %p is not 16-aligned", size, p);
}

static void malloc_requests_of_16_or_more_are_16_aligned(void **state) {
  (void)state;
  /* A ring of live blocks: alignment must hold for blocks placed after
   * others, not only for a block that reuses the previous one's slot. */
  enum { RING = 64 };
  void *ring[RING] = {0};
  for (size_t size = 16; size <= 70000; size++) {
    size_t slot = size % RING;
    free(ring[slot]);
    ring[slot] = malloc(opaque(size));
    check_16_aligned(size, ring[slot]);
  }
  for (size_t i = 0; i < RING; i++) free(ring[i]);

  static const size_t big[] = {
    100000, 1 * MiB - 8, 2 * MiB - 16, 2 * MiB + 16, 4 * MiB + 1, 10 * MiB + 7,
    64 * MiB + 3, 200 * MiB,
  };
  for (size_t i = 0; i < ARRAY_LEN(big); i++) {
    void *p = malloc(opaque(big[i]));
    check_16_aligned(big[i], p);
    free(p);
  }
}

/* ---- malloc_usable_size ------------------------------------------------- */

/* Allocate several blocks of one size, fill each one's whole usable size with
 * its own pattern, then verify all: a usable size that overstates the block
 * shows up as a neighbour's bytes being overwritten. */
static void check_usable_size(size_t size, int count) {
  void *p[8];
  size_t usable[8];
  assert_true(count <= 8);
  for (int i = 0; i < count; i++) {
    p[i] = malloc(opaque(size));
    if (p[i] == NULL) fail_msg("malloc(%zu) failed", size);
    usable[i] = malloc_usable_size(p[i]);
    if (usable[i] < size) fail_msg("malloc_usable_size(malloc(%zu)) = %zu", size, usable[i]);
    fill_pattern(p[i], usable[i], (unsigned)i + 1);
  }
  for (int i = 0; i < count; i++) {
    size_t bad = find_pattern_mismatch(p[i], usable[i], (unsigned)i + 1);
    if (bad != SIZE_MAX)
      fail_msg("block %d of size %zu (usable %zu) overwritten at %zu", i, size, usable[i], bad);
    free(p[i]);
  }
}

static void usable_size_covers_request_and_is_writable(void **state) {
  (void)state;
  for (size_t size = 0; size <= 1100; size++) check_usable_size(size, 8);
  for (size_t size = 1101; size <= 140000; size += 997) check_usable_size(size, 4);
  for (size_t i = 0; i < ARRAY_LEN(boundary_sizes); i++)
    check_usable_size(boundary_sizes[i], boundary_sizes[i] > 4 * MiB ? 1 : 3);
  check_usable_size(64 * MiB + 1, 1);
}

static void usable_size_of_null_is_zero(void **state) {
  (void)state;
  void *volatile null = NULL;
  assert_int_equal(malloc_usable_size(null), 0);
}

/* ---- calloc ------------------------------------------------------------- */

static void calloc_returns_zeroed_memory(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(boundary_sizes); i++) {
    size_t size = boundary_sizes[i];
    unsigned char *p = calloc(opaque(1), size);
    if (p == NULL) fail_msg("calloc(1, %zu) failed", size);
    if (!all_bytes_are(p, size, 0)) fail_msg("calloc(1, %zu) not zeroed", size);
    free(p);
    /* Same bytes as n elements of a bigger type. */
    if (size % 8 == 0) {
      p = calloc(opaque(size / 8), 8);
      if (p == NULL) fail_msg("calloc(%zu, 8) failed", size / 8);
      if (!all_bytes_are(p, size, 0)) fail_msg("calloc(%zu, 8) not zeroed", size / 8);
      free(p);
    }
  }
}

static void calloc_zeroes_reused_dirty_memory(void **state) {
  (void)state;
  /* The freed block is the likeliest one for calloc to get back; a calloc
   * that trusts "fresh memory is zero" for recycled blocks fails here. */
  for (size_t i = 0; i < ARRAY_LEN(boundary_sizes); i++) {
    size_t size = boundary_sizes[i];
    int rounds = size >= MiB ? 4 : 40;
    for (int r = 0; r < rounds; r++) {
      unsigned char *dirty = malloc(opaque(size));
      assert_non_null(dirty);
      memset(dirty, 0xff, malloc_usable_size(dirty));
      free(dirty);
      unsigned char *p = calloc(opaque(1), size);
      if (p == NULL) fail_msg("calloc(1, %zu) failed", size);
      if (!all_bytes_are(p, size, 0)) fail_msg("calloc(1, %zu) after free not zeroed (round %d)", size, r);
      /* Dirty it too: the next round's malloc may get this block. */
      memset(p, 0xff, size);
      free(p);
    }
  }
}

static void calloc_zeroes_big_blocks(void **state) {
  (void)state;
  const size_t size = 64 * MiB;
  unsigned char *p = calloc(opaque(size / 4), 4);
  assert_non_null(p);
  assert_true(all_bytes_are(p, size, 0));
  memset(p, 0xff, size);
  free(p);
  /* A huge block recycled without returning its pages to the kernel would
   * still hold the 0xff bytes. */
  p = calloc(opaque(1), size);
  assert_non_null(p);
  assert_true(all_bytes_are(p, size, 0));
  free(p);
}

static void calloc_zero_elements_gives_freeable_pointer(void **state) {
  (void)state;
  /* glibc returns a unique pointer like malloc(0); NULL would also be
   * allowed by C but breaks programs that treat NULL as failure. */
  void *a = calloc(opaque(0), 16);
  void *b = calloc(opaque(16), 0);
  void *c = calloc(opaque(0), 0);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  assert_ptr_not_equal(a, b);
  assert_ptr_not_equal(b, c);
  assert_ptr_not_equal(a, c);
  free(a);
  free(b);
  free(c);
}

static void expect_calloc_enomem(size_t n, size_t size) {
  errno = 0;
  void *p = keep(calloc(opaque(n), opaque(size)));
  if (p != NULL) fail_msg("calloc(%zu, %zu) returned %p", n, size, p);
  assert_int_equal(errno, ENOMEM);
}

static void calloc_overflow_fails_with_enomem(void **state) {
  (void)state;
  /* n * size overflows size_t: must not wrap to a small allocation. */
  expect_calloc_enomem(SIZE_MAX / 2, 4);
  expect_calloc_enomem(SIZE_MAX, 2);
  expect_calloc_enomem(2, SIZE_MAX);
  expect_calloc_enomem((size_t)1 << 32, ((size_t)1 << 32) + 1);
  expect_calloc_enomem(SIZE_MAX / 16 + 2, 16);
  /* No overflow, but the product is impossible. */
  expect_calloc_enomem(1, SIZE_MAX);
  expect_calloc_enomem(((size_t)PTRDIFF_MAX + 1) / 2, 2);
}

/* ---- realloc and reallocarray ------------------------------------------- */

static void realloc_null_acts_as_malloc(void **state) {
  (void)state;
  void *volatile null = NULL;
  for (size_t i = 0; i < ARRAY_LEN(boundary_sizes); i++) {
    size_t size = boundary_sizes[i];
    unsigned char *p = realloc(null, opaque(size));
    if (p == NULL) fail_msg("realloc(NULL, %zu) failed", size);
    assert_true(malloc_usable_size(p) >= size);
    fill_pattern(p, size, 3);
    free(p);
  }
  /* realloc(NULL, 0) is malloc(0): a freeable non-NULL pointer in glibc. */
  void *p = realloc(null, opaque(0));
  assert_non_null(p);
  free(p);
}

/* Resize p from old_size to new_size: the common prefix must survive, and the
 * whole new block is refilled with the step's own pattern. */
static unsigned char *resize_checked(unsigned char *p, size_t old_size, size_t new_size,
                                     unsigned old_seed, unsigned new_seed) {
  unsigned char *q = realloc(p, opaque(new_size));
  if (q == NULL) fail_msg("realloc(%zu -> %zu) failed", old_size, new_size);
  assert_true(malloc_usable_size(q) >= new_size);
  size_t keep_len = old_size < new_size ? old_size : new_size;
  size_t bad = find_pattern_mismatch(q, keep_len, old_seed);
  if (bad != SIZE_MAX)
    fail_msg("realloc(%zu -> %zu) lost byte %zu of %zu", old_size, new_size, bad, keep_len);
  fill_pattern(q, new_size, new_seed);
  return q;
}

static void realloc_preserves_contents_across_size_classes(void **state) {
  (void)state;
  /* small -> large -> huge -> small and back, with same-size and
   * off-by-one steps around every internal boundary. */
  static const size_t steps[] = {
    1, 2, 15, 16, 17, 100, 1000, 4095, 4096, 4097, 20000, 65536, 65537, 131073,
    1 * MiB, 2 * MiB, 2 * MiB + 1, 4 * MiB + 7, 64 * MiB, 64 * MiB, 32 * MiB,
    64 * MiB + 4096, 3 * MiB, 2 * MiB - 1, 1 * MiB - 3, 70000, 500, 8, 1, 300,
    8 * MiB, 5 * MiB, 6 * MiB, 2, 1,
  };
  size_t size = steps[0];
  unsigned char *p = malloc(opaque(size));
  assert_non_null(p);
  fill_pattern(p, size, 0);
  for (unsigned i = 1; i < ARRAY_LEN(steps); i++) {
    p = resize_checked(p, size, steps[i], i - 1, i);
    size = steps[i];
  }
  free(p);
}

static void realloc_grows_and_shrinks_in_small_steps(void **state) {
  (void)state;
  /* The string-builder pattern: many small growths, most of which an
   * allocator serves in place. */
  size_t size = 1;
  unsigned seed = 0;
  unsigned char *p = malloc(opaque(size));
  assert_non_null(p);
  fill_pattern(p, size, seed);
  while (size < 300000) {
    size_t next = size + size / 7 + 13;
    p = resize_checked(p, size, next, seed, seed + 1);
    size = next;
    seed++;
  }
  while (size > 20) {
    size_t next = size - size / 5 - 3;
    p = resize_checked(p, size, next, seed, seed + 1);
    size = next;
    seed++;
  }
  free(p);
}

static void realloc_to_zero_frees_or_returns_pointer(void **state) {
  (void)state;
  /* glibc frees and returns NULL; C23 leaves it implementation-defined.
   * Either way the block must not leak and must not be freed twice.  Run it
   * many times so that a leak is visible in liballoc's statistics. */
  size_t before = conf.active ? conf_stats_allocated() : 0;
  int nulls = 0;
  for (int i = 0; i < 20000; i++) {
    size_t size = 1000 + (size_t)(i % 7) * 3000;
    unsigned char *p = malloc(opaque(size));
    assert_non_null(p);
    p[0] = 1;
    unsigned char *q = realloc(p, opaque(0));
    if (q == NULL)
      nulls++;          /* p was freed by realloc */
    else
      free(q);          /* a minimal block: ours to free */
  }
  print_message("  realloc(p, 0) returned NULL %d of 20000 times\n", nulls);
  if (conf.active) {
    size_t after = conf_stats_allocated();
    /* 20000 leaked blocks would be at least 20 MB. */
    if (after > before + 4 * MiB)
      fail_msg("stats.allocated grew from %zu to %zu: realloc(p, 0) leaks", before, after);
  }
}

/* realloc of a block (of `size` bytes with pattern 7) to an impossible size
 * must fail with ENOMEM and leave the block as it was. */
static void expect_realloc_enomem(unsigned char *p, size_t size, size_t new_size) {
  errno = 0;
  void *q = keep(realloc(keep(p), opaque(new_size)));
  if (q != NULL) fail_msg("realloc(%zu -> %zu) returned %p", size, new_size, q);
  assert_int_equal(errno, ENOMEM);
  size_t bad = find_pattern_mismatch(p, size, 7);
  if (bad != SIZE_MAX) fail_msg("failed realloc changed byte %zu of the old block", bad);
}

static void realloc_impossible_size_keeps_old_block(void **state) {
  (void)state;
  static const size_t sizes[] = {100, 5000, 3 * MiB, 9 * MiB};
  for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
    size_t size = sizes[i];
    unsigned char *p = malloc(opaque(size));
    assert_non_null(p);
    fill_pattern(p, size, 7);
    expect_realloc_enomem(p, size, SIZE_MAX);
    expect_realloc_enomem(p, size, (size_t)PTRDIFF_MAX + 1);
    expect_realloc_enomem(p, size, SIZE_MAX - 4095);
    expect_realloc_enomem(p, size, (size_t)1 << 62);
    /* Still a live, resizable block. */
    p = resize_checked(p, size, size * 2, 7, 8);
    free(p);
  }
}

static void realloc_of_aligned_block_preserves_contents(void **state) {
  (void)state;
  static const size_t aligns[] = {32, 256, 4096, 64 * KiB, 2 * MiB, 8 * MiB};
  for (size_t i = 0; i < ARRAY_LEN(aligns); i++) {
    void *v = NULL;
    assert_int_equal(posix_memalign(&v, aligns[i], opaque(3000)), 0);
    unsigned char *p = v;
    fill_pattern(p, 3000, 11);
    p = resize_checked(p, 3000, 100000, 11, 12);
    p = resize_checked(p, 100000, 5 * MiB, 12, 13);
    p = resize_checked(p, 5 * MiB, 40, 13, 14);
    free(p);
  }
}

static void reallocarray_works_like_realloc(void **state) {
  (void)state;
  void *volatile null = NULL;
  unsigned char *p = reallocarray(null, opaque(10), 10);
  assert_non_null(p);
  fill_pattern(p, 100, 21);
  p = reallocarray(p, opaque(1000), 100);
  assert_non_null(p);
  assert_true(malloc_usable_size(p) >= 100000);
  assert_int_equal(find_pattern_mismatch(p, 100, 21), SIZE_MAX);
  fill_pattern(p, 100000, 22);
  p = reallocarray(p, opaque(3), 5);
  assert_non_null(p);
  assert_int_equal(find_pattern_mismatch(p, 15, 22), SIZE_MAX);
  free(p);
}

/* Like expect_realloc_enomem, for reallocarray(p, n, size) on a 100-byte
 * block.  Passing p through keep() hides from gcc's -Wuse-after-free that
 * the block is used after the (failed, so legitimate) call. */
static void expect_reallocarray_enomem(unsigned char *p, size_t n, size_t size) {
  errno = 0;
  void *q = keep(reallocarray(keep(p), opaque(n), opaque(size)));
  if (q != NULL) fail_msg("reallocarray(p, %zu, %zu) returned %p", n, size, q);
  assert_int_equal(errno, ENOMEM);
  size_t bad = find_pattern_mismatch(p, 100, 7);
  if (bad != SIZE_MAX) fail_msg("failed reallocarray changed byte %zu of the old block", bad);
}

static void reallocarray_overflow_keeps_old_block(void **state) {
  (void)state;
  unsigned char *p = malloc(opaque(100));
  assert_non_null(p);
  fill_pattern(p, 100, 7);
  static const size_t pairs[][2] = {
    {SIZE_MAX / 2, 3}, {(size_t)1 << 33, (size_t)1 << 33}, {SIZE_MAX, SIZE_MAX},
    {1, SIZE_MAX}, {((size_t)PTRDIFF_MAX + 1) / 4, 4},
  };
  for (size_t i = 0; i < ARRAY_LEN(pairs); i++) expect_reallocarray_enomem(p, pairs[i][0], pairs[i][1]);
  /* The old block is still usable and freeable. */
  p = reallocarray(p, opaque(50), 4);
  assert_non_null(p);
  assert_int_equal(find_pattern_mismatch(p, 100, 7), SIZE_MAX);
  free(p);
}

/* ---- malloc_trim -------------------------------------------------------- */

/* Allocate `total` bytes in `block`-sized pieces, touch them all, free them. */
static void churn(size_t total, size_t block) {
  size_t n = total / block;
  void **blocks = malloc(opaque(n * sizeof *blocks));
  assert_non_null(blocks);
  for (size_t i = 0; i < n; i++) {
    blocks[i] = malloc(opaque(block));
    if (blocks[i] == NULL) fail_msg("malloc(%zu) #%zu failed", block, i);
    memset(blocks[i], (int)(i & 0xff), block);
  }
  for (size_t i = 0; i < n; i++) free(blocks[i]);
  free(blocks);
}

static void heap_still_works(void) {
  for (size_t i = 0; i < ARRAY_LEN(boundary_sizes); i++) {
    unsigned char *p = malloc(opaque(boundary_sizes[i]));
    assert_non_null(p);
    fill_pattern(p, boundary_sizes[i], 5);
    assert_int_equal(find_pattern_mismatch(p, boundary_sizes[i], 5), SIZE_MAX);
    free(p);
  }
}

static void malloc_trim_returns_0_or_1_and_heap_still_works(void **state) {
  (void)state;
  int r = malloc_trim(0);
  assert_true(r == 0 || r == 1);
  heap_still_works();
  r = malloc_trim(opaque(1 * MiB));
  assert_true(r == 0 || r == 1);
  heap_still_works();
}

static void malloc_trim_releases_freed_memory(void **state) {
  (void)state;
  conf_need_kernel_to_take_memory();
  churn(256 * MiB, 64 * KiB);
  int r = malloc_trim(0);
  assert_true(r == 0 || r == 1);
  /* glibc usually releases something here too, but only liballoc promises
   * it (256 MiB of freed 64 KiB blocks cannot all be cached). */
  if (conf.active) assert_int_equal(r, 1);
  heap_still_works();
  churn(16 * MiB, 64 * KiB);
}

/* ---- blocks allocated inside glibc -------------------------------------- */

/* Grow a libc-allocated string with realloc and check it survived. */
static char *grow_libc_string(char *s, const char *expect) {
  size_t len = strlen(expect);
  assert_non_null(s);
  assert_string_equal(s, expect);
  assert_true(malloc_usable_size(s) >= len + 1);
  s = realloc(s, opaque(len + 100000));
  assert_non_null(s);
  assert_string_equal(s, expect);
  s = realloc(s, opaque(len + 1));
  assert_non_null(s);
  assert_string_equal(s, expect);
  return s;
}

static void libc_allocations_can_be_reallocated_and_freed(void **state) {
  (void)state;
#ifdef ALLOC_TEST_DIRECT
  /* Here libc allocates from ASan's malloc while free() is la_free. */
  skip();
#endif
  free(grow_libc_string(strdup("strdup'ed text"), "strdup'ed text"));
  free(grow_libc_string(strndup("strndup'ed text, cut here", 15), "strndup'ed text"));

  char *s = NULL;
  assert_true(asprintf(&s, "%s-%d-%0*d", "asprintf", 42, 3000, 7) > 0);
  char *copy = malloc(opaque(strlen(s) + 1));
  assert_non_null(copy);
  strcpy(copy, s);
  free(grow_libc_string(s, copy));
  free(copy);

  /* getline allocates and grows its buffer with malloc/realloc. */
  static char text[] = "first line\nsecond, longer line of text\n";
  FILE *f = fmemopen(text, strlen(text), "r");
  assert_non_null(f);
  char *line = NULL;
  size_t cap = 0;
  assert_true(getline(&line, &cap, f) > 0);
  assert_true(getline(&line, &cap, f) > 0);
  fclose(f);
  free(grow_libc_string(line, "second, longer line of text\n"));

  /* open_memstream: a buffer libc reallocs as output grows. */
  char *buf = NULL;
  size_t buflen = 0;
  f = open_memstream(&buf, &buflen);
  assert_non_null(f);
  for (int i = 0; i < 10000; i++) fprintf(f, "%d,", i % 10);
  fclose(f);
  assert_int_equal(buflen, 20000);
  buf = realloc(buf, opaque(buflen + 1 + 5 * MiB));
  assert_non_null(buf);
  assert_memory_equal(buf, "0,1,2,3,4,", 10);
  free(buf);

  char *cwd = getcwd(NULL, 0);
  assert_non_null(cwd);
  char *real = realpath(".", NULL);
  assert_non_null(real);
  free(grow_libc_string(real, cwd));
  free(cwd);
}

int conf_run_basic_tests(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(malloc_zero_returns_unique_freeable_pointers),
    cmocka_unit_test(free_null_is_noop),
    cmocka_unit_test(malloc_impossible_sizes_fail_with_enomem),
    cmocka_unit_test(malloc_small_requests_are_8_aligned),
    cmocka_unit_test(malloc_requests_of_16_or_more_are_16_aligned),
    cmocka_unit_test(usable_size_covers_request_and_is_writable),
    cmocka_unit_test(usable_size_of_null_is_zero),
    cmocka_unit_test(calloc_returns_zeroed_memory),
    cmocka_unit_test(calloc_zeroes_reused_dirty_memory),
    cmocka_unit_test(calloc_zeroes_big_blocks),
    cmocka_unit_test(calloc_zero_elements_gives_freeable_pointer),
    cmocka_unit_test(calloc_overflow_fails_with_enomem),
    cmocka_unit_test(realloc_null_acts_as_malloc),
    cmocka_unit_test(realloc_preserves_contents_across_size_classes),
    cmocka_unit_test(realloc_grows_and_shrinks_in_small_steps),
    cmocka_unit_test(realloc_to_zero_frees_or_returns_pointer),
    cmocka_unit_test(realloc_impossible_size_keeps_old_block),
    cmocka_unit_test(realloc_of_aligned_block_preserves_contents),
    cmocka_unit_test(reallocarray_works_like_realloc),
    cmocka_unit_test(reallocarray_overflow_keeps_old_block),
    cmocka_unit_test(malloc_trim_returns_0_or_1_and_heap_still_works),
    cmocka_unit_test(malloc_trim_releases_freed_memory),
    cmocka_unit_test(libc_allocations_can_be_reallocated_and_freed),
  };
  return cmocka_run_group_tests_name("malloc, calloc, realloc, usable size, trim", tests, NULL, NULL);
}
