/* chunk.c - consecutive raw samples in one BLOB (format: chunk.h).
 * The varints are pack.c's; a value that changed is packed relative to
 * its previous value, so a counter that moved by a few hundred costs two
 * bytes, and a value that did not move costs nothing but its bit. */
#include "chunk.h"

#include <string.h>

/* Zigzag varints for the time and number steps: all 64 bits kept (a
 * segment's numbers are whatever its writer put there), where a value of
 * pack_values is a double. */
static size_t put_signed(uint8_t *out, int64_t d) {
  return pack_put_varint(out, ((uint64_t)d << 1) ^ (uint64_t)(d >> 63));
}

static bool get_signed(const uint8_t *in, size_t len, size_t *pos, int64_t *d) {
  uint64_t u;
  if (!pack_get_varint(in, len, pos, &u)) return false;
  *d = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
  return true;
}

/* Bit for bit, so that NaN and -0.0 count as what they are. */
static bool same(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

size_t chunk_append(int64_t prev_t, uint64_t prev_number, const double *prev, int64_t t, uint64_t number,
                    const double *v, int n, chunk_guess_fn *guess, const void *ctx, uint8_t *out) {
  double guessed[CHUNK_MAX_VALUES];
  memcpy(guessed, prev, (size_t)n * sizeof *guessed);
  if (guess) guess(ctx, v, guessed);
  size_t len = put_signed(out, t - prev_t);
  len += put_signed(out + len, (int64_t)(number - prev_number));
  uint8_t *bits = out + len;
  size_t nbytes = ((size_t)n + 7) / 8;
  memset(bits, 0, nbytes);
  len += nbytes;
  for (int i = 0; i < n; i++) {
    if (same(v[i], guessed[i])) continue;
    bits[i / 8] |= (uint8_t)(1u << (i % 8));
    len += pack_values(&v[i], 1, &prev[i], out + len);
  }
  return len;
}

bool chunk_first(chunk_reader_t *r, const uint8_t *blob, size_t len, int n, int64_t t, uint64_t number,
                 chunk_guess_fn *guess, const void *ctx) {
  r->blob = blob, r->len = len, r->pos = 0, r->n = n, r->t = t, r->number = number, r->guess = guess, r->ctx = ctx;
  return blob && n > 0 && n <= CHUNK_MAX_VALUES && unpack_values(blob, len, &r->pos, n, NULL, r->v);
}

bool chunk_at_end(const chunk_reader_t *r) { return r->pos == r->len; }

bool chunk_next(chunk_reader_t *r) {
  int64_t dt, dnumber;
  size_t pos = r->pos, nbytes = ((size_t)r->n + 7) / 8;
  if (chunk_at_end(r) || !get_signed(r->blob, r->len, &pos, &dt) || !get_signed(r->blob, r->len, &pos, &dnumber) ||
      r->len - pos < nbytes)
    return false;
  const uint8_t *bits = r->blob + pos;
  pos += nbytes;
  double v[CHUNK_MAX_VALUES], guessed[CHUNK_MAX_VALUES];
  memcpy(v, r->v, (size_t)r->n * sizeof *v);
  for (int i = 0; i < r->n; i++)
    if ((bits[i / 8] >> (i % 8) & 1) && !unpack_values(r->blob, r->len, &pos, 1, &r->v[i], &v[i])) return false;
  if (r->guess) {   /* from the values as decoded so far, as the writer did from the sample's */
    memcpy(guessed, v, (size_t)r->n * sizeof *v);
    r->guess(r->ctx, v, guessed);
    for (int i = 0; i < r->n; i++)
      if (!(bits[i / 8] >> (i % 8) & 1)) v[i] = guessed[i];
  }
  memcpy(r->v, v, (size_t)r->n * sizeof *v);
  r->pos = pos;
  r->t = (int64_t)((uint64_t)r->t + (uint64_t)dt);   /* wraps instead of overflowing on hostile bytes */
  r->number += (uint64_t)dnumber;
  return true;
}
