/* test_prof.c - the heap profiler (prof.c, sample.c) inside one process:
 * the sampling law, estimates of what is in use, frees of sampled blocks of
 * every kind leaving the profile, the statistics unaffected by sampling,
 * and the profile area as alloc_shm.h lays it out
 * (written into a temporary file here; tests/prof reads it from a real
 * segment). */
#include "unit.h"

#include <alloc.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void set_prof(bool on, unsigned sample_bytes) {
  assert_int_equal(alloc_ctl("opt.prof_sample_bytes", NULL, NULL, &sample_bytes, sizeof sample_bytes), 0);
  assert_int_equal(alloc_ctl("opt.prof", NULL, NULL, &on, sizeof on), 0);
  bool active = !on;
  size_t len = sizeof active;
  assert_int_equal(alloc_ctl("prof.active", &active, &len, NULL, 0), 0);
  assert_int_equal(active, on);
}

typedef struct profile_s {
  alloc_shm_profile_t h;
  double inuse_bytes, inuse_objects, alloc_bytes, pinned_bytes;
  uint64_t inuse_samples;
  bool site_found;   /* a stack from want_site */
} profile_t;

/* A call site to look for in the published stacks: the first frame in
 * (before - 64, before), the second `caller`. */
static struct {
  uintptr_t before, caller;
} want_site;

/* Publish into a temporary file and read it back as a reader would. */
static void publish(profile_t *p) {
  char path[] = "/tmp/test_prof.XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  uint64_t n = 0;
  assert_int_equal(la_prof_publish(fd, 0, &n), 0);
  assert_int_equal(n, la_prof_last_published());
  memset(p, 0, sizeof *p);
  assert_int_equal(pread(fd, &p->h, sizeof p->h, 0), (ssize_t)sizeof p->h);
  assert_int_equal(p->h.seq, 2 * n);
  assert_int_equal(p->h.number, n);
  assert_int_equal(p->h.used, ALLOC_SHM_PROFILE_FRAMES + 8ull * p->h.nframes);
  unsigned char *area = la_os_map(ALLOC_SHM_PROFILE_SIZE);
  assert_non_null(area);
  assert_int_equal(pread(fd, area, p->h.used, 0), (ssize_t)p->h.used);
  assert_int_equal(alloc_shm_profile_checksum(area, p->h.used), p->h.checksum);
  const alloc_shm_stack_t *stacks = (const alloc_shm_stack_t *)(area + ALLOC_SHM_PROFILE_STACKS);
  for (uint32_t i = 0; i < p->h.nstacks; i++) {
    assert_true(stacks[i].first_frame + stacks[i].depth <= p->h.nframes);
    assert_true(stacks[i].depth <= ALLOC_SHM_PROFILE_MAX_DEPTH);
    p->inuse_bytes += (double)stacks[i].inuse_bytes;
    p->inuse_objects += (double)stacks[i].inuse_objects;
    p->alloc_bytes += (double)stacks[i].alloc_bytes;
    p->pinned_bytes += (double)stacks[i].pinned_bytes;
    p->inuse_samples += stacks[i].inuse_samples;
    const uint64_t *f = (const uint64_t *)(area + ALLOC_SHM_PROFILE_FRAMES) + stacks[i].first_frame;
    if (stacks[i].depth >= 2 && f[0] < want_site.before && f[0] + 64 > want_site.before && f[1] == want_site.caller)
      p->site_found = true;
  }
  /* The main program's module comes first. */
  const alloc_shm_module_t *m = (const alloc_shm_module_t *)(area + ALLOC_SHM_PROFILE_MODULES);
  assert_true(p->h.nmodules >= 1);
  assert_int_equal(m[0].flags, 1);
  assert_non_null(strstr(m[0].path, "test_prof"));
  la_os_unmap(area, ALLOC_SHM_PROFILE_SIZE);
  close(fd);
}

static void assert_near(double got, double want, double tolerance) {
  if (fabs(got - want) > want * tolerance) fail_msg("estimate %.0f, truth %.0f (tolerance %.0f%%)", got, want, tolerance * 100);
}

