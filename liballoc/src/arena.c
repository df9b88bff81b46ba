/* arena.c - arenas: pools of segments that hand out runs of units, and
 * give free units back to the OS as they decay.
 *
 * Each thread heap is tied to one arena (round robin), and goes to it only
 * to get a fresh slab, to give back an empty one, or for a "large" block (a
 * class whose slab holds one block).  Everything here runs under the
 * arena's lock, which the malloc/free fast paths never take.
 *
 * Segments sit in buckets by their longest free run; a request for k units
 * scans buckets k, k+1, ... so it lands in the fullest segment that fits,
 * which keeps the others empty enough to be returned to the OS.
 *
 * Free units are dirty (may be resident), muzzy (given to the kernel with
 * MADV_FREE) or clean (purged).  Segments with dirty or muzzy units wait in
 * FIFO queues in the order they got their first one, and purging takes from
 * the oldest, as many units as the decay curve (decay.c) says must go.
 * Purging drops the lock around madvise: the units it works on are marked
 * used meanwhile, so no allocation can land on them, and at most
 * PURGE_BATCH segments are handled per lock release.  Emptied, purged
 * segments beyond a few are unmapped.
 *
 * A new segment is carved from a 4 MiB region of the huge-block cache when
 * it holds one (huge.c); failing that, another arena lends a run of its
 * free units (borrow_slab), and only then is a segment mapped.  The other
 * way round, a huge request the cache cannot serve takes wholly free
 * segments before it maps anew.
 *
 * Slabs whose thread exited ("abandoned"), and slabs a heap shares because
 * other threads' frees left them sparse (heap.c), wait on per-class lists:
 * a heap that needs a slab of that class adopts one, and slabs emptied by other
 * threads' frees are swept back into free units when the arena is about to
 * grow and on malloc_trim. */
#include "alloc_internal.h"

#include <errno.h>
#include <string.h>

#define ADOPT_SCAN_LIMIT 8       /* abandoned slabs looked at per request */
#define RETAIN_CLEAN_SEGMENTS 2  /* empty purged segments kept mapped per arena */
#define PURGE_BATCH 16           /* segments madvised per lock release */
#define PURGE_MAX_BATCHES 8      /* per decay step: bounded work */
#define DECAY_TICKS 32           /* frees to the arena between decay checks */

unsigned la_narenas = 1;
static la_arena_t arenas[LA_MAX_ARENAS] LA_BULK;
static atomic_uint next_arena;

/* Threads are spread over `narenas` arenas, by default one per four CPUs.
 * An arena pools free units and the slabs heaps share or leave behind,
 * and its lock is taken only to move a whole slab or a large block, so
 * arenas split the pool more than they relieve the lock: one per CPU
 * left xthread-8t at 109 MiB where one arena holds 86, remotefree 43
 * against 38, manysize 52 against 48 (2 CPUs, medians of 7-9 runs). */
#define CPUS_PER_ARENA 4

void la_arenas_set_count(void) {
  unsigned n = la_opt.narenas ? la_opt.narenas : (la_os_ncpus() + CPUS_PER_ARENA - 1) / CPUS_PER_ARENA;
  la_narenas = n < 1 ? 1 : n > LA_MAX_ARENAS ? LA_MAX_ARENAS : n;
}

/* Nothing to touch: the arenas are zeroed .bss, a zeroed mutex is an
 * unlocked default one in glibc, and each arena sets its decay times when
 * it maps its first segment.  Start-up of a short-lived process stays a
 * few page faults cheaper that way. */
void la_arenas_init(void) {
  la_arenas_set_count();
}

la_arena_t *la_arena_for_thread(void) {
  unsigned i = atomic_fetch_add_explicit(&next_arena, 1, memory_order_relaxed);
  return &arenas[i % la_narenas];
}

la_arena_t *la_arena_at(unsigned index) {
  return index < LA_MAX_ARENAS ? &arenas[index] : NULL;
}

/* ---- segment buckets and decay queues (lock held) ------------------------ */

static void bucket_insert(la_arena_t *a, la_segment_t *seg) {
  la_segment_t **head = &a->segments[seg->max_run];
  seg->bucket.prev = NULL;
  seg->bucket.next = *head;
  if (*head) (*head)->bucket.prev = seg;
  *head = seg;
}

static void bucket_remove(la_arena_t *a, la_segment_t *seg) {
  if (seg->bucket.prev) seg->bucket.prev->bucket.next = seg->bucket.next;
  else a->segments[seg->max_run] = seg->bucket.next;
  if (seg->bucket.next) seg->bucket.next->bucket.prev = seg->bucket.prev;
  seg->bucket.next = seg->bucket.prev = NULL;
}

/* Change the used units of a segment, keeping its bucket right. */
static void set_used(la_arena_t *a, la_segment_t *seg, uint64_t used) {
  bucket_remove(a, seg);
  seg->used_units = used;
  la_segment_update_max_run(seg);
  bucket_insert(a, seg);
}

enum state { DIRTY, MUZZY };

typedef struct queue_s {
  la_segment_t **head, **tail;
  la_seg_link_t *(*link)(la_segment_t *);
  bool *(*member)(la_segment_t *);
} queue_t;

static la_seg_link_t *dirty_link(la_segment_t *s) { return &s->dirtyq; }
static la_seg_link_t *muzzy_link(la_segment_t *s) { return &s->muzzyq; }
static bool *dirty_member(la_segment_t *s) { return &s->in_dirtyq; }
static bool *muzzy_member(la_segment_t *s) { return &s->in_muzzyq; }

static queue_t queue_of(la_arena_t *a, enum state st) {
  if (st == DIRTY) return (queue_t){&a->dirtyq_head, &a->dirtyq_tail, dirty_link, dirty_member};
  return (queue_t){&a->muzzyq_head, &a->muzzyq_tail, muzzy_link, muzzy_member};
}

