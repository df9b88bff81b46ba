/* prof.c - the sampled heap profiler (option `prof`): which call stacks
 * allocate, which hold memory now, and which keep free memory resident.
 *
 * Sampling.  Each thread counts requested bytes down to the next sample,
 * with exponentially distributed gaps of mean prof_sample_bytes, as
 * tcmalloc and Go do, so every allocated byte has the same chance 1/mean
 * of being the sampled one and a request of s bytes is sampled with
 * probability p = 1 - exp(-s / mean).  sample.c counts, in the entry
 * points the exported names jump to while profiling; with prof off they
 * jump to the plain ones and nothing of this runs.
 *
 * A sample records the call stack (unwind.c walks the DWARF call frame
 * information, so programs built without frame pointers work), the
 * requested size, the class and the time.  The walk allocates nothing
 * and never waits on a liballoc lock; a thread that records a sample never
 * samples again meanwhile (a thread-local guard), so nothing here
 * recurses.
 *
 * Tables, all from liballoc's metadata (counted in `metadata`), made by
 * the first sample (tables_ready) and bounded: unique stacks
 * (ALLOC_SHM_PROFILE_MAX_STACKS, their frames in one pool of
 * ALLOC_SHM_PROFILE_MAX_FRAMES), and the live samples (LIVE_MAX_SLOTS, open
 * addressing).  A sample whose stack does not fit is counted in
 * dropped_samples; one that does not fit the live table is counted as an
 * allocation only.
 *
 * Frees.  A small slab holding a live sample has no fast_owner (heap.c), so
 * its frees take the slow path, which asks la_prof_forget; other slabs pay
 * nothing.  A large block's slab descriptor carries prof_samples, checked
 * lazily (at publication, and when a block is handed out there again with
 * profiling on: la_prof_fresh); a huge block's descriptor carries
 * `sampled`.
 *
 * Switching off stops sampling and forgets the live samples (the stacks'
 * cumulative counts stay, for a last publication); switching on again
 * starts a new profile from empty tables.  fork(): the child inherits the
 * tables as they were (the sampled blocks are alive in it too).
 *
 * Publication (la_prof_publish) writes the profile area of the telemetry
 * segment as alloc_shm.h describes it, when asked for: control request or
 * alloc_ctl("prof.publish").  docs/metrics.md defines the estimates. */
#include "alloc_internal.h"

#include <errno.h>
#include <stddef.h>
#include <link.h>
#include <string.h>

/* The live sample table starts at LIVE_MIN_SLOTS and doubles up to
 * LIVE_MAX_SLOTS, at most half full: a process that samples once (a
 * short program) writes 10 KiB of it, not 1.3 MiB (330 page faults). */
#define LIVE_MIN_SLOTS (1u << 8)
#define LIVE_MAX_SLOTS (1u << 15)
#define STACK_SLOTS  (2 * ALLOC_SHM_PROFILE_MAX_STACKS)   /* hash index of the stacks, at most */
#define STACK_SLOTS_FIRST 1024                           /* and at first: one page */

enum prof_kind { PROF_SMALL, PROF_LARGE, PROF_HUGE };

typedef struct prof_stack_s {
  uint64_t hash;
  uint32_t first_frame, depth;
  uint64_t alloc_samples;
  double alloc_objects, alloc_bytes;
} prof_stack_t;

typedef struct prof_live_s {
  uintptr_t addr;          /* the block; 0: empty slot */
  uint32_t stack;          /* index into stacks */
  uint8_t kind;            /* enum prof_kind */
  uint8_t cls;
  uint64_t size;           /* requested */
  double objects;          /* 1 / p: the blocks it stands for */
  uint64_t time_ns;        /* CLOCK_REALTIME when sampled (coarse) */
} prof_live_t;

atomic_bool la_prof_sampling;   /* sampling now (heap.c, alloc.c read it) */
/* One more at each switch, stored after la_prof_sampling: a thread that
 * missed an off-and-on (it did not allocate meanwhile) still draws its
 * countdowns again, with the mean now in force. */
atomic_uint la_prof_epoch;

static pthread_mutex_t prof_lock = PTHREAD_MUTEX_INITIALIZER;     /* the tables */
static pthread_mutex_t switch_lock = PTHREAD_MUTEX_INITIALIZER;   /* on/off */
static pthread_mutex_t publish_lock = PTHREAD_MUTEX_INITIALIZER;  /* one publication at a time */

/* (prof_lock) */
static prof_stack_t *stacks;
static uint32_t *stack_index;     /* stack + 1, 0 empty */
static uint32_t index_mask;       /* its slots in use - 1 (never more than half full) */
static uint64_t *frames;
static uint32_t nstacks, nframes;
typedef struct live_table_s {
  uint32_t mask;           /* slots - 1 */
  prof_live_t slot[];
} live_table_t;
static live_table_t *live;        /* the newest: live_contains reads it without the lock */
static uint32_t nlive;
static uint64_t nsamples, ndropped, enabled_ns, sample_bytes_on;
static uint64_t profile_number;   /* the last one written */
static size_t table_bytes;        /* the profiler's metadata */
static atomic_uint live_gen;      /* odd while an entry is removed */

/* liballoc's code, found by the first sample (self_lock). */
static pthread_mutex_t self_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool self_located;
static uintptr_t self_lo, self_hi;   /* liballoc's own code: frames left out */

static __thread bool in_prof;            /* this thread is capturing: never sample */
static __thread uint64_t rng_state;

/* ---- arithmetic without libm -------------------------------------------- */

