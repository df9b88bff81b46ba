/* alloc_types.h - liballoc's internal constants and data structures.
 *
 * The memory layout, top down:
 *
 *   arena     a lock-protected pool of segments.  Threads are spread over a
 *             few arenas, so the lock is shared by few threads, and it is taken
 *             only to get or return whole slabs, never per object.
 *   segment   4 MiB of address space aligned to 4 MiB, cut into 64 units of
 *             64 KiB.  Unit 0 holds the segment header and the descriptors of
 *             its slabs; units 1..63 hold slabs.  Because segments are aligned,
 *             ptr & ~(4 MiB-1) is the header: metadata is found in O(1).
 *   slab      1..32 contiguous units holding blocks of one size class.  A
 *             slab of a "small" class belongs to one thread heap, which
 *             allocates and frees in it without locks or atomic
 *             read-modify-writes; other threads free into it through an
 *             atomic list.  A slab of a "large" class holds one block and
 *             belongs to its arena.
 *   huge      blocks above the largest class get their own mapping, aligned to
 *             and sized in whole 4 MiB regions so that no two owners share one.
 *
 * The segment map (segmap.c) records, for each 4 MiB region of the address
 * space, whether it is a segment, a huge mapping or not ours.  free() reads it
 * first, so a pointer that liballoc did not hand out is never mistaken for
 * one of its blocks.
 *
 * Unit size, segment size and the classes do not depend on the OS page size:
 * 64 KiB is a multiple of every page size Linux uses (4, 16, 64 KiB), so
 * slab boundaries are always page boundaries and free units can be purged.
 */
#ifndef ALLOC_TYPES_H
#define ALLOC_TYPES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <alloc_shm.h>

#define LA_LIKELY(x)   __builtin_expect(!!(x), 1)
#define LA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LA_NOINLINE    __attribute__((noinline))
/* Zeroed arrays of a page or more, placed after every other variable
 * (GNU ld puts .lbss past .bss): the .bss pages a process touches at
 * start then hold its small variables side by side, not a page each
 * between two arrays (/bin/true: 13 resident pages of liballoc's data
 * become 10, 6 page faults fewer).  Not under clang, which would write
 * the section's zeros into the file, nor the sanitizers, which would not
 * pad these arrays with red zones. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#define LA_BULK __attribute__((section(".lbss")))
#else
#define LA_BULK
#endif
#define LA_EXPORT      __attribute__((visibility("default")))

/* ---- geometry ------------------------------------------------------------ */
#define LA_SEG_SHIFT   22
#define LA_SEG_SIZE    ((size_t)1 << LA_SEG_SHIFT)          /* 4 MiB */
#define LA_SEG_MASK    (LA_SEG_SIZE - 1)
#define LA_UNIT_SHIFT  16
#define LA_UNIT_SIZE   ((size_t)1 << LA_UNIT_SHIFT)         /* 64 KiB */
#define LA_UNITS       64                                   /* units per segment */
#define LA_MAX_SLAB_UNITS 32                                /* 2 MiB slabs at most */
#define LA_TRIM_MAX_BLOCKS 8192   /* blocks of the largest slab la_slab_trim takes (8-byte class) */

/* The map covers the 47-bit user address space of x86-64 and arm64 (48-bit
 * with 4 levels of page tables gives 47 bits to user space). */
#define LA_ADDR_BITS   47
#define LA_MAP_SIZE    ((size_t)1 << (LA_ADDR_BITS - LA_SEG_SHIFT))

enum la_map_kind {
  LA_MAP_NONE = 0,   /* not liballoc's */
  LA_MAP_SEGMENT = 1,/* a segment: header at ptr & ~LA_SEG_MASK */
  LA_MAP_HUGE = 2,   /* part of a huge mapping: look the block up in huge.c */
};

/* ---- size classes -------------------------------------------------------- */
/* 8, 16, 32, 48 ... 128 in steps of 16, then four classes per doubling up to
 * 2 MiB (160, 192, 224, 256, 320, ...), five from 1 KiB to 16 KiB (1040,
 * 1280, ..., 2304, ...; sizeclass.c).  Spacing of a quarter of the power of
 * two bounds rounding waste by 20% of the class above 128 bytes; below that
 * the 16-byte alignment C requires is what rounds.  Powers of two are classes,
 * so the 16 KiB class is exactly 16 KiB. */
