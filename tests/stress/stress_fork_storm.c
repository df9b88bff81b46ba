/* stress_fork_storm.c - thousands of forks while every part of liballoc that
 * runs beside the program's threads is busy.
 *
 * stress_fork.c forks while threads allocate.  This test forks while, in
 * addition, liballoc's own threads and its control paths are mid-work, since
 * each of them holds a lock or has work in flight at some instants:
 *   - the telemetry publisher (telemetry:true, stats_interval_ms:10) and the
 *     purger (dirty_decay_ms of a few ms, huge blocks freed and unmapped);
 *   - two threads reading statistics: alloc_stats_print (which reads
 *     /proc/self/smaps_rollup under a lock) and alloc_ctl("stats.*");
 *   - a thread pushing configuration with alloc_ctl: decay times, THP
 *     modes, the publishing interval;
 *   - two threads allocating and freeing small, large and huge blocks.
 * liballoc reads /proc/self/smaps_rollup (under a lock) at most every 10 s,
 * by its clock; the statistics printer's thread sees that clock leap 20 s
 * at every call (la_os_set_clock, hence this program is linked to
 * liballoc's core rather than preloaded), so each of its reads reads the
 * file, and BLOAT_VMAS mappings make each read take milliseconds, as in a
 * process with a large heap: forks land while a read is in progress.
 * Every child allocates, prints its statistics, reads and writes a knob,
 * trims and exits.  A lock inherited held, or work in flight left half done,
 * shows as a child that does not exit: the parent kills any child still
 * there after CHILD_DEADLINE_S and fails.  No timing is asserted. */
#include <errno.h>
#include <sys/mman.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stress.h"

#define CHILD_DEADLINE_S 10
#define ALLOCATORS 2
#define SLOTS 32
#define BLOAT_VMAS 5000

typedef int (*ctl_fn)(const char *, void *, size_t *, void *, size_t);
typedef void (*print_fn)(void (*)(void *, const char *), void *, const char *);

/* liballoc's public API and its clock hook (the core is linked in). */
int alloc_ctl(const char *, void *, size_t *, void *, size_t);
void alloc_stats_print(void (*)(void *, const char *), void *, const char *);
void la_os_set_clock(uint64_t (*now_ns)(void));
static const ctl_fn ctl = alloc_ctl;
static const print_fn stats_print = alloc_stats_print;

static atomic_bool stop;

static void pause_us(long us)
{
  struct timespec t = {.tv_sec = us / 1000000, .tv_nsec = us % 1000000 * 1000};
  nanosleep(&t, NULL);
}

/* ---- slow smaps reads ---------------------------------------------------------- */

static __thread bool leaping;   /* this thread's clock leaps */
static _Atomic uint64_t leap_ns;

