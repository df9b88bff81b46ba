/* purge.c - the background purger: returns decayed memory to the OS even
 * when the program has gone idle.
 *
 * One thread per process, started lazily the first time free memory
 * appears (a short-lived process that never frees to an arena never starts
 * it).  That happens inside free, where no thread may be created (glibc
 * frees memory while holding the lock pthread_create takes): the free asks
 * (la_purger_notify), and the next allocation slow path or the publisher's
 * next tick starts it (la_purger_start_wanted).  It sleeps until the earliest time a decay curve says pages must go,
 * runs the decay of every arena and of the huge cache, and sleeps again;
 * with nothing pending it waits, costing nothing, until a free wakes it.
 * It never holds a lock the malloc/free fast paths need: it takes arena and
 * huge locks like any slow path, and drops them around madvise.
 *
 * After fork() the child has no purger; it is started again by the child's
 * next free to an arena.  Around calls that need a process of one thread
 * (sandbox.c) it is stopped and started again (la_purger_pause/resume).
 * Without the thread (background_thread:false), arenas run their decay
 * every few frees instead. */
#include "alloc_internal.h"

#include <time.h>

#define MIN_SLEEP_NS 10000000ull   /* 10 ms: never spin on tiny decay steps */

enum { STOPPED, STARTING, RUNNING, STOPPING };

static pthread_mutex_t purger_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t purger_cond;
static atomic_int state;
static atomic_bool idle;          /* waiting with no deadline */
static bool wake_pending;         /* (purger_lock) */
static atomic_bool start_failed;  /* pthread_create refused: do not retry */
static atomic_int thread_tid;     /* the purger's kernel thread id, 0 before it runs */
static atomic_int paused;         /* la_purger_pause calls not yet resumed */
static atomic_bool start_wanted;  /* a free asked for it: la_purger_start_wanted */
/* The purger is not watching the heaps' caches (not started, or about to
 * sleep with none holding anything): a heap that starts caching memory
 * must call la_purger_wake_for_caches.  Read on the large-cache path. */
atomic_bool la_purger_wants_caches = true;

static uint64_t earliest(uint64_t a, uint64_t b) {
  if (!a) return b;
  if (!b) return a;
  return a < b ? a : b;
}

/* Decay every pool now; returns when the next purge is due (0: none). */
uint64_t la_decay_all(uint64_t now) {
  /* Heaps first: what they give back joins the arenas' dirty units. */
  uint64_t heaps_due = la_heaps_decay(now);
  return earliest(heaps_due, earliest(la_arenas_decay(now), la_huge_decay(now)));
}

bool la_purger_running(void) {
  return atomic_load_explicit(&state, memory_order_relaxed) == RUNNING;
}

static void wake(void) {
  pthread_mutex_lock(&purger_lock);
  wake_pending = true;
  pthread_cond_signal(&purger_cond);
  pthread_mutex_unlock(&purger_lock);
}

static void sleep_until(uint64_t due, uint64_t now) {
  pthread_mutex_lock(&purger_lock);
  if (!wake_pending && atomic_load(&state) == RUNNING) {
    if (!due) {
      atomic_store(&idle, true);
      pthread_cond_wait(&purger_cond, &purger_lock);
    } else {
      if (due < now + MIN_SLEEP_NS) due = now + MIN_SLEEP_NS;
      struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
      pthread_cond_timedwait(&purger_cond, &purger_lock, &ts);
    }
  }
  atomic_store(&idle, false);
  wake_pending = false;
  pthread_mutex_unlock(&purger_lock);
}

/* Runs until switched off.  Switched on again while stopping (STOPPING
 * back to RUNNING, la_purger_enable), it carries on: the compare-and-swap
 * at the end tells it which happened last. */
static void *purger_main(void *arg) {
  (void)arg;
  la_os_name_self("liballoc-purge");
  atomic_store(&thread_tid, la_os_gettid());
  for (;;) {
    while (atomic_load(&state) == RUNNING) {
      uint64_t now = la_now_ns();
      atomic_store(&la_purger_wants_caches, false);   /* this pass looks at every heap */
      uint64_t due = la_decay_all(now);
      if (!due) due = la_heaps_before_sleep(now);
      sleep_until(due, now);
    }
    int expected = STOPPING;
    if (atomic_compare_exchange_strong(&state, &expected, STOPPED)) return NULL;
  }
}

/* Deadlines are la_now_ns().  Initialised once per process, not at every
 * start: a thread that saw the purger running a moment ago may be
 * signalling it while a new one starts (wake). */
