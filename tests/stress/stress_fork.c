/* stress_fork.c - fork() while other threads allocate.
 *
 * fork() copies only the calling thread.  Any allocator lock another thread
 * held at that instant stays held forever in the child, and any structure it
 * was half-way through updating stays half-updated, unless the allocator
 * takes its locks in a pthread_atfork prepare handler and releases (or
 * re-initialises) them in the parent and child handlers.  Programs rely on
 * malloc working in the child (glibc guarantees it), e.g. between fork and
 * exec.  So, while worker threads hammer malloc/free/realloc with every size
 * class and pass blocks to each other:
 *   - the main thread forks repeatedly; each child frees blocks that the
 *     (now absent) workers had published, allocates, reallocs and callocs the
 *     sizes the workers were using, starts a thread that allocates, forks a
 *     grandchild that allocates, calls malloc_trim, and _exit(0)s;
 *   - the same, forking from one of the worker threads instead of main.
 * The parent checks every child's exit status.  A child that deadlocks is
 * killed by its own alarm(); the parent also gives up waiting after a timeout
 * and kills it, so a deadlock fails the test instead of hanging it.
 */
#include <errno.h>
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

#define WORKERS 4
#define WORKER_SLOTS 64
#define WORKER_MAX_BLOCK (3 * STRESS_MIB)   /* small, large and huge paths */
#define CHILD_ALARM_S 20
#define PARENT_WAIT_S 40

/* Tagged blocks the workers publish; a child takes them over. */
static stress_exchange published;
static atomic_bool workers_stop;
/* Children being waited for.  The workers hammer while fork() runs, which is
 * what matters for the allocator's locks; while a child then runs they pause,
 * so that on 2 cores the child is not starved (and the test stays short). */
static atomic_int children_running;

/* ---- the workers --------------------------------------------------------- */

typedef struct {
  uint64_t seed;
  atomic_size_t ops;
  bool forks;       /* this worker also forks children */
  size_t nforks;
} worker_arg;

static void worker_publish(stress_rng *rng)
{
  stress_block b = {.size = stress_size_skewed(rng, 64 * STRESS_KIB), .seed = stress_fresh_seed(rng)};
  if (b.size < STRESS_TAG_MIN)
    b.size = STRESS_TAG_MIN;
  b.p = malloc(b.size);
  if (!b.p) {
    stress_fail("malloc(%zu) returned NULL", b.size);
    return;
  }
  stress_tag_fill(&b);
  stress_exchange_put(&published, b.p, stress_rng_next(rng));
}

/* One operation on a random slot: free, realloc or allocate. */
static void worker_step(stress_rng *rng, stress_block *slots)
{
  stress_block *s = &slots[stress_rng_below(rng, WORKER_SLOTS)];
  if (!s->p) {
    s->size = stress_size_skewed(rng, WORKER_MAX_BLOCK);
    s->seed = stress_fresh_seed(rng);
    s->p = malloc(s->size);
    if (!s->p)
      stress_fail("malloc(%zu) returned NULL", s->size);
    else
      stress_block_fill(s);
    return;
  }
  stress_block_check(s, "worker block");
  if (stress_rng_below(rng, 4) == 0) {
    size_t size = stress_size_skewed(rng, WORKER_MAX_BLOCK);
    void *q = realloc(s->p, size);
    if (!q) {
      stress_fail("realloc(%zu) returned NULL", size);
      return;
    }
    stress_pattern_check_prefix(q, s->size, s->seed, size, "worker realloc");
    *s = (stress_block){.p = q, .size = size, .seed = stress_fresh_seed(rng)};
    stress_block_fill(s);
  } else {
    free(s->p);
    s->p = NULL;
  }
}

static bool fork_and_check_child(void);

static void *worker(void *arg)
{
  worker_arg *a = arg;
  stress_rng rng;
  stress_rng_seed(&rng, a->seed);
  stress_block slots[WORKER_SLOTS];
  memset(slots, 0, sizeof slots);
  size_t forked = 0;
  while (!atomic_load_explicit(&workers_stop, memory_order_relaxed)) {
    while (atomic_load_explicit(&children_running, memory_order_relaxed) > 0 && !a->forks) {
      struct timespec pause = {.tv_nsec = 200 * 1000};
      nanosleep(&pause, NULL);
    }
    worker_step(&rng, slots);
    if (stress_rng_below(&rng, 16) == 0)
      worker_publish(&rng);
    size_t ops = atomic_fetch_add_explicit(&a->ops, 1, memory_order_relaxed);
    if (a->forks && forked < a->nforks && ops % 2000 == 1999) {
      if (!fork_and_check_child())
        atomic_store(&workers_stop, true);
      forked++;
    }
  }
  for (size_t i = 0; i < WORKER_SLOTS; i++)
    if (slots[i].p) {
      stress_block_check(&slots[i], "worker block");
      free(slots[i].p);
    }
  a->nforks = forked;
  return NULL;
}

