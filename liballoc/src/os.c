/* os.c - the only file that talks to the kernel.
 *
 * Mapping, unmapping and advising memory, the page size, the CPU count, the
 * environment and stderr.  Nothing here allocates: these functions run inside
 * malloc, before main, and inside fork handlers. */
#include "alloc_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

size_t la_page_size = 4096;

extern char **environ;

void la_os_init(void) {
  unsigned long ps = getauxval(AT_PAGESZ);
  if (ps == 0) ps = (unsigned long)sysconf(_SC_PAGESIZE);
  la_page_size = ps ? ps : 4096;
}

/* Returns NULL (errno ENOMEM) on failure; never exits.  No MAP_NORESERVE:
 * the kernel's overcommit policy must be able to refuse an impossible
 * request here, so that malloc fails with ENOMEM instead of the process
 * being killed later. */
void *la_os_map(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    errno = ENOMEM;
    return NULL;
  }
  return p;
}

/* A mapping of `size` bytes starting at a multiple of `align` (a power of two
 * >= the page size): over-map, then give back the misaligned ends. */
void *la_os_map_aligned(size_t size, size_t align) {
  if (size + align < size) {
    errno = ENOMEM;
    return NULL;
  }
  uint8_t *raw = la_os_map(size + align);
  if (!raw) return NULL;
  uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
  size_t head = start - (uintptr_t)raw;
  size_t tail = align - head;
  if (head) munmap(raw, head);
  if (tail) munmap((uint8_t *)start + size, tail);
  return (void *)start;
}

void la_os_unmap(void *p, size_t size) {
  if (munmap(p, size) != 0) la_warn("munmap(%p, %zu) failed: %s", p, size, strerror(errno));
}

/* Give the pages back; the range stays mapped and reads as zero afterwards. */
void la_os_purge(void *p, size_t size) {
  madvise(p, size, MADV_DONTNEED);
}

/* Let the kernel take the pages when it needs memory (MADV_FREE, "muzzy"):
 * until then they stay resident and may keep their contents.  Kernels
 * without MADV_FREE get MADV_DONTNEED. */
void la_os_purge_lazy(void *p, size_t size) {
  if (madvise(p, size, MADV_FREE) != 0) madvise(p, size, MADV_DONTNEED);
}

/* The PMD (huge page) size, read once from /sys; 0 if THP is unavailable.
 * Raw system calls: libc's open/read are cancellation points, and this runs
 * inside free() when the freeing thread purges. */
size_t la_os_hugepage_size(void) {
  static size_t cached = (size_t)-1;
  if (cached != (size_t)-1) return cached;
  size_t size = 0;
  int fd = (int)syscall(SYS_openat, AT_FDCWD, "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size",
                        O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[32];
    ssize_t n = syscall(SYS_read, fd, buf, sizeof buf - 1);
    syscall(SYS_close, fd);
    if (n > 0) {
      buf[n] = 0;
      size = (size_t)strtoull(buf, NULL, 10);
    }
  }
  cached = size;
  return size;
}

void la_os_advise_thp(void *p, size_t size, int thp_mode) {
  if (thp_mode == LA_THP_ALWAYS) madvise(p, size, MADV_HUGEPAGE);
  else if (thp_mode == LA_THP_NEVER) madvise(p, size, MADV_NOHUGEPAGE);
}

/* Move the pages of [old, old+old_size) to `dest` (already reserved by us)
 * and grow the range to new_size, without copying: the kernel moves page
 * table entries.  Returns dest, or NULL if the kernel refuses. */
void *la_os_remap_to(void *old, size_t old_size, size_t new_size, void *dest) {
  void *p = mremap(old, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
  return p == MAP_FAILED ? NULL : p;
}

/* Grow a mapping where it stands; false if the address range after it is
 * taken. */
bool la_os_extend_in_place(void *p, size_t old_size, size_t new_size) {
  return mremap(p, old_size, new_size, 0) != MAP_FAILED;
}

/* The clock decay runs on.  Tests replace it to drive decay
 * deterministically (la_os_set_clock). */
static uint64_t (*clock_override)(void);

void la_os_set_clock(uint64_t (*now_ns)(void)) {
  clock_override = now_ns;
}

static uint64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t la_now_ns(void) {
  return clock_override ? clock_override() : clock_ns(CLOCK_MONOTONIC);
}

/* A clock read a thousand times a second costs nothing worth counting;
 * one read on every allocation slow path does (the quiet start polls it
 * there for a whole second).  The coarse clock is a load from the vDSO page,
 * a few nanoseconds, against tens for the TSC-based one, and its tick
 * (1-4 ms) is far finer than what it is used for. */
uint64_t la_now_coarse_ns(void) {
  return clock_ns(CLOCK_MONOTONIC_COARSE);
}

unsigned la_os_ncpus(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return (unsigned)n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (unsigned)n : 1;
}

/* environ is set by libc's own initialisation; an allocation made earlier
 * (by the dynamic loader) sees it NULL and options are read again later. */
bool la_os_environ_ready(void) {
  return environ != NULL;
}

const char *la_os_getenv(const char *name) {
  if (!environ) return NULL;
  size_t len = strlen(name);
  for (char **e = environ; *e; e++)
    if (strncmp(*e, name, len) == 0 && (*e)[len] == '=') return *e + len + 1;
  return NULL;
}

void la_os_write_stderr(const char *s, size_t len) {
  while (len > 0) {
    ssize_t n = write(STDERR_FILENO, s, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    s += n;
    len -= (size_t)n;
  }
}

static void vmessage(const char *prefix, const char *fmt, va_list ap) {
  char buf[512];
  int saved = errno;
  int n = snprintf(buf, sizeof buf, "liballoc: %s", prefix);
  if (n < 0) n = 0;
  int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
  if (m < 0) m = 0;
  size_t len = (size_t)n + (size_t)m;
  if (len > sizeof buf - 2) len = sizeof buf - 2;
  buf[len++] = '\n';
  la_os_write_stderr(buf, len);
  errno = saved;
}

void la_warn(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage("warning: ", fmt, ap);
  va_end(ap);
}

void la_fatal(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage("fatal: ", fmt, ap);
  va_end(ap);
  abort();
}

/* ---- background threads ---------------------------------------------------- */

/* A condition variable whose timed waits take CLOCK_MONOTONIC deadlines
 * (la_now_ns), so a change of the wall clock does not move them. */
void la_os_cond_init_monotonic(pthread_cond_t *cond) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(cond, &ca);
  pthread_condattr_destroy(&ca);
}

/* Start one of liballoc's own threads: detached (it ends by itself), with a
 * small stack, every signal blocked (signals are the program's business),
 * and a name for ps/top.  Returns 0 or pthread_create's error. */
int la_os_start_thread(void *(*fn)(void *), size_t stack, const char *name) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, stack);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  int err = pthread_create(&t, &attr, fn, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (!err) pthread_setname_np(t, name);
  return err;
}
