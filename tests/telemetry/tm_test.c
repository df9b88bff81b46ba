/* tm_test.c - the telemetry segment end to end: real processes using
 * liballoc (tm_target) publish, this test reads them with the reader module
 * (alloc_shm_reader.h) and posts control requests.
 *
 * usage: tm_test <path of tm_target>; ALLOC_TEST_PRELOAD=<liballoc.so> in
 * the environment preloads it into the targets (release build).  Each test
 * uses its own directory as telemetry_dir. */
#define _GNU_SOURCE
#include <alloc_shm_reader.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

static const char *target;
static char dir[128];

/* ---- helpers ------------------------------------------------------------- */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void clean_dir(void) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (unlinkat(dirfd(d), e->d_name, 0) != 0) unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
  }
  closedir(d);
}

static int setup_dir(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/dev/shm/tmtest.XXXXXX");
  if (!mkdtemp(dir)) {
    snprintf(dir, sizeof dir, "/tmp/tmtest.XXXXXX");
    if (!mkdtemp(dir)) return -1;
  }
  return 0;
}

static int teardown_dir(void **state) {
  (void)state;
  clean_dir();
  rmdir(dir);
  return 0;
}

typedef struct proc_s {
  pid_t pid;
  int out;   /* read end of the target's stdout */
  int err;   /* read end of its stderr */
} proc_t;