static void queue_add(la_arena_t *a, la_segment_t *seg, enum state st) {
  queue_t q = queue_of(a, st);
  if (*q.member(seg)) return;
  *q.member(seg) = true;
  q.link(seg)->next = NULL;
  q.link(seg)->prev = *q.tail;
  if (*q.tail) q.link(*q.tail)->next = seg;
  else *q.head = seg;
  *q.tail = seg;
}

static void queue_del(la_arena_t *a, la_segment_t *seg, enum state st) {
  queue_t q = queue_of(a, st);
  if (!*q.member(seg)) return;
  *q.member(seg) = false;
  la_seg_link_t *l = q.link(seg);
  if (l->prev) q.link(l->prev)->next = l->next;
  else *q.head = l->next;
  if (l->next) q.link(l->next)->prev = l->prev;
  else *q.tail = l->prev;
  l->next = l->prev = NULL;
}

static uint64_t *state_bits(la_segment_t *seg, enum state st) {
  return st == DIRTY ? &seg->dirty_units : &seg->muzzy_units;
}

static size_t *state_count(la_arena_t *a, enum state st) {
  return st == DIRTY ? &a->ndirty : &a->nmuzzy;
}

/* Add units to the dirty or muzzy state of a segment. */
static void state_add(la_arena_t *a, la_segment_t *seg, enum state st, uint64_t bits) {
  if (!bits) return;
  *state_bits(seg, st) |= bits;
  *state_count(a, st) += (size_t)__builtin_popcountll(bits);
  queue_add(a, seg, st);
}

/* Remove units from a state (they were allocated or are being purged). */
static void state_remove(la_arena_t *a, la_segment_t *seg, enum state st, uint64_t bits) {
  bits &= *state_bits(seg, st);
  if (!bits) return;
  *state_bits(seg, st) &= ~bits;
  *state_count(a, st) -= (size_t)__builtin_popcountll(bits);
  if (!*state_bits(seg, st)) queue_del(a, seg, st);
}

/* ---- runs of units (lock held) ------------------------------------------- */

/* The units of a run leave the dirty/muzzy states: count them out. */
static void account_taken(la_arena_t *a, la_segment_t *seg, uint64_t dirty, uint64_t muzzy) {
  a->ndirty -= (size_t)__builtin_popcountll(dirty);
  a->nmuzzy -= (size_t)__builtin_popcountll(muzzy);
  if (!seg->dirty_units) queue_del(a, seg, DIRTY);
  if (!seg->muzzy_units) queue_del(a, seg, MUZZY);
}

static la_slab_t *take_run(la_arena_t *a, la_segment_t *seg, unsigned unit, unsigned k) {
  uint64_t bits = la_bits_run_mask(unit, k);
  uint64_t dirty = seg->dirty_units & bits, muzzy = seg->muzzy_units & bits;
  if (la_segment_is_empty(seg)) a->nfree_segments--;
  bucket_remove(a, seg);
  la_slab_t *slab = la_segment_take_run(seg, unit, k);
  bucket_insert(a, seg);
  account_taken(a, seg, dirty, muzzy);
  return slab;
}

static void release_run(la_arena_t *a, la_slab_t *slab) {
  la_segment_t *seg = la_segment_of(slab);
  if (slab->kind == LA_SLAB_SMALL) a->nfreed_retired[slab->cls] += slab->nfreed;
  if (slab->kind == LA_SLAB_LEND) a->nfreed_retired[slab->cls] += la_lend_small_frees(slab);
  la_lend_end(a, slab);   /* a lender's bitmaps, or a former lender's */
  bucket_remove(a, seg);
  uint64_t dirty = la_segment_release_run(seg, slab);
  bucket_insert(a, seg);
  a->ndirty += (size_t)__builtin_popcountll(dirty);
  if (dirty) queue_add(a, seg, DIRTY);
  if (la_segment_is_empty(seg)) a->nfree_segments++;
}

/* A segment made of a region of the huge cache keeps its free units
 * resident: they are dirty (not zeroed: calloc clears what it takes of
 * them) and decay like any others.  Purged before the first slab instead,
 * only the pages the arena used were resident, but every page it took
 * again was faulted in afresh: hugereuse (300 MiB of 4 MiB blocks freed,
 * then 300 MiB of 64 B blocks) took 0.29-0.31 s, 0.19-0.22 s kept dirty
 * (mimalloc 0.185), for 1.3 MiB more peak in grow (132.8 -> 134.1) and 2.2
 * in large (170.4 -> 172.6; medians of 5).
 *
 * Units the huge block's program never wrote (the kernel says none of
 * their pages is resident) are muzzy instead: not zeroed either (a page
 * may be in swap), but runs on dirty units come first, so slabs land on
 * the pages already paid for, and decay gives the others back at once.
 * Counted dirty, sqlite3's sorter blocks (8 MiB, half written) took its
 * UPDATE's pages from their untouched halves while the written halves
 * stayed resident. */
static void keep_recycled(la_arena_t *a, la_segment_t *seg) {
  uint64_t free_units = ~seg->used_units, resident = la_segment_resident_units(seg);
  state_add(a, seg, DIRTY, free_units & resident);
  state_add(a, seg, MUZZY, free_units & ~resident);
}

/* Units of the run [unit, unit+k) of seg that are not resident. */
static unsigned clean_units(const la_segment_t *seg, unsigned unit, unsigned k) {
  uint64_t bits = la_bits_run_mask(unit, k);
  return k - (unsigned)__builtin_popcountll((seg->dirty_units | seg->muzzy_units) & bits);
}

/* A run of k free units: in the fullest segment that has one (segments
 * are bucketed by their longest free run), so that the others drain; but
 * a run whose units are all dirty, resident already, in any of the next
 * DIRTY_LOOK segments that fit comes first: a clean run beside unused
 * dirty units is new memory while the old stays resident. */
