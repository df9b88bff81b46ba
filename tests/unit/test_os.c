/* test_os.c - the OS layer (os.c, os_file.c, os_fault.c), and what the
 * allocator does when the kernel says no.
 *
 * Failures are injected through the layer's fault hook (the same one
 * ALLOC_FAULTS arms in preloaded processes), and once for real: under
 * mlockall every madvise(MADV_DONTNEED) fails with EINVAL.  Whatever fails,
 * calloc memory reads as zero, no block is handed out twice, what the
 * statistics count as returned to the kernel was returned (mincore says
 * so), free keeps errno, a refused mapping is ENOMEM, and once the failures
 * stop everything given back can be given back. */
#include "unit.h"

#include <alloc.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static size_t stat_value(const char *name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  assert_int_equal(alloc_ctl(name, &v, &len, NULL, 0), 0);
  return (size_t)v;
}

static la_stats_t gather(void) {
  la_stats_t st;
  la_stats_gather(&st);
  return st;
}

static void set_decay(ssize_t dirty, ssize_t muzzy) {
  assert_int_equal(alloc_ctl("opt.dirty_decay_ms", NULL, NULL, &dirty, sizeof dirty), 0);
  assert_int_equal(alloc_ctl("opt.muzzy_decay_ms", NULL, NULL, &muzzy, sizeof muzzy), 0);
}

static int setup(void **state) {
  (void)state;
  /* No transparent huge pages: khugepaged could back purged units with a
   * huge page again, and "counted clean" would no longer mean "not resident". */
  la_ensure_init();
  la_opt.thp = LA_THP_NEVER;
  la_opt.telemetry = false;   /* the publisher starts in the test that wants it */
  bool off = false;   /* purging happens in the calling thread, where the test sees it */
  return alloc_ctl("background_thread", NULL, NULL, &off, sizeof off);
}

static int teardown_each(void **state) {
  (void)state;
  la_os_fault_clear();
  set_decay(10000, 0);
  la_malloc_trim(0);
  return 0;
}

/* Every byte zero; volatile so that no compiler assumes what calloc gives. */
static bool all_zero(const void *p, size_t n) {
  const volatile uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) return false;
  return true;
}

/* ---- the hook itself ---------------------------------------------------------- */

static void nth_call_fails_once_with_its_errno(void **state) {
  (void)state;
  void *p = la_os_map(MiB);
  assert_non_null(p);
  la_os_fault_set(LA_OS_MADVISE, 3, 0, EBUSY);
  errno = EDOM;
  assert_true(la_os_purge(p, MiB));
  assert_true(la_os_purge(p, MiB));
  assert_false(la_os_purge(p, MiB));   /* the third */
  assert_int_equal(errno, EDOM);       /* purging keeps errno: it runs inside free() */
  assert_true(la_os_purge(p, MiB));
  assert_int_equal(la_os_fault_injected(LA_OS_MADVISE), 1);
  la_os_fault_set(LA_OS_MADVISE, 0, 1000000, 0);   /* p = 1 */
  for (int i = 0; i < 10; i++) assert_false(la_os_purge_lazy(p, MiB));
  la_os_fault_clear();
  assert_true(la_os_purge(p, MiB));
  assert_true(la_os_unmap(p, MiB));
}

static void refused_open_fails_like_the_kernel(void **state) {
  (void)state;
  char buf[64];
  la_os_fault_set(LA_OS_OPEN, 0, 1000000, EMFILE);
  assert_int_equal(la_os_read_file("/proc/self/statm", buf, sizeof buf), -1);
  assert_int_equal(errno, EMFILE);
  la_os_fault_set(LA_OS_READ, 1, 0, 0);
  la_os_fault_set(LA_OS_OPEN, 0, 0, 0);
  assert_int_equal(la_os_read_file("/proc/self/statm", buf, sizeof buf), -1);   /* its first read */
  assert_true(la_os_read_file("/proc/self/statm", buf, sizeof buf) > 0);
}

static void alloc_faults_arms_from_the_environment(void **state) {
  (void)state;
  void *p = la_os_map(MiB);
  setenv("ALLOC_FAULTS", "madvise:p=1:EPERM,bogus:p=1,munmap:nth=0,open:p=2", 1);
  la_os_faults_init();   /* three malformed entries: warned about, skipped */
  unsetenv("ALLOC_FAULTS");
  assert_false(la_os_purge(p, MiB));
  assert_int_equal(la_os_fault_injected(LA_OS_OPEN), 0);
  char buf[16];
  assert_true(la_os_read_file("/proc/self/statm", buf, sizeof buf) > 0);   /* open not armed */
  la_os_fault_clear();
  assert_true(la_os_unmap(p, MiB));
}

