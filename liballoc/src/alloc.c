/* alloc.c - the malloc family under internal names (la_malloc, ...).
 *
 * The fast paths are here: malloc of a small size is a class-table load, a
 * TLS load and a list pop; free of a block its own thread allocated is a
 * segment-map load, a descriptor load and a list push.  Neither takes a lock
 * or does an atomic read-modify-write.  Everything else goes down to heap.c
 * (refills, other threads' blocks), arena.c (large classes) or huge.c.
 *
 * Semantics follow C, POSIX and glibc: ENOMEM for impossible sizes, EINVAL
 * for impossible alignments, a failed realloc leaves the block intact,
 * realloc(p, 0) frees like glibc's.  A pointer liballoc did not hand out is
 * passed on to the next allocator in the symbol order (glibc's), so a block
 * never crosses between heaps. */
#include "alloc_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

atomic_size_t la_foreign_frees;

/* ---- malloc -------------------------------------------------------------- */

static inline __attribute__((always_inline)) void *alloc_large(unsigned cls, size_t align) {
  la_heap_t *heap = la_heap_for_thread();
  if (heap && align <= LA_UNIT_SIZE) {
    void *p = la_heap_large_alloc(heap, cls);
    if (p) return p;
  }
  la_poll_background();
  la_arena_t *arena = heap ? heap->arena : la_arena_at(0);
  la_slab_t *slab = la_arena_alloc_large(arena, cls, align);
  if (!slab) {
    errno = ENOMEM;
    return NULL;
  }
  return slab->start;
}

/* The class is spelled out for sizes up to 128 (la_class_of's first
 * steps): with it GCC lays this path out without computing the small
 * class speculatively on the way to the large ones (callgrind, 64 KiB
 * malloc+free: 212 instructions; 216 with la_class_of alone). */
static inline __attribute__((always_inline)) void *alloc_slow_body(size_t size) {
  if (size > LA_MAX_CLASS_SIZE) {
    if (size > PTRDIFF_MAX) {
      errno = ENOMEM;
      return NULL;
    }
    return la_huge_alloc(size, LA_SEG_SIZE);
  }
  unsigned cls = size <= 128 ? (size <= 8 ? 0 : (unsigned)((size + 15) >> 4)) : la_class_of(size);
  if (la_class_large[cls]) return alloc_large(cls, LA_UNIT_SIZE);
  return la_heap_alloc_class(cls, size ? size : 1);
}

/* Before start-up: start the allocator, then serve. */
static LA_NOINLINE void *alloc_slow_first(size_t size) {
  la_ensure_init();
  return alloc_slow_body(size);
}

/* The fast path found no free block for `size` bytes.  Before start-up the
 * class tables are still zero and every bin is the empty sentinel, so the
 * class is computed again there, after starting the allocator.  That path
 * is a function of its own: inlined here, la_init_slow's call made this
 * one save registers (64 KiB malloc+free: 214 instructions, 212 without). */
static LA_NOINLINE void *alloc_slow(size_t size) {
  if (LA_UNLIKELY(!atomic_load_explicit(&la_initialized, memory_order_acquire))) return alloc_slow_first(size);
  return alloc_slow_body(size);
}

/* The same while the heap profiler samples (sample.c): the allocation
 * goes on as without it, then counts down.  A request under half a unit
 * once started is never a large block (sample.c, MAYBE_LARGE) and comes
 * from the thread's heap: counted as the fast paths count, without
 * la_sample_slow's checks (7-9 instructions where they took ~29: remotefree
 * spent 1.6% of its instructions there, callgrind).  Not inlined, so that
 * malloc_body's callers stay as small without the profiler. */
static LA_NOINLINE void *alloc_slow_sampled(size_t size) {
  if (LA_UNLIKELY(size >= LA_UNIT_SIZE / 2 || !atomic_load_explicit(&la_initialized, memory_order_acquire)))
    return la_sample_slow(alloc_slow(size), 0, size);
  void *p = alloc_slow_body(size);
  return LA_LIKELY(p != NULL) ? la_sample_block(la_tls_heap, p, size) : NULL;
}

/* malloc; `sampling`: the profiler's version, which counts each block
 * served by the fast path down from its slab's sample_left (in the store
 * that writes `used`: la_slab_pop_sampled) and everything else in
 * alloc_slow_sampled. */
