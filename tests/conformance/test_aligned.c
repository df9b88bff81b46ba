/* test_aligned.c - the aligned entry points: posix_memalign, aligned_alloc,
 * memalign, valloc and pvalloc.
 *
 * Contract (POSIX, C17 + glibc >= 2.38, glibc's memalign/valloc/pvalloc):
 *   posix_memalign  EINVAL returned, *memptr untouched, for an alignment that
 *                   is not a power-of-two multiple of sizeof(void *);
 *                   ENOMEM returned for impossible sizes.
 *   aligned_alloc   NULL + errno EINVAL for a non-power-of-two alignment.
 *   memalign        a non-power-of-two alignment is rounded up to the next
 *                   power of two; above SIZE_MAX/2+1: NULL + errno EINVAL.
 *   valloc/pvalloc  page-aligned; pvalloc rounds the size up to whole pages.
 * Every power of two up to 1 GiB must work; the 1 GiB cases only reserve
 * address space (two bytes per block are written). */
#include "conformance.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TESTED_ALIGN GiB

static size_t page_size(void) {
  long ps = sysconf(_SC_PAGESIZE);
  assert_true(ps > 0);
  return (size_t)ps;
}

/* Check an aligned block: non-NULL, aligned, usable size covers the request,
 * and the first and last requested bytes (and the last usable byte) can be
 * written.  Only those bytes are touched so that 1 GiB blocks stay cheap. */
static void check_aligned_block(const char *fn, void *p, size_t align, size_t size) {
  if (p == NULL) fail_msg("%s(align %zu, size %zu) failed", fn, align, size);
  if (!is_aligned(p, align)) fail_msg("%s(align %zu, size %zu) = %p is misaligned", fn, align, size, p);
  size_t usable = malloc_usable_size(p);
  if (usable < size) fail_msg("%s(align %zu, size %zu): usable size %zu", fn, align, size, usable);
  volatile unsigned char *b = p;
  b[0] = 0x11;
  assert_int_equal(b[0], 0x11);
  if (size > 0) b[size - 1] = 0x22;
  if (usable > 0) b[usable - 1] = 0x33;
}

/* Sizes tried for each alignment: small ones, and one just above the
 * alignment (the block then spans two alignment units). */
static size_t sizes_for_align(size_t align, size_t out[3]) {
  out[0] = 1;
  out[1] = 100;
  out[2] = align + 1;
  return 3;
}

/* ---- posix_memalign ----------------------------------------------------- */

static void posix_memalign_rejects_bad_alignment(void **state) {
  (void)state;
  static const size_t bad[] = {
    0, 1, 2, 3, sizeof(void *) / 2, sizeof(void *) + 4, 12, 24, 48, 100, 4095, 4097,
    3 * 4096, (size_t)1 << 40 | 8, SIZE_MAX, SIZE_MAX / 2, SIZE_MAX / 2 + 2,
  };
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    void *sentinel = &sentinel;
    void *p = sentinel;
    int r = posix_memalign(&p, opaque(bad[i]), opaque(64));
    if (r != EINVAL) fail_msg("posix_memalign(align %zu) returned %d, not EINVAL", bad[i], r);
    if (p != sentinel) fail_msg("posix_memalign(align %zu) changed *memptr to %p", bad[i], p);
  }
}

