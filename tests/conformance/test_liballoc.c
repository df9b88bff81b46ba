/* test_liballoc.c - the entry points beyond glibc 2.36: the C23 sized frees
 * (free_sized, free_aligned_sized) and liballoc's extension API (alloc_ctl,
 * alloc_stats_print), plus checks that malloc and glibc's internal
 * allocations really reach liballoc.
 *
 * Everything here needs liballoc (or, for the sized frees, a libc that has
 * them): under another allocator the tests skip, or fail when the build
 * requires liballoc (see conformance.h). */
#include "conformance.h"

#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(ALLOC_TEST_DIRECT) || defined(ALLOC_TEST_LINKED)
#include <alloc.h>                    /* ALLOC_VERSION_STRING */
#endif

/* ---- is liballoc really the allocator? ---------------------------------- */

static void liballoc_is_active_when_required(void **state) {
  (void)state;
  conf_need_liballoc();
  assert_non_null(conf.ctl);
  assert_non_null(conf.stats_print);
  assert_non_null(conf.fn_free_sized);
  assert_non_null(conf.fn_free_aligned_sized);
}

static void liballoc_serves_malloc(void **state) {
  (void)state;
  conf_need_liballoc();
  /* alloc_ctl being present does not prove that malloc is ours (a static
   * link can pull in ctl.o while libc keeps malloc): the statistics must see
   * a block obtained through plain malloc. */
  const size_t size = 8 * MiB;
  size_t before = conf_stats_allocated();
  unsigned char *p = malloc(opaque(size));
  assert_non_null(p);
  p[0] = 1;
  size_t during = conf_stats_allocated();
  if (during < before + size)
    fail_msg("stats.allocated %zu -> %zu after malloc(%zu): malloc is not liballoc's", before, during, size);
  free(p);
  size_t after = conf_stats_allocated();
  if (after + size - MiB > during)
    fail_msg("stats.allocated %zu -> %zu after freeing %zu bytes", during, after, size);
}

/* ---- free_sized and free_aligned_sized ---------------------------------- */

/* The sized frees exist in liballoc and in C23 libcs; glibc 2.36 has none. */
static void need_sized_frees(void) {
  if (conf.fn_free_sized != NULL && conf.fn_free_aligned_sized != NULL) return;
  conf_need_liballoc();
  fail_msg("liballoc is active but free_sized/free_aligned_sized are missing");
}

static void free_sized_accepts_malloc_blocks(void **state) {
  (void)state;
  need_sized_frees();
  static const size_t sizes[] = {0, 1, 8, 16, 17, 100, 1000, 4096, 65537, 2 * MiB, 5 * MiB + 3};
  size_t before = conf.active ? conf_stats_allocated() : 0;
  for (int round = 0; round < 200; round++) {
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
      size_t size = sizes[i];
      unsigned char *p = malloc(opaque(size));
      assert_non_null(p);
      if (size) p[size - 1] = 1;
      /* The requested size, or anything up to the usable size. */
      conf.fn_free_sized(p, round % 2 ? malloc_usable_size(p) : size);
    }
  }
  void *volatile null = NULL;
  conf.fn_free_sized(null, 0);
  conf.fn_free_sized(null, 100);
  if (conf.active && conf_stats_allocated() > before + 4 * MiB)
    fail_msg("free_sized does not release blocks (stats.allocated %zu -> %zu)", before,
             conf_stats_allocated());
}

static void free_aligned_sized_accepts_aligned_alloc_blocks(void **state) {
  (void)state;
  need_sized_frees();
  size_t before = conf.active ? conf_stats_allocated() : 0;
  for (int round = 0; round < 20; round++) {
    for (size_t align = 1; align <= 8 * MiB; align *= 4) {
      const size_t sizes[] = {align, 3 * align, 1, 100};
      for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        unsigned char *p = aligned_alloc(opaque(align), opaque(sizes[i]));
        if (p == NULL) fail_msg("aligned_alloc(%zu, %zu) failed", align, sizes[i]);
        assert_true(is_aligned(p, align));
        p[sizes[i] - 1] = 1;
        conf.fn_free_aligned_sized(p, align, sizes[i]);
      }
    }
  }
  void *volatile null = NULL;
  conf.fn_free_aligned_sized(null, 64, 0);
  if (conf.active && conf_stats_allocated() > before + 4 * MiB)
    fail_msg("free_aligned_sized does not release blocks (stats.allocated %zu -> %zu)", before,
             conf_stats_allocated());
}

