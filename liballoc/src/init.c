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
 * Background threads.  The telemetry publisher starts at the process's
 * first allocation slow path after the constructor (la_poll_background;
 * every thread's first allocation takes one), or in the constructor if
 * something allocated before it: a process that allocates at start and
 * then waits (a daemon on its socket) is visible and can be tuned, and one
 * that never allocates (/bin/true), which would publish nothing but zeros,
 * does not pay for a thread (~80 us of a process's start-up on the
 * machines of docs/performance.md).  In a forked child it starts the same
 * way, never from a free: glibc frees memory while holding locks that
 * creating a thread takes.  The purger is wanted when free memory first
 * appears, and started the same way: at the next allocation slow path, or
 * by the publisher's next tick (purge.c).
 *
 * A second thread changes what a process may do: unshare(CLONE_NEWUSER)
 * and setns() into a user or mount namespace fail with EINVAL (unshare -U,
 * nsenter, bubblewrap, rootless containers), and glibc aborts a set-id call
 * that succeeds in one thread and fails in another (after setpriv gave the
 * main thread capabilities of its own).  sandbox.c wraps those calls:
 * la_background_pause stops liballoc's threads and waits until the kernel
 * no longer counts them, the call runs in a process of one thread (if the
 * program has none of its own), and la_background_resume starts them
 * again. */
#include "alloc_internal.h"

#include <alloc.h>

atomic_bool la_initialized;
atomic_bool la_background_due = true;   /* the publisher, at the first allocation */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int owner_pid;   /* the process whose threads these are (set at start and in a forked child) */
static atomic_bool polled_early;   /* an allocation came before the constructor */

static void fork_prepare(void) {
  pthread_mutex_lock(&init_lock);
  la_ctl_fork_prepare();
  la_limit_fork_prepare();
  la_prof_switch_fork_prepare();   /* before heaps_lock and prof_lock (la_prof_switch) */
  la_heaps_fork_prepare();
  la_arenas_fork_prepare();
  la_huge_fork_prepare();
  la_prof_fork_prepare();   /* taken while holding huge_lock (la_huge_free) */
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
  la_prof_fork_parent();
  la_huge_fork_parent();
  la_arenas_fork_parent();
  la_heaps_fork_parent();
  la_prof_switch_fork_parent();
  la_limit_fork_parent();
  la_ctl_fork_parent();
  pthread_mutex_unlock(&init_lock);
}

/* ---- background threads ------------------------------------------------------ */

/* Threads are started only in the process the constructor (or a forked
 * child's handler) ran in: not before it, and not in a child of vfork()
 * that allocates before its exec (it shares this memory; see below). */
void la_background_poll_slow(void) {
  int owner = atomic_load(&owner_pid);
  if (!owner) {
    atomic_store(&polled_early, true);   /* the constructor starts them */
    return;
  }
  if (la_os_getpid() != owner) return;
  atomic_store(&la_background_due, false);
  la_telemetry_start();
  la_purger_start_wanted();
}

/* What was running, to be started again by la_background_resume.  Not in
 * a child of vfork() (or clone(CLONE_VM)), which shares this memory and
 * runs no fork handlers: the threads are its parent's, and a thread
 * started there would be the child's, in the parent's memory. */
la_background_t la_background_pause(bool forget_segment) {
  la_background_t was = {false, false, false, false};
  if (la_os_getpid() != atomic_load(&owner_pid)) return was;
  was.paused = true;
  was.due = atomic_exchange(&la_background_due, false);   /* none starts in between */
  was.publisher = la_telemetry_pause(forget_segment);
  was.purger = la_purger_pause();
  return was;
}

void la_background_resume(la_background_t was) {
  if (!was.paused) return;
  la_purger_resume(was.purger);
  la_telemetry_resume(was.publisher);
  if (was.due) atomic_store(&la_background_due, true);
}

/* ---- fork and start-up ------------------------------------------------------ */

static void fork_child(void) {
  pthread_mutex_init(&init_lock, NULL);
  la_proc_fork_child();
  atomic_store(&owner_pid, la_os_getpid());
  atomic_store(&la_background_due, la_opt.telemetry);   /* at the child's first allocation slow path */
  la_telemetry_fork_child();
  la_ctl_fork_child();
  la_limit_fork_child();
  la_prof_switch_fork_child();
  la_purger_fork_child();
  la_meta_fork_child();
  la_prof_fork_child();
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
  atomic_store(&owner_pid, la_os_getpid());
  la_prof_init();   /* ALLOC_CONF=prof:true: here, not inside a malloc (it takes heaps_lock) */
  if (atomic_load(&polled_early)) la_background_poll_slow();   /* else at the first allocation */
}

__attribute__((destructor)) static void la_destructor(void) {
  la_telemetry_exit();
  if (la_opt.stats_print) alloc_stats_print(NULL, NULL, NULL);
}
