/* test_pprof.c - the pprof encoder (agent/src/pprof.c): a profile built by
 * hand is encoded, gunzip'ed and decoded back field by field with a small
 * protobuf reader written here, independently of the writer; and the JSON
 * top call sites. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "pprof.h"

/* ---- a minimal protobuf reader ------------------------------------------- */

typedef struct field_s {
  unsigned number, wire;
  uint64_t value;             /* wire 0 */
  const uint8_t *data;        /* wire 2 */
  size_t len;
} field_t;

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; *p < end && shift < 64; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

/* The next field of [*p, end); false at the end. */
static bool next_field(const uint8_t **p, const uint8_t *end, field_t *f) {
  uint64_t key;
  if (*p >= end || !read_varint(p, end, &key)) return false;
  f->number = (unsigned)(key >> 3), f->wire = key & 7;
  if (f->wire == 0) return read_varint(p, end, &f->value);
  assert_int_equal(f->wire, 2);
  uint64_t len;
  assert_true(read_varint(p, end, &len));
  assert_true(len <= (uint64_t)(end - *p));
  f->data = *p, f->len = (size_t)len;
  *p += len;
  return true;
}

/* Packed varints into out[], their count. */
static size_t unpack(const field_t *f, uint64_t *out, size_t max) {
  const uint8_t *p = f->data, *end = f->data + f->len;
  size_t n = 0;
  while (p < end && n < max) assert_true(read_varint(&p, end, &out[n++]));
  return n;
}

/* ---- the profile under test ---------------------------------------------- */

typedef struct area_s {
  alloc_shm_module_t modules[2];
  alloc_shm_stack_t stacks[3];
  uint64_t frames[5];
} area_t;

static void make_profile(area_t *a, alloc_shm_prof_t *p) {
  memset(a, 0, sizeof *a);
  memset(p, 0, sizeof *p);
  a->modules[0] = (alloc_shm_module_t){.start = 0x400000, .end = 0x500000, .file_offset = 0, .bias = 0,
                                       .build_id_size = 4, .flags = 1, .build_id = {0xde, 0xad, 0xbe, 0xef}};
  strcpy(a->modules[0].path, "/usr/bin/app");
  a->modules[1] = (alloc_shm_module_t){.start = 0x7f0000000000, .end = 0x7f0000100000, .file_offset = 0x1000,
                                       .bias = 0x7effff000000};
  strcpy(a->modules[1].path, "/lib/libx.so");
  /* stack 0: 64 MiB in use; stack 1: churn; stack 2: shares a frame with 0 */
  a->frames[0] = 0x401001, a->frames[1] = 0x402001;
  a->frames[2] = 0x7f0000000101;
  a->frames[3] = 0x401001, a->frames[4] = 0x900000;   /* outside every module */
  a->stacks[0] = (alloc_shm_stack_t){0, 2, 1, 64 << 20, 1, 64 << 20, 4096, 1, 1};
  a->stacks[1] = (alloc_shm_stack_t){2, 1, 100000, 1ull << 34, 10, 40960, 0, 9000, 1};
  a->stacks[2] = (alloc_shm_stack_t){3, 2, 5000, 5 << 20, 500, 1 << 19, 90 << 20, 100, 10};
  p->head.number = 7, p->head.seq = 14, p->head.time_ns = 1700000000000000000ull, p->head.sample_bytes = 2097152;
  p->head.nmodules = 2, p->head.nstacks = 3, p->head.nframes = 5, p->head.flags = ALLOC_SHM_PROF_ENABLED;
  p->modules = a->modules, p->stacks = a->stacks, p->frames = a->frames;
}

static uint8_t *gunzip(const uint8_t *gz, size_t len, size_t *out_len) {
  size_t cap = 1 << 20;
  uint8_t *out = malloc(cap);
  z_stream z = {0};
  assert_int_equal(inflateInit2(&z, 15 + 32), Z_OK);
  z.next_in = (uint8_t *)gz, z.avail_in = (uInt)len, z.next_out = out, z.avail_out = (uInt)cap;
  assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
  *out_len = z.total_out;
  inflateEnd(&z);
  return out;
}

/* The profile encoded with `value` as its default sample type, gunzip'ed. */
static uint8_t *encode_plain(const pprof_t *pp, const char *value, size_t *len) {
  uint8_t *gz;
  size_t gzlen;
  assert_true(pprof_encode(pp, pprof_value_index(value), &gz, &gzlen));
  uint8_t *pb = gunzip(gz, gzlen, len);
  free(gz);
  return pb;
}