/* ---- the allocator under refused purges --------------------------------------- */

/* The probe: blocks of 8 KiB .. 1.5 MiB malloc'ed, filled, freed with
 * dirty_decay_ms:0, then calloc'ed again. */
static const size_t probe_sizes[] = {8 * KiB, 40 * KiB, 96 * KiB, 300 * KiB, 1 * MiB, 1536 * KiB, 3 * MiB, 9 * MiB};
#define NPROBES (sizeof probe_sizes / sizeof probe_sizes[0])

/* The first `nsizes` probe sizes.  munmap works under mlockall: the probe
 * of real refusals stops below the huge sizes. */
static void fill_free_calloc(size_t nsizes) {
  for (unsigned round = 0; round < 4; round++)
    for (size_t i = 0; i < nsizes; i++) {
      size_t n = probe_sizes[i];
      uint8_t *p = la_malloc(n);
      assert_non_null(p);
      memset(p, 0xAB, n);
      errno = EDOM;
      la_free(p);
      assert_int_equal(errno, EDOM);
      uint8_t *q = la_calloc(1, n);
      assert_non_null(q);
      assert_true(all_zero(q, n));
      la_free(q);
    }
}

static void calloc_is_zero_when_purges_are_refused(void **state) {
  (void)state;
  set_decay(0, 0);
  size_t purged = stat_value("stats.purged");
  la_stats_t before = gather();
  la_os_fault_set(LA_OS_MADVISE, 0, 1000000, EINVAL);
  la_os_fault_set(LA_OS_MUNMAP, 0, 1000000, ENOMEM);
  fill_free_calloc(NPROBES);
  la_stats_t after = gather();
  assert_int_equal(stat_value("stats.purged"), purged);   /* the kernel purged nothing */
  assert_true(after.s.purge_failures > before.s.purge_failures);
  assert_true(la_os_fault_injected(LA_OS_MADVISE) > 0);
}

/* Real refusals: locked pages cannot be purged.  ASan's shadow memory is
 * terabytes of address space: mlockall is not for that build. */
static void mlockall_purges_nothing_and_says_so(void **state) {
  (void)state;
#ifdef ALLOC_SANITIZE
  skip();
#endif
  if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
    fprintf(stderr, "mlockall: %s: skipped\n", strerror(errno));
    skip();
  }
  set_decay(0, 0);
  size_t purged = stat_value("stats.purged");
  la_stats_t before = gather();
  fill_free_calloc(NPROBES - 2);
  la_stats_t after = gather();
  munlockall();
  assert_int_equal(stat_value("stats.purged"), purged);
  assert_true(after.s.purge_failures > before.s.purge_failures);
}

/* Every free unit the arenas count as neither dirty nor muzzy must not be
 * resident: that is what purged means.  Returns the units checked. */
static size_t assert_clean_units_not_resident(void) {
  unsigned char vec[LA_UNIT_SIZE / 4096 + 1];
  size_t checked = 0, resident = 0;
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) {
    la_arena_t *a = la_arena_at(i);
    pthread_mutex_lock(&a->lock);   /* no assert until it is released */
    for (unsigned r = 0; r < LA_UNITS; r++)
      for (la_segment_t *seg = a->segments[r]; seg; seg = seg->bucket.next) {
        uint64_t clean = ~(seg->used_units | seg->dirty_units | seg->muzzy_units | seg->purging_units);
        for (unsigned u = 1; u < LA_UNITS; u++) {
          if (!(clean >> u & 1) || mincore(la_unit_address(seg, u), LA_UNIT_SIZE, vec) != 0) continue;
          for (size_t pg = 0; pg < LA_UNIT_SIZE / la_page_size; pg++) resident += vec[pg] & 1;
          checked++;
        }
      }
    pthread_mutex_unlock(&a->lock);
  }
  if (resident) fail_msg("%zu pages of units counted clean are resident", resident);
  return checked;
}

