/* collector.c - discovery and collection.
 *
 * Each tick lists the telemetry directory and looks at the files named
 * liballoc.<pid> (segments) and .liballoc.<pid>[.<hex>].tmp (a writer's
 * temporaries: the old predictable name, or the random one a writer that
 * died mid-creation leaves).  Any local user can write into that directory and choose
 * the contents of its own processes' segments, so nothing read from it is
 * trusted:
 *
 * - A segment is opened with the reader module (no symlinks, no FIFOs,
 *   bounds-checked, pread only, the ring of the size this allocd knows),
 *   and accepted only if its header names the process now running under
 *   that pid (pid, start time, pid namespace) and its owner is one of that
 *   process's uids as the kernel gives them (/proc/PID/status).  The
 *   executable and thread name shown and matched by rules are the
 *   kernel's (/proc/PID/exe, /proc/PID/comm), not the segment's claims,
 *   and all text is cleaned as it is read (text.h).
 * - A tick reads at most one ring of new snapshots per process, and
 *   `published` never moves the reading point backwards.  A snapshot's
 *   time is kept only if it lies between the process's start and a
 *   moment after allocd's clock (and not before the previous one);
 *   otherwise allocd's clock replaces it, so no process can date rows
 *   into the future (or the past) to win or lose retention.
 * - The segments of the processes already tracked are read by name, before
 *   the directory is listed: any user can fill the directory (with files
 *   named like segments or not), and what listing them costs must not
 *   delay the processes already known.  A tracked segment that is gone
 *   means the process exited.
 * - An accepted segment stays open (up to a quarter of the descriptor
 *   limit), and the next ticks read it through that descriptor with no
 *   open and no /proc read while its `published` keeps moving: a file
 *   someone keeps writing is its live process's (an exited process's file
 *   goes still or away; a process that makes a new segment writes there),
 *   for at most VERIFY_MS between full checks (quick_read).
 * - The directory is listed only to discover new files, and a little at a
 *   time: one pass over it spans as many ticks as it needs, and each
 *   file listed that is neither tracked nor remembered waits in a queue to
 *   be judged; the next batch is listed when the queue is empty.
 * - A tick has a time budget, spent in that order: tracked segments read
 *   (in turn, from where the last tick stopped), then files listed, then
 *   files judged.  Whatever the budget, a tick reads at least READ_MIN
 *   tracked segments, lists at least LIST_MIN names and judges at least
 *   JUDGE_MIN files, so junk cannot starve known processes or newcomers,
 *   and each tick's work is bounded however full the directory.
 * - A file refused (or left alone) is remembered by (kind, pid, inode) in
 *   an O(1) table (judged.h), counted and logged once, not re-read at
 *   every tick.
 * - A file that provably does not belong to the process its name names
 *   is removed and counted: a segment or temporary whose pid is no process
 *   here, or whose owner is none of the process's uids (and not root,
 *   whom no local user can impersonate).  A valid segment of another pid
 *   namespace, or of an unknown layout version, is never removed.  The
 *   removal moves the file aside first and unlinks it only if it is the
 *   inode judged (remove_if_same), so a file put under the name meanwhile
 *   is never deleted.
 * - A valid segment whose process is gone, or whose pid now belongs to
 *   another process, is stale and removed the same way.
 *
 * New snapshots are written in one transaction per tick with the rollups
 * they complete.  The newest snapshot of each live process stays in
 * memory: the API and /metrics serve live processes from here, not from
 * the database, which gets the full snapshot (with size classes, as JSON)
 * once a minute and when the process exits, for the history of exited
 * processes, and the size classes alone, packed, once a minute
 * (CLASS_SAVE_MS) for their history.
 *
 * Each tick also sums the live processes' newest snapshots into the
 * host's series (host.h: the host, and its executables wasting most),
 * written with their rollups in the same transaction. */
#include "collector.h"

#include "host.h"
#include "judged.h"
#include "log.h"
#include "procinfo.h"
#include "rollup.h"
#include "same_file.h"
#include "snapshot.h"
#include "text.h"

#include <alloc_shm_reader.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LATEST_SAVE_MS 60000   /* how often a live process's full snapshot is written */
#define CLASS_SAVE_MS 60000    /* size classes are written at most once per slot of this */
#define HOST_SERIES_MAX (HOST_EXES + 2)   /* the host, its executables, the others */
#define CLOCK_SKEW_NS 2000000000ull        /* a snapshot may be this far ahead of allocd's clock */
#define START_SLACK_NS 1000000000ull       /* start times are in clock ticks: allow a second */
#define READ_MIN 16            /* tracked segments read per tick even when the budget is spent */
#define LIST_MIN 4096          /* names listed per tick even when the budget is spent */
#define JUDGE_MIN 16           /* new files judged per tick even when the budget is spent */
#define QUEUE_MAX 65536        /* files waiting to be judged (the rest are listed next pass) */
#define VERIFY_MS 30000        /* a held segment's process is checked in /proc at least this often */
#define CGROUP_READS 64        /* cgroup files read per tick (pressure.h's cache) */
#define REMOVALS_LOGGED 10     /* removals logged by name per minute */
#define TEMP_PREFIX "." ALLOC_SHM_PREFIX
#define TEMP_SUFFIX ".tmp"

