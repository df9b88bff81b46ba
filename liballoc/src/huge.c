/* huge.c - blocks above the largest size class, each in a mapping of its own.
 *
 * A huge mapping starts on a 4 MiB boundary and spans whole 4 MiB regions,
 * so the segment map can mark its regions HUGE without sharing any with a
 * segment.  Its descriptor lives in a hash table keyed by the block address
 * (free() of a huge block already costs a munmap, the lookup is noise).
 * Fresh mappings read as zero, so calloc need not clear them.
 *
 * A freed huge mapping is not unmapped at once: it waits in a FIFO cache,
 * counted as dirty and resident, until the dirty decay curve says it must go;
 * then it is unmapped (huge mappings skip the muzzy stage).  With
 * dirty_decay_ms:0 it is unmapped at once.  The cache works like a page heap
 * of whole 4 MiB regions: a request takes the smallest cached mapping that
 * fits and gives the part it does not need back to the cache; when none
 * fits, several are gathered into one with mremap; a shrinking block gives
 * its spare regions to the cache, and a growing one takes back the cached
 * mapping right after it.  Pages the program has touched are reused instead
 * of being faulted in again.
 *
 * The cache also trades with the arenas: an arena that needs a new segment
 * takes a cached 4 MiB region instead of mapping one (la_huge_take_region),
 * and a request the cache cannot serve first takes in the arenas' wholly
 * free segments (la_huge_cache_region), so memory freed as blocks of one
 * size holds blocks of another next instead of waiting out its decay
 * beside fresh memory (issue 21: 300 MiB freed in 4 MiB blocks, then 300
 * MiB of 64-byte blocks, peaked at 558 MiB; the other order at 602).
 *
 * realloc grows a huge block in place when the address space after it is
 * free, and otherwise moves its pages with mremap: page tables move, bytes
 * are not copied.  A block made of cached mappings (gathered, or grown into
 * the cached mapping after it or under it) spans several kernel mappings,
 * which never merge again: it is `split`, and moves region by region. */
#include "alloc_internal.h"

#include <errno.h>
#include <string.h>

#define HUGE_BUCKET_BITS 12

static pthread_mutex_t huge_lock = PTHREAD_MUTEX_INITIALIZER;
static la_huge_t *buckets[1u << HUGE_BUCKET_BITS] LA_BULK;
static la_huge_t *spare_descs;
static size_t huge_count, huge_bytes, huge_mapped;
static size_t huge_high;   /* most huge_bytes since the cache was last empty */
static uint64_t huge_nmalloc;   /* frees are huge_nmalloc - huge_count */

#define CACHE_MAX 512                     /* mappings kept for reuse at most */
#define CACHE_SLACK ((size_t)256 << 20)   /* cached bytes allowed beyond those in use */
static la_huge_t *cache_head, *cache_tail;  /* oldest first */
static size_t cache_count, cache_bytes;
static la_decay_t cache_decay;
static bool cache_decay_ready;
static la_purge_stats_t cache_purge;

/* Bytes in huge blocks grew (huge_lock held). */
static void add_in_use(size_t bytes) {
  huge_bytes += bytes;
  if (huge_bytes > huge_high) huge_high = huge_bytes;
}

/* Cached mappings taken out to be unmapped or gathered, which happens
 * without huge_lock: fork() waits until none is in flight (huge_lock held
 * from taking them out to here), since the child could neither finish nor
 * undo the work: an unmap may or may not have happened, and the range may
 * already belong to someone else. */
static size_t huge_inflight;
static pthread_cond_t inflight_done = PTHREAD_COND_INITIALIZER;

/* Mappings were taken out of the cache (huge_lock held). */
static void inflight_begin(const la_huge_t *taken) {
  if (taken) huge_inflight++;
}

/* ...and are unmapped or moved now. */
static void inflight_end(void) {
  pthread_mutex_lock(&huge_lock);
  if (--huge_inflight == 0) pthread_cond_broadcast(&inflight_done);
  pthread_mutex_unlock(&huge_lock);
}

static unsigned bucket_of(const void *p) {
  return (unsigned)((((uintptr_t)p >> LA_SEG_SHIFT) * 0x9E3779B97F4A7C15ull) >> (64 - HUGE_BUCKET_BITS));
}

static bool round_up(size_t x, size_t to, size_t *out) {
  if (x > SIZE_MAX - (to - 1)) return false;
  *out = (x + to - 1) & ~(to - 1);
  return true;
}

/* ---- descriptor table (huge_lock held) ----------------------------------- */

static void table_insert(la_huge_t *d) {
  unsigned b = bucket_of(d->ptr);
  d->next = buckets[b];
  buckets[b] = d;
}

