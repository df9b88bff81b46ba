/* text.c - text_clean: any bytes to valid UTF-8 without control
 * characters (text.h says why). */
#include "text.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (at most `left` bytes), or 0 if
 * it is not one.  The ranges are those of RFC 3629: no overlong forms, no
 * surrogates (U+D800..DFFF), nothing above U+10FFFF. */
static size_t utf8_length(const unsigned char *p, size_t left) {
  unsigned char c = p[0];
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf;   /* the allowed range of the second byte */
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c == 0xe0) n = 3, lo = 0xa0;
  else if (c == 0xed) n = 3, hi = 0x9f;
  else if (c >= 0xe1 && c <= 0xef) n = 3;
  else if (c == 0xf0) n = 4, lo = 0x90;
  else if (c >= 0xf1 && c <= 0xf3) n = 4;
  else if (c == 0xf4) n = 4, hi = 0x8f;
  else return 0;
  if (left < n || p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < n; i++)
    if (p[i] < 0x80 || p[i] > 0xbf) return 0;
  return n;
}

size_t text_clean(const char *in, size_t len, char *out, size_t size) {
  const unsigned char *p = (const unsigned char *)in;
  size_t end = 0, o = 0;
  while (end < len && p[end]) end++;
  for (size_t i = 0; i < end;) {
    char esc[5];
    const char *piece = (const char *)p + i;
    size_t n = utf8_length(p + i, end - i), put = n;
    if (n == 1 && p[i] == '\\') {
      piece = "\\\\", put = 2;
    } else if (n == 0 || (n == 1 && (p[i] < 0x20 || p[i] == 0x7f))) {
      snprintf(esc, sizeof esc, "\\x%02x", p[i]);
      piece = esc, put = 4, n = 1;
    }
    if (o + put >= size) break;   /* cut before a character that does not fit */
    memcpy(out + o, piece, put);
    o += put;
    i += n;
  }
  out[o] = 0;
  return o;
}
