/* alloc.h - the public interface of liballoc.
 *
 * liballoc replaces the C allocator: link liballoc.a into a program, or start
 * it with LD_PRELOAD=liballoc.so, and every malloc-family call of the program
 * and of the libraries it loads is served by liballoc.  The standard entry
 * points (malloc, free, calloc, realloc, reallocarray, posix_memalign,
 * aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size, malloc_trim)
 * keep their glibc declarations in <stdlib.h> and <malloc.h>; this header adds
 * the C23 sized frees that glibc 2.36 does not declare yet, and a small
 * extension API for control and statistics.
 *
 * Configuration is read once, at the first allocation, from the environment
 * variable ALLOC_CONF="name:value,name:value" (jemalloc's option names where
 * one exists).  docs/configuration.md lists every option.
 */
#ifndef ALLOC_H
#define ALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ALLOC_VERSION_MAJOR 0
#define ALLOC_VERSION_MINOR 1
#define ALLOC_VERSION_PATCH 0
#define ALLOC_VERSION_STRING "0.1.0"

/* C23 sized deallocation.  `size` must be the size that was requested (or any
 * value between it and malloc_usable_size); `alignment` the alignment that
 * was requested from aligned_alloc.  Both behave like free(ptr). */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

/* Read and/or write one control value by its dotted name, with the semantics
 * of jemalloc's mallctl():
 *   - to read, pass oldp and *oldlenp == sizeof the value; on return *oldlenp
 *     holds the size written.  oldp == NULL skips the read.
 *   - to write, pass newp and newlen == sizeof the value.  newp == NULL skips
 *     the write.  A write and a read in one call return the value as it was
 *     before the write.
 * Returns 0 on success or an errno value:
 *   ENOENT  no such name;
 *   EINVAL  a length does not match the value's type, or the value is invalid;
 *   EPERM   the value cannot be written (read-only, or not changeable while
 *           the process runs);
 *   EFAULT  the value could not be produced.
 * The names, their types and whether they are writable are listed in
 * docs/api.md.  Examples:
 *   size_t allocated, len = sizeof allocated;
 *   alloc_ctl("stats.allocated", &allocated, &len, NULL, 0);
 *   alloc_ctl("arena.purge", NULL, NULL, NULL, 0);      // return free pages now
 */
int alloc_ctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);

/* Print allocator statistics through write_cb(cbopaque, text) in pieces, or
 * to stderr when write_cb is NULL.  opts: NULL or "" for human-readable text,
 * "J" for one JSON object.  It does not allocate, so it is safe to call from
 * a signal-free context at any time, including from inside write_cb-free
 * paths such as atexit handlers. */
void alloc_stats_print(void (*write_cb)(void *cbopaque, const char *text),
                       void *cbopaque, const char *opts);

#ifdef __cplusplus
}
#endif

#endif /* ALLOC_H */