/* Start tm_target with ALLOC_CONF = telemetry_dir:<dir>,<conf> and argv. */
static proc_t spawn(const char *conf, ...) {
  char *argv[16];
  int n = 0;
  argv[n++] = (char *)target;
  va_list ap;
  va_start(ap, conf);
  const char *a;
  while ((a = va_arg(ap, const char *)) && n < 15) argv[n++] = (char *)a;
  va_end(ap);
  argv[n] = NULL;
  int out[2], err[2];
  assert_int_equal(pipe(out), 0);
  assert_int_equal(pipe(err), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    char env[512];
    snprintf(env, sizeof env, "telemetry_dir:%s%s%s", dir, conf[0] ? "," : "", conf);
    setenv("ALLOC_CONF", env, 1);
    const char *preload = getenv("ALLOC_TEST_PRELOAD");
    if (preload) setenv("LD_PRELOAD", preload, 1);
    execv(target, argv);
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  return (proc_t){pid, out[0], err[0]};
}

/* Read one line from fd within timeout_ms; false on timeout or EOF. */
static bool read_line(int fd, char *buf, size_t size, int timeout_ms) {
  size_t len = 0;
  uint64_t end = now_ms() + (uint64_t)timeout_ms;
  while (len + 1 < size) {
    struct pollfd p = {fd, POLLIN, 0};
    int left = (int)(end - now_ms());
    if (left <= 0 || poll(&p, 1, left) <= 0) return false;
    char c;
    if (read(fd, &c, 1) != 1) return false;
    if (c == '\n') break;
    buf[len++] = c;
  }
  buf[len] = 0;
  return true;
}

static pid_t wait_ready(int fd) {
  char line[128];
  assert_true(read_line(fd, line, sizeof line, 20000));
  assert_int_equal(strncmp(line, "ready ", 6), 0);
  return (pid_t)atoi(line + 6);
}

static int finish(proc_t *p) {
  int status;
  assert_int_equal(waitpid(p->pid, &status, 0), p->pid);
  close(p->out);
  close(p->err);
  return status;
}

/* The path of pid's segment. */
static void segment_name(pid_t pid, char *name, size_t size) {
  snprintf(name, size, "%s/" ALLOC_SHM_PREFIX "%d", dir, (int)pid);
}

/* Open pid's segment once it has published at least `min` snapshots. */
static void open_segment(alloc_shm_segment_t *seg, pid_t pid, uint64_t min) {
  char name[256];
  segment_name(pid, name, sizeof name);
  uint64_t end = now_ms() + 20000;
  int err = -1;
  while (now_ms() < end) {
    err = alloc_shm_open(seg, AT_FDCWD, name, getuid());
    if (err == 0 && seg->header.published >= min) return;
    if (err == 0) alloc_shm_close(seg);
    sleep_ms(5);
  }
  fail_msg("segment %s not ready: %s", name, alloc_shm_strerror(err));
}

static void wait_published(alloc_shm_segment_t *seg, uint64_t n) {
  uint64_t end = now_ms() + 20000;
  while (now_ms() < end) {
    assert_int_equal(alloc_shm_refresh(seg), 0);
    if (seg->header.published >= n) return;
    sleep_ms(5);
  }
  fail_msg("only %llu snapshots published", (unsigned long long)seg->header.published);
}

static void latest(alloc_shm_segment_t *seg, alloc_shm_snapshot_t *s) {
  for (int tries = 0; tries < 100; tries++) {
    assert_int_equal(alloc_shm_refresh(seg), 0);
    if (alloc_shm_read(seg, seg->header.published, s) == 0) return;
  }
  fail_msg("no readable snapshot");
}

/* pid has a segment and publishes 5 more snapshots. */
static void expect_publishing(pid_t pid) {
  alloc_shm_segment_t seg;
  open_segment(&seg, pid, 1);
  uint64_t n = seg.header.published;
  wait_published(&seg, n + 5);
  alloc_shm_close(&seg);
}

static bool file_exists(pid_t pid) {
  char path[256];
  snprintf(path, sizeof path, "%s/" ALLOC_SHM_PREFIX "%d", dir, (int)pid);
  return access(path, F_OK) == 0;
}

/* Everything one snapshot says must agree with itself (one gather). */
static void check_consistent(const alloc_shm_snapshot_t *s) {
  const alloc_shm_stats_t *t = &s->stats;
  assert_int_equal(t->allocated, t->small_allocated + t->large_allocated + t->huge_allocated);
  assert_true(t->allocated <= t->active);
  assert_true(t->tcache <= t->active);
  assert_int_equal(t->resident, t->active + t->dirty + t->metadata);
  assert_true(t->huge_nmalloc - t->huge_nfree == t->huge_blocks);
  uint64_t in_classes = 0;
  for (uint64_t c = 0; c < s->nclasses; c++) {
    const alloc_shm_class_t *k = &s->classes[c];
    in_classes += k->live * k->size;
    assert_true(k->nmalloc >= k->nfree);
    assert_int_equal(k->nmalloc - k->nfree, k->live);
    if (!t->lent) assert_true(k->live <= k->slabs * k->blocks_per_slab);   /* lent blocks live beside */
  }
  /* A lent block counts in allocated at the slots it covers, (0.8, 1.25]
   * times its class's size (docs/metrics.md, "Per size class"). */
  uint64_t counted = t->small_allocated + t->large_allocated;
  assert_true(counted <= in_classes + t->lent / 5);
  assert_true(counted + t->lent / 4 >= in_classes);
  assert_true(t->lent <= t->small_allocated);
  alloc_shm_derived_t d;
  alloc_shm_derive(t, &d);
  assert_true(d.fragmentation >= 0.0 && d.fragmentation <= 1.0);
}

static unsigned class_index(const alloc_shm_snapshot_t *s, uint64_t size) {
  for (unsigned c = 0; c < s->nclasses; c++)
    if (s->classes[c].size >= size) return c;
  fail_msg("no class for %llu", (unsigned long long)size);
  return 0;
}

/* ---- round trip ---------------------------------------------------------- */

/* /proc/<pid>/<name> into buf, NUL-terminated. */
static void read_proc(pid_t pid, const char *name, char *buf, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  size_t n = fread(buf, 1, size - 1, f);
  fclose(f);
  buf[n] = 0;
}

/* Field 22 of /proc/<pid>/stat, counted after the command name. */
static uint64_t proc_start_time(pid_t pid) {
  char buf[1024];
  read_proc(pid, "stat", buf, sizeof buf);
  char *save, *tok = strtok_r(strrchr(buf, ')') + 1, " ", &save);
  for (int field = 3; tok && field < 22; field++) tok = strtok_r(NULL, " ", &save);
  assert_non_null(tok);
  return strtoull(tok, NULL, 10);
}

static void roundtrip(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:20,dirty_decay_ms:7000", "hold", "20000", "100", "2500", NULL);
  pid_t pid = wait_ready(p.out);
  alloc_shm_segment_t seg;
  open_segment(&seg, pid, 2);
  const alloc_shm_header_t *h = &seg.header;
  assert_int_equal(h->pid, pid);
  assert_int_equal(h->interval_ms, 20);
  assert_int_equal(h->start_time, proc_start_time(pid));
  struct stat ns;
  assert_int_equal(stat("/proc/self/ns/pid", &ns), 0);
  assert_int_equal(h->pidns_ino, (uint64_t)ns.st_ino);
  assert_non_null(strstr(h->exe, "tm_target"));
  assert_string_equal(h->comm, "tm_target");
  struct stat st;
  assert_int_equal(fstat(seg.fd, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);

  alloc_shm_snapshot_t s;
  latest(&seg, &s);
  check_consistent(&s);
  unsigned c = class_index(&s, 100);
  assert_true(s.classes[c].live >= 20000);
  assert_true(s.classes[c].nmalloc >= 20000);
  assert_true(s.stats.allocated >= 20000 * s.classes[c].size);
  assert_true(s.stats.kernel_rss >= s.stats.allocated);
  assert_true(s.stats.threads >= 2);   /* main + publisher */
  assert_true(s.stats.nheaps >= 1);
  assert_int_equal(s.config.stats_interval_ms, 20);
  assert_int_equal(s.config.dirty_decay_ms, 7000);
  assert_int_equal(s.config.muzzy_decay_ms, 0);
  assert_true(s.time_ns >= h->created_ns);
  /* snapshots keep coming, numbered in order */
  uint64_t n = h->published;
  wait_published(&seg, n + 3);
  assert_int_equal(alloc_shm_read(&seg, n + 3, &s), 0);
  assert_int_equal(s.number, n + 3);
  alloc_shm_close(&seg);
  assert_int_equal(finish(&p), 0);
  assert_false(file_exists(pid));   /* removed at normal exit */
}

/* Memory lent across size classes shows in the statistics: `lent` bytes
 * (part of small_allocated) in `lenders` sparse slabs. */
static void lending_published(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:20", "lend", "100", "64", "2000", NULL);
  pid_t pid = wait_ready(p.out);
  alloc_shm_segment_t seg;
  open_segment(&seg, pid, 2);
  wait_published(&seg, seg.header.published + 2);   /* taken after "ready" */
  alloc_shm_snapshot_t s;
  latest(&seg, &s);
  check_consistent(&s);
  assert_true(s.stats.lenders > 0);
  assert_true(s.stats.lent >= 150 * 1500);   /* a quarter of the 600 blocks at least */
  assert_true(s.stats.lent <= s.stats.small_allocated);
  alloc_shm_close(&seg);
  assert_int_equal(finish(&p), 0);
}

/* ---- a slow reader against a fast writer --------------------------------- */

static void hammer(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:10", "churn", "2500", "2", NULL);
  pid_t pid = wait_ready(p.out);
  alloc_shm_segment_t seg;
  open_segment(&seg, pid, 1);
  alloc_shm_snapshot_t s;
  uint64_t next = seg.header.published, accepted = 0, last_time = 0;
  uint64_t end = now_ms() + 2000;
  while (now_ms() < end) {
    sleep_ms(50);   /* five times slower than the writer */
    assert_int_equal(alloc_shm_refresh(&seg), 0);
    for (; next <= seg.header.published; next++) {
      int err = alloc_shm_read(&seg, next, &s);
      if (err) {
        /* Only a snapshot the writer has since overwritten may be missed. */
        assert_int_equal(alloc_shm_refresh(&seg), 0);
        assert_true(next < alloc_shm_oldest(&seg) + 1);
        continue;
      }
      check_consistent(&s);
      assert_true(s.time_ns >= last_time);
      last_time = s.time_ns;
      accepted++;
    }
  }
  print_message("hammer: %llu snapshots accepted, published %llu\n", (unsigned long long)accepted,
                (unsigned long long)seg.header.published);
  assert_true(accepted >= 20);
  alloc_shm_close(&seg);
  assert_int_equal(finish(&p), 0);
}

/* ---- writers that die ---------------------------------------------------- */

static void killed_mid_write(void **state) {
  (void)state;
  unsigned seed = (unsigned)getpid();
  for (int round = 0; round < 8; round++) {
    proc_t p = spawn("stats_interval_ms:10", "churn", "5000", "1", NULL);
    pid_t pid = wait_ready(p.out);
    alloc_shm_segment_t seg;
    open_segment(&seg, pid, 3);
    sleep_ms(rand_r(&seed) % 60);
    kill(pid, SIGKILL);
    finish(&p);
    /* The file stays (no exit handler ran); everything published reads
     * back intact, and whatever slot was being written is refused. */
    assert_int_equal(alloc_shm_refresh(&seg), 0);
    alloc_shm_snapshot_t s;
    for (uint64_t n = alloc_shm_oldest(&seg); n <= seg.header.published; n++) {
      int err = alloc_shm_read(&seg, n, &s);
      /* the oldest slot is the one the next snapshot was going into */
      if (n == alloc_shm_oldest(&seg) && (err == ALLOC_SHM_ERR_TORN || err == ALLOC_SHM_ERR_GONE)) continue;
      assert_int_equal(err, 0);
      check_consistent(&s);
    }
    assert_int_equal(alloc_shm_read(&seg, seg.header.published + 1, &s), ALLOC_SHM_ERR_NOTYET);
    alloc_shm_close(&seg);
  }
  clean_dir();
}

/* Copy a real segment and damage it the ways a dying writer would. */
static void torn_slots_rejected(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:10", "hold", "100", "64", "2500", NULL);
  pid_t pid = wait_ready(p.out);
  alloc_shm_segment_t seg;
  open_segment(&seg, pid, 3);
  uint64_t n = seg.header.published;
  uint64_t off = seg.header.ring_offset + ((n - 1) % seg.header.ring_slots) * seg.header.slot_size;
  /* a private copy: the writer goes on with the original */
  char copy[256];
  snprintf(copy, sizeof copy, "%s/copy", dir);
  int fd = open(copy, O_RDWR | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  static char buf[8 << 20];   /* a whole segment */
  ssize_t len = pread(seg.fd, buf, sizeof buf, 0);
  assert_int_equal(len, (ssize_t)seg.header.file_size);
  assert_int_equal(write(fd, buf, (size_t)len), len);
  alloc_shm_segment_t c;
  assert_int_equal(alloc_shm_open(&c, AT_FDCWD, copy, getuid()), 0);
  c.header.published = n;   /* the copy's header may be one ahead */
  alloc_shm_snapshot_t s;
  assert_int_equal(alloc_shm_read(&c, n, &s), 0);
  uint64_t odd = 2 * n - 1;   /* died after marking the slot */
  assert_int_equal(pwrite(fd, &odd, 8, (off_t)off), 8);
  assert_int_equal(alloc_shm_read(&c, n, &s), ALLOC_SHM_ERR_TORN);
  uint64_t even = 2 * n;      /* died mid-body: the checksum disagrees */
  assert_int_equal(pwrite(fd, &even, 8, (off_t)off), 8);
  char junk = 0x77;
  assert_int_equal(pwrite(fd, &junk, 1, (off_t)(off + 2000)), 1);
  assert_int_equal(alloc_shm_read(&c, n, &s), ALLOC_SHM_ERR_TORN);
  alloc_shm_close(&c);
  close(fd);
  alloc_shm_close(&seg);
  assert_int_equal(finish(&p), 0);
}

/* ---- truncation ---------------------------------------------------------- */

static void truncated_while_open(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:10", "hold", "100", "64", "2500", NULL);
  pid_t pid = wait_ready(p.out);
  alloc_shm_segment_t seg;
  open_segment(&seg, pid, 2);
  char path[256];
  snprintf(path, sizeof path, "%s/" ALLOC_SHM_PREFIX "%d", dir, (int)pid);
  assert_int_equal(truncate(path, 100), 0);
  /* the reader refuses, without a fault */
  alloc_shm_snapshot_t s;
  int err = alloc_shm_read(&seg, seg.header.published, &s);
  assert_true(err == ALLOC_SHM_ERR_IO || err == ALLOC_SHM_ERR_TORN);
  err = alloc_shm_refresh(&seg);
  assert_true(err != 0);
  alloc_shm_close(&seg);
  /* the writer is unaffected and puts a whole segment back */
  sleep_ms(100);
  assert_int_equal(kill(pid, 0), 0);
  open_segment(&seg, pid, 2);
  latest(&seg, &s);
  check_consistent(&s);
  alloc_shm_close(&seg);
  assert_int_equal(finish(&p), 0);
}

static void removed_file_is_recreated(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:10", "hold", "100", "64", "2500", NULL);
  pid_t pid = wait_ready(p.out);
  alloc_shm_segment_t seg;
  open_segment(&seg, pid, 2);
  alloc_shm_close(&seg);
  clean_dir();
  open_segment(&seg, pid, 2);
  alloc_shm_close(&seg);
  assert_int_equal(finish(&p), 0);
}

/* ---- hostile files ------------------------------------------------------- */

static void write_file(const char *name, const void *data, size_t len) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, len), (ssize_t)len);
  close(fd);
}

