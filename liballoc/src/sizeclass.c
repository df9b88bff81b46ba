/* sizeclass.c - the size classes and the shape of their slabs.
 *
 * Classes: 8, 16, 32, 48, ..., 128 (steps of 16), then four per doubling,
 * 160, 192, 224, 256, 320, ... up to 2 MiB, and from 1 KiB to 8 KiB a fifth
 * just above the power of two (1040, 2304, 4608, 9216).  For each class we
 * pick the smallest slab (in 64 KiB units) whose tail waste is at most 1/64
 * of the slab (about 1.5%), up to 32 units, and for blocks of up to 16 KiB
 * one of 16 to 32 blocks at least (below); a class whose best slab holds a
 * single block is "large": it is served by the arena directly, since there
 * is nothing for a thread to cache in a one-block slab.
 *
 * The tables are computed once at start-up (a few microseconds) rather than
 * written out, so the rules above are the single source of truth. */
#include "alloc_internal.h"

#include <string.h>

uint8_t la_class_direct_first[LA_NCLASSES], la_class_direct_last[LA_NCLASSES];
size_t la_class_size[LA_NCLASSES];
uint8_t la_class_units[LA_NCLASSES];
uint32_t la_class_capacity[LA_NCLASSES];
bool la_class_large[LA_NCLASSES];
uint8_t la_class_by_8[LA_SMALL_LUT_MAX >> 3];
uint8_t la_class_by_128[LA_CLASS_LUT_MAX >> 7];
uint8_t la_class_by_16k[LA_MAX_CLASS_SIZE >> 14];

/* Doublings 2^k .. 2^(k+1) with a fifth class just above the power of
 * two: a page or a kilobyte plus a header is a common request (sqlite's
 * page cache takes 4096 + 272 bytes, and it asks for 1024 + 8 too), and
 * four per doubling rounded those up by 15-25%.  sqlite3's peak
 * RSS 29.3 -> 27.5 MiB.  The fifth is 2^k + 2^(k-3), except above 1 KiB:
 * 1024 + 16, for the 8- and 16-byte headers, where 1152 rounded sqlite's
 * 9,850 live blocks of 1032 bytes up by 1.2 MB at its peak (27.5 -> 26.4
 * MiB); sizes up to 1152 are looked up by 8-byte steps, so the class need
 * not be a multiple of 128; a sixth class, 1040 beside 1152, saved
 * sqlite3 no more.  Only here: eight classes per doubling everywhere made
 * the programs that use many sizes worse (docs/performance.md, trials). */
#define TIGHT_FROM 10   /* 1040 */
#define TIGHT_TO 13     /* 9216 */

static size_t tight_class(size_t base) { return base == 1024 ? base + 16 : base + (base >> 3); }

static void fill_class_sizes(void) {
  unsigned c = 0;
  /* detect_double_free marks a freed block in its second word. */
  la_class_size[c++] = la_opt.detect_double_free ? 16 : 8;
  for (size_t s = 16; s <= 128; s += 16) la_class_size[c++] = s;
  for (unsigned k = 7; c < LA_NCLASSES; k++) {
    size_t base = (size_t)1 << k;
    if (k >= TIGHT_FROM && k <= TIGHT_TO) la_class_size[c++] = tight_class(base);
    for (unsigned j = 1; j <= 4; j++) la_class_size[c++] = base + j * (base >> 2);
  }
}

/* Slabs of at least MIN_BLOCKS blocks where MIN_BLOCKS_UNITS units allow,
 * else as many as those units hold if that is half of MIN_BLOCKS or more.
 * A slab of few blocks fills and empties all the time, and each time it
 * leaves or rejoins its heap's bin (a list move on the free path) and the
 * next malloc takes the slow path: with 16 blocks of 4 KiB in a 64 KiB slab,
 * a third of the aligned benchmark's allocations did.  The bound keeps such
 * slabs within what la_slab_trim can give back page by page (64 pages). */
