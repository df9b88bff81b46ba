/* pprof.c - the heap profile as pprof's profile.proto (hand-written
 * protobuf: the format is small and stable, and a generator would be a
 * build dependency for 14 fields), gzip'ed with zlib, and as JSON.
 *
 * Building interns everything once: strings (the table every proto field
 * refers to by index), locations by address, functions by (name, file),
 * one mapping per module.  All text comes from a hostile process or from
 * files it named, so it goes through text_clean before it is kept.
 *
 * profile.proto fields written (github.com/google/pprof/proto/profile.proto):
 *   Profile   1 sample_type, 2 sample, 3 mapping, 4 location, 5 function,
 *             6 string_table, 9 time_nanos, 11 period_type, 12 period,
 *             13 comment, 14 default_sample_type
 *   ValueType 1 type, 2 unit
 *   Sample    1 location_id (packed), 2 value (packed)
 *   Mapping   1 id, 2 memory_start, 3 memory_limit, 4 file_offset,
 *             5 filename, 6 build_id, 7 has_functions, 8 has_filenames,
 *             9 has_line_numbers
 *   Location  1 id, 2 mapping_id, 3 address, 4 line
 *   Line      1 function_id, 2 line
 *   Function  1 id, 2 name, 3 system_name, 4 filename */
#include "pprof.h"

#include "text.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

const char *const pprof_value_names[PPROF_NVALUES] = {"alloc_objects", "alloc_space", "inuse_objects", "inuse_space",
                                                      "pinned_space"};
static const char *const value_units[PPROF_NVALUES] = {"count", "bytes", "count", "bytes", "bytes"};

int pprof_value_index(const char *name) {
  for (int i = 0; name && i < PPROF_NVALUES; i++)
    if (strcmp(name, pprof_value_names[i]) == 0) return i;
  return -1;
}

/* ---- interning ------------------------------------------------------------ */

/* Open addressing from a 64-bit key to a 32-bit id (0: empty slot). */
typedef struct map_s {
  uint64_t *keys;
  uint32_t *ids;
  size_t cap, n;
} map_t;

static uint64_t mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return k;
}

static bool map_grow(map_t *m) {
  size_t cap = m->cap ? m->cap * 2 : 1024;
  uint64_t *keys = calloc(cap, sizeof *keys);
  uint32_t *ids = calloc(cap, sizeof *ids);
  if (!keys || !ids) {
    free(keys);
    free(ids);
    return false;
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->ids[i]) continue;
    size_t j = mix(m->keys[i]) & (cap - 1);
    while (ids[j]) j = (j + 1) & (cap - 1);
    keys[j] = m->keys[i], ids[j] = m->ids[i];
  }
  free(m->keys);
  free(m->ids);
  m->keys = keys, m->ids = ids, m->cap = cap;
  return true;
}

/* The slot of key: its id, or 0 where it would go.  NULL when full and
 * cannot grow. */
static uint32_t *map_slot(map_t *m, uint64_t key, uint64_t **keyp) {
  if ((m->n + 1) * 2 > m->cap && !map_grow(m)) return NULL;
  size_t j = mix(key) & (m->cap - 1);
  while (m->ids[j] && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
  *keyp = &m->keys[j];
  return &m->ids[j];
}

static void map_free(map_t *m) {
  free(m->keys);
  free(m->ids);
}

typedef struct location_s {
  uint64_t address;
  uint32_t mapping;    /* 1-based; 0: none */
  uint32_t first_line, nlines;   /* lines[first_line ..]: innermost first; 0: not symbolized */
} location_t;

typedef struct line_s {
  uint32_t function;   /* 1-based */
  int64_t line;
} line_t;

typedef struct function_s {
  int64_t name, file;   /* string indexes */
} function_t;

typedef struct mapping_s {
  uint64_t start, limit, offset;
  int64_t file, build_id;
  bool symbolized;
} mapping_t;

struct pprof_s {
  char **strings;
  size_t nstrings, strings_cap;
  map_t string_index;   /* hash of the text -> index + 1 (collisions checked) */
  location_t *locs;
  size_t nlocs, locs_cap, nsymbolized;
  map_t loc_index;      /* address -> location id */
  line_t *lines;        /* the locations' lines */
  size_t nlines, lines_cap;
  function_t *funcs;
  size_t nfuncs, funcs_cap;
  map_t func_index;     /* name << 32 | file -> function id */
  mapping_t *maps;
  size_t nmaps;
  uint32_t *sample_locs;   /* every sample's location ids, one after the other */
  size_t nsample_locs;
  struct sample_s {
    uint32_t first, depth;
    int64_t values[PPROF_NVALUES];
  } *samples;
  size_t nsamples;
  int64_t time_ns, period, totals[PPROF_NVALUES];
  uint64_t dropped, sample_count;
  const char *unsymbolized_why;
};

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return true;
  size_t cap2 = *cap ? *cap * 2 : 64;
  while (cap2 < need) cap2 *= 2;
  void *q = realloc(*p, cap2 * elem);
  if (!q) return false;
  *p = q, *cap = cap2;
  return true;
}

