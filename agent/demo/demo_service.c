/* demo_service.c - a long-running program with an allocation pattern worth
 * watching: it fills its heap with one size range, frees most of it at
 * random (fragmentation), idles (decay returns the free pages), then moves
 * to another size range, forever.  scripts/demo runs it with liballoc
 * preloaded beside allocd.  usage: demo_service [seed] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { SLOTS = 200000 };

static void phase(void **slot, unsigned *seed, size_t lo, size_t hi, const char *name) {
  printf("demo_service %d: %s (%zu-%zu bytes)\n", (int)getpid(), name, lo, hi);
  fflush(stdout);
  for (int i = 0; i < SLOTS; i++) {   /* fill */
    free(slot[i]);
    size_t size = lo + (size_t)rand_r(seed) % (hi - lo + 1);
    slot[i] = malloc(size);
    if (slot[i]) memset(slot[i], i, size < 64 ? size : 64);
  }
  sleep(5);
  for (int i = 0; i < SLOTS; i++)     /* free 85% at random: the survivors pin their pages */
    if (rand_r(seed) % 100 < 85) {
      free(slot[i]);
      slot[i] = NULL;
    }
  sleep(15);                           /* idle: decay gives the free pages back */
}

int main(int argc, char **argv) {
  unsigned seed = argc > 1 ? (unsigned)atoi(argv[1]) : (unsigned)time(NULL);
  void **slot = calloc(SLOTS, sizeof *slot);
  if (!slot) return 1;
  for (;;) {
    phase(slot, &seed, 16, 256, "small objects");
    phase(slot, &seed, 1024, 8192, "medium objects");
    phase(slot, &seed, 200, 600, "strings");
  }
}
