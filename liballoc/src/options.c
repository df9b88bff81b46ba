/* options.c - configuration from ALLOC_CONF.
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
#include <stdlib.h>
#include <string.h>

la_options_t la_opt;

enum opt_type { OPT_BOOL, OPT_SSIZE, OPT_UNSIGNED, OPT_THP, OPT_META_THP, OPT_PATH };

typedef struct opt_def_s {
  const char *name;
  enum opt_type type;
  size_t offset;
  long long min, max;   /* for numbers */
} opt_def_t;

#define OPT(name, type, min, max) { #name, type, offsetof(la_options_t, name), min, max }
static const opt_def_t opt_defs[] = {
  OPT(narenas, OPT_UNSIGNED, 0, LA_MAX_ARENAS),
  OPT(dirty_decay_ms, OPT_SSIZE, -1, (long long)1 << 40),
  OPT(muzzy_decay_ms, OPT_SSIZE, -1, (long long)1 << 40),
  OPT(thp, OPT_THP, 0, 0),
  OPT(metadata_thp, OPT_META_THP, 0, 0),
  OPT(background_thread, OPT_BOOL, 0, 1),
  OPT(telemetry, OPT_BOOL, 0, 1),
  OPT(telemetry_dir, OPT_PATH, 0, 0),
  OPT(stats_interval_ms, OPT_SSIZE, 10, 86400000),
  OPT(stats_print, OPT_BOOL, 0, 1),
  OPT(abort_on_invalid_free, OPT_BOOL, 0, 1),
  OPT(detect_double_free, OPT_BOOL, 0, 1),
};
#undef OPT

static const char *const thp_names[] = {"default", "always", "never"};
static const char *const meta_thp_names[] = {"disabled", "auto", "always"};

const char *la_thp_mode_name(int mode) { return thp_names[mode]; }
const char *la_meta_thp_mode_name(int mode) { return meta_thp_names[mode]; }

void la_options_defaults(la_options_t *o) {
  memset(o, 0, sizeof *o);
  o->narenas = 0;
  o->dirty_decay_ms = 10000;
  o->muzzy_decay_ms = 0;
  o->thp = LA_THP_DEFAULT;
  o->metadata_thp = LA_META_THP_AUTO;
  o->background_thread = true;
  o->telemetry = true;
  strcpy(o->telemetry_dir, "/dev/shm");
  o->stats_interval_ms = 1000;
}

static const opt_def_t *find_option(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof opt_defs / sizeof opt_defs[0]; i++)
    if (strlen(opt_defs[i].name) == len && memcmp(opt_defs[i].name, name, len) == 0) return &opt_defs[i];
  return NULL;
}

static bool parse_number(const char *v, size_t len, long long min, long long max, long long *out) {
  char buf[32];
  if (len == 0 || len >= sizeof buf) return false;
  memcpy(buf, v, len);
  buf[len] = 0;
  char *end;
  errno = 0;
  long long x = strtoll(buf, &end, 10);
  if (errno || *end || x < min || x > max) return false;
  *out = x;
  return true;
}

static int parse_keyword(const char *v, size_t len, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (strlen(names[i]) == len && memcmp(names[i], v, len) == 0) return i;
  return -1;
}

/* Store one value; false if it does not parse for the option's type. */
static bool set_option(la_options_t *o, const opt_def_t *d, const char *v, size_t len) {
  char *field = (char *)o + d->offset;
  long long x;
  int k;
  static const char *const bools[] = {"false", "true"};
  switch (d->type) {
  case OPT_BOOL:
    if ((k = parse_keyword(v, len, bools, 2)) < 0) return false;
    *(bool *)field = k;
    return true;
  case OPT_SSIZE:
    if (!parse_number(v, len, d->min, d->max, &x)) return false;
    *(ssize_t *)field = (ssize_t)x;
    return true;
  case OPT_UNSIGNED:
    if (!parse_number(v, len, d->min, d->max, &x)) return false;
    *(unsigned *)field = (unsigned)x;
    return true;
  case OPT_THP:
    if ((k = parse_keyword(v, len, thp_names, 3)) < 0) return false;
    *(int *)field = k;
    return true;
  case OPT_META_THP:
    if ((k = parse_keyword(v, len, meta_thp_names, 3)) < 0) return false;
    *(int *)field = k;
    return true;
  case OPT_PATH:
    if (len == 0 || len >= sizeof o->telemetry_dir || v[0] != '/') return false;
    memcpy(field, v, len);
    field[len] = 0;
    return true;
  }
  return false;
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
      const opt_def_t *d = find_option(p, nlen);
      if (!d) {
        la_warn("ALLOC_CONF: unknown option '%.*s', ignored", (int)nlen, p);
        errors++;
      } else if (!set_option(o, d, colon + 1, vlen)) {
        la_warn("ALLOC_CONF: invalid value '%.*s' for option '%s', ignored", (int)vlen, colon + 1, d->name);
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
