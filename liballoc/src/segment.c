/* segment.c - one 4 MiB segment: which units are used, which free units are
 * dirty or muzzy, and the slab descriptor of every unit.
 *
 * Callers hold the lock of the arena that owns the segment, except for
 * la_segment_advise_runs, which the purger calls on units it has taken out
 * of circulation.  Units are tracked in 64-bit masks, so finding a run of k
 * free units, or of k dirty ones (already resident, cheaper to reuse), is a
 * handful of shifts. */
#include "alloc_internal.h"

#include <string.h>
#include <sys/uio.h>

/* Descriptor of every unit that is free or metadata.  Its fast_owner and
 * owner are NULL and kind is UNUSED, so free() of a pointer into such a unit
 * falls through the fast path into the invalid-pointer check. */
la_slab_t la_slab_invalid;

/* Bit i of the result is set iff bits i .. i+k-1 of `bits` are all set. */
uint64_t la_bits_run_starts(uint64_t bits, unsigned k) {
  uint64_t r = bits;
  unsigned have = 1;
  while (have < k && r) {
    unsigned step = have < k - have ? have : k - have;
    r &= r >> step;
    have += step;
  }
  return r;
}

unsigned la_bits_longest_run(uint64_t bits) {
  unsigned n = 0;
  while (bits) {
    bits &= bits >> 1;
    n++;
  }
  return n;
}

uint64_t la_bits_run_mask(unsigned unit, unsigned k) {
  uint64_t ones = k >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << k) - 1);
  return ones << unit;
}

/* Bits at multiples of align_units (a power of two). */
static uint64_t aligned_positions(unsigned align_units) {
  uint64_t m = 0;
  for (unsigned i = 0; i < LA_UNITS; i += align_units) m |= (uint64_t)1 << i;
  return m;
}

void la_segment_update_max_run(la_segment_t *seg) {
  seg->max_run = (uint8_t)la_bits_longest_run(~seg->used_units);
}

/* Initialise a segment for `arena` in `recycled`, a 4 MiB region already
 * mapped (taken from the huge cache), or else in a fresh mapping; NULL if
 * the OS refuses one.  A recycled region's old bytes are still there: the
 * header is cleared here, and the caller purges the free units or counts
 * them dirty (a slab on them would not read as zero). */
la_segment_t *la_segment_create(la_arena_t *arena, void *recycled) {
  la_segment_t *seg = recycled ? recycled : la_os_map_aligned(LA_SEG_SIZE, LA_SEG_SIZE);
  if (!seg) return NULL;
  if (recycled) {
    memset(seg, 0, sizeof *seg);
    memset(seg->resident, 0xff, sizeof seg->resident);   /* the huge block's bytes */
  }
  la_os_advise_thp(seg, LA_SEG_SIZE, la_opt.thp);
  seg->arena = arena;
  seg->used_units = 1;          /* unit 0: this header */
  for (unsigned i = 0; i < LA_UNITS; i++) seg->unit_slab[i] = &la_slab_invalid;
  la_segment_update_max_run(seg);
  la_segmap_set(seg, LA_SEG_SIZE, LA_MAP_SEGMENT);
  return seg;
}

/* Unmap the segment; false (and it is still a segment) if the kernel
 * refused. */
bool la_segment_destroy(la_segment_t *seg) {
  la_segmap_set(seg, LA_SEG_SIZE, LA_MAP_NONE);
  if (la_os_unmap(seg, LA_SEG_SIZE)) return true;
  la_segmap_set(seg, LA_SEG_SIZE, LA_MAP_SEGMENT);
  return false;
}

/* First unit of a free run of k units starting at a multiple of
 * align_units, preferring runs that are entirely dirty; -1 if none. */
int la_segment_find_run(const la_segment_t *seg, unsigned k, unsigned align_units) {
  uint64_t starts = la_bits_run_starts(~seg->used_units, k);
  if (align_units > 1) starts &= aligned_positions(align_units);
  if (!starts) return -1;
  uint64_t dirty = starts & la_bits_run_starts(seg->dirty_units, k);
  return __builtin_ctzll(dirty ? dirty : starts);
}

/* Mark units [unit, unit+k) used and return the descriptor of the run,
 * with nunits and zeroed set; the caller initialises the rest and accounts
 * for the dirty and muzzy units the run took (it reads them first). */
