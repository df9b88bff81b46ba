/* lend.c - the free space of sparse slabs lent to blocks of other sizes.
 *
 * A size-class allocator keeps each class on slabs of its own, so when most
 * of a class's blocks die at random the survivors pin nearly every page of
 * its slabs (a 4 KiB page of 64-byte blocks keeps one with 90% freed
 * unless all 64 died: 0.9^64 = 0.1%), and a program that then allocates
 * other sizes grows by all of them while the old pages sit free around the
 * survivors.  glibc gets that memory back by coalescing neighbouring free
 * chunks; here the same happens one slab at a time: a sparse slab that has
 * been idle (heap.c's trimmer decides which) becomes a *lender*.  It stops
 * serving its own class from a free list; instead a bitmap of its slots
 * says which hold a live block, and the heap's slow path, before it takes a
 * new slab from the arena for any class, looks for a run of free slots long
 * enough for the block (next fit, in at most LEND_LOOK lenders).
 *
 * A lent block starts on a slot and covers `span` slots; three bitmaps of
 * the slots say which hold a small block of the slab's own, which are part
 * of a lent block, and which start one, so a free finds a lent block's
 * length from its own bits.  The block's class is the smallest whose size
 * needs that many slots (blocks of a class that shares its slot count with
 * a smaller one are not lent), so the statistics count it in its class.
 * Only the owner changes the bitmaps; other threads free into the slab's
 * xfree list as into any slab, and the owner takes those when it next lends
 * from the slab or frees into it.  Every free of a lender takes the slow
 * path (no fast_owner), which costs nothing the program notices: lenders
 * are slabs nobody allocated from for a while.  An empty lender goes back
 * to the arena like any slab; one whose thread exits is abandoned like any
 * other (never adopted: sweeping releases it once other threads' frees
 * have emptied it).  A lender's bitmaps come from its arena's spares, or
 * from metadata (counted there), and return to the spares when the slab is
 * released. */
#include "alloc_internal.h"

#include <string.h>

#define LEND_WORDS (LA_LEND_MAX_SLOTS / 64)

struct la_lend_s {
  uint64_t small[LEND_WORDS];   /* slot holds a block of the slab's class (or is past the slab's end) */
  uint64_t lent[LEND_WORDS];    /* slot is part of a lent block */
  uint64_t head[LEND_WORDS];    /* slot starts a lent block */
  uint32_t hint;                /* next fit starts here */
  uint32_t fail_span;           /* the shortest run a look failed to find since the last free */
  uint32_t busy_slots;          /* slots of live blocks, small or lent */
  uint32_t lent_live;           /* lent blocks live */
  uint64_t lent_bytes;          /* their usable bytes */
  uint64_t lent_frees;          /* lent blocks freed (the slab's nfreed counts them too) */
  uint16_t live_by_class[LA_NCLASSES];
  struct la_lend_s *next;       /* the arena's spares */
};

static inline bool bit(const uint64_t *w, uint32_t i) { return LA_SHARED_LOAD(w[i / 64]) >> (i % 64) & 1; }

static inline void set_bits(uint64_t *w, uint32_t i, uint32_t n, bool on) {
  while (n) {
    uint32_t b = i % 64, take = 64 - b < n ? 64 - b : n;
    uint64_t mask = (take == 64 ? ~(uint64_t)0 : (((uint64_t)1 << take) - 1)) << b;
    LA_SHARED_STORE(w[i / 64], on ? w[i / 64] | mask : w[i / 64] & ~mask);
    i += take;
    n -= take;
  }
}

/* Can slabs of this class lend (their slots fit the bitmaps)? */
bool la_lend_class_ok(unsigned cls) {
  return !la_class_large[cls] && la_class_size[cls] >= LA_LEND_MIN_SLOT && la_class_size[cls] <= LA_LEND_MAX_SLOT &&
         la_class_capacity[cls] <= LA_LEND_MAX_SLOTS;
}

/* ---- bitmaps: from the arena's spares ------------------------------------ */

static la_lend_t *lend_get(la_arena_t *a) {
  pthread_mutex_lock(&a->lock);
  la_lend_t *l = a->lend_spare;
  if (l) a->lend_spare = l->next;
  pthread_mutex_unlock(&a->lock);
  if (!l) l = la_meta_alloc(sizeof *l);
  if (l) memset(l, 0, sizeof *l);
  return l;
}

/* The slab is released (arena.c, its lock held): its bitmaps to the spares. */
void la_lend_end(la_arena_t *a, la_slab_t *s) {
  la_lend_t *l = s->lend;
  if (!l) return;
  LA_SHARED_STORE(s->lend, NULL);
  l->next = a->lend_spare;
  a->lend_spare = l;
}

/* ---- becoming a lender ---------------------------------------------------- */

/* Make the owner's idle sparse slab `s` (off its heap's queue, remote frees
 * collected) a lender; false if its bitmaps cannot be had. */
