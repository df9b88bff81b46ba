/* thp.c - transparent huge pages for heap memory (liballoc preloaded):
 *   thp always   (ALLOC_CONF=thp:always): AnonHugePages appear;
 *   thp never    (ALLOC_CONF=thp:never): none do;
 *   thp live     (no option): alloc_ctl("opt.thp", "always") at run time,
 *                then new heap memory gets huge pages;
 *   thp grow     (thp:default, the system's THP on request, `madvise`): a
 *                block realloc grows into the huge sizes asks for huge
 *                pages (its mapping's VmFlags show "hg"), a block malloc
 *                hands out does not, nor does a block made of a freed
 *                grown one, nor the part a grown block's shrink gives back;
 *   thp grow-never (thp:never): a grown block does not ask either.
 * Skipped (exit 77) when the system has THP off (grow: unless on request). */
#include <dlfcn.h>
#include <stdint.h>
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

/* Does the system give huge pages only to memory that asks (madvise)? */
static int thp_on_request(void) {
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  char line[128] = "";
  if (f) {
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    fclose(f);
  }
  return strstr(line, "[madvise]") != NULL;
}

/* Whether the mapping holding p has VmFlags `flag` (/proc/self/smaps): 1,
 * 0, or -1 when p is not mapped. */
static int vma_has_flag(const void *p, const char *flag) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return -1;
  char line[512];
  int in = 0, found = -1;
  uintptr_t at = (uintptr_t)p;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = at >= lo && at < hi;
    } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
      char want[8];
      snprintf(want, sizeof want, " %s", flag);
      found = strstr(line + 7, want) != NULL;
      break;
    }
  }
  fclose(f);
  return found;
}

/* A block grown by realloc 1 MiB at a time to `mib` MiB, every page written. */
static char *grow_block(size_t mib) {
  char *p = NULL;
  for (size_t n = 1; n <= mib; n++) {
    char *q = realloc(p, n * BLOCK);
    if (!q) return p;
    p = q;
    memset(p + (n - 1) * BLOCK, 5, BLOCK);
  }
  return p;
}

static int check(int ok, const char *what, int *failed) {
  printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  *failed += !ok;
  return ok;
}

static int grow_modes(int never) {
  if (!never && !thp_on_request()) {
    printf("SKIP: the system's THP is not on request (madvise)\n");
    return 77;
  }
  int failed = 0;
  char *plain = malloc(32 * BLOCK);
  memset(plain, 7, 32 * BLOCK);
  check(vma_has_flag(plain, "hg") == 0, "a block malloc hands out does not ask for huge pages", &failed);
  char *grown = grow_block(32);
  if (never) {
    check(vma_has_flag(grown, "hg") == 0, "thp:never: a grown block does not ask", &failed);
  } else {
    check(vma_has_flag(grown, "hg") == 1, "a block realloc grows asks for huge pages", &failed);
    printf("AnonHugePages %ld kB (the kernel's to give)\n", smaps_rollup_kb("AnonHugePages"));
    char *shrunk = realloc(grown, 4 * BLOCK);   /* its tail goes back to the cache */
    check(vma_has_flag(shrunk + 16 * BLOCK, "hg") != 1, "what a grown block's shrink gives back does not", &failed);
    free(shrunk);
    char *again = malloc(32 * BLOCK);   /* made of freed mappings */
    memset(again, 9, 32 * BLOCK);
    check(vma_has_flag(again, "hg") == 0, "a block made of a freed grown one does not", &failed);
    free(again);
  }
  free(plain);
  printf("%d passed, %d failed\n", never ? 2 - failed : 5 - failed, failed);
  return failed ? 1 : 0;
}

static int report(int ok, const char *what) {
  printf("%s: AnonHugePages %ld kB\n%d passed, %d failed\n", what, smaps_rollup_kb("AnonHugePages"), ok,
         !ok);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "grow") == 0) return thp_available() ? grow_modes(0) : 77;
  if (argc >= 2 && strcmp(argv[1], "grow-never") == 0) return thp_available() ? grow_modes(1) : 77;
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