la_slab_t *la_segment_take_run(la_segment_t *seg, unsigned unit, unsigned k) {
  uint64_t bits = la_bits_run_mask(unit, k);
  la_slab_t *slab = &seg->slabs[unit];
  /* never touched, or purged: reads as zero.  Muzzy pages may not. */
  slab->zeroed = ((seg->dirty_units | seg->muzzy_units) & bits) == 0;
  seg->used_units |= bits;
  seg->dirty_units &= ~bits;
  seg->muzzy_units &= ~bits;
  seg->refused_units &= ~bits;   /* freed again later, they get a new try */
  for (unsigned i = unit; i < unit + k; i++) seg->unit_slab[i] = slab;
  slab->nunits = (uint8_t)k;
  la_segment_update_max_run(seg);
  return slab;
}

/* Return the units of `slab` to the segment: dirty where a page may be
 * resident, clean where none is (a slab of several units that carved only
 * its first, or a unit taken clean and never touched): those read as zero,
 * and counting them dirty would make decay purge them instead of resident
 * ones and runs prefer them as if taking them cost no page fault.  Returns
 * the units made dirty. */
uint64_t la_segment_release_run(la_segment_t *seg, la_slab_t *slab) {
  unsigned unit = (unsigned)(slab - seg->slabs);
  uint64_t bits = la_bits_run_mask(unit, slab->nunits), dirty = 0;
  for (unsigned i = unit; i < unit + slab->nunits; i++) {
    seg->unit_slab[i] = &la_slab_invalid;
    if (slab->kind != LA_SLAB_SMALL) seg->resident[i] = 0xffff;   /* its program wrote anywhere */
    if (seg->resident[i]) dirty |= (uint64_t)1 << i;
  }
  slab->kind = LA_SLAB_UNUSED;
  atomic_store_explicit(&slab->owner, NULL, memory_order_relaxed);
  LA_SHARED_STORE(slab->fast_owner, NULL);
  seg->used_units &= ~bits;
  seg->dirty_units |= dirty;
  la_segment_update_max_run(seg);
  return dirty;
}

/* The pages of units [start, start+len): [*pa, *pb), empty when a page
 * larger than a unit does not fit in them. */
static bool run_pages(la_segment_t *seg, unsigned start, unsigned len, uintptr_t *pa, uintptr_t *pb) {
  uintptr_t a = (uintptr_t)la_unit_address(seg, start);
  uintptr_t b = a + ((size_t)len << LA_UNIT_SHIFT);
  *pa = (a + la_page_size - 1) & ~(uintptr_t)(la_page_size - 1);
  *pb = b & ~(uintptr_t)(la_page_size - 1);
  return *pb > *pa;
}

/* The units the kernel took entirely when it took pages [pa, pb). */
static uint64_t units_given(const la_segment_t *seg, uintptr_t pa, uintptr_t pb) {
  unsigned first = (unsigned)((pa - (uintptr_t)seg + LA_UNIT_SIZE - 1) >> LA_UNIT_SHIFT);
  unsigned last = (unsigned)((pb - (uintptr_t)seg) >> LA_UNIT_SHIFT);
  return last > first ? la_bits_run_mask(first, last - first) : 0;
}

static uint64_t advise_one(uintptr_t pa, uintptr_t pb, const la_segment_t *seg, bool lazy, la_purge_stats_t *st) {
  bool ok = lazy ? la_os_purge_lazy((void *)pa, pb - pa) : la_os_purge((void *)pa, pb - pa);
  st->nmadvise++;
  if (!ok) return 0;
  st->purged += pb - pa;
  return units_given(seg, pa, pb);
}

/* Purged units read as zero and hold no page (MADV_FREE leaves the
 * pages' data until the kernel needs them). */
static void forget_purged(la_segment_t *seg, uint64_t done, bool lazy) {
  if (!lazy)
    for (uint64_t d = done; d; d &= d - 1) seg->resident[__builtin_ctzll(d)] = 0;
}

/* madvise every run of units in `mask`: MADV_FREE if `lazy`, else
 * MADV_DONTNEED.  Returns the units the kernel took entirely, which on
 * kernels with pages larger than a unit may be fewer than asked for, and
 * excludes every run the kernel refused (locked pages under mlockall):
 * those stay resident with their contents, and must not be counted as
 * purged nor taken for zeroed.  Runs without any lock: the caller owns
 * these units for the duration. */
uint64_t la_segment_advise_runs(la_segment_t *seg, uint64_t mask, bool lazy, la_purge_stats_t *st) {
  la_advice_t one = {seg, mask, 0};
  la_segments_advise(&one, 1, lazy, st);
  return one.done;
}

/* la_segment_advise_runs for n segments at once, each run's `done` for
 * its `mask`.  The runs go to the kernel in one call where it takes them
 * (la_os_purge_many), and one by one otherwise or after one it refused. */
