/* tm_target.c - the process whose telemetry segment tests/telemetry reads.
 *
 * Built without liballoc and run with it preloaded (or, in the sanitizer
 * build, linked to liballoc's core directly).  Modes:
 *   hold N SIZE MS   allocate N blocks of SIZE bytes, print "ready", keep
 *                    them MS milliseconds, free them, exit normally
 *   lend N SIZE MS   as hold, after making lenders: 20,000 blocks of 96
 *                    bytes, 36 in 40 freed, idle for two of the
 *                    trimmer's looks, then 600 blocks of 1500 bytes kept,
 *                    most in the thinned slabs (statistics lent, lenders)
 * Waiting, the modes but idle wake each 100 ms to allocate and free one
 * large block, as a server's housekeeping would.
 *   churn MS THREADS random malloc/free of mixed sizes in THREADS threads
 *   fork MS          allocate, fork a child that allocates too; both print
 *                    "ready <pid>", hold MS, exit
 *   exec MS          hold MS, then exec itself as "hold 1000 64 MS"
 *   idle MS          allocate 10,000 blocks of 100 bytes, print "ready",
 *                    then sleep MS in one call: no allocator call at all
 *   none MS          print "ready" (with write) and sleep MS: never an
 *                    allocator call
 *   freed N SIZE MS  allocate N blocks of SIZE bytes, write them, free them
 *                    all, print "ready", then sleep MS in one call: the
 *                    freed memory stays resident until liballoc returns it
 *   waves N SIZE PERIOD MS  print "ready", then every PERIOD ms allocate and
 *                    write N blocks of SIZE bytes, keep them PERIOD/4 ms and
 *                    free them, for MS ms: the same flow of freed and
 *                    reused memory whatever the decay time
 *   sandbox MS       allocate, wait 300 ms (liballoc's threads run), then
 *                    print "raw <errno name>" for unshare(CLONE_NEWUSER) made
 *                    with syscall(2) (which liballoc cannot see) and
 *                    "unshare <ok|errno name>" for glibc's unshare(), then idle MS
 *   vfork MS         allocate, wait 300 ms, vfork a child that calls setuid
 *                    (to its own uid) and exits, print "vforked", idle MS
 *   vforkfirst MS    before any allocation, vfork a child that allocates
 *                    and exits; then allocate, print "ready", idle MS
 *   setuid UID MS    allocate, wait 300 ms, become UID (setgid, setuid), print
 *                    "uid <ok|errno name>", then idle MS
 *   json             print alloc_stats_print's JSON and exit
 * Output lines are flushed at once: the test waits for them on a pipe. */
#include <alloc.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static void sleep_ms(long ms) {
  for (; ms > 0; ms -= 100) {
    nap_ms(ms < 100 ? ms : 100);
    void *volatile p = malloc(300 << 10);   /* a large class: always the slow path */
    free(p);
  }
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void **hold(long n, size_t size) {
  void **v = malloc((size_t)n * sizeof *v);
  for (long i = 0; i < n; i++) {
    v[i] = malloc(size);
    memset(v[i], 0x5a, size);
  }
  return v;
}

static void release(void **v, long n) {
  for (long i = 0; i < n; i++) free(v[i]);
  free(v);
}

static long churn_ms;

static void *churn_thread(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  enum { SLOTS = 4096 };
  void **slot = calloc(SLOTS, sizeof *slot);
  uint64_t end = now_ms() + (uint64_t)churn_ms;
  while (now_ms() < end) {
    for (int k = 0; k < 10000; k++) {
      unsigned i = (unsigned)rand_r(&seed) % SLOTS;
      free(slot[i]);
      unsigned r = (unsigned)rand_r(&seed);
      size_t size = r % 100 == 0 ? 65536 + r % 300000 : r % 100 == 1 ? (4u << 20) : 8 + r % 2000;
      slot[i] = malloc(size);
      if (slot[i]) *(char *)slot[i] = 1;
    }
  }
  for (unsigned i = 0; i < SLOTS; i++) free(slot[i]);
  free(slot);
  return NULL;
}

