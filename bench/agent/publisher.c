/* publisher.c - a long-lived process for bench/agent/run to preload
 * liballoc into: one of the N telemetry publishers allocd collects from.
 *
 *   publisher [MAX_SECONDS]
 *
 * Holds a small heap of mixed sizes (~1 MiB), then every 250 ms frees and
 * reallocates a few blocks, so its statistics (and so the samples allocd
 * stores) change as a real service's would.  It prints "ready <pid>" and
 * runs until SIGTERM or SIGINT, then frees everything and returns from main
 * (liballoc removes its segment at exit, as for a normal exit).  It also
 * stops by itself after MAX_SECONDS (default 3600) or when its parent dies,
 * so an interrupted benchmark leaves nothing running.  Built by the script
 * itself (cc -O2), without liballoc: it is preloaded. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

enum { SLOTS = 512, CHURN_PER_STEP = 8, STEP_MS = 250 };

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

/* Mostly small blocks, some medium, a few large: ~1 MiB in all. */
static size_t pick_size(unsigned *seed) {
  unsigned r = (unsigned)rand_r(seed);
  if (r % 64 == 0) return 16384 + r % 49152;
  if (r % 8 == 0) return 512 + r % 3584;
  return 16 + r % 496;
}

int main(int argc, char **argv) {
  long max_s = argc > 1 ? atol(argv[1]) : 3600;
  pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) return 0;   /* the parent died before prctl */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;   /* no SA_RESTART: nanosleep returns at once */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  unsigned seed = (unsigned)getpid();
  void **slot = calloc(SLOTS, sizeof *slot);
  if (!slot) return 1;
  for (int i = 0; i < SLOTS; i++) {
    size_t n = pick_size(&seed);
    slot[i] = malloc(n);
    if (slot[i]) memset(slot[i], 0x5a, n);
  }
  printf("ready %d\n", (int)getpid());
  fflush(stdout);

  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (!stop) {
    for (int k = 0; k < CHURN_PER_STEP; k++) {
      int i = rand_r(&seed) % SLOTS;
      free(slot[i]);
      size_t n = pick_size(&seed);
      slot[i] = malloc(n);
      if (slot[i]) memset(slot[i], 0x5a, n);
    }
    struct timespec ts = {0, STEP_MS * 1000000L};
    nanosleep(&ts, NULL);
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec >= max_s) break;
  }
  for (int i = 0; i < SLOTS; i++) free(slot[i]);
  free(slot);
  return 0;
}