static la_huge_t *table_remove(const void *p) {
  for (la_huge_t **link = &buckets[bucket_of(p)]; *link; link = &(*link)->next) {
    la_huge_t *d = *link;
    if (d->ptr != p) continue;
    *link = d->next;
    return d;
  }
  return NULL;
}

static la_huge_t *table_find(const void *p) {
  for (la_huge_t *d = buckets[bucket_of(p)]; d; d = d->next)
    if (d->ptr == p) return d;
  return NULL;
}

static la_huge_t *desc_new(void) {
  la_huge_t *d = spare_descs;
  if (d) spare_descs = d->next;
  else d = la_meta_alloc(sizeof *d);
  return d;
}

static void desc_release(la_huge_t *d) {
  d->next = spare_descs;
  spare_descs = d;
}

/* ---- the cache of freed mappings (huge_lock held) ------------------------- */

static void cache_push(la_huge_t *d) {
  d->next = NULL;
  if (cache_tail) cache_tail->next = d;
  else cache_head = d;
  cache_tail = d;
  cache_count++;
  cache_bytes += d->map_size;
}

/* A descriptor for a mapped range with no block in it, pushed into the
 * cache; NULL if no descriptor can be had. */
static la_huge_t *cache_new(void *ptr, size_t map_size) {
  la_huge_t *d = desc_new();
  if (!d) return NULL;
  d->ptr = ptr;
  d->size = 0;
  d->map_size = map_size;
  d->zeroed = false;
  d->split = false;
  cache_push(d);
  return d;
}

static la_huge_t *cache_pop_oldest(void) {
  la_huge_t *d = cache_head;
  if (!d) return NULL;
  cache_head = d->next;
  if (!cache_head) cache_tail = NULL;
  cache_count--;
  cache_bytes -= d->map_size;
  return d;
}

/* The smallest cached mapping that holds map_size bytes at `align`. */
static la_huge_t *cache_take_fit(size_t map_size, size_t align) {
  la_huge_t *best = NULL, *best_prev = NULL, *prev = NULL;
  for (la_huge_t *d = cache_head; d; prev = d, d = d->next) {
    if (d->map_size < map_size || ((uintptr_t)d->ptr & (align - 1))) continue;
    if (!best || d->map_size < best->map_size) {
      best = d;
      best_prev = prev;
    }
  }
  if (!best) return NULL;
  if (best_prev) best_prev->next = best->next;
  else cache_head = best->next;
  if (cache_tail == best) cache_tail = best_prev;
  cache_count--;
  cache_bytes -= best->map_size;
  return best;
}

/* Cached mappings, largest first, until they add up to `want` bytes (or
 * the cache is empty); chained through next. */
static la_huge_t *cache_take_largest(size_t want) {
  la_huge_t *taken = NULL;
  size_t total = 0;
  while (total < want && cache_head) {
    la_huge_t *largest = cache_head;
    for (la_huge_t *d = cache_head; d; d = d->next)
      if (d->map_size > largest->map_size) largest = d;
    la_huge_t **link = &cache_head, *prev = NULL;
    while (*link != largest) {
      prev = *link;
      link = &(*link)->next;
    }
    *link = largest->next;
    if (cache_tail == largest) cache_tail = prev;
    cache_count--;
    cache_bytes -= largest->map_size;
    total += largest->map_size;
    largest->next = taken;
    taken = largest;
  }
  return taken;
}

static size_t cache_pages(void) {
  return cache_bytes / la_page_size;
}

/* A mapping the kernel would not unmap stays ours: back into the cache,
 * to be reused, or unmapped by a later decay.  huge_lock held. */
static void cache_keep(la_huge_t *d) {
  la_segmap_set(d->ptr, d->map_size, LA_MAP_HUGE);
  d->size = 0;
  d->zeroed = false;
  cache_push(d);
}

/* Unmap a list of descriptors chained through next, then recycle them.
 * Only what the kernel unmapped counts as purged. */
static void unmap_descs(la_huge_t *list) {
  while (list) {
    la_huge_t *next = list->next;
    bool ok = la_os_unmap(list->ptr, list->map_size);
    pthread_mutex_lock(&huge_lock);
    cache_purge.nmadvise++;
    if (ok) {
      cache_purge.purged += list->map_size;
      desc_release(list);
    } else {
      cache_keep(list);
    }
    pthread_mutex_unlock(&huge_lock);
    list = next;
  }
}

/* Unmap what the caller took out of the cache with inflight_begin. */
static void unmap_taken(la_huge_t *list) {
  if (!list) return;
  unmap_descs(list);
  inflight_end();
}