static void posix_memalign_impossible_size_gives_enomem(void **state) {
  (void)state;
  static const size_t aligns[] = {sizeof(void *), 16, 64, 4096, 64 * KiB, 4 * MiB, GiB};
  for (size_t a = 0; a < ARRAY_LEN(aligns); a++) {
    size_t align = aligns[a];
    /* The last two wrap around when the alignment slack is added. */
    const size_t sizes[] = {SIZE_MAX, (size_t)PTRDIFF_MAX + 1, SIZE_MAX - align + 1,
                            SIZE_MAX - align / 2, (size_t)1 << 62};
    for (size_t s = 0; s < ARRAY_LEN(sizes); s++) {
      void *sentinel = &sentinel;
      void *p = sentinel;
      int r = posix_memalign(&p, opaque(align), opaque(sizes[s]));
      if (r != ENOMEM)
        fail_msg("posix_memalign(align %zu, size %zu) returned %d, not ENOMEM", align, sizes[s], r);
      /* POSIX: on error *memptr is left unmodified or set to NULL. */
      if (p != sentinel && p != NULL)
        fail_msg("posix_memalign(align %zu, size %zu) failed but set *memptr to %p", align, sizes[s], p);
    }
  }
  /* The largest power of two is a valid alignment, but cannot be served. */
  void *p = NULL;
  assert_int_equal(posix_memalign(&p, opaque(SIZE_MAX / 2 + 1), opaque(1)), ENOMEM);
}

static void posix_memalign_every_power_of_two_up_to_1gib(void **state) {
  (void)state;
  for (size_t align = sizeof(void *); align <= MAX_TESTED_ALIGN; align *= 2) {
    size_t sizes[3];
    size_t n = sizes_for_align(align, sizes);
    for (size_t s = 0; s < n; s++) {
      void *p = NULL;
      int r = posix_memalign(&p, opaque(align), opaque(sizes[s]));
      if (r != 0) fail_msg("posix_memalign(align %zu, size %zu) returned %d", align, sizes[s], r);
      check_aligned_block("posix_memalign", p, align, sizes[s]);
      free(p);
    }
  }
}

/* A zero-byte aligned block behaves like malloc(0): glibc returns a unique
 * pointer; NULL is tolerated (POSIX allows it), but a pointer must be one
 * the allocator recognises again: usable size and free must work. */
static void check_zero_size_block(const char *fn, void *p, size_t align) {
  if (p == NULL) return;
  if (!is_aligned(p, align)) fail_msg("%s(align %zu, size 0) = %p is misaligned", fn, align, p);
  (void)malloc_usable_size(p);
  free(p);
}

static void aligned_size_zero_is_freeable(void **state) {
  (void)state;
  for (size_t align = sizeof(void *); align <= MAX_TESTED_ALIGN; align *= 2) {
    void *p = NULL;
    int r = posix_memalign(&p, opaque(align), opaque(0));
    if (r != 0) fail_msg("posix_memalign(align %zu, size 0) returned %d", align, r);
    check_zero_size_block("posix_memalign", p, align);
    check_zero_size_block("aligned_alloc", aligned_alloc(opaque(align), opaque(0)), align);
    check_zero_size_block("memalign", memalign(opaque(align), opaque(0)), align);
  }
}

static void posix_memalign_1gib_alignment_small_and_large(void **state) {
  (void)state;
  static const size_t sizes[] = {1, 4096, 256 * MiB, GiB, GiB + 1};
  for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
    void *p = NULL;
    assert_int_equal(posix_memalign(&p, opaque(GiB), opaque(sizes[i])), 0);
    check_aligned_block("posix_memalign", p, GiB, sizes[i]);
    free(p);
  }
  /* Two live 1 GiB-aligned blocks must be distinct. */
  void *a = NULL, *b = NULL;
  assert_int_equal(posix_memalign(&a, opaque(GiB), 100), 0);
  assert_int_equal(posix_memalign(&b, opaque(GiB), 100), 0);
  assert_ptr_not_equal(a, b);
  check_aligned_block("posix_memalign", a, GiB, 100);
  check_aligned_block("posix_memalign", b, GiB, 100);
  free(a);
  free(b);
}

