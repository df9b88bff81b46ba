/* stress_common.c - the helpers declared in stress.h: scaling, sizes,
 * patterns, tagged blocks, the exchange, failure recording and the cmocka
 * plumbing (liballoc check, trim teardown) shared by every stress binary. */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stress.h"

/* ---- scaling -------------------------------------------------------------- */

#ifdef ALLOC_TEST_DIRECT
/* ASan + UBSan on both the allocator and the tests: about 4x slower. */
#define STRESS_DEFAULT_SCALE 0.25
#else
#define STRESS_DEFAULT_SCALE 1.0
#endif

double stress_scale(void)
{
  static double scale;  /* 0 until computed; racing first calls agree */
  if (scale > 0)
    return scale;
  double s = STRESS_DEFAULT_SCALE;
  const char *env = getenv("ALLOC_STRESS_SCALE");
  if (env && *env) {
    char *end;
    double v = strtod(env, &end);
    if (end != env && v > 0 && v <= 1000)
      s = v;
    else
      fprintf(stderr, "stress: ignoring ALLOC_STRESS_SCALE=%s (want a factor in (0, 1000])\n", env);
  }
  scale = s;
  return scale;
}

size_t stress_count(size_t n, size_t floor)
{
  double v = (double)n * stress_scale();
  size_t c = (size_t)v;
  if (c < floor)
    c = floor;
  return c ? c : 1;
}

/* ---- sizes ------------------------------------------------------------------ */

/* Sizes where allocators change behaviour: powers of two up to 8 MiB (class
 * and slab edges, liballoc's 64 KiB units, 2 MiB largest class, 4 MiB
 * segments), each of which is also tried one byte either side. */
static size_t boundary_size(stress_rng *rng, size_t max)
{
  unsigned shift = 3 + (unsigned)stress_rng_below(rng, 21);  /* 8 B .. 8 MiB */
  size_t s = (size_t)1 << shift;
  switch (stress_rng_below(rng, 3)) {
  case 0: s -= 1; break;
  case 1: s += 1; break;
  default: break;
  }
  while (s > max)
    s >>= 1;
  return s < 8 ? 8 : s;
}

size_t stress_size_skewed(stress_rng *rng, size_t max)
{
  uint64_t r = stress_rng_below(rng, 1024);
  if (r < 32)
    return boundary_size(rng, max);
  size_t lo, hi;
  if (r < 750) {
    lo = 8; hi = 256;
  } else if (r < 960) {
    lo = 257; hi = 4096;
  } else if (r < 1010) {
    lo = 4097; hi = 64 * STRESS_KIB;
  } else {
    lo = 64 * STRESS_KIB + 1; hi = max;
  }
  if (hi > max)
    hi = max;
  if (lo > hi)
    lo = hi < 8 ? hi : 8;
  return stress_rng_range(rng, lo, hi);
}

size_t stress_size_log_skewed(stress_rng *rng, size_t lo, size_t hi)
{
  /* u^3 with u uniform in [0,1) puts most of the mass near 0; the size is
   * lo * (hi/lo)^(u^3), computed by bits to avoid libm. */
  double u = (double)(stress_rng_next(rng) >> 11) / 9007199254740992.0;
  double t = u * u * u;
  unsigned span = 0;
  while ((lo << (span + 1)) <= hi && span < 62)
    span++;
  double bits = t * span;
  unsigned whole = (unsigned)bits;
  double frac = bits - whole;
  size_t base = lo << whole;
  size_t s = base + (size_t)((double)base * frac);  /* linear within a doubling */
  s += stress_rng_below(rng, 4096);                  /* not always page-sized */
  return s > hi ? hi : s;
}

size_t stress_alignment(stress_rng *rng, size_t min, size_t max)
{
  unsigned lo = (unsigned)__builtin_ctzl(min), hi = (unsigned)__builtin_ctzl(max);
  unsigned span = hi - lo + 1;
  /* Half of the draws from the lower half of the exponents. */
  unsigned e = stress_rng_below(rng, 2) ? (unsigned)stress_rng_below(rng, (span + 1) / 2)
                                        : (unsigned)stress_rng_below(rng, span);
  return (size_t)1 << (lo + e);
}

uint64_t stress_fresh_seed(stress_rng *rng)
{
  static atomic_uint_fast64_t counter;
  return stress_mix(stress_rng_next(rng) ^ (atomic_fetch_add(&counter, 1) << 1));
}

/* ---- failures --------------------------------------------------------------- */

static atomic_uint failures;
static atomic_uint printed;

#define STRESS_MAX_PRINTED 20

