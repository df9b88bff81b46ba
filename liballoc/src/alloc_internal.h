/* alloc_internal.h - prototypes shared between liballoc's source files,
 * grouped by the file that defines them, plus the few inline helpers the
 * fast paths need.  Types and constants are in alloc_types.h. */
#ifndef ALLOC_INTERNAL_H
#define ALLOC_INTERNAL_H

#include "alloc_types.h"
#include <stdarg.h>

/* ---- fields one thread writes and others read ------------------------------
 * A slab's `used` and `nfreed`, its `fast_owner`, a heap's cache counters and
 * an arena's segment count are written by one thread (or under one lock) and
 * read by others without it: the statistics, the free path's "is this my
 * slab" test (a stale value is never the reader's own heap), the purger's
 * "has this arena any segment".  Relaxed atomic loads and stores compile to
 * the same plain moves on x86-64 and arm64 and make those reads defined
 * behaviour, which is also what lets ThreadSanitizer check everything else. */
#define LA_SHARED_LOAD(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)
#define LA_SHARED_STORE(field, value) __atomic_store_n(&(field), (value), __ATOMIC_RELAXED)

/* The exceptions, on the fast paths only: malloc and free bump `used` and
 * `nfreed` with one read-modify-write instruction each, which a relaxed
 * atomic store cannot be (load, add, store: five more instructions per
 * malloc/free pair), and free compares the segment map's byte and the
 * slab's fast_owner in memory, which GCC does not do for an atomic load
 * (one more instruction each; a stale fast_owner is never the reader's
 * own heap either way).  Only
 * statistics read the counters racily, and an aligned word or a byte is
 * never torn on the targets we build for; under ThreadSanitizer these are
 * atomic, so TSan checks every other access instead of reporting these. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) && !defined(__SANITIZE_THREAD__)
#define __SANITIZE_THREAD__ 1   /* clang's spelling of GCC's macro */
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define LA_OWNER_ADD(field, delta) \
  ({ __typeof__(field) sum_ = (field) + (delta); LA_SHARED_STORE(field, sum_); sum_; })
#define LA_FAST_LOAD(field) LA_SHARED_LOAD(field)
#else
#define LA_OWNER_ADD(field, delta) ((field) += (delta))
#define LA_FAST_LOAD(field) (field)
#endif

/* ---- os_fault.c: system calls that fail on purpose (tests) --------------- */
enum la_os_call {
  LA_OS_MMAP, LA_OS_MUNMAP, LA_OS_MREMAP, LA_OS_MADVISE, LA_OS_MINCORE,   /* memory */
  LA_OS_OPEN, LA_OS_READ, LA_OS_WRITE, LA_OS_FILE,         /* files: FILE is stat, rename, unlink, flock */
  LA_OS_NCALLS
};
extern atomic_bool la_os_faults_armed;
bool la_os_fault_hit_slow(enum la_os_call call);
/* Must this call fail (errno set)?  One relaxed load when nothing is armed. */
static inline bool la_os_fault(enum la_os_call call) {
  return __builtin_expect(atomic_load_explicit(&la_os_faults_armed, memory_order_relaxed), 0) &&
         la_os_fault_hit_slow(call);
}
void la_os_fault_set(enum la_os_call call, uint64_t nth, uint32_t ppm, int err);
void la_os_fault_clear(void);
uint64_t la_os_fault_injected(enum la_os_call call);
const char *la_os_call_name(enum la_os_call call);
void la_os_faults_init(void);

/* ---- os.c: memory, clocks, threads, the environment ---------------------- */
extern size_t la_page_size;           /* read at run time, never compiled in */
extern atomic_size_t la_os_release_failures;   /* madvise/munmap the kernel refused */
void la_os_init(void);
void *la_os_map(size_t size);
void *la_os_map_aligned(size_t size, size_t align);
bool la_os_unmap(void *p, size_t size);
bool la_os_purge(void *p, size_t size);
bool la_os_purge_lazy(void *p, size_t size);
struct iovec;
size_t la_os_purge_many(const struct iovec *iov, size_t n, bool lazy);
size_t la_os_resident_pages(const void *p, size_t size, unsigned char *vec, size_t vec_len);
size_t la_os_hugepage_size(void);
uint64_t la_now_ns(void);
uint64_t la_now_coarse_ns(void);   /* to the clock tick (1-4 ms), cheap */
uint64_t la_os_realtime_ns(void);
uint64_t la_os_monotonic_ns(void);  /* never the tests' clock */
void la_os_set_clock(uint64_t (*now_ns)(void));
void la_os_advise_thp(void *p, size_t size, int thp_mode);
void *la_os_remap_to(void *old, size_t old_size, size_t new_size, void *dest);
void la_os_move_regions(void *from, size_t size, void *to);
bool la_os_extend_in_place(void *p, size_t old_size, size_t new_size);
uint64_t la_os_random64(void);
unsigned la_os_ncpus(void);
const char *la_os_getenv(const char *name);
bool la_os_environ_ready(void);
void la_os_write_stderr(const char *s, size_t len);
void la_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void la_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void la_os_cond_init_monotonic(pthread_cond_t *cond);
int la_os_start_thread(void *(*fn)(void *), size_t stack);
void la_os_name_self(const char *name);
void la_os_sleep_ms(unsigned ms);
void la_os_wait_thread_gone(int tid);
bool la_os_membarrier_register(void);
bool la_os_membarrier(void);
int la_os_gettid(void);
bool la_os_read_own(void *dst, const void *src, size_t len);
bool la_os_thread_alive(int tid);

