/* fuzz_segment.c - libFuzzer target: the telemetry segment reader on any
 * file contents.  The input is written to a file and opened, validated and
 * read the way allocd does (every snapshot the header claims, then a
 * control request with no wait); nothing may crash, hang or read out of
 * bounds.  Seeds: real segments (tests/fuzz/corpus/segment). */
#include <alloc_shm_reader.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz-segment.%d", (int)getpid());
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return 0;
  if (size && write(fd, data, size) != (ssize_t)size) {
    close(fd);
    return 0;
  }
  close(fd);
  alloc_shm_segment_t seg;
  if (alloc_shm_open(&seg, AT_FDCWD, path, ALLOC_SHM_ANY_OWNER) == 0) {
    static alloc_shm_snapshot_t snap;
    uint64_t last = seg.header.published, first = alloc_shm_oldest(&seg);
    for (uint64_t n = first; n <= last && n - first < 64; n++) alloc_shm_read(&seg, n, &snap);
    alloc_shm_refresh(&seg);
    alloc_shm_request_t ack;
    alloc_shm_post(&seg, "dirty_decay_ms", "1000", 1, 0, &ack);
    alloc_shm_close(&seg);
  }
  return 0;
}