static double ln_of(double x) {   /* x > 0 */
  union { double d; uint64_t u; } v = {x};
  int e = (int)((v.u >> 52) & 0x7ff) - 1023;
  v.u = (v.u & 0x000fffffffffffffull) | 0x3ff0000000000000ull;   /* mantissa in [1, 2) */
  double t = (v.d - 1) / (v.d + 1), t2 = t * t;                     /* ln m = 2 atanh t, t <= 1/3 */
  double s = t * (1 + t2 * (1.0 / 3 + t2 * (1.0 / 5 + t2 * (1.0 / 7 + t2 * (1.0 / 9 + t2 * (1.0 / 11 + t2 / 13))))));
  return 2 * s + e * 0.6931471805599453;
}

/* e^-x for x >= 0: 2^-n e^-r with r in [0, ln 2), the series of e^-r
 * to r^15/15! (the next term is below 2^-52) in Horner's form:
 * multiplications only, where a division a term chained 17 divisions. */
static double exp_neg(double x) {
  static const double inverse_factorial[16] = {
    1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320, 1.0 / 362880,
    1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0, 1.0 / 87178291200.0,
    1.0 / 1307674368000.0,
  };
  if (x > 700) return 0;
  int n = (int)(x * 1.4426950408889634);   /* x / ln 2 */
  double r = x - n * 0.6931471805599453, sum = 0;
  if (r < 0) r = 0;
  for (int i = 15; i >= 0; i--) sum = sum * -r + inverse_factorial[i];
  union { double d; uint64_t u; } v = {.u = (uint64_t)(1023 - n) << 52};
  return sum * v.d;
}

/* Probability that a block of `s` bytes is sampled with mean gap `m`. */
double la_prof_probability(double s, double m) {
  double x = s / m;
  if (x < 1e-4) return x * (1 - x / 2 + x * x / 6);
  return 1 - exp_neg(x);
}

static uint64_t next_random(void) {
  /* Seeded per thread by where its copy of the state lives (no system
   * call: a thread's first draw is on its first allocation) and the clock. */
  if (!rng_state) rng_state = la_os_random64() ^ ((uint64_t)(uintptr_t)&rng_state * 0x9e3779b97f4a7c15ull) ^ la_now_ns();
  uint64_t x = rng_state;   /* xorshift64* */
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x ? x : 0x2545f4914f6cdd1dull;
  return x * 0x2545f4914f6cdd1dull;
}

/* An exponentially distributed gap of mean prof_sample_bytes, at least 1. */
int64_t la_prof_next_gap(void) {
  double u = ((next_random() >> 11) + 1) * (1.0 / 9007199254740993.0);   /* (0, 1] */
  double gap = -ln_of(u) * (double)la_opt.prof_sample_bytes;
  if (gap < 1) return 1;
  return gap > 4e18 ? (int64_t)4e18 : (int64_t)gap;
}

/* ---- stacks --------------------------------------------------------------- */

#if LA_HAVE_OWN_UNWINDER
struct self_search {
  uintptr_t probe, lo, hi;
  bool main_program, found;
};

static int find_self(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  struct self_search *s = arg;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (unsigned i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    uintptr_t a = info->dlpi_addr + ph->p_vaddr;
    if (a < lo) lo = a;
    if (a + ph->p_memsz > hi) hi = a + ph->p_memsz;
  }
  if (s->probe >= lo && s->probe < hi) {
    s->lo = lo;
    s->hi = hi;
    s->main_program = info->dlpi_name == NULL || info->dlpi_name[0] == 0;
    s->found = true;
    return 1;
  }
  return 0;
}

/* Where liballoc's code is, to leave its frames out of stacks.  In
 * liballoc.so, that object's executable segments.  Linked into the program
 * (liballoc.a, the unit tests) the program's code is the caller's too: the
 * range is then the span of a few liballoc functions, first to last object
 * file in link order, which covers the frames above the caller in
 * practice (docs/metrics.md says so). */
static void locate_self(void) {
  struct self_search s = {.probe = (uintptr_t)&la_malloc};
  dl_iterate_phdr(find_self, &s);
  if (s.found && !s.main_program) {
    self_lo = s.lo;
    self_hi = s.hi;
    return;
  }
  const uintptr_t fns[] = {(uintptr_t)&la_os_init, (uintptr_t)&la_malloc, (uintptr_t)&la_free,
                           (uintptr_t)&la_heap_alloc_class,
                           (uintptr_t)&la_prof_take, (uintptr_t)&la_entry_switch,
                           (uintptr_t)&la_entry_pvalloc, (uintptr_t)&la_calloc, (uintptr_t)&la_realloc,
                           (uintptr_t)&la_posix_memalign, (uintptr_t)&la_memalign, (uintptr_t)&la_control_serve};
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    if (fns[i] < lo) lo = fns[i];
    if (fns[i] > hi) hi = fns[i];
  }
  self_lo = lo;
  self_hi = hi + 4096;
}

/* The first sample finds liballoc's code (dl_iterate_phdr takes the
 * loader's lock: not at every sample). */
static void locate_self_once(void) {
  pthread_mutex_lock(&self_lock);
  if (!atomic_load(&self_located)) locate_self();
  atomic_store_explicit(&self_located, true, memory_order_release);
  pthread_mutex_unlock(&self_lock);
}

#endif

/* Frames of liballoc above the caller: at most these are left out of a
 * stack (none once the walk starts at the sampled entry point's caller,
 * the usual case; one or two where an entry point calls another: calloc,
 * posix_memalign, a slow path). */
#define SELF_FRAMES_MAX 16

