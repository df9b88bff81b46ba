/* direct.h - force-included (-include) into tests of the sanitizer build.
 *
 * Under ASan the process allocator belongs to ASan, so liballoc cannot be
 * interposed.  This header renames the malloc family in the including test to
 * liballoc's internal entry points, so the test exercises liballoc's logic
 * while ASan and UBSan watch the allocator's own code.  The renaming happens
 * before <stdlib.h> is read, so the system declarations become declarations
 * of the la_* functions, which have the same signatures. */
#ifndef ALLOC_TESTS_DIRECT_H
#define ALLOC_TESTS_DIRECT_H
#define ALLOC_TEST_DIRECT 1
#define malloc la_entry_malloc
#define free la_free
#define calloc la_entry_calloc
#define realloc la_entry_realloc
#define reallocarray la_entry_reallocarray
#define posix_memalign la_entry_posix_memalign
#define aligned_alloc la_entry_aligned_alloc
#define memalign la_entry_memalign
#define valloc la_entry_valloc
#define pvalloc la_entry_pvalloc
#define malloc_usable_size la_malloc_usable_size
#define malloc_trim la_malloc_trim
#define free_sized la_free_sized
#define free_aligned_sized la_free_aligned_sized
#endif
