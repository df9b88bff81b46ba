/* sample.c - what the malloc family's exported names call: the plain entry
 * points, or, while the heap profiler samples, the same behind a countdown.
 *
 * interpose.c's malloc, calloc, realloc and the aligned calls jump through
 * la_entry, a table of pointers.  Each was a direct jump to its la_*
 * function before; an indirect jump is the same one instruction, so with
 * prof off the malloc+free pairs cost what they did (callgrind).  While
 * profiling, the table points at the sampled_* functions below: each thread
 * counts requested bytes down to its next sample at exponentially
 * distributed gaps of mean prof_sample_bytes (tcmalloc's and Go's scheme;
 * the gap is memoryless, so one countdown for every size is the same
 * process as one per size), and the allocation that takes the count below
 * zero is recorded by prof.c.  That is a subtraction from thread-local
 * memory and a branch ahead of the plain entry point; nothing else changes,
 * so the allocator's fast paths, free lists and caches behave as with
 * prof off.  (The design before this one needed no instruction at all: it
 * cut each class's free list into chains that ended at the next sample.
 * But a chain held the blocks freed while it ran until it was used up, so
 * a program that frees and allocates in turn reused blocks a chain old,
 * out of cache: churn and python3 took 18% more CPU time.)
 *
 * A realloc counts when it allocates: a new block (moved, or from NULL),
 * not a block resized in place.  Requests that fail count too; they are
 * not sampled. */
#include "alloc_internal.h"

/* Spelled out twice (a const object is no constant initializer in C). */
#define PLAIN_ENTRIES { \
  .malloc = la_malloc, .calloc = la_calloc, .realloc = la_realloc, \
  .reallocarray = la_reallocarray, .posix_memalign = la_posix_memalign, \
  .aligned_alloc = la_aligned_alloc, .memalign = la_memalign, \
  .valloc = la_valloc, .pvalloc = la_pvalloc, \
}
static const la_entry_t plain = PLAIN_ENTRIES;

la_entry_t la_entry = PLAIN_ENTRIES;

/* Bytes the thread may still allocate before its next sample, and the
 * la_prof_epoch they were drawn in.  Thread-local, so that counting is
 * one subtraction from %fs-relative memory; the thread's heap points at
 * it (sample_left_at), for la_heaps_prof_reset. */
__thread int64_t la_sample_left;
static __thread uint32_t sample_epoch;

/* Count `size` bytes down; false when the sample is due. */
static inline bool count_down(size_t size) {
  la_sample_left = (int64_t)((uint64_t)la_sample_left - size);
  return la_sample_left >= 0;
}

/* The countdown went below zero at the allocation of p.  A thread's first
 * count of this profile (a new thread: 0 left; or sampling switched on
 * since, which set it to 0: la_heaps_prof_reset) starts from a gap drawn
 * now, which is the same process (memoryless) at the mean now in force. */
static LA_NOINLINE void *sample_due(void *p, size_t size) {
  uint32_t epoch = atomic_load_explicit(&la_prof_epoch, memory_order_relaxed);
  if (sample_epoch != epoch) {
    sample_epoch = epoch;
    la_sample_left = la_prof_next_gap();
    if (size < (uint64_t)INT64_MAX / 2 && count_down(size)) return p;
  }
  la_sample_left = la_prof_next_gap();
  if (p) la_prof_take(p, size);
  return p;
}

/* No class of blocks under half a unit is large (a unit holds two), and
 * an aligned request of such a size and alignment lands on no large slab
 * either (alloc.c, alloc_aligned_slow).  Others may land on a large slab
 * that still carries the sample of a block freed there unseen
 * (la_prof_fresh). */
#define MAYBE_LARGE (LA_UNIT_SIZE / 2)

/* The common case, decided before the allocation so that the entry point
 * can jump to the plain one: a request that lands on no large slab,
 * counted down without reaching the sample.  The size is checked first:
 * the subtraction then cannot overflow (the count is a gap of at most
 * 4e18, drawn again whenever it goes below zero), and GCC counts with one
 * instruction on %fs-relative memory. */
static inline bool plain_case(size_t align, size_t size) {
  return LA_LIKELY((size | align) < MAYBE_LARGE) && LA_LIKELY((la_sample_left -= (int64_t)size) >= 0);
}

/* After an allocation that was not plain_case's: p may be on a large slab
 * (not counted yet), or its count went below zero. */
static LA_NOINLINE void *unusual(void *p, size_t align, size_t size) {
  if ((size | align) >= MAYBE_LARGE) {
    la_prof_fresh(p);
    if (count_down(size)) return p;
  }
  return sample_due(p, size);
}

