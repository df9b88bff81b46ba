/* test_huge.c - huge blocks (huge.c) while their THP mode changes: realloc
 * moves and resizes a block's mapping without huge_lock, so the descriptor
 * la_huge_apply_thp walks must never describe a range being moved.
 *
 * This binary's madvise (the core is linked in statically, and the OS
 * layer calls libc's) records a THP advice the kernel refuses with ENOMEM:
 * a range that is not mapped. */
#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_int thp_advices, thp_unmapped;

int madvise(void *addr, size_t len, int advice) {
  int r = (int)syscall(SYS_madvise, addr, len, advice);
  if (advice == MADV_HUGEPAGE || advice == MADV_NOHUGEPAGE) {
    atomic_fetch_add(&thp_advices, 1);
    if (r != 0 && errno == ENOMEM) atomic_fetch_add(&thp_unmapped, 1);
  }
  return r;
}

static atomic_bool stop;

static void *thp_toggler(void *arg) {
  (void)arg;
  for (unsigned n = 0; !atomic_load(&stop); n++) la_huge_apply_thp(n % 2 ? LA_THP_ALWAYS : LA_THP_NEVER);
  return NULL;
}

/* A block grown step by step (moving when the space after it is taken by
 * a neighbour) and shrunk again, its first bytes checked at every step. */
static void test_realloc_while_thp_changes(void **state) {
  (void)state;
  pthread_t t;
  atomic_store(&stop, false);
  assert_int_equal(pthread_create(&t, NULL, thp_toggler, NULL), 0);
  for (int round = 0; round < 200 || (atomic_load(&thp_advices) < 100 && round < 5000); round++) {
    char *p = la_malloc((size_t)3 << 20);
    memset(p, round, 4096);
    void *neighbour = la_malloc((size_t)3 << 20);   /* often right after p: growth must move */
    for (size_t mib = 5; mib <= 40; mib += 7) {
      p = la_realloc(p, mib << 20);
      assert_non_null(p);
      assert_int_equal(p[4095], (char)round);
    }
    p = la_realloc(p, (size_t)3 << 20);
    assert_int_equal(p[0], (char)round);
    la_free(neighbour);
    la_free(p);
  }
  atomic_store(&stop, true);
  pthread_join(t, NULL);
  assert_true(atomic_load(&thp_advices) > 0);
  assert_int_equal(atomic_load(&thp_unmapped), 0);
}

static la_stats_t gathered(void) {
  la_stats_t st;
  la_stats_gather(&st);
  return st;
}

static size_t mapped_bytes(void) { return (size_t)gathered().s.mapped; }
static size_t dirty_bytes(void) { return (size_t)gathered().s.dirty; }

/* Memory freed as huge blocks serves small blocks next (issue 21): after
 * 64 MiB of 4 MiB blocks are written and freed, 64 MiB of 64-byte blocks
 * take the cached mappings for their segments instead of mapping 64 MiB
 * more.  The cache does not decay meanwhile (decay -1), so without the
 * reuse every byte of the small blocks would be new memory. */
static void test_freed_huge_serves_small_blocks(void **state) {
  (void)state;
  enum { NBIG = 16, SMALL = 64 };
  const size_t big = LA_SEG_SIZE, total = NBIG * big;
  la_huge_set_decay(-1);
  char *bigs[NBIG];
  for (int i = 0; i < NBIG; i++) {
    bigs[i] = la_malloc(big);
    assert_non_null(bigs[i]);
    for (size_t off = 0; off < big; off += 4096) bigs[i][off] = (char)i;
  }
  for (int i = 0; i < NBIG; i++) la_free(bigs[i]);
  size_t before = mapped_bytes();
  void *head = NULL;
  for (size_t n = 0; n < total / SMALL; n++) {
    void **b = la_malloc(SMALL);
    assert_non_null(b);
    *b = head;
    head = b;
  }
  size_t grown = mapped_bytes() - before;
  /* 64 MiB of slabs need 17 segments (unit 0 of each is its header) and
   * the cache held 16: one or two segments may be new, not sixteen. */
  assert_true(grown <= 2 * LA_SEG_SIZE);
  while (head) {
    void *next = *(void **)head;
    la_free(head);
    head = next;
  }
  la_huge_set_decay(la_opt.dirty_decay_ms);
}