static void write_all(int fd, const char *s, size_t n)
{
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w <= 0) {
      if (w < 0 && errno == EINTR)
        continue;
      return;
    }
    s += w;
    n -= (size_t)w;
  }
}

static void vwrite_line(const char *prefix, const char *fmt, va_list ap)
{
  char buf[512];
  int n = snprintf(buf, sizeof buf, "%s", prefix);
  if (n < 0)
    return;
  int m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
  if (m < 0)
    return;
  size_t len = (size_t)n + (size_t)m;
  if (len > sizeof buf - 2)
    len = sizeof buf - 2;
  buf[len++] = '\n';
  write_all(2, buf, len);
}

void stress_fail(const char *fmt, ...)
{
  atomic_fetch_add(&failures, 1);
  if (atomic_fetch_add(&printed, 1) >= STRESS_MAX_PRINTED)
    return;
  va_list ap;
  va_start(ap, fmt);
  vwrite_line("stress: FAIL: ", fmt, ap);
  va_end(ap);
}

unsigned stress_take_failures(void)
{
  return atomic_exchange(&failures, 0);
}

unsigned stress_failure_count(void)
{
  return atomic_load(&failures);
}

void stress_reset_failures(void)
{
  atomic_store(&failures, 0);
  atomic_store(&printed, 0);
}

void stress_note(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vwrite_line("stress: ", fmt, ap);
  va_end(ap);
}

double stress_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- patterns ---------------------------------------------------------------- */

/* An unaligned, aliasing 64-bit access: blocks of odd sizes are filled word
 * by word from their start, whatever the alignment the allocator gave, and
 * without memcpy (which -fno-builtin would turn into calls). */
typedef uint64_t u64_unaligned __attribute__((aligned(1), may_alias));

/* Word at byte offset `off` (a multiple of 8) of the pattern of `seed`.  One
 * multiply and a shift: cheap enough to fill megabytes, and distinct seeds or
 * offsets give distinct words. */
static inline uint64_t pattern_word(uint64_t seed, size_t off)
{
  uint64_t x = seed ^ ((uint64_t)off * 0x9e3779b97f4a7c15ULL);
  return x ^ (x >> 29);
}

/* Blocks up to this size are filled completely. */
#define PATTERN_FULL_MAX (16 * STRESS_KIB)
/* Bigger blocks: this many bytes at each end, plus a word every stride. */
#define PATTERN_EDGE 512

static size_t pattern_stride(size_t n)
{
  if (n <= PATTERN_FULL_MAX)
    return 8;
  if (n <= STRESS_MIB)
    return 256;
  if (n <= 16 * STRESS_MIB)
    return 4096;      /* every page */
  return 16384;       /* every 4th page: bounds RSS of 64 MiB blocks */
}

/* One pass over a block's pattern, writing or checking it.  `limit` cuts
 * off the range (for the prefix of a realloc'ed block).  A word cut short by
 * the end of the block or by the limit holds the first bytes of the full
 * word, as stored in memory. */
typedef struct {
  unsigned char *base;
  uint64_t seed;
  size_t limit;
  bool check;
  bool ok;
  const char *who;
  size_t n;
} pattern_walk;

static void report_mismatch(pattern_walk *w, size_t off, unsigned have, unsigned want)
{
  stress_fail("%s: block %p (%zu bytes): byte %zu is 0x%02x, expected 0x%02x",
              w->who ? w->who : "?", (void *)w->base, w->n, off, have, want);
  w->ok = false;
}

#define PATTERN_STEP (8 * 0x9e3779b97f4a7c15ULL)  /* multiplier of the next word */

/* Store the whole words of [from, to): the multiply of pattern_word is
 * replaced by an addition per word, which the compiler can vectorise. */
static size_t fill_words(unsigned char *base, uint64_t seed, size_t from, size_t to)
{
  uint64_t m = (uint64_t)from * 0x9e3779b97f4a7c15ULL;
  size_t o = from;
  for (; o + 8 <= to; o += 8, m += PATTERN_STEP) {
    uint64_t x = seed ^ m;
    *(u64_unaligned *)(base + o) = x ^ (x >> 29);
  }
  return o;
}

/* Offset of the first whole word of [from, to) that differs, or the offset
 * after the last whole word if none does. */
static size_t check_words(const unsigned char *base, uint64_t seed, size_t from, size_t to,
                          bool *bad)
{
  uint64_t m = (uint64_t)from * 0x9e3779b97f4a7c15ULL;
  size_t o = from;
  for (; o + 8 <= to; o += 8, m += PATTERN_STEP) {
    uint64_t x = seed ^ m;
    if (*(const u64_unaligned *)(base + o) != (x ^ (x >> 29))) {
      *bad = true;
      return o;
    }
  }
  return o;
}