static uint64_t str_hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

/* The index of s (cleaned) in the string table; -1 when out of memory. */
static int64_t intern(pprof_t *pp, const char *raw) {
  char clean[2048];
  text_clean(raw, strlen(raw), clean, sizeof clean);
  uint64_t h = str_hash(clean);
  for (;; h++) {   /* linear probing over hashes: a colliding hash tries the next */
    uint64_t *key;
    uint32_t *id = map_slot(&pp->string_index, h, &key);
    if (!id) return -1;
    if (*id && strcmp(pp->strings[*id - 1], clean) == 0) return *id - 1;
    if (*id) continue;
    if (!grow((void **)&pp->strings, &pp->strings_cap, pp->nstrings + 1, sizeof *pp->strings)) return -1;
    if (!(pp->strings[pp->nstrings] = strdup(clean))) return -1;
    *key = h;
    *id = (uint32_t)++pp->nstrings;
    pp->string_index.n++;
    return (int64_t)pp->nstrings - 1;
  }
}

static uint32_t intern_function(pprof_t *pp, const char *name, const char *file) {
  int64_t n = intern(pp, name), f = intern(pp, file ? file : "");
  if (n < 0 || f < 0) return 0;
  uint64_t *key;
  uint32_t *id = map_slot(&pp->func_index, (uint64_t)n << 32 | (uint64_t)f, &key);
  if (!id) return 0;
  if (*id) return *id;
  if (!grow((void **)&pp->funcs, &pp->funcs_cap, pp->nfuncs + 1, sizeof *pp->funcs)) return 0;
  pp->funcs[pp->nfuncs] = (function_t){n, f};
  *key = (uint64_t)n << 32 | (uint64_t)f;
  *id = (uint32_t)++pp->nfuncs;
  pp->func_index.n++;
  return *id;
}

/* ---- building ------------------------------------------------------------- */

typedef struct module_ref_s {
  uint64_t start, end;
  uint32_t index;
} module_ref_t;

static int ref_cmp(const void *a, const void *b) {
  const module_ref_t *x = a, *y = b;
  return x->start < y->start ? -1 : x->start > y->start;
}

/* The module holding addr (modules sorted by start), or -1. */
static int module_of(const module_ref_t *refs, size_t n, uint64_t addr) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (refs[mid].start <= addr) lo = mid + 1;
    else hi = mid;
  }
  return lo && addr < refs[lo - 1].end ? (int)refs[lo - 1].index : -1;
}

typedef struct build_s {
  pprof_t *pp;
  const alloc_shm_prof_t *prof, *base;
  const pprof_symbols_t *how;
  module_ref_t *refs;
  sym_binary_t **binaries;   /* per module, looked up on first use */
  bool *tried;
} build_t;