/* ---- os_file.c: files (the telemetry segment, /proc, /sys) -------------- */
struct stat;
int la_os_open(const char *path, int flags, unsigned mode);
void la_os_close(int fd);
ssize_t la_os_read_file(const char *path, char *buf, size_t size);
bool la_os_pread(int fd, void *buf, size_t len, uint64_t off);
bool la_os_pwrite(int fd, const void *buf, size_t len, uint64_t off);
bool la_os_ftruncate(int fd, uint64_t size);
bool la_os_fstat(int fd, struct stat *st);
bool la_os_stat(const char *path, struct stat *st, bool nofollow);
bool la_os_rename(const char *from, const char *to);
bool la_os_unlink(const char *path);
bool la_os_try_flock(int fd, int op);
void la_os_unflock(int fd);
void la_os_readlink(const char *path, char *buf, size_t size);
int la_os_getpid(void);

/* ---- options.c: the knobs and ALLOC_CONF ---------------------------------- */
enum la_knob_type { LA_KNOB_BOOL, LA_KNOB_INT, LA_KNOB_COUNT, LA_KNOB_ENUM, LA_KNOB_PATH, LA_KNOB_BYTES };
enum la_knob_change { LA_KNOB_FIXED, LA_KNOB_LIVE, LA_KNOB_APPLY };

/* One knob of ALLOC_SHM_KNOBS, as liballoc uses it (alloc_shm.h says what
 * each column means). */
typedef struct la_knob_s {
  const char *name;
  enum la_knob_type type;
  size_t offset, size;            /* its field in la_options_t */
  const char *def;                /* default, as ALLOC_CONF text */
  long long min, max;             /* INT, COUNT and BYTES */
  const char *const *modes;       /* ENUM: the value names, by number; BYTES: its words */
  int nmodes;
  enum la_knob_change change;
  int (*apply)(void);             /* APPLY: la_apply_<name>, after the store */
  bool published;                 /* in the segment's config block */
  const char *help;
} la_knob_t;

extern la_options_t la_opt;
extern const la_knob_t la_knobs[];
extern const size_t la_nknobs;
const la_knob_t *la_knob_find(const char *name, size_t len);
bool la_knob_parse(la_options_t *o, const la_knob_t *k, const char *text, size_t len);
void la_knob_format(const la_options_t *o, const la_knob_t *k, char *out, size_t len);
void la_knob_format_bytes(const la_knob_t *k, ssize_t v, char *out, size_t len);
void la_options_defaults(la_options_t *o);
int la_options_parse(la_options_t *o, const char *conf);
bool la_options_init(void);
bool la_parse_u64(const char *s, const char **end, uint64_t *out);

/* ---- sizeclass.c: the class table ---------------------------------------- */
/* Entries i of heap->direct (sizes up to i*8) that map to each class;
 * first > last, or last == 0, for classes wholly above LA_SMALL_LUT_MAX. */
extern uint8_t la_class_direct_first[LA_NCLASSES], la_class_direct_last[LA_NCLASSES];
extern size_t la_class_size[LA_NCLASSES];
extern uint8_t la_class_units[LA_NCLASSES];
extern uint32_t la_class_capacity[LA_NCLASSES];
extern bool la_class_large[LA_NCLASSES];
void la_sizeclass_init(void);

/* The classes of sizes above 128, by table: the class of `size` up to
 * LA_SMALL_LUT_MAX is la_class_by_8[(size - 1) >> 3], up to
 * LA_CLASS_LUT_MAX la_class_by_128[(size - 1) >> 7], above it
 * la_class_by_16k[(size - 1) >> 14] (class sizes there are multiples of
 * 8, of 128 and of 16 KiB).  One load where four-per-doubling arithmetic
 * took ~12 dependent instructions (callgrind, malloc+free of 4 KiB: 71 ->
 * 60, of 64 KiB: 178 -> 157), and the 1040 class (sizeclass.c) is no
 * quarter of a doubling.  Zero until la_sizeclass_init: every path that
 * needs a class before start-up (a heap's bins are then all empty)
 * computes it again after. */
