/* init.c - process start-up, fork, exit, and when background threads may start.
 *
 * Start-up happens at the first allocation, which may come from the dynamic
 * loader before main, before libc has set up the environment, or from
 * another library's constructor; the library constructor runs it too, and
 * re-reads ALLOC_CONF if the first call came too early to see it.  Nothing
 * here allocates while the allocator is half set up: the steps that may call
 * malloc themselves (pthread_atfork) run after the allocator is usable.
 *
 * fork(): the prepare handler takes every allocator lock, outermost first,
 * so the child never inherits a lock held by a thread that does not exist
 * there, nor a structure half-way through a change; the child
 * re-initialises them.  The order is the order in which the code nests
 * them: init_lock; ctl_lock (a knob is applied to every pool under it);
 * heaps_lock, then the heaps' reclaim lock (the purger takes an idle
 * heap's caches under both); the arena locks; huge_lock (which first waits
 * for the huge-cache mappings being unmapped or gathered without it);
 * meta_lock (taken under huge_lock); then the leaves: the publisher's,
 * the purger's and the smaps reader's locks.  Work in flight without a
 * lock is settled in the child: units a purge was advising go back to
 * dirty (arena.c).
 *
 * The telemetry publisher thread never starts in the first second of a
 * process or of a forked child.  A second thread
 * changes what a process may do: unshare(CLONE_NEWUSER) fails with EINVAL
 * (unshare -U, bubblewrap, rootless containers, browser sandboxes, often in
 * a freshly forked child), and after setpriv sets per-thread capabilities
 * glibc aborts the process when a set-id call succeeds in one thread and
 * fails in another.  Programs that do such things do them at once, then
 * exit or exec; a thread that comes later stays out of their way.  It is
 * started from the first allocation or free slow path after that second
 * (la_poll_background), or by the
 * purger if it is running (a burst freed, then idle); a process that went
 * quiet before then with nothing to purge publishes from its next slow path.  (The
 * purger starts only when a free gives memory back to an arena, which such
 * tools seldom do before they sandbox themselves.) */
#include "alloc_internal.h"

#include <alloc.h>

#define QUIET_START_NS 1000000000ull

atomic_bool la_initialized;
atomic_bool la_background_due;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t life_start_ns;   /* the process's (or forked child's) start */

static void fork_prepare(void) {
  pthread_mutex_lock(&init_lock);
  la_ctl_fork_prepare();
  la_heaps_fork_prepare();
  la_arenas_fork_prepare();
  la_huge_fork_prepare();
  la_meta_fork_prepare();   /* taken while holding huge_lock */
  la_telemetry_fork_prepare();
  la_purger_fork_prepare();
  la_proc_fork_prepare();
}

static void fork_parent(void) {
  la_proc_fork_parent();
  la_purger_fork_parent();
  la_telemetry_fork_parent();
  la_meta_fork_parent();
  la_huge_fork_parent();
  la_arenas_fork_parent();
  la_heaps_fork_parent();
  la_ctl_fork_parent();
  pthread_mutex_unlock(&init_lock);
}

/* ---- the publisher's quiet start -------------------------------------------- */

void la_background_poll_slow(void) {
  if (la_now_coarse_ns() - atomic_load_explicit(&life_start_ns, memory_order_relaxed) < QUIET_START_NS) return;
  atomic_store(&la_background_due, false);
  la_telemetry_start();
}

static void begin_life(void) {
  atomic_store(&life_start_ns, la_now_coarse_ns());
  atomic_store(&la_background_due, la_opt.telemetry);
}

/* ---- fork and start-up ------------------------------------------------------ */

static void fork_child(void) {
  pthread_mutex_init(&init_lock, NULL);
  la_proc_fork_child();
  begin_life();
  la_telemetry_fork_child();
  la_ctl_fork_child();
  la_purger_fork_child();
  la_meta_fork_child();
  la_huge_fork_child();
  la_arenas_fork_child();
  la_heaps_fork_child();
}

void la_init_slow(void) {
  pthread_mutex_lock(&init_lock);
  if (!atomic_load_explicit(&la_initialized, memory_order_relaxed)) {
    la_os_init();
    if (la_options_init()) la_os_faults_init();
    la_sizeclass_init();
    la_decay_init_weights();
    la_arenas_init();
    la_heaps_init();
    atomic_store_explicit(&la_initialized, true, memory_order_release);
  }
  pthread_mutex_unlock(&init_lock);
  static atomic_bool atfork_registered;
  if (!atomic_exchange(&atfork_registered, true)) pthread_atfork(fork_prepare, fork_parent, fork_child);
}

__attribute__((constructor)) static void la_constructor(void) {
  la_ensure_init();
  if (la_options_init()) {   /* the first read was too early */
    la_os_faults_init();
    la_arenas_set_count();
    la_heaps_set_checks();
  }
  begin_life();   /* the publisher starts a second from now */
}

__attribute__((destructor)) static void la_destructor(void) {
  la_telemetry_exit();
  if (la_opt.stats_print) alloc_stats_print(NULL, NULL, NULL);
}
