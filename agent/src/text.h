/* text.h - text that comes from outside allocd (a segment's header, a
 * process's /proc entries), made safe once where it is read in.
 *
 * An executable may be named with any bytes and a thread name set to any
 * bytes (prctl PR_SET_NAME), but JSON (jansson refuses invalid UTF-8) and
 * Prometheus label values need valid UTF-8, and logs need no control
 * characters.  Everything allocd keeps of such text goes through
 * text_clean, so the rest of allocd can treat it as ordinary text. */
#ifndef ALLOCD_TEXT_H
#define ALLOCD_TEXT_H

#include <stddef.h>

/* Copy the first `len` bytes of `in` (stopping at a NUL) into `out`, NUL
 * terminated: valid UTF-8 is kept as it is, except that a backslash
 * becomes "\\"; every byte that is not part of valid UTF-8 (stray
 * continuation bytes, overlong forms, surrogates, code points above
 * U+10FFFF, truncated sequences) and every C0 control character and DEL
 * becomes "\xNN".  So the result is valid UTF-8 without control
 * characters, and the original bytes can be read back from it.  Text
 * that does not fit is cut at a character boundary.  Returns the length
 * of the result.  size must be at least 1. */
size_t text_clean(const char *in, size_t len, char *out, size_t size);

#endif