static void *sampled_malloc(size_t size) {
  if (plain_case(0, size)) return la_malloc(size);
  return unusual(la_malloc(size), 0, size);
}

static void *sampled_calloc(size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) return la_calloc(n, size);   /* ENOMEM */
  if (plain_case(0, total)) return la_calloc(n, size);
  return unusual(la_calloc(n, size), 0, total);
}

/* Counted after the call: only a block moved or new is an allocation. */
static void *sampled_realloc(void *p, size_t size) {
  void *q = la_realloc(p, size);
  if (!q || q == p || plain_case(0, size)) return q;
  return unusual(q, 0, size);
}

static void *sampled_reallocarray(void *p, size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) return la_reallocarray(p, n, size);   /* ENOMEM */
  return sampled_realloc(p, total);
}

static int sampled_posix_memalign(void **out, size_t align, size_t size) {
  if (plain_case(align, size)) return la_posix_memalign(out, align, size);
  int err = la_posix_memalign(out, align, size);
  unusual(err ? NULL : *out, align, size);
  return err;
}

static void *sampled_aligned_alloc(size_t align, size_t size) {
  if (plain_case(align, size)) return la_aligned_alloc(align, size);
  return unusual(la_aligned_alloc(align, size), align, size);
}

static void *sampled_memalign(size_t align, size_t size) {
  if (plain_case(align, size)) return la_memalign(align, size);
  return unusual(la_memalign(align, size), align, size);
}

static void *sampled_valloc(size_t size) {
  if (plain_case(la_page_size, size)) return la_valloc(size);
  return unusual(la_valloc(size), la_page_size, size);
}

static void *sampled_pvalloc(size_t size) {
  if (plain_case(la_page_size, size)) return la_pvalloc(size);
  return unusual(la_pvalloc(size), la_page_size, size);
}

static const la_entry_t sampled = {
  .malloc = sampled_malloc, .calloc = sampled_calloc, .realloc = sampled_realloc,
  .reallocarray = sampled_reallocarray, .posix_memalign = sampled_posix_memalign,
  .aligned_alloc = sampled_aligned_alloc, .memalign = sampled_memalign,
  .valloc = sampled_valloc, .pvalloc = sampled_pvalloc,
};

/* Point the table at one set or the other (prof.c, under its switch
 * lock, after la_heaps_prof_reset when switching on: the heaps'
 * countdowns are written while no thread counts).  Each pointer is one
 * aligned store: a thread reads the old entry or the new one, and either
 * is correct. */
#define LA_ENTRY_STORE(field) __atomic_store_n(&la_entry.field, set->field, __ATOMIC_RELAXED);
void la_entry_switch(bool sampling) {
  const la_entry_t *set = sampling ? &sampled : &plain;
  LA_ENTRY_FIELDS(LA_ENTRY_STORE)
}

/* The entry points as the exported names see them, for programs linked to
 * the core directly (the sanitizer build's tests: tests/common/direct.h). */
void *la_entry_malloc(size_t size) { return __atomic_load_n(&la_entry.malloc, __ATOMIC_RELAXED)(size); }
void *la_entry_calloc(size_t n, size_t size) { return __atomic_load_n(&la_entry.calloc, __ATOMIC_RELAXED)(n, size); }
void *la_entry_realloc(void *p, size_t size) { return __atomic_load_n(&la_entry.realloc, __ATOMIC_RELAXED)(p, size); }
void *la_entry_reallocarray(void *p, size_t n, size_t size) {
  return __atomic_load_n(&la_entry.reallocarray, __ATOMIC_RELAXED)(p, n, size);
}
int la_entry_posix_memalign(void **out, size_t align, size_t size) {
  return __atomic_load_n(&la_entry.posix_memalign, __ATOMIC_RELAXED)(out, align, size);
}
void *la_entry_aligned_alloc(size_t align, size_t size) {
  return __atomic_load_n(&la_entry.aligned_alloc, __ATOMIC_RELAXED)(align, size);
}
void *la_entry_memalign(size_t align, size_t size) { return __atomic_load_n(&la_entry.memalign, __ATOMIC_RELAXED)(align, size); }
void *la_entry_valloc(size_t size) { return __atomic_load_n(&la_entry.valloc, __ATOMIC_RELAXED)(size); }
void *la_entry_pvalloc(size_t size) { return __atomic_load_n(&la_entry.pvalloc, __ATOMIC_RELAXED)(size); }
