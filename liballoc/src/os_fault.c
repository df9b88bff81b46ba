/* os_fault.c - system calls that fail on purpose, for tests.
 *
 * Every system call liballoc makes goes through the OS layer (os.c,
 * os_file.c), and each wrapper first asks la_os_fault(kind) whether this
 * call must fail.  Tests arm a kind to fail its Nth call from now, or each
 * call with a probability, with a chosen errno; the wrapper then returns
 * what the kernel returns on that error without making the call.  That is
 * how the allocator's answer to a kernel that says no (mlockall making
 * madvise fail, max_map_count making munmap fail, a full /dev/shm) is
 * tested on every kind of call, in every workload, without root.
 *
 * Disarmed (always, unless a test arms it), the check is one relaxed load
 * of a flag in front of a system call.  Armed from the environment with
 * ALLOC_FAULTS, e.g.
 *
 *   ALLOC_FAULTS=madvise:p=1:EINVAL,munmap:nth=3:ENOMEM,open:p=0.5
 *
 * kinds: mmap munmap mremap madvise mincore open read write file; nth=N fails the
 * Nth call of the kind (once), p=F fails each call with probability F
 * (0..1); the errno defaults to the kind's usual one.  A set-id process
 * never reads it (la_os_getenv reads no environment in secure mode).
 * Parsing uses no heap memory: it runs inside malloc's start-up. */
#include "alloc_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct fault_s {
  _Atomic uint64_t calls;      /* calls of the kind since it was armed */
  uint64_t nth;                /* fail call number nth (1-based); 0: none */
  uint32_t ppm;                /* fail each call with probability ppm/1e6 */
  int err;                     /* errno of a failed call */
  _Atomic uint64_t injected;   /* failures injected since it was armed */
} fault_t;

atomic_bool la_os_faults_armed;
static fault_t faults[LA_OS_NCALLS];
static _Atomic uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static const char *const kind_names[LA_OS_NCALLS] = {
  [LA_OS_MMAP] = "mmap",       [LA_OS_MUNMAP] = "munmap",   [LA_OS_MREMAP] = "mremap",
  [LA_OS_MADVISE] = "madvise", [LA_OS_MINCORE] = "mincore", [LA_OS_OPEN] = "open",
  [LA_OS_READ] = "read",       [LA_OS_WRITE] = "write",     [LA_OS_FILE] = "file",
};

/* What the kernel would say for the kind when nothing else is asked. */
static const int default_errno[LA_OS_NCALLS] = {
  [LA_OS_MMAP] = ENOMEM,  [LA_OS_MUNMAP] = ENOMEM, [LA_OS_MREMAP] = ENOMEM, [LA_OS_MADVISE] = EINVAL,
  [LA_OS_MINCORE] = ENOMEM, [LA_OS_OPEN] = EACCES, [LA_OS_READ] = EIO,      [LA_OS_WRITE] = ENOSPC,
  [LA_OS_FILE] = EIO,
};

const char *la_os_call_name(enum la_os_call call) { return kind_names[call]; }

/* splitmix64 over a shared counter: good enough to spread failures, and
 * lock-free for the threads of a stress test. */
