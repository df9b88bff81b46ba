/* alloc_shm_reader.c - the reader side of the telemetry segment: checks
 * everything a hostile or broken writer could get wrong, copies with pread,
 * and implements the writer's half of the control protocol (alloc_shm.h). */
#define _GNU_SOURCE
#include "alloc_shm_reader.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const messages[] = {
  [ALLOC_SHM_OK] = "ok",
  [ALLOC_SHM_ERR_OPEN] = "cannot open",
  [ALLOC_SHM_ERR_NOTFILE] = "not a regular file",
  [ALLOC_SHM_ERR_OWNER] = "owned by an unexpected user",
  [ALLOC_SHM_ERR_SIZE] = "bad file size",
  [ALLOC_SHM_ERR_MAGIC] = "not a liballoc segment",
  [ALLOC_SHM_ERR_VERSION] = "unknown layout version",
  [ALLOC_SHM_ERR_LAYOUT] = "offsets or counts out of bounds",
  [ALLOC_SHM_ERR_IO] = "short read or write",
  [ALLOC_SHM_ERR_TORN] = "snapshot incomplete or damaged",
  [ALLOC_SHM_ERR_GONE] = "snapshot overwritten",
  [ALLOC_SHM_ERR_NOTYET] = "snapshot not published yet",
  [ALLOC_SHM_ERR_READONLY] = "segment opened read-only",
  [ALLOC_SHM_ERR_BUSY] = "no free control slot",
  [ALLOC_SHM_ERR_TIMEOUT] = "not taken in time; withdrawn, not applied",
  [ALLOC_SHM_ERR_ARG] = "invalid argument",
  [ALLOC_SHM_ERR_INFLIGHT] = "taken but not acknowledged in time; it may still apply",
  [ALLOC_SHM_ERR_PENDING] = "posted; the process has not acknowledged it yet",
  [ALLOC_SHM_ERR_REFUSED] = "the process refused the request",
};

const char *alloc_shm_strerror(int err) {
  if (err < 0 || (size_t)err >= sizeof messages / sizeof messages[0] || !messages[err]) return "unknown error";
  return messages[err];
}

bool alloc_shm_parse_name(const char *name, pid_t *pid) {
  size_t plen = strlen(ALLOC_SHM_PREFIX);
  if (strncmp(name, ALLOC_SHM_PREFIX, plen) != 0) return false;
  const char *d = name + plen;
  if (!*d || *d == '0' || strlen(d) > 9) return false;
  long v = 0;
  for (; *d; d++) {
    if (*d < '0' || *d > '9') return false;
    v = v * 10 + (*d - '0');
  }
  *pid = (pid_t)v;
  return true;
}