/* A program that frees all its big buffers at once keeps them cached for
 * what it allocates next, however many there are: the cache holds up to
 * what was in use since it was last empty.  A cap of twice the bytes in
 * use plus 256 MiB unmapped all but 256 MiB of them at once (hugereuse's
 * small blocks then faulted 44 MiB in again).  Nothing is written: the
 * mappings are counted, not their pages. */
static void test_all_freed_at_once_stay_cached(void **state) {
  (void)state;
  enum { NBIG = 80 };   /* 320 MiB */
  la_huge_set_decay(0);   /* the cache starts empty: a free with no decay time empties it */
  la_free(la_malloc(LA_SEG_SIZE));
  la_huge_set_decay(-1);
  size_t before = dirty_bytes();
  char *bigs[NBIG];
  for (int i = 0; i < NBIG; i++) assert_non_null(bigs[i] = la_malloc(LA_SEG_SIZE));
  for (int i = 0; i < NBIG; i++) la_free(bigs[i]);
  assert_true(dirty_bytes() - before >= (size_t)NBIG * LA_SEG_SIZE);
  la_huge_set_decay(0);   /* gives them back */
  la_free(la_malloc(LA_SEG_SIZE));
  la_huge_set_decay(la_opt.dirty_decay_ms);
}

/* The other way round: after 64 MiB of 64-byte blocks are freed, 64 MiB of
 * 4 MiB blocks take the wholly free segments instead of mapping 64 MiB
 * more.  Neither the arenas nor the cache decay meanwhile, and the cache
 * starts empty, so without the reuse every huge block would be new. */
static void test_freed_small_blocks_serve_huge(void **state) {
  (void)state;
  enum { NBIG = 16, SMALL = 64 };
  const size_t big = LA_SEG_SIZE, total = NBIG * big;
  la_huge_set_decay(-1);
  la_arenas_set_decay(-1, -1);
  la_huge_purge();
  void *head = NULL;
  for (size_t n = 0; n < total / SMALL; n++) {
    void **b = la_malloc(SMALL);
    assert_non_null(b);
    *b = head;
    head = b;
  }
  while (head) {
    void *next = *(void **)head;
    la_free(head);
    head = next;
  }
  size_t before = mapped_bytes();
  char *bigs[NBIG];
  for (int i = 0; i < NBIG; i++) {
    bigs[i] = la_malloc(big);
    assert_non_null(bigs[i]);
    for (size_t off = 0; off < big; off += 4096) bigs[i][off] = (char)i;
  }
  size_t grown = mapped_bytes() - before;
  /* the heap may keep a slab or two of the small blocks: one or two
   * segments may stay the arena's, not sixteen */
  assert_true(grown <= 2 * LA_SEG_SIZE);
  for (int i = 0; i < NBIG; i++) la_free(bigs[i]);
  la_arenas_set_decay(la_opt.dirty_decay_ms, la_opt.muzzy_decay_ms);
  la_huge_set_decay(la_opt.dirty_decay_ms);
}

/* A segment carved from freed huge blocks still holds their bytes: calloc
 * of a large block on it must clear it rather than take it for a fresh
 * mapping.  The arenas are trimmed first, so that their free units are
 * purged (calloc rightly skips clearing those) and segments soon run out;
 * the huge blocks are filled with 0xa5 and freed; then 1 MiB callocs go on
 * until blocks sit in every recycled region, and each must read as zero. */
