/* alloc_shm.h - the telemetry segment: what every process that uses liballoc
 * publishes about its heap, and the control area through which it accepts
 * configuration changes.  Shared by the writer (liballoc) and by readers
 * (the reader module alloc_shm_reader.h, allocd, tests).
 *
 * Each process owns one regular file, <telemetry_dir>/liballoc.<pid>
 * (default /dev/shm), mode 0600, removed when the process exits normally.
 * Writer and readers use pread/pwrite, never a shared mapping, so neither
 * side can be hurt by the other truncating the file.  Integers are native
 * endian (readers run on the same host) and every structure is made of
 * 8-byte fields or byte arrays, so the layout is the same for every
 * compiler; the sizes are checked by static assertions below.
 *
 * File layout (offsets in bytes):
 *
 *   0                 header            alloc_shm_header_t, 512 bytes
 *   ring_offset       ring              ring_slots x slot_size bytes, each an
 *                                       alloc_shm_snapshot_t
 *   control_offset    control area      control_slots x request_size bytes,
 *                                       each an alloc_shm_request_t
 *   profile_offset    profile area      profile_size bytes: the heap profile,
 *                                       written only when asked for (below);
 *                                       a hole in the file until then
 *   file_size         end
 *
 * Header (written once at creation, except the last three u64):
 *     0  u64  magic           ALLOC_SHM_MAGIC ("LIBALLOC" read as bytes)
 *     8  u32  version         ALLOC_SHM_VERSION; any layout change bumps it
 *    12  u32  header_size     512
 *    16  u64  file_size       total bytes; the file is exactly this long
 *    24  u32  ring_offset     start of the ring (512)
 *    28  u32  ring_slots      number of snapshots kept (ALLOC_SHM_RING_SLOTS)
 *    32  u32  slot_size       sizeof(alloc_shm_snapshot_t)
 *    36  u32  control_offset  start of the control area
 *    40  u32  control_slots   number of request slots
 *    44  u32  request_size    sizeof(alloc_shm_request_t)
 *    48  u32  nstats          ALLOC_SHM_NSTATS
 *    52  u32  nconfig         ALLOC_SHM_NCONFIG
 *    56  u32  nclasses        size classes in use, <= ALLOC_SHM_MAX_CLASSES
 *    60  i32  pid             the process (in its own pid namespace)
 *    64  u64  start_time      process start, clock ticks after boot
 *                             (field 22 of /proc/<pid>/stat)
 *    72  u64  pidns_ino       inode of /proc/self/ns/pid: which namespace
 *                             `pid` belongs to
 *    80  u64  clock_ticks     sysconf(_SC_CLK_TCK), the unit of start_time
 *    88  u64  created_ns      CLOCK_REALTIME when the segment was created
 *    96  char exe[256]        path of the executable, NUL-terminated
 *   352  char comm[16]        thread name of the main thread, NUL-terminated
 *   368  char version_str[16] liballoc version, NUL-terminated
 *   384  u32  profile_offset  start of the profile area (a multiple of 4096)
 *   388  u32  profile_size    ALLOC_SHM_PROFILE_SIZE
 *   392  ...                  zero, reserved
 *   488  u64  interval_ms     current stats_interval_ms
 *   496  u64  heartbeat_ns    CLOCK_REALTIME of the newest publication
 *   504  u64  published       snapshots published so far: the newest is
 *                             number `published`, in slot
 *                             (published - 1) % ring_slots
 *
 * A snapshot is published by writing seq = 2n-1 (odd: being written), then
 * the body with number = n and its checksum, then seq = 2n.  A reader
 * accepts slot contents only if seq == 2 * number, number is the one it
 * expects and the checksum matches, so it never accepts a torn snapshot,
 * and a writer that died mid-write leaves a slot that fails these checks.
 * A reader that polls less often than the writer publishes reads every
 * number from its last one to `published`; those older than
 * published - ring_slots have been overwritten.
 *
 * The control area is described with alloc_shm_request_t below.
 */
#ifndef ALLOC_SHM_H
#define ALLOC_SHM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ALLOC_SHM_MAGIC        0x434f4c4c4142494cull   /* "LIBALLOC" */
#define ALLOC_SHM_VERSION      4u   /* 2: the statistic purge_failures; 3: the profile area; 4: lent, lenders */
#define ALLOC_SHM_HEADER_SIZE  512u
#define ALLOC_SHM_RING_SLOTS   32u
#define ALLOC_SHM_CONTROL_SLOTS 16u
#define ALLOC_SHM_MAX_CLASSES  72u
#define ALLOC_SHM_PREFIX       "liballoc."   /* file name: prefix + pid */

