/* fuzz_profile.c - libFuzzer target: a profile area (alloc_shm.h) with any
 * contents, read the way allocd reads it, then turned into pprof and JSON.
 *
 * The input is laid into the profile area of a valid segment (a sparse
 * file built once):
 *   byte 0       fixes the harness applies, so that inputs get past the
 *                checks they would rarely satisfy by chance: bit 0 sets
 *                used = ALLOC_SHM_PROFILE_FRAMES + 8 * nframes, bit 1
 *                seq = 2 * number, bit 2 the checksum (last)
 *   bytes 1-128  the profile header
 *   2 x u16      lengths of the module and stack bytes that follow
 *   ...          module records, stack records, then frames (the rest)
 * alloc_shm_prof_read must accept only what holds together (checked again
 * here: a stack's frames outside the table aborts), and whatever it
 * accepts must encode, symbolize (module paths are the input's: the
 * symbolizer's file rules apply) and render as JSON without crashing,
 * hanging or reading out of bounds.  Seeds: tests/fuzz/corpus/fuzz_profile. */
#include "pprof.h"
#include "symbolize.h"

#include <alloc_shm_reader.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CONTROL_OFFSET (512u + ALLOC_SHM_RING_SLOTS * (uint32_t)sizeof(alloc_shm_snapshot_t))
#define PROFILE_OFFSET ((CONTROL_OFFSET + ALLOC_SHM_CONTROL_SLOTS * 384u + 4095u) / 4096u * 4096u)
#define FILE_SIZE ((uint64_t)PROFILE_OFFSET + ALLOC_SHM_PROFILE_SIZE)

static char path[64];
static int fd = -1;
static symbolizer_t *sym;

static void init(void) {
  snprintf(path, sizeof path, "/tmp/fuzz_profile.%d", (int)getpid());
  fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) abort();
  alloc_shm_header_t h;
  memset(&h, 0, sizeof h);
  h.magic = ALLOC_SHM_MAGIC;
  h.version = ALLOC_SHM_VERSION;
  h.header_size = sizeof h;
  h.file_size = FILE_SIZE;
  h.ring_offset = 512;
  h.ring_slots = ALLOC_SHM_RING_SLOTS;
  h.slot_size = sizeof(alloc_shm_snapshot_t);
  h.control_offset = CONTROL_OFFSET;
  h.control_slots = ALLOC_SHM_CONTROL_SLOTS;
  h.request_size = sizeof(alloc_shm_request_t);
  h.nstats = ALLOC_SHM_NSTATS;
  h.nconfig = ALLOC_SHM_NCONFIG;
  h.nclasses = 1;
  h.pid = getpid();
  h.profile_offset = PROFILE_OFFSET;
  h.profile_size = ALLOC_SHM_PROFILE_SIZE;
  if (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || ftruncate(fd, (off_t)FILE_SIZE) != 0) abort();
  sym = sym_new();
}

static void put(const void *data, size_t len, uint64_t at, uint64_t room) {
  if (len > room) len = room;
  if (len && pwrite(fd, data, len, (off_t)(PROFILE_OFFSET + at)) != (ssize_t)len) abort();
}

static void lay_out(const uint8_t *data, size_t size) {
  /* zero the area (sparse: cheap), then write the input's parts */
  if (ftruncate(fd, PROFILE_OFFSET) != 0 || ftruncate(fd, (off_t)FILE_SIZE) != 0) abort();
  uint8_t fixes = data[0];
  alloc_shm_profile_t p;
  memset(&p, 0, sizeof p);
  memcpy(&p, data + 1, size - 1 < sizeof p ? size - 1 : sizeof p);
  size_t pos = 1 + sizeof p;
  uint16_t nmod = 0, nstk = 0;
  if (pos + 4 <= size) {
    memcpy(&nmod, data + pos, 2);
    memcpy(&nstk, data + pos + 2, 2);
    pos += 4;
    size_t m = nmod < size - pos ? nmod : size - pos;
    put(data + pos, m, ALLOC_SHM_PROFILE_MODULES, ALLOC_SHM_PROFILE_STACKS - ALLOC_SHM_PROFILE_MODULES);
    pos += m;
    size_t s = nstk < size - pos ? nstk : size - pos;
    put(data + pos, s, ALLOC_SHM_PROFILE_STACKS, ALLOC_SHM_PROFILE_FRAMES - ALLOC_SHM_PROFILE_STACKS);
    pos += s;
    put(data + pos, size - pos, ALLOC_SHM_PROFILE_FRAMES, ALLOC_SHM_PROFILE_SIZE - ALLOC_SHM_PROFILE_FRAMES);
  }
  if (fixes & 1) p.used = ALLOC_SHM_PROFILE_FRAMES + 8ull * (p.nframes % (ALLOC_SHM_PROFILE_MAX_FRAMES + 1));
  if (fixes & 2) p.number %= (uint64_t)1 << 40, p.seq = 2 * p.number;
  put(&p, sizeof p, 0, sizeof p);
  if ((fixes & 4) && p.used >= sizeof p && p.used <= ALLOC_SHM_PROFILE_SIZE) {
    char *area = malloc(p.used);
    if (!area || pread(fd, area, p.used, PROFILE_OFFSET) != (ssize_t)p.used) abort();
    p.checksum = alloc_shm_profile_checksum(area, p.used);
    free(area);
    put(&p, sizeof p, 0, sizeof p);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fd < 0) init();
  if (size < 1) return 0;
  lay_out(data, size);
  alloc_shm_segment_t seg;
  if (alloc_shm_open(&seg, AT_FDCWD, path, ALLOC_SHM_ANY_OWNER) != 0) abort();   /* the harness's own header */
  alloc_shm_prof_t prof;
  int err = alloc_shm_prof_read(&seg, 0, &prof);
  alloc_shm_close(&seg);
  if (err) {
    if (!prof.why) abort();   /* every refusal says why */
    return 0;
  }
  for (uint32_t i = 0; i < prof.head.nstacks; i++)
    if ((uint64_t)prof.stacks[i].first_frame + prof.stacks[i].depth > prof.head.nframes ||
        prof.stacks[i].depth > ALLOC_SHM_PROFILE_MAX_DEPTH)
      abort();
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  pprof_symbols_t how = {sym, "/proc/self/exe", 0, (uint64_t)ts.tv_sec * 1000 + 2000};
  pprof_t *pp = pprof_build(&prof, &how);
  alloc_shm_prof_free(&prof);
  if (!pp) return 0;
  uint8_t *gz;
  size_t len;
  if (pprof_encode(pp, data[0] % PPROF_NVALUES, &gz, &len)) free(gz);
  for (int k = 0; k < PPROF_NVALUES; k++) {
    json_t *v = pprof_top_json(pp, k, 50);
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    if (v && !text) abort();   /* jansson refuses invalid UTF-8: every string must be clean */
    free(text);
    json_decref(v);
  }
  pprof_free(pp);
  return 0;
}
