/* test_options.c - ALLOC_CONF parsing: every option and type, and bad
 * entries that are reported, skipped, and leave the other entries applied. */
#include "unit.h"

#include <string.h>

#include "knob_values.h"

static void parses_every_option(void **state) {
  (void)state;
  la_options_t o;
  la_options_defaults(&o);
  int errors = la_options_parse(&o, "narenas:4,dirty_decay_ms:5000,muzzy_decay_ms:-1,thp:always,"
                                    "metadata_thp:disabled,background_thread:false,telemetry:false,"
                                    "telemetry_dir:/tmp/x,stats_interval_ms:250,stats_print:true,"
                                    "abort_on_invalid_free:true");
  assert_int_equal(errors, 0);
  assert_int_equal(o.narenas, 4);
  assert_int_equal(o.dirty_decay_ms, 5000);
  assert_int_equal(o.muzzy_decay_ms, -1);
  assert_int_equal(o.thp, LA_THP_ALWAYS);
  assert_int_equal(o.metadata_thp, LA_META_THP_DISABLED);
  assert_false(o.background_thread);
  assert_false(o.telemetry);
  assert_string_equal(o.telemetry_dir, "/tmp/x");
  assert_int_equal(o.stats_interval_ms, 250);
  assert_true(o.stats_print);
  assert_true(o.abort_on_invalid_free);
}

static void defaults(void **state) {
  (void)state;
  la_options_t o;
  la_options_defaults(&o);
  assert_int_equal(o.dirty_decay_ms, 10000);
  assert_int_equal(o.thp, LA_THP_DEFAULT);
  assert_int_equal(o.metadata_thp, LA_META_THP_AUTO);
  assert_true(o.background_thread);
  assert_true(o.telemetry);
  assert_string_equal(o.telemetry_dir, "/dev/shm");
  assert_int_equal(o.stats_interval_ms, 1000);
}

/* Every knob of ALLOC_SHM_KNOBS: its default is a valid value, and
 * ALLOC_CONF sets it to another valid value and refuses a bad one. */
static void every_knob_parses(void **state) {
  (void)state;
  assert_true(la_nknobs >= 12);
  for (size_t i = 0; i < la_nknobs; i++) {
    const la_knob_t *k = &la_knobs[i];
    char conf[600], text[LA_PATH_MAX], value[LA_PATH_MAX];
    la_options_t o, d;
    la_options_defaults(&d);
    assert_true(la_knob_parse(&o, k, k->def, strlen(k->def)));
    la_knob_format(&d, k, text, sizeof text);
    assert_string_equal(text, k->def);   /* the default, as written in the list */

    o = d;
    knob_other_value(k, value, sizeof value);
    snprintf(conf, sizeof conf, "%s:%s", k->name, value);
    if (la_options_parse(&o, conf) != 0) fail_msg("ALLOC_CONF=%s refused", conf);
    la_knob_format(&o, k, text, sizeof text);
    if (strcmp(text, value) != 0) fail_msg("ALLOC_CONF=%s gave %s", conf, text);
    assert_memory_not_equal((char *)&o + k->offset, (char *)&d + k->offset, k->size);

    o = d;
    knob_bad_value(k, value, sizeof value);
    snprintf(conf, sizeof conf, "%s:%s", k->name, value);
    if (la_options_parse(&o, conf) != 1) fail_msg("ALLOC_CONF=%s accepted", conf);
    assert_memory_equal(&o, &d, sizeof o);
  }
}

/* The ENUM knobs' names are the same for liballoc and for the segment's
 * readers (both generated from ALLOC_SHM_MODES_<name>), with no fixed count. */
static void mode_names_agree(void **state) {
  (void)state;
  int enums = 0;
  for (size_t i = 0; i < la_nknobs; i++) {
    const la_knob_t *k = &la_knobs[i];
    if (k->type != LA_KNOB_ENUM) {
      assert_null(alloc_shm_enum_name(k->name, 0));
      continue;
    }
    enums++;
    for (int m = 0; m < k->nmodes; m++) assert_string_equal(alloc_shm_enum_name(k->name, m), k->modes[m]);
    assert_null(alloc_shm_enum_name(k->name, k->nmodes));
    assert_null(alloc_shm_enum_name(k->name, -1));
  }
  assert_int_equal(enums, 2);
  assert_string_equal(la_knob_find("thp", 3)->modes[LA_THP_NEVER], "never");
  assert_int_equal(la_knob_find("narenas", 7)->max, LA_MAX_ARENAS);
}

