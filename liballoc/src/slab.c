/* slab.c - the free lists of one slab.
 *
 * A small slab has two lists, each with a single kind of writer:
 *   free   the owner's: the malloc fast path pops it and the owner's free
 *          pushes it, so a thread that frees and allocates the same size
 *          reuses the block it just freed without leaving the fast path;
 *   xfree  other threads free into it, with an atomic push.
 * When `free` runs dry the owner refills it from xfree (one atomic exchange
 * takes the whole list), then with the blocks of pages it gave back while
 * the slab was sparse (la_slab_trim), then by carving fresh blocks from the
 * part of the slab not used yet.  Carving is lazy, a page at a time at
 * first, so a slab that is barely used is barely resident; then as many
 * blocks as were carved before (up to CARVE_MAX bytes), so a slab in full
 * use is carved in a few steps - each is a trip down the slow path, and a
 * program that fills and empties its slabs over and over carves them every
 * time.
 *
 * Slabs start on 64 KiB boundaries, and 64 KiB is also the period of the
 * cache's set index (a 512 KiB 8-way L2; 4 KiB for L1): if every slab
 * handed out its first block first, the hottest block of every class -
 * the one a thread frees and takes again - would compete for the same
 * eight lines.  A program that keeps a few blocks of many sizes (a string
 * growing by realloc through twenty classes) then missed the L2 on almost
 * every access.  So each slab starts carving at its own block, its color,
 * spread over the sets.  The color lies in the slab's first page (or
 * first 8 blocks, when they are longer): carving goes from the color to
 * the end of that window, then its blocks before the color, then on to the
 * slab's end in address order.  Blocks handed out one after the other are
 * then neighbours in memory except inside that first window, so a program
 * that walks what it allocated in order (or backwards) streams through
 * memory: with the whole slab as the window, the wrap from the slab's end
 * back to its start made walking 4.9 M blocks of 64 bytes 1.4x slower. */
#include "alloc_internal.h"

#include <string.h>

/* What heap->bins[c] points at when the heap has no slab of class c: its
 * free list is empty, so the fast path falls into the slow path. */
la_slab_t la_slab_empty;

/* Successive slabs start carving this many bytes apart (mod the window):
 * an odd number of cache lines, so the starts visit every line of it. */
#define COLOR_STRIDE (41 * 64)
#define COLOR_BLOCKS 8

/* Blocks [0, color_end) are the color's window: those starting in the
 * slab's first page or its first COLOR_BLOCKS blocks, whichever is more. */
static uint32_t color_window(const la_slab_t *slab) {
  size_t bytes = (size_t)COLOR_BLOCKS * slab->block_size;
  if (bytes < la_page_size) bytes = la_page_size;
  uint32_t n = (uint32_t)((bytes + slab->block_size - 1) / slab->block_size);
  return n < slab->capacity ? n : slab->capacity;
}

static uint32_t next_color(const la_slab_t *slab) {
  static atomic_uint colors;
  if (slab->color_end <= 1) return 0;
  size_t span = (size_t)slab->color_end * slab->block_size;
  unsigned n = atomic_fetch_add_explicit(&colors, 1, memory_order_relaxed);
  return (uint32_t)((size_t)n * COLOR_STRIDE % span / slab->block_size);
}

/* The j-th block carved: color, ..., color_end - 1, then 0, ..., color - 1,
 * then color_end, color_end + 1, ... */
static inline uint32_t carved_index(const la_slab_t *s, uint32_t j) {
  uint32_t head = s->color_end - s->color;
  if (j >= s->color_end) return j;
  return j < head ? s->color + j : j - head;
}

/* Those three runs, as carving order goes: the end of the one holding the
 * j-th block carved (blocks carved_index(j) .. carved_index(end - 1) are
 * consecutive). */
static inline uint32_t carve_run_end(const la_slab_t *s, uint32_t j) {
  uint32_t head = s->color_end - s->color;
  return j < head ? head : j < s->color_end ? s->color_end : s->capacity;
}