static int open_in_dir(const char *name) {
  int d = open(dir, O_RDONLY | O_DIRECTORY);
  alloc_shm_segment_t seg;
  int err = alloc_shm_open(&seg, d, name, ALLOC_SHM_ANY_OWNER);
  if (err == 0) alloc_shm_close(&seg);
  close(d);
  return err;
}

static void valid_header(alloc_shm_header_t *h) {
  memset(h, 0, sizeof *h);
  h->magic = ALLOC_SHM_MAGIC;
  h->version = ALLOC_SHM_VERSION;
  h->header_size = sizeof *h;
  h->ring_offset = ALLOC_SHM_HEADER_SIZE;
  h->ring_slots = ALLOC_SHM_RING_SLOTS;
  h->slot_size = sizeof(alloc_shm_snapshot_t);
  h->control_offset = h->ring_offset + ALLOC_SHM_RING_SLOTS * h->slot_size;
  h->control_slots = ALLOC_SHM_CONTROL_SLOTS;
  h->request_size = sizeof(alloc_shm_request_t);
  h->profile_offset = (h->control_offset + ALLOC_SHM_CONTROL_SLOTS * h->request_size + 4095) / 4096 * 4096;
  h->profile_size = ALLOC_SHM_PROFILE_SIZE;
  h->file_size = h->profile_offset + h->profile_size;
  h->nstats = ALLOC_SHM_NSTATS;
  h->nconfig = ALLOC_SHM_NCONFIG;
  h->nclasses = 10;
  h->pid = 1;
}