static inline __attribute__((always_inline)) void *malloc_body(size_t size, bool sampling) {
  la_heap_t *heap = la_tls_heap;
  la_slab_t *slab;
  if (LA_LIKELY(size <= LA_SMALL_LUT_MAX)) slab = heap->direct[(size + 7) >> 3];
  else if (LA_LIKELY(size <= LA_MAX_CLASS_SIZE)) slab = heap->bins[la_class_of(size)];
  else return sampling ? alloc_slow_sampled(size) : alloc_slow(size);
  /* Large classes never have a slab in bins[]: they fall to alloc_slow. */
  bool due = false;
  void *p = sampling ? la_slab_pop_sampled(slab, &due) : la_slab_pop(slab);
  if (LA_UNLIKELY(p == NULL)) return sampling ? alloc_slow_sampled(size) : alloc_slow(size);
  return sampling && LA_UNLIKELY(due) ? la_sample_slab_due(size, p, slab) : p;
}

void *la_malloc(size_t size) { return malloc_body(size, false); }
void *la_malloc_sampled(size_t size) { return malloc_body(size, true); }

/* ---- pointers that are not ours ------------------------------------------ */

static void *next_symbol(const char *name) {
  /* dlsym may allocate: that is fine, it is served by us. */
  return dlsym(RTLD_NEXT, name);
}

static LA_NOINLINE void free_foreign(void *p) {
  static void (*next_free)(void *);
  atomic_fetch_add_explicit(&la_foreign_frees, 1, memory_order_relaxed);
  if (la_opt.abort_on_invalid_free) la_fatal("free(%p): pointer was not allocated by liballoc", p);
  if (!next_free) next_free = (void (*)(void *))next_symbol("free");
  if (next_free) next_free(p);
}

static LA_NOINLINE void *realloc_foreign(void *p, size_t size) {
  static void *(*next_realloc)(void *, size_t);
  if (!next_realloc) next_realloc = (void *(*)(void *, size_t))next_symbol("realloc");
  if (!next_realloc) {
    errno = ENOMEM;
    return NULL;
  }
  return next_realloc(p, size);
}

static size_t usable_size_foreign(const void *p) {
  static size_t (*next_usable)(const void *);
  if (!next_usable) next_usable = (size_t (*)(const void *))next_symbol("malloc_usable_size");
  return next_usable ? next_usable(p) : 0;
}

/* A pointer into liballoc's memory that is not a live block. */
void la_invalid_free(const void *p, const char *why) {
  static atomic_bool warned;
  atomic_fetch_add_explicit(&la_foreign_frees, 1, memory_order_relaxed);
  if (la_opt.abort_on_invalid_free) la_fatal("free(%p): %s", p, why);
  if (!atomic_exchange(&warned, true))
    la_warn("free(%p): %s; ignored (ALLOC_CONF=abort_on_invalid_free:true aborts instead)", p, why);
}

/* ---- free ---------------------------------------------------------------- */

static LA_NOINLINE void free_not_in_segment(void *p) {
  if (!p) return;
  if (la_segmap_kind(p) == LA_MAP_HUGE) la_huge_free(p);
  else free_foreign(p);
}

void la_free(void *p) {
  uintptr_t region = (uintptr_t)p >> LA_SEG_SHIFT;
  if (LA_LIKELY(la_region_kind(region) == LA_MAP_SEGMENT)) {
    la_slab_t *slab = la_slab_of_region(region, p);
    la_heap_t *heap = la_tls_heap;
    la_block_t *b = p;
    if (LA_LIKELY(LA_FAST_LOAD(slab->fast_owner) == heap)) {
      b->next = slab->free;
      slab->free = b;
      LA_OWNER_ADD(slab->nfreed, 1);
      if (LA_UNLIKELY(LA_OWNER_ADD(slab->used, -1) == 0)) la_heap_retire_slab(heap, slab);
      return;
    }
    la_heap_free_slow(heap, slab, b);
    return;
  }
  free_not_in_segment(p);
}

void la_free_sized(void *p, size_t size) {
  (void)size;
  la_free(p);
}

void la_free_aligned_sized(void *p, size_t align, size_t size) {
  (void)align;
  (void)size;
  la_free(p);
}

/* ---- sizes of live blocks ------------------------------------------------ */