static int mode_churn(long ms, int nthreads) {
  churn_ms = ms;
  pthread_t t[16];
  if (nthreads > 16) nthreads = 16;
  printf("ready %d\n", (int)getpid());
  fflush(stdout);
  for (int i = 0; i < nthreads; i++) pthread_create(&t[i], NULL, churn_thread, (void *)(uintptr_t)(i + 1));
  for (int i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
  return 0;
}

/* One sleep, no allocator call (sleep_ms's housekeeping does allocate). */
static void sleep_quietly(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Allocate, then sleep without an allocator call: the process is visible
 * only if liballoc publishes on its own. */
static int mode_idle(long ms) {
  for (int i = 0; i < 10000; i++) (void)!malloc(100);
  printf("ready %d\n", (int)getpid());
  fflush(stdout);
  sleep_quietly(ms);
  return 0;
}

/* No allocator call at all (write(2): stdio's buffer is malloc'd), then
 * sleep: the process has nothing to publish. */
static int mode_none(long ms) {
  char line[32];
  int n = snprintf(line, sizeof line, "ready %d\n", (int)getpid());
  if (write(1, line, (size_t)n) != n) return 1;
  sleep_quietly(ms);
  return 0;
}

/* Sparse idle slabs lending their free slots (liballoc's lend.c): the
 * trimmer looks each time the heap takes a slab, and makes a slab a
 * lender once two looks 100 ms apart found it unchanged.  The blocks stay
 * allocated until exit (static: reachable, no leak). */
static void make_lenders(void) {
  enum { SMALL = 20000, BIG = 600, TAKE = 2048 };
  static void *small[SMALL], *big[BIG], *take[TAKE];
  for (int i = 0; i < SMALL; i++) memset(small[i] = malloc(96), 1, 96);
  for (int i = 0; i < SMALL; i++)
    if (i % 40 >= 4) free(small[i]);   /* runs of 36 free slots: two big blocks each */
  for (int look = 0; look < 2; look++) {
    if (look) nap_ms(150);
    for (int i = 0; i < TAKE; i++) take[i] = malloc(8192);
    for (int i = 0; i < TAKE; i++) free(take[i]);
  }
  for (int i = 0; i < BIG; i++) memset(big[i] = malloc(1500), 2, 1500);
}

static int mode_freed(long n, size_t size, long ms) {
  void **v = hold(n, size);
  release(v, n);
  printf("ready %d\n", (int)getpid());
  fflush(stdout);
  sleep_quietly(ms);
  return 0;
}

static int mode_waves(long n, size_t size, long period, long ms) {
  printf("ready %d\n", (int)getpid());
  fflush(stdout);
  for (long t = 0; t < ms; t += period) {
    void **v = hold(n, size);
    nap_ms(period / 4);
    release(v, n);
    nap_ms(period - period / 4);
  }
  return 0;
}

static const char *errno_name(int e) {
  return e == 0 ? "ok" : e == EINVAL ? "EINVAL" : e == EPERM ? "EPERM" : e == ENOSPC ? "ENOSPC" : "other";
}

static int mode_sandbox(long ms) {
  void **v = hold(1000, 64);
  printf("ready %d\n", (int)getpid());
  fflush(stdout);
  nap_ms(300);
  errno = 0;
  long raw = syscall(SYS_unshare, CLONE_NEWUSER);
  printf("raw %s\n", errno_name(raw == 0 ? 0 : errno));
  errno = 0;
  int rc = unshare(CLONE_NEWUSER);
  printf("unshare %s\n", errno_name(rc == 0 ? 0 : errno));
  fflush(stdout);
  sleep_quietly(ms);
  release(v, 1000);
  return 0;
}

static int mode_setuid(uid_t uid, long ms) {
  void **v = hold(1000, 64);
  printf("ready %d\n", (int)getpid());
  fflush(stdout);
  nap_ms(300);
  errno = 0;
  int rc = setgid((gid_t)uid) == 0 && setuid(uid) == 0 ? 0 : errno;
  printf("uid %s\n", errno_name(rc));
  fflush(stdout);
  sleep_quietly(ms);
  release(v, 1000);
  return 0;
}

/* A vfork child shares the parent's memory, liballoc's state included,
 * and runs no fork handlers: a wrapped call there must leave the parent's
 * threads alone. */
static int mode_vfork(long ms) {
  void **v = hold(1000, 64);
  printf("ready %d\n", (int)getpid());
  fflush(stdout);
  nap_ms(300);
  pid_t child = vfork();
  if (child == 0) _exit(setuid(getuid()) == 0 ? 0 : 1);
  int status = -1;
  waitpid(child, &status, 0);
  printf("vforked %s\n", child > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "failed");
  fflush(stdout);
  sleep_quietly(ms);
  release(v, 1000);
  return 0;
}

/* A process that has not allocated yet vforks a child that allocates
 * before it exits; the parent allocates after. */
static int mode_vfork_first(long ms) {
  pid_t child = vfork();
  if (child == 0) {
    void *volatile p = malloc(100);
    _exit(p ? 0 : 1);
  }
  int status = -1;
  if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status)) return 1;
  void **v = hold(1000, 64);
  printf("ready %d\n", (int)getpid());
  fflush(stdout);
  sleep_quietly(ms);
  release(v, 1000);
  return 0;
}