static void cache_decay_init_once(void) {
  if (cache_decay_ready) return;
  cache_decay_ready = true;
  la_decay_init(&cache_decay, la_opt.dirty_decay_ms, la_now_ns());
}

/* ---- allocation ---------------------------------------------------------- */

/* Cut a mapping at `keep` bytes: the rest goes back into the cache as a
 * mapping of its own (its pages stay resident and reusable; its regions
 * stay marked HUGE).  Unmapped instead if no descriptor can be had. */
static void split_to_cache(la_huge_t *d, size_t keep) {
  if (d->map_size <= keep) return;
  uint8_t *rest = (uint8_t *)d->ptr + keep;
  size_t rest_size = d->map_size - keep;
  d->map_size = keep;
  pthread_mutex_lock(&huge_lock);
  la_huge_t *t = cache_new(rest, rest_size);
  if (t) t->split = d->split;
  pthread_mutex_unlock(&huge_lock);
  if (!t) {
    la_segmap_set(rest, rest_size, LA_MAP_NONE);
    la_os_unmap(rest, rest_size);
  }
}

/* Move the first n bytes of d's mapping onto `to`: in one mremap, or
 * region by region when d spans several kernel mappings or the kernel
 * refuses the one call (the program split the range: mprotect, mlock).
 * True if the moved pages now span several mappings. */
static bool move_pages(const la_huge_t *d, size_t n, uint8_t *to) {
  if (!d->split && la_os_remap_to(d->ptr, n, n, to)) return false;
  la_os_move_regions(d->ptr, n, to);
  return true;
}

/* No cached mapping is large enough: build one of map_size bytes from
 * several, moving their pages into a fresh reservation with mremap (page
 * tables move; nothing is copied or faulted in again).  The part they do
 * not cover is fresh.  This is how the cache serves growing requests from
 * memory the process has already touched. */
static la_huge_t *gather_cached(size_t map_size) {
  pthread_mutex_lock(&huge_lock);
  la_huge_t *parts = cache_take_largest(map_size);
  inflight_begin(parts);
  pthread_mutex_unlock(&huge_lock);
  if (!parts) return NULL;
  uint8_t *dest = la_os_map_aligned(map_size, LA_SEG_SIZE);
  bool split = false;
  size_t off = 0;
  la_huge_t *next;
  for (la_huge_t *d = parts; d; d = next) {
    next = d->next;
    size_t n = map_size - off < d->map_size ? map_size - off : d->map_size;
    bool moved = dest && n;
    if (moved) {
      split_to_cache(d, n);   /* what is not needed stays cached */
      la_segmap_set(d->ptr, d->map_size, LA_MAP_NONE);
      split |= move_pages(d, n, dest + off) || n < map_size;   /* pieces moved apart stay apart */
      off += n;
    }
    pthread_mutex_lock(&huge_lock);
    if (moved) desc_release(d);
    else cache_keep(d);   /* not needed */
    pthread_mutex_unlock(&huge_lock);
  }
  inflight_end();   /* every part is moved, cached again or released */
  if (!dest) return NULL;
  pthread_mutex_lock(&huge_lock);
  la_huge_t *d = desc_new();
  pthread_mutex_unlock(&huge_lock);
  if (!d) {
    la_os_unmap(dest, map_size);
    return NULL;
  }
  la_segmap_set(dest, map_size, LA_MAP_HUGE);
  d->ptr = dest;
  d->map_size = map_size;
  d->split = split;
  return d;
}

/* A cached mapping for map_size bytes at `align`, or one gathered from
 * several; NULL if the cache cannot help. */
static la_huge_t *reuse_cached(size_t usable, size_t map_size, size_t align) {
  pthread_mutex_lock(&huge_lock);
  la_huge_t *d = cache_take_fit(map_size, align);
  pthread_mutex_unlock(&huge_lock);
  if (!d && align <= LA_SEG_SIZE) d = gather_cached(map_size);
  if (!d) return NULL;
  split_to_cache(d, map_size);
  d->size = usable;
  d->zeroed = false;
  return d;
}

/* `fresh` bytes of new pages went to a huge block: the arenas' free units
 * beyond a quarter of the bytes in huge blocks are purged for them
 * (la_arenas_trade_dirty).  The quarter is kept for a program that takes
 * large blocks again soon, which faults each purged unit in anew: grow's
 * peak RSS / page faults with none kept 108 MiB / 77 000, a quarter 116 /
 * 66 000, no trade 128 / 60 000 (glibc: 114 / 148 000). */