/* The stack from `from` (la_sample_due's frame), innermost first, into
 * pcs (room for ALLOC_SHM_PROFILE_MAX_DEPTH + SELF_FRAMES_MAX), at most
 * ALLOC_SHM_PROFILE_MAX_DEPTH frames, liballoc's frames left out
 * (unwind.c; no stacks where it is not built). */
static unsigned capture_stack(const la_frame_t *from, uint64_t *pcs) {
#if LA_HAVE_OWN_UNWINDER
  _Static_assert(sizeof(uint64_t) == sizeof(uintptr_t), "frames are return addresses");
  if (LA_UNLIKELY(!atomic_load_explicit(&self_located, memory_order_acquire))) locate_self_once();
  uintptr_t *ips = (uintptr_t *)pcs;
  unsigned got = la_unwind_from(from, ips, ALLOC_SHM_PROFILE_MAX_DEPTH + SELF_FRAMES_MAX), self = 0;
  while (self < got && ips[self] >= self_lo && ips[self] < self_hi) self++;
  unsigned n = got - self < ALLOC_SHM_PROFILE_MAX_DEPTH ? got - self : ALLOC_SHM_PROFILE_MAX_DEPTH;
  if (self) memmove(pcs, pcs + self, n * sizeof pcs[0]);
  return n;
#else
  (void)from, (void)pcs;
  return 0;
#endif
}

/* ---- the tables (prof_lock) ---------------------------------------------- */

static size_t live_table_size(uint32_t slots) { return sizeof(live_table_t) + (size_t)slots * sizeof(prof_live_t); }

/* An empty live table of `slots` (a power of two), written through. */
static live_table_t *live_table_new(uint32_t slots) {
  live_table_t *t = la_meta_alloc_sparse(live_table_size(slots));
  if (!t) return NULL;
  memset(t, 0, live_table_size(slots));
  t->mask = slots - 1;
  table_bytes += live_table_size(slots);
  return t;
}

/* The tables, made by the first sample (a program that never takes one
 * never maps them), in one mapping of small pages: the stacks and their
 * frames are filled in order, so only what is written becomes resident.
 * The hash tables are written through as they grow (the stack index from
 * one page, the live table from 256 slots: live_grow): probing reads them
 * at random, and a page read before it is written is the shared zero
 * page, whose replacement at the first write costs every other CPU a TLB
 * shootdown (bench threadchurn: 2.7% of its time in record_sample's page
 * faults).  A short-lived program that takes a sample or two so writes 6
 * pages, not 21, and maps once, not three times (`spawn 200 tiny`: page
 * faults over prof:false's +700 -> +370). */
static bool tables_ready(void) {
  if (stacks) return true;
  size_t sz_stacks = ALLOC_SHM_PROFILE_MAX_STACKS * sizeof(prof_stack_t);
  size_t sz_index = STACK_SLOTS * sizeof(uint32_t);
  size_t sz_frames = ALLOC_SHM_PROFILE_MAX_FRAMES * sizeof(uint64_t);
  uint8_t *m = la_meta_alloc_sparse(sz_stacks + sz_index + sz_frames);
  live_table_t *l = m ? live_table_new(LIVE_MIN_SLOTS) : NULL;
  if (!l) return false;   /* what was had stays unused: bounded, and out of memory anyway */
  stack_index = (uint32_t *)(m + sz_stacks);
  index_mask = STACK_SLOTS_FIRST - 1;
  memset(stack_index, 0, STACK_SLOTS_FIRST * sizeof stack_index[0]);
  frames = (uint64_t *)(m + sz_stacks + sz_index);
  __atomic_store_n(&live, l, __ATOMIC_RELEASE);
  stacks = (prof_stack_t *)m;
  table_bytes += sz_stacks + sz_index + sz_frames;
  return true;
}

static uint64_t hash_frames(const uint64_t *pcs, unsigned n) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
  for (unsigned i = 0; i < n; i++) h = (h ^ pcs[i]) * 0x100000001b3ull, h ^= h >> 29;
  return h ? h : 1;
}

/* The index slot of hash h: its stack's, or the empty one where it goes. */
static uint32_t *index_slot(uint64_t h, const uint64_t *pcs, unsigned n) {
  for (uint32_t i = (uint32_t)h & index_mask;; i = (i + 1) & index_mask) {   /* never full: at most half */
    uint32_t e = stack_index[i];
    if (e == 0) return &stack_index[i];
    const prof_stack_t *s = &stacks[e - 1];
    if (pcs && s->hash == h && s->depth == n && memcmp(&frames[s->first_frame], pcs, n * sizeof pcs[0]) == 0)
      return &stack_index[i];
  }
}

/* Twice the slots, written through, and every stack hashed in again. */
static void index_grow(void) {
  index_mask = index_mask * 2 + 1;
  memset(stack_index, 0, ((size_t)index_mask + 1) * sizeof stack_index[0]);
  for (uint32_t k = 0; k < nstacks; k++) *index_slot(stacks[k].hash, NULL, 0) = k + 1;
}

/* The stack's index, added if new; UINT32_MAX if the table is full. */
static uint32_t stack_find_or_add(const uint64_t *pcs, unsigned n) {
  uint64_t h = hash_frames(pcs, n);
  uint32_t *slot = index_slot(h, pcs, n);
  if (*slot) return *slot - 1;
  if (nstacks >= ALLOC_SHM_PROFILE_MAX_STACKS || nframes + n > ALLOC_SHM_PROFILE_MAX_FRAMES) return UINT32_MAX;
  prof_stack_t *s = &stacks[nstacks];
  memset(s, 0, sizeof *s);
  s->hash = h;
  s->first_frame = nframes;
  s->depth = n;
  memcpy(&frames[nframes], pcs, n * sizeof pcs[0]);
  nframes += n;
  *slot = ++nstacks;
  if (nstacks * 2 > index_mask + 1 && index_mask + 1 < STACK_SLOTS) index_grow();
  return nstacks - 1;
}

