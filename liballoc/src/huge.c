/* huge.c - blocks above the largest size class, each in a mapping of its own.
 *
 * A huge mapping starts on a 4 MiB boundary and spans whole 4 MiB regions,
 * so the segment map can mark its regions HUGE without sharing any with a
 * segment.  Its descriptor lives in a hash table keyed by the block address
 * (free() of a huge block already costs a munmap, the lookup is noise).
 * Fresh mappings read as zero, so calloc need not clear them.
 *
 * realloc grows a huge block in place when the address space after it is
 * free, and otherwise moves its pages with mremap: page tables move, bytes
 * are not copied. */
#include "alloc_internal.h"

#include <errno.h>
#include <string.h>

#define HUGE_BUCKET_BITS 12

static pthread_mutex_t huge_lock = PTHREAD_MUTEX_INITIALIZER;
static la_huge_t *buckets[1u << HUGE_BUCKET_BITS];
static la_huge_t *spare_descs;
static size_t huge_count, huge_bytes, huge_mapped;

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

/* ---- allocation ---------------------------------------------------------- */

/* A block of at least `size` bytes aligned to `align` (a power of two), in a
 * fresh mapping; NULL with errno ENOMEM on failure. */
void *la_huge_alloc(size_t size, size_t align) {
  size_t usable, map_size;
  if (size == 0) size = 1;
  if (!round_up(size, la_page_size, &usable) || !round_up(usable, LA_SEG_SIZE, &map_size)) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = la_os_map_aligned(map_size, align > LA_SEG_SIZE ? align : LA_SEG_SIZE);
  if (!p) return NULL;
  la_os_advise_thp(p, map_size, la_opt.thp);
  pthread_mutex_lock(&huge_lock);
  la_huge_t *d = desc_new();
  if (!d) {
    pthread_mutex_unlock(&huge_lock);
    la_os_unmap(p, map_size);
    errno = ENOMEM;
    return NULL;
  }
  d->ptr = p;
  d->size = usable;
  d->map_size = map_size;
  table_insert(d);
  huge_count++;
  huge_bytes += usable;
  huge_mapped += map_size;
  la_segmap_set(p, map_size, LA_MAP_HUGE);
  pthread_mutex_unlock(&huge_lock);
  return p;
}

void la_huge_free(void *p) {
  pthread_mutex_lock(&huge_lock);
  la_huge_t *d = table_remove(p);
  if (!d) {
    pthread_mutex_unlock(&huge_lock);
    la_invalid_free(p, "not the start of a huge block");
    return;
  }
  size_t map_size = d->map_size;
  huge_count--;
  huge_bytes -= d->size;
  huge_mapped -= map_size;
  la_segmap_set(p, map_size, LA_MAP_NONE);
  desc_release(d);
  pthread_mutex_unlock(&huge_lock);
  la_os_unmap(p, map_size);
}

/* 0 for a pointer that is not the start of a huge block. */
size_t la_huge_usable_size(const void *p) {
  pthread_mutex_lock(&huge_lock);
  la_huge_t *d = table_find(p);
  size_t size = d ? d->size : 0;
  pthread_mutex_unlock(&huge_lock);
  return size;
}

/* ---- realloc ------------------------------------------------------------ */
/* The caller owns the block, so no other thread touches its descriptor while
 * realloc runs (that would be a use-after-free in the program): the
 * syscalls run without huge_lock, which is taken only to update the table
 * and the totals. */

static void account(ssize_t dsize, ssize_t dmapped) {
  pthread_mutex_lock(&huge_lock);
  huge_bytes += (size_t)dsize;
  huge_mapped += (size_t)dmapped;
  pthread_mutex_unlock(&huge_lock);
}

/* Resize within the mapping.  Pages past a smaller end are purged; the 4 MiB
 * regions past it are unmapped only when less than half the mapping stays
 * in use, so that a block shrinking and growing again does not thrash. */
static void resize_in_place(la_huge_t *d, size_t usable, size_t need) {
  uint8_t *p = d->ptr;
  ssize_t dmapped = 0;
  if (usable < d->size) la_os_purge(p + usable, d->size - usable);
  if (need <= d->map_size / 2) {
    la_segmap_set(p + need, d->map_size - need, LA_MAP_NONE);
    la_os_unmap(p + need, d->map_size - need);
    dmapped = -(ssize_t)(d->map_size - need);
    d->map_size = need;
  }
  account((ssize_t)usable - (ssize_t)d->size, dmapped);
  d->size = usable;
}

/* Grow the mapping to map_size: in place if the address space after it is
 * free, else move its pages to a fresh aligned reservation. */
static bool grow(la_huge_t *d, size_t usable, size_t map_size) {
  uint8_t *p = d->ptr;
  if (la_os_extend_in_place(p, d->map_size, map_size)) {
    la_segmap_set(p + d->map_size, map_size - d->map_size, LA_MAP_HUGE);
  } else {
    void *dest = la_os_map_aligned(map_size, LA_SEG_SIZE);
    if (!dest) return false;
    if (!la_os_remap_to(p, d->map_size, map_size, dest)) {
      la_os_unmap(dest, map_size);
      return false;
    }
    la_segmap_set(dest, map_size, LA_MAP_HUGE);
    la_segmap_set(p, d->map_size, LA_MAP_NONE);
    pthread_mutex_lock(&huge_lock);
    table_remove(p);
    d->ptr = dest;
    table_insert(d);
    pthread_mutex_unlock(&huge_lock);
  }
  account((ssize_t)usable - (ssize_t)d->size, (ssize_t)map_size - (ssize_t)d->map_size);
  d->size = usable;
  d->map_size = map_size;
  return true;
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
  la_huge_t *d = table_find(p);
  pthread_mutex_unlock(&huge_lock);
  if (!d) {
    la_invalid_free(p, "realloc of a pointer that is not a huge block");
    errno = EINVAL;
    return NULL;
  }
  if (need <= d->map_size) {
    resize_in_place(d, usable, need);
    return d->ptr;
  }
  size_t target = d->map_size <= SIZE_MAX / 2 && 2 * d->map_size > need ? 2 * d->map_size : need;
  if (grow(d, usable, target) || (target > need && grow(d, usable, need))) return d->ptr;
  errno = ENOMEM;
  return NULL;
}

void la_huge_stats(la_stats_t *st) {
  pthread_mutex_lock(&huge_lock);
  st->huge_count += huge_count;
  st->huge_bytes += huge_bytes;
  st->allocated += huge_bytes;
  st->active += huge_bytes;
  st->mapped += huge_mapped;
  pthread_mutex_unlock(&huge_lock);
}

void la_huge_fork_prepare(void) { pthread_mutex_lock(&huge_lock); }
void la_huge_fork_parent(void) { pthread_mutex_unlock(&huge_lock); }
void la_huge_fork_child(void) { pthread_mutex_init(&huge_lock, NULL); }