/* p(s) = 1 - exp(-s/m), and gaps exponential with mean m. */
static void sampling_law(void **state) {
  (void)state;
  assert_true(fabs(la_prof_probability(1, 1) - (1 - exp(-1))) < 1e-9);
  assert_true(fabs(la_prof_probability(16, 2097152) - (1 - exp(-16.0 / 2097152))) < 1e-12);
  assert_true(fabs(la_prof_probability(3 << 20, 2097152) - (1 - exp(-1.5))) < 1e-9);
  assert_true(la_prof_probability(1e9, 1) == 1.0);
  /* Across the range of its series, within 1e-15 of -expm1(-x): the
   * rounding of 1 - e^-x, not a lost term (one term less is 3e-15 off). */
  for (double x = 1e-4; x < 60; x *= 1.01) assert_true(fabs(la_prof_probability(x, 1) + expm1(-x)) <= 1e-15);
  unsigned m = 65536;
  assert_int_equal(alloc_ctl("opt.prof_sample_bytes", NULL, NULL, &m, sizeof m), 0);
  double sum = 0;
  unsigned above = 0, n = 200000;
  for (unsigned i = 0; i < n; i++) {
    int64_t g = la_prof_next_gap();
    assert_true(g >= 1);
    sum += (double)g;
    above += g > (int64_t)m;
  }
  assert_near(sum / n, m, 0.02);
  assert_near((double)above / n, exp(-1), 0.02);
  unsigned zero = 0;
  assert_int_equal(alloc_ctl("opt.prof_sample_bytes", NULL, NULL, &zero, sizeof zero), EINVAL);
}

/* Whether a shared object whose path contains `name` is mapped. */
static bool mapped(const char *name) {
  FILE *f = fopen("/proc/self/maps", "r");
  assert_non_null(f);
  char line[4096];
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) found = strstr(line, name) != NULL;
  fclose(f);
  return found;
}

/* Sampling opens no library: stacks are walked by unwind.c (test_unwind
 * checks the walk itself), and each sample has one, several frames deep
 * (this test, cmocka, main, libc's start). */
static void samples_have_stacks_and_open_nothing(void **state) {
  (void)state;
  bool gcc_before = mapped("libgcc_s.so.1"), unwind_before = mapped("libunwind.so.8");
  set_prof(true, 1024);
  void *blocks[256];
  for (unsigned round = 0; round < 16; round++) {   /* 256 KiB: samples */
    for (unsigned i = 0; i < 256; i++) assert_non_null(blocks[i] = la_entry_malloc(64));
    for (unsigned i = 0; i < 256; i++) la_free(blocks[i]);
  }
  profile_t p;
  publish(&p);
  assert_true(p.h.samples > 50);
  assert_true(p.h.nstacks >= 1);
  assert_true(p.h.nframes >= 4 * p.h.nstacks);
  assert_int_equal(mapped("libgcc_s.so.1"), gcc_before);
  assert_int_equal(mapped("libunwind.so.8"), unwind_before);
  set_prof(false, 2097152);
}

__attribute__((noinline)) static uintptr_t return_address(void) { return (uintptr_t)__builtin_return_address(0); }

/* malloc from here, and where "here" is: just before the return address
 * of the call after malloc's, and the return address of this function. */
__attribute__((noinline)) static void *allocate_here(size_t size) {
  void *p = la_entry_malloc(size);
  want_site.before = return_address();
  want_site.caller = (uintptr_t)__builtin_return_address(0);
  return p;
}

/* A sample's stack starts at the program's call of malloc, then its
 * caller's: the walk starts at the entry point's frame (la_frame_of_self
 * in la_sample_due), and none of liballoc's frames are left at the top. */
static void stack_starts_at_the_call_site(void **state) {
  (void)state;
  set_prof(true, 1024);
  void *p = allocate_here(16384);   /* sampled with probability 1 - e^-16 */
  profile_t prof;
  publish(&prof);
#if LA_HAVE_OWN_UNWINDER
  assert_true(prof.site_found);
#endif
  la_free(p);
  set_prof(false, 2097152);
}

