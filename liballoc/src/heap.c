/* heap.c - thread heaps: where the malloc and free fast paths live.
 *
 * Every thread that allocates gets a heap of its own, found through one
 * initial-exec TLS pointer.  A heap keeps, per size class, a queue of the
 * slabs it owns that may have free blocks; the head of the queue is the
 * class's current slab, and bins[class] points at it so the fast path is a
 * table load and a list pop.  Slabs found full move to a separate list, so
 * refills never rescan them; frees from the owner bring a full slab back at
 * once, frees from other threads are noticed by a sweep of the full list that
 * runs once per as many refills as there are full slabs (amortised O(1)).
 *
 * A thread that has not allocated yet points at la_empty_heap, whose bins
 * are all the empty sentinel slab: its first malloc falls into the slow path,
 * which creates the heap.  When a thread exits, its heap gives empty slabs
 * back to the arena and abandons the others there, and the heap structure is
 * kept for the next thread.  What a heap caches (large blocks, emptied slabs
 * of big blocks) decays like free memory elsewhere: the purger takes it back
 * from a thread that stopped using it ("idle heaps" below). */
#include "alloc_internal.h"

#include <errno.h>
#include <string.h>

__thread la_heap_t *la_tls_heap = &la_empty_heap;

la_heap_t la_empty_heap = {.direct = {[0 ... LA_DIRECT_N - 1] = &la_slab_empty},
                           .bins = {[0 ... LA_NCLASSES - 1] = &la_slab_empty}};

static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t reclaim_lock = PTHREAD_MUTEX_INITIALIZER;   /* idle heaps */
static la_heap_t *all_heaps;     /* live heaps */
static la_heap_t *spare_heaps;   /* heaps of exited threads, for reuse */
static size_t nheaps;
static pthread_key_t heap_key;

static void heap_thread_exit(void *arg);

void la_heaps_init(void) {
  /* The key only serves to run heap_thread_exit; its slot is one of the
   * first 32, which glibc keeps inside the thread descriptor (no malloc). */
  pthread_key_create(&heap_key, heap_thread_exit);
  la_heaps_set_checks();
}

/* ---- detect_double_free ----------------------------------------------------
 * With the option on, slabs get no fast_owner and the heap's bins stay empty,
 * so every malloc and free of a small block takes the slow path; class 0 is
 * 16 bytes.  A freed block gets a per-process secret in its second word, and
 * malloc wipes it.  Freed again, a block still has it (unless the program
 * wrote there after the first free); a match is confirmed by finding the
 * block on its slab's free lists, which rules out the program having stored
 * the secret's value itself.  Without a match nothing is walked: the check is
 * a load, a compare and a division (a pointer into the middle of a block is
 * refused too).  Slabs made before the option was read (a very early malloc)
 * are not checked. */
static uint64_t free_mark;   /* 0: the option is off */

void la_heaps_set_checks(void) {
  if (!la_opt.detect_double_free || free_mark) return;
  free_mark = la_os_random64() | 1;
}

/* The heap a slab lets free without checks: none while checking frees,
 * nor while the slab holds a live sample (prof.c must see its frees). */
static inline la_heap_t *fast_owner_for(la_heap_t *heap, const la_slab_t *slab) {
  return free_mark || LA_SHARED_LOAD(slab->prof_samples) ? NULL : heap;
}

static void unmark(const la_slab_t *slab, la_block_t *block) {
  if (block && slab->block_size >= 2 * sizeof(uint64_t)) ((uint64_t *)block)[1] = 0;
}

/* What is wrong with freeing `block`, or NULL (and the block is marked). */
static const char *check_small_free(const la_slab_t *slab, la_block_t *block, bool owner) {
  if (((uint8_t *)block - slab->start) % slab->block_size) return "not the start of a block (interior pointer)";
  if (slab->block_size < 2 * sizeof(uint64_t)) return NULL;   /* an 8-byte block made before */
  if (owner && la_slab_block_trimmed(slab, block)) return "double free";   /* its page was given back */
  uint64_t *mark = (uint64_t *)block + 1;
  if (*mark == free_mark && la_slab_holds_free(slab, block, owner)) return "double free";
  *mark = free_mark;
  return NULL;
}

/* The heaps' share of the statistics: the large-block caches.  Heaps of
 * exited threads are kept for reuse, so their counts are never lost. */
static void heap_stats(la_stats_t *st, const la_heap_t *heap) {
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    uint64_t lent = LA_SHARED_LOAD(heap->lent_nmalloc[c]);
    st->classes[c].nmalloc += LA_SHARED_LOAD(heap->large_hits[c]) + lent;
    st->lent_open[c] += (int64_t)lent;
  }
  st->s.tcache += LA_SHARED_LOAD(heap->large_cached_bytes);
}

void la_heaps_stats(la_stats_t *st) {
  pthread_mutex_lock(&heaps_lock);
  for (const la_heap_t *h = all_heaps; h; h = h->next_all) heap_stats(st, h);
  for (const la_heap_t *h = spare_heaps; h; h = h->next_all) heap_stats(st, h);
  st->s.nheaps = nheaps;
  pthread_mutex_unlock(&heaps_lock);
}

/* ---- queues -------------------------------------------------------------- */

/* Point the fast path's entries of class `cls` at `slab`: the head of
 * its queue, or a lender serving its own class (lend.c).  A lender they
 * pointed at before hands the slots still on its free list back. */
static void point_bin(la_heap_t *heap, unsigned cls, la_slab_t *slab) {
  la_slab_t *was = heap->bins[cls];
  if (LA_UNLIKELY(was != slab && was->kind == LA_SLAB_LEND)) la_lend_unserve(was);   /* its free list back */
  heap->bins[cls] = slab;
  for (unsigned i = la_class_direct_first[cls]; i <= la_class_direct_last[cls] && la_class_direct_last[cls]; i++)
    heap->direct[i] = slab;
}

/* Point them at the head of the class's queue (never, while checking
 * frees: every malloc must come to la_heap_alloc_class). */
static void set_bin(la_heap_t *heap, unsigned cls) {
  la_slab_t *slab = heap->queues[cls].head;
  point_bin(heap, cls, slab && LA_LIKELY(!free_mark) ? slab : &la_slab_empty);
}

/* Every class to the slow path. */
static void clear_bins(la_heap_t *heap) {
  for (unsigned c = 0; c < LA_NCLASSES; c++) heap->bins[c] = &la_slab_empty;
  for (unsigned i = 0; i < LA_DIRECT_N; i++) heap->direct[i] = &la_slab_empty;
}

static void queue_slab(la_heap_t *heap, la_slab_t *slab) {
  slab->in_full = 0;
  LA_SHARED_STORE(slab->fast_owner, fast_owner_for(heap, slab));
  la_slab_list_push(&heap->queues[slab->cls], slab);
  /* Behind a head, which the fast path already has: nothing to point at
   * (a third of aligned's frees brought a full slab back, each pointing
   * every entry of the class again). */
  if (heap->queues[slab->cls].head == slab) set_bin(heap, slab->cls);
}

static void move_to_full(la_heap_t *heap, la_slab_t *slab) {
  la_slab_list_remove(&heap->queues[slab->cls], slab);
  slab->in_full = 1;
  LA_SHARED_STORE(slab->fast_owner, NULL);   /* the owner's next free must take the slow path */
  /* Relaxed: the hint orders nothing.  A free that read false just before
   * this store goes unhinted either way, and the periodic sweep finds its
   * block (a sequentially consistent store cost remotefree an xchg on a
   * line its freers write: 1.6% of its samples). */
  atomic_store_explicit(&slab->notify, true, memory_order_relaxed);
  la_slab_list_push(&heap->full, slab);
  heap->nfull++;
}

static void leave_full(la_heap_t *heap, la_slab_t *slab) {
  la_slab_list_remove(&heap->full, slab);
  heap->nfull--;
  atomic_store_explicit(&slab->notify, false, memory_order_relaxed);
  queue_slab(heap, slab);
}

