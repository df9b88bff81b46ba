/* os.c - the OS layer: liballoc talks to the kernel only through here and
 * os_file.c (files), so that every call can be made to fail in tests
 * (os_fault.c) and every failure is handled in one place.
 *
 * Mapping, unmapping and advising memory, the clocks, the page size, the
 * CPU count, the environment, stderr and liballoc's own threads.  Nothing
 * here allocates: these functions run inside malloc, before main, and
 * inside fork handlers. */
#include "alloc_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <link.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

size_t la_page_size = 4096;

extern char **environ;

static void find_vdso_clock(void);

void la_os_init(void) {
  unsigned long ps = getauxval(AT_PAGESZ);
  if (ps == 0) ps = (unsigned long)sysconf(_SC_PAGESIZE);
  la_page_size = ps ? ps : 4096;
  find_vdso_clock();
}

/* ---- memory -----------------------------------------------------------------
 * Each wrapper asks la_os_fault first (os_fault.c), and reports what the
 * kernel did: callers account for memory by what happened, never by what
 * they asked for.  Calls that free or advise memory keep errno as it was:
 * they run inside free(), which must not change it. */

/* Failed calls that give memory back (madvise, munmap): their pages stay
 * mapped and resident, and are counted as such (stats purge_failures). */
atomic_size_t la_os_release_failures;

static void release_failed(void) {
  atomic_fetch_add_explicit(&la_os_release_failures, 1, memory_order_relaxed);
}

/* Returns NULL (errno ENOMEM) on failure; never exits.  No MAP_NORESERVE:
 * the kernel's overcommit policy must be able to refuse an impossible
 * request here, so that malloc fails with ENOMEM instead of the process
 * being killed later. */
void *la_os_map(size_t size) {
  void *p = la_os_fault(LA_OS_MMAP) ? MAP_FAILED
                                    : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    errno = ENOMEM;
    return NULL;
  }
  return p;
}

/* Below the last aligned mapping: where the next one is tried first. */
static _Atomic uintptr_t aligned_hint;

/* `size` bytes at exactly `at`, or NULL: nothing there is replaced (a
 * kernel older than MAP_FIXED_NOREPLACE takes `at` as a mere hint, and a
 * mapping it puts elsewhere is given back). */
static void *map_exactly(uintptr_t at, size_t size) {
  if (la_os_fault(LA_OS_MMAP)) return NULL;
  void *p = mmap((void *)at, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) return NULL;
  if ((uintptr_t)p == at) return p;
  la_os_unmap(p, size);
  return NULL;
}

/* A mapping of `size` bytes starting at a multiple of `align` (a power of
 * two >= the page size).  First right below the previous one, at an aligned
 * address: the kernel hands out addresses downwards, so that place is
 * usually free, and one mmap does (the other way takes three: /bin/true
 * under liballoc made 2 of its 19 system calls munmap for this).  Else
 * over-map, then give back the misaligned ends.  An end the kernel does not
 * take back stays mapped and unused: address space, not memory, since it
 * was never touched. */
void *la_os_map_aligned(size_t size, size_t align) {
  if (size + align < size) {
    errno = ENOMEM;
    return NULL;
  }
  uintptr_t hint = atomic_load_explicit(&aligned_hint, memory_order_relaxed);
  if (hint > size) {
    uintptr_t at = (hint - size) & ~(uintptr_t)(align - 1);
    void *p = at ? map_exactly(at, size) : NULL;
    if (p) {
      atomic_store_explicit(&aligned_hint, at, memory_order_relaxed);
      return p;
    }
  }
  uint8_t *raw = la_os_map(size + align);
  if (!raw) return NULL;
  uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
  size_t head = start - (uintptr_t)raw;
  size_t tail = align - head;
  if (head) la_os_unmap(raw, head);
  if (tail) la_os_unmap((uint8_t *)start + size, tail);
  atomic_store_explicit(&aligned_hint, start, memory_order_relaxed);
  return (void *)start;
}

/* True if the range is unmapped.  On failure (the kernel could not split a
 * mapping: max_map_count) the range stays mapped as it was. */
bool la_os_unmap(void *p, size_t size) {
  int saved = errno;
  bool ok = !la_os_fault(LA_OS_MUNMAP) && munmap(p, size) == 0;
  if (!ok) release_failed();
  errno = saved;
  return ok;
}

