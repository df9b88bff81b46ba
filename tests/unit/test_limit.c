/* test_limit.c - memory_limit: cgroup discovery on fake trees (v2 nested,
 * v1, "max", no cgroup, unlimited, garbage, container mounts), the
 * option's syntax, live changes through alloc_ctl and the control area's
 * text path, and memory_limit_hard refusing what would cross the limit. */
#include "unit.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"

static char root[PATH_MAX];

/* Write `text` to root/rel, creating the directories on the way. */
static void put(const char *rel, const char *text) {
  char path[PATH_MAX * 2];
  snprintf(path, sizeof path, "%s%s", root, rel);
  for (char *p = path + strlen(root) + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      mkdir(path, 0755);
      *p = '/';
    }
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static int setup(void **state) {
  (void)state;
  snprintf(root, sizeof root, "/tmp/test_limit.XXXXXX");
  return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  return system(cmd) == 0 ? 0 : -1;
}

#define V2_MOUNT "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n"
#define V1_MOUNTS                                                                                \
  "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"                                      \
  "32 31 0:29 / /cg/cpu rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"                            \
  "35 31 0:31 / /cg/mem\\040ory rw,relatime shared:9 master:2 - cgroup cgroup rw,memory\n"

static void fresh_tree(void **state) {
  teardown(state);
  assert_int_equal(setup(state), 0);
}

/* v2, nested: the tightest of memory.max and memory.high at every level
 * from the process's cgroup up to the mount point. */
static void v2_nested_high_tighter(void **state) {
  fresh_tree(state);
  put("/proc/self/cgroup", "0::/app.slice/web.service\n");
  put("/proc/self/mountinfo", V2_MOUNT);
  put("/sys/fs/cgroup/memory.max", "max\n");   /* the root has none */
  put("/sys/fs/cgroup/app.slice/memory.max", "max\n");
  put("/sys/fs/cgroup/app.slice/memory.high", "629145600\n");   /* 600 MiB: the parent's high */
  put("/sys/fs/cgroup/app.slice/web.service/memory.max", "838860800\n");
  put("/sys/fs/cgroup/app.slice/web.service/memory.high", "max\n");
  la_limit_t l = la_limit_discover(root);
  assert_int_equal(l.bytes, 629145600);
  assert_int_equal(l.source, LA_LIMIT_CGROUP_V2);
  put("/sys/fs/cgroup/app.slice/web.service/memory.high", "524288000\n");   /* now the leaf's */
  l = la_limit_discover(root);
  assert_int_equal(l.bytes, 524288000);
}

/* v1: memory.limit_in_bytes up the hierarchy, found through mountinfo
 * (not at /sys/fs/cgroup, with an escaped space and optional fields); the
 * "unlimited" page-rounded 2^63 counts as none. */
static void v1_found_through_mountinfo(void **state) {
  fresh_tree(state);
  put("/proc/self/cgroup", "5:cpu,cpuacct:/x\n4:memory:/batch/job7\n0::/\n");
  put("/proc/self/mountinfo", V1_MOUNTS);
  put("/cg/mem ory/memory.limit_in_bytes", "9223372036854771712\n");
  put("/cg/mem ory/batch/memory.limit_in_bytes", "9223372036854771712\n");
  put("/cg/mem ory/batch/job7/memory.limit_in_bytes", "503316480\n");
  put("/cg/cpu/x/memory.limit_in_bytes", "1\n");   /* not the memory hierarchy */
  la_limit_t l = la_limit_discover(root);
  assert_int_equal(l.bytes, 503316480);
  assert_int_equal(l.source, LA_LIMIT_CGROUP_V1);
  put("/cg/mem ory/batch/memory.limit_in_bytes", "268435456\n");   /* a tighter parent */
  assert_int_equal(la_limit_discover(root).bytes, 268435456);
}

/* A container that sees the host's cgroup paths with its own cgroup
 * mounted: the mount's root is the process's cgroup. */
static void container_mount_root(void **state) {
  fresh_tree(state);
  put("/proc/self/cgroup", "7:memory:/docker/abc123\n");
  put("/proc/self/mountinfo", "40 31 0:33 /docker/abc123 /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n");
  put("/sys/fs/cgroup/memory/memory.limit_in_bytes", "104857600\n");
  la_limit_t l = la_limit_discover(root);
  assert_int_equal(l.bytes, 104857600);
  assert_int_equal(l.source, LA_LIMIT_CGROUP_V1);
}

/* No limit anywhere: "max", v1's unlimited, no cgroup file, no memory
 * controller mounted, a v2 hierarchy without the memory files. */
static void no_limit(void **state) {
  fresh_tree(state);
  la_limit_t l = la_limit_discover(root);   /* nothing at all */
  assert_int_equal(l.bytes, 0);
  assert_int_equal(l.source, LA_LIMIT_NONE);
  put("/proc/self/cgroup", "0::/\n");
  l = la_limit_discover(root);   /* no mountinfo */
  assert_int_equal(l.bytes, 0);
  put("/proc/self/mountinfo", V2_MOUNT);
  assert_int_equal(la_limit_discover(root).bytes, 0);   /* no memory.max files */
  put("/sys/fs/cgroup/memory.max", "max\n");
  put("/sys/fs/cgroup/memory.high", "max");
  assert_int_equal(la_limit_discover(root).bytes, 0);
  put("/proc/self/cgroup", "4:memory:/a\n");
  put("/proc/self/mountinfo", V1_MOUNTS);
  put("/cg/mem ory/a/memory.limit_in_bytes", "9223372036854771712\n");
  assert_int_equal(la_limit_discover(root).bytes, 0);
  put("/proc/self/mountinfo", "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n");
  assert_int_equal(la_limit_discover(root).bytes, 0);   /* controller not mounted */
}

/* Files that are not limits: none, never a crash (one warning). */
static void garbage_is_no_limit(void **state) {
  fresh_tree(state);
  put("/proc/self/cgroup", "0::/g\n");
  put("/proc/self/mountinfo", V2_MOUNT);
  static const char *const bad[] = {"lots\n", "12abc\n", "99999999999999999999999\n", "-5\n", "", "\n",
                                    "18446744073709551615\n", "4611686018427387904\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    put("/sys/fs/cgroup/g/memory.max", bad[i]);
    la_limit_t l = la_limit_discover(root);
    if (l.bytes != 0) fail_msg("memory.max '%s' gave %zu", bad[i], l.bytes);
  }
  /* malformed /proc/self/cgroup and mountinfo lines are skipped */
  put("/sys/fs/cgroup/g/memory.max", "1048576000\n");
  put("/proc/self/cgroup", "garbage\n::\n0:\n4:memory\n0::relative\n0::/g\n");
  put("/proc/self/mountinfo", "x\n1 2 3\n1 2 3 4 5 6 7 - \n" V2_MOUNT);
  assert_int_equal(la_limit_discover(root).bytes, 1048576000);
}

/* v1 and v2 both limit the process: the tightest wins, with its source. */
static void tightest_of_both(void **state) {
  fresh_tree(state);
  put("/proc/self/cgroup", "4:memory:/a\n0::/b\n");
  put("/proc/self/mountinfo", V1_MOUNTS "30 23 0:26 / /unified rw - cgroup2 cgroup2 rw\n");
  put("/cg/mem ory/a/memory.limit_in_bytes", "400000000\n");
  put("/unified/b/memory.max", "300000000\n");
  la_limit_t l = la_limit_discover(root);
  assert_int_equal(l.bytes, 300000000);
  assert_int_equal(l.source, LA_LIMIT_CGROUP_V2);
}

/* Every open or read of the discovery failing, one after another and all
 * at once (injected faults): a limit or none, never a crash; and with
 * none of them failing, the limit again. */
static void faults_are_no_limit(void **state) {
  fresh_tree(state);
  put("/proc/self/cgroup", "4:memory:/a/b\n0::/c\n");
  put("/proc/self/mountinfo", V1_MOUNTS "30 23 0:26 / /unified rw - cgroup2 cgroup2 rw\n");
  put("/cg/mem ory/a/memory.limit_in_bytes", "400000000\n");
  put("/cg/mem ory/a/b/memory.limit_in_bytes", "9223372036854771712\n");
  put("/unified/c/memory.high", "300000000\n");
  la_limit_t all = la_limit_discover(root);
  assert_int_equal(all.bytes, 300000000);
  for (enum la_os_call call = LA_OS_OPEN; call <= LA_OS_READ; call++) {
    for (uint64_t nth = 1; nth <= 12; nth++) {
      la_os_fault_set(call, nth, 0, 0);
      la_limit_t l = la_limit_discover(root);
      la_os_fault_clear();
      if (l.bytes != 0 && l.bytes != 400000000 && l.bytes != 300000000)
        fail_msg("%s failing at call %llu gave %zu", la_os_call_name(call), (unsigned long long)nth, l.bytes);
    }
    la_os_fault_set(call, 0, 1000000, 0);
    la_limit_t l = la_limit_discover(root);
    la_os_fault_clear();
    assert_int_equal(l.bytes, 0);
    assert_int_equal(l.source, LA_LIMIT_NONE);
  }
  assert_int_equal(la_limit_discover(root).bytes, 300000000);
}

/* The option: bytes with K/M/G/T suffixes, `cgroup`, 0. */
static void option_syntax(void **state) {
  (void)state;
  la_options_t o;
  la_options_defaults(&o);
  assert_int_equal(o.memory_limit, -1);   /* cgroup */
  assert_false(o.memory_limit_hard);
  static const struct {
    const char *text;
    long long want;
  } good[] = {{"memory_limit:512M", 512ll << 20}, {"memory_limit:1k", 1024}, {"memory_limit:3G", 3ll << 30},
              {"memory_limit:2T", 2ll << 40},     {"memory_limit:0", 0},     {"memory_limit:123456", 123456},
              {"memory_limit:cgroup", -1}};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    la_options_defaults(&o);
    assert_int_equal(la_options_parse(&o, good[i].text), 0);
    assert_int_equal(o.memory_limit, good[i].want);
  }
  static const char *const bad[] = {"memory_limit:12Q", "memory_limit:-1", "memory_limit:M",
                                    "memory_limit:99999999T", "memory_limit:", "memory_limit:1.5G",
                                    "memory_limit:cgroups", "memory_limit: 5M"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    la_options_defaults(&o);
    if (la_options_parse(&o, bad[i]) != 1) fail_msg("%s was taken", bad[i]);
    assert_int_equal(o.memory_limit, -1);
  }
}