static void walk_range(pattern_walk *w, size_t from, size_t to)
{
  if (to > w->limit)
    to = w->limit;
  if (from >= to)
    return;
  bool bad = false;
  size_t o = w->check ? check_words(w->base, w->seed, from, to, &bad)
                      : fill_words(w->base, w->seed, from, to);
  /* A bad word, or a partial last word: byte by byte. */
  if (o < to) {
    unsigned char bytes[8];
    *(u64_unaligned *)bytes = pattern_word(w->seed, o);  /* memory order */
    for (size_t i = 0; i < 8 && o + i < to; i++) {
      unsigned char b = bytes[i];
      if (!w->check) {
        w->base[o + i] = b;
      } else if (w->base[o + i] != b) {
        report_mismatch(w, o + i, w->base[o + i], b);
        return;
      }
    }
    if (bad) /* the word differs, yet no byte did: cannot happen */
      report_mismatch(w, o, 0, 0);
  }
}

/* Visit the bytes the pattern of an n-byte block consists of. */
static void walk_pattern(pattern_walk *w, size_t n)
{
  size_t stride = pattern_stride(n);
  if (stride == 8) {
    walk_range(w, 0, n);
    return;
  }
  walk_range(w, 0, PATTERN_EDGE);
  for (size_t o = PATTERN_EDGE; o + 8 <= n - PATTERN_EDGE && w->ok; o += stride)
    walk_range(w, o, o + 8);
  if (w->ok)
    walk_range(w, (n - PATTERN_EDGE) & ~(size_t)7, n);
}

void stress_pattern_fill(void *p, size_t n, uint64_t seed)
{
  pattern_walk w = {.base = p, .seed = seed, .limit = n, .check = false, .ok = true, .n = n};
  walk_pattern(&w, n);
}

bool stress_pattern_check_prefix(const void *p, size_t n, uint64_t seed, size_t limit,
                                 const char *who)
{
  pattern_walk w = {.base = (unsigned char *)p, .seed = seed, .limit = limit < n ? limit : n,
                    .check = true, .ok = true, .who = who, .n = n};
  walk_pattern(&w, n);
  return w.ok;
}

static bool zero_range(const unsigned char *p, size_t from, size_t to, size_t step,
                       const char *who, size_t n)
{
  for (size_t o = from; o < to; o += step)
    if (p[o] != 0) {
      stress_fail("%s: calloc'ed block %p (%zu bytes): byte %zu is 0x%02x, not zero",
                  who, (const void *)p, n, o, p[o]);
      return false;
    }
  return true;
}

bool stress_check_zero(const void *p, size_t n, const char *who)
{
  const unsigned char *b = p;
  if (n <= 64 * STRESS_KIB)
    return zero_range(b, 0, n, 1, who, n);
  /* Allocators that recycle memory for calloc get the first words (free-list
   * links) or whole pages wrong: check both ends byte by byte, sample the
   * middle. */
  return zero_range(b, 0, 4096, 1, who, n) && zero_range(b, n - 4096, n, 1, who, n) &&
         zero_range(b, 4096, n - 4096, 64, who, n);
}

bool stress_check_alignment(const void *p, size_t align, const char *who)
{
  if (((uintptr_t)p & (align - 1)) == 0)
    return true;
  stress_fail("%s: %p is not aligned to %zu", who, p, align);
  return false;
}

/* ---- tagged blocks ------------------------------------------------------------ */

/* Sizes above this in a header mean the header was overwritten. */
#define TAG_SIZE_MAX (4 * STRESS_GIB)

void stress_tag_fill(const stress_block *b)
{
  u64_unaligned *h = b->p;
  h[0] = b->size;
  h[1] = b->seed;
  stress_pattern_fill((unsigned char *)b->p + STRESS_TAG_MIN, b->size - STRESS_TAG_MIN, b->seed);
}

bool stress_tag_check(const void *p, const char *who)
{
  const u64_unaligned *h = p;
  uint64_t size = h[0], seed = h[1];
  if (size < STRESS_TAG_MIN || size > TAG_SIZE_MAX) {
    stress_fail("%s: tagged block %p has an impossible size %llu in its header", who, p,
                (unsigned long long)size);
    return false;
  }
  return stress_pattern_check((const unsigned char *)p + STRESS_TAG_MIN,
                              size - STRESS_TAG_MIN, seed, who);
}