/* Usable size of a block of ours, 0 for a pointer that is not a live block
 * start we know of. */
static size_t block_size_of(const void *p, enum la_map_kind kind) {
  if (kind == LA_MAP_SEGMENT) {
    la_slab_t *slab = la_slab_of(p);
    uint8_t k = __atomic_load_n(&slab->kind, __ATOMIC_ACQUIRE);
    if (LA_UNLIKELY(k == LA_SLAB_LEND)) return la_lend_block_size(slab, p);
    return k == LA_SLAB_UNUSED ? 0 : slab->block_size;
  }
  return la_huge_usable_size(p);
}

size_t la_malloc_usable_size(const void *p) {
  if (!p) return 0;
  enum la_map_kind kind = la_segmap_kind(p);
  if (kind == LA_MAP_NONE) return usable_size_foreign(p);
  return block_size_of(p, kind);
}

/* ---- calloc -------------------------------------------------------------- */

/* Memory known to read as zero: a fresh huge mapping, or a large block on
 * units that were never touched or have been purged. */
static bool known_zero(const void *p) {
  enum la_map_kind kind = la_segmap_kind(p);
  if (kind == LA_MAP_HUGE) return la_huge_is_zeroed(p);
  la_slab_t *slab = la_slab_of(p);
  return LA_SHARED_LOAD(slab->kind) == LA_SLAB_LARGE && slab->zeroed;
}

static inline __attribute__((always_inline)) void *calloc_body(size_t n, size_t size, bool sampling) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = sampling ? la_malloc_sampled(total) : la_malloc(total);
  if (p && (total <= LA_SMALL_LUT_MAX || !known_zero(p))) memset(p, 0, total);
  return p;
}

void *la_calloc(size_t n, size_t size) { return calloc_body(n, size, false); }
void *la_calloc_sampled(size_t n, size_t size) { return calloc_body(n, size, true); }

/* ---- realloc ------------------------------------------------------------- */

/* realloc's new block: counted by the profiler's malloc while it samples. */
static void *move_block(void *p, size_t old_size, size_t size, bool sampling) {
  void *q = sampling ? la_malloc_sampled(size) : la_malloc(size);
  if (!q) return NULL;   /* errno is ENOMEM; p is untouched */
  memcpy(q, p, old_size < size ? old_size : size);
  la_free(p);
  return q;
}

/* realloc; `sampling`: the profiler's version, which counts a block moved
 * or new (one resized in place is no allocation). */
static inline __attribute__((always_inline)) void *realloc_body(void *p, size_t size, bool sampling) {
  if (!p) return sampling ? la_malloc_sampled(size) : la_malloc(size);
  if (size == 0) {      /* glibc frees and returns NULL */
    la_free(p);
    return NULL;
  }
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  enum la_map_kind kind = la_segmap_kind(p);
  if (kind == LA_MAP_NONE) return realloc_foreign(p, size);
  if (kind == LA_MAP_HUGE && size > LA_MAX_CLASS_SIZE) {
    void *q = la_huge_realloc(p, size);
    return sampling && q != p ? la_sample_slow(q, 0, size) : q;
  }
  size_t old = block_size_of(p, kind);
  if (old == 0) {
    la_invalid_free(p, "realloc of a pointer that is not a live block");
    errno = EINVAL;
    return NULL;
  }
  if (size <= old && size >= old / 2) return p;   /* fits, and not wasting half */
  if (size > old && size <= LA_MAX_CLASS_SIZE && kind == LA_MAP_SEGMENT) {
    la_slab_t *slab = la_slab_of(p);
    unsigned cls = la_class_of(size);
    if (LA_SHARED_LOAD(slab->kind) == LA_SLAB_LARGE && la_class_large[cls] && la_arena_expand_large(slab, cls)) return p;
  }
  return move_block(p, old, size, sampling);
}

void *la_realloc(void *p, size_t size) { return realloc_body(p, size, false); }
void *la_realloc_sampled(void *p, size_t size) { return realloc_body(p, size, true); }

static inline __attribute__((always_inline)) void *reallocarray_body(void *p, size_t n, size_t size, bool sampling) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return sampling ? la_realloc_sampled(p, total) : la_realloc(p, total);
}

void *la_reallocarray(void *p, size_t n, size_t size) { return reallocarray_body(p, n, size, false); }
void *la_reallocarray_sampled(void *p, size_t n, size_t size) { return reallocarray_body(p, n, size, true); }