extern uint8_t la_class_by_8[LA_SMALL_LUT_MAX >> 3];
extern uint8_t la_class_by_128[LA_CLASS_LUT_MAX >> 7];
extern uint8_t la_class_by_16k[LA_MAX_CLASS_SIZE >> 14];

/* The class of any size up to LA_MAX_CLASS_SIZE: 8, then steps of 16 to
 * 128, then the tables. */
static inline unsigned la_class_of(size_t size) {
  if (size <= 8) return 0;
  if (size <= 128) return (unsigned)((size + 15) >> 4);          /* 16..128 -> 1..8 */
  if (size <= LA_SMALL_LUT_MAX) return la_class_by_8[(size - 1) >> 3];
  if (size <= LA_CLASS_LUT_MAX) return la_class_by_128[(size - 1) >> 7];
  return la_class_by_16k[(size - 1) >> 14];
}
unsigned la_class_for_aligned(size_t size, size_t align);

/* A hint that p's line will be written: prefetchw fetches it for
 * ownership, so a line another core wrote last (a block freed by another
 * thread) moves once, not shared first and then owned.  Never faults (the
 * pops pass the new list head, NULL at its end); a NOP on CPUs without it. */
static inline void la_prefetch_write(const void *p) {
#if defined(__x86_64__)
  __asm__ volatile("prefetchw (%0)" : : "r"(p));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}

/* Pop a block off a slab's free list: the malloc fast path, run by the
 * slab's owner only.  NULL when the list is empty.  The new head is
 * prefetched for the next pop, whose load of its link is otherwise what a
 * malloc of a block freed long ago, or by another core, waits for
 * (xthread-8t, remotefree: ~90% of la_malloc's perf samples on that load);
 * an instruction free no longer needs (la_slab_of_region) pays for it. */
static inline void *la_slab_pop(la_slab_t *slab) {
  la_block_t *b = slab->free;
  if (LA_LIKELY(b != NULL)) {
    la_block_t *next = b->next;
    slab->free = next;
    la_prefetch_write(next);
    LA_OWNER_ADD(slab->used, 1);
  }
  return b;
}

/* The heap profiler's pop (alloc.c's sampled fast paths): the pop, and a
 * step of the slab's countdown to its next sample, written back with
 * `used` in one store.  A count of its own, anywhere, is one more store
 * per allocation, and that store, not its two instructions, cost
 * store-bound programs 4-6% of their time (docs/metrics.md).  The two
 * halves are read apart (relaxed loads are never merged): a 64-bit read
 * of a word whose low half free() just wrote with a 32-bit store would
 * wait for that store to leave the store buffer.  *due: the count ran
 * out (sample.c). */
static inline void *la_slab_pop_sampled(la_slab_t *slab, bool *due) {
  la_block_t *b = slab->free;
  if (LA_LIKELY(b != NULL)) {
    la_block_t *next = b->next;
    slab->free = next;
    la_prefetch_write(next);
    uint32_t used = LA_SHARED_LOAD(slab->used);
    uint32_t left = LA_SHARED_LOAD(slab->sample_left) - 1;
#if defined(__SANITIZE_THREAD__)
    LA_SHARED_STORE(slab->used, used + 1);
    slab->sample_left = left;
    *due = (int32_t)left < 0;
#else
    uint64_t high = (uint64_t)left << 32;
    slab->used_and_left = high + used + 1;   /* used + 1 never carries */
    *due = (int64_t)high < 0;
#endif
  }
  return b;
}

/* Push a block the owner frees back on its slab's free list, counted (the
 * slow paths'; la_free's fast path does the same inline). */
static inline void la_slab_push(la_slab_t *slab, la_block_t *block) {
  block->next = slab->free;
  slab->free = block;
  LA_SHARED_STORE(slab->used, slab->used - 1);
  LA_SHARED_STORE(slab->nfreed, slab->nfreed + 1);
}

/* ---- segmap.c: which 4 MiB regions are ours ------------------------------ */
extern uint8_t la_segmap[LA_MAP_SIZE];
void la_segmap_set(void *base, size_t size, enum la_map_kind kind);

/* The kind of 4 MiB region number `region` (an address >> LA_SEG_SHIFT);
 * LA_MAP_NONE for any region not ours.  free() has the number at hand
 * (la_slab_of_region); others ask for an address: la_segmap_kind. */