/* ---- the child --------------------------------------------------------------- */

/* cmocka catches SIGSEGV & co. and longjmps back into its runner: in a child
 * that would run the rest of the suite.  Restore default actions, so a crash
 * kills the child and the parent sees it. */
static void child_reset_signals(void)
{
  static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT, SIGALRM};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    signal(sigs[i], SIG_DFL);
}

/* The sizes the workers were using; with `big`, also blocks on the large and
 * huge paths (one byte past the 2 MiB largest class and the 4 MiB segment). */
#define CHILD_RANDOM_BLOCKS 24
static const size_t child_big_sizes[] = {64 * STRESS_KIB, 256 * STRESS_KIB + 1,
                                         2 * STRESS_MIB + 1, 4 * STRESS_MIB + 1};
#define CHILD_BLOCKS (CHILD_RANDOM_BLOCKS + sizeof child_big_sizes / sizeof child_big_sizes[0])

static void child_alloc_sizes(stress_rng *rng, bool big)
{
  stress_block blocks[CHILD_BLOCKS];
  size_t n = 0, want = big ? CHILD_BLOCKS : CHILD_RANDOM_BLOCKS;
  for (; n < want; n++) {
    stress_block *b = &blocks[n];
    b->size = n < CHILD_RANDOM_BLOCKS ? stress_size_skewed(rng, WORKER_MAX_BLOCK)
                                      : child_big_sizes[n - CHILD_RANDOM_BLOCKS];
    b->seed = stress_fresh_seed(rng);
    b->p = malloc(b->size);
    if (!b->p) {
      stress_fail("child: malloc(%zu) returned NULL", b->size);
      break;
    }
    stress_block_fill(b);
  }
  /* Grow or shrink half of them, free all. */
  for (size_t i = 0; i < n; i++) {
    stress_block *b = &blocks[i];
    stress_block_check(b, "child block");
    if (i % 2) {
      size_t size = i % 4 == 1 ? b->size * 2 + 1 : b->size / 2 + 1;
      void *q = realloc(b->p, size);
      if (!q) {
        stress_fail("child: realloc(%zu) returned NULL", size);
        continue;
      }
      stress_pattern_check_prefix(q, b->size, b->seed, size, "child realloc");
      b->p = q;
    }
    free(b->p);
  }
}

static void child_calloc(stress_rng *rng)
{
  for (size_t i = 0; i < 16; i++) {
    size_t size = i < 12 ? stress_size_skewed(rng, WORKER_MAX_BLOCK) : (size_t)1 << (16 + 2 * (i - 12));
    void *p = calloc(1, size);
    if (!p) {
      stress_fail("child: calloc(%zu) returned NULL", size);
      continue;
    }
    stress_check_zero(p, size, "child calloc");
    free(p);
  }
}

static void *child_thread(void *arg)
{
  stress_rng *rng = arg;
  child_alloc_sizes(rng, true);
  return NULL;
}

static void child_spawn_thread(stress_rng *rng)
{
#ifdef ALLOC_TEST_DIRECT
  /* Under ASan a thread created in the child of a multithreaded process
   * can block forever inside ASan's own allocator (GCC 12's libsanitizer
   * does not reset its locks at fork): that would test ASan, not us. */
  (void)rng;
  return;
#endif
  pthread_t t;
  stress_rng thread_rng = {.state = stress_rng_next(rng)};
  int rc = pthread_create(&t, NULL, child_thread, &thread_rng);
  if (rc != 0) {
    stress_fail("child: pthread_create: %s", strerror(rc));
    return;
  }
  pthread_join(t, NULL);
}

/* A fork from the child: its atfork handlers must work more than once, and
 * on an allocator state that was itself re-initialised by a fork. */
static void child_fork_grandchild(stress_rng *rng)
{
  pid_t pid = fork();
  if (pid < 0) {
    stress_fail("child: fork: %s", strerror(errno));
    return;
  }
  if (pid == 0) {
    stress_reset_failures();
    child_alloc_sizes(rng, false);
    _exit(stress_take_failures() ? 1 : 0);
  }
  int status;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    stress_fail("child: grandchild failed (status 0x%x)", status);
}

/* Everything the child does; never returns. */
static void child_main(void)
{
  child_reset_signals();
  alarm(CHILD_ALARM_S);
  stress_reset_failures();
  stress_rng rng;
  stress_rng_seed(&rng, (uint64_t)getpid());

  /* Blocks allocated by threads that do not exist in the child. */
  stress_exchange_drain(&published);
  child_alloc_sizes(&rng, true);
  child_calloc(&rng);
  child_spawn_thread(&rng);
  if (stress_rng_below(&rng, 4) == 0)
    child_fork_grandchild(&rng);
  malloc_trim(0);
  child_alloc_sizes(&rng, false);
  _exit(stress_take_failures() ? 1 : 0);
}

