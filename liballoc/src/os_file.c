/* os_file.c - the OS layer's files: the telemetry segment, /proc and /sys.
 *
 * The half of the OS layer (os.c has the other) that the publisher,
 * statistics and control area use.  Like os.c, every call asks la_os_fault
 * first (os_fault.c), so tests can make any of them fail.  open, read,
 * write, pread, pwrite and close are made as raw system calls: libc's are
 * cancellation points, and these run with allocator locks held (the smaps
 * cache) or inside free() (the huge page size); a thread cancelled there
 * would leave the lock held for good.  Nothing here allocates. */
#include "alloc_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* -1 with errno set, as open(2). */
int la_os_open(const char *path, int flags, unsigned mode) {
  if (la_os_fault(LA_OS_OPEN)) return -1;
  long fd;
  do fd = syscall(SYS_openat, AT_FDCWD, path, flags | O_CLOEXEC, mode);
  while (fd < 0 && errno == EINTR);
  return (int)fd;
}

void la_os_close(int fd) {
  int saved = errno;
  syscall(SYS_close, fd);
  errno = saved;
}

/* A whole small file (/proc, /sys) into buf, NUL-terminated: its length,
 * or -1. */
ssize_t la_os_read_file(const char *path, char *buf, size_t size) {
  int fd = la_os_open(path, O_RDONLY, 0);
  if (fd < 0) return -1;
  size_t len = 0;
  while (len + 1 < size) {
    long n = la_os_fault(LA_OS_READ) ? -1 : syscall(SYS_read, fd, buf + len, size - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      la_os_close(fd);
      return -1;
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  la_os_close(fd);
  buf[len] = 0;
  return (ssize_t)len;
}

/* Exactly `len` bytes at `off`; false on a short read or an error. */
bool la_os_pread(int fd, void *buf, size_t len, uint64_t off) {
  if (la_os_fault(LA_OS_READ)) return false;
  long n;
  do n = syscall(SYS_pread64, fd, buf, len, (off_t)off);
  while (n < 0 && errno == EINTR);
  return n == (long)len;
}

/* All of `len` bytes at `off`; false if the file would not take them. */
bool la_os_pwrite(int fd, const void *buf, size_t len, uint64_t off) {
  const char *p = buf;
  while (len) {
    if (la_os_fault(LA_OS_WRITE)) return false;
    long n = syscall(SYS_pwrite64, fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return true;
}

bool la_os_ftruncate(int fd, uint64_t size) {
  return !la_os_fault(LA_OS_WRITE) && ftruncate(fd, (off_t)size) == 0;
}

bool la_os_fstat(int fd, struct stat *st) {
  return !la_os_fault(LA_OS_FILE) && fstat(fd, st) == 0;
}

/* stat or, with `nofollow`, lstat. */
bool la_os_stat(const char *path, struct stat *st, bool nofollow) {
  if (la_os_fault(LA_OS_FILE)) return false;
  return (nofollow ? lstat(path, st) : stat(path, st)) == 0;
}

bool la_os_rename(const char *from, const char *to) {
  return !la_os_fault(LA_OS_FILE) && rename(from, to) == 0;
}

bool la_os_unlink(const char *path) {
  return !la_os_fault(LA_OS_FILE) && unlink(path) == 0;
}

/* flock without waiting (LOCK_NB is added). */
bool la_os_try_flock(int fd, int op) {
  return !la_os_fault(LA_OS_FILE) && flock(fd, op | LOCK_NB) == 0;
}

void la_os_unflock(int fd) {
  int saved = errno;
  flock(fd, LOCK_UN);
  errno = saved;
}

/* The link's target into buf, NUL-terminated (empty on failure). */
void la_os_readlink(const char *path, char *buf, size_t size) {
  ssize_t n = la_os_fault(LA_OS_READ) ? -1 : readlink(path, buf, size - 1);
  buf[n > 0 ? n : 0] = 0;
}

int la_os_getpid(void) {
  return (int)getpid();
}