static bool advise(void *p, size_t size, int advice) {
  return !la_os_fault(LA_OS_MADVISE) && madvise(p, size, advice) == 0;
}

/* Give the pages back; the range stays mapped and reads as zero afterwards.
 * False if the kernel refused (locked pages under mlockall: EINVAL), in
 * which case the pages keep their contents and stay resident. */
bool la_os_purge(void *p, size_t size) {
  int saved = errno;
  bool ok = advise(p, size, MADV_DONTNEED);
  if (!ok) release_failed();
  errno = saved;
  return ok;
}

/* Let the kernel take the pages when it needs memory (MADV_FREE, "muzzy"):
 * until then they stay resident and may keep their contents.  Kernels
 * without MADV_FREE get MADV_DONTNEED.  False if neither was done. */
bool la_os_purge_lazy(void *p, size_t size) {
  int saved = errno;
  bool ok = advise(p, size, MADV_FREE) || advise(p, size, MADV_DONTNEED);
  if (!ok) release_failed();
  errno = saved;
  return ok;
}

/* Give back n ranges with one system call, from one of liballoc's own
 * threads.  Each madvise of a multi-threaded process's memory makes the
 * kernel interrupt every other CPU the process runs on to flush its TLB
 * (a shootdown): 12 us a call on this project's 2-CPU virtual machines
 * against 1.1 us with the process alone, so a purger giving back 16 runs
 * cost 200 us.  process_madvise on the process's own memory takes a
 * vector of ranges, and recent kernels flush once for all of them (Linux
 * 6.18 here: 1.2 us a range; unit_segment prints whether the machine's
 * kernel takes the call).  Returns how many of the ranges, from the
 * first, were given back; the caller gives back the others one by one.
 *
 * Only liballoc's threads (la_os_name_self marks them) make the call, and
 * only while their thread runs under no seccomp filter (read from
 * /proc/thread-self/status before each call: 11 us here, about one
 * shootdown): a program that sandboxes itself lists the system calls it
 * expects, and a filter may kill the thread on any other.  What is left
 * is a filter the program installs on every thread (TSYNC) between the
 * check and the call: with seccomp's plain kill (SECCOMP_RET_KILL_THREAD)
 * that ends the purger, not the program; only one that kills the whole
 * process (SECCOMP_RET_KILL_PROCESS) would.  A kernel that refuses the
 * call (older ones: EBADF for the pidfd, EINVAL for the advice) is not
 * asked again. */
#define LA_PIDFD_SELF_THREAD (-10000)   /* PIDFD_SELF_THREAD of recent kernels' linux/pidfd.h */
static __thread bool own_thread;
static atomic_bool batch_refused;

static bool thread_unfiltered(void) {
  char status[4096];
  if (la_os_read_file("/proc/thread-self/status", status, sizeof status) < 0) return false;
  const char *f = strstr(status, "\nSeccomp:");
  return f && strtol(f + 9, NULL, 10) == 0;
}

size_t la_os_purge_many(const struct iovec *iov, size_t n, bool lazy) {
  if (!n || !own_thread || atomic_load_explicit(&batch_refused, memory_order_relaxed)) return 0;
  /* Injected faults (os_fault.c) are per call: each range makes its own. */
  if (atomic_load_explicit(&la_os_faults_armed, memory_order_relaxed) || !thread_unfiltered()) return 0;
  int saved = errno, advice = lazy ? MADV_FREE : MADV_DONTNEED;
  long rc = syscall(SYS_process_madvise, LA_PIDFD_SELF_THREAD, iov, n, advice, 0u);
  if (rc < 0) {
    int err = errno;
    /* EINVAL is also locked pages (mlockall): then madvise refuses the
     * first range as well, and the call itself is not at fault. */
    bool call_refused = err == EINVAL ? advise(iov[0].iov_base, iov[0].iov_len, advice)
                                      : err == EBADF || err == ENOSYS || err == EPERM || err == ESRCH;
    if (call_refused) atomic_store_explicit(&batch_refused, true, memory_order_relaxed);
    errno = saved;
    return 0;   /* the caller gives back the ranges one by one */
  }
  errno = saved;
  size_t done = 0, bytes = (size_t)rc;
  while (done < n && iov[done].iov_len <= bytes) bytes -= iov[done++].iov_len;
  return done;
}

