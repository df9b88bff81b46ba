/* test_alloc.c - the malloc family of alloc.c (la_malloc, la_calloc, ...),
 * against the C, POSIX and glibc contract its file comment promises:
 * ENOMEM for impossible sizes and for mappings the kernel refuses (the OS
 * layer's fault hook), EINVAL for impossible alignments (returned by
 * posix_memalign, set in errno by aligned_alloc and memalign), a failed
 * realloc leaves the block as it was, realloc(p, 0) frees, calloc checks
 * its multiplication and returns zeroed memory on every path (small
 * blocks; large blocks on a fresh segment, reused dirty, purged, or not
 * purged because the kernel refused; huge mappings fresh, cached, or
 * gathered from several cached ones), free keeps errno (also when the
 * purge it triggers is refused), malloc_usable_size, pointers liballoc did
 * not hand out are counted and passed on instead of crashing, and aligned
 * requests are aligned for every power of two up to 4 MiB.  Real memory,
 * real system calls; purging happens in the calling thread (no purger). */
#include "unit.h"

#include <alloc.h>
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GARBAGE 0xAB

static int setup(void **state) {
  (void)state;
  la_ensure_init();
  la_opt.telemetry = false;   /* no publisher thread: not this file's subject */
  bool off = false;           /* purges happen in the freeing thread, where the test sees them */
  return alloc_ctl("background_thread", NULL, NULL, &off, sizeof off);
}

static void set_decay(ssize_t dirty_ms) {
  ssize_t muzzy_ms = 0;
  assert_int_equal(alloc_ctl("opt.dirty_decay_ms", NULL, NULL, &dirty_ms, sizeof dirty_ms), 0);
  assert_int_equal(alloc_ctl("opt.muzzy_decay_ms", NULL, NULL, &muzzy_ms, sizeof muzzy_ms), 0);
}

static int teardown_each(void **state) {
  (void)state;
  la_os_fault_clear();
  set_decay(10000);
  la_malloc_trim(0);
  return 0;
}

static la_stats_t gather(void) {
  la_stats_t st;
  la_stats_gather(&st);
  return st;
}

/* Every byte zero; volatile so that no compiler assumes what calloc gives. */
static bool all_zero(const void *p, size_t n) {
  const volatile uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) return false;
  return true;
}

static bool all_equal(const void *p, size_t n, uint8_t v) {
  const volatile uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != v) return false;
  return true;
}

/* ---- ENOMEM ------------------------------------------------------------------ */

static void impossible_sizes_are_enomem(void **state) {
  (void)state;
  const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    errno = 0;
    assert_null(la_malloc(sizes[i]));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(la_aligned_alloc(64, sizes[i]));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(la_memalign(8 * MiB, sizes[i]));
    assert_int_equal(errno, ENOMEM);
  }
  errno = 0;
  assert_null(la_pvalloc(SIZE_MAX));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(la_valloc(SIZE_MAX - 1));
  assert_int_equal(errno, ENOMEM);
}

/* posix_memalign answers with its return value and leaves errno and the
 * out pointer alone. */
static void posix_memalign_returns_enomem_and_keeps_errno(void **state) {
  (void)state;
  void *out = &out;
  errno = EDOM;
  assert_int_equal(la_posix_memalign(&out, 64, SIZE_MAX), ENOMEM);
  assert_int_equal(la_posix_memalign(&out, 4 * MiB, (size_t)PTRDIFF_MAX + 1), ENOMEM);
  assert_int_equal(errno, EDOM);
  assert_ptr_equal(out, &out);
}

static void calloc_overflow_is_enomem(void **state) {
  (void)state;
  const size_t pairs[][2] = {{SIZE_MAX, 2}, {2, SIZE_MAX}, {SIZE_MAX / 2 + 1, 2}, {(size_t)1 << 32, (size_t)1 << 32},
                             {(size_t)PTRDIFF_MAX, 1}};
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    errno = 0;
    assert_null(la_calloc(pairs[i][0], pairs[i][1]));
    assert_int_equal(errno, ENOMEM);
  }
  void *p = la_malloc(100);
  errno = 0;
  assert_null(la_reallocarray(p, SIZE_MAX / 4, 8));
  assert_int_equal(errno, ENOMEM);
  la_free(p);
}

/* Refused mappings: every entry point that needs new address space says
 * ENOMEM.  Small and large requests are served from segments already
 * mapped until those run out: allocate until the refusal shows. */
