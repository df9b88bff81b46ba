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
 * says which hold a live block, and the heap's slow path, before it carves
 * or takes new memory for any class, looks for a run of free slots long
 * enough for the block: the shortest such run (best fit) in the first
 * lender that has one, going up the heap's bins of lenders by longest free
 * run from the block's size (heap.c), which is best fit to an eighth of a
 * doubling.
 *
 * A lent block starts on a slot and covers `span` slots; three bitmaps of
 * the slots say which hold a small block of the slab's own, which are part
 * of a lent block, and which start one, so a free finds a lent block's
 * length from its own bits.  The block's class is the smallest whose size
 * needs that many slots (blocks of a class that shares its slot count with
 * a smaller one are not lent), so the statistics count it in its class.
 * Only the owner changes the bitmaps; other threads free into the slab's
 * xfree list as into any slab, and the owner takes those when it next lends
 * from the slab, frees into it or sweeps it (heap.c).  Every free of a lender takes the slow
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
  uint32_t longest;             /* the longest run of free slots (more while it serves its class) */
  uint32_t hint;                /* la_lend_serve's next batch starts from this slot */
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

/* The slot of a block of the slab (p on a slot). */
static inline uint32_t slot_index(const la_slab_t *s, const void *p) {
  return (uint32_t)((size_t)((const uint8_t *)p - s->start) / s->block_size);
}

/* Does p start a slot of the slab (*i: which)?  Frees and sizes of
 * pointers the program gives are checked by it. */
