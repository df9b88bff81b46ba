/* decay_rt.c - real time, real process (liballoc preloaded): a burst freed
 * by a process that then goes idle comes back to the OS within the decay
 * time, thanks to the background purger; it stays with decay -1; and it
 * follows a decay time changed at run time through alloc_ctl.
 *
 *   decay_rt decay MS   (ALLOC_CONF=dirty_decay_ms:MS,muzzy_decay_ms:0)
 *   decay_rt never      (ALLOC_CONF=dirty_decay_ms:-1)
 *   decay_rt change MS  (ALLOC_CONF=dirty_decay_ms:-1; sets MS while idle)
 *   decay_rt fork MS    (the parent's purger runs; a forked child frees a
 *                        burst and idles: the child's purger must start)
 *
 * The idle wait is generous (decay time + SLACK_MS): the point is that the
 * memory comes back without the program calling malloc, not how fast. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

#include "rss.h"

#define BURST_LARGE ((size_t)96 << 20)   /* in 256 KiB blocks */
#define BURST_SMALL ((size_t)32 << 20)   /* in 256-byte blocks */
#define SLACK_MS 2500

typedef int (*ctl_fn)(const char *, void *, size_t *, void *, size_t);

static size_t baseline;

static void burst_and_free(void) {
  size_t nl = BURST_LARGE / (256 << 10), ns = BURST_SMALL / 256;
  void **large = malloc(nl * sizeof *large), **small = malloc(ns * sizeof *small);
  for (size_t i = 0; i < nl; i++) memset(large[i] = malloc(256 << 10), 1, 256 << 10);
  for (size_t i = 0; i < ns; i++) memset(small[i] = malloc(256), 2, 256);
  printf("after burst: rss %zu MiB (baseline %zu MiB)\n", rss_bytes() >> 20, baseline >> 20);
  for (size_t i = 0; i < nl; i++) free(large[i]);
  for (size_t i = 0; i < ns; i++) free(small[i]);
  free(large);
  free(small);
  printf("after free: rss %zu MiB\n", rss_bytes() >> 20);
}

static size_t burst_bytes(void) { return BURST_LARGE + BURST_SMALL; }

/* Idle until RSS is within 20% of the burst above the baseline; returns
 * the milliseconds it took, or -1 after `limit_ms`. */
static long wait_for_return(long limit_ms) {
  uint64_t start = now_ms();
  while ((long)(now_ms() - start) <= limit_ms) {
    if (rss_bytes() <= baseline + burst_bytes() / 5) return (long)(now_ms() - start);
    sleep_ms(50);
  }
  return -1;
}

static int fail(const char *what) {
  printf("FAIL: %s (rss %zu MiB, baseline %zu MiB)\n0 passed, 1 failed\n", what, rss_bytes() >> 20,
         baseline >> 20);
  return 1;
}

static int pass(void) {
  printf("1 passed, 0 failed\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return fail("usage: decay_rt decay MS | never | change MS");
  ctl_fn ctl = (ctl_fn)dlsym(RTLD_DEFAULT, "alloc_ctl");
  if (!ctl) return fail("liballoc is not preloaded");
  baseline = rss_bytes();
  burst_and_free();
  if (strcmp(argv[1], "fork") == 0 && argc == 3) {
    long ms = atol(argv[2]);
    if (wait_for_return(ms + SLACK_MS) < 0) return fail("parent: memory did not return");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      baseline = rss_bytes();
      burst_and_free();
      long took = wait_for_return(ms + SLACK_MS);
      printf("child: %s after %ld ms\n", took < 0 ? "NOT returned" : "returned", took);
      fflush(stdout);
      _exit(took < 0 ? 1 : 0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return fail("child kept its freed memory");
    return pass();
  }
  if (strcmp(argv[1], "decay") == 0 && argc == 3) {
    long ms = atol(argv[2]);
    long took = wait_for_return(ms + SLACK_MS);
    if (took < 0) return fail("freed memory did not return within the decay time");
    printf("returned after %ld ms idle (dirty_decay_ms %ld)\n", took, ms);
    return pass();
  }
  if (strcmp(argv[1], "never") == 0) {
    sleep_ms(1500);
    if (rss_bytes() < baseline + burst_bytes() * 7 / 10) return fail("memory returned with decay -1");
    printf("still resident after 1500 ms: rss %zu MiB\n", rss_bytes() >> 20);
    return pass();
  }
  if (strcmp(argv[1], "change") == 0 && argc == 3) {
    sleep_ms(500);
    if (rss_bytes() < baseline + burst_bytes() * 7 / 10) return fail("memory returned before the change");
    ssize_t ms = atol(argv[2]);
    if (ctl("opt.dirty_decay_ms", NULL, NULL, &ms, sizeof ms) != 0) return fail("alloc_ctl refused");
    long took = wait_for_return(ms + SLACK_MS);
    if (took < 0) return fail("memory did not follow the new decay time");
    printf("returned %ld ms after dirty_decay_ms became %zd\n", took, ms);
    return pass();
  }
  return fail("unknown mode");
}