/* Sweep the full list when another thread has freed into a full slab (the
 * hint), at a cost of at most 16 slabs looked at per refill, and in any
 * case once per as many refills as there are full slabs.  Producer/consumer
 * patterns get their blocks back within a refill or two; a heap with many
 * full slabs pays amortised O(1). */
static bool sweep_due(la_heap_t *heap) {
  if (!heap->nfull) return false;
  size_t n = ++heap->refills_since_sweep;
  if (n >= heap->nfull) return true;
  return n * 16 >= heap->nfull && atomic_load_explicit(&heap->xfull_hint, memory_order_relaxed);
}

/* ---- sharing what other threads freed ------------------------------------
 * A block freed by another thread goes back to its slab, and only the
 * slab's owner hands it out again.  Where threads pass objects around,
 * each heap's slabs fill up with such blocks while the heap is busy with
 * its current slab, and every heap grows to its own high-water mark:
 * xthread-8t held 50-73 MB of uncollected remote frees in a 150-170 MB
 * peak, mostly in queued slabs behind the current one.  So when the heap
 * moves on to another slab of a class, it looks at the back of the
 * class's queue, and a slab there that other threads' frees have left at
 * least a quarter free goes to the arena as if its thread had exited
 * (abandoned), where the next heap that needs a slab of the class adopts
 * it before carving new memory (arena.c) - the freeing threads' pool, in
 * effect, as tcmalloc's central lists are, at one arena lock per slab
 * rather than per block.  A slab freed into by its owner alone stays: a
 * single thread's sparse slabs are trimmed and lent in place (below). */
#define SHARE_LOOK 8   /* slabs looked at, from the back of the queue */

static void share_remote_freed(la_heap_t *heap, unsigned cls) {
  /* With one heap there is nobody to share with, and the look costs up to
   * eight slab descriptors' lines, each time a slab is made current
   * (aligned's single thread: 246 k looks for 37 k slow paths). */
  if (LA_SHARED_LOAD(nheaps) < 2) return;
  la_slab_list_t *q = &heap->queues[cls];
  la_slab_t *prev;
  unsigned looked = 0;
  for (la_slab_t *s = q->tail; s != q->head && looked < SHARE_LOOK; s = prev, looked++) {
    prev = s->prev;
    uint32_t remote = la_slab_remote_count(s);   /* one read of the word remote frees write */
    if (s->kind != LA_SLAB_SMALL || !remote || (s->used - remote) * 4 > s->capacity * 3) continue;
    la_slab_list_remove(q, s);
    la_arena_abandon_slab(la_segment_of(s)->arena, s);
  }
}

static void release_slab(la_heap_t *heap, la_slab_t *slab) {
  la_slab_list_remove(&heap->queues[slab->cls], slab);
  set_bin(heap, slab->cls);
  LA_SHARED_STORE(slab->fast_owner, NULL);
  la_arena_put_slab(la_segment_of(slab)->arena, slab);
}

/* Bring back full slabs that other threads have freed into. */
static void sweep_full(la_heap_t *heap) {
  heap->refills_since_sweep = 0;
  atomic_store_explicit(&heap->xfull_hint, false, memory_order_relaxed);
  la_slab_t *next;
  for (la_slab_t *s = heap->full.head; s; s = next) {
    next = s->next;
    if (!la_slab_has_remote(s)) continue;
    leave_full(heap, s);
    la_slab_collect_remote(s);
    if (s->used == 0 && heap->queues[s->cls].head != s) release_slab(heap, s);
  }
}

/* ---- the heap's caches and the purger ------------------------------------
 * A heap caches memory nobody uses: large blocks it freed (below) and the
 * emptied current slab of each class of big blocks (parked, below).  A
 * thread that goes idle would keep them forever, so the purger takes them
 * back once they have not been touched for a quarter of the dirty decay
 * time; they join the arena's dirty units, whose decay curve gives them
 * back within the decay time after that (mostly within its first half).  The
 * owner touches these caches without a lock, so taking them is an
 * asymmetric Dekker handshake:
 *
 *   owner:  cache_busy = 1; compiler barrier; if (cache_reclaim) lock;
 *           ...the operation...; [unlock;] cache_busy = 0 (release)
 *   purger: under reclaim_lock: cache_reclaim = 1; membarrier();
 *           if (!cache_busy) take everything; cache_reclaim = 0
 *
 * membarrier(PRIVATE_EXPEDITED) makes every running thread execute a full
 * barrier, which orders the owner's store of cache_busy before its load of
 * cache_reclaim as a fence on its side would, without the fence's cost on
 * every operation: either the purger sees the owner busy and leaves the
 * heap alone, or the owner sees cache_reclaim and waits for the purger on
 * reclaim_lock.  Without membarrier (old kernel, seccomp) nothing is taken
 * and the bound is the caches' size (LA_LARGE_CACHE_BYTES, one slab per
 * class).  Under ThreadSanitizer, which does not know membarrier, the
 * owner's barrier is a real fence. */

static inline void owner_fence(void) {
#if defined(__SANITIZE_THREAD__)
  atomic_thread_fence(memory_order_seq_cst);
#else
  atomic_signal_fence(memory_order_seq_cst);   /* the purger's membarrier is the CPU fence */
#endif
}

/* Start an operation on the heap's caches: false if the purger is at it,
 * and the caller must do it under reclaim_lock instead (cache_enter_locked;
 * a function of its own, so that the common case needs no stack frame). */
static inline bool cache_enter(la_heap_t *heap) {
  atomic_store_explicit(&heap->cache_busy, 1, memory_order_relaxed);
  owner_fence();
  return LA_LIKELY(!atomic_load_explicit(&heap->cache_reclaim, memory_order_acquire));
}

static inline void cache_leave(la_heap_t *heap) {
  atomic_store_explicit(&heap->cache_busy, 0, memory_order_release);
}

static void cache_enter_locked(void) { pthread_mutex_lock(&reclaim_lock); }

static void cache_leave_locked(la_heap_t *heap) {
  pthread_mutex_unlock(&reclaim_lock);
  atomic_store_explicit(&heap->cache_busy, 0, memory_order_release);
}

/* Both sides of cache_enter for the operations off the large-block path. */
static bool cache_enter_any(la_heap_t *heap) {
  if (cache_enter(heap)) return false;
  cache_enter_locked();
  return true;
}

static void cache_leave_any(la_heap_t *heap, bool locked) {
  if (locked) cache_leave_locked(heap);
  else cache_leave(heap);
}

/* The heap's caches went from empty to holding memory.  A purger about to
 * sleep for good raises la_purger_wants_caches, then (membarrier) looks at
 * every heap once more: either it sees this memory, or this load sees the
 * flag (the same handshake as above). */
static inline bool cache_filled(void) {
  owner_fence();
  return atomic_load_explicit(&la_purger_wants_caches, memory_order_relaxed);
}

/* ---- the cache of large blocks ------------------------------------------- */
/* A large block (a class whose slab holds one block) is arena-owned, so any
 * thread may keep it: the freeing thread's heap holds a few of the smaller
 * ones (up to LA_LARGE_CACHE_BYTES), and its next malloc of that class takes
 * one back without the arena lock.  A cached block counts as active, not as
 * allocated; the cache is emptied on thread exit, on flush and by the
 * purger when the thread leaves it untouched. */

static inline la_slab_t *large_take(la_heap_t *heap, unsigned cls) {
  la_slab_t *slab = heap->large_cache[cls];
  if (slab) {
    heap->large_cache[cls] = slab->next;
    heap->large_cached[cls]--;
    LA_OWNER_ADD(heap->large_cached_bytes, -slab->block_size);
    LA_OWNER_ADD(heap->large_hits[cls], 1);
  }
  return slab;
}

