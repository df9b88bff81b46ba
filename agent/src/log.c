/* log.c - allocd's log lines: "<UTC time> <level> <message>", written to
 * stderr with one write(2) each so lines from different threads never
 * interleave.  Messages are single lines: control characters are escaped,
 * since some of what is logged (executable names, file names) comes from
 * other processes. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static enum log_level threshold = LOG_INFO;
static const char *const names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level) { threshold = level; }

void log_msg(enum log_level level, const char *fmt, ...) {
  if (level < threshold) return;
  char msg[1024], line[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %s ", ts.tv_nsec / 1000000, names[level]);
  for (const char *p = msg; *p && n + 5 < sizeof line; p++) {
    unsigned char c = (unsigned char)*p;
    if (c < 0x20 || c == 0x7f) n += (size_t)snprintf(line + n, sizeof line - n, "\\x%02x", c);
    else line[n++] = (char)c;
  }
  line[n++] = '\n';
  (void)!write(STDERR_FILENO, line, n);
}