static uint32_t live_hash(uintptr_t addr, uint32_t mask) {
  uint64_t h = (uint64_t)addr * 0x9e3779b97f4a7c15ull;
  return (uint32_t)(h >> 40) & mask;
}

static prof_live_t *live_find(uintptr_t addr) {
  uint32_t mask = live->mask;
  for (uint32_t i = live_hash(addr, mask), probes = 0; probes <= mask; i = (i + 1) & mask, probes++) {
    uintptr_t a = live->slot[i].addr;
    if (a == addr) return &live->slot[i];
    if (a == 0) return NULL;
  }
  return NULL;
}

/* Write entry e into slot `to`.  live_contains reads `addr` without the
 * lock, so it is written as an atomic, last (the rest is only read under
 * the lock); a plain copy of the whole entry raced with that read
 * (ThreadSanitizer, stress tests with prof:true). */
_Static_assert(offsetof(prof_live_t, addr) == 0, "live_set copies what follows addr");
static void live_set(prof_live_t *to, const prof_live_t *e) {
  memcpy((char *)to + sizeof to->addr, (const char *)e + sizeof e->addr, sizeof *e - sizeof e->addr);
  __atomic_store_n(&to->addr, e->addr, __ATOMIC_RELEASE);
}

static void live_empty(prof_live_t *slot) { __atomic_store_n(&slot->addr, 0, __ATOMIC_RELAXED); }

/* Put e in table t, which has room (it is at most half full). */
static void live_insert(live_table_t *t, const prof_live_t *e) {
  uint32_t i = live_hash(e->addr, t->mask);
  while (t->slot[i].addr) i = (i + 1) & t->mask;
  live_set(&t->slot[i], e);
}

/* Double the live table.  Readers without the lock (live_contains) may
 * still be probing the old one: live_gen is odd while the entries move,
 * so they ask again under the lock; the old table's pages are given back
 * but stay mapped (a late reader finds zeros, never a fault), and count in
 * metadata until the process ends: all the old ones together are smaller
 * than the newest. */
static bool live_grow(void) {
  uint32_t slots = live->mask + 1;
  if (slots >= LIVE_MAX_SLOTS) return false;
  live_table_t *t = live_table_new(2 * slots);
  if (!t) return false;
  live_table_t *old = live;
  for (uint32_t i = 0; i < slots; i++)
    if (old->slot[i].addr) live_insert(t, &old->slot[i]);
  atomic_fetch_add_explicit(&live_gen, 1, memory_order_acq_rel);
  __atomic_store_n(&live, t, __ATOMIC_RELEASE);
  atomic_fetch_add_explicit(&live_gen, 1, memory_order_acq_rel);
  la_os_purge(old, live_table_size(slots));
  return true;
}

static void live_sweep_large(void);

static bool live_add(const prof_live_t *e) {
  if (nlive >= (live->mask + 1) / 2 && !live_grow()) live_sweep_large();
  if (nlive >= (live->mask + 1) / 2) return false;
  live_insert(live, e);
  nlive++;
  return true;
}

/* A small slab's live samples, as its frees see them (la_prof_may_hold):
 * up to two addresses in the descriptor, and `spilled` while it holds one
 * more, until it holds none.  A free of a block of a slab holding samples
 * then looks the block up in the table only if it may be one: a hash
 * probe into a 1.5 MiB table, a cache miss, was 5% of churn's time with
 * every free of such a slab asking. */
static void slab_add_sample(la_slab_t *slab, uintptr_t addr) {
  LA_SHARED_STORE(slab->prof_samples, slab->prof_samples + 1);
  if (slab->kind != LA_SLAB_SMALL) return;
  for (unsigned i = 0; i < 2; i++)
    if (!slab->prof_addr[i]) {
      LA_SHARED_STORE(slab->prof_addr[i], addr);
      return;
    }
  LA_SHARED_STORE(slab->prof_spilled, 1);
}

static void slab_clear_samples(la_slab_t *slab) {
  LA_SHARED_STORE(slab->prof_samples, 0);
  LA_SHARED_STORE(slab->prof_spilled, 0);
  for (unsigned i = 0; i < 2; i++) LA_SHARED_STORE(slab->prof_addr[i], 0);
}

static void slab_remove_sample(la_slab_t *slab, uintptr_t addr) {
  if (slab->prof_samples <= 1) {
    slab_clear_samples(slab);
    return;
  }
  LA_SHARED_STORE(slab->prof_samples, slab->prof_samples - 1);
  for (unsigned i = 0; i < 2; i++)
    if (slab->prof_addr[i] == addr) LA_SHARED_STORE(slab->prof_addr[i], 0);
}

/* Remove a live sample; a small or large block's slab counts one sample
 * less (the callers know that slab is alive: its block is being freed or
 * was just handed out).  Linear probing with backward-shift deletion, so
 * there are no tombstones; readers without the lock (live_contains) see
 * live_gen odd or changed and ask again under it. */