static void refused_mappings_are_enomem(void **state) {
  (void)state;
  la_malloc_trim(0);
  la_os_fault_set(LA_OS_MMAP, 0, 1000000, EAGAIN);
  errno = 0;
  assert_null(la_malloc(64 * MiB));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(la_calloc(1, 16 * MiB));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(la_aligned_alloc(4 * MiB, 8 * MiB));
  assert_int_equal(errno, ENOMEM);
  void *out = NULL;
  assert_int_equal(la_posix_memalign(&out, 2 * MiB, 12 * MiB), ENOMEM);
  assert_null(out);
  static void *blocks[4096];
  size_t n = 0;
  errno = 0;
  while (n < 4096 && (blocks[n] = la_malloc(MiB)) != NULL) n++;
  assert_true(n < 4096);   /* the segments ran out, and no new one came */
  assert_int_equal(errno, ENOMEM);
  assert_true(la_os_fault_injected(LA_OS_MMAP) > 0);
  la_os_fault_clear();
  for (size_t i = 0; i < n; i++) la_free(blocks[i]);
}

/* ---- EINVAL ------------------------------------------------------------------ */

static void bad_alignments_are_einval(void **state) {
  (void)state;
  const size_t bad[] = {0, 3, 12, 24, 48, 96, 4097, (size_t)3 << 20, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *out = &out;
    errno = EDOM;
    assert_int_equal(la_posix_memalign(&out, bad[i], 64), EINVAL);
    assert_int_equal(errno, EDOM);   /* returned, not set */
    assert_ptr_equal(out, &out);
    errno = 0;
    assert_null(la_aligned_alloc(bad[i], 64));
    assert_int_equal(errno, EINVAL);
  }
  /* posix_memalign also wants a multiple of sizeof(void *). */
  for (size_t a = 1; a < sizeof(void *); a <<= 1) {
    void *out = &out;
    assert_int_equal(la_posix_memalign(&out, a, 64), EINVAL);
  }
  /* memalign rounds up what is not a power of two, like glibc's; only an
   * alignment that cannot be rounded fails. */
  errno = 0;
  assert_null(la_memalign(SIZE_MAX / 2 + 2, 64));
  assert_int_equal(errno, EINVAL);
  char *p = la_memalign(24, 100);
  assert_non_null(p);
  assert_int_equal((uintptr_t)p % 32, 0);
  la_free(p);
}

/* ---- realloc ----------------------------------------------------------------- */

static void realloc_failure_leaves_the_block_intact(void **state) {
  (void)state;
  const size_t sizes[] = {40, 3000, 200 * KiB, 1536 * KiB, 6 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    uint8_t *p = la_malloc(n);
    assert_non_null(p);
    memset(p, 0x5C, n);
    size_t usable = la_malloc_usable_size(p);
    errno = 0;
    assert_null(la_realloc(p, SIZE_MAX - 100));
    assert_int_equal(errno, ENOMEM);
    la_os_fault_set(LA_OS_MMAP, 0, 1000000, 0);
    la_os_fault_set(LA_OS_MREMAP, 0, 1000000, 0);
    errno = 0;
    assert_null(la_realloc(p, 96 * MiB));   /* needs a mapping the kernel refuses */
    assert_int_equal(errno, ENOMEM);
    la_os_fault_clear();
    assert_int_equal(la_malloc_usable_size(p), usable);
    assert_true(all_equal(p, n, 0x5C));
    la_free(p);
  }
}

static void realloc_to_zero_frees(void **state) {
  (void)state;
  la_stats_t before = gather();
  void *huge = la_malloc(8 * MiB), *large = la_malloc(512 * KiB);
  la_stats_t during = gather();
  assert_int_equal(during.s.huge_blocks, before.s.huge_blocks + 1);
  assert_int_equal(during.s.large_blocks, before.s.large_blocks + 1);
  assert_null(la_realloc(huge, 0));
  assert_null(la_realloc(large, 0));
  la_stats_t after = gather();
  assert_int_equal(after.s.huge_blocks, before.s.huge_blocks);
  assert_int_equal(after.s.large_blocks, before.s.large_blocks);
  assert_int_equal(after.s.huge_nfree, before.s.huge_nfree + 1);
  assert_int_equal(after.s.large_nfree, before.s.large_nfree + 1);
}