static void test_calloc_on_recycled_region_is_zero(void **state) {
  (void)state;
  enum { NBIG = 4, LARGE = 1 << 20, MAX_LARGE = 256 };
  la_huge_set_decay(-1);
  la_huge_purge();
  la_arenas_purge();
  char *bigs[NBIG];
  for (int i = 0; i < NBIG; i++) {
    bigs[i] = la_malloc(LA_SEG_SIZE);
    assert_non_null(bigs[i]);
    memset(bigs[i], 0xa5, LA_SEG_SIZE);
  }
  for (int i = 0; i < NBIG; i++) la_free(bigs[i]);
  static unsigned char *large[MAX_LARGE];
  int n = 0, on_recycled = 0;
  while (n < MAX_LARGE && on_recycled < 3 * NBIG) {
    unsigned char *p = large[n++] = la_calloc(1, LARGE);
    assert_non_null(p);
    for (int i = 0; i < NBIG; i++) on_recycled += (char *)la_segment_of(p) == bigs[i];
    for (size_t off = 0; off < LARGE; off += 512) assert_int_equal(p[off], 0);
  }
  assert_int_equal(on_recycled, 3 * NBIG);   /* three 1 MiB blocks per region */
  for (int i = 0; i < n; i++) la_free(large[i]);
  la_huge_set_decay(la_opt.dirty_decay_ms);
}

/* Does the kernel give every anonymous mapping huge pages? */
static bool thp_always(void) {
  char buf[128] = "";
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f) {
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
  }
  return strstr(buf, "[always]") != NULL;
}

/* Pages of [p, p + len) the kernel has resident. */
static size_t resident_pages(const void *p, size_t len) {
  static unsigned char vec[2 * LA_SEG_SIZE / 4096];
  size_t n = la_os_resident_pages(p, len, vec, sizeof vec);
  assert_true(n != (size_t)-1);
  return n;
}

/* A freed block whose program wrote only part of it (sqlite's sorter takes
 * 8 MiB and fills some) serves small blocks from the pages it left
 * resident before the pages it never touched: of an 8 MiB block only the
 * second half of its first 4 MiB was written, so the arena must take that
 * region (not the untouched other one) and, in it, the written units.
 * Without either, 1 MiB of small blocks faulted in 1 MiB of new pages
 * while 2 MiB of freed ones stayed resident beside them. */
static void test_written_pages_of_a_freed_block_serve_first(void **state) {
  (void)state;
  enum { SMALL = 1024, MAX_SMALL = 1 << 16, WANT = 1024 };
  la_huge_set_decay(-1);
  la_arenas_set_decay(-1, -1);
  la_huge_purge();
  la_arenas_purge();
  char *big = la_malloc(2 * LA_SEG_SIZE);
  assert_non_null(big);
  memset(big + LA_SEG_SIZE / 2, 0x5a, LA_SEG_SIZE / 2);
  la_free(big);
  size_t before = resident_pages(big, 2 * LA_SEG_SIZE);
  static void *small[MAX_SMALL];
  int n = 0, on_big = 0;
  while (n < MAX_SMALL && on_big < WANT) {
    char *p = small[n++] = la_malloc(SMALL);
    assert_non_null(p);
    memset(p, 1, SMALL);
    if (p >= big && p < big + 2 * LA_SEG_SIZE) {
      assert_ptr_equal(la_segment_of(p), big);   /* the region that was written */
      on_big++;
    }
  }
  assert_int_equal(on_big, WANT);
  /* the segment's header and metadata pages may be new, not the blocks'
   * (unless the kernel backs every mapping with huge pages: the header's
   * first write then brings in 2 MiB) */
  size_t grown = resident_pages(big, 2 * LA_SEG_SIZE) - before;
  if (!thp_always()) assert_true(grown < 32);
  for (int i = 0; i < n; i++) la_free(small[i]);
  la_arenas_set_decay(la_opt.dirty_decay_ms, la_opt.muzzy_decay_ms);
  la_huge_set_decay(la_opt.dirty_decay_ms);
}

/* A block grown by realloc past what the cache can serve takes as many
 * cached bytes out of the cache as the fresh pages it gets (or moves onto
 * a cached mapping, whose pages the move gives back): the freed mappings
 * are not kept resident beside the grown block.  No decay meanwhile (-1):
 * without the shedding the 96 MiB freed stay cached to the end.  Growth
 * reserves twice the mapping, so the block moves O(log n) times (it moved
 * at every other step when growth within the mapping cut the reserve off
 * into the cache). */