#define DIRTY_LOOK 8
static la_segment_t *find_segment(la_arena_t *a, unsigned k, unsigned align_units, int *unit) {
  la_segment_t *first = NULL;
  int first_unit = -1;
  unsigned looked = 0;
  for (unsigned r = k; r < LA_UNITS; r++)
    for (la_segment_t *seg = a->segments[r]; seg; seg = seg->bucket.next) {
      int u = la_segment_find_run(seg, k, align_units);
      if (u < 0) continue;
      if (!a->ndirty || clean_units(seg, (unsigned)u, k) == 0) {
        *unit = u;
        return seg;
      }
      if (!first) first = seg, first_unit = u;
      if (++looked > DIRTY_LOOK) goto done;
    }
done:
  *unit = first_unit;
  return first;
}

static size_t sweep_abandoned(la_arena_t *a);

/* A run of `seg` (of arena `a`, whose lock is held) made a slab of class
 * `cls`: a small one owned by `owner`, or one large block.  Under the lock
 * of the segment's arena, whichever arena asked: its statistics read the
 * slab under that lock. */
static la_slab_t *take_slab(la_arena_t *a, la_segment_t *seg, unsigned unit, unsigned cls, la_heap_t *owner) {
  la_slab_t *slab = take_run(a, seg, unit, la_class_units[cls]);
  la_slab_init(slab, seg, unit, cls);
  if (slab->kind == LA_SLAB_LARGE) {
    slab->capacity = 1;
    slab->reserved = 1;
    LA_SHARED_STORE(slab->used, 1);
  } else {
    atomic_store_explicit(&slab->owner, owner, memory_order_release);
  }
  return slab;
}

/* Another arena's free units, before this one maps a segment: each arena
 * keeps the units its threads emptied (dirty, resident until they decay),
 * and with short-lived threads spread over the arenas every arena grew to
 * the high-water mark of its own share (threadchurn: 9 MB dirty in two
 * pools; one arena held half).  The run stays in its segment, hence its
 * arena, which takes it back when it is freed (every release goes to the
 * segment's arena).  Its abandoned slabs that other threads' frees
 * emptied count as free units, as they do for its own threads.  trylock:
 * this arena's lock is held, and a busy arena is simply passed over. */
static la_slab_t *borrow_slab(la_arena_t *a, unsigned cls, unsigned align_units, la_heap_t *owner) {
  unsigned k = la_class_units[cls];
  for (unsigned i = 0; i < la_narenas; i++) {
    la_arena_t *b = &arenas[i];
    if (b == a || !LA_SHARED_LOAD(b->nsegments) || pthread_mutex_trylock(&b->lock) != 0) continue;
    int unit;
    la_segment_t *seg = find_segment(b, k, align_units, &unit);
    if (!seg && sweep_abandoned(b)) seg = find_segment(b, k, align_units, &unit);
    la_slab_t *slab = seg ? take_slab(b, seg, (unsigned)unit, cls, owner) : NULL;
    pthread_mutex_unlock(&b->lock);
    if (slab) return slab;
  }
  return NULL;
}

static void trade_dirty(la_arena_t *a, size_t clean);

/* A fresh slab of class `cls` (take_slab); NULL when out of memory, or
 * (*near set) when a new segment would be mapped near memory_limit: the
 * caller drops the lock, calls la_limit_reclaim and, if it agrees, calls
 * again with `checked`. */
static la_slab_t *alloc_slab(la_arena_t *a, unsigned cls, unsigned align_units, la_heap_t *owner, bool checked,
                             bool *near) {
  unsigned k = la_class_units[cls];
  int unit;
  la_segment_t *seg = find_segment(a, k, align_units, &unit);
  if (!seg && sweep_abandoned(a)) seg = find_segment(a, k, align_units, &unit);
  if (!seg) {
    if (!a->nsegments && !a->decay_ready) {   /* the arena's first segment */
      uint64_t now = la_now_ns();
      la_decay_set_ms(&a->dirty_decay, la_opt.dirty_decay_ms, now);
      la_decay_set_ms(&a->muzzy_decay, la_opt.muzzy_decay_ms, now);
      a->decay_ready = true;
    }
    /* Memory freed as huge blocks first: mapping anew beside it would
     * hold both until the huge cache decays. */
    void *recycled = la_huge_take_region();
    if (!recycled) {
      la_slab_t *borrowed = borrow_slab(a, cls, align_units, owner);
      if (borrowed) return borrowed;
    }
    if (!recycled && !checked && la_limit_check(LA_SEG_SIZE) == LA_LIMIT_NEAR) {
      *near = true;
      return NULL;
    }
    seg = la_segment_create(a, recycled);
    if (!seg) return NULL;
    LA_SHARED_STORE(a->nsegments, a->nsegments + 1);
    atomic_store_explicit(&a->ever_used, true, memory_order_release);
    a->nfree_segments++;
    bucket_insert(a, seg);
    if (recycled) keep_recycled(a, seg);
    unit = la_segment_find_run(seg, k, align_units);
    if (unit < 0) return NULL;   /* cannot happen: k <= 32, align_units <= 32 */
  }
  unsigned clean = clean_units(seg, (unsigned)unit, k);
  la_slab_t *slab = take_slab(a, seg, (unsigned)unit, cls, owner);
  if (clean && a->ndirty) trade_dirty(a, clean);
  return slab;
}

/* ---- abandoned slabs (lock held) ----------------------------------------- */

/* Return abandoned slabs that other threads' frees have emptied. */
static size_t sweep_abandoned(la_arena_t *a) {
  size_t released = 0;
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    la_slab_t *next;
    for (la_slab_t *s = a->abandoned[c].head; s; s = next) {
      next = s->next;
      la_slab_collect_remote(s);
      if (s->used == 0) {
        la_slab_list_remove(&a->abandoned[c], s);
        LA_SHARED_STORE(a->nabandoned[c], a->nabandoned[c] - 1);
        release_run(a, s);
        released++;
      }
    }
  }
  return released;
}

