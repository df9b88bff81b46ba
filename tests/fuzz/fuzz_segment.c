/* fuzz_segment.c - libFuzzer target: a telemetry segment with any contents,
 * read the way allocd reads it.
 *
 * 1. The reader module: the input is written to a file and opened,
 *    validated and read (every snapshot the header claims, with no bound
 *    of the harness's own: the reader must keep `published` and the ring
 *    size such that the loop is short), then a control request is posted
 *    with no wait.
 * 2. allocd's collector: the same bytes, with the header's pid, start
 *    time and pid namespace made those of this process (so the segment
 *    passes the identity checks and its contents reach the collector),
 *    as liballoc.<our pid> in a directory a fresh collector ticks over
 *    twice, storing into a SQLite file.  Then the bounds must hold: at
 *    most a ring of snapshots per tick, every stored time within
 *    [process start, now + skew], every text valid JSON and /metrics
 *    valid UTF-8.  A violation aborts (a finding).
 * Nothing may crash, hang or read out of bounds.  Seeds: a real segment
 * up to its profile area (write_file extends it), and two variants of it
 * (tests/fuzz/corpus/fuzz_segment). */
#include "collector.h"
#include "log.h"
#include "procinfo.h"
#include "prom.h"
#include "store.h"

#include <alloc_shm_reader.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char path[64], dir[64], segment[128];
static store_t *store;

/* A real segment is ~5 MB, most of it the profile area, a hole until a
 * profile is asked for; libFuzzer's inputs stop at -max_len.  So an input
 * whose length is a multiple of a page (the seeds end where the profile
 * area starts) is extended, as a hole, to the size its header claims, up
 * to PAD_MAX; any other length is taken as it is, so files shorter than
 * their header says are still tried. */
#define PAD_MAX ((uint64_t)16 << 20)

static bool write_file(const char *p, const uint8_t *data, size_t size) {
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return false;
  bool ok = !size || write(fd, data, size) == (ssize_t)size;
  alloc_shm_header_t h;
  if (ok && size >= sizeof h && size % 4096 == 0) {
    memcpy(&h, data, sizeof h);
    if (h.file_size > size && h.file_size <= PAD_MAX) ok = ftruncate(fd, (off_t)h.file_size) == 0;
  }
  close(fd);
  return ok;
}

static void read_as_reader(void) {
  alloc_shm_segment_t seg;
  if (alloc_shm_open(&seg, AT_FDCWD, path, ALLOC_SHM_ANY_OWNER) != 0) return;
  static alloc_shm_snapshot_t snap;
  uint64_t last = seg.header.published, first = alloc_shm_oldest(&seg);
  if (last >= first && last - first >= ALLOC_SHM_RING_SLOTS) abort();   /* more than a ring to read */
  for (uint64_t n = first; n <= last; n++) alloc_shm_read(&seg, n, &snap);
  alloc_shm_refresh(&seg);
  alloc_shm_request_t ack;
  alloc_shm_post(&seg, "dirty_decay_ms", "1000", 1, 0, &ack);
  alloc_shm_close(&seg);
}

static uint64_t field_u64(const char *proc_stat_line, int field) {
  const char *p = strrchr(proc_stat_line, ')');
  for (int f = 2; p && f < field; f++) p = strchr(p + 1, ' ');
  return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* Our own identity in the header, as a live process would have it. */
static void make_ours(uint8_t *data, size_t size) {
  if (size < sizeof(alloc_shm_header_t)) return;
  alloc_shm_header_t h;
  memcpy(&h, data, sizeof h);
  char buf[1024] = "";
  FILE *f = fopen("/proc/self/stat", "r");
  if (f) {
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
  }
  struct stat st;
  h.pid = (int32_t)getpid();
  h.start_time = field_u64(buf, 22);
  h.pidns_ino = stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
  memcpy(data, &h, sizeof h);
}

static bool valid_utf8(const char *text, size_t len) {
  json_t *s = json_stringn(text, len);   /* jansson refuses invalid UTF-8 */
  json_decref(s);
  return s != NULL;
}

static void check_bounds(collector_t *c, uint64_t started_ns) {
  collector_counters_t k;
  collector_counters(c, &k);
  if (k.snapshots > 2 * ALLOC_SHM_RING_SLOTS) abort();   /* two ticks, a ring each at most */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  size_t n;
  collector_live_t *live = collector_live(c, -1, &n, true);
  for (size_t i = 0; live && i < n; i++) {
    const alloc_shm_snapshot_t *s = live[i].snapshot;
    /* within [our start, now + the collector's 2 s skew], with a second's
     * slack for start times counted in clock ticks */
    if (s && (s->time_ns > now + 2000000000u || s->time_ns + 2000000000u < started_ns)) abort();
    json_t *o = collector_live_json(&live[i], true);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (!text) abort();   /* a string jansson refused: text not cleaned */
    free(text);
    json_decref(o);
  }
  free(live);
  size_t len;
  char *metrics = prom_render(c, &(prom_agent_t){0, 0}, &len);
  if (!metrics || !valid_utf8(metrics, len)) abort();
  free(metrics);
}

static void read_as_collector(const uint8_t *data, size_t size) {
  uint8_t *copy = malloc(size ? size : 1);
  if (!copy) return;
  memcpy(copy, data, size);
  make_ours(copy, size);
  bool ok = write_file(segment, copy, size);
  free(copy);
  collector_t *c = ok ? collector_new(store, dir) : NULL;
  if (!c) return;
  procinfo_t me;
  uint64_t started = proc_identity(getpid(), &me) == PROC_ALIVE ? proc_start_wall_ns(me.start_time) : 0;
  collector_tick(c);
  collector_tick(c);
  check_bounds(c, started);
  collector_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!path[0]) {
    char db[128], err[256] = "";
    snprintf(path, sizeof path, "/tmp/fuzz-segment.%d", (int)getpid());
    snprintf(dir, sizeof dir, "/tmp/fuzz-segment-dir.%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(segment, sizeof segment, "%s/liballoc.%d", dir, (int)getpid());
    snprintf(db, sizeof db, "%s/allocd.db", dir);
    store_limits_t limits = {.raw_ms = 3600000, .minute_ms = 86400000, .hour_ms = 86400000, .process_minute_ms = 86400000,
                            .process_hour_ms = 86400000, .max_bytes = 64 << 20};
    log_set_level(LOG_ERROR);   /* every refused input would log a line */
    if (!(store = store_open(db, &limits, err, sizeof err))) abort();
  }
  if (!write_file(path, data, size)) return 0;
  read_as_reader();
  read_as_collector(data, size);
  return 0;
}
