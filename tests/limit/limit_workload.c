/* limit_workload.c - the container case of issue 20: memory freed as blocks
 * of one size, then as much allocated as blocks of another.  Built without
 * liballoc, run under whatever allocator is preloaded (or glibc's).
 *
 *   limit_workload MODE MIB [STATS_FILE]
 *     issue     MIB in 4 MiB blocks, all freed, then MIB in 64 B blocks
 *     classes   MIB in 1 KiB blocks, all freed, then MIB in 3 KiB blocks
 *     large     MIB in 256 KiB blocks, all freed, then MIB in 64 B blocks
 *     threads   MIB in 1 KiB blocks allocated and freed by one thread, then
 *               MIB in 3 KiB blocks by another (which liballoc puts on
 *               another arena: its free units must serve the other one)
 *
 * Every block is written (its pages are resident).  An allocation that
 * fails is a clean error path: the program frees what it holds and exits
 * with 3 ("ENOMEM"), so a hard limit shows as exit 3, not as a kill.  The
 * peak RSS (VmHWM) goes to stdout; with STATS_FILE, and liballoc loaded,
 * alloc_stats_print's JSON goes there at the end. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  void **v;
  size_t n, cap;
} blocks_t;

static void push(blocks_t *b, void *p) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 1024;
    void **v = realloc(b->v, cap * sizeof *v);
    if (!v) {
      fprintf(stderr, "limit_workload: ENOMEM growing the block list\n");
      exit(3);
    }
    b->v = v;
    b->cap = cap;
  }
  b->v[b->n++] = p;
}

static void release(blocks_t *b) {
  for (size_t i = 0; i < b->n; i++) free(b->v[i]);
  free(b->v);
  *b = (blocks_t){0};
}

/* Allocate `total` bytes in blocks of `size` into b; false (and errno
 * ENOMEM) as soon as one allocation fails. */
static int fill(blocks_t *b, size_t size, size_t total) {
  for (size_t done = 0; done < total; done += size) {
    char *p = malloc(size);
    if (!p) return 0;
    for (size_t i = 0; i < size; i += 4096) p[i] = (char)i;
    p[size - 1] = 1;
    push(b, p);
  }
  return 1;
}

typedef struct {
  size_t size, total;
  int ok, err;
} phase_t;

/* One phase in a thread of its own: allocate, then free everything. */
static void *phase_thread(void *arg) {
  phase_t *ph = arg;
  blocks_t b = {0};
  ph->ok = fill(&b, ph->size, ph->total);
  ph->err = errno;
  release(&b);
  return NULL;
}

static int run_in_thread(phase_t *ph) {
  pthread_t t;
  if (pthread_create(&t, NULL, phase_thread, ph) != 0) return 0;
  pthread_join(t, NULL);
  errno = ph->err;
  return ph->ok;
}

static long peak_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %ld", &v) == 1) break;
  if (f) fclose(f);
  return v;
}

static void write_cb(void *f, const char *s) { fputs(s, f); }

static void print_stats(const char *path) {
  void (*print)(void (*)(void *, const char *), void *, const char *) =
      (void (*)(void (*)(void *, const char *), void *, const char *))dlsym(RTLD_DEFAULT, "alloc_stats_print");
  if (!path || !print) return;
  FILE *f = fopen(path, "w");
  if (!f) return;
  print(write_cb, f, "J");
  fclose(f);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: limit_workload issue|classes|large|threads MIB [STATS_FILE]\n");
    return 2;
  }
  size_t total = (size_t)atol(argv[2]) << 20;
  size_t first, second;
  if (strcmp(argv[1], "issue") == 0) first = 4 << 20, second = 64;
  else if (strcmp(argv[1], "classes") == 0) first = 1024, second = 3072;
  else if (strcmp(argv[1], "large") == 0) first = 256 << 10, second = 64;
  else if (strcmp(argv[1], "threads") == 0) first = 1024, second = 3072;
  else return 2;
  int ok, err;
  if (strcmp(argv[1], "threads") == 0) {
    phase_t one = {first, total, 0, 0}, two = {second, total, 0, 0};
    ok = run_in_thread(&one) && run_in_thread(&two);
    err = errno;
  } else {
    blocks_t b = {0};
    ok = fill(&b, first, total);
    release(&b);
    if (ok) ok = fill(&b, second, total);
    err = errno;
    release(&b);
  }
  printf("peak_kib %ld\n", peak_kib());
  print_stats(argc > 3 ? argv[3] : NULL);
  if (!ok) {
    fprintf(stderr, "limit_workload: allocation failed (%s): shedding load\n", strerror(err));
    return 3;
  }
  return 0;
}