typedef struct tracked_s {
  collector_live_t live;            /* identity and the newest snapshot */
  uint64_t created_ns, last_number;
  uint64_t start_wall_ns;           /* CLOCK_REALTIME of the process's start, less START_SLACK_NS */
  uint64_t last_time_ns;            /* time of the newest snapshot stored */
  uid_t seg_uid;                    /* owner of its segment file */
  int64_t latest_saved_ms;          /* when live.snapshot last went to the database */
  int64_t cgroup_member_ms;         /* when its /proc/PID/cgroup was last read */
  int64_t class_slot, class_hour;   /* CLASS_SAVE_MS slot and hour of the last class row */
  bool seen, is_new;
  bool held;                        /* its segment is open in held_fd (hold, quick_read) */
  int held_fd;
  uint64_t held_published;          /* the segment's `published` when last read */
  int64_t verified_ms;              /* when its identity was last checked in /proc */
  rollup_t minute, hour;
  /* What the tick being written may change, as it was before: if its
   * transaction fails, the snapshots it read are read again from the ring
   * next tick instead of leaving a gap (and not counted twice). */
  bool undo_saved;
  uint64_t undo_number;
  int64_t undo_class_slot, undo_class_hour;
  rollup_t undo_minute, undo_hour;
} tracked_t;

/* A host series being rolled up (host.h). */
typedef struct host_series_s {
  char key[HOST_KEY_MAX];
  rollup_t minute, hour;
} host_series_t;

/* The host's series in memory, as one block so that a failed tick can
 * put it back as it was. */
typedef struct host_state_s {
  host_series_t series[HOST_SERIES_MAX];
  size_t n;
} host_state_t;

/* A file of the directory waiting to be judged: a segment or a temporary. */
typedef struct entry_s {
  int pid;
  enum judged_kind kind;
  ino_t ino;
  char name[64];   /* parse_entry refuses longer names */
} entry_t;

struct collector_s {
  store_t *store;
  char dir[512];
  uint64_t pidns;
  int64_t budget_ms;
  pthread_mutex_t lock;       /* guards procs and counters for the API */
  tracked_t *procs;
  size_t nprocs, cap;
  int *slots;                 /* pid -> index + 1 in procs, open addressing */
  size_t nslots;
  judged_t *judged;
  entry_t *queue;             /* files listed, waiting to be judged: [qhead, qlen) */
  size_t qhead, qlen, qcap;
  DIR *listing;               /* the pass over the directory in progress, if any */
  size_t read_next;           /* index in procs where the next tick's reads start */
  size_t cgroup_next;         /* and where the next tick's cgroup updates start */
  cgroup_cache_t *cgroups;
  uint64_t removals_logged, removals_unlogged;   /* this minute's */
  int64_t removals_minute_ms;
  collector_counters_t counters;
  bool dir_missing;           /* the directory could not be read last tick */
  bool listed_once;           /* a whole pass over the directory is done: every process was found */
  size_t held, held_max;      /* segments kept open, and how many may be */
  host_state_t host, host_undo;
  bool host_summed;           /* host_tick has summed the processes: their class totals can be given */
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t real_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t own_pidns(void) {
  struct stat st;
  return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

collector_t *collector_new(store_t *store, const char *shm_dir) {
  collector_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  if (!(c->judged = judged_new())) {
    free(c);
    return NULL;
  }
  c->store = store;
  snprintf(c->dir, sizeof c->dir, "%s", shm_dir);
  c->pidns = own_pidns();
  c->budget_ms = 500;
  c->cgroups = cgroup_cache_new("/proc/self/mountinfo");   /* NULL: no cgroup figures */
  pthread_mutex_init(&c->lock, NULL);
  return c;
}

/* A quarter of the descriptor limit (main raised it before the first
 * tick): the rest is for HTTP connections, the database and the reads. */
static size_t held_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  return rl.rlim_cur == RLIM_INFINITY ? 65536 : (size_t)(rl.rlim_cur / 4);
}

static void release(collector_t *c, tracked_t *t) {
  if (!t->held) return;
  close(t->held_fd);
  t->held = false;
  c->held--;
}

void collector_set_budget(collector_t *c, int64_t budget_ms) { c->budget_ms = budget_ms > 1 ? budget_ms : 1; }

void collector_free(collector_t *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nprocs; i++) {
    release(c, &c->procs[i]);
    free(c->procs[i].live.snapshot);
  }
  free(c->procs);
  free(c->slots);
  free(c->queue);
  if (c->listing) closedir(c->listing);
  judged_free(c->judged);
  cgroup_cache_free(c->cgroups);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

/* ---- rejections and removals -------------------------------------------------- */

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

/* Remember a refused file; count and log it the first time only. */
static void reject(collector_t *c, const entry_t *e, const char *name, enum collector_reject reason, const char *why) {
  if (!judged_put(c->judged, e->kind, e->pid, e->ino, now_ms())) return;
  pthread_mutex_lock(&c->lock);   /* the counters are read by /metrics and /health */
  c->counters.segments_rejected++;
  c->counters.rejected[reason]++;
  pthread_mutex_unlock(&c->lock);
  log_warn("segment %s/%s rejected: %s", c->dir, name, why);
}

/* May a file owned by `uid` under the name of `pid` be removed as not
 * the process's?  Only when provably so: no process has that pid (in our
 * namespace: the caller knows the file is not another namespace's), or
 * the owner is none of the process's uids and not root.  Gone or owned by
 * a stranger: that is all a squatter can be. */
static bool provably_not_owners(int pid, uid_t uid) {
  procinfo_t pi;
  enum proc_state s = proc_identity(pid, &pi);
  return s == PROC_GONE || (s == PROC_ALIVE && uid != 0 && !proc_has_uid(&pi, uid));
}

/* Count a removal; log up to REMOVALS_LOGGED a minute by name and the
 * rest as one line a minute (a directory full of junk must not flood the
 * log). */
static void count_removed(collector_t *c, uint64_t *counter, const char *name, const char *what) {
  pthread_mutex_lock(&c->lock);
  (*counter)++;
  pthread_mutex_unlock(&c->lock);
  if (c->removals_logged < REMOVALS_LOGGED) {
    c->removals_logged++;
    log_info("removed %s %s/%s", what, c->dir, name);
  } else {
    c->removals_unlogged++;
  }
}

static void log_removals(collector_t *c, int64_t now) {
  if (now - c->removals_minute_ms < 60000) return;
  if (c->removals_unlogged)
    log_info("removed %llu more squatters or stale temporaries from %s in the last minute",
             (unsigned long long)c->removals_unlogged, c->dir);
  c->removals_minute_ms = now;
  c->removals_logged = c->removals_unlogged = 0;
}

/* A file named like a segment that is not a usable one of its process:
 * removed if provably a squatter, else refused and remembered. */
static void refuse(collector_t *c, int dirfd, const entry_t *e, const char *name, enum collector_reject reason,
                   const char *why) {
  struct stat st;
  bool removable = reason != REJECT_VERSION && reason != REJECT_OTHER_NAMESPACE &&
                   fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && provably_not_owners(e->pid, st.st_uid);
  if (removable && remove_if_same(dirfd, name, st.st_dev, st.st_ino)) {
    count_removed(c, &c->counters.squatters_removed, name, "squatter segment");
    return;
  }
  reject(c, e, name, reason, why);
}

/* A writer's temporary: removed when provably not its process's (left by a
 * process that is gone, or planted by another user to block the writer),
 * else left alone (it is being written) and looked at again later. */
static void judge_temporary(collector_t *c, int dirfd, const entry_t *e, const char *name) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (provably_not_owners(e->pid, st.st_uid) && remove_if_same(dirfd, name, st.st_dev, st.st_ino)) {
    count_removed(c, &c->counters.temporaries_removed, name, "stale or planted temporary");
    return;
  }
  judged_put(c->judged, e->kind, e->pid, e->ino, now_ms());
}