#define ADVISE_MAX 64
void la_segments_advise(la_advice_t *runs, unsigned n, bool lazy, la_purge_stats_t *st) {
  struct iovec iov[ADVISE_MAX];
  uint16_t owner[ADVISE_MAX];
  size_t nr = 0;
  for (unsigned i = 0; i < n; i++) {
    runs[i].done = 0;
    for (uint64_t todo = runs[i].mask; todo;) {
      unsigned start = (unsigned)__builtin_ctzll(todo);
      uint64_t rest = ~(todo >> start);
      unsigned len = rest ? (unsigned)__builtin_ctzll(rest) : LA_UNITS - start;
      todo &= ~la_bits_run_mask(start, len);
      uintptr_t pa, pb;
      if (!run_pages(runs[i].seg, start, len, &pa, &pb)) continue;
      if (nr == ADVISE_MAX) {   /* the batch is full: this one alone */
        runs[i].done |= advise_one(pa, pb, runs[i].seg, lazy, st);
        continue;
      }
      iov[nr] = (struct iovec){(void *)pa, pb - pa};
      owner[nr++] = (uint16_t)i;
    }
  }
  size_t given = nr > 1 ? la_os_purge_many(iov, nr, lazy) : 0;   /* one run: a plain madvise */
  if (given) st->nmadvise++;   /* one call for them all */
  for (size_t r = 0; r < nr; r++) {
    uintptr_t pa = (uintptr_t)iov[r].iov_base, pb = pa + iov[r].iov_len;
    la_segment_t *seg = runs[owner[r]].seg;
    if (r < given) {
      st->purged += pb - pa;
      runs[owner[r]].done |= units_given(seg, pa, pb);
    } else {
      runs[owner[r]].done |= advise_one(pa, pb, seg, lazy, st);
    }
  }
  for (unsigned i = 0; i < n; i++) {
    runs[i].done &= runs[i].mask;
    forget_purged(runs[i].seg, runs[i].done, lazy);
  }
}

/* ---- resident pages of units ----------------------------------------------
 * Pages are numbered from the segment's start; unit u holds pages
 * u * per_unit .. (u + 1) * per_unit - 1. */

static unsigned pages_per_unit(void) {
  return la_page_size >= LA_UNIT_SIZE ? 1 : (unsigned)(LA_UNIT_SIZE / la_page_size);
}

/* Units with a page resident (the kernel's word, mincore), all of them if
 * it will not say: for a segment made of a recycled huge region, whose
 * program may have written only part of it. */
uint64_t la_segment_resident_units(const la_segment_t *seg) {
  unsigned char vec[LA_SEG_SIZE / 4096];
  if (la_os_resident_pages(seg, LA_SEG_SIZE, vec, sizeof vec) == (size_t)-1) return ~(uint64_t)0;
  unsigned span = la_page_size > LA_UNIT_SIZE ? (unsigned)(la_page_size >> LA_UNIT_SHIFT) : 1;
  uint64_t units = 0;
  for (size_t p = 0; p < LA_SEG_SIZE / la_page_size; p++)
    if (vec[p] & 1) units |= la_bits_run_mask((unsigned)((p * la_page_size) >> LA_UNIT_SHIFT), span);
  return units;
}

/* [addr, addr + len) was written: its pages may be resident. */
void la_segment_touch(la_segment_t *seg, const void *addr, size_t len) {
  unsigned per_unit = pages_per_unit();
  size_t first = ((uintptr_t)addr - (uintptr_t)seg) / la_page_size;
  size_t last = ((uintptr_t)addr + len - 1 - (uintptr_t)seg) / la_page_size;
  for (size_t p = first; p <= last; p++) seg->resident[p / per_unit] |= (uint16_t)(1u << (p % per_unit));
}

/* Pages of units [unit, unit + k) that may be resident, bit 0 the first
 * page of `unit`; k units must hold at most 64 pages. */
uint64_t la_segment_resident(const la_segment_t *seg, unsigned unit, unsigned k) {
  unsigned per_unit = pages_per_unit();
  uint64_t pages = 0;
  for (unsigned i = 0; i < k; i++) pages |= (uint64_t)seg->resident[unit + i] << (i * per_unit);
  return pages;
}

/* Those pages (as la_segment_resident numbers them) were purged. */
void la_segment_forget(la_segment_t *seg, unsigned unit, unsigned k, uint64_t pages) {
  unsigned per_unit = pages_per_unit();
  for (unsigned i = 0; i < k; i++) seg->resident[unit + i] &= (uint16_t)~(pages >> (i * per_unit));
}

/* No slab in the segment (units the purger holds do not count). */
bool la_segment_is_empty(const la_segment_t *seg) {
  return (seg->used_units & ~seg->purging_units) == 1;
}