void la_slab_init(la_slab_t *slab, la_segment_t *seg, unsigned unit, unsigned cls) {
  slab->free = NULL;
  LA_SHARED_STORE(slab->fast_owner, NULL);
  LA_SHARED_STORE(slab->used, 0);
  LA_SHARED_STORE(slab->nfreed, 0);
  slab->sample_left = 0;   /* a gap is drawn at its first sampled pop (sample.c) */
  slab->sample_gap = LA_GAP_NONE;
  slab->cls = (uint8_t)cls;
  slab->kind = la_class_large[cls] ? LA_SLAB_LARGE : LA_SLAB_SMALL;
  slab->block_size = la_class_size[cls];
  slab->capacity = la_class_capacity[cls];
  slab->reserved = 0;
  slab->in_full = 0;
  LA_SHARED_STORE(slab->trimmed, 0);
  slab->trim_mark = slab->trim_pass = slab->trim_seen = slab->trim_since = 0;
  slab->start = la_unit_address(seg, unit);
  slab->color_end = (uint16_t)color_window(slab);
  slab->color = (uint16_t)next_color(slab);
  slab->next = slab->prev = NULL;
  atomic_store_explicit(&slab->xfree, 0, memory_order_relaxed);
  atomic_store_explicit(&slab->owner, NULL, memory_order_relaxed);
  atomic_store_explicit(&slab->notify, false, memory_order_relaxed);
}

/* Carve the next blocks of the slab into the free list: at least one, and
 * every block that starts in the page where the first one starts - the
 * carve writes a link at each block's start, so it touches that one page.
 * Once CARVE_WARM blocks were carved, as many as were carved before if
 * that is more (within CARVE_MAX bytes).  Not before: a short-lived
 * program takes a few blocks of many sizes, and each block carved ahead of
 * need can be a page touched.  Carving stops at the slab's end (and goes on
 * from its start) or at its color. */
#define CARVE_MAX ((size_t)16 << 10)   /* half the L1: the blocks are written now, used soon */
#define CARVE_WARM 16

static void slab_extend(la_slab_t *slab) {
  size_t size = slab->block_size;
  uint32_t at = carved_index(slab, slab->reserved);
  uint8_t *first = slab->start + (size_t)at * size;
  size_t bytes = la_page_size - ((uintptr_t)first & (la_page_size - 1));   /* to the end of its page */
  size_t before = (size_t)slab->reserved * size;
  if (slab->reserved >= CARVE_WARM && before > bytes) bytes = before < CARVE_MAX ? before : CARVE_MAX;
  uint32_t n = (uint32_t)((bytes + size - 1) / size);
  uint32_t room = carve_run_end(slab, slab->reserved) - slab->reserved;
  if (n > room) n = room;
  uint8_t *p = first;
  for (uint32_t i = 1; i < n; i++, p += size) ((la_block_t *)p)->next = (la_block_t *)(p + size);
  ((la_block_t *)p)->next = slab->free;
  slab->free = (la_block_t *)first;
  slab->reserved += n;
  la_segment_touch(la_segment_of(first), first, (size_t)n * size);
}

/* ---- frees by other threads ----------------------------------------------
 * xfree is one word: the list's head in its low 48 bits (user-space
 * addresses lie below 2^47) and the number of blocks on the list in the
 * high 16 (a slab holds fewer than 2^16 blocks: its color is a 16-bit
 * block index).  One compare-and-swap pushes a block and counts it, and
 * the owner's one exchange takes the list and its length together.
 *
 * The length is what the owner takes out of `used`.  Walking the list to
 * count it would cost a cache miss per block, on lines other threads'
 * cores wrote last, in the refill that needs them; a separate counter
 * cost each remote free a second atomic operation on the line (a tenth of
 * remotefree's samples) and left `used` one too high whenever a count
 * came after its block was taken. */
#define XFREE_COUNT_SHIFT 48