static int mode_fork(long ms) {
  void **v = hold(1000, 200);
  pid_t child = fork();
  if (child < 0) return 1;
  if (child == 0) {
    void **w = hold(3000, 48);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    sleep_ms(ms);
    release(w, 3000);
    release(v, 1000);
    return 0;
  }
  printf("ready %d\n", (int)getpid());
  fflush(stdout);
  sleep_ms(ms);
  int status;
  waitpid(child, &status, 0);
  release(v, 1000);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static int mode_exec(const char *self, long ms) {
  void **v = hold(500, 32);
  printf("ready %d\n", (int)getpid());
  fflush(stdout);
  sleep_ms(ms);
  release(v, 500);
  char arg[32];
  snprintf(arg, sizeof arg, "%ld", ms);
  execl(self, self, "hold", "1000", "64", arg, (char *)NULL);
  return 1;
}

static void print_cb(void *opaque, const char *text) {
  (void)opaque;
  fputs(text, stdout);
}

/* What allocd's tests need a process to be: TM_TARGET_NODUMP=1 makes it
 * non-dumpable (its /proc files then belong to root, as ssh-agent's do);
 * TM_TARGET_COMM renames its main thread, with any bytes. */
static void apply_env(void) {
  const char *comm = getenv("TM_TARGET_COMM");
  if (getenv("TM_TARGET_NODUMP")) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (comm) prctl(PR_SET_NAME, comm, 0, 0, 0);
}

int main(int argc, char **argv) {
  apply_env();
  if (argc >= 5 && (strcmp(argv[1], "hold") == 0 || strcmp(argv[1], "lend") == 0)) {
    if (argv[1][0] == 'l') make_lenders();
    long n = atol(argv[2]);
    void **v = hold(n, (size_t)atol(argv[3]));
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    sleep_ms(atol(argv[4]));
    release(v, n);
    return 0;
  }
  if (argc >= 4 && strcmp(argv[1], "churn") == 0) return mode_churn(atol(argv[2]), atoi(argv[3]));
  if (argc >= 3 && strcmp(argv[1], "fork") == 0) return mode_fork(atol(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "idle") == 0) return mode_idle(atol(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "none") == 0) return mode_none(atol(argv[2]));
  if (argc >= 6 && strcmp(argv[1], "waves") == 0)
    return mode_waves(atol(argv[2]), (size_t)atol(argv[3]), atol(argv[4]), atol(argv[5]));
  if (argc >= 5 && strcmp(argv[1], "freed") == 0) return mode_freed(atol(argv[2]), (size_t)atol(argv[3]), atol(argv[4]));
  if (argc >= 3 && strcmp(argv[1], "sandbox") == 0) return mode_sandbox(atol(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "vfork") == 0) return mode_vfork(atol(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "vforkfirst") == 0) return mode_vfork_first(atol(argv[2]));
  if (argc >= 4 && strcmp(argv[1], "setuid") == 0) return mode_setuid((uid_t)atol(argv[2]), atol(argv[3]));
  if (argc >= 3 && strcmp(argv[1], "exec") == 0) return mode_exec(argv[0], atol(argv[2]));
  if (argc >= 2 && strcmp(argv[1], "json") == 0) {
#ifdef ALLOC_TEST_DIRECT
    void (*stats_print)(void (*)(void *, const char *), void *, const char *) = alloc_stats_print;
#else   /* preloaded: the program is not linked to liballoc */
    void (*stats_print)(void (*)(void *, const char *), void *, const char *) =
        (void (*)(void (*)(void *, const char *), void *, const char *))dlsym(RTLD_DEFAULT, "alloc_stats_print");
    if (!stats_print) return 3;
#endif
    stats_print(print_cb, NULL, "J");
    putchar('\n');
    return 0;
  }
  fprintf(stderr, "usage: tm_target hold N SIZE MS | churn MS THREADS | fork MS | exec MS | idle MS | sandbox MS | vfork MS | setuid UID MS | json\n");
  return 2;
}