static uint64_t now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* pread exactly len bytes. */
static bool read_at(int fd, void *buf, size_t len, uint64_t off) {
  char *p = buf;
  while (len) {
    ssize_t n = pread(fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return true;
}

static bool write_at(int fd, const void *buf, size_t len, uint64_t off) {
  const char *p = buf;
  while (len) {
    ssize_t n = pwrite(fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return true;
}

/* ---- the header ---------------------------------------------------------- */

static int check_header(const alloc_shm_header_t *h, uint64_t file_size) {
  if (h->magic != ALLOC_SHM_MAGIC) return ALLOC_SHM_ERR_MAGIC;
  if (h->version != ALLOC_SHM_VERSION) return ALLOC_SHM_ERR_VERSION;
  if (h->header_size != sizeof *h || h->file_size != file_size) return ALLOC_SHM_ERR_SIZE;
  if (h->slot_size != sizeof(alloc_shm_snapshot_t) || h->request_size != sizeof(alloc_shm_request_t) ||
      h->nstats != ALLOC_SHM_NSTATS || h->nconfig != ALLOC_SHM_NCONFIG)
    return ALLOC_SHM_ERR_LAYOUT;
  /* The ring and the control area have the sizes this reader was built
   * with: a writer cannot make a reader take more snapshots per pass than
   * the ring holds, or walk a larger control area.  `published` stays far
   * from wrapping, so `n <= published` loops and 2 * number cannot
   * overflow (2^48 snapshots are 89,000 years at the fastest interval). */
  if (h->ring_slots != ALLOC_SHM_RING_SLOTS || h->control_slots != ALLOC_SHM_CONTROL_SLOTS ||
      h->published > ALLOC_SHM_MAX_PUBLISHED || h->nclasses == 0 || h->nclasses > ALLOC_SHM_MAX_CLASSES ||
      h->pid <= 0)
    return ALLOC_SHM_ERR_LAYOUT;
  /* 64-bit arithmetic on 32-bit fields: no overflow */
  uint64_t ring_end = (uint64_t)h->ring_offset + (uint64_t)h->ring_slots * h->slot_size;
  uint64_t control_end = (uint64_t)h->control_offset + (uint64_t)h->control_slots * h->request_size;
  uint64_t profile_end = (uint64_t)h->profile_offset + (uint64_t)h->profile_size;
  if (h->ring_offset < h->header_size || ring_end > file_size || h->control_offset < ring_end ||
      control_end > file_size)
    return ALLOC_SHM_ERR_LAYOUT;
  if (h->profile_offset < control_end || h->profile_offset % 4096 != 0 ||
      h->profile_size != ALLOC_SHM_PROFILE_SIZE || profile_end > file_size)
    return ALLOC_SHM_ERR_LAYOUT;
  return ALLOC_SHM_OK;
}

static void terminate_strings(alloc_shm_header_t *h) {
  h->exe[sizeof h->exe - 1] = 0;
  h->comm[sizeof h->comm - 1] = 0;
  h->version_str[sizeof h->version_str - 1] = 0;
}

/* The file's size now, checked against the limits. */
static int file_size(alloc_shm_segment_t *seg, uint64_t *size) {
  struct stat st;
  if (fstat(seg->fd, &st) != 0) {
    seg->sys_errno = errno;
    return ALLOC_SHM_ERR_OPEN;
  }
  if (st.st_size < (off_t)sizeof(alloc_shm_header_t) || (uint64_t)st.st_size > ALLOC_SHM_MAX_FILE)
    return ALLOC_SHM_ERR_SIZE;
  *size = (uint64_t)st.st_size;
  seg->nlink = st.st_nlink;
  return ALLOC_SHM_OK;
}

int alloc_shm_refresh(alloc_shm_segment_t *seg) {
  uint64_t size;
  int err = file_size(seg, &size);
  if (err) return err;
  alloc_shm_header_t h;
  if (!read_at(seg->fd, &h, sizeof h, 0)) return ALLOC_SHM_ERR_IO;
  if ((err = check_header(&h, size))) return err;
  terminate_strings(&h);
  seg->header = h;
  return ALLOC_SHM_OK;
}

int alloc_shm_open(alloc_shm_segment_t *seg, int dirfd, const char *name, uid_t owner) {
  memset(seg, 0, sizeof *seg);
  seg->fd = -1;
  /* O_NOFOLLOW: a symlink fails (ELOOP); O_NONBLOCK: a FIFO does not block
   * the open; O_NOCTTY: a terminal does not become ours. */
  int flags = O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
  int fd = openat(dirfd, name, O_RDWR | flags);
  seg->writable = fd >= 0;
  if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM)) fd = openat(dirfd, name, O_RDONLY | flags);
  if (fd < 0) {
    seg->sys_errno = errno;
    return errno == ELOOP || errno == EISDIR || errno == ENXIO ? ALLOC_SHM_ERR_NOTFILE : ALLOC_SHM_ERR_OPEN;
  }
  seg->fd = fd;
  struct stat st;
  int err = ALLOC_SHM_OK;
  if (fstat(fd, &st) != 0) {
    seg->sys_errno = errno;
    err = ALLOC_SHM_ERR_OPEN;
  } else if (!S_ISREG(st.st_mode)) {
    err = ALLOC_SHM_ERR_NOTFILE;
  } else if (owner != ALLOC_SHM_ANY_OWNER && st.st_uid != owner) {
    err = ALLOC_SHM_ERR_OWNER;
  } else {
    seg->uid = st.st_uid;
    seg->dev = st.st_dev;
    seg->ino = st.st_ino;
    err = alloc_shm_refresh(seg);
  }
  if (err) alloc_shm_close(seg);
  return err;
}

void alloc_shm_close(alloc_shm_segment_t *seg) {
  if (seg->fd >= 0) close(seg->fd);
  seg->fd = -1;
}

/* ---- snapshots ----------------------------------------------------------- */

uint64_t alloc_shm_oldest(const alloc_shm_segment_t *seg) {
  uint64_t p = seg->header.published, slots = seg->header.ring_slots;
  return p > slots ? p - slots + 1 : 1;
}

int alloc_shm_read(alloc_shm_segment_t *seg, uint64_t number, alloc_shm_snapshot_t *out) {
  const alloc_shm_header_t *h = &seg->header;
  if (number == 0 || number > h->published) return ALLOC_SHM_ERR_NOTYET;
  if (number < alloc_shm_oldest(seg)) return ALLOC_SHM_ERR_GONE;
  uint64_t off = h->ring_offset + ((number - 1) % h->ring_slots) * (uint64_t)h->slot_size;
  if (!read_at(seg->fd, out, sizeof *out, off)) return ALLOC_SHM_ERR_IO;
  if (out->number > number && out->seq >= 2 * number) return ALLOC_SHM_ERR_GONE;   /* lapped */
  if (out->number != number || out->seq != 2 * number ||
      out->checksum != alloc_shm_snapshot_checksum(out))
    return ALLOC_SHM_ERR_TORN;
  if (out->nclasses > h->nclasses) return ALLOC_SHM_ERR_LAYOUT;
  return ALLOC_SHM_OK;
}

/* ---- control requests ---------------------------------------------------- */

static uint64_t slot_offset(const alloc_shm_header_t *h, unsigned i) {
  return h->control_offset + (uint64_t)i * h->request_size;
}

/* Take the writers' lock without ever blocking on a hostile holder. */
static bool lock_until(int fd, uint64_t deadline) {
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
    if (errno != EWOULDBLOCK && errno != EINTR) return false;
    if (now_ns(CLOCK_MONOTONIC) >= deadline) return false;
    usleep(1000);
  }
}

/* A slot to post in: free, or abandoned by a writer that went away. */
static int pick_slot(alloc_shm_segment_t *seg, alloc_shm_request_t *reqs, unsigned n) {
  uint64_t now = now_ns(CLOCK_REALTIME);
  uint64_t stale = 3 * seg->header.interval_ms * 1000000u;
  if (stale < 60000000000ull) stale = 60000000000ull;
  for (unsigned i = 0; i < n; i++)
    if (reqs[i].state == ALLOC_SHM_REQ_FREE) return (int)i;
  for (unsigned i = 0; i < n; i++)
    if (reqs[i].state > ALLOC_SHM_REQ_DONE || reqs[i].posted_ns + stale < now) return (int)i;
  return -1;
}

static int post_locked(alloc_shm_segment_t *seg, alloc_shm_request_t *r, uint64_t *off) {
  alloc_shm_request_t reqs[64];
  unsigned n = seg->header.control_slots < 64 ? seg->header.control_slots : 64;
  if (n == 0) return ALLOC_SHM_ERR_BUSY;
  if (!read_at(seg->fd, reqs, n * sizeof reqs[0], slot_offset(&seg->header, 0))) return ALLOC_SHM_ERR_IO;
  int i = pick_slot(seg, reqs, n);
  if (i < 0) return ALLOC_SHM_ERR_BUSY;
  *off = slot_offset(&seg->header, (unsigned)i);
  r->state = ALLOC_SHM_REQ_FREE;
  uint64_t posted = ALLOC_SHM_REQ_POSTED;
  if (!write_at(seg->fd, r, sizeof *r, *off) || !write_at(seg->fd, &posted, sizeof posted, *off))
    return ALLOC_SHM_ERR_IO;
  return ALLOC_SHM_OK;
}

/* Release our slot, unless someone took it over meanwhile. */
static void release_slot(alloc_shm_segment_t *seg, uint64_t off, uint64_t id, uint64_t deadline) {
  if (!lock_until(seg->fd, deadline + 1000000000u)) return;
  alloc_shm_request_t r;
  if (read_at(seg->fd, &r, sizeof r, off) && r.id == id) {
    uint64_t free_state = ALLOC_SHM_REQ_FREE;
    write_at(seg->fd, &free_state, sizeof free_state, off);
  }
  flock(seg->fd, LOCK_UN);
}

int alloc_shm_submit(alloc_shm_segment_t *seg, const char *name, const char *value, uint64_t id,
                     unsigned timeout_ms, uint64_t *slot) {
  if (!seg->writable) return ALLOC_SHM_ERR_READONLY;
  alloc_shm_request_t r;
  memset(&r, 0, sizeof r);
  if (id == 0 || !name || !value || strlen(name) >= sizeof r.name || strlen(value) >= sizeof r.value)
    return ALLOC_SHM_ERR_ARG;
  r.id = id;
  r.posted_ns = now_ns(CLOCK_REALTIME);
  memcpy(r.name, name, strlen(name));
  memcpy(r.value, value, strlen(value));
  r.checksum = alloc_shm_request_checksum(&r);
  uint64_t deadline = now_ns(CLOCK_MONOTONIC) + (uint64_t)timeout_ms * 1000000u;
  if (!lock_until(seg->fd, deadline)) return ALLOC_SHM_ERR_TIMEOUT;
  int err = post_locked(seg, &r, slot);
  flock(seg->fd, LOCK_UN);
  return err;
}

/* The deadline passed: withdraw our request unless the process has claimed
 * it (ack_id == id), under the lock the process claims under.  True when
 * it is withdrawn, or no longer ours; false when it is being applied. */
bool alloc_shm_withdraw(alloc_shm_segment_t *seg, uint64_t slot, uint64_t id) {
  if (!lock_until(seg->fd, now_ns(CLOCK_MONOTONIC) + 1000000000u)) return false;
  alloc_shm_request_t r;
  bool gone = true;
  if (read_at(seg->fd, &r, sizeof r, slot) && r.id == id) {
    if (r.state == ALLOC_SHM_REQ_POSTED && r.ack_id != id) {
      uint64_t free_state = ALLOC_SHM_REQ_FREE;
      gone = write_at(seg->fd, &free_state, sizeof free_state, slot);
    } else {
      gone = false;   /* claimed, or done just now */
    }
  }
  flock(seg->fd, LOCK_UN);
  return gone;
}

int alloc_shm_check(alloc_shm_segment_t *seg, uint64_t slot, uint64_t id, alloc_shm_request_t *ack) {
  if (!read_at(seg->fd, ack, sizeof *ack, slot)) return ALLOC_SHM_ERR_IO;
  if (ack->id != id) return ALLOC_SHM_ERR_TIMEOUT;   /* taken over as stale */
  if (ack->state != ALLOC_SHM_REQ_DONE || ack->ack_id != id) return ALLOC_SHM_ERR_PENDING;
  ack->message[sizeof ack->message - 1] = 0;
  ack->effective[sizeof ack->effective - 1] = 0;
  release_slot(seg, slot, id, now_ns(CLOCK_MONOTONIC));
  return ALLOC_SHM_OK;
}

int alloc_shm_await(alloc_shm_segment_t *seg, uint64_t slot, uint64_t id, uint64_t deadline_ms,
                    alloc_shm_request_t *ack) {
  uint64_t deadline = deadline_ms * 1000000u;
  bool claimed = false;   /* past the deadline, waiting for a claimed request */
  for (;;) {
    int err = alloc_shm_check(seg, slot, id, ack);
    if (err != ALLOC_SHM_ERR_PENDING) return err;
    if (now_ns(CLOCK_MONOTONIC) >= deadline) {
      if (claimed) return ALLOC_SHM_ERR_INFLIGHT;
      if (alloc_shm_withdraw(seg, slot, id)) return ALLOC_SHM_ERR_TIMEOUT;
      claimed = true;   /* applying: its acknowledgement is a moment away */
      deadline = now_ns(CLOCK_MONOTONIC) + 1000000000u;
      continue;
    }
    usleep(2000);
  }
}

int alloc_shm_post(alloc_shm_segment_t *seg, const char *name, const char *value, uint64_t id,
                   unsigned timeout_ms, alloc_shm_request_t *ack) {
  uint64_t deadline_ms = now_ns(CLOCK_MONOTONIC) / 1000000u + timeout_ms, slot = 0;
  int err = alloc_shm_submit(seg, name, value, id, timeout_ms, &slot);
  return err ? err : alloc_shm_await(seg, slot, id, deadline_ms, ack);
}

/* ---- the profile area ---------------------------------------------------- */

static int prof_bad(alloc_shm_prof_t *out, int err, const char *why) {
  out->why = why;
  return err;
}

/* Check the tables of a profile read whole into out->area (out->head is
 * its header, already checked against the counts' bounds). */
static int prof_check_tables(alloc_shm_prof_t *out) {
  const alloc_shm_profile_t *p = &out->head;
  const char *a = out->area;
  out->modules = (const alloc_shm_module_t *)(a + ALLOC_SHM_PROFILE_MODULES);
  out->stacks = (const alloc_shm_stack_t *)(a + ALLOC_SHM_PROFILE_STACKS);
  out->frames = (const uint64_t *)(a + ALLOC_SHM_PROFILE_FRAMES);
  for (uint32_t i = 0; i < p->nmodules; i++) {
    const alloc_shm_module_t *m = &out->modules[i];
    if (m->build_id_size > sizeof m->build_id) return prof_bad(out, ALLOC_SHM_ERR_LAYOUT, "a module's build ID is over 32 bytes");
    if (!memchr(m->path, 0, sizeof m->path)) return prof_bad(out, ALLOC_SHM_ERR_LAYOUT, "a module's path is not NUL-terminated");
    if (m->start > m->end) return prof_bad(out, ALLOC_SHM_ERR_LAYOUT, "a module's address range is reversed");
  }
  for (uint32_t i = 0; i < p->nstacks; i++) {
    const alloc_shm_stack_t *s = &out->stacks[i];
    if (s->depth > ALLOC_SHM_PROFILE_MAX_DEPTH) return prof_bad(out, ALLOC_SHM_ERR_LAYOUT, "a stack is deeper than 64 frames");
    if ((uint64_t)s->first_frame + s->depth > p->nframes)
      return prof_bad(out, ALLOC_SHM_ERR_LAYOUT, "a stack's frames are outside the frame table");
  }
  return ALLOC_SHM_OK;
}

/* The checks of a profile header that need none of its tables. */
static int prof_check_head(const alloc_shm_profile_t *p, uint64_t room, alloc_shm_prof_t *out) {
  if (p->seq == 0 && p->number == 0) return prof_bad(out, ALLOC_SHM_ERR_NOTYET, "no profile written yet");
  if (p->seq & 1) return prof_bad(out, ALLOC_SHM_ERR_TORN, "the profile is being written");
  if (p->number > ALLOC_SHM_MAX_PUBLISHED || p->seq != 2 * p->number) return prof_bad(out, ALLOC_SHM_ERR_TORN, "the profile's seq and number disagree");
  if (p->nmodules > ALLOC_SHM_PROFILE_MAX_MODULES || p->nstacks > ALLOC_SHM_PROFILE_MAX_STACKS ||
      p->nframes > ALLOC_SHM_PROFILE_MAX_FRAMES)
    return prof_bad(out, ALLOC_SHM_ERR_LAYOUT, "the profile claims more modules, stacks or frames than the area holds");
  if (p->used != ALLOC_SHM_PROFILE_FRAMES + 8ull * p->nframes || p->used > room)
    return prof_bad(out, ALLOC_SHM_ERR_LAYOUT, "the profile's used size is not that of its frame count");
  return ALLOC_SHM_OK;
}

int alloc_shm_prof_parse(void *area, size_t len, alloc_shm_prof_t *out) {
  memset(out, 0, sizeof *out);
  out->area = area;
  int err = ALLOC_SHM_ERR_LAYOUT;
  if (len < sizeof out->head) {
    prof_bad(out, err, "the profile is shorter than its header");
  } else {
    memcpy(&out->head, area, sizeof out->head);
    if (!(err = prof_check_head(&out->head, len, out)) && out->head.used != len)
      err = prof_bad(out, ALLOC_SHM_ERR_LAYOUT, "the profile's used size is not its length");
    if (!err && alloc_shm_profile_checksum(area, out->head.used) != out->head.checksum)
      err = prof_bad(out, ALLOC_SHM_ERR_TORN, "the profile's checksum is wrong");
    if (!err) err = prof_check_tables(out);
  }
  if (err) {
    const char *why = out->why;
    alloc_shm_prof_free(out);
    out->why = why;
  }
  return err;
}

static int prof_read_once(alloc_shm_segment_t *seg, uint64_t min_number, alloc_shm_prof_t *out) {
  const alloc_shm_header_t *h = &seg->header;
  alloc_shm_profile_t p;
  free(out->area);
  out->area = NULL;
  if (!read_at(seg->fd, &p, sizeof p, h->profile_offset)) return prof_bad(out, ALLOC_SHM_ERR_IO, "the profile area cannot be read (truncated?)");
  int err = prof_check_head(&p, h->profile_size, out);
  if (err) return err;
  if (p.number < min_number) return prof_bad(out, ALLOC_SHM_ERR_NOTYET, "the profile is older than the one asked for");
  if (!(out->area = malloc(p.used))) return prof_bad(out, ALLOC_SHM_ERR_ARG, "out of memory");
  if (!read_at(seg->fd, out->area, p.used, h->profile_offset)) return prof_bad(out, ALLOC_SHM_ERR_IO, "the profile area cannot be read (truncated?)");
  memcpy(&out->head, out->area, sizeof out->head);
  /* the header again, as read with the tables: the checksum covers both */
  if (memcmp(&out->head, &p, sizeof p) != 0) return prof_bad(out, ALLOC_SHM_ERR_TORN, "the profile changed while it was read");
  if (alloc_shm_profile_checksum(out->area, p.used) != p.checksum) return prof_bad(out, ALLOC_SHM_ERR_TORN, "the profile's checksum is wrong");
  return prof_check_tables(out);
}

int alloc_shm_prof_read(alloc_shm_segment_t *seg, uint64_t min_number, alloc_shm_prof_t *out) {
  memset(out, 0, sizeof *out);
  int err = ALLOC_SHM_ERR_TORN;
  for (int tries = 0; tries < 3 && err == ALLOC_SHM_ERR_TORN; tries++) {
    if (tries) usleep(2000);
    err = prof_read_once(seg, min_number, out);
  }
  if (err) {
    const char *why = out->why;
    alloc_shm_prof_free(out);
    out->why = why;
  }
  return err;
}

void alloc_shm_prof_free(alloc_shm_prof_t *p) {
  free(p->area);
  memset(p, 0, sizeof *p);
}

int alloc_shm_prof_request(alloc_shm_segment_t *seg, uint64_t id, uint64_t deadline_ms, alloc_shm_request_t *ack,
                           alloc_shm_prof_t *out) {
  memset(out, 0, sizeof *out);
  memset(ack, 0, sizeof *ack);
  uint64_t now_ms = now_ns(CLOCK_MONOTONIC) / 1000000u, slot = 0;
  unsigned timeout_ms = deadline_ms > now_ms ? (unsigned)(deadline_ms - now_ms) : 0;
  int err = alloc_shm_submit(seg, "prof.publish", "", id, timeout_ms, &slot);
  if (!err) err = alloc_shm_await(seg, slot, id, deadline_ms, ack);
  if (err) return prof_bad(out, err, "the process did not answer the profile request");
  if (ack->status != 0) return prof_bad(out, ALLOC_SHM_ERR_REFUSED, "the process refused the profile request");
  /* effective: the number of the profile it wrote, in decimal */
  char *end;
  errno = 0;
  unsigned long long n = strtoull(ack->effective, &end, 10);
  if (errno || end == ack->effective || *end || n == 0) return prof_bad(out, ALLOC_SHM_ERR_LAYOUT, "the process acknowledged without a profile number");
  return alloc_shm_prof_read(seg, n, out);
}