static void counted_clean_means_not_resident(void **state) {
  (void)state;
  set_decay(0, 0);
  la_os_fault_set(LA_OS_MADVISE, 0, 500000, EINVAL);   /* half of them */
  void *b[48];
  for (int round = 0; round < 6; round++) {
    for (int i = 0; i < 48; i++) {
      b[i] = la_malloc(probe_sizes[(i + round) % 6]);
      assert_non_null(b[i]);
      memset(b[i], 0x5A, probe_sizes[(i + round) % 6]);
    }
    for (int i = 0; i < 48; i++) la_free(b[i]);
  }
  assert_true(la_os_fault_injected(LA_OS_MADVISE) > 0);
  assert_true(assert_clean_units_not_resident() > 0);
  la_malloc_trim(0);   /* refusals again, half of them */
  assert_clean_units_not_resident();
}

/* Decay does not retry units the kernel refused (each free would cost a
 * failing madvise per dirty run of the arena), and malloc_trim, asked for
 * explicitly, tries them again. */
static void refused_units_are_not_retried_in_vain(void **state) {
  (void)state;
  set_decay(0, 0);
  la_os_fault_set(LA_OS_MADVISE, 0, 1000000, EINVAL);
  void *b[64];
  size_t frees = 0;
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < 64; i++) assert_non_null(b[i] = la_malloc((size_t)(i % 24 + 1) * LA_UNIT_SIZE));
    for (int i = 0; i < 64; i++, frees++) la_free(b[i]);
  }
  uint64_t tries = la_os_fault_injected(LA_OS_MADVISE);
  print_message("  %zu frees, %llu refused madvise calls\n", frees, (unsigned long long)tries);
  assert_true(tries <= 2 * frees);   /* 100 per free before */
  assert_true(gather().s.dirty > 0);
  la_os_fault_clear();
  la_malloc_trim(0);
  assert_int_equal(gather().s.dirty, 0);
}

static void refused_mapping_is_enomem_and_keeps_the_block(void **state) {
  (void)state;
  size_t n = 6 * MiB;
  uint8_t *p = la_malloc(n);
  assert_non_null(p);
  memset(p, 0x33, n);
  la_os_fault_set(LA_OS_MMAP, 0, 1000000, EAGAIN);
  la_os_fault_set(LA_OS_MREMAP, 0, 1000000, EFAULT);
  errno = 0;
  assert_null(la_malloc(64 * MiB));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(la_realloc(p, 40 * MiB));
  assert_int_equal(errno, ENOMEM);
  for (size_t i = 0; i < n; i += 4096) assert_int_equal(p[i], 0x33);
  la_os_fault_clear();
  uint8_t *q = la_realloc(p, 40 * MiB);
  assert_non_null(q);
  for (size_t i = 0; i < n; i += 4096) assert_int_equal(q[i], 0x33);
  la_free(q);
}

/* la_os_move_regions moves a range over several kernel mappings (a huge
 * block grown into cached memory) region by region, and copies a region
 * the kernel will not move: whatever fails, the destination holds the
 * bytes and the source is gone. */
static void regions_move_or_are_copied(void **state) {
  (void)state;
  const size_t r = LA_SEG_SIZE;
  for (uint32_t ppm = 0; ppm <= 1000000; ppm += 500000) {
    uint8_t *src = la_os_map_aligned(3 * r, r), *other = la_os_map_aligned(r, r);
    uint8_t *dst = la_os_map_aligned(3 * r, r);
    assert_non_null(src);
    assert_non_null(other);
    assert_non_null(dst);
    memset(other, 0x44, r);   /* the middle region: another mapping's pages */
    assert_ptr_equal(mremap(other, r, r, MREMAP_MAYMOVE | MREMAP_FIXED, src + r), src + r);
    memset(src, 0x11, r);
    memset(src + 2 * r, 0x33, r / 2);
    la_os_fault_set(LA_OS_MREMAP, 0, ppm, EFAULT);
    la_os_move_regions(src, 3 * r, dst);
    uint64_t refused = la_os_fault_injected(LA_OS_MREMAP);
    la_os_fault_clear();
    print_message("  %u ppm of mremap refused: %llu regions copied\n", ppm, (unsigned long long)refused);
    if (ppm == 1000000) assert_int_equal(refused, 3);
    for (size_t off = 0; off < 3 * r; off += 4096)
      assert_int_equal(dst[off], off < r ? 0x11 : off < 2 * r ? 0x44 : off < 2 * r + r / 2 ? 0x33 : 0);
    unsigned char v;
    for (size_t off = 0; off < 3 * r; off += r) assert_int_equal(mincore(src + off, 4096, &v), -1);
    assert_true(la_os_unmap(dst, 3 * r));
  }
}