static inline void *large_hand_out(la_slab_t *slab) {
  if (!slab) return NULL;
  slab->next = NULL;
  LA_SHARED_STORE(slab->used, 1);
  return slab->start;
}

static LA_NOINLINE void *large_alloc_locked(la_heap_t *heap, unsigned cls) {
  cache_enter_locked();
  la_slab_t *slab = large_take(heap, cls);
  cache_leave_locked(heap);
  return large_hand_out(slab);
}

void *la_heap_large_alloc(la_heap_t *heap, unsigned cls) {
  if (LA_UNLIKELY(!cache_enter(heap))) return large_alloc_locked(heap, cls);
  la_slab_t *slab = large_take(heap, cls);
  cache_leave(heap);
  return large_hand_out(slab);
}

/* Cache a freed large block if it fits; true if it did. */
static inline bool large_put(la_heap_t *heap, la_slab_t *slab) {
  unsigned cls = slab->cls;
  if (heap->large_cached[cls] >= LA_LARGE_CACHE_PER_CLASS ||
      heap->large_cached_bytes + slab->block_size > LA_LARGE_CACHE_BYTES)
    return false;
  LA_SHARED_STORE(slab->used, 0);
  slab->zeroed = 0;
  slab->next = heap->large_cache[cls];
  heap->large_cache[cls] = slab;
  heap->large_cached[cls]++;
  LA_OWNER_ADD(heap->large_cached_bytes, slab->block_size);
  return true;
}

static LA_NOINLINE bool large_put_locked(la_heap_t *heap, la_slab_t *slab) {
  cache_enter_locked();
  bool fits = large_put(heap, slab);
  cache_leave_locked(heap);
  return fits;   /* the purger is running: no need to wake it */
}

static bool large_cache_put(la_heap_t *heap, la_slab_t *slab) {
  if (heap == &la_empty_heap || slab->block_size > LA_LARGE_CACHE_MAX_BLOCK) return false;
  if (LA_UNLIKELY(!cache_enter(heap))) return large_put_locked(heap, slab);
  bool was_empty = heap->large_cached_bytes == 0;
  bool fits = large_put(heap, slab);
  cache_leave(heap);
  if (LA_UNLIKELY(fits && was_empty && cache_filled())) la_purger_wake_for_caches();
  return fits;
}

/* ---- parked slabs ----------------------------------------------------------
 * A class's current slab stays with the heap when its last block is freed,
 * so that a thread allocating and freeing one object in a loop does not go
 * to the arena each time.  The malloc and free fast paths use it without
 * any flag the purger could check, so for classes of big blocks (64 KiB and
 * up: a slab's worth is much memory, and a malloc of that size costs
 * hundreds of instructions anyway) the emptied current slab is parked
 * instead: out of the fast path (the next malloc of the class takes the
 * slow path and takes it back) and into a slot the purger may empty.
 * Emptied current slabs of smaller classes stay: at most one per class,
 * and only the pages their blocks were carved on are resident. */

static void park_slab(la_heap_t *heap, la_slab_t *slab) {
  unsigned cls = slab->cls;
  la_slab_list_remove(&heap->queues[cls], slab);
  set_bin(heap, cls);
  LA_SHARED_STORE(slab->fast_owner, NULL);
  bool locked = cache_enter_any(heap);
  bool was_empty = !heap->nparked && !heap->large_cached_bytes;
  la_slab_t *old = heap->parked[cls];
  heap->parked[cls] = slab;
  if (!old) LA_SHARED_STORE(heap->nparked, heap->nparked + 1);
  LA_OWNER_ADD(heap->cache_ops, 1);
  cache_leave_any(heap, locked);
  if (old) la_arena_put_slab(la_segment_of(old)->arena, old);
  if (was_empty && cache_filled()) la_purger_wake_for_caches();
}

/* The parked slab of class `cls` made the current one again, or NULL. */
static la_slab_t *unpark_slab(la_heap_t *heap, unsigned cls) {
  if (!LA_SHARED_LOAD(heap->parked[cls])) return NULL;   /* the purger only ever empties it */
  bool locked = cache_enter_any(heap);
  la_slab_t *slab = heap->parked[cls];
  if (slab) {
    LA_SHARED_STORE(heap->parked[cls], NULL);
    LA_SHARED_STORE(heap->nparked, heap->nparked - 1);
    LA_OWNER_ADD(heap->cache_ops, 1);
  }
  cache_leave_any(heap, locked);
  if (!slab) return NULL;
  LA_SHARED_STORE(slab->fast_owner, fast_owner_for(heap, slab));
  slab->in_full = 0;
  la_slab_list_push_front(&heap->queues[cls], slab);
  set_bin(heap, cls);
  return slab;
}

/* Chain class c's cached large blocks onto *taken; their bytes (the
 * caller updates large_cached_bytes). */
static size_t take_large_class(la_heap_t *heap, unsigned c, la_slab_t **taken) {
  size_t bytes = 0;
  la_slab_t *s;
  while ((s = heap->large_cache[c])) {
    heap->large_cache[c] = s->next;
    bytes += s->block_size;
    s->next = *taken;
    *taken = s;
  }
  heap->large_cached[c] = 0;
  return bytes;
}

/* Chain class c's parked slab onto *taken; true if there was one (the
 * caller updates nparked). */
static bool take_parked_class(la_heap_t *heap, unsigned c, la_slab_t **taken) {
  la_slab_t *s = heap->parked[c];
  if (!s) return false;
  LA_SHARED_STORE(heap->parked[c], NULL);
  s->next = *taken;
  *taken = s;
  return true;
}

/* Take every cached large block and parked slab out of the heap, chained
 * through next; the caller runs the handshake (or is the owner). */
static la_slab_t *caches_take(la_heap_t *heap) {
  la_slab_t *taken = NULL;
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    take_large_class(heap, c, &taken);
    take_parked_class(heap, c, &taken);
  }
  LA_SHARED_STORE(heap->large_cached_bytes, 0);
  LA_SHARED_STORE(heap->nparked, 0);
  return taken;
}

/* Give what caches_take took to the arenas. */
static void caches_release(la_slab_t *list) {
  while (list) {
    la_slab_t *next = list->next;
    list->next = NULL;
    if (list->kind == LA_SLAB_LARGE) la_arena_free_large(list);
    else la_arena_put_slab(la_segment_of(list)->arena, list);
    list = next;
  }
}

/* Empty the heap's caches (its owner: flush, thread exit). */
static void caches_flush(la_heap_t *heap) {
  bool locked = cache_enter_any(heap);
  la_slab_t *taken = caches_take(heap);
  cache_leave_any(heap, locked);
  caches_release(taken);
}

/* ---- idle heaps: the purger's side ------------------------------------------ */

static void abandon_exited(uint64_t now, uint64_t *due);

static uint64_t earliest(uint64_t a, uint64_t b) {
  if (!a) return b;
  if (!b) return a;
  return a < b ? a : b;
}

/* membarrier is registered once per process, by the first purger pass. */
static atomic_int membarrier_state;   /* 0 unknown, 1 usable, -1 not */

static bool membarrier_ready(void) {
  int st = atomic_load_explicit(&membarrier_state, memory_order_relaxed);
  if (!st) {
    st = la_os_membarrier_register() ? 1 : -1;
    atomic_store_explicit(&membarrier_state, st, memory_order_relaxed);
  }
  return st > 0;
}

static bool cache_holds(const la_heap_t *h) {
  return LA_SHARED_LOAD(h->large_cached_bytes) || LA_SHARED_LOAD(h->nparked);
}

/* A count that every operation on the heap's caches changes, so that the
 * large-block path need not count: any take adds a hit; a run of puts
 * alone adds bytes (the caller compares those too); parks count.  Read
 * racily: a stale value only postpones a reclaim. */
static uint64_t cache_activity(const la_heap_t *h) {
  uint64_t n = LA_SHARED_LOAD(h->cache_ops);
  for (unsigned c = 0; c < LA_NCLASSES; c++) n += LA_SHARED_LOAD(h->large_hits[c]);
  return n;
}