static la_slab_t *adopt_abandoned(la_arena_t *a, unsigned cls, la_heap_t *owner) {
  unsigned scanned = 0;
  for (la_slab_t *s = a->abandoned[cls].head; s && scanned < ADOPT_SCAN_LIMIT; s = s->next, scanned++) {
    if (s->kind != LA_SLAB_SMALL) continue;   /* a lender waits for its frees (lend.c) */
    la_slab_collect_remote(s);
    if (s->used < s->capacity) {
      la_slab_list_remove(&a->abandoned[cls], s);
      LA_SHARED_STORE(a->nabandoned[cls], a->nabandoned[cls] - 1);
      atomic_store_explicit(&s->owner, owner, memory_order_release);
      return s;
    }
  }
  return NULL;
}

/* An abandoned slab of another arena (this one's lock held; trylock, as
 * borrow_slab): a thread that inherits its predecessor's objects frees them
 * into the predecessor's slabs, and when the two threads' heaps sit in
 * different arenas those slabs were adopted by nobody (larson: 16.5 MB of
 * freed blocks never collected at the end). */
static la_slab_t *adopt_elsewhere(la_arena_t *a, unsigned cls, la_heap_t *owner) {
  for (unsigned i = 0; i < la_narenas; i++) {
    la_arena_t *b = &arenas[i];
    if (b == a || !LA_SHARED_LOAD(b->nabandoned[cls]) || pthread_mutex_trylock(&b->lock) != 0) continue;
    la_slab_t *slab = adopt_abandoned(b, cls, owner);
    pthread_mutex_unlock(&b->lock);
    if (slab) return slab;
  }
  return NULL;
}

/* ---- purging (lock held on entry and exit; dropped around madvise) ------- */

/* The lowest `n` set bits of x. */
static uint64_t lowest_bits(uint64_t x, size_t n) {
  if ((size_t)__builtin_popcountll(x) <= n) return x;
  uint64_t r = 0;
  while (n--) {
    uint64_t low = x & -x;
    r |= low;
    x &= ~low;
  }
  return r;
}

/* Units of `seg` that fill whole huge pages with no used unit among them:
 * purging those gives back huge pages without splitting one.  0 when huge
 * pages are not in play (thp:never, or pages no larger than a unit). */
static uint64_t whole_hugepage_units(const la_segment_t *seg) {
  size_t hp = la_opt.thp == LA_THP_NEVER ? 0 : la_os_hugepage_size();
  if (hp <= LA_UNIT_SIZE || hp > LA_SEG_SIZE) return 0;
  unsigned per = (unsigned)(hp >> LA_UNIT_SHIFT);
  uint64_t whole = 0;
  for (unsigned u = 0; u < LA_UNITS; u += per) {
    uint64_t group = la_bits_run_mask(u, per);
    if (!(seg->used_units & group)) whole |= group;
  }
  return whole;
}

/* Units of state `from` worth a madvise: not refused before. */
static uint64_t purgeable(const la_segment_t *seg, enum state from) {
  const uint64_t *bits = from == DIRTY ? &seg->dirty_units : &seg->muzzy_units;
  return *bits & ~seg->refused_units;
}

static void claim(la_arena_t *a, la_segment_t *seg, enum state from, uint64_t mask, la_advice_t *item) {
  state_remove(a, seg, from, mask);
  seg->purging_units |= mask;
  set_used(a, seg, seg->used_units | mask);
  *item = (la_advice_t){seg, mask, 0};
}

/* Take up to PURGE_BATCH segments' worth of units (at most `want`) out of
 * state `from` and mark them used by the purger.  Units that make up whole
 * free huge pages go first (among the oldest 4 * PURGE_BATCH segments), so
 * that purging does not split huge pages needlessly; then the oldest
 * segments' units, whatever they are.  Units the kernel refused to purge
 * are left out until reused: under mlockall every madvise fails, and
 * retrying each of them at every decay step cost 150 times the system
 * calls (1.96 M failed madvise calls for 11.6 k purges in a probe). */
static unsigned claim_batch(la_arena_t *a, enum state from, size_t want, la_advice_t *batch) {
  unsigned n = 0, scanned = 0;
  la_segment_t *next;
  for (la_segment_t *seg = *queue_of(a, from).head; seg && n < PURGE_BATCH && want > 0 &&
                                                    scanned < 4 * PURGE_BATCH;
       seg = next, scanned++) {
    next = queue_of(a, from).link(seg)->next;
    uint64_t mask = lowest_bits(purgeable(seg, from) & whole_hugepage_units(seg), want);
    if (!mask) continue;
    want -= (size_t)__builtin_popcountll(mask);
    claim(a, seg, from, mask, &batch[n++]);
  }
  scanned = 0;
  for (la_segment_t *seg = *queue_of(a, from).head; seg && n < PURGE_BATCH && want > 0 &&
                                                    scanned < 4 * PURGE_BATCH;
       seg = next, scanned++) {
    next = queue_of(a, from).link(seg)->next;
    uint64_t mask = lowest_bits(purgeable(seg, from), want);
    if (!mask) continue;
    want -= (size_t)__builtin_popcountll(mask);
    claim(a, seg, from, mask, &batch[n++]);
  }
  return n;
}

static void settle_batch(la_arena_t *a, la_advice_t *batch, unsigned n, enum state from, bool lazy) {
  for (unsigned i = 0; i < n; i++) {
    la_segment_t *seg = batch[i].seg;
    uint64_t refused = batch[i].mask & ~batch[i].done;   /* or pages larger than units */
    seg->purging_units &= ~batch[i].mask;
    seg->refused_units |= refused;
    set_used(a, seg, seg->used_units & ~batch[i].mask);
    if (refused) queue_del(a, seg, from);   /* to the back: the next claims find purgeable units first */
    state_add(a, seg, from, refused);
    if (lazy) state_add(a, seg, MUZZY, batch[i].done);
  }
}

