/* prof_test.c - the heap profiler end to end: prof_target (a real program,
 * -O2 without frame pointers, liballoc preloaded) is driven through its
 * stdin, profiling is switched through the telemetry control area, and
 * each profile is read from the segment's profile area as alloc_shm.h
 * describes it (seq, checksum, tables) and checked against what the
 * target says it allocated.
 *
 * Sampling is random: the rate is raised (prof_sample_bytes 16 KiB) so
 * the estimates checked are made of hundreds of samples or more, and the
 * bounds are several standard deviations wide.
 *
 * The targets publish into a directory of the test's own: in /dev/shm a
 * segment left behind by an earlier process with the same pid (killed
 * before it could remove it) would be found first, and the requests
 * posted to it never served. */
#include <alloc_shm_reader.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static const char *target_path;
static char seg_dir[64] = "/tmp/prof_test.XXXXXX";

enum { SYM_KEEP, SYM_CHURN, SYM_FRAGMENT, SYM_LARGE, SYM_THREAD, NSYMS };
static const char *const sym_names[NSYMS] = {"keep_memory", "churn_memory", "fragment_memory", "large_memory",
                                             "thread_memory"};

typedef struct target_s {
  pid_t pid;
  FILE *in, *out;
  uint64_t sym_start[NSYMS], sym_size[NSYMS];
  alloc_shm_segment_t seg;
  uint64_t next_id;
} target_t;

typedef struct profile_s {
  alloc_shm_profile_t h;
  unsigned char *area;   /* h.used bytes */
  const alloc_shm_module_t *modules;
  const alloc_shm_stack_t *stacks;
  const uint64_t *frames;
  /* per known function: totals over the stacks that pass through it */
  double inuse[NSYMS], alloc[NSYMS], pinned[NSYMS];
  double inuse_total, pinned_total;
  unsigned inner_frames[NSYMS];   /* stacks whose innermost frame is in the function */
  unsigned stacks_of[NSYMS];      /* stacks that pass through it */
} profile_t;

/* ---- the target ----------------------------------------------------------- */

static char *read_line(target_t *t, char *buf, size_t size) {
  if (!fgets(buf, (int)size, t->out)) return NULL;
  buf[strcspn(buf, "\n")] = 0;
  return buf;
}

/* Open the target's segment once its first tick has made it (within a
 * second; a truncated one is replaced at the next tick). */
static void open_segment(target_t *t) {
  char path[128];
  snprintf(path, sizeof path, "%s/liballoc.%d", seg_dir, (int)t->pid);
  int err = -1;
  for (int i = 0; i < 500 && err; i++) {
    err = alloc_shm_open(&t->seg, AT_FDCWD, path, ALLOC_SHM_ANY_OWNER);
    if (err) usleep(10000);
  }
  assert_int_equal(err, 0);
}

static void start_target(target_t *t, const char *conf) {
  int to[2], from[2];
  assert_int_equal(pipe(to), 0);
  assert_int_equal(pipe(from), 0);
  memset(t, 0, sizeof *t);
  t->pid = fork();
  assert_true(t->pid >= 0);
  if (t->pid == 0) {
    dup2(to[0], 0);
    dup2(from[1], 1);
    close(to[0]), close(to[1]), close(from[0]), close(from[1]);
    const char *preload = getenv("ALLOC_TEST_PRELOAD");
    if (preload) setenv("LD_PRELOAD", preload, 1);
    char full[256];
    snprintf(full, sizeof full, "%s,telemetry_dir:%s", conf, seg_dir);
    setenv("ALLOC_CONF", full, 1);
    execl(target_path, target_path, (char *)NULL);
    _exit(127);
  }
  close(to[0]);
  close(from[1]);
  t->in = fdopen(to[1], "w");
  t->out = fdopen(from[0], "r");
  setvbuf(t->in, NULL, _IOLBF, 0);
  char line[256], name[64];
  unsigned long start, size;
  while (read_line(t, line, sizeof line) && strcmp(line, "ready") != 0) {
    if (sscanf(line, "sym %63s %lx %lu", name, &start, &size) != 3) continue;
    for (int i = 0; i < NSYMS; i++)
      if (strcmp(name, sym_names[i]) == 0) t->sym_start[i] = start, t->sym_size[i] = size;
  }
  for (int i = 0; i < NSYMS; i++) assert_true(t->sym_size[i] > 0);
  open_segment(t);
  t->next_id = 1;
}

