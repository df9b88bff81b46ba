/* duration.c - durations as operators write them (duration.h). */
#include "duration.h"

#include <errno.h>
#include <stdlib.h>

/* "90s", "15m", "2h", "7d", or plain seconds, as milliseconds. */
bool parse_duration(const char *s, int64_t *ms) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || v <= 0) return false;
  int64_t unit = 1000;
  if (*end == 'm') unit = 60000;
  else if (*end == 'h') unit = 3600000;
  else if (*end == 'd') unit = 86400000;
  else if (*end && *end != 's') return false;
  if (*end && end[1]) return false;
  if (v > INT64_MAX / unit) return false;
  *ms = v * unit;
  return true;
}