/* ---- tracked processes ------------------------------------------------------ */

static size_t pid_hash(int pid, size_t n) { return ((uint32_t)pid * 2654435761u) & (n - 1); }

static void index_insert(int *slots, size_t n, int pid, size_t i) {
  size_t k = pid_hash(pid, n);
  while (slots[k]) k = (k + 1) & (n - 1);
  slots[k] = (int)i + 1;
}

/* Index the tracked processes by pid, at most half full (after they moved
 * or grew). */
static void reindex(collector_t *c) {
  size_t n = 64;
  while (n < 2 * c->nprocs + 2) n *= 2;
  int *slots = calloc(n, sizeof *slots);
  if (!slots) return;   /* keep the old index: find falls back to a scan */
  free(c->slots);
  c->slots = slots;
  c->nslots = n;
  for (size_t i = 0; i < c->nprocs; i++) index_insert(slots, n, c->procs[i].live.pid, i);
}

static tracked_t *find(collector_t *c, int pid) {
  if (c->nslots < 2 * c->nprocs + 2) {   /* the index could not grow */
    for (size_t i = 0; i < c->nprocs; i++)
      if (c->procs[i].live.pid == pid) return &c->procs[i];
    return NULL;
  }
  for (size_t k = pid_hash(pid, c->nslots); c->slots[k]; k = (k + 1) & (c->nslots - 1))
    if (c->procs[c->slots[k] - 1].live.pid == pid) return &c->procs[c->slots[k] - 1];
  return NULL;
}