/* Has the heap's cache held memory untouched for `idle_ns`?  If not, when
 * will it have (added to *due).  A heap whose cache was used since the
 * last look keeps a deadline even if empty now: a thread that allocates
 * and frees a large block in a loop has it cached half the time, and
 * must not wake an idle purger at every free.  heaps_lock held. */
static bool cache_idle(la_heap_t *h, uint64_t now, uint64_t idle_ns, uint64_t *due) {
  size_t bytes = LA_SHARED_LOAD(h->large_cached_bytes);
  bool holds = bytes || LA_SHARED_LOAD(h->nparked);
  uint64_t ops = cache_activity(h);
  if (ops != h->reclaim_seen || bytes != h->reclaim_seen_bytes) {
    h->reclaim_seen = ops;
    h->reclaim_seen_bytes = bytes;
    h->reclaim_since = now;
  } else if (!holds) {
    return false;
  }
  if (holds && now - h->reclaim_since >= idle_ns) return true;
  *due = earliest(*due, h->reclaim_since + idle_ns);
  return false;
}

/* Take the caches of the heaps marked for reclaim whose owner is not in an
 * operation on them; clears the marks.  heaps_lock and reclaim_lock held. */
static la_slab_t *take_marked(void) {
  bool fenced = la_os_membarrier();
  atomic_thread_fence(memory_order_seq_cst);
  la_slab_t *taken = NULL;
  for (la_heap_t *h = all_heaps; h; h = h->next_all) {
    if (!atomic_load_explicit(&h->cache_reclaim, memory_order_relaxed)) continue;
    if (fenced && !atomic_load_explicit(&h->cache_busy, memory_order_acquire)) {
      la_slab_t *list = caches_take(h);
      while (list) {
        la_slab_t *next = list->next;
        list->next = taken;
        taken = list;
        list = next;
      }
    }
    atomic_store_explicit(&h->cache_reclaim, false, memory_order_release);
  }
  return taken;
}

/* The purger has nothing to do and is about to sleep until woken: from
 * now on a heap that starts caching memory wakes it (cache_filled), and a
 * last look catches one that did so before it could see the flag.
 * Returns a deadline if some heap holds memory after all. */
uint64_t la_heaps_before_sleep(uint64_t now) {
  ssize_t ms = la_opt.dirty_decay_ms;
  if (ms < 0 || !membarrier_ready()) return 0;
  atomic_store(&la_purger_wants_caches, true);
  la_os_membarrier();
  atomic_thread_fence(memory_order_seq_cst);
  bool any = false;
  pthread_mutex_lock(&heaps_lock);
  for (la_heap_t *h = all_heaps; h && !any; h = h->next_all) any = cache_holds(h);
  pthread_mutex_unlock(&heaps_lock);
  if (!any) return 0;
  atomic_store(&la_purger_wants_caches, false);
  return now + (uint64_t)ms * 250000u;
}

/* The purger's pass over the heaps: take back the caches that have been
 * idle for a quarter of the dirty decay time.  Returns when the next one will be
 * (0: none pending). */
uint64_t la_heaps_decay(uint64_t now) {
  uint64_t due = 0;
  abandon_exited(now, &due);
  ssize_t ms = la_opt.dirty_decay_ms;
  if (ms < 0 || !membarrier_ready()) return due;
  uint64_t idle_ns = (uint64_t)ms * 250000u;   /* a quarter of the decay time, in ns */
  bool any = false;
  pthread_mutex_lock(&heaps_lock);
  pthread_mutex_lock(&reclaim_lock);
  for (la_heap_t *h = all_heaps; h; h = h->next_all)
    if (cache_idle(h, now, idle_ns, &due)) {
      atomic_store_explicit(&h->cache_reclaim, true, memory_order_relaxed);
      any = true;
    }
  la_slab_t *taken = any ? take_marked() : NULL;
  pthread_mutex_unlock(&reclaim_lock);
  pthread_mutex_unlock(&heaps_lock);
  caches_release(taken);
  return due;
}

/* ---- creating and retiring heaps ----------------------------------------- */

/* Set once heap_thread_exit has run in this thread (see there). */
static __thread bool thread_exiting;

/* A heap for the calling thread; `exiting_tid` is its id if it is exiting
 * (heap_thread_exit), else 0. */
static la_heap_t *heap_create(int exiting_tid) {
  pthread_mutex_lock(&heaps_lock);
  la_heap_t *heap = spare_heaps;
  if (heap) spare_heaps = heap->next_all;
  pthread_mutex_unlock(&heaps_lock);
  if (!heap) heap = la_meta_alloc(sizeof *heap);
  if (!heap) return NULL;
  clear_bins(heap);
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    heap->queues[c].head = heap->queues[c].tail = NULL;
    heap->large_cache[c] = NULL;
    heap->large_cached[c] = 0;
    heap->parked[c] = NULL;
  }
  LA_SHARED_STORE(heap->large_cached_bytes, 0);
  LA_SHARED_STORE(heap->nparked, 0);
  atomic_store(&heap->cache_busy, 0);
  atomic_store(&heap->cache_reclaim, false);
  heap->full.head = heap->full.tail = NULL;
  for (unsigned b = 0; b < LA_LEND_BINS; b++) heap->lenders[b].head = heap->lenders[b].tail = NULL;
  heap->nlenders = 0;
  heap->nfull = 0;
  heap->refills_since_sweep = 0;
  heap->trim_cls = 0;
  heap->trim_pass = 1;
  atomic_store(&heap->xfull_hint, false);
  heap->arena = la_arena_for_thread();
  pthread_mutex_lock(&heaps_lock);
  heap->reclaim_seen = UINT64_MAX;   /* the purger's first look starts the clock */
  heap->exiting_tid = exiting_tid;
  heap->prev_all = NULL;
  heap->next_all = all_heaps;
  if (all_heaps) all_heaps->prev_all = heap;
  all_heaps = heap;
  LA_SHARED_STORE(nheaps, nheaps + 1);
  pthread_mutex_unlock(&heaps_lock);
  return heap;
}

/* More than one thread has a heap: the process's memory is in use on
 * several CPUs, where each madvise interrupts the others. */
bool la_heaps_several(void) { return LA_SHARED_LOAD(nheaps) >= 2; }

/* The calling thread's heap, created on first use; NULL if out of memory. */
la_heap_t *la_heap_for_thread(void) {
  la_heap_t *heap = la_tls_heap;
  if (LA_LIKELY(heap != &la_empty_heap)) return heap;
  la_ensure_init();
  heap = heap_create(LA_UNLIKELY(thread_exiting) ? la_os_gettid() : 0);
  if (!heap) return NULL;
  la_tls_heap = heap;
  pthread_setspecific(heap_key, heap);
  if (LA_UNLIKELY(thread_exiting)) la_purger_wake_for_caches();   /* to abandon it if we cannot */
  return heap;
}

/* Hand a slab to the arena at thread exit: empty ones as free units, the
 * others as abandoned slabs that another heap may adopt. */
static void detach_slab(la_slab_t *slab) {
  LA_SHARED_STORE(slab->fast_owner, NULL);
  la_slab_collect_remote(slab);
  la_arena_t *arena = la_segment_of(slab)->arena;
  /* An empty slab goes back as it is: its resident units are dirty,
   * counted, and the next slab reuses them or the decay purges them in
   * batches.  Purged here, each exit's madvise interrupted every CPU the
   * process ran on (TLB shootdown), and the next thread faulted the pages
   * in again: threadchurn 0.095 -> 0.081 s, peak 10.5 -> 10.9 MiB. */
  if (slab->used == 0) {
    la_arena_put_slab(arena, slab);
    return;
  }
  /* A slab left with blocks in use keeps its units: the pages it did not
   * carve, a previous slab's, would be resident and counted nowhere. */
  la_slab_purge_stale(slab);
  la_arena_abandon_slab(arena, slab);
}

