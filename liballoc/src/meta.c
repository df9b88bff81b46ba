/* meta.c - memory for liballoc's own structures (heaps, huge descriptors,
 * hash tables).
 *
 * A bump allocator over 2 MiB mappings, under one lock.  Nothing allocated
 * here is ever returned: callers keep free lists of their own structures and
 * reuse them, which keeps this file trivial and the structures' addresses
 * stable (a stale pointer to a retired heap still points at a heap). */
#include "alloc_internal.h"

#include <string.h>

#define META_CHUNK ((size_t)2 << 20)   /* one huge page, aligned to it */

static pthread_mutex_t meta_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *meta_cur, *meta_end;
static size_t meta_mapped, meta_used;

/* Chunks mapped so far, to re-advise them when metadata_thp changes. */
#define META_CHUNKS_TRACKED 256
static void *chunks[META_CHUNKS_TRACKED];
static size_t chunk_sizes[META_CHUNKS_TRACKED];
static unsigned nchunks;

/* metadata_thp: "always" asks for huge pages on every metadata chunk,
 * "auto" once metadata outgrows its first chunk (a process with little
 * metadata does not pay a 2 MiB page for it), "disabled" never. */
static int chunk_thp_mode(unsigned index) {
  switch (la_opt.metadata_thp) {
  case LA_META_THP_ALWAYS: return LA_THP_ALWAYS;
  case LA_META_THP_AUTO: return index >= 1 ? LA_THP_ALWAYS : LA_THP_DEFAULT;
  default: return LA_THP_NEVER;
  }
}

/* Apply the current metadata_thp to every chunk (ctl). */
void la_meta_apply_thp(void) {
  pthread_mutex_lock(&meta_lock);
  for (unsigned i = 0; i < nchunks; i++) {
    int mode = chunk_thp_mode(i);
    if (mode != LA_THP_DEFAULT) la_os_advise_thp(chunks[i], chunk_sizes[i], mode);
  }
  pthread_mutex_unlock(&meta_lock);
}

/* Zeroed memory aligned to 64 bytes (a cache line, so per-thread structures
 * never share one); NULL if the OS refuses. */
void *la_meta_alloc(size_t size) {
  size = (size + 63) & ~(size_t)63;
  pthread_mutex_lock(&meta_lock);
  if ((size_t)(meta_end - meta_cur) < size) {
    size_t chunk = size > META_CHUNK ? (size + META_CHUNK - 1) & ~(META_CHUNK - 1) : META_CHUNK;
    uint8_t *p = la_os_map_aligned(chunk, META_CHUNK);
    if (!p) {
      pthread_mutex_unlock(&meta_lock);
      return NULL;
    }
    int mode = chunk_thp_mode(nchunks);
    if (mode != LA_THP_DEFAULT) la_os_advise_thp(p, chunk, mode);
    if (nchunks < META_CHUNKS_TRACKED) {
      chunks[nchunks] = p;
      chunk_sizes[nchunks++] = chunk;
    }
    meta_cur = p;
    meta_end = p + chunk;
    meta_mapped += chunk;
  }
  void *r = meta_cur;
  meta_cur += size;
  meta_used += size;
  pthread_mutex_unlock(&meta_lock);
  return r;   /* fresh anonymous memory is zero */
}

/* A table of its own mapping, never in huge pages whatever metadata_thp
 * says: for big tables touched sparsely (the heap profiler's hash tables),
 * where a huge page would make 2 MiB resident (and zero it) for each
 * entry written.  Counted as metadata like the rest. */
void *la_meta_alloc_sparse(size_t size) {
  size = (size + la_page_size - 1) & ~(la_page_size - 1);
  void *p = la_os_map(size);
  if (!p) return NULL;
  la_os_advise_thp(p, size, LA_THP_NEVER);
  pthread_mutex_lock(&meta_lock);
  meta_mapped += size;
  meta_used += size;
  pthread_mutex_unlock(&meta_lock);
  return p;
}

size_t la_meta_mapped(void) {
  pthread_mutex_lock(&meta_lock);
  size_t n = meta_mapped;
  pthread_mutex_unlock(&meta_lock);
  return n;
}

size_t la_meta_used(void) {
  pthread_mutex_lock(&meta_lock);
  size_t n = meta_used;
  pthread_mutex_unlock(&meta_lock);
  return n;
}

void la_meta_fork_prepare(void) { pthread_mutex_lock(&meta_lock); }
void la_meta_fork_parent(void) { pthread_mutex_unlock(&meta_lock); }
void la_meta_fork_child(void) { pthread_mutex_init(&meta_lock, NULL); }