static void stats(alloc_shm_stats_t *s) {
  la_stats_t st;
  la_stats_gather(&st);
  *s = st.s;
}

/* Live: alloc_ctl("opt.memory_limit") and the control area's text path
 * change the limit in force at once, and `cgroup` discovers it again (here
 * from a fake tree). */
static void live_changes(void **state) {
  fresh_tree(state);
  put("/proc/self/cgroup", "0::/svc\n");
  put("/proc/self/mountinfo", V2_MOUNT);
  put("/sys/fs/cgroup/svc/memory.max", "734003200\n");
  la_limit_set_cgroup_root(root);
  la_init_slow();
  alloc_shm_stats_t s;
  ssize_t v = 100 << 20;
  assert_int_equal(alloc_ctl("opt.memory_limit", NULL, NULL, &v, sizeof v), 0);
  stats(&s);
  assert_int_equal(s.limit, 100 << 20);
  assert_int_equal(s.limit_source, LA_LIMIT_OPTION);
  v = -1;   /* cgroup */
  assert_int_equal(alloc_ctl("opt.memory_limit", NULL, NULL, &v, sizeof v), 0);
  stats(&s);
  assert_int_equal(s.limit, 734003200);
  assert_int_equal(s.limit_source, LA_LIMIT_CGROUP_V2);
  ssize_t got = 0;
  size_t len = sizeof got;
  assert_int_equal(alloc_ctl("opt.memory_limit", &got, &len, NULL, 0), 0);
  assert_int_equal(got, -1);
  v = -2;   /* no such word */
  assert_int_equal(alloc_ctl("opt.memory_limit", NULL, NULL, &v, sizeof v), EINVAL);

  char eff[96], msg[128];
  assert_int_equal(la_ctl_apply_text("memory_limit", "64M", eff, sizeof eff, msg, sizeof msg), 0);
  assert_string_equal(eff, "67108864");
  stats(&s);
  assert_int_equal(s.limit, 64 << 20);
  assert_int_equal(la_ctl_apply_text("memory_limit", "0", eff, sizeof eff, msg, sizeof msg), 0);
  stats(&s);
  assert_int_equal(s.limit, 0);
  assert_int_equal(s.limit_source, LA_LIMIT_NONE);
  assert_int_equal(la_ctl_apply_text("memory_limit", "lots", eff, sizeof eff, msg, sizeof msg), EINVAL);
  assert_int_equal(la_ctl_apply_text("memory_limit_hard", "true", eff, sizeof eff, msg, sizeof msg), 0);
  bool hard = false;
  len = sizeof hard;
  assert_int_equal(alloc_ctl("opt.memory_limit_hard", &hard, &len, NULL, 0), 0);
  assert_true(hard);
  assert_int_equal(la_ctl_apply_text("memory_limit", "cgroup", eff, sizeof eff, msg, sizeof msg), 0);
  assert_string_equal(eff, "cgroup");
  put("/sys/fs/cgroup/svc/memory.max", "471859200\n");   /* the container is resized */
  la_limit_tick(0);   /* the publisher's tick re-reads it */
  stats(&s);
  assert_int_equal(s.limit, 471859200);
  put("/sys/fs/cgroup/other/memory.max", "314572800\n");
  put("/proc/self/cgroup", "0::/other\n");   /* moved to another cgroup: found at the next tick */
  la_limit_tick(0);
  stats(&s);
  assert_int_equal(s.limit, 314572800);
  la_limit_set_cgroup_root("");
  hard = false;
  assert_int_equal(alloc_ctl("opt.memory_limit_hard", NULL, NULL, &hard, sizeof hard), 0);
  v = 0;
  assert_int_equal(alloc_ctl("opt.memory_limit", NULL, NULL, &v, sizeof v), 0);
}