/* ---- the statistics ------------------------------------------------------
 * Every statistic is listed once, here: X(name, type, unit, help).
 *   type  GAUGE (a level) or COUNTER (only grows while the process lives)
 *   unit  BYTES, COUNT or NANOSECONDS
 * The list generates the snapshot's fields, the keys of alloc_stats_print's
 * JSON and allocd's Prometheus names (liballoc_<name>, _bytes for BYTES,
 * _total for counters).  docs/metrics.md explains each one at length. */
#define ALLOC_SHM_STATS(X)                                                                       \
  X(allocated, GAUGE, BYTES, "Bytes in blocks handed out to the program and not freed")          \
  X(active, GAUGE, BYTES, "Bytes in slabs and huge blocks: allocated plus their free space")     \
  X(metadata, GAUGE, BYTES, "Bytes of the allocator's own structures (segment headers, heaps)")  \
  X(resident, GAUGE, BYTES, "Allocator's estimate of its resident bytes: active+dirty+metadata") \
  X(mapped, GAUGE, BYTES, "Bytes of address space mapped by the allocator")                      \
  X(retained, GAUGE, BYTES, "Bytes of wholly free segments kept mapped for reuse")               \
  X(dirty, GAUGE, BYTES, "Free bytes that may still be resident, waiting for decay")             \
  X(muzzy, GAUGE, BYTES, "Free bytes given back lazily (MADV_FREE), reclaimable by the kernel")  \
  X(tcache, GAUGE, BYTES, "Free bytes reserved by thread heaps (free blocks in their slabs)")     \
  X(small_allocated, GAUGE, BYTES, "Bytes in live blocks of thread-cached (small) classes")      \
  X(lent, GAUGE, BYTES, "Bytes in blocks lent the free space of a sparse slab of another class")   \
  X(lenders, GAUGE, COUNT, "Sparse slabs lending their free space to blocks of other classes")    \
  X(large_allocated, GAUGE, BYTES, "Bytes in live blocks of arena (large) classes")              \
  X(large_blocks, GAUGE, COUNT, "Live blocks of arena (large) classes")                          \
  X(large_nmalloc, COUNTER, COUNT, "Allocations of arena (large) classes")                       \
  X(large_nfree, COUNTER, COUNT, "Frees of arena (large) classes")                               \
  X(huge_allocated, GAUGE, BYTES, "Bytes in live huge blocks (above 2 MiB, own mappings)")       \
  X(huge_blocks, GAUGE, COUNT, "Live huge blocks")                                               \
  X(huge_nmalloc, COUNTER, COUNT, "Allocations of huge blocks")                                  \
  X(huge_nfree, COUNTER, COUNT, "Frees of huge blocks")                                          \
  X(npurges, COUNTER, COUNT, "Purge passes that returned memory")                                \
  X(nmadvise, COUNTER, COUNT, "madvise and munmap calls made to return memory")                  \
  X(purged, COUNTER, BYTES, "Bytes made muzzy or returned to the kernel")                        \
  X(purge_failures, COUNTER, COUNT, "madvise/munmap calls the kernel refused (pages stay resident)") \
  X(narenas, GAUGE, COUNT, "Arenas")                                                             \
  X(nheaps, GAUGE, COUNT, "Thread heaps in use (threads that allocated and are alive)")          \
  X(nsegments, GAUGE, COUNT, "Segments (4 MiB) mapped")                                          \
  X(foreign_frees, COUNTER, COUNT, "free() calls on pointers liballoc did not hand out")          \
  X(background_thread, GAUGE, COUNT, "1 while the background purger thread runs")                \
  X(threads, GAUGE, COUNT, "Threads of the process (kernel's count)")                            \
  X(kernel_rss, GAUGE, BYTES, "Resident bytes of the whole process, kernel's view (Rss)")        \
  X(kernel_anon, GAUGE, BYTES, "Resident anonymous bytes, kernel's view (Anonymous)")            \
  X(kernel_anon_huge, GAUGE, BYTES, "Anonymous bytes backed by transparent huge pages")          \
  X(kernel_lazyfree, GAUGE, BYTES, "Bytes marked MADV_FREE the kernel has not reclaimed yet")    \
  X(kernel_swap, GAUGE, BYTES, "Anonymous bytes swapped out")                                    \
  X(snapshot_ns, GAUGE, NANOSECONDS, "Time the publisher spent taking this snapshot")         \
  X(limit, GAUGE, BYTES, "Memory limit in force (option memory_limit or the cgroup's); 0: none") \
  X(limit_source, GAUGE, COUNT, "Where the limit comes from: 0 none, 1 option, 2 cgroup v1, 3 cgroup v2") \
  X(limit_returned, COUNTER, BYTES, "Bytes of free memory returned because the limit was near")  \
  X(limit_hits, COUNTER, COUNT, "Times memory was about to be mapped with usage near the limit") \
  X(limit_refused, COUNTER, COUNT, "Allocations refused (ENOMEM) by memory_limit_hard")