/* Move `want` units out of state `from`: dirty to muzzy (lazy, MADV_FREE)
 * or to clean (MADV_DONTNEED); muzzy to clean.  Bounded work: at most
 * PURGE_MAX_BATCHES batches.  Returns the units moved. */
static size_t purge_oldest(la_arena_t *a, enum state from, size_t want, bool lazy) {
  size_t moved = 0;
  la_advice_t batch[PURGE_BATCH];
  for (unsigned round = 0; round < PURGE_MAX_BATCHES && want > moved; round++) {
    unsigned n = claim_batch(a, from, want - moved, batch);
    if (!n) break;
    pthread_mutex_unlock(&a->lock);
    la_purge_stats_t st = {0};
    la_segments_advise(batch, n, lazy, &st);
    for (unsigned i = 0; i < n; i++) moved += (size_t)__builtin_popcountll(batch[i].done);
    pthread_mutex_lock(&a->lock);
    settle_batch(a, batch, n, from, lazy);
    a->purge_stats.nmadvise += st.nmadvise;
    a->purge_stats.purged += st.purged;
    if (st.nmadvise) a->purge_stats.npurges++;
  }
  return moved;
}

/* The arena took `clean` units that are not resident while it holds dirty
 * ones that no run it looked at could use (find_segment): give
 * back as many of those, oldest first, so that the process does not hold
 * both.  A program whose live data moves from one size class to others
 * (sqlite3's page cache and sorter, bench's manysize) otherwise keeps the
 * freed classes' units resident until they decay.  With the purger
 * running, the debt is its to pay (la_arena_decay), woken once
 * TRADE_KICK units are owed: it gives back many runs in one system call
 * (la_segments_advise), where each madvise here, in a program of several
 * threads, interrupted every CPU (threadchurn: 1,500 TLB shootdowns a
 * run, 888 of them from trades).  Otherwise drops the lock around
 * madvise (purge_oldest); the caller has its run already. */
#define TRADE_KICK 8        /* units owed that wake the purger */
#define TRADE_OWED_MAX 32   /* units (2 MiB) owed at most: a purger that gets no
                               CPU lets the program pay (manysize's peak on a
                               busy machine: 59 MiB against 50 without it) */
static void pay_trades(la_arena_t *a);

static void trade_dirty(la_arena_t *a, size_t clean) {
  if (!la_purger_running() || !la_heaps_several()) {
    purge_oldest(a, DIRTY, clean < a->ndirty ? clean : a->ndirty, false);
    return;
  }
  size_t was = a->trade_owed;
  a->trade_owed += clean;
  if (a->trade_owed >= TRADE_OWED_MAX) pay_trades(a);
  else if (was < TRADE_KICK && a->trade_owed >= TRADE_KICK) la_purger_kick();
}

/* What trade_dirty left to the purger (lock held; dropped around madvise). */
static void pay_trades(la_arena_t *a) {
  size_t owed = a->trade_owed < a->ndirty ? a->trade_owed : a->ndirty;
  a->trade_owed = 0;
  if (owed) purge_oldest(a, DIRTY, owed, false);
}

/* Unlink empty segments with nothing left to purge, keeping `retain`;
 * returns them chained through bucket.next for the caller to unmap after
 * dropping the lock. */
static la_segment_t *take_spare_segments(la_arena_t *a, size_t retain) {
  la_segment_t *spare = NULL, *next;
  size_t kept = 0;
  for (la_segment_t *seg = a->segments[LA_UNITS - 1]; seg; seg = next) {
    next = seg->bucket.next;
    if (!la_segment_is_empty(seg) || seg->dirty_units || seg->muzzy_units || seg->purging_units) continue;
    if (kept++ < retain) continue;
    bucket_remove(a, seg);
    LA_SHARED_STORE(a->nsegments, a->nsegments - 1);
    a->nfree_segments--;
    seg->bucket.next = spare;
    spare = seg;
  }
  return spare;
}

/* A spare segment the kernel would not unmap goes back to its arena, as a
 * wholly free segment: its units are clean, and it is reused or unmapped
 * later like any other. */
static void keep_segment(la_arena_t *a, la_segment_t *seg) {
  pthread_mutex_lock(&a->lock);
  LA_SHARED_STORE(a->nsegments, a->nsegments + 1);
  a->nfree_segments++;
  bucket_insert(a, seg);
  pthread_mutex_unlock(&a->lock);
}

/* Unmap the segments take_spare_segments chained, without the lock;
 * returns the bytes unmapped. */
static size_t unmap_segments(la_segment_t *list) {
  size_t bytes = 0;
  while (list) {
    la_segment_t *next = list->bucket.next;
    if (la_segment_destroy(list)) bytes += LA_SEG_SIZE;
    else keep_segment(list->arena, list);
    list = next;
  }
  return bytes;
}

static uint64_t earliest(uint64_t a, uint64_t b) {
  if (!a) return b;
  if (!b) return a;
  return a < b ? a : b;
}

/* Purge what the decay curves say must go by `now`.  Returns when the
 * next purge is due (0: nothing pending). */
static uint64_t decay_locked(la_arena_t *a, uint64_t now, la_segment_t **spare) {
  bool lazy = a->muzzy_decay.ms != 0;
  size_t limit = la_decay_limit(&a->dirty_decay, now, a->ndirty);
  if (a->ndirty > limit) {
    purge_oldest(a, DIRTY, a->ndirty - limit, lazy);
    la_decay_purged(&a->dirty_decay, a->ndirty);
  }
  limit = la_decay_limit(&a->muzzy_decay, now, a->nmuzzy);
  if (a->nmuzzy > limit) {
    purge_oldest(a, MUZZY, a->nmuzzy - limit, false);
    la_decay_purged(&a->muzzy_decay, a->nmuzzy);
  }
  *spare = take_spare_segments(a, RETAIN_CLEAN_SEGMENTS);
  return earliest(la_decay_next_deadline(&a->dirty_decay, a->ndirty),
                  la_decay_next_deadline(&a->muzzy_decay, a->nmuzzy));
}

