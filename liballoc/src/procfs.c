/* procfs.c - what the kernel says about this process.
 *
 * The statistics carry the kernel's view next to the allocator's, so that
 * the gap between what liballoc thinks is resident and what the kernel
 * counts is visible (docs/metrics.md); the telemetry header names the
 * process the way /proc does, so a reader can tell a reused pid from the
 * process that wrote the segment.  Everything here reads small /proc files
 * into stack buffers: no heap memory, usable from inside the allocator. */
#include "alloc_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The value in kB of the line "<key> <n> kB" of a /proc status-like file,
 * in bytes; 0 when the line is missing. */
static uint64_t kb_field(const char *text, const char *key) {
  size_t klen = strlen(key);
  for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
    if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
      const char *p = line + klen + 1;
      uint64_t kb = 0;
      while (*p == ' ' || *p == '\t') p++;
      la_parse_u64(p, NULL, &kb);
      return kb * 1024;
    }
  }
  return 0;
}

/* Field `k` (1-based, as in proc(5)) of /proc/self/stat.  The command name
 * (field 2) may hold spaces and parentheses, so counting starts after the
 * last ')'. */
static uint64_t stat_field(const char *text, unsigned k) {
  const char *p = strrchr(text, ')');
  if (!p || k < 3) return 0;
  p++;
  for (unsigned f = 3; f <= k; f++) {
    while (*p == ' ') p++;
    if (!*p) return 0;
    uint64_t value = 0;
    if (f == k) return la_parse_u64(p, NULL, &value) ? value : 0;
    while (*p && *p != ' ') p++;
  }
  return 0;
}

/* The kernel's view of the process's memory.  Resident and anonymous bytes
 * come from statm, whose counters the kernel keeps: O(1) at every call.
 * AnonHugePages, LazyFree and Swap exist only in smaps_rollup, which walks
 * every page table of the process (milliseconds for a large heap): it is
 * read at most every SMAPS_EVERY_NS and its values reused in between. */
#define SMAPS_EVERY_NS 10000000000ull

static pthread_mutex_t smaps_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t smaps_at, smaps_huge, smaps_lazy, smaps_swap;

static void read_smaps(uint64_t now) {
  char buf[4096];
  pthread_mutex_lock(&smaps_lock);
  if (!smaps_at || now - smaps_at >= SMAPS_EVERY_NS) {
    smaps_at = now;
    if (la_os_read_file("/proc/self/smaps_rollup", buf, sizeof buf) > 0) {   /* Linux 4.14+ */
      smaps_huge = kb_field(buf, "AnonHugePages");
      smaps_lazy = kb_field(buf, "LazyFree");
      smaps_swap = kb_field(buf, "Swap");
    }
  }
  pthread_mutex_unlock(&smaps_lock);
}

/* fork(): a stats reader may be inside read_smaps (milliseconds for a large
 * heap) in another thread; the child must not inherit smaps_lock held by a
 * thread it does not have.  The child reads its own smaps at its first look. */
void la_proc_fork_prepare(void) { pthread_mutex_lock(&smaps_lock); }
void la_proc_fork_parent(void) { pthread_mutex_unlock(&smaps_lock); }
void la_proc_fork_child(void) {
  pthread_mutex_init(&smaps_lock, NULL);
  smaps_at = 0;
}

/* The process's resident bytes (statm: O(1) for the kernel); 0 if
 * unreadable.  For memory_limit's slow paths (limit.c). */
size_t la_proc_rss(void) {
  char buf[512];
  unsigned long long size, resident;
  if (la_os_read_file("/proc/self/statm", buf, sizeof buf) > 0 && sscanf(buf, "%llu %llu", &size, &resident) == 2)
    return (size_t)resident * la_page_size;
  return 0;
}

void la_proc_memory(alloc_shm_stats_t *s) {
  char buf[512];
  if (la_os_read_file("/proc/self/statm", buf, sizeof buf) > 0) {
    /* size resident shared text lib data dt, in pages; shared = file + shmem */
    unsigned long long size, resident, shared;
    if (sscanf(buf, "%llu %llu %llu", &size, &resident, &shared) == 3) {
      s->kernel_rss = resident * la_page_size;
      s->kernel_anon = (resident - (shared < resident ? shared : resident)) * la_page_size;
    }
  }
  read_smaps(la_now_ns());
  s->kernel_anon_huge = smaps_huge;
  s->kernel_lazyfree = smaps_lazy;
  s->kernel_swap = smaps_swap;
  if (la_os_read_file("/proc/self/stat", buf, sizeof buf) > 0) s->threads = stat_field(buf, 20);
}

/* Who this process is: start time, pid namespace, executable, name. */
void la_proc_identity(alloc_shm_header_t *h) {
  char buf[1024];
  h->pid = (int32_t)la_os_getpid();
  if (la_os_read_file("/proc/self/stat", buf, sizeof buf) > 0) h->start_time = stat_field(buf, 22);
  long ticks = sysconf(_SC_CLK_TCK);
  h->clock_ticks = ticks > 0 ? (uint64_t)ticks : 100;
  struct stat st;
  if (la_os_stat("/proc/self/ns/pid", &st, false)) h->pidns_ino = (uint64_t)st.st_ino;
  la_os_readlink("/proc/self/exe", h->exe, sizeof h->exe);
  /* /proc/self is the thread group: its comm is the main thread's name,
   * whichever thread asks. */
  ssize_t n = la_os_read_file("/proc/self/comm", buf, sizeof buf);
  if (n > 0 && buf[n - 1] == '\n') buf[--n] = 0;
  if (n > 0) memcpy(h->comm, buf, (size_t)n < sizeof h->comm ? (size_t)n : sizeof h->comm - 1);
}