/* 8 MiB of small blocks kept: estimated within 10%; freed: gone. */
static void small_blocks_in_use(void **state) {
  (void)state;
  /* 4 KiB a sample: ~1,800 samples, the estimate's standard deviation ~2%
   * (at 16 KiB, ~500 and ~4.3%: about one run in 40 fell outside 10%). */
  la_heap_flush(la_tls_heap);
  size_t before, after, active_before, active_after, len = sizeof before;
  assert_int_equal(alloc_ctl("stats.allocated", &before, &len, NULL, 0), 0);
  assert_int_equal(alloc_ctl("stats.active", &active_before, &len, NULL, 0), 0);
  set_prof(true, 4096);
  enum { N = 8192, SIZE = 1000 };
  void **blocks = la_entry_malloc(N * sizeof *blocks);
  for (int i = 0; i < N; i++) blocks[i] = la_entry_malloc(SIZE);
  profile_t p;
  publish(&p);
  assert_true(p.h.flags & ALLOC_SHM_PROF_ENABLED);
  assert_int_equal(p.h.sample_bytes, 4096);
  assert_true(p.h.live_samples >= 1000);
  assert_near(p.inuse_bytes, (double)N * SIZE, 0.10);
  assert_near(p.inuse_objects, N, 0.10);
  assert_true(p.h.profiler_bytes > 0);
  for (int i = 0; i < N; i++) la_free(blocks[i]);   /* most into slabs holding a sample (heap.c) */
  la_free(blocks);
  assert_int_equal(alloc_ctl("stats.allocated", &after, &len, NULL, 0), 0);
  assert_int_equal(after, before);
  la_heap_flush(la_tls_heap);   /* every slab emptied goes back */
  assert_int_equal(alloc_ctl("stats.active", &active_after, &len, NULL, 0), 0);
  assert_int_equal(active_after, active_before);
  publish(&p);
  assert_int_equal(p.h.live_samples, 0);
  assert_true(p.inuse_bytes == 0);
  assert_true(p.alloc_bytes > 0.9 * N * SIZE);   /* cumulative */
  set_prof(false, 2097152);
  publish(&p);
  assert_false(p.h.flags & ALLOC_SHM_PROF_ENABLED);
  assert_int_equal(p.h.sample_bytes, 0);
}

/* Small blocks are counted by their slabs, in blocks of the slab's size
 * (sample.c): 40-byte requests in 48-byte blocks are each sampled with
 * probability p(48) and stand for 40 / p(48) bytes, so the estimate of the
 * bytes asked for stays unbiased.  A slab's countdown outlives a switch
 * off and on (a gap partly used is as good as a new one), and only the
 * second period's blocks are in the profile.  ~2,300 samples a half at 4
 * KiB: the estimate's standard deviation ~2%. */
static void slab_countdowns_estimate_bytes_asked_for(void **state) {
  (void)state;
  enum { N = 200000, SIZE = 40 };
  assert_int_equal(la_class_size[la_class_of(SIZE)], 48);
  void **blocks = la_entry_malloc(2 * N * sizeof *blocks);
  set_prof(true, 4096);
  for (int i = 0; i < N; i++) blocks[i] = la_entry_malloc(SIZE);
  profile_t p;
  publish(&p);
  assert_near(p.inuse_bytes, (double)N * SIZE, 0.10);
  assert_near(p.inuse_objects, N, 0.10);
  assert_near((double)p.inuse_samples, N * (1 - exp(-48.0 / 4096)), 0.10);
  set_prof(false, 4096);
  set_prof(true, 4096);   /* forgets the live samples; the slabs keep their countdowns */
  for (int i = N; i < 2 * N; i++) blocks[i] = la_entry_malloc(SIZE);
  publish(&p);
  assert_near(p.inuse_bytes, (double)N * SIZE, 0.10);
  assert_near(p.inuse_objects, N, 0.10);
  for (int i = 0; i < 2 * N; i++) la_free(blocks[i]);
  la_free(blocks);
  set_prof(false, 2097152);
}

/* A countdown drawn at a GiB a sample holds at most a MiB of the slab's
 * blocks (sample.c, SLAB_GAP_BYTES): switched to 4 KiB, a loop that
 * allocates and frees in one slab is sampled at the new rate after that
 * MiB, not after a GiB.  A million 40-byte blocks, ~11,600 samples; the
 * first MiB is 2% of them. */