/* ---- the configuration knobs ---------------------------------------------
 * Every knob is listed once, here, and everything else is generated from
 * this list: liballoc's ALLOC_CONF parser, its la_options_t fields, the
 * alloc_ctl("opt.<name>") entries, the live writes of the control area,
 * the segment's config block (ALLOC_SHM_CONFIG below), the mode names, and
 * the table of docs/configuration.md (checked by tests/docs).
 *   X(name, type, default, min, max, change, segment, help)
 *   type     BOOL (true/false), INT (a signed number), COUNT (an unsigned
 *            number), ENUM (one of the names of ALLOC_SHM_MODES_<name>),
 *            PATH (an absolute path, shorter than 256 bytes), BYTES (a size:
 *            a number with an optional K, M, G or T suffix, powers of 1024,
 *            or one of the words of ALLOC_SHM_MODES_<name>, which every
 *            BYTES knob defines, possibly empty; the words are carried as
 *            -1, -2, ... in the config block and through alloc_ctl)
 *   default  the value without ALLOC_CONF, written as ALLOC_CONF writes it
 *   min, max bounds of INT and COUNT values (0, 0 for the other types)
 *   change   FIXED   read at start-up only; writing it answers EPERM
 *            LIVE    can change while the process runs: the new value is
 *                    stored, and the code reads it where it is used
 *            APPLY   can change while the process runs: after storing it,
 *                    liballoc's la_apply_<name>() pushes it into the heap
 *                    (re-plans decay, advises mappings, wakes a thread)
 *   segment  SHM     published in every snapshot's config block, in list
 *                    order (that order is the block's layout: append only)
 *            PRIVATE not published
 *   help     one line; docs/configuration.md's "meaning", Prometheus' HELP
 * Bounds are plain numbers, because readers of this header (allocd, the
 * docs generator) have none of liballoc's constants: narenas' 64 is
 * LA_MAX_ARENAS (test_options checks it). */
#define ALLOC_SHM_KNOBS(X) ALLOC_SHM_KNOBS_WITH(ALLOC_SHM_KNOB_CALL, X)
#define ALLOC_SHM_KNOB_CALL(X, ...) X(__VA_ARGS__)
#define ALLOC_SHM_KNOBS_WITH(M, X)                                                                 \
  M(X, narenas, COUNT, "0", 0, 64, FIXED, SHM,                                                     \
    "Arenas threads are spread over; 0: one per four CPUs the process may run on "                 \
    "(the segment carries the effective count)")                                                   \
  M(X, dirty_decay_ms, INT, "10000", -1, 1099511627776, APPLY, SHM,                                \
    "Time over which freed (dirty) pages decay: -1 never, 0 at once")                              \
  M(X, muzzy_decay_ms, INT, "0", -1, 1099511627776, APPLY, SHM,                                    \
    "Time over which muzzy pages (MADV_FREE) are purged; 0: dirty pages skip the muzzy stage")     \
  M(X, thp, ENUM, "default", 0, 0, APPLY, SHM,                                                     \
    "Transparent huge pages for heap mappings (MADV_HUGEPAGE / MADV_NOHUGEPAGE)")                  \
  M(X, metadata_thp, ENUM, "auto", 0, 0, APPLY, SHM,                                               \
    "Transparent huge pages for liballoc's own metadata (auto: once it outgrows its first 2 MiB)") \
  M(X, background_thread, BOOL, "true", 0, 0, APPLY, SHM, "Purge from a background thread")        \
  M(X, telemetry, BOOL, "true", 0, 0, FIXED, PRIVATE,                                              \
    "Publish statistics in the telemetry segment and accept control requests")                     \
  M(X, telemetry_dir, PATH, "/dev/shm", 0, 0, FIXED, PRIVATE,                                      \
    "Directory of the telemetry segment (the file liballoc.PID)")                                  \
  M(X, stats_interval_ms, INT, "1000", 10, 86400000, APPLY, SHM,                                   \
    "Interval between published snapshots (and control-request handling)")                         \
  M(X, stats_print, BOOL, "false", 0, 0, LIVE, SHM, "Print statistics to stderr at exit")          \
  M(X, abort_on_invalid_free, BOOL, "false", 0, 0, LIVE, SHM,                                      \
    "Abort on free/realloc of a pointer that is not a live block, instead of warning once and ignoring it") \
  M(X, detect_double_free, BOOL, "false", 0, 0, FIXED, PRIVATE,                                    \
    "Check every free of a small block: a double free or an interior pointer is an invalid free "  \
    "(a debugging aid: about 2x the allocator's instructions)")                                   \
  M(X, lend, BOOL, "true", 0, 0, FIXED, PRIVATE,                                                   \
    "Lend the free space of sparse, idle slabs of small blocks to blocks of other sizes")          \
  M(X, memory_limit, BYTES, "cgroup", 0, 4611686018427387904, APPLY, SHM,                          \
    "Memory the process may use: near it liballoc returns its free memory before mapping more; "   \
    "cgroup: the tightest limit of the process's cgroups; 0: none")                                \
  M(X, memory_limit_hard, BOOL, "false", 0, 0, LIVE, SHM,                                          \
    "Also fail allocations that would cross memory_limit with ENOMEM (after returning free memory)")  \
  M(X, prof, BOOL, "false", 0, 0, APPLY, SHM,                                                      \
    "Sampled heap profiling: record the call stack of about one allocation per prof_sample_bytes " \
    "(published on a prof.publish request)")                                                       \
  M(X, prof_sample_bytes, COUNT, "2097152", 1024, 1073741824, LIVE, SHM,                           \
    "Mean bytes allocated between two samples of the heap profile (exponentially distributed gaps)")