/* How many pages of [p, p+size) (page-aligned) are resident; vec, of
 * vec_len bytes, gets a byte per page saying which (bit 0).  (size_t)-1 if
 * the kernel will not say or vec is too short: callers then assume every
 * page is.  A page swapped out counts as not resident though it holds
 * data: this says where memory costs nothing more to reuse, never that it
 * reads as zero. */
size_t la_os_resident_pages(const void *p, size_t size, unsigned char *vec, size_t vec_len) {
  if (size / la_page_size > vec_len) return (size_t)-1;
  int saved = errno;
  bool ok = !la_os_fault(LA_OS_MINCORE) && mincore((void *)p, size, vec) == 0;
  errno = saved;
  if (!ok) return (size_t)-1;
  size_t n = 0, pages = size / la_page_size;
  for (size_t i = 0; i < pages; i++) n += vec[i] & 1;
  return n;
}

/* The PMD (huge page) size, read once from /sys; 0 if THP is unavailable.
 * Threads may race to read it first: they all store the same value. */
size_t la_os_hugepage_size(void) {
  static atomic_size_t cached = (size_t)-1;
  size_t size = atomic_load_explicit(&cached, memory_order_relaxed);
  if (size != (size_t)-1) return size;
  char buf[32];
  uint64_t value = 0;
  if (la_os_read_file("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", buf, sizeof buf) > 0)
    la_parse_u64(buf, NULL, &value);
  size = (size_t)value;
  atomic_store_explicit(&cached, size, memory_order_relaxed);
  return size;
}

/* A hint: failure changes nothing but the pages' size. */
void la_os_advise_thp(void *p, size_t size, int thp_mode) {
  int saved = errno;
  if (thp_mode == LA_THP_ALWAYS) advise(p, size, MADV_HUGEPAGE);
  else if (thp_mode == LA_THP_NEVER) advise(p, size, MADV_NOHUGEPAGE);
  errno = saved;
}

/* A move that failed may have unmapped its destination first (Linux
 * before 6.17 unmaps it before it checks the source): map it again.
 * Never failed on purpose (la_os_fault), since nothing could be done: if
 * the kernel will not, another thread has taken the address in between,
 * and the block being moved would be cut in two. */