static void trade_for_fresh(size_t fresh) {
  pthread_mutex_lock(&huge_lock);
  size_t in_use = huge_bytes;
  pthread_mutex_unlock(&huge_lock);
  la_arenas_trade_dirty(fresh, in_use / 4);
}

/* A block of at least `size` bytes aligned to `align` (a power of two),
 * from the cache or a fresh mapping; NULL with errno ENOMEM on failure. */
void *la_huge_alloc(size_t size, size_t align) {
  la_poll_background();   /* threads waiting for an allocation (init.c) */
  size_t usable, map_size;
  if (size == 0) size = 1;
  if (!round_up(size, la_page_size, &usable) || !round_up(usable, LA_SEG_SIZE, &map_size)) {
    errno = ENOMEM;
    return NULL;
  }
  if (align < LA_SEG_SIZE) align = LA_SEG_SIZE;
  la_huge_t *d = reuse_cached(usable, map_size, align);
  /* Wholly free segments next: mapping anew beside them would hold both
   * until the arenas' decay returns them. */
  if (!d && align <= LA_SEG_SIZE && la_arenas_give_free_segments(map_size))
    d = reuse_cached(usable, map_size, align);
  if (d) {
    pthread_mutex_lock(&huge_lock);
    table_insert(d);
    huge_count++;
    huge_nmalloc++;
    add_in_use(usable);
    huge_mapped += d->map_size;
    pthread_mutex_unlock(&huge_lock);
    return d->ptr;
  }
  if (!la_limit_before_map(usable)) {   /* memory_limit_hard */
    errno = ENOMEM;
    return NULL;
  }
  void *p = la_os_map_aligned(map_size, align);
  if (!p) return NULL;
  la_os_advise_thp(p, map_size, la_opt.thp);
  trade_for_fresh(usable);
  pthread_mutex_lock(&huge_lock);
  d = desc_new();
  if (!d) {
    pthread_mutex_unlock(&huge_lock);
    la_os_unmap(p, map_size);
    errno = ENOMEM;
    return NULL;
  }
  d->ptr = p;
  d->size = usable;
  d->map_size = map_size;
  d->zeroed = true;
  d->split = false;
  table_insert(d);
  huge_count++;
  huge_nmalloc++;
  add_in_use(usable);
  huge_mapped += map_size;
  la_segmap_set(p, map_size, LA_MAP_HUGE);
  pthread_mutex_unlock(&huge_lock);
  return p;
}

/* Free a huge block into the cache; with a zero decay time, or a full
 * cache, the oldest mapping goes back to the OS at once. */
void la_huge_free(void *p) {
  pthread_mutex_lock(&huge_lock);
  la_huge_t *d = table_remove(p);
  if (!d) {
    pthread_mutex_unlock(&huge_lock);
    la_invalid_free(p, "not the start of a huge block");
    return;
  }
  if (!cache_head) huge_high = huge_bytes;   /* what is cached from here on */
  huge_count--;
  huge_bytes -= d->size;
  huge_mapped -= d->map_size;
  if (LA_UNLIKELY(d->sampled)) {   /* before the address can be handed out again */
    d->sampled = false;
    la_prof_forget(p);   /* lock order: huge_lock, then prof.c's */
  }
  cache_decay_init_once();
  cache_push(d);
  /* At most CACHE_MAX mappings, and no more than twice what is in use plus
   * CACHE_SLACK, or than what was in use at most since the cache was last
   * empty, less what is now: the oldest go at once beyond that (decay
   * handles time).  A program that frees all its big buffers at once
   * (hugereuse: 300 MiB of 4 MiB blocks, then small blocks) keeps them for
   * what comes next, where unmapping all but 256 MiB of them cost it 12,000
   * page faults when its small blocks took that memory again. */
  size_t cap = 2 * huge_bytes + CACHE_SLACK;
  if (huge_high - huge_bytes > cap) cap = huge_high - huge_bytes;
  la_huge_t *gone = NULL;
  while (cache_head && (cache_decay.ms == 0 || cache_count > CACHE_MAX || (cache_bytes > cap && cache_count > 1))) {
    la_huge_t *old = cache_pop_oldest();
    la_segmap_set(old->ptr, old->map_size, LA_MAP_NONE);
    old->next = gone;
    gone = old;
  }
  la_decay_limit(&cache_decay, la_now_ns(), cache_pages());   /* record the new pages */
  inflight_begin(gone);
  pthread_mutex_unlock(&huge_lock);
  unmap_taken(gone);
  la_purger_notify();
}

/* Is the 4 MiB region at `a` known to have more pages resident than the
 * one at `b`?  A block written from its start (sqlite's sorter takes 8
 * MiB and fills half) leaves its head resident and its tail untouched: the
 * arena should get the head, or it faults in new pages while the old ones
 * wait for decay. */