/* ---- alloc_ctl ---------------------------------------------------------- */

static void ctl_version_reads_version_string(void **state) {
  (void)state;
  conf_need_liballoc();
  const char *version = NULL;
  size_t len = sizeof version;
  assert_int_equal(conf.ctl("version", &version, &len, NULL, 0), 0);
  assert_int_equal(len, sizeof version);
  assert_non_null(version);
  unsigned major, minor, patch;
  int consumed = 0;
  if (sscanf(version, "%u.%u.%u%n", &major, &minor, &patch, &consumed) != 3 || version[consumed] != '\0')
    fail_msg("version \"%s\" is not MAJOR.MINOR.PATCH", version);
#ifdef ALLOC_VERSION_STRING
  assert_string_equal(version, ALLOC_VERSION_STRING);
#endif
  /* oldp == NULL: no read, still a valid call. */
  assert_int_equal(conf.ctl("version", NULL, NULL, NULL, 0), 0);
}

static void ctl_unknown_name_gives_enoent(void **state) {
  (void)state;
  conf_need_liballoc();
  static const char *const names[] = {
    "no.such.name", "", "versionx", "version.", "stats.allocatedx", "opt.no_such_option",
  };
  for (size_t i = 0; i < ARRAY_LEN(names); i++) {
    size_t value = 0, len = sizeof value;
    int r = conf.ctl(names[i], &value, &len, NULL, 0);
    if (r != ENOENT) fail_msg("alloc_ctl(\"%s\") returned %d, not ENOENT", names[i], r);
  }
}

static void ctl_wrong_length_gives_einval(void **state) {
  (void)state;
  conf_need_liballoc();
  char buf[32];
  static const size_t bad_lens[] = {0, 1, 4, 7, 9, 16};
  for (size_t i = 0; i < ARRAY_LEN(bad_lens); i++) {
    if (bad_lens[i] == sizeof(void *)) continue;   /* the right size for both */
    size_t len = bad_lens[i];
    int r = conf.ctl("version", buf, &len, NULL, 0);
    if (r != EINVAL) fail_msg("reading \"version\" with length %zu returned %d", bad_lens[i], r);
    len = bad_lens[i];
    r = conf.ctl("stats.allocated", buf, &len, NULL, 0);
    if (r != EINVAL) fail_msg("reading \"stats.allocated\" with length %zu returned %d", bad_lens[i], r);
  }
}

static void ctl_stats_allocated_tracks_live_blocks(void **state) {
  (void)state;
  conf_need_liballoc();
  enum { N = 256, BLOCK = 4096 };     /* 1 MiB in 4 KiB blocks */
  static void *blocks[N];
  size_t before = conf_stats_allocated();
  for (int i = 0; i < N; i++) {
    blocks[i] = malloc(opaque(BLOCK));
    assert_non_null(blocks[i]);
    memset(blocks[i], i, BLOCK);
  }
  size_t after = conf_stats_allocated();
  if (after < before + N * BLOCK)
    fail_msg("stats.allocated grew from %zu to %zu, less than %d bytes", before, after, N * BLOCK);
  for (int i = 0; i < N; i++) free(blocks[i]);
}

/* Size of a control value, found by trying the integer sizes in turn: the
 * test must not depend on whether a count is `unsigned` or `size_t`. */
static size_t ctl_value_size(const char *name) {
  static const size_t candidates[] = {sizeof(unsigned), sizeof(size_t), 1, 2};
  for (size_t i = 0; i < ARRAY_LEN(candidates); i++) {
    unsigned char buf[16];
    size_t len = candidates[i];
    if (conf.ctl(name, buf, &len, NULL, 0) == 0) return len;
  }
  fail_msg("cannot read \"%s\" with any integer size", name);
  return 0;
}

