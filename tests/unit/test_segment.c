/* test_segment.c - a segment's units: the segment map, taking and
 * releasing runs, the preference for dirty units, alignment, and purging. */
#include "unit.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static la_segment_t *seg;

static int setup(void **state) {
  (void)state;
  la_os_init();
  la_options_defaults(&la_opt);
  la_sizeclass_init();
  seg = la_segment_create(NULL, NULL);
  return seg ? 0 : -1;
}

/* What the arena does when it purges every dirty unit of a segment. */
static size_t purge_all(la_segment_t *s) {
  la_purge_stats_t st = {0};
  uint64_t done = la_segment_advise_runs(s, s->dirty_units, false, &st);
  s->dirty_units &= ~done;
  return st.purged;
}

static int teardown(void **state) {
  (void)state;
  la_segment_destroy(seg);
  return 0;
}

static void segment_is_aligned_and_mapped(void **state) {
  (void)state;
  assert_int_equal((uintptr_t)seg % LA_SEG_SIZE, 0);
  assert_int_equal(la_segmap_kind(seg), LA_MAP_SEGMENT);
  assert_int_equal(la_segmap_kind((uint8_t *)seg + LA_SEG_SIZE - 1), LA_MAP_SEGMENT);
  assert_int_equal(la_segmap_kind(NULL), LA_MAP_NONE);
  assert_int_equal(la_segmap_kind((void *)~(uintptr_t)0), LA_MAP_NONE);
  assert_true(la_segment_is_empty(seg));
  assert_int_equal(seg->max_run, LA_UNITS - 1);   /* unit 0 is the header */
}

static void take_and_release_runs(void **state) {
  (void)state;
  int u = la_segment_find_run(seg, LA_UNITS - 1, 1);
  assert_int_equal(u, 1);
  la_slab_t *all = la_segment_take_run(seg, 1, LA_UNITS - 1);
  assert_true(all->zeroed);
  assert_int_equal(seg->used_units, ~0ull);
  assert_int_equal(la_segment_find_run(seg, 1, 1), -1);
  assert_ptr_equal(la_slab_of(la_unit_address(seg, 37) + 5), all);
  all->kind = LA_SLAB_SMALL;
  la_segment_touch(seg, la_unit_address(seg, 37) + 5, 1);   /* what carving does */
  assert_int_equal(la_segment_release_run(seg, all), (uint64_t)1 << 37);
  assert_true(la_segment_is_empty(seg));
  assert_ptr_equal(la_slab_of(la_unit_address(seg, 37)), &la_slab_invalid);
  assert_int_equal(seg->dirty_units, (uint64_t)1 << 37);   /* the others were never written */
  purge_all(seg);
  assert_int_equal(seg->resident[37], 0);
}

/* A small slab's units that it never carved go back clean, and read as
 * zero when taken again; a large block's are dirty (written anywhere). */
static void untouched_units_are_released_clean(void **state) {
  (void)state;
  la_slab_t *a = la_segment_take_run(seg, 40, 4);
  a->kind = LA_SLAB_SMALL;
  la_segment_touch(seg, la_unit_address(seg, 40), 100);
  assert_int_equal(la_segment_release_run(seg, a), (uint64_t)1 << 40);
  la_slab_t *b = la_segment_take_run(seg, 41, 3);
  assert_true(b->zeroed);
  b->kind = LA_SLAB_LARGE;
  assert_int_equal(la_segment_release_run(seg, b), la_bits_run_mask(41, 3));
  purge_all(seg);
}

/* After a purge the freed units are clean; a run released later is dirty
 * and is the one handed out next, even though clean runs come first. */
static void dirty_units_are_preferred(void **state) {
  (void)state;
  assert_int_equal(seg->dirty_units, 0);
  la_slab_t *a = la_segment_take_run(seg, 10, 4);
  memset(la_unit_address(seg, 10), 0xab, 4 * LA_UNIT_SIZE);
  la_segment_release_run(seg, a);
  assert_int_equal(la_segment_find_run(seg, 2, 1), 10);
  la_slab_t *b = la_segment_take_run(seg, 10, 2);
  assert_false(b->zeroed);
  assert_int_equal(la_segment_find_run(seg, 2, 1), 12);   /* the rest of the dirty run */
  la_segment_release_run(seg, b);
}

static void aligned_runs(void **state) {
  (void)state;
  for (unsigned align = 1; align <= 32; align <<= 1) {
    int u = la_segment_find_run(seg, 3, align);
    assert_true(u > 0);
    assert_int_equal(u % align, 0);
  }
}