static tracked_t *add(collector_t *c, int pid) {
  if (c->nprocs == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 16;
    tracked_t *p = realloc(c->procs, cap * sizeof *p);
    if (!p) return NULL;
    c->procs = p;
    c->cap = cap;
  }
  tracked_t *t = &c->procs[c->nprocs++];
  memset(t, 0, sizeof *t);
  t->live.pid = pid;
  rollup_init(&t->minute, 60000);
  rollup_init(&t->hour, 3600000);
  if (c->nslots < 2 * c->nprocs + 2) reindex(c);
  else index_insert(c->slots, c->nslots, pid, c->nprocs - 1);
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

/* The time a snapshot is stored under: its own if it lies between the
 * process's start and a moment after allocd's clock, else allocd's clock;
 * and never before the process's previous snapshot. */
static uint64_t sane_time(collector_t *c, tracked_t *t, uint64_t claimed, uint64_t now_ns) {
  uint64_t ns = claimed;
  if (claimed < t->start_wall_ns || claimed > now_ns + CLOCK_SKEW_NS) {
    ns = now_ns;
    c->counters.times_replaced++;
  }
  if (ns < t->last_time_ns) ns = t->last_time_ns;
  t->last_time_ns = ns;
  return ns;
}

static void store_snapshot(collector_t *c, tracked_t *t, const alloc_shm_snapshot_t *s) {
  int64_t ts = (int64_t)(s->time_ns / 1000000);
  double v[SNAP_NMETRICS];
  snap_metric_values(s, v);
  if (store_sample(c->store, t->live.process_id, ts, s->number, v) == 0) return;   /* in the stored rollups already */
  rollup_t done;
  if (rollup_add(&t->minute, ts, v, &done)) store_rollup(c->store, t->live.process_id, &done);
  if (rollup_add(&t->hour, ts, v, &done)) store_rollup(c->store, t->live.process_id, &done);
  c->counters.snapshots++;
}

/* The newest snapshot's size classes, if it is the first of its
 * CLASS_SAVE_MS slot (slots are aligned to the wall clock, so the first row
 * of each hour is known as it is written: the one kept longer). */
static void save_classes(collector_t *c, tracked_t *t) {
  static uint8_t packed[HOST_CLASSES_PACK_MAX];   /* one collector thread */
  int64_t ms = (int64_t)(t->live.snapshot->time_ns / 1000000);
  if (ms / CLASS_SAVE_MS == t->class_slot) return;
  bool hourly = ms / 3600000 != t->class_hour;
  if (!store_classes(c->store, t->live.process_id, ms, hourly, packed, host_pack_classes(t->live.snapshot, packed)))
    return;
  t->class_slot = ms / CLASS_SAVE_MS;
  if (hourly) t->class_hour = ms / 3600000;
}

/* Read the snapshots newer than the last one stored: at most a ring's
 * worth (alloc_shm_oldest is published - ring_slots + 1, and the reader
 * bounds published far below wrapping), and the reading point only moves
 * forward, so a writer that moves `published` back and forth cannot have
 * the same numbers stored again.  Keeps the newest in memory (called with
 * c->lock held). */
static void read_new(collector_t *c, tracked_t *t, alloc_shm_segment_t *seg, int64_t now) {
  /* Read into a spare block that then becomes the newest snapshot, the
   * one it replaces the next spare (one collector thread): no 4.4 KB copy
   * a snapshot.  Blocks are only swapped under c->lock, held here. */
  static alloc_shm_snapshot_t *spare;
  if (!t->undo_saved) {
    t->undo_saved = true;
    t->undo_number = t->last_number;
    t->undo_class_slot = t->class_slot;
    t->undo_class_hour = t->class_hour;
    t->undo_minute = t->minute;
    t->undo_hour = t->hour;
  }
  uint64_t from = t->last_number + 1, oldest = alloc_shm_oldest(seg), to = seg->header.published;
  if (from < oldest) from = oldest;
  uint64_t wall = real_ns();
  bool any = false;
  for (uint64_t n = from; n <= to; n++) {
    if (!spare && !(spare = malloc(sizeof *spare))) {   /* out of memory: the rest are read next tick */
      to = n - 1;
      break;
    }
    if (alloc_shm_read(seg, n, spare) != ALLOC_SHM_OK) continue;   /* overwritten meanwhile */
    spare->time_ns = sane_time(c, t, spare->time_ns, wall);
    store_snapshot(c, t, spare);
    alloc_shm_snapshot_t *older = t->live.snapshot;
    t->live.snapshot = spare;
    spare = older;   /* none for a process's first: allocated at the next read */
    any = true;
  }
  if (to > t->last_number) t->last_number = to;
  if (any) save_classes(c, t);
  if (any && now - t->latest_saved_ms >= LATEST_SAVE_MS) save_latest(c, t, now);
}

/* Remove a segment whose process is gone, if the file is still the one
 * we looked at. */
static void remove_stale(collector_t *c, int dirfd, const char *name, const alloc_shm_segment_t *seg) {
  if (remove_if_same(dirfd, name, seg->dev, seg->ino)) {
    pthread_mutex_lock(&c->lock);
    c->counters.stale_removed++;
    pthread_mutex_unlock(&c->lock);
    char exe[64];
    text_clean(seg->header.exe, sizeof seg->header.exe, exe, sizeof exe);
    log_info("removed stale segment %s/%s (pid %d, %s)", c->dir, name, (int)seg->header.pid, exe);
  }
}

/* A tracked process under this pid whose identity changed: another
 * process under the same pid (exited, registered anew), or a new segment
 * of the same process (numbering restarts). */
static void renew(collector_t *c, tracked_t *t, const alloc_shm_header_t *h, int64_t now) {
  if (t->live.start_time != h->start_time) {
    mark_exited(c, t, now);
    t->live.start_time = h->start_time;
    t->live.process_id = 0;   /* registered as a new process */
    free(t->live.snapshot);
    t->live.snapshot = NULL;
    rollup_init(&t->minute, 60000);
    rollup_init(&t->hour, 3600000);
    t->is_new = true;
    t->latest_saved_ms = 0;
    t->last_time_ns = 0;
    t->class_slot = t->class_hour = 0;
  }
  release(c, t);   /* that was the old segment */
  t->created_ns = h->created_ns;
  t->last_number = 0;
}

/* Who the process is, as the kernel says, and what its segment claims
 * where the kernel would not tell; all text cleaned. */
static void identify(tracked_t *t, const alloc_shm_segment_t *seg, procinfo_t *pi) {
  collector_live_t *l = &t->live;
  const alloc_shm_header_t *h = &seg->header;
  proc_names(l->pid, pi);
  l->pidns = h->pidns_ino;
  l->uid = pi->uids[0];
  t->seg_uid = seg->uid;
  l->exe_verified = pi->exe_known;
  if (pi->exe_known) snprintf(l->exe, sizeof l->exe, "%s", pi->exe);
  else text_clean(h->exe, sizeof h->exe, l->exe, sizeof l->exe);
  if (pi->comm[0]) snprintf(l->comm, sizeof l->comm, "%s", pi->comm);
  else text_clean(h->comm, sizeof h->comm, l->comm, sizeof l->comm);
  text_clean(h->version_str, sizeof h->version_str, l->version, sizeof l->version);
  t->start_wall_ns = proc_start_wall_ns(h->start_time);
  t->start_wall_ns = t->start_wall_ns > START_SLACK_NS ? t->start_wall_ns - START_SLACK_NS : 0;
}

/* Keep an accepted segment open for the next ticks (quick_read), if the
 * descriptor budget allows: it is then not closed by the caller. */
static void hold(collector_t *c, tracked_t *t, alloc_shm_segment_t *seg, int64_t now) {
  release(c, t);
  if (!c->held_max) c->held_max = held_limit();
  if (c->held >= c->held_max) return;
  t->held = true;
  t->held_fd = seg->fd;
  t->held_published = seg->header.published;
  t->verified_ms = now;
  c->held++;
  seg->fd = -1;
}

/* An accepted segment: track its process and read what is new. */
static void accept_segment(collector_t *c, alloc_shm_segment_t *seg, procinfo_t *pi, int64_t now) {
  const alloc_shm_header_t *h = &seg->header;
  int pid = h->pid;
  pthread_mutex_lock(&c->lock);
  tracked_t *t = find(c, pid);
  if (t && (t->live.start_time != h->start_time || t->created_ns != h->created_ns)) renew(c, t, h, now);
  if (!t && (t = add(c, pid))) {
    t->live.start_time = h->start_time;
    t->created_ns = h->created_ns;
    t->is_new = true;
  }
  if (t) {
    collector_live_t *l = &t->live;
    if (l->process_id <= 0) {   /* new, or its row was lost with a failed tick */
      identify(t, seg, pi);
      store_proc_t p = {pid, h->start_time, h->pidns_ino, l->uid, l->exe, l->comm, l->version};
      l->process_id = store_process(c->store, &p, now, &l->first_seen_ms);
    }
    l->last_seen_ms = now;
    t->seen = true;
    if (l->process_id > 0) {
      read_new(c, t, seg, now);
      hold(c, t, seg, now);
    }
  }
  pthread_mutex_unlock(&c->lock);
}

/* A held segment with nothing new (the process publishes less often than
 * allocd ticks, or the tick came just before its snapshot): is its
 * process still the one that started then (not gone, its pid not reused)? */
static bool still_there(const tracked_t *t) { return proc_started_at(t->live.pid, t->live.start_time); }

/* A tracked process's segment read through the descriptor kept open, with
 * no open and no /proc read, if it is still worth trusting without them:
 * its `published` moved since the last read (someone writes this very
 * file, and only its process would: after an exit it goes still or is
 * removed, and a process that makes a new segment writes into that one)
 * or, if not, still_there says so; the file is still linked (an exiting
 * process removes it after its last snapshot); its header still names the
 * process; and its identity was checked in full less than VERIFY_MS ago.
 * False: visit it by name, as a new tick would.  The cost: the checks of
 * the full path (the owner among the process's uids, which a set-id call
 * may change) run every VERIFY_MS instead of every tick. */
static bool quick_read(collector_t *c, tracked_t *t, int64_t now) {
  if (!t->held || t->live.process_id <= 0 || now - t->verified_ms >= VERIFY_MS) return false;
  alloc_shm_segment_t seg = {.fd = t->held_fd};
  /* removed: the process exited (it removes its segment last), or made a
   * new one; the full path tells which, in this tick as before */
  if (alloc_shm_refresh(&seg) != ALLOC_SHM_OK || seg.nlink == 0) return false;
  const alloc_shm_header_t *h = &seg.header;
  if (h->pid != t->live.pid || h->start_time != t->live.start_time || h->created_ns != t->created_ns ||
      h->pidns_ino != c->pidns)
    return false;
  bool moved = h->published != t->held_published;
  if (!moved && !still_there(t)) return false;
  t->held_published = h->published;
  pthread_mutex_lock(&c->lock);
  t->live.last_seen_ms = now;
  t->seen = true;
  if (moved) read_new(c, t, &seg, now);
  pthread_mutex_unlock(&c->lock);
  return true;
}

/* Read a segment and act on what it is.  For a tracked process's segment
 * read by name (`by_name`), a file that is not a usable segment of its
 * process is not judged here (its inode is not known from a listing): it
 * leaves the process unseen, and is judged when the listing reaches it. */
static void visit(collector_t *c, int dirfd, const entry_t *e, int64_t now, bool by_name) {
  const char *name = e->name;
  alloc_shm_segment_t seg;
  int err = alloc_shm_open(&seg, dirfd, name, ALLOC_SHM_ANY_OWNER);
  if (err) {
    if (!by_name && (err != ALLOC_SHM_ERR_OPEN || seg.sys_errno != ENOENT))
      refuse(c, dirfd, e, name, reason_of(err), alloc_shm_strerror(err));
    return;
  }
  const alloc_shm_header_t *h = &seg.header;
  procinfo_t pi;
  enum proc_state state;
  if (h->pid != e->pid) {
    if (!by_name) refuse(c, dirfd, e, name, REJECT_PID_MISMATCH, "header pid differs from the file name");
  } else if (h->pidns_ino != c->pidns) {
    if (!by_name) refuse(c, dirfd, e, name, REJECT_OTHER_NAMESPACE, "process of another pid namespace");
  } else if ((state = proc_identity(e->pid, &pi)) == PROC_UNKNOWN) {
    if (by_name) find(c, e->pid)->seen = true;   /* /proc would not say: try again next tick */
  } else if (state == PROC_GONE || pi.start_time != h->start_time) {
    remove_stale(c, dirfd, name, &seg);   /* gone, or the pid was reused */
  } else if (!proc_has_uid(&pi, seg.uid)) {
    if (!by_name) refuse(c, dirfd, e, name, REJECT_OWNER, "file owner differs from every uid of the process");
  } else {
    accept_segment(c, &seg, &pi, now);
  }
  alloc_shm_close(&seg);
}

/* ---- the host's series ---------------------------------------------------------- */

static void flush_host(collector_t *c, host_series_t *h) {
  if (h->minute.n) store_host_rollup(c->store, h->key, &h->minute);
  if (h->hour.n) store_host_rollup(c->store, h->key, &h->hour);
}

/* The series with this key, added if there is room; NULL if not. */
static host_series_t *host_series(collector_t *c, const char *key) {
  for (size_t i = 0; i < c->host.n; i++)
    if (strcmp(c->host.series[i].key, key) == 0) return &c->host.series[i];
  if (c->host.n == HOST_SERIES_MAX) return NULL;
  host_series_t *h = &c->host.series[c->host.n++];
  snprintf(h->key, sizeof h->key, "%s", key);
  rollup_init_set(&h->minute, 60000, &host_set);
  rollup_init_set(&h->hour, 3600000, &host_set);
  return h;
}

/* Series of earlier ticks that this one's sums do not have (an executable
 * that exited or fell out of the top): their rollups are written (merged
 * into the stored rows, like a restart's) and their places freed. */
static void drop_absent(collector_t *c, const host_sum_t *sums, size_t n) {
  size_t j = 0;
  for (size_t i = 0; i < c->host.n; i++) {
    bool present = false;
    for (size_t k = 0; k < n && !present; k++) present = strcmp(sums[k].key, c->host.series[i].key) == 0;
    if (present) c->host.series[j++] = c->host.series[i];
    else flush_host(c, &c->host.series[i]);
  }
  c->host.n = j;
}

static void write_host(collector_t *c, const host_sum_t *sum, int64_t now) {
  host_series_t *h = host_series(c, sum->key);
  if (!h || store_host_sample(c->store, h->key, now, sum->v) != 1) return;
  rollup_t done;
  if (rollup_add(&h->minute, now, sum->v, &done)) store_host_rollup(c->store, h->key, &done);
  if (rollup_add(&h->hour, now, sum->v, &done)) store_host_rollup(c->store, h->key, &done);
}

/* Sum the live processes' newest snapshots into the host's series
 * (called inside the tick's transaction).  Their size classes are summed
 * only when /metrics asks (collector_host_classes): 1000 processes' 69
 * classes each cost 2-3% of the collector's time at every tick, for
 * totals a scrape reads every 15 s or so. */
static void host_tick(collector_t *c, int64_t now) {
  /* Until the first pass over the directory has been listed and judged (a
   * start beside more segments than one tick's budget reads), the sums
   * would miss processes: a dip after every restart.  No row then. */
  if (!c->listed_once || c->qhead < c->qlen) return;
  pthread_mutex_lock(&c->lock);
  c->host_undo = c->host;
  c->host_summed = true;
  const alloc_shm_snapshot_t **snaps = malloc((c->nprocs ? c->nprocs : 1) * sizeof *snaps);
  const char **exes = malloc((c->nprocs ? c->nprocs : 1) * sizeof *exes);
  size_t n = 0;
  for (size_t i = 0; snaps && exes && i < c->nprocs; i++) {
    const collector_live_t *l = &c->procs[i].live;
    if (!l->snapshot || l->process_id <= 0) continue;
    snaps[n] = l->snapshot;
    exes[n++] = l->exe_verified ? l->exe : HOST_EXE_UNVERIFIED;
  }
  host_sum_t sums[HOST_SERIES_MAX];
  size_t ns = snaps && exes ? host_sums(snaps, exes, n, sums) : 0;
  drop_absent(c, sums, ns);
  for (size_t i = 0; i < ns; i++) write_host(c, &sums[i], now);
  free(snaps);
  free(exes);
  pthread_mutex_unlock(&c->lock);
}

/* The same processes as host_tick's sums, once it has made any (no
 * totals that miss processes after a restart). */
size_t collector_host_classes(collector_t *c, host_class_t *out, size_t max) {
  size_t n = 0;
  pthread_mutex_lock(&c->lock);
  for (size_t i = 0; c->host_summed && i < c->nprocs; i++) {
    const collector_live_t *l = &c->procs[i].live;
    if (l->snapshot && l->process_id > 0) n = host_add_classes(out, n, max, l->snapshot);
  }
  pthread_mutex_unlock(&c->lock);
  host_sort_classes(out, n);
  return n;
}

/* ---- the tick ---------------------------------------------------------------- */

/* Processes whose segment disappeared (normal exit removes it). */
static void notice_exits(collector_t *c, int64_t now) {
  pthread_mutex_lock(&c->lock);
  size_t j = 0, before = c->nprocs;
  for (size_t i = 0; i < c->nprocs; i++) {
    tracked_t *t = &c->procs[i];
    if (t->seen) {   /* kept: moved down over an exited one, if any (a tracked_t is 6.5 KB) */
      t->seen = false;
      if (j != i) c->procs[j] = *t;
      j++;
      continue;
    }
    mark_exited(c, t, now);
    log_info("process %d (%s) exited", t->live.pid, t->live.exe);
    release(c, t);
    free(t->live.snapshot);
  }
  c->nprocs = j;
  c->counters.processes_alive = j;
  if (j != before) reindex(c);   /* they moved */
  pthread_mutex_unlock(&c->lock);
}

/* The pid of a writer's temporary: ".liballoc.<pid>.tmp" (the old,
 * predictable name another user could squat) or ".liballoc.<pid>.<hex>.tmp"
 * (the writer's unpredictable one, left behind if it died mid-creation). */
static bool parse_temporary(const char *name, pid_t *pid) {
  size_t pl = strlen(TEMP_PREFIX), n = strlen(name);
  if (n >= 64 || strncmp(name, TEMP_PREFIX, pl) != 0) return false;
  const char *p = name + pl, *digits = p;
  while (*p >= '0' && *p <= '9') p++;
  char seg[64];
  snprintf(seg, sizeof seg, ALLOC_SHM_PREFIX "%.*s", (int)(p - digits), digits);
  if (p == digits || !alloc_shm_parse_name(seg, pid)) return false;
  if (*p == '.' && p[1] && strcmp(p, TEMP_SUFFIX) != 0) {   /* a random part */
    const char *hex = ++p;
    while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')) p++;
    if (p == hex || p - hex > 16) return false;
  }
  return strcmp(p, TEMP_SUFFIX) == 0;
}

/* A directory entry's name: a segment "liballoc.<pid>" or a writer's
 * temporary. */
static bool parse_entry(const char *name, ino_t ino, entry_t *out) {
  pid_t pid;
  enum judged_kind kind = JUDGED_SEGMENT;
  if (!alloc_shm_parse_name(name, &pid)) {
    if (!parse_temporary(name, &pid)) return false;
    kind = JUDGED_TEMPORARY;
  }
  out->pid = (int)pid;
  out->kind = kind;
  out->ino = ino;
  snprintf(out->name, sizeof out->name, "%s", name);
  return true;
}

/* Read each tracked process's segment, by name, in turn from where the
 * last tick stopped, while the budget lasts and at least READ_MIN of them.
 * Those left for later keep their place (their snapshots wait in their
 * rings); a segment gone, or no longer its process's, leaves its process
 * unseen: it exited (and a file under its name is judged as new when the
 * listing comes to it).  True if the budget ran out. */
static bool read_tracked(collector_t *c, int dirfd, int64_t now, int64_t deadline) {
  size_t n = c->nprocs, start = c->read_next < n ? c->read_next : 0;
  int read = 0;
  for (size_t k = 0; k < n; k++) {
    size_t i = (start + k) % n;
    if (read >= READ_MIN && mono_ms() >= deadline) {
      for (size_t r = k; r < n; r++) c->procs[(start + r) % n].seen = true;
      c->read_next = i;
      return true;
    }
    read++;
    if (quick_read(c, &c->procs[i], now)) continue;
    entry_t e = {.pid = c->procs[i].live.pid, .kind = JUDGED_SEGMENT};
    snprintf(e.name, sizeof e.name, ALLOC_SHM_PREFIX "%d", e.pid);
    visit(c, dirfd, &e, now, true);   /* procs do not move during reads */
  }
  c->read_next = 0;
  return false;
}

/* Queue a listed file for judging, unless it is tracked or remembered
 * (looking it up keeps it remembered at the end of the pass). */
static void enqueue(collector_t *c, const entry_t *e, int64_t now) {
  if (e->kind == JUDGED_SEGMENT && find(c, e->pid)) return;   /* read by read_tracked */
  if (judged_fresh(c->judged, e->kind, e->pid, e->ino, now)) return;
  if (c->qlen == c->qcap) {
    size_t cap = c->qcap ? 2 * c->qcap : 256;
    entry_t *q = realloc(c->queue, cap * sizeof *q);
    if (!q) return;   /* listed again next pass */
    c->queue = q;
    c->qcap = cap;
  }
  c->queue[c->qlen++] = *e;
}

/* Continue the pass over the directory, or start one, while the budget
 * lasts and at least LIST_MIN names; only when the queue is empty, so
 * that it never holds a file twice.  At the end of a pass the judged
 * table forgets the files no longer there. */
static bool list_more(collector_t *c, int64_t now, int64_t deadline) {
  if (c->qhead < c->qlen) return false;
  c->qhead = c->qlen = 0;
  if (!c->listing && !(c->listing = opendir(c->dir))) return false;
  for (int listed = 0;; listed++) {
    if (listed >= LIST_MIN && mono_ms() >= deadline) return true;
    if (c->qlen >= QUEUE_MAX) return false;
    errno = 0;
    struct dirent *de = readdir(c->listing);
    if (!de) break;
    entry_t e;
    if (parse_entry(de->d_name, de->d_ino, &e)) enqueue(c, &e, now);
  }
  closedir(c->listing);
  c->listing = NULL;
  judged_sweep(c->judged);
  c->listed_once = true;
  return false;
}

/* Judge the queued files, in the order listed, while the budget lasts and
 * at least JUDGE_MIN of them.  True if some were left. */
static bool judge_queued(collector_t *c, int dirfd, int64_t now, int64_t deadline) {
  for (int judged = 0; c->qhead < c->qlen; judged++) {
    if (judged >= JUDGE_MIN && mono_ms() >= deadline) return true;
    const entry_t *e = &c->queue[c->qhead++];
    if (e->kind == JUDGED_TEMPORARY) judge_temporary(c, dirfd, e, e->name);
    else if (!find(c, e->pid)) visit(c, dirfd, e, now, false);   /* not found meanwhile by an earlier one */
  }
  return false;
}

/* The host's memory pressure, and the memory cgroups of as many processes
 * as CGROUP_READS file reads allow, in turn (pressure.h).  Only this
 * thread writes procs: the API's copies see each update whole, under the
 * lock. */
static void update_pressure(collector_t *c, int64_t now) {
  psi_t psi;
  psi_read("/proc/pressure/memory", &psi);
  pthread_mutex_lock(&c->lock);
  c->counters.host_psi = psi;
  pthread_mutex_unlock(&c->lock);
  int budget = CGROUP_READS;
  size_t n = c->nprocs, start = c->cgroup_next < n ? c->cgroup_next : 0, k;
  for (k = 0; k < n && budget > 0; k++) {
    tracked_t *t = &c->procs[(start + k) % n];
    cgroup_mem_t cg = t->live.cgroup;
    cgroup_cache_update(c->cgroups, t->live.pid, now, &budget, &t->cgroup_member_ms, &cg);
    pthread_mutex_lock(&c->lock);
    t->live.cgroup = cg;
    pthread_mutex_unlock(&c->lock);
  }
  c->cgroup_next = n ? (start + k) % n : 0;
}

void collector_tick(collector_t *c) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int64_t now = now_ms(), deadline = mono_ms() + c->budget_ms;
  int dirfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) {   /* removed, or not there yet: logged once until it is back */
    if (!c->dir_missing) log_warn("cannot read %s: %s (retrying every tick)", c->dir, strerror(errno));
    c->dir_missing = true;
    return;
  }
  if (c->dir_missing) log_info("%s is readable again", c->dir);
  c->dir_missing = false;
  store_begin(c->store);
  bool over = read_tracked(c, dirfd, now, deadline);
  over |= list_more(c, now, deadline);
  over |= judge_queued(c, dirfd, now, deadline);
  close(dirfd);
  log_removals(c, now);
  notice_exits(c, now);
  host_tick(c, now);
  update_pressure(c, now);
  struct timespec w0, w1;
  clock_gettime(CLOCK_MONOTONIC, &w0);
  bool written = store_commit(c->store);
  clock_gettime(CLOCK_MONOTONIC, &w1);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  pthread_mutex_lock(&c->lock);
  if (!written) c->counters.db_failures++;
  for (size_t i = 0; i < c->nprocs; i++) {
    tracked_t *t = &c->procs[i];
    if (!written) {   /* rolled back: rows of processes first seen in this tick are gone, the snapshots unwritten */
      t->live.process_id = 0;
      if (t->undo_saved) {
        t->last_number = t->undo_number, t->minute = t->undo_minute, t->hour = t->undo_hour;
        t->class_slot = t->undo_class_slot, t->class_hour = t->undo_class_hour;
      }
    }
    t->undo_saved = false;
  }
  if (!written) c->host = c->host_undo;   /* its sample is gone: so is its place in the rollups */
  c->counters.ticks_over_budget += over;
  c->counters.last_write_seconds = (double)(w1.tv_sec - w0.tv_sec) + (w1.tv_nsec - w0.tv_nsec) / 1e9;
  c->counters.ticks++;
  c->counters.last_tick_seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  pthread_mutex_unlock(&c->lock);
}

