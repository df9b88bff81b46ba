/* control.c - the process's side of the telemetry control area.
 *
 * At every publication the publisher thread reads the request slots
 * (alloc_shm.h describes the protocol), applies each posted request through
 * la_ctl_apply_text -- the path alloc_ctl() takes -- and acknowledges it.
 * The area is written by other processes, so everything read from it is
 * checked: the checksum, the strings' terminators, the state.  A request
 * that fails the checks is acknowledged as malformed (so its writer does not
 * wait forever); anything that is not a posted request is left alone.
 *
 * Posted requests are claimed under the writers' flock before anything is
 * applied, so a writer that gave up can withdraw a request the process has
 * not claimed, and be sure it never applies.  The lock is only tried: a
 * writer holding it (or anyone else) delays the requests by one tick and
 * never blocks this thread. */
#include "alloc_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>

static bool terminated(const char *s, size_t size) { return memchr(s, 0, size) != NULL; }

/* Write the acknowledgement fields, then the state: a writer that sees
 * DONE finds the acknowledgement complete. */
static void acknowledge(int fd, uint64_t off, alloc_shm_request_t *r) {
  const size_t from = offsetof(alloc_shm_request_t, ack_id);
  if (!la_os_pwrite(fd, (char *)r + from, sizeof *r - from, off + from)) return;
  uint64_t done = ALLOC_SHM_REQ_DONE;
  la_os_pwrite(fd, &done, sizeof done, off);
}

static void serve_one(int fd, uint64_t off, alloc_shm_request_t *r) {
  r->ack_id = r->id;
  r->message[0] = r->effective[0] = 0;
  if (r->id == 0 || !terminated(r->name, sizeof r->name) || !terminated(r->value, sizeof r->value) ||
      r->checksum != alloc_shm_request_checksum(r)) {
    r->status = EINVAL;
    snprintf(r->message, sizeof r->message, "malformed request (bad checksum, id or string)");
  } else {
    r->status = la_ctl_apply_text(r->name, r->value, r->effective, sizeof r->effective, r->message,
                                  sizeof r->message);
  }
  acknowledge(fd, off, r);
}

static bool read_requests(int fd, const alloc_shm_header_t *h, alloc_shm_request_t *reqs, size_t size) {
  return la_os_pread(fd, reqs, size, h->control_offset);
}

static bool any_posted(const alloc_shm_request_t *reqs) {
  for (unsigned i = 0; i < ALLOC_SHM_CONTROL_SLOTS; i++)
    if (reqs[i].state == ALLOC_SHM_REQ_POSTED) return true;
  return false;
}

/* Under the lock: mark every posted request as ours (ack_id = id), and
 * remember which slots those were. */
static void claim_posted(int fd, const alloc_shm_header_t *h, const alloc_shm_request_t *reqs, bool *claimed) {
  for (unsigned i = 0; i < ALLOC_SHM_CONTROL_SLOTS; i++) {
    uint64_t off = h->control_offset + (uint64_t)i * sizeof reqs[0] + offsetof(alloc_shm_request_t, ack_id);
    claimed[i] = reqs[i].state == ALLOC_SHM_REQ_POSTED && la_os_pwrite(fd, &reqs[i].id, sizeof reqs[i].id, off);
  }
}

void la_control_serve(int fd, const alloc_shm_header_t *h) {
  alloc_shm_request_t reqs[ALLOC_SHM_CONTROL_SLOTS];
  bool claimed[ALLOC_SHM_CONTROL_SLOTS] = {false};
  if (h->control_slots != ALLOC_SHM_CONTROL_SLOTS) return;
  if (!read_requests(fd, h, reqs, sizeof reqs) || !any_posted(reqs)) return;
  if (!la_os_try_flock(fd, LOCK_EX)) return;
  /* Read again under the lock: a writer may have withdrawn or posted. */
  if (read_requests(fd, h, reqs, sizeof reqs)) claim_posted(fd, h, reqs, claimed);
  la_os_unflock(fd);
  for (unsigned i = 0; i < ALLOC_SHM_CONTROL_SLOTS; i++)
    if (claimed[i]) serve_one(fd, h->control_offset + (uint64_t)i * sizeof reqs[0], &reqs[i]);
}