static bool more_resident(const void *a, const void *b) {
  unsigned char vec[LA_SEG_SIZE / 4096];
  size_t in_a = la_os_resident_pages(a, LA_SEG_SIZE, vec, sizeof vec);
  size_t in_b = la_os_resident_pages(b, LA_SEG_SIZE, vec, sizeof vec);
  return in_a != (size_t)-1 && in_b != (size_t)-1 && in_a > in_b;
}

/* A cached 4 MiB region for a new segment (arena.c), or NULL when the
 * cache is empty.  The region is the first or the last of the smallest
 * cached mapping, whichever has more pages resident, so that the mappings
 * that can serve a whole huge request stay whole.
 * (Taking from the oldest mapping instead cut up large ones: `grow`, whose
 * arrays reuse cached mappings while its strings take new segments, peaked
 * at 206.2 MiB against 197.9 without the reuse; this way, 198.6.)  The
 * region stays mapped, its pages possibly resident with old contents; it is
 * no longer in the segment map, and the caller marks it as a segment once
 * it has a header.  Called with an arena lock held: arena locks come
 * before huge_lock. */
void *la_huge_take_region(void) {
  pthread_mutex_lock(&huge_lock);
  la_huge_t *d = cache_take_fit(LA_SEG_SIZE, LA_SEG_SIZE);
  uint8_t *region = NULL;
  if (d) {
    uint8_t *head = d->ptr, *tail = head + d->map_size - LA_SEG_SIZE;
    bool from_head = head != tail && more_resident(head, tail);
    region = from_head ? head : tail;
    if (from_head) d->ptr = head + LA_SEG_SIZE;
    d->map_size -= LA_SEG_SIZE;
    if (d->map_size) cache_push(d);
    else desc_release(d);
    /* No la_decay_purged: it would also forget pages split into the
     * cache since the curve last looked; a look at fewer pages records
     * no arrivals anyway. */
    la_segmap_set(region, LA_SEG_SIZE, LA_MAP_NONE);
  }
  pthread_mutex_unlock(&huge_lock);
  return region;
}

/* The region of a wholly free segment joins the cache (arena.c, for a
 * huge request the cache could not serve); false if no descriptor can be
 * had.  Called with an arena lock held: arena locks come before huge_lock. */
bool la_huge_cache_region(void *region) {
  pthread_mutex_lock(&huge_lock);
  cache_decay_init_once();
  la_huge_t *d = cache_new(region, LA_SEG_SIZE);
  if (d) la_segmap_set(region, LA_SEG_SIZE, LA_MAP_HUGE);
  pthread_mutex_unlock(&huge_lock);
  return d != NULL;
}

/* Unmap the cached mappings the decay curve says must go by `now`; returns
 * when the next one is due (0: none). */
uint64_t la_huge_decay(uint64_t now) {
  la_huge_t *gone = NULL;
  pthread_mutex_lock(&huge_lock);
  if (!cache_decay_ready) {
    pthread_mutex_unlock(&huge_lock);
    return 0;
  }
  size_t limit = la_decay_limit(&cache_decay, now, cache_pages());
  while (cache_pages() > limit) {
    la_huge_t *d = cache_pop_oldest();
    la_segmap_set(d->ptr, d->map_size, LA_MAP_NONE);
    d->next = gone;
    gone = d;
  }
  if (gone) cache_purge.npurges++;
  la_decay_purged(&cache_decay, cache_pages());
  uint64_t due = la_decay_next_deadline(&cache_decay, cache_pages());
  inflight_begin(gone);
  pthread_mutex_unlock(&huge_lock);
  unmap_taken(gone);
  return due;
}

/* Unmap every cached mapping now (malloc_trim); returns the bytes. */
size_t la_huge_purge(void) {
  la_huge_t *gone = NULL, *d;
  size_t bytes = 0;
  pthread_mutex_lock(&huge_lock);
  while ((d = cache_pop_oldest())) {
    la_segmap_set(d->ptr, d->map_size, LA_MAP_NONE);
    bytes += d->map_size;
    d->next = gone;
    gone = d;
  }
  if (cache_decay_ready) la_decay_purged(&cache_decay, 0);
  inflight_begin(gone);
  pthread_mutex_unlock(&huge_lock);
  unmap_taken(gone);
  return bytes;
}

void la_huge_set_decay(ssize_t ms) {
  pthread_mutex_lock(&huge_lock);
  cache_decay_init_once();
  la_decay_set_ms(&cache_decay, ms, la_now_ns());
  pthread_mutex_unlock(&huge_lock);
}