static inline la_block_t *xfree_head(uintptr_t word) {
  return (la_block_t *)(word & (((uintptr_t)1 << XFREE_COUNT_SHIFT) - 1));
}

static inline uint32_t xfree_count(uintptr_t word) { return (uint32_t)(word >> XFREE_COUNT_SHIFT); }

/* Another thread frees a block into the slab.  Lock-free: many threads may
 * push while the owner takes the whole list.  The push is the free's last
 * access to the slab: once it is counted, the slab may be found empty and
 * reused.  `hint`, the owner read before the push when the slab is on its
 * full list (heap.c), is then told to sweep; NULL for none. */
void la_slab_free_remote(la_slab_t *slab, la_block_t *block, struct la_heap_s *hint) {
  uintptr_t old = atomic_load_explicit(&slab->xfree, memory_order_relaxed), word;
  do {
    block->next = xfree_head(old);
    word = (uintptr_t)block | (uintptr_t)(xfree_count(old) + 1) << XFREE_COUNT_SHIFT;
  } while (!atomic_compare_exchange_weak_explicit(&slab->xfree, &old, word, memory_order_release,
                                                  memory_order_relaxed));
  if (hint) atomic_store_explicit(&hint->xfull_hint, true, memory_order_relaxed);
}

/* Take the list of blocks other threads freed into the slab, counted out
 * of `used` (la_slab_collect_remote puts them on the free list; a lender
 * marks them free in its bitmaps, lend.c).  Owner only (or under the
 * arena lock for a slab without owner). */
la_block_t *la_slab_take_remote(la_slab_t *slab) {
  if (!atomic_load_explicit(&slab->xfree, memory_order_relaxed)) return NULL;
  uintptr_t word = atomic_exchange_explicit(&slab->xfree, 0, memory_order_acquire);
  uint32_t n = xfree_count(word);
  LA_SHARED_STORE(slab->used, slab->used - n);
  LA_SHARED_STORE(slab->nfreed, slab->nfreed + n);
  return xfree_head(word);
}

/* Remote frees not yet collected (counted in `used` until they are). */
uint32_t la_slab_remote_count(const la_slab_t *slab) {
  return xfree_count(atomic_load_explicit(&slab->xfree, memory_order_relaxed));
}

bool la_slab_has_remote(const la_slab_t *slab) {
  return atomic_load_explicit(&slab->xfree, memory_order_relaxed) != 0;
}

static la_block_t *list_tail(la_block_t *b) {
  while (b->next) b = b->next;
  return b;
}

/* Put the blocks other threads freed on the free list; false if none.
 * With blocks on both lists, the shorter is walked to join them: taking
 * the remote list counts its blocks out of `used`, and without trimmed
 * pages the owner's list holds every carved block not in `used`. */
bool la_slab_collect_remote(la_slab_t *slab) {
  uint32_t used = slab->used;
  la_block_t *head = la_slab_take_remote(slab);
  if (!head) return false;
  uint32_t nfree = slab->reserved - used, nremote = used - slab->used;
  la_block_t *first = head, *second = slab->free;
  if (second && !slab->trimmed && nfree < nremote) first = second, second = head;
  if (second) list_tail(first)->next = second;
  slab->free = first;
  return true;
}

/* ---- giving back the free pages inside a slab ------------------------------
 * A slab whose blocks mostly died keeps all its memory while one block
 * lives.  Its owner can still give back every page that holds only free
 * blocks: those blocks leave the free list (they stay free, off every list,
 * so nothing can hand them out or free them), the pages go to the kernel,
 * and when the free list next runs dry the blocks come back (the pages
 * return zero-filled on first touch).  Slabs of up to 64 pages and
 * LA_TRIM_MAX_BLOCKS blocks qualify: every small class. */

static unsigned slab_pages(const la_slab_t *s) { return (unsigned)(((size_t)s->nunits << LA_UNIT_SHIFT) / la_page_size); }

/* A small slab whose pages fit one 64-bit mask (every small class). */
static bool pages_fit_mask(const la_slab_t *s) { return s->kind == LA_SLAB_SMALL && slab_pages(s) <= 64; }