static void hostile_files(void **state) {
  (void)state;
  static char data[1 << 16];
  unsigned seed = 42;
  for (size_t i = 0; i < sizeof data; i++) data[i] = (char)rand_r(&seed);
  write_file("random", data, sizeof data);
  assert_int_equal(open_in_dir("random"), ALLOC_SHM_ERR_MAGIC);
  write_file("short", data, 10);
  assert_int_equal(open_in_dir("short"), ALLOC_SHM_ERR_SIZE);
  write_file("empty", data, 0);
  assert_int_equal(open_in_dir("empty"), ALLOC_SHM_ERR_SIZE);
  assert_int_equal(open_in_dir("missing"), ALLOC_SHM_ERR_OPEN);

  char path[256], other[256];
  snprintf(path, sizeof path, "%s/fifo", dir);
  assert_int_equal(mkfifo(path, 0600), 0);
  assert_int_equal(open_in_dir("fifo"), ALLOC_SHM_ERR_NOTFILE);   /* and did not block */
  snprintf(path, sizeof path, "%s/subdir", dir);
  assert_int_equal(mkdir(path, 0700), 0);
  assert_int_equal(open_in_dir("subdir"), ALLOC_SHM_ERR_NOTFILE);

  alloc_shm_header_t h;
  valid_header(&h);
  static char good[8 << 20];   /* a whole segment: ring, control and profile areas */
  memcpy(good, &h, sizeof h);
  write_file("good", good, h.file_size);
  assert_int_equal(open_in_dir("good"), 0);
  snprintf(path, sizeof path, "%s/link", dir);
  snprintf(other, sizeof other, "%s/good", dir);
  assert_int_equal(symlink(other, path), 0);
  assert_int_equal(open_in_dir("link"), ALLOC_SHM_ERR_NOTFILE);

  /* a huge sparse file */
  snprintf(path, sizeof path, "%s/sparse", dir);
  int fd = open(path, O_WRONLY | O_CREAT, 0600);
  assert_int_equal(ftruncate(fd, (off_t)1 << 40), 0);
  assert_int_equal(pwrite(fd, &h, sizeof h, 0), (ssize_t)sizeof h);
  close(fd);
  assert_int_equal(open_in_dir("sparse"), ALLOC_SHM_ERR_SIZE);

  /* a valid header with absurd numbers, one at a time */
#define ABSURD(field, value, expect)                                                             \
  do {                                                                                           \
    valid_header(&h);                                                                            \
    h.file_size = sizeof good;                                                                   \
    h.field = value;                                                                             \
    memcpy(good, &h, sizeof h);                                                                  \
    write_file("absurd", good, sizeof good);                                                     \
    assert_int_equal(open_in_dir("absurd"), expect);                                             \
  } while (0)
  ABSURD(pid, 77, 0);   /* the file below is otherwise fine */
  ABSURD(version, 99, ALLOC_SHM_ERR_VERSION);
  ABSURD(ring_slots, 4000000000u, ALLOC_SHM_ERR_LAYOUT);
  ABSURD(ring_slots, 65536, ALLOC_SHM_ERR_LAYOUT);            /* only the reader's own ring size */
  ABSURD(ring_slots, ALLOC_SHM_RING_SLOTS - 1, ALLOC_SHM_ERR_LAYOUT);
  ABSURD(published, UINT64_MAX, ALLOC_SHM_ERR_LAYOUT);        /* n <= published would never end */
  ABSURD(published, ALLOC_SHM_MAX_PUBLISHED + 1, ALLOC_SHM_ERR_LAYOUT);
  ABSURD(published, ALLOC_SHM_MAX_PUBLISHED, 0);
  ABSURD(ring_offset, 0xfffffff0u, ALLOC_SHM_ERR_LAYOUT);
  ABSURD(control_offset, 100, ALLOC_SHM_ERR_LAYOUT);
  ABSURD(control_slots, 100000, ALLOC_SHM_ERR_LAYOUT);
  ABSURD(slot_size, 8, ALLOC_SHM_ERR_LAYOUT);
  ABSURD(nclasses, 1000, ALLOC_SHM_ERR_LAYOUT);
  ABSURD(pid, -5, ALLOC_SHM_ERR_LAYOUT);
  ABSURD(file_size, 1ull << 62, ALLOC_SHM_ERR_SIZE);
  ABSURD(profile_offset, 0, ALLOC_SHM_ERR_LAYOUT);               /* over the ring */
  ABSURD(profile_offset, h.profile_offset + 8, ALLOC_SHM_ERR_LAYOUT);
  ABSURD(profile_offset, 0xfffff000u, ALLOC_SHM_ERR_LAYOUT);     /* past the end */
  ABSURD(profile_size, 1u << 31, ALLOC_SHM_ERR_LAYOUT);
  clean_dir();
}

