/* same_file.c - remove_if_same (same_file.h).
 *
 * allocd removes squatters and stale segments from a directory any local
 * user writes into, while the processes it watches publish their segments
 * there by renaming a new file over the name.  The race this closes is
 * tested by tests/agent/test_same_file.c. */
#include "same_file.h"

#include "log.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* unlink works by name, so checking the name then unlinking it could
 * delete a file put there in between (the pid's new process publishing its
 * segment).  Instead the file under the name is moved aside, atomically, to
 * an unpredictable name, and what was moved is checked: the judged file is
 * unlinked, anything else goes back (never over a file that took the name
 * meanwhile: then it stays aside, logged, rather than be deleted without
 * having been judged). */
bool remove_if_same(int dirfd, const char *name, dev_t dev, ino_t ino) {
  unsigned char r[8];
  char aside[64];
  if (getrandom(r, sizeof r, 0) != sizeof r) return false;
  snprintf(aside, sizeof aside, ".allocd-stale.%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5],
           r[6], r[7]);
  if (renameat2(dirfd, name, dirfd, aside, RENAME_NOREPLACE) != 0) return false;
  struct stat st;
  if (fstatat(dirfd, aside, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == dev && st.st_ino == ino &&
      !S_ISDIR(st.st_mode))
    return unlinkat(dirfd, aside, 0) == 0;
  if (renameat2(dirfd, aside, dirfd, name, RENAME_NOREPLACE) != 0)
    log_warn("%s changed while being removed and its name was taken again: left as %s", name, aside);
  return false;
}