/* calloc: does the block still read as zero? */
bool la_huge_is_zeroed(const void *p) {
  pthread_mutex_lock(&huge_lock);
  la_huge_t *d = table_find(p);
  bool zeroed = d && d->zeroed;
  pthread_mutex_unlock(&huge_lock);
  return zeroed;
}

/* THP changes applied so far: realloc, which works on a descriptor taken
 * out of the table, applies one it missed (relink). */
static uint64_t thp_changes;

void la_huge_apply_thp(int mode) {
  pthread_mutex_lock(&huge_lock);
  thp_changes++;
  for (unsigned b = 0; b < (1u << HUGE_BUCKET_BITS); b++)
    for (la_huge_t *d = buckets[b]; d; d = d->next) la_os_advise_thp(d->ptr, d->map_size, mode);
  for (la_huge_t *d = cache_head; d; d = d->next) la_os_advise_thp(d->ptr, d->map_size, mode);
  pthread_mutex_unlock(&huge_lock);
}

/* 0 for a pointer that is not the start of a huge block. */
/* Mark the live huge block p as a sample (prof.c); false if it is not one. */
bool la_huge_mark_sampled(const void *p) {
  pthread_mutex_lock(&huge_lock);
  la_huge_t *d = table_find(p);
  if (d) d->sampled = true;
  pthread_mutex_unlock(&huge_lock);
  return d != NULL;
}

size_t la_huge_usable_size(const void *p) {
  pthread_mutex_lock(&huge_lock);
  la_huge_t *d = table_find(p);
  size_t size = d ? d->size : 0;
  pthread_mutex_unlock(&huge_lock);
  return size;
}

/* ---- realloc ------------------------------------------------------------ */
/* The caller owns the block, so no other thread frees or resizes it while
 * realloc runs (that would be a use-after-free in the program): the
 * syscalls run without huge_lock, which is taken only to update the table
 * and the totals.  The descriptor is out of the table meanwhile, since its
 * ptr and map_size change with the mapping and la_huge_apply_thp, which
 * walks the table, would otherwise advise a range being moved or unmapped;
 * a THP change it misses is applied when the descriptor goes back. */

static void account(ssize_t dsize, ssize_t dmapped) {
  pthread_mutex_lock(&huge_lock);
  if (dsize > 0) add_in_use((size_t)dsize);
  else huge_bytes += (size_t)dsize;
  huge_mapped += (size_t)dmapped;
  pthread_mutex_unlock(&huge_lock);
}

/* Resize within the mapping.  The 4 MiB regions a shrink no longer needs go
 * to the cache, resident, where growth (of this block or another) takes
 * them back without page faults until decay unmaps them.  Pages between
 * the new end and the last region stay with the block.  Growth keeps the
 * whole mapping: the regions past the new end are the reserve earlier
 * growth took (untouched address space), and cut off into the cache they
 * made the next growth move the block (a block grown 4 MiB at a time
 * moved at every other step, not O(log n) times; growing by 1 MiB to 256
 * MiB: 238 k page faults -> 66 k, 0.51 -> 0.17 s). */
static void resize_in_place(la_huge_t *d, size_t usable, size_t need) {
  size_t old_map = d->map_size;
  if (usable < d->size) split_to_cache(d, need);
  account((ssize_t)usable - (ssize_t)d->size, (ssize_t)d->map_size - (ssize_t)old_map);
  d->size = usable;
}

/* The smallest cached mapping of at least map_size bytes, its excess
 * cached again, taken out to be moved onto (inflight: fork waits). */
static la_huge_t *take_cached_destination(size_t map_size) {
  pthread_mutex_lock(&huge_lock);
  la_huge_t *onto = cache_take_fit(map_size, LA_SEG_SIZE);
  inflight_begin(onto);
  pthread_mutex_unlock(&huge_lock);
  if (onto) split_to_cache(onto, map_size);
  return onto;
}

/* Grow d's mapping to map_size: in place if the address space after it is
 * free, else move its pages elsewhere (d->ptr changes): onto a cached
 * mapping when one is big enough, else to a fresh aligned reservation.
 * Moving onto a cached mapping replaces the cached pages the block lands
 * on and keeps those after it, up to the `asked` bytes the program wants,
 * for the growth to write without page faults (grow: 69 k faults -> 61 k,
 * 0.187 -> 0.171 s at the same peak RSS); the rest of the reservation
 * is given back, since the program may never write it.  The block then
 * spans two kernel mappings (moved apart, they never merge), so while
 * huge blocks and the cache map more than SPLIT_MAX_MAPPED (16 Ki
 * mappings of 4 MiB against the kernel's 65,530, vm.max_map_count) the
 * cached pages are dropped instead, the move growing the block's one
 * mapping as before.  *fresh says the growth is on untouched pages.  The
 * table and the totals are the caller's business. */