/* memory_limit_hard: a huge block that would cross the limit fails with
 * ENOMEM and is counted; realloc leaves the block intact; without the
 * hard flag the same allocation succeeds (and the hit is counted). */
static void hard_limit_refuses(void **state) {
  (void)state;
  la_init_slow();
  char *keep = la_malloc(8 << 20);   /* a huge block, resident */
  assert_non_null(keep);
  memset(keep, 7, 8 << 20);
  size_t rss = la_proc_rss();
  assert_true(rss > 0);
  ssize_t v = (ssize_t)(rss + (16 << 20));   /* 16 MiB of room */
  assert_int_equal(alloc_ctl("opt.memory_limit", NULL, NULL, &v, sizeof v), 0);
  bool hard = true;
  assert_int_equal(alloc_ctl("opt.memory_limit_hard", NULL, NULL, &hard, sizeof hard), 0);
  alloc_shm_stats_t before, after;
  stats(&before);
  errno = 0;
  void *big = la_malloc(64 << 20);
  assert_null(big);
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(la_realloc(keep, 64 << 20));
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(keep[0], 7);
  assert_int_equal(keep[(8 << 20) - 1], 7);
  void *small = la_malloc(4 << 20);   /* fits */
  assert_non_null(small);
  la_free(small);
  stats(&after);
  assert_true(after.limit_refused >= before.limit_refused + 2);
  assert_true(after.limit_hits > before.limit_hits);
  hard = false;
  assert_int_equal(alloc_ctl("opt.memory_limit_hard", NULL, NULL, &hard, sizeof hard), 0);
  big = la_malloc(64 << 20);   /* soft: over the limit, but allowed */
  assert_non_null(big);
  la_free(big);
  la_free(keep);
  v = 0;
  assert_int_equal(alloc_ctl("opt.memory_limit", NULL, NULL, &v, sizeof v), 0);
}

