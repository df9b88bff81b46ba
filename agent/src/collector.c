/* collector.c - discovery and collection.
 *
 * Each tick scans the telemetry directory for files named liballoc.<pid>
 * and opens each with the reader module, which treats it as hostile (no
 * symlinks, no FIFOs, bounds-checked, pread only).  A segment is accepted
 * only if its owner is the owner of /proc/<pid> and its header names the
 * process now running under that pid (pid, start time, pid namespace); a
 * segment whose process is gone, or whose pid now belongs to another
 * process, is stale and removed.  Anything else wrong is counted and logged
 * once per file, never fatal.  Processes are identified by (pid, start
 * time), never by pid alone.
 *
 * New snapshots are read from the last one seen up to the newest (so a
 * collector slower than the writer loses nothing still in the ring), and
 * written in one transaction per tick with the rollups they complete. */
#include "collector.h"

#include "log.h"
#include "rollup.h"
#include "snapshot.h"

#include <alloc_shm_reader.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct tracked_s {
  int pid;
  uint64_t start_time, created_ns, last_number;
  int64_t process_id;
  uid_t uid;
  char exe[256];
  alloc_shm_config_t config;
  bool have_config, seen, is_new;
  rollup_t minute, hour;
} tracked_t;

/* A file we refused, remembered so it is logged and counted once. */
typedef struct rejected_s {
  char name[64];
  ino_t ino;
  bool seen;
} rejected_t;

