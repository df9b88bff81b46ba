/* test_init.c - fork() (init.c's atfork handlers) while another thread is
 * in the middle of something: every such state must be settled or waited
 * for, so that the child neither blocks on a lock nor keeps work in flight
 * that no thread of its own will finish.
 *
 * Most tests make one system call of liballoc slow in the parent, through
 * this binary's own definitions of madvise and munmap (the core is linked
 * in statically, and the OS layer calls libc's), wait until a thread is
 * inside it, and fork.  A test whose slow call is never reached (liballoc
 * no longer makes it through libc) is skipped, not passed.  The smaps
 * reader, which uses raw system calls, is slowed by the process's shape
 * instead: BLOAT_VMAS mappings make each read take milliseconds.  The
 * child checks the state and exits; the parent kills a child that has not
 * exited within CHILD_DEADLINE_S. */
#include "unit.h"

#include <alloc.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILD_DEADLINE_S 10
#define SLOW_MS 300
#define BLOAT_VMAS 20000

static pid_t parent;
static atomic_bool stop;

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, ms % 1000 * 1000000L};
  nanosleep(&t, NULL);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- slow system calls ------------------------------------------------------ */

enum slow_call { SLOW_NONE, SLOW_PURGE, SLOW_UNMAP };
static _Atomic int slow_call;      /* which call to slow down, in the parent */
static atomic_int inside;          /* threads inside the slow call now */
static void *_Atomic slow_addr;    /* the range the slow call works on */
static atomic_bool slow_done;      /* a slow call has returned */

static bool slowed(enum slow_call c) {
  return atomic_load(&slow_call) == (int)c && getpid() == parent;
}

static void slow_down(void *addr) {
  atomic_store(&slow_addr, addr);
  atomic_fetch_add(&inside, 1);
  sleep_ms(SLOW_MS);
  atomic_fetch_sub(&inside, 1);
}

int madvise(void *addr, size_t len, int advice) {
  if (slowed(SLOW_PURGE) && advice == MADV_DONTNEED && len >= 65536) slow_down(addr);
  return (int)syscall(SYS_madvise, addr, len, advice);
}

int munmap(void *addr, size_t len) {
  bool slow = slowed(SLOW_UNMAP) && len >= ((size_t)6 << 20);   /* a huge mapping, not a trim */
  if (slow) {   /* slow before the unmap: the child must not see it pending */
    atomic_store(&slow_addr, addr);
    atomic_fetch_add(&inside, 1);
    sleep_ms(SLOW_MS);
  }
  int r = (int)syscall(SYS_munmap, addr, len);
  if (slow) {
    atomic_fetch_sub(&inside, 1);
    atomic_store(&slow_done, true);
  }
  return r;
}

/* Wait until a thread is inside the slow call; false after 5 s. */
static bool wait_inside(void) {
  double deadline = now_s() + 5;
  while (!atomic_load(&inside))
    if (now_s() > deadline) return false;
  return true;
}

/* ---- forking ---------------------------------------------------------------- */

/* Fork; the child runs `child` and exits with its result.  Fails the test
 * if the child does not exit cleanly within the deadline. */
static void fork_and_check(int (*child)(void)) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGABRT, SIG_DFL);
    _exit(child());
  }
  int status = 0;
  double deadline = now_s() + CHILD_DEADLINE_S;
  pid_t r;
  while ((r = waitpid(pid, &status, WNOHANG)) == 0 && now_s() < deadline) sleep_ms(5);
  if (r == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fail_msg("the child did not exit within %d s (a lock inherited held?)", CHILD_DEADLINE_S);
  }
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void run_threads(pthread_t *t, int n, void *(*fn)(void *)) {
  atomic_store(&stop, false);
  for (int i = 0; i < n; i++) assert_int_equal(pthread_create(&t[i], NULL, fn, NULL), 0);
}

static void join_threads(pthread_t *t, int n) {
  atomic_store(&stop, true);
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  atomic_store(&slow_call, SLOW_NONE);
}

/* ---- a statistics read in progress -------------------------------------------- */

/* Each call of the clock is 20 s after the last: every statistics read
 * reads smaps_rollup (otherwise read at most every 10 s). */
static _Atomic uint64_t leaping_ns = 1;
static uint64_t leaping_clock(void) { return atomic_fetch_add(&leaping_ns, 20000000000ull); }

static void discard(void *opaque, const char *text) {
  (void)opaque;
  (void)text;
}

static void *stats_reader(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) alloc_stats_print(discard, NULL, NULL);
  return NULL;
}

static int child_prints_stats(void) {
  alloc_stats_print(discard, NULL, "J");
  void *p = la_malloc(100);
  la_free(p);
  return 0;
}

/* BLOAT_VMAS mappings of one page each (every other page of a region made
 * inaccessible), which the kernel walks to answer smaps_rollup. */