/* The names of each ENUM knob's values, X(NAME, name), in the order of
 * their numbers (the segment and Prometheus carry the number). */
#define ALLOC_SHM_MODES_thp(X) X(DEFAULT, default) X(ALWAYS, always) X(NEVER, never)
#define ALLOC_SHM_MODES_metadata_thp(X) X(DISABLED, disabled) X(AUTO, auto) X(ALWAYS, always)
/* The words of each BYTES knob, X(NAME, word): the first is -1, the next -2. */
#define ALLOC_SHM_MODES_memory_limit(X) X(CGROUP, cgroup)

/* The knobs of the segment's config block, X(name, kind, help), each an
 * int64: kind INT (a number), BOOL (0/1), ENUM (an index into the names
 * given by alloc_shm_enum_name) or BYTES (a number of bytes >= 0, or a
 * word: -1 - i for the i-th name given by alloc_shm_bytes_word). */
#define ALLOC_SHM_CONFIG(X) ALLOC_SHM_KNOBS_WITH(ALLOC_SHM_CONFIG_PICK, X)
#define ALLOC_SHM_CONFIG_PICK(X, name, type, def, min, max, change, segment, help)              \
  ALLOC_SHM_IF_##segment(ALLOC_SHM_KNOB_CALL(X, name, ALLOC_SHM_KIND_##type, help))
#define ALLOC_SHM_IF_SHM(...) __VA_ARGS__
#define ALLOC_SHM_IF_PRIVATE(...)
#define ALLOC_SHM_KIND_BOOL BOOL
#define ALLOC_SHM_KIND_INT INT
#define ALLOC_SHM_KIND_COUNT INT
#define ALLOC_SHM_KIND_ENUM ENUM
#define ALLOC_SHM_KIND_BYTES BYTES
/* (no ALLOC_SHM_KIND_PATH: a path cannot be published; it would not compile) */

/* Per size class, X(name, help).  Utilisation = live / (slabs *
 * blocks_per_slab); for a large class a "slab" is one block. */
#define ALLOC_SHM_CLASS(X)                                                                       \
  X(size, "Block size in bytes")                                                                 \
  X(slab_bytes, "Bytes per slab")                                                                \
  X(blocks_per_slab, "Blocks per slab")                                                          \
  X(slabs, "Slabs in use")                                                                       \
  X(live, "Blocks handed out and not freed")                                                     \
  X(nmalloc, "Allocations so far")                                                               \
  X(nfree, "Frees so far")

/* Ratios derived from the statistics, X(name, help); computed by
 * alloc_shm_derive() below, so every reader agrees on them. */
#define ALLOC_SHM_DERIVED(X)                                                                     \
  X(fragmentation, "External fragmentation: 1 - allocated/active")                               \
  X(resident_overhead, "Resident bytes per allocated byte: resident/allocated")                  \
  X(dirty_ratio, "Share of the allocator's resident bytes that are free: dirty/resident")        \
  X(kernel_overhead, "Process RSS per allocated byte, kernel's view: kernel_rss/allocated")