#define MIN_BLOCKS 32
#define MIN_BLOCKS_UNITS 4

/* Fewest units in [from, to] with at most 1/64 tail waste (about 1.5%), or
 * with `least`, the units wasting the smallest fraction; 0 if none fits. */
static unsigned slab_units(size_t size, unsigned from, unsigned to, bool least) {
  unsigned best = 0;
  size_t best_waste = 0, best_bytes = 1;
  for (unsigned units = from; units <= to; units++) {
    size_t bytes = units * LA_UNIT_SIZE;
    if (bytes < size) continue;
    size_t waste = bytes % size;
    if (waste * 64 <= bytes) return units;
    if (least && (!best || waste * best_bytes < best_waste * bytes)) {   /* smaller fraction */
      best = units;
      best_waste = waste;
      best_bytes = bytes;
    }
  }
  return best;
}

static void choose_slab(unsigned c) {
  size_t size = la_class_size[c];
  size_t wanted = (MIN_BLOCKS * size + LA_UNIT_SIZE - 1) / LA_UNIT_SIZE;   /* units for MIN_BLOCKS */
  unsigned units = 0;
  if (wanted > 1 && size * (MIN_BLOCKS / 2) <= MIN_BLOCKS_UNITS * LA_UNIT_SIZE)
    units = slab_units(size, wanted < MIN_BLOCKS_UNITS ? (unsigned)wanted : MIN_BLOCKS_UNITS, MIN_BLOCKS_UNITS, false);
  if (!units) units = slab_units(size, 1, LA_MAX_SLAB_UNITS, true);
  la_class_units[c] = (uint8_t)units;
  la_class_capacity[c] = (uint32_t)(units * LA_UNIT_SIZE / size);
  la_class_large[c] = la_class_capacity[c] == 1;
}

/* table[i] = the class of the sizes in (i << shift, (i + 1) << shift], for
 * sizes in (lo, hi], where class sizes are multiples of 1 << shift: each
 * class's run of entries at once (start-up: ~1,000 instructions, where a
 * class worked out per entry took ~13,000). */
static void fill_class_table(uint8_t *table, unsigned shift, size_t lo, size_t hi) {
  for (unsigned c = 1; c < LA_NCLASSES; c++) {
    size_t from = la_class_size[c - 1] > lo ? la_class_size[c - 1] : lo;
    size_t to = la_class_size[c] < hi ? la_class_size[c] : hi;
    if (from < to) memset(table + (from >> shift), (int)c, (to - from) >> shift);
  }
}

void la_sizeclass_init(void) {
  fill_class_sizes();
  for (unsigned c = 0; c < LA_NCLASSES; c++) choose_slab(c);
  fill_class_table(la_class_by_8, 3, 0, LA_SMALL_LUT_MAX);
  fill_class_table(la_class_by_128, 7, LA_SMALL_LUT_MAX, LA_CLASS_LUT_MAX);
  fill_class_table(la_class_by_16k, 14, LA_CLASS_LUT_MAX, LA_MAX_CLASS_SIZE);
  for (size_t i = 0; i <= LA_SMALL_LUT_MAX / 8; i++) {
    unsigned c = la_class_of(i * 8);
    if (i == 0 || la_class_of((i - 1) * 8) != c) la_class_direct_first[c] = (uint8_t)i;   /* monotonic */
    la_class_direct_last[c] = (uint8_t)i;
  }
}

/* A class whose blocks all start at multiples of `align` (a power of two
 * at most LA_UNIT_SIZE): slabs start on unit boundaries, so a class size
 * that is a multiple of align gives aligned blocks.  Powers of two are
 * classes, so the search ends by the next power of two at the latest. */
unsigned la_class_for_aligned(size_t size, size_t align) {
  unsigned c = la_class_of(size > align ? size : align);
  while (la_class_size[c] & (align - 1)) c++;
  return c;
}
