/* test_ctl.c - alloc_ctl(): mallctl's error codes, reads, writes, commands,
 * and statistics that follow the heap. */
#include "unit.h"

#include <alloc.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "knob_values.h"

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
  for (size_t i = 0; i < la_nknobs; i++) {   /* every option, published or not */
    char key[80];
    snprintf(key, sizeof key, "\"%s\":", la_knobs[i].name);
    if (!strstr(buf, key)) fail_msg("alloc_stats_print's JSON has no %s", key);
  }
}

/* ---- every knob, end to end ------------------------------------------------ */

/* Knob k read through alloc_ctl("opt.<name>"), as ALLOC_CONF text. */
static void ctl_read_text(const la_knob_t *k, char *out, size_t len) {
  char name[64];
  snprintf(name, sizeof name, "opt.%s", k->name);
  union { bool b; ssize_t ss; unsigned u; const char *s; } v;
  size_t vlen = k->type == LA_KNOB_BOOL ? sizeof v.b : k->type == LA_KNOB_INT || k->type == LA_KNOB_BYTES ? sizeof v.ss
              : k->type == LA_KNOB_COUNT ? sizeof v.u : sizeof v.s;
  if (alloc_ctl(name, &v, &vlen, NULL, 0) != 0) fail_msg("alloc_ctl(%s) does not read", name);
  switch (k->type) {
  case LA_KNOB_BOOL: snprintf(out, len, "%s", v.b ? "true" : "false"); break;
  case LA_KNOB_INT: snprintf(out, len, "%zd", v.ss); break;
  case LA_KNOB_BYTES: la_knob_format_bytes(k, v.ss, out, len); break;
  case LA_KNOB_COUNT: snprintf(out, len, "%u", v.u); break;
  case LA_KNOB_ENUM:
  case LA_KNOB_PATH: snprintf(out, len, "%s", v.s); break;
  }
}

/* Write `text` to knob k through alloc_ctl, with the value's C type. */
static int ctl_write_text(const la_knob_t *k, const char *text) {
  char name[64];
  snprintf(name, sizeof name, "opt.%s", k->name);
  bool b = strcmp(text, "true") == 0;
  ssize_t ss = strtoll(text, NULL, 10);
  unsigned u = (unsigned)strtoul(text, NULL, 10);
  switch (k->type) {
  case LA_KNOB_BOOL: return alloc_ctl(name, NULL, NULL, &b, sizeof b);
  case LA_KNOB_INT: return alloc_ctl(name, NULL, NULL, &ss, sizeof ss);
  case LA_KNOB_BYTES: {   /* "cgroup" is -1, "1M" 1048576; a bad text a word that does not exist */
    la_options_t o = la_opt;
    ss = la_knob_parse(&o, k, text, strlen(text)) ? *(const ssize_t *)((const char *)&o + k->offset) : -1000;
    return alloc_ctl(name, NULL, NULL, &ss, sizeof ss);
  }
  case LA_KNOB_COUNT: return alloc_ctl(name, NULL, NULL, &u, sizeof u);
  case LA_KNOB_ENUM:
  case LA_KNOB_PATH: return alloc_ctl(name, NULL, NULL, &text, sizeof text);
  }
  return -1;
}

/* Knob k's value in the segment's config block (what telemetry.c
 * publishes), or false if the block does not carry it. */
