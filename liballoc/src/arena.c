/* arena.c - arenas: pools of segments that hand out runs of units.
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
 * Slabs whose thread exited ("abandoned") wait on per-class lists: a heap
 * that needs a slab of that class adopts one, and slabs emptied by other
 * threads' frees are swept back into free units when the arena is about to
 * grow and on malloc_trim. */
#include "alloc_internal.h"

#include <string.h>

#define ADOPT_SCAN_LIMIT 8      /* abandoned slabs looked at per request */
#define RETAIN_FREE_SEGMENTS 1  /* wholly free segments kept per arena */

unsigned la_narenas = 1;
static la_arena_t arenas[LA_MAX_ARENAS];
static atomic_uint next_arena;

/* Threads are spread over `narenas` arenas (default: one per CPU). */
void la_arenas_set_count(void) {
  unsigned n = la_opt.narenas ? la_opt.narenas : la_os_ncpus();
  la_narenas = n < 1 ? 1 : n > LA_MAX_ARENAS ? LA_MAX_ARENAS : n;
}

void la_arenas_init(void) {
  la_arenas_set_count();
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) {
    pthread_mutex_init(&arenas[i].lock, NULL);
    arenas[i].index = i;
  }
}

la_arena_t *la_arena_for_thread(void) {
  unsigned i = atomic_fetch_add_explicit(&next_arena, 1, memory_order_relaxed);
  return &arenas[i % la_narenas];
}

la_arena_t *la_arena_at(unsigned index) {
  return index < LA_MAX_ARENAS ? &arenas[index] : NULL;
}

/* ---- segment buckets (lock held) ----------------------------------------- */

static void bucket_insert(la_arena_t *a, la_segment_t *seg) {
  la_segment_t **head = &a->segments[seg->max_run];
  seg->prev = NULL;
  seg->next = *head;
  if (*head) (*head)->prev = seg;
  *head = seg;
}

static void bucket_remove(la_arena_t *a, la_segment_t *seg) {
  if (seg->prev) seg->prev->next = seg->next;
  else a->segments[seg->max_run] = seg->next;
  if (seg->next) seg->next->prev = seg->prev;
  seg->next = seg->prev = NULL;
}

static la_segment_t *find_segment(la_arena_t *a, unsigned k, unsigned align_units, int *unit) {
  for (unsigned r = k; r < LA_UNITS; r++)
    for (la_segment_t *seg = a->segments[r]; seg; seg = seg->next)
      if ((*unit = la_segment_find_run(seg, k, align_units)) >= 0) return seg;
  return NULL;
}

/* ---- abandoned slabs (lock held) ----------------------------------------- */

static la_segment_t *free_run(la_arena_t *a, la_slab_t *slab);

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
        la_segment_t *gone = free_run(a, s);
        if (gone) la_segment_destroy(gone);
        released++;
      }
    }
  }
  return released;
}

static la_slab_t *adopt_abandoned(la_arena_t *a, unsigned cls, la_heap_t *owner) {
  unsigned scanned = 0;
  for (la_slab_t *s = a->abandoned[cls].head; s && scanned < ADOPT_SCAN_LIMIT; s = s->next, scanned++) {
    la_slab_collect_remote(s);
    if (s->used < s->capacity) {
      la_slab_list_remove(&a->abandoned[cls], s);
      atomic_store_explicit(&s->owner, owner, memory_order_release);
      return s;
    }
  }
  return NULL;
}

/* ---- runs of units (lock held) ------------------------------------------- */

static la_slab_t *alloc_run(la_arena_t *a, unsigned k, unsigned align_units) {
  int unit;
  la_segment_t *seg = find_segment(a, k, align_units, &unit);
  if (!seg && sweep_abandoned(a)) seg = find_segment(a, k, align_units, &unit);
  if (!seg) {
    seg = la_segment_create(a);
    if (!seg) return NULL;
    a->nsegments++;
    a->nfree_segments++;
    bucket_insert(a, seg);
    unit = la_segment_find_run(seg, k, align_units);
    if (unit < 0) return NULL;   /* cannot happen: k <= 32, align_units <= 32 */
  }
  if (la_segment_is_empty(seg)) a->nfree_segments--;
  bucket_remove(a, seg);
  la_slab_t *slab = la_segment_take_run(seg, (unsigned)unit, k);
  bucket_insert(a, seg);
  return slab;
}

/* Returns the segment if it became free and is not retained: the caller
 * destroys it, after dropping the lock (munmap is slow). */
static la_segment_t *free_run(la_arena_t *a, la_slab_t *slab) {
  la_segment_t *seg = la_segment_of(slab);
  bucket_remove(a, seg);
  la_segment_release_run(seg, slab);
  if (la_segment_is_empty(seg) && ++a->nfree_segments > RETAIN_FREE_SEGMENTS) {
    a->nfree_segments--;
    a->nsegments--;
    return seg;
  }
  bucket_insert(a, seg);
  return NULL;
}

static void free_run_unlock(la_arena_t *a, la_slab_t *slab) {
  la_segment_t *gone = free_run(a, slab);
  pthread_mutex_unlock(&a->lock);
  if (gone) la_segment_destroy(gone);
}

/* ---- slabs for thread heaps ---------------------------------------------- */

/* A slab of class `cls` owned by `owner` with at least one block to hand
 * out: an abandoned one if there is one, else a fresh one.  NULL if out of
 * memory. */