#define ALLOC_SHM_FIELD_U64(name, ...) uint64_t name;
#define ALLOC_SHM_FIELD_I64(name, ...) int64_t name;
#define ALLOC_SHM_FIELD_DBL(name, ...) double name;
#define ALLOC_SHM_COUNT_ONE(name, ...) +1

typedef struct alloc_shm_stats_s {
  ALLOC_SHM_STATS(ALLOC_SHM_FIELD_U64)
} alloc_shm_stats_t;

typedef struct alloc_shm_config_s {
  ALLOC_SHM_CONFIG(ALLOC_SHM_FIELD_I64)
} alloc_shm_config_t;

typedef struct alloc_shm_class_s {
  ALLOC_SHM_CLASS(ALLOC_SHM_FIELD_U64)
} alloc_shm_class_t;

typedef struct alloc_shm_derived_s {
  ALLOC_SHM_DERIVED(ALLOC_SHM_FIELD_DBL)
} alloc_shm_derived_t;

#define ALLOC_SHM_NSTATS  (0 ALLOC_SHM_STATS(ALLOC_SHM_COUNT_ONE))
#define ALLOC_SHM_NCONFIG (0 ALLOC_SHM_CONFIG(ALLOC_SHM_COUNT_ONE))

typedef struct alloc_shm_header_s {
  uint64_t magic;
  uint32_t version, header_size;
  uint64_t file_size;
  uint32_t ring_offset, ring_slots, slot_size;
  uint32_t control_offset, control_slots, request_size;
  uint32_t nstats, nconfig, nclasses;
  int32_t pid;
  uint64_t start_time, pidns_ino, clock_ticks, created_ns;
  char exe[256];
  char comm[16];
  char version_str[16];
  uint32_t profile_offset, profile_size;
  uint8_t reserved[96];
  uint64_t interval_ms;
  uint64_t heartbeat_ns;
  uint64_t published;
} alloc_shm_header_t;

typedef struct alloc_shm_snapshot_s {
  uint64_t seq;          /* 2n-1 while snapshot n is written, 2n when complete */
  uint64_t number;       /* n: 1 for the first snapshot */
  uint64_t time_ns;      /* CLOCK_REALTIME when taken */
  uint64_t uptime_ns;    /* CLOCK_MONOTONIC when taken */
  uint64_t nclasses;     /* entries of classes[] in use */
  uint64_t checksum;     /* alloc_shm_checksum of every byte after this field */
  alloc_shm_stats_t stats;
  alloc_shm_config_t config;
  alloc_shm_class_t classes[ALLOC_SHM_MAX_CLASSES];
} alloc_shm_snapshot_t;

/* ---- the control area ----------------------------------------------------
 * A writer (allocd, allocctl) asks the process to change a knob:
 *   1. takes flock(LOCK_EX) on the file, so writers never race each other;
 *   2. picks a slot whose state is FREE (or that has been POSTED or DONE for
 *      longer than max(60 s, 3 intervals): its writer is gone);
 *   3. writes id, posted_ns, name, value and checksum (ack_id 0), then
 *      state = POSTED;
 *   4. releases the lock and waits for state DONE with ack_id == id;
 *   5. reads the acknowledgement, then (under the lock) sets state = FREE.
 *   If it gives up waiting, it takes the lock again: a request still POSTED
 *   with ack_id != id is withdrawn (state = FREE) and can never apply; one
 *   already claimed is being applied, and its acknowledgement will come.
 * The process looks at the control area at every publication.  If a slot is
 * POSTED it takes the same lock (never waiting for it: a busy lock means
 * "next time") and claims every POSTED slot by writing ack_id = id; then,
 * without the lock, for each claimed slot it checks the checksum and the
 * strings, applies the request through the same path as alloc_ctl(), writes
 * the acknowledgement fields, then state = DONE.  Anything else in the area
 * is ignored.
 *
 * name is a knob of ALLOC_SHM_CONFIG ("dirty_decay_ms"), an alloc_ctl name
 * ("opt.thp", "arena.purge"), value its text ("5000", "never", "true", ""
 * for commands).  status is 0 or an errno value: ENOENT unknown name,
 * EPERM cannot change while the process runs, EINVAL bad value or malformed
 * request; message says why in words; effective is the knob's value after
 * the request, as text. */
enum alloc_shm_request_state {
  ALLOC_SHM_REQ_FREE = 0,
  ALLOC_SHM_REQ_POSTED = 1,
  ALLOC_SHM_REQ_DONE = 2,
};