static void ctl_read_only_narenas_write_gives_eperm(void **state) {
  (void)state;
  conf_need_liballoc();
  size_t size = ctl_value_size("opt.narenas");
  unsigned char old[16] = {0}, changed[16], now[16] = {0};
  size_t len = size;
  assert_int_equal(conf.ctl("opt.narenas", old, &len, NULL, 0), 0);
  memcpy(changed, old, sizeof changed);
  changed[0] ^= 1;                    /* a different, still small value */
  int r = conf.ctl("opt.narenas", NULL, NULL, changed, size);
  if (r != EPERM) fail_msg("writing opt.narenas returned %d, not EPERM", r);
  len = size;
  assert_int_equal(conf.ctl("opt.narenas", now, &len, NULL, 0), 0);
  assert_memory_equal(old, now, size);
}

static void ctl_arena_purge_keeps_heap_usable(void **state) {
  (void)state;
  conf_need_liballoc();
  void *p[64];
  for (int i = 0; i < 64; i++) {
    p[i] = malloc(opaque((size_t)(i + 1) * 5000));
    assert_non_null(p[i]);
    fill_pattern(p[i], (size_t)(i + 1) * 5000, (unsigned)i);
  }
  for (int i = 0; i < 64; i += 2) free(p[i]);
  assert_int_equal(conf.ctl("arena.purge", NULL, NULL, NULL, 0), 0);
  /* Purging free pages must not touch live blocks. */
  for (int i = 1; i < 64; i += 2) {
    assert_int_equal(find_pattern_mismatch(p[i], (size_t)(i + 1) * 5000, (unsigned)i), SIZE_MAX);
    free(p[i]);
  }
  for (int i = 0; i < 64; i++) {
    p[i] = malloc(opaque(5000));
    assert_non_null(p[i]);
    memset(p[i], 0xee, 5000);
  }
  for (int i = 0; i < 64; i++) free(p[i]);
}

static size_t ctl_size(const char *name) {
  size_t value = 0, len = sizeof value;
  assert_int_equal(conf.ctl(name, &value, &len, NULL, 0), 0);
  return value;
}

/* A fresh thread's first block of each size comes from a new slab, and
 * slabs start on 64 KiB boundaries.  Those blocks must not all sit at the
 * same offset in their slab: 64 KiB is the period of the L2's set index, so
 * they would compete for one set (slab.c, colors).  And a slab whose
 * carving starts in its middle must still hand out every block once. */
enum { COLOR_CLASSES = 24, COLOR_BLOCKS = 200, COLOR_SIZE = 1024 };
static const size_t color_sizes[COLOR_CLASSES] = {
  24, 40, 56, 72, 88, 104, 120, 160, 192, 224, 320, 384, 448, 640, 768, 896, 1280, 1536, 1792, 2560, 3072, 3584, 5120, 6144,
};

static void *first_blocks_of_a_fresh_thread(void *arg) {
  uintptr_t *offsets = arg;
  void *p[COLOR_CLASSES];
  for (int c = 0; c < COLOR_CLASSES; c++) {
    p[c] = malloc(opaque(color_sizes[c]));
    offsets[c] = p[c] ? (uintptr_t)p[c] % (64 * KiB) : UINTPTR_MAX;
  }
  for (int c = 0; c < COLOR_CLASSES; c++) free(p[c]);
  return NULL;
}

static void slabs_start_on_different_cache_sets(void **state) {
  (void)state;
  conf_need_liballoc();
  uintptr_t offsets[COLOR_CLASSES];
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, first_blocks_of_a_fresh_thread, offsets), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  int distinct = 0;
  for (int c = 0; c < COLOR_CLASSES; c++) {
    assert_true(offsets[c] != UINTPTR_MAX);
    int seen = 0;
    for (int d = 0; d < c; d++) seen |= offsets[d] / 64 == offsets[c] / 64;
    distinct += !seen;
  }
  if (distinct < COLOR_CLASSES / 2)
    fail_msg("the first blocks of %d classes sit on %d distinct cache lines of the 64 KiB period", COLOR_CLASSES, distinct);
  static unsigned char *blocks[COLOR_BLOCKS];   /* three slabs of 1 KiB blocks, carving wrapped */
  for (int i = 0; i < COLOR_BLOCKS; i++) {
    blocks[i] = malloc(opaque(COLOR_SIZE));
    assert_non_null(blocks[i]);
    fill_pattern(blocks[i], COLOR_SIZE, 300000u + (unsigned)i);
  }
  for (int i = 0; i < COLOR_BLOCKS; i++) {
    assert_int_equal(find_pattern_mismatch(blocks[i], COLOR_SIZE, 300000u + (unsigned)i), SIZE_MAX);
    free(blocks[i]);
  }
}

