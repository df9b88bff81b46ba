/* duration.h - durations as operators write them, in flags and query
 * parameters: "90s", "15m", "2h", "7d", or plain seconds. */
#ifndef ALLOCD_DURATION_H
#define ALLOCD_DURATION_H

#include <stdbool.h>
#include <stdint.h>

/* The duration in milliseconds; false if malformed, not positive or too large. */
bool parse_duration(const char *s, int64_t *ms);

#endif