typedef struct alloc_shm_request_s {
  uint64_t state;          /* enum alloc_shm_request_state */
  uint64_t id;             /* chosen by the writer, not 0 */
  uint64_t posted_ns;      /* CLOCK_REALTIME when posted */
  uint64_t checksum;       /* alloc_shm_checksum of id, name and value */
  char name[48];
  char value[80];
  /* written by the process */
  uint64_t ack_id;         /* the id acknowledged */
  int64_t status;          /* 0 or an errno value */
  char message[120];
  char effective[88];
} alloc_shm_request_t;

/* ---- the profile area ----------------------------------------------------
 * The sampled heap profile (option `prof`): which call stacks allocated,
 * and which hold memory now.  Nobody pays for it unless asked: the process
 * writes the area only when a control request "prof.publish" (a command,
 * value "") reaches it, or alloc_ctl("prof.publish") is called.  Before it
 * acknowledges the request it has written profile number N completely, and
 * the acknowledgement's `effective` is N in decimal; a reader then reads
 * the area and accepts it only if seq == 2 * number, number >= N and the
 * checksum matches (a later request may have written a newer one).
 *
 * Area layout (offsets from profile_offset; every count is bounded by the
 * ALLOC_SHM_PROFILE_MAX_* constants and a reader rejects more):
 *     0                          alloc_shm_profile_t   128 bytes
 *     ALLOC_SHM_PROFILE_MODULES  alloc_shm_module_t    x nmodules
 *     ALLOC_SHM_PROFILE_STACKS   alloc_shm_stack_t     x nstacks
 *     ALLOC_SHM_PROFILE_FRAMES   u64 return addresses  x nframes
 *     ALLOC_SHM_PROFILE_SIZE     end
 * A stack's frames are frames[first_frame .. first_frame + depth - 1],
 * innermost first: frames[first_frame] is the return address into the
 * code that called malloc (liballoc's own frames are left out), each a
 * return address, so symbolizers look up address - 1.  Counts and bytes are
 * estimates of the whole heap, unbiased: a sample of a block counted as
 * `size` bytes (a small block's class size, any other block's requested
 * bytes: what the countdowns count) taken with mean gap `sample_bytes`
 * stands for 1 / (1 - exp(-size / sample_bytes)) blocks, and that many
 * times its requested bytes (docs/metrics.md).  `pinned_bytes` is the free but
 * resident memory in the slabs the stack's live blocks keep in use, each
 * slab's share divided among its live blocks (docs/metrics.md).
 * The module list is what dl_iterate_phdr reports: each loaded object's
 * address range, its load bias, and its file's path and GNU build ID, so a
 * reader can symbolize without reading /proc/PID/maps. */
#define ALLOC_SHM_PROFILE_MAX_MODULES 512u
#define ALLOC_SHM_PROFILE_MAX_STACKS  8192u
#define ALLOC_SHM_PROFILE_MAX_DEPTH   64u
#define ALLOC_SHM_PROFILE_MAX_FRAMES  (ALLOC_SHM_PROFILE_MAX_STACKS * ALLOC_SHM_PROFILE_MAX_DEPTH)
#define ALLOC_SHM_PROFILE_MODULES     128u
#define ALLOC_SHM_PROFILE_STACKS      (ALLOC_SHM_PROFILE_MODULES + ALLOC_SHM_PROFILE_MAX_MODULES * 328u)
#define ALLOC_SHM_PROFILE_FRAMES      (ALLOC_SHM_PROFILE_STACKS + ALLOC_SHM_PROFILE_MAX_STACKS * 64u)
#define ALLOC_SHM_PROFILE_SIZE        (ALLOC_SHM_PROFILE_FRAMES + ALLOC_SHM_PROFILE_MAX_FRAMES * 8u)

enum alloc_shm_profile_flags {
  ALLOC_SHM_PROF_ENABLED = 1,     /* sampling was on when the profile was written */
  ALLOC_SHM_PROF_TRUNCATED = 2,   /* some samples' stacks did not fit (dropped_samples) */
};