#define LA_NCLASSES        69
#define LA_MAX_CLASS_SIZE  ((size_t)2 << 20)      /* 2 MiB: above is huge */
#define LA_SMALL_LUT_MAX   1152                   /* sizes served through heap->direct */
#define LA_CLASS_LUT_MAX   ((size_t)64 << 10)     /* up to here la_class_by_128, above la_class_by_16k */
#define LA_MIN_ALIGN       16
#define LA_LARGE_CACHE_MAX_BLOCK ((size_t)256 << 10)  /* largest block a heap caches */
#define LA_LARGE_CACHE_BYTES     ((size_t)1 << 20)    /* per heap */
#define LA_LARGE_CACHE_PER_CLASS 8
#define LA_PARK_MIN_BLOCK        ((size_t)64 << 10)   /* heap.c: emptied current slabs parked */

/* ---- blocks and slabs ---------------------------------------------------- */
typedef struct la_block_s {
  struct la_block_s *next;
} la_block_t;

struct la_heap_s;
struct la_arena_s;
struct la_segment_s;

enum la_slab_kind {
  LA_SLAB_UNUSED = 0,  /* descriptor not in use (also the sentinels) */
  LA_SLAB_SMALL,       /* many blocks, owned by a thread heap or abandoned */
  LA_SLAB_LARGE,       /* one block, owned by the arena */
  LA_SLAB_LEND,        /* a small slab lending its free slots to any class (lend.c) */
};

/* Lenders (lend.c): slabs of blocks of 64 to 512 bytes, up to 1024 of them. */
#define LA_LEND_MIN_SLOT 64
#define LA_LEND_MAX_SLOT 512
#define LA_LEND_MAX_SLOTS 1024
/* A heap's lenders by the largest block their longest free run surely
 * holds: under 128 B, then eight bins per doubling up to 64 KiB, then the
 * rest (heap.c, lend_bin). */
#define LA_LEND_BIN_STEPS 8
#define LA_LEND_BINS (2 + 9 * LA_LEND_BIN_STEPS)
typedef struct la_lend_s la_lend_t;

/* What a small slab's countdown to its next heap-profile sample holds
 * (sample.c). */
enum la_gap_state {
  LA_GAP_DRAWN,   /* the rest of a gap drawn whole */
  LA_GAP_NONE,    /* nothing drawn yet: the slab is new */
  LA_GAP_CUT,     /* the first part of a gap longer than a countdown holds */
};

/* A slab descriptor lives in its segment's header, at the index of the slab's
 * first unit.  Fields marked (owner) are written only by the owning heap's
 * thread, or under the arena lock while the slab has no owner; `used`,
 * `nfreed` and `fast_owner` are also read by other threads, through
 * LA_SHARED_LOAD (alloc_internal.h). */