/* ---- exchange ------------------------------------------------------------------ */

static void check_and_free_tagged(stress_exchange *x, void *p)
{
  stress_tag_check(p, "exchange");
  free(p);
  atomic_fetch_add_explicit(&x->freed, 1, memory_order_relaxed);
}

void stress_exchange_put(stress_exchange *x, void *p, uint64_t r)
{
  /* acq_rel: the block's contents written before the put are visible to the
   * thread that takes it, and ours see what the previous owner wrote. */
  void *old = atomic_exchange_explicit(&x->slot[r % STRESS_EXCHANGE_SLOTS], p,
                                       memory_order_acq_rel);
  if (old)
    check_and_free_tagged(x, old);
}

size_t stress_exchange_drain(stress_exchange *x)
{
  size_t n = 0;
  for (size_t i = 0; i < STRESS_EXCHANGE_SLOTS; i++) {
    void *old = atomic_exchange_explicit(&x->slot[i], NULL, memory_order_acq_rel);
    if (old) {
      check_and_free_tagged(x, old);
      n++;
    }
  }
  return n;
}

/* ---- threads --------------------------------------------------------------------- */

void stress_run_threads(size_t n, void *(*fn)(void *), void *args, size_t arg_size)
{
  pthread_t tids[n];
  bool started[n];
  for (size_t i = 0; i < n; i++) {
    int rc = pthread_create(&tids[i], NULL, fn, (char *)args + i * arg_size);
    started[i] = rc == 0;
    if (rc != 0)
      stress_fail("pthread_create: %s", strerror(rc));
  }
  for (size_t i = 0; i < n; i++)
    if (started[i])
      pthread_join(tids[i], NULL);
}

/* ---- cmocka plumbing ----------------------------------------------------------- */

bool stress_require_liballoc(const char *program)
{
#ifdef ALLOC_TEST_DIRECT
  (void)program;
  return true;  /* the la_* entry points are linked in: nothing to check */
#else
  const char *sys = getenv("ALLOC_STRESS_SYSTEM_MALLOC");
  if (sys && *sys && strcmp(sys, "0") != 0) {
    stress_note("%s: ALLOC_STRESS_SYSTEM_MALLOC set: testing the system allocator", program);
    return true;
  }
  void *ctl = dlsym(RTLD_DEFAULT, "alloc_ctl");
  if (!ctl) {
    fprintf(stderr,
            "%s: liballoc is not the active allocator (alloc_ctl not found); run it with "
            "LD_PRELOAD=liballoc.so, or set ALLOC_STRESS_SYSTEM_MALLOC=1 to test the "
            "system allocator\n",
            program);
    return false;
  }
  /* alloc_ctl could come from a library that is loaded but does not
   * interpose: malloc must resolve into the same object. */
  Dl_info ctl_info, malloc_info;
  void *m = dlsym(RTLD_DEFAULT, "malloc");
  if (!m || !dladdr(ctl, &ctl_info) || !dladdr(m, &malloc_info) ||
      !ctl_info.dli_fname || !malloc_info.dli_fname ||
      strcmp(ctl_info.dli_fname, malloc_info.dli_fname) != 0) {
    fprintf(stderr, "%s: malloc resolves to %s, but alloc_ctl to %s\n", program,
            m && dladdr(m, &malloc_info) ? malloc_info.dli_fname : "(nothing)",
            dladdr(ctl, &ctl_info) ? ctl_info.dli_fname : "(nothing)");
    return false;
  }
  return true;
#endif
}

int stress_teardown_trim(void **state)
{
  (void)state;
  malloc_trim(0);
  /* After a trim returned pages to the system, every path must still work:
   * small classes, large classes, huge mappings. */
  static const size_t sizes[] = {1, 16, 24, 100, 1000, 4096, 5000, 70000, 300000,
                                 2 * STRESS_MIB + 1, 5 * STRESS_MIB};
  stress_rng rng;
  stress_rng_seed(&rng, 42);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    stress_block b = {.p = malloc(sizes[i]), .size = sizes[i], .seed = stress_fresh_seed(&rng)};
    if (!b.p) {
      stress_fail("teardown: malloc(%zu) after malloc_trim(0) returned NULL", b.size);
      continue;
    }
    stress_block_fill(&b);
    stress_block_check(&b, "teardown");
    free(b.p);
  }
  malloc_trim(0);
  unsigned f = stress_take_failures();
  if (f)
    fprintf(stderr, "stress: teardown: %u failure(s) after malloc_trim(0)\n", f);
  return f ? -1 : 0;
}