static void test_growth_sheds_the_cache(void **state) {
  (void)state;
  const size_t big = 48u << 20, step = 4u << 20, final = 160u << 20;
  la_huge_set_decay(-1);
  char *a = la_malloc(big), *b = la_malloc(big);
  assert_non_null(a);
  assert_non_null(b);
  memset(a, 1, big);
  memset(b, 2, big);
  la_free(a);
  la_free(b);
  assert_true(dirty_bytes() >= 2 * big);
  char *g = NULL;
  int moves = 0;
  for (size_t size = step; size <= final; size += step) {
    char *before = g;
    g = la_realloc(g, size);
    assert_non_null(g);
    moves += before && g != before;
    memset(g + size - step, 3, step);
  }
  print_message("  %d moves growing 4 MiB at a time to 160 MiB\n", moves);
  assert_true(moves <= 6);   /* log2(160 / 4) = 5.3 */
  assert_true(dirty_bytes() < 16u << 20);
  for (size_t off = 0; off < final; off += 4096) assert_int_equal(g[off], 3);
  la_free(g);
  la_huge_set_decay(la_opt.dirty_decay_ms);
}

/* The runs of freed large blocks cannot hold a huge block: when one takes
 * new pages, as many of the arenas' dirty units are purged, beyond a
 * quarter of the bytes in huge blocks.  1 MiB blocks fill segments three
 * to one; one in each segment stays, so that no segment is wholly free
 * (those would serve the huge block: test_freed_small_blocks_serve_huge).
 * Without the trade the dirty units stay as they were. */
static void test_new_huge_pages_purge_dirty_units(void **state) {
  (void)state;
  enum { NLARGE = 48 };
  const size_t large = 1u << 20;
  la_huge_set_decay(-1);
  la_arenas_set_decay(-1, -1);
  la_malloc_trim(0);
  char *blocks[NLARGE];
  for (int i = 0; i < NLARGE; i++) {
    assert_non_null(blocks[i] = la_malloc(large));
    memset(blocks[i], 1, large);
  }
  for (int i = 0; i < NLARGE; i++) {
    bool first = true;   /* the first block of its segment stays */
    for (int j = 0; j < i; j++) first &= !blocks[j] || la_segment_of(blocks[j]) != la_segment_of(blocks[i]);
    if (!first) la_free(blocks[i]), blocks[i] = NULL;
  }
  size_t dirty = dirty_bytes();
  assert_true(dirty >= 24 * large);
  /* no huge block yet: nothing kept, 16 MiB purged */
  char *h = la_malloc(16 * large);
  assert_non_null(h);
  size_t after = dirty_bytes();
  assert_true(after + 16 * large <= dirty);
  /* 16 MiB in huge blocks: 4 MiB of dirty units are kept */
  char *h2 = la_malloc(64 * large);
  assert_non_null(h2);
  assert_true(dirty_bytes() >= 4 * large - LA_UNIT_SIZE);
  assert_true(dirty_bytes() <= 4 * large + LA_UNIT_SIZE);
  la_free(h2);
  la_free(h);
  for (int i = 0; i < NLARGE; i++) la_free(blocks[i]);
  la_arenas_set_decay(la_opt.dirty_decay_ms, la_opt.muzzy_decay_ms);
  la_huge_set_decay(la_opt.dirty_decay_ms);
}

/* A block that must move to grow, onto a cached mapping, keeps that
 * mapping's resident pages after it for its growth (without this, the move
 * replaced them all and the growth faulted in new ones); the block then
 * spans two kernel mappings, and moves later region by region, also when
 * the kernel refuses every mremap (each region is copied then). */