static void aligned_blocks_keep_their_contents(void **state) {
  (void)state;
  /* Mixed alignments and sizes all live at once, each filled completely:
   * carving an aligned block out of a bigger one must not overlap others. */
  enum { N = 400 };
  static void *p[N];
  static size_t size[N];
  for (unsigned i = 0; i < N; i++) {
    size_t align = (size_t)16 << (i % 13);              /* 16 B .. 64 KiB */
    size[i] = 1 + (i * 7919u) % (align * 3);
    assert_int_equal(posix_memalign(&p[i], opaque(align), opaque(size[i])), 0);
    assert_true(is_aligned(p[i], align));
    fill_pattern(p[i], size[i], i);
  }
  for (unsigned i = 0; i < N; i++) {
    size_t bad = find_pattern_mismatch(p[i], size[i], i);
    if (bad != SIZE_MAX) fail_msg("aligned block %u (size %zu) overwritten at %zu", i, size[i], bad);
  }
  for (unsigned i = 0; i < N; i += 2) free(p[i]);
  for (unsigned i = 1; i < N; i += 2) {
    assert_int_equal(find_pattern_mismatch(p[i], size[i], i), SIZE_MAX);
    free(p[i]);
  }
}

/* The fast path serves an aligned request from the heap's current slab of
 * the size rounded up to the alignment, the slab malloc uses too: blocks
 * freed by malloc's users and slabs that malloc started must come back
 * aligned, through each entry point, for every size around the alignment. */
static void aligned_requests_share_malloc_slabs(void **state) {
  (void)state;
  enum { BURST = 40 };
  void *held[BURST];
  for (size_t align = 16; align <= 64 * KiB; align *= 2) {
    const size_t sizes[] = {1, 24, 100, align / 2 + 8, align - 1, align, align + 1, 3 * align - 5, 5 * align};
    for (size_t s = 0; s < ARRAY_LEN(sizes); s++) {
      size_t size = sizes[s];
      for (unsigned i = 0; i < BURST; i++) held[i] = malloc(opaque(size));   /* malloc's slabs first */
      for (unsigned i = 0; i < BURST; i += 2) free(held[i]);
      for (unsigned i = 0; i < BURST; i += 2) {
        void *p = NULL;
        switch (i / 2 % 3) {
        case 0: assert_int_equal(posix_memalign(&p, opaque(align), opaque(size)), 0); break;
        case 1: p = aligned_alloc(opaque(align), opaque((size + align - 1) & ~(align - 1))); break;
        default: p = memalign(opaque(align), opaque(size)); break;
        }
        check_aligned_block("aligned request after malloc", p, align, size);
        held[i] = p;
      }
      for (unsigned i = 0; i < BURST; i++) free(held[i]);
    }
  }
}

/* ---- aligned_alloc ------------------------------------------------------ */

static void aligned_alloc_rejects_non_power_of_two(void **state) {
  (void)state;
  /* glibc 2.36 aliases aligned_alloc to memalign, which rounds the alignment
   * up instead; glibc 2.38 fixed it (BZ #20137). */
  conf_glibc_deviation("glibc < 2.38 aligned_alloc accepts any alignment (BZ #20137)");
  static const size_t bad[] = {0, 3, 5, 12, 24, 48, 100, 4097, 3 * 4096, GiB + 16, SIZE_MAX};
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    errno = 0;
    void *p = keep(aligned_alloc(opaque(bad[i]), opaque(64)));
    if (p != NULL) fail_msg("aligned_alloc(%zu, 64) = %p, expected NULL", bad[i], p);
    if (errno != EINVAL) fail_msg("aligned_alloc(%zu, 64): errno %d, expected EINVAL", bad[i], errno);
  }
}

static void aligned_alloc_every_power_of_two_up_to_1gib(void **state) {
  (void)state;
  /* Alignments below sizeof(void *) are valid for aligned_alloc. */
  for (size_t align = 1; align <= MAX_TESTED_ALIGN; align *= 2) {
    /* size == align satisfies even C11's "multiple of the alignment". */
    const size_t sizes[] = {align, 1, 100};
    for (size_t s = 0; s < ARRAY_LEN(sizes); s++) {
      void *p = aligned_alloc(opaque(align), opaque(sizes[s]));
      check_aligned_block("aligned_alloc", p, align, sizes[s]);
      free(p);
    }
  }
}