/* realloc keeps the contents across every kind of move, both ways. */
static void realloc_keeps_contents_across_sizes(void **state) {
  (void)state;
  const size_t sizes[] = {1, 24, 1000, 5000, 100 * KiB, 700 * KiB, 2 * MiB, 5 * MiB, 20 * MiB, 300, 7};
  uint8_t *p = la_realloc(NULL, 1);
  assert_non_null(p);
  p[0] = 1;
  size_t have = 1;
  for (size_t i = 1; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i], keep = have < n ? have : n;
    p = la_realloc(p, n);
    assert_non_null(p);
    for (size_t j = 0; j < keep; j++) assert_int_equal(p[j], (uint8_t)(j * 31 + 1));
    for (size_t j = 0; j < n; j++) p[j] = (uint8_t)(j * 31 + 1);
    have = n;
  }
  la_free(p);
}

/* ---- calloc: zero on every path ---------------------------------------------- */

/* malloc `n`, fill with garbage, free, calloc `n` again: all zero. */
static uint8_t *dirty_then_calloc(size_t n) {
  uint8_t *p = la_malloc(n);
  assert_non_null(p);
  memset(p, GARBAGE, n);
  la_free(p);
  uint8_t *q = la_calloc(1, n);
  assert_non_null(q);
  if (!all_zero(q, n)) fail_msg("calloc(1, %zu) after a freed dirty block is not zero", n);
  return q;
}

static const size_t zero_sizes[] = {8,        100,      1000,      1024,     1025,     4 * KiB,  40 * KiB,
                                    64 * KiB, 96 * KiB, 200 * KiB, 256 * KiB, 320 * KiB, 1 * MiB, 2 * MiB};
#define NZERO (sizeof zero_sizes / sizeof zero_sizes[0])

/* Small, heap-cached large and arena large blocks, reused while still
 * dirty (decay never purges them). */
static void calloc_zero_on_reused_dirty_blocks(void **state) {
  (void)state;
  set_decay(-1);
  for (int round = 0; round < 3; round++)
    for (size_t i = 0; i < NZERO; i++) la_free(dirty_then_calloc(zero_sizes[i]));
  assert_true(gather().s.dirty > 0);   /* the blocks were reused dirty, not purged */
}

/* Freed blocks purged at once (dirty_decay_ms:0), then taken again. */
static void calloc_zero_on_purged_blocks(void **state) {
  (void)state;
  set_decay(0);
  size_t purged = gather().s.purged;
  for (size_t i = 0; i < NZERO; i++) la_free(dirty_then_calloc(zero_sizes[i]));
  assert_true(gather().s.purged > purged);
}

/* Large blocks from a segment mapped for them: calloc until the arenas
 * have to map a new one. */
static void calloc_zero_on_fresh_segment(void **state) {
  (void)state;
  static uint8_t *blocks[256];
  size_t n = 1536 * KiB, segments = gather().s.nsegments;
  int i = 0;
  for (; i < 256 && gather().s.nsegments == segments; i++) {
    blocks[i] = la_calloc(1, n);
    assert_non_null(blocks[i]);
    assert_true(all_zero(blocks[i], n));
  }
  assert_true(gather().s.nsegments > segments);
  while (i--) la_free(blocks[i]);
}

/* Fresh memory: nothing cached, everything purged. */
static void calloc_zero_on_fresh_memory(void **state) {
  (void)state;
  la_malloc_trim(0);
  for (size_t i = 0; i < NZERO; i++) {
    uint8_t *q = la_calloc(zero_sizes[i], 1);
    assert_true(all_zero(q, zero_sizes[i]));
    la_free(q);
  }
  uint8_t *h = la_calloc(3, 3 * MiB);
  assert_true(all_zero(h, 9 * MiB));
  la_free(h);
}

/* A freed huge mapping waits in the cache, dirty; calloc of the same size
 * takes it back. */
static void calloc_zero_on_cached_huge_mapping(void **state) {
  (void)state;
  set_decay(-1);
  la_malloc_trim(0);
  size_t n = 12 * MiB;
  uint8_t *p = la_malloc(n);
  memset(p, GARBAGE, n);
  la_free(p);
  uint8_t *q = la_calloc(n, 1);
  assert_ptr_equal(q, p);   /* the cached mapping */
  assert_true(all_zero(q, n));
  la_free(q);
}

/* Two cached mappings, neither large enough: calloc gets one gathered from
 * both (mremap), whose pages hold the garbage. */
static void calloc_zero_on_gathered_huge_mapping(void **state) {
  (void)state;
  set_decay(-1);
  la_malloc_trim(0);
  size_t n = 8 * MiB;
  uint8_t *a = la_malloc(n), *b = la_malloc(n);
  memset(a, GARBAGE, n);
  memset(b, GARBAGE, n);
  la_free(a);
  la_free(b);
  size_t cached = gather().s.dirty;
  assert_true(cached >= 2 * n);
  uint8_t *q = la_calloc(2, n);
  assert_non_null(q);
  assert_true(gather().s.dirty <= cached - 2 * n);   /* both cached mappings were taken */
  assert_true(all_zero(q, 2 * n));
  la_free(q);
}

