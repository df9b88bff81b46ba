/* test_ctl.c - alloc_ctl(): mallctl's error codes, reads, writes, commands,
 * and statistics that follow the heap. */
#include "unit.h"

#include <alloc.h>
#include <errno.h>
#include <string.h>

static void unknown_names(void **state) {
  (void)state;
  size_t v, len = sizeof v;
  assert_int_equal(alloc_ctl("no.such.name", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(alloc_ctl("stats", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(alloc_ctl(NULL, &v, &len, NULL, 0), ENOENT);
}

static void reads_check_lengths(void **state) {
  (void)state;
  const char *version;
  size_t len = sizeof version;
  assert_int_equal(alloc_ctl("version", &version, &len, NULL, 0), 0);
  assert_string_equal(version, ALLOC_VERSION_STRING);
  uint32_t small;
  len = sizeof small;
  assert_int_equal(alloc_ctl("stats.allocated", &small, &len, NULL, 0), EINVAL);
  size_t page;
  assert_int_equal(alloc_ctl("arenas.page", &page, NULL, NULL, 0), EINVAL);
  len = sizeof page;
  assert_int_equal(alloc_ctl("arenas.page", &page, &len, NULL, 0), 0);
  assert_int_equal(page, la_page_size);
}

/* Knobs that cannot change while the process runs say so. */
static void read_only_values_refuse_writes(void **state) {
  (void)state;
  unsigned n = 3;
  assert_int_equal(alloc_ctl("opt.narenas", NULL, NULL, &n, sizeof n), EPERM);
  const char *dir = "/tmp";
  assert_int_equal(alloc_ctl("opt.telemetry_dir", NULL, NULL, &dir, sizeof dir), EPERM);
  size_t v = 1;
  assert_int_equal(alloc_ctl("stats.allocated", NULL, NULL, &v, sizeof v), EPERM);
}

/* Live knobs: written values are validated, read back, and the jemalloc
 * names reach the same knob. */
static void live_knobs(void **state) {
  (void)state;
  ssize_t ms = 5000, old, cur;
  size_t len = sizeof old;
  assert_int_equal(alloc_ctl("opt.dirty_decay_ms", &old, &len, &ms, sizeof ms), 0);
  assert_int_equal(alloc_ctl("arenas.dirty_decay_ms", &cur, &len, NULL, 0), 0);
  assert_int_equal(cur, 5000);
  ssize_t bad = -2;
  assert_int_equal(alloc_ctl("opt.dirty_decay_ms", NULL, NULL, &bad, sizeof bad), EINVAL);
  assert_int_equal(alloc_ctl("opt.muzzy_decay_ms", NULL, NULL, &ms, sizeof ms), 0);
  assert_int_equal(alloc_ctl("opt.dirty_decay_ms", NULL, NULL, &old, sizeof old), 0);
  const char *mode = "never", *bogus = "sometimes", *got;
  size_t slen = sizeof got;
  assert_int_equal(alloc_ctl("opt.thp", NULL, NULL, &mode, sizeof mode), 0);
  assert_int_equal(alloc_ctl("opt.thp", &got, &slen, NULL, 0), 0);
  assert_string_equal(got, "never");
  assert_int_equal(alloc_ctl("opt.thp", NULL, NULL, &bogus, sizeof bogus), EINVAL);
  mode = "default";
  assert_int_equal(alloc_ctl("opt.thp", NULL, NULL, &mode, sizeof mode), 0);
  mode = "always";
  assert_int_equal(alloc_ctl("opt.metadata_thp", NULL, NULL, &mode, sizeof mode), 0);
  mode = "auto";
  assert_int_equal(alloc_ctl("opt.metadata_thp", NULL, NULL, &mode, sizeof mode), 0);
  assert_int_equal(alloc_ctl("arena.decay", NULL, NULL, NULL, 0), 0);
}

/* A write and a read in one call return the value from before the write. */
static void epoch_read_and_write(void **state) {
  (void)state;
  uint64_t e1, e2, one = 1;
  size_t len = sizeof e1;
  assert_int_equal(alloc_ctl("epoch", &e1, &len, &one, sizeof one), 0);
  assert_int_equal(alloc_ctl("epoch", &e2, &len, NULL, 0), 0);
  assert_int_equal(e2, e1 + 1);
  assert_int_equal(alloc_ctl("epoch", NULL, NULL, &one, 4), EINVAL);
}

static void commands_take_no_values(void **state) {
  (void)state;
  size_t v, len = sizeof v;
  assert_int_equal(alloc_ctl("arena.purge", NULL, NULL, NULL, 0), 0);
  assert_int_equal(alloc_ctl("arena.purge", &v, &len, NULL, 0), EPERM);
  assert_int_equal(alloc_ctl("thread.tcache.flush", NULL, NULL, NULL, 0), 0);
}

static size_t read_stat(const char *name) {
  size_t v, len = sizeof v;
  assert_int_equal(alloc_ctl(name, &v, &len, NULL, 0), 0);
  return v;
}

/* Statistics follow blocks allocated through the internal entry points,
 * and the invariants between them hold. */
static void statistics_follow_the_heap(void **state) {
  (void)state;
  size_t before = read_stat("stats.allocated");
  void *blocks[256];
  for (int i = 0; i < 256; i++) blocks[i] = la_malloc(4096);
  void *big = la_malloc(8 << 20);
  size_t during = read_stat("stats.allocated");
  assert_true(during >= before + 256 * 4096 + (8 << 20));
  assert_true(read_stat("stats.active") >= during);
  assert_true(read_stat("stats.mapped") >= read_stat("stats.active"));
  for (int i = 0; i < 256; i++) la_free(blocks[i]);
  la_free(big);
  assert_true(read_stat("stats.allocated") <= before);
  assert_int_equal(la_malloc_trim(0), 1);
  assert_int_equal(read_stat("stats.dirty"), 0);
}

typedef struct sink_s {
  char buf[65536];
  size_t len;
} sink_t;

static void collect(void *opaque, const char *text) {
  sink_t *s = opaque;
  size_t n = strlen(text);
  assert_true(s->len + n < sizeof s->buf);
  memcpy(s->buf + s->len, text, n);
  s->len += n;
}

static void json_is_one_object(void **state) {
  (void)state;
  static sink_t sink;
  char *buf = sink.buf;
  alloc_stats_print(collect, &sink, "J");
  size_t len = sink.len;
  buf[len] = 0;
  assert_true(len > 2);
  assert_int_equal(buf[0], '{');
  assert_int_equal(buf[len - 1], '}');
  assert_non_null(strstr(buf, "\"allocated\":"));
  assert_non_null(strstr(buf, "\"classes\":["));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(unknown_names),          cmocka_unit_test(reads_check_lengths),
    cmocka_unit_test(read_only_values_refuse_writes), cmocka_unit_test(live_knobs),
    cmocka_unit_test(epoch_read_and_write),
    cmocka_unit_test(commands_take_no_values), cmocka_unit_test(statistics_follow_the_heap),
    cmocka_unit_test(json_is_one_object),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