static void purge_returns_pages_as_zero(void **state) {
  (void)state;
  la_slab_t *a = la_segment_take_run(seg, 20, 2);
  uint8_t *p = la_unit_address(seg, 20);
  memset(p, 0x5a, 2 * LA_UNIT_SIZE);
  la_segment_release_run(seg, a);
  size_t purged = purge_all(seg);
  assert_true(purged >= 2 * LA_UNIT_SIZE);
  assert_int_equal(seg->dirty_units, 0);
  la_slab_t *b = la_segment_take_run(seg, 20, 2);
  assert_true(b->zeroed);
  for (size_t i = 0; i < 2 * LA_UNIT_SIZE; i += 4096) assert_int_equal(p[i], 0);
  la_segment_release_run(seg, b);
  purge_all(seg);
}

/* Units given back lazily (MADV_FREE) may keep their contents: a run that
 * takes one is not known to be zero. */
static void muzzy_units_are_not_zeroed(void **state) {
  (void)state;
  la_slab_t *a = la_segment_take_run(seg, 30, 1);
  memset(la_unit_address(seg, 30), 0x11, LA_UNIT_SIZE);
  la_segment_release_run(seg, a);
  la_purge_stats_t st = {0};
  uint64_t done = la_segment_advise_runs(seg, seg->dirty_units, true, &st);
  assert_int_equal(done, (uint64_t)1 << 30);
  assert_int_equal(st.nmadvise, 1);
  seg->dirty_units &= ~done;
  seg->muzzy_units |= done;
  la_slab_t *b = la_segment_take_run(seg, 30, 1);
  assert_false(b->zeroed);
  assert_int_equal(seg->muzzy_units, 0);
  b->kind = LA_SLAB_SMALL;   /* carving nothing, it still gives back a unit that may hold data */
  assert_int_equal(la_segment_release_run(seg, b), (uint64_t)1 << 30);
  purge_all(seg);
}

/* ---- runs of several segments in one call (la_segments_advise) ---------- */

struct advise_job {
  la_segment_t *segs[2];
  uint64_t masks[2], done[2];
  la_purge_stats_t st;
  bool own;   /* run as liballoc's own thread (la_os_name_self) */
};

static void *advise_job_run(void *arg) {
  struct advise_job *j = arg;
  if (j->own) la_os_name_self("test-purge");
  la_advice_t runs[2] = {{j->segs[0], j->masks[0], 0}, {j->segs[1], j->masks[1], 0}};
  la_segments_advise(runs, 2, false, &j->st);
  j->done[0] = runs[0].done;
  j->done[1] = runs[1].done;
  return NULL;
}

static void run_job(struct advise_job *j) {
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, advise_job_run, j), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
}

/* Units of `s` in `mask` made dirty, each filled with `mark`. */
static void make_dirty(la_segment_t *s, uint64_t mask, uint8_t mark) {
  for (uint64_t m = mask; m; m &= m - 1) {
    unsigned u = (unsigned)__builtin_ctzll(m);
    la_slab_t *r = la_segment_take_run(s, u, 1);
    memset(la_unit_address(s, u), mark, LA_UNIT_SIZE);
    la_segment_release_run(s, r);
  }
}

static bool units_read(la_segment_t *s, uint64_t mask, uint8_t mark) {
  for (uint64_t m = mask; m; m &= m - 1) {
    const uint8_t *p = la_unit_address(s, (unsigned)__builtin_ctzll(m));
    for (size_t i = 0; i < LA_UNIT_SIZE; i += 4096)
      if (p[i] != mark) return false;
  }
  return true;
}

/* Does this kernel take a vector of ranges from liballoc's own thread? */
static bool kernel_batches(void) {
  la_segment_t *probe = la_segment_create(NULL, NULL);
  assert_non_null(probe);
  struct advise_job j = {{probe, probe}, {(uint64_t)1 << 5, (uint64_t)1 << 7}, {0}, {0}, true};
  make_dirty(probe, j.masks[0] | j.masks[1], 1);
  run_job(&j);
  la_segment_destroy(probe);
  return j.st.nmadvise == 1;
}

/* Five runs over two segments from liballoc's own thread: one system call
 * where the kernel takes them (the purger's batches), five where it does
 * not; either way every run reads zero after and is counted as given back. */
