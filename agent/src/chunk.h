/* chunk.h - a run of one owner's raw samples in one row (schema/006).
 *
 * A raw sample used to be a row of its own: ~150 bytes on disk for ~90
 * bytes of packed values, the rest its key and index entries, and nearly
 * all of its 43 values the same as the sample before it.  A chunk holds
 * consecutive samples of one owner (a process, or a host series) in one
 * BLOB, in time order:
 *
 *   offset  what
 *   0       the first sample's values, pack_values(v, n, NULL): the same
 *           bytes a raw row held before, so an old row is a one-sample chunk
 *   ...     each further sample:
 *             varint  zigzag(t - previous t)             (ms)
 *             varint  zigzag(number - previous number)
 *             ceil(n / 8) bytes: bit i (byte i / 8, bit i % 8) set when
 *                                value i differs from its guess
 *             for each set bit, in order: pack_values(&v[i], 1, &prev[i])
 *
 * A value's guess is its value in the previous sample, or, for a value the
 * chunk's owner computes from the sample's others (a process's derived
 * ratios, fragmentation = 1 - allocated/active...: chunk_guess_fn), what
 * that computation gives from the values of this sample as decoded (the
 * bits clear taken as their previous values).  Such a ratio changes with
 * every sample and would cost 9 bytes as a double; guessed, it costs its
 * bit.  Writer and reader must apply the same guess to the same values.
 *
 * The first sample's time and number are the row's key columns (t,
 * number), not in the BLOB.  n is the number of metrics in the row's
 * layout.  A chunk is closed once it spans CHUNK_SPAN_MS or its BLOB
 * reaches CHUNK_MAX_BYTES, so that a row stays on its B-tree page (a
 * 4 KiB page keeps ~1000 bytes of a row in place; more spills onto an
 * overflow page of its own) and a query knows how far before its start
 * a chunk holding its first sample can begin.  Rows are read from the
 * database, which anyone who can write the file may have changed: the
 * reader never reads outside the BLOB and says when it is malformed. */
#ifndef ALLOCD_CHUNK_H
#define ALLOCD_CHUNK_H

#include "pack.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHUNK_SPAN_MS 60000     /* a chunk's samples are less than this apart from its first */
#define CHUNK_MAX_BYTES 896     /* a chunk is closed once its BLOB is this long */
#define CHUNK_MAX_VALUES 512    /* values per sample a reader decodes (layouts longer are refused) */
/* The most one sample adds to a chunk of n values. */
#define CHUNK_ENTRY_MAX(n) (2 * PACK_MAX + ((n) + 7) / 8 + (n) * PACK_MAX)

/* Overwrite in guess[] the values that can be computed from the others of
 * row[] (the sample's values); leave the rest.  ctx is the caller's. */
typedef void chunk_guess_fn(const void *ctx, const double *row, double *guess);

/* Append the sample (t, number, v[0..n)) after the one before it (prev_t,
 * prev_number, prev[0..n)); returns the bytes written at out.  guess may
 * be NULL (every value guessed as its previous one). */
size_t chunk_append(int64_t prev_t, uint64_t prev_number, const double *prev, int64_t t, uint64_t number,
                    const double *v, int n, chunk_guess_fn *guess, const void *ctx, uint8_t *out);

/* Reading a chunk, sample by sample: after chunk_first or a chunk_next
 * that returned true, t, number and v[0..n) are the current sample's. */
typedef struct chunk_reader_s {
  const uint8_t *blob;
  size_t len, pos;
  int n;
  chunk_guess_fn *guess;
  const void *ctx;
  int64_t t;
  uint64_t number;
  double v[CHUNK_MAX_VALUES];
} chunk_reader_t;

/* The first sample (the row's key gives its t and number); false if the
 * BLOB is malformed or n is out of range.  guess and ctx as the writer's. */
bool chunk_first(chunk_reader_t *r, const uint8_t *blob, size_t len, int n, int64_t t, uint64_t number,
                 chunk_guess_fn *guess, const void *ctx);
/* The next sample; false at the end of the chunk or if the rest is
 * malformed (chunk_at_end tells which). */
bool chunk_next(chunk_reader_t *r);
bool chunk_at_end(const chunk_reader_t *r);

#endif