struct collector_s {
  store_t *store;
  char dir[512];
  uint64_t pidns;
  pthread_mutex_t lock;       /* guards procs and counters for the API */
  tracked_t *procs;
  size_t nprocs, cap;
  rejected_t *rejected;
  size_t nrejected, rcap;
  collector_counters_t counters;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t own_pidns(void) {
  struct stat st;
  return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

collector_t *collector_new(store_t *store, const char *shm_dir) {
  collector_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->store = store;
  snprintf(c->dir, sizeof c->dir, "%s", shm_dir);
  c->pidns = own_pidns();
  pthread_mutex_init(&c->lock, NULL);
  return c;
}

void collector_free(collector_t *c) {
  if (!c) return;
  free(c->procs);
  free(c->rejected);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

/* ---- /proc ----------------------------------------------------------------- */

/* Start time (field 22 of /proc/<pid>/stat) and owner of a live pid. */
static bool proc_identity(int pid, uint64_t *start_time, uid_t *uid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  ssize_t n = fstat(fd, &st) == 0 ? read(fd, buf, sizeof buf - 1) : -1;
  close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return false;
  char *save, *tok = strtok_r(p + 1, " ", &save);
  for (int field = 3; tok && field < 22; field++) tok = strtok_r(NULL, " ", &save);
  if (!tok) return false;
  *start_time = strtoull(tok, NULL, 10);
  *uid = st.st_uid;
  return true;
}

/* ---- rejections -------------------------------------------------------------- */

const char *const collector_reject_names[REJECT_NREASONS] = {
  "open", "not_regular_file", "size", "magic", "version", "layout", "io", "pid_mismatch", "other_namespace",
  "owner_mismatch"};

static enum collector_reject reason_of(int shm_err) {
  switch (shm_err) {
  case ALLOC_SHM_ERR_NOTFILE: return REJECT_NOT_FILE;
  case ALLOC_SHM_ERR_OWNER: return REJECT_OWNER;
  case ALLOC_SHM_ERR_SIZE: return REJECT_SIZE;
  case ALLOC_SHM_ERR_MAGIC: return REJECT_MAGIC;
  case ALLOC_SHM_ERR_VERSION: return REJECT_VERSION;
  case ALLOC_SHM_ERR_LAYOUT: return REJECT_LAYOUT;
  case ALLOC_SHM_ERR_IO: return REJECT_IO;
  default: return REJECT_OPEN;
  }
}

static void reject(collector_t *c, const char *name, ino_t ino, enum collector_reject reason, const char *why) {
  for (size_t i = 0; i < c->nrejected; i++) {
    rejected_t *r = &c->rejected[i];
    if (strcmp(r->name, name) == 0 && r->ino == ino) {
      r->seen = true;
      return;
    }
  }
  if (c->nrejected == c->rcap) {
    size_t cap = c->rcap ? 2 * c->rcap : 16;
    rejected_t *r = realloc(c->rejected, cap * sizeof *r);
    if (!r) return;
    c->rejected = r;
    c->rcap = cap;
  }
  rejected_t *r = &c->rejected[c->nrejected++];
  snprintf(r->name, sizeof r->name, "%s", name);
  r->ino = ino;
  r->seen = true;
  c->counters.segments_rejected++;
  c->counters.rejected[reason]++;
  log_warn("segment %s/%s rejected: %s", c->dir, name, why);
}

/* Forget rejections of files that are gone, so a new file of that name is
 * judged (and logged) afresh. */
static void sweep_rejected(collector_t *c) {
  size_t j = 0;
  for (size_t i = 0; i < c->nrejected; i++)
    if (c->rejected[i].seen) {
      c->rejected[i].seen = false;
      c->rejected[j++] = c->rejected[i];
    }
  c->nrejected = j;
}

/* ---- tracked processes ------------------------------------------------------ */

static tracked_t *find(collector_t *c, int pid) {
  for (size_t i = 0; i < c->nprocs; i++)
    if (c->procs[i].pid == pid) return &c->procs[i];
  return NULL;
}

static tracked_t *add(collector_t *c) {
  if (c->nprocs == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 16;
    tracked_t *p = realloc(c->procs, cap * sizeof *p);
    if (!p) return NULL;
    c->procs = p;
    c->cap = cap;
  }
  tracked_t *t = &c->procs[c->nprocs++];
  memset(t, 0, sizeof *t);
  rollup_init(&t->minute, 60000);
  rollup_init(&t->hour, 3600000);
  return t;
}

static void write_rollup(collector_t *c, const rollup_t *r, int64_t process_id) {
  if (!r->n) return;
  char *json = rollup_json(r);
  if (json) store_rollup(c->store, r->period_ms == 3600000, process_id, r->start_ms, r->n, json);
  free(json);
}

static void flush_rollups(collector_t *c, tracked_t *t) {
  write_rollup(c, &t->minute, t->process_id);
  write_rollup(c, &t->hour, t->process_id);
}

/* ---- reading one segment ------------------------------------------------------ */

static void store_snapshot(collector_t *c, tracked_t *t, const alloc_shm_snapshot_t *s) {
  int64_t ts = (int64_t)(s->time_ns / 1000000);
  json_t *m = snap_metrics_json(s);
  char *json = json_dumps(m, JSON_COMPACT);
  json_decref(m);
  if (json) store_sample(c->store, t->process_id, ts, s->number, json);
  free(json);
  double v[SNAP_NMETRICS];
  snap_metric_values(s, v);
  rollup_t done;
  if (rollup_add(&t->minute, ts, v, &done)) write_rollup(c, &done, t->process_id);
  if (rollup_add(&t->hour, ts, v, &done)) write_rollup(c, &done, t->process_id);
  c->counters.snapshots++;
}

/* Read every snapshot newer than the last one stored; keep the newest as
 * the process's latest. */
static void read_new(collector_t *c, tracked_t *t, alloc_shm_segment_t *seg, int64_t now) {
  static alloc_shm_snapshot_t s, newest;   /* one collector thread */
  uint64_t from = t->last_number + 1, oldest = alloc_shm_oldest(seg);
  if (from < oldest) from = oldest;
  bool any = false;
  for (uint64_t n = from; n <= seg->header.published; n++) {
    if (alloc_shm_read(seg, n, &s) != ALLOC_SHM_OK) continue;   /* overwritten meanwhile */
    store_snapshot(c, t, &s);
    newest = s;
    any = true;
  }
  t->last_number = seg->header.published;
  if (!any) return;
  json_t *full = snap_full_json(&newest);
  char *json = json_dumps(full, JSON_COMPACT);
  json_decref(full);
  if (json) store_latest(c->store, t->process_id, now, json);
  free(json);
  t->config = newest.config;
  t->have_config = true;
}

/* Remove a segment whose process is gone, if the file is still the one
 * we looked at. */
static void remove_stale(collector_t *c, int dirfd, const char *name, const alloc_shm_segment_t *seg) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_ino == seg->ino && st.st_dev == seg->dev &&
      unlinkat(dirfd, name, 0) == 0) {
    c->counters.stale_removed++;
    log_info("removed stale segment %s/%s (pid %d, %s)", c->dir, name, (int)seg->header.pid, seg->header.exe);
  }
}

static void visit(collector_t *c, int dirfd, const char *name, int pid, int64_t now) {
  alloc_shm_segment_t seg;
  int err = alloc_shm_open(&seg, dirfd, name, ALLOC_SHM_ANY_OWNER);
  if (err) {
    struct stat st;
    ino_t ino = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? st.st_ino : 0;
    if (err != ALLOC_SHM_ERR_OPEN || seg.sys_errno != ENOENT) reject(c, name, ino, reason_of(err), alloc_shm_strerror(err));
    return;
  }
  const alloc_shm_header_t *h = &seg.header;
  uint64_t start_time;
  uid_t uid;
  if (h->pid != pid) {
    reject(c, name, seg.ino, REJECT_PID_MISMATCH, "header pid differs from the file name");
  } else if (h->pidns_ino != c->pidns) {
    reject(c, name, seg.ino, REJECT_OTHER_NAMESPACE, "process of another pid namespace");
  } else if (!proc_identity(pid, &start_time, &uid) || start_time != h->start_time) {
    remove_stale(c, dirfd, name, &seg);   /* gone, or the pid was reused */
  } else if (seg.uid != uid) {
    reject(c, name, seg.ino, REJECT_OWNER, "file owner differs from the process owner");
  } else {
    pthread_mutex_lock(&c->lock);
    tracked_t *t = find(c, pid);
    if (t && (t->start_time != h->start_time || t->created_ns != h->created_ns)) {
      if (t->start_time != h->start_time) {   /* another process under the same pid */
        flush_rollups(c, t);
        store_exited(c->store, t->process_id, now);
        c->counters.processes_exited++;
      }
      t->created_ns = h->created_ns;   /* a new segment: numbering restarts */
      t->last_number = 0;
      if (t->start_time != h->start_time) t = NULL;
    }
    if (!t && (t = add(c))) {
      t->pid = pid;
      t->start_time = h->start_time;
      t->created_ns = h->created_ns;
      t->is_new = true;
    }
    if (t) {
      store_proc_t p = {pid, h->start_time, h->pidns_ino, seg.uid, h->exe, h->comm, h->version_str};
      t->process_id = store_process(c->store, &p, now);
      t->uid = seg.uid;
      snprintf(t->exe, sizeof t->exe, "%s", h->exe);
      t->seen = true;
      if (t->process_id > 0) read_new(c, t, &seg, now);
    }
    pthread_mutex_unlock(&c->lock);
  }
  alloc_shm_close(&seg);
}

/* ---- the tick ---------------------------------------------------------------- */

/* Processes whose segment disappeared (normal exit removes it). */
static void notice_exits(collector_t *c, int64_t now) {
  pthread_mutex_lock(&c->lock);
  size_t j = 0;
  for (size_t i = 0; i < c->nprocs; i++) {
    tracked_t *t = &c->procs[i];
    if (t->seen) {
      t->seen = false;
      c->procs[j++] = *t;
      continue;
    }
    flush_rollups(c, t);
    store_exited(c->store, t->process_id, now);
    c->counters.processes_exited++;
    log_info("process %d (%s) exited", t->pid, t->exe);
  }
  c->nprocs = j;
  c->counters.processes_alive = j;
  pthread_mutex_unlock(&c->lock);
}

void collector_tick(collector_t *c) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int64_t now = now_ms();
  int dirfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = dirfd >= 0 ? fdopendir(dirfd) : NULL;
  if (!d) {
    static bool warned;
    if (!warned) log_warn("cannot read %s: %s (retrying every tick)", c->dir, strerror(errno));
    warned = true;
    if (dirfd >= 0) close(dirfd);
    return;
  }
  store_begin(c->store);
  struct dirent *e;
  while ((e = readdir(d))) {
    pid_t pid;
    if (alloc_shm_parse_name(e->d_name, &pid)) visit(c, dirfd, e->d_name, (int)pid, now);
  }
  closedir(d);
  notice_exits(c, now);
  struct timespec w0, w1;
  clock_gettime(CLOCK_MONOTONIC, &w0);
  bool written = store_commit(c->store);
  clock_gettime(CLOCK_MONOTONIC, &w1);
  sweep_rejected(c);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  pthread_mutex_lock(&c->lock);
  if (!written) c->counters.db_failures++;
  c->counters.last_write_seconds = (double)(w1.tv_sec - w0.tv_sec) + (w1.tv_nsec - w0.tv_nsec) / 1e9;
  c->counters.ticks++;
  c->counters.last_tick_seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  pthread_mutex_unlock(&c->lock);
}