static inline enum la_map_kind la_region_kind(uintptr_t region) {
  if (LA_UNLIKELY(region >= LA_MAP_SIZE)) return LA_MAP_NONE;
  /* Racy by design: the kernel can hand an address range just unmapped by
   * one thread to another's mmap, an order no lock of ours records. */
  return (enum la_map_kind)LA_FAST_LOAD(la_segmap[region]);
}

/* Kind of the region holding p; LA_MAP_NONE for any address not ours. */
static inline enum la_map_kind la_segmap_kind(const void *p) { return la_region_kind((uintptr_t)p >> LA_SEG_SHIFT); }

static inline la_segment_t *la_segment_of(const void *p) {
  return (la_segment_t *)((uintptr_t)p & ~(uintptr_t)LA_SEG_MASK);
}

static inline la_slab_t *la_slab_of(const void *p) {
  return la_segment_of(p)->unit_slab[((uintptr_t)p >> LA_UNIT_SHIFT) & (LA_UNITS - 1)];
}

/* la_slab_of for free()'s fast path, which has p's region (p >>
 * LA_SEG_SHIFT) from la_segmap already: the segment is the region shifted
 * back, and the entry's byte offset is one shift and one mask of p (five
 * instructions where la_slab_of's own arithmetic took six). */
static inline la_slab_t *la_slab_of_region(uintptr_t region, const void *p) {
  _Static_assert(sizeof(la_slab_t *) == 8, "the entry offset is the unit index times 8");
  __asm__("" : "+r"(region));   /* else the compiler rebuilds p & ~LA_SEG_MASK from p, one copy more */
  const uint8_t *table = (const uint8_t *)(region << LA_SEG_SHIFT) + offsetof(la_segment_t, unit_slab);
  size_t off = ((uintptr_t)p >> (LA_UNIT_SHIFT - 3)) & ((LA_UNITS - 1) * sizeof(la_slab_t *));
  return *(la_slab_t *const *)(table + off);
}

/* ---- decay.c: the decay curve ------------------------------------------- */
void la_decay_init_weights(void);
void la_decay_init(la_decay_t *d, ssize_t ms, uint64_t now);
void la_decay_set_ms(la_decay_t *d, ssize_t ms, uint64_t now);
size_t la_decay_limit(la_decay_t *d, uint64_t now, size_t npages);
void la_decay_purged(la_decay_t *d, size_t npages);
uint64_t la_decay_next_deadline(const la_decay_t *d, size_t npages);

/* ---- meta.c: memory for liballoc's own structures ------------------------ */
void *la_meta_alloc(size_t size);
void *la_meta_alloc_sparse(size_t size);
size_t la_meta_mapped(void);
size_t la_meta_used(void);
void la_meta_apply_thp(void);
void la_meta_fork_prepare(void);
void la_meta_fork_parent(void);
void la_meta_fork_child(void);

/* ---- segment.c: units and slab descriptors inside a segment -------------- */
extern la_slab_t la_slab_invalid;
uint64_t la_bits_run_starts(uint64_t bits, unsigned k);
unsigned la_bits_longest_run(uint64_t bits);
uint64_t la_bits_run_mask(unsigned unit, unsigned k);
la_segment_t *la_segment_create(la_arena_t *arena, void *recycled);
bool la_segment_destroy(la_segment_t *seg);
void la_segment_update_max_run(la_segment_t *seg);
int la_segment_find_run(const la_segment_t *seg, unsigned k, unsigned align_units);
la_slab_t *la_segment_take_run(la_segment_t *seg, unsigned unit, unsigned k);
uint64_t la_segment_release_run(la_segment_t *seg, la_slab_t *slab);
uint64_t la_segment_advise_runs(la_segment_t *seg, uint64_t mask, bool lazy, la_purge_stats_t *st);
/* Units of a segment to give back (mask), and those the kernel took (done). */
typedef struct la_advice_s {
  la_segment_t *seg;
  uint64_t mask, done;
} la_advice_t;
void la_segments_advise(la_advice_t *runs, unsigned n, bool lazy, la_purge_stats_t *st);
bool la_segment_is_empty(const la_segment_t *seg);
void la_segment_touch(la_segment_t *seg, const void *addr, size_t len);
uint64_t la_segment_resident(const la_segment_t *seg, unsigned unit, unsigned k);
uint64_t la_segment_resident_units(const la_segment_t *seg);
void la_segment_forget(la_segment_t *seg, unsigned unit, unsigned k, uint64_t pages);
static inline uint8_t *la_unit_address(la_segment_t *seg, unsigned unit) {
  return (uint8_t *)seg + ((size_t)unit << LA_UNIT_SHIFT);
}