static void heap_abandon(la_heap_t *heap) {
  caches_flush(heap);
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    la_slab_t *s;
    while ((s = heap->queues[c].head)) {
      la_slab_list_remove(&heap->queues[c], s);
      detach_slab(s);
    }
  }
  clear_bins(heap);
  la_slab_t *s;
  while ((s = heap->full.head)) {
    la_slab_list_remove(&heap->full, s);
    detach_slab(s);
  }
  heap->nfull = 0;
  for (unsigned b = 0; b < LA_LEND_BINS; b++)
    while ((s = heap->lenders[b].head)) {
      la_slab_list_remove(&heap->lenders[b], s);
      la_lend_collect(s);
      la_lend_unserve(s);
      la_arena_t *arena = la_segment_of(s)->arena;
      if (s->used == 0) la_arena_put_slab(arena, s);
      else la_arena_abandon_slab(arena, s);
    }
  heap->nlenders = 0;
  pthread_mutex_lock(&heaps_lock);
  if (heap->prev_all) heap->prev_all->next_all = heap->next_all;
  else all_heaps = heap->next_all;
  if (heap->next_all) heap->next_all->prev_all = heap->prev_all;
  heap->next_all = spare_heaps;
  spare_heaps = heap;
  LA_SHARED_STORE(nheaps, nheaps - 1);
  pthread_mutex_unlock(&heaps_lock);
}

/* pthread key destructor.  Later destructors may still call malloc: that
 * creates a fresh heap, registered again, and glibc calls us again - but
 * for PTHREAD_DESTRUCTOR_ITERATIONS rounds only, so a heap created by a
 * destructor that runs after ours in the last round would never be
 * abandoned.  A heap created after this ran carries its thread's id, and
 * the purger abandons it once that thread is gone (abandon_exited). */
static void heap_thread_exit(void *arg) {
  thread_exiting = true;
  la_heap_t *heap = arg;
  if (!heap || heap == &la_empty_heap) return;
  la_tls_heap = &la_empty_heap;
  heap_abandon(heap);
}

#define EXITED_RETRY_NS 10000000ull   /* 10 ms: the thread is finishing its exit */

/* A heap created by a late destructor whose thread has ended, claimed (its
 * exiting_tid set to -1) for the caller to abandon; NULL if none.  Adds to
 * *due when such a thread is still running. */
static la_heap_t *claim_exited(uint64_t now, uint64_t *due) {
  la_heap_t *found = NULL;
  pthread_mutex_lock(&heaps_lock);
  for (la_heap_t *h = all_heaps; h && !found; h = h->next_all) {
    if (h->exiting_tid <= 0) continue;
    if (la_os_thread_alive(h->exiting_tid)) *due = earliest(*due, now + EXITED_RETRY_NS);
    else {
      h->exiting_tid = -1;
      found = h;
    }
  }
  pthread_mutex_unlock(&heaps_lock);
  return found;
}

/* Abandon the heaps of late destructors whose threads have ended: nothing
 * of theirs runs any more, so another thread may walk them. */
static void abandon_exited(uint64_t now, uint64_t *due) {
  la_heap_t *h;
  while ((h = claim_exited(now, due))) heap_abandon(h);
}

/* ---- trimming sparse slabs -------------------------------------------------
 * Before the heap takes a new slab from the arena, it gives back the free
 * pages of up to TRIM_SLABS of its sparse slabs (la_slab_trim): a program
 * whose objects of some sizes mostly died, and that now allocates other
 * sizes, then grows by what it really holds, not by a slab per survivor's
 * neighbourhood.  Only idle slabs are trimmed: a slab in use would take its
 * pages back at once, a page fault each.  Idle is a slab no block of which
 * was allocated or freed (as seen by the passes that looked at it) for
 * TRIM_IDLE_MS, or while the heap took TRIM_IDLE_TAKES slabs.  Time alone
 * is not enough: on a faster machine `fragment 256` took the slabs of its
 * new sizes in under 100 ms after thinning out the old ones, and peaked at
 * 565 MiB instead of 538.  Slabs taken alone are not either, nor a small
 * number of them: a class can live off its free lists for long without
 * taking a slab or carving while others take them in bursts, and a program
 * that fills and empties its slabs every few milliseconds would fault the
 * pages given back in again each time (churn takes a few dozen slabs a
 * round, and its faults did not move).  A slab qualifies with a
 * quarter of its blocks free, and is trimmed again only once another
 * eighth has been freed.  The heap walks its classes in turn, TRIM_CLASSES
 * classes and TRIM_LOOK slabs at most per call; each slab looked at moves
 * to the back of its queue and is stamped with the pass, so meeting a
 * stamped slab means the class is done for this pass.  Skipped under
 * thp:always, where splitting huge pages would cost more than the pages
 * are worth. */
#define TRIM_SLABS 4
#define TRIM_LOOK 32
#define TRIM_CLASSES 4
#define TRIM_IDLE_MS 100
#define TRIM_IDLE_TAKES 256

static bool worth_trimming(const la_slab_t *s) {
  uint32_t free_blocks = s->reserved - s->used;
  return free_blocks * 4 >= s->capacity && free_blocks >= s->trim_mark + s->capacity / 8 && la_slab_trimmable(s);
}

/* A number that every malloc and every free of the slab's blocks changes
 * (allocations = used + nfreed). */
static uint32_t activity(const la_slab_t *s) { return (uint32_t)(s->used + 2 * s->nfreed); }

/* No malloc or free of the slab since the last look (the trimmer's or
 * release_idle_classes'); stamps it with the time and the heap's slabs
 * taken if there was one.  `now_ms` wraps after 49 days: only differences
 * are used. */
static bool unchanged_since_look(la_heap_t *heap, la_slab_t *s, uint32_t now_ms) {
  uint32_t seen = activity(s);
  if (seen == s->trim_seen) return true;
  s->trim_seen = seen;
  s->trim_since = now_ms;
  s->trim_since_takes = heap->slabs_taken;
  return false;
}

/* ---- lenders ----------------------------------------------------------------
 * A sparse slab that trimming finds idle, of blocks of 64 to 512 bytes, at
 * most an eighth of them in use, becomes a lender (lend.c): its free slots
 * serve blocks of any class, which the heap asks for before carving or
 * taking new memory for a class.  The heap keeps its lenders in bins by
 * the largest block their longest free run surely holds, eight bins per
 * doubling, and an ask goes up the bins from the block's size, LEND_LOOK
 * lenders at most per bin: every lender above the first bin holds the
 * block, but one serving its own class, which may have cut its runs since.
 * phasechange (64-128 B blocks, 90% freed at random, then 1-4 KiB blocks)
 * and fragment had every page of their thinned slabs pinned by a survivor;
 * lent, those pages hold the next phase's blocks.  (With one bin per
 * doubling by the run's own length, an ask looked at five lenders on
 * average before one held its block, each a few cache misses: the
 * descriptor, the bitmaps, the neighbours of the move to the tail.) */
#define LEND_LOOK 8

static bool worth_lending(const la_slab_t *s) {
  return la_opt.lend && !free_mark && s->kind == LA_SLAB_SMALL && la_lend_class_ok(s->cls) &&
         !LA_SHARED_LOAD(s->prof_samples) && s->used * 8 <= s->capacity;
}

static void release_lender(la_heap_t *heap, la_slab_t *s) {
  if (heap->bins[s->cls] == s) set_bin(heap, s->cls);   /* it was serving its class */
  la_slab_list_remove(&heap->lenders[s->lend_bin], s);
  heap->nlenders--;
  la_arena_put_slab(la_segment_of(s)->arena, s);
}

/* The bin of lenders that surely hold a block of `bytes` (la_lend_longest):
 * under 128 in the first, then LA_LEND_BIN_STEPS bins per doubling (128-143,
 * 144-159, ... 240-255, 256-287, ...), 64 KiB and more in the last. */