static void runs_of_two_segments_go_back_together(void **state) {
  (void)state;
  bool batches = kernel_batches();
  print_message("the kernel %s process_madvise on the process's own memory\n", batches ? "takes" : "refuses");
  la_segment_t *seg2 = la_segment_create(NULL, NULL);
  assert_non_null(seg2);
  uint64_t m1 = la_bits_run_mask(20, 2) | la_bits_run_mask(25, 1), m2 = la_bits_run_mask(30, 1) | la_bits_run_mask(40, 3) | la_bits_run_mask(50, 1);
  make_dirty(seg, m1, 0x5a);
  make_dirty(seg2, m2, 0xa5);
  struct advise_job j = {{seg, seg2}, {m1, m2 & ~la_bits_run_mask(50, 1)}, {0}, {0}, true};
  run_job(&j);
  assert_int_equal(j.done[0], m1);
  assert_int_equal(j.done[1], j.masks[1]);
  assert_int_equal(j.st.nmadvise, batches ? 1 : 4);
  assert_int_equal(j.st.purged, 7 * LA_UNIT_SIZE);
  assert_true(units_read(seg, m1, 0));
  assert_true(units_read(seg2, j.masks[1], 0));
  assert_true(units_read(seg2, la_bits_run_mask(50, 1), 0xa5));   /* not asked: kept */
  assert_int_equal(seg->resident[20] | seg->resident[21] | seg->resident[25] | seg2->resident[41], 0);
  assert_int_not_equal(seg2->resident[50], 0);
  seg->dirty_units &= ~j.done[0];
  seg2->dirty_units &= ~j.done[1];
  la_segment_destroy(seg2);
  purge_all(seg);
}

/* A program's thread never batches (a seccomp filter of the program's may
 * not list process_madvise), and with injected faults each run makes its
 * own call, so a refused one stays resident with its data. */
static void program_threads_and_refusals_go_run_by_run(void **state) {
  (void)state;
  la_segment_t *seg2 = la_segment_create(NULL, NULL);
  assert_non_null(seg2);
  uint64_t m1 = la_bits_run_mask(10, 1) | la_bits_run_mask(12, 1), m2 = la_bits_run_mask(14, 2);
  make_dirty(seg, m1, 1);
  make_dirty(seg2, m2, 2);
  struct advise_job j = {{seg, seg2}, {m1, m2}, {0}, {0}, false};
  run_job(&j);
  assert_int_equal(j.st.nmadvise, 3);
  assert_int_equal(j.done[0], m1);
  assert_int_equal(j.done[1], m2);
  seg->dirty_units &= ~m1;
  seg2->dirty_units &= ~m2;

  make_dirty(seg, m1, 3);
  make_dirty(seg2, m2, 4);
  la_os_fault_set(LA_OS_MADVISE, 2, 0, EINVAL);   /* the second run's call */
  struct advise_job k = {{seg, seg2}, {m1, m2}, {0}, {0}, true};
  run_job(&k);
  la_os_fault_clear();
  assert_int_equal(k.st.nmadvise, 3);
  assert_int_equal(k.done[0], la_bits_run_mask(10, 1));
  assert_int_equal(k.done[1], m2);
  assert_true(units_read(seg, la_bits_run_mask(12, 1), 3));
  assert_true(units_read(seg, la_bits_run_mask(10, 1), 0));
  seg->dirty_units &= ~k.done[0];
  seg2->dirty_units &= ~m2;
  la_segment_destroy(seg2);
  purge_all(seg);
}

/* A thread under a seccomp filter never makes the batched call: here the
 * filter kills the whole process on process_madvise, so a child that
 * purges five runs from liballoc's own thread survives only if liballoc
 * saw the filter and went run by run. */
static void a_seccomp_filter_keeps_the_purge_to_madvise(void **state) {
  (void)state;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_process_madvise, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) _exit(3);
    la_segment_t *s2 = la_segment_create(NULL, NULL);
    if (!s2) _exit(4);
    uint64_t m1 = la_bits_run_mask(20, 2) | la_bits_run_mask(25, 1), m2 = la_bits_run_mask(30, 1) | la_bits_run_mask(40, 3);
    make_dirty(seg, m1, 7);
    make_dirty(s2, m2, 8);
    struct advise_job j = {{seg, s2}, {m1, m2}, {0}, {0}, true};
    pthread_t t;
    if (pthread_create(&t, NULL, advise_job_run, &j) || pthread_join(t, NULL)) _exit(5);
    _exit(j.done[0] == m1 && j.done[1] == m2 && j.st.nmadvise == 4 && units_read(seg, m1, 0) ? 0 : 6);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));   /* not killed by SIGSYS */
  assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(segment_is_aligned_and_mapped), cmocka_unit_test(take_and_release_runs),
    cmocka_unit_test(untouched_units_are_released_clean),
    cmocka_unit_test(dirty_units_are_preferred),    cmocka_unit_test(aligned_runs),
    cmocka_unit_test(purge_returns_pages_as_zero), cmocka_unit_test(muzzy_units_are_not_zeroed),
    cmocka_unit_test(runs_of_two_segments_go_back_together),
    cmocka_unit_test(program_threads_and_refusals_go_run_by_run),
    cmocka_unit_test(a_seccomp_filter_keeps_the_purge_to_madvise),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