static void countdowns_follow_a_new_rate(void **state) {
  (void)state;
  enum { N = 1000000, SIZE = 40 };
  set_prof(true, 1u << 30);
  for (int i = 0; i < 1000; i++) la_free(la_entry_malloc(SIZE));
  set_prof(false, 4096);
  set_prof(true, 4096);
  for (int i = 0; i < N; i++) la_free(la_entry_malloc(SIZE));
  profile_t p;
  publish(&p);
  assert_near(p.alloc_bytes, (double)N * SIZE, 0.10);
  set_prof(false, 2097152);
}

/* A slab's first countdown is drawn at its first sampled block, which is
 * sampled with its probability like any other, not for sure: 1,024 blocks
 * of 16,000 bytes (four to a slab: 256 new slabs) at a GiB a sample are
 * ~0.02 samples. */
static void new_slabs_first_blocks_not_favoured(void **state) {
  (void)state;
  enum { N = 1024, SIZE = 16000 };
  assert_false(la_class_large[la_class_of(SIZE)]);
  void *blocks[N];
  set_prof(true, 1u << 30);
  for (int i = 0; i < N; i++) blocks[i] = la_entry_malloc(SIZE);
  profile_t p;
  publish(&p);
  assert_true(p.inuse_samples <= 2);
  for (int i = 0; i < N; i++) la_free(blocks[i]);
  set_prof(false, 2097152);
}

/* Every entry point and kind of block: calloc, realloc, aligned, large,
 * huge.  At 1 KiB a sample, blocks of 64 KiB and more are always sampled;
 * each leaves the profile when freed (or moved by realloc). */
static void every_kind_of_block(void **state) {
  (void)state;
  set_prof(true, 1024);
  void *p[8];
  p[0] = la_entry_calloc(1, 256 << 10);              /* large */
  p[1] = la_entry_malloc(3 << 20);                   /* huge */
  p[2] = la_entry_aligned_alloc(65536, 128 << 10);   /* large, aligned */
  assert_int_equal(la_entry_posix_memalign(&p[3], 1 << 22, 5 << 20), 0);   /* huge, aligned */
  p[4] = la_entry_realloc(NULL, 96 << 10);
  p[5] = la_entry_memalign(4096, 512 << 10);
  p[6] = la_entry_calloc(64, 4096);                  /* 256 KiB */
  p[7] = la_entry_realloc(la_entry_malloc(100), 200 << 10);
  profile_t prof;
  publish(&prof);
  assert_true(prof.inuse_samples >= 8);
  double want = (256 << 10) + (3 << 20) + (128 << 10) + (5 << 20) + (96 << 10) + (512 << 10) + (256 << 10) + (200 << 10);
  assert_near(prof.inuse_bytes, want, 0.05);
  p[4] = la_entry_realloc(p[4], 1 << 20);   /* moved: the old block leaves, the new one may be sampled */
  for (int i = 0; i < 8; i++) la_free(p[i]);
  publish(&prof);
  assert_true(prof.inuse_bytes < 0.01 * want);
  /* Small blocks of every kind too, many of them: none left once freed. */
  for (int round = 0; round < 2000; round++) {
    void *a = la_entry_calloc(3, 100), *b = la_entry_aligned_alloc(64, 200), *c = la_entry_realloc(la_entry_malloc(10), 700);
    la_free(a), la_free(b), la_free(c);
  }
  publish(&prof);
  assert_int_equal(prof.h.live_samples, 0);
  assert_true(prof.h.samples > 500);
  set_prof(false, 2097152);
}

/* realloc counts the blocks it moves or makes, not those resized in
 * place: at 1 KiB a sample, 1000 blocks of 5000 bytes are ~990 samples. */
static void realloc_counts_moved_blocks_only(void **state) {
  (void)state;
  set_prof(true, 1024);
  void *p = la_entry_malloc(4096);
  profile_t before, after;
  publish(&before);
  for (int i = 0; i < 1000; i++) {
    void *q = la_entry_realloc(p, i % 2 ? 4096 : 3000);   /* within its block: in place */
    assert_ptr_equal(q, p);
  }
  publish(&after);
  assert_int_equal(after.h.samples, before.h.samples);
  for (int i = 0; i < 1000; i++) {
    void *small = la_entry_malloc(16);
    void *moved = la_entry_realloc(small, 5000);
    assert_ptr_not_equal(moved, small);
    la_free(moved);
  }
  publish(&after);
  assert_true(after.h.samples - before.h.samples >= 900);
  la_free(p);
  set_prof(false, 2097152);
}