typedef struct alloc_shm_profile_s {
  uint64_t seq;             /* 2n-1 while profile n is written, 2n when complete */
  uint64_t number;          /* n: 1 for the first profile */
  uint64_t time_ns;         /* CLOCK_REALTIME when written */
  uint64_t checksum;        /* alloc_shm_checksum of the area's bytes [32, used) */
  uint64_t used;            /* ALLOC_SHM_PROFILE_FRAMES + 8 * nframes: the tables' unused
                               entries inside it are zero */
  uint64_t sample_bytes;    /* mean gap between samples in force (0: profiling off) */
  uint64_t enabled_ns;      /* CLOCK_REALTIME when sampling was last switched on (0: never) */
  uint32_t nmodules, nstacks;
  uint32_t nframes, flags;  /* enum alloc_shm_profile_flags */
  uint64_t samples;         /* samples taken since sampling was switched on */
  uint64_t dropped_samples; /* of which not in the stack table (it was full) */
  uint64_t live_samples;    /* sampled blocks not freed yet */
  uint64_t profiler_bytes;  /* the profiler's own memory (also counted in `metadata`) */
  uint64_t reserved[3];
} alloc_shm_profile_t;

typedef struct alloc_shm_module_s {
  uint64_t start, end;      /* addresses of its PT_LOAD segments in the process: [start, end) */
  uint64_t file_offset;     /* file offset mapped at `start` */
  uint64_t bias;            /* load bias (dlpi_addr): address in the process - address in the file */
  uint32_t build_id_size;   /* bytes of build_id in use, 0: none (<= 32) */
  uint32_t flags;           /* 1: the main program */
  uint8_t build_id[32];     /* NT_GNU_BUILD_ID */
  char path[256];           /* NUL-terminated; "" for the main program if unknown */
} alloc_shm_module_t;

typedef struct alloc_shm_stack_s {
  uint32_t first_frame, depth;     /* frames[first_frame .. + depth), depth <= MAX_DEPTH */
  uint64_t alloc_objects, alloc_bytes; /* estimated allocations since sampling started */
  uint64_t inuse_objects, inuse_bytes; /* estimated live blocks now */
  uint64_t pinned_bytes;           /* estimated free resident bytes its live blocks keep */
  uint64_t alloc_samples, inuse_samples; /* raw sample counts behind the estimates */
} alloc_shm_stack_t;

/* ---- helpers every reader and the writer share --------------------------- */

/* FNV-1a over 64-bit words (plus a byte tail): cheap, and any torn mix of
 * two snapshots changes it.  Not a defence against a deliberate forger: the
 * segment's owner is trusted about its own statistics. */
static inline uint64_t alloc_shm_checksum(const void *data, size_t len) {
  const unsigned char *p = (const unsigned char *)data;
  uint64_t h = 0xcbf29ce484222325ull;
  for (; len >= 8; p += 8, len -= 8) {
    uint64_t w;
    __builtin_memcpy(&w, p, 8);
    h = (h ^ w) * 0x100000001b3ull;
  }
  for (; len; p++, len--) h = (h ^ *p) * 0x100000001b3ull;
  return h;
}

#define ALLOC_SHM_SNAPSHOT_BODY_OFFSET (offsetof(alloc_shm_snapshot_t, checksum) + 8)

static inline uint64_t alloc_shm_snapshot_checksum(const alloc_shm_snapshot_t *s) {
  return alloc_shm_checksum((const char *)s + ALLOC_SHM_SNAPSHOT_BODY_OFFSET,
                            sizeof *s - ALLOC_SHM_SNAPSHOT_BODY_OFFSET);
}

static inline uint64_t alloc_shm_request_checksum(const alloc_shm_request_t *r) {
  return alloc_shm_checksum(&r->id, sizeof r->id) ^
         (alloc_shm_checksum(r->name, sizeof r->name) * 3) ^
         (alloc_shm_checksum(r->value, sizeof r->value) * 5);
}

/* The checksum of a profile area read into `area` (at least p->used bytes;
 * check used against the area's size first). */
static inline uint64_t alloc_shm_profile_checksum(const void *area, uint64_t used) {
  const size_t body = offsetof(alloc_shm_profile_t, checksum) + 8;
  return used > body ? alloc_shm_checksum((const char *)area + body, used - body) : 0;
}

static inline double alloc_shm_ratio(uint64_t a, uint64_t b) {
  return b ? (double)a / (double)b : 0.0;
}

/* The derived ratios; each is 0 when its denominator is 0. */
static inline void alloc_shm_derive(const alloc_shm_stats_t *s, alloc_shm_derived_t *d) {
  d->fragmentation = s->active ? 1.0 - alloc_shm_ratio(s->allocated, s->active) : 0.0;
  d->resident_overhead = alloc_shm_ratio(s->resident, s->allocated);
  d->dirty_ratio = alloc_shm_ratio(s->dirty, s->resident);
  d->kernel_overhead = alloc_shm_ratio(s->kernel_rss, s->allocated);
}

/* Names of ENUM config values; NULL for a value past the end or a knob
 * that is not an ENUM. */