/* ---- arena.c: pools of segments, under a lock ---------------------------- */
extern unsigned la_narenas;
void la_arenas_init(void);
void la_arenas_set_count(void);
la_arena_t *la_arena_for_thread(void);
la_arena_t *la_arena_at(unsigned index);
la_slab_t *la_arena_get_slab(la_arena_t *arena, unsigned cls, la_heap_t *owner);
void la_arena_put_slab(la_arena_t *arena, la_slab_t *slab);
void la_arena_abandon_slab(la_arena_t *arena, la_slab_t *slab);
la_slab_t *la_arena_alloc_large(la_arena_t *arena, unsigned cls, size_t align);
void la_arena_free_large(la_slab_t *slab);
bool la_arena_expand_large(la_slab_t *slab, unsigned cls);
size_t la_arenas_give_free_segments(size_t want);
void la_arenas_trade_dirty(size_t fresh, size_t keep);
size_t la_arenas_purge(void);
uint64_t la_arena_decay(la_arena_t *arena, uint64_t now);
uint64_t la_arenas_decay(uint64_t now);
void la_arenas_set_decay(ssize_t dirty_ms, ssize_t muzzy_ms);
void la_arenas_apply_thp(int mode);
void la_arenas_stats(la_stats_t *st);
void la_arenas_fork_prepare(void);
void la_arenas_fork_parent(void);
void la_arenas_fork_child(void);

/* ---- slab.c: free lists of one slab -------------------------------------- */
extern la_slab_t la_slab_empty;
void la_slab_init(la_slab_t *slab, la_segment_t *seg, unsigned unit, unsigned cls);
bool la_slab_refill_free(la_slab_t *slab);
bool la_slab_trimmable(const la_slab_t *s);
size_t la_slab_trim(la_slab_t *s);   /* bytes given back */
size_t la_slab_trim_pages(la_slab_t *s, uint64_t pages);
size_t la_slab_purge_stale(la_slab_t *s);   /* bytes given back */
extern atomic_size_t la_trimmed_bytes, la_trimmed_slabs, la_trim_madvises;   /* la_slab_trim and la_slab_purge_stale so far */
bool la_slab_block_trimmed(const la_slab_t *s, const la_block_t *b);
la_block_t *la_slab_take_remote(la_slab_t *slab);
bool la_slab_collect_remote(la_slab_t *slab);
void la_slab_free_remote(la_slab_t *slab, la_block_t *block, struct la_heap_s *hint);
uint32_t la_slab_remote_count(const la_slab_t *slab);
bool la_slab_has_remote(const la_slab_t *slab);
void la_slab_free_slots(const la_slab_t *s, uint64_t *bits);
bool la_slab_holds_free(const la_slab_t *slab, const la_block_t *block, bool owner);
void la_slab_list_push(la_slab_list_t *list, la_slab_t *slab);
void la_slab_list_push_front(la_slab_list_t *list, la_slab_t *slab);
void la_slab_list_remove(la_slab_list_t *list, la_slab_t *slab);
bool la_slab_block_carved(const la_slab_t *s, uint32_t i);
uint32_t la_slab_carve_place(const la_slab_t *s, uint32_t i);
void la_slab_untrim_range(la_slab_t *s, const void *p, size_t bytes);

/* ---- lend.c: sparse slabs lending their free slots ------------------------ */
bool la_lend_class_ok(unsigned cls);
uint64_t la_lend_classes_for(unsigned cls);
bool la_lend_start(la_slab_t *s);
bool la_lend_can_stop(const la_slab_t *s);
void la_lend_stop(la_slab_t *s);
void *la_lend_take(la_slab_t *s, unsigned cls, size_t size);
void *la_lend_serve(la_slab_t *s);
void la_lend_unserve(la_slab_t *s);
bool la_lend_free_to_list(la_slab_t *s, la_block_t *b);
size_t la_lend_longest(const la_slab_t *s);
bool la_lend_free(la_slab_t *s, la_block_t *b);
void la_lend_collect(la_slab_t *s);
void la_lend_end(la_arena_t *a, la_slab_t *s);
size_t la_lend_block_size(const la_slab_t *s, const void *p);
uint64_t la_lend_small_frees(const la_slab_t *s);
uint64_t la_lend_stats(la_stats_t *st, const la_slab_t *s);