/* Frees of large blocks are not seen: a large block handed out again at
 * the place of a sampled one that was freed, and not sampled itself, must
 * not keep the old sample alive in the profile (la_prof_fresh). */
static void large_block_reused_unsampled(void **state) {
  (void)state;
  set_prof(true, 1024);   /* a 256 KiB block (a large one) is sampled for sure */
  void *big = la_entry_malloc(256 << 10);
  assert_true(la_slab_of(big)->kind == LA_SLAB_LARGE);
  profile_t p;
  publish(&p);
  assert_int_equal(p.inuse_samples, 1);
  unsigned mean = 1u << 30;   /* the next gaps: a GiB */
  assert_int_equal(alloc_ctl("opt.prof_sample_bytes", NULL, NULL, &mean, sizeof mean), 0);
  /* A huge block (counted in the heap's bytes, as large ones are; small
   * ones count down their slabs) runs out the gap drawn at 1 KiB, the next
   * is drawn at 1 GiB; its sample goes with its free. */
  la_free(la_entry_malloc(4 << 20));
  la_free(big);
  void *again = la_entry_malloc(256 << 10);
  assert_ptr_equal(again, big);   /* the same place, from the heap's cache */
  publish(&p);
  assert_int_equal(p.inuse_samples, 0);
  la_free(again);
  set_prof(false, 2097152);
}

/* Sampling changes no statistic: the sampled blocks are counted as they
 * would be without it, and nothing is left over once it is switched off.
 * (Sampling once held blocks back from the free lists.)  The calls go
 * through la_entry, as the exported names do. */
static void statistics_unchanged_by_sampling(void **state) {
  (void)state;
  la_heap_flush(la_tls_heap);
  size_t before, after, len = sizeof before;
  assert_int_equal(alloc_ctl("stats.allocated", &before, &len, NULL, 0), 0);
  set_prof(true, 1 << 20);
  void *blocks[64];
  for (int i = 0; i < 64; i++) blocks[i] = la_entry_malloc(48);
  assert_int_equal(alloc_ctl("stats.allocated", &after, &len, NULL, 0), 0);
  assert_int_equal(after - before, 64 * 48);
  for (int i = 0; i < 64; i++) la_free(blocks[i]);
  set_prof(false, 2097152);
  void *one = la_entry_malloc(48);
  la_free(one);
  assert_int_equal(alloc_ctl("stats.allocated", &after, &len, NULL, 0), 0);
  assert_int_equal(after, before);
}

/* Sampled blocks freed by another thread (remote frees) leave the profile
 * too. */
enum { XN = 4096, XSIZE = 1000 };
static void *xblocks[XN];

static void *allocate_many(void *arg) {
  (void)arg;
  for (int i = 0; i < XN; i++) xblocks[i] = la_entry_malloc(XSIZE);
  return NULL;
}

static void frees_from_another_thread(void **state) {
  (void)state;
  /* 4 KiB a sample: ~900 samples of the 4096 blocks, the estimate's
   * standard deviation ~3% (at 16 KiB, ~250 and ~6.5%: one run in 20
   * fell outside 15%). */
  set_prof(true, 4096);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, allocate_many, NULL), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  profile_t p;
  publish(&p);
  assert_true(p.h.live_samples > 100);
  assert_near(p.inuse_bytes, (double)XN * XSIZE, 0.15);
  for (int i = 0; i < XN; i++) la_free(xblocks[i]);
  publish(&p);
  assert_int_equal(p.h.live_samples, 0);
  set_prof(false, 2097152);
}

/* Slots of blocks of 64 KiB to 4 MiB replaced at random, each filled with
 * its own byte and checked before it is freed, sampled rarely and often:
 * the classes whose slabs hold few big blocks and are parked as soon as
 * their last block is freed.  (The sampling chains of an earlier design
 * once retired such a slab a second time: two blocks handed out at one
 * address.) */
