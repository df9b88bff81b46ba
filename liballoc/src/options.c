/* options.c - the knobs, and configuration from ALLOC_CONF.
 *
 * The knob table (la_knobs) is generated from ALLOC_SHM_KNOBS, the one
 * declaration of every knob (alloc_shm.h); this file parses and formats
 * knob values as text, for ALLOC_CONF and for alloc_ctl (ctl.c).
 *
 * ALLOC_CONF="name:value,name:value" uses jemalloc's option names where one
 * exists.  It is read once, at the first allocation; if that allocation
 * comes from the dynamic loader before libc has set up the environment, it
 * is read again from the library constructor.  A malformed or unknown entry
 * prints one warning and is skipped: bad configuration never stops a
 * process.  Parsing uses no heap memory (it runs inside malloc).  A
 * set-id program reads no ALLOC_CONF at all (la_os_getenv, os.c). */
#include "alloc_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

la_options_t la_opt;

/* ---- the knob table, generated from ALLOC_SHM_KNOBS ---------------------- */

/* Each ENUM knob's value names: knob_modes_<name>[]. */
#define MODE_NAME(NAME, name) #name,
#define MODES_OF(X, name, type, ...) MODES_OF_##type(name)
#define MODES_OF_BOOL(name)
#define MODES_OF_INT(name)
#define MODES_OF_COUNT(name)
#define MODES_OF_PATH(name)
#define MODES_OF_ENUM(name) static const char *const knob_modes_##name[] = {ALLOC_SHM_MODES_##name(MODE_NAME)};
#define MODES_OF_BYTES(name) static const char *const knob_modes_##name[] = {ALLOC_SHM_MODES_##name(MODE_NAME) NULL};
ALLOC_SHM_KNOBS_WITH(MODES_OF, ~)

#define MODES_FIELD_BOOL(name) NULL, 0
#define MODES_FIELD_INT(name) NULL, 0
#define MODES_FIELD_COUNT(name) NULL, 0
#define MODES_FIELD_PATH(name) NULL, 0
#define MODES_FIELD_ENUM(name) knob_modes_##name, (int)(sizeof knob_modes_##name / sizeof knob_modes_##name[0])
#define MODES_FIELD_BYTES(name) knob_modes_##name, (int)(sizeof knob_modes_##name / sizeof knob_modes_##name[0]) - 1
#define APPLY_FIELD_FIXED(name) NULL
#define APPLY_FIELD_LIVE(name) NULL
#define APPLY_FIELD_APPLY(name) la_apply_##name