static unsigned lend_bin(size_t bytes) {
  if (bytes < 128) return 0;
  unsigned log2 = 63 - (unsigned)__builtin_clzll(bytes), steps = (unsigned)__builtin_ctz(LA_LEND_BIN_STEPS);
  size_t step = (bytes >> (log2 - steps)) & (LA_LEND_BIN_STEPS - 1);
  unsigned b = 1 + (log2 - 7) * LA_LEND_BIN_STEPS + (unsigned)step;
  return b < LA_LEND_BINS ? b : LA_LEND_BINS - 1;
}

/* Put lender `s` in the bin of what it surely holds (at its tail). */
static void lender_rebin(la_heap_t *heap, la_slab_t *s, bool listed) {
  unsigned b = lend_bin(la_lend_longest(s));
  if (listed) la_slab_list_remove(&heap->lenders[s->lend_bin], s);
  s->lend_bin = (uint8_t)b;
  la_slab_list_push(&heap->lenders[b], s);
}

/* Make the queued slab `s` of the heap a lender (or give it back, if other
 * threads' frees emptied it); true if it left its queue. */
static bool lend_slab(la_heap_t *heap, la_slab_t *s) {
  la_slab_collect_remote(s);
  if (s->used == 0) {
    release_slab(heap, s);
    return true;
  }
  if (!la_lend_start(s)) return false;   /* its free pages given back, as trimming would */
  la_slab_list_remove(&heap->queues[s->cls], s);
  lender_rebin(heap, s, false);
  heap->nlenders++;
  return true;
}

/* A lender of the asking class that lends to no other made the class's
 * current slab again (lend.c), and a block from it. */
static void *unlend(la_heap_t *heap, la_slab_t *s) {
  la_slab_list_remove(&heap->lenders[s->lend_bin], s);
  heap->nlenders--;
  la_lend_stop(s);
  s->in_full = 0;
  LA_SHARED_STORE(s->fast_owner, fast_owner_for(heap, s));
  la_slab_list_push_front(&heap->queues[s->cls], s);
  set_bin(heap, s->cls);
  return la_slab_refill_free(s) ? la_slab_pop(s) : NULL;
}

/* Other threads' frees into lenders are taken when the owner lends from
 * one or frees into it; a lender in a bin no ask reaches would keep them
 * (and stay when they emptied it).  So each time the heap would take a
 * new slab it also looks at the heads of LEND_SWEEP bins that have one,
 * in turn: their remote frees taken, empty ones given back, the others to
 * their bins' tails. */
#define LEND_SWEEP 2

static void sweep_lenders(la_heap_t *heap) {
  for (unsigned n = 0, looked = 0; n < LEND_SWEEP && looked < LA_LEND_BINS; looked++) {
    unsigned b = heap->lend_sweep++ % LA_LEND_BINS;
    la_slab_t *s = heap->lenders[b].head;
    if (!s) continue;
    n++;
    la_lend_collect(s);
    if (s->used == 0) release_lender(heap, s);
    else lender_rebin(heap, s, true);
  }
}

/* A block of `size` bytes, class `cls`, from one of the heap's lenders,
 * or NULL: the bins from the one of the block's size up (there the first lender
 * whose longest run holds it; in the first bin maybe none does),
 * LEND_LOOK lenders at most per bin, each moved to its bin's tail.
 * Lenders of a class that may not lend to `cls` (lend.c) are passed over
 * at the cost of a load.  A lender of `cls` itself becomes a plain slab
 * again if it lends to no other class, else serves the class from a free
 * list the fast path pops. */
static void *lend_from(la_heap_t *heap, unsigned cls, size_t size) {
  uint64_t may = la_lend_classes_for(cls);
  if (!may) return NULL;
  for (unsigned b = lend_bin(size); b < LA_LEND_BINS; b++) {
    la_slab_t *s = heap->lenders[b].head;
    for (unsigned n = 0; s && n < LEND_LOOK; n++) {
      la_slab_t *next = s->next;
      if (!(may >> s->cls & 1)) {
        s = next;
        continue;
      }
      la_lend_collect(s);
      if (s->used == 0) {
        release_lender(heap, s);
      } else if (s->cls == cls && la_lend_can_stop(s)) {
        return unlend(heap, s);
      } else {
        bool own = s->cls == cls;
        void *p = own ? la_lend_serve(s) : la_lend_take(s, cls, size);
        lender_rebin(heap, s, true);
        if (p) {
          if (own) point_bin(heap, cls, s);   /* its next blocks by the fast path (no lenders while checking frees) */
          else LA_OWNER_ADD(heap->lent_nmalloc[cls], 1);   /* the slab counts its own class */
          return p;
        }
      }
      s = next;
    }
  }
  return NULL;
}

/* Trim the idle slab, or make it a lender, if worth it; true if it left
 * its queue.  Counts it in *done if either happened. */
static bool trim_one(la_heap_t *heap, la_slab_t *s, uint32_t now_ms, unsigned *done) {
  if (!unchanged_since_look(heap, s, now_ms)) return false;
  bool idle = now_ms - s->trim_since >= TRIM_IDLE_MS || heap->slabs_taken - s->trim_since_takes >= TRIM_IDLE_TAKES;
  if (!idle) return false;
  if (worth_lending(s) && lend_slab(heap, s)) {
    (*done)++;
    return true;
  }
  if (la_opt.thp != LA_THP_ALWAYS && worth_trimming(s) && la_slab_trim(s) > 0) (*done)++;
  return false;
}

static void next_trim_class(la_heap_t *heap) {
  if (++heap->trim_cls == LA_NCLASSES) {
    heap->trim_cls = 0;
    heap->trim_pass++;
  }
}

static void trim_sparse_slabs(la_heap_t *heap, uint32_t now_ms) {
  if (la_opt.thp == LA_THP_ALWAYS && !la_opt.lend) return;
  unsigned trimmed = 0, looked = 0;
  for (unsigned n = 0; n < TRIM_CLASSES && looked < TRIM_LOOK && trimmed < TRIM_SLABS; n++) {
    la_slab_list_t *q = &heap->queues[heap->trim_cls];
    la_slab_t *s = q->head;
    if (s) s = s->next;   /* the current slab is being allocated from */
    while (s && s->trim_pass != heap->trim_pass && looked < TRIM_LOOK && trimmed < TRIM_SLABS) {
      la_slab_t *next = s->next;
      looked++;
      s->trim_pass = heap->trim_pass;
      if (!trim_one(heap, s, now_ms, &trimmed)) {
        la_slab_list_remove(q, s);
        la_slab_list_push(q, s);
      }
      s = next;
    }
    if (!s || s->trim_pass == heap->trim_pass) next_trim_class(heap);
  }
}

/* Near memory_limit (limit.c) and at malloc_trim: every sparse slab of
 * the calling thread's heap gives back its free pages at once, idle or
 * not - faulting some of them in again later costs less than an OOM kill,
 * and a program that trims asked for it.  Other threads' slabs
 * are theirs alone (their free lists are owner-only): they trim their own
 * before they take a slab, and the purger takes idle heaps' caches.  The
 * current slab of each class is left (it is being allocated from).
 * Bytes given back. */
size_t la_heap_trim_sparse_now(void) {
  la_heap_t *heap = la_tls_heap;
  if (!heap || heap == &la_empty_heap || la_opt.thp == LA_THP_ALWAYS) return 0;
  size_t bytes = 0;
  for (unsigned c = 0; c < LA_NCLASSES; c++)
    for (la_slab_t *s = heap->queues[c].head ? heap->queues[c].head->next : NULL; s; s = s->next)
      if (worth_trimming(s)) bytes += la_slab_trim(s);
  return bytes;
}

