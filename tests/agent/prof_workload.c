/* prof_workload - known call sites for the heap profile end to end (run
 * with liballoc preloaded and ALLOC_CONF=prof:true), built like a
 * distribution binary (-O2, no frame pointers, with DWARF):
 *   keep_64mib   allocates 64 MiB (1 MiB blocks) and keeps it
 *   churn        allocates 1 GiB in 256-byte blocks, freeing each at once
 *   fill_small   fills 100 MiB with 64-byte blocks, then frees 95% of them
 *                at random: the survivors pin most of their slabs
 * then prints "ready PID INUSE" (the bytes it holds) and waits until its
 * stdin closes (or, given "exit", exits at once). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define MIB (1u << 20)

static void *volatile sink;

static NOINLINE void **keep_64mib(void) {
  void **blocks = calloc(64, sizeof *blocks);
  for (int i = 0; i < 64; i++) {
    blocks[i] = malloc(MIB);
    memset(blocks[i], 1, MIB);
  }
  return blocks;
}

static NOINLINE void churn(void) {
  for (size_t i = 0; i < ((size_t)1 << 30) / 256; i++) {
    char *p = malloc(256);
    p[0] = (char)i;
    sink = p;
    free(p);
  }
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return rng;
}

/* Returns the bytes it keeps. */
static NOINLINE size_t fill_small(void ***kept_out) {
  size_t n = 100u * MIB / 64, kept = 0;
  void **blocks = malloc(n * sizeof *blocks);
  for (size_t i = 0; i < n; i++) {
    blocks[i] = malloc(64);
    ((char *)blocks[i])[0] = 1;
  }
  for (size_t i = 0; i < n; i++) {
    if (next_random() % 100 < 95) {
      free(blocks[i]);
      blocks[i] = NULL;
    } else {
      kept++;
    }
  }
  *kept_out = blocks;
  return kept * 64 + n * sizeof *blocks;   /* and the array of them */
}

int main(void) {
  void **big = keep_64mib();
  churn();
  void **small;
  size_t small_bytes = fill_small(&small);
  printf("ready %d %zu\n", (int)getpid(), (size_t)64 * MIB + 64 * sizeof *big + small_bytes);
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin))
    if (strncmp(line, "exit", 4) == 0) break;
  sink = big;
  sink = small;
  return 0;
}