/* ---- a random workload under random failures ---------------------------------- */

#define SLOTS 512

typedef struct live_s {
  uint8_t *p;
  size_t n;
} live_t;

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Mostly small, some large, a few huge. */
static size_t random_size(void) {
  uint64_t r = next_rand() % 100;
  if (r < 70) return 1 + next_rand() % 1024;
  if (r < 95) return 1024 + next_rand() % (1536 * KiB);
  return 2 * MiB + next_rand() % (8 * MiB);
}

/* The slot's tag at both ends and every 4 KiB: an overlap with another
 * live block, or a block handed out twice, overwrites some of them. */
static void tag(live_t *l, uint8_t t) {
  for (size_t i = 0; i < l->n; i += 4096) l->p[i] = t;
  l->p[l->n - 1] = t;
}

static void check_tag(const live_t *l, uint8_t t) {
  for (size_t i = 0; i < l->n; i += 4096) assert_int_equal(l->p[i], t);
  assert_int_equal(l->p[l->n - 1], t);
}

/* After realloc: the tags that lie in the first `keep` bytes. */
static void check_prefix(const live_t *l, size_t keep, uint8_t t) {
  for (size_t i = 0; i < keep; i += 4096) assert_int_equal(l->p[i], t);
  if (keep == l->n) assert_int_equal(l->p[l->n - 1], t);
}

static void one_op(live_t *slots, unsigned i) {
  live_t *l = &slots[i];
  uint8_t t = (uint8_t)(i * 7 + 1);
  if (l->p) {
    check_tag(l, t);
    if (next_rand() % 3 == 0) {   /* realloc keeps the contents */
      size_t n = random_size();
      errno = 0;
      uint8_t *q = la_realloc(l->p, n);
      if (!q) {
        assert_int_equal(errno, ENOMEM);
        check_tag(l, t);   /* a failed realloc leaves the block as it was */
        return;
      }
      l->p = q;
      check_prefix(l, n < l->n ? n : l->n, t);
      l->n = n;
      tag(l, t);
      return;
    }
    errno = EDOM;
    la_free(l->p);
    assert_int_equal(errno, EDOM);
    l->p = NULL;
    return;
  }
  size_t n = random_size();
  bool zeroed = next_rand() % 2;
  errno = 0;
  l->p = zeroed ? la_calloc(1, n) : la_malloc(n);
  if (!l->p) {
    assert_int_equal(errno, ENOMEM);
    return;
  }
  l->n = n;
  if (zeroed) assert_true(all_zero(l->p, n));
  tag(l, t);
}

static int by_address(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)((const live_t *)a)->p, y = (uintptr_t)((const live_t *)b)->p;
  return x < y ? -1 : x > y;
}

static void assert_no_overlap(const live_t *slots) {
  static live_t sorted[SLOTS];
  unsigned n = 0;
  for (unsigned i = 0; i < SLOTS; i++)
    if (slots[i].p) sorted[n++] = slots[i];
  qsort(sorted, n, sizeof sorted[0], by_address);
  for (unsigned i = 1; i < n; i++) assert_true(sorted[i - 1].p + sorted[i - 1].n <= sorted[i].p);
}

static void workload_survives_every_kind_of_refusal(void **state) {
  (void)state;
  static live_t slots[SLOTS];
  set_decay(5, 5);   /* purge often, through both madvise kinds */
  la_malloc_trim(0);
  la_stats_t base = gather();
  la_os_fault_set(LA_OS_MMAP, 0, 30000, 0);        /* 3%: some mallocs fail, ENOMEM */
  la_os_fault_set(LA_OS_MUNMAP, 0, 300000, 0);
  la_os_fault_set(LA_OS_MREMAP, 0, 300000, 0);
  la_os_fault_set(LA_OS_MADVISE, 0, 300000, 0);
  struct timespec ms = {0, 1000000};
  for (unsigned op = 0; op < 40000; op++) {
    one_op(slots, (unsigned)(next_rand() % SLOTS));
    if (op % 2000 == 0) {
      assert_no_overlap(slots);
      nanosleep(&ms, NULL);   /* let decay come due */
      la_decay_all(la_now_ns());
    }
  }
  assert_no_overlap(slots);
  for (int k = 0; k < LA_OS_NCALLS; k++)
    if (k <= LA_OS_MADVISE) assert_true(la_os_fault_injected((enum la_os_call)k) > 0);
  /* The failures stop: everything comes back. */
  la_os_fault_clear();
  for (unsigned i = 0; i < SLOTS; i++)
    if (slots[i].p) {
      check_tag(&slots[i], (uint8_t)(i * 7 + 1));
      la_free(slots[i].p);
      slots[i].p = NULL;
    }
  la_malloc_trim(0);
  la_stats_t end = gather();
  assert_int_equal(end.s.allocated, base.s.allocated);
  assert_int_equal(end.s.dirty, 0);
  assert_int_equal(end.s.muzzy, 0);
  assert_true(end.s.nsegments <= base.s.nsegments);
  assert_int_equal(end.s.huge_allocated, base.s.huge_allocated);
  assert_clean_units_not_resident();
}