static void big_blocks_keep_their_contents(void **state) {
  (void)state;
  for (int pass = 0; pass < 2; pass++) {
    set_prof(true, pass ? 65536 : 1u << 30);
    enum { SLOTS = 8, STEPS = 3000 };
    unsigned char *slot[SLOTS] = {0};
    size_t size[SLOTS] = {0};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int step = 0; step < STEPS; step++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      int i = (int)(x % SLOTS);
      if (slot[i]) {
        for (size_t off = 0; off < size[i]; off += 4096)
          if (slot[i][off] != (unsigned char)(i + size[i])) fail_msg("block of %zu bytes overwritten at %zu", size[i], off);
        la_free(slot[i]);
      }
      size_t low = (size_t)1 << (16 + (x >> 40) % 6);   /* log-uniform, 64 KiB .. 4 MiB */
      size[i] = low + (size_t)((x >> 8) % low);
      slot[i] = la_entry_malloc(size[i]);
      assert_non_null(slot[i]);
      for (size_t off = 0; off < size[i]; off += 4096) slot[i][off] = (unsigned char)(i + size[i]);
    }
    for (int i = 0; i < SLOTS; i++) la_free(slot[i]);
    set_prof(false, 2097152);
  }
}

/* 2,048 call paths, eleven levels each through one of two functions: the
 * stack index, one page at first, grows past it (to 4,096 slots), and
 * every stack is found again after it has grown. */
static unsigned branch_a(unsigned level, unsigned path);
static unsigned branch_b(unsigned level, unsigned path);

__attribute__((noinline)) static unsigned descend(unsigned level, unsigned path) {
  if (level == 0) {
    void *p = la_entry_malloc(32768);   /* sampled: p = 1 - e^-32 at 1 KiB a sample */
    assert_non_null(p);
    la_free(p);
    return 1;
  }
  unsigned r = path & 1 ? branch_a(level - 1, path >> 1) : branch_b(level - 1, path >> 1);
  __asm__ volatile("" : "+r"(r));   /* no tail call: each level keeps its frame */
  return r;
}

__attribute__((noinline)) static unsigned branch_a(unsigned level, unsigned path) {
  unsigned r = descend(level, path);
  __asm__ volatile("" : "+r"(r));
  return r + 1;
}

__attribute__((noinline)) static unsigned branch_b(unsigned level, unsigned path) {
  unsigned r = descend(level, path);
  __asm__ volatile("" : "+r"(r));
  return r + 2;
}

enum { LEVELS = 11, PATHS = 1 << LEVELS };

__attribute__((noinline)) static void every_path(void) {
  for (unsigned path = 0; path < PATHS; path++) descend(LEVELS, path);
}

static void stack_index_grows(void **state) {
  (void)state;
  set_prof(true, 1024);   /* the least: every block sampled */
  uint32_t stacks_after_first = 0;
  for (volatile int pass = 0; pass < 2; pass++) {   /* not unrolled: one call site */
    every_path();
    profile_t p;
    publish(&p);
    assert_true(p.h.samples >= (pass + 1) * PATHS);
    if (pass == 0) {
      assert_true(p.h.nstacks >= PATHS);
      stacks_after_first = p.h.nstacks;
    } else {
      assert_int_equal(p.h.nstacks, stacks_after_first);
    }
  }
  set_prof(false, 2097152);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(samples_have_stacks_and_open_nothing),
    cmocka_unit_test(stack_starts_at_the_call_site),
    cmocka_unit_test(sampling_law),
    cmocka_unit_test(small_blocks_in_use),
    cmocka_unit_test(slab_countdowns_estimate_bytes_asked_for),
    cmocka_unit_test(new_slabs_first_blocks_not_favoured),
    cmocka_unit_test(countdowns_follow_a_new_rate),
    cmocka_unit_test(every_kind_of_block),
    cmocka_unit_test(large_block_reused_unsampled),
    cmocka_unit_test(realloc_counts_moved_blocks_only),
    cmocka_unit_test(statistics_unchanged_by_sampling),
    cmocka_unit_test(frees_from_another_thread),
    cmocka_unit_test(big_blocks_keep_their_contents),
    cmocka_unit_test(stack_index_grows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
