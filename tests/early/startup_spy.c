/* startup_spy.c - the libc functions liballoc must not call in a program
 * that never calls them itself.
 *
 * Preloaded ahead of liballoc (LD_PRELOAD=startup_spy.so:liballoc.so), its
 * definitions are the ones liballoc's calls bind to.  Each of these sits in
 * a 64 KiB window of libc that /bin/true never touches, and the kernel maps
 * and counts in RSS the whole window at the first call (fault-around):
 * liballoc's start-up once cost a short-lived process 200 KB that way
 * (docs/performance.md, "Start-up").  The functions record their name and
 * answer through the system call or a plain loop (no dlsym: it may
 * allocate, inside liballoc's start-up); at exit the library prints what
 * was called and ends the process with status 3 if anything was. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static atomic_uint called;   /* bit i: spied[i] was called */
static const char *const spied[] = {"strtol", "strtoll", "strtoul", "strtoull", "clock_gettime",
                                    "sched_getaffinity"};

static void note(unsigned i) { atomic_fetch_or(&called, 1u << i); }

/* Base 10 only: enough to keep a caller going until the exit reports it. */
static unsigned long long decimal(const char *s, char **end) {
  unsigned long long x = 0;
  while (*s == ' ') s++;
  while (*s >= '0' && *s <= '9') x = x * 10 + (unsigned)(*s++ - '0');
  if (end) *end = (char *)s;
  return x;
}

long strtol(const char *s, char **end, int base) { note(0); (void)base; return (long)decimal(s, end); }
long long strtoll(const char *s, char **end, int base) { note(1); (void)base; return (long long)decimal(s, end); }
unsigned long strtoul(const char *s, char **end, int base) { note(2); (void)base; return decimal(s, end); }
unsigned long long strtoull(const char *s, char **end, int base) { note(3); (void)base; return decimal(s, end); }

int clock_gettime(clockid_t clock, struct timespec *ts) {
  note(4);
  return (int)syscall(SYS_clock_gettime, clock, ts);
}

int sched_getaffinity(pid_t pid, size_t size, cpu_set_t *set) {
  note(5);
  memset(set, 0, size);
  return syscall(SYS_sched_getaffinity, pid, size, set) > 0 ? 0 : -1;
}

__attribute__((destructor)) static void report(void) {
  unsigned bits = atomic_load(&called);
  if (!bits) return;
  static const char head[] = "startup_spy: liballoc called";
  (void)!write(2, head, sizeof head - 1);
  for (unsigned i = 0; i < sizeof spied / sizeof spied[0]; i++)
    if (bits & (1u << i)) {
      (void)!write(2, " ", 1);
      (void)!write(2, spied[i], strlen(spied[i]));
    }
  (void)!write(2, "\n", 1);
  _exit(3);
}
