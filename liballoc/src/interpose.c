/* interpose.c - the exported malloc family.
 *
 * Every allocation entry point a glibc program can reach is defined here,
 * in one object file: linking liballoc.a pulls all of them in as soon as the
 * program uses any, and LD_PRELOAD=liballoc.so interposes all of them at
 * once.  The __libc_* names are covered too, for code that calls glibc's
 * internal names directly; if one entry point were still missed, free()
 * recognises a pointer that is not ours and hands it to glibc (alloc.c).
 * C++ operator new/delete in libstdc++ call malloc/free and so come here.
 * The allocating names jump through la_entry (sample.c), which holds the
 * la_* functions, or their sampled versions while the heap profiler runs:
 * one indirect jump, as many instructions as the direct one it replaced. */
#include "alloc_internal.h"

#include <alloc.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>

LA_EXPORT void *malloc(size_t size) { return la_entry.malloc(size); }
LA_EXPORT void free(void *p) { la_free(p); }
LA_EXPORT void *calloc(size_t n, size_t size) { return la_entry.calloc(n, size); }
LA_EXPORT void *realloc(void *p, size_t size) { return la_entry.realloc(p, size); }
LA_EXPORT void *reallocarray(void *p, size_t n, size_t size) { return la_entry.reallocarray(p, n, size); }
LA_EXPORT int posix_memalign(void **out, size_t align, size_t size) { return la_entry.posix_memalign(out, align, size); }
LA_EXPORT void *aligned_alloc(size_t align, size_t size) { return la_entry.aligned_alloc(align, size); }
LA_EXPORT void *memalign(size_t align, size_t size) { return la_entry.memalign(align, size); }
LA_EXPORT void *valloc(size_t size) { return la_entry.valloc(size); }
LA_EXPORT void *pvalloc(size_t size) { return la_entry.pvalloc(size); }
LA_EXPORT size_t malloc_usable_size(void *p) { return la_malloc_usable_size(p); }
LA_EXPORT int malloc_trim(size_t pad) { return la_malloc_trim(pad); }
LA_EXPORT void free_sized(void *p, size_t size) { la_free_sized(p, size); }
LA_EXPORT void free_aligned_sized(void *p, size_t align, size_t size) { la_free_aligned_sized(p, align, size); }

/* Old and internal glibc names. */
LA_EXPORT void cfree(void *p) { la_free(p); }
LA_EXPORT void *__libc_malloc(size_t size) { return la_entry.malloc(size); }
LA_EXPORT void __libc_free(void *p) { la_free(p); }
LA_EXPORT void *__libc_calloc(size_t n, size_t size) { return la_entry.calloc(n, size); }
LA_EXPORT void *__libc_realloc(void *p, size_t size) { return la_entry.realloc(p, size); }
LA_EXPORT void *__libc_memalign(size_t align, size_t size) { return la_entry.memalign(align, size); }
LA_EXPORT void *__libc_valloc(size_t size) { return la_entry.valloc(size); }
LA_EXPORT void *__libc_pvalloc(size_t size) { return la_entry.pvalloc(size); }
LA_EXPORT int __posix_memalign(void **out, size_t align, size_t size) { return la_entry.posix_memalign(out, align, size); }

/* glibc's introspection calls, answered from liballoc's statistics so that
 * programs which print them keep working. */
LA_EXPORT struct mallinfo2 mallinfo2(void) {
  la_stats_t st;
  la_stats_gather(&st);
  struct mallinfo2 mi;
  memset(&mi, 0, sizeof mi);
  mi.arena = st.s.mapped;
  mi.hblks = st.s.huge_blocks;
  mi.hblkhd = st.s.huge_allocated;
  mi.uordblks = st.s.allocated;
  mi.fordblks = st.s.mapped > st.s.allocated ? st.s.mapped - st.s.allocated : 0;
  mi.keepcost = st.s.dirty;
  return mi;
}

LA_EXPORT struct mallinfo mallinfo(void) {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo mi;
  memset(&mi, 0, sizeof mi);
  mi.arena = (int)m2.arena;
  mi.hblks = (int)m2.hblks;
  mi.hblkhd = (int)m2.hblkhd;
  mi.uordblks = (int)m2.uordblks;
  mi.fordblks = (int)m2.fordblks;
  mi.keepcost = (int)m2.keepcost;
  return mi;
}

/* glibc tuning knobs have no meaning here; accepted so callers carry on. */
LA_EXPORT int mallopt(int param, int value) {
  (void)param;
  (void)value;
  return 1;
}

LA_EXPORT void malloc_stats(void) { alloc_stats_print(NULL, NULL, NULL); }

LA_EXPORT int malloc_info(int options, FILE *fp) {
  if (options != 0 || !fp) return -1;
  la_stats_t st;
  la_stats_gather(&st);
  fprintf(fp, "<malloc version=\"liballoc-%s\">\n<total type=\"allocated\" size=\"%zu\"/>\n"
              "<total type=\"active\" size=\"%zu\"/>\n<total type=\"mapped\" size=\"%zu\"/>\n</malloc>\n",
          ALLOC_VERSION_STRING, (size_t)st.s.allocated, (size_t)st.s.active, (size_t)st.s.mapped);
  return 0;
}
