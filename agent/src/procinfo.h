/* procinfo.h - what the kernel says about a process, for the collector.
 *
 * A segment names its process and claims things about it (start time,
 * executable, thread name); allocd believes the kernel instead wherever the
 * kernel knows: the owner comes from /proc/PID/status (not the owner of
 * /proc/PID/stat, which is root for non-dumpable processes), the
 * executable from /proc/PID/exe, the thread name from /proc/PID/comm.  The
 * text is cleaned (text.h) as it is read. */
#ifndef ALLOCD_PROCINFO_H
#define ALLOCD_PROCINFO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct procinfo_s {
  uint64_t start_time;   /* clock ticks after boot (field 22 of /proc/PID/stat) */
  uid_t uids[4];         /* real, effective, saved, file-system uid */
  bool exe_known;        /* /proc/PID/exe could be read (needs ptrace access) */
  char exe[256];         /* the kernel's path of the executable, cleaned */
  char comm[64];         /* the kernel's thread name, cleaned */
} procinfo_t;

enum proc_state { PROC_ALIVE, PROC_GONE, PROC_UNKNOWN };

/* The start time and uids of process `pid` (a process, not another
 * process's thread).  PROC_GONE when there is no such process, PROC_UNKNOWN
 * when /proc could not tell (then *out is not filled). */
enum proc_state proc_identity(int pid, procinfo_t *out);

/* Whether `pid` is still the process that started at `start_time`, from
 * /proc/PID/stat alone: the cheap check of a process already identified
 * (its uids are not read again). */
bool proc_started_at(int pid, uint64_t start_time);

/* The executable and thread name of `pid`, after proc_identity. */
void proc_names(int pid, procinfo_t *out);

/* Is `uid` one of the process's uids?  A segment is created with the
 * file-system uid, which a set-uid program or a worker that changed its
 * effective uid has apart from its real one. */
bool proc_has_uid(const procinfo_t *p, uid_t uid);

/* Wall-clock time (CLOCK_REALTIME ns) at which a process with this start
 * time started: the earliest time any of its snapshots can be from. */
uint64_t proc_start_wall_ns(uint64_t start_time);

#endif
