/* test_huge.c - huge blocks (huge.c) while their THP mode changes: realloc
 * moves and resizes a block's mapping without huge_lock, so the descriptor
 * la_huge_apply_thp walks must never describe a range being moved.
 *
 * This binary's madvise (the core is linked in statically, and the OS
 * layer calls libc's) records a THP advice the kernel refuses with ENOMEM:
 * a range that is not mapped. */
#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_int thp_advices, thp_unmapped;

int madvise(void *addr, size_t len, int advice) {
  int r = (int)syscall(SYS_madvise, addr, len, advice);
  if (advice == MADV_HUGEPAGE || advice == MADV_NOHUGEPAGE) {
    atomic_fetch_add(&thp_advices, 1);
    if (r != 0 && errno == ENOMEM) atomic_fetch_add(&thp_unmapped, 1);
  }
  return r;
}

static atomic_bool stop;

static void *thp_toggler(void *arg) {
  (void)arg;
  for (unsigned n = 0; !atomic_load(&stop); n++) la_huge_apply_thp(n % 2 ? LA_THP_ALWAYS : LA_THP_NEVER);
  return NULL;
}

/* A block grown step by step (moving when the space after it is taken by
 * a neighbour) and shrunk again, its first bytes checked at every step. */
static void test_realloc_while_thp_changes(void **state) {
  (void)state;
  pthread_t t;
  atomic_store(&stop, false);
  assert_int_equal(pthread_create(&t, NULL, thp_toggler, NULL), 0);
  for (int round = 0; round < 200 || (atomic_load(&thp_advices) < 100 && round < 5000); round++) {
    char *p = la_malloc((size_t)3 << 20);
    memset(p, round, 4096);
    void *neighbour = la_malloc((size_t)3 << 20);   /* often right after p: growth must move */
    for (size_t mib = 5; mib <= 40; mib += 7) {
      p = la_realloc(p, mib << 20);
      assert_non_null(p);
      assert_int_equal(p[4095], (char)round);
    }
    p = la_realloc(p, (size_t)3 << 20);
    assert_int_equal(p[0], (char)round);
    la_free(neighbour);
    la_free(p);
  }
  atomic_store(&stop, true);
  pthread_join(t, NULL);
  assert_true(atomic_load(&thp_advices) > 0);
  assert_int_equal(atomic_load(&thp_unmapped), 0);
}

int main(void) {
  la_ensure_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_realloc_while_thp_changes),
  };
  return cmocka_run_group_tests_name("huge", tests, NULL, NULL);
}