bool la_slab_trimmable(const la_slab_t *s) { return pages_fit_mask(s) && s->capacity <= LA_TRIM_MAX_BLOCKS; }

/* Pages that blocks [a, b) of the slab touch, a < b, as a mask. */
static uint64_t range_pages(const la_slab_t *s, uint32_t a, uint32_t b) {
  unsigned p0 = (unsigned)((size_t)a * s->block_size / la_page_size);
  unsigned p1 = (unsigned)(((size_t)b * s->block_size - 1) / la_page_size);
  return (((uint64_t)2 << (p1 - p0)) - 1) << p0;   /* p1 - p0 < 64: no overflow */
}

static uint64_t block_pages(const la_slab_t *s, uint32_t i) { return range_pages(s, i, i + 1); }

static uint32_t block_index(const la_slab_t *s, const la_block_t *b) {
  return (uint32_t)(((const uint8_t *)b - s->start) / s->block_size);
}

/* Is block i among those carved so far (lend.c)? */
bool la_slab_block_carved(const la_slab_t *s, uint32_t i) { return la_slab_carve_place(s, i) < s->reserved; }

/* Block i's place in carving order (carved_index's inverse). */
uint32_t la_slab_carve_place(const la_slab_t *s, uint32_t i) {
  if (i >= s->color_end) return i;
  return i >= s->color ? i - s->color : i + (s->color_end - s->color);
}

/* Bytes of the slab are handed out again by a lender (lend.c): the pages
 * they touch are no longer given back, and may become resident. */
void la_slab_untrim_range(la_slab_t *s, const void *p, size_t bytes) {
  size_t off = (size_t)((const uint8_t *)p - s->start);
  unsigned p0 = (unsigned)(off / la_page_size), p1 = (unsigned)((off + bytes - 1) / la_page_size);
  if (s->trimmed && p1 < 64) {
    uint64_t pages = (((uint64_t)2 << (p1 - p0)) - 1) << p0;
    if (s->trimmed & pages) LA_SHARED_STORE(s->trimmed, s->trimmed & ~pages);
  }
  la_segment_touch(la_segment_of(p), p, bytes);
}

/* Is the block on a trimmed page, hence free (detect_double_free)? */
bool la_slab_block_trimmed(const la_slab_t *s, const la_block_t *b) {
  return s->trimmed && (block_pages(s, block_index(s, b)) & s->trimmed);
}

/* Pages of the blocks carved so far, or of those not carved yet: up to
 * three ranges, one per run of carving order (carve_run_end). */
static uint64_t carve_pages(const la_slab_t *s, bool carved) {
  uint32_t j = carved ? 0 : s->reserved, last = carved ? s->reserved : s->capacity;
  uint64_t pages = 0;
  while (j < last) {
    uint32_t end = carve_run_end(s, j) < last ? carve_run_end(s, j) : last;
    pages |= range_pages(s, carved_index(s, j), carved_index(s, end - 1) + 1);
    j = end;
  }
  return pages;
}

/* ---- the free list as a set -------------------------------------------------
 * Lending and trimming need to know which slots are on a slab's free list.
 * The list runs in the order of the frees, at random, over cold blocks, and
 * a walk is one dependent load per block: on phasechange ~900 a slab, 6 ns
 * each even with every line prefetched first (the slab does not fit the L1).
 * So the first word of each carved block is read first, in address order -
 * loads that do not wait for each other and that the hardware streams - and
 * turned into the slot it points at, if any: a free block's word is its
 * link, NULL or a block of this slab; any other word is a live block's data
 * and reads as none.  Then the list is followed in that table, in the L1.
 * The live blocks' words are read but never followed (the list holds free
 * blocks only), while their threads may write them: that read is not
 * instrumented by TSan.  Blocks not carved and pages given back hold no
 * link and are not read (a read would fault the page back in). */