bool la_lend_start(la_slab_t *s) {
  la_lend_t *l = lend_get(la_segment_of(s)->arena);
  if (!l) return false;
  /* Busy: every carved block, then free again what is on the free list
   * or on a page trimmed away; blocks past the carved ones are free. */
  uint32_t cap = s->capacity;
  for (uint32_t i = 0; i < cap; i++) {
    const la_block_t *b = (const la_block_t *)(s->start + (size_t)i * s->block_size);
    if (la_slab_block_carved(s, i) && !la_slab_block_trimmed(s, b)) set_bits(l->small, i, 1, true);
  }
  for (la_block_t *b = s->free; b; b = b->next) set_bits(l->small, (uint32_t)(((uint8_t *)b - s->start) / s->block_size), 1, false);
  s->free = NULL;
  set_bits(l->small, cap, LA_LEND_MAX_SLOTS - cap, true);   /* never free */
  l->busy_slots = s->used;
  l->fail_span = UINT32_MAX;
  LA_SHARED_STORE(s->lend, l);
  LA_SHARED_STORE(s->fast_owner, NULL);
  __atomic_store_n(&s->kind, LA_SLAB_LEND, __ATOMIC_RELEASE);   /* readers of the kind find the bitmaps */
  return true;
}

/* ---- lending --------------------------------------------------------------- */

/* The first run of `span` free slots starting in [from, to), or -1. */
static int32_t find_run(const la_lend_t *l, uint32_t span, uint32_t from, uint32_t to) {
  uint32_t run = 0, start = 0;
  for (uint32_t i = from; i < to + span && i < LA_LEND_MAX_SLOTS;) {
    uint64_t busy = (l->small[i / 64] | l->lent[i / 64]) >> (i % 64);
    uint32_t left = 64 - i % 64;
    if (busy & 1) {   /* skip the busy slots */
      uint64_t freebits = ~busy;
      uint32_t n = freebits ? (uint32_t)__builtin_ctzll(freebits) : left;
      i += n < left ? n : left;
      run = 0;
      continue;
    }
    uint32_t n = busy ? (uint32_t)__builtin_ctzll(busy) : left;
    if (n > left) n = left;
    if (!run) {
      if (i >= to) return -1;
      start = i;
    }
    run += n;
    if (run >= span) return (int32_t)start;
    i += n;
  }
  return -1;
}

/* Slots a block of class `cls` takes in lender `s`, or 0 if the class may
 * not borrow there: its own class takes one; another needs more than one
 * slot, may not waste more than a quarter of its size, and must be the
 * smallest class of that many slots (a free finds it from the count). */
static uint32_t span_for(const la_slab_t *s, unsigned cls) {
  size_t slot = s->block_size, size = la_class_size[cls];
  if (cls == s->cls) return 1;
  uint32_t span = (uint32_t)((size + slot - 1) / slot);
  if (span < 2 || span * slot > size + size / 4 || span > LA_LEND_MAX_SLOTS) return 0;
  return la_class_of((span - 1) * slot + 1) == cls ? span : 0;
}

static unsigned class_of_span(const la_slab_t *s, uint32_t span) {
  return span == 1 ? s->cls : la_class_of((span - 1) * s->block_size + 1);
}

/* A block of class `cls` from lender `s` (its owner), or NULL. */
void *la_lend_take(la_slab_t *s, unsigned cls) {
  la_lend_t *l = s->lend;
  uint32_t span = span_for(s, cls);
  if (!span || span >= l->fail_span) return NULL;
  int32_t at = find_run(l, span, l->hint, s->capacity);
  if (at < 0 && l->hint) at = find_run(l, span, 0, l->hint);
  if (at < 0) {
    l->fail_span = span;
    return NULL;
  }
  uint32_t i = (uint32_t)at;
  uint8_t *p = s->start + (size_t)i * s->block_size;
  size_t bytes = (size_t)span * s->block_size;
  if (span == 1) {
    set_bits(l->small, i, 1, true);
  } else {
    set_bits(l->lent, i, span, true);
    set_bits(l->head, i, 1, true);
    LA_SHARED_STORE(l->lent_live, l->lent_live + 1);
    LA_SHARED_STORE(l->lent_bytes, l->lent_bytes + bytes);
    LA_SHARED_STORE(l->live_by_class[cls], (uint16_t)(l->live_by_class[cls] + 1));
  }
  l->hint = i + span;
  LA_SHARED_STORE(l->busy_slots, l->busy_slots + span);
  LA_SHARED_STORE(s->used, s->used + 1);
  la_slab_untrim_range(s, p, bytes);
  return p;
}

/* ---- freeing ---------------------------------------------------------------- */

/* The slots of the lent block starting at slot i. */
static uint32_t lent_span(const la_lend_t *l, uint32_t i) {
  uint32_t n = 1;
  while (i + n < LA_LEND_MAX_SLOTS && bit(l->lent, i + n) && !bit(l->head, i + n)) n++;
  return n;
}

/* The owner frees `b` into lender `s`; what is wrong with it, or NULL.
 * Does not count it in used (the caller, or the remote count, does). */