static void restore_destination(void *to, size_t size) {
  unsigned char resident;
  if (mincore(to, la_page_size, &resident) == 0) return;   /* still mapped */
  if (mmap(to, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == to) return;
  la_fatal("mremap failed after unmapping %zu bytes at %p, which could not be mapped again", size, to);
}

/* Move the pages of [old, old+old_size) to `dest` (already mapped by us)
 * and grow the range to new_size, without copying: the kernel moves page
 * table entries.  Returns dest, or NULL if the kernel refuses (the program
 * split the range with mprotect or mlock, or max_map_count): then nothing
 * moved and the destination is mapped as before. */
void *la_os_remap_to(void *old, size_t old_size, size_t new_size, void *dest) {
  int saved = errno;
  bool injected = la_os_fault(LA_OS_MREMAP);
  void *p = injected ? MAP_FAILED : mremap(old, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
  if (p == MAP_FAILED && !injected) restore_destination(dest, new_size);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

/* Move the pages of [from, from + size), which may span several kernel
 * mappings (a huge block that grew into cached memory, huge.c), onto `to`,
 * which the caller has mapped: one region (LA_SEG_SIZE) at a time, since
 * mremap moves a range over several mappings only from Linux 6.17, and
 * liballoc's mappings are split only at region boundaries.  A region the
 * kernel will not move (the program split its mapping, with mprotect or
 * mlock, or max_map_count) is copied instead.  Afterwards the source range
 * is unmapped. */
void la_os_move_regions(void *from, size_t size, void *to) {
  for (size_t off = 0; off < size; off += LA_SEG_SIZE) {
    uint8_t *src = (uint8_t *)from + off, *dst = (uint8_t *)to + off;
    if (la_os_remap_to(src, LA_SEG_SIZE, LA_SEG_SIZE, dst)) continue;   /* refused: dst is mapped again */
    memcpy(dst, src, LA_SEG_SIZE);
    la_os_unmap(src, LA_SEG_SIZE);   /* both keep errno */
  }
}

/* Grow a mapping where it stands; false if the address range after it is
 * taken (or the kernel refuses).  A range over several mappings cannot be
 * extended by mremap (EFAULT): the range after it is mapped instead. */
bool la_os_extend_in_place(void *p, size_t old_size, size_t new_size) {
  int saved = errno;
  bool ok = !la_os_fault(LA_OS_MREMAP) && mremap(p, old_size, new_size, 0) != MAP_FAILED;
  if (!ok && errno == EFAULT) ok = map_exactly((uintptr_t)p + old_size, new_size - old_size) != NULL;
  errno = saved;
  return ok;
}

/* The clock decay runs on.  Tests replace it to drive decay
 * deterministically (la_os_set_clock). */
static uint64_t (*clock_override)(void);

void la_os_set_clock(uint64_t (*now_ns)(void)) {
  clock_override = now_ns;
}

/* The vDSO's clock_gettime, called directly.  libc's clock_gettime only
 * forwards to it, but that wrapper sits in a 64 KiB window of libc's text
 * that a program which reads no clock itself never touches, and the
 * kernel maps (and counts in the process's RSS) the whole window on the
 * first call.  Looked up once in the vDSO's dynamic symbols; libc's
 * wrapper when the vDSO is missing or has no such symbol. */
typedef int (*clock_fn)(clockid_t, struct timespec *);
static clock_fn vdso_clock_gettime;

static void *vdso_symbol(const char *name) {
  const uint8_t *base = (const uint8_t *)getauxval(AT_SYSINFO_EHDR);
  if (!base) return NULL;
  const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)base;
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_shentsize != sizeof(ElfW(Shdr))) return NULL;
  const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(base + eh->e_phoff);
  const ElfW(Shdr) *sh = (const ElfW(Shdr) *)(base + eh->e_shoff);
  uintptr_t bias = 0;
  for (unsigned i = 0; i < eh->e_phnum; i++)
    if (ph[i].p_type == PT_LOAD) {
      bias = (uintptr_t)base + ph[i].p_offset - ph[i].p_vaddr;
      break;
    }
  for (unsigned i = 0; i < eh->e_shnum; i++) {
    if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_link >= eh->e_shnum) continue;
    const ElfW(Sym) *sym = (const ElfW(Sym) *)(base + sh[i].sh_offset);
    const char *names = (const char *)(base + sh[sh[i].sh_link].sh_offset);
    for (size_t j = 0; j < sh[i].sh_size / sizeof *sym; j++)
      if (sym[j].st_shndx != SHN_UNDEF && ELF64_ST_TYPE(sym[j].st_info) == STT_FUNC &&
          strcmp(names + sym[j].st_name, name) == 0)
        return (void *)(bias + sym[j].st_value);
  }
  return NULL;
}

static void find_vdso_clock(void) {
  vdso_clock_gettime = (clock_fn)vdso_symbol("__vdso_clock_gettime");
}

static uint64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_fn read_clock = vdso_clock_gettime;
  if (!read_clock || read_clock(clock, &ts) != 0) clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t la_now_ns(void) {
  return clock_override ? clock_override() : clock_ns(CLOCK_MONOTONIC);
}

/* The monotonic clock itself, whatever the tests injected: the deadlines
 * of condition variables waiting on CLOCK_MONOTONIC. */
uint64_t la_os_monotonic_ns(void) {
  return clock_ns(CLOCK_MONOTONIC);
}

/* A clock read a thousand times a second costs nothing worth counting;
 * one read on every allocation slow path does (the quiet start polls it
 * there for a whole second).  The coarse clock is a load from the vDSO page,
 * a few nanoseconds, against tens for the TSC-based one, and its tick
 * (1-4 ms) is far finer than what it is used for. */
uint64_t la_now_coarse_ns(void) {
  return clock_ns(CLOCK_MONOTONIC_COARSE);
}

/* Wall-clock time, for timestamps other processes read. */
uint64_t la_os_realtime_ns(void) {
  return clock_ns(CLOCK_REALTIME);
}

/* 64 random bits the kernel gave the process at exec (AT_RANDOM), or a
 * fallback that differs between processes. */
uint64_t la_os_random64(void) {
  const uint8_t *random = (const uint8_t *)getauxval(AT_RANDOM);   /* 16 bytes */
  uint64_t r = 0x9e3779b97f4a7c15ull ^ (uintptr_t)&r;
  if (random) memcpy(&r, random + 8, sizeof r);
  return r;
}

