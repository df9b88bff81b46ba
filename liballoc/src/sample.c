/* sample.c - what the malloc family's exported names call: the plain entry
 * points, or, while the heap profiler samples, their counting versions.
 *
 * interpose.c's malloc, calloc, realloc and the aligned calls jump through
 * la_entry, a table of pointers.  Each was a direct jump to its la_*
 * function before; an indirect jump is the same one instruction, so with
 * prof off the malloc+free pairs cost what they did (callgrind).  While
 * profiling, the table points at the *_sampled versions, which count
 * bytes down to the next sample at exponentially distributed gaps of mean
 * prof_sample_bytes (tcmalloc's and Go's scheme), and the allocation the
 * count runs out in is recorded by prof.c.  The gap is memoryless, so
 * independent countdowns over disjoint sets of blocks are the same
 * process as one: each small slab counts its own blocks (sample_left, in
 * blocks of its size: a block is sampled with probability p(block
 * size)), and each heap the bytes asked for everything else (large, huge
 * and lent blocks).  alloc.c compiles each fast path twice from one body,
 * the second time with the slab's count written back with `used` in the
 * pop's one store (la_slab_pop_sampled); the allocator's fast paths, free
 * lists and caches behave as with prof off.  Everything the fast paths do
 * not serve is counted here, after the plain slow path (la_sample_slow,
 * la_sample_block).
 * (Three designs came before.  The heap's byte count in the fast paths,
 * a subtraction from the heap and a branch, was two instructions but one
 * store more per allocation, which cost store-bound programs (churn) 4-6%
 * of their time where its instructions were 1.5%.  Cutting each class's
 * free list into chains that ended at the next sample needed no
 * instruction, but a chain held the blocks freed while it ran, so a
 * program that frees and allocates in turn reused blocks a chain old, out
 * of cache: churn and python3 took 18% more CPU time.  Counting ahead of the plain entry points, in
 * thread-local memory, took six instructions: a size check, the TLS
 * offset, the subtraction, a branch and a jump.)
 *
 * A realloc counts when it allocates: a new block (moved, or from NULL),
 * not a block resized in place (alloc.c's realloc_body).  Requests that
 * fail are not counted. */
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

/* The heap's countdown went below zero at the allocation of p.  A heap's
 * first count of this profile (a new heap, or sampling switched on since,
 * which set it to 0: la_heaps_prof_reset) starts from a gap drawn now,
 * which is the same process (memoryless) at the mean now in force; a
 * heap handed to a new thread keeps its count, which is as good. */
LA_NOINLINE void *la_sample_due(la_heap_t *heap, void *p, size_t size) {
  uint32_t epoch = atomic_load_explicit(&la_prof_epoch, memory_order_relaxed);
  if (heap->sample_epoch != epoch) {
    heap->sample_epoch = epoch;
    heap->sample_left = la_prof_next_gap() - (int64_t)size;
    if (heap->sample_left >= 0) return p;
  }
  heap->sample_left = la_prof_next_gap();
  la_frame_t from = la_frame_of_self();   /* the stack starts at the entry point's frame */
  la_prof_take(p, size, size, &from);
  return p;
}

/* The most bytes of blocks a slab's countdown holds; the rest of a
 * longer gap is drawn again when they are used up, which is the same
 * process (memoryless).  What it bounds is a countdown drawn at another
 * mean: slabs keep theirs across a switch off and on, and a program that
 * turns a GiB a sample into 4 KiB would otherwise wait a GiB of each
 * slab's blocks for the new rate.  At the default 2 MiB, 1.5 more draws
 * a sample (~150 instructions each). */
#define SLAB_GAP_BYTES (UINT64_C(1) << 20)

/* A gap in the slab's blocks: how many it hands out up to and including
 * the one a byte gap of mean prof_sample_bytes ends in.  That is
 * geometric with P(more than k) = exp(-k * size / mean), so each block is
 * sampled with probability p(block size), whatever was asked for. */
static uint32_t slab_gap(la_slab_t *slab) {
  uint64_t size = slab->block_size, most = SLAB_GAP_BYTES / size + 1;
  uint64_t blocks = ((uint64_t)la_prof_next_gap() + size - 1) / size;
  slab->sample_gap = blocks > most ? LA_GAP_CUT : LA_GAP_DRAWN;
  return blocks > most ? (uint32_t)most : (uint32_t)blocks;
}

/* A small slab's countdown ran out at the block p: sample it, if the
 * count was a whole gap's.  If none was drawn (a new slab), p is the
 * first block of a gap drawn now; if it was a gap cut to fit, p is the
 * last of those the gap surely passes over, and a gap drawn now starts
 * after it.  A slab's countdown outlives profiling's switches and its
 * owners: a gap partly used up is as good as a new one (memoryless). */
LA_NOINLINE void *la_sample_slab_due(size_t size, void *p, la_slab_t *slab) {
  bool take = slab->sample_gap != LA_GAP_CUT;
  if (slab->sample_gap == LA_GAP_NONE) {
    uint32_t n = slab_gap(slab);
    if (n > 1) {
      slab->sample_left = n - 2;   /* p was the first of n */
      return p;
    }
  }
  slab->sample_left = slab_gap(slab) - 1;   /* the next gap starts after p */
  if (!take) return p;
  la_frame_t from = la_frame_of_self();   /* the stack starts at the entry point's frame */
  la_prof_take(p, size, slab->block_size, &from);
  return p;
}

/* No class of blocks under half a unit is large (a unit holds two), and
 * an aligned request of such a size and alignment lands on no large slab
 * either (alloc.c, alloc_aligned_slow). */
#define MAYBE_LARGE (LA_UNIT_SIZE / 2)

/* p (maybe NULL) came from a slow path of the plain entry points: count it
 * down.  It may be a large block, on a slab that still carries the sample
 * of a block freed there unseen (la_prof_fresh); or a huge one in a thread
 * that has no heap yet (which gets one: counting needs it). */
void *la_sample_slow(void *p, size_t align, size_t size) {
  if (!p) return NULL;
  if ((size | align) >= MAYBE_LARGE) la_prof_fresh(p);
  la_heap_t *heap = la_tls_heap;
  if (LA_UNLIKELY(heap == &la_empty_heap) && !(heap = la_heap_for_thread())) return p;
  return la_sample_block(heap, p, size);
}

static const la_entry_t sampled = {
  .malloc = la_malloc_sampled, .calloc = la_calloc_sampled, .realloc = la_realloc_sampled,
  .reallocarray = la_reallocarray_sampled, .posix_memalign = la_posix_memalign_sampled,
  .aligned_alloc = la_aligned_alloc_sampled, .memalign = la_memalign_sampled,
  .valloc = la_valloc_sampled, .pvalloc = la_pvalloc_sampled,
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