/* ---- fork and exec ------------------------------------------------------- */

static void fork_gets_own_segment(void **state) {
  (void)state;
  if (getenv("ALLOC_TEST_SANITIZE")) skip();   /* no telemetry in ASan's forked children */
  proc_t p = spawn("stats_interval_ms:20", "fork", "2500", NULL);
  pid_t a = wait_ready(p.out), b = wait_ready(p.out);
  pid_t parent = p.pid, child = a == parent ? b : a;
  assert_int_not_equal(parent, child);
  alloc_shm_segment_t ps, cs;
  open_segment(&ps, parent, 2);
  open_segment(&cs, child, 2);
  assert_int_equal(ps.header.pid, parent);
  assert_int_equal(cs.header.pid, child);
  assert_true(ps.ino != cs.ino);
  alloc_shm_snapshot_t s;
  latest(&cs, &s);
  check_consistent(&s);
  assert_true(s.classes[class_index(&s, 48)].live >= 3000);   /* the child's own blocks */
  latest(&ps, &s);
  assert_true(s.classes[class_index(&s, 48)].live < 3000);
  alloc_shm_close(&ps);
  alloc_shm_close(&cs);
  assert_int_equal(finish(&p), 0);
  assert_false(file_exists(parent));
  assert_false(file_exists(child));
}

static void exec_starts_afresh(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:20", "exec", "2000", NULL);
  pid_t pid = wait_ready(p.out);
  alloc_shm_segment_t before;
  open_segment(&before, pid, 2);
  uint64_t created = before.header.created_ns;
  alloc_shm_close(&before);
  assert_int_equal(wait_ready(p.out), pid);   /* the new image */
  uint64_t end = now_ms() + 20000;
  alloc_shm_segment_t after;
  for (;;) {
    open_segment(&after, pid, 1);
    if (after.header.created_ns != created) break;
    alloc_shm_close(&after);
    assert_true(now_ms() < end);
    sleep_ms(10);
  }
  assert_int_equal(after.header.pid, pid);
  assert_true(after.header.published < 20);   /* numbering started again */
  alloc_shm_snapshot_t s;
  latest(&after, &s);
  assert_true(s.classes[class_index(&s, 64)].live >= 1000);
  alloc_shm_close(&after);
  assert_int_equal(finish(&p), 0);
  assert_false(file_exists(pid));
}

/* ---- control requests ---------------------------------------------------- */

static int post(alloc_shm_segment_t *seg, const char *name, const char *value, alloc_shm_request_t *ack) {
  static uint64_t id;
  int err = alloc_shm_post(seg, name, value, ++id, 5000, ack);
  assert_int_equal(err, 0);
  assert_int_equal(ack->ack_id, id);
  return (int)ack->status;
}