static void live_remove_slot(prof_live_t *e, bool count_on_slab) {
  if (count_on_slab && e->kind != PROF_HUGE) slab_remove_sample(la_slab_of((void *)e->addr), e->addr);
  atomic_fetch_add_explicit(&live_gen, 1, memory_order_acq_rel);
  prof_live_t *slot = live->slot;
  uint32_t mask = live->mask, i = (uint32_t)(e - slot);
  for (uint32_t j = i;;) {
    j = (j + 1) & mask;
    if (slot[j].addr == 0) break;
    uint32_t k = live_hash(slot[j].addr, mask);   /* stays if its home is cyclically in (i, j] */
    bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (stays) continue;
    live_set(&slot[i], &slot[j]);
    i = j;
  }
  live_empty(&slot[i]);
  nlive--;
  atomic_fetch_add_explicit(&live_gen, 1, memory_order_acq_rel);
}

static void live_remove(prof_live_t *e) { live_remove_slot(e, true); }

static bool large_alive(const prof_live_t *e);

/* Drop the large samples whose block is gone (frees of large blocks are
 * not seen): at every publication, and when the table is full, so that
 * they cannot crowd out live ones.  Their slabs are not touched (they may
 * be unmapped); a stale count left on a slab is harmless. */
static void live_sweep_large(void) {
  prof_live_t *slot = live->slot;
  for (uint32_t i = 0; i <= live->mask; i++) {
    while (slot[i].addr && slot[i].kind == PROF_LARGE && !large_alive(&slot[i])) live_remove_slot(&slot[i], false);
  }
}

/* Is addr a live sample?  Without the lock when no removal runs meanwhile
 * (live_gen even and unchanged): insertions never move an entry, so a
 * block that is in the table is found. */
static bool live_contains(uintptr_t addr) {
  unsigned gen = atomic_load_explicit(&live_gen, memory_order_acquire);
  live_table_t *t = __atomic_load_n(&live, __ATOMIC_ACQUIRE);
  if (!t) return false;
  if (!(gen & 1)) {
    bool found = false;
    uint32_t mask = t->mask;
    for (uint32_t i = live_hash(addr, mask), probes = 0; probes <= mask; i = (i + 1) & mask, probes++) {
      uintptr_t a = __atomic_load_n(&t->slot[i].addr, __ATOMIC_ACQUIRE);
      if (a == addr) found = true;
      if (a == addr || a == 0) break;
    }
    if (found) return true;
    if (atomic_load_explicit(&live_gen, memory_order_acquire) == gen) return false;
  }
  pthread_mutex_lock(&prof_lock);
  bool found = live_find(addr) != NULL;
  pthread_mutex_unlock(&prof_lock);
  return found;
}

/* ---- sampling -------------------------------------------------------------- */

/* Record the block p (requested `size`, of class `cls`) as a
 * sample.  `slab`: its slab (small and large), NULL for a huge block;
 * `from`: the frame its stack starts at (la_sample_due's caller's).
 * Called by the allocating thread after it has the block, with no
 * liballoc lock held; true if the block is now a live sample.  Never
 * recurses.  The countdowns (sample.c) count `basis` bytes for the
 * block (the bytes requested, or a small slab's block size), so it was
 * sampled with probability p(basis) and stands for 1 / p(basis) of its
 * kind. */
static bool record_sample(void *p, size_t size, size_t basis, unsigned cls, la_slab_t *slab,
                          const la_frame_t *from) {
  if (in_prof || !atomic_load_explicit(&la_prof_sampling, memory_order_relaxed)) return false;
  in_prof = true;
  uint64_t pcs[ALLOC_SHM_PROFILE_MAX_DEPTH + SELF_FRAMES_MAX];
  unsigned n = capture_stack(from, pcs);
  double prob = la_prof_probability((double)basis, (double)la_opt.prof_sample_bytes);
  double objects = prob > 0 ? 1.0 / prob : 1.0;
  enum prof_kind kind = !slab ? PROF_HUGE : slab->kind == LA_SLAB_LARGE ? PROF_LARGE : PROF_SMALL;
  bool tracked = false;
  pthread_mutex_lock(&prof_lock);
  if (atomic_load_explicit(&la_prof_sampling, memory_order_relaxed)) {
    nsamples++;
    uint32_t si = tables_ready() ? stack_find_or_add(pcs, n) : UINT32_MAX;
    if (si == UINT32_MAX) {
      ndropped++;
    } else {
      prof_stack_t *s = &stacks[si];
      s->alloc_samples++;
      s->alloc_objects += objects;
      s->alloc_bytes += objects * (double)size;
      prof_live_t e = {.addr = (uintptr_t)p, .stack = si, .kind = (uint8_t)kind, .cls = (uint8_t)cls,
                       .size = size, .objects = objects, .time_ns = la_now_coarse_ns()};
      if (kind == PROF_LARGE && slab->prof_samples) {   /* a stale sample of this block: freed unseen */
        prof_live_t *old = live_find((uintptr_t)p);
        if (old) live_remove(old);
        slab_clear_samples(slab);
      }
      tracked = live_find((uintptr_t)p) == NULL && live_add(&e);
      if (tracked && slab) slab_add_sample(slab, (uintptr_t)p);
    }
  }
  pthread_mutex_unlock(&prof_lock);
  /* Outside prof_lock: huge_lock is taken before it elsewhere. */
  if (tracked && kind == PROF_HUGE && !la_huge_mark_sampled(p)) la_prof_forget(p);
  in_prof = false;
  return tracked;
}

/* The allocation of p (`size` bytes asked for, counted as `basis`) is
 * due for a sample (sample.c): record it, and send the frees of a small
 * block's slab to the slow path, where la_prof_forget sees them.  The
 * slab is this thread's: the block was just taken from its heap. */
