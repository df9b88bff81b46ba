/* early_main.c - allocation before main, in constructors, and from the
 * dynamic loader: a constructor that runs before main allocates in every
 * way, then main dlopens a library whose constructor allocates and whose
 * dynamic TLS is allocated by glibc in each of several threads, closes it
 * and opens it again.  Run with liballoc preloaded; exits non-zero on any
 * failure and says which. */
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
      failures++;                                                          \
    }                                                                      \
  } while (0)

static void *early_blocks[4];
static int early_ok;

/* Priority 101: before other constructors of this program. */
__attribute__((constructor(101))) static void allocate_before_main(void) {
  char *a = malloc(100);
  char *b = calloc(10, 100);
  void *c = NULL;
  int rc = posix_memalign(&c, 4096, 5000);
  a = realloc(a, 100000);
  early_blocks[0] = a;
  early_blocks[1] = b;
  early_blocks[2] = c;
  early_blocks[3] = strdup("made before main");
  early_ok = a && b && rc == 0 && ((uintptr_t)c & 4095) == 0 && early_blocks[3];
  for (int i = 0; b && i < 1000; i++) early_ok = early_ok && b[i] == 0;
}

typedef int (*touch_fn)(int);

static void *touch_in_thread(void *arg) {
  touch_fn touch = (touch_fn)arg;
  intptr_t sum = touch(3);
  return (void *)sum;
}

static void load_module_and_use_tls(const char *path) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  CHECK(h != NULL);
  if (!h) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return;
  }
  touch_fn touch = (touch_fn)dlsym(h, "module_touch_tls");
  CHECK(touch != NULL);
  if (!touch) return;
  int expect = 32 * 3 + 7;
  CHECK(touch(3) == expect);
  pthread_t t[8];
  for (int i = 0; i < 8; i++) CHECK(pthread_create(&t[i], NULL, touch_in_thread, (void *)touch) == 0);
  for (int i = 0; i < 8; i++) {
    void *r;
    pthread_join(t[i], &r);
    CHECK((intptr_t)r == expect);
  }
  CHECK(dlclose(h) == 0);
}

int main(int argc, char **argv) {
  CHECK(early_ok);
  CHECK(strcmp(early_blocks[3], "made before main") == 0);
  CHECK(malloc_usable_size(early_blocks[0]) >= 100000);
  for (int i = 0; i < 4; i++) free(early_blocks[i]);
  CHECK(dlsym(RTLD_DEFAULT, "alloc_ctl") != NULL);   /* liballoc is the allocator */
  const char *module = argc > 1 ? argv[1] : "./libearly_module.so";
  for (int round = 0; round < 3; round++) load_module_and_use_tls(module);
  printf("%d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
  return failures ? 1 : 0;
}