static void control_requests(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:20", "hold", "100", "64", "3000", NULL);
  pid_t pid = wait_ready(p.out);
  alloc_shm_segment_t seg;
  open_segment(&seg, pid, 1);
  assert_true(seg.writable);
  alloc_shm_request_t ack;
  assert_int_equal(post(&seg, "dirty_decay_ms", "5000", &ack), 0);
  assert_string_equal(ack.effective, "5000");
  assert_int_equal(post(&seg, "opt.muzzy_decay_ms", "-1", &ack), 0);
  assert_string_equal(ack.effective, "-1");
  assert_int_equal(post(&seg, "thp", "never", &ack), 0);
  assert_string_equal(ack.effective, "never");
  assert_int_equal(post(&seg, "background_thread", "false", &ack), 0);
  assert_string_equal(ack.effective, "false");
  assert_int_equal(post(&seg, "arena.purge", "", &ack), 0);
  /* rejected, with a reason, and nothing changes */
  assert_int_equal(post(&seg, "dirty_decay_ms", "abc", &ack), EINVAL);
  assert_non_null(strstr(ack.message, "invalid value"));
  assert_string_equal(ack.effective, "5000");
  assert_int_equal(post(&seg, "dirty_decay_ms", "-2", &ack), EINVAL);
  assert_int_equal(post(&seg, "thp", "sometimes", &ack), EINVAL);
  assert_int_equal(post(&seg, "no_such_knob", "1", &ack), ENOENT);
  assert_non_null(strstr(ack.message, "unknown"));
  assert_int_equal(post(&seg, "narenas", "3", &ack), EPERM);
  assert_int_equal(post(&seg, "telemetry_dir", "/tmp", &ack), EPERM);
  assert_int_equal(post(&seg, "stats.allocated", "1", &ack), EPERM);
  assert_int_equal(post(&seg, "arena.purge", "now", &ack), EINVAL);
  /* the interval is live */
  assert_int_equal(post(&seg, "stats_interval_ms", "50", &ack), 0);
  assert_int_equal(post(&seg, "stats_interval_ms", "5", &ack), EINVAL);
  wait_published(&seg, seg.header.published + 2);
  alloc_shm_snapshot_t s;
  latest(&seg, &s);
  assert_int_equal(s.config.dirty_decay_ms, 5000);
  assert_int_equal(s.config.muzzy_decay_ms, -1);
  assert_int_equal(s.config.thp, 2);
  assert_int_equal(s.config.background_thread, 0);
  assert_int_equal(s.config.stats_interval_ms, 50);
  assert_int_equal(seg.header.interval_ms, 50);
  /* bad arguments never reach the process */
  char longname[100];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  assert_int_equal(alloc_shm_post(&seg, longname, "1", 99999, 100, &ack), ALLOC_SHM_ERR_ARG);
  assert_int_equal(alloc_shm_post(&seg, "thp", "never", 0, 100, &ack), ALLOC_SHM_ERR_ARG);
  alloc_shm_close(&seg);
  assert_int_equal(finish(&p), 0);
}

/* A request the process has not taken when its writer gives up is
 * withdrawn and never applies, even when the process resumes; one it has
 * taken (here: claimed by hand while the process is stopped) is waited for
 * one more second, then reported as possibly applying. */
static void control_withdrawn(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:20", "hold", "100", "64", "4000", NULL);
  pid_t pid = wait_ready(p.out);
  alloc_shm_segment_t seg;
  open_segment(&seg, pid, 1);
  alloc_shm_snapshot_t s;
  latest(&seg, &s);
  int64_t before = s.config.dirty_decay_ms;
  assert_int_not_equal(before, 4321);
  kill(pid, SIGSTOP);
  alloc_shm_request_t ack;
  assert_int_equal(alloc_shm_post(&seg, "dirty_decay_ms", "4321", 101, 200, &ack), ALLOC_SHM_ERR_TIMEOUT);
  uint64_t slot = 0;
  assert_int_equal(alloc_shm_submit(&seg, "muzzy_decay_ms", "4321", 102, 200, &slot), 0);
  uint64_t claimed = 102;   /* what the process writes when it takes the request */
  assert_int_equal(pwrite(seg.fd, &claimed, 8, (off_t)(slot + offsetof(alloc_shm_request_t, ack_id))), 8);
  uint64_t t0 = now_ms();
  assert_int_equal(alloc_shm_await(&seg, slot, 102, now_ms() + 200, &ack), ALLOC_SHM_ERR_INFLIGHT);
  assert_true(now_ms() - t0 >= 1100);   /* the second of grace was given */
  uint64_t free_state = ALLOC_SHM_REQ_FREE;   /* the process would have answered: clear it */
  assert_int_equal(pwrite(seg.fd, &free_state, 8, (off_t)slot), 8);
  kill(pid, SIGCONT);
  wait_published(&seg, seg.header.published + 5);
  latest(&seg, &s);
  assert_int_equal(s.config.dirty_decay_ms, before);
  assert_int_equal(post(&seg, "dirty_decay_ms", "4321", &ack), 0);   /* a retry applies */
  wait_published(&seg, seg.header.published + 2);
  latest(&seg, &s);
  assert_int_equal(s.config.dirty_decay_ms, 4321);
  alloc_shm_close(&seg);
  assert_int_equal(finish(&p), 0);
}

typedef struct poster_s {
  pid_t pid;
  int index;
  int ok;
} poster_t;

static void *poster(void *arg) {
  poster_t *t = arg;
  alloc_shm_segment_t seg;
  char name[256];
  segment_name(t->pid, name, sizeof name);
  if (alloc_shm_open(&seg, AT_FDCWD, name, getuid()) != 0) return NULL;
  for (int i = 0; i < 10; i++) {
    alloc_shm_request_t ack;
    char value[16];
    snprintf(value, sizeof value, "%d", 1000 + t->index * 100 + i);
    uint64_t id = ((uint64_t)t->index << 32) | (uint64_t)(i + 1);
    if (alloc_shm_post(&seg, "dirty_decay_ms", value, id, 10000, &ack) == 0 && ack.ack_id == id &&
        ack.status == 0 && strcmp(ack.effective, value) == 0)
      t->ok++;
  }
  alloc_shm_close(&seg);
  return NULL;
}

static void control_concurrent(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:10", "hold", "100", "64", "4000", NULL);
  pid_t pid = wait_ready(p.out);
  alloc_shm_segment_t seg;
  open_segment(&seg, pid, 1);
  alloc_shm_close(&seg);
  enum { N = 6 };
  pthread_t th[N];
  poster_t t[N];
  for (int i = 0; i < N; i++) {
    t[i] = (poster_t){pid, i + 1, 0};
    pthread_create(&th[i], NULL, poster, &t[i]);
  }
  int ok = 0;
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    ok += t[i].ok;
  }
  /* Each acknowledgement carried its own id and value; effective values
   * could only match because no request was lost or mixed up. */
  assert_int_equal(ok, N * 10);
  assert_int_equal(finish(&p), 0);
}