/* ---- files: the publisher under refused opens and writes ---------------------- */

static char tm_dir[] = "/tmp/test_os.XXXXXX";

static uint64_t published_in(const char *path) {
  alloc_shm_header_t h;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = pread(fd, &h, sizeof h, 0);
  close(fd);
  return n == (ssize_t)sizeof h ? h.published : 0;
}

/* Poll up to 5 s for `published` to pass `than`. */
static uint64_t wait_published_past(const char *path, uint64_t than) {
  struct timespec ms = {0, 10000000};
  for (int i = 0; i < 500; i++) {
    uint64_t n = published_in(path);
    if (n > than) return n;
    nanosleep(&ms, NULL);
  }
  return 0;
}

static void publisher_recovers_when_files_work_again(void **state) {
  (void)state;
  assert_non_null(mkdtemp(tm_dir));
  char path[256];
  snprintf(path, sizeof path, "%s/" ALLOC_SHM_PREFIX "%d", tm_dir, (int)getpid());
  snprintf(la_opt.telemetry_dir, sizeof la_opt.telemetry_dir, "%s", tm_dir);
  la_opt.stats_interval_ms = 10;
  la_opt.telemetry = true;
  la_os_fault_set(LA_OS_OPEN, 0, 1000000, EACCES);
  la_telemetry_start();
  struct timespec tick = {0, 10000000};
  for (int i = 0; i < 500 && la_os_fault_injected(LA_OS_OPEN) < 3; i++) nanosleep(&tick, NULL);
  struct stat st;
  assert_true(la_os_fault_injected(LA_OS_OPEN) >= 3);   /* three ticks tried */
  assert_int_not_equal(stat(path, &st), 0);             /* every open refused: no segment */
  la_os_fault_clear();
  uint64_t n = wait_published_past(path, 0);
  assert_true(n > 0);
  /* Writes and reads of /proc refused half the time: snapshots still come. */
  la_os_fault_set(LA_OS_WRITE, 0, 500000, ENOSPC);
  la_os_fault_set(LA_OS_READ, 0, 500000, EIO);
  la_os_fault_set(LA_OS_FILE, 0, 200000, EIO);
  for (int i = 0; i < 500 && la_os_fault_injected(LA_OS_WRITE) < 3; i++) nanosleep(&tick, NULL);
  assert_true(la_os_fault_injected(LA_OS_WRITE) >= 3);
  la_os_fault_clear();
  n = wait_published_past(path, published_in(path));
  assert_true(n > 0);
  la_telemetry_exit();   /* removes the segment */
  assert_int_not_equal(stat(path, &st), 0);
  rmdir(tm_dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_teardown(nth_call_fails_once_with_its_errno, teardown_each),
    cmocka_unit_test_teardown(refused_open_fails_like_the_kernel, teardown_each),
    cmocka_unit_test_teardown(alloc_faults_arms_from_the_environment, teardown_each),
    cmocka_unit_test_teardown(calloc_is_zero_when_purges_are_refused, teardown_each),
    cmocka_unit_test_teardown(mlockall_purges_nothing_and_says_so, teardown_each),
    cmocka_unit_test_teardown(counted_clean_means_not_resident, teardown_each),
    cmocka_unit_test_teardown(refused_units_are_not_retried_in_vain, teardown_each),
    cmocka_unit_test_teardown(refused_mapping_is_enomem_and_keeps_the_block, teardown_each),
    cmocka_unit_test_teardown(regions_move_or_are_copied, teardown_each),
    cmocka_unit_test_teardown(workload_survives_every_kind_of_refusal, teardown_each),
    cmocka_unit_test_teardown(publisher_recovers_when_files_work_again, teardown_each),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