static inline bool slot_start(const la_slab_t *s, const void *p, uint32_t *i) {
  size_t off = (size_t)((const uint8_t *)p - s->start);
  *i = (uint32_t)(off / s->block_size);
  return off % s->block_size == 0 && *i < s->capacity;
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

/* ---- free runs ------------------------------------------------------------- */

/* The first slot at or after i whose bit in `busy` is `want` (slots past
 * the slab's end are busy, so a free run always ends). */
static uint32_t next_slot(const la_lend_t *l, uint32_t i, bool want) {
  for (uint32_t w = i / 64; w < LEND_WORDS; w++) {
    uint64_t busy = l->small[w] | l->lent[w], bits = want ? busy : ~busy;
    if (w == i / 64) bits &= ~(uint64_t)0 << (i % 64);
    if (bits) return w * 64 + (uint32_t)__builtin_ctzll(bits);
  }
  return LA_LEND_MAX_SLOTS;
}

/* The last slot before i whose bit in `busy` is set, or -1. */
static int32_t prev_busy(const la_lend_t *l, uint32_t i) {
  for (int32_t w = (int32_t)(i / 64); i && w >= 0; w--) {
    uint64_t bits = l->small[w] | l->lent[w];
    if ((uint32_t)w == i / 64) bits &= ((uint64_t)1 << (i % 64)) - 1;   /* below i */
    if (bits) return w * 64 + 63 - (int32_t)__builtin_clzll(bits);
  }
  return -1;
}

/* Best fit: the first of the shortest runs of free slots that hold `span`
 * (at == UINT32_MAX if none does), and the two longest runs, so that the
 * lender knows its longest run once the block is cut from the best (the
 * heap bins it by that).  A run of exactly `span` shorter than `longest`
 * (the lender's longest run, or more) ends the scan: cutting it leaves the
 * longest as it is, reported so.  (Next fit, from where the lender last
 * lent, left 6 MiB more on phasechange and fragment in the same CPU time: a
 * long run cut for a short block is lost to the next long one.) */
struct runs {
  uint32_t at, len, longest, second;
};

static struct runs best_fit(const la_lend_t *l, uint32_t span, uint32_t longest) {
  struct runs r = {UINT32_MAX, UINT32_MAX, 0, 0};
  uint32_t start = 0;
  bool in_run = false;
  for (uint32_t w = 0; w < LEND_WORDS; w++) {
    uint64_t busy = l->small[w] | l->lent[w];
    uint32_t pos = 0;
    for (;;) {
      uint64_t look = in_run ? busy : ~busy;   /* the next change */
      look = pos < 64 ? look >> pos : 0;
      if (!look) break;
      pos += (uint32_t)__builtin_ctzll(look);
      uint32_t slot = w * 64 + pos;
      if (!in_run) {
        start = slot;
        in_run = true;
        continue;
      }
      in_run = false;
      uint32_t len = slot - start;
      if (len > r.longest) {
        r.second = r.longest;
        r.longest = len;
      } else if (len > r.second) {
        r.second = len;
      }
      if (len >= span && len < r.len) {
        r.at = start;
        r.len = len;
        if (len == span && len < longest) {
          r.longest = r.second = longest;
          return r;
        }
      }
    }
  }
  return r;   /* slots past the end are busy: the last run has ended */
}

/* The longest run of free slots (a scan of them all). */
static uint32_t longest_run(const la_lend_t *l) { return best_fit(l, LA_LEND_MAX_SLOTS + 1, 0).longest; }

/* The largest block the longest run of free slots surely holds, in bytes
 * (heap.c bins lenders by it): a block takes a slot more than its bytes
 * need at most (span_of).  A take sets the longest run, a free raises it to
 * the run the freed slots join; serving its own class leaves it as it was,
 * so it may be more then, until a take finds no run long enough. */
size_t la_lend_longest(const la_slab_t *s) {
  uint32_t n = s->lend->longest;
  return n > 1 ? (size_t)(n - 1) * s->block_size : 0;
}

/* ---- becoming a lender ---------------------------------------------------- */

/* Is page p of a slab among those trimmed away (a mask of its first 64)? */
static inline bool page_trimmed(uint64_t trimmed, size_t p) { return p < 64 && (trimmed >> p & 1); }

/* Does slot i of slab s touch a page trimmed away (its blocks, of up to
 * 512 bytes, touch one page or two)? */
static bool slot_trimmed(const la_slab_t *s, uint32_t i) {
  if (!s->trimmed) return false;
  unsigned shift = (unsigned)__builtin_ctzll(la_page_size);
  size_t a = (size_t)i * s->block_size, z = a + s->block_size - 1;
  return page_trimmed(s->trimmed, a >> shift) || page_trimmed(s->trimmed, z >> shift);
}

/* Pages of lender `s` whose every slot was carved and is free now: what
 * trimming would give back (slab.c). */
static uint64_t free_pages(const la_lend_t *l, const la_slab_t *s, const uint64_t *carved) {
  size_t page = la_page_size, size = s->block_size;
  unsigned npages = (unsigned)(((size_t)s->nunits << LA_UNIT_SHIFT) / page);
  uint64_t pages = 0;
  for (unsigned p = 0; p < npages && p < 64; p++) {
    /* slots [first, last) touch the page: the last one may start on it and end on the next */
    uint32_t first = (uint32_t)((size_t)p * page / size), last = (uint32_t)((((size_t)p + 1) * page + size - 1) / size);
    if (last > s->capacity) last = s->capacity;   /* the slab's tail holds no block */
    bool all_carved = first < last;
    for (uint32_t i = first; i < last && all_carved; i++) all_carved = carved[i / 64] >> (i % 64) & 1;
    if (all_carved && next_slot(l, first, true) >= last) pages |= (uint64_t)1 << p;
  }
  return pages;
}

/* Make the owner's idle sparse slab `s` (off its heap's queue, remote frees
 * collected) a lender, its free pages given back; false if its bitmaps
 * cannot be had. */
bool la_lend_start(la_slab_t *s) {
  la_lend_t *l = s->lend;   /* a lender before, whose bitmaps stayed (la_lend_stop) */
  if (l) memset(l, 0, sizeof *l);
  else l = lend_get(la_segment_of(s)->arena);
  if (!l) return false;
  /* Busy: every carved block not on a page trimmed away (those are free
   * and off the free list), less those on the free list; blocks not
   * carved yet are free.  The free list as a set is most of what making a
   * lender costs (slab.c). */
  uint32_t cap = s->capacity;
  uint64_t carved[LEND_WORDS] = {0}, on_list[LEND_WORDS];
  la_slab_free_slots(s, on_list);
  for (uint32_t i = 0; i < cap; i++) {
    if (!la_slab_block_carved(s, i)) continue;
    carved[i / 64] |= (uint64_t)1 << (i % 64);
    if (!slot_trimmed(s, i)) l->small[i / 64] |= (uint64_t)1 << (i % 64);
  }
  for (uint32_t w = 0; w < (cap + 63) / 64; w++) l->small[w] &= ~on_list[w];
  s->free = NULL;
  set_bits(l->small, cap, LA_LEND_MAX_SLOTS - cap, true);   /* never free */
  la_slab_trim_pages(s, free_pages(l, s, carved));
  l->longest = longest_run(l);
  LA_SHARED_STORE(s->lend, l);
  LA_SHARED_STORE(s->fast_owner, NULL);
  __atomic_store_n(&s->kind, LA_SLAB_LEND, __ATOMIC_RELEASE);   /* readers of the kind find the bitmaps */
  return true;
}

/* ---- becoming a plain slab again -------------------------------------------
 * A class that comes back to its lenders would take the slow path for each
 * of its blocks there, one slot per ask (a program that thinned a class out,
 * used other sizes, then filled the class again ran 9.5x slower).  So a
 * lender of the asking class that lends nothing to others becomes a plain
 * slab again: its free slots make a free list, as far into the carving
 * order as its blocks reach (the rest is carved later, as before), none on
 * a page given back.  Its bitmaps stay with it, unchanged from then on, for
 * a thread that read its kind a moment before (la_lend_block_size) and for
 * its next time as a lender; they go back to the arena with the slab. */

bool la_lend_can_stop(const la_slab_t *s) { return s->lend->lent_live == 0; }

void la_lend_stop(la_slab_t *s) {
  la_lend_t *l = s->lend;
  la_lend_unserve(s);
  uint32_t cap = s->capacity, reserved = s->reserved;
  for (uint32_t i = 0; i < cap; i++)
    if (bit(l->small, i) && la_slab_carve_place(s, i) >= reserved) reserved = la_slab_carve_place(s, i) + 1;
  la_block_t *head = NULL;
  for (uint32_t i = cap; i-- > 0;) {
    if (bit(l->small, i) || la_slab_carve_place(s, i) >= reserved || slot_trimmed(s, i)) continue;
    la_block_t *b = (la_block_t *)(s->start + (size_t)i * s->block_size);
    b->next = head;
    head = b;
  }
  s->free = head;
  s->reserved = reserved;
  LA_SHARED_STORE(s->nfreed, la_lend_small_frees(s));   /* its own class's, as a plain slab counts */
  LA_SHARED_STORE(l->lent_frees, 0);
  __atomic_store_n(&s->kind, LA_SLAB_SMALL, __ATOMIC_RELEASE);
}

/* ---- serving its own class while lending -----------------------------------
 * A lender that still lends to other classes cannot become a plain slab
 * again, and a class that came back to it would take the slow path for each
 * of its blocks, one slot per ask (0.38 s against 0.28 without lending, a
 * program whose thinned class came back in force around the 1 KiB blocks
 * living in its holes; 0.30 with the free list).  So such a lender serves its own class as a plain
 * slab does: a batch of its free slots, marked in `small` as if live, makes
 * its free list, which the heap's bin for the class points at (heap.c), so
 * the fast path pops from it; its owner's frees of its own class go back on
 * that list while it serves.  Other threads' frees, and every free once the
 * bin points elsewhere, clear the bits as before; the heap hands the slots
 * still on the list back to the bitmaps when its bin moves on. */
#define SERVE_BATCH 64

/* A block of its own class from lender `s` (its owner): from its free list,
 * refilled from the next free slots after the hint if empty; NULL if it
 * has none free. */
void *la_lend_serve(la_slab_t *s) {
  la_lend_t *l = s->lend;
  if (!s->free && l->longest) {
    la_block_t *head = NULL, **tail = &head;
    uint32_t n = 0, i = next_slot(l, l->hint, false);
    if (i >= LA_LEND_MAX_SLOTS) i = next_slot(l, 0, false);
    for (; i < LA_LEND_MAX_SLOTS && n < SERVE_BATCH; i = next_slot(l, i + 1, false), n++) {
      la_block_t *b = (la_block_t *)(s->start + (size_t)i * s->block_size);
      set_bits(l->small, i, 1, true);
      la_slab_untrim_range(s, b, s->block_size);
      *tail = b;
      tail = &b->next;
      l->hint = i + 1 < LA_LEND_MAX_SLOTS ? i + 1 : 0;
    }
    *tail = NULL;
    s->free = head;
    if (!n) l->longest = 0;
  }
  return la_slab_pop(s);
}

/* The slots on the free list of lender `s` go back to its bitmaps (the
 * heap's bin for its class points elsewhere now, or it stops lending). */
void la_lend_unserve(la_slab_t *s) {
  la_lend_t *l = s->lend;
  if (!s->free) return;
  for (la_block_t *b = s->free; b; b = b->next)
    set_bits(l->small, slot_index(s, b), 1, false);
  s->free = NULL;
  l->longest = longest_run(l);
}

/* The owner frees `b` of the lender's own class while the lender serves
 * it: back on its free list, as into a plain slab; false if `b` is not such
 * a block or the last live one (la_lend_free then does the work). */
bool la_lend_free_to_list(la_slab_t *s, la_block_t *b) {
  la_lend_t *l = s->lend;
  uint32_t i;
  if (!slot_start(s, b, &i) || !bit(l->small, i) || s->used <= 1) return false;
  la_slab_push(s, b);
  return true;
}

/* ---- lending --------------------------------------------------------------- */

/* Slots a block of `size` bytes, class `cls`, takes in a lender of
 * `slot`-byte slots of class `own`, or 0 if it may not borrow there: as
 * many as the request needs (not its class's size: a shorter run fits
 * more holes, and wastes less), or more if fewer would make a block the
 * smaller class's (a free finds the class from the count: the smallest
 * class that many slots hold), at least two, and no more than a quarter
 * over the class's size.  Its own class takes one, from the lender's free
 * list (la_lend_serve). */
static uint32_t span_of(unsigned own, size_t slot, unsigned cls, size_t size) {
  if (cls == own) return 1;
  size_t class_size = la_class_size[cls], below = cls ? la_class_size[cls - 1] : 0;
  size_t span = (size + slot - 1) / slot, least = (below + slot - 1) / slot + 1;
  if (span < least) span = least;
  if (span < 2 || span > LA_LEND_MAX_SLOTS || (span - 1) * slot + 1 > class_size ||
      span * slot > class_size + class_size / 4)
    return 0;
  return (uint32_t)span;
}

/* Bit c of lenders_for[cls]: slabs of class c may lend to some sizes of
 * class cls, its smallest or its largest (lendable classes have numbers
 * below 63); bit 63: worked out.  Worked out at a class's first ask, not
 * at start-up (69 x 15 divisions). */
#define LENDERS_KNOWN ((uint64_t)1 << 63)
static uint64_t lenders_for[LA_NCLASSES];

uint64_t la_lend_classes_for(unsigned cls) {
  uint64_t may = LA_SHARED_LOAD(lenders_for[cls]);
  if (LA_LIKELY(may)) return may & ~LENDERS_KNOWN;
  may = LENDERS_KNOWN;
  size_t smallest = cls ? la_class_size[cls - 1] + 1 : 1;
  for (unsigned c = 0; c < LA_NCLASSES && c < 63; c++) {
    size_t slot = la_class_size[c];
    if (la_lend_class_ok(c) && !la_class_large[cls] &&
        (span_of(c, slot, cls, la_class_size[cls]) || span_of(c, slot, cls, smallest)))
      may |= (uint64_t)1 << c;
  }
  LA_SHARED_STORE(lenders_for[cls], may);   /* threads that race write the same */
  return may & ~LENDERS_KNOWN;
}

static unsigned class_of_span(const la_slab_t *s, uint32_t span) {
  return span == 1 ? s->cls : la_class_of((span - 1) * s->block_size + 1);
}

/* A block of `size` bytes, class `cls`, from lender `s` (its owner), or
 * NULL: the best fit among its runs. */
void *la_lend_take(la_slab_t *s, unsigned cls, size_t size) {
  la_lend_t *l = s->lend;
  uint32_t span = span_of(s->cls, s->block_size, cls, size);
  if (!span || span > l->longest) return NULL;
  struct runs r = best_fit(l, span, l->longest);
  if (r.at == UINT32_MAX) {
    l->longest = r.longest;
    return NULL;
  }
  uint32_t i = r.at, rest = r.len - span;
  l->longest = r.len < r.longest ? r.longest : (r.second > rest ? r.second : rest);
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
  uint32_t i;
  if (!slot_start(s, b, &i)) return "not the start of a block (interior pointer)";
  if (bit(l->head, i)) {
    uint32_t span = lent_span(l, i);
    unsigned cls = class_of_span(s, span);
    set_bits(l->lent, i, span, false);
    set_bits(l->head, i, 1, false);
    LA_SHARED_STORE(l->lent_live, l->lent_live - 1);
    LA_SHARED_STORE(l->lent_bytes, l->lent_bytes - (uint64_t)span * s->block_size);
    LA_SHARED_STORE(l->live_by_class[cls], (uint16_t)(l->live_by_class[cls] - 1));
    LA_SHARED_STORE(l->lent_frees, l->lent_frees + 1);
  } else if (bit(l->small, i) && !bit(l->lent, i)) {
    set_bits(l->small, i, 1, false);
  } else {
    return bit(l->lent, i) ? "not the start of a block (interior pointer)" : "double free";
  }
  uint32_t run = next_slot(l, i, true) - (uint32_t)(prev_busy(l, i) + 1);   /* the run it joined */
  if (run > l->longest) l->longest = run;
  return NULL;
}

/* Take the blocks other threads freed into lender `s` (its owner). */
void la_lend_collect(la_slab_t *s) {
  for (la_block_t *b = la_slab_take_remote(s), *next; b; b = next) {
    next = b->next;
    const char *wrong = give_back(s, b);
    if (wrong) la_invalid_free(b, wrong);
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
  uint32_t i;
  if (!l || !slot_start(s, p, &i)) return 0;
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
  st->s.lent += bytes;
  st->s.lenders++;
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    uint16_t n = LA_SHARED_LOAD(l->live_by_class[c]);
    st->classes[c].live += n;
    st->lent_open[c] -= n;
  }
  /* Free slots, on the free list of its own class (la_lend_serve) or
   * not: the thread's cache, as a plain slab's free blocks are. */
  uint64_t own = used > lent ? used - lent : 0, busy = own + bytes / s->block_size;
  if (atomic_load_explicit(&s->owner, memory_order_relaxed) && busy < s->capacity)
    st->s.tcache += (s->capacity - busy) * s->block_size;
  return own;
}