static void test_encode_decode(void **state) {
  (void)state;
  area_t a;
  alloc_shm_prof_t p;
  make_profile(&a, &p);
  pprof_t *pp = pprof_build(&p, NULL);
  assert_non_null(pp);
  uint8_t *gz;
  size_t gzlen, len;
  assert_true(pprof_encode(pp, pprof_value_index("inuse_space"), &gz, &gzlen));
  assert_true(gzlen > 18 && gz[0] == 0x1f && gz[1] == 0x8b);   /* gzip */
  uint8_t *pb = gunzip(gz, gzlen, &len);

  const char *strings[64];
  size_t nstrings = 0, nsample_types = 0, nsamples = 0, nmappings = 0, nlocations = 0, nfunctions = 0;
  uint64_t sample_type_types[8], period = 0, time_nanos = 0, default_type = 0, period_type = 0;
  uint64_t locs[3][8], values[3][8], loc_addr[16] = {0}, loc_mapping[16] = {0};
  size_t nlocs_of[3];
  uint64_t map_start[2], map_limit[2], map_offset[2], map_file[2], map_build[2];
  char strbuf[64][64];
  const uint8_t *q = pb, *end = pb + len;
  field_t f, g;
  while (next_field(&q, end, &f)) {
    const uint8_t *r = f.data, *rend = f.data + f.len;
    switch (f.number) {
    case 1:
      while (next_field(&r, rend, &g))
        if (g.number == 1) sample_type_types[nsample_types] = g.value;
      nsample_types++;
      break;
    case 2:
      while (next_field(&r, rend, &g)) {
        if (g.number == 1) nlocs_of[nsamples] = unpack(&g, locs[nsamples], 8);
        if (g.number == 2) assert_int_equal(unpack(&g, values[nsamples], 8), PPROF_NVALUES);
      }
      nsamples++;
      break;
    case 3:
      while (next_field(&r, rend, &g)) {
        if (g.number == 2) map_start[nmappings] = g.value;
        if (g.number == 3) map_limit[nmappings] = g.value;
        if (g.number == 4) map_offset[nmappings] = g.value;
        if (g.number == 5) map_file[nmappings] = g.value;
        if (g.number == 6) map_build[nmappings] = g.value;
      }
      nmappings++;
      break;
    case 4: {
      uint64_t id = 0, addr = 0, mapping = 0;
      while (next_field(&r, rend, &g)) {
        if (g.number == 1) id = g.value;
        if (g.number == 2) mapping = g.value;
        if (g.number == 3) addr = g.value;
        assert_int_not_equal(g.number, 4);   /* not symbolized: no lines */
      }
      assert_true(id >= 1 && id < 16);
      loc_addr[id] = addr, loc_mapping[id] = mapping;
      nlocations++;
      break;
    }
    case 5: nfunctions++; break;
    case 6:
      assert_true(f.len < 64);
      memcpy(strbuf[nstrings], f.data, f.len);
      strbuf[nstrings][f.len] = 0;
      strings[nstrings] = strbuf[nstrings];
      nstrings++;
      break;
    case 9: time_nanos = f.value; break;
    case 11:
      while (next_field(&r, rend, &g))
        if (g.number == 1) period_type = g.value;
      break;
    case 12: period = f.value; break;
    case 14: default_type = f.value; break;
    }
  }
  assert_string_equal(strings[0], "");
  assert_int_equal(nsample_types, 5);
  for (int k = 0; k < PPROF_NVALUES; k++) assert_string_equal(strings[sample_type_types[k]], pprof_value_names[k]);
  assert_string_equal(strings[default_type], "inuse_space");
  assert_string_equal(strings[period_type], "space");
  assert_int_equal(period, 2097152);
  assert_int_equal(time_nanos, 1700000000000000000ull);
  assert_int_equal(nfunctions, 0);
  /* mappings in module order, with their build IDs in hex */
  assert_int_equal(nmappings, 2);
  assert_int_equal(map_start[0], 0x400000);
  assert_int_equal(map_limit[0], 0x500000);
  assert_int_equal(map_offset[1], 0x1000);
  assert_string_equal(strings[map_file[0]], "/usr/bin/app");
  assert_string_equal(strings[map_build[0]], "deadbeef");
  assert_string_equal(strings[map_file[1]], "/lib/libx.so");
  assert_string_equal(strings[map_build[1]], "");
  /* one location per distinct address, at return address - 1 */
  assert_int_equal(nlocations, 4);
  assert_int_equal(nsamples, 3);
  assert_int_equal(nlocs_of[0], 2);
  assert_int_equal(loc_addr[locs[0][0]], 0x401000);
  assert_int_equal(loc_mapping[locs[0][0]], 1);
  assert_int_equal(loc_addr[locs[0][1]], 0x402000);
  assert_int_equal(loc_mapping[locs[1][0]], 2);
  assert_int_equal(locs[2][0], locs[0][0]);         /* the shared frame */
  assert_int_equal(loc_mapping[locs[2][1]], 0);     /* outside every module */
  uint64_t want0[] = {1, 64 << 20, 1, 64 << 20, 4096};
  for (int k = 0; k < PPROF_NVALUES; k++) assert_int_equal(values[0][k], want0[k]);
  assert_int_equal(values[1][1], 1ull << 34);
  assert_int_equal(values[2][4], 90 << 20);
  free(pb);
  free(gz);
  pprof_free(pp);
}