/* ---- free -------------------------------------------------------------------- */

static void free_keeps_errno(void **state) {
  (void)state;
  const size_t sizes[] = {16, 5000, 100 * KiB, 600 * KiB, 6 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = la_malloc(sizes[i]);
    errno = EDOM;
    la_free(p);
    assert_int_equal(errno, EDOM);
  }
  errno = EDOM;
  la_free(NULL);
  assert_int_equal(errno, EDOM);
}

/* With dirty_decay_ms:0 every free purges; the kernel refuses each
 * madvise and munmap, and free still leaves errno alone. */
static void free_keeps_errno_when_its_purge_is_refused(void **state) {
  (void)state;
  set_decay(0);
  size_t failures = gather().s.purge_failures;
  la_os_fault_set(LA_OS_MADVISE, 0, 1000000, EINVAL);
  la_os_fault_set(LA_OS_MUNMAP, 0, 1000000, ENOMEM);
  const size_t sizes[] = {64 * KiB, 300 * KiB, 1 * MiB, 2 * MiB, 6 * MiB};
  for (int round = 0; round < 3; round++)
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      void *p = la_malloc(sizes[i]);
      memset(p, GARBAGE, sizes[i]);
      errno = EDOM;
      la_free(p);
      assert_int_equal(errno, EDOM);
      uint8_t *q = la_calloc(1, sizes[i]);   /* the purge did not happen: not zero by itself */
      assert_true(all_zero(q, sizes[i]));
      la_free(q);
    }
  assert_true(la_os_fault_injected(LA_OS_MADVISE) > 0);
  assert_true(gather().s.purge_failures > failures);
}

/* ---- sizes ------------------------------------------------------------------- */

static void usable_size_covers_the_request(void **state) {
  (void)state;
  assert_int_equal(la_malloc_usable_size(NULL), 0);
  const size_t sizes[] = {0, 1, 8, 9, 100, 1024, 1025, 10000, 64 * KiB, 300 * KiB, 2 * MiB, 2 * MiB + 1, 7 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    uint8_t *p = la_malloc(sizes[i]);
    assert_non_null(p);
    size_t usable = la_malloc_usable_size(p);
    assert_true(usable >= sizes[i]);
    memset(p, 0x11, usable);   /* all of it is the program's */
    assert_ptr_equal(la_realloc(p, usable), p);   /* fits: stays */
    la_free(p);
  }
}

/* ---- pointers that are not ours ---------------------------------------------- */

/* A pointer of the next allocator (the libc malloc this test is linked
 * with) goes back to it; free counts it. */
static void foreign_pointers_are_passed_on_and_counted(void **state) {
  (void)state;
  size_t foreign = gather().s.foreign_frees;
  char *p = malloc(100);
  assert_non_null(p);
  assert_true(la_malloc_usable_size(p) >= 100);
  p = la_realloc(p, 5000);   /* by the next allocator */
  assert_non_null(p);
  memset(p, 1, 5000);
  errno = EDOM;
  la_free(p);
  assert_int_equal(errno, EDOM);
  assert_int_equal(gather().s.foreign_frees, foreign + 1);
}

/* Pointers into liballoc's memory that are not live blocks are refused and
 * counted, and the block they point into stays intact. */
static void invalid_pointers_into_our_memory_are_counted(void **state) {
  (void)state;
  size_t foreign = gather().s.foreign_frees;
  size_t n = 6 * MiB;
  uint8_t *h = la_malloc(n);
  memset(h, 0x77, n);
  la_free(h + 4096);
  assert_int_equal(gather().s.foreign_frees, foreign + 1);
  errno = 0;
  assert_null(la_realloc(h + 8192, 100));
  assert_int_equal(errno, EINVAL);
  assert_int_equal(gather().s.foreign_frees, foreign + 2);
  assert_int_equal(la_malloc_usable_size(h + 4096), 0);
  assert_true(all_equal(h, n, 0x77));
  la_free(h);
  assert_int_equal(gather().s.foreign_frees, foreign + 2);
}

/* ---- alignment --------------------------------------------------------------- */

static void check_aligned(void *p, size_t align, size_t size) {
  if (!p) fail_msg("no block for align %zu size %zu", align, size);
  if ((uintptr_t)p & (align - 1)) fail_msg("%p is not aligned to %zu (size %zu)", p, align, size);
  assert_true(la_malloc_usable_size(p) >= size);
  memset(p, 0x42, size ? size : 1);
}