static uint64_t storm_clock(void)
{
  if (leaping)
    return atomic_fetch_add(&leap_ns, 20000000000ull);
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* BLOAT_VMAS mappings of one page each (every other page of a region made
 * inaccessible): the kernel walks each one to answer smaps_rollup. */
static void bloat_vmas(void)
{
  long page = sysconf(_SC_PAGESIZE);
  char *p = mmap(NULL, (size_t)page * 2 * BLOAT_VMAS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(p != MAP_FAILED);
  for (size_t i = 0; i < BLOAT_VMAS; i++) {
    p[2 * i * (size_t)page] = 1;
    mprotect(p + (2 * i + 1) * (size_t)page, (size_t)page, PROT_NONE);
  }
}

/* ---- the parent's threads ---------------------------------------------------- */

/* Small, large (64 KiB - 2 MiB) and huge (above 2 MiB) blocks. */
static size_t storm_size(stress_rng *rng)
{
  switch (stress_rng_below(rng, 8)) {
  case 0: return stress_size_log_skewed(rng, 64 * STRESS_KIB, 2 * STRESS_MIB);
  case 1: return stress_size_log_skewed(rng, 2 * STRESS_MIB + 1, 9 * STRESS_MIB);
  default: return stress_size_skewed(rng, 16 * STRESS_KIB);
  }
}

static void *allocator(void *arg)
{
  stress_rng rng;
  stress_rng_seed(&rng, (uint64_t)(uintptr_t)arg);
  stress_block slots[SLOTS] = {{0}};
  for (size_t n = 0; !atomic_load_explicit(&stop, memory_order_relaxed); n++) {
    stress_block *s = &slots[stress_rng_below(&rng, SLOTS)];
    if (s->p) {
      stress_block_check(s, "storm block");
      free(s->p);
      s->p = NULL;
    } else {
      *s = (stress_block){.size = storm_size(&rng), .seed = stress_fresh_seed(&rng)};
      s->p = malloc(s->size);
      if (!s->p)
        stress_fail("malloc(%zu) returned NULL", s->size);
      else
        stress_block_fill(s);
    }
    if (n % 64 == 63)
      pause_us(100);   /* leave the children some of the 2 cores */
  }
  for (size_t i = 0; i < SLOTS; i++)
    free(slots[i].p);
  return NULL;
}

static void discard(void *opaque, const char *text)
{
  (void)opaque;
  (void)text;
}

static void *stats_printer(void *arg)
{
  (void)arg;
  leaping = true;
  while (!atomic_load_explicit(&stop, memory_order_relaxed))
    stats_print(discard, NULL, "J");
  return NULL;
}

static void *stats_reader(void *arg)
{
  (void)arg;
  static const char *const names[] = {"stats.allocated", "stats.resident", "stats.dirty", "stats.mapped"};
  for (size_t n = 0; !atomic_load_explicit(&stop, memory_order_relaxed); n++) {
    size_t v, len = sizeof v;
    int err = ctl(names[n % 4], &v, &len, NULL, 0);
    if (err)
      stress_fail("alloc_ctl(%s) = %d", names[n % 4], err);
  }
  return NULL;
}

static void push(const char *name, void *value, size_t len)
{
  int err = ctl(name, NULL, NULL, value, len);
  if (err)
    stress_fail("alloc_ctl(%s) write = %d", name, err);
}

static void *config_pusher(void *arg)
{
  (void)arg;
  static const ssize_t decays[] = {0, 2, 5, 20};
  static const char *const thp[] = {"never", "default", "always"};
  for (size_t n = 0; !atomic_load_explicit(&stop, memory_order_relaxed); n++) {
    ssize_t d = decays[n % 4], m = decays[(n / 4) % 4], interval = n % 2 ? 10 : 20;
    push("opt.dirty_decay_ms", &d, sizeof d);
    push("opt.muzzy_decay_ms", &m, sizeof m);
    push("opt.stats_interval_ms", &interval, sizeof interval);
    if (n % 16 == 0) {
      const char *mode = thp[(n / 16) % 3];
      push("opt.thp", &mode, sizeof mode);
    }
    pause_us(200);
  }
  return NULL;
}

/* ---- the child ------------------------------------------------------------------ */

static void child_main(uint64_t seed)
{
  signal(SIGABRT, SIG_DFL);
  signal(SIGSEGV, SIG_DFL);
  stress_reset_failures();
  stress_rng rng;
  stress_rng_seed(&rng, seed);
  void *blocks[16];
  for (size_t i = 0; i < 16; i++) {
    blocks[i] = malloc(storm_size(&rng));
    if (!blocks[i])
      stress_fail("child: malloc returned NULL");
  }
  stats_print(discard, NULL, NULL);
  ssize_t d;
  size_t dlen = sizeof d;
  if (ctl("opt.dirty_decay_ms", &d, &dlen, NULL, 0) != 0)
    stress_fail("child: alloc_ctl read failed");
  push("opt.dirty_decay_ms", &d, sizeof d);
  for (size_t i = 0; i < 16; i++)
    free(blocks[i]);
  malloc_trim(0);
  stats_print(discard, NULL, "J");
  _exit(stress_take_failures() ? 1 : 0);
}

/* What a child stuck at the deadline is doing: the system call it sits in
 * (202 is futex on x86-64: a lock), for the failure message. */
static void describe_stuck(pid_t pid, char *out, size_t len)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
  FILE *f = fopen(path, "r");
  out[0] = 0;
  if (f) {
    if (!fgets(out, (int)len, f))
      out[0] = 0;
    fclose(f);
  }
  out[strcspn(out, "\n")] = 0;
}

/* false, after killing it, when the child is still there at the deadline. */
static bool wait_child(pid_t pid, int *status)
{
  double deadline = stress_now() + CHILD_DEADLINE_S;
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid)
      return true;
    if (r < 0 || stress_now() > deadline) {
      char what[256];
      describe_stuck(pid, what, sizeof what);
      stress_note("child %d stuck in system call: %s", (int)pid, what);
      if (getenv("STORM_GDB")) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "gdb -p %d -batch -ex 'thread apply all bt' >&2 2>&1", (int)pid);
        if (system(cmd) != 0)
          stress_note("gdb failed");
      }
      kill(pid, SIGKILL);
      waitpid(pid, status, 0);
      return false;
    }
    pause_us(500);
  }
}

static void test_fork_storm(void **state)
{
  (void)state;
  bloat_vmas();
  la_os_set_clock(storm_clock);
  void *(*const fns[])(void *) = {allocator, allocator, stats_printer, stats_reader, config_pusher};
  const size_t nthreads = sizeof fns / sizeof fns[0];
  pthread_t tids[sizeof fns / sizeof fns[0]];
  atomic_store(&stop, false);
  for (size_t i = 0; i < nthreads; i++)
    assert_int_equal(pthread_create(&tids[i], NULL, fns[i], (void *)(uintptr_t)(i + 1)), 0);
  size_t forks = stress_count(1000, 300), hung = 0, failed = 0, done = 0;
  double t0 = stress_now();
  for (; done < forks && hung + failed < 3; done++) {
    pid_t pid = fork();
    if (pid < 0) {
      stress_fail("fork: %s", strerror(errno));
      break;
    }
    if (pid == 0)
      child_main(done);
    int status = 0;
    if (!wait_child(pid, &status)) {
      hung++;
      stress_fail("child %d (fork %zu) did not exit within %d s: killed", (int)pid, done, CHILD_DEADLINE_S);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failed++;
      stress_fail("child %d (fork %zu) ended with status 0x%x", (int)pid, done, status);
    }
  }
  atomic_store(&stop, true);
  for (size_t i = 0; i < nthreads; i++)
    pthread_join(tids[i], NULL);
  ssize_t d = 10;
  push("opt.dirty_decay_ms", &d, sizeof d);
  stress_note("fork storm: %zu forks, %zu hung, %zu failed, %.1f s", done, hung, failed, stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
}

int main(void)
{
  const struct CMUnitTest tests[] = {STRESS_TEST(test_fork_storm)};
  STRESS_MAIN("stress_fork_storm", tests);
}
