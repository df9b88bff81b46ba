/* judged.h - the files of the telemetry directory allocd has judged and
 * refused (or left alone), remembered so that each is looked at once, not
 * at every tick.
 *
 * Any local user can fill the directory with files named like segments.
 * A file is known by its kind (segment or temporary), the pid in its name
 * and its inode number (from readdir, so looking one up costs no system
 * call): a writer replaces its segment by a rename, which brings a new
 * inode, so a changed file is judged afresh, while junk left in place is
 * not.  Lookups and insertions are O(1) (open addressing); a judgment
 * expires after JUDGED_EXPIRE_MS so that a file whose circumstances
 * changed (its process died, a transient error) is looked at again.  The
 * table forgets files that are gone at each sweep, and holds at most
 * JUDGED_MAX files (the rest are judged again when their turn comes, and
 * are not counted or logged again). */
#ifndef ALLOCD_JUDGED_H
#define ALLOCD_JUDGED_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define JUDGED_EXPIRE_MS 60000
#define JUDGED_MAX (1u << 20)

enum judged_kind { JUDGED_SEGMENT, JUDGED_TEMPORARY };

typedef struct judged_s judged_t;

judged_t *judged_new(void);
void judged_free(judged_t *j);

/* Is this file remembered with a judgment younger than JUDGED_EXPIRE_MS?
 * Either way, a remembered file is marked present for the next sweep. */
bool judged_fresh(judged_t *j, enum judged_kind kind, int pid, ino_t ino, int64_t now_ms);

/* Remember (or renew) a judgment made at now_ms.  True when the file was
 * not remembered before and now is: the caller counts and logs it then,
 * once. */
bool judged_put(judged_t *j, enum judged_kind kind, int pid, ino_t ino, int64_t now_ms);

/* Forget the files not looked up or put since the last sweep. */
void judged_sweep(judged_t *j);

#endif
