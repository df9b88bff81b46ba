/* prof_target.c - a program with known call sites for the heap profiler's
 * end-to-end test (prof_test.c), built like a distribution binary: -O2,
 * no frame pointers, so its stacks need DWARF unwinding.  -rdynamic puts
 * its functions in the dynamic symbol table: it reports where each one is
 * (dladdr1), and the test checks the profile's frames against that.
 *
 * It reads commands on stdin, one a line, and answers each with one line
 * ("ok ..." with figures the test compares with the profile: the bytes
 * each call site keeps, its arrays of pointers included):
 *   keep       keep_memory: 64 MiB in 4 KiB blocks, kept
 *   churn      churn_memory: 512 MiB allocated and freed, 16 KiB in use at most
 *   fragment   fragment_memory: 100 MiB of 64-byte blocks, 95% freed at random
 *   large      large_memory: 32 blocks of 256 KiB and 4 of 3 MiB (huge), kept
 *   release    frees what keep, fragment and large keep
 *   threads    4 threads each keep 8 MiB (thread_memory) until release
 *   fork       forks: the child allocates and frees 1 MiB, publishes its own
 *              profile in-process (alloc_ctl), exits 0 if that worked
 *   stats      allocated and active of its statistics
 *   dlopen     dlopen()s libm.so.6 (the module list must show it)
 *   exit */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEEP_BLOCK 4096
#define KEEP_N (64 * 1024 * 1024 / KEEP_BLOCK)
#define FRAG_BLOCK 64
#define FRAG_N (100 * 1024 * 1024 / FRAG_BLOCK)

static void *volatile sink;
static void **kept, **frag, **large;
static size_t nfrag_kept;
static pthread_t threads[4];
static void **thread_blocks[4];
static pthread_barrier_t released;

/* Each call site is a function of its own that the compiler must not
 * inline or merge (noinline, noclone), so its return address is in it. */
__attribute__((noinline, noclone)) void keep_memory(void) {
  kept = malloc(KEEP_N * sizeof *kept);
  for (size_t i = 0; i < KEEP_N; i++) {
    kept[i] = malloc(KEEP_BLOCK);
    memset(kept[i], 1, 64);
  }
}

__attribute__((noinline, noclone)) void churn_memory(void) {
  for (size_t i = 0; i < 512 * 1024 / 16; i++) {
    void *p[4];
    for (int j = 0; j < 4; j++) p[j] = malloc(1024 * (j + 1));   /* 10 KiB a round */
    sink = p[i % 4];
    for (int j = 0; j < 4; j++) free(p[j]);
  }
}

__attribute__((noinline, noclone)) void fragment_memory(void) {
  frag = malloc(FRAG_N * sizeof *frag);
  for (size_t i = 0; i < FRAG_N; i++) {
    frag[i] = malloc(FRAG_BLOCK);
    memset(frag[i], 2, 16);
  }
  uint64_t x = 88172645463325252ull;
  nfrag_kept = 0;
  for (size_t i = 0; i < FRAG_N; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    if (x % 100 < 95) {
      free(frag[i]);
      frag[i] = NULL;
    } else {
      nfrag_kept++;
    }
  }
}

__attribute__((noinline, noclone)) void large_memory(void) {
  large = malloc(36 * sizeof *large);
  for (int i = 0; i < 32; i++) large[i] = malloc(256 * 1024);
  for (int i = 32; i < 36; i++) large[i] = malloc(3 * 1024 * 1024);
}

__attribute__((noinline, noclone)) void *thread_memory(void *arg) {
  size_t t = (size_t)arg, n = 8 * 1024 * 1024 / 2048;
  thread_blocks[t] = malloc(n * sizeof(void *));
  for (size_t i = 0; i < n; i++) thread_blocks[t][i] = malloc(2048);
  pthread_barrier_wait(&released);   /* ready */
  pthread_barrier_wait(&released);   /* release */
  for (size_t i = 0; i < n; i++) free(thread_blocks[t][i]);
  free(thread_blocks[t]);
  return NULL;
}

static void release(void) {
  if (kept) {
    for (size_t i = 0; i < KEEP_N; i++) free(kept[i]);
    free(kept);
    kept = NULL;
  }
  if (frag) {
    for (size_t i = 0; i < FRAG_N; i++) free(frag[i]);
    free(frag);
    frag = NULL;
  }
  if (large) {
    for (int i = 0; i < 36; i++) free(large[i]);
    free(large);
    large = NULL;
  }
}

