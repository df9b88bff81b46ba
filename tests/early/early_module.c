/* early_module.c - a library loaded with dlopen by early_main.  Its
 * thread-local block is dynamic TLS: glibc allocates it with malloc the
 * first time each thread touches it, from inside __tls_get_addr.  Its
 * constructor allocates while the dynamic loader holds its own locks. */
#include <stdlib.h>
#include <string.h>

static __thread char tls_block[16384];
static char *ctor_block;

__attribute__((constructor)) static void module_init(void) {
  ctor_block = malloc(1000);
  if (ctor_block) memset(ctor_block, 7, 1000);
}

__attribute__((destructor)) static void module_fini(void) {
  free(ctor_block);
}

/* Writes `v` through the thread's TLS block and returns a checksum. */
int module_touch_tls(int v) {
  memset(tls_block, v, sizeof tls_block);
  int sum = 0;
  for (size_t i = 0; i < sizeof tls_block; i += 512) sum += tls_block[i];
  return sum + (ctor_block ? ctor_block[999] : -1000);
}