static void control_garbage(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:10", "hold", "100", "64", "2500", NULL);
  pid_t pid = wait_ready(p.out);
  alloc_shm_segment_t seg;
  open_segment(&seg, pid, 1);
  unsigned seed = 7;
  static char junk[ALLOC_SHM_CONTROL_SLOTS * sizeof(alloc_shm_request_t)];
  for (int round = 0; round < 20; round++) {
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)rand_r(&seed);
    /* some slots look posted, with random everything else */
    for (unsigned s = 0; s < ALLOC_SHM_CONTROL_SLOTS; s += 2) {
      uint64_t posted = ALLOC_SHM_REQ_POSTED;
      memcpy(junk + s * sizeof(alloc_shm_request_t), &posted, 8);
    }
    assert_int_equal(pwrite(seg.fd, junk, sizeof junk, seg.header.control_offset), (ssize_t)sizeof junk);
    sleep_ms(15);
  }
  sleep_ms(50);
  /* the posted garbage was refused as malformed */
  alloc_shm_request_t r;
  assert_int_equal(pread(seg.fd, &r, sizeof r, seg.header.control_offset), (ssize_t)sizeof r);
  assert_int_equal(r.state, ALLOC_SHM_REQ_DONE);
  assert_int_equal(r.status, EINVAL);
  assert_non_null(strstr(r.message, "malformed"));
  /* and the process goes on publishing and serving */
  memset(junk, 0, sizeof junk);
  assert_int_equal(pwrite(seg.fd, junk, sizeof junk, seg.header.control_offset), (ssize_t)sizeof junk);
  alloc_shm_request_t ack;
  assert_int_equal(post(&seg, "dirty_decay_ms", "1234", &ack), 0);
  uint64_t n = seg.header.published;
  wait_published(&seg, n + 2);
  alloc_shm_close(&seg);
  assert_int_equal(finish(&p), 0);
}

/* A process that allocates at start and then waits without another
 * allocator call (a daemon blocked on its socket) is visible within 2 s of
 * its start, whatever its interval, and keeps publishing while it waits. */
static void idle_process_is_visible(void **state) {
  (void)state;
  uint64_t t0 = now_ms();
  proc_t p = spawn("stats_interval_ms:300000", "idle", "4000", NULL);
  pid_t pid = wait_ready(p.out);
  while (!file_exists(pid) && now_ms() < t0 + 2000) sleep_ms(10);
  if (!file_exists(pid)) fail_msg("no segment 2 s after the start of an idle process");
  assert_int_equal(finish(&p), 0);
  p = spawn("stats_interval_ms:100", "idle", "4000", NULL);
  pid = wait_ready(p.out);
  alloc_shm_segment_t seg;
  open_segment(&seg, pid, 1);
  uint64_t n = seg.header.published;
  wait_published(&seg, n + 5);   /* snapshots at the interval while idle */
  alloc_shm_close(&seg);
  assert_int_equal(finish(&p), 0);
}

/* Threads: line of /proc/PID/status. */
static int threads_of(pid_t pid) {
  char text[4096];
  read_proc(pid, "status", text, sizeof text);
  const char *t = strstr(text, "\nThreads:");
  assert_non_null(t);
  return atoi(t + 9);
}

/* A process that never calls the allocator (/bin/true) has nothing to
 * publish: the publisher thread starts at a process's first allocation
 * (the test above covers one that allocates once and then waits), so it
 * has none, and no segment after the first tick. */
static void silent_process_starts_no_thread(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:100", "none", "3000", NULL);
  pid_t pid = wait_ready(p.out);
  sleep_ms(1200);   /* the first tick comes after one interval, 1 s at the most */
  if (file_exists(pid)) fail_msg("a process that never allocated published a segment");
  assert_int_equal(threads_of(pid), 1);
  assert_int_equal(finish(&p), 0);
}

/* A child of vfork() that allocates before it exits, in a process that has
 * not allocated: the publisher that allocation asks for is the parent's,
 * and a thread the child started would be the child's, gone with it, while
 * the shared memory said the parent's was running.  So the child starts
 * none, and the parent's first allocation after it does. */
static void vfork_child_leaves_the_publisher_to_the_parent(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:100", "vforkfirst", "3000", NULL);
  pid_t pid = wait_ready(p.out);
  uint64_t t0 = now_ms();
  while (!file_exists(pid) && now_ms() < t0 + 2000) sleep_ms(10);
  if (!file_exists(pid)) fail_msg("no segment 2 s after the parent's first allocation");
  assert_int_equal(finish(&p), 0);
}

/* liballoc's threads run once the process allocates, yet unshare(CLONE_NEWUSER), which
 * the kernel refuses to a process of several threads, works: glibc's
 * unshare is wrapped to stop them around the call (sandbox.c).  The same
 * call made with syscall(2) is refused, which shows the threads were
 * there.  They start again: the process keeps publishing. */
static void unshare_works_beside_liballocs_threads(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:50", "sandbox", "1500", NULL);
  pid_t pid = wait_ready(p.out);
  char raw[64], call[64];
  assert_true(read_line(p.out, raw, sizeof raw, 20000));
  assert_true(read_line(p.out, call, sizeof call, 20000));
  if (strcmp(call, "unshare ok") != 0 && strcmp(raw, "raw EINVAL") != 0) {
    print_message("user namespaces not allowed here (%s, %s): skipped\n", raw, call);
    finish(&p);
    skip();
  }
  assert_string_equal(raw, "raw EINVAL");
  assert_string_equal(call, "unshare ok");
  expect_publishing(pid);
  assert_int_equal(finish(&p), 0);
}