static uint32_t location_of(build_t *b, uint64_t ret) {
  pprof_t *pp = b->pp;
  uint64_t addr = ret ? ret - 1 : 0, *key;   /* inside the call instruction */
  uint32_t *id = map_slot(&pp->loc_index, addr, &key);
  if (!id) return 0;
  if (*id) return *id;
  if (!grow((void **)&pp->locs, &pp->locs_cap, pp->nlocs + 1, sizeof *pp->locs)) return 0;
  location_t loc = {addr, 0, 0, 0};
  int m = module_of(b->refs, b->prof->head.nmodules, addr);
  if (m >= 0) {
    loc.mapping = (uint32_t)m + 1;
    const alloc_shm_module_t *mod = &b->prof->modules[m];
    if (b->how && b->how->sym && !b->tried[m]) {
      const char *why = NULL;
      b->tried[m] = true;
      b->binaries[m] = sym_binary(b->how->sym, mod, b->how->main_exe, b->how->owner, &why);
      if (!b->binaries[m] && !pp->unsymbolized_why) pp->unsymbolized_why = why;
    }
    sym_frame_t f;
    if (b->binaries[m] && sym_lookup(b->how->sym, b->binaries[m], addr - mod->bias, &f) &&
        grow((void **)&pp->lines, &pp->lines_cap, pp->nlines + (size_t)f.nlines, sizeof *pp->lines)) {
      loc.first_line = (uint32_t)pp->nlines;
      for (int i = 0; i < f.nlines; i++) {
        char name[32];
        if (!f.lines[i].function) snprintf(name, sizeof name, "0x%llx", (unsigned long long)addr);
        uint32_t fn = intern_function(pp, f.lines[i].function ? f.lines[i].function : name, f.lines[i].file);
        if (!fn) return 0;
        pp->lines[pp->nlines++] = (line_t){fn, f.lines[i].line};
      }
      loc.nlines = (uint32_t)f.nlines;
      pp->maps[m].symbolized = true;
      pp->nsymbolized++;
    }
  }
  pp->locs[pp->nlocs] = loc;
  *key = addr;
  *id = (uint32_t)++pp->nlocs;
  pp->loc_index.n++;
  return *id;
}

static int64_t clamp(uint64_t v) { return v > INT64_MAX ? INT64_MAX : (int64_t)v; }

/* a + b, saturated (a diff's values may be negative) */
static int64_t sat_add(int64_t a, int64_t b) {
  int64_t r;
  if (!__builtin_add_overflow(a, b, &r)) return r;
  return b > 0 ? INT64_MAX : INT64_MIN;
}

static void stack_values(const alloc_shm_stack_t *s, int64_t v[PPROF_NVALUES]) {
  v[0] = clamp(s->alloc_objects), v[1] = clamp(s->alloc_bytes), v[2] = clamp(s->inuse_objects);
  v[3] = clamp(s->inuse_bytes), v[4] = clamp(s->pinned_bytes);
}

static uint64_t frames_hash(const uint64_t *f, uint32_t n) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
  for (uint32_t i = 0; i < n; i++) h = mix(h ^ f[i]) + i;
  return h;
}

static bool build_mappings(build_t *b) {
  pprof_t *pp = b->pp;
  const alloc_shm_prof_t *p = b->prof;
  uint32_t n = p->head.nmodules;
  pp->maps = calloc(n ? n : 1, sizeof *pp->maps);
  b->refs = calloc(n ? n : 1, sizeof *b->refs);
  b->binaries = calloc(n ? n : 1, sizeof *b->binaries);
  b->tried = calloc(n ? n : 1, sizeof *b->tried);
  if (!pp->maps || !b->refs || !b->binaries || !b->tried) return false;
  for (uint32_t i = 0; i < n; i++) {
    const alloc_shm_module_t *m = &p->modules[i];
    char id[65];
    for (uint32_t k = 0; k < m->build_id_size; k++) snprintf(id + 2 * k, 3, "%02x", m->build_id[k]);
    id[2 * m->build_id_size] = 0;
    const char *file = m->path[0] ? m->path : (m->flags & 1) && b->how && b->how->main_exe ? b->how->main_exe : "";
    pp->maps[i] = (mapping_t){m->start, m->end, m->file_offset, intern(pp, file), intern(pp, id), false};
    if (pp->maps[i].file < 0 || pp->maps[i].build_id < 0) return false;
    b->refs[i] = (module_ref_t){m->start, m->end, i};
  }
  pp->nmaps = n;
  qsort(b->refs, n, sizeof *b->refs, ref_cmp);
  return true;
}