/* ---- heap.c: per-thread heaps -------------------------------------------- */
extern __thread la_heap_t *la_tls_heap;
extern la_heap_t la_empty_heap;
la_heap_t *la_heap_for_thread(void);
size_t la_heap_trim_sparse_now(void);   /* near memory_limit: the caller's sparse slabs, bytes given back */
void *la_heap_alloc_class(unsigned cls, size_t lend_size);
void la_heap_free_slow(la_heap_t *heap, la_slab_t *slab, la_block_t *block);
void la_heap_retire_slab(la_heap_t *heap, la_slab_t *slab);
void la_invalid_free(const void *p, const char *why);
void la_heap_flush(la_heap_t *heap);
void *la_heap_large_alloc(la_heap_t *heap, unsigned cls);
void la_heaps_init(void);
void la_heaps_set_checks(void);
void la_heaps_stats(la_stats_t *st);
uint64_t la_heaps_decay(uint64_t now);
bool la_heaps_several(void);
uint64_t la_heaps_before_sleep(uint64_t now);
void la_heaps_prof_reset(void);
void la_heaps_fork_prepare(void);
void la_heaps_fork_parent(void);
void la_heaps_fork_child(void);

/* ---- huge.c: blocks with a mapping of their own -------------------------- */
void *la_huge_alloc(size_t size, size_t align);
void la_huge_free(void *p);
bool la_huge_mark_sampled(const void *p);
size_t la_huge_usable_size(const void *p);
void *la_huge_realloc(void *p, size_t size);
void la_huge_stats(la_stats_t *st);
bool la_huge_is_zeroed(const void *p);
uint64_t la_huge_decay(uint64_t now);
void la_huge_set_decay(ssize_t ms);
void la_huge_apply_thp(int mode);
size_t la_huge_purge(void);
void *la_huge_take_region(void);
bool la_huge_cache_region(void *region);
void la_huge_fork_prepare(void);
void la_huge_fork_parent(void);
void la_huge_fork_child(void);

/* ---- alloc.c: the malloc family, internal names -------------------------- */
void *la_malloc(size_t size);
void la_free(void *p);
void *la_calloc(size_t n, size_t size);
void *la_realloc(void *p, size_t size);
void *la_reallocarray(void *p, size_t n, size_t size);
int la_posix_memalign(void **out, size_t align, size_t size);
void *la_aligned_alloc(size_t align, size_t size);
void *la_memalign(size_t align, size_t size);
void *la_valloc(size_t size);
void *la_pvalloc(size_t size);
size_t la_malloc_usable_size(const void *p);
int la_malloc_trim(size_t pad);
void la_free_sized(void *p, size_t size);
void la_free_aligned_sized(void *p, size_t align, size_t size);
extern atomic_size_t la_foreign_frees;

/* ---- sample.c: what the exported names call ----------------------------- */
typedef struct la_entry_s {
  void *(*malloc)(size_t size);
  void *(*calloc)(size_t n, size_t size);
  void *(*realloc)(void *p, size_t size);
  void *(*reallocarray)(void *p, size_t n, size_t size);
  int (*posix_memalign)(void **out, size_t align, size_t size);
  void *(*aligned_alloc)(size_t align, size_t size);
  void *(*memalign)(size_t align, size_t size);
  void *(*valloc)(size_t size);
  void *(*pvalloc)(size_t size);
} la_entry_t;
#define LA_ENTRY_FIELDS(X) \
  X(malloc) X(calloc) X(realloc) X(reallocarray) X(posix_memalign) X(aligned_alloc) X(memalign) X(valloc) X(pvalloc)
/* Hidden in the declaration too: the exported names then jump through it
 * with one instruction (jmp *la_entry(%rip)), not two. */
extern la_entry_t la_entry __attribute__((visibility("hidden")));   /* the plain la_* functions, or the sampled ones */
void la_entry_switch(bool sampling);
/* The profiler's versions of alloc.c's entry points. */
void *la_malloc_sampled(size_t size);
void *la_calloc_sampled(size_t n, size_t size);
void *la_realloc_sampled(void *p, size_t size);
void *la_reallocarray_sampled(void *p, size_t n, size_t size);
int la_posix_memalign_sampled(void **out, size_t align, size_t size);
void *la_aligned_alloc_sampled(size_t align, size_t size);
void *la_memalign_sampled(size_t align, size_t size);
void *la_valloc_sampled(size_t size);
void *la_pvalloc_sampled(size_t size);
void *la_sample_due(la_heap_t *heap, void *p, size_t size);
/* The size first: the sampled fast paths then keep malloc's argument
 * where it came and need no register move on their way (58 instructions
 * a 64-byte pair, 59 with the slab first). */
