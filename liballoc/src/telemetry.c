/* telemetry.c - the writer of the telemetry segment (layout: alloc_shm.h).
 *
 * A thread of its own wakes every stats_interval_ms, serves the control
 * area (control.c) and publishes one snapshot into the ring.  The
 * malloc/free paths never touch the segment: the cost to the program is
 * that thread's work, once per interval.
 *
 * The thread starts at the process's first allocation (init.c) and
 * creates the segment at its first tick, one interval later but never
 * more than FIRST_TICK_MS, so every process that allocates and lives a
 * second is visible even if it never allocates again, and a short-lived
 * one (a shell pipeline's `cat`) leaves no file.  It
 * is written with pwrite, never mapped: a reader or anyone else truncating
 * the file can not make the program fault.  No descriptor is kept between
 * ticks: programs close and dup2 over descriptors they do not know about
 * (shells do), so each tick opens the file by name and checks it is still
 * the one this process created.  It is built under an unpredictable
 * temporary name and renamed into place, so readers never see half a header, and a
 * stale file of an earlier image of this pid (exec) is replaced.  If the
 * file disappears (a cleaner, the directory re-created) the next tick
 * creates it again.  A failure warns once and the program carries on.
 *
 * fork(): the child closes the parent's segment and starts its own thread
 * (hence segment) like a new process; exec starts afresh;
 * a normal exit removes the file. */
#include "alloc_internal.h"

#include <alloc.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FIRST_TICK_MS 1000   /* the segment exists this soon, whatever the interval */

enum { TM_STOPPED, TM_RUNNING };

static pthread_mutex_t tm_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tm_cond;
static atomic_int tm_state;
static bool tm_kicked;            /* (tm_lock) wake before the interval ends */
static bool tm_exiting;           /* (tm_lock) the process is exiting */
static bool tm_stop;              /* (tm_lock) paused: the thread must end */
static atomic_int tm_paused;      /* la_telemetry_pause calls not yet resumed */
static atomic_int tm_tid;         /* the thread's kernel id, 0 before it runs */
static bool tm_no_thread;         /* a forked child that must not start one */
static bool tm_created;           /* (tm_lock) tm_path is our segment */
static dev_t tm_dev;              /* (tm_lock) its identity, to use only it */
static ino_t tm_ino;
static atomic_int tm_tick_fd = -1; /* open during a tick (closed in a forked child) */
static char tm_path[320];         /* (tm_lock) */
static atomic_bool tm_warned;

/* Owned by the publisher thread. */
static alloc_shm_header_t header;
static alloc_shm_snapshot_t snap LA_BULK;

static void warn_once(const char *what, const char *path) {
  if (!atomic_exchange(&tm_warned, true))
    la_warn("telemetry: %s %s: %s; telemetry stays off until it can be created", what, path,
            strerror(errno));
}

/* ---- the segment --------------------------------------------------------- */

static void fill_header(alloc_shm_header_t *h) {
  memset(h, 0, sizeof *h);
  h->magic = ALLOC_SHM_MAGIC;
  h->version = ALLOC_SHM_VERSION;
  h->header_size = sizeof *h;
  h->ring_offset = ALLOC_SHM_HEADER_SIZE;
  h->ring_slots = ALLOC_SHM_RING_SLOTS;
  h->slot_size = sizeof(alloc_shm_snapshot_t);
  h->control_offset = h->ring_offset + h->ring_slots * h->slot_size;
  h->control_slots = ALLOC_SHM_CONTROL_SLOTS;
  h->request_size = sizeof(alloc_shm_request_t);
  uint64_t control_end = (uint64_t)h->control_offset + (uint64_t)h->control_slots * h->request_size;
  /* The profile area starts on a page of its own: until a profile is
   * asked for it is a hole in the file and costs no memory. */
  h->profile_offset = (uint32_t)((control_end + 4095) & ~(uint64_t)4095);
  h->profile_size = ALLOC_SHM_PROFILE_SIZE;
  h->file_size = (uint64_t)h->profile_offset + h->profile_size;
  h->nstats = ALLOC_SHM_NSTATS;
  h->nconfig = ALLOC_SHM_NCONFIG;
  h->nclasses = LA_NCLASSES;
  h->created_ns = la_os_realtime_ns();
  h->interval_ms = (uint64_t)la_opt.stats_interval_ms;
  snprintf(h->version_str, sizeof h->version_str, "%s", ALLOC_VERSION_STRING);
  la_proc_identity(h);
}

