/* glibc_shim.c - a preloadable library whose malloc family is glibc's.
 *
 * Why: some programs link another allocator themselves - Debian's
 * redis-server links libjemalloc - so running them with no preload does not
 * give the glibc baseline.  Preloading this library does: it defines every
 * allocation entry point ahead of the program's own allocator and forwards
 * each to glibc's implementation through the __libc_* aliases glibc exports
 * for exactly this purpose.  bench/run uses it for the glibc runs of such
 * programs only; plain programs get glibc by running without a preload.
 *
 * Nothing else: no state, no statistics, one tail call per entry point.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

EXPORT void *malloc(size_t size) { return __libc_malloc(size); }
EXPORT void free(void *ptr) { __libc_free(ptr); }
EXPORT void cfree(void *ptr) { __libc_free(ptr); }
EXPORT void *calloc(size_t count, size_t size) { return __libc_calloc(count, size); }
EXPORT void *realloc(void *ptr, size_t size) { return __libc_realloc(ptr, size); }
EXPORT void *memalign(size_t alignment, size_t size) { return __libc_memalign(alignment, size); }
EXPORT void *valloc(size_t size) { return __libc_valloc(size); }
EXPORT void *pvalloc(size_t size) { return __libc_pvalloc(size); }

EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
    return __libc_memalign(alignment, size);
}

/* posix_memalign has no __libc_ alias: check its argument rules here (a
 * power of two, a multiple of sizeof(void *)) and use memalign. */
EXPORT int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0)
        return EINVAL;
    void *p = __libc_memalign(alignment, size);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

/* No __libc_ alias either: look glibc's own up in libc.so.6 itself (not
 * with RTLD_NEXT, which could find the program's other allocator first). */
EXPORT size_t malloc_usable_size(void *ptr)
{
    static size_t (*glibc_usable_size)(void *);
    if (!glibc_usable_size) {
        void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
        if (libc)
            glibc_usable_size = (size_t (*)(void *))dlsym(libc, "malloc_usable_size");
        if (!glibc_usable_size)
            return 0;
    }
    return glibc_usable_size(ptr);
}