/* aligned_alloc and memalign for every power of two, posix_memalign for
 * those it accepts (multiples of sizeof(void *)). */
static void aligned_for_every_power_of_two(void **state) {
  (void)state;
  for (size_t align = 1; align <= 4 * MiB; align <<= 1) {
    const size_t sizes[] = {1, align / 2 + 1, align, align + 1, 3 * align, 100};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      void *a = la_aligned_alloc(align, sizes[i]), *m = la_memalign(align, sizes[i]), *pm = NULL;
      check_aligned(a, align, sizes[i]);
      check_aligned(m, align, sizes[i]);
      if (align >= sizeof(void *)) {
        assert_int_equal(la_posix_memalign(&pm, align, sizes[i]), 0);
        check_aligned(pm, align, sizes[i]);
      }
      la_free(a);
      la_free(m);
      la_free(pm);
    }
  }
}

static void valloc_and_pvalloc_are_page_aligned(void **state) {
  (void)state;
  size_t page = la_page_size;
  void *v = la_valloc(10);
  check_aligned(v, page, 10);
  void *pv = la_pvalloc(page + 1);
  check_aligned(pv, page, 2 * page);   /* rounded up to whole pages */
  void *z = la_pvalloc(0);
  check_aligned(z, page, page);
  la_free(v);
  la_free(pv);
  la_free(z);
}

/* malloc_trim gives back the free pages of the calling thread's sparse
 * slabs, not only what is wholly free: 32 MiB of 1 KiB blocks, 15 in 16
 * freed at random (a page is free when its 4 blocks are: (15/16)^4 of
 * 30 MiB). */
static void trim_gives_back_sparse_slabs(void **state) {
  (void)state;
  enum { N = 32 * 1024 };
  static char *blocks[N];
  for (int i = 0; i < N; i++) memset(blocks[i] = la_malloc(1000), 1, 1000);
  unsigned seed = 11;
  for (int i = 0; i < N; i++)
    if (rand_r(&seed) % 16) la_free(blocks[i]), blocks[i] = NULL;
  size_t trimmed = atomic_load(&la_trimmed_bytes);
  assert_int_equal(la_malloc_trim(0), 1);
  assert_true(atomic_load(&la_trimmed_bytes) - trimmed > (16u << 20));
  for (int i = 0; i < N; i++) la_free(blocks[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_teardown(impossible_sizes_are_enomem, teardown_each),
    cmocka_unit_test_teardown(posix_memalign_returns_enomem_and_keeps_errno, teardown_each),
    cmocka_unit_test_teardown(calloc_overflow_is_enomem, teardown_each),
    cmocka_unit_test_teardown(refused_mappings_are_enomem, teardown_each),
    cmocka_unit_test_teardown(bad_alignments_are_einval, teardown_each),
    cmocka_unit_test_teardown(realloc_failure_leaves_the_block_intact, teardown_each),
    cmocka_unit_test_teardown(realloc_to_zero_frees, teardown_each),
    cmocka_unit_test_teardown(realloc_keeps_contents_across_sizes, teardown_each),
    cmocka_unit_test_teardown(calloc_zero_on_reused_dirty_blocks, teardown_each),
    cmocka_unit_test_teardown(calloc_zero_on_purged_blocks, teardown_each),
    cmocka_unit_test_teardown(calloc_zero_on_fresh_segment, teardown_each),
    cmocka_unit_test_teardown(calloc_zero_on_fresh_memory, teardown_each),
    cmocka_unit_test_teardown(calloc_zero_on_cached_huge_mapping, teardown_each),
    cmocka_unit_test_teardown(calloc_zero_on_gathered_huge_mapping, teardown_each),
    cmocka_unit_test_teardown(free_keeps_errno, teardown_each),
    cmocka_unit_test_teardown(free_keeps_errno_when_its_purge_is_refused, teardown_each),
    cmocka_unit_test_teardown(usable_size_covers_the_request, teardown_each),
    cmocka_unit_test_teardown(foreign_pointers_are_passed_on_and_counted, teardown_each),
    cmocka_unit_test_teardown(invalid_pointers_into_our_memory_are_counted, teardown_each),
    cmocka_unit_test_teardown(aligned_for_every_power_of_two, teardown_each),
    cmocka_unit_test_teardown(valloc_and_pvalloc_are_page_aligned, teardown_each),
    cmocka_unit_test_teardown(trim_gives_back_sparse_slabs, teardown_each),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
