/* alloc_shm_reader.h - open, validate and read liballoc telemetry segments,
 * and post control requests to them.
 *
 * For agents and tools that watch processes using liballoc (allocd, the
 * tests).  It knows the segment layout (alloc_shm.h) and nothing of the
 * allocator's internals.  Every segment is treated as hostile: it is opened
 * without following symlinks or blocking (a FIFO), must be a regular file
 * of the expected owner, and every size, offset and count in it is checked
 * before use.  Reads copy with pread, never through a mapping, so a file
 * truncated or replaced while it is read gives an error, never SIGBUS.
 *
 *   alloc_shm_segment_t seg;
 *   if (alloc_shm_open(&seg, dirfd, "liballoc.1234", ALLOC_SHM_ANY_OWNER) == 0) {
 *     // at most ring_slots numbers: published <= ALLOC_SHM_MAX_PUBLISHED
 *     for (uint64_t n = alloc_shm_oldest(&seg); n <= seg.header.published; n++)
 *       if (alloc_shm_read(&seg, n, &snap) == 0) use(&snap);
 *     alloc_shm_close(&seg);
 *   }
 *
 * Not thread-safe per segment: one thread uses an alloc_shm_segment_t at a
 * time (different segments may be used from different threads). */
#ifndef ALLOC_SHM_READER_H
#define ALLOC_SHM_READER_H

#include <alloc_shm.h>
#include <stdbool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

enum alloc_shm_err {
  ALLOC_SHM_OK = 0,
  ALLOC_SHM_ERR_OPEN,      /* open or fstat failed: see sys_errno */
  ALLOC_SHM_ERR_NOTFILE,   /* not a regular file: symlink, FIFO, directory ... */
  ALLOC_SHM_ERR_OWNER,     /* owned by another user than expected */
  ALLOC_SHM_ERR_SIZE,      /* too small, too large, or not the size it says */
  ALLOC_SHM_ERR_MAGIC,     /* not a liballoc segment */
  ALLOC_SHM_ERR_VERSION,   /* a layout version this reader does not know */
  ALLOC_SHM_ERR_LAYOUT,    /* an offset, size or count out of bounds */
  ALLOC_SHM_ERR_IO,        /* a read or write came back short (truncated?) */
  ALLOC_SHM_ERR_TORN,      /* slot being written, torn, or damaged */
  ALLOC_SHM_ERR_GONE,      /* snapshot overwritten by newer ones */
  ALLOC_SHM_ERR_NOTYET,    /* snapshot not published yet */
  ALLOC_SHM_ERR_READONLY,  /* posting needs the segment opened for writing */
  ALLOC_SHM_ERR_BUSY,      /* no free request slot */
  ALLOC_SHM_ERR_TIMEOUT,   /* the process did not take the request in time;
                              it was withdrawn and will not be applied */
  ALLOC_SHM_ERR_ARG,       /* bad argument (name or value too long, ...) */
  ALLOC_SHM_ERR_INFLIGHT,  /* the process took the request but did not
                              acknowledge in time: it may still apply */
  ALLOC_SHM_ERR_PENDING,   /* posted, not acknowledged yet (alloc_shm_check) */
  ALLOC_SHM_ERR_REFUSED,   /* the process answered a request with an error */
};

#define ALLOC_SHM_ANY_OWNER ((uid_t)-1)
#define ALLOC_SHM_MAX_FILE  ((uint64_t)64 << 20)   /* larger files are rejected */
#define ALLOC_SHM_MAX_PUBLISHED ((uint64_t)1 << 48)  /* a larger `published` is rejected */

typedef struct alloc_shm_segment_s {
  int fd;
  bool writable;               /* opened read-write: can post requests */
  int sys_errno;               /* errno of the last failed system call */
  uid_t uid;                   /* owner of the file */
  dev_t dev;
  ino_t ino;
  nlink_t nlink;               /* links at the last open or refresh: 0 once it was removed */
  alloc_shm_header_t header;   /* validated copy, strings NUL-terminated */
} alloc_shm_segment_t;

/* Open `name` in directory `dirfd` (AT_FDCWD for a path), read-write if
 * allowed else read-only, and validate its header.  owner: the uid the file
 * must belong to, or ALLOC_SHM_ANY_OWNER.  Returns 0 or an alloc_shm_err;
 * on error nothing stays open. */
int alloc_shm_open(alloc_shm_segment_t *seg, int dirfd, const char *name, uid_t owner);

/* Read the header again (published, heartbeat, interval) and re-check it and
 * the file's size.  0 or an alloc_shm_err. */
int alloc_shm_refresh(alloc_shm_segment_t *seg);

/* The oldest snapshot number still in the ring (per the last refresh); it
 * is greater than header.published when there is none. */
uint64_t alloc_shm_oldest(const alloc_shm_segment_t *seg);

/* Copy snapshot `number` into *out if it is complete and intact.  0 or
 * ALLOC_SHM_ERR_NOTYET / _GONE / _TORN / _IO / _LAYOUT. */
int alloc_shm_read(alloc_shm_segment_t *seg, uint64_t number, alloc_shm_snapshot_t *out);

/* Ask the process to set knob `name` to `value` (text; "" for commands)
 * and wait up to timeout_ms for its acknowledgement, copied into *ack
 * (ack->status is the process's answer: 0 or an errno value, with
 * ack->message and ack->effective).  id must not be 0.  Returns 0 when
 * acknowledged, or an alloc_shm_err. */