/* Run decay on one arena; returns when it is next due (0: nothing pending). */
uint64_t la_arena_decay(la_arena_t *a, uint64_t now) {
  la_segment_t *spare;
  pthread_mutex_lock(&a->lock);
  pay_trades(a);
  uint64_t due = decay_locked(a, now, &spare);
  pthread_mutex_unlock(&a->lock);
  unmap_segments(spare);
  return due;
}

uint64_t la_arenas_decay(uint64_t now) {
  uint64_t due = 0;
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++)
    if (LA_SHARED_LOAD(arenas[i].nsegments)) due = earliest(due, la_arena_decay(&arenas[i], now));
  return due;
}

/* A new decay time for every arena, applied to what is already pending. */
void la_arenas_set_decay(ssize_t dirty_ms, ssize_t muzzy_ms) {
  uint64_t now = la_now_ns();
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) {
    la_arena_t *a = &arenas[i];
    pthread_mutex_lock(&a->lock);
    la_decay_set_ms(&a->dirty_decay, dirty_ms, now);
    la_decay_set_ms(&a->muzzy_decay, muzzy_ms, now);
    a->decay_ready = true;
    pthread_mutex_unlock(&a->lock);
  }
}

/* Give back a run (slab or large block) and, every DECAY_TICKS frees or at
 * once with a zero decay time, purge what decay says is due.  Called with
 * the lock held; drops it. */
static void release_and_unlock(la_arena_t *a, la_slab_t *slab) {
  release_run(a, slab);
  la_segment_t *spare = NULL;
  if (a->dirty_decay.ms == 0 || ++a->ticks >= DECAY_TICKS) {
    a->ticks = 0;
    decay_locked(a, la_now_ns(), &spare);
  }
  pthread_mutex_unlock(&a->lock);
  unmap_segments(spare);
  la_purger_notify();
}

/* ---- slabs for thread heaps ---------------------------------------------- */

/* A slab of class `cls` owned by `owner` with at least one block to hand
 * out: an abandoned one if there is one, else a fresh one.  NULL if out of
 * memory. */
la_slab_t *la_arena_get_slab(la_arena_t *a, unsigned cls, la_heap_t *owner) {
  bool checked = false, near = false;
  for (;;) {
    pthread_mutex_lock(&a->lock);
    la_slab_t *slab = adopt_abandoned(a, cls, owner);
    if (!slab) slab = adopt_elsewhere(a, cls, owner);
    if (!slab) slab = alloc_slab(a, cls, 1, owner, checked, &near);
    pthread_mutex_unlock(&a->lock);
    if (slab || !near || checked) return slab;
    if (!la_limit_reclaim(LA_SEG_SIZE)) {   /* memory_limit_hard */
      errno = ENOMEM;
      return NULL;
    }
    checked = true;
  }
}

/* Give back a slab with no block in use. */
void la_arena_put_slab(la_arena_t *a, la_slab_t *slab) {
  pthread_mutex_lock(&a->lock);
  release_and_unlock(a, slab);
}

/* A heap whose thread exits, or that shares a slab other threads freed
 * into (heap.c), leaves a slab that still has blocks in use. */
void la_arena_abandon_slab(la_arena_t *a, la_slab_t *slab) {
  pthread_mutex_lock(&a->lock);
  LA_SHARED_STORE(slab->fast_owner, NULL);
  slab->in_full = 0;
  atomic_store_explicit(&slab->notify, false, memory_order_relaxed);
  atomic_store_explicit(&slab->owner, NULL, memory_order_release);
  la_slab_list_push(&a->abandoned[slab->cls], slab);
  LA_SHARED_STORE(a->nabandoned[slab->cls], a->nabandoned[slab->cls] + 1);
  pthread_mutex_unlock(&a->lock);
}

/* ---- large blocks -------------------------------------------------------- */

/* One block of a large class, aligned to `align` (a power of two; up to 2
 * MiB), in units of its own.  NULL if out of memory. */
la_slab_t *la_arena_alloc_large(la_arena_t *a, unsigned cls, size_t align) {
  unsigned align_units = align > LA_UNIT_SIZE ? (unsigned)(align >> LA_UNIT_SHIFT) : 1;
  bool checked = false, near = false;
  pthread_mutex_lock(&a->lock);
  la_slab_t *slab = alloc_slab(a, cls, align_units, NULL, false, &near);
  if (near) {   /* near memory_limit: give back free memory without the lock */
    pthread_mutex_unlock(&a->lock);
    if (!la_limit_reclaim(LA_SEG_SIZE)) {
      errno = ENOMEM;
      return NULL;
    }
    checked = true;
    pthread_mutex_lock(&a->lock);
    slab = alloc_slab(a, cls, align_units, NULL, checked, &near);
  }
  if (slab) a->large_nmalloc[cls]++;
  pthread_mutex_unlock(&a->lock);
  return slab;
}

/* realloc: grow a large block in place to large class `cls` when the
 * units after it are free.  No copy, and dirty units come with their
 * pages already resident.  False if they are not free. */