/* setuid in a vfork child (which shares the parent's memory) must not
 * stop the parent's publisher, nor start a thread in the child. */
static void vfork_child_leaves_the_parents_threads(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:50", "vfork", "2000", NULL);
  pid_t pid = wait_ready(p.out);
  char line[64];
  assert_true(read_line(p.out, line, sizeof line, 20000));
  assert_string_equal(line, "vforked ok");
  expect_publishing(pid);
  assert_int_equal(finish(&p), 0);
}

/* A daemon that drops its privileges after liballoc's thread has created
 * the segment as root: the segment is removed before the uid changes and
 * created again by the new uid, which can write it (a root-owned file it
 * could not), and the process keeps publishing. */
static void setuid_process_keeps_publishing(void **state) {
  (void)state;
  if (geteuid() != 0) skip();
  const uid_t nobody = 65534;
  assert_int_equal(chmod(dir, 01777), 0);   /* like /dev/shm */
  proc_t p = spawn("stats_interval_ms:50", "setuid", "65534", "3000", NULL);
  pid_t pid = wait_ready(p.out);
  char line[64];
  assert_true(read_line(p.out, line, sizeof line, 20000));
  assert_string_equal(line, "uid ok");
  char name[256];
  segment_name(pid, name, sizeof name);
  alloc_shm_segment_t seg;
  uint64_t end = now_ms() + 5000;
  while (alloc_shm_open(&seg, AT_FDCWD, name, nobody) != 0) {
    if (now_ms() > end) fail_msg("no segment of uid %u after setuid", (unsigned)nobody);
    sleep_ms(20);
  }
  uint64_t n = seg.header.published;
  wait_published(&seg, n + 5);
  alloc_shm_close(&seg);
  assert_int_equal(finish(&p), 0);
}

/* ---- off, and unusable directories --------------------------------------- */

static void telemetry_off(void **state) {
  (void)state;
  proc_t p = spawn("stats_interval_ms:10,telemetry:false", "hold", "100", "64", "300", NULL);
  pid_t pid = wait_ready(p.out);
  sleep_ms(200);
  assert_false(file_exists(pid));
  assert_int_equal(finish(&p), 0);
}

static void unusable_dir_warns_once(void **state) {
  (void)state;
  char saved[sizeof dir];
  strcpy(saved, dir);
  snprintf(dir, sizeof dir, "/nonexistent/liballoc-test");
  proc_t p = spawn("stats_interval_ms:10", "hold", "1000", "64", "1300", NULL);   /* the publisher starts after 1 s */
  strcpy(dir, saved);
  wait_ready(p.out);
  int status;
  assert_int_equal(waitpid(p.pid, &status, 0), p.pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  char err[4096];
  ssize_t n = read(p.err, err, sizeof err - 1);
  err[n > 0 ? n : 0] = 0;
  close(p.out);
  close(p.err);
  char *first = strstr(err, "telemetry");
  assert_non_null(first);
  assert_null(strstr(first + 1, "telemetry: "));   /* once, not every interval */
}

static void json_keys_match_the_list(void **state) {
  (void)state;
  proc_t p = spawn("", "json", NULL);
  static char out[1 << 16];
  size_t len = 0;
  ssize_t n;
  while ((n = read(p.out, out + len, sizeof out - 1 - len)) > 0) len += (size_t)n;
  out[len] = 0;
  assert_int_equal(finish(&p), 0);
  char key[64];
#define X(name, ...)                                                                             \
  snprintf(key, sizeof key, "\"%s\":", #name);                                                   \
  assert_non_null(strstr(out, key));
  ALLOC_SHM_STATS(X)
  ALLOC_SHM_CONFIG(X)
  ALLOC_SHM_CLASS(X)
  ALLOC_SHM_DERIVED(X)
#undef X
}

/* docs/metrics.md explains every statistic of the lists. */
static void metrics_doc_lists_every_stat(void **state) {
  (void)state;
  const char *path = getenv("ALLOC_TEST_METRICS_DOC");
  if (!path) skip();
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  static char doc[1 << 17];
  size_t n = fread(doc, 1, sizeof doc - 1, f);
  fclose(f);
  doc[n] = 0;
  char key[64];
#define X(name, ...)                                                                             \
  snprintf(key, sizeof key, "`%s`", #name);                                                      \
  if (!strstr(doc, key)) fail_msg("%s does not document %s", path, key);
  ALLOC_SHM_STATS(X)
  ALLOC_SHM_CONFIG(X)
  ALLOC_SHM_CLASS(X)
  ALLOC_SHM_DERIVED(X)
#undef X
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: tm_test <tm_target>\n");
    return 2;
  }
  target = argv[1];
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(roundtrip, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(lending_published, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(hammer, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(killed_mid_write, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(torn_slots_rejected, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(truncated_while_open, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(removed_file_is_recreated, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(hostile_files, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(fork_gets_own_segment, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(exec_starts_afresh, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(control_requests, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(control_concurrent, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(control_withdrawn, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(control_garbage, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(idle_process_is_visible, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(silent_process_starts_no_thread, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(vfork_child_leaves_the_publisher_to_the_parent, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(unshare_works_beside_liballocs_threads, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(setuid_process_keeps_publishing, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(vfork_child_leaves_the_parents_threads, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(telemetry_off, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(unusable_dir_warns_once, setup_dir, teardown_dir),
    cmocka_unit_test_setup_teardown(json_keys_match_the_list, setup_dir, teardown_dir),
    cmocka_unit_test(metrics_doc_lists_every_stat),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