void la_prof_take(void *p, size_t size, size_t basis, const la_frame_t *from) {
  la_slab_t *slab = la_segmap_kind(p) == LA_MAP_SEGMENT ? la_slab_of(p) : NULL;
  /* a block lent by a slab of another class (lend.c) is of its own size's class */
  unsigned cls = !slab ? LA_NCLASSES : slab->kind == LA_SLAB_LEND ? la_class_of(size) : slab->cls;
  if (record_sample(p, size, basis, cls, slab, from) && slab && slab->kind == LA_SLAB_SMALL)
    LA_SHARED_STORE(slab->fast_owner, NULL);
}

/* A block just handed out while sampling (sample.c), maybe a large one:
 * frees of large blocks are not seen (they cost nothing), so the slab may
 * still carry the sample of a block freed at the same place, which is
 * forgotten now. */
void la_prof_fresh(void *p) {
  if (!p || la_segmap_kind(p) != LA_MAP_SEGMENT) return;
  la_slab_t *slab = la_slab_of(p);
  if (slab->kind == LA_SLAB_LARGE && LA_SHARED_LOAD(slab->prof_samples)) la_prof_forget(p);
}

/* A block of a slab (or huge descriptor) that holds samples is freed (or
 * moved): forget it if it is one.  Any thread. */
void la_prof_forget(const void *p) {
  if (!live_contains((uintptr_t)p)) return;
  pthread_mutex_lock(&prof_lock);
  prof_live_t *e = live_find((uintptr_t)p);
  if (e) live_remove(e);
  pthread_mutex_unlock(&prof_lock);
}

/* ---- on and off ------------------------------------------------------------ */

/* Forget every live sample (switching off or on).  prof_lock held.  A
 * small slab's count is reset (its sampled block is alive, hence the
 * slab); a large slab's is left: its block may be gone unseen, and a stale
 * count is harmless (la_prof_after_alloc, large_alive look it up here). */
static void live_clear(void) {
  if (!nlive) return;   /* (a fresh table: not touched, so not made resident) */
  atomic_fetch_add_explicit(&live_gen, 1, memory_order_acq_rel);
  for (uint32_t i = 0; i <= live->mask; i++) {
    prof_live_t *e = &live->slot[i];
    if (e->addr && e->kind == PROF_SMALL) slab_clear_samples(la_slab_of((void *)e->addr));
    live_empty(e);
  }
  nlive = 0;
  atomic_fetch_add_explicit(&live_gen, 1, memory_order_acq_rel);
}

static void tables_reset(void) {
  if (nstacks) memset(stack_index, 0, ((size_t)index_mask + 1) * sizeof stack_index[0]);
  nstacks = nframes = 0;
  nsamples = ndropped = 0;
}

/* Switch sampling on or off (alloc_ctl's write of opt.prof, the
 * constructor with ALLOC_CONF=prof:true).  Not from inside malloc.  The
 * tables are made by the first sample (tables_ready). */
void la_prof_switch(bool on) {
  pthread_mutex_lock(&switch_lock);
  bool was = atomic_load(&la_prof_sampling);
  if (on && !was) {
    pthread_mutex_lock(&prof_lock);
    live_clear();
    tables_reset();
    enabled_ns = la_os_realtime_ns();
    sample_bytes_on = la_opt.prof_sample_bytes;
    pthread_mutex_unlock(&prof_lock);
    atomic_store(&la_prof_sampling, true);
  } else if (!on && was) {
    atomic_store(&la_prof_sampling, false);
    pthread_mutex_lock(&prof_lock);
    live_clear();
    pthread_mutex_unlock(&prof_lock);
  }
  if (on != was) {
    atomic_fetch_add(&la_prof_epoch, 1);
    if (on) la_heaps_prof_reset();
    la_entry_switch(on);
  }
  pthread_mutex_unlock(&switch_lock);
}

int la_apply_prof(void) {
  la_prof_switch(la_opt.prof);
  return 0;
}

/* ALLOC_CONF=prof:true, after start-up (from the constructor, outside
 * malloc). */
void la_prof_init(void) {
  if (la_opt.prof) la_prof_switch(true);
}

/* fork(): switch_lock is taken first (a switch holds it while it takes
 * prof_lock and heaps_lock), prof_lock after huge_lock (la_huge_free
 * forgets a sample under it): two calls at their places in init.c's
 * order. */
void la_prof_switch_fork_prepare(void) { pthread_mutex_lock(&switch_lock); }
void la_prof_switch_fork_parent(void) { pthread_mutex_unlock(&switch_lock); }
void la_prof_switch_fork_child(void) { pthread_mutex_init(&switch_lock, NULL); }
void la_prof_fork_prepare(void) { pthread_mutex_lock(&prof_lock); }
void la_prof_fork_parent(void) { pthread_mutex_unlock(&prof_lock); }
/* publish_lock and self_lock are not taken at fork(): a publication
 * holds the first, the first sample the second, while dl_iterate_phdr
 * takes the loader's lock.  The child starts with both free (the
 * publication's scratch space is rewritten by every publication; where
 * liballoc's code is, is found again if the finding was cut off:
 * self_located is set when it has ended). */
void la_prof_fork_child(void) {
  pthread_mutex_init(&prof_lock, NULL);
  pthread_mutex_init(&publish_lock, NULL);
  pthread_mutex_init(&self_lock, NULL);
#if LA_HAVE_OWN_UNWINDER
  la_unwind_fork_child();
#endif
}

/* ---- reading the profile (prof_lock) -------------------------------------- */

/* Free bytes resident on the small slab holding a live sample: blocks
 * carved and not in use, less the pages la_slab_trim gave back (their
 * blocks are free and off the free list).  Not counted: space never carved
 * (untouched, or left to the arena's decay) -- docs/metrics.md. */