void *la_sample_slab_due(size_t size, void *p, la_slab_t *slab);
void *la_sample_slow(void *p, size_t align, size_t size);
/* A block p of `size` bytes asked for was handed out by the thread's
 * heap: count it down, and sample it if the count goes below zero.  The
 * subtraction cannot overflow: the count is at rest a drawn gap (0 to
 * 4e18) and a block handed out is at most PTRDIFF_MAX bytes. */
static inline void *la_sample_count(la_heap_t *heap, void *p, size_t size) {
  heap->sample_left -= (int64_t)size;
  if (LA_LIKELY(heap->sample_left >= 0)) return p;
  return la_sample_due(heap, p, size);
}
/* The same for a block a slow path handed out: one of a small slab (the
 * thread's own) counts down its slab's blocks, as the fast paths do
 * (la_slab_pop_sampled), anything else the heap's bytes. */
static inline void *la_sample_block(la_heap_t *heap, void *p, size_t size) {
  if (la_segmap_kind(p) == LA_MAP_SEGMENT) {
    la_slab_t *slab = la_slab_of(p);
    if (slab->kind == LA_SLAB_SMALL) {
      uint32_t left = slab->sample_left - 1;
      slab->sample_left = left;
      return LA_UNLIKELY((int32_t)left < 0) ? la_sample_slab_due(size, p, slab) : p;
    }
  }
  return la_sample_count(heap, p, size);
}
void *la_entry_malloc(size_t size);
void *la_entry_calloc(size_t n, size_t size);
void *la_entry_realloc(void *p, size_t size);
void *la_entry_reallocarray(void *p, size_t n, size_t size);
int la_entry_posix_memalign(void **out, size_t align, size_t size);
void *la_entry_aligned_alloc(size_t align, size_t size);
void *la_entry_memalign(size_t align, size_t size);
void *la_entry_valloc(size_t size);
void *la_entry_pvalloc(size_t size);

/* ---- where the profiler's stack walks start (sample.c, unwind.c) ------- */
#if defined(__x86_64__) && defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#define LA_HAVE_OWN_UNWINDER 1   /* glibc's _dl_find_object */
#else
#define LA_HAVE_OWN_UNWINDER 0
#endif

/* Where a walk starts: the frame a function will return to, as that
 * function's own frame pointer finds it (la_frame_of_self, in a function
 * that is not inlined).  GCC and Clang give a function that asks for
 * __builtin_frame_address(0) a frame pointer whatever the options, so
 * fp[0] is the caller's rbp, fp[1] the return address and fp + 2 the
 * caller's stack pointer after the return. */
typedef struct la_frame_s {
  uintptr_t ra, sp, rbp;
} la_frame_t;
#if LA_HAVE_OWN_UNWINDER
#define la_frame_of_self() \
  ({ const uintptr_t *fp_ = __builtin_frame_address(0); (la_frame_t){.ra = fp_[1], .sp = (uintptr_t)(fp_ + 2), .rbp = fp_[0]}; })
#else
#define la_frame_of_self() ((la_frame_t){0})
#endif

/* ---- prof.c: the sampled heap profiler --------------------------------- */
extern atomic_bool la_prof_sampling;   /* sampling now */
extern atomic_uint la_prof_epoch;      /* one more at each switch on or off */
double la_prof_probability(double s, double m);
int64_t la_prof_next_gap(void);
void la_prof_take(void *p, size_t size, size_t basis, const la_frame_t *from);
void la_prof_fresh(void *p);
/* May the block of this small slab holding samples be one (prof.c)? */
static inline bool la_prof_may_hold(const la_slab_t *slab, const void *block) {
  return LA_SHARED_LOAD(slab->prof_spilled) || LA_SHARED_LOAD(slab->prof_addr[0]) == (uintptr_t)block ||
         LA_SHARED_LOAD(slab->prof_addr[1]) == (uintptr_t)block;
}
void la_prof_forget(const void *p);
void la_prof_switch(bool on);
void la_prof_init(void);
int la_prof_publish(int fd, uint64_t area, uint64_t *number);
uint64_t la_prof_last_published(void);
void la_prof_switch_fork_prepare(void);
void la_prof_switch_fork_parent(void);
void la_prof_switch_fork_child(void);
void la_prof_fork_prepare(void);
void la_prof_fork_parent(void);
void la_prof_fork_child(void);

/* ---- unwind.c: the profiler's stack walker ------------------------------- */
#if LA_HAVE_OWN_UNWINDER
unsigned la_unwind(uintptr_t *ips, unsigned max);
unsigned la_unwind_from(const la_frame_t *from, uintptr_t *ips, unsigned max);
void la_unwind_fork_child(void);
#endif

/* ---- stats.c ------------------------------------------------------------- */
/* The allocator's statistics; the kernel's view (la_proc_memory) is added
 * only by the callers that publish it, since it costs system calls. */