static void init_cond(void) { la_os_cond_init_monotonic(&purger_cond); }

static void start(void) {
  if (atomic_load(&paused)) return;   /* la_purger_resume starts it */
  int expected = STOPPED;
  if (!atomic_compare_exchange_strong(&state, &expected, STARTING)) return;
  static pthread_once_t cond_once = PTHREAD_ONCE_INIT;
  pthread_once(&cond_once, init_cond);
  atomic_store(&state, RUNNING);
  atomic_store(&thread_tid, 0);   /* set by the thread before it can stop */
  if (la_os_start_thread(purger_main, 64 * 1024)) {
    atomic_store(&state, STOPPED);
    atomic_store(&start_failed, true);
  }
}

/* Free memory appeared: start the purger if it is enabled and not running,
 * or wake it if it is waiting with nothing to do.  Cheap when running. */
void la_purger_notify(void) {
  if (!la_opt.background_thread) return;
  int st = atomic_load_explicit(&state, memory_order_relaxed);
  if (LA_LIKELY(st == RUNNING)) {
    if (atomic_load_explicit(&idle, memory_order_relaxed)) wake();
    return;
  }
  if (st == STOPPED && !atomic_load_explicit(&start_failed, memory_order_relaxed) &&
      !atomic_load_explicit(&start_wanted, memory_order_relaxed)) {
    atomic_store(&start_wanted, true);
    atomic_store(&la_background_due, true);   /* the next allocation slow path */
  }
}

/* Start the purger if a free asked for it.  From an allocation slow path
 * or the publisher's tick, never from inside free. */
void la_purger_start_wanted(void) {
  if (atomic_load_explicit(&start_wanted, memory_order_relaxed) && atomic_exchange(&start_wanted, false)) start();
}

/* A heap's cache went from empty to holding memory while the purger
 * wanted to hear of it: start it, or wake it even if it is only about to
 * sleep (wake_pending). */
void la_purger_wake_for_caches(void) {
  if (!la_opt.background_thread) {
    atomic_store(&la_purger_wants_caches, false);   /* la_purger_enable raises it again */
    return;
  }
  if (atomic_load(&state) == RUNNING) wake();
  else la_purger_notify();
}

/* background_thread changed at run time. */
int la_purger_enable(bool on) {
  la_opt.background_thread = on;
  if (on) {
    atomic_store(&start_failed, false);
    atomic_store(&la_purger_wants_caches, true);
    int stopping = STOPPING;   /* a purger still stopping carries on instead */
    if (!atomic_compare_exchange_strong(&state, &stopping, RUNNING)) start();   /* not from free: alloc_ctl */
  } else {
    int expected = RUNNING;
    if (atomic_compare_exchange_strong(&state, &expected, STOPPING)) wake();
  }
  return 0;
}

/* Stop the purger, if it runs, and return once its thread has ended (the
 * kernel counts a thread until then); no purger starts until
 * la_purger_resume.  True if it was running. */
bool la_purger_pause(void) {
  atomic_fetch_add(&paused, 1);
  int expected = RUNNING;
  if (!atomic_compare_exchange_strong(&state, &expected, STOPPING)) return false;
  wake();
  while (atomic_load(&state) != STOPPED) la_os_sleep_ms(1);
  la_os_wait_thread_gone(atomic_load(&thread_tid));
  return true;
}

void la_purger_resume(bool was_running) {
  atomic_fetch_sub(&paused, 1);
  if (was_running && la_opt.background_thread) start();
}

/* Wake the purger so that a new decay time takes effect at once. */
void la_purger_kick(void) {
  if (atomic_load(&state) == RUNNING) wake();
}

/* fork(): purger_lock is a leaf, taken last but one (init.c).  The
 * child has no purger: its condition variable, which may record the
 * parent's waiting purger, starts afresh. */
void la_purger_fork_prepare(void) { pthread_mutex_lock(&purger_lock); }
void la_purger_fork_parent(void) { pthread_mutex_unlock(&purger_lock); }

void la_purger_fork_child(void) {
  pthread_mutex_init(&purger_lock, NULL);
  la_os_cond_init_monotonic(&purger_cond);
  atomic_store(&state, STOPPED);
  atomic_store(&idle, false);
  atomic_store(&la_purger_wants_caches, true);
  atomic_store(&thread_tid, 0);
  atomic_store(&paused, 0);
  atomic_store(&start_wanted, false);
  wake_pending = false;
}