/* Sparse-slab trimming gives back a slab's pages only once nothing was
 * allocated from or freed into it for a while (TRIM_IDLE_MS, heap.c, as
 * seen by the passes that run when the heap takes a new slab).  So the
 * tests below take new slabs, let that while pass, and take more. */
#define TRIM_WAIT_US 300000   /* three times TRIM_IDLE_MS */

/* malloc `n` blocks of `size` into `blocks`, filled; with a pause halfway. */
static void take_slabs_across_a_pause(unsigned char **blocks, int n, size_t size, unsigned seed) {
  for (int i = 0; i < n; i++) {
    if (i == n / 2) usleep(TRIM_WAIT_US);
    blocks[i] = malloc(opaque(size));
    assert_non_null(blocks[i]);
    fill_pattern(blocks[i], size, seed + (unsigned)i);
  }
}

/* Most small blocks die at random, then the program allocates another
 * size: the heap gives back the pages of its sparse slabs that hold only
 * free blocks, or lends their free space to the new size (with decay
 * stopped, nothing else changes `active`), the survivors stay intact, and the class then refills its slabs,
 * trimmed pages included, with blocks that are all distinct and usable. */
static void sparse_slabs_give_back_free_pages(void **state) {
  (void)state;
  conf_need_liballoc();
  conf_need_kernel_to_take_memory();
  enum { N = 16384, SMALL = 240, BIG = 2000, NBIG = 2048 };
  static unsigned char *small[N], *again[N], *big[NBIG];
  ssize_t never = -1, old_decay;
  size_t len = sizeof old_decay;
  assert_int_equal(conf.ctl("arenas.dirty_decay_ms", &old_decay, &len, &never, sizeof never), 0);
  for (int i = 0; i < N; i++) {
    small[i] = malloc(opaque(SMALL));
    assert_non_null(small[i]);
    fill_pattern(small[i], SMALL, (unsigned)i);
  }
  uint32_t rng = 12345;
  for (int i = 0; i < N; i++) {
    rng = rng * 1103515245u + 12345u;
    if ((rng >> 16) % 10) {   /* 90% die */
      free(small[i]);
      small[i] = NULL;
    }
  }
  size_t active = ctl_size("stats.active");
  take_slabs_across_a_pause(big, NBIG, BIG, 100000u);
  /* The free pages of the sparse slabs were given back (trimming) or now
   * hold big blocks (lending, lend.c): either way the heap grew by at
   * least 256 KiB less than the big blocks' 2 KiB class takes. */
  size_t grown = ctl_size("stats.active") - active, handed_out = (size_t)NBIG * 2048;
  if (grown + 256 * KiB > handed_out)
    fail_msg("active grew by %zu bytes for %zu handed out: sparse slabs neither gave back nor lent", grown,
             handed_out);
  for (int i = 0; i < N; i++) {
    again[i] = malloc(opaque(SMALL));
    assert_non_null(again[i]);
    fill_pattern(again[i], SMALL, 200000u + (unsigned)i);
  }
  for (int i = 0; i < N; i++) {
    if (small[i]) assert_int_equal(find_pattern_mismatch(small[i], SMALL, (unsigned)i), SIZE_MAX);
    assert_int_equal(find_pattern_mismatch(again[i], SMALL, 200000u + (unsigned)i), SIZE_MAX);
  }
  for (int i = 0; i < NBIG; i++) assert_int_equal(find_pattern_mismatch(big[i], BIG, 100000u + (unsigned)i), SIZE_MAX);
  for (int i = 0; i < N; i++) {
    free(small[i]);
    free(again[i]);
  }
  for (int i = 0; i < NBIG; i++) free(big[i]);
  assert_int_equal(conf.ctl("arenas.dirty_decay_ms", NULL, NULL, &old_decay, sizeof old_decay), 0);
}