static void test_top_json(void **state) {
  (void)state;
  area_t a;
  alloc_shm_prof_t p;
  make_profile(&a, &p);
  pprof_t *pp = pprof_build(&p, NULL);
  /* by in-use bytes: stacks 0 and 2 share their innermost frame: one site */
  json_t *v = pprof_top_json(pp, pprof_value_index("inuse_space"), 10);
  json_t *sites = json_object_get(v, "sites");
  assert_int_equal(json_array_size(sites), 2);
  json_t *s0 = json_array_get(sites, 0);
  assert_string_equal(json_string_value(json_object_get(s0, "address")), "0x401000");
  assert_int_equal(json_integer_value(json_object_get(s0, "inuse_space")), (64 << 20) + (1 << 19));
  assert_int_equal(json_integer_value(json_object_get(s0, "stacks")), 2);
  assert_int_equal(json_array_size(json_object_get(s0, "stack")), 2);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "totals"), "pinned_space")),
                   4096 + (90 << 20));
  json_decref(v);
  /* by allocated bytes, top 1: the churning site */
  v = pprof_top_json(pp, pprof_value_index("alloc_space"), 1);
  sites = json_object_get(v, "sites");
  assert_int_equal(json_array_size(sites), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(sites, 0), "module")), "/lib/libx.so");
  json_decref(v);
  assert_int_equal(pprof_value_index("nope"), -1);
  pprof_free(pp);
}

/* A diff: the same stack minus its base, a stack the base lacks as it is,
 * a stack only the base has as negative values. */
static void test_diff(void **state) {
  (void)state;
  area_t a, b;
  alloc_shm_prof_t p, base;
  make_profile(&a, &p);
  make_profile(&b, &base);
  b.stacks[0].inuse_bytes = 16 << 20;
  b.frames[4] = 0x403001;   /* base's stack 2 has other frames than the current one */
  pprof_t *pp = pprof_build_diff(&p, &base, NULL);
  assert_non_null(pp);
  json_t *v = pprof_top_json(pp, pprof_value_index("inuse_space"), 10);
  json_t *totals = json_object_get(v, "totals");
  /* 64 - 16 MiB; stack 1 unchanged; stack 2 new (+512 KiB) and gone (-512 KiB) */
  assert_int_equal(json_integer_value(json_object_get(totals, "inuse_space")), 48 << 20);
  assert_int_equal(json_integer_value(json_object_get(totals, "alloc_space")), 0);
  json_t *first = json_array_get(json_object_get(v, "sites"), 0);
  assert_string_equal(json_string_value(json_object_get(first, "address")), "0x401000");
  assert_int_equal(json_integer_value(json_object_get(first, "inuse_space")), 48 << 20);
  json_decref(v);
  uint8_t *gz;
  size_t gzlen;
  assert_true(pprof_encode(pp, 3, &gz, &gzlen));   /* negative values encode (two's complement varints) */
  free(gz);
  pprof_free(pp);
}

/* An empty profile (profiling on, nothing sampled yet) is still a valid
 * profile.proto with its sample types. */
static void test_empty(void **state) {
  (void)state;
  alloc_shm_prof_t p;
  memset(&p, 0, sizeof p);
  p.head.sample_bytes = 1 << 21;
  pprof_t *pp = pprof_build(&p, NULL);
  size_t len;
  uint8_t *pb = encode_plain(pp, "alloc_space", &len);
  const uint8_t *q = pb;
  field_t f;
  size_t types = 0;
  while (next_field(&q, pb + len, &f)) types += f.number == 1;
  assert_int_equal(types, 5);
  free(pb);
  pprof_free(pp);
}

/* A stack of no frames (a sample whose walk found none, or a hostile
 * segment's) is a sample with no locations: its empty location list was
 * copied from a null buffer, undefined behaviour that the sanitizer
 * build's fatal UBSan now stops at (fuzz_profile found it). */
static void test_stackless_sample(void **state) {
  (void)state;
  area_t a;
  alloc_shm_prof_t p;
  make_profile(&a, &p);
  a.stacks[0].depth = 0;
  p.head.nstacks = 1;
  pprof_t *pp = pprof_build(&p, NULL);
  assert_non_null(pp);
  size_t len;
  uint8_t *pb = encode_plain(pp, "inuse_space", &len);
  const uint8_t *q = pb;
  field_t f;
  size_t samples = 0;
  while (next_field(&q, pb + len, &f)) {
    if (f.number != 2) continue;
    samples++;
    const uint8_t *r = f.data;
    field_t g;
    uint64_t values[8];
    while (next_field(&r, f.data + f.len, &g)) {
      if (g.number == 1) assert_int_equal(g.len, 0);   /* no locations */
      if (g.number == 2) assert_int_equal(unpack(&g, values, 8), PPROF_NVALUES);
    }
  }
  assert_int_equal(samples, 1);
  free(pb);
  pprof_free(pp);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_encode_decode),
    cmocka_unit_test(test_top_json),
    cmocka_unit_test(test_empty),
    cmocka_unit_test(test_diff),
    cmocka_unit_test(test_stackless_sample),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