void collector_flush(collector_t *c) {
  store_begin(c->store);
  pthread_mutex_lock(&c->lock);
  for (size_t i = 0; i < c->nprocs; i++) flush_rollups(c, &c->procs[i]);
  pthread_mutex_unlock(&c->lock);
  store_commit(c->store);
}

static void fill_target(collector_t *c, const tracked_t *t, collector_target_t *out) {
  out->pid = t->pid;
  out->start_time = t->start_time;
  out->process_id = t->process_id;
  snprintf(out->path, sizeof out->path, "%s/" ALLOC_SHM_PREFIX "%d", c->dir, t->pid);
  snprintf(out->exe, sizeof out->exe, "%s", t->exe);
  out->uid = t->uid;
  out->config = t->config;
  out->have_config = t->have_config;
}

bool collector_lookup(collector_t *c, int pid, collector_target_t *out) {
  pthread_mutex_lock(&c->lock);
  tracked_t *t = find(c, pid);
  if (t) fill_target(c, t, out);
  pthread_mutex_unlock(&c->lock);
  return t != NULL;
}

int collector_take_new(collector_t *c, collector_target_t *out, int max) {
  int n = 0;
  pthread_mutex_lock(&c->lock);
  for (size_t i = 0; i < c->nprocs && n < max; i++)
    if (c->procs[i].is_new && c->procs[i].have_config) {
      c->procs[i].is_new = false;
      fill_target(c, &c->procs[i], &out[n++]);
    }
  pthread_mutex_unlock(&c->lock);
  return n;
}

void collector_counters(collector_t *c, collector_counters_t *out) {
  pthread_mutex_lock(&c->lock);
  *out = c->counters;
  pthread_mutex_unlock(&c->lock);
}
