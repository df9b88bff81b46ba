/* sandbox.c - the calls that need a process of one thread.
 *
 * liballoc runs threads of its own from the process's start (init.c), and
 * some calls behave differently once a process has a second thread:
 * unshare(CLONE_NEWUSER) and setns() into a user or mount namespace fail
 * with EINVAL, and glibc's set-id calls, which change every thread's
 * credentials one after the other, abort the process when one thread
 * succeeds and another fails (setpriv gives the main thread capabilities
 * the others do not have).  The programs that make these calls (unshare,
 * setpriv, nsenter, bubblewrap, daemons dropping privileges) expect them to
 * work as they would without liballoc.
 *
 * Each is wrapped here: liballoc's threads are stopped and the kernel has
 * let them go before the real call (glibc's, found with RTLD_NEXT) runs,
 * and those that ran start again after it.  Before a uid changes, the
 * telemetry segment is removed too, and created again by the new thread:
 * a file owned by the old uid might not be the process's to write any
 * more.  errno is what the real call left.
 *
 * Only the shared library has these wrappers (LD_PRELOAD, or linked
 * against liballoc.so); a program that links liballoc.a statically and
 * makes such calls sets telemetry:false and background_thread:false.  A
 * call made with syscall(2) directly is not seen either. */
#include "alloc_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <unistd.h>

/* Each call: its name, whether it may change the uid, its parameters and
 * the arguments passing them on. */
#define LA_SANDBOX_CALLS(X) \
  X(unshare, false, (int flags), (flags)) \
  X(setns, false, (int fd, int nstype), (fd, nstype)) \
  X(setuid, true, (uid_t uid), (uid)) \
  X(seteuid, true, (uid_t euid), (euid)) \
  X(setreuid, true, (uid_t ruid, uid_t euid), (ruid, euid)) \
  X(setresuid, true, (uid_t ruid, uid_t euid, uid_t suid), (ruid, euid, suid)) \
  X(setgid, false, (gid_t gid), (gid)) \
  X(setegid, false, (gid_t egid), (egid)) \
  X(setregid, false, (gid_t rgid, gid_t egid), (rgid, egid)) \
  X(setresgid, false, (gid_t rgid, gid_t egid, gid_t sgid), (rgid, egid, sgid)) \
  X(setgroups, false, (size_t n, const gid_t *groups), (n, groups))

/* The wrapper: glibc's definition looked up once, then called with
 * liballoc's threads stopped, keeping its errno. */
#define LA_SANDBOX_WRAPPER(name, changes_uid, params, args) \
  LA_EXPORT int name params { \
    static int(*_Atomic real) params; \
    if (!real) real = (int(*) params)dlsym(RTLD_NEXT, #name); \
    if (!real) { \
      errno = ENOSYS; \
      return -1; \
    } \
    la_background_t was = la_background_pause(changes_uid); \
    int rc = real args; \
    int saved = errno; \
    la_background_resume(was); \
    errno = saved; \
    return rc; \
  }

LA_SANDBOX_CALLS(LA_SANDBOX_WRAPPER)
