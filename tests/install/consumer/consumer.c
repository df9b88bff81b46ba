/* consumer.c - proves that an installed liballoc serves this program's
 * malloc: the allocation shows up in liballoc's own statistics. */
#include <alloc.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  size_t before, after, len = sizeof before;
  if (alloc_ctl("stats.allocated", &before, &len, NULL, 0) != 0) return 1;
  char *volatile p = malloc(1 << 20);
  if (alloc_ctl("stats.allocated", &after, &len, NULL, 0) != 0) return 1;
  free(p);
  if (after < before + (1 << 20)) {
    fprintf(stderr, "malloc did not go through liballoc (%zu -> %zu)\n", before, after);
    return 1;
  }
  printf("liballoc %s serves malloc\n", ALLOC_VERSION_STRING);
  return 0;
}