static void aligned_alloc_impossible_size_gives_enomem(void **state) {
  (void)state;
  static const size_t aligns[] = {16, 4096, 4 * MiB, GiB};
  for (size_t a = 0; a < ARRAY_LEN(aligns); a++) {
    const size_t sizes[] = {SIZE_MAX, (size_t)PTRDIFF_MAX + 1, SIZE_MAX - aligns[a] + 1};
    for (size_t s = 0; s < ARRAY_LEN(sizes); s++) {
      errno = 0;
      void *p = keep(aligned_alloc(opaque(aligns[a]), opaque(sizes[s])));
      if (p != NULL) fail_msg("aligned_alloc(%zu, %zu) = %p", aligns[a], sizes[s], p);
      assert_int_equal(errno, ENOMEM);
    }
  }
}

/* ---- memalign ----------------------------------------------------------- */

static void memalign_every_power_of_two_up_to_1gib(void **state) {
  (void)state;
  for (size_t align = 1; align <= MAX_TESTED_ALIGN; align *= 2) {
    size_t sizes[3];
    size_t n = sizes_for_align(align, sizes);
    for (size_t s = 0; s < n; s++) {
      void *p = memalign(opaque(align), opaque(sizes[s]));
      check_aligned_block("memalign", p, align, sizes[s]);
      free(p);
    }
  }
}

static size_t next_power_of_two(size_t x) {
  size_t p = 1;
  while (p < x) p *= 2;
  return p;
}

static void memalign_rounds_non_power_of_two_up(void **state) {
  (void)state;
  /* glibc semantics: memalign(24, n) is memalign(32, n). */
  static const size_t odd[] = {3, 24, 48, 100, 1000, 4095, 4097, 12288, 100000,
                               MiB + 1, 3 * MiB, 5 * MiB, 12 * MiB};
  for (size_t i = 0; i < ARRAY_LEN(odd); i++) {
    size_t want = next_power_of_two(odd[i]);
    void *p = memalign(opaque(odd[i]), opaque(200));
    check_aligned_block("memalign", p, want, 200);
    free(p);
  }
}

static void memalign_small_alignment_acts_as_malloc(void **state) {
  (void)state;
  /* glibc: an alignment below the default one (0 included) is malloc. */
  static const size_t small[] = {0, 1, 2, 4, 8};
  for (size_t i = 0; i < ARRAY_LEN(small); i++) {
    void *p = memalign(opaque(small[i]), opaque(40));
    check_aligned_block("memalign", p, 16, 40);
    free(p);
  }
}

static void memalign_huge_alignment_fails(void **state) {
  (void)state;
  /* Above SIZE_MAX/2+1 no power of two exists to round up to: EINVAL. */
  static const size_t invalid[] = {SIZE_MAX / 2 + 2, SIZE_MAX - 4095, SIZE_MAX};
  for (size_t i = 0; i < ARRAY_LEN(invalid); i++) {
    errno = 0;
    void *p = keep(memalign(opaque(invalid[i]), opaque(16)));
    if (p != NULL) fail_msg("memalign(%zu, 16) = %p", invalid[i], p);
    assert_int_equal(errno, EINVAL);
  }
  /* SIZE_MAX/2+1 is a valid power of two that no address space can hold. */
  errno = 0;
  void *p = keep(memalign(opaque(SIZE_MAX / 2 + 1), opaque(16)));
  assert_null(p);
  assert_int_equal(errno, ENOMEM);
  /* Impossible sizes with a valid alignment. */
  errno = 0;
  p = keep(memalign(opaque(4096), opaque(SIZE_MAX - 100)));
  assert_null(p);
  assert_int_equal(errno, ENOMEM);
}

/* ---- valloc and pvalloc ------------------------------------------------- */

