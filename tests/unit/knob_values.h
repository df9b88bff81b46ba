/* knob_values.h - for the tests that walk every knob of ALLOC_SHM_KNOBS:
 * a valid value of a knob other than its default, so that a test can see
 * the value travel (ALLOC_CONF -> la_opt -> alloc_ctl -> segment) without
 * knowing the knob. */
#ifndef ALLOC_TESTS_KNOB_VALUES_H
#define ALLOC_TESTS_KNOB_VALUES_H
#include <stdio.h>
#include <string.h>

#include "alloc_internal.h"

/* A valid value of k that is not its default, as ALLOC_CONF text. */
static inline void knob_other_value(const la_knob_t *k, char *out, size_t len) {
  la_options_t d;
  la_options_defaults(&d);
  const char *field = (const char *)&d + k->offset;
  switch (k->type) {
  case LA_KNOB_BOOL: snprintf(out, len, "%s", *(const bool *)field ? "false" : "true"); return;
  case LA_KNOB_INT:
    snprintf(out, len, "%lld", *(const ssize_t *)field == k->max ? k->min : k->max);
    return;
  case LA_KNOB_COUNT:
    snprintf(out, len, "%lld", *(const unsigned *)field == k->max ? k->min : k->max);
    return;
  case LA_KNOB_ENUM: snprintf(out, len, "%s", k->modes[(*(const int *)field + 1) % k->nmodes]); return;
  case LA_KNOB_PATH: snprintf(out, len, "/tmp/knob-test-%s", k->name); return;
  case LA_KNOB_BYTES:   /* a number, written as the parser gives it back */
    snprintf(out, len, "%lld", *(const ssize_t *)field == (ssize_t)(3ll << 30) ? 1ll << 20 : 3ll << 30);
    return;
  }
}

/* A value of k's type that it must refuse, as ALLOC_CONF text. */
static inline void knob_bad_value(const la_knob_t *k, char *out, size_t len) {
  switch (k->type) {
  case LA_KNOB_BOOL: snprintf(out, len, "yes"); return;
  case LA_KNOB_INT:
  case LA_KNOB_COUNT: snprintf(out, len, "%lld", k->max + 1); return;
  case LA_KNOB_ENUM: snprintf(out, len, "sometimes"); return;
  case LA_KNOB_PATH: snprintf(out, len, "relative/%s", k->name); return;
  case LA_KNOB_BYTES: snprintf(out, len, "12Q"); return;
  }
}
#endif