#define ALLOC_SHM_MODE_NAME(NAME, name) #name,
#define ALLOC_SHM_ENUM_CASE(X, name, type, ...) ALLOC_SHM_ENUM_CASE_##type(name)
#define ALLOC_SHM_ENUM_CASE_BOOL(name)
#define ALLOC_SHM_ENUM_CASE_INT(name)
#define ALLOC_SHM_ENUM_CASE_COUNT(name)
#define ALLOC_SHM_ENUM_CASE_PATH(name)
#define ALLOC_SHM_ENUM_CASE_BYTES(name)
#define ALLOC_SHM_ENUM_CASE_ENUM(name)                                                           \
  if (__builtin_strcmp(knob, #name) == 0) {                                                      \
    static const char *const names[] = {ALLOC_SHM_MODES_##name(ALLOC_SHM_MODE_NAME)};           \
    return value >= 0 && value < (int64_t)(sizeof names / sizeof names[0]) ? names[value] : NULL; \
  }
static inline const char *alloc_shm_enum_name(const char *knob, int64_t value) {
  ALLOC_SHM_KNOBS_WITH(ALLOC_SHM_ENUM_CASE, ~)
  return NULL;
}

/* The word a BYTES knob's negative value stands for ("cgroup" for
 * memory_limit's -1); NULL for a value >= 0, past the words, or a knob
 * that is not BYTES. */
#define ALLOC_SHM_WORD_CASE(X, name, type, ...) ALLOC_SHM_WORD_CASE_##type(name)
#define ALLOC_SHM_WORD_CASE_BOOL(name)
#define ALLOC_SHM_WORD_CASE_INT(name)
#define ALLOC_SHM_WORD_CASE_COUNT(name)
#define ALLOC_SHM_WORD_CASE_PATH(name)
#define ALLOC_SHM_WORD_CASE_ENUM(name)
#define ALLOC_SHM_WORD_CASE_BYTES(name)                                                          \
  if (__builtin_strcmp(knob, #name) == 0) {                                                      \
    static const char *const words[] = {ALLOC_SHM_MODES_##name(ALLOC_SHM_MODE_NAME) NULL};      \
    return value < 0 && -1 - value < (int64_t)(sizeof words / sizeof words[0]) - 1 ? words[-1 - value] : NULL; \
  }
static inline const char *alloc_shm_bytes_word(const char *knob, int64_t value) {
  ALLOC_SHM_KNOBS_WITH(ALLOC_SHM_WORD_CASE, ~)
  return NULL;
}

#if defined(__cplusplus)
static_assert(sizeof(alloc_shm_header_t) == ALLOC_SHM_HEADER_SIZE, "header layout");
#else
_Static_assert(sizeof(alloc_shm_header_t) == ALLOC_SHM_HEADER_SIZE, "header layout");
_Static_assert(offsetof(alloc_shm_header_t, exe) == 96, "header layout");
_Static_assert(offsetof(alloc_shm_header_t, interval_ms) == 488, "header layout");
_Static_assert(sizeof(alloc_shm_request_t) == 384, "request layout");
_Static_assert(offsetof(alloc_shm_header_t, profile_offset) == 384, "header layout");
_Static_assert(sizeof(alloc_shm_profile_t) == ALLOC_SHM_PROFILE_MODULES, "profile layout");
_Static_assert(sizeof(alloc_shm_module_t) == 328, "profile layout");
_Static_assert(sizeof(alloc_shm_stack_t) == 64, "profile layout");
_Static_assert(sizeof(alloc_shm_snapshot_t) % 8 == 0, "snapshot layout");
/* The config block: 13 knobs.  narenas .. abort_on_invalid_free since
 * version 1, then (version 3) memory_limit, memory_limit_hard, prof and
 * prof_sample_bytes.  A knob published or withdrawn changes the layout
 * readers expect: bump ALLOC_SHM_VERSION (and teach the reader and allocd)
 * before moving these. */
_Static_assert(ALLOC_SHM_NCONFIG == 13 && sizeof(alloc_shm_config_t) == 104 &&
               offsetof(alloc_shm_config_t, abort_on_invalid_free) == 64 &&
               offsetof(alloc_shm_config_t, memory_limit) == 72 &&
               offsetof(alloc_shm_config_t, memory_limit_hard) == 80 &&
               offsetof(alloc_shm_config_t, prof) == 88 &&
               offsetof(alloc_shm_config_t, prof_sample_bytes) == 96, "config block layout");
#endif

#ifdef __cplusplus
}
#endif

#endif /* ALLOC_SHM_H */