/* Near the limit the thread that hits it gives back the free pages of its
 * sparse slabs at once, though they were freed a moment ago (the heap's
 * own trimming waits for 100 ms of idleness): 96 MiB of 1 KiB blocks, 15
 * in 16 freed at random, then a slow path about to map near the limit. */
static void sparse_slabs_trimmed_near_the_limit(void **state) {
  (void)state;
  la_init_slow();
  enum { N = 96 * 1024 };
  static char *blocks[N];
  for (int i = 0; i < N; i++) memset(blocks[i] = la_malloc(1000), 1, 1000);
  unsigned seed = 7;
  for (int i = 0; i < N; i++)
    if (rand_r(&seed) % 16) la_free(blocks[i]), blocks[i] = NULL;
  size_t trimmed = atomic_load(&la_trimmed_bytes), rss = la_proc_rss();
  la_limit_tick(rss);   /* no limit yet: the RSS seen, as the publisher would */
  ssize_t v = (ssize_t)(rss + (4 << 20));   /* near: within the headroom */
  assert_int_equal(alloc_ctl("opt.memory_limit", NULL, NULL, &v, sizeof v), 0);
  size_t passes = la_limit_reclaim_passes();
  assert_true(la_limit_before_map(1 << 20));   /* a slow path about to map */
  assert_int_equal(la_limit_reclaim_passes(), passes + 1);
  size_t given = atomic_load(&la_trimmed_bytes) - trimmed;
  /* a page is free when its 4 blocks were all freed: (15/16)^4 of 90 MiB */
  assert_true(given > (48u << 20));
  assert_true(la_proc_rss() + (40u << 20) < rss);
  for (int i = 0; i < N; i++) la_free(blocks[i]);
  v = 0;
  assert_int_equal(alloc_ctl("opt.memory_limit", NULL, NULL, &v, sizeof v), 0);
}