static void test_growth_onto_cached_pages(void **state) {
  (void)state;
  const size_t seg = LA_SEG_SIZE;
  la_huge_set_decay(-1);
  la_huge_purge();
  char *cached = la_malloc(4 * seg), *blocker = la_malloc(seg), *g = la_malloc(seg);
  assert_non_null(cached);
  assert_non_null(blocker);
  assert_non_null(g);
  memset(cached, 1, 4 * seg);
  la_free(cached);
  memset(g, 7, seg);
  /* the address after g is taken (mappings are placed downwards) */
  char *g3 = la_realloc(g, 3 * seg);
  assert_ptr_equal(g3, cached);   /* moved onto the cached mapping */
  if (!thp_always()) assert_int_equal(resident_pages(g3 + seg, 2 * seg), 2 * seg / 4096);
  for (size_t off = 0; off < seg; off += 4096) assert_int_equal(g3[off], 7);
  memset(g3 + seg, 8, 2 * seg);
  /* the cached mapping's last region follows g3: too small to absorb, so
   * g3 moves, region by region; then again with every mremap refused */
  char *g10 = la_realloc(g3, 10 * seg);
  assert_non_null(g10);
  assert_ptr_not_equal(g10, g3);
  memset(g10 + 3 * seg, 9, 7 * seg);
  char *again = la_malloc(seg);   /* take the address after g10 */
  la_os_fault_set(LA_OS_MREMAP, 0, 1000000, EFAULT);
  char *g20 = la_realloc(g10, 20 * seg);
  la_os_fault_clear();
  assert_non_null(g20);
  for (size_t off = 0; off < 10 * seg; off += 4096)
    assert_int_equal(g20[off], off < seg ? 7 : off < 3 * seg ? 8 : 9);
  la_free(g20);
  la_free(again);
  la_free(blocker);
  la_huge_set_decay(la_opt.dirty_decay_ms);
}

/* A block the program split into several kernel mappings (mprotect on a
 * page of it) still grows by moving its pages: mremap refuses one call
 * over several mappings with growth, and the block moves region by region
 * instead (a region the kernel will not move is copied), where it was
 * copied whole into a new block before. */
static void test_program_split_block_moves(void **state) {
  (void)state;
  const size_t seg = LA_SEG_SIZE;
  la_huge_purge();   /* fresh mappings, placed downwards: g ends where blocker starts */
  char *blocker = la_malloc(seg), *g = la_malloc(2 * seg);
  assert_non_null(blocker);
  assert_non_null(g);
  assert_ptr_equal(g + 2 * seg, blocker);
  for (size_t off = 0; off < 2 * seg; off += 4096) g[off] = (char)(off >> 12);
  char *page = g + seg + 4096;
  assert_int_equal(mprotect(page, 4096, PROT_READ), 0);
  uint64_t blocks_made = gathered().s.huge_nmalloc;
  char *moved = la_realloc(g, 6 * seg);
  assert_non_null(moved);
  assert_ptr_not_equal(moved, g);
  assert_int_equal(gathered().s.huge_nmalloc, blocks_made);   /* moved, not copied into a new block */
  for (size_t off = 0; off < 2 * seg; off += 4096) assert_int_equal(moved[off], (char)(off >> 12));
  assert_int_equal(mprotect(moved + seg + 4096, 4096, PROT_READ | PROT_WRITE), 0);
  memset(moved, 5, 6 * seg);
  la_free(moved);
  la_free(blocker);
}

int main(void) {
  la_ensure_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_freed_huge_serves_small_blocks),
      cmocka_unit_test(test_calloc_on_recycled_region_is_zero),
      cmocka_unit_test(test_written_pages_of_a_freed_block_serve_first),
      cmocka_unit_test(test_freed_small_blocks_serve_huge),
      cmocka_unit_test(test_realloc_while_thp_changes),
      cmocka_unit_test(test_growth_sheds_the_cache),
      cmocka_unit_test(test_growth_onto_cached_pages),
      cmocka_unit_test(test_program_split_block_moves),
      cmocka_unit_test(test_all_freed_at_once_stay_cached),
      cmocka_unit_test(test_new_huge_pages_purge_dirty_units),
  };
  return cmocka_run_group_tests_name("huge", tests, NULL, NULL);
}