static uint64_t next_random(void) {
  uint64_t z = atomic_fetch_add_explicit(&rng_state, 0x9e3779b97f4a7c15ull, memory_order_relaxed);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

bool la_os_fault_hit_slow(enum la_os_call call) {
  fault_t *f = &faults[call];
  uint64_t n = atomic_fetch_add_explicit(&f->calls, 1, memory_order_relaxed) + 1;
  bool fail = (f->nth && n == f->nth) || (f->ppm && next_random() % 1000000u < f->ppm);
  if (!fail) return false;
  atomic_fetch_add_explicit(&f->injected, 1, memory_order_relaxed);
  errno = f->err;
  return true;
}

static void rearm(void) {
  bool any = false;
  for (unsigned k = 0; k < LA_OS_NCALLS; k++) any |= faults[k].nth || faults[k].ppm;
  atomic_store(&la_os_faults_armed, any);
}

/* Fail call number `nth` of the kind from now (0: none) and each call with
 * probability ppm/1e6, with errno `err` (0: the kind's usual one).  Not
 * meant to be called while other threads make calls of that kind. */
void la_os_fault_set(enum la_os_call call, uint64_t nth, uint32_t ppm, int err) {
  fault_t *f = &faults[call];
  atomic_store(&f->calls, 0);
  atomic_store(&f->injected, 0);
  f->nth = nth;
  f->ppm = ppm > 1000000u ? 1000000u : ppm;
  f->err = err ? err : default_errno[call];
  rearm();
}

/* Every kind back to the kernel's own answers. */
void la_os_fault_clear(void) {
  atomic_store(&la_os_faults_armed, false);
  for (unsigned k = 0; k < LA_OS_NCALLS; k++) {
    faults[k].nth = 0;
    faults[k].ppm = 0;
  }
}

uint64_t la_os_fault_injected(enum la_os_call call) {
  return atomic_load_explicit(&faults[call].injected, memory_order_relaxed);
}

/* ---- ALLOC_FAULTS ----------------------------------------------------------- */

static const struct { const char *name; int value; } errno_names[] = {
  {"ENOMEM", ENOMEM}, {"EINVAL", EINVAL}, {"EAGAIN", EAGAIN}, {"EACCES", EACCES}, {"EPERM", EPERM},
  {"ENOSPC", ENOSPC}, {"EIO", EIO},       {"EEXIST", EEXIST}, {"EINTR", EINTR},   {"EBUSY", EBUSY},
  {"EMFILE", EMFILE}, {"ENOENT", ENOENT}, {"EDQUOT", EDQUOT}, {"EFAULT", EFAULT},
};

static bool word_is(const char *s, size_t len, const char *word) {
  return strlen(word) == len && memcmp(s, word, len) == 0;
}

static int parse_kind(const char *s, size_t len) {
  for (int k = 0; k < LA_OS_NCALLS; k++)
    if (word_is(s, len, kind_names[k])) return k;
  return -1;
}

static int parse_errno(const char *s, size_t len) {
  for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++)
    if (word_is(s, len, errno_names[i].name)) return errno_names[i].value;
  return -1;
}

/* "nth=N" or "p=F" with F in [0, 1], as ppm; false if malformed. */
static bool parse_trigger(const char *s, size_t len, uint64_t *nth, uint32_t *ppm) {
  char buf[32];
  if (len < 3 || len >= sizeof buf) return false;
  memcpy(buf, s, len);
  buf[len] = 0;
  char *end;
  if (strncmp(buf, "nth=", 4) == 0) {
    unsigned long long n = strtoull(buf + 4, &end, 10);
    if (*end || n == 0) return false;
    *nth = n;
    return true;
  }
  if (strncmp(buf, "p=", 2) == 0) {
    double p = strtod(buf + 2, &end);
    if (*end || !(p >= 0 && p <= 1)) return false;
    *ppm = (uint32_t)(p * 1000000.0 + 0.5);
    return true;
  }
  return false;
}

/* One entry "kind:trigger[:ERRNO]"; false if malformed. */
static bool parse_entry(const char *s, size_t len) {
  const char *c1 = memchr(s, ':', len);
  if (!c1) return false;
  int kind = parse_kind(s, (size_t)(c1 - s));
  const char *t = c1 + 1, *end = s + len;
  const char *c2 = memchr(t, ':', (size_t)(end - t));
  uint64_t nth = 0;
  uint32_t ppm = 0;
  int err = 0;
  if (kind < 0 || !parse_trigger(t, (size_t)((c2 ? c2 : end) - t), &nth, &ppm)) return false;
  if (c2 && (err = parse_errno(c2 + 1, (size_t)(end - c2 - 1))) < 0) return false;
  la_os_fault_set((enum la_os_call)kind, nth, ppm, err);
  return true;
}

/* Arm the faults ALLOC_FAULTS asks for; malformed entries are reported and
 * skipped, like ALLOC_CONF's. */
void la_os_faults_init(void) {
  const char *spec = la_os_getenv("ALLOC_FAULTS");
  for (const char *p = spec; p && *p;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len && !parse_entry(p, len)) la_warn("ALLOC_FAULTS: malformed entry '%.*s', ignored", (int)len, p);
    p = comma ? comma + 1 : NULL;
  }
}