static uint64_t fake_ns = 1000000000;
static uint64_t fake_clock(void) { return fake_ns; }

/* A program that lives near its limit: every slow path that maps counts a
 * hit, but memory is given back at most once per 10 ms (fake clock); far
 * from the limit, nothing at all. */
static void reclaim_is_rate_limited(void **state) {
  (void)state;
  la_init_slow();
  la_os_set_clock(fake_clock);
  assert_int_equal(alloc_ctl("arena.purge", NULL, NULL, NULL, 0), 0);   /* nothing left to give back: RSS stays */
  size_t rss = la_proc_rss();
  ssize_t v = (ssize_t)(rss + (4 << 20));   /* within the 8 MiB of headroom: near */
  assert_int_equal(alloc_ctl("opt.memory_limit", NULL, NULL, &v, sizeof v), 0);
  alloc_shm_stats_t before, after;
  stats(&before);
  size_t passes = la_limit_reclaim_passes();
  for (int i = 0; i < 50; i++) assert_true(la_limit_before_map(1 << 20));   /* soft: always allowed */
  assert_int_equal(la_limit_reclaim_passes(), passes + 1);
  fake_ns += 9000000;   /* 9 ms later: still too soon */
  assert_true(la_limit_before_map(1 << 20));
  assert_int_equal(la_limit_reclaim_passes(), passes + 1);
  fake_ns += 2000000;   /* 11 ms after the first */
  assert_true(la_limit_before_map(1 << 20));
  assert_int_equal(la_limit_reclaim_passes(), passes + 2);
  stats(&after);
  assert_int_equal(after.limit_hits, before.limit_hits + 52);
  v = (ssize_t)(rss + (1ull << 30));   /* far from it: no hit, no pass */
  assert_int_equal(alloc_ctl("opt.memory_limit", NULL, NULL, &v, sizeof v), 0);
  fake_ns += 100000000;
  for (int i = 0; i < 50; i++) assert_true(la_limit_before_map(1 << 20));
  stats(&before);
  assert_int_equal(before.limit_hits, after.limit_hits);
  assert_int_equal(la_limit_reclaim_passes(), passes + 2);
  v = 0;
  assert_int_equal(alloc_ctl("opt.memory_limit", NULL, NULL, &v, sizeof v), 0);
  la_os_set_clock(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(v2_nested_high_tighter), cmocka_unit_test(v1_found_through_mountinfo),
    cmocka_unit_test(container_mount_root),   cmocka_unit_test(no_limit),
    cmocka_unit_test(garbage_is_no_limit),    cmocka_unit_test(tightest_of_both),
    cmocka_unit_test(faults_are_no_limit),
    cmocka_unit_test(option_syntax),          cmocka_unit_test(live_changes),
    cmocka_unit_test(hard_limit_refuses),     cmocka_unit_test(reclaim_is_rate_limited),
    cmocka_unit_test(sparse_slabs_trimmed_near_the_limit),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
