/* idle_threads.c - real time, real process (liballoc preloaded): memory that
 * idle threads' heaps hold comes back within the decay time.
 *
 *   idle_threads MS   (ALLOC_CONF=dirty_decay_ms:MS,muzzy_decay_ms:0)
 *
 * THREADS threads each allocate, touch and free four blocks of 96-240 KiB,
 * then block on a condition variable.  Those blocks stay in their heaps:
 * large classes in the large-block cache, the others as their class's
 * emptied current slab.  Nothing frees to an arena afterwards, no thread
 * runs malloc again: only the background purger can take them back.  The
 * process's RSS must come down to within SLACK_BYTES of what it was before
 * the blocks were allocated, MS + 1000 ms after the last free at the
 * latest.  Exits 77 (skip) when liballoc is not preloaded. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rss.h"

#define THREADS 200
#define BLOCKS 4
#define SLACK_BYTES ((size_t)12 << 20)

static pthread_barrier_t ready, allocated;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t release = PTHREAD_COND_INITIALIZER;
static int done;

static void *idle_thread(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  void *blocks[BLOCKS];
  pthread_barrier_wait(&ready);
  for (int i = 0; i < BLOCKS; i++) {
    size_t size = (96 + (size_t)(rand_r(&seed) % 145)) << 10;   /* 96..240 KiB */
    blocks[i] = malloc(size);
    if (blocks[i]) memset(blocks[i], 0x5a, size);
  }
  for (int i = 0; i < BLOCKS; i++) free(blocks[i]);
  pthread_barrier_wait(&allocated);
  pthread_mutex_lock(&lock);
  while (!done) pthread_cond_wait(&release, &lock);   /* idle: blocked, no malloc */
  pthread_mutex_unlock(&lock);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIRTY_DECAY_MS\n", argv[0]);
    return 2;
  }
  if (!dlsym(RTLD_DEFAULT, "alloc_ctl")) {
    fprintf(stderr, "idle_threads: liballoc is not preloaded\n");
    return 77;
  }
  long decay_ms = atol(argv[1]);
  pthread_t tids[THREADS];
  pthread_barrier_init(&ready, NULL, THREADS + 1);
  pthread_barrier_init(&allocated, NULL, THREADS + 1);
  for (int i = 0; i < THREADS; i++)
    if (pthread_create(&tids[i], NULL, idle_thread, (void *)(uintptr_t)(i + 1)) != 0) {
      fprintf(stderr, "idle_threads: pthread_create failed\n");
      return 1;
    }
  sleep_ms(100);   /* every thread started, waiting to allocate */
  size_t baseline = rss_bytes();
  pthread_barrier_wait(&ready);
  pthread_barrier_wait(&allocated);
  uint64_t freed_at = now_ms();
  size_t peak = rss_bytes(), rss = peak;
  while (now_ms() - freed_at <= (uint64_t)decay_ms + 1000) {
    rss = rss_bytes();
    if (rss <= baseline + SLACK_BYTES) break;
    sleep_ms(20);
  }
  uint64_t took = now_ms() - freed_at;
  printf("idle_threads: baseline %zu KiB, after the frees %zu KiB, then %zu KiB at %llu ms (decay %ld ms)\n",
         baseline >> 10, peak >> 10, rss >> 10, (unsigned long long)took, decay_ms);
  pthread_mutex_lock(&lock);
  done = 1;
  pthread_cond_broadcast(&release);
  pthread_mutex_unlock(&lock);
  for (int i = 0; i < THREADS; i++) pthread_join(tids[i], NULL);
  if (rss > baseline + SLACK_BYTES) {
    fprintf(stderr, "idle_threads: FAIL: idle threads still hold %zu KiB above the baseline after %llu ms\n",
            (rss - baseline) >> 10, (unsigned long long)took);
    return 1;
  }
  return 0;
}
