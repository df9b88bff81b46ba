/* fuzz_options.c - libFuzzer target: ALLOC_CONF parsing (options.c) on any
 * string.  Bad entries must be warned about and skipped, never crash. */
#include "alloc_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *conf = malloc(size + 1);
  if (!conf) return 0;
  memcpy(conf, data, size);
  conf[size] = 0;
  la_options_t o;
  la_options_defaults(&o);
  la_options_parse(&o, conf);
  free(conf);
  return 0;
}