void collector_flush(collector_t *c) {
  store_begin(c->store);
  pthread_mutex_lock(&c->lock);
  int64_t now = now_ms();
  for (size_t i = 0; i < c->host.n; i++) flush_host(c, &c->host.series[i]);
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
  /* Rules match on this: the kernel's path, never the segment's claim. */
  snprintf(out->exe, sizeof out->exe, "%s", l->exe_verified ? l->exe : "");
  out->uid = t->seg_uid;
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

static json_t *psi_json(const psi_t *p) {
  if (!p->known) return json_null();
  return json_pack("{s:[f,f,f], s:[f,f,f], s:f, s:f}", "some", p->some[0], p->some[1], p->some[2], "full", p->full[0],
                   p->full[1], p->full[2], "some_seconds", p->some_us / 1e6, "full_seconds", p->full_us / 1e6);
}

json_t *collector_psi_json(const psi_t *p) { return psi_json(p); }

/* {version, path, limit, high, usage, failures, oom_kills, pressure}, or null. */
static json_t *cgroup_json(const cgroup_mem_t *cg) {
  if (!cg->known) return json_null();
  json_t *o = json_pack("{s:i, s:s, s:o}", "version", cg->version, "path", cg->path, "pressure", psi_json(&cg->psi));
#define X(field, type, unit, help) json_object_set_new(o, #field, json_integer((json_int_t)cg->field));
  CGROUP_MEM_FIELDS(X)
#undef X
  return o;
}

json_t *collector_live_json(const collector_live_t *l, bool with_classes) {
  json_t *o = json_pack("{s:I, s:i, s:I, s:I, s:I, s:s, s:s, s:s, s:f, s:f, s:b, s:n}", "id",
                        (json_int_t)l->process_id, "pid", l->pid, "start_time", (json_int_t)l->start_time, "pidns",
                        (json_int_t)l->pidns, "uid", (json_int_t)l->uid, "exe", l->exe, "comm", l->comm, "version",
                        l->version, "first_seen", l->first_seen_ms / 1e3, "last_seen", l->last_seen_ms / 1e3,
                        "alive", 1, "exited_at");
  json_object_set_new(o, "exe_verified", json_boolean(l->exe_verified));
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
  if (o) json_object_set_new(o, "cgroup", cgroup_json(&l->cgroup));
  return o;
}