static double slab_free_resident(const la_slab_t *slab, uint32_t *live_blocks) {
  uint32_t used = LA_SHARED_LOAD(slab->used);
  uint32_t reserved = LA_SHARED_LOAD(slab->reserved);
  uint64_t trimmed = LA_SHARED_LOAD(slab->trimmed);
  *live_blocks = used;
  if (reserved <= used) return 0;
  double bytes = (double)(reserved - used) * (double)slab->block_size;
  bytes -= (double)__builtin_popcountll(trimmed) * (double)la_page_size;
  return bytes > 0 ? bytes : 0;
}

/* Is the large sample e still live?  Frees of large blocks are not seen
 * (they cost nothing), so its block may be gone and even its segment
 * unmapped: the descriptor is read with la_os_read_own, which fails
 * instead of faulting.  Live means: still a LARGE slab with this start,
 * one block in use, and its sample not cleared (a block handed out again
 * with profiling on clears it, la_prof_fresh). */
static bool large_alive(const prof_live_t *e) {
  if (la_segmap_kind((void *)e->addr) != LA_MAP_SEGMENT) return false;
  la_segment_t *seg = la_segment_of((void *)e->addr);
  la_slab_t *const *slot = &seg->unit_slab[(e->addr >> LA_UNIT_SHIFT) & (LA_UNITS - 1)];
  la_slab_t *slabp, slab;
  if (!la_os_read_own(&slabp, slot, sizeof slabp)) return false;
  if ((uintptr_t)slabp - (uintptr_t)seg >= sizeof *seg) return false;   /* not a descriptor of this segment */
  if (!la_os_read_own(&slab, slabp, sizeof slab)) return false;
  return slab.kind == LA_SLAB_LARGE && (uintptr_t)slab.start == e->addr && slab.used == 1 && slab.prof_samples != 0;
}

/* Per stack: in-use and pinned estimates and the live samples, in `acc`
 * (ACC doubles a stack); returns the live samples (large ones whose
 * block is gone are not). */
#define ACC 4
static uint64_t live_totals(double *acc) {
  uint64_t alive = 0;
  memset(acc, 0, (size_t)nstacks * ACC * sizeof acc[0]);
  for (uint32_t i = 0; i <= live->mask; i++) {
    const prof_live_t *e = &live->slot[i];
    if (!e->addr || e->stack >= nstacks) continue;
    if (e->kind == PROF_LARGE && !large_alive(e)) continue;
    double *a = &acc[(size_t)e->stack * ACC];
    a[0] += e->objects;
    a[1] += e->objects * (double)e->size;
    a[3] += 1;
    alive++;
    if (e->kind == PROF_SMALL) {
      uint32_t blocks;
      double free_bytes = slab_free_resident(la_slab_of((void *)e->addr), &blocks);
      if (blocks) a[2] += e->objects * free_bytes / blocks;
    }
  }
  return alive;
}

/* ---- publishing ------------------------------------------------------------ */

struct module_walk {
  alloc_shm_module_t *out;
  uint32_t n;
};

/* The GNU build ID from the object's notes, in its memory. */
static uint32_t build_id_of(const struct dl_phdr_info *info, uint8_t *out) {
  for (unsigned i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE) continue;
    const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
      size_t name = (nh->n_namesz + 3) & ~(size_t)3, desc = (nh->n_descsz + 3) & ~(size_t)3;
      const uint8_t *n = p + sizeof *nh;
      if (name > (size_t)(end - n) || desc > (size_t)(end - n) - name) break;
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(n, "GNU", 4) == 0 && nh->n_descsz > 0) {
        uint32_t len = nh->n_descsz < 32 ? nh->n_descsz : 32;
        memcpy(out, n + name, len);
        return len;
      }
      p = n + name + desc;
    }
  }
  return 0;
}

static int add_module(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  struct module_walk *w = arg;
  if (w->n >= ALLOC_SHM_PROFILE_MAX_MODULES) return 1;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  uint64_t off = 0;
  for (unsigned i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    uintptr_t a = info->dlpi_addr + ph->p_vaddr;
    uintptr_t start = a & ~(uintptr_t)(la_page_size - 1);
    if (start < lo) {
      lo = start;
      off = ph->p_offset - (a - start);
    }
    if (a + ph->p_memsz > hi) hi = a + ph->p_memsz;
  }
  if (hi == 0) return 0;
  alloc_shm_module_t *m = &w->out[w->n];
  memset(m, 0, sizeof *m);
  m->start = lo;
  m->end = hi;
  m->file_offset = off;
  m->bias = info->dlpi_addr;
  m->build_id_size = build_id_of(info, m->build_id);
  const char *name = info->dlpi_name ? info->dlpi_name : "";
  if (w->n == 0) {   /* dl_iterate_phdr reports the main program first, named "" */
    m->flags = 1;
    if (!name[0]) la_os_readlink("/proc/self/exe", m->path, sizeof m->path);
  }
  if (!m->path[0]) {
    size_t len = strlen(name);
    if (len >= sizeof m->path) len = sizeof m->path - 1;
    memcpy(m->path, name, len);
  }
  w->n++;
  return 0;
}

/* Streaming alloc_shm_checksum over whole 8-byte words, written in order. */
typedef struct writer_s {
  int fd;
  uint64_t base, off, hash;
  bool ok;
} writer_t;

static void put(writer_t *w, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i + 8 <= len; i += 8) {
    uint64_t x;
    memcpy(&x, p + i, 8);
    w->hash = (w->hash ^ x) * 0x100000001b3ull;
  }
  if (w->ok && len && !la_os_pwrite(w->fd, data, len, w->base + w->off)) w->ok = false;
  w->off += len;
}