typedef struct la_slab_s {
  la_block_t *free;              /* (owner) free blocks: malloc pops, the
                                    owner's free pushes */
  struct la_heap_s *fast_owner;  /* heap that may free locally without checks;
                                    NULL while full, abandoned or large */
  union {
    struct {
      uint32_t used;             /* (owner) blocks not freed by the owner,
                                    including remote frees not yet collected */
      uint32_t sample_left;      /* (owner) while profiling: blocks the slab
                                    hands out before its next sampled one
                                    (sample.c) */
    };
    uint64_t used_and_left;      /* both: the sampled pop writes them in one
                                    store (alloc_internal.h) */
  };
  uint64_t nfreed;               /* (owner) blocks freed back into the slab
                                    so far: its share of the class's free
                                    count (allocations = nfreed + used) */
  uint32_t reserved;             /* blocks already carved into free lists */
  uint8_t cls;                   /* size class */
  uint8_t kind;                  /* enum la_slab_kind */
  uint8_t nunits;                /* length of the slab in units */
  uint8_t in_full;               /* (owner) on the heap's full list */
  uint16_t color;                /* the block carved first (slab.c) */
  uint16_t color_end;            /* the end of the color's window (slab.c) */
  uint32_t capacity;             /* blocks that fit in the slab */
  size_t block_size;
  uint8_t *start;                /* first block */
  /* The second line: what a free that misses the fast path reads (a
   * remote free's push; a free into a slab holding a live sample), so
   * that such a free reads two lines of the descriptor, not three. */
  _Atomic uintptr_t xfree;       /* blocks freed by other threads: the
                                    list's head and its length in one word
                                    (slab.c) */
  _Atomic(struct la_heap_s *) owner; /* owning heap, NULL when abandoned/large */
  atomic_bool notify;            /* on the owner's full list: a remote free
                                    should tell the owner (a hint) */
  uint8_t zeroed;                /* the unbuilt part of the slab reads as zero */
  uint8_t lend_bin;              /* (owner) a lender's bin in its heap (heap.c) */
  uint8_t sample_gap;            /* (owner) enum la_gap_state: what sample_left is (sample.c) */
  uint32_t prof_samples;         /* (prof_lock) live sampled blocks on the slab
                                    (prof.c); while not 0 a small slab has no
                                    fast_owner, so its frees reach prof.c */
  struct la_slab_s *next, *prev; /* heap queue, full list or abandoned list */
  uintptr_t prof_addr[2];        /* (prof_lock) a small slab's sampled blocks,
                                    0 for none: frees of others skip prof.c */
  uint32_t prof_spilled;         /* (prof_lock) a small slab's sample is not in
                                    prof_addr: frees must look it up */
  uint32_t trim_mark;            /* (owner) free blocks at the last trim (fills the line) */
  /* The third line: the owner's slow paths alone. */
  uint64_t trimmed;              /* (owner) pages given back by la_slab_trim,
                                    bit i = the slab's i-th page; the free
                                    blocks on them are off the free list */
  uint32_t trim_pass;            /* (owner) the heap's trim pass that last
                                    looked at the slab */
  uint32_t trim_seen;            /* (owner) its activity (heap.c) when a
                                    trim pass last saw it change */
  uint32_t trim_since;           /* (owner) when that was, in ms */
  uint32_t trim_since_takes;     /* (owner) and the heap's slabs_taken then */
  la_lend_t *lend;               /* (owner) a lender's bitmaps (lend.c) */
} __attribute__((aligned(64))) la_slab_t;  /* slabs of different threads never
                                              share a cache line */
_Static_assert(offsetof(la_slab_t, xfree) == 64 && offsetof(la_slab_t, trim_mark) + sizeof(uint32_t) == 128,
               "a free off the fast path reads the descriptor's first two lines only");

typedef struct la_slab_list_s {
  la_slab_t *head, *tail;
} la_slab_list_t;

/* ---- decay ---------------------------------------------------------------- */
#define LA_DECAY_STEPS 200

/* The decay of one state (dirty or muzzy) of one pool of pages. */
typedef struct la_decay_s {
  ssize_t ms;                       /* decay time; 0 at once, -1 never */
  uint64_t step_ns;                 /* ms / LA_DECAY_STEPS, in ns */
  uint64_t epoch;                   /* start of the newest epoch (ns) */
  unsigned newest;                  /* ring index of the newest epoch */
  size_t last;                      /* pages in the state at the last look */
  size_t backlog[LA_DECAY_STEPS];   /* pages that entered, per epoch */
} la_decay_t;

/* Counters of purging work, per pool. */
typedef struct la_purge_stats_s {
  uint64_t npurges;        /* purge passes that released something */
  uint64_t nmadvise;       /* madvise/munmap calls */
  uint64_t purged;         /* bytes made muzzy or returned */
} la_purge_stats_t;

/* ---- segments ------------------------------------------------------------ */
struct la_segment_s;
typedef struct la_seg_link_s {
  struct la_segment_s *next, *prev;
} la_seg_link_t;

typedef struct la_segment_s {
  struct la_arena_s *arena;
  la_seg_link_t bucket;   /* arena bucket of segments with the same max_run */
  la_seg_link_t dirtyq;   /* arena's queue of segments with dirty units */
  la_seg_link_t muzzyq;   /* arena's queue of segments with muzzy units */
  uint64_t used_units;    /* bit i: unit i is metadata, part of a slab, or being purged */
  uint64_t dirty_units;   /* free units that may be resident */
  uint64_t muzzy_units;   /* free units given to the kernel with MADV_FREE */
  uint64_t purging_units; /* units the purger holds while it madvises them */
  uint64_t refused_units; /* dirty or muzzy units the kernel refused to purge
                             (mlockall): not tried again until reused or
                             malloc_trim, so decay does not retry in vain */
  uint8_t max_run;        /* longest run of free units, the arena's bucket */
  bool in_dirtyq, in_muzzyq;
  la_slab_t *unit_slab[LA_UNITS];  /* unit -> slab descriptor of its slab */
  /* Bit p of resident[u]: page p of unit u may hold data, touched since it
   * was last purged (a unit has at most 16 pages of 4 KiB or more).  Clear
   * means zero or never touched; a bit may stay set when it need not, never
   * the other way round.  A small slab on dirty units gives back the pages
   * it did not carve but a previous slab left resident (la_slab_purge_stale):
   * no allocator statistic counts those; and a released slab's units with
   * no bit set go back clean, not dirty (la_segment_release_run). */
  uint16_t resident[LA_UNITS];
  la_slab_t slabs[LA_UNITS];       /* descriptor of the slab starting at unit */
} la_segment_t;