void la_stats_gather(la_stats_t *st);
void la_stats_config(alloc_shm_config_t *c);

/* ---- procfs.c: the kernel's view of this process ------------------------- */
void la_proc_memory(alloc_shm_stats_t *s);
size_t la_proc_rss(void);
void la_proc_identity(alloc_shm_header_t *h);
void la_proc_fork_prepare(void);
void la_proc_fork_parent(void);
void la_proc_fork_child(void);

/* ---- limit.c: memory_limit ------------------------------------------------ */
enum la_limit_source { LA_LIMIT_NONE, LA_LIMIT_OPTION, LA_LIMIT_CGROUP_V1, LA_LIMIT_CGROUP_V2 };
typedef struct la_limit_s {
  size_t bytes;                   /* 0: none */
  enum la_limit_source source;
} la_limit_t;
enum la_limit_answer { LA_LIMIT_OK, LA_LIMIT_NEAR };
la_limit_t la_limit_discover(const char *root);
void la_limit_set_cgroup_root(const char *root);
enum la_limit_answer la_limit_check(size_t bytes);
bool la_limit_reclaim(size_t bytes);
bool la_limit_before_map(size_t bytes);
void la_limit_tick(size_t kernel_rss);
void la_limit_stats(alloc_shm_stats_t *s);
size_t la_limit_reclaim_passes(void);
void la_limit_fork_prepare(void);
void la_limit_fork_parent(void);
void la_limit_fork_child(void);

/* ---- purge.c: the background purger ------------------------------------- */
void la_purger_notify(void);
void la_purger_start_wanted(void);
bool la_purger_running(void);
int la_purger_enable(bool on);
uint64_t la_decay_all(uint64_t now);
void la_purger_kick(void);
bool la_purger_pause(void);
void la_purger_resume(bool was_running);
extern atomic_bool la_purger_wants_caches;
void la_purger_wake_for_caches(void);
void la_purger_fork_prepare(void);
void la_purger_fork_parent(void);
void la_purger_fork_child(void);

/* ---- ctl.c: alloc_ctl ------------------------------------------------------ */
/* The hooks of the APPLY knobs: run under alloc_ctl's lock after the new
 * value is in la_opt; 0, or an errno value (the old value is put back). */
#define LA_APPLY_DECL(X, name, type, def, min, max, change, ...) LA_APPLY_DECL_##change(name)
#define LA_APPLY_DECL_FIXED(name)
#define LA_APPLY_DECL_LIVE(name)
#define LA_APPLY_DECL_APPLY(name) int la_apply_##name(void);
ALLOC_SHM_KNOBS_WITH(LA_APPLY_DECL, ~)
int la_ctl_apply_text(const char *name, const char *value, char *effective, size_t efflen, char *msg,
                      size_t msglen);
void la_ctl_fork_prepare(void);
void la_ctl_fork_parent(void);
void la_ctl_fork_child(void);

/* ---- telemetry.c, control.c: the telemetry segment ---------------------- */
void la_telemetry_start(void);
void la_telemetry_kick(void);
bool la_telemetry_pause(bool forget);
void la_telemetry_resume(bool was_running);
void la_telemetry_fork_prepare(void);
void la_telemetry_fork_parent(void);
void la_telemetry_fork_child(void);
void la_telemetry_exit(void);
void la_control_serve(int fd, const alloc_shm_header_t *h);
int la_telemetry_publish_profile(uint64_t *number);

/* ---- init.c: process start-up, fork -------------------------------------- */
extern atomic_bool la_initialized;
void la_init_slow(void);
/* Threads wanted but not yet started (the publisher of a process, or of a
 * forked child, that has not allocated yet; a purger a free asked for)
 * start at the next allocation slow path (init.c): while
 * la_background_due, those call la_background_poll_slow. */
extern atomic_bool la_background_due;
void la_background_poll_slow(void);
/* Stop liballoc's threads around a call that needs a process of one
 * thread (sandbox.c), and start again those that ran. */
typedef struct la_background_s {
  bool publisher, purger, paused, due;
} la_background_t;
la_background_t la_background_pause(bool forget_segment);
void la_background_resume(la_background_t was);
/* Called from allocation slow paths, never from free (init.c). */
static inline void la_poll_background(void) {
  if (LA_UNLIKELY(atomic_load_explicit(&la_background_due, memory_order_relaxed))) la_background_poll_slow();
}
static inline void la_ensure_init(void) {
  if (LA_UNLIKELY(!atomic_load_explicit(&la_initialized, memory_order_acquire)))
    la_init_slow();
}

#endif /* ALLOC_INTERNAL_H */