static bool add_sample(build_t *b, const uint64_t *frames, uint32_t depth, const int64_t v[PPROF_NVALUES]) {
  pprof_t *pp = b->pp;
  struct sample_s *out = &pp->samples[pp->nsamples];
  out->first = (uint32_t)pp->nsample_locs;
  for (uint32_t d = 0; d < depth; d++) {
    uint32_t loc = location_of(b, frames[d]);
    if (!loc) return false;
    pp->sample_locs[pp->nsample_locs++] = loc;
  }
  out->depth = depth;
  memcpy(out->values, v, sizeof out->values);
  for (int k = 0; k < PPROF_NVALUES; k++) pp->totals[k] = sat_add(pp->totals[k], v[k]);
  pp->nsamples++;
  return true;
}

/* Index + 1 of base's stack with exactly these frames, 0 if none. */
static uint32_t base_stack(const build_t *b, map_t *index, const uint64_t *frames, uint32_t depth) {
  const alloc_shm_prof_t *base = b->base;
  for (uint64_t h = frames_hash(frames, depth);; h++) {
    uint64_t *key;
    uint32_t *id = map_slot(index, h, &key);
    if (!id || !*id) return 0;
    const alloc_shm_stack_t *s = &base->stacks[*id - 1];
    if (s->depth == depth && memcmp(&base->frames[s->first_frame], frames, depth * sizeof *frames) == 0) return *id;
  }
}

/* Samples: the profile's stacks; with a base, each minus the base's stack
 * with the same frames, and the base's stacks gone since as negative ones. */
static bool build_samples(build_t *b) {
  pprof_t *pp = b->pp;
  const alloc_shm_prof_t *p = b->prof, *base = b->base;
  size_t nstacks = p->head.nstacks + (base ? base->head.nstacks : 0), total = 0;
  for (uint32_t i = 0; i < p->head.nstacks; i++) total += p->stacks[i].depth;
  for (uint32_t i = 0; base && i < base->head.nstacks; i++) total += base->stacks[i].depth;
  pp->samples = calloc(nstacks ? nstacks : 1, sizeof *pp->samples);
  pp->sample_locs = calloc(total ? total : 1, sizeof *pp->sample_locs);
  bool *matched = base ? calloc(base->head.nstacks + 1, 1) : NULL;
  map_t index = {0};
  bool ok = pp->samples && pp->sample_locs && (!base || matched);
  for (uint32_t i = 0; ok && base && i < base->head.nstacks; i++) {
    const alloc_shm_stack_t *s = &base->stacks[i];
    uint64_t h = frames_hash(&base->frames[s->first_frame], s->depth), *key;
    uint32_t *id;
    while ((id = map_slot(&index, h, &key)) && *id) h++;   /* equal stacks twice: the first is matched */
    if (!(ok = id != NULL)) break;
    *key = h, *id = i + 1, index.n++;
  }
  for (uint32_t i = 0; ok && i < p->head.nstacks; i++) {
    const alloc_shm_stack_t *s = &p->stacks[i];
    const uint64_t *frames = &p->frames[s->first_frame];
    int64_t v[PPROF_NVALUES], w[PPROF_NVALUES];
    stack_values(s, v);
    uint32_t j = base ? base_stack(b, &index, frames, s->depth) : 0;
    if (j && !matched[j - 1]) {
      matched[j - 1] = true;
      stack_values(&base->stacks[j - 1], w);
      for (int k = 0; k < PPROF_NVALUES; k++) v[k] = sat_add(v[k], -w[k]);
    }
    ok = add_sample(b, frames, s->depth, v);
  }
  for (uint32_t i = 0; ok && base && i < base->head.nstacks; i++) {
    if (matched[i]) continue;
    const alloc_shm_stack_t *s = &base->stacks[i];
    int64_t w[PPROF_NVALUES];
    stack_values(s, w);
    for (int k = 0; k < PPROF_NVALUES; k++) w[k] = -w[k];
    ok = add_sample(b, &base->frames[s->first_frame], s->depth, w);
  }
  map_free(&index);
  free(matched);
  return ok;
}

pprof_t *pprof_build(const alloc_shm_prof_t *p, const pprof_symbols_t *how) { return pprof_build_diff(p, NULL, how); }

