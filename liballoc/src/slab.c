/* slab.c - the free lists of one slab.
 *
 * A small slab has two lists, each with a single kind of writer:
 *   free   the owner's: the malloc fast path pops it and the owner's free
 *          pushes it, so a thread that frees and allocates the same size
 *          reuses the block it just freed without leaving the fast path;
 *   xfree  other threads free into it, with an atomic push.
 * When `free` runs dry the owner refills it from xfree (one atomic exchange
 * takes the whole list), then by carving fresh blocks from the part of the
 * slab not used yet.  Carving is lazy, a page's worth at a time, so a slab
 * that is barely used is barely resident. */
#include "alloc_internal.h"

/* What heap->bins[c] points at when the heap has no slab of class c: its
 * free list is empty, so the fast path falls into the slow path. */
la_slab_t la_slab_empty;

void la_slab_init(la_slab_t *slab, la_segment_t *seg, unsigned unit, unsigned cls) {
  slab->free = NULL;
  LA_SHARED_STORE(slab->fast_owner, NULL);
  LA_SHARED_STORE(slab->used, 0);
  LA_SHARED_STORE(slab->nfreed, 0);
  slab->cls = (uint8_t)cls;
  slab->kind = la_class_large[cls] ? LA_SLAB_LARGE : LA_SLAB_SMALL;
  slab->block_size = la_class_size[cls];
  slab->capacity = la_class_capacity[cls];
  slab->reserved = 0;
  slab->in_full = 0;
  slab->start = la_unit_address(seg, unit);
  slab->next = slab->prev = NULL;
  atomic_store_explicit(&slab->xfree, NULL, memory_order_relaxed);
  atomic_store_explicit(&slab->owner, NULL, memory_order_relaxed);
  atomic_store_explicit(&slab->notify, false, memory_order_relaxed);
}

/* Carve the next blocks of the slab into the free list: at least one, and
 * as many as fit in one page past the first. */
static void slab_extend(la_slab_t *slab) {
  size_t size = slab->block_size;
  uint32_t n = (uint32_t)(la_page_size / size);
  if (n == 0) n = 1;
  if (n > slab->capacity - slab->reserved) n = slab->capacity - slab->reserved;
  uint8_t *first = slab->start + (size_t)slab->reserved * size;
  uint8_t *p = first;
  for (uint32_t i = 1; i < n; i++, p += size) ((la_block_t *)p)->next = (la_block_t *)(p + size);
  ((la_block_t *)p)->next = slab->free;
  slab->free = (la_block_t *)first;
  slab->reserved += n;
}

/* Take every block other threads freed into the slab and put it on the
 * free list; returns how many.  Owner only (or under the arena lock for a
 * slab without owner). */
uint32_t la_slab_collect_remote(la_slab_t *slab) {
  if (!atomic_load_explicit(&slab->xfree, memory_order_relaxed)) return 0;
  la_block_t *head = atomic_exchange_explicit(&slab->xfree, NULL, memory_order_acquire);
  if (!head) return 0;
  uint32_t n = 1;
  la_block_t *tail = head;
  while (tail->next) {
    tail = tail->next;
    n++;
  }
  tail->next = slab->free;
  slab->free = head;
  LA_SHARED_STORE(slab->used, slab->used - n);
  LA_SHARED_STORE(slab->nfreed, slab->nfreed + n);
  return n;
}

/* Make slab->free non-empty if the slab has any block left; owner only. */
bool la_slab_refill_free(la_slab_t *slab) {
  if (slab->free) return true;
  if (la_slab_collect_remote(slab)) return true;
  if (slab->reserved < slab->capacity) {
    slab_extend(slab);
    return true;
  }
  return false;
}

/* A thread that does not own the slab frees a block into it.  Lock-free:
 * many threads may push while the owner takes the whole list. */
void la_slab_free_remote(la_slab_t *slab, la_block_t *block) {
  la_block_t *head = atomic_load_explicit(&slab->xfree, memory_order_relaxed);
  do {
    block->next = head;
  } while (!atomic_compare_exchange_weak_explicit(&slab->xfree, &head, block, memory_order_seq_cst,
                                                  memory_order_relaxed));
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
  return list_holds(slab, atomic_load_explicit(&slab->xfree, memory_order_acquire), block);
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
