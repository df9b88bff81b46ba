/* segmap.c - the map from 4 MiB regions of the address space to their owner.
 *
 * One byte per region of the 47-bit user address space: 32 MiB of
 * zero-initialised, untouched .bss, of which only the pages covering regions
 * we actually use ever become resident (one 4 KiB page of map per 16 GiB of
 * address space).  free() reads it before anything else, so a pointer that
 * liballoc never handed out (from the dynamic loader's early allocator, from
 * another allocator, or garbage) is recognised instead of being followed.
 *
 * Entries are written under the lock of whoever maps or unmaps the region
 * (arena or huge lock) and read without one: a thread only looks up pointers
 * it legitimately holds, and holding one orders the read after the write. */
#include "alloc_internal.h"

uint8_t la_segmap[LA_MAP_SIZE] LA_BULK;

void la_segmap_set(void *base, size_t size, enum la_map_kind kind) {
  uintptr_t first = (uintptr_t)base >> LA_SEG_SHIFT;
  uintptr_t last = ((uintptr_t)base + size - 1) >> LA_SEG_SHIFT;
  for (uintptr_t r = first; r <= last && r < LA_MAP_SIZE; r++)
    __atomic_store_n(&la_segmap[r], (uint8_t)kind, __ATOMIC_RELEASE);
}