/* Send a command; the answer's first number (or 0). */
static uint64_t command(target_t *t, const char *cmd, uint64_t *second) {
  char line[256];
  fprintf(t->in, "%s\n", cmd);
  assert_non_null(read_line(t, line, sizeof line));
  unsigned long long a = 0, b = 0;
  assert_true(strncmp(line, "ok", 2) == 0);
  sscanf(line, "ok %llu %llu", &a, &b);
  if (second) *second = b;
  return a;
}

static void stop_target(target_t *t) {
  fprintf(t->in, "exit\n");
  fclose(t->in);
  int status = 0;
  assert_int_equal(waitpid(t->pid, &status, 0), t->pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  fclose(t->out);
  alloc_shm_close(&t->seg);
}

/* A control request, acknowledged; its status. */
static int post(target_t *t, const char *name, const char *value, alloc_shm_request_t *ack) {
  alloc_shm_request_t local;
  if (!ack) ack = &local;
  int err = alloc_shm_post(&t->seg, name, value, t->next_id++, 20000, ack);
  assert_int_equal(err, 0);
  return (int)ack->status;
}

/* ---- reading the profile area ------------------------------------------- */

static bool frame_in(const target_t *t, uint64_t pc, int sym) {
  return pc - 1 >= t->sym_start[sym] && pc - 1 < t->sym_start[sym] + t->sym_size[sym];
}

/* Ask for a profile and read it as a reader must: seq even and twice its
 * number, number at least the one acknowledged, sizes in bounds, checksum. */
static void read_profile(target_t *t, profile_t *p) {
  alloc_shm_request_t ack;
  assert_int_equal(post(t, "prof.publish", "", &ack), 0);
  uint64_t n = strtoull(ack.effective, NULL, 10);
  assert_true(n >= 1);
  memset(p, 0, sizeof *p);
  uint64_t off = t->seg.header.profile_offset;
  assert_int_equal(t->seg.header.profile_size, ALLOC_SHM_PROFILE_SIZE);
  assert_int_equal(pread(t->seg.fd, &p->h, sizeof p->h, (off_t)off), (ssize_t)sizeof p->h);
  assert_int_equal(p->h.seq, 2 * p->h.number);
  assert_true(p->h.number >= n);
  assert_true(p->h.used >= ALLOC_SHM_PROFILE_FRAMES && p->h.used <= ALLOC_SHM_PROFILE_SIZE);
  assert_int_equal(p->h.used, ALLOC_SHM_PROFILE_FRAMES + 8ull * p->h.nframes);
  assert_true(p->h.nmodules <= ALLOC_SHM_PROFILE_MAX_MODULES && p->h.nstacks <= ALLOC_SHM_PROFILE_MAX_STACKS);
  p->area = malloc(p->h.used);
  assert_non_null(p->area);
  assert_int_equal(pread(t->seg.fd, p->area, p->h.used, (off_t)off), (ssize_t)p->h.used);
  assert_int_equal(alloc_shm_profile_checksum(p->area, p->h.used), p->h.checksum);
  p->modules = (const alloc_shm_module_t *)(p->area + ALLOC_SHM_PROFILE_MODULES);
  p->stacks = (const alloc_shm_stack_t *)(p->area + ALLOC_SHM_PROFILE_STACKS);
  p->frames = (const uint64_t *)(p->area + ALLOC_SHM_PROFILE_FRAMES);
  for (uint32_t i = 0; i < p->h.nstacks; i++) {
    const alloc_shm_stack_t *s = &p->stacks[i];
    assert_true(s->depth <= ALLOC_SHM_PROFILE_MAX_DEPTH && s->first_frame + s->depth <= p->h.nframes);
    p->inuse_total += (double)s->inuse_bytes;
    p->pinned_total += (double)s->pinned_bytes;
    for (int k = 0; k < NSYMS; k++) {
      bool in = false;
      for (uint32_t f = 0; f < s->depth && !in; f++) in = frame_in(t, p->frames[s->first_frame + f], k);
      if (!in) continue;
      p->stacks_of[k]++;
      p->inner_frames[k] += frame_in(t, p->frames[s->first_frame], k);
      p->inuse[k] += (double)s->inuse_bytes;
      p->alloc[k] += (double)s->alloc_bytes;
      p->pinned[k] += (double)s->pinned_bytes;
    }
  }
}

static void free_profile(profile_t *p) { free(p->area); }

static void assert_near(double got, double want, double tolerance) {
  print_message("estimate %.0f, truth %.0f: %+.1f%%\n", got, want, (got / want - 1) * 100);
  if (got < want * (1 - tolerance) || got > want * (1 + tolerance)) {
    print_error("estimate %.0f, truth %.0f (tolerance %.0f%%)\n", got, want, tolerance * 100);
    fail();
  }
}

static int rank_of(const double *v, int k) {
  int r = 0;
  for (int i = 0; i < NSYMS; i++) r += v[i] > v[k];
  return r;
}

/* ---- tests ----------------------------------------------------------------- */

#define CONF "prof_sample_bytes:16384,stats_interval_ms:50"

/* Three call sites with known behaviour: the one that keeps memory ranks
 * first by in-use bytes (estimated within 10%), the one that fragments
 * first by pinned bytes, the one that churns first by allocated bytes;
 * every frame is resolved to the right function without frame pointers. */
static void test_call_sites(void **state) {
  (void)state;
  target_t t;
  start_target(&t, CONF);
  alloc_shm_request_t ack;
  assert_int_equal(post(&t, "prof", "true", &ack), 0);
  assert_string_equal(ack.effective, "true");
  uint64_t kept = command(&t, "keep", NULL);
  uint64_t churned = command(&t, "churn", NULL);
  uint64_t frag_kept = command(&t, "fragment", NULL);
  uint64_t large_kept = command(&t, "large", NULL);
  profile_t p;
  read_profile(&t, &p);
  assert_true(p.h.flags & ALLOC_SHM_PROF_ENABLED);
  assert_int_equal(p.h.sample_bytes, 16384);
  assert_true(p.h.samples > 1000);
  assert_int_equal(p.h.dropped_samples, 0);
  assert_true(p.h.profiler_bytes > 0);
  assert_near(p.inuse[SYM_KEEP], (double)kept, 0.10);
  assert_near(p.inuse[SYM_LARGE], (double)large_kept, 0.10);
  assert_near(p.inuse[SYM_FRAGMENT], (double)frag_kept, 0.15);   /* ~80 samples, and the array of pointers */
  assert_int_equal(rank_of(p.inuse, SYM_KEEP), 0);
  assert_int_equal(rank_of(p.pinned, SYM_FRAGMENT), 0);
  assert_int_equal(rank_of(p.alloc, SYM_CHURN), 0);
  assert_near(p.alloc[SYM_CHURN], (double)churned, 0.10);
  assert_true(p.inuse[SYM_CHURN] < 0.01 * (double)kept);
  /* liballoc's own frames are left out: the innermost frame of every
   * stack through a call site is the call site itself. */
  for (int k = SYM_KEEP; k <= SYM_LARGE; k++) {
    assert_true(p.stacks_of[k] >= 1);
    assert_int_equal(p.inner_frames[k], p.stacks_of[k]);
  }
  /* The module list: the program first, with its path and build ID. */
  assert_true(p.h.nmodules >= 3);
  assert_int_equal(p.modules[0].flags, 1);
  assert_non_null(strstr(p.modules[0].path, "prof_target"));
  assert_true(p.modules[0].build_id_size > 0 && p.modules[0].start < p.modules[0].end);
  assert_true(t.sym_start[SYM_KEEP] >= p.modules[0].start && t.sym_start[SYM_KEEP] < p.modules[0].end);
  free_profile(&p);
  /* A library opened later appears in the next profile, with its build ID. */
  assert_int_equal(command(&t, "dlopen", NULL), 1);
  read_profile(&t, &p);
  bool found = false;
  for (uint32_t i = 0; i < p.h.nmodules; i++)
    if (strstr(p.modules[i].path, "libm.so.6") && p.modules[i].build_id_size > 0 && p.modules[i].flags == 0) found = true;
  assert_true(found);
  free_profile(&p);
  command(&t, "release", NULL);
  read_profile(&t, &p);
  assert_true(p.inuse[SYM_KEEP] < 0.01 * (double)kept);
  assert_true(p.inuse[SYM_LARGE] < 0.01 * (double)large_kept);
  assert_true(p.inuse[SYM_FRAGMENT] < 0.01 * (double)kept);
  assert_true(p.alloc[SYM_KEEP] > 0.9 * (double)kept);   /* cumulative counts stay */
  free_profile(&p);
  stop_target(&t);
}

/* The sum of pinned bytes over every stack is the process's own free
 * resident space in slabs, active - allocated (docs/metrics.md), within
 * sampling error, on a workload that pins pages: 100 MiB of 64-byte blocks
 * with 95% freed at random keeps every slab. */
static void test_pinned_matches_counters(void **state) {
  (void)state;
  target_t t;
  /* One sample per 8 KiB: ~640 of the 5% of blocks kept, so the
   * estimate's standard deviation is about 4% of it.  (Not more: the
   * 12,800 samples of the fill are live at once, and the live table holds
   * 16,384.) */
  start_target(&t, "prof_sample_bytes:8192,stats_interval_ms:50");
  assert_int_equal(post(&t, "prof", "true", NULL), 0);
  command(&t, "fragment", NULL);
  uint64_t active = 0, allocated = command(&t, "stats", &active);
  profile_t p;
  read_profile(&t, &p);
  double free_resident = (double)(active - allocated);
  assert_true(free_resident > 80.0 * 1024 * 1024);
  assert_near(p.pinned_total, free_resident, 0.15);
  assert_near(p.pinned[SYM_FRAGMENT], free_resident, 0.15);
  free_profile(&p);
  stop_target(&t);
}

/* Switched on and off live, several times, through the control area: on,
 * samples are taken and the kept memory is estimated; off, none are taken
 * and the live samples are forgotten. */
static void test_live_switching(void **state) {
  (void)state;
  target_t t;
  start_target(&t, CONF);
  profile_t p;
  for (int round = 0; round < 3; round++) {
    alloc_shm_request_t ack;
    assert_int_equal(post(&t, "prof", "true", &ack), 0);
    assert_string_equal(ack.effective, "true");
    uint64_t kept = command(&t, "keep", NULL);
    read_profile(&t, &p);
    assert_true(p.h.flags & ALLOC_SHM_PROF_ENABLED);
    assert_near(p.inuse[SYM_KEEP], (double)kept, 0.10);
    free_profile(&p);
    assert_int_equal(post(&t, "prof", "false", &ack), 0);
    assert_string_equal(ack.effective, "false");
    read_profile(&t, &p);
    assert_false(p.h.flags & ALLOC_SHM_PROF_ENABLED);
    assert_int_equal(p.h.live_samples, 0);
    assert_int_equal(p.h.sample_bytes, 0);
    uint64_t samples = p.h.samples;
    free_profile(&p);
    command(&t, "release", NULL);
    command(&t, "keep", NULL);   /* while off: not sampled */
    read_profile(&t, &p);
    assert_int_equal(p.h.samples, samples);
    free_profile(&p);
    command(&t, "release", NULL);
  }
  /* Bad values are refused, and the process carries on. */
  assert_int_equal(post(&t, "prof", "maybe", NULL), EINVAL);
  assert_int_equal(post(&t, "prof_sample_bytes", "0", NULL), EINVAL);
  assert_int_equal(post(&t, "prof.publish", "now", NULL), EINVAL);
  assert_int_equal(post(&t, "prof_sample_bytes", "1024", NULL), 0);
  assert_int_equal(post(&t, "prof", "true", NULL), 0);
  command(&t, "churn", NULL);   /* one sample a KiB */
  read_profile(&t, &p);
  assert_true(p.h.samples > 100000);
  free_profile(&p);
  stop_target(&t);
}

/* ALLOC_CONF=prof:true: sampling from the start (the constructor opens
 * nothing: the first sample finds its stack), with no request. */
static void test_enabled_at_start(void **state) {
  (void)state;
  target_t t;
  start_target(&t, "prof:true," CONF);
  uint64_t kept = command(&t, "keep", NULL);
  profile_t p;
  read_profile(&t, &p);
  assert_true(p.h.flags & ALLOC_SHM_PROF_ENABLED);
  assert_true(p.h.enabled_ns > 0);
  assert_near(p.inuse[SYM_KEEP], (double)kept, 0.10);
  assert_true(p.stacks_of[SYM_KEEP] >= 1);
  assert_int_equal(p.inner_frames[SYM_KEEP], p.stacks_of[SYM_KEEP]);
  free_profile(&p);
  stop_target(&t);
}

/* Threads sample with countdowns of their own; their blocks freed by
 * their own threads leave the profile. */
static void test_threads(void **state) {
  (void)state;
  target_t t;
  start_target(&t, "prof_sample_bytes:16384,stats_interval_ms:50");   /* ~2000 samples */
  assert_int_equal(post(&t, "prof", "true", NULL), 0);
  uint64_t kept = command(&t, "threads", NULL);
  profile_t p;
  read_profile(&t, &p);
  assert_near(p.inuse[SYM_THREAD], (double)kept, 0.10);
  free_profile(&p);
  command(&t, "threads_end", NULL);
  read_profile(&t, &p);
  assert_true(p.inuse[SYM_THREAD] < 0.01 * (double)kept);
  free_profile(&p);
  stop_target(&t);
}

/* fork(): the child inherits the profile consistently and can publish
 * its own; the parent's is unchanged. */
static void test_fork(void **state) {
  (void)state;
  target_t t;
  start_target(&t, CONF);
  assert_int_equal(post(&t, "prof", "true", NULL), 0);
  uint64_t kept = command(&t, "keep", NULL);
  assert_int_equal(command(&t, "fork", NULL), 0);
  profile_t p;
  read_profile(&t, &p);
  assert_near(p.inuse[SYM_KEEP], (double)kept, 0.10);
  free_profile(&p);
  stop_target(&t);
}

/* The segment is the process's, but anyone who can write it can scribble
 * on the profile area or truncate the file: the process only ever writes
 * the area, so a garbage area is simply overwritten, and a truncated file
 * is replaced by a new segment at the next tick.  The process lives on. */
static void test_hostile_segment(void **state) {
  (void)state;
  target_t t;
  start_target(&t, CONF);
  assert_int_equal(post(&t, "prof", "true", NULL), 0);
  uint64_t kept = command(&t, "keep", NULL);
  static unsigned char garbage[1 << 16];
  for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (unsigned char)(i * 131 + 7);
  for (uint64_t off = 0; off < 4 * sizeof garbage; off += sizeof garbage)
    assert_int_equal(pwrite(t.seg.fd, garbage, sizeof garbage, (off_t)(t.seg.header.profile_offset + off)),
                     (ssize_t)sizeof garbage);
  profile_t p;
  read_profile(&t, &p);
  assert_near(p.inuse[SYM_KEEP], (double)kept, 0.10);
  free_profile(&p);
  /* Truncated: the next tick makes a new segment (the old one is no longer
   * the process's); requests go to that one. */
  assert_int_equal(ftruncate(t.seg.fd, 4096), 0);
  alloc_shm_close(&t.seg);
  open_segment(&t);
  read_profile(&t, &p);
  assert_near(p.inuse[SYM_KEEP], (double)kept, 0.10);
  free_profile(&p);
  assert_int_equal(kill(t.pid, 0), 0);
  stop_target(&t);
}

/* The targets' directory and whatever a failed test left in it. */
static void remove_dir(const char *path) {
  DIR *d = opendir(path);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.' || (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))) unlinkat(dirfd(d), e->d_name, 0);
  closedir(d);
  rmdir(path);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PROF_TARGET\n", argv[0]);
    return 2;
  }
  target_path = argv[1];
  signal(SIGPIPE, SIG_IGN);
  if (!mkdtemp(seg_dir)) {
    perror("mkdtemp");
    return 1;
  }
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_call_sites),
    cmocka_unit_test(test_enabled_at_start),
    cmocka_unit_test(test_pinned_matches_counters),
    cmocka_unit_test(test_live_switching),
    cmocka_unit_test(test_threads),
    cmocka_unit_test(test_fork),
    cmocka_unit_test(test_hostile_segment),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  remove_dir(seg_dir);
  return failed;
}
