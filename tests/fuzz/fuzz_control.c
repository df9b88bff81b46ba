/* fuzz_control.c - libFuzzer target: the process's side of the control
 * area.  The first byte chooses: a text request (name NUL value) applied
 * through la_ctl_apply_text, or a whole control area of request slots read
 * by la_control_serve from a file.  Whatever the bytes, the allocator keeps
 * running and acknowledges or ignores them. */
#define _GNU_SOURCE   /* memmem */
#include "alloc_internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void text_request(const uint8_t *data, size_t size) {
  char buf[512];
  if (size >= sizeof buf) size = sizeof buf - 1;
  memcpy(buf, data, size);
  buf[size] = 0;
  const char *value = memchr(buf, 0, size) ? buf + strlen(buf) + 1 : "";
  if (value > buf + size) value = "";
  /* Knobs that would change how the fuzzer process itself behaves are
   * still parsed, but not applied. */
  if (strstr(buf, "abort_on_invalid_free") || strstr(buf, "stats_print")) return;
  char effective[88], msg[120];
  la_ctl_apply_text(buf, value, effective, sizeof effective, msg, sizeof msg);
}

/* Does the name field (not NUL-terminated when the bytes fill it) contain
 * `knob`?  strstr would read past the field, and past the last slot. */
static bool names(const char *field, size_t n, const char *knob) {
  return memmem(field, strnlen(field, n), knob, strlen(knob)) != NULL;
}

static void control_area(const uint8_t *data, size_t size, bool valid_checksums) {
  static char path[64];
  if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz-control.%d", (int)getpid());
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return;
  static alloc_shm_request_t slots[ALLOC_SHM_CONTROL_SLOTS];
  memset(slots, 0, sizeof slots);
  memcpy(slots, data, size < sizeof slots ? size : sizeof slots);
  for (unsigned i = 0; i < ALLOC_SHM_CONTROL_SLOTS; i++) {
    if (names(slots[i].name, sizeof slots[i].name, "abort_on_invalid_free") ||
        names(slots[i].name, sizeof slots[i].name, "stats_print"))
      slots[i].state = 0;
    /* Half the time, a valid checksum, so the request reaches la_ctl. */
    if (valid_checksums) slots[i].checksum = alloc_shm_request_checksum(&slots[i]);
  }
  if (write(fd, slots, sizeof slots) == (ssize_t)sizeof slots) {
    alloc_shm_header_t h;
    memset(&h, 0, sizeof h);
    h.control_offset = 0;
    h.control_slots = ALLOC_SHM_CONTROL_SLOTS;
    la_control_serve(fd, &h);
  }
  close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (data[0] & 0x80) control_area(data + 1, size - 1, data[0] & 1);
  else text_request(data + 1, size - 1);
  return 0;
}