static char *bloat_vmas(void) {
  size_t page = la_page_size;
  char *p = mmap(NULL, page * 2 * BLOAT_VMAS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(p != MAP_FAILED);
  for (size_t i = 0; i < BLOAT_VMAS; i++) {
    p[2 * i * page] = 1;
    mprotect(p + (2 * i + 1) * page, page, PROT_NONE);
  }
  return p;
}

/* Two threads read statistics without pause, each read reading smaps:
 * smaps_lock is held nearly all the time, and most forks land in a read. */
static void test_fork_during_smaps_read(void **state) {
  (void)state;
  char *bloat = bloat_vmas();
  la_os_set_clock(leaping_clock);
  pthread_t t[2];
  run_threads(t, 2, stats_reader);
  sleep_ms(50);
  for (int i = 0; i < 10; i++) fork_and_check(child_prints_stats);
  join_threads(t, 2);
  la_os_set_clock(NULL);
  syscall(SYS_munmap, bloat, la_page_size * 2 * BLOAT_VMAS);
}

/* ---- a knob being applied ------------------------------------------------------- */

static void *decay_pusher(void *arg) {
  (void)arg;
  for (ssize_t n = 0; !atomic_load(&stop); n++) {
    ssize_t ms = 1000 + n % 2;
    alloc_ctl("opt.dirty_decay_ms", NULL, NULL, &ms, sizeof ms);
  }
  return NULL;
}

/* Every arena has the decay time the options say (arenas are updated one by
 * one under ctl_lock: a child must not see half of them). */
static int child_checks_decay(void) {
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++)
    if (la_arena_at(i)->dirty_decay.ms != la_opt.dirty_decay_ms) return 1;
  ssize_t ms;
  size_t len = sizeof ms;
  return alloc_ctl("opt.dirty_decay_ms", &ms, &len, NULL, 0) != 0;
}

static void test_fork_during_ctl_write(void **state) {
  (void)state;
  ssize_t ms = 1000;   /* every arena gets a decay time (unused ones have none yet) */
  alloc_ctl("opt.dirty_decay_ms", NULL, NULL, &ms, sizeof ms);
  pthread_t t[1];
  run_threads(t, 1, decay_pusher);
  for (int i = 0; i < 200; i++) fork_and_check(child_checks_decay);
  join_threads(t, 1);
}

/* ---- a purge advising units without the arena lock -------------------------- */

static void *large_freer(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    void *p = la_malloc(320 * 1024);   /* a large class above what heaps cache */
    memset(p, 1, 4096);
    la_free(p);
  }
  return NULL;
}

/* No unit is left held by a purge: all are used, dirty, muzzy or clean. */
static int child_checks_purging(void) {
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) {
    la_arena_t *a = la_arena_at(i);
    for (unsigned r = 0; r < LA_UNITS; r++)
      for (la_segment_t *seg = a->segments[r]; seg; seg = seg->bucket.next)
        if (seg->purging_units) return 1;
  }
  la_malloc_trim(0);
  return 0;
}

static void test_fork_during_purge(void **state) {
  (void)state;
  ssize_t zero = 0;
  bool off = false;
  alloc_ctl("opt.background_thread", NULL, NULL, &off, sizeof off);
  alloc_ctl("opt.muzzy_decay_ms", NULL, NULL, &zero, sizeof zero);
  alloc_ctl("opt.dirty_decay_ms", NULL, NULL, &zero, sizeof zero);   /* purge at every free */
  atomic_store(&slow_call, SLOW_PURGE);
  pthread_t t[1];
  run_threads(t, 1, large_freer);
  bool reached = wait_inside();
  if (reached) fork_and_check(child_checks_purging);
  join_threads(t, 1);
  if (!reached) skip();
}

/* ---- cached huge mappings being unmapped -------------------------------------- */

/* Frees huge blocks until one was unmapped slowly, then waits: its next
 * malloc could map the same range again before the child looks. */
static void *huge_freer(void *arg) {
  (void)arg;
  while (!atomic_load(&stop) && !atomic_load(&slow_done)) {
    void *p = la_malloc((size_t)6 << 20);
    memset(p, 1, 4096);
    la_free(p);   /* decay 0: unmapped at once */
  }
  while (!atomic_load(&stop)) sleep_ms(1);
  return NULL;
}

/* The mapping the parent was unmapping when fork() came is gone: the
 * child did not start with work in flight that nobody would finish. */
static int child_checks_unmapped(void) {
  unsigned char vec;
  void *addr = atomic_load(&slow_addr);
  return mincore(addr, 4096, &vec) == 0;   /* ENOMEM: not mapped */
}

static void test_fork_during_huge_unmap(void **state) {
  (void)state;
  ssize_t zero = 0;
  alloc_ctl("opt.dirty_decay_ms", NULL, NULL, &zero, sizeof zero);
  atomic_store(&slow_call, SLOW_UNMAP);
  pthread_t t[1];
  run_threads(t, 1, huge_freer);
  bool reached = wait_inside();
  if (reached) fork_and_check(child_checks_unmapped);
  join_threads(t, 1);
  if (!reached) skip();
}

int main(void) {
  parent = getpid();
  la_ensure_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fork_during_smaps_read),
      cmocka_unit_test(test_fork_during_ctl_write),
      cmocka_unit_test(test_fork_during_purge),
      cmocka_unit_test(test_fork_during_huge_unmap),
  };
  return cmocka_run_group_tests_name("init", tests, NULL, NULL);
}