pprof_t *pprof_build_diff(const alloc_shm_prof_t *p, const alloc_shm_prof_t *base, const pprof_symbols_t *how) {
  pprof_t *pp = calloc(1, sizeof *pp);
  if (!pp) return NULL;
  build_t b = {pp, p, base, how, NULL, NULL, NULL};
  pp->time_ns = clamp(p->head.time_ns);
  pp->period = clamp(p->head.sample_bytes);
  pp->dropped = p->head.dropped_samples;
  pp->sample_count = p->head.samples;
  bool ok = intern(pp, "") == 0;   /* string 0 is "" */
  for (int k = 0; ok && k < PPROF_NVALUES; k++) ok = intern(pp, pprof_value_names[k]) >= 0 && intern(pp, value_units[k]) >= 0;
  ok = ok && intern(pp, "space") >= 0 && build_mappings(&b);
  if (ok && how && how->sym) sym_begin(how->sym, how->deadline_ms);
  ok = ok && build_samples(&b);
  if (how && how->sym && b.refs) sym_end(how->sym);   /* strings were copied: the binaries may go */
  free(b.refs);
  free(b.binaries);
  free(b.tried);
  if (!ok) {
    pprof_free(pp);
    return NULL;
  }
  return pp;
}

void pprof_free(pprof_t *pp) {
  if (!pp) return;
  for (size_t i = 0; i < pp->nstrings; i++) free(pp->strings[i]);
  free(pp->strings);
  map_free(&pp->string_index);
  map_free(&pp->loc_index);
  map_free(&pp->func_index);
  free(pp->locs);
  free(pp->lines);
  free(pp->funcs);
  free(pp->maps);
  free(pp->sample_locs);
  free(pp->samples);
  free(pp);
}

void pprof_stats(const pprof_t *pp, size_t *locations, size_t *symbolized, const char **why) {
  *locations = pp->nlocs;
  *symbolized = pp->nsymbolized;
  *why = pp->unsymbolized_why;
}

/* ---- protobuf ------------------------------------------------------------- */

typedef struct buf_s {
  uint8_t *p;
  size_t len, cap;
  bool failed;
} buf_t;

/* Append n bytes; an empty field (a message never written has no buffer
 * at all) appends nothing, and memcpy may not be given a null pointer
 * even for no bytes. */
