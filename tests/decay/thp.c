/* thp.c - transparent huge pages for heap memory (liballoc preloaded):
 *   thp always   (ALLOC_CONF=thp:always): AnonHugePages appear;
 *   thp never    (ALLOC_CONF=thp:never): none do;
 *   thp live     (no option): alloc_ctl("opt.thp", "always") at run time,
 *                then new heap memory gets huge pages.
 * Skipped (exit 77) when the system has THP off. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rss.h"

#define BLOCKS 64
#define BLOCK ((size_t)1 << 20)

typedef int (*ctl_fn)(const char *, void *, size_t *, void *, size_t);

static int thp_available(void) {
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (!f) return 0;
  char line[128] = "";
  if (!fgets(line, sizeof line, f)) line[0] = 0;
  fclose(f);
  return strstr(line, "[never]") == NULL && line[0] != 0;
}

/* 64 MiB of 1 MiB blocks, every page written; kept live. */
static void touch_heap(void) {
  for (int i = 0; i < BLOCKS; i++) memset(malloc(BLOCK), 3, BLOCK);
}

static int report(int ok, const char *what) {
  printf("%s: AnonHugePages %ld kB\n%d passed, %d failed\n", what, smaps_rollup_kb("AnonHugePages"), ok,
         !ok);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  if (!thp_available()) {
    printf("SKIP: transparent huge pages are off on this system\n");
    return 77;
  }
  ctl_fn ctl = (ctl_fn)dlsym(RTLD_DEFAULT, "alloc_ctl");
  if (!ctl || argc < 2) return report(0, "liballoc not preloaded, or no mode");
  if (strcmp(argv[1], "live") == 0) {
    const char *mode = "always";
    if (ctl("opt.thp", NULL, NULL, &mode, sizeof mode) != 0) return report(0, "alloc_ctl refused");
  }
  touch_heap();
  long kb = smaps_rollup_kb("AnonHugePages");
  if (strcmp(argv[1], "never") == 0) return report(kb == 0, "thp:never");
  return report(kb > 0, argv[1]);
}