/* ---- aligned allocation -------------------------------------------------- */

/* The malloc fast path for an aligned request, NULL when it cannot serve
 * it.  Slabs start on unit boundaries, so a class whose size is a multiple
 * of `align` (at most a unit) has every block aligned.  The class of the
 * size rounded up to the alignment is such a class: class sizes between
 * 2^k and 2^(k+1) step by 2^(k-2), and a multiple of a larger power of two
 * in that range is 2^k + 2^(k-1) or 2^(k+1), both classes.  The block size
 * test keeps this true whatever the class rules become.  A heap's empty
 * bins point at a slab of block size 0 and no blocks: they fall to the
 * slow path, and so does every request this path does not serve (the
 * same empty slab).  `align` is a power of two. */
static inline __attribute__((always_inline)) la_slab_t *aligned_fast_slab(la_heap_t *heap, size_t align, size_t size) {
  size_t rounded = ((size - 1) | (align - 1)) + 1;   /* 0 for size 0 and on overflow */
  if (LA_UNLIKELY(rounded - 1 >= LA_MAX_CLASS_SIZE || align > LA_UNIT_SIZE)) return &la_slab_empty;
  la_slab_t *slab = rounded <= LA_SMALL_LUT_MAX ? heap->direct[(rounded + 7) >> 3] : heap->bins[la_class_of(rounded)];
  if (LA_UNLIKELY(slab->block_size & (align - 1))) return &la_slab_empty;
  return slab;
}

/* Every aligned request the fast path did not serve.  `align` is a power
 * of two.  `sampling`: each way out counts its block, a small one as the
 * fast paths do, the others through la_sample_slow. */
static inline __attribute__((always_inline)) void *aligned_slow_body(size_t align, size_t size, bool sampling) {
  if (size == 0) size = 1;   /* a unique, freeable block, as malloc(0) */
  if (align <= LA_MIN_ALIGN) {
    if (align > sizeof(void *) && size < LA_MIN_ALIGN) size = LA_MIN_ALIGN;
    return sampling ? la_malloc_sampled(size) : la_malloc(size);
  }
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  la_ensure_init();
  void *p;
  if (size <= LA_MAX_CLASS_SIZE && align <= LA_UNIT_SIZE) {
    unsigned cls = la_class_for_aligned(size, align);
    if (la_class_large[cls]) {
      p = alloc_large(cls, align);   /* unit-aligned */
    } else {
      p = la_slab_pop(la_tls_heap->bins[cls]);   /* the malloc fast path */
      if (!p) p = la_heap_alloc_class(cls, 0);
      /* A block of the thread's heap (made by la_heap_alloc_class if need
       * be), on a small slab or a lender. */
      return sampling && p ? la_sample_block(la_tls_heap, p, size) : p;
    }
  } else if (size <= LA_MAX_CLASS_SIZE && align <= LA_MAX_CLASS_SIZE) {
    unsigned cls = la_class_of(size > LA_UNIT_SIZE ? size : LA_UNIT_SIZE);
    while (!la_class_large[cls]) cls++;   /* a class with slabs of one block */
    p = alloc_large(cls, align);
  } else {
    p = la_huge_alloc(size, align);
  }
  return sampling ? la_sample_slow(p, align, size) : p;
}

static LA_NOINLINE void *alloc_aligned_slow(size_t align, size_t size) { return aligned_slow_body(align, size, false); }
static LA_NOINLINE void *alloc_aligned_slow_sampled(size_t align, size_t size) { return aligned_slow_body(align, size, true); }

/* `sampling`: as malloc_body. */
static inline __attribute__((always_inline)) void *alloc_aligned(size_t align, size_t size, bool sampling) {
  la_slab_t *slab = aligned_fast_slab(la_tls_heap, align, size);
  bool due = false;
  void *p = sampling ? la_slab_pop_sampled(slab, &due) : la_slab_pop(slab);
  if (LA_UNLIKELY(p == NULL)) return sampling ? alloc_aligned_slow_sampled(align, size) : alloc_aligned_slow(align, size);
  return sampling && LA_UNLIKELY(due) ? la_sample_slab_due(size, p, slab) : p;
}

static bool is_power_of_two(size_t x) {
  return x && !(x & (x - 1));
}