#define NO_SLOT UINT16_MAX
#define FREE_SLOTS_MAX 1024   /* slots of the slabs that use the table (2 KiB of stack) */

/* A block's slot from its offset in the slab by one multiplication: the
 * size is odd << shift, and an exact multiple of an odd number times its
 * inverse modulo 2^64 gives the quotient; anything else gives a number
 * above every slot (the map is one to one), so the test is exact. */
struct slot_of {
  uint64_t inverse;
  unsigned shift;
};

static struct slot_of slot_divisor(size_t size) {
  unsigned shift = (unsigned)__builtin_ctzll(size);
  uint64_t odd = size >> shift, x = odd;   /* right to 3 bits; each step doubles them */
  for (int i = 0; i < 5; i++) x *= 2 - odd * x;
  return (struct slot_of){x, shift};
}

static inline uint32_t slot_at(const la_slab_t *s, struct slot_of d, uintptr_t p) {
  uint64_t off = p - (uintptr_t)s->start;
  if (off & (((uint64_t)1 << d.shift) - 1)) return NO_SLOT;
  uint64_t i = (off >> d.shift) * d.inverse;
  return i < s->capacity ? (uint32_t)i : NO_SLOT;
}

__attribute__((no_sanitize("thread"))) static void read_links(const la_slab_t *s, struct slot_of d, uint16_t *next) {
  memset(next, 0xff, s->capacity * sizeof next[0]);
  for (uint32_t j = 0; j < s->reserved;) {
    uint32_t end = carve_run_end(s, j) < s->reserved ? carve_run_end(s, j) : s->reserved;
    for (uint32_t i = carved_index(s, j); j < end; i++, j++) {
      const uintptr_t *word = (const uintptr_t *)(s->start + (size_t)i * s->block_size);
      if (!s->trimmed || !(block_pages(s, i) & s->trimmed)) next[i] = (uint16_t)slot_at(s, d, *word);
    }
  }
}

/* Start loading the line of each carved block, in address order, so that
 * the misses of a walk of the list overlap (a prefetch of a page given
 * back is dropped, not faulted). */
static void prefetch_carved(const la_slab_t *s) {
  uintptr_t last = 0;
  for (uint32_t j = 0; j < s->reserved;) {
    uint32_t end = carve_run_end(s, j) < s->reserved ? carve_run_end(s, j) : s->reserved;
    for (uint32_t i = carved_index(s, j); j < end; i++, j++) {
      uintptr_t line = ((uintptr_t)s->start + (size_t)i * s->block_size) >> 6;
      if (line != last) __builtin_prefetch((const void *)(line << 6));
      last = line;
    }
  }
}

/* Set the bits of `bits` (zeroed here) of the slots on the owner's free
 * list of `s`.  A list longer than the slab (a program that corrupted it)
 * stops at capacity steps. */
void la_slab_free_slots(const la_slab_t *s, uint64_t *bits) {
  memset(bits, 0, ((s->capacity + 63) / 64) * sizeof bits[0]);
  if (!s->free) return;
  if (s->capacity > FREE_SLOTS_MAX) {   /* too many for the table: the walk, the lines loading first */
    prefetch_carved(s);
    for (la_block_t *b = s->free; b; b = b->next) {
      uint32_t i = block_index(s, b);
      bits[i / 64] |= (uint64_t)1 << (i % 64);
    }
    return;
  }
  uint16_t next[FREE_SLOTS_MAX];
  struct slot_of d = slot_divisor(s->block_size);
  read_links(s, d, next);
  uint32_t i = block_index(s, s->free);
  for (uint32_t n = 0; i != NO_SLOT && n < s->capacity; n++, i = next[i]) bits[i / 64] |= (uint64_t)1 << (i % 64);
}

/* Pages whose every block is carved and free.  Pages of blocks not carved
 * yet are untouched, or hold a previous slab's data: those go when the
 * slab's thread exits (la_slab_purge_stale), since a slab in use may carve
 * them any moment. */