/* Sparse slabs whose blocks keep dying while the program allocates another
 * size take no new slab and carve nothing, yet they are in use: pages of a
 * slab that changes stay (a class cycling through its slabs would fault
 * each page given back in again), however long that goes on.  Once the
 * frees stop, the slabs' free pages go back. */
enum { BUSY_N = 16384, BUSY_SMALL = 24, BUSY_RUN = 256, BUSY_BIG = 2000, BUSY_NBIG = 2048, BUSY_STEPS = 4 };

static unsigned char *busy_small[BUSY_N], *busy_big[2 * BUSY_NBIG];

/* Bytes given back while big blocks are allocated over BUSY_STEPS pauses,
 * with a small block freed between two (a block of a live run). */
static size_t given_back_while_dying(void) {
  size_t purged = ctl_size("stats.purged");
  for (unsigned i = 0; i < BUSY_NBIG; i++) {
    if (i % (BUSY_NBIG / BUSY_STEPS) == 0) usleep(TRIM_WAIT_US / 2);
    busy_big[i] = malloc(opaque(BUSY_BIG));
    assert_non_null(busy_big[i]);
    unsigned k = i * 2654435761u % (BUSY_N / 2);
    k = k / BUSY_RUN * 2 * BUSY_RUN + k % BUSY_RUN;
    free(busy_small[k]);
    busy_small[k] = NULL;
  }
  return ctl_size("stats.purged") - purged;
}

static void *slabs_dying_then_idle(void *arg) {
  size_t *given_back = arg;
  for (int i = 0; i < BUSY_N; i++) busy_small[i] = malloc(opaque(BUSY_SMALL));
  for (int i = 0; i < BUSY_N; i++)
    if (i / BUSY_RUN % 2) {   /* runs of free pages in every slab */
      free(busy_small[i]);
      busy_small[i] = NULL;
    }
  given_back[0] = given_back_while_dying();
  size_t purged = ctl_size("stats.purged");
  take_slabs_across_a_pause(busy_big + BUSY_NBIG, BUSY_NBIG, BUSY_BIG, 0);
  given_back[1] = ctl_size("stats.purged") - purged;
  for (int i = 0; i < 2 * BUSY_NBIG; i++) free(busy_big[i]);
  for (int i = 0; i < BUSY_N; i++) free(busy_small[i]);
  return NULL;
}

static void slabs_in_use_keep_their_pages(void **state) {
  (void)state;
  conf_need_liballoc();
  conf_need_kernel_to_take_memory();
  ssize_t never = -1, old_decay;
  size_t len = sizeof old_decay, given_back[2];
  assert_int_equal(conf.ctl("arenas.dirty_decay_ms", &old_decay, &len, &never, sizeof never), 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, slabs_dying_then_idle, given_back), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(conf.ctl("arenas.dirty_decay_ms", NULL, NULL, &old_decay, sizeof old_decay), 0);
  if (given_back[0] != 0) fail_msg("%zu bytes of slabs in use were given back", given_back[0]);
  if (given_back[1] == 0) fail_msg("the slabs' free pages were not given back once idle");
}

/* ---- alloc_stats_print -------------------------------------------------- */

/* Collects the printed text without allocating (the callback may run while
 * the allocator holds a lock), and follows the JSON nesting on the fly. */
struct collected {
  char text[64 * 1024];               /* the beginning, for messages */
  size_t total;
  char first, last;                   /* first and last non-space character */
  int depth;                          /* {[ nesting outside strings */
  int min_depth;
  int top_level_values;               /* times the nesting returned to 0 */
  bool in_string, escaped;
};