bool la_arena_expand_large(la_slab_t *slab, unsigned cls) {
  la_segment_t *seg = la_segment_of(slab);
  la_arena_t *a = seg->arena;
  unsigned unit = (unsigned)(slab - seg->slabs), k = slab->nunits, k2 = la_class_units[cls];
  if (k2 <= k || unit + k2 > LA_UNITS) return false;
  uint64_t extra = la_bits_run_mask(unit + k, k2 - k);
  pthread_mutex_lock(&a->lock);
  if (seg->used_units & extra) {
    pthread_mutex_unlock(&a->lock);
    return false;
  }
  uint64_t dirty = seg->dirty_units & extra, muzzy = seg->muzzy_units & extra;
  seg->dirty_units &= ~extra;
  seg->muzzy_units &= ~extra;
  seg->refused_units &= ~extra;
  set_used(a, seg, seg->used_units | extra);
  account_taken(a, seg, dirty, muzzy);
  for (unsigned u = unit + k; u < unit + k2; u++) seg->unit_slab[u] = slab;
  slab->nunits = (uint8_t)k2;
  slab->cls = (uint8_t)cls;
  slab->block_size = la_class_size[cls];
  a->large_nmalloc[cls]++;   /* counted as a free of the old class and a malloc of the new */
  pthread_mutex_unlock(&a->lock);
  return true;
}

void la_arena_free_large(la_slab_t *slab) {
  la_arena_t *a = la_segment_of(slab)->arena;
  pthread_mutex_lock(&a->lock);
  release_and_unlock(a, slab);
}

/* ---- wholly free segments for huge blocks -------------------------------- */

/* Hand wholly free segments to the huge cache until `want` bytes are given,
 * for a huge request the cache could not serve (huge.c): their pages are
 * reused, or at least not mapped twice, instead of waiting out the arena's
 * decay beside a fresh mapping.  Returns the bytes given.  Takes each arena
 * lock, and huge_lock inside it. */
size_t la_arenas_give_free_segments(size_t want) {
  size_t given = 0;
  for (unsigned i = 0; i < LA_MAX_ARENAS && given < want; i++) {
    la_arena_t *a = &arenas[i];
    if (!LA_SHARED_LOAD(a->nsegments)) continue;
    pthread_mutex_lock(&a->lock);
    la_segment_t *next;
    for (la_segment_t *seg = a->segments[LA_UNITS - 1]; seg && given < want && a->nfree_segments > RETAIN_CLEAN_SEGMENTS; seg = next) {
      next = seg->bucket.next;
      if (!la_segment_is_empty(seg) || seg->purging_units) continue;
      uint64_t dirty = seg->dirty_units, muzzy = seg->muzzy_units;
      bucket_remove(a, seg);
      state_remove(a, seg, DIRTY, dirty);
      state_remove(a, seg, MUZZY, muzzy);
      LA_SHARED_STORE(a->nsegments, a->nsegments - 1);
      a->nfree_segments--;
      if (la_huge_cache_region(seg)) {
        given += LA_SEG_SIZE;
        continue;
      }
      /* no descriptor for it: the segment stays the arena's */
      LA_SHARED_STORE(a->nsegments, a->nsegments + 1);
      a->nfree_segments++;
      bucket_insert(a, seg);
      state_add(a, seg, DIRTY, dirty);
      state_add(a, seg, MUZZY, muzzy);
      break;
    }
    /* The decay curves are left alone: the next look at fewer pages than
     * the last one records no arrivals, and la_decay_purged here would
     * also forget those since the last look (counted every DECAY_TICKS). */
    pthread_mutex_unlock(&a->lock);
  }
  return given;
}

/* A huge block took `fresh` bytes of new pages: purge as many dirty units,
 * oldest first, beyond `keep` bytes of them (the arenas together).  Free
 * units never hold a huge block, so all of them kept stay resident beside
 * the new pages until they decay: trade_dirty's rule, for the blocks that
 * do not come from segments.  A program that grows arrays through the
 * large classes into huge blocks (grow) frees a run at each step, and when
 * the arrays are grown those runs are all free and none is wanted until
 * the next round. */
void la_arenas_trade_dirty(size_t fresh, size_t keep) {
  size_t dirty = 0;
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) {
    la_arena_t *a = &arenas[i];
    if (!LA_SHARED_LOAD(a->nsegments)) continue;
    pthread_mutex_lock(&a->lock);
    dirty += a->ndirty;
    pthread_mutex_unlock(&a->lock);
  }
  dirty <<= LA_UNIT_SHIFT;
  if (dirty <= keep) return;
  size_t want = (fresh < dirty - keep ? fresh : dirty - keep) >> LA_UNIT_SHIFT;
  for (unsigned i = 0; i < LA_MAX_ARENAS && want; i++) {
    la_arena_t *a = &arenas[i];
    if (!LA_SHARED_LOAD(a->nsegments)) continue;
    pthread_mutex_lock(&a->lock);
    size_t moved = a->ndirty ? purge_oldest(a, DIRTY, want < a->ndirty ? want : a->ndirty, false) : 0;
    pthread_mutex_unlock(&a->lock);
    want -= moved < want ? moved : want;
  }
}

/* ---- purge now, stats, fork ---------------------------------------------- */

static void forget_refusals(la_arena_t *a) {
  for (unsigned r = 0; r < LA_UNITS; r++)
    for (la_segment_t *seg = a->segments[r]; seg; seg = seg->bucket.next) seg->refused_units = 0;
}

/* malloc_trim: return emptied abandoned slabs, purge every dirty and muzzy
 * unit and unmap every wholly free segment.  Returns the bytes given back. */
size_t la_arenas_purge(void) {
  size_t released = 0;
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) {
    la_arena_t *a = &arenas[i];
    pthread_mutex_lock(&a->lock);
    if (!a->nsegments) {
      pthread_mutex_unlock(&a->lock);
      continue;
    }
    sweep_abandoned(a);
    forget_refusals(a);   /* asked for explicitly: try everything once more */
    a->trade_owed = 0;    /* paid below */
    released += purge_oldest(a, DIRTY, SIZE_MAX, false) << LA_UNIT_SHIFT;
    released += purge_oldest(a, MUZZY, SIZE_MAX, false) << LA_UNIT_SHIFT;
    la_decay_purged(&a->dirty_decay, a->ndirty);
    la_decay_purged(&a->muzzy_decay, a->nmuzzy);
    la_segment_t *spare = take_spare_segments(a, 0);
    pthread_mutex_unlock(&a->lock);
    released += unmap_segments(spare);
  }
  return released;
}