static bool segment_value(const la_knob_t *k, int64_t *out) {
  alloc_shm_config_t c;
  la_stats_config(&c);
#define X(field, kind, help)                                                                     \
  if (strcmp(k->name, #field) == 0) {                                                            \
    *out = c.field;                                                                              \
    return true;                                                                                 \
  }
  ALLOC_SHM_CONFIG(X)
#undef X
  return false;
}

/* ALLOC_CONF text as the segment's int64: booleans 0/1, modes their number. */
static int64_t segment_form(const la_knob_t *k, const char *text) {
  if (k->type == LA_KNOB_BOOL) return strcmp(text, "true") == 0;
  if (k->type == LA_KNOB_ENUM)
    for (int m = 0; alloc_shm_enum_name(k->name, m); m++)
      if (strcmp(alloc_shm_enum_name(k->name, m), text) == 0) return m;
  if (k->type == LA_KNOB_BYTES)
    for (int64_t m = -1; alloc_shm_bytes_word(k->name, m); m--)
      if (strcmp(alloc_shm_bytes_word(k->name, m), text) == 0) return m;
  return strtoll(text, NULL, 10);
}

static void expect_everywhere(const la_knob_t *k, const char *want) {
  char got[LA_PATH_MAX];
  ctl_read_text(k, got, sizeof got);
  if (strcmp(got, want) != 0) fail_msg("opt.%s reads %s, expected %s", k->name, got, want);
  int64_t seg;
  if (k->published != segment_value(k, &seg))
    fail_msg("%s: published %d, in the segment's block %d", k->name, k->published, !k->published);
  if (k->published && k->change != LA_KNOB_FIXED && seg != segment_form(k, want))
    fail_msg("%s: the segment carries %lld, expected %s", k->name, (long long)seg, want);
}

/* A knob of the list is wired everywhere: ALLOC_CONF sets it, opt.<name>
 * reads it; a live one is written through alloc_ctl and through the
 * control area's text path and the segment carries each new value; a fixed
 * one refuses writes.  The values found are put back at the end. */
static void every_knob_is_wired(void **state) {
  (void)state;
  la_options_t saved = la_opt;
  for (size_t i = 0; i < la_nknobs; i++) {
    const la_knob_t *k = &la_knobs[i];
    char conf[600], value[LA_PATH_MAX], eff[96], msg[128];
    knob_other_value(k, value, sizeof value);
    snprintf(conf, sizeof conf, "%s:%s", k->name, value);
    assert_int_equal(la_options_parse(&la_opt, conf), 0);
    expect_everywhere(k, value);
    if (k->change == LA_KNOB_FIXED) {
      if (ctl_write_text(k, k->def) != EPERM) fail_msg("fixed opt.%s took a write", k->name);
      assert_int_equal(la_ctl_apply_text(k->name, k->def, eff, sizeof eff, msg, sizeof msg), EPERM);
      memcpy((char *)&la_opt + k->offset, (char *)&saved + k->offset, k->size);
      continue;
    }
    if (ctl_write_text(k, k->def) != 0) fail_msg("opt.%s refused its default %s", k->name, k->def);
    expect_everywhere(k, k->def);
    knob_bad_value(k, conf, sizeof conf);   /* a C bool has no bad value: text only */
    if (k->type != LA_KNOB_BOOL && ctl_write_text(k, conf) != EINVAL) fail_msg("opt.%s took %s", k->name, conf);
    assert_int_equal(la_ctl_apply_text(k->name, conf, eff, sizeof eff, msg, sizeof msg), EINVAL);
    expect_everywhere(k, k->def);
    assert_int_equal(la_ctl_apply_text(k->name, value, eff, sizeof eff, msg, sizeof msg), 0);
    assert_string_equal(eff, value);
    expect_everywhere(k, value);
    la_knob_format(&saved, k, value, sizeof value);   /* what the test found */
    assert_int_equal(ctl_write_text(k, value), 0);
  }
  assert_memory_equal(&la_opt, &saved, sizeof saved);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(unknown_names),          cmocka_unit_test(reads_check_lengths),
    cmocka_unit_test(read_only_values_refuse_writes), cmocka_unit_test(live_knobs),
    cmocka_unit_test(epoch_read_and_write),
    cmocka_unit_test(commands_take_no_values), cmocka_unit_test(statistics_follow_the_heap),
    cmocka_unit_test(json_is_one_object),      cmocka_unit_test(every_knob_is_wired),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
