/* conformance.c - entry point of the malloc API conformance tests: finds out
 * whether liballoc is the active allocator, then runs the test groups of
 * test_basic.c, test_aligned.c, test_liballoc.c and test_invalid_free.c.  Also holds the helpers
 * declared in conformance.h.
 *
 * Usage: conformance [--require-liballoc]
 * Exit status 0 when no test failed (skips do not count). */
#include "conformance.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(ALLOC_TEST_DIRECT) || defined(ALLOC_TEST_LINKED)
#include <alloc.h>
#endif

struct conf_api conf;

/* dlsym returns void *; POSIX guarantees it converts to a function pointer,
 * ISO C does not, so copy the bits instead of casting. */
#if !defined(ALLOC_TEST_DIRECT) && !defined(ALLOC_TEST_LINKED)
static void lookup(const char *name, void *fnptr, size_t fnsize) {
  void *sym = dlsym(RTLD_DEFAULT, name);
  memcpy(fnptr, &sym, fnsize);
}
#endif

void conf_detect(bool require_active) {
  conf.required = require_active;
#if defined(ALLOC_TEST_DIRECT) || defined(ALLOC_TEST_LINKED)
  /* Linked in: the extensions are ours.  Whether malloc itself really
   * reaches liballoc is checked by liballoc_serves_malloc. */
  conf.active = true;
  conf.ctl = alloc_ctl;
  conf.stats_print = alloc_stats_print;
  conf.fn_free_sized = free_sized;
  conf.fn_free_aligned_sized = free_aligned_sized;
#else
  /* alloc_ctl is visible in the global scope only when liballoc.so was
   * preloaded.  free_sized may also come from a C23-capable libc. */
  lookup("alloc_ctl", &conf.ctl, sizeof conf.ctl);
  lookup("alloc_stats_print", &conf.stats_print, sizeof conf.stats_print);
  lookup("free_sized", &conf.fn_free_sized, sizeof conf.fn_free_sized);
  lookup("free_aligned_sized", &conf.fn_free_aligned_sized, sizeof conf.fn_free_aligned_sized);
  conf.active = conf.ctl != NULL;
#endif
}

void conf_need_liballoc(void) {
  if (conf.active) return;
  if (conf.required) fail_msg("liballoc is not the active allocator (alloc_ctl not found)");
  skip();
}

void conf_need_kernel_to_take_memory(void) {
  const char *faults = getenv("ALLOC_FAULTS");
  if (!faults || !*faults) return;
  print_message("  skipped: the kernel refuses calls in this run (ALLOC_FAULTS=%s)\n", faults);
  skip();
}

void conf_glibc_deviation(const char *why) {
  if (conf.active) return;
  print_message("  skipped under the system allocator: %s\n", why);
  skip();
}

size_t conf_stats_allocated(void) {
  size_t value = 0, len = sizeof value;
  assert_non_null(conf.ctl);
  assert_int_equal(conf.ctl("stats.allocated", &value, &len, NULL, 0), 0);
  assert_int_equal(len, sizeof value);
  return value;
}

size_t opaque(size_t x) {
  volatile size_t v = x;
  return v;
}

void *volatile conf_sink;

void *keep(void *p) {
  conf_sink = p;
  return p;
}

/* Mixes in higher bits of the index so that the pattern does not repeat
 * every 256 bytes: a block copied with a 256-byte shift must not match. */
static inline unsigned char pattern_byte(size_t i, unsigned seed) {
  return (unsigned char)(seed * 29u + i + (i >> 8) * 7u + (i >> 16) * 13u + (i >> 24) * 31u);
}

void fill_pattern(void *p, size_t n, unsigned seed) {
  unsigned char *b = p;
  for (size_t i = 0; i < n; i++) b[i] = pattern_byte(i, seed);
}

size_t find_pattern_mismatch(const void *p, size_t n, unsigned seed) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != pattern_byte(i, seed)) return i;
  return SIZE_MAX;
}

bool all_bytes_are(const void *p, size_t n, unsigned char v) {
  const unsigned char *b = p;
  /* Branch-free inner loop (vectorisable), early exit per 4 KiB chunk:
   * checking 64 MiB must stay fast even in unoptimised builds. */
  for (size_t off = 0; off < n; off += 4096) {
    size_t end = n - off < 4096 ? n : off + 4096;
    unsigned char acc = 0;
    for (size_t i = off; i < end; i++) acc |= (unsigned char)(b[i] ^ v);
    if (acc) return false;
  }
  return true;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--invalid-free") == 0) return conf_invalid_free_child(argv[2], argv[3]);
  bool require = false;
#ifdef ALLOC_TEST_REQUIRE_ACTIVE
  require = true;
#endif
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--require-liballoc") == 0) {
      require = true;
    } else {
      fprintf(stderr, "usage: %s [--require-liballoc]\n", argv[0]);
      return 2;
    }
  }
  conf_detect(require);
  printf("allocator under test: %s%s\n", conf.active ? "liballoc" : "system (liballoc not active)",
         require ? " [liballoc required]" : "");
  fflush(stdout);

  int failed = 0;
  failed += conf_run_basic_tests();
  failed += conf_run_aligned_tests();
  failed += conf_run_liballoc_tests();
  failed += conf_run_invalid_free_tests();
  return failed ? 1 : 0;
}