/* ---- arenas -------------------------------------------------------------- */
#define LA_MAX_ARENAS 64

typedef struct la_arena_s {
  pthread_mutex_t lock;
  /* segments[r]: segments whose longest free run is r units (0..63). */
  la_segment_t *segments[LA_UNITS];
  la_slab_list_t abandoned[LA_NCLASSES]; /* small slabs whose thread exited */
  uint32_t nabandoned[LA_NCLASSES];      /* their number (read without the lock) */
  size_t nsegments;
  size_t nfree_segments;                 /* segments with no slab at all */
  /* Decay: segments with dirty (muzzy) units queue in the order they got
   * their first one, oldest first; purging takes from the head. */
  la_segment_t *dirtyq_head, *dirtyq_tail, *muzzyq_head, *muzzyq_tail;
  size_t ndirty, nmuzzy;                 /* units */
  size_t trade_owed;                     /* dirty units trade_dirty left to the purger */
  la_decay_t dirty_decay, muzzy_decay;
  la_purge_stats_t purge_stats;
  uint64_t nfreed_retired[LA_NCLASSES];  /* nfreed of the small slabs released */
  uint64_t large_nmalloc[LA_NCLASSES];   /* large blocks handed out by the arena */
  la_lend_t *lend_spare;                 /* bitmaps of released lenders (lend.c) */
  unsigned ticks;                        /* slow-path events since the last decay check */
  bool decay_ready;                      /* decay times set (at the first segment) */
  atomic_bool ever_used;                 /* has had a segment: statistics walk it */
} la_arena_t;

/* ---- thread heaps -------------------------------------------------------- */
#define LA_DIRECT_N (LA_SMALL_LUT_MAX / 8 + 1)