static void put(buf_t *b, const void *data, size_t n) {
  if (n == 0) return;
  if (b->failed || !grow((void **)&b->p, &b->cap, b->len + n, 1)) {
    b->failed = true;
    return;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

static void varint(buf_t *b, uint64_t v) {
  uint8_t tmp[10];
  size_t n = 0;
  do {
    tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  put(b, tmp, n);
}

/* field as a varint (wire type 0); zero values are left out, as proto3 does */
static void field_u(buf_t *b, unsigned field, uint64_t v) {
  if (!v) return;
  varint(b, (uint64_t)field << 3);
  varint(b, v);
}

/* field as bytes (wire type 2) */
static void field_bytes(buf_t *b, unsigned field, const void *data, size_t n) {
  varint(b, (uint64_t)field << 3 | 2);
  varint(b, n);
  put(b, data, n);
}

/* an embedded message: sub's contents, then sub is emptied for reuse */
static void field_msg(buf_t *b, unsigned field, buf_t *sub) {
  if (sub->failed) b->failed = true;
  field_bytes(b, field, sub->p, sub->len);
  sub->len = 0;
}

static void value_type(buf_t *b, buf_t *sub, unsigned field, int64_t type, int64_t unit) {
  field_u(sub, 1, (uint64_t)type);
  field_u(sub, 2, (uint64_t)unit);
  field_msg(b, field, sub);
}

/* The index of a string known to be interned (the fixed names). */
static int64_t find_string(const pprof_t *pp, const char *s) {
  for (size_t i = 0; i < pp->nstrings; i++)
    if (strcmp(pp->strings[i], s) == 0) return (int64_t)i;
  return 0;
}

static void encode_samples(const pprof_t *pp, buf_t *out, buf_t *sub, buf_t *packed) {
  for (size_t i = 0; i < pp->nsamples; i++) {
    const struct sample_s *s = &pp->samples[i];
    for (uint32_t d = 0; d < s->depth; d++) varint(packed, pp->sample_locs[s->first + d]);
    field_msg(sub, 1, packed);
    for (int k = 0; k < PPROF_NVALUES; k++) varint(packed, (uint64_t)s->values[k]);
    field_msg(sub, 2, packed);
    field_msg(out, 2, sub);
  }
}

static void encode_tables(const pprof_t *pp, buf_t *out, buf_t *sub, buf_t *line) {
  for (size_t i = 0; i < pp->nmaps; i++) {
    const mapping_t *m = &pp->maps[i];
    field_u(sub, 1, i + 1);
    field_u(sub, 2, m->start);
    field_u(sub, 3, m->limit);
    field_u(sub, 4, m->offset);
    field_u(sub, 5, (uint64_t)m->file);
    field_u(sub, 6, (uint64_t)m->build_id);
    field_u(sub, 7, m->symbolized);
    field_u(sub, 8, m->symbolized);
    field_u(sub, 9, m->symbolized);
    field_msg(out, 3, sub);
  }
  for (size_t i = 0; i < pp->nlocs; i++) {
    const location_t *l = &pp->locs[i];
    field_u(sub, 1, i + 1);
    field_u(sub, 2, l->mapping);
    field_u(sub, 3, l->address);
    for (uint32_t k = 0; k < l->nlines; k++) {   /* innermost first; the last is the caller they were inlined into */
      field_u(line, 1, pp->lines[l->first_line + k].function);
      field_u(line, 2, (uint64_t)pp->lines[l->first_line + k].line);
      field_msg(sub, 4, line);
    }
    field_msg(out, 4, sub);
  }
  for (size_t i = 0; i < pp->nfuncs; i++) {
    field_u(sub, 1, i + 1);
    field_u(sub, 2, (uint64_t)pp->funcs[i].name);
    field_u(sub, 3, (uint64_t)pp->funcs[i].name);
    field_u(sub, 4, (uint64_t)pp->funcs[i].file);
    field_msg(out, 5, sub);
  }
  for (size_t i = 0; i < pp->nstrings; i++) field_bytes(out, 6, pp->strings[i], strlen(pp->strings[i]));
}

static bool gzip(const buf_t *in, uint8_t **out, size_t *len) {
  z_stream z = {0};
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
  size_t cap = deflateBound(&z, in->len) + 32;
  uint8_t *o = malloc(cap);
  bool ok = false;
  if (o) {
    z.next_in = in->p;
    z.avail_in = (uInt)in->len;
    z.next_out = o;
    z.avail_out = (uInt)cap;
    ok = deflate(&z, Z_FINISH) == Z_STREAM_END;
  }
  deflateEnd(&z);
  if (!ok) {
    free(o);
    return false;
  }
  *out = o;
  *len = z.total_out;
  return true;
}

bool pprof_encode(const pprof_t *pp, int default_value, uint8_t **out, size_t *len) {
  buf_t b = {0}, sub = {0}, inner = {0};
  for (int k = 0; k < PPROF_NVALUES; k++)
    value_type(&b, &sub, 1, find_string(pp, pprof_value_names[k]), find_string(pp, value_units[k]));
  encode_samples(pp, &b, &sub, &inner);
  encode_tables(pp, &b, &sub, &inner);
  field_u(&b, 9, (uint64_t)pp->time_ns);
  value_type(&b, &sub, 11, find_string(pp, "space"), find_string(pp, "bytes"));
  field_u(&b, 12, (uint64_t)pp->period);
  if (default_value < 0 || default_value >= PPROF_NVALUES) default_value = pprof_value_index("inuse_space");
  field_u(&b, 14, (uint64_t)find_string(pp, pprof_value_names[default_value]));
  bool ok = !b.failed && !sub.failed && !inner.failed && b.len < UINT32_MAX && gzip(&b, out, len);
  free(b.p);
  free(sub.p);
  free(inner.p);
  return ok;
}

/* ---- JSON ----------------------------------------------------------------- */

static void line_json(const pprof_t *pp, const line_t *ln, json_t *o) {
  const function_t *f = &pp->funcs[ln->function - 1];
  json_object_set_new(o, "function", json_string(pp->strings[f->name]));
  if (f->file) json_object_set_new(o, "file", json_string(pp->strings[f->file]));
  if (ln->line) json_object_set_new(o, "line", json_integer(ln->line));
}

/* A frame: its address, module, and innermost function and line; code
 * inlined there lists the functions it was inlined into, innermost first. */
static json_t *frame_json(const pprof_t *pp, uint32_t loc_id) {
  const location_t *l = &pp->locs[loc_id - 1];
  char addr[24];
  snprintf(addr, sizeof addr, "0x%llx", (unsigned long long)l->address);
  json_t *o = json_pack("{s:s}", "address", addr);
  if (l->nlines) line_json(pp, &pp->lines[l->first_line], o);
  if (l->nlines > 1) {
    json_t *into = json_array();
    for (uint32_t k = 1; k < l->nlines; k++) {
      json_t *x = json_object();
      line_json(pp, &pp->lines[l->first_line + k], x);
      json_array_append_new(into, x);
    }
    json_object_set_new(o, "inlined_into", into);
  }
  if (l->mapping) json_object_set_new(o, "module", json_string(pp->strings[pp->maps[l->mapping - 1].file]));
  return o;
}

/* A call site: the innermost frame's function and line, or its address
 * when not symbolized. */
static uint64_t site_key(const pprof_t *pp, uint32_t loc_id) {
  const location_t *l = &pp->locs[loc_id - 1];
  if (!l->nlines) return (uint64_t)1 << 63 | l->address;
  const line_t *ln = &pp->lines[l->first_line];
  return (uint64_t)ln->function << 32 | (uint32_t)ln->line;
}

typedef struct site_s {
  uint64_t key;
  int64_t values[PPROF_NVALUES], heaviest;
  size_t heaviest_sample, stacks;
} site_t;

static int site_cmp(const void *a, const void *b, void *arg) {
  const site_t *x = a, *y = b;
  int k = *(const int *)arg;
  int64_t u = x->values[k], v = y->values[k];
  return u > v ? -1 : u < v ? 1 : (x->key > y->key) - (x->key < y->key);
}

/* ---- the flame graph's tree ------------------------------------------------- */

typedef struct flame_node_s {
  const char *name;    /* interned function name, NULL: not symbolized (addr) */
  uint64_t addr;
  int64_t value;
  uint32_t child, next;   /* indexes + 1: first child, next sibling */
} flame_node_t;

typedef struct flame_s {
  flame_node_t *nodes;
  uint32_t n;
} flame_t;

/* The child of `parent` for this frame, made if needed; 0 when full. */
static uint32_t flame_child(flame_t *f, uint32_t parent, const char *name, uint64_t addr) {
  uint32_t *link = &f->nodes[parent - 1].child;
  for (uint32_t c = *link; c; c = f->nodes[c - 1].next) {
    const flame_node_t *x = &f->nodes[c - 1];
    if (x->name == name && (name || x->addr == addr)) return c;
  }
  if (f->n == FLAME_NODES) return 0;
  f->nodes[f->n] = (flame_node_t){name, addr, 0, 0, *link};
  *link = ++f->n;
  return f->n;
}

static int flame_by_value(const void *a, const void *b) {
  int64_t x = json_integer_value(json_object_get(*(json_t *const *)a, "value"));
  int64_t y = json_integer_value(json_object_get(*(json_t *const *)b, "value"));
  return x > y ? -1 : x < y;
}

static json_t *flame_json_of(const flame_t *f, uint32_t id, int64_t min) {
  const flame_node_t *x = &f->nodes[id - 1];
  char addr[24];
  snprintf(addr, sizeof addr, "0x%llx", (unsigned long long)x->addr);
  json_t *kids = json_array();
  for (uint32_t c = x->child; c; c = f->nodes[c - 1].next)
    if (f->nodes[c - 1].value >= min) json_array_append_new(kids, flame_json_of(f, c, min));
  size_t n = json_array_size(kids);
  json_t **v = malloc((n ? n : 1) * sizeof *v);
  for (size_t i = 0; v && i < n; i++) v[i] = json_incref(json_array_get(kids, i));
  if (v) {
    qsort(v, n, sizeof *v, flame_by_value);
    json_array_clear(kids);
    for (size_t i = 0; i < n; i++) json_array_append_new(kids, v[i]);
  }
  free(v);
  return json_pack("{s:s, s:I, s:o}", "name", x->name ? x->name : addr, "value", (json_int_t)x->value, "children", kids);
}

json_t *pprof_flame_json(const pprof_t *pp, int value) {
  flame_t f = {calloc(FLAME_NODES, sizeof(flame_node_t)), 1};
  if (!f.nodes) return NULL;
  f.nodes[0] = (flame_node_t){"all", 0, 0, 0, 0};
  for (size_t i = 0; i < pp->nsamples; i++) {
    const struct sample_s *s = &pp->samples[i];
    int64_t v = s->values[value];
    if (v <= 0) continue;   /* a diff's negative stacks are not drawn */
    f.nodes[0].value = sat_add(f.nodes[0].value, v);
    uint32_t at = 1;
    for (uint32_t d = s->depth; d-- > 0 && at;) {   /* outermost first */
      const location_t *l = &pp->locs[pp->sample_locs[s->first + d] - 1];
      for (uint32_t k = l->nlines ? l->nlines : 1; k-- > 0 && at;) {   /* inlined: outermost first */
        const char *name = l->nlines ? pp->strings[pp->funcs[pp->lines[l->first_line + k].function - 1].name] : NULL;
        uint32_t c = flame_child(&f, at, name, l->address);
        if (c) f.nodes[c - 1].value = sat_add(f.nodes[c - 1].value, v);
        at = c;
      }
    }
  }
  json_t *out = flame_json_of(&f, 1, f.nodes[0].value / 1000 + 1);
  json_object_set_new(out, "value_name", json_string(pprof_value_names[value]));
  free(f.nodes);
  return out;
}

json_t *pprof_top_json(const pprof_t *pp, int sort, int top) {
  site_t *sites = calloc(pp->nsamples ? pp->nsamples : 1, sizeof *sites);
  map_t index = {0};
  size_t nsites = 0;
  if (!sites) return NULL;
  for (size_t i = 0; i < pp->nsamples; i++) {
    const struct sample_s *s = &pp->samples[i];
    if (!s->depth) continue;
    uint64_t key = site_key(pp, pp->sample_locs[s->first]), *kp;
    uint32_t *id = map_slot(&index, key, &kp);
    if (!id) break;
    if (!*id) {
      *kp = key;
      *id = (uint32_t)++nsites;
      index.n++;
      sites[*id - 1].key = key;
      sites[*id - 1].heaviest = INT64_MIN;
    }
    site_t *site = &sites[*id - 1];
    for (int k = 0; k < PPROF_NVALUES; k++) site->values[k] = sat_add(site->values[k], s->values[k]);
    if (s->values[sort] > site->heaviest) site->heaviest = s->values[sort], site->heaviest_sample = i;
    site->stacks++;
  }
  map_free(&index);
  qsort_r(sites, nsites, sizeof *sites, site_cmp, &sort);
  json_t *a = json_array();
  for (size_t i = 0; i < nsites && (int)i < top; i++) {
    const struct sample_s *s = &pp->samples[sites[i].heaviest_sample];
    json_t *o = frame_json(pp, pp->sample_locs[s->first]);
    for (int k = 0; k < PPROF_NVALUES; k++) json_object_set_new(o, pprof_value_names[k], json_integer(sites[i].values[k]));
    json_t *stack = json_array();
    for (uint32_t d = 0; d < s->depth; d++) json_array_append_new(stack, frame_json(pp, pp->sample_locs[s->first + d]));
    json_object_set_new(o, "stacks", json_integer((json_int_t)sites[i].stacks));
    json_object_set_new(o, "stack", stack);
    json_array_append_new(a, o);
  }
  free(sites);
  json_t *totals = json_object();
  for (int k = 0; k < PPROF_NVALUES; k++) json_object_set_new(totals, pprof_value_names[k], json_integer(pp->totals[k]));
  return json_pack("{s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:I}", "sort", pprof_value_names[sort], "sites", a, "totals",
                   totals, "time_ns", (json_int_t)pp->time_ns, "sample_bytes", (json_int_t)pp->period, "samples",
                   (json_int_t)pp->sample_count, "dropped_samples", (json_int_t)pp->dropped, "locations",
                   (json_int_t)pp->nlocs);
}