static void put_zeros(writer_t *w, size_t len) {
  static const uint8_t zeros[4096];
  while (len) {
    size_t n = len < sizeof zeros ? len : sizeof zeros;
    put(w, zeros, n);
    len -= n;
  }
}

/* Scratch space for publishing, from metadata once: the module list and
 * the per-stack totals. */
static alloc_shm_module_t *pub_modules;
static double *pub_acc;

static bool pub_scratch(void) {
  if (pub_modules) return true;
  size_t a = ALLOC_SHM_PROFILE_MAX_MODULES * sizeof(alloc_shm_module_t);
  size_t b = (size_t)ALLOC_SHM_PROFILE_MAX_STACKS * ACC * sizeof(double);
  alloc_shm_module_t *m = la_meta_alloc(a);
  double *acc = m ? la_meta_alloc(b) : NULL;
  if (!acc) return false;
  pthread_mutex_lock(&prof_lock);
  table_bytes += a + b;
  pthread_mutex_unlock(&prof_lock);
  pub_acc = acc;
  pub_modules = m;
  return true;
}

static uint64_t round_est(double x) { return x <= 0 ? 0 : x >= 1.8e19 ? UINT64_MAX : (uint64_t)(x + 0.5); }

/* Write profile number n into the segment open as fd, whose profile area
 * starts at `area`: seq odd, the tables, the header and checksum, seq even
 * (alloc_shm.h).  0 or an errno value; *number is n.  Callers serialise
 * (ctl_lock).  The module list is gathered before prof_lock is taken:
 * dl_iterate_phdr takes the loader's lock, which a thread in dlopen holds
 * while it allocates (and may sample, taking prof_lock). */
int la_prof_publish(int fd, uint64_t area, uint64_t *number) {
  if (!pub_scratch()) return ENOMEM;
  pthread_mutex_lock(&publish_lock);
  struct module_walk mw = {pub_modules, 0};
  dl_iterate_phdr(add_module, &mw);
  pthread_mutex_lock(&prof_lock);
  uint64_t n = ++profile_number;
  alloc_shm_profile_t h;
  memset(&h, 0, sizeof h);
  h.number = n;
  h.time_ns = la_os_realtime_ns();
  bool on = atomic_load(&la_prof_sampling);
  h.sample_bytes = on ? la_opt.prof_sample_bytes : 0;
  h.enabled_ns = enabled_ns;
  h.nmodules = mw.n;
  h.nstacks = stacks ? nstacks : 0;
  h.nframes = stacks ? nframes : 0;
  h.flags = (on ? ALLOC_SHM_PROF_ENABLED : 0) | (ndropped ? ALLOC_SHM_PROF_TRUNCATED : 0);
  h.samples = nsamples;
  h.dropped_samples = ndropped;
  h.live_samples = 0;
  h.profiler_bytes = table_bytes;
  h.used = ALLOC_SHM_PROFILE_FRAMES + 8ull * h.nframes;
  if (stacks) {
    live_sweep_large();
    h.live_samples = live_totals(pub_acc);
  }
  writer_t w = {.fd = fd, .base = area, .off = 0, .hash = 0xcbf29ce484222325ull, .ok = true};
  h.seq = 2 * n - 1;
  if (!la_os_pwrite(fd, &h.seq, sizeof h.seq, area)) w.ok = false;
  /* Body: the header's fields after the checksum, then the tables. */
  const size_t body = offsetof(alloc_shm_profile_t, checksum) + 8;
  w.off = body;
  put(&w, (const char *)&h + body, sizeof h - body);
  put(&w, pub_modules, (size_t)mw.n * sizeof pub_modules[0]);
  put_zeros(&w, (size_t)(ALLOC_SHM_PROFILE_MAX_MODULES - mw.n) * sizeof(alloc_shm_module_t));
  alloc_shm_stack_t rec[64];
  for (uint32_t i = 0; i < h.nstacks; i += 64) {
    uint32_t k = h.nstacks - i < 64 ? h.nstacks - i : 64;
    for (uint32_t j = 0; j < k; j++) {
      const prof_stack_t *s = &stacks[i + j];
      const double *a = &pub_acc[(size_t)(i + j) * ACC];
      rec[j] = (alloc_shm_stack_t){.first_frame = s->first_frame, .depth = s->depth,
                                   .alloc_objects = round_est(s->alloc_objects), .alloc_bytes = round_est(s->alloc_bytes),
                                   .inuse_objects = round_est(a[0]), .inuse_bytes = round_est(a[1]),
                                   .pinned_bytes = round_est(a[2]), .alloc_samples = s->alloc_samples,
                                   .inuse_samples = round_est(a[3])};
    }
    put(&w, rec, k * sizeof rec[0]);
  }
  put_zeros(&w, (size_t)(ALLOC_SHM_PROFILE_MAX_STACKS - h.nstacks) * sizeof(alloc_shm_stack_t));
  if (h.nframes) put(&w, frames, (size_t)h.nframes * 8);
  pthread_mutex_unlock(&prof_lock);
  h.checksum = w.hash;
  if (w.ok && !la_os_pwrite(fd, &h.number, body - sizeof h.seq, area + sizeof h.seq)) w.ok = false;
  h.seq = 2 * n;
  if (w.ok && !la_os_pwrite(fd, &h.seq, sizeof h.seq, area)) w.ok = false;
  pthread_mutex_unlock(&publish_lock);
  *number = n;
  return w.ok ? 0 : EIO;
}

uint64_t la_prof_last_published(void) { return __atomic_load_n(&profile_number, __ATOMIC_RELAXED); }