static void collect(void *opaque_arg, const char *text) {
  struct collected *c = opaque_arg;
  for (const char *s = text; *s; s++) {
    char ch = *s;
    if (c->total < sizeof c->text - 1) c->text[c->total] = ch;
    c->total++;
    if (!isspace((unsigned char)ch)) {
      if (!c->first) c->first = ch;
      c->last = ch;
    }
    if (c->in_string) {
      if (c->escaped) c->escaped = false;
      else if (ch == '\\') c->escaped = true;
      else if (ch == '"') c->in_string = false;
    } else if (ch == '"') {
      c->in_string = true;
    } else if (ch == '{' || ch == '[') {
      c->depth++;
    } else if (ch == '}' || ch == ']') {
      c->depth--;
      if (c->depth < c->min_depth) c->min_depth = c->depth;
      if (c->depth == 0) c->top_level_values++;
    }
  }
}

static void stats_print_json_is_one_object(void **state) {
  (void)state;
  conf_need_liballoc();
  static struct collected c;
  memset(&c, 0, sizeof c);
  conf.stats_print(collect, &c, "J");
  assert_true(c.total > 2);
  if (c.first != '{' || c.last != '}')
    fail_msg("JSON starts with '%c' and ends with '%c':\n%.500s", c.first, c.last, c.text);
  assert_false(c.in_string);
  assert_int_equal(c.depth, 0);
  assert_int_equal(c.min_depth, 0);
  assert_int_equal(c.top_level_values, 1);
}

static void stats_print_text_is_not_empty(void **state) {
  (void)state;
  conf_need_liballoc();
  static struct collected c;
  memset(&c, 0, sizeof c);
  conf.stats_print(collect, &c, NULL);
  assert_true(c.total > 0);
  assert_true(c.first != 0);
  memset(&c, 0, sizeof c);
  conf.stats_print(collect, &c, "");
  assert_true(c.total > 0);
}

/* ---- glibc's own allocations -------------------------------------------- */

static void libc_internal_allocations_come_from_liballoc(void **state) {
  (void)state;
  conf_need_liballoc();
#ifdef ALLOC_TEST_DIRECT
  skip();                             /* libc allocates from ASan here */
#endif
  const size_t len = 2 * MiB;
  char *big = malloc(opaque(len + 1));
  assert_non_null(big);
  memset(big, 'x', len);
  big[len] = '\0';

  size_t before = conf_stats_allocated();
  char *dup = strdup(big);
  assert_non_null(dup);
  size_t after = conf_stats_allocated();
  if (after < before + len)
    fail_msg("strdup of %zu bytes: stats.allocated %zu -> %zu: libc does not use liballoc", len, before, after);

  char *formatted = NULL;
  before = after;
  assert_int_equal(asprintf(&formatted, "%s", big), (int)len);
  after = conf_stats_allocated();
  if (after < before + len)
    fail_msg("asprintf of %zu bytes: stats.allocated %zu -> %zu", len, before, after);

  free(formatted);
  free(dup);
  free(big);
}

int conf_run_liballoc_tests(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(liballoc_is_active_when_required),
    cmocka_unit_test(liballoc_serves_malloc),
    cmocka_unit_test(free_sized_accepts_malloc_blocks),
    cmocka_unit_test(free_aligned_sized_accepts_aligned_alloc_blocks),
    cmocka_unit_test(ctl_version_reads_version_string),
    cmocka_unit_test(ctl_unknown_name_gives_enoent),
    cmocka_unit_test(ctl_wrong_length_gives_einval),
    cmocka_unit_test(ctl_stats_allocated_tracks_live_blocks),
    cmocka_unit_test(ctl_read_only_narenas_write_gives_eperm),
    cmocka_unit_test(ctl_arena_purge_keeps_heap_usable),
    cmocka_unit_test(sparse_slabs_give_back_free_pages),
    cmocka_unit_test(slabs_in_use_keep_their_pages),
    cmocka_unit_test(slabs_start_on_different_cache_sets),
    cmocka_unit_test(stats_print_json_is_one_object),
    cmocka_unit_test(stats_print_text_is_not_empty),
    cmocka_unit_test(libc_internal_allocations_come_from_liballoc),
  };
  return cmocka_run_group_tests_name("free_sized, alloc_ctl, alloc_stats_print", tests, NULL, NULL);
}