static const char *give_back(la_slab_t *s, la_block_t *b) {
  la_lend_t *l = s->lend;
  size_t off = (size_t)((uint8_t *)b - s->start);
  uint32_t i = (uint32_t)(off / s->block_size);
  if (off % s->block_size || i >= s->capacity) return "not the start of a block (interior pointer)";
  if (bit(l->head, i)) {
    uint32_t span = lent_span(l, i);
    unsigned cls = class_of_span(s, span);
    set_bits(l->lent, i, span, false);
    set_bits(l->head, i, 1, false);
    LA_SHARED_STORE(l->lent_live, l->lent_live - 1);
    LA_SHARED_STORE(l->lent_bytes, l->lent_bytes - (uint64_t)span * s->block_size);
    LA_SHARED_STORE(l->live_by_class[cls], (uint16_t)(l->live_by_class[cls] - 1));
    LA_SHARED_STORE(l->busy_slots, l->busy_slots - span);
    LA_SHARED_STORE(l->lent_frees, l->lent_frees + 1);
  } else if (bit(l->small, i) && !bit(l->lent, i)) {
    set_bits(l->small, i, 1, false);
    LA_SHARED_STORE(l->busy_slots, l->busy_slots - 1);
  } else {
    return bit(l->lent, i) ? "not the start of a block (interior pointer)" : "double free";
  }
  l->fail_span = UINT32_MAX;
  if (i < l->hint) l->hint = i;   /* next fit goes back to the hole */
  return NULL;
}

/* Take the blocks other threads freed into lender `s` (its owner). */
void la_lend_collect(la_slab_t *s) {
  la_block_t *head = NULL;
  if (atomic_load_explicit(&s->xfree, memory_order_relaxed))
    head = atomic_exchange_explicit(&s->xfree, NULL, memory_order_acquire);
  uint32_t n = 0;
  if (atomic_load_explicit(&s->xcount, memory_order_relaxed))
    n = atomic_exchange_explicit(&s->xcount, 0, memory_order_acquire);
  for (la_block_t *b = head, *next; b; b = next) {
    next = b->next;
    const char *wrong = give_back(s, b);
    if (wrong) la_invalid_free(b, wrong);
  }
  if (n) {
    LA_SHARED_STORE(s->used, s->used - n);
    LA_SHARED_STORE(s->nfreed, s->nfreed + n);
  }
}

/* The owner frees `b` into lender `s`: true if the slab is now empty. */
bool la_lend_free(la_slab_t *s, la_block_t *b) {
  const char *wrong = give_back(s, b);
  if (wrong) {
    la_invalid_free(b, wrong);
    return false;
  }
  LA_SHARED_STORE(s->used, s->used - 1);
  LA_SHARED_STORE(s->nfreed, s->nfreed + 1);
  return s->used == 0;
}

/* ---- sizes and statistics --------------------------------------------------- */

/* Usable size of the block at p in lender s, 0 if none starts there.  Any
 * thread: a live block's own bits do not change while it lives. */
size_t la_lend_block_size(const la_slab_t *s, const void *p) {
  const la_lend_t *l = LA_SHARED_LOAD(s->lend);
  size_t off = (size_t)((const uint8_t *)p - s->start);
  uint32_t i = (uint32_t)(off / s->block_size);
  if (!l || off % s->block_size || i >= s->capacity) return 0;
  if (bit(l->head, i)) return (size_t)lent_span(l, i) * s->block_size;
  return bit(l->small, i) && !bit(l->lent, i) ? s->block_size : 0;
}

/* Frees of the slab's own class so far (its nfreed counts lent blocks too). */
uint64_t la_lend_small_frees(const la_slab_t *s) {
  const la_lend_t *l = LA_SHARED_LOAD(s->lend);
  uint64_t all = LA_SHARED_LOAD(s->nfreed), lent = l ? LA_SHARED_LOAD(l->lent_frees) : 0;
  return all > lent ? all - lent : 0;
}

/* A lender's share of the statistics (arena.c's slab_stats does the rest
 * for its own class): its lent blocks, counted in their classes.  Returns
 * the live blocks of its own class. */
uint64_t la_lend_stats(la_stats_t *st, const la_slab_t *s) {
  const la_lend_t *l = LA_SHARED_LOAD(s->lend);
  uint64_t used = LA_SHARED_LOAD(s->used);
  if (!l) return used;
  uint64_t lent = LA_SHARED_LOAD(l->lent_live);
  uint64_t bytes = LA_SHARED_LOAD(l->lent_bytes);
  st->s.allocated += bytes;
  st->s.small_allocated += bytes;
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    uint16_t n = LA_SHARED_LOAD(l->live_by_class[c]);
    st->classes[c].live += n;
    st->lent_open[c] -= n;
  }
  uint64_t busy = LA_SHARED_LOAD(l->busy_slots);
  if (atomic_load_explicit(&s->owner, memory_order_relaxed) && busy < s->capacity)
    st->s.tcache += (s->capacity - busy) * s->block_size;
  return used > lent ? used - lent : 0;
}