int alloc_shm_post(alloc_shm_segment_t *seg, const char *name, const char *value, uint64_t id,
                   unsigned timeout_ms, alloc_shm_request_t *ack);

/* The two halves of alloc_shm_post, to post several requests and wait for
 * them together (the process answers every posted slot in one tick):
 * submit returns the slot's offset in *slot; await waits until deadline_ms
 * of CLOCK_MONOTONIC.  A request the process has not taken by then is
 * withdrawn (ALLOC_SHM_ERR_TIMEOUT: it will never apply); one it has taken
 * gets one more second to be acknowledged (else ALLOC_SHM_ERR_INFLIGHT). */
int alloc_shm_submit(alloc_shm_segment_t *seg, const char *name, const char *value, uint64_t id,
                     unsigned timeout_ms, uint64_t *slot);
int alloc_shm_await(alloc_shm_segment_t *seg, uint64_t slot, uint64_t id, uint64_t deadline_ms,
                    alloc_shm_request_t *ack);
/* Without waiting, for a request left posted to a process that could not
 * take it yet: ALLOC_SHM_OK with the acknowledgement (the slot is freed),
 * ALLOC_SHM_ERR_PENDING while it is not acknowledged, ALLOC_SHM_ERR_TIMEOUT
 * if the slot is no longer ours (taken over as stale: it never applied).
 * alloc_shm_withdraw gives up on it: true if it is withdrawn (or no longer
 * ours) and will never apply, false if the process has taken it. */
int alloc_shm_check(alloc_shm_segment_t *seg, uint64_t slot, uint64_t id, alloc_shm_request_t *ack);
bool alloc_shm_withdraw(alloc_shm_segment_t *seg, uint64_t slot, uint64_t id);

void alloc_shm_close(alloc_shm_segment_t *seg);

/* ---- the profile area (alloc_shm.h) ----------------------------------------
 * A validated copy of a profile: the header, then pointers into one block
 * holding the tables (modules[nmodules], stacks[nstacks], frames[nframes]).
 * Everything in it has been checked: counts within the ALLOC_SHM_PROFILE_MAX_*
 * constants, used == ALLOC_SHM_PROFILE_FRAMES + 8 * nframes, the checksum,
 * every stack's frames inside frames[] with depth <= MAX_DEPTH, every
 * module's build_id_size <= 32, start <= end and path NUL-terminated.
 * The values themselves (addresses, estimates) are the process's claims. */
typedef struct alloc_shm_prof_s {
  alloc_shm_profile_t head;
  const alloc_shm_module_t *modules;
  const alloc_shm_stack_t *stacks;
  const uint64_t *frames;
  void *area;           /* the block read (malloc'ed), freed by alloc_shm_prof_free */
  const char *why;      /* after an error: what was wrong, in words (static text) */
} alloc_shm_prof_t;

/* Read the profile area and accept it only if it is complete (seq == 2 *
 * number), number >= min_number, and everything above holds.  A torn read
 * (the process writing a newer profile meanwhile) is retried twice.  0, or
 * ALLOC_SHM_ERR_NOTYET (no profile numbered min_number or later),
 * ALLOC_SHM_ERR_TORN (incomplete, or its checksum is wrong),
 * ALLOC_SHM_ERR_LAYOUT (a count, offset or string out of bounds),
 * ALLOC_SHM_ERR_IO (truncated), ALLOC_SHM_ERR_ARG (out of memory); out->why
 * says which check failed.  Free with alloc_shm_prof_free, also on error. */
int alloc_shm_prof_read(alloc_shm_segment_t *seg, uint64_t min_number, alloc_shm_prof_t *out);
void alloc_shm_prof_free(alloc_shm_prof_t *p);

/* The same checks on a profile area already in memory (area[0 .. len),
 * malloc'ed, taken over: freed by alloc_shm_prof_free, also on error), as
 * allocd keeps them in its history: len must be the header's `used`. */
int alloc_shm_prof_parse(void *area, size_t len, alloc_shm_prof_t *out);

/* Ask the process for a fresh profile ("prof.publish" through the control
 * area, id not 0) and wait until deadline_ms of CLOCK_MONOTONIC for its
 * acknowledgement, then read the profile it wrote.  Returns 0 with *out
 * filled; an alloc_shm_err of posting or waiting (ALLOC_SHM_ERR_TIMEOUT:
 * withdrawn, ALLOC_SHM_ERR_INFLIGHT: taken, not answered); or
 * ALLOC_SHM_ERR_REFUSED when the process answered with an error (ack->status:
 * ENOENT from a liballoc without the profiler, ...; ack->message says why);
 * or an error of alloc_shm_prof_read. */
int alloc_shm_prof_request(alloc_shm_segment_t *seg, uint64_t id, uint64_t deadline_ms, alloc_shm_request_t *ack,
                           alloc_shm_prof_t *out);

const char *alloc_shm_strerror(int err);

/* True if `name` is a segment's file name, "liballoc.<pid>"; sets *pid. */
bool alloc_shm_parse_name(const char *name, pid_t *pid);

#ifdef __cplusplus
}
#endif

#endif /* ALLOC_SHM_READER_H */