/* ---- what classes no longer asked for hold --------------------------------
 * A class's current slab stays when its last block is freed
 * (la_heap_retire_slab, below), and so do the pages it carved: only that
 * class can use them again.  A program whose sizes move on - one phase's
 * objects all freed, the next phase's of other sizes - would keep an
 * emptied slab for every class it no longer asks for (~6 MiB of manysize's
 * 60).  So before the heap takes a new slab from its arena, it gives back
 * each current slab that is empty, saw no malloc or free since the last
 * such look (the trimmer's activity stamp, above) and carved at least a
 * quarter of its blocks: its units go back to the arena dirty, and the slab
 * about to be taken prefers dirty units.  A class in use, even by one
 * object allocated and freed in a loop, changes its stamp between looks
 * and keeps its slab.  A slab that carved only a few blocks stays: it
 * holds a few pages, and giving it back would only send the class's next
 * blocks to other pages when it is asked for again (sqlite3's shell: 33.2
 * MiB peak instead of 32.0).  The look reads each class's queue head and
 * the `used` of those it finds: +0.2% of `aligned`'s instructions, whose
 * slabs come and go. */

/* The same for the heap's caches: the parked slab of a class whose
 * activity did not change (a class in use unparks and parks it again),
 * and the cached large blocks of a class none of which was taken, while
 * the heap took IDLE_CACHE_TAKES slabs (counted from a look that found
 * the class's cache empty, or every cache, or saw it taken from).  They
 * wait longer than the current slabs: a class whose cached blocks go back
 * too soon comes back to other units and touches their pages as well
 * (grow, whose arrays grow through the same large classes every round:
 * 130.3 MiB peak at the first idle look, 127.0 after 64 slabs, 124.0 - as
 * without - after 128).  manysize 54.1 -> 49.8 MiB, python3 78.3 -> 77.4;
 * sqlite3 32.1 -> 32.6, its parked slabs of 80-160 KiB blocks coming back
 * to other units.  Under the caches' handshake with the purger. */
#define IDLE_CACHE_TAKES 128

static la_slab_t *take_idle_caches(la_heap_t *heap, unsigned cls, uint32_t now_ms) {
  la_slab_t *taken = NULL;
  bool locked = cache_enter_any(heap);
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    la_slab_t *s = heap->parked[c];
    if (s && c != cls && unchanged_since_look(heap, s, now_ms) &&
        heap->slabs_taken - s->trim_since_takes >= IDLE_CACHE_TAKES && take_parked_class(heap, c, &taken))
      LA_SHARED_STORE(heap->nparked, heap->nparked - 1);
    uint32_t hits = (uint32_t)heap->large_hits[c];
    if (hits != heap->large_seen[c] || !heap->large_cache[c]) {   /* idle from this look on, at most */
      heap->large_seen[c] = hits;
      heap->large_seen_takes[c] = heap->slabs_taken;
      continue;
    }
    uint32_t since = heap->large_seen_takes[c];
    if ((int32_t)(heap->caches_empty_takes - since) > 0) since = heap->caches_empty_takes;
    if (c == cls || heap->slabs_taken - since < IDLE_CACHE_TAKES) continue;
    LA_OWNER_ADD(heap->large_cached_bytes, -take_large_class(heap, c, &taken));
  }
  if (taken) LA_OWNER_ADD(heap->cache_ops, 1);
  cache_leave_any(heap, locked);
  return taken;
}

static void release_idle_classes(la_heap_t *heap, unsigned cls, uint32_t now_ms) {
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    la_slab_t *s = heap->queues[c].head;
    if (s && c != cls && s->used == 0 && s->reserved * 4 >= s->capacity && unchanged_since_look(heap, s, now_ms))
      release_slab(heap, s);
  }
  if (LA_SHARED_LOAD(heap->nparked) || LA_SHARED_LOAD(heap->large_cached_bytes))
    caches_release(take_idle_caches(heap, cls, now_ms));
  else
    heap->caches_empty_takes = heap->slabs_taken;
}

/* ---- slow paths ---------------------------------------------------------- */

/* A slab of class `cls` with a non-empty free list, made the current one;
 * or, if `lend_size` is not 0, maybe a block of that size from a lender
 * made just before the heap would take a new slab (*lent set, NULL
 * returned). */
static la_slab_t *find_slab(la_heap_t *heap, unsigned cls, size_t lend_size, void **lent) {
  la_slab_list_t *q = &heap->queues[cls];
  la_slab_t *next;
  for (la_slab_t *s = q->head; s; s = next) {
    next = s->next;
    if (la_slab_refill_free(s)) {
      if (s != q->head) {
        la_slab_list_remove(q, s);
        la_slab_list_push_front(q, s);
      }
      set_bin(heap, cls);
      share_remote_freed(heap, cls);
      return s;
    }
    move_to_full(heap, s);
  }
  set_bin(heap, cls);
  la_slab_t *parked = unpark_slab(heap, cls);
  if (parked) return parked;
  if (sweep_due(heap)) {
    sweep_full(heap);
    la_slab_t *s = q->head;
    if (s && la_slab_refill_free(s)) return s;
  }
  uint32_t now_ms = (uint32_t)(la_now_coarse_ns() / 1000000);
  trim_sparse_slabs(heap, now_ms);
  release_idle_classes(heap, cls, now_ms);
  if (heap->nlenders) sweep_lenders(heap);
  if (lend_size && heap->nlenders && (*lent = lend_from(heap, cls, lend_size))) return NULL;
  la_slab_t *s = la_arena_get_slab(heap->arena, cls, heap);
  if (!s) {
    sweep_full(heap);   /* last resort before failing */
    s = q->head;
    return s && la_slab_refill_free(s) ? s : NULL;
  }
  heap->slabs_taken++;
  LA_SHARED_STORE(s->fast_owner, fast_owner_for(heap, s));
  s->in_full = 0;
  la_slab_list_push_front(q, s);
  set_bin(heap, cls);
  la_slab_refill_free(s);
  return s;
}

/* A block of small class `cls` from the calling thread's heap: from the
 * current slab, or from the one find_slab makes current; if `lend_size`
 * (the request) is not 0, or from a lender, before the heap carves or
 * takes new memory (a block of a lender is aligned to 16 bytes only, so
 * aligned requests pass 0). */
void *la_heap_alloc_class(unsigned cls, size_t lend_size) {
  la_poll_background();   /* threads waiting for an allocation (init.c) */
  la_heap_t *heap = la_heap_for_thread();
  la_slab_t *slab = heap ? heap->queues[cls].head : NULL;
  if (heap && (!slab || !slab->free)) {
    void *lent = NULL;
    if (lend_size && heap->nlenders && (lent = lend_from(heap, cls, lend_size))) return lent;
    slab = find_slab(heap, cls, lend_size, &lent);
    if (lent) return lent;
  }
  if (!slab) {
    errno = ENOMEM;
    return NULL;
  }
  la_block_t *block = la_slab_pop(slab);
  if (LA_UNLIKELY(free_mark)) unmark(slab, block);
  return block;
}

/* The owner freed the last block in use of a slab.  The current slab of a
 * class is kept, so a thread that allocates and frees one object in a loop
 * does not go to the arena each time (parked, for big blocks); any other
 * empty slab goes back. */
void la_heap_retire_slab(la_heap_t *heap, la_slab_t *slab) {
  if (heap->queues[slab->cls].head != slab) release_slab(heap, slab);
  else if (slab->block_size >= LA_PARK_MIN_BLOCK && heap != &la_empty_heap) park_slab(heap, slab);
}

/* Whom a remote free into `slab` must hint (la_slab_free_remote): a slab
 * on its owner's full list tells the owner to sweep, after the push (a
 * sweep that sees the hint finds the block), with the owner read before
 * it (once pushed, the slab may be emptied and reused).  The owner's heap
 * structure is never unmapped, so even a stale pointer is safe to write a
 * hint to. */
static inline la_heap_t *remote_hint(la_slab_t *slab) {
  return atomic_load_explicit(&slab->notify, memory_order_relaxed) ? atomic_load_explicit(&slab->owner, memory_order_relaxed)
                                                                   : NULL;
}

