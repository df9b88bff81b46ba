/* test_pressure.c - memory pressure and memory cgroups as allocd reads
 * them (pressure.h), on fake trees: a cgroup v2 hierarchy (what production
 * has; these machines have v1), a v1 one, a hierarchy mounted from below
 * its root (a container's view), and garbage.  The real v1 hierarchy is
 * read end to end by agent.e2e test_cgroup_and_pressure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pressure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

static void put(const char *rel, const char *text) {
  char path[512], dir[512];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  snprintf(dir, sizeof dir, "%s", path);
  for (char *p = dir + strlen(root) + 1; (p = strchr(p, '/')); p++) {   /* mkdir -p */
    *p = 0;
    mkdir(dir, 0700);
    *p = '/';
  }
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static const char *at(const char *rel) {
  static char path[4][512];
  static int i;
  i = (i + 1) % 4;
  snprintf(path[i], sizeof path[i], "%s/%s", root, rel);
  return path[i];
}

static int setup(void **state) {
  (void)state;
  snprintf(root, sizeof root, "/tmp/test_pressure.XXXXXX");
  return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  return system(cmd);
}

static const char PSI[] = "some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\n"
                          "full avg10=0.50 avg60=0.00 avg300=0.00 total=7890\n";

static void psi_is_parsed(void **state) {
  (void)state;
  psi_t p;
  assert_true(psi_parse(PSI, &p));
  assert_true(p.known);
  assert_true(p.some[0] > 0.0149 && p.some[0] < 0.0151);
  assert_true(p.some[1] > 0.0024 && p.some[1] < 0.0026);
  assert_true(p.full[0] > 0.0049 && p.full[0] < 0.0051);
  assert_int_equal(p.some_us, 123456);
  assert_int_equal(p.full_us, 7890);
  assert_true(psi_parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n", &p));   /* no "full" line */
  assert_int_equal(p.full_us, 0);
  assert_false(psi_parse("", &p));
  assert_false(psi_parse("some avg10=x", &p));
  assert_false(psi_parse("some avg10=1000.0 avg60=0 avg300=0 total=1\n", &p));   /* not a percentage */
  assert_false(p.known);
}

static void v2_nested_cgroup(void **state) {
  (void)state;
  char mi[1024];
  snprintf(mi, sizeof mi,
           "22 1 0:21 / / rw - ext4 /dev/sda1 rw\n"
           "30 22 0:26 / %s/v2 rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", root);
  put("mountinfo", mi);
  put("proc/cgroup", "0::/system.slice/db.service\n");
  put("v2/system.slice/db.service/memory.current", "104857600\n");
  put("v2/system.slice/db.service/memory.max", "max\n");
  put("v2/system.slice/db.service/memory.high", "209715200\n");
  put("v2/system.slice/db.service/memory.events", "low 0\nhigh 12\nmax 3\noom 1\noom_kill 2\n");
  put("v2/system.slice/db.service/memory.pressure", PSI);
  cgroup_mounts_t m;
  cgroup_mounts_find(at("mountinfo"), &m);
  assert_string_equal(m.v2, at("v2"));
  assert_string_equal(m.v1, "");
  int version;
  char path[256];
  assert_true(cgroup_of(at("proc/cgroup"), &m, &version, path, sizeof path));
  assert_int_equal(version, 2);
  assert_string_equal(path, "/system.slice/db.service");
  cgroup_mem_t cg;
  assert_true(cgroup_mem_read(&m, version, path, &cg));
  assert_true(cg.known);
  assert_int_equal(cg.usage, 104857600);
  assert_int_equal(cg.limit, 0);   /* max: none */
  assert_int_equal(cg.high, 209715200);
  assert_int_equal(cg.failures, 3);
  assert_int_equal(cg.oom_kills, 2);
  assert_true(cg.psi.known);
  assert_int_equal(cg.psi.some_us, 123456);
}

static void v1_memory_controller_preferred(void **state) {
  (void)state;
  char mi[1024];
  /* hybrid: v1 memory controller and a v2 hierarchy without controllers */
  snprintf(mi, sizeof mi,
           "35 31 0:32 / %s/mem rw,relatime - cgroup cgroup rw,memory\n"
           "36 31 0:33 / %s/cpu rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
           "41 31 0:38 / %s/unified rw,relatime - cgroup2 cgroup2 rw\n", root, root, root);
  put("mountinfo1", mi);
  put("proc/cgroup1", "4:cpu,cpuacct:/\n3:memory:/batch/job7\n0::/\n");
  put("mem/batch/job7/memory.usage_in_bytes", "4096\n");
  put("mem/batch/job7/memory.limit_in_bytes", "9223372036854771712\n");   /* v1's "unlimited" */
  put("mem/batch/job7/memory.failcnt", "17\n");
  put("mem/batch/job7/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n");
  cgroup_mounts_t m;
  cgroup_mounts_find(at("mountinfo1"), &m);
  int version;
  char path[256];
  assert_true(cgroup_of(at("proc/cgroup1"), &m, &version, path, sizeof path));
  assert_int_equal(version, 1);
  assert_string_equal(path, "/batch/job7");
  cgroup_mem_t cg;
  assert_true(cgroup_mem_read(&m, version, path, &cg));
  assert_int_equal(cg.usage, 4096);
  assert_int_equal(cg.limit, 0);
  assert_int_equal(cg.failures, 17);
  assert_int_equal(cg.oom_kills, 4);
  assert_false(cg.psi.known);
  put("mem/batch/job7/memory.limit_in_bytes", "536870912\n");
  assert_true(cgroup_mem_read(&m, version, path, &cg));
  assert_int_equal(cg.limit, 536870912);
}

/* A container sees its own cgroup as the hierarchy's root: mountinfo's
 * root field names the part mounted, and cgroups outside it are not read. */
static void hierarchy_mounted_from_below_its_root(void **state) {
  (void)state;
  char mi[1024];
  snprintf(mi, sizeof mi, "50 40 0:26 /kubepods/pod1 %s/c2 rw - cgroup2 cgroup2 rw\n", root);
  put("mountinfo2", mi);
  put("c2/app/memory.current", "1000\n");
  put("c2/app/memory.max", "2000\n");
  cgroup_mounts_t m;
  cgroup_mounts_find(at("mountinfo2"), &m);
  assert_string_equal(m.v2_root, "/kubepods/pod1");
  cgroup_mem_t cg;
  assert_true(cgroup_mem_read(&m, 2, "/kubepods/pod1/app", &cg));
  assert_int_equal(cg.limit, 2000);
  assert_false(cgroup_mem_read(&m, 2, "/kubepods/pod2/app", &cg));
  assert_false(cgroup_mem_read(&m, 2, "/kubepods/pod10", &cg));
  assert_false(cgroup_mem_read(&m, 2, "/kubepods/pod1/../pod2", &cg));
  assert_false(cg.known);
}

static void garbage_and_missing(void **state) {
  (void)state;
  cgroup_mounts_t m;
  cgroup_mounts_find(at("no-such-mountinfo"), &m);
  assert_string_equal(m.v1, "");
  assert_string_equal(m.v2, "");
  put("mountinfo3", "garbage\n\n - - -\n1 2 3\n");
  cgroup_mounts_find(at("mountinfo3"), &m);
  assert_string_equal(m.v2, "");
  int version;
  char path[256];
  put("proc/cgroup3", "nonsense\n::\n0::/x\n");
  assert_false(cgroup_of(at("proc/cgroup3"), &m, &version, path, sizeof path));   /* no hierarchy mounted */
  char mi[512];
  snprintf(mi, sizeof mi, "1 1 0:1 / %s/g rw - cgroup2 cgroup2 rw\n", root);
  put("mountinfo4", mi);
  cgroup_mounts_find(at("mountinfo4"), &m);
  put("g/x/memory.current", "not a number\n");
  cgroup_mem_t cg;
  assert_false(cgroup_mem_read(&m, 2, "/x", &cg));
  put("g/x/memory.current", "5\n");
  put("g/x/memory.max", "-1\n");
  put("g/x/memory.events", "max\nmax x\n");
  assert_true(cgroup_mem_read(&m, 2, "/x", &cg));
  assert_int_equal(cg.usage, 5);
  assert_int_equal(cg.failures, 0);
  assert_false(cg.psi.known);
}

/* The cache reads a cgroup's files once per CGROUP_READ_MS for all its
 * processes, and never more files per call than the budget. */
static void cache_respects_its_budget(void **state) {
  (void)state;
  cgroup_cache_t *cc = cgroup_cache_new("/proc/self/mountinfo");
  assert_non_null(cc);
  cgroup_mem_t cg = {0};
  int64_t member = 0;
  int budget = 0;
  cgroup_cache_update(cc, getpid(), 100000, &budget, &member, &cg);
  assert_false(cg.known);
  assert_int_equal(member, 0);
  budget = 1;   /* enough for the membership only */
  cgroup_cache_update(cc, getpid(), 100000, &budget, &member, &cg);
  assert_int_equal(budget, 0);
  assert_int_equal(member, 100000);
  budget = 8;
  cgroup_cache_update(cc, getpid(), 100001, &budget, &member, &cg);
  int used = 8 - budget;
  assert_true(used <= 1);   /* the figures, if this host has a memory hierarchy */
  cgroup_mem_t again = {0};
  int64_t member2 = 0;
  budget = 8;
  cgroup_cache_update(cc, getpid(), 100002, &budget, &member2, &again);   /* another process, same cgroup */
  assert_int_equal(8 - budget, 1);   /* its membership; the figures come from the cache */
  assert_int_equal(again.known, cg.known);
  cgroup_cache_free(cc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(psi_is_parsed),
    cmocka_unit_test(v2_nested_cgroup),
    cmocka_unit_test(v1_memory_controller_preferred),
    cmocka_unit_test(hierarchy_mounted_from_below_its_root),
    cmocka_unit_test(garbage_and_missing),
    cmocka_unit_test(cache_respects_its_budget),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