la_slab_t *la_arena_get_slab(la_arena_t *a, unsigned cls, la_heap_t *owner) {
  pthread_mutex_lock(&a->lock);
  la_slab_t *slab = adopt_abandoned(a, cls, owner);
  if (!slab) {
    slab = alloc_run(a, la_class_units[cls], 1);
    if (slab) {
      la_segment_t *seg = la_segment_of(slab);
      la_slab_init(slab, seg, (unsigned)(slab - seg->slabs), cls);
      atomic_store_explicit(&slab->owner, owner, memory_order_release);
    }
  }
  pthread_mutex_unlock(&a->lock);
  return slab;
}

/* Give back a slab with no block in use. */
void la_arena_put_slab(la_arena_t *a, la_slab_t *slab) {
  pthread_mutex_lock(&a->lock);
  free_run_unlock(a, slab);
}

/* A heap whose thread exits leaves a slab that still has blocks in use. */
void la_arena_abandon_slab(la_arena_t *a, la_slab_t *slab) {
  pthread_mutex_lock(&a->lock);
  slab->fast_owner = NULL;
  slab->in_full = 0;
  atomic_store_explicit(&slab->owner, NULL, memory_order_release);
  la_slab_list_push(&a->abandoned[slab->cls], slab);
  pthread_mutex_unlock(&a->lock);
}

/* ---- large blocks -------------------------------------------------------- */

/* One block of a large class, aligned to `align` (a power of two; up to 2
 * MiB), in units of its own.  NULL if out of memory. */
la_slab_t *la_arena_alloc_large(la_arena_t *a, unsigned cls, size_t align) {
  unsigned align_units = align > LA_UNIT_SIZE ? (unsigned)(align >> LA_UNIT_SHIFT) : 1;
  pthread_mutex_lock(&a->lock);
  la_slab_t *slab = alloc_run(a, la_class_units[cls], align_units);
  if (slab) {
    la_segment_t *seg = la_segment_of(slab);
    la_slab_init(slab, seg, (unsigned)(slab - seg->slabs), cls);
    slab->kind = LA_SLAB_LARGE;
    slab->capacity = 1;
    slab->reserved = 1;
    slab->used = 1;
  }
  pthread_mutex_unlock(&a->lock);
  return slab;
}

void la_arena_free_large(la_slab_t *slab) {
  la_arena_t *a = la_segment_of(slab)->arena;
  pthread_mutex_lock(&a->lock);
  free_run_unlock(a, slab);
}

/* ---- purge, stats, fork -------------------------------------------------- */

/* malloc_trim: return emptied abandoned slabs, purge every dirty unit and
 * unmap every wholly free segment.  Returns the bytes given back. */
size_t la_arenas_purge(void) {
  size_t released = 0;
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) {
    la_arena_t *a = &arenas[i];
    pthread_mutex_lock(&a->lock);
    sweep_abandoned(a);
    for (unsigned r = 0; r < LA_UNITS; r++) {
      la_segment_t *next;
      for (la_segment_t *seg = a->segments[r]; seg; seg = next) {
        next = seg->next;
        if (la_segment_is_empty(seg)) {
          bucket_remove(a, seg);
          a->nsegments--;
          a->nfree_segments--;
          released += LA_SEG_SIZE;
          la_segment_destroy(seg);
        } else {
          released += la_segment_purge(seg);
        }
      }
    }
    pthread_mutex_unlock(&a->lock);
  }
  return released;
}

static size_t header_bytes(void) {
  return (sizeof(la_segment_t) + la_page_size - 1) & ~(la_page_size - 1);
}

static void slab_stats(la_stats_t *st, const la_slab_t *s) {
  if (s->kind == LA_SLAB_LARGE) {
    st->large_count++;
    st->large_bytes += s->block_size;
    st->allocated += s->block_size;
  } else {
    /* `used` belongs to the owning thread: a relaxed read gives a value
     * that was true a moment ago, which is all a statistic needs. */
    uint32_t used = __atomic_load_n(&s->used, __ATOMIC_RELAXED);
    st->allocated += (size_t)used * s->block_size;
    st->classes[s->cls].live_blocks += used;
  }
  st->classes[s->cls].slabs++;
}

static void segment_stats(la_stats_t *st, const la_segment_t *seg) {
  st->mapped += LA_SEG_SIZE;
  st->metadata += header_bytes();
  st->active += (size_t)__builtin_popcountll(seg->used_units & ~(uint64_t)1) << LA_UNIT_SHIFT;
  st->dirty += (size_t)__builtin_popcountll(seg->dirty_units) << LA_UNIT_SHIFT;
  if (la_segment_is_empty(seg)) st->retained += LA_SEG_SIZE;
  for (unsigned u = 1; u < LA_UNITS; u++) {
    const la_slab_t *s = seg->unit_slab[u];
    if (s == &seg->slabs[u] && s->kind != LA_SLAB_UNUSED) slab_stats(st, s);
  }
}

void la_arenas_stats(la_stats_t *st) {
  st->narenas = la_narenas;
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) {
    la_arena_t *a = &arenas[i];
    pthread_mutex_lock(&a->lock);
    for (unsigned r = 0; r < LA_UNITS; r++)
      for (la_segment_t *seg = a->segments[r]; seg; seg = seg->next) segment_stats(st, seg);
    st->nsegments += a->nsegments;
    pthread_mutex_unlock(&a->lock);
  }
}

void la_arenas_fork_prepare(void) {
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) pthread_mutex_lock(&arenas[i].lock);
}

void la_arenas_fork_parent(void) {
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) pthread_mutex_unlock(&arenas[i].lock);
}

void la_arenas_fork_child(void) {
  for (unsigned i = 0; i < LA_MAX_ARENAS; i++) pthread_mutex_init(&arenas[i].lock, NULL);
}