/* ---- the parent ------------------------------------------------------------------ */

/* Wait for pid at most PARENT_WAIT_S seconds; kill it if it is still there. */
static bool wait_child(pid_t pid, int *status)
{
  double deadline = stress_now() + PARENT_WAIT_S;
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid)
      return true;
    if (r < 0) {
      stress_fail("waitpid(%d): %s", (int)pid, strerror(errno));
      return false;
    }
    if (stress_now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, status, 0);
      stress_fail("child %d still running after %d s: deadlocked after fork", (int)pid,
                  PARENT_WAIT_S);
      return false;
    }
    struct timespec pause = {.tv_nsec = 1000 * 1000};
    nanosleep(&pause, NULL);
  }
}

/* Fork a child that runs child_main and check how it ended.  Usable from any
 * thread; records failures rather than asserting. */
static bool fork_and_check_child(void)
{
  pid_t pid = fork();
  if (pid < 0) {
    stress_fail("fork: %s", strerror(errno));
    return false;
  }
  if (pid == 0)
    child_main();
  atomic_fetch_add(&children_running, 1);
  int status = 0;
  bool reaped = wait_child(pid, &status);
  atomic_fetch_sub(&children_running, 1);
  if (!reaped)
    return false;
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    stress_fail("child %d killed by signal %d (%s)%s", (int)pid, sig, strsignal(sig),
                sig == SIGALRM ? ": deadlocked after fork" : "");
    return false;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    stress_fail("child %d exited with status %d: it reported failures (above)", (int)pid,
                WEXITSTATUS(status));
    return false;
  }
  return true;
}

static void start_workers(pthread_t *tids, worker_arg *args, size_t forking_worker_forks)
{
  atomic_store(&workers_stop, false);
  for (size_t i = 0; i < WORKERS; i++) {
    args[i] = (worker_arg){.seed = 11000 + i + forking_worker_forks * 100};
    args[i].forks = i == 0 && forking_worker_forks > 0;
    args[i].nforks = forking_worker_forks;
    assert_int_equal(pthread_create(&tids[i], NULL, worker, &args[i]), 0);
  }
}

static void stop_workers(pthread_t *tids)
{
  atomic_store(&workers_stop, true);
  for (size_t i = 0; i < WORKERS; i++)
    pthread_join(tids[i], NULL);
  stress_exchange_drain(&published);
}

/* Sleep 2..12 ms, varying, so that the workers get going again and forks land
 * at different points of their operations. */
static void pause_between_forks(size_t i)
{
  struct timespec pause = {.tv_nsec = (long)(2000 + (i * 7919) % 10000) * 1000};
  nanosleep(&pause, NULL);
}

static void test_fork_from_main_while_threads_allocate(void **state)
{
  (void)state;
  size_t forks = stress_count(50, 12);
  pthread_t tids[WORKERS];
  worker_arg args[WORKERS];
  start_workers(tids, args, 0);
  double t0 = stress_now();
  size_t ok = 0;
  for (size_t i = 0; i < forks; i++) {
    pause_between_forks(i);
    if (!fork_and_check_child())
      break;
    ok++;
  }
  stop_workers(tids);
  size_t ops = 0;
  for (size_t i = 0; i < WORKERS; i++)
    ops += atomic_load(&args[i].ops);
  stress_note("fork from main: %zu/%zu children ok, workers did %zu ops, %.2f s", ok, forks, ops,
              stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
  assert_int_equal(ok, forks);
}

static void test_fork_from_worker_thread(void **state)
{
  (void)state;
  size_t forks = stress_count(20, 5);
  pthread_t tids[WORKERS];
  worker_arg args[WORKERS];
  start_workers(tids, args, forks);
  double t0 = stress_now();
  /* Wait until worker 0 has forked all its children (or failed). */
  while (!atomic_load(&workers_stop) && atomic_load(&args[0].ops) < forks * 2000 + 10) {
    struct timespec pause = {.tv_nsec = 5 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  stop_workers(tids);
  stress_note("fork from a worker: %zu children, %.2f s", args[0].nforks, stress_now() - t0);
  STRESS_ASSERT_NO_FAILURES();
  assert_int_equal(args[0].nforks, forks);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    STRESS_TEST(test_fork_from_main_while_threads_allocate),
    STRESS_TEST(test_fork_from_worker_thread),
  };
  STRESS_MAIN("stress_fork", tests);
}