typedef struct la_heap_s {
  /* Bytes the owner may still allocate in blocks no small slab counts
   * (large, huge and lent ones) before its next heap-profile sample, and
   * the la_prof_epoch they were drawn in (sample.c). */
  int64_t sample_left;
  uint32_t sample_epoch;
  /* direct[(n+7)/8] is bins[class of n] for n up to LA_SMALL_LUT_MAX: the
   * malloc fast path indexes it by size, skipping the class table: one
   * indexed load from the heap pointer. */
  la_slab_t *direct[LA_DIRECT_N];
  /* bins[c] is the slab the fast path allocates class c from: the head of
   * queues[c], or the empty sentinel. */
  la_slab_t *bins[LA_NCLASSES];
  la_slab_list_t queues[LA_NCLASSES];  /* slabs that may have free blocks */
  la_slab_list_t full;                 /* slabs found full */
  la_slab_list_t lenders[LA_LEND_BINS]; /* sparse slabs lending their free slots (lend.c),
                                          by the largest block they surely hold */
  uint32_t nlenders;
  uint32_t lend_sweep;                 /* the bin sweep_lenders looks at next */
  uint64_t lent_nmalloc[LA_NCLASSES];  /* blocks of each class lent so far */
  /* Recently freed large blocks (one-block slabs) of small enough classes,
   * kept for reuse without the arena lock; chained through slab->next. */
  la_slab_t *large_cache[LA_NCLASSES];
  uint8_t large_cached[LA_NCLASSES];
  size_t large_cached_bytes;
  size_t nfull;
  size_t refills_since_sweep;
  unsigned trim_cls;        /* the class whose slabs trim_sparse_slabs looks at next */
  uint32_t trim_pass;       /* rounds of trim_sparse_slabs over every class */
  uint32_t slabs_taken;     /* slabs taken from the arena so far (wraps) */
  atomic_bool xfull_hint;   /* another thread freed into one of our full slabs */
  la_arena_t *arena;
  struct la_heap_s *next_all, *prev_all; /* every live heap (fork, stats) */
  uint64_t large_hits[LA_NCLASSES];     /* large blocks taken from the cache */
  uint32_t large_seen[LA_NCLASSES];     /* (owner) large_hits at the last look
                                           of release_idle_classes (heap.c) */
  uint32_t large_seen_takes[LA_NCLASSES]; /* (owner) slabs_taken when it changed */
  uint32_t caches_empty_takes;          /* (owner) slabs_taken when that look
                                           last found every cache empty */
  /* The heap's caches that the purger may take back from an idle thread
   * (heap.c, "idle heaps"): the large-block cache above and these parked
   * slabs.  The owner raises cache_busy around every operation on them;
   * the purger raises cache_reclaim (under the reclaim lock) before it
   * looks at cache_busy. */
  la_slab_t *parked[LA_NCLASSES];   /* (cache) emptied current slabs of
                                       classes of blocks of 64 KiB or more */
  uint32_t nparked;                 /* (cache) slabs in parked[] */
  uint64_t cache_ops;               /* (cache) parks and unparks so far */
  atomic_int cache_busy;            /* (owner) in an operation on the caches */
  atomic_bool cache_reclaim;        /* (purger) take the reclaim lock first */
  uint64_t reclaim_seen;            /* (heaps_lock) the caches' activity and */
  size_t reclaim_seen_bytes;        /* large_cached_bytes at the purger's last look */
  uint64_t reclaim_since;           /* (heaps_lock) when it last changed, ns */
  int exiting_tid;                  /* (heaps_lock) made by a late destructor of
                                       this thread (heap.c); -1 being abandoned */
} la_heap_t;

/* ---- huge blocks --------------------------------------------------------- */
typedef struct la_huge_s {
  void *ptr;               /* the block (start of the mapping) */
  size_t size;             /* usable bytes (page multiple) */
  size_t map_size;         /* mapped bytes (multiple of LA_SEG_SIZE) */
  bool zeroed;             /* a fresh mapping, not yet written */
  bool sampled;            /* (huge_lock) the block is a live sample (prof.c) */
  bool split;              /* spans several kernel mappings: moved region by region */
  struct la_huge_s *next;  /* hash chain, or the cache's FIFO */
} la_huge_t;

/* ---- options ------------------------------------------------------------- */
/* Every knob is declared once, in ALLOC_SHM_KNOBS (alloc_shm.h); its field
 * here is generated, with the C type of its kind. */
#define LA_PATH_MAX 256   /* a PATH option, with its NUL */

#define LA_THP_MODE(NAME, name) LA_THP_##NAME,
#define LA_META_THP_MODE(NAME, name) LA_META_THP_##NAME,
enum la_thp_mode { ALLOC_SHM_MODES_thp(LA_THP_MODE) };
enum la_meta_thp_mode { ALLOC_SHM_MODES_metadata_thp(LA_META_THP_MODE) };

#define LA_OPT_FIELD(name, type, ...) LA_OPT_FIELD_##type(name)
#define LA_OPT_FIELD_BOOL(name) bool name;
#define LA_OPT_FIELD_INT(name) ssize_t name;
#define LA_OPT_FIELD_COUNT(name) unsigned name;
#define LA_OPT_FIELD_ENUM(name) int name;   /* index into ALLOC_SHM_MODES_<name> */
#define LA_OPT_FIELD_PATH(name) char name[LA_PATH_MAX];
#define LA_OPT_FIELD_BYTES(name) ssize_t name;   /* bytes >= 0, or -1 - i: the i-th word */

typedef struct la_options_s {
  ALLOC_SHM_KNOBS(LA_OPT_FIELD)
} la_options_t;

/* ---- statistics ---------------------------------------------------------- */
/* The statistics are the telemetry segment's (alloc_shm.h lists and
 * documents each one): gathering fills them directly. */
typedef struct la_stats_s {
  alloc_shm_stats_t s;
  alloc_shm_class_t classes[LA_NCLASSES];
  int64_t lent_open[LA_NCLASSES];   /* gathering only: lent blocks allocated minus live */
} la_stats_t;

#endif /* ALLOC_TYPES_H */
