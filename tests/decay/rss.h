/* rss.h - what the real-time decay and THP tests read from /proc. */
#ifndef ALLOC_TESTS_RSS_H
#define ALLOC_TESTS_RSS_H
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Resident bytes of this process, from /proc/self/statm. */
static inline size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    fclose(f);
  }
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* A field of /proc/self/smaps_rollup in kB, or -1. */
static inline long smaps_rollup_kb(const char *field) {
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  if (!f) return -1;
  char line[256];
  long kb = -1;
  size_t len = strlen(field);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, len) == 0 && line[len] == ':') {
      sscanf(line + len + 1, "%ld", &kb);
      break;
    }
  fclose(f);
  return kb;
}
#endif