#define SPLIT_MAX_MAPPED ((size_t)64 << 30)

static void move_block(la_huge_t *d, uint8_t *dest, size_t map_size, bool onto) {
  pthread_mutex_lock(&huge_lock);
  bool keep_tail = onto && huge_mapped + cache_bytes <= SPLIT_MAX_MAPPED;
  pthread_mutex_unlock(&huge_lock);
  if (!d->split && !keep_tail && la_os_remap_to(d->ptr, d->map_size, map_size, dest)) return;
  d->split = move_pages(d, d->map_size, dest) || keep_tail;
}

/* Give back the pages of a kept cached tail beyond what was asked. */
static void drop_spare_tail(uint8_t *block, size_t asked, size_t map_size) {
  if (asked >= map_size || !la_os_purge(block + asked, map_size - asked)) return;
  pthread_mutex_lock(&huge_lock);
  cache_purge.purged += map_size - asked;
  cache_purge.nmadvise++;
  pthread_mutex_unlock(&huge_lock);
}

static bool grow_mapping(la_huge_t *d, size_t map_size, size_t asked, bool *fresh) {
  uint8_t *p = d->ptr;
  *fresh = true;
  if (la_os_extend_in_place(p, d->map_size, map_size)) {
    la_segmap_set(p + d->map_size, map_size - d->map_size, LA_MAP_HUGE);
  } else {
    la_huge_t *onto = take_cached_destination(map_size);
    *fresh = !onto;
    uint8_t *dest = onto ? onto->ptr : la_os_map_aligned(map_size, LA_SEG_SIZE);
    if (!dest) return false;
    /* Clear the old regions before mremap frees them: once they are free,
     * another thread may map them and mark them as its own. */
    la_segmap_set(dest, map_size, LA_MAP_HUGE);
    la_segmap_set(p, d->map_size, LA_MAP_NONE);
    move_block(d, dest, map_size, onto != NULL);
    if (onto) {
      pthread_mutex_lock(&huge_lock);
      desc_release(onto);
      pthread_mutex_unlock(&huge_lock);
      inflight_end();
      if (d->split) drop_spare_tail(dest, asked, map_size);
    }
    d->ptr = dest;
  }
  d->map_size = map_size;
  return true;
}

/* If the cache holds the mapping that starts right where d ends, and the
 * two reach map_size, join it to d: the memory is mapped already, with its
 * pages resident (typically the tail split off d when it was reused). */
static bool absorb_next_cached(la_huge_t *d, size_t map_size) {
  uint8_t *end = (uint8_t *)d->ptr + d->map_size;
  pthread_mutex_lock(&huge_lock);
  la_huge_t **link = &cache_head, *prev = NULL;
  while (*link && (*link)->ptr != end) {
    prev = *link;
    link = &(*link)->next;
  }
  la_huge_t *next = *link;
  if (!next || d->map_size + next->map_size < map_size) {
    pthread_mutex_unlock(&huge_lock);
    return false;
  }
  *link = next->next;
  if (cache_tail == next) cache_tail = prev;
  cache_count--;
  cache_bytes -= next->map_size;
  d->map_size += next->map_size;
  d->split = true;   /* two mappings side by side */
  desc_release(next);
  pthread_mutex_unlock(&huge_lock);
  split_to_cache(d, map_size);
  return true;
}

/* Growth took `bytes` of fresh address space, whose pages the program
 * will fault in: give back as many cached bytes, oldest mappings first.
 * The cache could not serve this growth (no cached mapping after the
 * block or big enough to move onto), so what it holds has the wrong shape
 * for it; kept, it would stay resident beside the new pages for the decay
 * time, round after round of a program that grows arrays (grow). */
static size_t shed_cached(size_t bytes) {
  la_huge_t *gone = NULL;
  size_t shed = 0;
  pthread_mutex_lock(&huge_lock);
  while (shed < bytes && cache_head) {
    la_huge_t *old = cache_pop_oldest();
    la_segmap_set(old->ptr, old->map_size, LA_MAP_NONE);
    shed += old->map_size;
    old->next = gone;
    gone = old;
  }
  inflight_begin(gone);
  pthread_mutex_unlock(&huge_lock);
  unmap_taken(gone);
  return shed;
}

