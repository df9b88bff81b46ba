/* pressure.h - memory pressure as the kernel reports it: the host's
 * pressure stall information (/proc/pressure/memory) and, for a process,
 * its memory cgroup's limit, usage, failures and pressure (cgroup v2 and
 * v1), so allocd can show them beside the allocator's own figures. */
#ifndef ALLOCD_PRESSURE_H
#define ALLOCD_PRESSURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One PSI file: the share of time (0..1) some / all tasks were stalled on
 * memory over the last 10, 60 and 300 s, and the total stall time. */
typedef struct psi_s {
  bool known;
  double some[3], full[3];
  uint64_t some_us, full_us;
} psi_t;

/* A memory cgroup.  Values the kernel does not give for this version
 * stay 0 (limit and high: 0 means no limit). */
typedef struct cgroup_mem_s {
  bool known;
  int version;              /* 1 or 2 */
  char path[256];           /* in the hierarchy (from /proc/PID/cgroup), cleaned text */
  uint64_t limit;           /* v2 memory.max, v1 memory.limit_in_bytes */
  uint64_t high;            /* v2 memory.high */
  uint64_t usage;           /* v2 memory.current, v1 memory.usage_in_bytes */
  uint64_t failures;        /* v2 memory.events "max", v1 memory.failcnt: the limit was hit */
  uint64_t oom_kills;       /* v2 memory.events "oom_kill", v1 memory.oom_control "oom_kill" */
  psi_t psi;                /* v2 memory.pressure */
} cgroup_mem_t;

/* Where the memory hierarchies are mounted (from a mountinfo file), ""
 * where there is none; root is the part of the hierarchy mounted there. */
typedef struct cgroup_mounts_s {
  char v1[256], v1_root[256];
  char v2[256], v2_root[256];
} cgroup_mounts_t;

/* The figures of cgroup_mem_t shown per process, X(field, type, unit,
 * help): the API's keys and /metrics' liballoc_cgroup_memory_<field>. */
#define CGROUP_MEM_FIELDS(X)                                                                                       \
  X(limit, gauge, bytes, "Memory limit of the process's cgroup (v2 memory.max, v1 memory.limit_in_bytes); 0: none") \
  X(high, gauge, bytes, "Throttling threshold of the process's cgroup (v2 memory.high); 0: none")                 \
  X(usage, gauge, bytes, "Memory charged to the process's cgroup (v2 memory.current, v1 memory.usage_in_bytes)")   \
  X(failures, counter, count, "Times the process's cgroup hit its limit (v2 memory.events max, v1 memory.failcnt)") \
  X(oom_kills, counter, count, "Processes of the process's cgroup the OOM killer killed")

/* A cache of cgroups' figures shared by the processes in them: a process's
 * membership is re-read every CGROUP_MEMBER_MS, a cgroup's figures every
 * CGROUP_READ_MS, and each call reads files only while *budget lasts, so
 * a tick's work is bounded however many processes and cgroups there are. */
#define CGROUP_MEMBER_MS 10000
#define CGROUP_READ_MS 1000
typedef struct cgroup_cache_s cgroup_cache_t;
/* mountinfo: normally /proc/self/mountinfo. */
cgroup_cache_t *cgroup_cache_new(const char *mountinfo);
void cgroup_cache_free(cgroup_cache_t *cc);
/* Update *cg (the process's figures, kept by the caller; cg->known false at
 * first) for process pid; member_ms is the caller's memory of when its
 * membership was last read. */
void cgroup_cache_update(cgroup_cache_t *cc, int pid, int64_t now_ms, int *budget, int64_t *member_ms,
                         cgroup_mem_t *cg);

bool psi_parse(const char *text, psi_t *out);
bool psi_read(const char *path, psi_t *out);

void cgroup_mounts_find(const char *mountinfo, cgroup_mounts_t *out);

/* The memory cgroup of a process from its cgroup file (/proc/PID/cgroup):
 * the v1 memory controller's line if that hierarchy is mounted, else the
 * v2 line.  False if none. */
bool cgroup_of(const char *proc_cgroup, const cgroup_mounts_t *m, int *version, char *path, size_t size);

/* Read a cgroup's figures (path as cgroup_of gives it). */
bool cgroup_mem_read(const cgroup_mounts_t *m, int version, const char *path, cgroup_mem_t *out);

#endif