/* Each bad entry costs one error and nothing else. */
static void bad_entries_are_skipped(void **state) {
  (void)state;
  static const struct {
    const char *conf;
    int errors;
  } cases[] = {
    {"bogus:1", 1},          {"dirty_decay_ms", 1},        {"dirty_decay_ms:abc", 1},
    {"dirty_decay_ms:-2", 1}, {"narenas:99999", 1},         {"narenas:-1", 1},
    {"thp:sometimes", 1},     {"telemetry_dir:relative", 1}, {"background_thread:yes", 1},
    {"stats_interval_ms:1", 1}, {"dirty_decay_ms:99999999999999999999999", 1},
    {":", 1},                 {"", 0},                       {",,,", 0},
    {"dirty_decay_ms:-", 1},  {"dirty_decay_ms:--5", 1},     {"dirty_decay_ms:5 ", 1},
    {"dirty_decay_ms: 5", 1}, {"dirty_decay_ms:0x10", 1},    {"narenas:+", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    la_options_t o, d;
    la_options_defaults(&o);
    la_options_defaults(&d);
    assert_int_equal(la_options_parse(&o, cases[i].conf), cases[i].errors);
    assert_memory_equal(&o, &d, sizeof o);   /* nothing changed */
  }
}

static void good_entries_survive_bad_neighbours(void **state) {
  (void)state;
  la_options_t o;
  la_options_defaults(&o);
  assert_int_equal(la_options_parse(&o, "thp:never,garbage,narenas:2,dirty_decay_ms:x,muzzy_decay_ms:7"), 2);
  assert_int_equal(o.thp, LA_THP_NEVER);
  assert_int_equal(o.narenas, 2);
  assert_int_equal(o.dirty_decay_ms, 10000);
  assert_int_equal(o.muzzy_decay_ms, 7);
}

/* The number parser liballoc uses instead of strtoull (options.c). */
static void decimal_numbers(void **state) {
  (void)state;
  uint64_t v = 7;
  const char *end;
  assert_true(la_parse_u64("18446744073709551615", &end, &v));
  assert_true(v == UINT64_MAX && *end == 0);
  assert_false(la_parse_u64("18446744073709551616", NULL, &v));
  assert_false(la_parse_u64("99999999999999999999", NULL, &v));
  assert_false(la_parse_u64("", NULL, &v));
  assert_false(la_parse_u64("-1", NULL, &v));
  assert_true(la_parse_u64("0042 kB", &end, &v));
  assert_true(v == 42 && strcmp(end, " kB") == 0);
  la_options_t o;
  la_options_defaults(&o);
  assert_int_equal(la_options_parse(&o, "dirty_decay_ms:+25,muzzy_decay_ms:-0,narenas:007"), 0);
  assert_int_equal(o.dirty_decay_ms, 25);
  assert_int_equal(o.muzzy_decay_ms, 0);
  assert_int_equal(o.narenas, 7);
  assert_int_equal(la_options_parse(&o, "dirty_decay_ms:9223372036854775807"), 1);   /* over its max */
}

static void long_path_is_rejected(void **state) {
  (void)state;
  char conf[600] = "telemetry_dir:/";
  memset(conf + strlen(conf), 'a', 400);
  la_options_t o;
  la_options_defaults(&o);
  assert_int_equal(la_options_parse(&o, conf), 1);
  assert_string_equal(o.telemetry_dir, "/dev/shm");
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(parses_every_option), cmocka_unit_test(defaults),
    cmocka_unit_test(bad_entries_are_skipped), cmocka_unit_test(good_entries_survive_bad_neighbours),
    cmocka_unit_test(long_path_is_rejected), cmocka_unit_test(every_knob_parses),
    cmocka_unit_test(mode_names_agree), cmocka_unit_test(decimal_numbers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