#define KNOB(name, type, def, min, max, change, segment, help)                                 \
  {#name, LA_KNOB_##type, offsetof(la_options_t, name), sizeof(((la_options_t *)0)->name), def, min, max, \
   MODES_FIELD_##type(name), LA_KNOB_##change, APPLY_FIELD_##change(name), LA_KNOB_PUBLISHED_##segment, help},
#define LA_KNOB_PUBLISHED_SHM true
#define LA_KNOB_PUBLISHED_PRIVATE false
const la_knob_t la_knobs[] = {ALLOC_SHM_KNOBS(KNOB)};
const size_t la_nknobs = sizeof la_knobs / sizeof la_knobs[0];
#undef KNOB

const la_knob_t *la_knob_find(const char *name, size_t len) {
  for (size_t i = 0; i < la_nknobs; i++)
    if (strlen(la_knobs[i].name) == len && memcmp(la_knobs[i].name, name, len) == 0) return &la_knobs[i];
  return NULL;
}

/* ---- values as ALLOC_CONF text -------------------------------------------- */

/* Decimal digits at s, up to the first other character (*end); false if
 * there are none or the value passes UINT64_MAX.  Not strtoull: libc's
 * reads the locale's character tables, and at start-up (the defaults are
 * parsed from their text) that maps two more windows of libc's text and
 * data into every process. */
bool la_parse_u64(const char *s, const char **end, uint64_t *out) {
  uint64_t x = 0;
  const char *p = s;
  for (; *p >= '0' && *p <= '9'; p++) {
    unsigned d = (unsigned)(*p - '0');
    if (x > (UINT64_MAX - d) / 10) return false;
    x = x * 10 + d;
  }
  if (end) *end = p;
  *out = x;
  return p != s;
}

/* An optionally signed decimal number filling all len bytes, in [min, max]. */
static bool parse_number(const char *v, size_t len, long long min, long long max, long long *out) {
  char buf[32];
  if (len == 0 || len >= sizeof buf) return false;
  memcpy(buf, v, len);
  buf[len] = 0;
  bool negative = buf[0] == '-';
  const char *digits = buf + (negative || buf[0] == '+');
  const char *end;
  uint64_t u;
  if (!la_parse_u64(digits, &end, &u) || *end || u > (uint64_t)LLONG_MAX + negative) return false;
  long long x = negative ? (long long)(0 - u) : (long long)u;
  if (x < min || x > max) return false;
  *out = x;
  return true;
}

/* A size: digits with an optional K, M, G or T (powers of 1024), within
 * [min, max]. */
static bool parse_bytes(const char *v, size_t len, long long min, long long max, long long *out) {
  static const char suffixes[] = "KMGT";
  unsigned shift = 0;
  if (len > 1) {
    const char *s = memchr(suffixes, v[len - 1] & ~0x20, 4);   /* k or K */
    if (s && *s) {
      shift = 10 * (unsigned)(s - suffixes + 1);
      len--;
    }
  }
  long long x;
  if (!parse_number(v, len, 0, LLONG_MAX, &x) || (v[0] < '0' || v[0] > '9')) return false;
  if (shift && x > (max >> shift)) return false;
  x <<= shift;
  if (x < min || x > max) return false;
  *out = x;
  return true;
}

static int parse_keyword(const char *v, size_t len, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (strlen(names[i]) == len && memcmp(names[i], v, len) == 0) return i;
  return -1;
}

static const char *const bool_names[] = {"false", "true"};

/* Store `text` (len bytes, not NUL-terminated) as knob k's value in *o;
 * false, and *o unchanged, if it is not a valid value of the knob. */
bool la_knob_parse(la_options_t *o, const la_knob_t *k, const char *text, size_t len) {
  char *field = (char *)o + k->offset;
  long long x;
  int m;
  switch (k->type) {
  case LA_KNOB_BOOL:
    if ((m = parse_keyword(text, len, bool_names, 2)) < 0) return false;
    *(bool *)field = m;
    return true;
  case LA_KNOB_INT:
    if (!parse_number(text, len, k->min, k->max, &x)) return false;
    *(ssize_t *)field = (ssize_t)x;
    return true;
  case LA_KNOB_COUNT:
    if (!parse_number(text, len, k->min, k->max, &x)) return false;
    *(unsigned *)field = (unsigned)x;
    return true;
  case LA_KNOB_ENUM:
    if ((m = parse_keyword(text, len, k->modes, k->nmodes)) < 0) return false;
    *(int *)field = m;
    return true;
  case LA_KNOB_BYTES:
    if ((m = parse_keyword(text, len, k->modes, k->nmodes)) >= 0) x = -1 - m;
    else if (!parse_bytes(text, len, k->min, k->max, &x)) return false;
    *(ssize_t *)field = (ssize_t)x;
    return true;
  case LA_KNOB_PATH:
    if (len == 0 || len >= k->size || text[0] != '/' || memchr(text, 0, len)) return false;
    memcpy(field, text, len);
    field[len] = 0;
    return true;
  }
  return false;
}

/* Knob k's value in *o as ALLOC_CONF text (what la_knob_parse takes). */
void la_knob_format(const la_options_t *o, const la_knob_t *k, char *out, size_t len) {
  const char *field = (const char *)o + k->offset;
  switch (k->type) {
  case LA_KNOB_BOOL: snprintf(out, len, "%s", bool_names[*(const bool *)field]); return;
  case LA_KNOB_INT: snprintf(out, len, "%zd", *(const ssize_t *)field); return;
  case LA_KNOB_COUNT: snprintf(out, len, "%u", *(const unsigned *)field); return;
  case LA_KNOB_ENUM: snprintf(out, len, "%s", k->modes[*(const int *)field]); return;
  case LA_KNOB_PATH: snprintf(out, len, "%s", field); return;
  case LA_KNOB_BYTES: la_knob_format_bytes(k, *(const ssize_t *)field, out, len); return;
  }
}

/* A BYTES knob's value as text: its word if negative, else the number of
 * bytes (no suffix: the exact value reads back). */
void la_knob_format_bytes(const la_knob_t *k, ssize_t v, char *out, size_t len) {
  if (v < 0 && -1 - v < k->nmodes) snprintf(out, len, "%s", k->modes[-1 - v]);
  else snprintf(out, len, "%zd", v);
}

/* Every knob's default, from the list; a default the list gets wrong is a
 * bug the unit test catches (test_options: every_knob_parses). */
void la_options_defaults(la_options_t *o) {
  memset(o, 0, sizeof *o);
  for (size_t i = 0; i < la_nknobs; i++) la_knob_parse(o, &la_knobs[i], la_knobs[i].def, strlen(la_knobs[i].def));
}

/* Parse `conf` into *o; entries that fail are reported and skipped.
 * Returns the number of entries that failed. */
int la_options_parse(la_options_t *o, const char *conf) {
  int errors = 0;
  const char *p = conf;
  while (p && *p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    const char *colon = memchr(p, ':', len);
    if (len == 0) {
      /* an empty entry (",,") is harmless: skip it quietly */
    } else if (!colon) {
      la_warn("ALLOC_CONF: malformed entry '%.*s' (expected name:value), ignored", (int)len, p);
      errors++;
    } else {
      size_t nlen = (size_t)(colon - p), vlen = len - nlen - 1;
      const la_knob_t *k = la_knob_find(p, nlen);
      if (!k) {
        la_warn("ALLOC_CONF: unknown option '%.*s', ignored", (int)nlen, p);
        errors++;
      } else if (!la_knob_parse(o, k, colon + 1, vlen)) {
        la_warn("ALLOC_CONF: invalid value '%.*s' for option '%s', ignored", (int)vlen, colon + 1, k->name);
        errors++;
      }
    }
    p = end ? end + 1 : NULL;
  }
  return errors;
}

/* Read ALLOC_CONF into la_opt.  Called at start-up and again from the
 * constructor, because the first call may come before libc has set up
 * environ.  Returns true when this call read the environment. */
bool la_options_init(void) {
  static bool done;
  if (done) return false;
  la_options_defaults(&la_opt);
  if (!la_os_environ_ready()) return false;
  done = true;
  const char *conf = la_os_getenv("ALLOC_CONF");
  if (conf) la_options_parse(&la_opt, conf);
  return true;
}
