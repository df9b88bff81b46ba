/* secure_probe.c - the program tests/secure/setuid_ignores_env runs, once
 * plain and once as a set-user-ID copy.  It is statically linked with
 * liballoc (the brief's threat: liballoc linked into a setuid binary) and
 * prints what the kernel told it (AT_SECURE), which telemetry_dir liballoc
 * took (ALLOC_CONF) and whether an 8 MiB block could be mapped (which
 * ALLOC_FAULTS=mmap:p=1 prevents), so the driver can compare the runs. */
#include <alloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>

int main(void) {
  void *p = malloc(64);   /* the allocator reads its configuration here */
  free(p);
  const char *dir = NULL;
  size_t len = sizeof dir;
  int err = alloc_ctl("opt.telemetry_dir", &dir, &len, NULL, 0);
  if (err) {
    fprintf(stderr, "secure_probe: alloc_ctl(opt.telemetry_dir) failed: %d\n", err);
    return 2;
  }
  void *big = malloc(8 << 20);
  printf("at_secure=%lu telemetry_dir=%s big_malloc=%s\n", getauxval(AT_SECURE), dir, big ? "ok" : "failed");
  free(big);
  return 0;
}
