/* procinfo.c - reading a process's identity from /proc (procinfo.h). */
#include "procinfo.h"

#include "text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Read a small /proc file into buf, NUL terminated: its length, or -1 with
 * errno set. */
static ssize_t read_small(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  int saved = errno;
  close(fd);
  errno = saved;
  if (n >= 0) buf[n] = 0;
  return n;
}

/* Field 22 of /proc/PID/stat, after the command name (which may hold
 * spaces and parentheses: the last ')' ends it). */
static bool stat_start_time(const char *buf, uint64_t *start_time) {
  const char *p = strrchr(buf, ')');
  if (!p) return false;
  p++;
  for (int field = 3; field <= 22; field++) {
    while (*p == ' ') p++;
    if (!*p) return false;
    if (field == 22) break;
    while (*p && *p != ' ') p++;
  }
  char *end;
  errno = 0;
  *start_time = strtoull(p, &end, 10);
  return !errno && end != p;
}

/* The Tgid and Uid lines of /proc/PID/status. */
static bool status_ids(const char *buf, int *tgid, uid_t uids[4]) {
  const char *t = strstr(buf, "\nTgid:"), *u = strstr(buf, "\nUid:");
  unsigned long v[4];
  if (!t || !u || sscanf(t + 6, "%d", tgid) != 1) return false;
  if (sscanf(u + 5, "%lu %lu %lu %lu", &v[0], &v[1], &v[2], &v[3]) != 4) return false;
  for (int i = 0; i < 4; i++) uids[i] = (uid_t)v[i];
  return true;
}

enum proc_state proc_identity(int pid, procinfo_t *out) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  if (read_small(path, buf, sizeof buf) < 0) return errno == ENOENT || errno == ESRCH ? PROC_GONE : PROC_UNKNOWN;
  int tgid;
  if (!status_ids(buf, &tgid, out->uids)) return PROC_UNKNOWN;
  if (tgid != pid) return PROC_GONE;   /* a thread of another process: no process has this pid */
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if (read_small(path, buf, sizeof buf) < 0) return errno == ENOENT || errno == ESRCH ? PROC_GONE : PROC_UNKNOWN;
  return stat_start_time(buf, &out->start_time) ? PROC_ALIVE : PROC_UNKNOWN;
}

bool proc_started_at(int pid, uint64_t start_time) {
  char path[64], buf[4096];
  uint64_t st;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  return read_small(path, buf, sizeof buf) > 0 && stat_start_time(buf, &st) && st == start_time;
}

void proc_names(int pid, procinfo_t *out) {
  char path[64], buf[4096];   /* exe paths are at most PATH_MAX */
  snprintf(path, sizeof path, "/proc/%d/exe", pid);
  ssize_t n = readlink(path, buf, sizeof buf);
  out->exe_known = n > 0;
  text_clean(buf, n > 0 ? (size_t)n : 0, out->exe, sizeof out->exe);
  snprintf(path, sizeof path, "/proc/%d/comm", pid);
  n = read_small(path, buf, 64);
  if (n > 0 && buf[n - 1] == '\n') n--;   /* the kernel's line end, not the name's */
  text_clean(buf, n > 0 ? (size_t)n : 0, out->comm, sizeof out->comm);
}

bool proc_has_uid(const procinfo_t *p, uid_t uid) {
  for (int i = 0; i < 4; i++)
    if (p->uids[i] == uid) return true;
  return false;
}

uint64_t proc_start_wall_ns(uint64_t start_time) {
  /* boot time on the wall clock: realtime minus time since boot */
  struct timespec real, boot;
  clock_gettime(CLOCK_REALTIME, &real);
  clock_gettime(CLOCK_BOOTTIME, &boot);
  int64_t boot_wall = ((int64_t)real.tv_sec - boot.tv_sec) * 1000000000 + (real.tv_nsec - boot.tv_nsec);
  long hz = sysconf(_SC_CLK_TCK);
  if (hz <= 0) hz = 100;
  return (uint64_t)(boot_wall + (int64_t)(start_time / (uint64_t)hz) * 1000000000 +
                    (int64_t)(start_time % (uint64_t)hz) * (1000000000 / hz));
}