static uint64_t free_pages(const la_slab_t *s, const uint64_t *free_bits) {
  uint64_t busy = 0;
  for (uint32_t j = 0; j < s->reserved; j++) {
    uint32_t i = carved_index(s, j);
    if (!(free_bits[i / 64] >> (i % 64) & 1)) busy |= block_pages(s, i);
  }
  return carve_pages(s, true) & ~carve_pages(s, false) & ~busy & ~s->trimmed;
}

atomic_size_t la_trimmed_bytes, la_trimmed_slabs, la_trim_madvises;

/* Every block is free on these pages, and off the free list: push back
 * those that touch a page of `back` and none of `stays`. */
static void relink_blocks(la_slab_t *s, uint64_t back, uint64_t stays) {
  for (uint32_t j = s->reserved; j-- > 0;) {
    uint32_t i = carved_index(s, j);
    uint64_t pages = block_pages(s, i);
    if ((pages & back) && !(pages & stays)) {
      la_block_t *b = (la_block_t *)(s->start + (size_t)i * s->block_size);
      b->next = s->free;
      s->free = b;
    }
  }
}

/* madvise the pages, one call per run; returns the pages the kernel
 * refused (they keep their contents). */
static uint64_t purge_pages(const la_slab_t *s, uint64_t pages) {
  uint64_t refused = 0;
  for (uint64_t rest = pages; rest;) {
    unsigned p = (unsigned)__builtin_ctzll(rest), n = 0;
    while (p + n < 64 && (rest >> (p + n) & 1)) n++;
    uint64_t run = la_bits_run_mask(p, n);
    if (!la_os_purge(s->start + (size_t)p * la_page_size, (size_t)n * la_page_size)) refused |= run;
    atomic_fetch_add_explicit(&la_trim_madvises, 1, memory_order_relaxed);
    rest &= ~run;
  }
  return refused;
}

/* Pages of a slab the kernel took, counted in the statistics' `purged` and
 * `npurges` (one pass); returns their bytes. */
static size_t count_given_back(uint64_t pages) {
  size_t bytes = (size_t)__builtin_popcountll(pages) * la_page_size;
  atomic_fetch_add_explicit(&la_trimmed_bytes, bytes, memory_order_relaxed);
  atomic_fetch_add_explicit(&la_trimmed_slabs, 1, memory_order_relaxed);
  return bytes;
}

size_t la_slab_trim(la_slab_t *s) {
  uint64_t free_bits[LA_TRIM_MAX_BLOCKS / 64];
  la_slab_free_slots(s, free_bits);
  for (uint32_t j = 0; j < s->reserved && s->trimmed; j++) {   /* already off the list */
    uint32_t i = carved_index(s, j);
    if (block_pages(s, i) & s->trimmed) free_bits[i / 64] |= (uint64_t)1 << (i % 64);
  }
  uint64_t pages = free_pages(s, free_bits);
  s->trim_mark = s->reserved - s->used;
  if (!pages) return 0;
  uint64_t gone = s->trimmed | pages;
  la_block_t *head = NULL, **tail = &head;
  for (la_block_t *b = s->free; b; b = b->next)
    if (!(block_pages(s, block_index(s, b)) & gone)) {
      *tail = b;
      tail = &b->next;
    }
  *tail = NULL;
  s->free = head;
  uint64_t refused = purge_pages(s, pages);
  if (refused) relink_blocks(s, refused, gone & ~refused);   /* still resident: usable again */
  LA_SHARED_STORE(s->trimmed, gone & ~refused);
  pages &= ~refused;
  return pages ? count_given_back(pages) : 0;
}

/* Give back `pages` of a lender (lend.c), which knows that no live block
 * touches them: the same as la_slab_trim, from its bitmaps instead of the
 * free list (a walk of cold blocks, most of trimming's cost).  Bytes. */
