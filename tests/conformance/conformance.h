/* conformance.h - shared helpers of the malloc API conformance test program.
 *
 * The program is built in three ways (tests/conformance/CMakeLists.txt):
 *   preload  plain executable run with LD_PRELOAD=liballoc.so; liballoc's
 *            extension functions are found with dlsym, never linked.
 *   static   linked with liballoc.a (ALLOC_TEST_LINKED): extensions are
 *            called directly.
 *   direct   the sanitizer build (ALLOC_TEST_DIRECT, tests/common/direct.h
 *            renames malloc & co. to la_malloc & co.): always liballoc.
 * Built with plain gcc and no define, it runs against glibc: the generic
 * tests must pass and the liballoc-only tests skip.
 *
 * ALLOC_TEST_REQUIRE_ACTIVE (or the --require-liballoc argument) turns
 * "liballoc is not the allocator" from a skip into a failure, so a broken
 * LD_PRELOAD or static link cannot make the suite pass vacuously. */
#ifndef CONFORMANCE_H
#define CONFORMANCE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Signatures of liballoc's extensions (liballoc/include/alloc.h).  They are
 * repeated here because the preload variant must not need liballoc at build
 * time; the linked variants assign the real functions to these types, so a
 * mismatch with alloc.h is a compile error there. */
typedef int (*conf_ctl_fn)(const char *name, void *oldp, size_t *oldlenp,
                           void *newp, size_t newlen);
typedef void (*conf_write_cb)(void *cbopaque, const char *text);
typedef void (*conf_stats_print_fn)(conf_write_cb cb, void *cbopaque, const char *opts);
typedef void (*conf_free_sized_fn)(void *ptr, size_t size);
typedef void (*conf_free_aligned_sized_fn)(void *ptr, size_t alignment, size_t size);

/* Filled once by conf_detect() before any test runs.  NULL members are
 * functions the active allocator does not provide. */
struct conf_api {
  bool active;                      /* liballoc serves malloc & co. */
  bool required;                    /* not active is a failure, not a skip */
  conf_ctl_fn ctl;
  conf_stats_print_fn stats_print;
  conf_free_sized_fn fn_free_sized;
  conf_free_aligned_sized_fn fn_free_aligned_sized;
};
extern struct conf_api conf;

void conf_detect(bool require_active);

/* Return when liballoc is active; otherwise skip the calling test, or fail it
 * when the build requires liballoc.  Call at the top of liballoc-only tests. */
void conf_need_liballoc(void);

/* For a generic check on which glibc 2.36 is known to deviate from the
 * contract liballoc implements: skip with `why` unless liballoc is active,
 * so the check stays strict for liballoc and the glibc baseline run stays
 * meaningful for everything else. */
void conf_glibc_deviation(const char *why);

/* For a check that memory goes back to the kernel: skip it when the run
 * makes the kernel refuse (ALLOC_FAULTS, tests/CMakeLists.txt), where
 * keeping the memory is the right answer. */
void conf_need_kernel_to_take_memory(void);

/* stats.allocated through alloc_ctl; fails the test if it cannot be read.
 * Only call after conf_need_liballoc(). */
size_t conf_stats_allocated(void);

/* Hide a value from the optimiser: sizes such as SIZE_MAX reach the
 * allocator at run time (no -Walloc-size-larger-than, no folding). */
size_t opaque(size_t x);

/* Keep a pointer alive from the compiler's point of view, so that an
 * allocation whose result is otherwise unused is not removed. */
void *keep(void *p);

/* Deterministic, non-periodic byte pattern: byte i of pattern `seed`.  Used to
 * detect lost, shifted or overwritten bytes after realloc and neighbouring
 * writes. */
void fill_pattern(void *p, size_t n, unsigned seed);
/* Index of the first byte that differs from the pattern, or SIZE_MAX. */
size_t find_pattern_mismatch(const void *p, size_t n, unsigned seed);
/* True when all n bytes equal v. */
bool all_bytes_are(const void *p, size_t n, unsigned char v);

static inline bool is_aligned(const void *p, size_t align) {
  return ((uintptr_t)p & (align - 1)) == 0;
}

/* Groups, one per source file; each returns its number of failed tests. */
int conf_run_basic_tests(void);
int conf_run_aligned_tests(void);
int conf_run_liballoc_tests(void);
int conf_run_invalid_free_tests(void);

/* The child side of test_invalid_free.c (argv: --invalid-free CASE SIZE). */
int conf_invalid_free_child(const char *what, const char *size);

#endif /* CONFORMANCE_H */