static size_t header_bytes(void) {
  return (sizeof(la_segment_t) + la_page_size - 1) & ~(la_page_size - 1);
}

/* `used` and `nfreed` belong to the owning thread: relaxed reads give
 * values that were true a moment ago, which is all a statistic needs.
 * Frees of large blocks are not counted; they are allocations minus live. */
static void slab_stats(la_stats_t *st, const la_slab_t *s) {
  alloc_shm_stats_t *t = &st->s;
  alloc_shm_class_t *k = &st->classes[s->cls];
  uint64_t used = LA_SHARED_LOAD(s->used);
  bool lender = __atomic_load_n(&s->kind, __ATOMIC_ACQUIRE) == LA_SLAB_LEND;
  if (lender) used = la_lend_stats(st, s);   /* the lent blocks, in their classes */
  uint64_t bytes = used * s->block_size;
  k->slabs++;
  k->live += used;
  t->allocated += bytes;
  if (s->kind == LA_SLAB_LARGE) {   /* used is 0 while in a thread's cache */
    t->large_blocks += used;
    t->large_allocated += bytes;
    return;
  }
  uint64_t nfreed = lender ? la_lend_small_frees(s) : LA_SHARED_LOAD(s->nfreed);
  k->nfree += nfreed;
  k->nmalloc += nfreed + used;
  t->small_allocated += bytes;
  if (!lender && atomic_load_explicit(&s->owner, memory_order_relaxed)) t->tcache += (s->capacity - used) * s->block_size;
  uint64_t trimmed = LA_SHARED_LOAD(s->trimmed);   /* pages given back while the slab lives */
  t->active -= (uint64_t)__builtin_popcountll(trimmed) * la_page_size;
}

static void segment_stats(la_stats_t *st, const la_segment_t *seg) {
  alloc_shm_stats_t *t = &st->s;
  t->mapped += LA_SEG_SIZE;
  t->metadata += header_bytes();
  uint64_t in_slabs = seg->used_units & ~seg->purging_units & ~(uint64_t)1;
  t->active += (uint64_t)__builtin_popcountll(in_slabs) << LA_UNIT_SHIFT;
  t->dirty += (uint64_t)__builtin_popcountll(seg->dirty_units) << LA_UNIT_SHIFT;
  t->muzzy += (uint64_t)__builtin_popcountll(seg->muzzy_units) << LA_UNIT_SHIFT;
  if (la_segment_is_empty(seg)) t->retained += LA_SEG_SIZE;
  for (unsigned u = 1; u < LA_UNITS; u++) {
    const la_slab_t *s = seg->unit_slab[u];
    if (s == &seg->slabs[u] && s->kind != LA_SLAB_UNUSED) slab_stats(st, s);
  }
}

/* One arena lock at a time, each held for one walk of its segments;
 * arenas that never had a segment have nothing to count. */
void la_arenas_stats(la_stats_t *st) {
  alloc_shm_stats_t *t = &st->s;
  t->narenas = la_narenas;
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) {
    la_arena_t *a = &arenas[i];
    if (!atomic_load_explicit(&a->ever_used, memory_order_acquire)) continue;
    pthread_mutex_lock(&a->lock);
    for (unsigned r = 0; r < LA_UNITS; r++)
      for (la_segment_t *seg = a->segments[r]; seg; seg = seg->bucket.next) segment_stats(st, seg);
    t->nsegments += a->nsegments;
    t->npurges += a->purge_stats.npurges;
    t->nmadvise += a->purge_stats.nmadvise;
    t->purged += a->purge_stats.purged;
    for (unsigned c = 0; c < LA_NCLASSES; c++) {
      st->classes[c].nfree += a->nfreed_retired[c];
      st->classes[c].nmalloc += a->nfreed_retired[c] + a->large_nmalloc[c];
    }
    pthread_mutex_unlock(&a->lock);
  }
}

/* Apply a THP mode to every segment mapped now (future ones get it when
 * they are created). */
void la_arenas_apply_thp(int mode) {
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) {
    la_arena_t *a = &arenas[i];
    pthread_mutex_lock(&a->lock);
    for (unsigned r = 0; r < LA_UNITS; r++)
      for (la_segment_t *seg = a->segments[r]; seg; seg = seg->bucket.next)
        la_os_advise_thp(seg, LA_SEG_SIZE, mode);
    pthread_mutex_unlock(&a->lock);
  }
}

void la_arenas_fork_prepare(void) {
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) pthread_mutex_lock(&arenas[i].lock);
}

void la_arenas_fork_parent(void) {
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) pthread_mutex_unlock(&arenas[i].lock);
}

/* A purge in another thread may have been advising units, without the
 * lock, when fork() struck: in the child no thread will settle them, and
 * they would stay used forever.  Whether their madvise happened is not
 * known, so they go back as dirty (possibly resident, never taken for
 * zeroed).  The segments are all in the buckets: a purge only marks units. */
static void settle_forked_purges(la_arena_t *a) {
  for (unsigned r = 0; r < LA_UNITS; r++) {
    la_segment_t *next;
    for (la_segment_t *seg = a->segments[r]; seg; seg = next) {
      next = seg->bucket.next;
      uint64_t held = seg->purging_units;
      if (!held) continue;
      seg->purging_units = 0;
      set_used(a, seg, seg->used_units & ~held);   /* may move seg to a later bucket */
      state_add(a, seg, DIRTY, held);   /* claiming took them out of their state */
    }
  }
}

void la_arenas_fork_child(void) {
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) {
    pthread_mutex_init(&arenas[i].lock, NULL);
    settle_forked_purges(&arenas[i]);
  }
}