size_t la_slab_trim_pages(la_slab_t *s, uint64_t pages) {
  pages &= ~s->trimmed;
  if (!pages || !la_slab_trimmable(s) || la_opt.thp == LA_THP_ALWAYS) return 0;
  pages &= ~purge_pages(s, pages);
  LA_SHARED_STORE(s->trimmed, s->trimmed | pages);
  return pages ? count_given_back(pages) : 0;
}

/* Pages of the slab that hold none of its blocks but still a previous
 * slab's data (la_segment_t.resident) go to the kernel.  A slab taken
 * from dirty units carves only what its thread uses, and the rest of a
 * unit the last slab filled stays resident, counted nowhere, for as long
 * as the slab lives: a thread that exits with a few blocks in use leaves
 * up to 15 such pages per slab.  Owner only, like carving. */
size_t la_slab_purge_stale(la_slab_t *s) {
  if (!pages_fit_mask(s) || la_page_size > LA_UNIT_SIZE || la_opt.thp == LA_THP_ALWAYS) return 0;
  la_segment_t *seg = la_segment_of(s);
  unsigned unit = (unsigned)(s - seg->slabs);
  uint64_t stale = la_segment_resident(seg, unit, s->nunits) & ~carve_pages(s, true);
  if (!stale) return 0;
  stale &= ~purge_pages(s, stale);
  la_segment_forget(seg, unit, s->nunits, stale);
  return stale ? count_given_back(stale) : 0;
}

/* Put the blocks of the trimmed pages back on the free list. */
static void untrim(la_slab_t *s) {
  relink_blocks(s, s->trimmed, 0);
  LA_SHARED_STORE(s->trimmed, 0);
  s->trim_mark = 0;
}

/* ---- refilling ------------------------------------------------------------ */

/* Make slab->free non-empty if the slab has any block left; owner only. */
bool la_slab_refill_free(la_slab_t *slab) {
  if (slab->free) return true;
  if (la_slab_collect_remote(slab)) return true;
  if (slab->trimmed) {
    untrim(slab);
    return true;
  }
  if (slab->reserved < slab->capacity) {
    slab_extend(slab);
    return true;
  }
  return false;
}

/* Is `block` on the list starting at `b`?  Every step must land on a block
 * of this slab and the walk ends after `capacity` steps, so a list another
 * thread is changing under us ends the walk instead of leading astray. */
static bool list_holds(const la_slab_t *slab, const la_block_t *b, const la_block_t *block) {
  uintptr_t start = (uintptr_t)slab->start, end = start + (uintptr_t)slab->capacity * slab->block_size;
  for (uint32_t n = 0; b && n < slab->capacity; n++) {
    uintptr_t at = (uintptr_t)b;
    if (at < start || at >= end || (at - start) % slab->block_size) return false;
    if (b == block) return true;
    b = LA_SHARED_LOAD(b->next);
  }
  return false;
}

/* Is `block` free in the slab (detect_double_free)?  The owner looks at both
 * lists; another thread only at the remote one, since the owner's list is
 * its own to change without telling anyone. */
bool la_slab_holds_free(const la_slab_t *slab, const la_block_t *block, bool owner) {
  if (owner && list_holds(slab, slab->free, block)) return true;
  return list_holds(slab, xfree_head(atomic_load_explicit(&slab->xfree, memory_order_acquire)), block);
}

void la_slab_list_push(la_slab_list_t *list, la_slab_t *slab) {
  slab->next = NULL;
  slab->prev = list->tail;
  if (list->tail) list->tail->next = slab;
  else list->head = slab;
  list->tail = slab;
}

void la_slab_list_push_front(la_slab_list_t *list, la_slab_t *slab) {
  slab->prev = NULL;
  slab->next = list->head;
  if (list->head) list->head->prev = slab;
  else list->tail = slab;
  list->head = slab;
}

void la_slab_list_remove(la_slab_list_t *list, la_slab_t *slab) {
  if (slab->prev) slab->prev->next = slab->next;
  else list->head = slab->next;
  if (slab->next) slab->next->prev = slab->prev;
  else list->tail = slab->prev;
  slab->next = slab->prev = NULL;
}