static void print_symbol(const char *name, void *fn) {
  Dl_info info;
  const ElfW(Sym) *sym = NULL;
  if (dladdr1(fn, &info, (void **)&sym, RTLD_DL_SYMENT) && sym)
    printf("sym %s %#lx %lu\n", name, (unsigned long)info.dli_saddr, (unsigned long)sym->st_size);
  else
    printf("sym %s %#lx 0\n", name, (unsigned long)fn);
}

/* liballoc's alloc_ctl, found at run time: the program is not linked to
 * liballoc, which is preloaded. */
static int ctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen) {
  static int (*fn)(const char *, void *, size_t *, void *, size_t);
  if (!fn) fn = (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(RTLD_DEFAULT, "alloc_ctl");
  return fn ? fn(name, oldp, oldlenp, newp, newlen) : -1;
}

static size_t stat_of(const char *name) {
  uint64_t epoch = 1;
  size_t v = 0, len = sizeof v;
  ctl("epoch", NULL, NULL, &epoch, sizeof epoch);
  return ctl(name, &v, &len, NULL, 0) == 0 ? v : 0;
}

int main(void) {
  char line[64];
  /* liballoc's publisher starts at the process's first allocation; stdio's
   * buffer is one where liballoc is the process's malloc, not in the
   * sanitizer build (tests/common/direct.h), where this one is. */
  free(malloc(1));
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("pid %d\n", (int)getpid());
  print_symbol("keep_memory", (void *)keep_memory);
  print_symbol("churn_memory", (void *)churn_memory);
  print_symbol("fragment_memory", (void *)fragment_memory);
  print_symbol("large_memory", (void *)large_memory);
  print_symbol("thread_memory", (void *)thread_memory);
  printf("ready\n");
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    if (strcmp(line, "keep") == 0) {
      keep_memory();
      printf("ok %zu\n", (size_t)KEEP_N * KEEP_BLOCK + KEEP_N * sizeof *kept);
    } else if (strcmp(line, "churn") == 0) {
      churn_memory();
      printf("ok %zu\n", (size_t)512 * 1024 / 16 * 10240);
    } else if (strcmp(line, "fragment") == 0) {
      fragment_memory();
      printf("ok %zu\n", nfrag_kept * FRAG_BLOCK + FRAG_N * sizeof *frag);
    } else if (strcmp(line, "large") == 0) {
      large_memory();
      printf("ok %zu\n", (size_t)32 * 256 * 1024 + (size_t)4 * 3 * 1024 * 1024 + 36 * sizeof *large);
    } else if (strcmp(line, "release") == 0) {
      release();
      printf("ok\n");
    } else if (strcmp(line, "threads") == 0) {
      pthread_barrier_init(&released, NULL, 5);
      for (size_t t = 0; t < 4; t++) pthread_create(&threads[t], NULL, thread_memory, (void *)t);
      pthread_barrier_wait(&released);
      printf("ok %zu\n", (size_t)4 * 8 * 1024 * 1024);
    } else if (strcmp(line, "threads_end") == 0) {
      pthread_barrier_wait(&released);
      for (int t = 0; t < 4; t++) pthread_join(threads[t], NULL);
      pthread_barrier_destroy(&released);
      printf("ok\n");
    } else if (strcmp(line, "fork") == 0) {
      pid_t pid = fork();
      if (pid == 0) {
        void *p[256];
        for (int i = 0; i < 256; i++) p[i] = malloc(4096);
        for (int i = 0; i < 256; i++) free(p[i]);
        exit(ctl("prof.publish", NULL, NULL, NULL, 0) == 0 ? 0 : 3);   /* exit: its segment is removed */
      }
      int status = 0;
      waitpid(pid, &status, 0);
      printf("ok %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128);
    } else if (strcmp(line, "stats") == 0) {
      printf("ok %zu %zu\n", stat_of("stats.allocated"), stat_of("stats.active"));
    } else if (strcmp(line, "dlopen") == 0) {
      printf("ok %d\n", dlopen("libm.so.6", RTLD_NOW) != NULL);
    } else if (strcmp(line, "exit") == 0) {
      printf("ok\n");
      break;
    } else {
      printf("unknown %s\n", line);
    }
  }
  release();
  return 0;
}
