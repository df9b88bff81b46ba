/* same_file.h - removing a file of a directory that others write into,
 * only if it is still the one that was judged. */
#ifndef ALLOCD_SAME_FILE_H
#define ALLOCD_SAME_FILE_H

#include <stdbool.h>
#include <sys/types.h>

/* Unlink `name` in dirfd if it is the file (dev, ino) judged, however
 * other processes rename files under that name meanwhile: a file put there
 * after the judgment is never deleted, and stays under the name (unless
 * the name was taken yet again meanwhile: then it stays beside it, under a
 * name starting ".allocd-stale.", logged).  True if the judged file was
 * unlinked. */
bool remove_if_same(int dirfd, const char *name, dev_t dev, ino_t ino);

#endif
