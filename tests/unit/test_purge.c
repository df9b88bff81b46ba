/* test_purge.c - the background purger (purge.c): switched off and on
 * while other threads wake it, and taking back what an idle thread's heap
 * caches, in real time (bounded waits only: no timing is asserted). */
#include "unit.h"

#include <alloc.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

static atomic_bool stop;

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, ms % 1000 * 1000000L};
  nanosleep(&t, NULL);
}

static void set_background(bool on) {
  assert_int_equal(alloc_ctl("opt.background_thread", NULL, NULL, &on, sizeof on), 0);
}

/* Frees to the arena (each one notifies the purger) and kicks it. */
static void *waker(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    la_free(la_malloc(320 * 1024));
    la_purger_kick();
  }
  return NULL;
}

/* The purger stops and starts again hundreds of times while two threads
 * signal it: its condition variable is initialised once, so no signal
 * ever meets one being initialised. */
static void test_restart_while_signalled(void **state) {
  (void)state;
  pthread_t t[2];
  atomic_store(&stop, false);
  for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, waker, NULL), 0);
  for (int i = 0; i < 300; i++) {
    set_background(i % 2 == 0);
    sleep_ms(1);
  }
  atomic_store(&stop, true);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  set_background(true);
  la_purger_notify();
  for (int i = 0; i < 500 && !la_purger_running(); i++) sleep_ms(10);
  assert_true(la_purger_running());
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int phase;

static void *idle_cacher(void *arg) {
  (void)arg;
  void *a = la_malloc(128 * 1024), *b = la_malloc(96 * 1024);
  memset(a, 1, 128 * 1024);
  memset(b, 1, 96 * 1024);
  la_free(a);   /* to the heap's large-block cache */
  la_free(b);   /* its slab parked */
  pthread_mutex_lock(&lock);
  phase = 1;
  pthread_cond_broadcast(&cond);
  while (phase < 2) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  return NULL;
}

static size_t tcache(void) {
  la_stats_t st;
  la_stats_gather(&st);
  return st.s.tcache;
}

/* A thread caches memory and blocks: the purger, asleep with nothing else
 * to do, is woken by the cache filling and takes it back. */
static void test_purger_takes_idle_caches(void **state) {
  (void)state;
  if (!la_os_membarrier_register()) skip();
  ssize_t decay = 200;
  assert_int_equal(alloc_ctl("opt.dirty_decay_ms", NULL, NULL, &decay, sizeof decay), 0);
  set_background(true);
  la_heap_flush(la_tls_heap);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, idle_cacher, NULL), 0);
  pthread_mutex_lock(&lock);
  while (phase < 1) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  size_t cached = tcache();
  assert_true(cached >= 128 * 1024);
  size_t now = cached;
  for (int i = 0; i < 500 && now + 128 * 1024 > cached; i++) {   /* up to 5 s */
    sleep_ms(10);
    now = tcache();
  }
  pthread_mutex_lock(&lock);
  phase = 2;
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&lock);
  pthread_join(t, NULL);
  assert_true(now + 128 * 1024 <= cached);
}

int main(void) {
  la_ensure_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_restart_while_signalled),
      cmocka_unit_test(test_purger_takes_idle_caches),
  };
  return cmocka_run_group_tests_name("purge", tests, NULL, NULL);
}
