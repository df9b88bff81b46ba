/* pack.h - the compact binary form of a row of metric values, as the
 * history tables store them.
 *
 * Each value is a varint: even, it is an integer (zigzag, relative to a
 * base value); the single byte 1 instead announces 8 bytes of IEEE double.
 * Most statistics are byte or event counts, so a row of 37 metrics packs
 * into ~150 bytes where its JSON took ~1.3 KB; a rollup's min, max and
 * average are packed relative to its last value, so a steady metric costs
 * one byte for each.  Rows are self-contained (no reference to earlier
 * rows) so any one can be decoded alone. */
#ifndef ALLOCD_PACK_H
#define ALLOCD_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most a value takes packed; a row of n values fits in n * PACK_MAX. */
#define PACK_MAX 10

/* Append n values (each relative to base[i], or to 0 if base is NULL) at
 * out; returns the bytes written.  out must hold n * PACK_MAX bytes. */
size_t pack_values(const double *v, int n, const double *base, uint8_t *out);

/* Read n values packed by pack_values from in[*pos..len) into out,
 * advancing *pos.  False if the bytes run out or are malformed: a corrupt
 * row never reads outside its buffer. */
bool unpack_values(const uint8_t *in, size_t len, size_t *pos, int n, const double *base, double *out);

/* One unsigned LEB128 varint (up to PACK_MAX bytes) at out; the bytes
 * written.  Reading one from in[*pos..len) advances *pos; false if the
 * bytes run out or it is longer than 10 bytes.  chunk.c uses them too. */
size_t pack_put_varint(uint8_t *out, uint64_t u);
bool pack_get_varint(const uint8_t *in, size_t len, size_t *pos, uint64_t *u);

#endif