/* A small block's free once its kind is known (and the profiler has looked
 * for a sample there): by the owner (into a full slab, a slab holding a
 * sample, or with free checks on) or by another thread. */
static inline __attribute__((always_inline)) void free_small(la_heap_t *heap, la_slab_t *slab, la_block_t *block,
                                                             bool owner) {
  const char *wrong = LA_UNLIKELY(free_mark) ? check_small_free(slab, block, owner) : NULL;
  if (LA_UNLIKELY(wrong != NULL)) {
    la_invalid_free(block, wrong);
    return;
  }
  if (owner) {
    la_slab_push(slab, block);
    if (slab->in_full) leave_full(heap, slab);
    else if (!slab->fast_owner) LA_SHARED_STORE(slab->fast_owner, fast_owner_for(heap, slab));   /* its last sample may be gone */
    if (slab->used == 0) la_heap_retire_slab(heap, slab);
    return;
  }
  la_slab_free_remote(slab, block, remote_hint(slab));
}

static inline bool owns(const la_heap_t *heap, const la_slab_t *slab) {
  return atomic_load_explicit(&slab->owner, memory_order_relaxed) == heap && heap != &la_empty_heap;
}

static LA_NOINLINE void free_small_general(la_heap_t *heap, la_slab_t *slab, la_block_t *block) {
  free_small(heap, slab, block, owns(heap, slab));
}

/* Most frees that come here are another thread's: a push, and a hint if
 * the slab is on its owner's full list, checked for first so that the way
 * there saves no register (the general case's calls made this function
 * save four; callgrind: remotefree 59.8 -> 56.7 M instructions, prodcons
 * 23.2 -> 21.5 M). */
static LA_NOINLINE void free_small_slow(la_heap_t *heap, la_slab_t *slab, la_block_t *block) {
  if (LA_LIKELY(!free_mark && !owns(heap, slab))) {
    la_slab_free_remote(slab, block, remote_hint(slab));
    return;
  }
  free_small_general(heap, slab, block);
}

static LA_NOINLINE void free_sampled_slab_slow(la_heap_t *heap, la_slab_t *slab, la_block_t *block) {
  if (la_prof_may_hold(slab, block)) la_prof_forget(block);
  free_small(heap, slab, block, owns(heap, slab));
}

/* A slab holding a live sample has no fast_owner, so every free of it
 * comes here while the sample lives: mostly the owner's, of other blocks.
 * Those are done as the fast path does them, after the profiler's look-up
 * (two addresses in the descriptor), in a function that calls nothing on
 * that way and so saves no register: ~40 instructions where the slow
 * path's set-up made it ~70 (callgrind, bench hugereuse and aligned). */
static LA_NOINLINE void free_sampled_slab(la_heap_t *heap, la_slab_t *slab, la_block_t *block) {
  if (LA_UNLIKELY(!owns(heap, slab) || free_mark || slab->in_full || slab->used <= 1 ||
                  la_prof_may_hold(slab, block))) {
    free_sampled_slab_slow(heap, slab, block);
    return;
  }
  la_slab_push(slab, block);
  /* Another thread may have freed its last sample meanwhile: fast_owner_for
   * with free checks off. */
  if (LA_UNLIKELY(!LA_SHARED_LOAD(slab->prof_samples))) LA_SHARED_STORE(slab->fast_owner, heap);
}

static LA_NOINLINE void free_large(la_heap_t *heap, la_slab_t *slab, la_block_t *block) {
  if (LA_UNLIKELY((uint8_t *)block != slab->start || slab->used != 1)) {
    la_invalid_free(block, "not a live large block (double free or interior pointer?)");
    return;
  }
  if (!large_cache_put(heap, slab)) la_arena_free_large(slab);
}

/* The owner frees into a lender (lend.c), and gives it back once empty;
 * another thread frees as into any slab. */
static LA_NOINLINE void free_lender(la_heap_t *heap, la_slab_t *slab, la_block_t *block) {
  if (LA_SHARED_LOAD(slab->prof_samples)) la_prof_forget(block);
  if (!owns(heap, slab)) {
    free_small(heap, slab, block, false);
    return;
  }
  if (heap->bins[slab->cls] == slab && la_lend_free_to_list(slab, block)) return;   /* serving its class */
  la_lend_collect(slab);
  if (la_lend_free(slab, block)) release_lender(heap, slab);
  else lender_rebin(heap, slab, true);
}

/* free() of a block whose slab does not let this thread free locally: a
 * large block, the owner freeing into a full slab or one holding a live
 * sample, another thread's slab, or a pointer into a free unit.  Each case
 * is a tail call, so this saves no register. */
void la_heap_free_slow(la_heap_t *heap, la_slab_t *slab, la_block_t *block) {
  uint8_t kind = LA_SHARED_LOAD(slab->kind);
  if (kind == LA_SLAB_LARGE) free_large(heap, slab, block);
  else if (kind == LA_SLAB_LEND) free_lender(heap, slab, block);
  else if (LA_UNLIKELY(kind != LA_SLAB_SMALL)) la_invalid_free(block, "pointer into free memory (double free?)");
  else if (LA_UNLIKELY(LA_SHARED_LOAD(slab->prof_samples))) free_sampled_slab(heap, slab, block);
  else free_small_slow(heap, slab, block);
}

/* Give back every slab the heap holds with no block in use, including the
 * current ones (thread.tcache.flush, malloc_trim). */
void la_heap_flush(la_heap_t *heap) {
  if (heap == &la_empty_heap) return;
  caches_flush(heap);
  sweep_full(heap);
  for (unsigned b = 0; b < LA_LEND_BINS; b++)
    for (la_slab_t *s = heap->lenders[b].head, *after; s; s = after) {
      after = s->next;
      la_lend_collect(s);
      if (s->used == 0) release_lender(heap, s);
    }
  for (unsigned c = 0; c < LA_NCLASSES; c++) {
    la_slab_t *next;
    for (la_slab_t *s = heap->queues[c].head; s; s = next) {
      next = s->next;
      la_slab_collect_remote(s);
      if (s->used == 0) release_slab(heap, s);
    }
  }
}

/* ---- fork ---------------------------------------------------------------- */

/* The purger takes idle heaps' caches under heaps_lock, then reclaim_lock;
 * an owner holds reclaim_lock alone, around one cache operation. */
/* Profiling is switched on (prof.c, while the plain entry points are in
 * place, so no thread counts meanwhile): every thread's next allocation
 * draws its countdown again, with the mean now in force (sample.c). */
void la_heaps_prof_reset(void) {
  pthread_mutex_lock(&heaps_lock);
  for (la_heap_t *h = all_heaps; h; h = h->next_all) __atomic_store_n(&h->sample_left, 0, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&heaps_lock);
}

void la_heaps_fork_prepare(void) {
  pthread_mutex_lock(&heaps_lock);
  pthread_mutex_lock(&reclaim_lock);
}

void la_heaps_fork_parent(void) {
  pthread_mutex_unlock(&reclaim_lock);
  pthread_mutex_unlock(&heaps_lock);
}

/* In the child only the forking thread exists.  The other threads' heaps
 * may have been mid-update when fork() struck, so they are not walked: they
 * are dropped from the list, and what they held stays allocated in the
 * child, as glibc's arenas do. */
void la_heaps_fork_child(void) {
  pthread_mutex_init(&heaps_lock, NULL);
  pthread_mutex_init(&reclaim_lock, NULL);
  la_heap_t *self = la_tls_heap;
  if (self != &la_empty_heap) {
    /* The next malloc of each class takes the slow path once, where the
     * child starts what it needs (its telemetry). */
    clear_bins(self);
    self->next_all = self->prev_all = NULL;
    all_heaps = self;
    nheaps = 1;
  } else {
    all_heaps = NULL;
    nheaps = 0;
  }
}