/* A temporary name nobody can guess: in a sticky world-writable directory
 * (/dev/shm) another user could otherwise create it first, and this
 * process could neither use nor remove it.  64 bits the kernel gave the
 * process at exec (not readable by other users), the clock and a counter,
 * mixed. */
static void temporary_name(char *buf, size_t size, int pid) {
  static uint64_t counter;
  uint64_t z = la_os_random64() ^ la_now_ns() ^ (++counter * 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ull;
  z ^= z >> 29;
  snprintf(buf, size, "%s/." ALLOC_SHM_PREFIX "%d.%016llx.tmp", la_opt.telemetry_dir, pid,
           (unsigned long long)z);
}

/* Build the segment under a temporary name, then rename it into place
 * (replacing a stale segment of an earlier image of this pid).  Returns it
 * open, or -1.  Called with tm_lock held.  A file of another user under the
 * final name (a squatter) makes rename fail with EPERM in a sticky
 * directory: the warning says so, and the next tick tries again (allocd
 * removes such files).
 *
 * Not without the process's start time and pid namespace (/proc unreadable
 * or not mounted): allocd checks both against the kernel's, so such a
 * segment would be refused as another namespace's (left in the directory
 * for good, since nothing proves it stale) or removed as stale at once and
 * made again at every tick.  The next tick reads them again. */
static int create_segment(void) {
  char tmp[sizeof tm_path + 32];
  int pid = la_os_getpid();
  snprintf(tm_path, sizeof tm_path, "%s/" ALLOC_SHM_PREFIX "%d", la_opt.telemetry_dir, pid);
  temporary_name(tmp, sizeof tmp, pid);
  int fd = la_os_open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
  if (fd < 0) {
    warn_once("cannot create", tmp);
    return -1;
  }
  fill_header(&header);
  if (!header.start_time || !header.pidns_ino) {
    warn_once("cannot read the process's start time or pid namespace (/proc/self) for", tm_path);
    la_os_unlink(tmp);
    la_os_close(fd);
    return -1;
  }
  struct stat st;
  if (!la_os_ftruncate(fd, header.file_size) || !la_os_pwrite(fd, &header, sizeof header, 0) ||
      !la_os_fstat(fd, &st) || !la_os_rename(tmp, tm_path)) {
    warn_once(errno == EPERM ? "cannot replace another user's file at" : "cannot set up", tm_path);
    la_os_unlink(tmp);
    la_os_close(fd);
    return -1;
  }
  tm_created = true;
  tm_dev = st.st_dev;
  tm_ino = st.st_ino;
  atomic_store(&tm_warned, false);   /* warn again if it breaks later */
  return fd;
}

/* Our segment, opened again by name; -1 if it was removed, replaced or
 * truncated (it is then created anew).  Called with tm_lock held. */
static int reopen_segment(void) {
  int fd = la_os_open(tm_path, O_RDWR | O_NOFOLLOW | O_NONBLOCK, 0);
  if (fd < 0) return -1;
  struct stat st;
  if (la_os_fstat(fd, &st) && st.st_dev == tm_dev && st.st_ino == tm_ino &&
      (uint64_t)st.st_size == header.file_size)
    return fd;
  la_os_close(fd);
  return -1;
}

/* Remove our segment if it is still the one this process created (not a
 * file someone put in its place).  Called with tm_lock held. */
static void remove_own_segment(void) {
  struct stat st;
  if (tm_created && la_os_stat(tm_path, &st, true) && st.st_dev == tm_dev && st.st_ino == tm_ino)
    la_os_unlink(tm_path);
  tm_created = false;
}

/* ---- publishing ---------------------------------------------------------- */

static void take_snapshot(uint64_t number) {
  la_stats_t st;
  uint64_t t0 = la_now_ns();
  la_stats_gather(&st);
  la_proc_memory(&st.s);
  la_limit_tick(st.s.kernel_rss);   /* re-read the cgroup limit; reclaim if near it */
  la_limit_stats(&st.s);
  memset(&snap, 0, sizeof snap);
  snap.number = number;
  snap.time_ns = la_os_realtime_ns();
  snap.uptime_ns = la_now_ns();
  snap.nclasses = LA_NCLASSES;
  snap.stats = st.s;
  snap.stats.snapshot_ns = snap.uptime_ns - t0;
  la_stats_config(&snap.config);
  memcpy(snap.classes, st.classes, sizeof st.classes);
  snap.seq = 2 * number;
  snap.checksum = alloc_shm_snapshot_checksum(&snap);
}

/* Mark the slot odd (being written), write the body, then mark it even:
 * a reader that sees anything but a complete slot rejects it. */
static bool publish(int fd) {
  uint64_t n = header.published + 1;
  uint64_t off = header.ring_offset + ((n - 1) % header.ring_slots) * (uint64_t)header.slot_size;
  take_snapshot(n);
  uint64_t odd = 2 * n - 1;
  if (!la_os_pwrite(fd, &odd, sizeof odd, off) ||
      !la_os_pwrite(fd, (char *)&snap + sizeof snap.seq, sizeof snap - sizeof snap.seq, off + sizeof snap.seq) ||
      !la_os_pwrite(fd, &snap.seq, sizeof snap.seq, off))
    return false;
  header.published = n;
  header.interval_ms = (uint64_t)la_opt.stats_interval_ms;
  header.heartbeat_ns = snap.time_ns;
  const size_t tail = offsetof(alloc_shm_header_t, interval_ms);
  return la_os_pwrite(fd, (char *)&header + tail, sizeof header - tail, tail);
}

/* ---- the profile area ------------------------------------------------------ */

/* Write the heap profile into the segment (prof.c), for the "prof.publish"
 * command.  On the publisher thread, serving the control area, the tick's
 * descriptor is used; from any other thread (alloc_ctl) the segment is
 * opened under tm_lock, created first if the first tick has not come yet.
 * 0 or an errno value; *number is the profile's number. */
int la_telemetry_publish_profile(uint64_t *number) {
  if (!la_opt.telemetry) return ENOTSUP;
  int tick_fd = atomic_load(&tm_tick_fd);
  if (tick_fd >= 0 && atomic_load(&tm_tid) == la_os_gettid())
    return la_prof_publish(tick_fd, header.profile_offset, number);
  pthread_mutex_lock(&tm_lock);
  int fd = -1;
  if (!tm_exiting) {
    if (tm_created) fd = reopen_segment();
    if (fd < 0) fd = create_segment();
  }
  int err = fd < 0 ? EIO : la_prof_publish(fd, header.profile_offset, number);
  if (fd >= 0) la_os_close(fd);
  pthread_mutex_unlock(&tm_lock);
  return err;
}

/* ---- the thread ---------------------------------------------------------- */

/* Sleep one interval (the first time, at most FIRST_TICK_MS) or until
 * kicked; false when the thread must end. */
static bool wait_interval(bool first) {
  uint64_t ms = (uint64_t)la_opt.stats_interval_ms;
  if (first && ms > FIRST_TICK_MS) ms = FIRST_TICK_MS;
  uint64_t due = la_os_monotonic_ns() + ms * 1000000u;
  struct timespec ts;
  ts.tv_sec = (time_t)(due / 1000000000u);
  ts.tv_nsec = (long)(due % 1000000000u);
  pthread_mutex_lock(&tm_lock);
  while (!tm_kicked && !tm_exiting && !tm_stop)
    if (pthread_cond_timedwait(&tm_cond, &tm_lock, &ts) == ETIMEDOUT) break;
  tm_kicked = false;
  bool go_on = !tm_exiting && !tm_stop;
  pthread_mutex_unlock(&tm_lock);
  return go_on;
}

/* The segment to publish into this tick (created if needed), or -1. */
static int segment_fd(void) {
  pthread_mutex_lock(&tm_lock);
  int fd = -1;
  if (!tm_exiting) {
    if (tm_created) fd = reopen_segment();
    if (fd < 0) fd = create_segment();
  }
  atomic_store(&tm_tick_fd, fd);
  pthread_mutex_unlock(&tm_lock);
  return fd;
}

static void *publisher_main(void *arg) {
  (void)arg;
  la_os_name_self("liballoc-stats");
  atomic_store(&tm_tid, la_os_gettid());
  for (bool first = true; wait_interval(first); first = false) {
    la_purger_start_wanted();   /* a free asked for it; frees cannot start threads */
    int fd = segment_fd();
    if (fd < 0) continue;
    la_control_serve(fd, &header);
    if (!publish(fd)) warn_once("cannot write", tm_path);
    atomic_store(&tm_tick_fd, -1);
    la_os_close(fd);
  }
  atomic_store(&tm_state, TM_STOPPED);
  return NULL;
}

/* Initialised once: la_telemetry_kick may signal it at any time. */
static void init_cond(void) { la_os_cond_init_monotonic(&tm_cond); }

static void start_thread(void) {
  if (atomic_load(&tm_paused)) return;   /* la_telemetry_resume starts it */
  int expected = TM_STOPPED;
  if (!atomic_compare_exchange_strong(&tm_state, &expected, TM_RUNNING)) return;
  static pthread_once_t cond_once = PTHREAD_ONCE_INIT;
  pthread_once(&cond_once, init_cond);
  atomic_store(&tm_tid, 0);   /* set by the thread before it can stop */
  int err = la_os_start_thread(publisher_main, 128 * 1024);
  if (err) {
    atomic_store(&tm_state, TM_STOPPED);
    errno = err;
    warn_once("cannot start the publisher thread for", la_opt.telemetry_dir);
  }
}

/* ---- life cycle ---------------------------------------------------------- */

void la_telemetry_start(void) {
  if (la_opt.telemetry && !tm_no_thread) start_thread();
}

/* stats_interval_ms changed: sleep again with the new interval. */
void la_telemetry_kick(void) {
  if (atomic_load(&tm_state) != TM_RUNNING) return;
  pthread_mutex_lock(&tm_lock);
  tm_kicked = true;
  pthread_cond_signal(&tm_cond);
  pthread_mutex_unlock(&tm_lock);
}

/* Stop the publisher, if it runs, and return once its thread has ended;
 * none starts until la_telemetry_resume.  With `forget`, the segment is
 * removed too (the process is about to change its uid: the file, owned by
 * the old one, might no longer be its to write or replace), and the next
 * thread creates a new one.  True if it was running. */
bool la_telemetry_pause(bool forget) {
  atomic_fetch_add(&tm_paused, 1);
  pthread_mutex_lock(&tm_lock);
  bool running = atomic_load(&tm_state) == TM_RUNNING;
  if (running) {
    tm_stop = true;
    pthread_cond_signal(&tm_cond);
  }
  pthread_mutex_unlock(&tm_lock);
  while (running && atomic_load(&tm_state) != TM_STOPPED) la_os_sleep_ms(1);
  if (running) la_os_wait_thread_gone(atomic_load(&tm_tid));
  pthread_mutex_lock(&tm_lock);
  tm_stop = false;
  if (forget) remove_own_segment();
  pthread_mutex_unlock(&tm_lock);
  return running;
}

void la_telemetry_resume(bool was_running) {
  atomic_fetch_sub(&tm_paused, 1);
  if (was_running) la_telemetry_start();
}

/* fork(): tm_lock is held across the creation of the segment, which the
 * child must not see half done. */
void la_telemetry_fork_prepare(void) { pthread_mutex_lock(&tm_lock); }
void la_telemetry_fork_parent(void) { pthread_mutex_unlock(&tm_lock); }

/* The child must not write its parent's segment, nor remove it at exit.
 * Its condition variable may record the parent's waiting publisher, which
 * the child does not have: it starts afresh. */
void la_telemetry_fork_child(void) {
  pthread_mutex_init(&tm_lock, NULL);
  la_os_cond_init_monotonic(&tm_cond);
  int fd = atomic_exchange(&tm_tick_fd, -1);
  if (fd >= 0) la_os_close(fd);   /* fork() struck during a tick */
  tm_created = false;
  tm_kicked = false;
  header.published = 0;
  atomic_store(&tm_state, TM_STOPPED);
  atomic_store(&tm_tid, 0);
  atomic_store(&tm_paused, 0);
  tm_stop = false;
  tm_no_thread = tm_exiting;
#ifdef ALLOC_SANITIZE
  /* ASan's own allocator is not reset in a forked child: a thread created
   * there can block forever on a lock some parent thread held at fork. */
  tm_no_thread = true;
#endif
}

/* Normal exit: remove the segment if it is still the one this process
 * created (not a file someone put in its place). */
void la_telemetry_exit(void) {
  pthread_mutex_lock(&tm_lock);
  tm_exiting = true;
  remove_own_segment();
  /* The thread is not woken: exit_group ends it, and waking it only to
   * contend for tm_lock would cost every exiting process two switches. */
  pthread_mutex_unlock(&tm_lock);
}
