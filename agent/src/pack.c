/* pack.c - tagged varints for the history tables (format: pack.h).
 *
 * An integer is stored relative to its base only when both are integers
 * a double holds exactly (|x| <= 2^53); otherwise the base counts as 0.
 * Encoder and decoder apply that rule to the same base value, so they
 * always agree on it. */
#include "pack.h"

#include <math.h>
#include <string.h>

#define EXACT_LIMIT 9007199254740992.0   /* 2^53 */
#define TAG_DOUBLE 1

/* -0.0 is kept as a double so that every value comes back bit for bit. */
static bool exact_integer(double x) { return x == trunc(x) && fabs(x) <= EXACT_LIMIT && !signbit(x) == !(x < 0); }

static double effective_base(const double *base, int i) {
  return base && exact_integer(base[i]) ? base[i] : 0;
}

size_t pack_put_varint(uint8_t *out, uint64_t u) {
  size_t n = 0;
  while (u >= 0x80) {
    out[n++] = (uint8_t)(u | 0x80);
    u >>= 7;
  }
  out[n++] = (uint8_t)u;
  return n;
}

bool pack_get_varint(const uint8_t *in, size_t len, size_t *pos, uint64_t *u) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*pos >= len) return false;
    uint8_t b = in[(*pos)++];
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *u = v;
      return true;
    }
  }
  return false;   /* more than 10 bytes: not ours */
}

size_t pack_values(const double *v, int n, const double *base, uint8_t *out) {
  size_t len = 0;
  for (int i = 0; i < n; i++) {
    double b = effective_base(base, i);
    if (exact_integer(v[i])) {
      int64_t d = (int64_t)v[i] - (int64_t)b;                    /* |d| <= 2^54 */
      uint64_t zigzag = ((uint64_t)d << 1) ^ (uint64_t)(d >> 63);
      len += pack_put_varint(out + len, zigzag << 1);
    } else {   /* fractions, NaN, infinities, huge values */
      out[len++] = TAG_DOUBLE;
      uint64_t bits;
      memcpy(&bits, &v[i], sizeof bits);
      for (int k = 0; k < 8; k++) out[len++] = (uint8_t)(bits >> (8 * k));
    }
  }
  return len;
}

bool unpack_values(const uint8_t *in, size_t len, size_t *pos, int n, const double *base, double *out) {
  for (int i = 0; i < n; i++) {
    uint64_t u;
    if (!pack_get_varint(in, len, pos, &u)) return false;
    if (u == TAG_DOUBLE) {
      if (len - *pos < 8) return false;
      uint64_t bits = 0;
      for (int k = 0; k < 8; k++) bits |= (uint64_t)in[(*pos)++] << (8 * k);
      memcpy(&out[i], &bits, sizeof bits);
      continue;
    }
    if (u & 1) return false;
    uint64_t zigzag = u >> 1;
    int64_t d = (int64_t)(zigzag >> 1) ^ -(int64_t)(zigzag & 1);
    out[i] = (double)(int64_t)((uint64_t)(int64_t)effective_base(base, i) + (uint64_t)d);   /* no UB on hostile input */
  }
  return true;
}