static void valloc_is_page_aligned(void **state) {
  (void)state;
  size_t ps = page_size();
  const size_t sizes[] = {0, 1, 100, ps - 1, ps, ps + 1, 3 * ps + 5, MiB, 5 * MiB + 1};
  for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
    void *p = valloc(opaque(sizes[i]));
    check_aligned_block("valloc", p, ps, sizes[i]);
    memset(p, 0x77, sizes[i]);
    free(p);
  }
}

static size_t round_up(size_t x, size_t to) {
  return (x + to - 1) / to * to;
}

static void pvalloc_rounds_to_whole_pages(void **state) {
  (void)state;
  size_t ps = page_size();
  const size_t sizes[] = {1, 100, ps - 1, ps, ps + 1, 3 * ps + 5, MiB, 5 * MiB + 1};
  for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
    size_t want = round_up(sizes[i], ps);
    void *p = pvalloc(opaque(sizes[i]));
    check_aligned_block("pvalloc", p, ps, want);
    /* The whole rounded-up size belongs to the caller. */
    memset(p, 0x66, want);
    free(p);
  }
}

static void pvalloc_zero_gives_a_page(void **state) {
  (void)state;
  /* glibc 2.36 rounds with `& -(pagesize - 1)` instead of `& -pagesize`, so
   * pvalloc(0) becomes memalign(pagesize, 1): aligned, but not a page. */
  conf_glibc_deviation("glibc pvalloc(0) returns less than a page (rounding mask bug)");
  size_t ps = page_size();
  void *p = pvalloc(opaque(0));
  check_aligned_block("pvalloc", p, ps, ps);
  memset(p, 0x55, ps);
  free(p);
}

static void valloc_pvalloc_impossible_size_give_enomem(void **state) {
  (void)state;
  static const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 100, (size_t)PTRDIFF_MAX + 1};
  for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
    errno = 0;
    void *p = keep(valloc(opaque(sizes[i])));
    if (p != NULL) fail_msg("valloc(%zu) = %p", sizes[i], p);
    assert_int_equal(errno, ENOMEM);
    /* pvalloc's round-up must not wrap SIZE_MAX - 100 to 0. */
    errno = 0;
    p = keep(pvalloc(opaque(sizes[i])));
    if (p != NULL) fail_msg("pvalloc(%zu) = %p", sizes[i], p);
    assert_int_equal(errno, ENOMEM);
  }
}

int conf_run_aligned_tests(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(posix_memalign_rejects_bad_alignment),
    cmocka_unit_test(posix_memalign_impossible_size_gives_enomem),
    cmocka_unit_test(posix_memalign_every_power_of_two_up_to_1gib),
    cmocka_unit_test(posix_memalign_1gib_alignment_small_and_large),
    cmocka_unit_test(aligned_size_zero_is_freeable),
    cmocka_unit_test(aligned_blocks_keep_their_contents),
    cmocka_unit_test(aligned_requests_share_malloc_slabs),
    cmocka_unit_test(aligned_alloc_rejects_non_power_of_two),
    cmocka_unit_test(aligned_alloc_every_power_of_two_up_to_1gib),
    cmocka_unit_test(aligned_alloc_impossible_size_gives_enomem),
    cmocka_unit_test(memalign_every_power_of_two_up_to_1gib),
    cmocka_unit_test(memalign_rounds_non_power_of_two_up),
    cmocka_unit_test(memalign_small_alignment_acts_as_malloc),
    cmocka_unit_test(memalign_huge_alignment_fails),
    cmocka_unit_test(valloc_is_page_aligned),
    cmocka_unit_test(pvalloc_rounds_to_whole_pages),
    cmocka_unit_test(pvalloc_zero_gives_a_page),
    cmocka_unit_test(valloc_pvalloc_impossible_size_give_enomem),
  };
  return cmocka_run_group_tests_name("posix_memalign, aligned_alloc, memalign, valloc, pvalloc",
                                     tests, NULL, NULL);
}
