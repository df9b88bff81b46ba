/* symbolize.h - return addresses to function names and file:line, in
 * allocd, from the ELF symbol tables and DWARF of the files a process's
 * profile lists as its modules (alloc_shm.h, the profile area).
 *
 * The module list is the process's claim, so a file is used only when:
 *   - its path is absolute and leads to a regular file (opened O_PATH and
 *     checked with fstat before it is opened for reading: a FIFO or a
 *     device is never opened), at most SYM_FILE_MAX bytes;
 *   - the profiled process's owner could read it by its mode bits: root,
 *     or the file is world-readable, or it is the owner's and
 *     owner-readable, and every directory on the path, and on the path
 *     it leads to with symlinks followed, is searchable the same way
 *     (allocd, root, must not reveal what the owner could not
 *     read; group rights are not counted: a group-only file gives
 *     addresses only);
 *   - its GNU build ID equals the one the module claims (a module without
 *     one: the file must have none either).
 * The file is read whole into memory (never mapped: its owner could
 * truncate it under a mapping), parsed with libelf/libdw, and cached by
 * build ID (at most SYM_CACHE entries and SYM_CACHE_BYTES bytes).
 * Detached debug information is looked for only in the system's
 * /usr/lib/debug/.build-id/xx/yyyy.debug, never next to a path the process
 * gave.  A file that fails a check gives addresses plus build IDs, not an
 * error.
 *
 * One symbolization at a time (a mutex over a session), each bounded:
 * at most SYM_LOADS_PER_SESSION files read, and no lookups after its
 * deadline (then addresses only). */
#ifndef ALLOCD_SYMBOLIZE_H
#define ALLOCD_SYMBOLIZE_H

#include <alloc_shm.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SYM_FILE_MAX ((uint64_t)256 << 20)
#define SYM_CACHE 32
#define SYM_CACHE_BYTES ((uint64_t)1 << 30)
#define SYM_LOADS_PER_SESSION 16

typedef struct symbolizer_s symbolizer_t;
typedef struct sym_binary_s sym_binary_t;

#define SYM_MAX_INLINE 8   /* inlined calls reported per address */

/* What an address resolves to: the function and line, innermost first,
 * then (when the code at addr was inlined) each function it was inlined
 * into with the line of that call; the last is the function the address
 * physically belongs to.  Strings belong to the binary's cache entry and
 * stay valid until sym_end. */
typedef struct sym_line_s {
  const char *function;   /* NULL: no symbol covers the address */
  const char *file;       /* NULL: no line information */
  int line;
} sym_line_t;

typedef struct sym_frame_s {
  sym_line_t lines[SYM_MAX_INLINE + 1];
  int nlines;             /* at least 1 when sym_lookup returns true */
} sym_frame_t;

symbolizer_t *sym_new(void);
void sym_free(symbolizer_t *s);

/* A session: takes the symbolizer's lock until sym_end; lookups stop
 * answering after deadline_ms (CLOCK_MONOTONIC). */
void sym_begin(symbolizer_t *s, uint64_t deadline_ms);
void sym_end(symbolizer_t *s);

/* The binary of module m (in a session), or NULL with *why set (static
 * text) when its file cannot be used.  owner: the profiled process's uid;
 * main_exe: the kernel's path of its executable (/proc/PID/exe), used for
 * the main program when the module gives no path, or NULL. */
sym_binary_t *sym_binary(symbolizer_t *s, const alloc_shm_module_t *m, const char *main_exe, uid_t owner,
                         const char **why);

/* Resolve addr, an address in the file's own terms (process address minus
 * the module's bias).  False once the deadline has passed or nothing is
 * known about addr. */
bool sym_lookup(symbolizer_t *s, sym_binary_t *b, uint64_t addr, sym_frame_t *out);

/* Counters since start: files loaded, cache hits, files refused. */
void sym_counters(symbolizer_t *s, uint64_t *loads, uint64_t *hits, uint64_t *refused);

#endif