/* posix_memalign when the fast path did not serve: errno left as it was.
 * A function of its own so that the fast path saves no registers (it
 * pushed and popped five: 10 of its 30 instructions). */
static LA_NOINLINE int posix_memalign_slow(void **out, size_t align, size_t size, bool sampling) {
  int saved = errno;
  void *p = sampling ? alloc_aligned_slow_sampled(align, size) : alloc_aligned_slow(align, size);
  if (!p) {
    errno = saved;
    return ENOMEM;
  }
  *out = p;
  return 0;
}

/* posix_memalign's block p is due for a sample: reached by a tail call
 * so that the fast path keeps `out` in no saved register (3 instructions
 * a call). */
static LA_NOINLINE int posix_memalign_due(void **out, la_slab_t *slab, void *p, size_t size) {
  *out = la_sample_slab_due(size, p, slab);
  return 0;
}

static inline __attribute__((always_inline)) int posix_memalign_body(void **out, size_t align, size_t size,
                                                                      bool sampling) {
  if (align < sizeof(void *) || !is_power_of_two(align)) return EINVAL;
  la_slab_t *slab = aligned_fast_slab(la_tls_heap, align, size);
  bool due = false;
  void *p = sampling ? la_slab_pop_sampled(slab, &due) : la_slab_pop(slab);
  if (LA_UNLIKELY(!p)) return posix_memalign_slow(out, align, size, sampling);
  if (sampling && LA_UNLIKELY(due)) return posix_memalign_due(out, slab, p, size);
  *out = p;
  return 0;
}

int la_posix_memalign(void **out, size_t align, size_t size) { return posix_memalign_body(out, align, size, false); }
int la_posix_memalign_sampled(void **out, size_t align, size_t size) { return posix_memalign_body(out, align, size, true); }

static inline __attribute__((always_inline)) void *aligned_alloc_body(size_t align, size_t size, bool sampling) {
  if (!is_power_of_two(align)) {
    errno = EINVAL;
    return NULL;
  }
  return alloc_aligned(align, size, sampling);
}

void *la_aligned_alloc(size_t align, size_t size) { return aligned_alloc_body(align, size, false); }
void *la_aligned_alloc_sampled(size_t align, size_t size) { return aligned_alloc_body(align, size, true); }

/* glibc's memalign rounds an alignment that is not a power of two up to
 * the next one; only an alignment that cannot be rounded fails. */
static inline __attribute__((always_inline)) void *memalign_body(size_t align, size_t size, bool sampling) {
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return NULL;
  }
  if (!is_power_of_two(align)) align = align < 2 ? 1 : (size_t)1 << (64 - __builtin_clzll(align - 1));
  return alloc_aligned(align, size, sampling);
}

void *la_memalign(size_t align, size_t size) { return memalign_body(align, size, false); }
void *la_memalign_sampled(size_t align, size_t size) { return memalign_body(align, size, true); }

static inline __attribute__((always_inline)) void *valloc_body(size_t size, bool sampling) {
  la_ensure_init();
  return alloc_aligned(la_page_size, size, sampling);
}

void *la_valloc(size_t size) { return valloc_body(size, false); }
void *la_valloc_sampled(size_t size) { return valloc_body(size, true); }

static inline __attribute__((always_inline)) void *pvalloc_body(size_t size, bool sampling) {
  la_ensure_init();
  size_t page = la_page_size;
  if (size == 0) size = 1;
  if (size > SIZE_MAX - (page - 1)) {
    errno = ENOMEM;
    return NULL;
  }
  return alloc_aligned(page, (size + page - 1) & ~(page - 1), sampling);
}

void *la_pvalloc(size_t size) { return pvalloc_body(size, false); }
void *la_pvalloc_sampled(size_t size) { return pvalloc_body(size, true); }

/* ---- trim ---------------------------------------------------------------- */

/* Return all free memory to the OS now: the calling thread's emptied
 * slabs and the free pages of its sparse ones, every arena's free units,
 * the huge cache.  1 if anything was released. */
int la_malloc_trim(size_t pad) {
  (void)pad;
  la_ensure_init();
  la_heap_flush(la_tls_heap);
  size_t released = la_heap_trim_sparse_now();
  released += la_arenas_purge();
  released += la_huge_purge();
  return released > 0;
}