unsigned la_os_ncpus(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  /* The system call, not libc's wrapper: the wrapper's page of libc is
   * touched by nothing else at start-up (see vdso_clock_gettime).  It
   * returns how many bytes of the mask it wrote. */
  if (syscall(SYS_sched_getaffinity, 0, sizeof set, &set) > 0) {
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

/* A set-user-ID or set-group-ID program (or one that gained capabilities)
 * runs with an environment chosen by a less privileged caller: the kernel
 * says so with AT_SECURE.  The uid/gid comparison covers a call made before
 * a statically linked libc has read the auxiliary vector. */
static bool secure_mode(void) {
  return getauxval(AT_SECURE) != 0 || getuid() != geteuid() || getgid() != getegid();
}

static const char *find_env(const char *name) {
  size_t len = strlen(name);
  for (char **e = environ; *e; e++)
    if (strncmp(*e, name, len) == 0 && (*e)[len] == '=') return *e + len + 1;
  return NULL;
}

/* Every environment variable liballoc reads comes through here.  In secure
 * mode none is taken, as glibc ignores its MALLOC_ variables there: a
 * caller could otherwise point telemetry_dir at any directory and have the
 * privileged program create files in it.  Said once per variable set. */
const char *la_os_getenv(const char *name) {
  if (!environ) return NULL;
  const char *value = find_env(name);
  if (value && secure_mode()) {
    la_warn("%s ignored: set-user-ID or set-group-ID program (AT_SECURE)", name);
    return NULL;
  }
  return value;
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

/* ---- membarrier -------------------------------------------------------------
 * A thread that reads another thread's private state without a lock (the
 * purger taking an idle heap's caches, heap.c) pairs its own full barrier
 * with one forced on every running thread of the process, so the owner's
 * side of the handshake needs only a compiler barrier.  Registration is
 * once per process (a forked child inherits it); false when the kernel has
 * no expedited private membarrier (before 4.14) or a seccomp filter refuses
 * it: the caller must then leave the other threads' state alone. */
#ifndef MEMBARRIER_CMD_PRIVATE_EXPEDITED
#define MEMBARRIER_CMD_PRIVATE_EXPEDITED (1 << 3)
#define MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED (1 << 4)
#endif

static bool membarrier_cmd(int cmd) {
#ifdef SYS_membarrier
  return syscall(SYS_membarrier, cmd, 0, 0) == 0;
#else
  (void)cmd;
  return false;
#endif
}

bool la_os_membarrier_register(void) { return membarrier_cmd(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED); }

/* Every running thread of the process has executed a full memory barrier
 * when this returns true. */
bool la_os_membarrier(void) { return membarrier_cmd(MEMBARRIER_CMD_PRIVATE_EXPEDITED); }

/* ---- threads ---------------------------------------------------------------- */

int la_os_gettid(void) { return (int)syscall(SYS_gettid); }

/* Copy `len` bytes of this process's memory at `src` that may have been
 * unmapped meanwhile (prof.c reads descriptors of blocks it did not see
 * freed): false instead of a fault.  process_vm_readv on ourselves. */
bool la_os_read_own(void *dst, const void *src, size_t len) {
  struct { void *base; size_t len; } local = {dst, len}, remote = {(void *)src, len};
  long n = syscall(SYS_process_vm_readv, (long)getpid(), &local, 1L, &remote, 1L, 0L);
  return n == (long)len;
}

/* False once thread `tid` of this process has ended (its id may have been
 * reused since by a new thread: then true, which callers take as "not
 * yet"). */
bool la_os_thread_alive(int tid) {
  int saved = errno;
  bool alive = syscall(SYS_tgkill, (long)getpid(), (long)tid, 0) == 0 || errno != ESRCH;
  errno = saved;
  return alive;
}

/* Wait (up to a second) until thread `tid` has ended: the kernel counts a
 * thread until then, whatever its code has returned.  0: none to wait for. */
void la_os_wait_thread_gone(int tid) {
  for (int i = 0; tid && i < 1000 && la_os_thread_alive(tid); i++) la_os_sleep_ms(1);
}

void la_os_sleep_ms(unsigned ms) {
  int saved = errno;
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  errno = saved;
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
 * small stack and every signal blocked (the program's handlers must never
 * run on it).  It names itself for ps/top (la_os_name_self): naming it
 * from here would cost the creating thread an open and a write in /proc.
 * Returns 0 or pthread_create's error. */
int la_os_start_thread(void *(*fn)(void *), size_t stack) {
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
  return err;
}

/* Also marks the thread as liballoc's own (la_os_purge_many). */
void la_os_name_self(const char *name) {
  own_thread = true;
  pthread_setname_np(pthread_self(), name);
}
