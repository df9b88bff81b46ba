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
 * written in one transaction per tick with the rollups they complete.
 * The newest snapshot of each live process stays in memory: the API and
 * /metrics serve live processes from here, not from the database, which
 * gets the full snapshot (with size classes, as JSON) once a minute and
 * when the process exits, for the history of exited processes. */
#include "collector.h"

#include "log.h"
#include "rollup.h"
#include "snapshot.h"

#include <alloc_shm_reader.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LATEST_SAVE_MS 60000   /* how often a live process's full snapshot is written */

typedef struct tracked_s {
  collector_live_t live;            /* identity and the newest snapshot */
  uint64_t created_ns, last_number;
  int64_t latest_saved_ms;          /* when live.snapshot last went to the database */
  bool seen, is_new;
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
  bool dir_missing;           /* the directory could not be read last tick */
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
  for (size_t i = 0; i < c->nprocs; i++) free(c->procs[i].live.snapshot);
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
  pthread_mutex_lock(&c->lock);   /* the counters are read by /metrics and /health */
  c->counters.segments_rejected++;
  c->counters.rejected[reason]++;
  pthread_mutex_unlock(&c->lock);
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
    if (c->procs[i].live.pid == pid) return &c->procs[i];
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

static void flush_rollups(collector_t *c, tracked_t *t) {
  if (t->minute.n) store_rollup(c->store, t->live.process_id, &t->minute);
  if (t->hour.n) store_rollup(c->store, t->live.process_id, &t->hour);
}

/* The newest snapshot, in full (with size classes), for the database. */
static char *latest_json(const tracked_t *t) {
  if (!t->live.snapshot) return NULL;
  json_t *full = snap_full_json(t->live.snapshot);
  char *json = json_dumps(full, JSON_COMPACT);
  json_decref(full);
  return json;
}

static void save_latest(collector_t *c, tracked_t *t, int64_t now) {
  char *json = latest_json(t);
  if (json && store_latest(c->store, t->live.process_id, now, json)) t->latest_saved_ms = now;
  free(json);
}

static void mark_exited(collector_t *c, tracked_t *t, int64_t now) {
  flush_rollups(c, t);
  char *json = latest_json(t);
  store_exited(c->store, t->live.process_id, now, json);
  free(json);
  c->counters.processes_exited++;
}

/* ---- reading one segment ------------------------------------------------------ */

static void store_snapshot(collector_t *c, tracked_t *t, const alloc_shm_snapshot_t *s) {
  int64_t ts = (int64_t)(s->time_ns / 1000000);
  double v[SNAP_NMETRICS];
  snap_metric_values(s, v);
  store_sample(c->store, t->live.process_id, ts, s->number, v);
  rollup_t done;
  if (rollup_add(&t->minute, ts, v, &done)) store_rollup(c->store, t->live.process_id, &done);
  if (rollup_add(&t->hour, ts, v, &done)) store_rollup(c->store, t->live.process_id, &done);
  c->counters.snapshots++;
}

/* Read every snapshot newer than the last one stored; keep the newest in
 * memory (called with c->lock held). */
static void read_new(collector_t *c, tracked_t *t, alloc_shm_segment_t *seg, int64_t now) {
  static alloc_shm_snapshot_t s;   /* one collector thread */
  uint64_t from = t->last_number + 1, oldest = alloc_shm_oldest(seg);
  if (from < oldest) from = oldest;
  bool any = false;
  for (uint64_t n = from; n <= seg->header.published; n++) {
    if (alloc_shm_read(seg, n, &s) != ALLOC_SHM_OK) continue;   /* overwritten meanwhile */
    store_snapshot(c, t, &s);
    if (!t->live.snapshot && !(t->live.snapshot = malloc(sizeof s))) continue;
    *t->live.snapshot = s;
    any = true;
  }
  t->last_number = seg->header.published;
  if (any && now - t->latest_saved_ms >= LATEST_SAVE_MS) save_latest(c, t, now);
}

/* Remove a segment whose process is gone, if the file is still the one
 * we looked at. */
static void remove_stale(collector_t *c, int dirfd, const char *name, const alloc_shm_segment_t *seg) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_ino == seg->ino && st.st_dev == seg->dev &&
      unlinkat(dirfd, name, 0) == 0) {
    pthread_mutex_lock(&c->lock);
    c->counters.stale_removed++;
    pthread_mutex_unlock(&c->lock);
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
    if (t && (t->live.start_time != h->start_time || t->created_ns != h->created_ns)) {
      if (t->live.start_time != h->start_time) {   /* another process under the same pid */
        mark_exited(c, t, now);
        t->live.start_time = h->start_time;
        t->live.process_id = 0;                   /* registered below as a new process */
        free(t->live.snapshot);
        t->live.snapshot = NULL;
        rollup_init(&t->minute, 60000);
        rollup_init(&t->hour, 3600000);
        t->is_new = true;
        t->latest_saved_ms = 0;
      }
      t->created_ns = h->created_ns;   /* a new segment: numbering restarts */
      t->last_number = 0;
    }
    if (!t && (t = add(c))) {
      t->live.pid = pid;
      t->live.start_time = h->start_time;
      t->created_ns = h->created_ns;
      t->is_new = true;
    }
    if (t) {
      collector_live_t *l = &t->live;
      if (l->process_id <= 0) {   /* new, or its row was lost with a failed tick */
        l->pidns = h->pidns_ino;
        l->uid = seg.uid;
        snprintf(l->exe, sizeof l->exe, "%s", h->exe);
        snprintf(l->comm, sizeof l->comm, "%s", h->comm);
        snprintf(l->version, sizeof l->version, "%s", h->version_str);
        store_proc_t p = {pid, h->start_time, h->pidns_ino, seg.uid, l->exe, l->comm, l->version};
        l->process_id = store_process(c->store, &p, now, &l->first_seen_ms);
      }
      l->last_seen_ms = now;
      t->seen = true;
      if (l->process_id > 0) read_new(c, t, &seg, now);
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
    mark_exited(c, t, now);
    log_info("process %d (%s) exited", t->live.pid, t->live.exe);
    free(t->live.snapshot);
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
  if (!d) {   /* removed, or not there yet: logged once until it is back */
    if (!c->dir_missing) log_warn("cannot read %s: %s (retrying every tick)", c->dir, strerror(errno));
    c->dir_missing = true;
    if (dirfd >= 0) close(dirfd);
    return;
  }
  if (c->dir_missing) log_info("%s is readable again", c->dir);
  c->dir_missing = false;
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
  if (!written) {   /* rolled back: rows of processes first seen in this tick are gone */
    c->counters.db_failures++;
    for (size_t i = 0; i < c->nprocs; i++) c->procs[i].live.process_id = 0;
  }
  c->counters.last_write_seconds = (double)(w1.tv_sec - w0.tv_sec) + (w1.tv_nsec - w0.tv_nsec) / 1e9;
  c->counters.ticks++;
  c->counters.last_tick_seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  pthread_mutex_unlock(&c->lock);
}

void collector_flush(collector_t *c) {
  store_begin(c->store);
  pthread_mutex_lock(&c->lock);
  int64_t now = now_ms();
  for (size_t i = 0; i < c->nprocs; i++) {
    flush_rollups(c, &c->procs[i]);
    if (c->procs[i].live.process_id > 0) save_latest(c, &c->procs[i], now);
  }
  pthread_mutex_unlock(&c->lock);
  store_commit(c->store);
}

static void fill_target(collector_t *c, const tracked_t *t, collector_target_t *out) {
  const collector_live_t *l = &t->live;
  out->pid = l->pid;
  out->start_time = l->start_time;
  out->process_id = l->process_id;
  snprintf(out->path, sizeof out->path, "%s/" ALLOC_SHM_PREFIX "%d", c->dir, l->pid);
  snprintf(out->exe, sizeof out->exe, "%s", l->exe);
  out->uid = l->uid;
  out->have_config = l->snapshot != NULL;
  if (l->snapshot) out->config = l->snapshot->config;
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
    if (c->procs[i].is_new && c->procs[i].live.snapshot) {
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

/* ---- live processes for the API ------------------------------------------------ */

collector_live_t *collector_live(collector_t *c, int pid, size_t *n, bool with_classes) {
  /* Without classes a snapshot is copied up to them: 0.6 KB, not 4.3. */
  size_t stride = with_classes ? sizeof(alloc_shm_snapshot_t) : offsetof(alloc_shm_snapshot_t, classes);
  pthread_mutex_lock(&c->lock);
  size_t count = 0;
  for (size_t i = 0; i < c->nprocs; i++)
    count += c->procs[i].live.process_id > 0 && (pid < 0 || c->procs[i].live.pid == pid);
  collector_live_t *out = calloc(count ? count : 1, sizeof *out + stride);
  char *snaps = out ? (char *)(out + count) : NULL;
  *n = 0;
  for (size_t i = 0; out && i < c->nprocs; i++) {
    const collector_live_t *l = &c->procs[i].live;
    if (l->process_id <= 0 || (pid >= 0 && l->pid != pid)) continue;
    out[*n] = *l;
    if (l->snapshot) {
      alloc_shm_snapshot_t *copy = (alloc_shm_snapshot_t *)(snaps + *n * stride);
      memcpy(copy, l->snapshot, stride);
      if (!with_classes) copy->nclasses = 0;
      out[*n].snapshot = copy;
    }
    (*n)++;
  }
  pthread_mutex_unlock(&c->lock);
  return out;
}

json_t *collector_live_json(const collector_live_t *l, bool with_classes) {
  json_t *o = json_pack("{s:I, s:i, s:I, s:I, s:I, s:s, s:s, s:s, s:f, s:f, s:b, s:n}", "id",
                        (json_int_t)l->process_id, "pid", l->pid, "start_time", (json_int_t)l->start_time, "pidns",
                        (json_int_t)l->pidns, "uid", (json_int_t)l->uid, "exe", l->exe, "comm", l->comm, "version",
                        l->version, "first_seen", l->first_seen_ms / 1e3, "last_seen", l->last_seen_ms / 1e3,
                        "alive", 1, "exited_at");
  const alloc_shm_snapshot_t *s = l->snapshot;
  if (o && s) {
    json_t *stats = snap_metrics_json(s);
    json_object_set(o, "fragmentation", json_object_get(stats, "fragmentation"));
    json_object_set_new(o, "stats", stats);
    json_object_set_new(o, "config", snap_config_json(&s->config));
    json_object_set_new(o, "snapshot_time", json_real((double)s->time_ns / 1e9));
    json_object_set_new(o, "snapshot_number", json_integer((json_int_t)s->number));
    if (with_classes) json_object_set_new(o, "classes", snap_classes_json(s));
  }
  return o;
}