/* Grow a block whose descriptor is out of the table. */
static bool grow(la_huge_t *d, size_t usable, size_t map_size) {
  size_t old_map = d->map_size, asked = (usable + LA_SEG_SIZE - 1) & ~(LA_SEG_SIZE - 1);
  bool fresh = false;
  if (!absorb_next_cached(d, map_size) && !grow_mapping(d, map_size, asked, &fresh)) return false;
  if (fresh) {
    size_t shed = shed_cached(map_size - old_map), grown = usable > d->size ? usable - d->size : 0;
    if (shed < grown) trade_for_fresh(grown - shed);
  }
  account((ssize_t)usable - (ssize_t)d->size, (ssize_t)map_size - (ssize_t)old_map);
  d->size = usable;
  return true;
}

/* Resize in place or grow; false if the block could not grow. */
static bool resize(la_huge_t *d, size_t usable, size_t need) {
  if (need <= d->map_size) {
    resize_in_place(d, usable, need);
    return true;
  }
  size_t target = d->map_size <= SIZE_MAX / 2 && 2 * d->map_size > need ? 2 * d->map_size : need;
  return grow(d, usable, target) || (target > need && grow(d, usable, need));
}

/* Put the descriptor back in the table, with the THP mode of any change
 * made while it was out. */
static void relink(la_huge_t *d, uint64_t thp_seen) {
  pthread_mutex_lock(&huge_lock);
  table_insert(d);
  if (thp_changes != thp_seen) la_os_advise_thp(d->ptr, d->map_size, la_opt.thp);
  pthread_mutex_unlock(&huge_lock);
}

/* realloc of a huge block to a size above the largest class.  Returns the
 * block (moved or not), or NULL with errno ENOMEM and the block intact.
 * Growth reserves at least twice the old mapping (address space only; pages
 * are touched as the program writes them), so a block grown step by step
 * moves O(log n) times. */
void *la_huge_realloc(void *p, size_t size) {
  size_t usable, need;
  if (!round_up(size, la_page_size, &usable) || !round_up(usable, LA_SEG_SIZE, &need)) {
    errno = ENOMEM;
    return NULL;
  }
  pthread_mutex_lock(&huge_lock);
  la_huge_t *d = table_remove(p);
  uint64_t thp_seen = thp_changes;
  pthread_mutex_unlock(&huge_lock);
  if (!d) {
    la_invalid_free(p, "realloc of a pointer that is not a huge block");
    errno = EINVAL;
    return NULL;
  }
  /* Growth beyond the mapping touches new pages: memory_limit may refuse
   * them (the block stays as it is). */
  if (need > d->map_size && usable > d->size && !la_limit_before_map(usable - d->size)) {
    relink(d, thp_seen);
    errno = ENOMEM;
    return NULL;
  }
  bool done = resize(d, usable, need);
  /* A sampled block that moves is no longer tracked (prof.c: the sample
   * is dropped, as if freed); one resized in place stays a sample. */
  bool forget = d->sampled && (!done || d->ptr != p);
  if (forget) d->sampled = false;
  relink(d, thp_seen);
  if (forget) la_prof_forget(p);
  if (done) return d->ptr;
  /* The kernel would not grow or move it (a mapping the program split
   * with mprotect or mlock, or max_map_count): copy it instead. */
  void *q = la_huge_alloc(size, LA_SEG_SIZE);
  if (!q) return NULL;   /* errno is ENOMEM; p is untouched */
  memcpy(q, p, d->size);
  la_huge_free(p);
  return q;
}

void la_huge_stats(la_stats_t *st) {
  alloc_shm_stats_t *s = &st->s;
  pthread_mutex_lock(&huge_lock);
  s->huge_blocks += huge_count;
  s->huge_allocated += huge_bytes;
  s->huge_nmalloc += huge_nmalloc;
  s->huge_nfree += huge_nmalloc - huge_count;
  s->allocated += huge_bytes;
  s->active += huge_bytes;
  s->mapped += huge_mapped + cache_bytes;
  s->dirty += cache_bytes;        /* an upper bound: untouched pages are not resident */
  s->npurges += cache_purge.npurges;
  s->nmadvise += cache_purge.nmadvise;
  s->purged += cache_purge.purged;
  pthread_mutex_unlock(&huge_lock);
}

/* Waiting releases huge_lock; what is in flight needs only huge_lock and
 * meta_lock to finish, and meta_lock is taken after this. */
void la_huge_fork_prepare(void) {
  pthread_mutex_lock(&huge_lock);
  while (huge_inflight) pthread_cond_wait(&inflight_done, &huge_lock);
}

void la_huge_fork_parent(void) { pthread_mutex_unlock(&huge_lock); }

void la_huge_fork_child(void) {
  pthread_mutex_init(&huge_lock, NULL);
  pthread_cond_init(&inflight_done, NULL);
}
